//! The IG lead's report for a period: disclosures per flow, shared with consent or without
//! (and the lawful bases used), near misses by rule, refusals on receipt, time from a
//! referral to a staff member's acknowledgement per recipient (the signed `acknowledged`
//! events: the automatic `received` receipt is not one), referrals still unacknowledged
//! after the SLA, and deadlines missed per agency. As data (JSON), CSV for a spreadsheet, or an HTML page with bar charts.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::AnyPool;

use crate::{
    ledger::{Entry, EntryType},
    query::{self, Filter},
};

/// Kinds that expect an acknowledgement from their recipient.
pub const REFERRAL_KINDS: [&str; 4] = ["housing.idva_referral", "marac.referral", "reciprocal.request", "perpetrator.referral"];

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub since: String,
    pub until: String,
    pub entries: usize,
    /// (sender, recipient, kind) -> count of disclosures.
    pub flows: Vec<(String, String, String, usize)>,
    pub with_consent: usize,
    pub without_consent: usize,
    /// Lawful basis -> disclosures shared without consent on it.
    pub bases_without_consent: BTreeMap<String, usize>,
    /// Rule -> near misses (sends the ISP refused).
    pub near_misses_by_rule: BTreeMap<String, usize>,
    /// Reason -> envelopes refused on receipt (and violations), and messages on the stream
    /// that verify as nothing (counted by message, though the ledger keeps them in aggregate).
    pub refused_on_receipt: BTreeMap<String, usize>,
    /// Further copies of recorded envelopes and events put on the stream again (counted here,
    /// never as disclosures).
    pub replays: usize,
    /// Signed envelopes and events on a subject their signed header does not name.
    pub misroutes: usize,
    /// Stream positions gone before the ledger read them, and times the stream was recreated:
    /// records may be missing.
    pub missing_from_stream: usize,
    pub stream_resets: usize,
    /// Consent records withdrawn in the period: (owner agency, consent id, sends it stopped:
    /// refused at send, stopped in an outbox or refused on receipt for that record).
    pub withdrawals: Vec<(String, String, usize)>,
    /// Recipient -> (referrals a staff member acknowledged, median hours, slowest hours).
    pub acknowledgement: BTreeMap<String, (usize, f64, f64)>,
    /// (agency, deadline code, deadlines that passed unmet in the period).
    pub deadlines_missed: Vec<(String, String, usize)>,
    /// Referrals not acknowledged within the SLA, oldest first: (entry seq, recipient, kind, hours waiting).
    pub outstanding: Vec<(i64, String, String, f64)>,
    pub sla_hours: f64,
}

/// Builds the report of entries that occurred from `since` to `until` (inclusive days, UTC).
pub async fn build(pool: &AnyPool, since: &str, until: &str, sla_hours: f64, now_ms: i64) -> anyhow::Result<Report> {
    let entries = query::run_summary(pool, &Filter { since: Some(since.into()), until: Some(until.into()), ..Default::default() }).await?;
    // Staff acknowledgements (never the automatic receipts) may come after the period ends:
    // read them from the period's start on.
    let acks = query::run_summary(pool, &Filter { since: Some(since.into()), entry_type: Some(EntryType::Acknowledged), ..Default::default() }).await?;
    Ok(summarise(&entries, &acks, since, until, sla_hours, now_ms))
}

