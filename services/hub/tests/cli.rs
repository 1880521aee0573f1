//! The `hub` command as a user runs it: `hub demo --data DIR` plays the case and keeps the
//! databases; `hub audit verify` then passes, and fails naming the entry once one is
//! altered in the ledger database; `hub audit list --json` prints the entries. The services'
//! logs, at debug level, never hold the survivor's name, address or phone number.

use std::process::{Command, Output};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hub::demo::{SURVIVOR_ADDRESS, SURVIVOR_DOB, SURVIVOR_NAME, SURVIVOR_PHONE};

fn hub(args: &[&str], log: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hub"))
        .args(args)
        .env("RUST_LOG", log)
        .env("NO_COLOR", "1")
        .env_remove("NATS_URL")
        .env_remove("DATABASE_URL")
        .output()
        .expect("runs hub")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn demo_then_audit_verify_and_list_and_a_tampered_ledger_fails_at_its_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();

    let demo = hub(&["demo", "--data", data], "debug");
    let (stdout, stderr) = (text(&demo.stdout), text(&demo.stderr));
    assert!(demo.status.success(), "hub demo failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("OK: 21 disclosures delivered and stored exactly once"), "{stdout}");
    assert!(stdout.contains("DENIED  rule=roles.perpetrator.never"), "{stdout}");
    // The logs are really there (debug level, every service)...
    assert!(stderr.contains("envelope received and stored"), "no service logs captured:\n{stderr}");
    // ...and hold nothing identifying.
    for secret in [SURVIVOR_NAME, SURVIVOR_ADDRESS, SURVIVOR_PHONE, SURVIVOR_DOB, "AGE-SECRET-KEY"] {
        assert!(!stderr.contains(secret), "{secret:?} reached a log line");
        assert!(!stdout.contains(secret), "{secret:?} was printed");
    }
    assert!(dir.path().join("db").join("audit.db").exists(), "hub demo --data did not keep the databases");

    let verify = hub(&["audit", "verify", "--data", data], "warn");
    assert!(verify.status.success(), "{}{}", text(&verify.stdout), text(&verify.stderr));
    assert!(text(&verify.stdout).starts_with("ledger OK: "), "{}", text(&verify.stdout));

    let list = hub(&["audit", "list", "--data", data, "--json"], "warn");
    assert!(list.status.success());
    let entries: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout).expect("audit list --json prints JSON");
    // The demo's disclosures (the reciprocal scheme's approval and status messages among
    // them), receipts, consent records, near miss and its staff acknowledgements (signed
    // `acknowledged` events); besides them, the
    // access log of its staff (every content read and every refused attempt; how many
    // depends on how often the demo looked before a delivery arrived).
    let (accessed, sharing): (Vec<_>, Vec<_>) = entries.iter().partition(|e| e["entry_type"] == "accessed");
    assert_eq!(sharing.len(), 51);
    assert!(text(&verify.stdout).starts_with(&format!("ledger OK: {} entries, ", entries.len())), "{}", text(&verify.stdout));
    assert!(accessed.iter().all(|e| e["staff_id"].as_str().is_some_and(|s| s.starts_with("demo.")) && e["verified"] == true), "{accessed:?}");
    assert!(accessed.iter().any(|e| e["rule"] == "GET /inbox/{id}" && e["reason"] == "allowed"), "no content read was recorded");
    assert_eq!(entries.iter().filter(|e| e["entry_type"] == "near_miss").count(), 1);

    // An inclusion proof of entry 5 verifies offline; with the entry changed it does not.
    let prove = hub(&["audit", "prove", "--data", data, "--entry", "5"], "warn");
    assert!(prove.status.success(), "{}", text(&prove.stderr));
    let proof_file = dir.path().join("proof-5.json");
    std::fs::write(&proof_file, &prove.stdout).unwrap();
    let checked = hub(&["audit", "verify-proof", proof_file.to_str().unwrap(), "--data", data], "warn");
    assert!(checked.status.success(), "{}{}", text(&checked.stdout), text(&checked.stderr));
    assert!(text(&checked.stdout).starts_with("proof OK: entry 5"), "{}", text(&checked.stdout));
    let mut proof: serde_json::Value = serde_json::from_slice(&prove.stdout).unwrap();

    // The IG office's verifier key, for an outside witness: the checkpoint note of the proof is
    // signed under its name, by the key it names (its key hash), which is the directory's.
    let vkey = hub(&["audit", "vkey", "--data", data], "warn");
    assert!(vkey.status.success(), "{}", text(&vkey.stderr));
    let vkey = text(&vkey.stdout);
    // (The key's base64 may hold '+' too: a name may not, and the hash is hex.)
    let [name, hash, key] = vkey.trim_end().splitn(3, '+').collect::<Vec<_>>().try_into().expect("a vkey is name+hash+key");
    assert_eq!(name, "referral-hub/ig-northbridge/ledger");
    let key = STANDARD.decode(key).unwrap();
    let directory = isp::Directory::load(&dir.path().join("partnership/directory.toml")).unwrap();
    assert_eq!((key[0], hex::encode(&key[1..])), (0x01, directory.get("ig-northbridge").unwrap().signing_key.clone()), "an Ed25519 vkey of the IG key");
    let note = proof["checkpoint"]["note"].as_str().expect("the proof's checkpoint is a note");
    assert!(note.starts_with(&format!("{name}\n")), "{note}");
    let line = note.lines().last().unwrap().strip_prefix(&format!("\u{2014} {name} ")).expect("a signature line under the origin");
    assert_eq!(hex::encode(&STANDARD.decode(line).unwrap()[..4]), hash);
    // The witnesses' cosigner vkeys: one for each agency service (the IG office runs none),
    // of the key its witness cosigns with.
    let witnesses = hub(&["audit", "vkey", "--data", data, "--witnesses"], "warn");
    let witnesses = text(&witnesses.stdout);
    assert_eq!(witnesses.lines().count(), directory.agencies.iter().filter(|a| a.role != isp::Role::Ig).count(), "{witnesses}");
    assert!(!witnesses.contains("ig-northbridge"), "{witnesses}");
    let idva = witnesses.lines().find(|l| l.starts_with("idva-northbridge+")).expect("the IDVA's witness");
    let key = STANDARD.decode(idva.splitn(3, '+').nth(2).unwrap()).unwrap();
    assert_eq!((key[0], hex::encode(&key[1..])), (0x04, directory.get("idva-northbridge").unwrap().signing_key.clone()), "{idva}");
    proof["entry"]["lawful_basis"] = "cda-1998-s115".into();
    std::fs::write(&proof_file, proof.to_string()).unwrap();
    let checked = hub(&["audit", "verify-proof", proof_file.to_str().unwrap(), "--data", data], "warn");
    assert!(!checked.status.success());
    assert!(text(&checked.stdout).contains("proof FAILED: entry 5's content does not match its hash"), "{}", text(&checked.stdout));

    // The near miss, as CSV for a spreadsheet.
    let csv = hub(&["audit", "query", "--data", data, "--type", "near_miss", "--format", "csv"], "warn");
    assert!(csv.status.success(), "{}", text(&csv.stderr));
    let csv = text(&csv.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("seq,entry_type,occurred_at,sender,recipient,kind"), "{csv}");
    assert!(lines[1].contains("near_miss") && lines[1].contains("roles.perpetrator.never"), "{csv}");

    // Subject access: the survivor's records, proved, in plain words, without their name.
    let bundle_file = dir.path().join("sar.json");
    let sar = hub(&["audit", "subject-access", "--data", data, "--name", " zephyrine QUILLFEATHER-demo ", "--dob", SURVIVOR_DOB, "--out", bundle_file.to_str().unwrap()], "warn");
    assert!(sar.status.success(), "{}", text(&sar.stderr));
    let summary = text(&sar.stderr);
    assert!(summary.contains("39 record(s) about you: 18 time(s) information about you was shared between agencies (and 18 acknowledgement(s)"), "{summary}");
    assert!(summary.contains("without your consent") && summary.contains("it was stopped before anything was sent"), "{summary}");
    assert!(summary.contains("recorded your consent as given"), "{summary}");
    let bundle = std::fs::read_to_string(&bundle_file).unwrap();
    for secret in [SURVIVOR_NAME, SURVIVOR_ADDRESS, SURVIVOR_PHONE, SURVIVOR_DOB] {
        assert!(!bundle.contains(secret) && !summary.contains(secret), "{secret:?} is in the subject access bundle");
    }
    let checked = hub(&["audit", "verify-proof", bundle_file.to_str().unwrap(), "--data", data], "warn");
    assert!(text(&checked.stdout).starts_with("bundle OK: 39 entries"), "{}{}", text(&checked.stdout), text(&checked.stderr));
    std::fs::write(&bundle_file, bundle.replacen("\"recipient\": \"idva-northbridge\"", "\"recipient\": \"marac-northbridge\"", 1)).unwrap();
    let checked = hub(&["audit", "verify-proof", bundle_file.to_str().unwrap(), "--data", data], "warn");
    assert!(!checked.status.success() && text(&checked.stdout).starts_with("bundle FAILED"), "{}", text(&checked.stdout));

    // The month's report, as CSV and as HTML with charts.
    let today = time::OffsetDateTime::now_utc().date().to_string();
    let csv = hub(&["audit", "report", "--data", data, "--since", &today, "--until", &today, "--format", "csv"], "warn");
    let csv = text(&csv.stdout);
    assert!(csv.contains("near miss,,,roles.perpetrator.never,1") && csv.contains("consent,,,without consent,1"), "{csv}");
    assert!(csv.contains("acknowledgement,,idva-northbridge,,1,"), "{csv}");
    let html = hub(&["audit", "report", "--data", data, "--since", &today, "--until", &today], "warn");
    let html = text(&html.stdout);
    assert!(html.starts_with("<!doctype html>") && html.matches("<svg").count() >= 5, "{html}");

    // The IG lead signs a new draft of the policy; the signature verifies against the
    // directory's IG key, and a draft with a problem is not signed.
    let draft = dir.path().join("draft-policy.toml");
    std::fs::write(&draft, std::fs::read_to_string(dir.path().join("partnership/policy.toml")).unwrap().replacen("version = \"", "version = \"2027-", 1)).unwrap();
    let signed = hub(&["policy", "sign", draft.to_str().unwrap(), "--data", data], "warn");
    assert!(signed.status.success(), "{}", text(&signed.stderr));
    let directory = isp::Directory::load(&dir.path().join("partnership/directory.toml")).unwrap();
    let sig = std::fs::read_to_string(dir.path().join("draft-policy.toml.sig")).unwrap();
    let checked = isp::signed::verify(&std::fs::read_to_string(&draft).unwrap(), Some(&sig), &directory).unwrap();
    assert_eq!(checked.signer, "ig-northbridge");
    assert!(checked.version.starts_with("2027-"));
    std::fs::write(&draft, std::fs::read_to_string(&draft).unwrap().replacen("to = [\"idva\"]", "to = [\"idvaa\"]", 1)).unwrap();
    let refused = hub(&["policy", "sign", draft.to_str().unwrap(), "--data", data], "warn");
    assert!(!refused.status.success() && text(&refused.stderr).contains("not signed"), "{}", text(&refused.stderr));

    // Someone edits entry 7 in the ledger database.
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let pool = audit::open_ledger(&runtime::config::sqlite_url(dir.path(), "audit")).await.unwrap();
        sqlx::query("UPDATE ledger SET lawful_basis = 'uk-gdpr-6-1-a' WHERE seq = 7").execute(&pool).await.unwrap();
        pool.close().await;
    });
    let verify = hub(&["audit", "verify", "--data", data], "warn");
    assert!(!verify.status.success(), "a tampered ledger verified");
    assert!(text(&verify.stdout).contains("ledger FAILED at entry 7: its content was altered"), "{}", text(&verify.stdout));
}

