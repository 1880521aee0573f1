//! Tamper evidence: alter, delete, reorder or insert one entry of a real ledger in the
//! database, and verification fails at exactly that entry, saying what is wrong; on SQLite
//! and PostgreSQL.

use std::time::Duration;

use anyhow::Context as _;
use audit::{
    ledger::{self, Entry},
    store::Store,
    verify,
};
use sqlx::AnyPool;
use tests::{Backend, Partnership, eventually, send_referrals};

/// Replaces the ledger's entries and tree with `entries` (appending recomputes the chain and
/// the tree); with the original entries, it puts the ledger back exactly as it was.
async fn rewrite(pool: &AnyPool, entries: &[Entry]) -> anyhow::Result<()> {
    exec(pool, &["DELETE FROM ledger", "DELETE FROM merkle_node"]).await?;
    let store = Store::of(pool).await?;
    store.append(entries.to_vec()).await?;
    store.close().await;
    Ok(())
}

async fn restore(pool: &AnyPool, entries: &[Entry]) -> anyhow::Result<()> {
    rewrite(pool, entries).await
}

/// Waits until a signed checkpoint covers `size` entries.
async fn checkpoint_covering(p: &Partnership, size: u64) -> anyhow::Result<serde_json::Value> {
    eventually("a checkpoint covering the ledger", Duration::from_secs(60), || async {
        let c = p.get("audit", "/checkpoints/latest").await?;
        Ok(Some(c).filter(|c| c["tree_size"].as_u64() >= Some(size)))
    })
    .await
}

