//! The domestic abuse universal assessment form: what the council's teams each need to know
//! (housing, safety, health, children, finances, immigration status and recourse to public
//! funds, diversity, support needs), asked once.
//!
//! Each save is a new version of the person's assessment (`hub.v1.UniversalAssessment`,
//! encoded and sealed at rest), with an entry in their chronology. A referral carries the
//! version it names in its `uaf` field (an IDVA or MARAC referral, a refuge referral), so the
//! recipient does not ask again; each section is a data category of its own (`uaf.housing`,
//! ...), which the protocol shares or withholds section by section.

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
};
use prost::Message as _;
use proto::v1::{IdvaReferral, Payload, UniversalAssessment, payload::Body};
use runtime::{
    Ctx,
    api::{ApiError, SubjectIdentity, json_body, row_json},
    auth::Staff,
    chronology,
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::common;

/// The sections, by their field names in `hub.v1.UniversalAssessment`, with their words.
pub const SECTIONS: [(&str, &str); 8] = [
    ("housing", "Housing"),
    ("safety", "Safety"),
    ("health", "Health"),
    ("children", "Children"),
    ("finances", "Money"),
    ("immigration", "Immigration status and recourse to public funds"),
    ("diversity", "Diversity"),
    ("support_needs", "Support needs"),
];

/// `POST /universal-assessments`: the person (by subject ref, or name and date of birth to
/// compute it) and the assessment in the protobuf JSON mapping of
/// `hub.v1.UniversalAssessment` (`{"housing": {"currentSituation": ...}, ...}`). The version
/// fields (`assessmentId`, `version`, `assessedOn`, `assessedBy`) are the service's: whatever
/// is sent in them is replaced, so a version fetched, changed and saved becomes the next.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UafInput {
    #[serde(default)]
    pub case_ref: String,
    #[serde(default)]
    pub subject: Option<SubjectIdentity>,
    #[serde(default)]
    pub subject_ref: Option<String>,
    pub uaf: Value,
}

impl std::fmt::Debug for UafInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UafInput").field("case_ref", &self.case_ref).field("subject_ref", &self.subject_ref).finish_non_exhaustive()
    }
}

/// An assessment from its protobuf JSON (through the payload schema, which knows every
/// field); the error names the problem, never a value.
pub fn parse(schema: &isp::Schema, uaf: &Value) -> Result<UniversalAssessment, String> {
    let payload = schema
        .payload_from_json(&json!({"idvaReferral": {"uaf": uaf}}))
        .map_err(|e| format!("uaf does not match hub.v1.UniversalAssessment: {}", common::redact(&e)))?;
    match payload.body {
        Some(Body::IdvaReferral(r)) => Ok(r.uaf.unwrap_or_default()),
        _ => Err("uaf is not an assessment".into()),
    }
}

/// An assessment in the protobuf JSON mapping: what a referral's `uaf` field takes as it is.
pub fn to_json(schema: &isp::Schema, uaf: &UniversalAssessment) -> Value {
    let payload = Payload { body: Some(Body::IdvaReferral(IdvaReferral { uaf: Some(uaf.clone()), ..Default::default() })) };
    schema.payload_to_json(&payload)["idvaReferral"]["uaf"].clone()
}

/// The sections of an assessment that hold anything.
pub fn filled(u: &UniversalAssessment) -> Vec<&'static str> {
    fn some<T: PartialEq + Default>(section: &Option<T>) -> bool {
        section.as_ref().is_some_and(|s| *s != T::default())
    }
    let present = [
        some(&u.housing),
        some(&u.safety),
        some(&u.health),
        some(&u.children),
        some(&u.finances),
        some(&u.immigration),
        some(&u.diversity),
        some(&u.support_needs),
    ];
    SECTIONS.iter().zip(present).filter(|(_, p)| *p).map(|((name, _), _)| *name).collect()
}

