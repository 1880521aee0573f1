//! Pseudonymisation has a scope: the perpetrator pathway holds no subject-ref key, the
//! survivor's reference never reaches it in a clear header (a link token stands in for it),
//! and its engagement updates still reach the survivor's case at the IDVA. Tested with the
//! pathway's own key material, as it would try.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use tests::{Backend, Partnership, eventually, files_containing};

const PATHWAY: &str = "perpetrator-pathways";

async fn the_pathway_cannot_compute_or_see_the_survivors_reference_and_its_updates_still_reach_her_case_on(backend: Backend) -> anyhow::Result<()> {
    let p = Partnership::start(backend).await?;
    let report = hub::demo::play(&p.hub, &p.logins, false).await?;
    let survivor = report.subject_ref.clone();
    assert!(survivor.starts_with("s-"));

    // The pathway's key file: no subject key, and nothing in it makes the survivor's ref.
    let key_path = p.data().join("keys").join(format!("{PATHWAY}.toml"));
    let text = std::fs::read_to_string(&key_path)?;
    assert!(!text.contains("subject_key"), "the pathway's key file holds a subject key");
    let keys = isp::AgencyKeys::load(&key_path)?;
    assert!(keys.subject_ref(hub::demo::SURVIVOR_NAME, hub::demo::SURVIVOR_DOB).is_err());
    let table: toml::Table = toml::from_str(&text)?;
    let name = isp::directory::normalise_name(hub::demo::SURVIVOR_NAME);
    for (field, value) in &table {
        let secrets: Vec<Vec<u8>> = match value {
            toml::Value::String(s) => vec![s.as_bytes().to_vec(), hex::decode(s).unwrap_or_default()],
            toml::Value::Array(a) => a.iter().filter_map(|v| v.as_str()).map(|s| s.as_bytes().to_vec()).collect(),
            _ => Vec::new(),
        };
        for secret in secrets.into_iter().filter(|s| !s.is_empty()) {
            let mut mac = Hmac::<Sha256>::new_from_slice(&secret)?;
            mac.update(name.as_bytes());
            mac.update(b"\0");
            mac.update(hub::demo::SURVIVOR_DOB.as_bytes());
            let guess = format!("s-{}", hex::encode(&mac.finalize().into_bytes()[..16]));
            assert_ne!(guess, survivor, "the pathway's {field} reproduces the survivor's subject ref");
        }
    }

    // What reached it: a link token, never her reference; not in its inbox, not in its database.
    let inbox = p.get(PATHWAY, "/inbox").await?;
    let referral = inbox.as_array().unwrap().iter().find(|e| e["kind"] == "perpetrator.referral").expect("the pathway got the referral").clone();
    let link = referral["subject_ref"].as_str().unwrap().to_owned();
    assert!(link.starts_with("l-") && link != survivor, "{referral}");
    assert!(inbox.as_array().unwrap().iter().all(|e| e["subject_ref"] != survivor.as_str()), "{inbox}");
    {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut db = sqlx::AnyConnection::connect(&p.database_url(PATHWAY).await?).await?;
        for table in ["inbox", "pathway_cases", "sent"] {
            let (n,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table} WHERE subject_ref = $1")).bind(&survivor).fetch_one(&mut db).await?;
            assert_eq!(n, 0, "the survivor's reference is in the pathway's {table}");
        }
    }
    let db = p.data().join("db");
    if db.exists() {
        let found: Vec<_> = files_containing(&db, survivor.as_bytes())?.into_iter().filter(|f| f.to_string_lossy().contains(PATHWAY)).collect();
        assert!(found.is_empty(), "the survivor's reference is in the pathway's database file: {found:?}");
    }

    // Its engagement update reached her case at the IDVA, under her own reference.
    let engagement = eventually("the engagement update at the IDVA", std::time::Duration::from_secs(30), || async {
        Ok(p.get("idva-northbridge", "/engagement").await?.as_array().and_then(|a| a.first().cloned()))
    })
    .await?;
    assert_eq!((engagement["subject_ref"].as_str(), engagement["pathway_agency"].as_str()), (Some(survivor.as_str()), Some(PATHWAY)), "{engagement}");

    // The ledger keeps the link token; a subject access request finds the entry through it.
    let pool = audit::open_ledger(&p.database_url("audit").await?).await?;
    let directory = isp::Directory::load(&hub::partnership::directory_path(p.data()))?;
    let ig = isp::AgencyKeys::load(&p.data().join("keys").join("ig-northbridge.toml"))?;
    assert_eq!(ig.link_ref(PATHWAY, &survivor)?, link);
    let bundle = eventually("a checkpoint covering the case", std::time::Duration::from_secs(30), || async {
        Ok(audit::subject_access::export(&pool, &directory, None, &survivor, std::slice::from_ref(&link)).await.ok())
    })
    .await?;
    assert!(bundle.entries.iter().any(|e| e.entry.subject_ref == link && e.entry.kind == "perpetrator.referral"), "the pathway referral is missing from the bundle");
    assert_eq!(audit::subject_access::verify(&bundle, &directory).map_err(anyhow::Error::msg)?, bundle.entries.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pathway_cannot_compute_or_see_the_survivors_reference_and_its_updates_still_reach_her_case_on_sqlite() -> anyhow::Result<()> {
    the_pathway_cannot_compute_or_see_the_survivors_reference_and_its_updates_still_reach_her_case_on(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pathway_cannot_compute_or_see_the_survivors_reference_and_its_updates_still_reach_her_case_on_postgres() -> anyhow::Result<()> {
    the_pathway_cannot_compute_or_see_the_survivors_reference_and_its_updates_still_reach_her_case_on(Backend::Postgres).await
}
