//! Signed checkpoints of the disclosure ledger, in the standard transparency-log format: each
//! is a C2SP signed note (<https://c2sp.org/signed-note>) whose text is a C2SP checkpoint
//! (<https://c2sp.org/tlog-checkpoint>) of the ledger's RFC 6962 Merkle tree, signed with
//! the partnership IG office's ed25519 key. Any transparency-log tool can read and check one
//! with the IG office's verifier key ([`verifier_key`], `hub audit vkey`).
//!
//! Agencies keep the checkpoints they see as witnesses; a later checkpoint that is not
//! consistent with an earlier one shows that the audit operator rewrote history. A witness
//! that accepts one cosigns it (<https://c2sp.org/tlog-cosignature>, `cosignature/v1`) with
//! its agency's key: [`cosign`], [`verify_cosignature`].
//!
//! The IG key and the agencies' keys sign other things too (envelopes, events, consent
//! records, the policy and the directory), each behind a `hub.v1.…\0` context; a note's text
//! starts with `referral-hub/` and a cosigned message with `cosignature/v1\n`, so no signature
//! of one kind passes for another.
//!
//! Checkpoints made before notes (v0.1.0: JSON with a signature over length-prefixed fields)
//! stay verifiable: see [`verify_legacy`].

use base64::{Engine as _, engine::general_purpose::STANDARD};
use ed25519_dalek::{Signature, Signer as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::{Agency, AgencyKeys, Directory, OpenError, Role, signature::check_signature_at};

/// The JetStream stream that keeps every published checkpoint (deny delete, deny purge).
pub const CHECKPOINT_STREAM: &str = "HUB_CHECKPOINTS";
/// The subject checkpoints are published on: each message is a signed note's text (older
/// streams also hold the legacy JSON form, which starts with `{`).
pub const CHECKPOINT_SUBJECT: &str = "hub.v1.checkpoint";
/// The audit service answers consistency-proof requests here: `{"first": n, "second": m}`
/// -> `{"proof": [hex, ...]}` or `{"error": "..."}`.
pub const CONSISTENCY_SUBJECT: &str = "hub.v1.audit.consistency";

/// A note larger than this is refused before it is read: a checkpoint with a hundred
/// cosignatures is under 20 KiB.
pub const MAX_NOTE_BYTES: usize = 1 << 20;
/// A note with more signature lines than this is refused (C2SP asks verifiers to accept at
/// least 16; the Go implementation stops at 100, as here).
pub const MAX_SIGNATURE_LINES: usize = 100;

/// signed-note signature type of an Ed25519 signature over the note text.
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;
/// signed-note signature type of a timestamped Ed25519 witness cosignature (cosignature/v1).
pub const SIGNATURE_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// What starts every signature line: U+2014 EM DASH, then a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// The first line of a cosigned message: domain separation of cosignatures.
const COSIGNATURE_HEADER: &str = "cosignature/v1\n";

/// The origin line (and the log's key name) of the ledger checkpoints the IG office
/// `ig_agency_id` signs: unique to the partnership's IG office, a schema-less URL path as
/// C2SP recommends (agency ids are `[a-z0-9-]`, so it holds no space and no `+`).
pub fn origin(ig_agency_id: &str) -> String {
    format!("referral-hub/{ig_agency_id}/ledger")
}

/// The signed-note key hash (key ID): the first four bytes of
/// SHA-256(key name || 0x0A || signature type || public key).
pub fn key_hash(name: &str, signature_type: u8, key: &VerifyingKey) -> [u8; 4] {
    let digest = Sha256::new().chain_update(name.as_bytes()).chain_update([b'\n', signature_type]).chain_update(key.as_bytes()).finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// The signed-note verifier key ("vkey") of an Ed25519 note signer:
/// `<name>+<key hash, 8 hex digits>+<base64(0x01 || public key)>`. With the origin as the
/// name and the IG office's key, it is what an outside witness or monitor is configured with.
pub fn verifier_key(name: &str, key: &VerifyingKey) -> String {
    vkey(name, SIGNATURE_TYPE_ED25519, key)
}

/// The vkey of a witness's cosignatures (signature type 0x04, as tlog-cosignature allows):
/// what a verifier counting the agencies' cosignatures is configured with.
pub fn cosigner_verifier_key(name: &str, key: &VerifyingKey) -> String {
    vkey(name, SIGNATURE_TYPE_COSIGNATURE_V1, key)
}

fn vkey(name: &str, signature_type: u8, key: &VerifyingKey) -> String {
    let material = [&[signature_type][..], key.as_bytes()].concat();
    format!("{name}+{}+{}", hex::encode(key_hash(name, signature_type, key)), STANDARD.encode(material))
}

/// A checkpoint that is not one the IG office signed, or not of the grammar; the reason is
/// fixed text (numbers at most), never the note's content.
fn bad(reason: impl Into<String>) -> OpenError {
    OpenError::BadCheckpoint(reason.into())
}

/// The checkpoint text: origin, tree size, root hash, each ending in a newline; no extension
/// lines.
fn note_text(origin: &str, tree_size: u64, root: &[u8; 32]) -> String {
    format!("{origin}\n{tree_size}\n{}\n", STANDARD.encode(root))
}

/// One signature line, with its newline.
fn signature_line(name: &str, key_hash: [u8; 4], signature: &[u8]) -> String {
    format!("{SIGNATURE_PREFIX}{name} {}\n", STANDARD.encode([&key_hash[..], signature].concat()))
}

/// A signed note split into its text and its signature lines (none verified yet).
struct Note<'a> {
    text: &'a str,
    signatures: Vec<SignatureLine<'a>>,
}

/// One signature line: the key name, the key hash and what follows it (the signature).
struct SignatureLine<'a> {
    name: &'a str,
    key_hash: [u8; 4],
    signature: Vec<u8>,
}

