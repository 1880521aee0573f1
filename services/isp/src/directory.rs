//! The partnership directory (agencies, roles, public keys) and an agency's own secret keys.
//!
//! The directory is public within the partnership; an agency's key file is its alone. Key
//! material is never printed: the `Debug` of [`AgencyKeys`] names only key ids.

use std::{collections::BTreeMap, fmt, path::Path, str::FromStr};

use age::secrecy::ExposeSecret;
use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::IspError;

/// The roles of DOMAIN.md. A role decides what an agency may receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Housing,
    Idva,
    Marac,
    Reciprocals,
    Perpetrator,
    Partner,
    Ig,
}

impl Role {
    pub const ALL: [Role; 7] = [Role::Housing, Role::Idva, Role::Marac, Role::Reciprocals, Role::Perpetrator, Role::Partner, Role::Ig];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Housing => "housing",
            Role::Idva => "idva",
            Role::Marac => "marac",
            Role::Reciprocals => "reciprocals",
            Role::Perpetrator => "perpetrator",
            Role::Partner => "partner",
            Role::Ig => "ig",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (known: housing, idva, marac, reciprocals, perpetrator, partner, ig)"))
    }
}

/// One agency as the partnership knows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Agency {
    /// Stable id, also a NATS subject token: lowercase letters, digits and '-'.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// age X25519 recipient (`age1...`).
    pub age_recipient: String,
    /// ed25519 verifying key, hex.
    pub signing_key: String,
    /// Keys this agency used before, newest last. A signature by one is valid only for
    /// something made before the key's retirement; payloads sealed to an old age key stay
    /// readable by the agency, which keeps the old identity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired_keys: Vec<RetiredKey>,
    /// When the IG office suspended or removed the agency: from then on no key of it (current
    /// or retired) signs anything, nothing may be sealed to it, and the broker no longer
    /// admits it. What it signed before stays verifiable. A suspended agency comes back only
    /// with new keys (`hub partnership admit` of a new join request); a removed one never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended_at_ms: Option<i64>,
    /// Removed for good (a suspension that cannot be lifted; the id is never reused).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// A key pair an agency rotated away from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetiredKey {
    pub age_recipient: String,
    pub signing_key: String,
    pub retired_at_ms: i64,
}

impl Agency {
    /// Whether the agency takes part now: neither suspended nor removed.
    pub fn is_active(&self) -> bool {
        self.suspended_at_ms.is_none()
    }

    /// `active`, `suspended` or `removed`.
    pub fn status(&self) -> &'static str {
        match (self.suspended_at_ms, self.removed) {
            (None, _) => "active",
            (Some(_), false) => "suspended",
            (Some(_), true) => "removed",
        }
    }

    /// Refuses anything the agency signed at or after its suspension (`at_ms`: when the signed
    /// thing was made, or when the broker took it in).
    pub fn check_in_force(&self, at_ms: i64) -> Result<(), crate::OpenError> {
        match self.suspended_at_ms {
            Some(since_ms) if at_ms >= since_ms => Err(crate::OpenError::Suspended { sender: self.id.clone(), since_ms }),
            _ => Ok(()),
        }
    }

    /// The verifying key a signature names by id, if it was in force at `at_ms` (the time the
    /// signed thing says it was made). Retired keys sign nothing made after their retirement;
    /// no key of a suspended agency signs anything made after its suspension.
    pub fn verifying_key_at(&self, key_id: &str, at_ms: i64) -> Result<VerifyingKey, crate::OpenError> {
        self.check_in_force(at_ms)?;
        if key_id == self.signing_key_id() {
            return self.verifying_key().map_err(|_| crate::OpenError::BadSignature(self.id.clone()));
        }
        let retired = self
            .retired_keys
            .iter()
            .find(|k| key_id == key_id_of_signing(&k.signing_key))
            .ok_or_else(|| crate::OpenError::UnknownSigningKey { sender: self.id.clone(), key_id: crate::clear::shown(key_id, crate::clear::is_key_id) })?;
        if at_ms >= retired.retired_at_ms {
            return Err(crate::OpenError::RetiredKey { sender: self.id.clone(), key_id: key_id.to_owned(), retired_at_ms: retired.retired_at_ms });
        }
        parse_verifying_key(&self.id, &retired.signing_key).map_err(|_| crate::OpenError::BadSignature(self.id.clone()))
    }

    /// Every signing key the agency has had, current first, each with its key id. (The
    /// directory refuses a current key that is not one; a retired one that is not is left
    /// out.)
    pub fn signing_keys(&self) -> impl Iterator<Item = (String, VerifyingKey)> + '_ {
        std::iter::once(self.signing_key.as_str())
            .chain(self.retired_keys.iter().map(|k| k.signing_key.as_str()))
            .filter_map(|hex_key| Some((key_id_of_signing(hex_key), parse_verifying_key(&self.id, hex_key).ok()?)))
    }

    pub fn verifying_key(&self) -> Result<VerifyingKey, IspError> {
        parse_verifying_key(&self.id, &self.signing_key)
    }

    pub fn recipient(&self) -> Result<age::x25519::Recipient, IspError> {
        age::x25519::Recipient::from_str(&self.age_recipient)
            .map_err(|e| IspError::Invalid { what: format!("age recipient of {}", self.id), detail: e.to_string() })
    }

    pub fn signing_key_id(&self) -> String {
        key_id_of_signing(&self.signing_key)
    }

    pub fn age_key_id(&self) -> String {
        key_id("age", self.age_recipient.as_bytes())
    }
}

