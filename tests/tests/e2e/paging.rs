//! Every list route is paged (a default, a maximum, a cursor), and `Idempotency-Key` makes a
//! retried `POST /disclosures` answer as the first did without sending again.

use std::{sync::{Arc, atomic::AtomicUsize}, time::Duration};

use serde_json::{Value, json};
use tests::{Backend, Partnership, eventually, idva_referral, referral_consent, send_referrals};

const HOUSING: &str = "housing-northbridge";

async fn get(http: &reqwest::Client, url: &str) -> anyhow::Result<(u16, Value)> {
    let response = http.get(url).send().await?;
    Ok((response.status().as_u16(), response.json().await.unwrap_or(Value::Null)))
}

async fn lists_are_paged_with_a_default_a_maximum_and_a_cursor_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let mut ids = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 3, 1, Arc::new(AtomicUsize::new(0))).await?;
    ids.sort();
    let http = p.caseworker(HOUSING).await?;
    let base = format!("{}/disclosures", p.url(HOUSING));
    let (status, first) = get(&http, &format!("{base}?limit=2")).await?;
    assert_eq!(status, 200);
    let first: Vec<&str> = first.as_array().unwrap().iter().map(|d| d["envelope_id"].as_str().unwrap()).collect();
    assert_eq!(first, ids[..2]);
    let (_, rest) = get(&http, &format!("{base}?limit=2&after={}", first[1])).await?;
    let rest: Vec<&str> = rest.as_array().unwrap().iter().map(|d| d["envelope_id"].as_str().unwrap()).collect();
    assert_eq!(rest, ids[2..]);
    for bad in ["limit=0", "limit=1001", "limit=x", "colour=red"] {
        let (status, v) = get(&http, &format!("{base}?{bad}")).await?;
        assert_eq!(status, 400, "{bad}: {v}");
    }
    // A numbered cursor: the inbox by stream sequence.
    let idva = p.caseworker("idva-northbridge").await?;
    let inbox = eventually("three referrals at the IDVA", Duration::from_secs(30), || async {
        let (_, v) = get(&idva, &format!("{}/inbox", p.url("idva-northbridge"))).await?;
        Ok(v.as_array().filter(|a| a.len() == 3).cloned())
    })
    .await?;
    let (status, page) = get(&idva, &format!("{}/inbox?limit=5&after={}", p.url("idva-northbridge"), inbox[0]["stream_seq"])).await?;
    assert_eq!((status, page.as_array().map(Vec::len)), (200, Some(2)), "{page}");
    let (status, _) = get(&idva, &format!("{}/inbox?after=not-a-number", p.url("idva-northbridge"))).await?;
    assert_eq!(status, 400);
    Ok(())
}

async fn post(http: &reqwest::Client, url: &str, key: Option<&str>, body: &Value) -> anyhow::Result<(u16, Value)> {
    let mut request = http.post(url).json(body);
    if let Some(k) = key {
        request = request.header("Idempotency-Key", k);
    }
    let response = request.send().await?;
    Ok((response.status().as_u16(), response.json().await.unwrap_or(Value::Null)))
}

async fn a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_sends_nothing_again_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let http = p.caseworker(HOUSING).await?;
    let url = format!("{}/disclosures", p.url(HOUSING));
    let (status, _) = post(&http, &format!("{}/consents", p.url(HOUSING)), None, &referral_consent(1)).await?;
    assert_eq!(status, 201);

    let (status, first) = post(&http, &url, Some("case-sys-0001"), &idva_referral(1)).await?;
    assert_eq!(status, 201, "{first}");
    let (status, again) = post(&http, &url, Some("case-sys-0001"), &idva_referral(1)).await?;
    assert_eq!((status, &again), (201, &first), "a retry got another answer");
    let sent = p.get(HOUSING, "/disclosures").await?;
    assert_eq!(sent.as_array().unwrap().len(), 1, "the retry sent again: {sent}");

    // The same key for another request: refused, nothing sent.
    let (status, v) = post(&http, &url, Some("case-sys-0001"), &idva_referral(2)).await?;
    assert_eq!((status, v["error"].as_str()), (422, Some("idempotency_key_reused")), "{v}");
    // An invalid request does not use up its key: the corrected one goes.
    let mut broken = idva_referral(1);
    broken["risk"] = json!("extreme");
    let (status, _) = post(&http, &url, Some("case-sys-0002"), &broken).await?;
    assert_eq!(status, 400);
    let (status, v) = post(&http, &url, Some("case-sys-0002"), &idva_referral(1)).await?;
    assert_eq!(status, 201, "{v}");
    // A send the protocol refuses: the retry gets the same refusal, and one near miss.
    let mut refused = idva_referral(1);
    refused["to"] = json!("perpetrator-pathways");
    refused["payload"] = json!({"perpetratorReferral": {"perpetrator": {"fullName": "Synthetic Harmer"}, "survivor": {"address": "1 Test Street"}}});
    refused["purpose"] = json!("perpetrator-intervention");
    refused["lawful_basis"] = json!("cda-1998-s115");
    refused.as_object_mut().unwrap().remove("consent");
    let (status, denied) = post(&http, &url, Some("case-sys-0003"), &refused).await?;
    assert_eq!(status, 403, "{denied}");
    let (status, again) = post(&http, &url, Some("case-sys-0003"), &refused).await?;
    assert_eq!((status, &again["near_miss_id"]), (403, &denied["near_miss_id"]));
    let near = eventually("the near miss in the ledger", Duration::from_secs(30), || async {
        let near: Vec<Value> = p.ledger().await?.into_iter().filter(|e| e["entry_type"] == "near_miss").collect();
        Ok((!near.is_empty()).then_some(near))
    })
    .await?;
    assert_eq!(near.len(), 1, "the retry made a second near miss: {near:?}");
    // A malformed key is refused.
    let (status, _) = post(&http, &url, Some("not a key!"), &idva_referral(1)).await?;
    assert_eq!(status, 400);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_are_paged_with_a_default_a_maximum_and_a_cursor_on_sqlite() -> anyhow::Result<()> {
    lists_are_paged_with_a_default_a_maximum_and_a_cursor_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_are_paged_with_a_default_a_maximum_and_a_cursor_on_postgres() -> anyhow::Result<()> {
    lists_are_paged_with_a_default_a_maximum_and_a_cursor_on(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_sends_nothing_again_on_sqlite() -> anyhow::Result<()> {
    a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_sends_nothing_again_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_sends_nothing_again_on_postgres() -> anyhow::Result<()> {
    a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_sends_nothing_again_on(Backend::Postgres).await
}