/// Splits a signed note by the signed-note grammar: valid UTF-8 (a `&str`) without control
/// characters but newlines, at most [`MAX_NOTE_BYTES`], ending in a newline; the text, a
/// blank line (the last in the note), then one to [`MAX_SIGNATURE_LINES`] signature lines.
fn parse_note(note: &str) -> Result<Note<'_>, OpenError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(bad(format!("the note is larger than {} bytes", MAX_NOTE_BYTES)));
    }
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(bad("the note holds a control character other than newline"));
    }
    if !note.ends_with('\n') {
        return Err(bad("the note does not end in a newline"));
    }
    let split = note.rfind("\n\n").ok_or_else(|| bad("the note has no blank line between its text and its signatures"))?;
    let (text, lines) = (&note[..split + 1], &note[split + 2..]);
    if lines.is_empty() {
        return Err(bad("the note has no signature line after its blank line"));
    }
    let count = lines.split_terminator('\n').count();
    if count > MAX_SIGNATURE_LINES {
        return Err(bad(format!("the note has {count} signature lines, more than the {MAX_SIGNATURE_LINES} accepted")));
    }
    let signatures = lines.split_terminator('\n').enumerate().map(|(i, line)| parse_signature_line(line, i + 1)).collect::<Result<_, _>>()?;
    Ok(Note { text, signatures })
}

/// `— <key name> <base64(key hash || signature)>` (without its newline); `n` numbers the line
/// among the signatures, for the error.
fn parse_signature_line(line: &str, n: usize) -> Result<SignatureLine<'_>, OpenError> {
    let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| bad(format!("signature line {n} does not start with an em dash and a space")))?;
    let (name, encoded) = rest.split_once(' ').ok_or_else(|| bad(format!("signature line {n} has no space between its key name and its signature")))?;
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '+') {
        return Err(bad(format!("the key name of signature line {n} is empty or holds a space or '+'")));
    }
    let bytes = STANDARD.decode(encoded).map_err(|_| bad(format!("the signature of signature line {n} is not standard base64")))?;
    if bytes.len() < 5 {
        return Err(bad(format!("the signature of signature line {n} is shorter than a key hash and a signature")));
    }
    Ok(SignatureLine { name, key_hash: [bytes[0], bytes[1], bytes[2], bytes[3]], signature: bytes[4..].to_vec() })
}

/// What a checkpoint's text says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    origin: String,
    tree_size: u64,
    root: [u8; 32],
}