fn parse_verifying_key(agency: &str, hex_key: &str) -> Result<VerifyingKey, IspError> {
    let invalid = |detail: &str| IspError::Invalid { what: format!("signing key of {agency}"), detail: detail.into() };
    let bytes: [u8; 32] = hex::decode(hex_key).map_err(|_| invalid("not hex"))?.try_into().map_err(|_| invalid("not 32 bytes"))?;
    parsed_key(&bytes).ok_or_else(|| invalid("not an ed25519 point"))
}

/// Keys parsed on this thread, by their bytes: parsing one is a point decompression (a field
/// square root), a third of the curve arithmetic of a signature check, and every check names
/// one of a partnership's few keys. At most [`PARSED_KEYS`] are kept, then it starts again.
fn parsed_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    thread_local! {
        static PARSED: std::cell::RefCell<std::collections::HashMap<[u8; 32], VerifyingKey>> = Default::default();
    }
    PARSED.with_borrow_mut(|parsed| {
        if let Some(key) = parsed.get(bytes) {
            return Some(*key);
        }
        let key = VerifyingKey::from_bytes(bytes).ok()?;
        if parsed.len() >= PARSED_KEYS {
            parsed.clear();
        }
        parsed.insert(*bytes, key);
        Some(key)
    })
}

/// How many parsed keys a thread keeps (a partnership has tens of agencies, each with a few
/// retired keys).
const PARSED_KEYS: usize = 1024;

fn key_id_of_signing(hex_key: &str) -> String {
    key_id("ed25519", hex_key.as_bytes())
}

/// A short, stable id for a public key (SPEC.md, "Key ids"): the scheme, `:`, and the first 8
/// bytes, as 16 lowercase hex digits, of the SHA-256 of the key's TEXT form as the directory
/// writes it (`public`): the 64 lowercase hex digits of an ed25519 key, the `age1…` string of
/// an age recipient. Not the raw key bytes.
pub fn key_id(scheme: &str, public: &[u8]) -> String {
    let digest = Sha256::digest(public);
    format!("{scheme}:{}", hex::encode(&digest[..8]))
}

/// The validity check for agency ids (they become NATS subject tokens and database keys):
/// the grammar of [`crate::clear`], under the name callers outside this crate know it by.
pub use crate::clear::is_agency_id as valid_agency_id;

/// All agencies of the partnership.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Directory {
    pub partnership: String,
    #[serde(rename = "agency", default)]
    pub agencies: Vec<Agency>,
    #[serde(skip)]
    by_id: BTreeMap<String, usize>,
}

impl Directory {
    pub fn new(partnership: impl Into<String>, agencies: Vec<Agency>) -> Result<Directory, IspError> {
        let mut directory = Directory { partnership: partnership.into(), agencies, by_id: BTreeMap::new() };
        directory.index()?;
        Ok(directory)
    }

    fn index(&mut self) -> Result<(), IspError> {
        self.by_id.clear();
        for (i, agency) in self.agencies.iter().enumerate() {
            let invalid = |detail: String| IspError::Invalid { what: "the directory".into(), detail };
            if !valid_agency_id(&agency.id) {
                return Err(invalid(format!("agency id {:?} must be lowercase letters, digits and '-'", agency.id)));
            }
            agency.verifying_key()?;
            agency.recipient()?;
            if self.by_id.insert(agency.id.clone(), i).is_some() {
                return Err(invalid(format!("agency id {:?} appears twice", agency.id)));
            }
        }
        Ok(())
    }

    pub fn from_toml(text: &str) -> Result<Directory, IspError> {
        let mut directory: Directory =
            toml::from_str(text).map_err(|e| IspError::Invalid { what: "the directory".into(), detail: e.to_string() })?;
        directory.index()?;
        Ok(directory)
    }

    pub fn load(path: &Path) -> Result<Directory, IspError> {
        Directory::from_toml(&read(path)?)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a directory always serialises")
    }

    /// A short digest of the directory's content: which directory a service has in force.
    pub fn digest(&self) -> String {
        hex::encode(&Sha256::digest(self.to_toml().as_bytes())[..8])
    }

    pub fn get(&self, id: &str) -> Option<&Agency> {
        self.by_id.get(id).map(|&i| &self.agencies[i])
    }

    pub fn require(&self, id: &str) -> Result<&Agency, IspError> {
        self.get(id).ok_or_else(|| IspError::UnknownAgency(id.to_owned()))
    }

    /// The directory after `keys` replaced an agency's keys at `at_ms`: its current keys
    /// become retired ones.
    pub fn rotated(&self, keys: &AgencyKeys, at_ms: i64) -> Result<Directory, IspError> {
        let public = keys.public("", Role::Partner);
        self.rotated_to(&keys.agency, &public.age_recipient, &public.signing_key, at_ms)
    }

