//! What a perpetrator pathway tells the survivor's advocate. An engagement update names the
//! survivor by the link token the pathway was given for her; it is filed under her IDVA case
//! (her open case, the newest; else her newest), with a chronology entry. A `disengaged`
//! update is a safety signal: in the same transaction as the update it raises an alert on
//! that case (the update, marked until reviewed) and a deadline due at once
//! ([`DISENGAGED`]), which the deadline watcher escalates on the dashboard and in the ledger
//! at its next look, and which is met only when the IDVA records that it reviewed the safety
//! plan ([`review`], or a new version of the plan).
//!
//! The one place the `engagement_updates` table is written.

use axum::http::StatusCode;
use proto::v1::{Engagement, Header, PerpetratorEngagementUpdate};
use runtime::{
    Ctx, Tx,
    api::ApiError,
    auth::Staff,
    chronology::{self, Entry},
    deadlines::{self, Deadline},
};
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::Row as _;

use crate::{case::check_id, store};

/// The deadline a `disengaged` update sets on the survivor's case: due at once, met when the
/// IDVA records that it reviewed the safety plan.
pub const DISENGAGED: &str = "perpetrator_disengaged";

/// The survivor's subject ref behind what an agency without the subject key (a perpetrator
/// pathway) calls her: the link token it was given for her, matched against this service's
/// cases. A token that matches none stays as it is.
pub async fn own_subject(ctx: &Ctx, tx: &mut Tx, pathway: &str, reference: &str) -> anyhow::Result<String> {
    if !reference.starts_with("l-") {
        return Ok(reference.to_owned());
    }
    let keys = &ctx.isp().keys;
    let subjects = sqlx::query("SELECT DISTINCT subject_ref FROM idva_cases").fetch_all(&mut **tx).await?;
    for row in subjects {
        let subject: String = row.try_get("subject_ref")?;
        if keys.link_ref(pathway, &subject).is_ok_and(|link| link == reference) {
            return Ok(subject);
        }
    }
    Ok(reference.to_owned())
}

/// The case an update about `subject_ref` is filed under: her open case received last, else
/// her case received last.
async fn case_of(tx: &mut Tx, subject_ref: &str) -> sqlx::Result<Option<store::Case>> {
    if subject_ref.is_empty() {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT envelope_id FROM idva_cases WHERE subject_ref = $1 ORDER BY CASE WHEN status = $2 THEN 1 ELSE 0 END, received_at_ms DESC, envelope_id DESC LIMIT 1",
    )
    .bind(subject_ref)
    .bind(crate::case::Status::Closed.code())
    .fetch_optional(&mut **tx)
    .await?;
    match row {
        Some(r) => store::get(&mut **tx, &r.try_get::<String, _>("envelope_id")?).await,
        None => Ok(None),
    }
}

/// Files an engagement update received from a pathway (in the inbox transaction), and raises
/// the alert a `disengaged` one calls for.
pub async fn update_received(ctx: &Ctx, tx: &mut Tx, h: &Header, u: &PerpetratorEngagementUpdate) -> anyhow::Result<()> {
    let subject_ref = own_subject(ctx, tx, &h.sender, &h.subject_ref).await?;
    let case = case_of(tx, &subject_ref).await?;
    let now = ctx.config.clock.now_ms();
    let engagement = u.engagement();
    let as_of = if runtime::chronology::day_ms(&u.as_of).is_some() { u.as_of.as_str() } else { "" };
    let stored = sqlx::query(
        "INSERT INTO engagement_updates (envelope_id, subject_ref, pathway_agency, engagement, received_at_ms, case_id, as_of, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(&h.envelope_id)
    .bind(&subject_ref)
    .bind(&h.sender)
    .bind(engagement.as_str_name())
    .bind(now)
    .bind(case.as_ref().map_or("", |c| c.id.as_str()))
    .bind(as_of)
    .bind(ctx.seal_at_rest(u.note.trim())?)
    .execute(&mut **tx)
    .await?;
    let Some(case) = case.filter(|_| stored.rows_affected() == 1) else {
        if stored.rows_affected() == 1 {
            tracing::warn!(envelope_id = %h.envelope_id, pathway = %h.sender, "an engagement update about nobody with a case here; kept unfiled");
        }
        return Ok(());
    };
    let entry = Entry {
        subject_ref: case.subject_ref.clone(),
        case_ref: case.case_ref.clone(),
        event: "perpetrator_engagement".into(),
        code: engagement.as_str_name().into(),
        item_id: h.envelope_id.clone(),
        counterpart: h.sender.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add(tx, &entry).await?;
    if engagement == Engagement::Disengaged {
        let alert = Deadline {
            code: DISENGAGED.into(),
            target: h.envelope_id.clone(),
            subject_ref: case.subject_ref.clone(),
            case_ref: case.case_ref.clone(),
            counterpart: h.sender.clone(),
            due_at_ms: now,
        };
        deadlines::set(tx, &alert).await?;
        store::touch(tx, &case.id, now).await?;
        tracing::warn!(case_id = %case.id, pathway = %h.sender, "the perpetrator disengaged from his pathway: alert raised on the survivor's case");
    }
    Ok(())
}

/// Resolves every disengagement alert open on a case (its safety plan was reviewed, or a new
/// version saved), in `tx`: how many.
pub async fn resolve(tx: &mut Tx, case_id: &str, staff_id: &str, now: i64) -> sqlx::Result<usize> {
    let open = open_alerts(&mut **tx, case_id).await?;
    for envelope_id in &open {
        sqlx::query("UPDATE engagement_updates SET reviewed_at_ms = $1, reviewed_by = $2 WHERE envelope_id = $3 AND reviewed_at_ms IS NULL")
            .bind(now)
            .bind(staff_id)
            .bind(envelope_id)
            .execute(&mut **tx)
            .await?;
        deadlines::meet(tx, DISENGAGED, envelope_id, runtime::deadlines::Resolution::Met, now).await?;
    }
    Ok(open.len())
}

/// The disengaged updates of a case not yet reviewed (their envelope ids), oldest first.
async fn open_alerts<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(e: E, case_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_as::<_, (String,)>(
        "SELECT envelope_id FROM engagement_updates WHERE case_id = $1 AND engagement = $2 AND reviewed_at_ms IS NULL ORDER BY received_at_ms, envelope_id",
    )
    .bind(case_id)
    .bind(Engagement::Disengaged.as_str_name())
    .fetch_all(e)
    .await
    .map(|rows| rows.into_iter().map(|(id,)| id).collect())
}

/// The disengaged updates filed under a case (their envelope ids: the targets of the
/// deadlines they set), oldest first.
pub async fn disengaged_updates(pool: &sqlx::AnyPool, case_id: &str) -> sqlx::Result<Vec<String>> {
    sqlx::query_as::<_, (String,)>("SELECT envelope_id FROM engagement_updates WHERE case_id = $1 AND engagement = $2 ORDER BY received_at_ms, envelope_id")
        .bind(case_id)
        .bind(Engagement::Disengaged.as_str_name())
        .fetch_all(pool)
        .await
        .map(|rows| rows.into_iter().map(|(id,)| id).collect())
}

/// `POST /cases/{id}/safety-plan-reviewed` (the body may be empty).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReviewInput {
    #[serde(default)]
    pub note: String,
}

impl std::fmt::Debug for ReviewInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReviewInput").field("note", &format!("<{} chars>", self.note.chars().count())).finish()
    }
}

