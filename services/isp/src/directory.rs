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
}

/// A key pair an agency rotated away from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RetiredKey {
    pub age_recipient: String,
    pub signing_key: String,
    pub retired_at_ms: i64,
}

impl Agency {
    /// The verifying key a signature names by id, if it was in force at `at_ms` (the time the
    /// signed thing says it was made). Retired keys sign nothing made after their retirement.
    pub fn verifying_key_at(&self, key_id: &str, at_ms: i64) -> Result<VerifyingKey, crate::OpenError> {
        if key_id == self.signing_key_id() {
            return self.verifying_key().map_err(|_| crate::OpenError::BadSignature(self.id.clone()));
        }
        let retired = self
            .retired_keys
            .iter()
            .find(|k| key_id == key_id_of_signing(&k.signing_key))
            .ok_or_else(|| crate::OpenError::UnknownSigningKey { sender: self.id.clone(), key_id: key_id.to_owned() })?;
        if at_ms >= retired.retired_at_ms {
            return Err(crate::OpenError::RetiredKey { sender: self.id.clone(), key_id: key_id.to_owned(), retired_at_ms: retired.retired_at_ms });
        }
        parse_verifying_key(&self.id, &retired.signing_key).map_err(|_| crate::OpenError::BadSignature(self.id.clone()))
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
    VerifyingKey::from_bytes(&bytes).map_err(|_| invalid("not an ed25519 point"))
}

fn key_id_of_signing(hex_key: &str) -> String {
    key_id("ed25519", hex_key.as_bytes())
}

/// A short, stable id for a public key: `ed25519:` + 16 hex digits of its SHA-256.
pub fn key_id(scheme: &str, public: &[u8]) -> String {
    let digest = Sha256::digest(public);
    format!("{scheme}:{}", hex::encode(&digest[..8]))
}

/// The validity check for agency ids: they become NATS subject tokens and database keys.
pub fn valid_agency_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

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
        let mut agencies = self.agencies.clone();
        let agency = agencies.iter_mut().find(|a| a.id == keys.agency).ok_or_else(|| IspError::UnknownAgency(keys.agency.clone()))?;
        agency.retired_keys.push(RetiredKey { age_recipient: agency.age_recipient.clone(), signing_key: agency.signing_key.clone(), retired_at_ms: at_ms });
        let public = keys.public(&agency.name, agency.role);
        agency.age_recipient = public.age_recipient;
        agency.signing_key = public.signing_key;
        Directory::new(self.partnership.clone(), agencies)
    }

    pub fn with_role(&self, role: Role) -> impl Iterator<Item = &Agency> {
        self.agencies.iter().filter(move |a| a.role == role)
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

    /// The pseudonymous subject reference for a person: HMAC-SHA-256 under the partnership
    /// subject key of the normalised name and date of birth. Every agency computes the same
    /// ref for the same person, so repeats and subject access requests work with no name in
    /// clear; without the key the ref cannot be tested against a guessed identity.
    /// An agency the policy keeps out of matching holds no key and gets an error.
    pub fn subject_ref(&self, full_name: &str, date_of_birth: &str) -> Result<String, IspError> {
        let mut mac = self.subject_mac()?;
        mac.update(normalise_name(full_name).as_bytes());
        mac.update(b"\0");
        mac.update(date_of_birth.trim().as_bytes());
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

/// Lowercase letters and digits, words separated by one space: "  Alice  O'Neil" and
/// "alice oneil" are the same person to the subject ref.
pub fn normalise_name(name: &str) -> String {
    name.split_whitespace()
        .map(|w| w.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
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