async fn exec(pool: &AnyPool, statements: &[&str]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    for s in statements {
        sqlx::query(s).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn first_bad(pool: &AnyPool, directory: &isp::Directory) -> anyhow::Result<Option<(i64, String)>> {
    let store = Store::of(pool).await?;
    let report = verify::verify(&store, Some(directory)).await?;
    store.close().await;
    Ok(report.first_bad.map(|p| (p.seq, p.what)))
}

async fn tampering_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    send_referrals(p.caseworker("housing-northbridge").await?, p.url("housing-northbridge"), 0, 8, 1, sent).await?;
    // Eight consent records, eight referrals and their eight delivered receipts.
    eventually("24 entries in the ledger", Duration::from_secs(60), || async { Ok((p.ledger().await?.len() >= 24).then_some(())) }).await?;
    checkpoint_covering(&p, 24).await?;
    let pool = audit::open_ledger(&p.database_url("audit").await?).await?;
    let directory = isp::Directory::load(&hub::partnership::directory_path(p.data()))?;
    let original = ledger::list(&pool, None).await?;
    assert_eq!(original.len(), 24);
    assert_eq!(first_bad(&pool, &directory).await?, None, "the untouched ledger verifies");

    // Altered content: entry 4 now claims another recipient.
    exec(&pool, &["UPDATE ledger SET recipient = 'marac-northbridge' WHERE seq = 4"]).await?;
    let (seq, what) = first_bad(&pool, &directory).await?.expect("alteration detected");
    assert_eq!(seq, 4);
    assert!(what.contains("content was altered"), "{what}");
    restore(&pool, &original).await?;
    assert_eq!(first_bad(&pool, &directory).await?, None);

    // Altered and the chain rebuilt after it, as an operator covering their tracks would:
    // the entry no longer matches the header its sender signed.
    // The signed checkpoint catches it too, without re-checking any signature.
    let mut forged = original.clone();
    forged[3].purpose = "marac".into();
    rewrite(&pool, &forged).await?;
    let (seq, what) = first_bad(&pool, &directory).await?.expect("rebuilt-chain forgery detected");
    assert_eq!(seq, 4);
    assert!(what.contains("no longer match the signed record"), "{what}");
    let fast = verify::verify_with(&Store::of(&pool).await?, Some(&directory), verify::Depth { signatures: false }).await?.first_bad.expect("caught by the checkpoint");
    assert!(fast.checkpoint.is_some_and(|size| size >= 4), "the first checkpoint covering entry 4 fails: {fast:?}");
    assert!(fast.what.contains("does not match the entries"), "{fast:?}");
    restore(&pool, &original).await?;

    // Deleted: entry 4 is gone, verification stops where it should have been.
    exec(&pool, &["DELETE FROM ledger WHERE seq = 4"]).await?;
    let (seq, what) = first_bad(&pool, &directory).await?.expect("deletion detected");
    assert_eq!(seq, 5);
    assert!(what.contains("expected entry 4"), "{what}");
    restore(&pool, &original).await?;

    // Reordered: entries 4 and 5 swapped.
    exec(&pool, &[
        "UPDATE ledger SET seq = -4 WHERE seq = 4",
        "UPDATE ledger SET seq = 4 WHERE seq = 5",
        "UPDATE ledger SET seq = 5 WHERE seq = -4",
    ])
    .await?;
    let (seq, what) = first_bad(&pool, &directory).await?.expect("reordering detected");
    assert_eq!(seq, 4);
    assert!(what.contains("link to the previous entry is broken"), "{what}");
    restore(&pool, &original).await?;

    // Inserted: a copy of entry 3 slipped in as entry 4, the rest moved up.
    exec(&pool, &["UPDATE ledger SET seq = -seq WHERE seq >= 4", "UPDATE ledger SET seq = 1 - seq WHERE seq < 0"]).await?;
    let mut tx = pool.begin().await?;
    sqlx::query(&format!("INSERT INTO ledger ({}) SELECT {} FROM ledger WHERE seq = 3", ledger::COLUMNS, ledger::COLUMNS.replacen("seq, stream_seq", "4, stream_seq + 1000000", 1)))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    let (seq, what) = first_bad(&pool, &directory).await?.expect("insertion detected");
    assert_eq!(seq, 4);
    assert!(what.contains("link to the previous entry is broken"), "{what}");
    restore(&pool, &original).await?;
    assert_eq!(first_bad(&pool, &directory).await?, None, "restored");
    Ok(())
}

/// Inclusion proofs from the running audit service verify offline against the signed
/// checkpoint; a proof whose entry, path or checkpoint was changed does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inclusion_proofs_verify_offline_and_changed_ones_do_not() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    send_referrals(p.caseworker("housing-northbridge").await?, p.url("housing-northbridge"), 0, 11, 2, sent).await?;
    eventually("eleven entries", Duration::from_secs(60), || async { Ok((p.ledger().await?.len() >= 11).then_some(())) }).await?;
    checkpoint_covering(&p, 11).await?;
    let directory = isp::Directory::load(&hub::partnership::directory_path(p.data()))?;
    for n in [1, 6, 11] {
        let proof: audit::checkpoints::InclusionProof = serde_json::from_value(p.get("audit", &format!("/proof/inclusion?entry={n}")).await?)?;
        assert_eq!(proof.entry.seq, n);
        audit::checkpoints::verify_proof(&proof, &directory).map_err(anyhow::Error::msg)?;

        let mut changed = proof.clone();
        changed.entry.recipient = "marac-northbridge".into();
        let e = audit::checkpoints::verify_proof(&changed, &directory).unwrap_err();
        assert!(e.contains("was changed"), "{e}");

        let mut rehashed = proof.clone();
        rehashed.entry.lawful_basis = "cda-1998-s115".into();
        rehashed.entry.hash = rehashed.entry.compute_hash(&rehashed.entry.prev_hash);
        let e = audit::checkpoints::verify_proof(&rehashed, &directory).unwrap_err();
        assert!(e.contains("no longer match the signed record") || e.contains("not in the tree"), "{e}");

        let mut bad_path = proof.clone();
        bad_path.path[0] = hex_of_zero();
        assert!(audit::checkpoints::verify_proof(&bad_path, &directory).unwrap_err().contains("not in the tree"));

        let mut forged_checkpoint = proof.clone();
        forged_checkpoint.checkpoint.tree_size += 1;
        forged_checkpoint.tree_size += 1;
        assert!(audit::checkpoints::verify_proof(&forged_checkpoint, &directory).unwrap_err().contains("checkpoint does not verify"));

        // The signed note is what counts: it reads alone, and one rewritten (with its JSON view
        // to match) does not verify.
        let alone = isp::checkpoint::Checkpoint::from_note(&proof.checkpoint.note, &directory)?;
        assert_eq!((alone.tree_size, &alone.root), (proof.tree_size, &proof.checkpoint.root));
        let mut forged_note = forged_checkpoint.clone();
        forged_note.checkpoint.note = proof.checkpoint.note.replacen(&format!("\n{}\n", proof.tree_size), &format!("\n{}\n", proof.tree_size + 1), 1);
        let e = audit::checkpoints::verify_proof(&forged_note, &directory).unwrap_err();
        assert!(e.contains("checkpoint does not verify") && e.contains("the note was altered"), "{e}");
    }
    Ok(())
}

