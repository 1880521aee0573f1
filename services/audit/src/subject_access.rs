//! Subject access: a person asks who their information went to. Given the person's
//! pseudonymous subject ref (the tool computes it from their name and date of birth with
//! the partnership subject key; the ledger never holds either), the bundle lists every
//! ledger entry about them (who shared, with whom, when, purpose, lawful basis, consent),
//! each with an inclusion proof against one signed checkpoint, and a plain-language summary.
//! It holds no referral content. Anyone with the partnership directory can verify it offline.

use anyhow::Context as _;
use isp::{Directory, Policy, checkpoint::Checkpoint};
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;

use crate::{
    checkpoints::{self, InclusionProof},
    ledger::EntryType,
    query::{self, Filter},
};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bundle {
    pub partnership: String,
    pub subject_ref: String,
    /// The link tokens that stood for the person in what was sent to agencies that hold no
    /// subject key (a perpetrator pathway), one per such agency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_refs: Vec<String>,
    pub generated_at_ms: i64,
    pub checkpoint: Checkpoint,
    pub entries: Vec<InclusionProof>,
    pub summary: String,
}

/// Every entry about one person: under their subject ref, and under each link token in
/// `link_refs` (see [`isp::AgencyKeys::link_ref`]), in ledger order.
pub async fn export(pool: &AnyPool, directory: &Directory, policy: Option<&Policy>, subject_ref: &str, link_refs: &[String]) -> anyhow::Result<Bundle> {
    let mut entries = Vec::new();
    for r in std::iter::once(subject_ref).chain(link_refs.iter().map(String::as_str)) {
        entries.extend(query::run(pool, &Filter { subject_ref: Some(r.into()), ..Default::default() }).await?);
    }
    entries.sort_by_key(|e| e.seq);
    let last = entries.last().map_or(0, |e| e.seq as u64);
    let checkpoint = match checkpoints::covering(pool, last).await? {
        Some(c) => c,
        None => checkpoints::latest(pool)
            .await?
            .filter(|_| entries.is_empty())
            .context("no signed checkpoint covers this person's latest entry yet; try again after the next checkpoint")?,
    };
    let mut proofs = Vec::with_capacity(entries.len());
    for e in entries {
        proofs.push(checkpoints::prove_at(pool, e, checkpoint.clone()).await?);
    }
    let summary = summary(directory, policy, &proofs);
    Ok(Bundle {
        partnership: directory.partnership.clone(),
        subject_ref: subject_ref.into(),
        link_refs: link_refs.to_vec(),
        generated_at_ms: isp::now_ms(),
        checkpoint,
        entries: proofs,
        summary,
    })
}

fn day(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(ms / 1000).map(|t| t.date().to_string()).unwrap_or_default()
}

fn what(kind: &str) -> &str {
    match kind {
        "housing.idva_referral" => "a referral to the independent domestic violence advocate (IDVA) service",
        "marac.referral" => "a referral to the MARAC (multi-agency risk assessment conference)",
        "marac.research_request" => "a MARAC request for information held about you",
        "marac.research_response" => "a reply to a MARAC request for information",
        "marac.action" => "a MARAC action",
        "marac.action_update" => "an update on a MARAC action",
        "reciprocal.request" => "a request for a move through the reciprocal housing scheme",
        "reciprocal.property_request" => "an anonymised request for a property",
        "reciprocal.offer" | "reciprocal.offer_response" => "a property offer or the reply to one",
        "reciprocal.move_completed" => "confirmation of a completed move",
        "perpetrator.referral" => "a referral of the person who harmed you to a perpetrator programme",
        "perpetrator.engagement_update" => "an update on how the person who harmed you is engaging with a programme",
        "referral.ack" => "an acknowledgement of a referral",
        "housing.refuge_referral" => "a referral for a place in a refuge",
        "marac.minutes" => "the minutes of the MARAC meeting that heard your case",
        "reciprocal.status" => "news of where your reciprocal move had got to",
        "reciprocal.approval" => "the landlord's approval of your reciprocal move request",
        "reciprocal.update" => "a change to your reciprocal move request",
        "perpetrator.enforcement_request" => "a request to a housing provider to act against the person who harmed you",
        "disclosure.revoke" => "the withdrawal of something shared earlier",
        other => other,
    }
}