/// Reads a checkpoint text: exactly three non-empty lines (origin, tree size in decimal
/// without leading zeros, root hash in standard base64 of 32 bytes). Extension lines are
/// refused: this log never writes them, and nobody could audit them.
fn parse_text(text: &str) -> Result<Head, OpenError> {
    let lines: Vec<&str> = text.strip_suffix('\n').unwrap_or(text).split('\n').collect();
    let empty = lines.iter().filter(|l| l.is_empty()).count();
    if lines.len() != 3 || empty > 0 {
        return Err(bad(format!("the checkpoint text has {} line(s), {empty} of them empty; it must have exactly 3 non-empty lines", lines.len())));
    }
    let size = lines[1];
    if !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
        return Err(bad("the tree size is not a decimal number without leading zeros"));
    }
    let tree_size = size.parse().map_err(|_| bad("the tree size is larger than 2^64 - 1"))?;
    let root = STANDARD
        .decode(lines[2])
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| bad("the root hash is not standard base64 of 32 bytes"))?;
    Ok(Head { origin: lines[0].to_owned(), tree_size, root })
}

/// A note the IG office signed: what its text says, the IG agency and the hub key ids of
/// its keys whose signature lines verified.
struct Opened<'d> {
    head: Head,
    ig: &'d Agency,
    key_ids: Vec<String>,
}

/// Verifies a checkpoint note against the directory: its origin must be the ledger of an
/// `ig` agency, and a signature line by that agency's key must verify. The key may be its
/// current signing key or one of its retired ones: the note carries no signed time, so
/// nothing says it was signed before the retirement; a checkpoint the IG office signed before
/// rotating stays verifiable, as the ledger's old proofs must. (The IG office is never
/// suspended: `Directory::suspended` refuses it.) Signature lines of other names or key
/// hashes (a witness's cosignature, another log's key) are ignored, as signed-note requires;
/// a line of an IG key that does not verify refuses the whole note.
fn open_note<'d>(note: &str, directory: &'d Directory) -> Result<Opened<'d>, OpenError> {
    let parsed = parse_note(note)?;
    let head = parse_text(parsed.text)?;
    let ig = directory
        .with_role(Role::Ig)
        .find(|a| origin(&a.id) == head.origin)
        .ok_or_else(|| bad("its origin is not the ledger of the partnership's IG office"))?;
    let keys: Vec<(String, VerifyingKey)> = ig.signing_keys().collect();
    let mut key_ids = Vec::new();
    for line in parsed.signatures.iter().filter(|l| l.name == head.origin) {
        let Some((id, key)) = keys.iter().find(|(_, k)| key_hash(&head.origin, SIGNATURE_TYPE_ED25519, k) == line.key_hash) else { continue };
        let verified = Signature::from_slice(&line.signature).is_ok_and(|s| key.verify_strict(parsed.text.as_bytes(), &s).is_ok());
        if !verified {
            return Err(bad(format!("the signature by the IG office's key {id} does not verify: the note was altered")));
        }
        key_ids.push(id.clone());
    }
    if key_ids.is_empty() {
        return Err(bad("no signature line is by a key of the partnership's IG office (current or retired)"));
    }
    Ok(Opened { head, ig, key_ids })
}

/// A signed statement "the ledger of the IG office `signer` had `tree_size` entries with
/// Merkle root `root`". Travels and is stored as JSON (`GET /checkpoints`, inclusion proofs,
/// subject access bundles); the signed note in `note` is the authoritative part, and the other
/// fields are a view of it for readers, refused by [`Checkpoint::verify`] when they disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The note's origin line, [`origin`] of the IG office (empty in the legacy form).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub origin: String,
    pub tree_size: u64,
    /// The Merkle root, hex (the note has it in base64).
    pub root: String,
    /// When the audit service made the checkpoint, in ms since the epoch. Not signed (the note
    /// carries no time; in the legacy form it was signed): informational only.
    pub at_ms: i64,
    /// The directory id of the signer, the partnership's `ig` agency.
    pub signer: String,
    /// The hub's key id of the key that signed (`ed25519:` + 16 hex digits,
    /// [`crate::Agency::signing_key_id`]), to tell a current key from a retired one.
    pub key_id: String,
    /// The signed note: the checkpoint text, a blank line, the IG office's signature line and
    /// any cosignatures. Empty only in the legacy form.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Legacy form only: the partnership's name, which the old signature covered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partnership: Option<String>,
    /// Legacy form only: the old signature, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