fn hex_of_zero() -> String {
    "00".repeat(32)
}

/// Every agency's witness, once it has accepted a checkpoint of at least `size` entries.
async fn every_witness_at(p: &Partnership, size: u64) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let mut all = Vec::new();
    for agency in p.hub.services.keys() {
        let w = eventually(&format!("{agency}'s witness accepting a checkpoint of {size}"), Duration::from_secs(60), || async {
            let w = p.get(agency, "/witness").await?;
            Ok((w["last_accepted"]["tree_size"].as_u64() >= Some(size)).then_some(w))
        })
        .await?;
        all.push((agency.clone(), w));
    }
    Ok(all)
}

/// Waits until the ledger holds exactly `size` entries, a checkpoint covers them and every
/// witness has accepted it: nothing more will be signed until something new happens.
async fn settled_at(p: &Partnership, size: u64) -> anyhow::Result<()> {
    let n = eventually(&format!("{size} entries in the ledger"), Duration::from_secs(60), || async {
        let n = p.ledger().await?.len() as u64;
        Ok((n >= size).then_some(n))
    })
    .await?;
    assert_eq!(n, size);
    assert_eq!(checkpoint_covering(p, size).await?["tree_size"].as_u64(), Some(size));
    for (agency, w) in every_witness_at(p, size).await? {
        assert_eq!(w["last_accepted"]["tree_size"].as_u64(), Some(size), "{agency}: {w}");
    }
    Ok(())
}

/// Every agency's witness alerts: waits until each has one whose text starts with `what`.
async fn every_witness_alerts(p: &Partnership, what: &str) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let mut all = Vec::new();
    for agency in p.hub.services.keys() {
        let w = eventually(&format!("{agency}'s witness raising {what}"), Duration::from_secs(30), || async {
            let w = p.get(agency, "/witness").await?;
            let raised = w["alerts"].as_array().is_some_and(|a| a.iter().any(|x| x["what"].as_str().unwrap_or_default().starts_with(what)));
            Ok(raised.then_some(w))
        })
        .await?;
        all.push((agency.clone(), w));
    }
    Ok(all)
}

