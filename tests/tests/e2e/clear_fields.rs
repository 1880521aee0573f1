//! Clear fields cannot carry a survivor's details: a name, an address or a phone number put
//! into any field that would travel in clear is refused at the API with an answer naming the
//! field and not the value, and reaches neither the broker's store, the databases, the
//! ledger nor the logs (debug level). Unknown JSON fields are refused too.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tests::{Backend, Partnership, files_containing, idva_referral, referral_consent};

const HOUSING: &str = "housing-northbridge";
/// Strings no other test uses, so the logs of the whole test binary can be searched for them.
const PERSONAL: [&str; 3] = ["Quillon Testperson", "99 Nowhere Crescent", "07700 911911"];

/// Every log line of this test binary, at debug level.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The log capture of this test binary, installed by whichever test gets here first.
fn logs() -> &'static Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        let installed = tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::DEBUG)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .try_init()
            .is_ok();
        assert!(installed, "another log subscriber is installed in this test binary");
        logs
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_an_address_or_a_phone_number_in_a_clear_field_is_refused_and_kept_nowhere_on_sqlite() -> anyhow::Result<()> {
    clear_fields_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_name_an_address_or_a_phone_number_in_a_clear_field_is_refused_and_kept_nowhere_on_postgres() -> anyhow::Result<()> {
    clear_fields_on(Backend::Postgres).await
}

async fn clear_fields_on(backend: Backend) -> anyhow::Result<()> {
    let logs = logs();
    let p = Partnership::start(backend).await?;
    let (status, _) = p.post(HOUSING, "/consents", &referral_consent(1)).await?;
    assert_eq!(status, 201);
    let mut refused = 0;
    for value in PERSONAL {
        let mut sends = Vec::new();
        for field in ["subject_ref", "case_ref", "in_reply_to"] {
            let mut body = idva_referral(1);
            body.as_object_mut().unwrap().remove("subject");
            body[field] = json!(value);
            sends.push((field, body));
        }
        let mut body = idva_referral(1);
        body["consent"]["id"] = json!(value);
        sends.push(("consent.id", body));
        for (field, body) in sends {
            let (status, v) = p.post(HOUSING, "/disclosures", &body).await?;
            assert_eq!((status, v["field"].as_str()), (400, Some(field)), "{field}: {v}");
            assert!(!v.to_string().contains(value), "the answer repeats the value: {v}");
            refused += 1;
        }
        for field in ["consent_id", "subject_ref"] {
            let mut body = referral_consent(2);
            if field == "subject_ref" {
                body.as_object_mut().unwrap().remove("subject");
            }
            body[field] = json!(value);
            let (status, v) = p.post(HOUSING, "/consents", &body).await?;
            assert_eq!((status, v["field"].as_str()), (400, Some(field)), "{field}: {v}");
            assert!(!v.to_string().contains(value), "the answer repeats the value: {v}");
            refused += 1;
        }
    }
    assert_eq!(refused, 18);
    // A misspelt field is refused, not ignored; the answer names the key, not any value.
    let mut misspelt = idva_referral(1);
    misspelt["cas_ref"] = json!(PERSONAL[1]);
    let (status, v) = p.post(HOUSING, "/disclosures", &misspelt).await?;
    assert_eq!(status, 400, "{v}");
    let detail = v["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("cas_ref") && !detail.contains(PERSONAL[1]), "{v}");
    // A good send still goes, beside all that.
    let (status, v) = p.post(HOUSING, "/disclosures", &idva_referral(1)).await?;
    assert_eq!(status, 201, "{v}");
    let id = v["envelope_id"].as_str().unwrap().to_owned();
    tests::eventually("the good referral in the ledger", std::time::Duration::from_secs(30), || async {
        Ok(p.ledger().await?.iter().any(|e| e["entry_id"] == id.as_str()).then_some(()))
    })
    .await?;

    let ledger = Value::from(p.ledger().await?).to_string();
    let logs = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(logs.contains("disclosure sealed and queued"), "no debug logs were captured");
    for value in PERSONAL {
        let found = files_containing(p.data(), value.as_bytes())?;
        assert!(found.is_empty(), "{value:?} is in {found:?}");
        assert!(!ledger.contains(value), "{value:?} is in the ledger");
        assert!(!logs.contains(value), "{value:?} is in a log line");
    }
    Ok(())
}
