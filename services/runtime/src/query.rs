//! What the routes of every module share, apart from the generic API's own handlers so that
//! any module may use them: the page of a list ([`Page`]), the person a request names
//! ([`subject_ref_of`]) and a row as JSON ([`row_json`], [`opened_list`]).

use isp::clear;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::{Row, any::AnyRow};

use crate::{
    ctx::Ctx,
    error::{ApiError, clear_field},
};

/// `limit` and `after` of every list route: at most [`PAGE_MAX`] items a page,
/// [`PAGE_DEFAULT`] when no limit is named, in the order of the route's key; the next page
/// starts `after` the last item's key (each route's doc names its key).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    pub limit: Option<i64>,
    pub after: Option<String>,
}

pub const PAGE_DEFAULT: i64 = 100;
pub const PAGE_MAX: i64 = 1000;

impl Page {
    pub fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(PAGE_DEFAULT),
            Some(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::bad_request(format!("limit is 1 to {PAGE_MAX}"))),
        }
    }

    /// The cursor of a route keyed by text: "" before the first item.
    pub fn after(&self) -> String {
        self.after.clone().unwrap_or_default()
    }

    /// The cursor of a route keyed by a number (a stream sequence): 0 before the first item.
    pub fn after_number(&self) -> Result<i64, ApiError> {
        self.after.as_deref().map_or(Ok(0), |a| a.parse().map_err(|_| ApiError::bad_request("after is the key of the last item of the page before (a number here)")))
    }

    /// `key > $n ORDER BY key LIMIT $n+1`, for a query's WHERE.
    pub fn clause(key: &str, n: usize) -> String {
        format!("{key} > ${n} ORDER BY {key} LIMIT ${}", n + 1)
    }

    /// The rows of this page of `select` (`SELECT … FROM table`), in the order of the text
    /// column `key`.
    pub async fn rows(&self, pool: &sqlx::AnyPool, select: &str, key: &str) -> Result<Vec<AnyRow>, ApiError> {
        let limit = self.limit()?;
        Ok(sqlx::query(&format!("{select} WHERE {}", Page::clause(key, 1))).bind(self.after()).bind(limit).fetch_all(pool).await?)
    }

    /// [`Page::rows`] for a numeric key (a stream sequence).
    pub async fn rows_by_number(&self, pool: &sqlx::AnyPool, select: &str, key: &str) -> Result<Vec<AnyRow>, ApiError> {
        let (after, limit) = (self.after_number()?, self.limit()?);
        Ok(sqlx::query(&format!("{select} WHERE {}", Page::clause(key, 1))).bind(after).bind(limit).fetch_all(pool).await?)
    }
}

/// A person's identity, used only to compute the pseudonymous subject ref.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubjectIdentity {
    pub full_name: String,
    pub date_of_birth: String,
}

/// The person a request is about: their subject ref, given (and checked against its
/// grammar) or computed from their name and date of birth, which go no further.
pub fn subject_ref_of(protocol: &isp::Isp, subject: Option<&SubjectIdentity>, subject_ref: Option<&str>) -> Result<String, ApiError> {
    match (subject, subject_ref) {
        (Some(s), _) => protocol.keys.subject_ref(&s.full_name, &s.date_of_birth).map_err(|e| ApiError::bad_request(e.to_string())),
        (None, Some(r)) => {
            clear::required("subject_ref", r, clear::is_subject_ref, clear::SUBJECT_REF).map_err(clear_field)?;
            Ok(r.to_owned())
        }
        (None, None) => Err(ApiError::bad_request("name the person: subject (full_name, date_of_birth) or subject_ref")),
    }
}

/// A row as JSON: TEXT and BIGINT columns, comma lists split into arrays.
pub fn row_json(row: &AnyRow, text: &[&str], ints: &[&str], lists: &[&str]) -> Value {
    let mut map = serde_json::Map::new();
    for c in text {
        map.insert((*c).into(), json!(row.try_get::<String, _>(*c).unwrap_or_default()));
    }
    for c in ints {
        map.insert((*c).into(), json!(row.try_get::<Option<i64>, _>(*c).unwrap_or_default()));
    }
    for c in lists {
        let s: String = row.try_get(*c).unwrap_or_default();
        let items: Vec<&str> = s.split(',').filter(|x| !x.is_empty()).collect();
        map.insert((*c).into(), json!(items));
    }
    Value::Object(map)
}

/// A comma list stored sealed to the agency's key ([`isp::AgencyKeys::seal_at_rest`]), opened, as a JSON array.
pub fn opened_list(ctx: &Ctx, row: &AnyRow, column: &str) -> Result<Value, ApiError> {
    let stored: String = row.try_get(column)?;
    let text = ctx.isp().keys.open_at_rest(&stored).map_err(ApiError::internal)?;
    Ok(json!(text.split(',').filter(|x| !x.is_empty()).collect::<Vec<_>>()))
}

