//! Readiness apart from liveness: `GET /ready` answers 200 while a service's database answers
//! and its broker is connected, and 503 naming the broker while nats-server is down, when
//! `GET /health` still answers 200; both without a login, at an agency service and at the audit
//! service.

use std::time::Duration;

use serde_json::Value;
use tests::{Backend, Partnership, eventually};

const HOUSING: &str = "housing-northbridge";

async fn probe(url: &str, path: &str) -> anyhow::Result<(u16, Value)> {
    let response = reqwest::Client::new().get(format!("{url}{path}")).send().await?;
    Ok((response.status().as_u16(), response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ready_follows_the_broker_while_health_stays_up() -> anyhow::Result<()> {
    let mut p = Partnership::start(Backend::Sqlite).await?;
    let services = [p.url(HOUSING), p.url("audit")];
    for url in &services {
        let (status, v) = probe(url, "/ready").await?;
        assert_eq!((status, &v["ready"], &v["database"], &v["broker"]), (200, &Value::Bool(true), &Value::Bool(true), &Value::Bool(true)), "{url}: {v}");
    }
    p.hub.nats.as_mut().expect("the test partnership runs its own nats-server").stop().await?;
    for url in &services {
        let v = eventually(&format!("{url} not ready without the broker"), Duration::from_secs(30), || async {
            let (status, v) = probe(url, "/ready").await?;
            Ok((status == 503).then_some(v))
        })
        .await?;
        assert_eq!((&v["ready"], &v["database"], &v["broker"]), (&Value::Bool(false), &Value::Bool(true), &Value::Bool(false)), "{url}: {v}");
        assert_eq!(probe(url, "/health").await?.0, 200, "{url} is alive all the same");
    }
    p.hub.nats.as_mut().unwrap().restart().await?;
    for url in &services {
        eventually(&format!("{url} ready again"), Duration::from_secs(30), || async { Ok((probe(url, "/ready").await?.0 == 200).then_some(())) }).await?;
    }
    Ok(())
}