/// A forged checkpoint, signed with the real IG key, that forks or rewrites the ledger is
/// caught by every agency's witness, which keeps its last good checkpoint; real checkpoints
/// after it are still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forked_checkpoint_is_caught_by_the_agencies_witnesses() -> anyhow::Result<()> {
    use isp::checkpoint::{CHECKPOINT_SUBJECT, Checkpoint};
    let p = Partnership::start(Backend::Sqlite).await?;
    assert_eq!(p.hub.services.len(), 6, "every agency of the demo partnership runs a witness");
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    send_referrals(p.caseworker("housing-northbridge").await?, p.url("housing-northbridge"), 0, 3, 1, sent.clone()).await?;
    // Three consent records, three referrals, their three delivered receipts.
    settled_at(&p, 9).await?;
    for (agency, w) in every_witness_at(&p, 9).await? {
        assert_eq!(w["alerts"], serde_json::json!([]), "{agency}");
    }

    // The audit operator (who holds the IG key) publishes a second checkpoint at the same
    // size with another root: a fork.
    let ig = isp::AgencyKeys::load(&p.data().join("keys").join("ig-northbridge.toml"))?;
    let directory = isp::Directory::load(&hub::partnership::directory_path(p.data()))?;
    let js = async_nats::jetstream::new(p.broker().await?);
    let publish = |c: Checkpoint| {
        let js = js.clone();
        async move { js.publish(CHECKPOINT_SUBJECT, c.note.into()).await?.await.map(|_| ()).map_err(anyhow::Error::from) }
    };
    let fork = Checkpoint::sign(&ig, 9, &[9; 32], isp::now_ms());
    publish(fork.clone()).await?;
    for (agency, w) in every_witness_alerts(&p, "FORK").await? {
        assert_eq!(w["last_accepted"]["tree_size"].as_u64(), Some(9), "{agency} kept its last good checkpoint: {w}");
        assert_eq!(w["alerts"][0]["checkpoint"], fork.note.as_str(), "{agency} keeps the forged note as evidence: {w}");
    }

    // More real entries: the next real checkpoint is consistent, and every witness accepts it
    // and cosigns it: its cosignature, appended to the note, verifies with the agency's key,
    // and the cosigned note is still the IG office's checkpoint.
    send_referrals(p.caseworker("housing-northbridge").await?, p.url("housing-northbridge"), 3, 2, 1, sent).await?;
    settled_at(&p, 15).await?;
    for (agency, w) in every_witness_at(&p, 15).await? {
        let (note, cosigned) = (w["last_accepted"]["note"].as_str().unwrap_or_default(), w["last_accepted"]["cosigned"].as_str().unwrap_or_default());
        let line = cosigned.strip_prefix(note).filter(|l| !note.is_empty() && !l.is_empty()).with_context(|| format!("{agency}: the cosigned note is not the note and a line: {w}"))?;
        let key = directory.require(&agency)?.verifying_key()?;
        let at = isp::checkpoint::verify_cosignature(note, line, &agency, &key)?;
        assert!(at.abs_diff(isp::now_ms() as u64 / 1000) < 600, "{agency} cosigned at {at}");
        assert_eq!(Checkpoint::from_note(cosigned, &directory)?.tree_size, 15);
    }

    // A checkpoint claiming entries the ledger never had, with a made-up root: no
    // consistency proof can exist, and every witness says so.
    publish(Checkpoint::sign(&ig, 25, &[7; 32], isp::now_ms())).await?;
    for (agency, w) in every_witness_alerts(&p, "INCONSISTENT").await? {
        let alerts: Vec<&str> = w["alerts"].as_array().unwrap().iter().map(|a| &a["what"].as_str().unwrap()[..4]).collect();
        assert_eq!(alerts, ["FORK", "INCO"], "{agency}: one fork and one inconsistency: {w}");
        assert_eq!(w["last_accepted"]["tree_size"].as_u64(), Some(15), "{agency} keeps its last good checkpoint: {w}");
    }
    Ok(())
}

/// Near misses housing recorded on earlier days (a service that was offline publishes them
/// late; each is signed with the time it happened), at `occurred_at_ms` each. Returns their ids.
async fn publish_old_near_misses(p: &Partnership, subject_ref: &str, times: &[i64]) -> anyhow::Result<Vec<String>> {
    use proto::v1::{Event, EventKind, Kind, RiskLevel};
    let housing = runtime::Config::embedded(p.data(), "housing-northbridge", &p.hub.nats_url).load_isp()?;
    let js = async_nats::jetstream::new(p.broker().await?);
    let mut ids = Vec::new();
    for (n, at) in times.iter().enumerate() {
        let event = Event {
            event_id: uuid::Uuid::now_v7().to_string(),
            agency: "housing-northbridge".into(),
            kind: EventKind::SendDenied as i32,
            occurred_at_ms: *at,
            policy_version: housing.policy.version.clone(),
            rule: "roles.perpetrator.never".into(),
            reason: "never_allowed_field".into(),
            envelope_id: uuid::Uuid::now_v7().to_string(),
            counterpart: "perpetrator-pathways".into(),
            message_kind: Kind::PerpetratorReferral as i32,
            purpose: "perpetrator-intervention".into(),
            lawful_basis: "cda-1998-s115".into(),
            risk: RiskLevel::High as i32,
            subject_ref: subject_ref.into(),
            case_ref: format!("QRY-OLD-{n}"),
            ..Default::default()
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.event_id.as_str());
        let subject = runtime::transport::event_subject("housing-northbridge", EventKind::SendDenied);
        js.publish_with_headers(subject, headers, housing.sign_event(&event).into()).await?.await?;
        ids.push(event.event_id);
    }
    Ok(ids)
}

