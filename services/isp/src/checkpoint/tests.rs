use ed25519_dalek::SigningKey;

use super::*;
use crate::directory::generate_partnership;

/// A partnership of an IG office and a housing agency: its directory and both agencies' keys.
fn partnership() -> (Directory, AgencyKeys, AgencyKeys) {
    let (directory, mut keys) = generate_partnership("P", &[("ig-p", "IG", Role::Ig), ("housing-p", "Housing", Role::Housing)]).unwrap();
    let housing = keys.pop().unwrap();
    (directory, keys.pop().unwrap(), housing)
}

/// The note with its text (before the blank line) rewritten by `f`, its signature lines kept.
fn with_text(note: &str, f: impl Fn(&str) -> String) -> String {
    let split = note.rfind("\n\n").unwrap();
    format!("{}{}", f(&note[..split + 1]), &note[split + 1..])
}

/// The note's signature lines, with their newlines.
fn signature_lines(note: &str) -> &str {
    &note[note.rfind("\n\n").unwrap() + 2..]
}

/// A signature line with its decoded bytes rewritten by `f`.
fn with_signature_bytes(line: &str, f: impl Fn(&mut Vec<u8>)) -> String {
    let (name, encoded) = line.trim_end().strip_prefix(SIGNATURE_PREFIX).unwrap().split_once(' ').unwrap();
    let mut bytes = STANDARD.decode(encoded).unwrap();
    f(&mut bytes);
    format!("{SIGNATURE_PREFIX}{name} {}\n", STANDARD.encode(bytes))
}

/// Keys of agency `id` with the ed25519 signing key derived from `seed`.
fn fixed_keys(id: &str, seed: u8) -> AgencyKeys {
    let mut keys = AgencyKeys::generate(id, [0; 32]);
    keys.signing = SigningKey::from_bytes(&[seed; 32]);
    keys
}

#[test]
fn a_checkpoint_round_trips_through_its_note_and_its_json() {
    let (directory, ig, _) = partnership();
    let c = Checkpoint::sign(&ig, 42, &[7; 32], 1_700_000_000_000);
    assert_eq!(c.origin, "referral-hub/ig-p/ledger");
    assert_eq!((c.signer.as_str(), c.key_id.clone()), ("ig-p", ig.signing_key_id()));
    assert!(!c.is_legacy());
    assert_eq!(c.verify(&directory).unwrap(), [7; 32]);
    let json = serde_json::to_string(&c).unwrap();
    assert!(!json.contains("partnership") && !json.contains("signature"), "the new form has no legacy fields: {json}");
    assert_eq!(serde_json::from_str::<Checkpoint>(&json).unwrap(), c);
    // The bare note, as published: the same checkpoint but for the time, which it does not carry.
    let bare = Checkpoint::from_note(&c.note, &directory).unwrap();
    assert_eq!(bare, Checkpoint { at_ms: 0, ..c.clone() });
    // The time is not signed: another changes nothing.
    assert_eq!(Checkpoint { at_ms: 5, ..c.clone() }.verify(&directory).unwrap(), [7; 32]);
    // An empty tree is a checkpoint too.
    assert_eq!(Checkpoint::sign(&ig, 0, &[0; 32], 1).verify(&directory).unwrap(), [0; 32]);
}

#[test]
fn any_change_to_the_note_or_to_its_json_view_is_refused() {
    let (directory, ig, housing) = partnership();
    let c = Checkpoint::sign(&ig, 42, &[0xab; 32], 1);
    let root = STANDARD.encode([0xabu8; 32]);
    let line = signature_lines(&c.note);
    let edited = [
        ("tree size", with_text(&c.note, |t| t.replace("\n42\n", "\n43\n"))),
        ("root", with_text(&c.note, |t| t.replace(&root, &STANDARD.encode([8u8; 32])))),
        ("origin", with_text(&c.note, |t| t.replace("/ig-p/", "/ig-q/"))),
        ("signature", c.note.replace(line, &with_signature_bytes(line, |b| b[10] ^= 1))),
        ("key hash", c.note.replace(line, &with_signature_bytes(line, |b| b[0] ^= 1))),
    ];
    for (what, note) in edited {
        let e = Checkpoint::from_note(&note, &directory).unwrap_err();
        assert!(matches!(e, OpenError::BadCheckpoint(_)), "{what}: {e}");
        assert!(Checkpoint { note, ..c.clone() }.verify(&directory).is_err(), "{what}");
    }
    // The JSON fields are a view of the note: one that says something else is refused.
    for (field, forged) in [
        ("tree_size", Checkpoint { tree_size: 43, ..c.clone() }),
        ("root", Checkpoint { root: hex::encode([8u8; 32]), ..c.clone() }),
        ("root", Checkpoint { root: hex::encode([0xabu8; 32]).to_uppercase(), ..c.clone() }),
        ("origin", Checkpoint { origin: "referral-hub/ig-q/ledger".into(), ..c.clone() }),
        ("signer", Checkpoint { signer: "housing-p".into(), ..c.clone() }),
        ("key_id", Checkpoint { key_id: housing.signing_key_id(), ..c.clone() }),
        ("legacy signature", Checkpoint { signature: Some(hex::encode([0u8; 64])), ..c.clone() }),
    ] {
        let e = forged.verify(&directory).expect_err(field);
        assert!(e.to_string().contains(field), "{field}: {e}");
    }
}

