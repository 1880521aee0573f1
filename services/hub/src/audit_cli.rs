//! `hub audit ...`: the IG lead's commands on a partnership's ledger, read straight from
//! the audit database of a data directory (or `DATABASE_URL`).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use audit::{checkpoints, query};
use clap::{Args, Subcommand, ValueEnum};

use crate::local::{self, Options};

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain and the Merkle tree, check every checkpoint's signature and
    /// root; name the first bad entry or checkpoint. Exits non-zero if anything is wrong.
    Verify {
        #[command(flatten)]
        at: At,
        /// Also re-verify every entry's signed header or event (one signature check per
        /// entry: slower on a large ledger).
        #[arg(long)]
        signatures: bool,
    },
    /// Print the ledger's entries (all of them, or about one pseudonymous subject).
    List {
        #[command(flatten)]
        at: At,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        subject_ref: Option<String>,
    },
    /// Query the ledger: every given filter must match.
    Query {
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
    },
    /// Print the inclusion proof of entry N against the latest checkpoint covering it (JSON,
    /// checkable offline with `hub audit verify-proof`).
    Prove {
        #[command(flatten)]
        at: At,
        #[arg(long)]
        entry: i64,
    },
    /// The IG report for a period: flows, consent, bases, near misses, refusals,
    /// acknowledgement times and referrals unacknowledged after the SLA.
    Report {
        #[command(flatten)]
        at: At,
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long)]
        since: String,
        /// Last day, YYYY-MM-DD (UTC).
        #[arg(long)]
        until: String,
        /// Hours within which a referral should be acknowledged.
        #[arg(long, default_value_t = 48.0)]
        sla_hours: f64,
        #[arg(long, value_enum, default_value = "html")]
        format: ReportFormat,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Subject access: every ledger entry about one person, with inclusion proofs and a
    /// plain-language summary, as a JSON bundle anyone can verify with `verify-proof`.
    SubjectAccess {
        #[command(flatten)]
        at: At,
        /// The person's full name (normalised and keyed into the subject ref here; never stored).
        #[arg(long)]
        name: String,
        /// Their date of birth, YYYY-MM-DD.
        #[arg(long)]
        dob: String,
        /// Write the bundle here (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Build a fresh ledger of N synthetic entries (SQLite, or PostgreSQL with DATABASE_URL)
    /// and print ingestion, verification and query figures.
    Bench(crate::ledger_bench::BenchArgs),
    /// Print the IG office's checkpoint verifier key: a C2SP signed-note vkey
    /// (`<origin>+<key hash>+<base64 key>`), what an outside transparency-log witness or
    /// monitor is given to check the ledger's checkpoints. It is of the IG office's current
    /// key; checkpoints signed before a rotation name the key of their time.
    Vkey {
        #[command(flatten)]
        at: At,
        /// Print instead the vkey of each active agency's witness cosignatures (the IG office
        /// runs no witness)
        /// (cosignature/v1), one a line: what a verifier counting cosignatures is given.
        #[arg(long)]
        witnesses: bool,
    },
    /// Check an inclusion proof or a subject access bundle offline against the partnership
    /// directory.
    VerifyProof {
        file: PathBuf,
        /// The partnership directory file (default: the one in --data).
        #[arg(long)]
        directory: Option<PathBuf>,
        #[arg(long, default_value = "hub-data")]
        data: PathBuf,
    },
}

#[derive(Args)]
pub struct At {
    /// The partnership's data directory.
    #[arg(long, default_value = "hub-data")]
    data: PathBuf,
}