fn summarise(entries: &[Entry], acks: &[Entry], since: &str, until: &str, sla_hours: f64, now_ms: i64) -> Report {
    let mut flows: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    let (mut with_consent, mut without_consent) = (0, 0);
    let mut bases_without_consent = BTreeMap::new();
    let mut near_misses_by_rule = BTreeMap::new();
    let mut refused_on_receipt = BTreeMap::new();
    let (mut replays, mut misroutes, mut missing_from_stream, mut stream_resets) = (0, 0, 0, 0);
    let mut withdrawn: Vec<(String, String)> = Vec::new();
    let mut stopped: BTreeMap<String, usize> = BTreeMap::new();
    let mut missed: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in entries {
        if e.reason == "consent_withdrawn" {
            *stopped.entry(e.consent_id.clone()).or_default() += 1;
        }
        match e.entry_type {
            EntryType::Disclosure => {
                *flows.entry((e.sender.clone(), e.recipient.clone(), e.kind.clone())).or_default() += 1;
                if e.without_consent {
                    without_consent += 1;
                    *bases_without_consent.entry(e.lawful_basis.clone()).or_default() += 1;
                } else if e.consent_state == "given" {
                    with_consent += 1;
                }
            }
            EntryType::NearMiss => *near_misses_by_rule.entry(e.rule.clone()).or_default() += 1,
            EntryType::ConsentChanged if e.consent_state == "withdrawn" => withdrawn.push((e.sender.clone(), e.consent_id.clone())),
            EntryType::Rejected | EntryType::Violation => *refused_on_receipt.entry(e.reason.clone()).or_default() += 1,
            EntryType::Unverifiable => *refused_on_receipt.entry(e.reason.clone()).or_default() += e.message_count.max(1) as usize,
            EntryType::Replay => replays += 1,
            EntryType::Misroute => misroutes += 1,
            EntryType::StreamGap => missing_from_stream += e.message_count.max(0) as usize,
            EntryType::StreamReset => stream_resets += 1,
            // The agency that missed it is the event's signer, its entry's sender.
            EntryType::DeadlineMissed => *missed.entry((e.sender.clone(), e.rule.clone())).or_default() += 1,
            _ => {}
        }
    }
    let first_ack: BTreeMap<&str, &Entry> = acks.iter().rev().map(|a| (a.in_reply_to.as_str(), a)).collect();
    let mut waits: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut outstanding = Vec::new();
    for e in entries.iter().filter(|e| e.entry_type == EntryType::Disclosure && REFERRAL_KINDS.contains(&e.kind.as_str())) {
        match first_ack.get(e.entry_id.as_str()) {
            Some(ack) => waits.entry(e.recipient.clone()).or_default().push((ack.occurred_at_ms - e.occurred_at_ms) as f64 / 3_600_000.0),
            None => {
                let hours = (now_ms - e.occurred_at_ms) as f64 / 3_600_000.0;
                if hours > sla_hours {
                    outstanding.push((e.seq, e.recipient.clone(), e.kind.clone(), hours));
                }
            }
        }
    }
    let acknowledgement = waits
        .into_iter()
        .map(|(recipient, mut w)| {
            w.sort_by(f64::total_cmp);
            let median = w[w.len() / 2];
            let slowest = *w.last().unwrap_or(&0.0);
            (recipient, (w.len(), median, slowest))
        })
        .collect();
    Report {
        since: since.into(),
        until: until.into(),
        entries: entries.len(),
        flows: flows.into_iter().map(|((s, r, k), n)| (s, r, k, n)).collect(),
        with_consent,
        without_consent,
        bases_without_consent,
        near_misses_by_rule,
        refused_on_receipt,
        replays,
        misroutes,
        missing_from_stream,
        stream_resets,
        withdrawals: withdrawn.into_iter().map(|(owner, id)| { let n = stopped.get(&id).copied().unwrap_or(0); (owner, id, n) }).collect(),
        acknowledgement,
        deadlines_missed: missed.into_iter().map(|((agency, code), n)| (agency, code, n)).collect(),
        outstanding,
        sla_hours,
    }
}