#[test]
fn only_the_ig_office_signs_checkpoints() {
    let (directory, _, housing) = partnership();
    // Housing signs a note of a "ledger" of its own: not the IG office's log.
    let by_housing = Checkpoint::sign(&housing, 42, &[7; 32], 1);
    let e = Checkpoint::from_note(&by_housing.note, &directory).unwrap_err();
    assert!(e.to_string().contains("origin is not the ledger of the partnership's IG office"), "{e}");
    assert!(by_housing.verify(&directory).is_err());
    // Housing's key under the IG office's origin: an unknown key, so no IG signature at all.
    let mut impostor = housing.clone();
    impostor.agency = "ig-p".into();
    let forged = Checkpoint::sign(&impostor, 42, &[7; 32], 1);
    let e = Checkpoint::from_note(&forged.note, &directory).unwrap_err();
    assert!(e.to_string().contains("no signature line is by a key of the partnership's IG office"), "{e}");
    // The IG office of another partnership, with the same id but its own key.
    let (elsewhere, _, _) = partnership();
    let (_, ig_here, _) = partnership();
    assert!(Checkpoint::sign(&ig_here, 42, &[7; 32], 1).verify(&elsewhere).is_err());
}

#[test]
fn signature_lines_of_other_keys_are_ignored_but_a_failing_one_of_the_ig_key_is_not() {
    let (directory, ig, housing) = partnership();
    let c = Checkpoint::sign(&ig, 42, &[7; 32], 1);
    let line = signature_lines(&c.note);
    let ig_hash = key_hash(&c.origin, SIGNATURE_TYPE_ED25519, &ig.signing.verifying_key());
    let others = [
        // A witness's cosignature.
        cosign(&housing, &c.note, 1_767_225_600).unwrap(),
        // Another log's signature line.
        signature_lines(&Checkpoint::sign(&housing, 42, &[7; 32], 1).note).to_owned(),
        // The IG office's name with another key hash, and its key hash under another name.
        signature_line(&c.origin, [1, 2, 3, 4], &[0; 64]),
        signature_line("example.com/other-log", ig_hash, &[0; 64]),
        // The IG key's hash as a cosigner (type 0x04): another key as far as notes go.
        signature_line(&c.origin, key_hash(&c.origin, SIGNATURE_TYPE_COSIGNATURE_V1, &ig.signing.verifying_key()), &[0; 72]),
    ];
    for other in &others {
        for note in [format!("{}{other}", c.note), c.note.replace(line, &format!("{other}{line}"))] {
            assert_eq!(Checkpoint::from_note(&note, &directory).unwrap().root, c.root, "{other}");
            assert_eq!(Checkpoint { note, ..c.clone() }.verify(&directory).unwrap(), [7; 32]);
        }
    }
    // A line of the IG key that does not verify refuses the note, even beside one that does.
    let failing = signature_line(&c.origin, ig_hash, &[0; 64]);
    let e = Checkpoint::from_note(&format!("{}{failing}", c.note), &directory).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
}

