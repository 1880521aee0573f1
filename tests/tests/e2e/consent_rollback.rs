//! Consent that never goes back (issue #11), on real nats-server and both storage backends:
//! someone with the broker's rights republishes housing's own old "given" revision until the
//! withdrawal falls out of the bucket's 64-revision history, then erases the bucket. Agencies
//! that saw the withdrawal keep it (and refuse sends relying on the record), and housing puts
//! its latest revision back in the bucket, at start and on its periodic check.

use std::time::Duration;

use async_nats::jetstream::{self, stream::DirectGetErrorKind};
use serde_json::{Value, json};
use tests::{Backend, Partnership, eventually};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const MARAC: &str = "marac-northbridge";
/// Agencies that never read the record before the attack: what the bucket alone tells.
const FRESH: &str = "reciprocals-scheme";
const FRESH_AFTER_PURGE: &str = "riverside-homes";
const NAME: &str = "Synthetic Rollback Person";

/// (state, revision) of housing's record `consent_id` as `agency` reads it.
async fn read(p: &Partnership, agency: &str, consent_id: &str) -> anyhow::Result<(String, u64)> {
    let v = p.get(agency, &format!("/consents/{consent_id}?recorded_by={HOUSING}")).await?;
    Ok((v["current_state"].as_str().unwrap_or_default().to_owned(), v["revision"].as_u64().unwrap_or_default()))
}

fn given() -> (String, u64) {
    ("given".into(), 1)
}

fn withdrawn() -> (String, u64) {
    ("withdrawn".into(), 2)
}

/// MARAC's research request to the IDVA, relying on housing's record of consent.
fn marac_request(consent_id: &str, subject_ref: &str) -> Value {
    json!({"to": IDVA, "purpose": "marac", "lawful_basis": "uk-gdpr-6-1-e",
        "consent": {"id": consent_id, "state": "given", "recorded_by": HOUSING}, "subject_ref": subject_ref,
        "payload": {"maracResearchRequest": {"meetingDate": "2026-12-03", "questions": "What do you hold?"}}})
}