    /// The directory after agency `id` replaced its keys with these public ones at `at_ms`
    /// (a rotation made on the agency's own host): its current keys become retired ones. A
    /// suspended agency does not rotate; new keys must differ from every key it had.
    pub fn rotated_to(&self, id: &str, age_recipient: &str, signing_key: &str, at_ms: i64) -> Result<Directory, IspError> {
        let mut agencies = self.agencies.clone();
        let agency = agencies.iter_mut().find(|a| a.id == id).ok_or_else(|| IspError::UnknownAgency(id.to_owned()))?;
        let refuse = |detail: String| Err(IspError::Invalid { what: "the rotation".into(), detail });
        if !agency.is_active() {
            return refuse(format!("{id} is {} and does not rotate; it comes back with new keys through admission", agency.status()));
        }
        let used = |k: &str, a: &str| agency.signing_key == k || agency.age_recipient == a || agency.retired_keys.iter().any(|r| r.signing_key == k || r.age_recipient == a);
        if used(signing_key, age_recipient) {
            return refuse(format!("the new keys of {id} must differ from every key it had"));
        }
        agency.retired_keys.push(RetiredKey { age_recipient: agency.age_recipient.clone(), signing_key: agency.signing_key.clone(), retired_at_ms: at_ms });
        agency.age_recipient = age_recipient.to_owned();
        agency.signing_key = signing_key.to_owned();
        Directory::new(self.partnership.clone(), agencies)
    }

    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Agency> {
        self.agencies.iter().filter(move |a| a.role == role)
    }

    /// The agencies that take part now (not suspended, not removed).
    pub fn active(&self) -> impl Iterator<Item = &Agency> {
        self.agencies.iter().filter(|a| a.is_active())
    }

    /// The directory with `agency` admitted: a new agency, or a suspended one coming back with
    /// new keys (its keys from before become retired ones, retired when it was suspended). A
    /// removed agency's id is never admitted again, nor an active agency's replaced (its keys
    /// change by rotation), nor a second IG office.
    pub fn admitted(&self, agency: Agency) -> Result<Directory, IspError> {
        let refuse = |detail: String| Err(IspError::Invalid { what: "the admission".into(), detail });
        let mut agencies = self.agencies.clone();
        match agencies.iter_mut().find(|a| a.id == agency.id) {
            None => {
                if agency.role == Role::Ig && self.with_role(Role::Ig).next().is_some() {
                    return refuse("the partnership has an IG office already".into());
                }
                agencies.push(Agency { retired_keys: Vec::new(), suspended_at_ms: None, removed: false, ..agency });
            }
            Some(old) if old.removed => return refuse(format!("{} was removed from the partnership; its id is not used again", old.id)),
            Some(old) if old.is_active() => return refuse(format!("{} is in the partnership already (its keys change with `hub keys rotate`)", old.id)),
            Some(old) if old.role != agency.role => return refuse(format!("{} was admitted as {}; a new role means a new agency id", old.id, old.role)),
            Some(old) => {
                if old.age_recipient == agency.age_recipient || old.signing_key == agency.signing_key
                    || old.retired_keys.iter().any(|k| k.signing_key == agency.signing_key || k.age_recipient == agency.age_recipient)
                {
                    return refuse(format!("{} must come back with new keys, not those it had when it was suspended", old.id));
                }
                let since = old.suspended_at_ms.expect("not active");
                old.retired_keys.push(RetiredKey { age_recipient: old.age_recipient.clone(), signing_key: old.signing_key.clone(), retired_at_ms: since });
                old.age_recipient = agency.age_recipient;
                old.signing_key = agency.signing_key;
                old.name = agency.name;
                old.suspended_at_ms = None;
            }
        }
        Directory::new(self.partnership.clone(), agencies)
    }

    /// The directory with agency `id` suspended (or removed, `remove`) at `at_ms`. The IG
    /// office is neither: its key signs the directory itself.
    pub fn suspended(&self, id: &str, at_ms: i64, remove: bool) -> Result<Directory, IspError> {
        let mut agencies = self.agencies.clone();
        let agency = agencies.iter_mut().find(|a| a.id == id).ok_or_else(|| IspError::UnknownAgency(id.to_owned()))?;
        let refuse = |detail: String| Err(IspError::Invalid { what: "the suspension".into(), detail });
        if agency.role == Role::Ig {
            return refuse("the IG office signs the directory; it cannot suspend itself".into());
        }
        if agency.removed {
            return refuse(format!("{id} was removed already"));
        }
        if agency.suspended_at_ms.is_some() && !remove {
            return refuse(format!("{id} is suspended already"));
        }
        agency.suspended_at_ms = Some(agency.suspended_at_ms.unwrap_or(at_ms));
        agency.removed = remove;
        Directory::new(self.partnership.clone(), agencies)
    }
}

pub(crate) fn read(path: &Path) -> Result<String, IspError> {
    std::fs::read_to_string(path).map_err(|source| IspError::Io { path: path.display().to_string(), source })
}

/// An agency's own secret keys: its age identity, its ed25519 signing key and the
/// partnership's subject key (shared by the agencies that match people across agencies, so
/// subject refs match across them; none for a role the policy keeps out of matching).
#[derive(Clone)]
pub struct AgencyKeys {
    pub agency: String,
    pub age_identity: age::x25519::Identity,
    pub signing: SigningKey,
    subject_key: Option<[u8; 32]>,
    /// Identities this agency rotated away from, kept so what was sealed to them stays
    /// readable.
    pub retired_age_identities: Vec<age::x25519::Identity>,
}

