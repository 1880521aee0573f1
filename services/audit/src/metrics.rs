//! `GET /metrics` of the audit service: the ledger as Prometheus sees it, read from the
//! database at each scrape (one query for the entries, one for the latest checkpoint), so
//! nothing is counted twice across restarts. Labels: entry types only; and the partnership
//! bucket's values it refused since it started, by key and reason.

use std::sync::atomic::AtomicU64;

use axum::response::Response;
use prometheus_client::{encoding::EncodeLabelSet, metrics::{family::Family, gauge::Gauge}, registry::Registry};
use runtime::metrics::{encode, exposition, seconds_since_ms};
use sqlx::Row;

use crate::ledger::EntryType;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabel {
    entry_type: String,
}

/// The exposition of the ledger in `pool`, with the partnership bucket's `refused` values.
pub(crate) async fn render(pool: &sqlx::AnyPool, refused: &runtime::metrics::FeedRefusals) -> Result<Response, runtime::api::ApiError> {
    let rows = sqlx::query("SELECT entry_type, COUNT(*) AS n FROM ledger GROUP BY entry_type").fetch_all(pool).await?;
    let last: Option<i64> = sqlx::query("SELECT MAX(at_ms) AS last FROM checkpoint").fetch_one(pool).await?.try_get("last")?;

    let mut registry = Registry::with_prefix("audit");
    let (size, by_type, gaps, resets) = (Gauge::<i64>::default(), Family::<TypeLabel, Gauge>::default(), Gauge::<i64>::default(), Gauge::<i64>::default());
    for row in rows {
        let (entry_type, n): (String, i64) = (row.try_get("entry_type")?, row.try_get("n")?);
        size.inc_by(n);
        match entry_type.parse() {
            Ok(EntryType::StreamGap) => {
                gaps.set(n);
            }
            Ok(EntryType::StreamReset) => {
                resets.set(n);
            }
            _ => {}
        }
        by_type.get_or_create(&TypeLabel { entry_type }).set(n);
    }
    let checkpoint_age = Gauge::<f64, AtomicU64>::default();
    checkpoint_age.set(last.map_or(f64::NAN, seconds_since_ms));
    registry.register("ledger_entries", "Entries in the ledger (its Merkle tree's size)", size);
    registry.register("ledger_entries_by_type", "Entries in the ledger, by entry type", by_type);
    registry.register("stream_gaps", "stream_gap entries: stream positions gone before the ledger read them", gaps);
    registry.register("stream_resets", "stream_reset entries: the stream was recreated", resets);
    registry.register("last_checkpoint_age_seconds", "Seconds since the latest signed checkpoint (NaN before the first)", checkpoint_age);
    runtime::metrics::register_feed_refusals(&mut registry, refused);
    Ok(exposition(encode(&registry)))
}
