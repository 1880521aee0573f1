//! Tamper evidence: alter, delete, reorder or insert one entry of a real ledger in the
//! database, and verification fails at exactly that entry, saying what is wrong; on SQLite
//! and PostgreSQL.

use std::time::Duration;

use audit::ledger::{self, Entry};
use sqlx::AnyPool;
use tests::{Backend, Partnership, eventually, send_referrals};

/// Puts the ledger back as it was (appending recomputes the same chain).
async fn restore(pool: &AnyPool, entries: &[Entry]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM ledger").execute(&mut *tx).await?;
    ledger::append(&mut tx, entries.to_vec()).await?;
    tx.commit().await?;
    Ok(())
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
    eventually("eight disclosures in the ledger", Duration::from_secs(60), || async { Ok((p.ledger().await?.len() >= 8).then_some(())) }).await?;
    let pool = audit::open_ledger(&p.database_url("audit").await?).await?;
    let directory = isp::Directory::load(&hub::partnership::directory_path(p.data()))?;
    let original = ledger::list(&pool, None).await?;
    assert_eq!(original.len(), 8);
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
    let mut forged = original.clone();
    forged[3].purpose = "marac".into();
    exec(&pool, &["DELETE FROM ledger"]).await?;
    let mut tx = pool.begin().await?;
    ledger::append(&mut tx, forged).await?;
    tx.commit().await?;
    let (seq, what) = first_bad(&pool, &directory).await?.expect("rebuilt-chain forgery detected");
    assert_eq!(seq, 4);
    assert!(what.contains("no longer match the signed record"), "{what}");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_tampering_is_found_at_the_entry_on_sqlite() -> anyhow::Result<()> {
    tampering_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ledger_tampering_is_found_at_the_entry_on_postgres() -> anyhow::Result<()> {
    tampering_on(Backend::Postgres).await
}