/// The bundle's entries in plain words, one line each.
fn summary(directory: &Directory, policy: Option<&Policy>, proofs: &[InclusionProof]) -> String {
    let name = |id: &str| directory.get(id).map_or_else(|| id.to_owned(), |a| a.name.clone());
    let basis = |b: &str| policy.and_then(|p| p.lawful_bases.get(b)).cloned().unwrap_or_else(|| b.to_owned());
    let purpose = |b: &str| policy.and_then(|p| p.purposes.get(b)).cloned().unwrap_or_else(|| b.to_owned());
    let shared = proofs.iter().filter(|p| p.entry.entry_type == EntryType::Disclosure && p.entry.kind != "referral.ack").count();
    let receipts = proofs.iter().filter(|p| p.entry.entry_type == EntryType::Disclosure && p.entry.kind == "referral.ack").count();
    let refused = proofs.iter().filter(|p| p.entry.entry_type == EntryType::NearMiss).count();
    let consents = proofs.iter().filter(|p| p.entry.entry_type == EntryType::ConsentChanged).count();
    let mut out = format!(
        "The {} disclosure ledger holds {} record(s) about you: {shared} time(s) information about you was shared between agencies \
         (and {receipts} acknowledgement(s) saying a referral was delivered, read, accepted, declined or closed), \
         {refused} time(s) an agency tried to share something the partnership's rules do not allow, which was stopped and recorded, \
         and {consents} change(s) to your consent.\n",
        directory.partnership,
        proofs.len()
    );
    for p in proofs {
        let e = &p.entry;
        let consent = match (e.without_consent, e.consent_state.as_str()) {
            (true, _) => "without your consent, because the agency judged the risk to you or others too high to ask or to wait".to_owned(),
            (false, "given") => "with your consent".to_owned(),
            (false, "") | (false, "unspecified") => "where consent was not the basis (work already under way on your case)".to_owned(),
            (false, s) => format!("consent recorded as {s}"),
        };
        let line = match e.entry_type {
            EntryType::Disclosure => format!(
                "On {}, {} shared {} with {}, for the purpose \"{}\", on the legal basis \"{}\", {consent}.",
                day(e.occurred_at_ms),
                name(&e.sender),
                what(&e.kind),
                name(&e.recipient),
                purpose(&e.purpose),
                basis(&e.lawful_basis)
            ),
            EntryType::NearMiss => format!(
                "On {}, {} tried to send {} to {}; it was stopped before anything was sent because the partnership's rules forbid it ({}).",
                day(e.occurred_at_ms),
                name(&e.sender),
                what(&e.kind),
                name(&e.recipient),
                if e.forbidden.is_empty() { e.rule.clone() } else { format!("it included {}", e.forbidden.replace(',', ", ")) }
            ),
            EntryType::ConsentChanged => format!(
                "On {}, {} recorded your consent as {}{}.",
                day(e.occurred_at_ms),
                name(&e.sender),
                e.consent_state.replace('-', " "),
                if e.reason.is_empty() { String::new() } else { format!(" (reason: {})", e.reason) }
            ),
            EntryType::DeadlineMissed => format!(
                "On {}, {} missed its time target ({}) on work about you; it was escalated within the agency.",
                day(e.occurred_at_ms),
                name(&e.sender),
                match e.rule.as_str() {
                    "acknowledge" => "to answer a referral".to_owned(),
                    "idva_contact" => "to try to contact you".to_owned(),
                    "refer_idva" | "refer_marac" => "to make a referral after a risk assessment".to_owned(),
                    other => other.replace('_', " "),
                }
            ),
            _ => format!("On {}, {} refused a message about you from {} that failed the hub's checks ({}).", day(e.occurred_at_ms), name(&e.recipient), name(&e.sender), e.reason),
        };
        out.push_str(&format!("- {line}\n"));
    }
    if let Some(p) = proofs.first() {
        out.push_str(&format!(
            "Each record carries a proof that it is in the ledger as signed at checkpoint {} (tree size {}); the ledger holds no content of what was shared.\n",
            p.checkpoint.root, p.tree_size
        ));
    }
    out
}

/// Checks a bundle offline: one checkpoint, every entry about the bundle's subject, every
/// proof valid. Returns how many entries it proved.
pub fn verify(bundle: &Bundle, directory: &Directory) -> Result<usize, String> {
    bundle.checkpoint.verify(directory).map_err(|e| format!("the checkpoint does not verify: {e}"))?;
    for p in &bundle.entries {
        if p.checkpoint != bundle.checkpoint {
            return Err(format!("entry {} is proved against another checkpoint", p.entry.seq));
        }
        if p.entry.subject_ref != bundle.subject_ref && !bundle.link_refs.contains(&p.entry.subject_ref) {
            return Err(format!("entry {} is about someone else", p.entry.seq));
        }
        checkpoints::verify_proof(p, directory)?;
    }
    Ok(bundle.entries.len())
}