impl fmt::Debug for AgencyKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgencyKeys")
            .field("agency", &self.agency)
            .field("signing_key_id", &self.signing_key_id())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    agency: String,
    age_identity: String,
    signing_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject_key: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    retired_age_identities: Vec<String>,
}

impl AgencyKeys {
    /// Fresh keys for an agency, sharing the partnership's subject key.
    pub fn generate(agency: &str, subject_key: [u8; 32]) -> AgencyKeys {
        AgencyKeys {
            agency: agency.to_owned(),
            age_identity: age::x25519::Identity::generate(),
            signing: SigningKey::generate(&mut rand::rngs::OsRng),
            subject_key: Some(subject_key),
            retired_age_identities: Vec::new(),
        }
    }

    /// The same keys without the subject-ref key (for a role the policy keeps out of matching).
    pub fn without_subject_key(self) -> AgencyKeys {
        AgencyKeys { subject_key: None, ..self }
    }

    /// The partnership's subject key sealed (age, hex) to an agency joining it, for the IG
    /// office to hand over in the admission: only the joining agency's age identity opens it.
    /// None when this agency holds no subject key.
    pub fn seal_subject_key(&self, to: &age::x25519::Recipient) -> Result<Option<String>, IspError> {
        let Some(key) = &self.subject_key else { return Ok(None) };
        let encrypted = age::encrypt(to, hex::encode(key).as_bytes()).map_err(|e| IspError::Encrypt(e.to_string()))?;
        Ok(Some(hex::encode(encrypted)))
    }

    /// These keys with the subject key an admission sealed to this agency
    /// ([`AgencyKeys::seal_subject_key`]), opened with this agency's age identity.
    pub fn with_sealed_subject_key(self, sealed_hex: &str) -> Result<AgencyKeys, IspError> {
        let invalid = |detail: &str| IspError::Invalid { what: "the sealed subject key".into(), detail: detail.into() };
        let sealed = hex::decode(sealed_hex.trim()).map_err(|_| invalid("not hex"))?;
        let plain = age::decrypt(&self.age_identity, &sealed).map_err(|_| invalid("not sealed to this agency's age key"))?;
        let key: [u8; 32] = std::str::from_utf8(&plain)
            .ok()
            .and_then(|h| hex::decode(h.trim()).ok())
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid("not a subject key"))?;
        Ok(AgencyKeys { subject_key: Some(key), ..self })
    }

    /// Fresh keys for an agency on its own host, without the partnership's subject key (the
    /// IG office seals that to it on admission, when its role matches people).
    pub fn generate_alone(agency: &str) -> AgencyKeys {
        AgencyKeys::generate(agency, [0; 32]).without_subject_key()
    }

    /// Whether this agency can compute subject refs.
    pub fn holds_subject_key(&self) -> bool {
        self.subject_key.is_some()
    }

    /// New age and signing keys for the same agency; the old age identity is kept (retired)
    /// so envelopes sealed to it stay readable.
    pub fn rotated(&self) -> AgencyKeys {
        let mut retired = self.retired_age_identities.clone();
        retired.push(self.age_identity.clone());
        let fresh = AgencyKeys::generate(&self.agency, [0; 32]);
        AgencyKeys { retired_age_identities: retired, subject_key: self.subject_key, ..fresh }
    }

    /// Every identity that may open a payload sealed to this agency, current first.
    pub fn age_identities(&self) -> impl Iterator<Item = &age::x25519::Identity> {
        std::iter::once(&self.age_identity).chain(self.retired_age_identities.iter())
    }

    /// A fresh random partnership subject key.
    pub fn generate_subject_key() -> [u8; 32] {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        key
    }

    /// The public half as a directory entry.
    pub fn public(&self, name: &str, role: Role) -> Agency {
        Agency {
            id: self.agency.clone(),
            name: name.to_owned(),
            role,
            age_recipient: self.age_identity.to_public().to_string(),
            signing_key: hex::encode(self.signing.verifying_key().as_bytes()),
            retired_keys: Vec::new(),
            suspended_at_ms: None,
            removed: false,
        }
    }

    pub fn signing_key_id(&self) -> String {
        key_id("ed25519", hex::encode(self.signing.verifying_key().as_bytes()).as_bytes())
    }

    /// The key file's text. It holds secrets: write it with owner-only permissions.
    pub fn to_toml(&self) -> String {
        let file = KeyFile {
            agency: self.agency.clone(),
            age_identity: self.age_identity.to_string().expose_secret().to_owned(),
            signing_key: hex::encode(self.signing.to_bytes()),
            subject_key: self.subject_key.map(hex::encode),
            retired_age_identities: self.retired_age_identities.iter().map(|i| i.to_string().expose_secret().to_owned()).collect(),
        };
        toml::to_string_pretty(&file).expect("a key file always serialises")
    }

    pub fn from_toml(text: &str) -> Result<AgencyKeys, IspError> {
        let invalid = |detail: &str| IspError::Invalid { what: "the key file".into(), detail: detail.into() };
        let file: KeyFile = toml::from_str(text).map_err(|_| invalid("not a key file"))?;
        let age_identity = age::x25519::Identity::from_str(&file.age_identity).map_err(|_| invalid("bad age identity"))?;
        let seed: [u8; 32] = hex::decode(&file.signing_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| invalid("bad signing key"))?;
        let subject_key: Option<[u8; 32]> = file
            .subject_key
            .map(|k| hex::decode(&k).ok().and_then(|b| b.try_into().ok()).ok_or_else(|| invalid("bad subject key")))
            .transpose()?;
        let retired_age_identities = file
            .retired_age_identities
            .iter()
            .map(|i| age::x25519::Identity::from_str(i).map_err(|_| invalid("bad retired age identity")))
            .collect::<Result<_, _>>()?;
        Ok(AgencyKeys { agency: file.agency, age_identity, signing: SigningKey::from_bytes(&seed), subject_key, retired_age_identities })
    }

    pub fn load(path: &Path) -> Result<AgencyKeys, IspError> {
        AgencyKeys::from_toml(&read(path)?)
    }

    /// The pseudonymous subject reference for a person (SPEC.md, "Subject references"):
    /// `s-` and the first 16 bytes, hex, of HMAC-SHA-256 under the partnership subject key of
    /// the folded name ([`normalise_name`]), a zero byte and the date of birth (`YYYY-MM-DD`).
    /// Every agency computes the same ref for the same person, so repeats and subject access
    /// requests work with no name in clear; without the key the ref cannot be tested against
    /// a guessed identity. A name with no letters or digits, or a date of birth that is not a
    /// calendar date as `YYYY-MM-DD`, is refused: either would give one ref to many people,
    /// or two to one. An agency the policy keeps out of matching holds no key and gets an
    /// error.
    pub fn subject_ref(&self, full_name: &str, date_of_birth: &str) -> Result<String, IspError> {
        let invalid = |detail: &str| IspError::Invalid { what: "the subject".into(), detail: detail.into() };
        let name = normalise_name(full_name);
        if name.is_empty() {
            return Err(invalid("full_name has no letters or digits; the value is not repeated here"));
        }
        let date_of_birth = date_of_birth.trim_matches(|c: char| c.is_ascii_whitespace());
        if !is_date(date_of_birth) {
            return Err(invalid("date_of_birth must be a calendar date written YYYY-MM-DD (e.g. 1990-01-31); the value is not repeated here"));
        }
        let mut mac = self.subject_mac()?;
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac.update(date_of_birth.as_bytes());
        let tag = mac.finalize().into_bytes();
        Ok(format!("s-{}", hex::encode(&tag[..16])))
    }

    /// What goes in the clear header in place of a subject ref when sending to `recipient`,
    /// an agency that holds no subject key: `l-` and 32 hex digits, keyed by the subject key,
    /// the recipient and the subject ref. The recipient cannot compute or test it from a
    /// name; it sees the same token for the same person, so it can keep its own case
    /// together and answer on it; every keyed agency can compute it from a subject ref and
    /// so link what the recipient sends back (an engagement update) to its own case.
    pub fn link_ref(&self, recipient: &str, subject_ref: &str) -> Result<String, IspError> {
        let mut mac = self.subject_mac()?;
        mac.update(b"hub.v1.link\0");
        mac.update(recipient.as_bytes());
        mac.update(b"\0");
        mac.update(subject_ref.as_bytes());
        let tag = mac.finalize().into_bytes();
        Ok(format!("l-{}", hex::encode(&tag[..16])))
    }

    fn subject_mac(&self) -> Result<Hmac<Sha256>, IspError> {
        let key = self.subject_key.as_ref().ok_or_else(|| IspError::Invalid {
            what: "the subject reference".into(),
            detail: format!("{} holds no subject-ref key (the policy keeps its role out of matching people across agencies)", self.agency),
        })?;
        Ok(Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length"))
    }
}