/// Records that the IDVA reviewed the survivor's safety plan after the perpetrator
/// disengaged: resolves the case's open alerts (409 when there is none). How many.
pub async fn review(ctx: &Ctx, staff: &Staff, id: &str, input: &ReviewInput) -> Result<usize, ApiError> {
    check_id(id)?;
    let note = input.note.trim();
    runtime::chronology::check_note("note", note)?;
    let now = ctx.config.clock.now_ms();
    let mut tx = ctx.pool.begin().await?;
    let case = store::get(&mut *tx, id).await?.ok_or_else(|| ApiError::not_found("IDVA case"))?;
    let resolved = resolve(&mut tx, id, &staff.id, now).await?;
    if resolved == 0 {
        return Err(ApiError { status: StatusCode::CONFLICT, body: json!({"error": "no_alert", "detail": "no disengagement alert is open on this case: there is nothing to review"}) });
    }
    let entry = Entry {
        subject_ref: case.subject_ref.clone(),
        case_ref: case.case_ref.clone(),
        event: "safety_plan_reviewed".into(),
        code: DISENGAGED.into(),
        item_id: case.id.clone(),
        staff_id: staff.id.clone(),
        at_ms: now,
        ..Default::default()
    };
    chronology::add_note(ctx, &mut tx, entry, note).await?;
    store::touch(&mut tx, id, now).await?;
    tx.commit().await?;
    tracing::info!(case_id = %id, resolved, "the safety plan was reviewed after the perpetrator disengaged");
    Ok(resolved)
}

/// A case's engagement updates, notes opened, oldest first; `alert` marks a disengaged one
/// not yet reviewed.
pub async fn updates_of(ctx: &Ctx, case_id: &str) -> Result<Vec<Value>, ApiError> {
    let rows = sqlx::query(
        "SELECT envelope_id, pathway_agency, engagement, received_at_ms, as_of, note, reviewed_at_ms, reviewed_by FROM engagement_updates WHERE case_id = $1 ORDER BY received_at_ms, envelope_id",
    )
    .bind(case_id)
    .fetch_all(&ctx.pool)
    .await?;
    let isp = ctx.isp();
    let keys = &isp.keys;
    rows.iter()
        .map(|r| {
            let mut v = runtime::api::row_json(r, &["envelope_id", "pathway_agency", "engagement", "as_of", "reviewed_by"], &["received_at_ms", "reviewed_at_ms"], &[]);
            let note: String = r.try_get("note")?;
            v["note"] = json!(keys.open_at_rest(&note).map_err(ApiError::internal)?);
            v["alert"] = json!(v["engagement"] == Engagement::Disengaged.as_str_name() && v["reviewed_at_ms"].is_null());
            Ok(v)
        })
        .collect()
}

/// The cases among `ids` with a disengagement alert open (for the caseload's marker).
pub async fn alerted(pool: &sqlx::AnyPool, ids: &[&str]) -> sqlx::Result<std::collections::HashSet<String>> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let sql = format!(
        "SELECT DISTINCT case_id FROM engagement_updates WHERE engagement = $1 AND reviewed_at_ms IS NULL AND case_id IN ({})",
        runtime::db::numbered(2, ids.len())
    );
    let mut q = sqlx::query_as::<_, (String,)>(&sql).bind(Engagement::Disengaged.as_str_name());
    for id in ids {
        q = q.bind(*id);
    }
    Ok(q.fetch_all(pool).await?.into_iter().map(|(id,)| id).collect())
}