/// One CSV table of every figure: section, key, value(s).
pub fn to_csv(r: &Report) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["section", "sender", "recipient", "kind_or_key", "count", "median_hours", "max_hours"])?;
    let n = |x: usize| x.to_string();
    for (s, rc, k, c) in &r.flows {
        w.write_record(["flow", s, rc, k, &n(*c), "", ""])?;
    }
    w.write_record(["consent", "", "", "with consent", &n(r.with_consent), "", ""])?;
    w.write_record(["consent", "", "", "without consent", &n(r.without_consent), "", ""])?;
    for (b, c) in &r.bases_without_consent {
        w.write_record(["basis without consent", "", "", b, &n(*c), "", ""])?;
    }
    for (rule, c) in &r.near_misses_by_rule {
        w.write_record(["near miss", "", "", rule, &n(*c), "", ""])?;
    }
    for (reason, c) in &r.refused_on_receipt {
        w.write_record(["refused on receipt", "", "", reason, &n(*c), "", ""])?;
    }
    w.write_record(["stream", "", "", "replays", &n(r.replays), "", ""])?;
    w.write_record(["stream", "", "", "misroutes", &n(r.misroutes), "", ""])?;
    w.write_record(["stream", "", "", "positions missing", &n(r.missing_from_stream), "", ""])?;
    w.write_record(["stream", "", "", "resets", &n(r.stream_resets), "", ""])?;
    for (owner, id, stopped) in &r.withdrawals {
        w.write_record(["consent withdrawn", owner, "", id, &n(*stopped), "", ""])?;
    }
    for (rc, (c, median, max)) in &r.acknowledgement {
        w.write_record(["acknowledgement", "", rc, "", &n(*c), &format!("{median:.1}"), &format!("{max:.1}")])?;
    }
    for (seq, rc, k, h) in &r.outstanding {
        w.write_record(["outstanding", "", rc, &format!("{k} (entry {seq})"), "1", "", &format!("{h:.1}")])?;
    }
    for (agency, code, c) in &r.deadlines_missed {
        w.write_record(["deadline missed", agency, "", code, &n(*c), "", ""])?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A horizontal bar chart as inline SVG: one labelled bar per (label, value).
fn bars(title: &str, rows: &[(String, f64)], unit: &str, colour: &str) -> String {
    if rows.is_empty() {
        return format!("<h2>{}</h2><p class=none>None in this period.</p>", esc(title));
    }
    let max = rows.iter().map(|r| r.1).fold(0.0, f64::max).max(1e-9);
    // Wide enough for the longest label at 13 px (about 7.5 px a character, generously);
    // the drawing scales down to the page's width (its viewBox) rather than cutting one off.
    let longest = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0) as f64;
    let (label_w, bar_w, row_h) = ((longest * 7.5 + 16.0).max(160.0), 340.0, 26.0);
    let (width, height) = (label_w + bar_w + 90.0, rows.len() as f64 * row_h + 8.0);
    let mut svg = format!(
        "<svg role=img aria-label=\"{}\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" style=\"max-width:100%;height:auto\" xmlns=\"http://www.w3.org/2000/svg\">",
        esc(title),
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = i as f64 * row_h + 4.0;
        let w = (value / max * bar_w).max(1.0);
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"13\">{}</text><rect x=\"{}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{colour}\" rx=\"3\"/>\
             <text x=\"{}\" y=\"{}\" font-size=\"13\">{}{unit}</text>",
            label_w - 8.0,
            y + 15.0,
            esc(label),
            label_w,
            row_h - 8.0,
            label_w + w + 6.0,
            y + 15.0,
            // A fraction under a tenth keeps its first digits (0.004 h, not 0.0 h); under a
            // thousandth it says so rather than showing 0.
            if value.fract() == 0.0 {
                format!("{value:.0}")
            } else if *value < 0.001 {
                "< 0.001".to_owned()
            } else if *value < 0.1 {
                format!("{value:.3}")
            } else {
                format!("{value:.1}")
            }
        ));
    }
    svg.push_str("</svg>");
    format!("<h2>{}</h2>{svg}", esc(title))
}