/// Saves a new version of the person's assessment as `staff`.
pub async fn save(ctx: &Ctx, staff: &Staff, input: &UafInput) -> Result<Value, ApiError> {
    let subject_ref = common::subject_of(ctx, input.subject.as_ref(), input.subject_ref.as_deref())?;
    common::case_ref(&input.case_ref)?;
    let mut uaf = parse(&ctx.isp().schema, &input.uaf).map_err(ApiError::bad_request)?;
    let sections = filled(&uaf);
    if sections.is_empty() {
        return Err(ApiError::bad_request(format!(
            "uaf: fill in at least one section ({})",
            SECTIONS.iter().map(|(s, _)| *s).collect::<Vec<_>>().join(", ")
        )));
    }
    let now = common::now(ctx);
    let id = uuid::Uuid::now_v7().to_string();
    let mut tx = ctx.pool.begin().await?;
    let version: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 AS next FROM universal_assessments WHERE subject_ref = $1")
        .bind(&subject_ref)
        .fetch_one(&mut *tx)
        .await?
        .try_get("next")?;
    uaf.assessment_id = id.clone();
    uaf.version = u32::try_from(version).map_err(ApiError::internal)?;
    uaf.assessed_on = chronology::date_of(now);
    uaf.assessed_by = ctx.agency().to_owned();
    let sealed = ctx.seal_at_rest(&hex::encode(uaf.encode_to_vec())).map_err(ApiError::internal)?;
    let inserted = sqlx::query(
        "INSERT INTO universal_assessments (id, subject_ref, case_ref, version, sections, assessment, recorded_by, recorded_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&id)
    .bind(&subject_ref)
    .bind(&input.case_ref)
    .bind(version)
    .bind(sections.join(","))
    .bind(sealed)
    .bind(&staff.id)
    .bind(now)
    .execute(&mut *tx)
    .await;
    match inserted {
        Err(e) if common::is_duplicate(&e) => return Err(ApiError::conflict("another version of this assessment was saved at the same moment: open the newest and save again")),
        other => other?,
    };
    let entry = chronology::Entry {
        subject_ref: subject_ref.clone(),
        case_ref: input.case_ref.clone(),
        event: "universal_assessment".into(),
        code: format!("version-{version}"),
        item_id: id.clone(),
        staff_id: staff.id.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(&mut tx, &entry).await?;
    tx.commit().await?;
    tracing::info!(assessment_id = %id, version, "universal assessment saved");
    Ok(json!({"id": id, "subject_ref": subject_ref, "version": version, "sections": sections}))
}

const COLUMNS: &str = "id, subject_ref, case_ref, version, sections, recorded_by, recorded_at_ms";

fn row(r: &sqlx::any::AnyRow) -> Value {
    let mut v = row_json(r, &["id", "subject_ref", "case_ref", "recorded_by"], &["version", "recorded_at_ms"], &["sections"]);
    v["sections"] = json!(common::list(&r.try_get::<String, _>("sections").unwrap_or_default()));
    v
}

/// Every version of a person's assessment, newest first (without content).
pub async fn versions(ctx: &Ctx, subject_ref: &str) -> Result<Vec<Value>, ApiError> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM universal_assessments WHERE subject_ref = $1 ORDER BY version DESC LIMIT 500"))
        .bind(subject_ref)
        .fetch_all(&ctx.pool)
        .await?;
    Ok(rows.iter().map(row).collect())
}

/// One version: its record and the assessment, opened.
pub async fn load(ctx: &Ctx, id: &str) -> Result<(Value, UniversalAssessment), ApiError> {
    common::id(id)?;
    let r = sqlx::query(&format!("SELECT {COLUMNS}, assessment FROM universal_assessments WHERE id = $1"))
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or_else(|| ApiError::not_found("universal assessment"))?;
    let encoded = common::opened(ctx, &r, "assessment")?;
    let uaf = UniversalAssessment::decode(hex::decode(encoded).map_err(ApiError::internal)?.as_slice()).map_err(ApiError::internal)?;
    Ok((row(&r), uaf))
}

/// The newest version of a person's assessment, if there is one.
pub async fn latest(ctx: &Ctx, subject_ref: &str) -> Result<Option<(Value, UniversalAssessment)>, ApiError> {
    let id: Option<String> = sqlx::query("SELECT id FROM universal_assessments WHERE subject_ref = $1 ORDER BY version DESC LIMIT 1")
        .bind(subject_ref)
        .fetch_optional(&ctx.pool)
        .await?
        .map(|r| r.try_get("id"))
        .transpose()?;
    match id {
        Some(id) => Ok(Some(load(ctx, &id).await?)),
        None => Ok(None),
    }
}

pub async fn post(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: UafInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(save(&ctx, &staff, &input).await?)))
}

