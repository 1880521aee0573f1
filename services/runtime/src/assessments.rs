//! DASH risk assessments recorded at this agency: the only source of a disclosure's risk.
//!
//! `POST /dash-assessments` takes the answers (yes, no or not known, each with its source),
//! scores and bands them ([`isp::risk`]), records professional judgement (which may raise the
//! band, never lower it) with the officer (the logged-in staff member) and the reason (sealed
//! at rest), and signs the summary once. A send names the assessment (`assessment_id`); the
//! service puts the signed summary and the answers in the payload and the band in the header
//! ([`fill`]). A high result sets the two referrals the toolkit says it should trigger, to an
//! IDVA service and to MARAC, as deadlines on the assessment: tasks on the dashboard until
//! a referral of that kind naming the assessment is sent.

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::get,
};
use isp::{Role, risk};
use prost::Message as _;
use proto::v1::{DashAnswer, DashAssessment, DashItem, Kind, RiskLevel};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::{
    auth::Staff,
    chronology,
    ctx::Ctx,
    db::{Migration, Tx},
    deadlines,
    error::{ApiError, clear_field, json_body},
    query::{Page, SubjectIdentity},
};

pub fn migrations() -> Vec<Migration> {
    vec![Migration { version: 73, description: "risk assessments", sql: include_str!("../migrations/0073_assessments.sql") }]
}

/// Where an answer came from.
pub const SOURCES: [&str; 4] = ["survivor", "professional", "records", "third_party"];

/// `POST /dash-assessments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashInput {
    #[serde(default)]
    pub checklist_version: Option<String>,
    pub case_ref: String,
    /// The person assessed, only to compute the subject ref (or the ref itself).
    #[serde(default)]
    pub subject: Option<SubjectIdentity>,
    #[serde(default)]
    pub subject_ref: Option<String>,
    /// One answer per question, in order: `yes`, `no` or `not_known` (`dont_know` is taken too).
    pub answers: Vec<String>,
    /// The source of each answer, in order ([`SOURCES`]); every answer from the survivor
    /// when absent.
    #[serde(default)]
    pub sources: Vec<String>,
    /// The band professional judgement puts the case in, when above the score's.
    #[serde(default)]
    pub professional_judgement: Option<String>,
    /// Why, in words (kept at this agency, sealed): required with a judgement that raises.
    #[serde(default)]
    pub judgement_reason: String,
}

/// A checklist scored: its summary (unsigned) and the answers as items.
pub fn assess(input: &DashInput, today: &str, assessor: &str) -> Result<DashAssessment, String> {
    let version = input.checklist_version.as_deref().unwrap_or(risk::CHECKLISTS[0].version);
    let checklist = risk::checklist(version).ok_or_else(|| {
        format!("unknown checklist version (known: {})", risk::CHECKLISTS.iter().map(|c| c.version).collect::<Vec<_>>().join(", "))
    })?;
    let questions = checklist.questions.len();
    if input.answers.len() != questions {
        return Err(format!("{version} has {questions} questions; {} answers were given", input.answers.len()));
    }
    if !input.sources.is_empty() && input.sources.len() != questions {
        return Err(format!("sources: one per answer ({questions}), or none"));
    }
    let items = input
        .answers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let answer = match a.as_str() {
                "yes" => DashAnswer::Yes,
                "no" => DashAnswer::No,
                "not_known" | "dont_know" => DashAnswer::DontKnow,
                _ => return Err(format!("answer {} must be yes, no or not_known", i + 1)),
            };
            let source = input.sources.get(i).map_or("survivor", String::as_str);
            if !SOURCES.contains(&source) {
                return Err(format!("source {} must be one of {}", i + 1, SOURCES.join(", ")));
            }
            Ok(DashItem { question: i as u32 + 1, answer: answer as i32, source: source.to_owned() })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let score = items.iter().filter(|i| i.answer == DashAnswer::Yes as i32).count() as u32;
    let judgement = match input.professional_judgement.as_deref() {
        None | Some("") => None,
        Some(j) => Some(isp::policy::parse_risk(j).ok_or_else(|| "professional_judgement is standard, medium or high".to_owned())?),
    };
    let raised = judgement.is_some_and(|j| j as i32 > risk::band_of_score(score) as i32);
    if raised && input.judgement_reason.trim().is_empty() {
        return Err("a professional judgement that raises the band needs its reason (judgement_reason)".into());
    }
    Ok(DashAssessment {
        checklist_version: version.to_owned(),
        assessed_on: today.to_owned(),
        score,
        risk: risk::band(score, judgement) as i32,
        professional_judgement: raised,
        items,
        assessor: assessor.to_owned(),
        judgement_officer: if raised { assessor.to_owned() } else { String::new() },
        ..Default::default()
    })
}

