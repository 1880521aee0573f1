//! The second implementation of hub.v1 (`tests/conformance/`, Python, written from SPEC.md
//! alone) against a real partnership: it checks every test vector, then *is* the second
//! housing agency, `riverside-homes` (its Rust service stopped; its key file and broker seed
//! handed to Python), records consent, seals a referral the IDVA's Rust service accepts (its
//! risk proved by a DASH summary Python signs), opens the IDVA's receipt, and verifies
//! checkpoints and a consistency proof. The hub's own
//! APIs then show the referral stored at the IDVA and a verified disclosure in the ledger,
//! whose inclusion proof the Python verifier accepts, and refuses once tampered with.
//!
//! The interpreter is `HUB_CONFORMANCE_PYTHON` (deploy/test.sh makes a venv with
//! tests/conformance/requirements.txt and sets it), else `python3`.

use std::{
    path::{Path, PathBuf},
    process::Output,
    time::Duration,
};

use anyhow::Context as _;
use serde_json::Value;
use tests::{Backend, Partnership, eventually};

const PYTHON_AGENCY: &str = "riverside-homes";
const IDVA: &str = "idva-northbridge";

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("conformance")
}

fn python() -> String {
    std::env::var("HUB_CONFORMANCE_PYTHON").ok().filter(|p| !p.is_empty()).unwrap_or_else(|| "python3".into())
}

/// Runs one of tests/conformance's scripts with a time limit; the output, whatever the exit.
async fn run_python(script: &str, args: &[&str], limit: Duration) -> anyhow::Result<Output> {
    let mut command = tokio::process::Command::new(python());
    command.arg(conformance_dir().join(script)).args(args).kill_on_drop(true);
    tokio::time::timeout(limit, command.output())
        .await
        .with_context(|| format!("{script} did not finish within {limit:?}"))?
        .with_context(|| format!("running {} {script}", python()))
}

