//! The ledger counts what really happened on the stream: a copy of a real envelope or event
//! put on the stream again by someone with the broker's rights (on its own subject, or
//! re-addressed to another recipient, sender or kind) is a `replay` or a `misroute`, never one
//! more disclosure, and the IG report counts the disclosure once; a stream recreated (a broker
//! that lost its store) is a `stream_reset` and everything on the new stream reaches the
//! ledger; messages removed before the ledger read them are a `stream_gap`; junk is kept in
//! aggregate. Copies and removals are made straight in JetStream with the admin's client.

use std::time::Duration;

use async_nats::jetstream;
use isp::Kind;
use proto::v1::EventKind;
use runtime::transport;
use serde_json::{Value, json};
use tests::{Backend, Partnership, eventually, send_referrals};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";

fn sent() -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0))
}

fn of_type<'a>(ledger: &'a [Value], entry_type: &str, id: &str) -> Vec<&'a Value> {
    ledger.iter().filter(|e| e["entry_type"] == entry_type && e["entry_id"] == id).collect()
}

/// The newest message on `subject`, read from the stream with the broker's rights.
async fn last_on(js: &jetstream::Context, subject: &str) -> anyhow::Result<Vec<u8>> {
    let stream = js.get_stream(transport::STREAM).await?;
    Ok(stream.get_last_raw_message_by_subject(subject).await?.payload.to_vec())
}

/// Publishes `body` on `subject` without a message id: JetStream keeps it as a new message.
async fn put(js: &jetstream::Context, subject: &str, body: Vec<u8>) -> anyhow::Result<()> {
    js.publish(subject.to_owned(), body.into()).await?.await?;
    Ok(())
}

