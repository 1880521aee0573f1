//! The information-sharing protocol: the only crate that seals, opens, signs, verifies and
//! decides.
//!
//! - [`clear`]: the grammars of the fields that travel in clear, and their error.
//! - [`codes`]: the names of consent states and risk levels (`not-sought`, `high`).
//! - [`kind`]: message kinds and their dotted policy names (`housing.idva_referral`).
//! - [`schema`]: reads every payload field's data category from the proto schema; finds the
//!   categories a payload carries and strips the ones a recipient may not receive.
//! - [`policy`]: the partnership's protocol as data (deploy/isp/policy.toml) and [`Policy::decide`].
//! - [`directory`]: the partnership's agencies, their roles and public keys; an agency's own
//!   secret keys; the subject reference.
//! - [`consent`]: consent records (given, refused, not-sought, withdrawn, expired; scope;
//!   expiry), signed by the agency that took consent and checked before every disclosure
//!   that relies on one.
//! - [`risk`]: the DASH checklists and the signed risk summary a referral carries.
//! - [`signature`]: the one check of an agency's signature by a key in force at a time.
//! - [`merkle`]: RFC 6962 Merkle tree heads and proofs, and their verification.
//! - [`checkpoint`]: signed checkpoints (tree size, Merkle root) of the disclosure ledger, as
//!   C2SP signed notes; witness cosignatures.
//! - [`signed`]: the IG signatures over the policy and directory files, without which no
//!   service uses them.
//! - [`seal`]: [`Isp::seal`] (decide, minimise, encode, encrypt, sign) and [`Isp::open`]
//!   (verify, re-decide, decrypt, decode, check categories), and signed [`proto::v1::Event`]s.
//!
//! The modules import one way: `clear`, `codes`, `error`, `kind` and `schema` import no other
//! isp module; `directory` only those; `signature` and `policy` the directory; consent
//! records, risk summaries, the signed files and checkpoints verify through `signature`;
//! `seal` sits above them all, and `access` and `at_rest` above `seal`.
//!
//! Invariants: nothing leaves an agency unless [`Policy::decide`] allowed it and named its rule;
//! an error never carries payload content, only ids, kinds, rules and categories.

pub mod access;
pub mod at_rest;
pub mod checkpoint;
pub mod clear;
pub mod codes;
pub mod consent;
pub mod directory;
pub mod error;
pub mod kind;
pub mod merkle;
pub mod policy;
pub mod risk;
pub mod schema;
pub mod seal;
pub mod signature;
pub mod signed;

pub use directory::{Agency, AgencyKeys, Directory, Role};
pub use error::{Denial, IspError, OpenError};
pub use kind::Kind;
pub use policy::{Decision, Policy};
pub use schema::Schema;
pub use seal::{Isp, Justification, Opened, Outgoing, Sealed};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