/// Ledger queries return exactly the seeded entries: each answer is compared, entry by entry
/// and in order, with the test's own filter over the whole ledger, across several days.
async fn queries_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = send_referrals(p.caseworker("housing-northbridge").await?, p.url("housing-northbridge"), 0, 5, 1, sent).await?;
    let survivor = serde_json::json!({"fullName": "Query Person", "dateOfBirth": "1985-02-03", "address": "1 Test Street", "phone": "07700 900999"});
    let subject = serde_json::json!({"full_name": "Query Person", "date_of_birth": "1985-02-03"});
    let assessment = tests::dash_assessment(&p, "housing-northbridge", &subject, 15).await?;
    let (status, marac) = p
        .post("housing-northbridge", "/disclosures", &serde_json::json!({"to": "marac-northbridge", "purpose": "marac", "lawful_basis": "uk-gdpr-9-2-g-dpa-s1-p18",
            "assessment_id": assessment, "subject": subject, "case_ref": "QRY-1",
            "without_consent": {"rationale_code": "asking-would-increase-risk", "rationale": "Test rationale"},
            "payload": {"maracReferral": {"survivor": survivor, "criteria": ["MARAC_CRITERION_VISIBLE_HIGH_RISK"], "survivorAware": false, "reasonNoConsent": "Risk"}}}))
        .await?;
    assert_eq!(status, 201, "{marac}");
    let marac_id = marac["envelope_id"].as_str().unwrap().to_owned();
    let (status, denied) = p
        .post("housing-northbridge", "/disclosures", &serde_json::json!({"to": "perpetrator-pathways", "purpose": "perpetrator-intervention", "lawful_basis": "cda-1998-s115",
            "subject": subject, "case_ref": "QRY-1",
            "payload": {"perpetratorReferral": {"perpetrator": {"fullName": "Query Harmer"}, "survivor": survivor, "pathway": "PATHWAY_HIGH_HARM"}}}))
        .await?;
    assert_eq!(status, 403, "{denied}");
    let subject_ref = eventually("the MARAC referral in the ledger", Duration::from_secs(60), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_id"] == marac_id.as_str()).map(|e| e["subject_ref"].as_str().unwrap_or_default().to_owned()))
    })
    .await?;

    // Entries of earlier days, with the day boundaries exactly at the edges.
    let today = time::OffsetDateTime::now_utc().date();
    let day = |back: i64| today - time::Duration::days(back);
    let midnight = |d: time::Date| d.midnight().assume_utc().unix_timestamp() * 1000;
    let old = publish_old_near_misses(&p, &subject_ref, &[
        midnight(day(5)) + 12 * 3_600_000,
        midnight(day(2)) - 1, // the last millisecond of day -3
        midnight(day(2)),     // the first of day -2
        midnight(day(2)) + 10 * 3_600_000,
    ])
    .await?;

    // Five consent records, five referrals and five receipts; the MARAC referral and its
    // receipt; the near miss, and the access record naming who attempted it; four near
    // misses of earlier days.
    let all = eventually("twenty-three entries", Duration::from_secs(60), || async {
        let all = p.ledger().await?;
        Ok((all.len() >= 23).then_some(all))
    })
    .await?;
    assert_eq!(all.len(), 23);
    let attempt: Vec<&serde_json::Value> = all.iter().filter(|e| e["entry_type"] == "accessed").collect();
    assert_eq!(attempt.len(), 1, "{attempt:?}");
    assert_eq!((attempt[0]["staff_id"].as_str(), attempt[0]["rule"].as_str(), attempt[0]["reason"].as_str()),
        (Some("demo.caseworker"), Some("POST /disclosures"), Some("refused")));
    let ids_of = |v: &[serde_json::Value]| -> Vec<String> { v.iter().map(|e| e["entry_id"].as_str().unwrap().to_owned()).collect() };
    fn text(e: &serde_json::Value, k: &str) -> String {
        e[k].as_str().unwrap_or_default().to_owned()
    }
    fn at(e: &serde_json::Value) -> i64 {
        e["occurred_at_ms"].as_i64().unwrap()
    }
    fn idva(e: &serde_json::Value) -> bool {
        text(e, "sender") == "idva-northbridge" || text(e, "recipient") == "idva-northbridge"
    }
    let total = all.len();
    let check = |query: String, want: Box<dyn Fn(&serde_json::Value) -> bool>| {
        let p = &p;
        let expected = ids_of(&all.iter().filter(|e| want(e)).cloned().collect::<Vec<_>>());
        async move {
            assert!(!expected.is_empty() && expected.len() < total, "{query}: the filter must pick some entries, not all: {expected:?}");
            let got = ids_of(p.get("audit", &format!("/ledger?{query}")).await?.as_array().unwrap());
            assert_eq!(got, expected, "{query}");
            anyhow::Ok(got)
        }
    };
    let mut to_idva = check("agency=idva-northbridge&kind=housing.idva_referral".into(), Box::new(move |e| idva(e) && text(e, "kind") == "housing.idva_referral")).await?;
    to_idva.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(to_idva, want, "exactly the five referrals sent");
    assert_eq!(check("without_consent=true".into(), Box::new(|e| e["without_consent"] == true)).await?, [marac_id.clone()]);
    let near = check("entry_type=near_miss".into(), Box::new(move |e| text(e, "entry_type") == "near_miss")).await?;
    assert_eq!(near.len(), 5);
    assert!(near.contains(&denied["near_miss_id"].as_str().unwrap().to_owned()));
    check("recipient=marac-northbridge&kind=marac.referral".into(), Box::new(move |e| text(e, "recipient") == "marac-northbridge" && text(e, "kind") == "marac.referral")).await?;
    check("lawful_basis=uk-gdpr-6-1-a&sender=housing-northbridge".into(), Box::new(move |e| text(e, "lawful_basis") == "uk-gdpr-6-1-a" && text(e, "sender") == "housing-northbridge")).await?;
    check("consent_state=given".into(), Box::new(move |e| text(e, "consent_state") == "given")).await?;
    check(format!("subject_ref={subject_ref}"), Box::new({
        let r = subject_ref.clone();
        move |e| text(e, "subject_ref") == r
    }))
    .await?;
    check("agency=idva-northbridge&kind=referral.ack".into(), Box::new(move |e| idva(e) && text(e, "kind") == "referral.ack")).await?;
    // Periods, whole UTC days, first and last day included.
    let start = midnight(today);
    check(format!("since={today}"), Box::new(move |e| at(e) >= start)).await?;
    assert_eq!(check(format!("until={}", day(1)), Box::new(move |e| at(e) < start)).await?, old);
    let (from, to) = (midnight(day(5)), midnight(day(2)));
    assert_eq!(check(format!("since={}&until={}", day(5), day(3)), Box::new(move |e| at(e) >= from && at(e) < to)).await?, old[..2]);
    let (from, to) = (midnight(day(2)), midnight(day(1)));
    assert_eq!(check(format!("since={0}&until={0}", day(2)), Box::new(move |e| at(e) >= from && at(e) < to)).await?, old[2..]);
    let from = midnight(day(3));
    check(format!("entry_type=near_miss&since={}", day(3)), Box::new(move |e| text(e, "entry_type") == "near_miss" && at(e) >= from)).await?;
    assert_eq!(ids_of(p.get("audit", &format!("/ledger?since={}&until={}", day(4), day(4))).await?.as_array().unwrap()), Vec::<String>::new());
    // Pages: five at a time, each from the cursor the last one ended at, give the whole
    // ledger in order; a page larger than the maximum is refused.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = p.get("audit", &format!("/ledger?limit=5&after={after}")).await?.as_array().cloned().unwrap();
        assert!(page.len() <= 5);
        paged.extend(ids_of(&page));
        match page.last() {
            Some(last) if page.len() == 5 => after = last["seq"].as_i64().unwrap(),
            _ => break,
        }
    }
    assert_eq!(paged, ids_of(&all));
    let near_after = p.get("audit", &format!("/ledger?entry_type=near_miss&limit=2&after={}", all[0]["seq"])).await?;
    assert_eq!(ids_of(near_after.as_array().unwrap()), near[..2]);
    let too_many = p.ig_lead().await?.get(format!("{}/ledger?limit=10001", p.url("audit"))).send().await?;
    assert_eq!(too_many.status().as_u16(), 400);
    let bad = p.ig_lead().await?.get(format!("{}/ledger?since=2026-13-01", p.url("audit"))).send().await?;
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().await?.contains("2026-13-01"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_queries_return_exactly_the_seeded_entries_on_sqlite() -> anyhow::Result<()> {
    queries_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_queries_return_exactly_the_seeded_entries_on_postgres() -> anyhow::Result<()> {
    queries_on(Backend::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_tampering_is_found_at_the_entry_on_sqlite() -> anyhow::Result<()> {
    tampering_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_tampering_is_found_at_the_entry_on_postgres() -> anyhow::Result<()> {
    tampering_on(Backend::Postgres).await
}