#[derive(Args)]
pub struct FilterArgs {
    #[arg(long)]
    subject_ref: Option<String>,
    /// As sender or recipient.
    #[arg(long)]
    agency: Option<String>,
    #[arg(long)]
    sender: Option<String>,
    #[arg(long)]
    recipient: Option<String>,
    #[arg(long)]
    kind: Option<String>,
    /// disclosure, near_miss, rejected, violation, consent_changed, accessed, unverifiable
    #[arg(long = "type")]
    entry_type: Option<String>,
    /// Accesses by one staff member (login id): with --type accessed, everything they read or tried.
    #[arg(long = "staff")]
    staff_id: Option<String>,
    /// Everything about one envelope: the disclosure, its receipts and who accessed it.
    #[arg(long = "envelope")]
    envelope_id: Option<String>,
    #[arg(long)]
    lawful_basis: Option<String>,
    #[arg(long)]
    consent_state: Option<String>,
    /// Only disclosures shared without consent.
    #[arg(long)]
    without_consent: bool,
    /// First day, YYYY-MM-DD (UTC).
    #[arg(long)]
    since: Option<String>,
    /// Last day, YYYY-MM-DD (UTC).
    #[arg(long)]
    until: Option<String>,
    #[arg(long)]
    limit: Option<i64>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReportFormat {
    Html,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

async fn open(data: &std::path::Path, options: &Options) -> anyhow::Result<sqlx::AnyPool> {
    let url = match &options.database_url {
        Some(_) => local::database_url(options, "audit").await?,
        None => {
            let file = data.join("db").join("audit.db");
            anyhow::ensure!(file.exists(), "no ledger at {} (run `hub up --data {}` or `hub demo --data {}` first)", file.display(), data.display(), data.display());
            runtime::config::sqlite_url(data, "audit")
        }
    };
    audit::open_ledger(&url).await
}

pub async fn run(command: AuditCommand, options: impl Fn(PathBuf) -> Options) -> anyhow::Result<ExitCode> {
    audit::malloc::tune();
    match command {
        AuditCommand::Verify { at, signatures } => {
            let pool = open(&at.data, &options(at.data.clone())).await?;
            let directory = isp::Directory::load(&crate::partnership::directory_path(&at.data))?;
            let store = audit::store::Store::of(&pool).await?;
            let report = audit::verify::verify_with(&store, Some(&directory), audit::verify::Depth { signatures }).await?;
            for alert in &report.alerts {
                println!("ALERT (entry {}): {}", alert.seq, alert.what);
            }
            match report.first_bad {
                None => {
                    let what = if signatures { "hash chain, Merkle tree, checkpoints and every signature verify" } else { "hash chain, Merkle tree and checkpoints verify" };
                    println!("ledger OK: {} entries, {} checkpoints; {what}", report.entries, report.checkpoints);
                    Ok(ExitCode::SUCCESS)
                }
                Some(p) if p.seq == 0 => {
                    println!("ledger FAILED: {}", p.what);
                    Ok(ExitCode::FAILURE)
                }
                Some(p) => {
                    println!("ledger FAILED at entry {}: {}", p.seq, p.what);
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        AuditCommand::List { at, json, subject_ref } => {
            let pool = open(&at.data, &options(at.data.clone())).await?;
            let entries = query::run(&pool, &query::Filter { subject_ref, ..Default::default() }).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print!("{}", query::to_table(&entries));
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Query { at, filter: f, format } => {
            let pool = open(&at.data, &options(at.data.clone())).await?;
            let filter = query::Filter {
                subject_ref: f.subject_ref,
                agency: f.agency,
                sender: f.sender,
                recipient: f.recipient,
                kind: f.kind,
                entry_type: f.entry_type.map(|t| t.parse()).transpose()?,
                lawful_basis: f.lawful_basis,
                consent_state: f.consent_state,
                without_consent: f.without_consent.then_some(true),
                staff_id: f.staff_id,
                envelope_id: f.envelope_id,
                since: f.since,
                until: f.until,
                after: None,
                limit: f.limit,
            };
            let entries = query::run(&pool, &filter).await?;
            match format {
                Format::Table => print!("{}", query::to_table(&entries)),
                Format::Json => println!("{}", serde_json::to_string_pretty(&entries)?),
                Format::Csv => print!("{}", query::to_csv(&entries)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Report { at, since, until, sla_hours, format, out } => {
            let pool = open(&at.data, &options(at.data.clone())).await?;
            let directory = isp::Directory::load(&crate::partnership::directory_path(&at.data))?;
            let r = audit::report::build(&pool, &since, &until, sla_hours, isp::now_ms()).await?;
            let text = match format {
                ReportFormat::Html => audit::report::to_html(&r, &directory.partnership),
                ReportFormat::Csv => audit::report::to_csv(&r)?,
                ReportFormat::Json => serde_json::to_string_pretty(&r)?,
            };
            write_out(out.as_deref(), &text)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::SubjectAccess { at, name, dob, out } => {
            let pool = open(&at.data, &options(at.data.clone())).await?;
            let directory = isp::Directory::load(&crate::partnership::directory_path(&at.data))?;
            let ig = directory.with_role(isp::Role::Ig).next().context("the directory has no ig agency, whose key makes subject refs")?;
            let keys = isp::AgencyKeys::load(&runtime::Config::embedded(&at.data, &ig.id, "").keys_path)?;
            let subject_ref = keys.subject_ref(&name, &dob)?;
            let policy_text = std::fs::read_to_string(runtime::config::partnership_dir(&at.data).join("policy.toml")).ok();
            let policy = match policy_text {
                Some(t) => Some(isp::Policy::from_toml(&t, &isp::Schema::load()?)?),
                None => None,
            };
            // What was sent to agencies without the subject key carried a link token instead.
            let links = directory
                .agencies
                .iter()
                .filter(|a| policy.as_ref().is_some_and(|p| !p.holds_subject_key(a.role)))
                .map(|a| keys.link_ref(&a.id, &subject_ref))
                .collect::<Result<Vec<_>, _>>()?;
            let bundle = audit::subject_access::export(&pool, &directory, policy.as_ref(), &subject_ref, &links).await?;
            eprint!("{}", bundle.summary);
            write_out(out.as_deref(), &serde_json::to_string_pretty(&bundle)?)?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Bench(args) => {
            crate::ledger_bench::run(args, options(PathBuf::new()).database_url).await?;
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prove { at, entry } => {
            let pool = open(&at.data, &options(at.data.clone())).await?;
            let proof = checkpoints::prove_entry(&pool, entry).await?;
            println!("{}", serde_json::to_string_pretty(&proof)?);
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Vkey { at, witnesses } => {
            let directory = isp::Directory::load(&crate::partnership::directory_path(&at.data))?;
            if witnesses {
                // Every agency's service runs a witness; the IG office's audit service does not.
                for agency in directory.active().filter(|a| a.role != isp::Role::Ig) {
                    println!("{}", isp::checkpoint::cosigner_verifier_key(&agency.id, &agency.verifying_key()?));
                }
                return Ok(ExitCode::SUCCESS);
            }
            let ig = directory.with_role(isp::Role::Ig).next().context("the directory has no ig agency, whose key signs the checkpoints")?;
            println!("{}", isp::checkpoint::verifier_key(&isp::checkpoint::origin(&ig.id), &ig.verifying_key()?));
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::VerifyProof { file, directory, data } => {
            let path = directory.unwrap_or_else(|| crate::partnership::directory_path(&data));
            let directory = isp::Directory::load(&path)?;
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            if let Ok(bundle) = serde_json::from_str::<audit::subject_access::Bundle>(&text) {
                return match audit::subject_access::verify(&bundle, &directory) {
                    Ok(n) => {
                        println!("bundle OK: {n} entries about {} proved against checkpoint {} (tree size {})", bundle.subject_ref, bundle.checkpoint.root, bundle.checkpoint.tree_size);
                        Ok(ExitCode::SUCCESS)
                    }
                    Err(e) => {
                        println!("bundle FAILED: {e}");
                        Ok(ExitCode::FAILURE)
                    }
                };
            }
            let proof: checkpoints::InclusionProof = serde_json::from_str(&text).with_context(|| format!("{} is neither an inclusion proof nor a subject access bundle", file.display()))?;
            match checkpoints::verify_proof(&proof, &directory) {
                Ok(()) => {
                    println!(
                        "proof OK: entry {} ({} {} -> {}) is in the ledger of {} entries signed at checkpoint {} by {}",
                        proof.entry.seq, proof.entry.kind, proof.entry.sender, proof.entry.recipient, proof.tree_size, proof.checkpoint.root, proof.checkpoint.signer
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("proof FAILED: {e}");
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}

fn write_out(out: Option<&std::path::Path>, text: &str) -> anyhow::Result<()> {
    match out {
        Some(path) => std::fs::write(path, text).with_context(|| format!("writing {}", path.display())),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}