impl Checkpoint {
    /// Signs a checkpoint of the ledger with the IG office's keys: a note whose origin is
    /// [`origin`] of `keys.agency`, signed with its signing key under that name.
    pub fn sign(keys: &AgencyKeys, tree_size: u64, root: &[u8; 32], at_ms: i64) -> Checkpoint {
        let origin = origin(&keys.agency);
        let text = note_text(&origin, tree_size, root);
        let signature = keys.signing.sign(text.as_bytes());
        let hash = key_hash(&origin, SIGNATURE_TYPE_ED25519, &keys.signing.verifying_key());
        let note = format!("{text}\n{}", signature_line(&origin, hash, &signature.to_bytes()));
        Checkpoint {
            origin,
            tree_size,
            root: hex::encode(root),
            at_ms,
            signer: keys.agency.clone(),
            key_id: keys.signing_key_id(),
            note,
            partnership: None,
            signature: None,
        }
    }

    /// Builds the JSON view of a bare note (as published on [`CHECKPOINT_SUBJECT`]) once it
    /// verifies against the directory (see [`Checkpoint::verify`]). `at_ms` is 0: the note
    /// says nothing of when it was made, and a made-up time would read as if it did; whoever
    /// needs when they saw it records that beside it (the witness does). `key_id` names the
    /// first IG key whose signature verified.
    pub fn from_note(note: &str, directory: &Directory) -> Result<Checkpoint, OpenError> {
        let opened = open_note(note, directory)?;
        Ok(Checkpoint {
            origin: opened.head.origin,
            tree_size: opened.head.tree_size,
            root: hex::encode(opened.head.root),
            at_ms: 0,
            signer: opened.ig.id.clone(),
            key_id: opened.key_ids[0].clone(),
            note: note.to_owned(),
            partnership: None,
            signature: None,
        })
    }

    /// Checks the note against the directory (signed by the partnership's `ig` agency with its
    /// current or a retired key: see [`open_note`]) and that the JSON fields say what the note
    /// says: the same origin, tree size and root, the signer whose ledger the note is, a key
    /// id whose signature verified. Returns the root. A checkpoint in the legacy form (no
    /// note) is checked as v0.1.0 signed it, [`verify_legacy`].
    pub fn verify(&self, directory: &Directory) -> Result<[u8; 32], OpenError> {
        if self.note.is_empty() {
            return verify_legacy(self, directory);
        }
        if self.partnership.is_some() || self.signature.is_some() {
            return Err(bad("it carries both a note and a legacy signature"));
        }
        let opened = open_note(&self.note, directory)?;
        let head = &opened.head;
        if self.signer != opened.ig.id {
            return Err(bad("the signer field is not the IG office whose ledger the note is"));
        }
        if !opened.key_ids.contains(&self.key_id) {
            return Err(bad("the key_id field is not that of a key whose signature verified"));
        }
        if self.origin != head.origin {
            return Err(bad("the origin field does not match the note"));
        }
        if self.tree_size != head.tree_size {
            return Err(bad("the tree_size field does not match the note"));
        }
        if self.root != hex::encode(head.root) {
            return Err(bad("the root field does not match the note"));
        }
        Ok(head.root)
    }

    /// The root hash as bytes.
    pub fn root_bytes(&self) -> Result<[u8; 32], OpenError> {
        hex::decode(&self.root)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| OpenError::Malformed("the checkpoint root is not a 32-byte hex hash".into()))
    }

    /// Whether this is a checkpoint of the form before notes (JSON with a hex signature).
    pub fn is_legacy(&self) -> bool {
        self.note.is_empty()
    }
}

/// Domain separation of legacy checkpoint signatures from envelope and event signatures.
const LEGACY_CHECKPOINT_CONTEXT: &[u8] = b"hub.v1.checkpoint\0";

