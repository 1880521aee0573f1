//! What the fuzz targets share: a fixed synthetic partnership, and how an input is cut into
//! parts.
//!
//! The partnership's directory, policy signature, key files and consent records are in
//! `fuzz/keys/`, written by `examples/seed_corpus.rs` together with the seed corpus under
//! `fuzz/corpus/`: every seed envelope is sealed to, and signed with, exactly these keys, so
//! the fuzzer starts past the signature check. They are synthetic test keys, nothing else.
//!
//! Inputs with several parts separate them with [`SEP`] (0xFF never occurs in UTF-8 text).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use isp::{AgencyKeys, Directory, Isp, Policy, Schema, consent::Verified};

/// Separates the parts of an input.
pub const SEP: u8 = 0xFF;

/// The moment the fuzz targets call "now" (2026-01-01), so a run does not depend on the clock.
pub const NOW_MS: i64 = 1_767_225_600_000;

/// Where the partnership files are (`fuzz/keys`).
pub fn keys_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("keys")
}

/// The fixed partnership every target runs against.
pub struct Partnership {
    pub schema: Arc<Schema>,
    /// The policy the hub ships (deploy/isp/policy.toml).
    pub policy: Arc<Policy>,
    pub directory: Arc<Directory>,
    /// One protocol per agency of the directory, in its order.
    pub isps: Vec<Isp>,
    /// The seed consent records, by bucket key (`{owner}.{consent_id}`), verified.
    pub consents: BTreeMap<String, Verified>,
}

impl Partnership {
    /// Loaded once per process from `fuzz/keys/`.
    pub fn get() -> &'static Partnership {
        static P: OnceLock<Partnership> = OnceLock::new();
        P.get_or_init(|| Partnership::load(&keys_dir()).expect("fuzz/keys holds the fuzz partnership (run examples/seed_corpus.rs)"))
    }

    pub fn load(dir: &Path) -> Result<Partnership, String> {
        let schema = Arc::new(Schema::load().map_err(|e| e.to_string())?);
        let policy = Arc::new(Policy::from_toml(isp::policy::DEMO_POLICY, &schema).map_err(|e| e.to_string())?);
        let directory = Arc::new(Directory::load(&dir.join("directory.toml")).map_err(|e| e.to_string())?);
        let mut isps = Vec::new();
        for agency in &directory.agencies {
            let keys = AgencyKeys::load(&dir.join(format!("{}.toml", agency.id))).map_err(|e| e.to_string())?;
            isps.push(Isp::new(keys, directory.clone(), policy.clone(), schema.clone()).map_err(|e| e.to_string())?);
        }
        let mut consents = BTreeMap::new();
        let consent_dir = dir.join("consents");
        for entry in std::fs::read_dir(&consent_dir).map_err(|e| format!("{}: {e}", consent_dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            let key = path.file_stem().and_then(|s| s.to_str()).ok_or("a consent file name is not UTF-8")?.to_owned();
            let (owner, id) = key.split_once('.').ok_or("a consent file is not named {owner}.{consent_id}.json")?;
            let value = std::fs::read(&path).map_err(|e| e.to_string())?;
            let verified = isp::consent::verify(&directory, owner, id, &value).map_err(|e| format!("{key}: {e}"))?;
            consents.insert(key, verified);
        }
        Ok(Partnership { schema, policy, directory, isps, consents })
    }

    /// The protocol of one agency.
    pub fn isp(&self, agency: &str) -> Option<&Isp> {
        self.isps.iter().find(|i| i.agency() == agency)
    }

    /// The verified seed record a consent tag names, as the runtime would find it in the bucket.
    pub fn consent_for(&self, tag: Option<&proto::v1::ConsentTag>) -> Option<&Verified> {
        tag.filter(|t| !t.consent_id.is_empty()).and_then(|t| self.consents.get(&isp::consent::key(&t.recorded_by, &t.consent_id)))
    }
}

/// What the recipient's inbox does with delivered envelope bytes: `Isp::open`, then re-check
/// consent on an opened envelope and serve its payload as JSON, or sign the rejection event
/// of a refused one from whatever header it read. Whatever opens carries nothing the
/// recipient's role may not receive.
pub fn receive(isp: &Isp, bytes: &[u8]) {
    let p = Partnership::get();
    match isp.open(bytes) {
        Ok(opened) => {
            for category in isp.schema.present(&opened.payload) {
                assert!(isp.policy.receivable(isp.role, &category), "{} accepted {category}", isp.agency());
            }
            let _ = isp.recheck_consent(&opened.header, p.consent_for(opened.header.consent.as_ref()), opened.header.created_at_ms);
            let _ = isp.schema.payload_to_json(&opened.payload);
        }
        Err((header, error)) => {
            let _ = (error.code(), error.rule(), error.to_string());
            let _ = isp.rejection_event(header.as_ref(), &error, 1);
        }
    }
}

/// The input before the first [`SEP`], and what follows it if there is one.
pub fn split(data: &[u8]) -> (&[u8], Option<&[u8]>) {
    match data.iter().position(|&b| b == SEP) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    }
}

/// Text as the services read files (`read_to_string`): not UTF-8 is an error before parsing.
pub fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}
