//! `GET /metrics`: what an operator's Prometheus scrapes, in the OpenMetrics text format.
//!
//! Counters are counted where things happen (the outbox when a send is queued or refused,
//! the inbox when an envelope is stored or quarantined, the HTTP layer for each request);
//! gauges (the outbox, the consumer's backlog, the witness) are read at scrape time, one
//! query each. Labels come only from small fixed sets: kind names, reason codes, policy rule
//! names, route templates, status classes. Never an envelope id, a subject or case
//! reference, a staff id or free text: the scrape goes to a monitoring system that is not
//! part of the partnership's protocol.
//!
//! Counters start at zero when the service starts (Prometheus' `rate` and `increase` take
//! restarts in their stride); what is durable is in the database and the ledger.

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use sqlx::Row;

use crate::{send::SendError, transport};

/// The content type of the exposition `prometheus_client` writes.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// A near miss by the policy rule that refused it (a rule name of the partnership's signed
/// policy: a small set the IG lead writes, never a person's data).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabel {
    pub rule: String,
}

/// A value of the partnership bucket refused: which file (`directory`, `policy`) and why (a
/// code of the partnership feed's refusals).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeedLabel {
    pub key: &'static str,
    pub reason: &'static str,
}

/// Values of the partnership bucket refused and not written (the audit service keeps one too).
pub type FeedRefusals = Family<FeedLabel, Counter>;

/// Registers [`FeedRefusals`] in a registry, under one name for every service.
pub fn register_feed_refusals(registry: &mut Registry, refusals: &FeedRefusals) {
    registry.register(
        "partnership_values_refused",
        "Values of the partnership bucket (signed directory and policy) refused and not written to disk, by key and reason",
        refusals.clone(),
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    /// The route template (`/inbox/{id}`), never the path asked for.
    pub route: String,
    pub status: &'static str,
}

type F64Gauge = Gauge<f64, AtomicU64>;
type Histograms = Family<HttpLabels, Histogram, fn() -> Histogram>;

/// An agency service's metrics, shared by every handler and loop through the service's
/// shared state (`Ctx`).
pub struct Metrics {
    registry: Registry,
    pub sent: Family<KindLabel, Counter>,
    pub received: Family<KindLabel, Counter>,
    pub quarantined: Family<ReasonLabel, Counter>,
    pub near_misses: Family<RuleLabel, Counter>,
    pub partnership_refused: FeedRefusals,
    /// Deadlines that passed unmet (escalations raised).
    pub deadlines_missed: Counter,
    http: Histograms,
    outbox_depth: Gauge,
    outbox_oldest: F64Gauge,
    consumer_pending: F64Gauge,
    witness_alerts: Gauge,
    witness_checkpoint_age: F64Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("hub");
        let m = Metrics {
            registry: Registry::default(),
            sent: Family::default(),
            received: Family::default(),
            quarantined: Family::default(),
            near_misses: Family::default(),
            partnership_refused: Family::default(),
            deadlines_missed: Counter::default(),
            http: Family::new_with_constructor(|| Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])),
            outbox_depth: Gauge::default(),
            outbox_oldest: F64Gauge::default(),
            consumer_pending: F64Gauge::default(),
            witness_alerts: Gauge::default(),
            witness_checkpoint_age: F64Gauge::default(),
        };
        registry.register("disclosures_sent", "Disclosures sealed and queued for sending, by kind", m.sent.clone());
        registry.register("disclosures_received", "Envelopes received, verified and stored in the inbox, by kind", m.received.clone());
        registry.register("quarantined", "Received envelopes refused and quarantined, by reason code", m.quarantined.clone());
        registry.register("near_misses", "Sends the sharing policy refused (near misses), by policy rule", m.near_misses.clone());
        register_feed_refusals(&mut registry, &m.partnership_refused);
        registry.register("deadlines_missed", "Deadlines that passed unmet: escalations raised (and signed deadline_missed events queued)", m.deadlines_missed.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency, by method, route template and status class", m.http.clone());
        registry.register("outbox_depth", "Outbox messages not yet published (nor stopped or set aside), at scrape time", m.outbox_depth.clone());
        registry.register("outbox_oldest_unpublished_seconds", "Age of the oldest unpublished outbox message (0 when none), at scrape time", m.outbox_oldest.clone());
        registry.register("consumer_pending", "Messages on the stream not yet delivered to this agency's consumer (NaN when the broker did not answer)", m.consumer_pending.clone());
        registry.register("witness_alerts", "Alerts the ledger witness raised (a forked, rolled back or inconsistent checkpoint)", m.witness_alerts.clone());
        registry.register("witness_last_checkpoint_age_seconds", "Seconds since the witness last accepted a ledger checkpoint (NaN before the first)", m.witness_checkpoint_age.clone());
        Metrics { registry, ..m }
    }

    /// A send sealed and queued, or refused by the policy (a near miss).
    pub fn count_send<T>(&self, kind: isp::Kind, result: &Result<T, SendError>) {
        match result {
            Ok(_) => {
                self.sent.get_or_create(&KindLabel { kind: isp::kind::name(kind) }).inc();
            }
            Err(SendError::Denied { denial, .. }) => {
                self.near_misses.get_or_create(&RuleLabel { rule: denial.rule.clone() }).inc();
            }
            Err(_) => {}
        }
    }

    /// The exposition, with the gauges read now from the agency's database and the broker.
    pub async fn scrape(&self, pool: &sqlx::AnyPool, jetstream: &async_nats::jetstream::Context, agency: &str) -> String {
        let (depth, oldest) = match outbox_backlog(pool).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: could not read the outbox");
                (0, f64::NAN)
            }
        };
        self.outbox_depth.set(depth);
        self.outbox_oldest.set(oldest);
        self.consumer_pending.set(consumer_pending(jetstream, agency).await);
        match witness(pool).await {
            Ok((alerts, age)) => {
                self.witness_alerts.set(alerts);
                self.witness_checkpoint_age.set(age);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: could not read the witness"),
        }
        encode(&self.registry)
    }
}

