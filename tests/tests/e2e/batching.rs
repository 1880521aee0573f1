//! Sends that arrive at the same moment are sealed and committed together (one transaction
//! for the lot): each must still get its own answer, and the allowed, the refused by the
//! protocol and the malformed beside each other must not change one another's fate; the
//! receipts that come back together must each reach their own disclosure.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::{Value, json};
use tests::{Backend, Partnership, eventually, idva_referral, inbox_counts, referral_consent};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const EACH: usize = 20;

/// What one request is, and so what its answer must be.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ask {
    /// A consented referral: 201.
    Allowed,
    /// Relies on a consent record nobody made: 403 `consent_unknown`, a near miss.
    UnknownConsent,
    /// Names no agency of the partnership: 400, nothing recorded.
    NoSuchAgency,
}

fn request(ask: Ask, n: usize) -> Value {
    let mut body = idva_referral(n);
    match ask {
        Ask::Allowed => {}
        Ask::UnknownConsent => body["consent"]["id"] = json!(format!("NVR-{n}")),
        Ask::NoSuchAgency => body["to"] = json!("no-such-agency"),
    }
    body
}

async fn concurrent_sends_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    for n in 0..EACH {
        let (status, v) = p.post(HOUSING, "/consents", &referral_consent(n)).await?;
        assert_eq!(status, 201, "{v}");
    }
    // Interleaved, all in flight at once, so they share batches.
    let asks: Vec<(Ask, usize)> = (0..EACH).flat_map(|n| [(Ask::Allowed, n), (Ask::UnknownConsent, n), (Ask::NoSuchAgency, n)]).collect();
    let answers: Vec<(Ask, usize, u16, Value)> = futures::stream::iter(asks)
        .map(|(ask, n)| {
            let p = &p;
            async move {
                let (status, v) = p.post(HOUSING, "/disclosures", &request(ask, n)).await?;
                anyhow::Ok((ask, n, status, v))
            }
        })
        .buffer_unordered(3 * EACH)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    let mut allowed = Vec::new();
    for (ask, n, status, v) in &answers {
        match ask {
            Ask::Allowed => {
                assert_eq!(*status, 201, "referral {n}: {v}");
                let id = v["envelope_id"].as_str().expect("an envelope id").to_owned();
                // The answer is this request's own: housing's record of it names its case.
                let record = p.get(HOUSING, &format!("/disclosures/{id}")).await?;
                assert_eq!(record["case_ref"], format!("HSG-T-{n:05}"), "referral {n} got another send's answer: {record}");
                // Who sent it is written with the send itself, batched or not.
                assert!(record["sent_by"].as_str().is_some_and(|by| by.starts_with("demo.")), "referral {n} names no sender: {record}");
                allowed.push(id);
            }
            Ask::UnknownConsent => {
                assert_eq!((*status, v["reason"].as_str()), (403, Some("consent_unknown")), "request {n}: {v}");
                assert!(v["near_miss_id"].as_str().is_some_and(|id| !id.is_empty()), "the refusal names its near miss: {v}");
            }
            Ask::NoSuchAgency => {
                assert_eq!(*status, 400, "request {n}: {v}");
                assert!(v["detail"].as_str().is_some_and(|e| e.contains("to: not an agency") && !e.contains("no-such-agency")), "the error names the problem, not the value: {v}");
            }
        }
    }
    allowed.sort();
    allowed.dedup();
    assert_eq!(allowed.len(), EACH, "every allowed send has its own envelope");

    // Every allowed one reaches the IDVA exactly once; every refusal is in the ledger.
    let idva_db = p.database_url(IDVA).await?;
    eventually("every allowed referral in the IDVA's inbox", Duration::from_secs(60), || async {
        Ok((inbox_counts(&idva_db).await? == (EACH as i64, EACH as i64)).then_some(()))
    })
    .await?;
    // What an arrival starts is written with it, for each of a batch: the referral's
    // acknowledgement deadline and the IDVA case's contact deadline.
    let deadlines = p.get(IDVA, "/deadlines?state=open").await?;
    for id in &allowed {
        for code in ["acknowledge", "idva_contact"] {
            let set = deadlines.as_array().into_iter().flatten().filter(|d| d["code"] == code && d["target"] == id.as_str()).count();
            assert_eq!(set, 1, "referral {id}: {set} {code} deadlines at the IDVA");
        }
    }
    // The IDVA's delivery receipts, which come back in batches too, reach every one of them.
    eventually("every allowed referral marked received at housing", Duration::from_secs(60), || async {
        for id in &allowed {
            if p.get(HOUSING, &format!("/disclosures/{id}")).await?["status"] != "received" {
                return Ok(None);
            }
        }
        Ok(Some(()))
    })
    .await?;
    let near_misses: Vec<String> = answers.iter().filter(|a| a.0 == Ask::UnknownConsent).map(|a| a.3["near_miss_id"].as_str().unwrap().to_owned()).collect();
    eventually("every near miss and disclosure in the ledger", Duration::from_secs(60), || async {
        let ledger = p.ledger().await?;
        let has = |kind: &str, id: &str| ledger.iter().any(|e| e["entry_type"] == kind && e["entry_id"] == id);
        Ok((near_misses.iter().all(|id| has("near_miss", id)) && allowed.iter().all(|id| has("disclosure", id))).then_some(()))
    })
    .await?;
    let ledger = p.ledger().await?;
    assert_eq!(ledger.iter().filter(|e| e["entry_type"] == "near_miss" && e["recorded_by"] == HOUSING).count(), EACH, "one near miss per refusal, none for malformed requests");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_made_together_each_get_their_own_answer_sqlite() -> anyhow::Result<()> {
    concurrent_sends_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sends_made_together_each_get_their_own_answer_postgres() -> anyhow::Result<()> {
    concurrent_sends_on(Backend::Postgres).await
}