/// `GET /universal-assessments?subject_ref=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BySubject {
    pub subject_ref: Option<String>,
}

pub async fn list(State(ctx): State<Ctx>, Query(q): Query<BySubject>) -> Result<Json<Value>, ApiError> {
    let subject_ref = q.subject_ref.ok_or_else(|| ApiError::bad_request("name the survivor: ?subject_ref="))?;
    let subject_ref = common::subject_of(&ctx, None, Some(&subject_ref))?;
    Ok(Json(Value::Array(versions(&ctx, &subject_ref).await?)))
}

/// `GET /universal-assessments/{id}`: the version's record and `uaf`, ready for a referral's
/// `uaf` field.
pub async fn one(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (mut v, uaf) = load(&ctx, &id).await?;
    v["uaf"] = to_json(&ctx.isp().schema, &uaf);
    Ok(Json(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assessment_round_trips_through_its_json_and_says_what_is_filled() {
        let schema = isp::Schema::load().expect("schema");
        let json = json!({
            "housing": {"currentSituation": "Synthetic words", "tenure": "TENURE_COUNCIL", "areasUnsafe": ["Synthetic Ward"]},
            "immigration": {"recourseToPublicFunds": "PUBLIC_FUNDS_NO_RECOURSE"},
            "supportNeeds": {"needs": ["SUPPORT_NEED_REFUGE", "SUPPORT_NEED_MONEY_ADVICE"]},
            "safety": {},
        });
        let uaf = parse(&schema, &json).expect("parses");
        assert_eq!(filled(&uaf), vec!["housing", "immigration", "support_needs"], "an empty section is not filled");
        let back = to_json(&schema, &uaf);
        assert_eq!(back["housing"]["currentSituation"], "Synthetic words");
        assert_eq!(back["immigration"]["recourseToPublicFunds"], "PUBLIC_FUNDS_NO_RECOURSE");
        assert_eq!(parse(&schema, &back).expect("parses again"), uaf);
    }

    #[test]
    fn a_bad_assessment_is_refused_without_repeating_its_values() {
        let schema = isp::Schema::load().expect("schema");
        let e = parse(&schema, &json!({"housing": {"tenure": "Synthetic Lane 17"}})).unwrap_err();
        assert!(!e.contains("Synthetic Lane"), "{e}");
        let e = parse(&schema, &json!({"hosuing": {}})).unwrap_err();
        assert!(e.contains("UniversalAssessment"), "{e}");
    }

    #[test]
    fn every_section_is_a_category_of_its_own() {
        let schema = isp::Schema::load().expect("schema");
        let categories = schema.kind_categories(isp::Kind::IdvaReferral);
        for (section, _) in SECTIONS {
            assert!(categories.contains(&format!("uaf.{section}")), "uaf.{section} is not a category of an IDVA referral");
        }
        assert!(categories.iter().filter(|c| c.starts_with("uaf.")).all(|c| SECTIONS.iter().any(|(s, _)| *c == format!("uaf.{s}")) || c == "uaf.record"));
    }
}