/// A pseudonym an agency keeps for itself: `p-` and the first 16 bytes, hex, of HMAC-SHA-256
/// under `key` (a secret of that agency's own, never the partnership's subject key) of
/// `"hub.v1.own-ref\0"`, the folded name ([`normalise_name`]), a zero byte and the date of
/// birth, with the checks of [`AgencyKeys::subject_ref`]. A perpetrator pathway, which holds
/// no subject key and must not match people across agencies, uses it to know a man referred
/// twice (by whoever referred him) and to find his cases when he asks for his data. It never
/// travels and means nothing at any other agency; the domain string keeps it from ever
/// equalling a subject ref or link token, whatever key it is given.
pub fn own_ref(key: &[u8; 32], full_name: &str, date_of_birth: &str) -> Result<String, IspError> {
    let invalid = |detail: &str| IspError::Invalid { what: "the person".into(), detail: detail.into() };
    let name = normalise_name(full_name);
    if name.is_empty() {
        return Err(invalid("full_name has no letters or digits; the value is not repeated here"));
    }
    let date_of_birth = date_of_birth.trim_matches(|c: char| c.is_ascii_whitespace());
    if !is_date(date_of_birth) {
        return Err(invalid("date_of_birth must be a calendar date written YYYY-MM-DD (e.g. 1990-01-31); the value is not repeated here"));
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"hub.v1.own-ref\0");
    mac.update(name.as_bytes());
    mac.update(b"\0");
    mac.update(date_of_birth.as_bytes());
    let tag = mac.finalize().into_bytes();
    Ok(format!("p-{}", hex::encode(&tag[..16])))
}

