//! Tamper evidence: alter, delete, reorder or insert one entry of a real ledger in the
//! database, and verification fails at exactly that entry, saying what is wrong; on SQLite
//! and PostgreSQL.

use std::time::Duration;

use audit::ledger::{self, Entry};
use sqlx::AnyPool;
use tests::{Backend, Partnership, eventually, send_referrals};

/// Replaces the ledger's entries and tree with `entries` (appending recomputes the chain and
/// the tree); with the original entries, it puts the ledger back exactly as it was.
async fn rewrite(pool: &AnyPool, entries: &[Entry]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM ledger").execute(&mut *tx).await?;
    sqlx::query("DELETE FROM merkle_node").execute(&mut *tx).await?;
    ledger::append(&mut tx, entries.to_vec()).await?;
    tx.commit().await?;
    Ok(())
}

async fn restore(pool: &AnyPool, entries: &[Entry]) -> anyhow::Result<()> {
    rewrite(pool, entries).await
}

/// Waits until a signed checkpoint covers `size` entries.
async fn checkpoint_covering(p: &Partnership, size: u64) -> anyhow::Result<serde_json::Value> {
    eventually("a checkpoint covering the ledger", Duration::from_secs(60), || async {
        let c = p.get("audit", "/checkpoints").await?;
        Ok(c.as_array().and_then(|c| c.last()).filter(|c| c["tree_size"].as_u64() >= Some(size)).cloned())
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
    Ok(ledger::verify(pool, Some(directory)).await?.first_bad.map(|p| (p.seq, p.what)))
}

async fn tampering_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    send_referrals(p.http.clone(), p.url("housing-northbridge"), 0, 8, 1, sent).await?;
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
    let fast = ledger::verify_with(&pool, Some(&directory), ledger::Depth { signatures: false }).await?.first_bad.expect("caught by the checkpoint");
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
    send_referrals(p.http.clone(), p.url("housing-northbridge"), 0, 11, 2, sent).await?;
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
    }
    Ok(())
}

fn hex_of_zero() -> String {
    "00".repeat(32)
}

/// A forged checkpoint, signed with the real IG key, that forks or rewrites the ledger is
/// caught by every agency's witness; real checkpoints after it are still accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forked_checkpoint_is_caught_by_the_agencies_witnesses() -> anyhow::Result<()> {
    use isp::checkpoint::{CHECKPOINT_SUBJECT, Checkpoint};
    let p = Partnership::start(Backend::Sqlite).await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    send_referrals(p.http.clone(), p.url("housing-northbridge"), 0, 3, 1, sent.clone()).await?;
    let real = checkpoint_covering(&p, 3).await?;
    let size = real["tree_size"].as_u64().unwrap();
    let witnessed = |agency: &'static str, at_least: u64| {
        let p = &p;
        async move {
            eventually("the witness accepting the checkpoint", Duration::from_secs(60), || async {
                let w = p.get(agency, "/witness").await?;
                Ok((w["last_accepted"]["tree_size"].as_u64() >= Some(at_least)).then_some(w))
            })
            .await
        }
    };
    assert_eq!(witnessed("idva-northbridge", size).await?["alerts"], serde_json::json!([]));

    // The audit operator (who holds the IG key) publishes a second checkpoint at the same
    // size with another root: a fork.
    let ig = isp::AgencyKeys::load(&p.data().join("keys").join("ig-northbridge.toml"))?;
    let partnership = isp::Directory::load(&hub::partnership::directory_path(p.data()))?.partnership;
    let js = async_nats::jetstream::new(async_nats::connect(&p.hub.nats_url).await?);
    let publish = |c: Checkpoint| {
        let js = js.clone();
        async move { js.publish(CHECKPOINT_SUBJECT, serde_json::to_vec(&c).unwrap().into()).await?.await.map(|_| ()).map_err(anyhow::Error::from) }
    };
    publish(Checkpoint::sign(&ig, &partnership, size, &[9; 32], isp::now_ms())).await?;
    let alerts = eventually("the fork alert", Duration::from_secs(30), || async {
        let w = p.get("idva-northbridge", "/witness").await?;
        Ok(w["alerts"].as_array().filter(|a| !a.is_empty()).cloned())
    })
    .await?;
    assert!(alerts[0]["what"].as_str().unwrap().starts_with("FORK"), "{alerts:?}");

    // More real entries: the next real checkpoint is consistent and accepted.
    send_referrals(p.http.clone(), p.url("housing-northbridge"), 3, 2, 1, sent).await?;
    let next = checkpoint_covering(&p, size + 2).await?["tree_size"].as_u64().unwrap();
    witnessed("idva-northbridge", next).await?;

    // A checkpoint claiming entries the ledger never had, with a made-up root: no
    // consistency proof can exist, and the witness says so.
    publish(Checkpoint::sign(&ig, &partnership, next + 10, &[7; 32], isp::now_ms())).await?;
    let alerts = eventually("the inconsistency alert", Duration::from_secs(30), || async {
        let w = p.get("housing-northbridge", "/witness").await?;
        Ok(w["alerts"].as_array().filter(|a| a.iter().any(|x| x["what"].as_str().unwrap_or_default().starts_with("INCONSISTENT"))).cloned())
    })
    .await?;
    assert_eq!(alerts.len(), 2, "one fork and one inconsistency: {alerts:?}");
    let w = p.get("housing-northbridge", "/witness").await?;
    assert_eq!(w["last_accepted"]["tree_size"].as_u64(), Some(next), "the witness keeps its last good checkpoint");
    Ok(())
}