#[test]
fn policy_check_accepts_the_shipped_policy_and_names_what_is_wrong_in_a_bad_one() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/isp/policy.toml");
    let ok = hub(&["policy", "check", shipped], "warn");
    assert!(ok.status.success(), "{}", text(&ok.stderr));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("draft.toml");
    let text_of_policy = std::fs::read_to_string(shipped).unwrap().replacen("to = [\"idva\"]", "to = [\"idvaa\"]", 1);
    std::fs::write(&bad, text_of_policy).unwrap();
    let out = hub(&["policy", "check", bad.to_str().unwrap()], "warn");
    assert!(!out.status.success(), "a policy naming an unknown role passed the check");
    assert!(text(&out.stderr).contains("idvaa"), "{}", text(&out.stderr));
}

#[test]
fn bench_runs_every_phase_and_reports_figures() {
    let out = hub(&["bench", "--messages", "60", "--agencies", "2", "--payload", "512", "--json"], "warn");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("hub bench --json prints JSON");
    for phase in ["raw", "crypto_limit", "hub"] {
        assert!(report[phase]["per_second"].as_f64().unwrap() > 0.0, "{phase}: {report}");
        assert!(report[phase]["messages"].as_u64().unwrap() >= 60, "{phase}: {report}");
    }
    let rss = report["hub"]["peak_rss_mb"].as_object().unwrap();
    for service in ["audit", "idva-northbridge", "housing-northbridge", "riverside-homes"] {
        assert!(rss[service].as_f64().unwrap() > 1.0, "no RSS figure for {service}: {report}");
    }
    assert!(report["hub_over_crypto_limit"].as_f64().unwrap() > 0.0);
}