/// What v0.1.0 signed for a checkpoint: a context, then partnership name, tree size, hex
/// root, time and signer, each prefixed with its length. Kept only to verify the
/// checkpoints of that time, which upgraded databases and streams still hold.
fn legacy_signed_bytes(partnership: &str, tree_size: u64, root: &str, at_ms: i64, signer: &str) -> Vec<u8> {
    let mut out = LEGACY_CHECKPOINT_CONTEXT.to_vec();
    for part in [partnership.as_bytes(), &tree_size.to_be_bytes(), root.as_bytes(), &at_ms.to_be_bytes(), signer.as_bytes()] {
        out.extend_from_slice(&(part.len() as u64).to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

/// Verifies a checkpoint of the legacy form (no note; `partnership` and `signature`), as
/// v0.1.0 did: the signer holds the `ig` role in this partnership and its key, in force at the
/// signed `at_ms`, signed the fields. New checkpoints are never of this form.
pub fn verify_legacy(c: &Checkpoint, directory: &Directory) -> Result<[u8; 32], OpenError> {
    let signer = directory.get(&c.signer).ok_or_else(|| OpenError::UnknownSender(crate::clear::shown(&c.signer, crate::clear::is_agency_id)))?;
    let partnership = c.partnership.as_deref().ok_or_else(|| bad("it has neither a note nor a legacy partnership field"))?;
    if signer.role != Role::Ig || partnership != directory.partnership {
        return Err(OpenError::BadSignature(c.signer.clone()));
    }
    if !c.origin.is_empty() {
        return Err(bad("a legacy checkpoint has no origin; its signature does not cover one"));
    }
    let signature = c.signature.as_deref().ok_or_else(|| bad("it has neither a note nor a legacy signature"))?;
    let signature = hex::decode(signature).map_err(|_| OpenError::Malformed("the checkpoint signature is not hex".into()))?;
    let bytes = legacy_signed_bytes(partnership, c.tree_size, &c.root, c.at_ms, &c.signer);
    check_signature_at(signer, &c.key_id, c.at_ms, &[], &bytes, &signature)?;
    c.root_bytes()
}

/// The message a cosignature/v1 signs: its header line, the time line, then the checkpoint
/// text (the note without its signatures).
fn cosigned_message(timestamp: u64, text: &str) -> Vec<u8> {
    format!("{COSIGNATURE_HEADER}time {timestamp}\n{text}").into_bytes()
}

/// Cosigns a checkpoint note as a witness (cosignature/v1, timestamped Ed25519): the
/// signature line, with its newline, to append to the note. The key name is the agency id;
/// `timestamp` is the time of cosigning in seconds since the epoch. The note is not verified
/// here: the witness cosigns only what it has checked.
pub fn cosign(keys: &AgencyKeys, note: &str, timestamp: u64) -> Result<String, OpenError> {
    if timestamp > i64::MAX as u64 {
        return Err(bad("a cosignature time must not exceed 2^63 - 1"));
    }
    let text = parse_note(note)?.text;
    let signature = keys.signing.sign(&cosigned_message(timestamp, text));
    let hash = key_hash(&keys.agency, SIGNATURE_TYPE_COSIGNATURE_V1, &keys.signing.verifying_key());
    Ok(signature_line(&keys.agency, hash, &[&timestamp.to_be_bytes()[..], &signature.to_bytes()].concat()))
}

/// Checks one cosignature line (with or without its newline) of the cosigner `name` with
/// `key` over the checkpoint `note` (with or without cosignatures already appended). Returns
/// the cosignature's time, in seconds since the epoch.
pub fn verify_cosignature(note: &str, line: &str, name: &str, key: &VerifyingKey) -> Result<u64, OpenError> {
    let text = parse_note(note)?.text;
    let line = parse_signature_line(line.strip_suffix('\n').unwrap_or(line), 1)?;
    if line.name != name {
        return Err(bad("the cosignature line names another cosigner"));
    }
    if line.key_hash != key_hash(name, SIGNATURE_TYPE_COSIGNATURE_V1, key) {
        return Err(bad("the cosignature's key hash is not that of the cosigner's key"));
    }
    let timestamp = line.signature.get(..8).and_then(|t| <[u8; 8]>::try_from(t).ok());
    let signature = line.signature.get(8..).and_then(|s| Signature::from_slice(s).ok());
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(bad("the cosignature is not an 8-byte time and a 64-byte Ed25519 signature"));
    };
    let timestamp = u64::from_be_bytes(timestamp);
    if timestamp > i64::MAX as u64 {
        return Err(bad("the cosignature time exceeds 2^63 - 1"));
    }
    key.verify_strict(&cosigned_message(timestamp, text), &signature).map_err(|_| bad("the cosignature does not verify"))?;
    Ok(timestamp)
}

#[cfg(test)]
mod tests;
