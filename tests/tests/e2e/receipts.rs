//! Receipts and revocation, as a sender sees them: delivered and opened on their own,
//! accepted, declined with a reason, closed with an outcome, each in the ledger; a revoked
//! disclosure disappears from the recipient's API, which confirms it.

use std::{sync::{Arc, atomic::AtomicUsize}, time::Duration};

use serde_json::{Value, json};
use tests::{Backend, Partnership, eventually, send_referrals};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";

async fn status_at_sender(p: &Partnership, id: &str, want: &str) -> anyhow::Result<Value> {
    eventually(&format!("the sender seeing {want}"), Duration::from_secs(30), || async {
        let d = p.get(HOUSING, &format!("/disclosures/{id}")).await?;
        Ok((d["status"] == want).then_some(d))
    })
    .await
}

async fn receipts_in_ledger(p: &Partnership, id: &str, n: usize) -> anyhow::Result<Vec<Value>> {
    eventually("the receipts in the ledger", Duration::from_secs(30), || async {
        let entries: Vec<Value> = p.ledger().await?.into_iter().filter(|e| e["in_reply_to"] == id && e["entry_type"] == "disclosure").collect();
        Ok((entries.len() >= n).then_some(entries))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_sender_follows_a_referral_through_every_receipt_and_can_revoke_one() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let ids = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 2, 1, Arc::new(AtomicUsize::new(0))).await?;
    let (id, other) = (ids[0].as_str(), ids[1].as_str());

    // Delivered, then opened by the first read, then decided and closed by staff.
    status_at_sender(&p, id, "received").await?;
    let read = p.get(IDVA, &format!("/inbox/{id}")).await?;
    assert!(read["payload"]["idvaReferral"]["survivor"]["fullName"].is_string(), "{read}");
    status_at_sender(&p, id, "opened").await?;
    p.get(IDVA, &format!("/inbox/{id}")).await?; // a second read sends no second receipt
    let ack = |body: Value| {
        let p = &p;
        async move { p.post(IDVA, &format!("/inbox/{id}/ack"), &body).await }
    };
    assert_eq!(ack(json!({"status": "declined"})).await?.0, 400, "a decline needs a reason");
    assert_eq!(ack(json!({"status": "accepted"})).await?.0, 201);
    status_at_sender(&p, id, "accepted").await?;
    assert_eq!(ack(json!({"status": "declined", "reason": "outside our area after all"})).await?.0, 201);
    let declined = status_at_sender(&p, id, "declined").await?;
    assert_eq!(declined["status_reason"], "outside our area after all");
    assert_eq!(ack(json!({"status": "closed", "outcome": "referred to the neighbouring IDVA service"})).await?.0, 201);
    status_at_sender(&p, id, "closed").await?;
    assert_eq!(ack(json!({"status": "accepted"})).await?.0, 409, "a closed referral stays closed");
    let receipts = receipts_in_ledger(&p, id, 5).await?;
    assert_eq!(receipts.len(), 5, "received, opened, accepted, declined, closed: {receipts:?}");
    assert!(receipts.iter().all(|r| r["kind"] == "referral.ack" && r["sender"] == IDVA && r["recipient"] == HOUSING));

    // Revocation: the IDVA has read the other referral; housing revokes it.
    p.get(IDVA, &format!("/inbox/{other}")).await?;
    let (status, v) = p.post(HOUSING, &format!("/disclosures/{other}/revoke"), &json!({"reason": ""})).await?;
    assert_eq!(status, 400, "{v}");
    let (status, v) = p.post(HOUSING, "/disclosures/no-such-envelope/revoke", &json!({"reason": "sent in error"})).await?;
    assert_eq!(status, 404, "{v}");
    let (status, v) = p.post(HOUSING, &format!("/disclosures/{other}/revoke"), &json!({"reason": "sent to the wrong service"})).await?;
    assert_eq!(status, 201, "{v}");
    assert_eq!(p.get(HOUSING, &format!("/disclosures/{other}")).await?["status"], "revoked");
    status_at_sender(&p, other, "revocation_confirmed").await?;
    let response = p.caseworker(IDVA).await?.get(format!("{}/inbox/{other}", p.url(IDVA))).send().await?;
    assert_eq!(response.status().as_u16(), 410);
    let body: Value = response.json().await?;
    assert_eq!(body["error"], "revoked");
    assert!(!body.to_string().contains("Synthetic Person"), "the revoked content is still served: {body}");
    let listed = p.get(IDVA, "/inbox").await?;
    let entry = listed.as_array().unwrap().iter().find(|e| e["envelope_id"] == other).unwrap().clone();
    assert_eq!(entry["status"], "revoked");
    assert_eq!(p.post(IDVA, &format!("/inbox/{other}/ack"), &json!({"status": "accepted"})).await?.0, 409);
    assert_eq!(p.post(HOUSING, &format!("/disclosures/{other}/revoke"), &json!({"reason": "again"})).await?.0, 409);
    // The ledger holds the revocation and the recipient's confirmation.
    let trail = receipts_in_ledger(&p, other, 4).await?;
    let kinds: Vec<&str> = trail.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"disclosure.revoke"), "{kinds:?}");
    assert_eq!(trail.iter().filter(|e| e["kind"] == "referral.ack" && e["sender"] == IDVA).count(), 3, "received, opened, revocation confirmed: {trail:?}");
    Ok(())
}
