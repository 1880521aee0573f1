//! No payload plaintext in the broker: a distinctive synthetic name, address and phone number
//! in the demo's payloads are absent from the JetStream store files and from everything a
//! plain NATS subscriber to `>` sees, while the recipient can read them.

use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use hub::demo::{SURVIVOR_ADDRESS, SURVIVOR_NAME, SURVIVOR_PHONE};
use tests::{Backend, Partnership, contains, files_containing};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn survivor_details_never_cross_the_broker_in_clear() -> anyhow::Result<()> {
    let p = Partnership::start(Backend::Sqlite).await?;
    let client = p.broker().await?;
    let mut everything = client.subscribe(">").await?;
    client.flush().await?;
    let wire = Arc::new(Mutex::new(Vec::<u8>::new()));
    let seen = wire.clone();
    let tap = tokio::spawn(async move {
        while let Some(m) = everything.next().await {
            let mut w = seen.lock().unwrap();
            w.extend_from_slice(m.subject.as_bytes());
            if let Some(h) = &m.headers {
                w.extend_from_slice(format!("{h:?}").as_bytes());
            }
            w.extend_from_slice(&m.payload);
        }
    });

    let report = hub::demo::play(&p.hub, &p.logins, false).await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    tap.abort();
    let wire = wire.lock().unwrap().clone();

    // The tap really saw the disclosures (so its silence about the name means something)...
    assert!(contains(&wire, b"hub.v1.msg.housing-northbridge.idva-northbridge"), "the tap saw no disclosure");
    // ...and the recipient really holds the name (it was in a payload that crossed the wire).
    let idva_referral = report.steps.iter().find(|s| s.kind == "idvaReferral").unwrap();
    let opened = p.get("idva-northbridge", &format!("/inbox/{}", idva_referral.id)).await?;
    assert!(opened.to_string().contains(SURVIVOR_NAME), "the IDVA cannot read the referral: {opened}");

    let store = p.data().join("nats");
    assert!(files_containing(&store, b"hub.v1.msg.housing-northbridge")?.len() > 0, "no stream files in {}", store.display());
    for secret in [SURVIVOR_NAME, SURVIVOR_ADDRESS, SURVIVOR_PHONE] {
        assert!(!contains(&wire, secret.as_bytes()), "{secret:?} crossed the wire in clear");
        let files = files_containing(&store, secret.as_bytes())?;
        assert!(files.is_empty(), "{secret:?} is in clear in the JetStream store: {files:?}");
    }

    // What does hold case records and clear headers is readable by its owner only: the
    // broker's store, the databases' folder and every database file.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    let db = p.data().join("db");
    assert_eq!((mode(&store)?, mode(&db)?), (0o700, 0o700));
    let mut files = 0;
    for entry in std::fs::read_dir(&db)? {
        let path = entry?.path();
        assert_eq!(mode(&path)?, 0o600, "{}", path.display());
        files += 1;
    }
    assert!(files >= 7, "a database for each of the six agencies and the audit service");

    // What never leaves an agency is sealed to its own key at rest: the rationale for
    // sharing without consent, the DASH answers, a reciprocal application's areas. The
    // services still read them.
    let marac = report.steps.iter().find(|s| s.kind == "maracReferral").unwrap();
    let sent = p.get("housing-northbridge", &format!("/disclosures/{}", marac.id)).await?;
    let rationale = sent["rationale"].as_str().unwrap().to_owned();
    assert!(rationale.contains("monitors her phone"), "housing cannot read its own rationale: {sent}");
    let applications = p.get("reciprocals-scheme", "/applications").await?;
    assert!(applications.to_string().contains("Eastvale"), "the scheme cannot read the areas: {applications}");
    let answers = std::iter::repeat_n("yes", 15).collect::<Vec<_>>().join(",");
    for secret in [rationale.as_str(), "monitors her phone", "Eastvale,Southmoor", answers.as_str()] {
        let found = files_containing(&db, secret.as_bytes())?;
        assert!(found.is_empty(), "{secret:?} is in clear in a database file: {found:?}");
    }
    Ok(())
}