#[test]
fn notes_off_the_grammar_are_refused_saying_what_is_wrong_and_never_repeating_them() {
    let (directory, ig, _) = partnership();
    let c = Checkpoint::sign(&ig, 42, &[7; 32], 1);
    let line = signature_lines(&c.note);
    let root = STANDARD.encode([7u8; 32]);
    // What someone could put in a note: the refusal never repeats it.
    let secret = "Jane Doe 07700 900123";
    let note = |origin: &str, size: &str, root: &str| format!("{origin}\n{size}\n{root}\n\n{line}");
    let ok_origin = "referral-hub/ig-p/ledger";
    let unknown = "\u{2014} example.org/jane-doe-07700900123 AAAAAAA=\n";
    let cases: Vec<(String, &str)> = vec![
        (c.note.trim_end().to_owned(), "does not end in a newline"),
        (c.note.replacen("\n\n", "\n", 1), "no blank line"),
        (format!("{ok_origin}\n42\n{root}\n\n"), "no signature line"),
        (format!("{ok_origin}\n42\n{root}\n\n- {secret} AAAAAAA=\n"), "signature line 1 does not start with an em dash"),
        (format!("{}\u{2014} JaneDoe07700900123\n", c.note), "signature line 2 has no space between its key name and its signature"),
        (format!("{}\u{2014} a+b AAAAAAA=\n", c.note), "key name of signature line 2 is empty or holds a space or '+'"),
        (format!("{}\u{2014}  AAAAAAA=\n", c.note), "key name of signature line 2 is empty"),
        (format!("{}\u{2014} name {secret}\n", c.note), "signature line 2 is not standard base64"),
        (format!("{}\u{2014} name AAAAAAA\n", c.note), "signature line 2 is not standard base64"),
        (format!("{}\u{2014} name AAAA\n", c.note), "signature line 2 is shorter than a key hash and a signature"),
        (c.note.replacen('\n', "\t\n", 1), "control character"),
        (c.note.replacen('\n', "\r\n", 1), "control character"),
        (format!("{ok_origin}\n42\n{root}\n{secret}\n\n{line}"), "exactly 3 non-empty lines"),
        (format!("{ok_origin}\n42\n\n{root}\n\n{line}"), "exactly 3 non-empty lines"),
        (format!("{ok_origin}\n42\n\n{line}"), "exactly 3 non-empty lines"),
        (note(ok_origin, "042", &root), "tree size is not a decimal number without leading zeros"),
        (note(ok_origin, "+42", &root), "tree size is not a decimal number"),
        (note(ok_origin, "-1", &root), "tree size is not a decimal number"),
        (note(ok_origin, "4 2", &root), "tree size is not a decimal number"),
        (note(ok_origin, "", &root), "exactly 3 non-empty lines"),
        (note(ok_origin, "18446744073709551616", &root), "tree size is larger than 2^64 - 1"),
        (note(ok_origin, "42", &hex::encode([7u8; 32])), "root hash is not standard base64 of 32 bytes"),
        (note(ok_origin, "42", root.trim_end_matches('=')), "root hash is not standard base64"),
        (note(ok_origin, "42", &STANDARD.encode([7u8; 31])), "root hash is not standard base64 of 32 bytes"),
        (note(ok_origin, "42", &base64::engine::general_purpose::URL_SAFE.encode([0xfbu8; 32])), "root hash is not standard base64"),
        (note(secret, "42", &root), "origin is not the ledger of the partnership's IG office"),
        (note("referral-hub/housing-p/ledger", "42", &root), "origin is not the ledger of the partnership's IG office"),
        (format!("{}{}", c.note, unknown.repeat(MAX_SIGNATURE_LINES)), "101 signature lines, more than the 100 accepted"),
        (format!("{}\u{2014} x {}\n", c.note, "A".repeat(MAX_NOTE_BYTES)), "larger than 1048576 bytes"),
    ];
    for (note, expected) in &cases {
        let e = Checkpoint::from_note(note, &directory).unwrap_err();
        assert!(matches!(e, OpenError::BadCheckpoint(_)) && e.to_string().contains(expected), "{:?}: {e}", note.get(..200));
        assert!(!e.to_string().contains("Jane") && !e.to_string().contains("07700"), "{e}");
    }
    // Up to the limit, unknown lines are fine.
    let many = format!("{}{}", c.note, unknown.repeat(MAX_SIGNATURE_LINES - 1));
    assert!(Checkpoint::from_note(&many, &directory).is_ok());
}

#[test]
fn no_changed_byte_or_truncation_passes_for_another_checkpoint() {
    let (directory, ig, _) = partnership();
    let c = Checkpoint::sign(&ig, 42, &[7; 32], 1);
    let bytes = c.note.as_bytes();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x20, 0x80] {
            let mut changed = bytes.to_vec();
            changed[i] ^= mask;
            // (Not UTF-8: the witness refuses it before it is a `&str`.)
            let Ok(note) = String::from_utf8(changed) else { continue };
            if let Ok(read) = Checkpoint::from_note(&note, &directory) {
                assert_eq!((read.tree_size, read.root.as_str()), (42, c.root.as_str()), "byte {i} ^ {mask:#x}");
            }
        }
        if let Ok(truncated) = std::str::from_utf8(&bytes[..i]) {
            assert!(Checkpoint::from_note(truncated, &directory).is_err(), "cut at {i}");
        }
    }
}