/// Ledger queries return exactly the seeded disclosures.
async fn queries_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ids = send_referrals(p.http.clone(), p.url("housing-northbridge"), 0, 5, 1, sent).await?;
    let survivor = serde_json::json!({"fullName": "Query Person", "dateOfBirth": "1985-02-03", "address": "1 Test Street", "phone": "07700 900999"});
    let subject = serde_json::json!({"full_name": "Query Person", "date_of_birth": "1985-02-03"});
    let (status, marac) = p
        .post("housing-northbridge", "/disclosures", &serde_json::json!({"to": "marac-northbridge", "purpose": "marac", "lawful_basis": "uk-gdpr-9-2-g-dpa-s1-p18",
            "risk": "high", "subject": subject, "case_ref": "Q-1",
            "without_consent": {"officer": "HSG-staff-0001", "rationale_code": "asking-would-increase-risk", "rationale": "Test rationale"},
            "payload": {"maracReferral": {"survivor": survivor, "criteria": ["MARAC_CRITERION_VISIBLE_HIGH_RISK"], "survivorAware": false, "reasonNoConsent": "Risk"}}}))
        .await?;
    assert_eq!(status, 201, "{marac}");
    let (status, denied) = p
        .post("housing-northbridge", "/disclosures", &serde_json::json!({"to": "perpetrator-pathways", "purpose": "perpetrator-intervention", "lawful_basis": "cda-1998-s115",
            "risk": "high", "subject": subject, "case_ref": "Q-1",
            "payload": {"perpetratorReferral": {"perpetrator": {"fullName": "Query Harmer"}, "survivor": survivor, "pathway": "PATHWAY_HIGH_HARM"}}}))
        .await?;
    assert_eq!(status, 403, "{denied}");
    // Five consent records, five referrals and five receipts; the MARAC referral and its
    // receipt; the near miss.
    eventually("eighteen entries", Duration::from_secs(60), || async { Ok((p.ledger().await?.len() >= 18).then_some(())) }).await?;

    let ids_of = |v: serde_json::Value| -> Vec<String> { v.as_array().unwrap().iter().map(|e| e["entry_id"].as_str().unwrap().to_owned()).collect() };
    let mut to_idva = ids_of(p.get("audit", "/ledger?agency=idva-northbridge&kind=housing.idva_referral").await?);
    to_idva.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(to_idva, want);
    assert_eq!(ids_of(p.get("audit", "/ledger?without_consent=true").await?), vec![marac["envelope_id"].as_str().unwrap().to_owned()]);
    assert_eq!(ids_of(p.get("audit", "/ledger?entry_type=near_miss").await?), vec![denied["near_miss_id"].as_str().unwrap().to_owned()]);
    assert_eq!(ids_of(p.get("audit", "/ledger?recipient=marac-northbridge&kind=marac.referral").await?).len(), 1);
    assert_eq!(ids_of(p.get("audit", "/ledger?lawful_basis=uk-gdpr-6-1-a&sender=housing-northbridge").await?).len(), 5);
    let subject_ref = p.get("audit", "/ledger?without_consent=true").await?[0]["subject_ref"].as_str().unwrap().to_owned();
    assert_eq!(
        ids_of(p.get("audit", &format!("/ledger?subject_ref={subject_ref}")).await?).len(),
        3,
        "the MARAC referral, MARAC's receipt for it and the near miss are about the same person"
    );
    assert_eq!(ids_of(p.get("audit", "/ledger?agency=idva-northbridge&kind=referral.ack").await?).len(), 5, "one delivered receipt per referral");
    let today = time::OffsetDateTime::now_utc().date();
    assert_eq!(ids_of(p.get("audit", &format!("/ledger?since={today}")).await?).len(), 18);
    assert_eq!(ids_of(p.get("audit", &format!("/ledger?until={}", today.previous_day().unwrap())).await?).len(), 0);
    let bad = p.http.get(format!("{}/ledger?since=2026-13-01", p.url("audit"))).send().await?;
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
