//! The DASH risk identification checklist: score = number of Yes answers; 14 or more is
//! high, 10-13 medium, 0-9 standard. Professional judgement may raise the band, never lower
//! it. The checklist (its version and number of questions) is data.

use axum::{Json, body::Bytes, extract::{Query, State}, http::StatusCode};
use proto::v1::{DashAnswer, DashAssessment, DashItem, RiskLevel};
use runtime::{Ctx, api::{ApiError, Page, json_body}};
use serde::Deserialize;
use serde_json::{Value, json};

/// A checklist version: its name and how many questions it has.
pub struct Checklist {
    pub version: &'static str,
    pub questions: usize,
}

/// The versions this service knows. SafeLives' current checklist has 24 questions; the
/// older police version had 27.
pub const CHECKLISTS: [Checklist; 2] = [
    Checklist { version: "safelives-dash-2024", questions: 24 },
    Checklist { version: "police-dash-27", questions: 27 },
];

/// Bands a score, raised by judgement where the professional says so.
pub fn band(score: u32, judgement: Option<RiskLevel>) -> RiskLevel {
    let by_score = match score {
        14.. => RiskLevel::High,
        10..=13 => RiskLevel::Medium,
        _ => RiskLevel::Standard,
    };
    match judgement {
        Some(j) if (j as i32) > (by_score as i32) => j,
        _ => by_score,
    }
}

#[derive(Debug, Deserialize)]
pub struct DashInput {
    #[serde(default)]
    pub checklist_version: Option<String>,
    pub case_ref: String,
    /// The person assessed, only to compute the subject ref.
    pub subject: runtime::api::SubjectIdentity,
    /// One answer per question, in order: "yes", "no" or "dont_know".
    pub answers: Vec<String>,
    /// Optional: the band professional judgement puts the case in.
    #[serde(default)]
    pub professional_judgement: Option<String>,
}

/// Validates and scores a checklist.
pub fn assess(input: &DashInput, today: &str) -> Result<DashAssessment, String> {
    let version = input.checklist_version.as_deref().unwrap_or(CHECKLISTS[0].version);
    let checklist = CHECKLISTS
        .iter()
        .find(|c| c.version == version)
        .ok_or_else(|| format!("unknown checklist version {version:?}"))?;
    if input.answers.len() != checklist.questions {
        return Err(format!("{version} has {} questions; {} answers were given", checklist.questions, input.answers.len()));
    }
    let items = input
        .answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let answer = match a.as_str() {
                "yes" => DashAnswer::Yes,
                "no" => DashAnswer::No,
                "dont_know" => DashAnswer::DontKnow,
                _ => return Err(format!("answer {} must be yes, no or dont_know", i + 1)),
            };
            Ok(DashItem { question: i as u32 + 1, answer: answer as i32, source: String::new() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let score = items.iter().filter(|i| i.answer == DashAnswer::Yes as i32).count() as u32;
    let judgement = match input.professional_judgement.as_deref() {
        None => None,
        Some(j) => Some(isp::policy::parse_risk(j).ok_or_else(|| format!("unknown judgement {j:?} (standard, medium, high)"))?),
    };
    Ok(DashAssessment {
        checklist_version: version.to_owned(),
        assessed_on: today.to_owned(),
        score,
        risk: band(score, judgement) as i32,
        professional_judgement: judgement.is_some_and(|j| j as i32 > band(score, None) as i32),
        items,
    })
}

fn today() -> String {
    let days = isp::now_ms() / 86_400_000;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `POST /dash-assessments`: scores and records a checklist, and returns it as the
/// `DashAssessment` to attach to referrals.
pub async fn record(State(ctx): State<Ctx>, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: DashInput = json_body(&body)?;
    isp::clear::optional("case_ref", &input.case_ref, isp::clear::is_case_ref, isp::clear::CASE_REF).map_err(runtime::api::clear_field)?;
    let assessment = assess(&input, &today()).map_err(ApiError::bad_request)?;
    let id = uuid::Uuid::now_v7().to_string();
    let subject_ref = ctx.isp().keys.subject_ref(&input.subject.full_name, &input.subject.date_of_birth).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let risk = isp::policy::risk_name(assessment.risk());
    sqlx::query(
        "INSERT INTO dash_assessments (id, case_ref, subject_ref, checklist_version, answers, score, risk, professional_judgement, assessed_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(&input.case_ref)
    .bind(&subject_ref)
    .bind(&assessment.checklist_version)
    // The answers stay at housing, sealed to its own key; the score and band are what is shared.
    .bind(ctx.seal_at_rest(&input.answers.join(",")).map_err(ApiError::internal)?)
    .bind(assessment.score as i64)
    .bind(risk)
    .bind(assessment.professional_judgement as i64)
    .bind(isp::now_ms())
    .execute(&ctx.pool)
    .await?;
    tracing::info!(assessment_id = %id, score = assessment.score, risk, "DASH checklist recorded");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id,
            "subject_ref": subject_ref,
            "score": assessment.score,
            "risk": risk,
            "marac_criteria_met": assessment.score >= 14,
            "assessment": dash_json(&ctx, &assessment),
        })),
    ))
}

