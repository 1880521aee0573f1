//! The error every route answers with ([`ApiError`]): a status, a stable code and a sentence
//! with no request content in it; and the parsing helpers that make one from bad input without
//! repeating it. Every other module of the service uses this one, so it uses none of them.

use axum::{
    Json,
    body::Bytes,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// An API error: a status, a stable code and a sentence with no request content in it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Value,
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::BAD_REQUEST, body: json!({"error": "bad_request", "detail": detail.into()}) }
    }
    pub fn not_found(what: &str) -> ApiError {
        ApiError { status: StatusCode::NOT_FOUND, body: json!({"error": "not_found", "detail": format!("no {what} with that id")}) }
    }
    pub fn conflict(detail: impl Into<String>) -> ApiError {
        ApiError { status: StatusCode::CONFLICT, body: json!({"error": "conflict", "detail": detail.into()}) }
    }
    pub fn internal(error: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %error, "request failed");
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, body: json!({"error": "internal", "detail": "the service could not complete the request; see its log"}) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        ApiError::internal(e)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        ApiError::internal(format!("{e:#}"))
    }
}

/// Replaces every double-quoted run in a parser message: serde and protobuf errors quote the
/// offending value, and that value may be personal data. A backquoted run (serde's name of an
/// unknown field) is kept only when it looks like a field name (`cas_ref`), since a key can be
/// anything typed too.
pub fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quoted: Option<(char, String)> = None;
    let mut previous: Option<char> = None;
    for c in message.chars() {
        // A single quote opens a quotation only where one starts (after a space or a
        // bracket), so a parser's 'VALUE' is redacted and an apostrophe in "don't" is not.
        let single_opens = c == '\'' && previous.is_none_or(|p| p.is_whitespace() || "([{:=,".contains(p));
        previous = Some(c);
        match &mut quoted {
            Some((open, run)) if c == *open => {
                let keep = *open == '`' && (1..=32).contains(&run.len()) && run.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                out.push(*open);
                out.push_str(if keep { run } else { "…" });
                out.push(*open);
                quoted = None;
            }
            Some((_, run)) => run.push(c),
            None if c == '"' || c == '`' || single_opens => quoted = Some((c, String::new())),
            None => out.push(c),
        }
    }
    if let Some((open, _)) = quoted {
        out.push(open);
        out.push('…');
    }
    out
}

/// A clear field refused: 400 naming the field and its grammar, never the value.
pub fn clear_field(e: isp::clear::ClearFieldError) -> ApiError {
    ApiError { status: StatusCode::BAD_REQUEST, body: json!({"error": "bad_clear_field", "field": e.field, "detail": e.to_string()}) }
}

/// Parses a JSON body with an error that names the problem but not the values.
pub fn json_body<T: DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("the body is not valid: {}", redact_quoted(&e.to_string()))))
}