/// Whether `s` is of [`own_ref`]'s grammar: `p-` and 32 lowercase hex digits.
pub fn is_own_ref(s: &str) -> bool {
    s.len() == 34 && s.starts_with("p-") && s[2..].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The name as the subject ref folds it (SPEC.md, "Name folding"), so that the spellings
/// agencies' systems make of one name give one ref: "  Zoë  O'Neil", "ZOE ONEIL" and
/// "zoe o-neil" all fold to "zoe oneil".
///
/// 1. The compatibility caseless form of Unicode §3.13 (D146):
///    NFKD(casefold(NFKD(casefold(NFD(name))))), full case folding (`Σ`, `ς` and `σ` are all
///    `σ`; `ß` is `ss`; `İ` is `i` and a combining dot).
/// 2. Nonspacing marks (general category Mn) are removed: accents, the dot of `İ`.
/// 3. Separators (Zs, Zl, Zp) and controls (Cc) split words; letters (L*), spacing and
///    enclosing marks (Mc, Me) and numbers (N*) are kept; everything else (punctuation,
///    symbols, format characters) is removed, so `O'Neil` is `oneil`.
/// 4. The non-empty words, joined by one space.
///
/// ASCII names fold as before this rule was written down (lowercase letters and digits,
/// words separated by one space), so their refs did not change.
pub fn normalise_name(name: &str) -> String {
    use caseless::Caseless as _;
    use unicode_normalization::UnicodeNormalization as _;
    use unicode_properties::{GeneralCategory as G, GeneralCategoryGroup as Group, UnicodeGeneralCategory as _};
    let folded = name.chars().nfd().default_case_fold().nfkd().default_case_fold().nfkd();
    let mut words: Vec<String> = vec![String::new()];
    for c in folded {
        match (c.general_category(), c.general_category_group()) {
            (G::NonspacingMark, _) => {}
            (G::Control, _) | (_, Group::Separator) => words.push(String::new()),
            (_, Group::Letter | Group::Mark | Group::Number) => words.last_mut().expect("never empty").push(c),
            _ => {}
        }
    }
    words.retain(|w| !w.is_empty());
    words.join(" ")
}

/// A calendar date written `YYYY-MM-DD` (four-digit year, leap years counted).
fn is_date(s: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    s.len() == 10 && time::Date::parse(s, &format).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_debug_hides_secrets() {
        let keys = AgencyKeys::generate("housing-test", AgencyKeys::generate_subject_key());
        let back = AgencyKeys::from_toml(&keys.to_toml()).unwrap();
        assert_eq!(back.signing.to_bytes(), keys.signing.to_bytes());
        let debug = format!("{keys:?}");
        assert!(!debug.contains(&hex::encode(keys.signing.to_bytes())));
        assert!(!debug.contains("AGE-SECRET-KEY"));
    }

    #[test]
    fn a_parsed_key_is_kept_per_thread_and_a_bad_one_never_is() {
        let keys = AgencyKeys::generate("housing-test", AgencyKeys::generate_subject_key());
        let hex_key = hex::encode(keys.signing.verifying_key().to_bytes());
        let first = parse_verifying_key("housing-test", &hex_key).unwrap();
        assert_eq!(parse_verifying_key("housing-test", &hex_key).unwrap(), first);
        assert_eq!(first, keys.signing.verifying_key());
        // A y coordinate with no point on the curve: refused each time, whatever is kept.
        let not_a_point = (0u8..=255).map(|b| [b; 32]).find(|b| VerifyingKey::from_bytes(b).is_err()).unwrap();
        for _ in 0..2 {
            assert!(parse_verifying_key("housing-test", &hex::encode(not_a_point)).is_err());
        }
        // Past the bound the thread starts again, and still answers rightly.
        for _ in 0..=PARSED_KEYS {
            let other = AgencyKeys::generate("other", AgencyKeys::generate_subject_key());
            parse_verifying_key("other", &hex::encode(other.signing.verifying_key().to_bytes())).unwrap();
        }
        assert_eq!(parse_verifying_key("housing-test", &hex_key).unwrap(), first);
    }

    #[test]
    fn subject_ref_normalises_and_is_keyed() {
        let subject = AgencyKeys::generate_subject_key();
        let a = AgencyKeys::generate("a", subject);
        let b = AgencyKeys::generate("b", subject);
        let other = AgencyKeys::generate("c", AgencyKeys::generate_subject_key());
        let r = a.subject_ref("Alice  O'Neil", "1990-01-02").unwrap();
        assert_eq!(r, b.subject_ref(" alice oneil ", "1990-01-02").unwrap());
        assert_ne!(r, a.subject_ref("Alice O'Neil", "1990-01-03").unwrap());
        assert_ne!(r, other.subject_ref("Alice O'Neil", "1990-01-02").unwrap());
        assert!(!r.contains("alice"));
        // Nothing to tell people apart by: refused, not one ref for everybody.
        for (name, dob) in [("", "1990-01-02"), (" -' ", "1990-01-02"), ("Alice", "02/01/1990"), ("Alice", "1990-02-30"), ("Alice", "1990-1-2")] {
            assert!(a.subject_ref(name, dob).is_err(), "{name:?} {dob:?}");
        }
        assert_eq!(a.subject_ref("Alice O'Neil", " 1990-01-02\n").unwrap(), r);
    }

    #[test]
    fn names_fold_as_the_spec_says() {
        for (name, folded) in [
            ("  Alice  O'Neil", "alice oneil"),
            ("Zoë Brontë", "zoe bronte"),
            ("Zoe\u{0308} Bronte\u{0308}", "zoe bronte"),
            ("ΟΔΥΣΣΕΑΣ", "οδυσσεασ"),
            ("Οδυσσέας", "οδυσσεασ"),
            ("Strauß", "strauss"),
            ("İpek Yılmaz", "ipek yılmaz"),
            ("Jean-Luc\tPicard", "jeanluc picard"),
            ("ﬁona", "fiona"),
            ("Anna\u{00a0}Maria\u{2003}Smith", "anna maria smith"),
            ("Ann\u{200d}e", "anne"),
        ] {
            assert_eq!(normalise_name(name), folded, "{name:?}");
        }
    }

    #[test]
    fn an_agency_without_the_subject_key_cannot_make_or_test_refs_and_link_tokens_are_per_recipient() {
        let subject = AgencyKeys::generate_subject_key();
        let housing = AgencyKeys::generate("housing", subject);
        let idva = AgencyKeys::generate("idva", subject);
        let pathway = AgencyKeys::generate("pathway", subject).without_subject_key();
        assert!(pathway.subject_ref("Alice O'Neil", "1990-01-02").is_err());
        assert!(pathway.link_ref("pathway", "s-00").is_err());
        // Its key file holds no subject key at all.
        let file = pathway.to_toml();
        assert!(!file.contains("subject_key"), "{file}");
        assert!(!AgencyKeys::from_toml(&file).unwrap().holds_subject_key());
        let r = housing.subject_ref("Alice O'Neil", "1990-01-02").unwrap();
        let link = housing.link_ref("pathway", &r).unwrap();
        assert!(link.starts_with("l-") && link.len() == 34 && link != r);
        assert_eq!(link, idva.link_ref("pathway", &r).unwrap(), "every keyed agency computes the same link");
        assert_ne!(link, housing.link_ref("other-pathway", &r).unwrap(), "a link is per recipient");
        // Rotation keeps (the absence of) the subject key.
        assert!(!pathway.rotated().holds_subject_key());
        assert_eq!(housing.rotated().subject_ref("Alice O'Neil", "1990-01-02").unwrap(), r);
    }

    #[test]
    fn an_own_ref_folds_like_a_subject_ref_is_keyed_by_its_own_key_and_is_never_a_subject_ref() {
        let key = AgencyKeys::generate_subject_key();
        let r = own_ref(&key, "Barnaby Synthetic-Harmer", "1987-09-30").unwrap();
        assert!(is_own_ref(&r) && !crate::clear::is_subject_ref(&r), "{r}");
        // One man, however his referrers spell him.
        assert_eq!(own_ref(&key, "  BARNABY   synthetic-harmer ", " 1987-09-30").unwrap(), r);
        assert_eq!(own_ref(&key, "Barnabý Synthetic-Harmer", "1987-09-30").unwrap(), r);
        assert_ne!(own_ref(&key, "Barnaby Synthetic Harmer", "1987-09-30").unwrap(), r, "a space splits a word a hyphen joins");
        assert_ne!(own_ref(&key, "Barnaby Synthetic-Harmer", "1987-09-29").unwrap(), r);
        // Another agency's key gives another pseudonym, and the partnership's subject key used
        // by mistake still never gives the subject ref.
        assert_ne!(own_ref(&AgencyKeys::generate_subject_key(), "Barnaby Synthetic-Harmer", "1987-09-30").unwrap(), r);
        let keys = AgencyKeys::generate("housing", key);
        assert_ne!(own_ref(&key, "Barnaby Synthetic-Harmer", "1987-09-30").unwrap()[2..], keys.subject_ref("Barnaby Synthetic-Harmer", "1987-09-30").unwrap()[2..]);
        // Refused, without repeating what was given, like a subject ref.
        for (name, dob) in [("", "1987-09-30"), ("!!", "1987-09-30"), ("Barnaby", "30/09/1987"), ("Barnaby", "1987-02-30")] {
            let e = own_ref(&key, name, dob).unwrap_err().to_string();
            assert!(!e.contains("30/09") && !e.contains("!!"), "{e}");
        }
        assert!(!is_own_ref("p-ABCDEF0123456789abcdef0123456789") && !is_own_ref("s-00112233445566778899aabbccddeeff") && is_own_ref("p-00112233445566778899aabbccddeeff"));
    }

    #[test]
    fn a_suspended_agency_signs_nothing_from_its_suspension_and_comes_back_only_with_new_keys() {
        let (directory, keys) = generate_partnership("P", &[("ig-p", "IG", Role::Ig), ("housing-p", "Housing", Role::Housing)]).unwrap();
        let housing = &keys[1];
        let id = housing.signing_key_id();
        let suspended = directory.suspended("housing-p", 1_000, false).unwrap();
        let agency = suspended.get("housing-p").unwrap();
        assert_eq!((agency.status(), suspended.active().count()), ("suspended", 1));
        assert!(agency.verifying_key_at(&id, 999).is_ok(), "what it signed before stays verifiable");
        assert!(matches!(agency.verifying_key_at(&id, 1_000), Err(crate::OpenError::Suspended { since_ms: 1_000, .. })));
        // The TOML keeps the suspension (a service reading the file sees it).
        let back = Directory::from_toml(&suspended.to_toml()).unwrap();
        assert_eq!(back.get("housing-p").unwrap().suspended_at_ms, Some(1_000));
        // Neither the IG office nor twice.
        assert!(directory.suspended("ig-p", 1_000, false).is_err());
        assert!(suspended.suspended("housing-p", 2_000, false).is_err());
        // Back only with new keys; the old ones retired at the suspension.
        assert!(suspended.admitted(housing.public("Housing", Role::Housing)).unwrap_err().to_string().contains("new keys"));
        let fresh = AgencyKeys::generate_alone("housing-p");
        let back = suspended.admitted(fresh.public("Housing", Role::Housing)).unwrap();
        let agency = back.get("housing-p").unwrap();
        assert!(agency.is_active());
        assert!(agency.verifying_key_at(&id, 999).is_ok());
        assert!(matches!(agency.verifying_key_at(&id, 1_000), Err(crate::OpenError::RetiredKey { .. })));
        assert!(agency.verifying_key_at(&fresh.signing_key_id(), 5_000).is_ok());
        // An active agency is not replaced by an admission, nor a removed one brought back.
        assert!(back.admitted(AgencyKeys::generate_alone("housing-p").public("Housing", Role::Housing)).is_err());
        let removed = back.suspended("housing-p", 6_000, true).unwrap();
        assert_eq!(removed.get("housing-p").unwrap().status(), "removed");
        assert!(removed.admitted(AgencyKeys::generate_alone("housing-p").public("Housing", Role::Housing)).unwrap_err().to_string().contains("removed"));
        // A second IG office is refused.
        assert!(directory.admitted(AgencyKeys::generate_alone("ig-two").public("IG 2", Role::Ig)).is_err());
    }

    #[test]
    fn the_subject_key_travels_sealed_to_the_joining_agency_only() {
        let ig = AgencyKeys::generate("ig-p", AgencyKeys::generate_subject_key());
        let joining = AgencyKeys::generate_alone("idva-p");
        let other = AgencyKeys::generate_alone("other-p");
        assert!(!joining.holds_subject_key());
        let sealed = ig.seal_subject_key(&joining.age_identity.to_public()).unwrap().unwrap();
        assert!(other.clone().with_sealed_subject_key(&sealed).is_err());
        let joined = joining.with_sealed_subject_key(&sealed).unwrap();
        assert_eq!(joined.subject_ref("A B", "1990-01-01").unwrap(), ig.subject_ref("A B", "1990-01-01").unwrap());
        assert!(ig.clone().without_subject_key().seal_subject_key(&other.age_identity.to_public()).unwrap().is_none());
    }

    #[test]
    fn directory_rejects_bad_ids_and_duplicates() {
        let keys = AgencyKeys::generate("Bad Id", [0; 32]);
        let err = Directory::new("p", vec![keys.public("x", Role::Housing)]).unwrap_err();
        assert!(err.to_string().contains("lowercase"), "{err}");
        let keys = AgencyKeys::generate("ok", [0; 32]);
        let a = keys.public("x", Role::Housing);
        let err = Directory::new("p", vec![a.clone(), a]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }
}

/// The demo partnership's agencies: (id, name, role). Two housing-role agencies, so that
/// a council can refer and a housing association can offer a reciprocal property; and the
/// partnership's IG office, whose key signs the ledger's checkpoints (it runs the audit
/// service, not an agency service).
pub const DEMO_AGENCIES: [(&str, &str, Role); 7] = [
    ("housing-northbridge", "Northbridge Council Housing Solutions", Role::Housing),
    ("idva-northbridge", "Northbridge IDVA Service", Role::Idva),
    ("marac-northbridge", "Northbridge MARAC Coordinator", Role::Marac),
    ("reciprocals-scheme", "Managed Reciprocal Scheme Coordinator", Role::Reciprocals),
    ("perpetrator-pathways", "Northbridge Perpetrator Pathways", Role::Perpetrator),
    ("riverside-homes", "Riverside Homes Housing Association", Role::Housing),
    ("ig-northbridge", "Northbridge Partnership Information Governance", Role::Ig),
];

/// Generates keys for every agency and the directory that lists them; every agency holds the
/// subject-ref key.
pub fn generate_partnership(partnership: &str, agencies: &[(&str, &str, Role)]) -> Result<(Directory, Vec<AgencyKeys>), IspError> {
    generate_partnership_for(partnership, agencies, &|_| true)
}

/// [`generate_partnership`], giving the subject-ref key only to the roles `holds_subject_key`
/// says (the policy's [`crate::Policy::holds_subject_key`]).
pub fn generate_partnership_for(
    partnership: &str,
    agencies: &[(&str, &str, Role)],
    holds_subject_key: &dyn Fn(Role) -> bool,
) -> Result<(Directory, Vec<AgencyKeys>), IspError> {
    let subject_key = AgencyKeys::generate_subject_key();
    let keys: Vec<AgencyKeys> = agencies
        .iter()
        .map(|(id, _, role)| {
            let keys = AgencyKeys::generate(id, subject_key);
            if holds_subject_key(*role) { keys } else { keys.without_subject_key() }
        })
        .collect();
    let entries = keys.iter().zip(agencies).map(|(k, (_, name, role))| k.public(name, *role)).collect();
    Ok((Directory::new(partnership, entries)?, keys))
}
