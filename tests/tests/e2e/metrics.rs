//! `GET /metrics` for Prometheus: after one referral from housing to the IDVA, housing counts
//! one sent and the IDVA one received of that kind, housing's outbox drains to 0, requests are
//! timed by route template, and the audit service reports its ledger. Every scrape is
//! exposition text (`name{labels} value` lines) that names no envelope id, subject or case
//! reference, consent id or name; an agency admin may read it and a caseworker may not.

use std::{collections::HashMap, time::Duration};

use tests::{Backend, Partnership, Role, eventually, send_referrals};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
const KIND: &str = r#"{kind="housing.idva_referral"}"#;

/// The samples of an exposition, by series (`name{labels}`); an error for any line that is
/// neither a comment nor `name{labels} value`.
fn parse(text: &str) -> anyhow::Result<HashMap<String, f64>> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').ok_or_else(|| anyhow::anyhow!("no value: {line}"))?;
        let value: f64 = value.parse().map_err(|_| anyhow::anyhow!("not a number: {line}"))?;
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, Some(rest.strip_suffix('}').ok_or_else(|| anyhow::anyhow!("unclosed labels: {line}"))?)),
            None => (series, None),
        };
        anyhow::ensure!(
            name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "not a metric name: {line}"
        );
        for label in labels.into_iter().flat_map(|l| l.split(',')) {
            let (key, quoted) = label.split_once('=').ok_or_else(|| anyhow::anyhow!("not a label: {line}"))?;
            anyhow::ensure!(!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "not a label name: {line}");
            anyhow::ensure!(quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'), "not a quoted label value: {line}");
        }
        anyhow::ensure!(samples.insert(series.to_owned(), value).is_none(), "a series twice: {line}");
    }
    anyhow::ensure!(text.trim_end().ends_with("# EOF"), "the exposition does not end with # EOF");
    Ok(samples)
}

async fn scrape(http: &reqwest::Client, url: &str) -> anyhow::Result<(String, HashMap<String, f64>)> {
    let response = http.get(format!("{url}/metrics")).send().await?;
    anyhow::ensure!(response.status().as_u16() == 200, "{url}/metrics: HTTP {}", response.status());
    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    anyhow::ensure!(content_type.starts_with("application/openmetrics-text"), "{url}/metrics: content type {content_type}");
    let text = response.text().await?;
    let samples = parse(&text)?;
    Ok((text, samples))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_a_referral_at_both_ends_and_name_nobody() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let housing = p.caseworker(HOUSING).await?;
    let id = send_referrals(housing.clone(), p.url(HOUSING), 0, 1, 1, sent).await?.remove(0);
    let mine = p.get(HOUSING, &format!("/disclosures/{id}")).await?;
    let (subject_ref, case_ref) = (mine["subject_ref"].as_str().unwrap_or_default().to_owned(), mine["case_ref"].as_str().unwrap_or_default().to_owned());
    assert!(!subject_ref.is_empty() && !case_ref.is_empty(), "{mine}");

    let (housing_admin, idva_admin) = (p.as_role(HOUSING, Role::AgencyAdmin).await?, p.as_role(IDVA, Role::AgencyAdmin).await?);
    let (housing_text, at_housing) = eventually("housing's outbox drained", Duration::from_secs(30), || async {
        let (text, samples) = scrape(&housing_admin, &p.url(HOUSING)).await?;
        Ok((samples.get("hub_outbox_depth") == Some(&0.0)).then_some((text, samples)))
    })
    .await?;
    assert_eq!(at_housing.get(&format!("hub_disclosures_sent_total{KIND}")), Some(&1.0), "{housing_text}");
    assert_eq!(at_housing.get("hub_outbox_oldest_unpublished_seconds"), Some(&0.0), "{housing_text}");
    assert_eq!(at_housing.get(&format!("hub_disclosures_received_total{KIND}")), None, "housing received no referral: {housing_text}");
    // Timed by route template: the GET of this disclosure is under /disclosures/{id}.
    assert_eq!(at_housing.get(r#"hub_http_request_duration_seconds_count{method="POST",route="/disclosures",status="2xx"}"#), Some(&1.0), "{housing_text}");
    assert!(at_housing.contains_key(r#"hub_http_request_duration_seconds_count{method="GET",route="/disclosures/{id}",status="2xx"}"#), "{housing_text}");

    let (idva_text, at_idva) = eventually("the referral counted at the IDVA", Duration::from_secs(30), || async {
        let (text, samples) = scrape(&idva_admin, &p.url(IDVA)).await?;
        Ok(samples.contains_key(&format!("hub_disclosures_received_total{KIND}")).then_some((text, samples)))
    })
    .await?;
    assert_eq!(at_idva.get(&format!("hub_disclosures_received_total{KIND}")), Some(&1.0), "{idva_text}");
    for gauge in ["hub_consumer_pending", "hub_witness_alerts", "hub_witness_last_checkpoint_age_seconds"] {
        assert!(at_idva.contains_key(gauge), "{gauge} missing: {idva_text}");
    }
    assert_eq!(at_idva.get("hub_witness_alerts"), Some(&0.0), "{idva_text}");
    // The broker answers the consumer's info (NaN would mean it did not).
    assert!(at_idva["hub_consumer_pending"].is_finite(), "{idva_text}");

    let ig = p.ig_lead().await?;
    let (audit_text, at_audit) = eventually("the referral in the ledger's metrics", Duration::from_secs(30), || async {
        let (text, samples) = scrape(&ig, &p.url("audit")).await?;
        Ok((samples.get("audit_ledger_entries").copied().unwrap_or_default() >= 1.0).then_some((text, samples)))
    })
    .await?;
    let by_type: f64 = at_audit.iter().filter(|(k, _)| k.starts_with("audit_ledger_entries_by_type{")).map(|(_, v)| v).sum();
    assert_eq!(Some(&by_type), at_audit.get("audit_ledger_entries"), "{audit_text}");
    assert_eq!((at_audit.get("audit_stream_gaps"), at_audit.get("audit_stream_resets")), (Some(&0.0), Some(&0.0)), "{audit_text}");

    for (service, text) in [(HOUSING, &housing_text), (IDVA, &idva_text), ("audit", &audit_text)] {
        for secret in [id.as_str(), &subject_ref, &case_ref, "Synthetic Person", "CON-T-0", "demo."] {
            assert!(!text.contains(secret), "{service}'s metrics name {secret}: {text}");
        }
    }

    // Staff who work cases do not read the service's metrics.
    for service in [HOUSING, IDVA, "audit"] {
        let status = p.caseworker(service).await?.get(format!("{}/metrics", p.url(service))).send().await?.status().as_u16();
        assert_eq!(status, 403, "a caseworker read {service}'s metrics");
    }
    Ok(())
}
