//! Sends the broker cannot carry never hold up the rest: a disclosure whose sealed envelope
//! would be larger than the broker's message limit is refused at the API (413, naming the
//! limit) with nothing queued; and an outbox message the broker refuses (here 2 MB, written
//! straight into the outbox as a bad migration or a bug would) is set aside with its reason,
//! visible in the sender's list of disclosures, while the referrals queued after it go out.

use std::{sync::{Arc, atomic::AtomicUsize}, time::Duration};

use isp::Kind;
use prost::Message as _;
use proto::v1::{Envelope, Header};
use runtime::serve::Limits;
use serde_json::json;
use sqlx::Connection as _;
use tests::{Backend, Partnership, eventually, send_referrals};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const DEADLINE: Duration = Duration::from_secs(60);
/// Sorts before every envelope id the service makes (UUIDv7): the publisher meets it first.
const BAD_ID: &str = "00000000-0000-7000-8000-000000000001";

async fn too_large_is_refused_at_the_api(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let limit = runtime::transport::max_message_bytes(&p.broker().await?);
    // `-1,` is three bytes of JSON and ten of protobuf (a negative enum number): a body within
    // the HTTP limit whose envelope the broker would refuse.
    let criteria = vec![-1; Limits::default().max_body_bytes / 3 - 1000];
    let subject = json!({"full_name": "Synthetic Person", "date_of_birth": "1990-01-01"});
    let assessment = tests::dash_assessment(&p, "housing-northbridge", &subject, 15).await?;
    let body = json!({"to": "marac-northbridge", "purpose": "marac", "lawful_basis": "uk-gdpr-9-2-g-dpa-s1-p18", "assessment_id": assessment,
        "subject": subject, "case_ref": "BIG-1",
        "without_consent": {"rationale_code": "asking-would-increase-risk", "rationale": "synthetic"},
        "payload": {"maracReferral": {"survivor": {"fullName": "Synthetic Person"}, "criteria": criteria}}});
    assert!(serde_json::to_vec(&body)?.len() <= Limits::default().max_body_bytes, "within the HTTP body limit");
    let (status, answer) = p.post(HOUSING, "/disclosures", &body).await?;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "too_large", "{answer}");
    let detail = answer["detail"].as_str().unwrap_or_default();
    assert!(detail.contains(&format!("more than the {limit} the broker carries")), "the answer names the limit: {answer}");
    assert_eq!(p.get(HOUSING, "/disclosures").await?, json!([]), "no disclosure recorded");
    let mut db = sqlx::AnyConnection::connect(&p.database_url(HOUSING).await?).await?;
    let (queued,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox WHERE subject LIKE 'hub.v1.msg.%'").fetch_one(&mut db).await?;
    assert_eq!(queued, 0, "nothing queued for the broker");
    Ok(())
}

async fn a_message_the_broker_refuses_is_set_aside_and_the_rest_goes_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let limit = runtime::transport::max_message_bytes(&p.broker().await?);
    // A 2 MB envelope from housing to the IDVA, with its `sent` row, queued behind the API's back.
    let header = Header { envelope_id: BAD_ID.into(), sender: HOUSING.into(), recipient: IDVA.into(), ..Default::default() };
    let envelope = Envelope { header: header.encode_to_vec(), sealed_payload: vec![7; 2 << 20], ..Default::default() }.encode_to_vec();
    let now = isp::now_ms();
    let rationale = isp::AgencyKeys::load(&p.data().join("keys").join(format!("{HOUSING}.toml")))?.seal_at_rest("")?;
    let mut db = sqlx::AnyConnection::connect(&p.database_url(HOUSING).await?).await?;
    let mut tx = db.begin().await?;
    sqlx::query("INSERT INTO outbox (id, subject, body, created_at_ms, attempts) VALUES ($1, $2, $3, $4, 0)")
        .bind(BAD_ID)
        .bind(runtime::transport::message_subject(HOUSING, IDVA, Kind::IdvaReferral))
        .bind(envelope)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sent (envelope_id, recipient, kind, purpose, lawful_basis, consent_state, risk, subject_ref, case_ref, categories, removed, \
         rule, reason, policy_version, without_consent, in_reply_to, status, status_reason, created_at_ms, updated_at_ms, rationale) \
         VALUES ($1, $2, 'housing.idva_referral', 'safety-planning', 'uk-gdpr-6-1-e', 'given', 'high', '', 'BAD-1', '', '', '', '', '', 0, '', 'queued', '', $3, $3, $4)",
    )
    .bind(BAD_ID)
    .bind(IDVA)
    .bind(now)
    .bind(rationale)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;

    // Five referrals after it: published and delivered.
    let ids = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 5, 1, Arc::new(AtomicUsize::new(0))).await?;
    eventually("the five referrals in the IDVA's inbox", DEADLINE, || async {
        let inbox = p.list(IDVA, "/inbox", "envelope_id").await?;
        Ok(ids.iter().all(|id| inbox.iter().any(|e| e["envelope_id"] == id.as_str())).then_some(()))
    })
    .await?;
    // The bad one is set aside, and says why, where staff see their disclosures.
    let sent = p.list(HOUSING, "/disclosures", "envelope_id").await?;
    let bad = sent.iter().find(|s| s["envelope_id"] == BAD_ID).expect("the bad row listed");
    assert_eq!(bad["status"], "set_aside", "{bad}");
    let reason = bad["status_reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("more than the {limit} the broker carries")), "{bad}");
    for id in &ids {
        let s = sent.iter().find(|s| s["envelope_id"] == id.as_str()).expect("listed");
        assert_ne!(s["status"], "queued", "{s}");
    }
    let (at, why): (Option<i64>, String) = sqlx::query_as("SELECT set_aside_at_ms, set_aside_reason FROM outbox WHERE id = $1").bind(BAD_ID).fetch_one(&mut db).await?;
    assert!(at.is_some() && why == reason, "the outbox row says so too: {at:?} {why}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn too_large_is_refused_at_the_api_sqlite() -> anyhow::Result<()> {
    too_large_is_refused_at_the_api(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn too_large_is_refused_at_the_api_postgres() -> anyhow::Result<()> {
    too_large_is_refused_at_the_api(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_the_broker_refuses_is_set_aside_and_the_rest_goes_on_sqlite() -> anyhow::Result<()> {
    a_message_the_broker_refuses_is_set_aside_and_the_rest_goes_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_the_broker_refuses_is_set_aside_and_the_rest_goes_on_postgres() -> anyhow::Result<()> {
    a_message_the_broker_refuses_is_set_aside_and_the_rest_goes_on(Backend::Postgres).await
}