async fn copies_count_once_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let ids = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 1, 1, sent()).await?;
    let id = ids[0].clone();
    // A near miss: a referral the policy refuses, recorded as a signed event.
    let (status, denied) = p
        .post(HOUSING, "/disclosures", &json!({"to": "perpetrator-pathways", "purpose": "perpetrator-intervention", "lawful_basis": "cda-1998-s115",
            "subject": {"full_name": "Copy Person", "date_of_birth": "1985-02-03"}, "case_ref": "CPY-1",
            "payload": {"perpetratorReferral": {"perpetrator": {"fullName": "Copy Harmer"}, "survivor": {"fullName": "Copy Person", "dateOfBirth": "1985-02-03", "address": "1 Test Street", "phone": "07700 900999"}, "pathway": "PATHWAY_HIGH_HARM"}}}))
        .await?;
    assert_eq!(status, 403, "{denied}");
    let near_id = denied["near_miss_id"].as_str().expect("a near miss id").to_owned();
    eventually("the disclosure and the near miss on the ledger", Duration::from_secs(60), || async {
        let l = p.ledger().await?;
        Ok((of_type(&l, "disclosure", &id).len() == 1 && of_type(&l, "near_miss", &near_id).len() == 1).then_some(()))
    })
    .await?;

    let js = jetstream::new(p.broker().await?);
    let original = transport::message_subject(HOUSING, IDVA, Kind::IdvaReferral);
    let envelope = last_on(&js, &original).await?;
    let copies = [
        original.clone(),                                                        // replayed as it was
        transport::message_subject(HOUSING, "marac-northbridge", Kind::IdvaReferral), // another recipient
        transport::message_subject("marac-northbridge", IDVA, Kind::IdvaReferral),    // another sender
        transport::message_subject(HOUSING, IDVA, Kind::MaracReferral),              // another kind
    ];
    for subject in &copies {
        put(&js, subject, envelope.clone()).await?;
    }
    let near_subject = transport::event_subject(HOUSING, EventKind::SendDenied);
    let near_miss = last_on(&js, &near_subject).await?;
    put(&js, &near_subject, near_miss).await?;

    let ledger = eventually("a replay or misroute entry per copy", Duration::from_secs(60), || async {
        let l = p.ledger().await?;
        let copies = of_type(&l, "replay", &id).len() + of_type(&l, "misroute", &id).len() + of_type(&l, "replay", &near_id).len();
        Ok((copies >= 5).then_some(l))
    })
    .await?;
    assert_eq!(of_type(&ledger, "disclosure", &id).len(), 1, "the disclosure is on the ledger once");
    assert_eq!(of_type(&ledger, "near_miss", &near_id).len(), 1, "the near miss is on the ledger once");
    let subjects = |t: &str, id: &str| of_type(&ledger, t, id).iter().map(|e| e["subject"].as_str().unwrap_or_default().to_owned()).collect::<Vec<_>>();
    assert_eq!(subjects("replay", &id), std::slice::from_ref(&original), "the copy on its own subject is a replay, naming it");
    assert_eq!(subjects("misroute", &id), copies[1..], "each re-addressed copy is a misroute, naming the subject it came on");
    assert_eq!(subjects("replay", &near_id), [near_subject], "the republished near miss is a replay");

    // Queries and the IG report count the disclosure once, and the copies as what they are.
    let listed = p.get("audit", "/ledger?entry_type=disclosure&kind=housing.idva_referral").await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let today = time::OffsetDateTime::now_utc().date();
    let report = p.get("audit", &format!("/report?since={today}&until={today}")).await?;
    let referrals: Vec<&Value> = report["flows"].as_array().into_iter().flatten().filter(|f| f[2] == "housing.idva_referral").collect();
    assert_eq!(referrals, [&json!([HOUSING, IDVA, "housing.idva_referral", 1])], "the referral counted once: {report}");
    assert_eq!((report["replays"].as_u64(), report["misroutes"].as_u64()), (Some(2), Some(3)), "{report}");
    assert_eq!(report["near_misses_by_rule"].as_object().map(|m| m.values().filter_map(Value::as_u64).sum::<u64>()), Some(1), "{report}");
    let verify = p.get("audit", "/verify").await?;
    assert_eq!(verify["ok"], true, "{verify}");
    assert_eq!(verify["alerts"], json!([]), "{verify}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_of_an_envelope_or_event_count_once_on_sqlite() -> anyhow::Result<()> {
    copies_count_once_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn copies_of_an_envelope_or_event_count_once_on_postgres() -> anyhow::Result<()> {
    copies_count_once_on(Backend::Postgres).await
}

/// Waits until the ledger holds at least `n` entries and returns them.
async fn ledger_of(p: &Partnership, n: usize) -> anyhow::Result<Vec<Value>> {
    eventually(&format!("{n} entries on the ledger"), Duration::from_secs(60), || async {
        let l = p.ledger().await?;
        Ok((l.len() >= n).then_some(l))
    })
    .await
}

async fn recreated_stream_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 2, 1, sent()).await?;
    // Two consent records, two referrals, their two receipts.
    ledger_of(&p, 6).await?;

    // The broker's store is lost: the stream is gone, and the administrator's provisioning
    // makes it and the consumers again. Positions start at 1.
    let js = jetstream::new(p.broker().await?);
    js.delete_stream(transport::STREAM).await?;
    transport::ensure_stream(&js).await?;
    transport::audit_consumer(&js, Duration::from_secs(10)).await?;
    for agency in p.hub.services.keys() {
        transport::agency_consumer(&js, agency, Duration::from_secs(10)).await?;
    }

    let ids = send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 2, 20, 4, sent()).await?;
    let ledger = eventually("all 20 referrals sent after the reset on the ledger", Duration::from_secs(90), || async {
        let l = p.ledger().await?;
        Ok(ids.iter().all(|id| of_type(&l, "disclosure", id).len() == 1).then_some(l))
    })
    .await?;
    let resets: Vec<&Value> = ledger.iter().filter(|e| e["entry_type"] == "stream_reset").collect();
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert_eq!(resets[0]["stream_seq"], 0);
    let verify = p.get("audit", "/verify").await?;
    assert_eq!(verify["ok"], true, "the chain verifies across the reset: {verify}");
    let alerts = verify["alerts"].as_array().cloned().unwrap_or_default();
    assert_eq!(alerts.len(), 1, "{verify}");
    assert_eq!(alerts[0]["entry_type"], "stream_reset");
    assert!(alerts[0]["what"].as_str().unwrap_or_default().starts_with("STREAM RESET"), "{verify}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_the_stream_is_recreated_every_referral_reaches_the_ledger_and_the_reset_is_an_alert_on_sqlite() -> anyhow::Result<()> {
    recreated_stream_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn after_the_stream_is_recreated_every_referral_reaches_the_ledger_and_the_reset_is_an_alert_on_postgres() -> anyhow::Result<()> {
    recreated_stream_on(Backend::Postgres).await
}

async fn last_seq(js: &jetstream::Context) -> anyhow::Result<u64> {
    Ok(js.get_stream(transport::STREAM).await?.info().await?.state.last_sequence)
}

async fn gap_on(backend: Backend) -> anyhow::Result<()> {
    let mut p = Partnership::start(backend).await?;
    send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 2, 1, sent()).await?;
    let settled = ledger_of(&p, 6).await?;
    let js = jetstream::new(p.broker().await?);
    let read = last_seq(&js).await?;
    assert_eq!(settled.last().and_then(|e| e["stream_seq"].as_u64()), Some(read), "the ledger has read the whole stream");

    // While the audit service is down, three referrals (consents, referrals, receipts: nine
    // messages), and then the oldest messages are dropped, the first three it has not read
    // among them: the administrator lowers the stream's message limit, discarding old ones.
    p.hub.kill_audit().await;
    send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 2, 3, 1, sent()).await?;
    let end = eventually("nine more messages on the stream", Duration::from_secs(60), || async {
        let end = last_seq(&js).await?;
        Ok((end >= read + 9).then_some(end))
    })
    .await?;
    let keep = end - (read + 3);
    let limited = jetstream::stream::Config { max_messages: keep as i64, discard: jetstream::stream::DiscardPolicy::Old, ..transport::stream_config() };
    js.update_stream(limited).await?;
    let first = js.get_stream(transport::STREAM).await?.info().await?.state.first_sequence;
    assert_eq!(first, read + 4, "the broker dropped everything up to three past what the ledger read");
    js.update_stream(transport::stream_config()).await?;

    p.hub.restart_audit().await?;
    let gap = eventually("a stream_gap entry", Duration::from_secs(60), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_type"] == "stream_gap"))
    })
    .await?;
    assert_eq!((gap["stream_first"].as_u64(), gap["stream_seq"].as_u64(), gap["message_count"].as_u64()), (Some(read + 1), Some(read + 3), Some(3)), "{gap}");
    // Everything the stream still holds is on the ledger after the gap.
    let ledger = eventually("the rest of the stream on the ledger", Duration::from_secs(60), || async {
        let l = p.ledger().await?;
        Ok((l.last().and_then(|e| e["stream_seq"].as_u64()) >= Some(end)).then_some(l))
    })
    .await?;
    let after: Vec<u64> = ledger.iter().skip_while(|e| e["entry_type"] != "stream_gap").skip(1).filter_map(|e| e["stream_seq"].as_u64()).collect();
    assert_eq!(after.first(), Some(&(read + 4)), "{after:?}");
    let verify = p.get("audit", "/verify").await?;
    assert_eq!(verify["ok"], true, "{verify}");
    let alert = &verify["alerts"][0];
    assert_eq!(alert["entry_type"], "stream_gap", "{verify}");
    let what = alert["what"].as_str().unwrap_or_default();
    assert!(what.contains(&format!("{} to {}", read + 1, read + 3)), "{what}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_removed_before_the_ledger_read_them_are_a_gap_on_sqlite() -> anyhow::Result<()> {
    gap_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_removed_before_the_ledger_read_them_are_a_gap_on_postgres() -> anyhow::Result<()> {
    gap_on(Backend::Postgres).await
}

/// 300 junk messages on housing's own subject (what a compromised housing could publish)
/// make a handful of aggregate entries that count every one of them, keep no body, and leave
/// the chain intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn junk_is_kept_in_aggregate_and_counted() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let js = jetstream::new(p.broker().await?);
    let subject = transport::message_subject(HOUSING, IDVA, Kind::IdvaReferral);
    let marker = b"JUNK-BODY-MARKER";
    // In one burst, as a flood comes: every publish sent before any confirmation is awaited.
    let mut confirmations = Vec::new();
    for n in 0..300u32 {
        let mut body = marker.to_vec();
        body.extend_from_slice(&n.to_be_bytes());
        body.extend((0..200).map(|_| rand::random::<u8>()));
        confirmations.push(js.publish(subject.clone(), body.into()).await?);
    }
    for c in confirmations {
        c.await?;
    }
    // Something verified after the junk: the junk before it is written out.
    send_referrals(p.caseworker(HOUSING).await?, p.url(HOUSING), 0, 1, 1, sent()).await?;
    let junk = eventually("the 300 junk messages counted on the ledger", Duration::from_secs(60), || async {
        let l = p.ledger().await?;
        let junk: Vec<Value> = l.into_iter().filter(|e| e["entry_type"] == "unverifiable").collect();
        Ok((junk.iter().filter_map(|e| e["message_count"].as_u64()).sum::<u64>() == 300).then_some(junk))
    })
    .await?;
    // An aggregate is written out whenever a verified entry comes between junk messages (the
    // IDVA service's signed reports of junk, the referral): a few entries, never one each.
    assert!(junk.len() <= 10, "junk is kept in aggregate, not an entry each: {} entries", junk.len());
    assert!(junk.iter().all(|e| e["subject"] == subject.as_str() && e["sender"] == HOUSING && e["signed"].as_str().map(str::len) == Some(64)), "{junk:?}");
    let kept = tests::files_containing(p.data(), marker)?;
    assert!(kept.iter().all(|f| !f.file_name().unwrap_or_default().to_string_lossy().starts_with("audit")), "no junk body kept in the ledger: {kept:?}");
    let verify = p.get("audit", "/verify").await?;
    assert_eq!(verify["ok"], true, "{verify}");
    // The IDVA service quarantined all 300 (digests), and reported at most 10 a minute to the
    // ledger: the flood costs the ledger a few entries, not one or two per junk message.
    let quarantined = eventually("the IDVA quarantining all 300", Duration::from_secs(60), || async {
        let q = p.list(IDVA, "/quarantine", "stream_seq").await?;
        Ok((q.len() == 300).then_some(q))
    })
    .await?;
    assert!(quarantined.iter().all(|q| q["envelope_id"] == ""), "junk is nobody's envelope");
    let reports = p.ledger().await?.into_iter().filter(|e| e["entry_type"] == "rejected" && e["recorded_by"] == IDVA).count();
    assert!((1..=10).contains(&reports), "the IDVA reported {reports} junk messages one by one");
    Ok(())
}