/// Records a scored checklist as `staff`; its id, subject ref and signed summary.
pub async fn record(ctx: &Ctx, staff: &Staff, input: &DashInput) -> Result<Value, ApiError> {
    isp::clear::optional("case_ref", &input.case_ref, isp::clear::is_case_ref, isp::clear::CASE_REF).map_err(clear_field)?;
    let isp = ctx.isp();
    let subject_ref = crate::query::subject_ref_of(&isp, input.subject.as_ref(), input.subject_ref.as_deref())?;
    chronology::check_note("judgement_reason", &input.judgement_reason)?;
    let now = ctx.config.clock.now_ms();
    let mut summary = assess(input, &chronology::date_of(now), &staff.id).map_err(ApiError::bad_request)?;
    let id = uuid::Uuid::now_v7().to_string();
    summary.assessment_id = id.clone();
    let items = std::mem::take(&mut summary.items);
    risk::sign_summary(&isp.keys, &mut summary);
    let band = summary.risk();
    let reason = if input.judgement_reason.trim().is_empty() { String::new() } else { ctx.seal_at_rest(&input.judgement_reason).map_err(ApiError::internal)? };
    let answers: Vec<String> = items.iter().map(|i| format!("{}:{}", i.answer, i.source)).collect();
    let mut tx = ctx.pool.begin().await?;
    sqlx::query(
        "INSERT INTO risk_assessments (id, case_ref, subject_ref, checklist_version, answers, score, risk, professional_judgement, judgement_reason, assessor, summary, assessed_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(&id)
    .bind(&input.case_ref)
    .bind(&subject_ref)
    .bind(&summary.checklist_version)
    // The answers stay here, sealed to this agency's key; they travel only inside a referral
    // to an agency the policy lets receive them.
    .bind(ctx.seal_at_rest(&answers.join(",")).map_err(ApiError::internal)?)
    .bind(i64::from(summary.score))
    .bind(isp::policy::risk_name(band))
    .bind(i64::from(summary.professional_judgement))
    .bind(reason)
    .bind(&staff.id)
    .bind(hex::encode(summary.encode_to_vec()))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    chronology::add(
        &mut tx,
        &chronology::Entry { subject_ref: subject_ref.clone(), case_ref: input.case_ref.clone(), event: "assessment".into(), code: isp::policy::risk_name(band).into(), item_id: id.clone(), staff_id: staff.id.clone(), at_ms: now, ..Default::default() },
    )
    .await?;
    let tasks = if band == RiskLevel::High { referral_tasks(ctx, &mut tx, &id, &subject_ref, &input.case_ref, now).await? } else { Vec::new() };
    tx.commit().await?;
    tracing::info!(assessment_id = %id, score = summary.score, risk = isp::policy::risk_name(band), "DASH checklist recorded");
    summary.items = items;
    Ok(json!({
        "id": id,
        "subject_ref": subject_ref,
        "score": summary.score,
        "risk": isp::policy::risk_name(band),
        "professional_judgement": summary.professional_judgement,
        "marac_criteria_met": band == RiskLevel::High,
        "tasks": tasks,
        "assessment": ctx.isp().schema.payload_to_json(&proto::v1::Payload {
            body: Some(proto::v1::payload::Body::IdvaReferral(proto::v1::IdvaReferral { dash: Some(summary), ..Default::default() })),
        })["idvaReferral"]["dash"].clone(),
    }))
}

/// The referrals a high result calls for ("should automatically trigger referral to an IDVA
/// service and MARAC"), as deadlines on the assessment: an agency does not refer to its own
/// kind of service.
async fn referral_tasks(ctx: &Ctx, tx: &mut Tx, id: &str, subject_ref: &str, case_ref: &str, now: i64) -> Result<Vec<Value>, ApiError> {
    let isp = ctx.isp();
    let due = now + isp::policy::Deadlines::ms(isp.policy.deadlines.high_risk_referral_hours);
    let mut tasks = Vec::new();
    for (code, kind, role) in [(deadlines::REFER_IDVA, Kind::IdvaReferral, Role::Idva), (deadlines::REFER_MARAC, Kind::MaracReferral, Role::Marac)] {
        if isp.role == role || isp.directory.with_role(role).next().is_none() {
            continue;
        }
        deadlines::set(tx, &deadlines::Deadline { code: code.into(), target: id.into(), subject_ref: subject_ref.into(), case_ref: case_ref.into(), due_at_ms: due, ..Default::default() }).await?;
        tasks.push(json!({"code": code, "kind": isp::kind::name(kind), "due_at_ms": due}));
    }
    Ok(tasks)
}

/// The recorded assessment `id`: its signed summary with the answers, and its subject.
pub async fn load(ctx: &Ctx, id: &str) -> Result<(DashAssessment, String), ApiError> {
    isp::clear::required("assessment_id", id, isp::clear::is_envelope_id, isp::clear::ENVELOPE_ID).map_err(clear_field)?;
    let row = sqlx::query("SELECT summary, answers, subject_ref FROM risk_assessments WHERE id = $1")
        .bind(id)
        .fetch_optional(&ctx.pool)
        .await?
        .ok_or_else(|| ApiError::bad_request("assessment_id: no DASH assessment of that id is recorded at this agency"))?;
    let stored: String = row.try_get("summary")?;
    let mut summary = DashAssessment::decode(hex::decode(stored).map_err(ApiError::internal)?.as_slice()).map_err(ApiError::internal)?;
    let answers = ctx.isp().keys.open_at_rest(&row.try_get::<String, _>("answers")?).map_err(ApiError::internal)?;
    summary.items = answers
        .split(',')
        .enumerate()
        .map(|(i, a)| {
            let (answer, source) = a.split_once(':').unwrap_or((a, ""));
            DashItem { question: i as u32 + 1, answer: answer.parse().unwrap_or_default(), source: source.to_owned() }
        })
        .collect();
    Ok((summary, row.try_get("subject_ref")?))
}

/// Puts the named assessment in a send: its signed summary and answers in the payload's
/// `dash` (where the kind has one) and its band in the header. The subject must be the
/// assessment's.
pub async fn fill(ctx: &Ctx, out: &mut isp::Outgoing, id: &str) -> Result<(), ApiError> {
    let (summary, subject_ref) = load(ctx, id).await?;
    if !out.subject_ref.is_empty() && out.subject_ref != subject_ref {
        return Err(ApiError::bad_request("assessment_id: that assessment is of another person than this referral's subject"));
    }
    out.subject_ref = subject_ref;
    out.risk = summary.risk();
    if let Some(slot) = risk::summary_slot(&mut out.payload) {
        *slot = Some(summary);
    }
    Ok(())
}

/// After a send naming an assessment: the referral task of its kind is done.
pub async fn referral_sent(ctx: &Ctx, assessment_id: &str, kind: Kind) -> Result<(), ApiError> {
    let code = match kind {
        Kind::IdvaReferral => deadlines::REFER_IDVA,
        Kind::MaracReferral => deadlines::REFER_MARAC,
        _ => return Ok(()),
    };
    let mut tx = ctx.pool.begin().await?;
    deadlines::meet(&mut tx, code, assessment_id, crate::deadlines::Resolution::Met, ctx.config.clock.now_ms()).await?;
    tx.commit().await?;
    Ok(())
}

async fn post(State(ctx): State<Ctx>, staff: Staff, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let input: DashInput = json_body(&body)?;
    Ok((StatusCode::CREATED, Json(record(&ctx, &staff, &input).await?)))
}

const COLUMNS: &str = "id, case_ref, subject_ref, checklist_version, score, risk, professional_judgement, assessor, assessed_at_ms";

fn row(r: &sqlx::any::AnyRow) -> Value {
    let mut v = crate::query::row_json(r, &["id", "case_ref", "subject_ref", "checklist_version", "risk", "assessor"], &["score", "assessed_at_ms"], &[]);
    v["professional_judgement"] = json!(r.try_get::<i64, _>("professional_judgement").unwrap_or_default() != 0);
    v
}

/// `GET /dash-assessments`, paged by `id`.
async fn list(State(ctx): State<Ctx>, Query(page): Query<Page>) -> Result<Json<Value>, ApiError> {
    let rows = page.rows(&ctx.pool, &format!("SELECT {COLUMNS} FROM risk_assessments"), "id").await?;
    Ok(Json(Value::Array(rows.iter().map(row).collect())))
}

/// `GET /dash-assessments/{id}`: the record, its signed summary and the answers.
async fn one(State(ctx): State<Ctx>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let (summary, _) = load(&ctx, &id).await.map_err(|e| if e.status == StatusCode::BAD_REQUEST && e.body["detail"].as_str().is_some_and(|d| d.contains("no DASH")) { ApiError::not_found("DASH assessment") } else { e })?;
    let r = sqlx::query(&format!("SELECT {COLUMNS}, judgement_reason FROM risk_assessments WHERE id = $1")).bind(&id).fetch_one(&ctx.pool).await?;
    let mut v = row(&r);
    let reason: String = r.try_get("judgement_reason")?;
    v["judgement_reason"] = json!(if reason.is_empty() { String::new() } else { ctx.isp().keys.open_at_rest(&reason).map_err(ApiError::internal)? });
    v["summary"] = ctx.isp().schema.payload_to_json(&proto::v1::Payload {
        body: Some(proto::v1::payload::Body::IdvaReferral(proto::v1::IdvaReferral { dash: Some(summary), ..Default::default() })),
    })["idvaReferral"]["dash"]
        .clone();
    Ok(Json(v))
}

/// The newest assessments of a subject (or of anyone, with None), for a page's choice.
pub async fn newest(ctx: &Ctx, subject_ref: Option<&str>, limit: i64) -> Result<Vec<Value>, ApiError> {
    let rows = match subject_ref {
        Some(s) => sqlx::query(&format!("SELECT {COLUMNS} FROM risk_assessments WHERE subject_ref = $1 ORDER BY assessed_at_ms DESC LIMIT $2")).bind(s.to_owned()).bind(limit).fetch_all(&ctx.pool).await?,
        None => sqlx::query(&format!("SELECT {COLUMNS} FROM risk_assessments ORDER BY assessed_at_ms DESC LIMIT $1")).bind(limit).fetch_all(&ctx.pool).await?,
    };
    Ok(rows.iter().map(row).collect())
}

pub fn routes() -> Router<Ctx> {
    Router::new().route("/dash-assessments", get(list).post(post)).route("/dash-assessments/{id}", get(one))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(yes: usize, judgement: Option<&str>) -> DashInput {
        DashInput {
            checklist_version: None,
            case_ref: "c".into(),
            subject: None,
            subject_ref: None,
            answers: (0..24).map(|i| if i < yes { "yes" } else { "no" }.to_string()).collect(),
            sources: Vec::new(),
            professional_judgement: judgement.map(str::to_owned),
            judgement_reason: if judgement.is_some() { "escalating stalking".into() } else { String::new() },
        }
    }

    #[test]
    fn scores_bands_and_judgement_only_raises_with_an_officer() {
        assert_eq!(assess(&input(14, None), "d", "o").unwrap().risk(), RiskLevel::High);
        assert_eq!(assess(&input(13, None), "d", "o").unwrap().risk(), RiskLevel::Medium);
        let raised = assess(&input(3, Some("high")), "d", "hsg.officer").unwrap();
        assert_eq!((raised.risk(), raised.professional_judgement, raised.judgement_officer.as_str()), (RiskLevel::High, true, "hsg.officer"));
        let not_lowered = assess(&input(15, Some("standard")), "d", "o").unwrap();
        assert_eq!((not_lowered.risk(), not_lowered.professional_judgement), (RiskLevel::High, false));
        let mut no_reason = input(3, Some("high"));
        no_reason.judgement_reason.clear();
        assert!(assess(&no_reason, "d", "o").unwrap_err().contains("reason"));
        assert_eq!(risk::inconsistency(&raised), None);
    }

    #[test]
    fn wrong_length_answer_or_source_is_refused() {
        let mut i = input(1, None);
        i.answers.pop();
        assert!(assess(&i, "d", "o").unwrap_err().contains("24 questions"));
        let mut i = input(1, None);
        i.answers[3] = "maybe".into();
        assert!(assess(&i, "d", "o").unwrap_err().contains("answer 4"));
        let mut i = input(1, None);
        i.sources = vec!["survivor".into(); 24];
        i.sources[5] = "gossip".into();
        assert!(assess(&i, "d", "o").unwrap_err().contains("source 6"));
        let mut i = input(1, None);
        i.checklist_version = Some("invented-v1".into());
        assert!(assess(&i, "d", "o").unwrap_err().contains("unknown checklist"));
    }
}