#[test]
fn a_checkpoint_signed_before_the_ig_office_rotated_its_key_still_verifies() {
    let (directory, ig, _) = partnership();
    let old = Checkpoint::sign(&ig, 42, &[7; 32], 1);
    let new_keys = ig.rotated();
    let rotated = directory.rotated(&new_keys, 1_000).unwrap();
    assert_eq!(old.verify(&rotated).unwrap(), [7; 32]);
    assert_eq!(Checkpoint::from_note(&old.note, &rotated).unwrap().key_id, ig.signing_key_id());
    let new = Checkpoint::sign(&new_keys, 43, &[8; 32], 2_000);
    assert_eq!(Checkpoint::from_note(&new.note, &rotated).unwrap().key_id, new_keys.signing_key_id());
    assert_eq!(new.verify(&rotated).unwrap(), [8; 32]);
    // The directory before the rotation does not know the new key.
    assert!(new.verify(&directory).is_err());
}

/// A checkpoint in the legacy form, signed as v0.1.0 did.
fn legacy_sign(keys: &AgencyKeys, partnership: &str, tree_size: u64, root: &[u8; 32], at_ms: i64) -> Checkpoint {
    let root = hex::encode(root);
    let signature = keys.signing.sign(&legacy_signed_bytes(partnership, tree_size, &root, at_ms, &keys.agency));
    Checkpoint {
        origin: String::new(),
        tree_size,
        root,
        at_ms,
        signer: keys.agency.clone(),
        key_id: keys.signing_key_id(),
        note: String::new(),
        partnership: Some(partnership.to_owned()),
        signature: Some(hex::encode(signature.to_bytes())),
    }
}

#[test]
fn a_legacy_checkpoint_verifies_as_before_and_any_change_breaks_it() {
    let (directory, ig, housing) = partnership();
    let c = legacy_sign(&ig, "P", 42, &[7; 32], 1_700_000_000_000);
    assert!(c.is_legacy());
    assert_eq!(c.verify(&directory).unwrap(), [7; 32]);
    for forged in [
        Checkpoint { tree_size: 43, ..c.clone() },
        Checkpoint { root: hex::encode([8u8; 32]), ..c.clone() },
        Checkpoint { at_ms: 1, ..c.clone() },
        Checkpoint { partnership: Some("Q".into()), ..c.clone() },
    ] {
        assert!(matches!(forged.verify(&directory), Err(OpenError::BadSignature(_))), "{forged:?}");
    }
    assert!(Checkpoint { origin: "referral-hub/ig-p/ledger".into(), ..c.clone() }.verify(&directory).is_err());
    assert!(Checkpoint { signature: None, ..c.clone() }.verify(&directory).is_err());
    // A non-IG agency cannot sign checkpoints, even with its own valid key.
    assert!(legacy_sign(&housing, "P", 42, &[7; 32], 1).verify(&directory).is_err());
}

#[test]
fn a_checkpoint_v0_1_0_signed_still_verifies_and_reads_back_unchanged() {
    // From tests/fixtures/v0.1.0 (its audit database), with that partnership's directory.
    let directory = Directory::from_toml(include_str!("../../../../tests/fixtures/v0.1.0/partnership/directory.toml")).unwrap();
    let json = r#"{"tree_size":81,"root":"833e20f8f9dab50fd11f770c60e665ab558f98a1fb5db72b271d9f918e02dc3c","at_ms":1795755165776,"signer":"ig-northbridge","key_id":"ed25519:758c336edc1302f3","partnership":"Northbridge Domestic Abuse Partnership (demo)","signature":"c225faa061cf2d15546bf8e13dd1b17a3d2d2f344dc40cc94f8e35fbc03b0c3b95455938e934aa8d52c3a147cdad3fbc36c5fff90ca468260f47cffd5a08580c"}"#;
    let c: Checkpoint = serde_json::from_str(json).unwrap();
    assert!(c.is_legacy());
    assert_eq!(hex::encode(c.verify(&directory).unwrap()), c.root);
    assert_eq!(serde_json::to_string(&c).unwrap(), json);
    let forged = Checkpoint { tree_size: 82, ..c };
    assert!(forged.verify(&directory).is_err());
}