/// The assessment in the protobuf JSON mapping, ready to place in a referral payload.
fn dash_json(ctx: &Ctx, assessment: &DashAssessment) -> Value {
    let payload = proto::v1::Payload {
        body: Some(proto::v1::payload::Body::IdvaReferral(proto::v1::IdvaReferral { dash: Some(assessment.clone()), ..Default::default() })),
    };
    ctx.isp().schema.payload_to_json(&payload)["idvaReferral"]["dash"].clone()
}

/// `GET /dash-assessments`, paged by `id`.
pub async fn list(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page.rows(&ctx.pool, "SELECT id, case_ref, subject_ref, checklist_version, score, risk, professional_judgement, assessed_at_ms FROM dash_assessments", "id").await?;
    Ok(Json(Value::Array(
        rows.iter()
            .map(|r| runtime::api::row_json(r, &["id", "case_ref", "subject_ref", "checklist_version", "risk"], &["score", "professional_judgement", "assessed_at_ms"], &[]))
            .collect(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(yes: usize, judgement: Option<&str>) -> DashInput {
        DashInput {
            checklist_version: None,
            case_ref: "c".into(),
            subject: runtime::api::SubjectIdentity { full_name: "x".into(), date_of_birth: "y".into() },
            answers: (0..24).map(|i| if i < yes { "yes" } else { "no" }.to_string()).collect(),
            professional_judgement: judgement.map(str::to_owned),
        }
    }

    #[test]
    fn bands_and_judgement_only_raises() {
        assert_eq!(assess(&input(14, None), "d").unwrap().risk(), RiskLevel::High);
        assert_eq!(assess(&input(13, None), "d").unwrap().risk(), RiskLevel::Medium);
        assert_eq!(assess(&input(9, None), "d").unwrap().risk(), RiskLevel::Standard);
        let raised = assess(&input(3, Some("high")), "d").unwrap();
        assert_eq!((raised.risk(), raised.professional_judgement), (RiskLevel::High, true));
        let not_lowered = assess(&input(15, Some("standard")), "d").unwrap();
        assert_eq!((not_lowered.risk(), not_lowered.professional_judgement), (RiskLevel::High, false));
    }

    #[test]
    fn wrong_length_or_answer_is_refused() {
        let mut i = input(1, None);
        i.answers.pop();
        assert!(assess(&i, "d").unwrap_err().contains("24 questions"));
        let mut i = input(1, None);
        i.answers[3] = "maybe".into();
        assert!(assess(&i, "d").unwrap_err().contains("answer 4"));
    }

    #[test]
    fn today_is_a_date() {
        let t = today();
        assert_eq!(t.len(), 10);
        assert!(t.starts_with("20"));
    }
}
