//! What a send answers, and how it waits for the sender task: the types the outbox, the
//! service's shared state (whose `Ctx` holds the queue of waiting sends) and the
//! metrics share, apart from the outbox's loops so that none of them imports another back.

use isp::{Denial, IspError, Outgoing};
use serde::Serialize;
use tokio::sync::oneshot;

/// What the sender learns of an allowed disclosure.
#[derive(Debug, Clone, Serialize)]
pub struct SendOutcome {
    pub envelope_id: String,
    pub rule: String,
    pub policy_version: String,
    /// Categories the sealed payload carries.
    pub categories: Vec<String>,
    /// Categories removed because the recipient's role may not receive them.
    pub removed: Vec<String>,
    pub without_consent: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The protocol refused; the near miss is recorded under `near_miss_id`.
    #[error("{denial}")]
    Denied { denial: Denial, near_miss_id: String },
    /// The request itself is wrong (unknown agency, body not of its kind...).
    #[error("{0}")]
    Refused(IspError),
    /// Sealed, the disclosure is more than the broker carries in one message (`bytes` against
    /// `limit`); nothing was stored. The body limit of the API keeps requests well under it;
    /// this catches a payload whose encoding grew past it.
    #[error("the sealed disclosure is {bytes} bytes, more than the {limit} the broker carries in one message")]
    TooLarge { bytes: usize, limit: usize },
    /// The consent bucket could not be read: nothing was decided, try again.
    #[error("the consent records cannot be read now: {0}")]
    ConsentUnavailable(String),
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
}

/// What the API answers a send that did not go: a denial is a 403 naming the rule and the
/// near miss; nothing a caller typed is repeated.
impl From<SendError> for crate::error::ApiError {
    fn from(e: SendError) -> crate::error::ApiError {
        use crate::error::ApiError;
        use axum::http::StatusCode;
        use serde_json::json;
        match e {
            SendError::Denied { denial, near_miss_id } => ApiError {
                status: StatusCode::FORBIDDEN,
                body: json!({
                    "error": "denied",
                    "reason": denial.reason,
                    "rule": denial.rule,
                    "detail": denial.detail,
                    "forbidden": denial.forbidden,
                    "near_miss_id": near_miss_id,
                }),
            },
            // The agency id asked for is not repeated: it could be anything typed into `to`.
            SendError::Refused(IspError::UnknownAgency(_)) => ApiError::bad_request("to: not an agency of the partnership directory"),
            SendError::Refused(e @ (IspError::BadPayload { .. } | IspError::Invalid { .. })) => ApiError::bad_request(e.to_string()),
            SendError::Refused(e @ IspError::Inactive { .. }) => ApiError {
                status: StatusCode::CONFLICT,
                body: json!({"error": "not_in_partnership", "detail": e.to_string()}),
            },
            SendError::Refused(e @ IspError::Unjustified(_)) => ApiError {
                status: StatusCode::BAD_REQUEST,
                body: json!({"error": "without_consent_unjustified", "detail": e.to_string()}),
            },
            SendError::ConsentUnavailable(detail) => {
                tracing::warn!(error = %detail, "send refused for now: consent records unreadable");
                ApiError {
                    status: StatusCode::SERVICE_UNAVAILABLE,
                    body: json!({"error": "consent_unavailable", "detail": "the partnership's consent records cannot be read now; nothing was sent, try again"}),
                }
            }
            e @ SendError::TooLarge { .. } => ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                body: json!({"error": "too_large", "detail": format!("{e}; nothing was stored: send less")}),
            },
            SendError::Refused(e) => ApiError::internal(e),
            SendError::Storage(e) => ApiError::internal(e),
        }
    }
}

/// A send waiting for the sender task: the disclosure, who asked for it and where its answer
/// goes.
pub(crate) type Pending = (Outgoing, Option<AskedBy>, oneshot::Sender<Result<SendOutcome, SendError>>);

/// The staff member a send was made for: named in its `sent` row. `chronicled`: the send also
/// enters the person's chronology as `disclosure_sent` (a send through the API; a service's
/// own step writes its own entry).
#[derive(Debug, Clone)]
pub(crate) struct AskedBy {
    pub(crate) staff_id: String,
    pub(crate) chronicled: bool,
}

