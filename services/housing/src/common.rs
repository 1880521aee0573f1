//! What the casework modules share: fixed lists as enums ([`codes!`]), the clear fields they
//! take (each parsed where it enters, its value never repeated in an error), sealing at rest
//! and errors a caller can act on. Imports nothing of the crate's own.

use axum::http::StatusCode;
use runtime::{
    Ctx,
    api::{ApiError, SubjectIdentity, clear_field},
};
use serde_json::json;
use sqlx::Row as _;

pub(crate) use runtime::codes;

/// The time by the service's clock (which tests move).
pub fn now(ctx: &Ctx) -> i64 {
    ctx.config.clock.now_ms()
}

/// The person a request is about: their subject ref, given or computed from their name and
/// date of birth (which go no further).
pub fn subject_of(ctx: &Ctx, subject: Option<&SubjectIdentity>, subject_ref: Option<&str>) -> Result<String, ApiError> {
    runtime::api::subject_ref_of(&ctx.isp(), subject, subject_ref)
}

/// A case reference, which may be empty.
pub fn case_ref(value: &str) -> Result<(), ApiError> {
    isp::clear::optional("case_ref", value, isp::clear::is_case_ref, isp::clear::CASE_REF).map_err(clear_field)
}

/// A property reference (the landlord's, of the case reference grammar: PROP-1042), required.
pub fn property_ref(value: &str) -> Result<(), ApiError> {
    isp::clear::required("property_ref", value, isp::clear::is_case_ref, PROPERTY_REF).map_err(clear_field)
}

pub const PROPERTY_REF: &str = "a property reference: 2-8 capital letters, then 1-4 '-'-separated groups of digits or capital letters (e.g. PROP-1042)";

/// An id this service made (a UUID), from a path.
pub fn id(value: &str) -> Result<(), ApiError> {
    isp::clear::required("id", value, isp::clear::is_envelope_id, isp::clear::ENVELOPE_ID).map_err(clear_field)
}

/// A day, YYYY-MM-DD.
pub fn day(field: &str, value: &str) -> Result<i64, ApiError> {
    runtime::chronology::day_ms(value).ok_or_else(|| ApiError::bad_request(format!("{field} is a date, YYYY-MM-DD")))
}

/// Free text sealed to the agency's own key; empty stays empty.
pub fn seal(ctx: &Ctx, text: &str) -> Result<String, ApiError> {
    if text.trim().is_empty() { Ok(String::new()) } else { ctx.seal_at_rest(text.trim()).map_err(ApiError::internal) }
}

/// Text sealed by [`seal`], opened.
pub fn open(ctx: &Ctx, stored: &str) -> Result<String, ApiError> {
    if stored.is_empty() { Ok(String::new()) } else { ctx.isp().keys.open_at_rest(stored).map_err(ApiError::internal) }
}

/// A sealed column of a row, opened.
pub fn opened(ctx: &Ctx, row: &sqlx::any::AnyRow, column: &str) -> Result<String, ApiError> {
    open(ctx, &row.try_get::<String, _>(column)?)
}

/// A comma list column.
pub use runtime::db::comma_list as list;

/// A refusal a caller can act on: its own error code and a sentence with no request content.
pub fn refusal(status: StatusCode, error: &str, detail: impl Into<String>) -> ApiError {
    ApiError { status, body: json!({"error": error, "detail": detail.into()}) }
}

/// Whether a database error is a unique key already taken (two saves at once, a repeat).
pub fn is_duplicate(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

/// A parser's message with every quoted run replaced: [`runtime::api::redact_quoted`] for
/// double quotes and backquotes, and single quotes here too, since prost-reflect quotes an
/// unrecognised enum value in them (`unrecognized enum value 'what was typed'`).
pub fn redact(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut inside = false;
    for c in runtime::api::redact_quoted(message).chars() {
        match (c, inside) {
            ('\'', false) => {
                inside = true;
                out.push_str("'…'");
            }
            ('\'', true) => inside = false,
            (_, true) => {}
            (c, false) => out.push(c),
        }
    }
    out
}

/// Pence as pounds for people: 12345 -> "£123.45".
pub fn pounds(pence: i64) -> String {
    format!("£{}.{:02}", pence / 100, pence % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    codes!(Colour { Red = "red": "Red", DarkBlue = "dark_blue": "Dark blue" });

    #[test]
    fn codes_round_trip() {
        for c in Colour::ALL {
            assert_eq!(Colour::parse(c.code()), Some(*c));
        }
        assert_eq!(Colour::parse("green"), None);
        assert_eq!(Colour::codes(), "red, dark_blue");
        assert_eq!(Colour::DarkBlue.label(), "Dark blue");
    }

    #[test]
    fn quoted_values_are_redacted_whatever_the_quotes() {
        assert_eq!(redact("unrecognized enum value 'Synthetic Lane 17'"), "unrecognized enum value '…'");
        assert_eq!(redact(r#"invalid type: string "Synthetic", expected u32"#), "invalid type: string \"…\", expected u32");
        assert_eq!(redact("cut 'Synthetic"), "cut '…'");
    }

    #[test]
    fn pence_read_as_pounds() {
        assert_eq!(pounds(12345), "£123.45");
        assert_eq!(pounds(5), "£0.05");
        assert_eq!(pounds(100_000), "£1000.00");
    }

    #[test]
    fn lists_skip_empty_items() {
        assert_eq!(list(""), Vec::<String>::new());
        assert_eq!(list("a,,b"), vec!["a".to_owned(), "b".to_owned()]);
    }
}