// Known answers, computed independently with Python's `cryptography` (Ed25519) and hashlib
// (SHA-256) from the C2SP documents, not with this code.
const KAT_NOTE: &str = "referral-hub/ig-northbridge/ledger\n1234567\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n\u{2014} referral-hub/ig-northbridge/ledger Gdy/LmvXXYNxwWmcChrg2wqE48m7d0VkGh94HtzB3a8fMi44tkVjidt06vrpJbz5S3uVUTwVhBkUiAOa5FUA+sashgE=\n";
const KAT_COSIGNATURE: &str =
    "\u{2014} idva-northbridge /iZlwgAAAABpVbkAr7FD/6yzcWjAchk8e+AXOjbQY6TDYZ+blWHS7p+eMLLKQugUv4F0zb7RwqsjCw5nxjGTqmvcTMcLzsT2uvERDg==\n";
const KAT_TIME: u64 = 1_767_225_600;

fn kat_root() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

#[test]
fn known_answer_note_key_hash_and_verifier_key() {
    let ig = fixed_keys("ig-northbridge", 7);
    let key = ig.signing.verifying_key();
    assert_eq!(hex::encode(key.as_bytes()), "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c");
    let c = Checkpoint::sign(&ig, 1_234_567, &kat_root(), 0);
    assert_eq!(c.note, KAT_NOTE);
    assert_eq!(key_hash(&origin("ig-northbridge"), SIGNATURE_TYPE_ED25519, &key), [0x19, 0xdc, 0xbf, 0x2e]);
    assert_eq!(verifier_key(&origin("ig-northbridge"), &key), "referral-hub/ig-northbridge/ledger+19dcbf2e+AepKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs");
    let directory = Directory::new("N", vec![ig.public("IG", Role::Ig)]).unwrap();
    let read = Checkpoint::from_note(KAT_NOTE, &directory).unwrap();
    assert_eq!((read.tree_size, read.root_bytes().unwrap()), (1_234_567, kat_root()));
}

#[test]
fn known_answer_cosignature() {
    let witness = fixed_keys("idva-northbridge", 9);
    let key = witness.signing.verifying_key();
    assert_eq!(key_hash("idva-northbridge", SIGNATURE_TYPE_COSIGNATURE_V1, &key), [0xfe, 0x26, 0x65, 0xc2]);
    assert_eq!(cosigner_verifier_key("idva-northbridge", &key), "idva-northbridge+fe2665c2+BP0XJDhaoMdbZPt4zWAvodmR/ev3axPFjtcC6sg16fYY");
    assert_eq!(cosign(&witness, KAT_NOTE, KAT_TIME).unwrap(), KAT_COSIGNATURE);
    assert_eq!(verify_cosignature(KAT_NOTE, KAT_COSIGNATURE, "idva-northbridge", &key).unwrap(), KAT_TIME);
}

#[test]
fn a_cosignature_verifies_only_for_its_checkpoint_cosigner_key_and_time() {
    let (directory, ig, housing) = partnership();
    let c = Checkpoint::sign(&ig, 42, &[7; 32], 1);
    let key = housing.signing.verifying_key();
    let line = cosign(&housing, &c.note, KAT_TIME).unwrap();
    assert_eq!(verify_cosignature(&c.note, &line, "housing-p", &key).unwrap(), KAT_TIME);
    // Without its newline, and against the note it was appended to.
    let cosigned = format!("{}{line}", c.note);
    assert_eq!(verify_cosignature(&cosigned, line.trim_end(), "housing-p", &key).unwrap(), KAT_TIME);
    assert!(Checkpoint::from_note(&cosigned, &directory).is_ok());
    let other = Checkpoint::sign(&ig, 43, &[7; 32], 1);
    let (note, other) = (c.note.as_str(), other.note.as_str());
    let later = with_signature_bytes(&line, |b| b[11] ^= 1);
    let truncated = with_signature_bytes(&line, |b| b.truncate(70));
    let future = with_signature_bytes(&line, |b| b[4] = 0x80);
    for (what, note, line, name, key, expected) in [
        ("another checkpoint", other, line.as_str(), "housing-p", key, "does not verify"),
        ("another cosigner's name", note, line.as_str(), "idva-p", key, "names another cosigner"),
        ("another key", note, line.as_str(), "housing-p", ig.signing.verifying_key(), "key hash is not that of the cosigner's key"),
        ("another time", note, later.as_str(), "housing-p", key, "does not verify"),
        ("a short signature", note, truncated.as_str(), "housing-p", key, "not an 8-byte time and a 64-byte Ed25519 signature"),
        ("a time past 2^63 - 1", note, future.as_str(), "housing-p", key, "exceeds 2^63 - 1"),
    ] {
        let e = verify_cosignature(note, line, name, &key).unwrap_err();
        assert!(e.to_string().contains(expected), "{what}: {e}");
    }
    assert!(cosign(&housing, &c.note, 1 << 63).is_err());
}