/// The report as one self-contained HTML page (no scripts, no external resources).
pub fn to_html(r: &Report, partnership: &str) -> String {
    let flows: Vec<(String, f64)> = r.flows.iter().map(|(s, rc, k, c)| (format!("{s} → {rc} ({k})"), *c as f64)).collect();
    let consent = vec![("with consent".to_owned(), r.with_consent as f64), ("without consent".to_owned(), r.without_consent as f64)];
    let bases: Vec<(String, f64)> = r.bases_without_consent.iter().map(|(b, c)| (b.clone(), *c as f64)).collect();
    let near: Vec<(String, f64)> = r.near_misses_by_rule.iter().map(|(b, c)| (b.clone(), *c as f64)).collect();
    let refused: Vec<(String, f64)> = r.refused_on_receipt.iter().map(|(b, c)| (b.clone(), *c as f64)).collect();
    let withdrawals: Vec<(String, f64)> = r.withdrawals.iter().map(|(o, id, n)| (format!("{o}: {id}"), *n as f64)).collect();
    let missed: Vec<(String, f64)> = r.deadlines_missed.iter().map(|(a, code, n)| (format!("{a}: {}", code.replace('_', " ")), *n as f64)).collect();
    let acks: Vec<(String, f64)> = r.acknowledgement.iter().map(|(rc, (c, m, _))| (format!("{rc} ({c} referral{})", if *c == 1 { "" } else { "s" }), *m)).collect();
    let mut outstanding = String::from("<h2>Referrals unacknowledged after the SLA</h2>");
    if r.outstanding.is_empty() {
        outstanding.push_str("<p class=none>None.</p>");
    } else {
        outstanding.push_str("<table><tr><th>ledger entry</th><th>recipient</th><th>kind</th><th>waiting (hours)</th></tr>");
        for (seq, rc, k, h) in &r.outstanding {
            outstanding.push_str(&format!("<tr><td>{seq}</td><td>{}</td><td>{}</td><td>{h:.1}</td></tr>", esc(rc), esc(k)));
        }
        outstanding.push_str("</table>");
    }
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Information sharing report {since} to {until}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;color:#1b1b1b}}h1{{font-size:1.5em}}h2{{font-size:1.1em;margin-top:1.8em}}\
         .kpi{{display:inline-block;margin-right:2em}}.kpi b{{font-size:1.8em;display:block}}.none{{color:#666}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px}}</style></head><body>\
         <h1>{p}: information sharing, {since} to {until}</h1>\
         <p><span class=kpi><b>{entries}</b>ledger entries</span><span class=kpi><b>{with}</b>shared with consent</span>\
         <span class=kpi><b>{without}</b>shared without consent</span><span class=kpi><b>{near_n}</b>near misses</span><span class=kpi><b>{out_n}</b>unacknowledged after {sla} h</span></p>\
         {stream}{c1}{c2}{c3}{c4}{c5}{c6}{outstanding}\
         <p class=none>From the disclosure ledger; no referral content. Every figure can be traced to ledger entries with <code>hub audit query</code>.</p></body></html>",
        p = esc(partnership),
        since = esc(&r.since),
        until = esc(&r.until),
        entries = r.entries,
        with = r.with_consent,
        without = r.without_consent,
        near_n = r.near_misses_by_rule.values().sum::<usize>(),
        out_n = r.outstanding.len(),
        sla = r.sla_hours,
        stream = if r.replays + r.misroutes + r.missing_from_stream + r.stream_resets == 0 {
            String::new()
        } else {
            format!(
                "<p><strong>On the stream:</strong> {} copies of recorded messages put on it again, {} on a subject their signer did not name \
                 (neither counted as disclosures); {} positions gone before the ledger read them; recreated {} times.</p>",
                r.replays, r.misroutes, r.missing_from_stream, r.stream_resets
            )
        },
        c1 = bars("Disclosures per flow", &flows, "", "#3b6fb6"),
        c2 = bars("Consent", &consent, "", "#5a9e6f"),
        c3 = bars("Lawful bases used without consent", &bases, "", "#c07a2c"),
        c4 = bars("Near misses (refused sends) by rule", &near, "", "#b33a3a"),
        c5 = bars("Refused on receipt, by reason", &refused, "", "#7d4fa6"),
        c6 = bars("Median hours from referral to acknowledgement, per recipient", &acks, " h", "#2f8f9d")
            + &bars("Consent withdrawn, and the sends each withdrawal stopped", &withdrawals, " stopped", "#6b6b6b")
            + &bars("Deadlines missed (escalated), per agency and deadline", &missed, "", "#b33a3a"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: i64, entry_type: &str, kind: &str, to: &str, at_h: i64) -> Entry {
        Entry {
            seq,
            entry_type: entry_type.parse().expect("an entry type"),
            entry_id: format!("id-{seq}"),
            sender: "housing-a".into(),
            recipient: to.into(),
            kind: kind.into(),
            consent_state: "given".into(),
            occurred_at_ms: at_h * 3_600_000,
            ..Default::default()
        }
    }

    #[test]
    fn counts_waits_and_outstanding_referrals_come_from_the_entries() {
        let mut without = e(3, "disclosure", "marac.referral", "marac-a", 2);
        without.without_consent = true;
        without.lawful_basis = "cda-1998-s115".into();
        let mut near = e(4, "near_miss", "perpetrator.referral", "pp-a", 3);
        near.rule = "roles.perpetrator.never".into();
        let entries = vec![e(1, "disclosure", "housing.idva_referral", "idva-a", 0), e(2, "disclosure", "housing.idva_referral", "idva-a", 1), without, near];
        let mut ack = e(5, "acknowledged", "housing.idva_referral", "idva-a", 10);
        ack.in_reply_to = "id-1".into();
        let mut late = e(6, "deadline_missed", "unspecified", "", 50);
        (late.sender, late.rule) = ("idva-a".into(), "acknowledge".into());
        let entries = [entries, vec![late]].concat();
        let r = summarise(&entries, &[ack], "d1", "d2", 48.0, 100 * 3_600_000);
        assert_eq!(r.deadlines_missed, vec![("idva-a".to_owned(), "acknowledge".to_owned(), 1)]);
        assert_eq!(r.flows, vec![
            ("housing-a".into(), "idva-a".into(), "housing.idva_referral".into(), 2),
            ("housing-a".into(), "marac-a".into(), "marac.referral".into(), 1)
        ]);
        assert_eq!((r.with_consent, r.without_consent), (2, 1));
        assert_eq!(r.bases_without_consent["cda-1998-s115"], 1);
        assert_eq!(r.near_misses_by_rule["roles.perpetrator.never"], 1);
        assert_eq!(r.acknowledgement["idva-a"], (1, 10.0, 10.0));
        // Entry 2 (idva, 99 h) and 3 (marac, 98 h) are past a 48 h SLA unacknowledged.
        assert_eq!(r.outstanding.iter().map(|o| o.0).collect::<Vec<_>>(), vec![2, 3]);
        let html = to_html(&r, "P <&>");
        assert!(html.contains("P &lt;&amp;&gt;") && html.contains("<svg"), "{html}");
        assert!(to_csv(&r).unwrap().contains("near miss,,,roles.perpetrator.never,1"));
    }
}
