//! Slow and large clients against a real agency service, logged in as its staff: a body over
//! the limit is refused and nothing is stored, one at the limit is delivered (the limit fits
//! what the broker carries), and while connections stall and requests hang `/health` still
//! answers. The mechanics of each limit, one at a time, are in services/runtime/tests/limits.rs.
//! Outcomes only; times appear only as generous deadlines.

use std::time::Duration;

use runtime::{
    serve::{BROKER_MAX_PAYLOAD, ENVELOPE_ALLOWANCE, Limits},
    transport::PUBLISH_HEADER_ALLOWANCE,
};
use serde_json::{Value, json};
use tests::{Backend, Partnership, Role, eventually, idva_referral_of_size, referral_consent};
use tokio::{
    io::AsyncWriteExt as _,
    net::TcpStream,
};

const HOUSING: &str = "housing-northbridge";
const IDVA: &str = "idva-northbridge";
/// Longest any step may take before the test fails: far above what each needs.
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn a_body_at_the_limit_seals_within_what_the_broker_carries() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    hub::partnership::ensure_demo(dir.path())?;
    let isp = runtime::Config::embedded(dir.path(), HOUSING, "").load_isp()?;
    let limit = Limits::default().max_body_bytes;
    // The largest referral, sent without consent (high risk) so that sealing needs no record.
    let mut body: Value = serde_json::from_slice(&idva_referral_of_size(1, limit))?;
    body["consent"] = Value::Null;
    body["lawful_basis"] = json!("uk-gdpr-9-2-g-dpa-s1-p18");
    body["without_consent"] = json!({"rationale_code": "asking-would-increase-risk", "rationale": "synthetic"});
    let bytes = serde_json::to_vec(&body)?;
    assert!(bytes.len() >= limit, "as large as a body may be");
    let request = runtime::api::json_body(&bytes.clone().into()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut out = runtime::api::outgoing(&isp, request).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    // High risk, proved as a service proves it: a signed DASH summary in the payload.
    out.risk = proto::v1::RiskLevel::High;
    *isp::risk::summary_slot(&mut out.payload).expect("an IDVA referral carries a summary") = Some(tests::signed_high_summary(&isp));
    out.justification.as_mut().expect("without consent").officer = "demo.team-manager".into();
    let envelope = isp.seal(&out, None)?.envelope.len();
    println!("a {}-byte body seals into a {envelope}-byte envelope", bytes.len());
    assert!(envelope + PUBLISH_HEADER_ALLOWANCE <= BROKER_MAX_PAYLOAD, "{envelope} bytes do not fit the broker's {BROKER_MAX_PAYLOAD}");
    assert!(envelope <= bytes.len() + ENVELOPE_ALLOWANCE, "sealing grew the body by more than the allowance");
    Ok(())
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_and_nothing_is_stored() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let limit = Limits::default().max_body_bytes;
    let (status, v) = p.post(HOUSING, "/consents", &referral_consent(1)).await?;
    assert_eq!(status, 201, "{v}");
    let http = p.caseworker(HOUSING).await?;
    let url = format!("{}/disclosures", p.url(HOUSING));
    let send = |body: Vec<u8>| http.post(&url).header(reqwest::header::CONTENT_TYPE, "application/json").body(body).send();

    let over = send(idva_referral_of_size(1, limit + 1)).await?;
    assert_eq!(over.status(), 413);
    let answer: Value = over.json().await?;
    assert_eq!(answer["error"], "too_large", "{answer}");
    assert_eq!(p.get(HOUSING, "/disclosures").await?, json!([]), "nothing was stored");

    // At the limit: taken, sealed, published and delivered.
    let at = send(idva_referral_of_size(1, limit)).await?;
    let status = at.status();
    let answer: Value = at.json().await?;
    assert_eq!(status, 201, "{answer}");
    let id = answer["envelope_id"].as_str().expect("an envelope id").to_owned();
    eventually("the largest referral in the IDVA's inbox", DEADLINE, || async {
        let inbox = p.get(IDVA, "/inbox").await?;
        Ok(inbox.as_array().and_then(|a| a.iter().any(|e| e["envelope_id"] == id.as_str()).then_some(())))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_payload_that_grows_past_the_broker_once_sealed_is_refused_and_blocks_nothing() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    // `-1,` is three bytes of JSON and ten of protobuf (a negative enum number): a body within
    // the limit whose envelope the broker would refuse.
    let criteria = vec![-1; Limits::default().max_body_bytes / 3 - 1000];
    let subject = json!({"full_name": "Synthetic Person", "date_of_birth": "1990-01-01"});
    let assessment = tests::dash_assessment(&p, HOUSING, &subject, 15).await?;
    let body = json!({"to": "marac-northbridge", "purpose": "marac", "lawful_basis": "uk-gdpr-9-2-g-dpa-s1-p18", "assessment_id": assessment,
        "subject": subject, "case_ref": "LIM-1",
        "without_consent": {"rationale_code": "asking-would-increase-risk", "rationale": "synthetic"},
        "payload": {"maracReferral": {"survivor": {"fullName": "Synthetic Person"}, "criteria": criteria}}});
    assert!(serde_json::to_vec(&body)?.len() <= Limits::default().max_body_bytes);
    let (status, answer) = p.post(HOUSING, "/disclosures", &body).await?;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "too_large", "{answer}");
    assert_eq!(p.get(HOUSING, "/disclosures").await?, json!([]), "nothing was queued");
    // The outbox is not held up: the next referral is delivered.
    let (status, v) = p.post(HOUSING, "/consents", &referral_consent(2)).await?;
    assert_eq!(status, 201, "{v}");
    let (status, answer) = p.post(HOUSING, "/disclosures", &tests::idva_referral(2)).await?;
    assert_eq!(status, 201, "{answer}");
    let id = answer["envelope_id"].as_str().expect("an envelope id").to_owned();
    eventually("the next referral in the IDVA's inbox", DEADLINE, || async {
        let inbox = p.get(IDVA, "/inbox").await?;
        Ok(inbox.as_array().and_then(|a| a.iter().any(|e| e["envelope_id"] == id.as_str()).then_some(())))
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn stalled_connections_and_hung_requests_leave_health_answering() -> anyhow::Result<()> {
    let limits = Limits { header_timeout: Duration::from_secs(1), request_timeout: Duration::from_secs(5), max_concurrent: 2, max_connections: 32, ..Limits::default() };
    let p = Partnership::start_limited(Backend::Sqlite, limits).await?;
    let base = p.url(HOUSING);
    let addr = base.trim_start_matches("http://").to_owned();
    let health = || async { anyhow::Ok(reqwest::get(format!("{base}/health")).await?.status().as_u16()) };

    // More connections stalled mid request line than the service keeps open.
    let mut stalled = Vec::new();
    for _ in 0..100 {
        let mut stream = TcpStream::connect(&addr).await?;
        stream.write_all(b"POST /disclo").await?;
        stalled.push(stream);
    }
    assert_eq!(health().await?, 200, "/health answers beside stalled connections");
    for stream in &mut stalled {
        assert!(closed_by_server(stream).await, "a stalled connection is cut off");
    }

    // Two logged-in sends whose bodies stop halfway take both turns (or wait for one).
    let password = p.logins.account(HOUSING, &hub::staff::demo_id(Role::Caseworker), &[Role::Caseworker]).await?;
    let (cookie, csrf) = hub::staff::session(&base, &hub::staff::demo_id(Role::Caseworker), &password).await?;
    let caseworker = p.caseworker(HOUSING).await?;
    let head = format!(
        "POST /disclosures HTTP/1.1\r\nHost: test\r\nConnection: close\r\nCookie: {cookie}\r\nX-CSRF-Token: {csrf}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"to\":"
    );
    let mut finished = TcpStream::connect(&addr).await?;
    finished.write_all(head.as_bytes()).await?;
    let mut hung = TcpStream::connect(&addr).await?;
    hung.write_all(head.as_bytes()).await?;
    assert_eq!(health().await?, 200, "/health does not wait for a turn");
    // Another request waits for a turn; it gets one when the first send ends.
    let waiting = tokio::spawn({
        let url = format!("{base}/disclosures");
        async move { anyhow::Ok(caseworker.get(url).send().await?.status().as_u16()) }
    });
    finished.write_all(&[b' '; 94]).await?;
    let (status, answer) = read_answer(&mut finished).await?;
    assert_eq!(status, 400, "the finished send is answered: {answer}");
    assert_eq!(tokio::time::timeout(DEADLINE, waiting).await???, 200, "the waiting request had its turn");
    // The hung send is cut off at the request timeout, with the API's JSON error.
    let (status, answer) = read_answer(&mut hung).await?;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "timeout", "{answer}");
    assert_eq!(health().await?, 200);
    assert_eq!(p.get(HOUSING, "/disclosures").await?, json!([]), "neither send stored anything");
    Ok(())
}

async fn read_answer(stream: &mut TcpStream) -> anyhow::Result<(u16, Value)> {
    tests::raw_http::read_answer(stream, DEADLINE).await
}

async fn closed_by_server(stream: &mut TcpStream) -> bool {
    tests::raw_http::closed_by_server(stream, DEADLINE).await
}