fn show(output: &Output) -> String {
    format!("exit {:?}\n--- stdout\n{}\n--- stderr\n{}", output.status.code(), String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The Python packages are there, or the test fails saying how to get them (never a skip).
async fn require_packages() -> anyhow::Result<()> {
    let probe = "import cryptography, pyrage, google.protobuf, grpc_tools, nats, nkeys";
    let output = tokio::process::Command::new(python()).args(["-c", probe]).output().await;
    match output {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => anyhow::bail!(
            "the conformance suite's Python packages are missing from {} ({}): run deploy/test.sh, which makes a venv with tests/conformance/requirements.txt and sets HUB_CONFORMANCE_PYTHON",
            python(),
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or_default()
        ),
        Err(e) => anyhow::bail!("cannot run {}: {e}: run deploy/test.sh, which makes the conformance venv and sets HUB_CONFORMANCE_PYTHON", python()),
    }
}

/// Runs verify_proof.py on `proof`; its exit status and what it said.
async fn verify_proof(proof: &Value, directory: &Path, dir: &Path, name: &str) -> anyhow::Result<Output> {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(proof)?)?;
    run_python("verify_proof.py", &[path.to_str().context("temp path")?, directory.to_str().context("directory path")?], Duration::from_secs(60)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_python_implementation_written_from_the_spec_takes_part_in_a_partnership_on_sqlite() -> anyhow::Result<()> {
    python_takes_part(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_python_implementation_written_from_the_spec_takes_part_in_a_partnership_on_postgres() -> anyhow::Result<()> {
    python_takes_part(Backend::Postgres).await
}

async fn python_takes_part(backend: Backend) -> anyhow::Result<()> {
    require_packages().await?;

    // 1. Every vector file, through the second implementation.
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    let output = run_python("check_vectors.py", &[vectors.to_str().context("vectors path")?], Duration::from_secs(120)).await?;
    assert!(output.status.success(), "check_vectors.py failed:\n{}", show(&output));
    eprintln!("check_vectors.py: {}", String::from_utf8_lossy(&output.stdout).lines().last().unwrap_or_default());

    // 2. Python becomes riverside-homes: its Rust service stops, its consumer stays.
    let mut p = Partnership::start(backend).await?;
    p.hub.kill(PYTHON_AGENCY).await;
    let data = p.data().to_owned();
    let directory = data.join("partnership").join("directory.toml");
    let key_file = data.join("keys").join(format!("{PYTHON_AGENCY}.toml"));
    let seed = data.join("broker").join(format!("{PYTHON_AGENCY}.nk"));
    let ca = data.join("broker").join("ca.pem");
    let policy = data.join("partnership").join("policy.toml");
    let path = |p: &Path| p.to_str().expect("utf-8 temp path").to_owned();
    let args = [
        "--nats-url".to_owned(), p.hub.nats_url.clone(),
        "--ca".into(), path(&ca),
        "--seed".into(), path(&seed),
        "--key-file".into(), path(&key_file),
        "--directory".into(), path(&directory),
        "--policy".into(), path(&policy),
        "--timeout".into(), "60".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = run_python("live.py", &args, Duration::from_secs(240)).await?;
    assert!(output.status.success(), "live.py failed:\n{}", show(&output));
    let summary: Value = serde_json::from_slice(&output.stdout).with_context(|| format!("live.py's summary is not JSON:\n{}", show(&output)))?;
    assert_eq!(summary["ok"], true, "{summary}");
    eprintln!("live.py: {summary}\n{}", String::from_utf8_lossy(&output.stderr));
    let envelope_id = summary["envelope_id"].as_str().context("no envelope_id in live.py's summary")?.to_owned();
    assert!(summary["receipt_envelope_id"].is_string(), "no receipt opened: {summary}");
    // The IDVA's service sent its `received` receipt signed in clear (SPEC 6.4), and Python's
    // reading of SPEC 8 took it.
    assert_eq!(summary["receipt_in_clear"], true, "{summary}");
    assert_eq!(summary["checkpoint_format"], "c2sp-signed-note", "the checkpoint on hub.v1.checkpoint is not a C2SP note: {summary}");
    assert!(summary["checkpoint_size"].as_u64().unwrap_or(0) > summary["consistency_from"].as_u64().unwrap_or(u64::MAX), "{summary}");

    // 3. The IDVA's Rust service stored the Python-sealed referral and reads it back.
    let stored = eventually("the referral in the IDVA's inbox", Duration::from_secs(30), || async {
        let inbox = p.get(IDVA, "/inbox").await?;
        Ok(inbox.as_array().and_then(|items| items.iter().find(|e| e["envelope_id"] == envelope_id.as_str()).cloned()))
    })
    .await?;
    assert_eq!(stored["sender"], PYTHON_AGENCY, "{stored}");
    assert_eq!(stored["kind"], "housing.idva_referral", "{stored}");
    let read = p.get(IDVA, &format!("/inbox/{envelope_id}")).await?;
    assert!(read["payload"]["idvaReferral"]["survivor"]["fullName"].is_string(), "the IDVA cannot read the referral: {read}");
    // Its medium risk is proved by the DASH summary Python signed as the assessing agency
    // (SPEC 6.5): the IDVA's check accepted it, and keeps it.
    let dash = &read["payload"]["idvaReferral"]["dash"];
    assert_eq!((dash["assessedBy"].as_str(), dash["checklistVersion"].as_str()), (Some(PYTHON_AGENCY), Some("safelives-dash-2024")), "{read}");

    // 4. The ledger holds it as a verified disclosure.
    let entry = eventually("the referral in the ledger", Duration::from_secs(30), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_id"] == envelope_id.as_str()))
    })
    .await?;
    assert_eq!((entry["entry_type"].as_str(), entry["verified"].as_bool()), (Some("disclosure"), Some(true)), "{entry}");
    assert_eq!(entry["sender"], PYTHON_AGENCY, "{entry}");
    assert_eq!(entry["consent_id"], summary["consent_id"], "{entry}");
    assert_eq!((entry["risk"].as_str(), summary["risk"].as_str()), (Some("medium"), Some("medium")), "{entry}");
    let seq = entry["seq"].as_i64().context("entry seq")?;
    // The consent_changed event Python signed for its consent record (SPEC 10) verified too.
    let consent_event = summary["consent_event_id"].as_str().context("no consent_event_id in live.py's summary")?.to_owned();
    let event = eventually("the consent event in the ledger", Duration::from_secs(30), || async {
        Ok(p.ledger().await?.into_iter().find(|e| e["entry_id"] == consent_event.as_str()))
    })
    .await?;
    assert_eq!((event["entry_type"].as_str(), event["verified"].as_bool()), (Some("consent_changed"), Some(true)), "{event}");
    assert_eq!((event["consent_id"].as_str(), event["recorded_by"].as_str()), (summary["consent_id"].as_str(), Some(PYTHON_AGENCY)), "{event}");

    // 5. Its inclusion proof, from the audit service, verifies in Python exactly as SPEC 12.2
    // says; tampered copies do not.
    let proof = eventually("an inclusion proof of the referral's entry", Duration::from_secs(30), || async {
        Ok(p.get("audit", &format!("/proof/inclusion?entry={seq}")).await.ok())
    })
    .await?;
    let temp = tempfile::tempdir()?;
    let output = verify_proof(&proof, &directory, temp.path(), "proof.json").await?;
    assert!(output.status.success(), "verify_proof.py refused a genuine proof:\n{}", show(&output));
    eprintln!("verify_proof.py: {}", String::from_utf8_lossy(&output.stdout).trim());
    let verified: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(verified["checkpoint_format"], "c2sp-signed-note", "{verified}");

    let mut changed = proof.clone();
    changed["entry"]["purpose"] = Value::String("marac".into());
    let output = verify_proof(&changed, &directory, temp.path(), "changed.json").await?;
    assert_eq!(output.status.code(), Some(1), "a proof whose entry's purpose was changed verified:\n{}", show(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("step 3"), "the failure should name the hash step:\n{}", show(&output));

    // The same change with the entry's hash recomputed (by the hub's own code): the chain
    // step passes, the signed header no longer gives the entry's fields.
    let mut rehashed: audit::checkpoints::InclusionProof = serde_json::from_value(proof.clone())?;
    rehashed.entry.purpose = "marac".into();
    rehashed.entry.hash = rehashed.entry.compute_hash(&rehashed.entry.prev_hash);
    let output = verify_proof(&serde_json::to_value(&rehashed)?, &directory, temp.path(), "rehashed.json").await?;
    assert_eq!(output.status.code(), Some(1), "a rehashed proof with a changed purpose verified:\n{}", show(&output));
    assert!(String::from_utf8_lossy(&output.stderr).contains("step 4"), "the failure should name the signed-record step:\n{}", show(&output));

    // 6. The IDVA's witness accepted a checkpoint and cosigned it (cosignature/v1): the
    // Python verifier checks the IG office's signature and the IDVA's cosignature, and
    // refuses a witness that did not cosign.
    let cosigned = eventually("a checkpoint cosigned by the IDVA's witness", Duration::from_secs(30), || async {
        Ok(p.get(IDVA, "/witness").await?["last_accepted"]["cosigned"].as_str().map(str::to_owned))
    })
    .await?;
    let note = temp.path().join("cosigned.note");
    std::fs::write(&note, &cosigned)?;
    let (note, directory_arg) = (path(&note), path(&directory));
    let output = run_python("verify_checkpoint.py", &[&note, &directory_arg, "--witness", IDVA], Duration::from_secs(60)).await?;
    assert!(output.status.success(), "verify_checkpoint.py refused the IDVA's cosigned checkpoint:\n{}", show(&output));
    let output = run_python("verify_checkpoint.py", &[&note, &directory_arg, "--witness", "housing-northbridge"], Duration::from_secs(60)).await?;
    assert_eq!(output.status.code(), Some(1), "a cosignature nobody made verified:\n{}", show(&output));

    let mut bad_path = proof.clone();
    if let Some(first) = bad_path["path"].get_mut(0) {
        *first = Value::String("00".repeat(32));
        let output = verify_proof(&bad_path, &directory, temp.path(), "bad_path.json").await?;
        assert_eq!(output.status.code(), Some(1), "a proof with a changed audit path verified:\n{}", show(&output));
        assert!(String::from_utf8_lossy(&output.stderr).contains("step 5"), "the failure should name the path step:\n{}", show(&output));
    }
    Ok(())
}