/// (revision, state) of every value the bucket's history holds for `subject`, oldest first.
async fn history(stream: &jetstream::stream::Stream, subject: &str) -> anyhow::Result<Vec<(u64, String)>> {
    let mut values = Vec::new();
    let mut next = 1;
    loop {
        match stream.direct_get_next_for_subject(subject, Some(next)).await {
            Ok(m) => {
                next = m.sequence + 1;
                let signed: isp::consent::SignedConsent = serde_json::from_slice(&m.payload)?;
                let record: isp::consent::ConsentRecord = serde_json::from_str(&signed.record)?;
                values.push((record.revision, record.state.name().to_owned()));
            }
            Err(e) if e.kind() == DirectGetErrorKind::NotFound => return Ok(values),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Housing records consent (given, for the IDVA and MARAC), shared at once: (consent id,
/// subject ref).
async fn record_given(p: &Partnership) -> anyhow::Result<(String, String)> {
    let (status, v) = p
        .post(HOUSING, "/consents", &json!({"subject": {"full_name": NAME, "date_of_birth": "1987-06-05"}, "state": "given",
            "scope": {"roles": ["idva", "marac"], "purposes": ["safeguarding", "marac"]}}))
        .await?;
    assert_eq!((status, v["shared"].as_bool()), (201, Some(true)), "{v}");
    Ok((v["consent_id"].as_str().unwrap().to_owned(), v["subject_ref"].as_str().unwrap().to_owned()))
}

async fn rollback_on(backend: Backend) -> anyhow::Result<()> {
    let mut p = Partnership::start(backend).await?;
    let (consent_id, subject_ref) = record_given(&p).await?;
    assert_eq!(read(&p, IDVA, &consent_id).await?, given());
    let (status, w) = p.post(HOUSING, &format!("/consents/{consent_id}/withdraw"), &json!({})).await?;
    assert_eq!((status, w["shared"].as_bool()), (200, Some(true)), "{w}");
    for agency in [IDVA, MARAC] {
        assert_eq!(read(&p, agency, &consent_id).await?, withdrawn(), "{agency}");
    }

    // Housing is away (so nothing heals the bucket meanwhile); the broker's operator replays
    // housing's own signed "given" until the withdrawal is out of the key's history.
    p.hub.kill(HOUSING).await;
    let js = jetstream::new(p.broker().await?);
    let mut stream = js.get_stream(format!("KV_{}", runtime::transport::CONSENT_BUCKET)).await?;
    let subject = format!("$KV.{}.{}", runtime::transport::CONSENT_BUCKET, isp::consent::key(HOUSING, &consent_id));
    let old_given = stream.direct_get_first_for_subject(subject.as_str()).await?.payload;
    for _ in 0..runtime::transport::CONSENT_HISTORY + 6 {
        js.publish(subject.clone(), old_given.clone()).await?.await?;
    }
    let replayed = history(&stream, &subject).await?;
    assert_eq!(replayed, vec![(1, "given".to_owned()); runtime::transport::CONSENT_HISTORY as usize], "the withdrawal is out of the bucket");
    // An agency that never saw the withdrawal is fooled (what the owner's republishing is for)...
    assert_eq!(read(&p, FRESH, &consent_id).await?, given());
    // ...those that saw it are not, and a send relying on the record is refused.
    for agency in [IDVA, MARAC] {
        assert_eq!(read(&p, agency, &consent_id).await?, withdrawn(), "{agency} went back to an older revision");
    }
    let (status, v) = p.post(MARAC, "/disclosures", &marac_request(&consent_id, &subject_ref)).await?;
    assert_eq!((status, v["reason"].as_str()), (403, Some("consent_withdrawn")), "{v}");

    // Housing back: at start it finds the bucket behind its own latest and republishes it.
    p.hub.restart(HOUSING).await?;
    eventually("housing's withdrawal back in the bucket", Duration::from_secs(30), || async {
        Ok((history(&stream, &subject).await?.last() == Some(&(2, "withdrawn".to_owned()))).then_some(()))
    })
    .await?;
    assert_eq!(read(&p, FRESH, &consent_id).await?, withdrawn());

    // The operator erases the bucket. nats-server will not lift deny_purge ("stream
    // configuration update can not cancel deny purge"), so the operator's way is to delete
    // the bucket's stream and provision it again: what a lost store looks like too.
    let mut config = stream.info().await?.config.clone();
    config.deny_purge = false;
    assert!(js.update_stream(config).await.is_err(), "deny_purge cannot be lifted");
    js.delete_stream(format!("KV_{}", runtime::transport::CONSENT_BUCKET)).await?;
    let (_, stream) = runtime::transport::ensure_consent_bucket(&js).await?;
    assert_eq!(history(&stream, &subject).await?, vec![], "the key's history is gone");
    for agency in [IDVA, MARAC, FRESH] {
        assert_eq!(read(&p, agency, &consent_id).await?, withdrawn(), "{agency} lost the record with the bucket's copy");
    }
    // Housing's periodic check puts it back; an agency that never read it sees it again.
    eventually("housing's record republished after the purge", runtime::consent::REPUBLISH_EVERY * 3, || async {
        Ok((history(&stream, &subject).await? == vec![(2, "withdrawn".to_owned())]).then_some(()))
    })
    .await?;
    assert_eq!(read(&p, FRESH_AFTER_PURGE, &consent_id).await?, withdrawn());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawal_cannot_be_rolled_back_by_the_broker_on_sqlite() -> anyhow::Result<()> {
    rollback_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_withdrawal_cannot_be_rolled_back_by_the_broker_on_postgres() -> anyhow::Result<()> {
    rollback_on(Backend::Postgres).await
}

/// The direct gets on the consent bucket made while `during` runs.
async fn bucket_reads_while(p: &Partnership, during: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<usize> {
    let requests = crate::idle::requests_while(p, during).await?;
    let bucket = format!("DIRECT.GET.KV_{}", runtime::transport::CONSENT_BUCKET);
    Ok(requests.iter().filter(|(kind, _)| kind.starts_with(&bucket)).map(|(_, n)| n).sum())
}

/// A reader keeps how far it has read a record's history (issue #19): reading a record again
/// that has not changed is one direct get, not the whole history again. That position means
/// nothing in a bucket whose stream was recreated (its sequences start again at 1), so such a
/// bucket is read from the start: a withdrawal made after the recreation is seen, even with
/// the old "given" replayed after it by someone with the broker's rights.
async fn reads_resume_on(backend: Backend) -> anyhow::Result<()> {
    let mut p = Partnership::start(backend).await?;
    let js = jetstream::new(p.broker().await?);
    // Move the stream on first, so that the reader's position is far past where the record
    // lands once the stream is recreated. (Values nobody signed: readers ignore them.)
    for n in 0..40 {
        js.publish(format!("$KV.{}.{HOUSING}.JUNK-{n}", runtime::transport::CONSENT_BUCKET), "not a consent record".into()).await?.await?;
    }
    let (consent_id, _) = record_given(&p).await?;
    let first = bucket_reads_while(&p, async { Ok(assert_eq!(read(&p, IDVA, &consent_id).await?, given())) }).await?;
    assert!(first >= 1, "the first read goes to the bucket: {first}");
    // Housing away, so that its own periodic look at the bucket is not counted.
    p.hub.kill(HOUSING).await;
    let again = bucket_reads_while(&p, async { Ok(assert_eq!(read(&p, IDVA, &consent_id).await?, given())) }).await?;
    assert_eq!(again, 1, "nothing new: one direct get, of the record's last message");

    // The bucket's stream recreated (a lost store, or its operator); housing puts its record
    // back at start, then withdraws consent; with housing away, the old "given" is replayed.
    js.delete_stream(format!("KV_{}", runtime::transport::CONSENT_BUCKET)).await?;
    let (_, stream) = runtime::transport::ensure_consent_bucket(&js).await?;
    let subject = format!("$KV.{}.{}", runtime::transport::CONSENT_BUCKET, isp::consent::key(HOUSING, &consent_id));
    p.hub.restart(HOUSING).await?;
    eventually("housing's record back in the recreated bucket", Duration::from_secs(30), || async {
        Ok((history(&stream, &subject).await? == vec![(1, "given".to_owned())]).then_some(()))
    })
    .await?;
    let (status, w) = p.post(HOUSING, &format!("/consents/{consent_id}/withdraw"), &json!({})).await?;
    assert_eq!((status, w["shared"].as_bool()), (200, Some(true)), "{w}");
    p.hub.kill(HOUSING).await;
    let old_given = stream.direct_get_first_for_subject(subject.as_str()).await?.payload;
    for _ in 0..3 {
        js.publish(subject.clone(), old_given.clone()).await?.await?;
    }
    let last = stream.direct_get_last_for_subject(subject.as_str()).await?.sequence;
    assert!(last < 40, "the record's last message ({last}) is before where the reader read up to");
    assert_eq!(read(&p, IDVA, &consent_id).await?, withdrawn(), "the reader kept its position in a stream that is gone");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_reads_only_what_is_new_and_a_recreated_bucket_from_the_start_on_sqlite() -> anyhow::Result<()> {
    reads_resume_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_reads_only_what_is_new_and_a_recreated_bucket_from_the_start_on_postgres() -> anyhow::Result<()> {
    reads_resume_on(Backend::Postgres).await
}