/// The registry as OpenMetrics text.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("writing to a String cannot fail");
    text
}

/// A 200 with the exposition and its content type.
pub fn exposition(text: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Seconds from an epoch-ms time until now.
pub fn seconds_since_ms(at_ms: i64) -> f64 {
    (isp::now_ms() - at_ms).max(0) as f64 / 1000.0
}

/// How many outbox messages wait to be published, and the age of the oldest: one query.
async fn outbox_backlog(pool: &sqlx::AnyPool) -> Result<(i64, f64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT COUNT(*) AS depth, MIN(created_at_ms) AS oldest FROM outbox \
         WHERE published_at_ms IS NULL AND stopped_at_ms IS NULL AND set_aside_at_ms IS NULL",
    )
    .fetch_one(pool)
    .await?;
    let oldest: Option<i64> = row.try_get("oldest")?;
    Ok((row.try_get("depth")?, oldest.map_or(0.0, seconds_since_ms)))
}

/// The consumer's `num_pending`, asked of the broker now; NaN when it does not answer.
async fn consumer_pending(jetstream: &async_nats::jetstream::Context, agency: &str) -> f64 {
    let name = transport::agency_consumer_name(agency);
    let ask = async {
        // Looking the consumer up brings its info: one request to the broker.
        let consumer: async_nats::jetstream::consumer::PullConsumer = jetstream.get_consumer_from_stream(&name, transport::STREAM).await?;
        anyhow::Ok(consumer.cached_info().num_pending)
    };
    match tokio::time::timeout(std::time::Duration::from_secs(2), ask).await {
        Ok(Ok(pending)) => pending as f64,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "metrics: the consumer's info is unavailable");
            f64::NAN
        }
        Err(_) => f64::NAN,
    }
}

/// The witness's alerts, and the seconds since it last accepted a checkpoint: one query.
async fn witness(pool: &sqlx::AnyPool) -> Result<(i64, f64), sqlx::Error> {
    let row = sqlx::query("SELECT (SELECT COUNT(*) FROM witness_alert) AS alerts, (SELECT MAX(checked_at_ms) FROM witnessed_checkpoint) AS last")
        .fetch_one(pool)
        .await?;
    let last: Option<i64> = row.try_get("last")?;
    Ok((row.try_get("alerts")?, last.map_or(f64::NAN, seconds_since_ms)))
}

/// Middleware (a route layer, so the route is matched): each request's latency by route
/// template and status class.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let method = match request.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let status = match response.status().as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    };
    metrics.http.get_or_create(&HttpLabels { method, route, status }).observe(started.elapsed().as_secs_f64());
    response
}
