//! The directory file and its signature, as a service loads them
//! (`runtime::config::load_signed_directory`): `Directory::from_toml`, then
//! `isp::signed::verify_directory` against the file's own IG key (first load) and against the
//! directory in force (an update). A directory that loads must also survive what `hub keys
//! rotate` does with it: written back with `to_toml` and read again, unchanged.
//!
//! Input: the directory text, then optionally 0xFF and the signature file's text.
#![no_main]

use hub_fuzz::{Partnership, split, text};
use isp::Directory;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (directory_text, sig) = split(data);
    let Some(directory_text) = text(directory_text) else { return };
    let sig = sig.and_then(text);
    let Ok(directory) = Directory::from_toml(directory_text) else { return };
    let p = Partnership::get();
    let _ = isp::signed::verify_directory(directory_text, sig, &directory);
    let _ = isp::signed::verify_directory(directory_text, sig, &p.directory);
    let written = directory.to_toml();
    let again = Directory::from_toml(&written).expect("a directory that loaded reads back from its own TOML");
    assert_eq!(again.agencies, directory.agencies);
    assert_eq!(again.partnership, directory.partnership);
    let _ = directory.digest();
    for agency in &directory.agencies {
        let _ = (agency.recipient(), agency.age_key_id());
        for retired in &agency.retired_keys {
            let id = isp::directory::key_id("ed25519", retired.signing_key.as_bytes());
            let _ = agency.verifying_key_at(&id, retired.retired_at_ms.saturating_sub(1));
        }
    }
});
