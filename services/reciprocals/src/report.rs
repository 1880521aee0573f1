//! What the coordinator reads: an application with everything on it, each landlord's balance
//! in the fairness ledger (derived from the moves counted, never kept as a counter a
//! duplicate could move), and the board: applications by status, time to offer, balances,
//! escalated deadlines, completions held and messages set aside. The JSON API and the console
//! pages both read these.

use std::collections::BTreeMap;

use runtime::{Ctx, api::ApiError, deadlines};
use serde_json::{Value, json};

use crate::{
    casework, scheme,
    steps::{self, failed},
    store::{self, Application},
};

const DAY_MS: f64 = 24.0 * 3_600_000.0;

/// Days between two times, to one decimal place.
fn days(from: i64, to: i64) -> f64 {
    ((to - from) as f64 / DAY_MS * 10.0).round() / 10.0
}

/// An application as a list shows it (its areas of choice opened).
pub fn summary(ctx: &Ctx, app: &Application) -> Result<Value, ApiError> {
    let areas = casework::areas(ctx, app).map_err(failed)?;
    Ok(json!({
        "application_ref": app.reference,
        "envelope_id": app.request_envelope_id,
        "referrer": app.referrer,
        "subject_ref": app.subject_ref,
        "case_ref": app.case_ref,
        "current_landlord": app.current_landlord,
        "status": app.status.code(),
        "status_label": app.status.label(),
        "reason": app.reason,
        "areas": areas.choice,
        "areas_needed": areas.needed(),
        "bedrooms_needed": app.bedrooms_needed,
        "approved_by": app.approved_by,
        "received_at_ms": app.received_at_ms,
        "circulated_at_ms": app.circulated_at_ms,
        "reply_by_ms": app.reply_by_ms,
        "offered_at_ms": app.offered_at_ms,
        "time_to_offer_days": app.circulated_at_ms.zip(app.offered_at_ms).map(|(c, o)| days(c, o)),
        "closed_at_ms": app.closed_at_ms,
        "status_seq": app.status_seq,
    }))
}

/// An application with everything on it: areas and exclusions, household, approval, where it
/// went, its offers and their answers, its completions, what was set aside, its deadlines.
pub async fn detail(ctx: &Ctx, reference: &str) -> Result<Value, ApiError> {
    steps::check_reference(reference)?;
    let app = store::get(&ctx.pool, reference).await?.ok_or_else(|| ApiError::not_found("application"))?;
    let mut v = summary(ctx, &app)?;
    let areas = casework::areas(ctx, &app).map_err(failed)?;
    let open = |s: &str| casework::open(ctx, s).map_err(failed);
    v["excluded_areas"] = json!(areas.excluded);
    v["household"] = json!({"adults": app.adults, "children": app.children, "bedrooms_needed": app.bedrooms_needed, "accessibility_needs": open(&app.sealed_accessibility)?});
    v["approval"] = json!({"named_lead": app.approved_by, "landlord": app.current_landlord, "approved_at_ms": app.approved_at_ms, "envelope_id": app.approval_envelope_id});
    v["allowed"] = json!(scheme::allowed(app.status, steps::readiness(&app, &areas)).iter().map(|e| e.code()).collect::<Vec<_>>());
    v["circulated_to"] = json!(store::circulations(&ctx.pool, reference).await?.iter().map(|c| json!({"landlord": c.landlord, "envelope_id": c.envelope_id, "sent_by": c.sent_by, "sent_at_ms": c.sent_at_ms})).collect::<Vec<_>>());
    let mut offers = Vec::new();
    for o in store::offers(&ctx.pool, reference).await? {
        offers.push(json!({"envelope_id": o.envelope_id, "landlord": o.landlord, "property_ref": open(&o.sealed_property_ref)?, "area": open(&o.sealed_area)?,
            "bedrooms": o.bedrooms, "outcome": o.outcome.code(), "reason": o.reason, "answer_envelope_id": o.answer_envelope_id,
            "received_at_ms": o.received_at_ms, "answered_at_ms": o.answered_at_ms}));
    }
    v["offers"] = json!(offers);
    let mut completions = Vec::new();
    for c in store::completions(&ctx.pool, reference).await? {
        completions.push(json!({"envelope_id": c.envelope_id, "rehousing_landlord": c.rehousing_landlord, "vacating_landlord": c.vacating_landlord,
            "property_ref": open(&c.sealed_property_ref)?, "moved_on": c.moved_on, "outcome": c.outcome.code(), "received_at_ms": c.received_at_ms, "counted_at_ms": c.counted_at_ms}));
    }
    v["completions"] = json!(completions);
    v["set_aside"] = json!(set_aside_json(store::set_asides(&ctx.pool, Some(reference), 100).await?));
    let deadlines = deadlines::query(ctx, "all", Some(reference)).await?;
    v["escalations"] = json!(deadlines.iter().filter(|d| d["state"] == "escalated").cloned().collect::<Vec<_>>());
    v["deadlines"] = json!(deadlines);
    Ok(v)
}

fn set_aside_json(rows: Vec<(String, String, String, String, String, i64)>) -> Vec<Value> {
    rows.into_iter()
        .map(|(envelope_id, reference, kind, sender, reason, at)| {
            let label = scheme::Reason::parse(&reason).map(|r| r.label()).unwrap_or_default();
            json!({"envelope_id": envelope_id, "application_ref": reference, "kind": kind, "sender": sender, "reason": reason, "reason_label": label, "at_ms": at})
        })
        .collect()
}

/// The latest messages set aside, newest first.
pub async fn set_aside(ctx: &Ctx, limit: i64) -> Result<Vec<Value>, ApiError> {
    Ok(set_aside_json(store::set_asides(&ctx.pool, None, limit).await?))
}

/// One landlord's place in the fairness ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    pub landlord: String,
    pub name: String,
    /// Carried over from before the ledger of moves (v0.1.0's counter).
    pub opening: i64,
    /// Households it rehoused through the scheme: properties the scheme owes it.
    pub owed: i64,
    /// Households that left its homes through the scheme: properties it owes the scheme.
    pub owes: i64,
}

impl Balance {
    /// Positive: the scheme owes the landlord properties; negative: the landlord owes.
    pub fn balance(&self) -> i64 {
        self.opening + self.owed - self.owes
    }

    pub fn meaning(&self) -> &'static str {
        match self.balance() {
            b if b > 0 => "is owed properties by the scheme",
            b if b < 0 => "owes properties to the scheme",
            _ => "even",
        }
    }

    pub fn json(&self) -> Value {
        json!({"landlord": self.landlord, "name": self.name, "opening": self.opening, "owed": self.owed, "owes": self.owes,
            "balance": self.balance(), "meaning": self.meaning()})
    }
}

/// The balance of `landlord` in `out`, made when it is not there yet.
fn balance_of<'a>(out: &'a mut BTreeMap<String, Balance>, isp: &isp::Isp, landlord: &str) -> &'a mut Balance {
    out.entry(landlord.to_owned()).or_insert_with(|| Balance {
        landlord: landlord.to_owned(),
        name: isp.directory.get(landlord).map(|a| a.name.clone()).unwrap_or_else(|| landlord.to_owned()),
        opening: 0,
        owed: 0,
        owes: 0,
    })
}

/// Every landlord of the scheme's balance (and any other agency the ledger names), in id order.
pub async fn balances(ctx: &Ctx) -> Result<Vec<Balance>, ApiError> {
    let isp = ctx.isp();
    let mut out = BTreeMap::new();
    for landlord in isp.directory.with_role(isp::Role::Housing) {
        balance_of(&mut out, &isp, &landlord.id);
    }
    for (landlord, balance) in store::opening_balances(&ctx.pool).await? {
        balance_of(&mut out, &isp, &landlord).opening += balance;
    }
    for (rehousing, vacating) in store::counted_moves(&ctx.pool).await? {
        balance_of(&mut out, &isp, &rehousing).owed += 1;
        balance_of(&mut out, &isp, &vacating).owes += 1;
    }
    Ok(out.into_values().collect())
}

/// Time to offer across the applications that had one: (how many, median days, longest days).
pub async fn time_to_offer(ctx: &Ctx) -> Result<(usize, Option<f64>, Option<f64>), ApiError> {
    let mut d: Vec<f64> = store::offer_times(&ctx.pool).await?.into_iter().map(|(_, c, o)| days(c, o)).collect();
    d.sort_by(f64::total_cmp);
    let median = match d.len() {
        0 => None,
        n if n % 2 == 1 => Some(d[n / 2]),
        n => Some(((d[n / 2 - 1] + d[n / 2]) / 2.0 * 10.0).round() / 10.0),
    };
    Ok((d.len(), median, d.last().copied()))
}

/// Whether a deadline is one of the scheme's.
pub fn is_scheme_deadline(code: &str) -> bool {
    [scheme::DEADLINE_APPROVE, scheme::DEADLINE_CIRCULATE, scheme::DEADLINE_REPLY, scheme::DEADLINE_DECIDE].contains(&code)
}

/// The coordinator's board.
pub async fn board(ctx: &Ctx) -> Result<Value, ApiError> {
    let by_status: Vec<Value> = store::count_by_status(&ctx.pool)
        .await?
        .into_iter()
        .map(|(s, n)| json!({"status": s.code(), "label": s.label(), "open": s.is_open(), "count": n}))
        .collect();
    let (offers, median, longest) = time_to_offer(ctx).await?;
    let escalated: Vec<Value> = deadlines::query(ctx, "escalated", None).await?.into_iter().filter(|d| is_scheme_deadline(d["code"].as_str().unwrap_or_default())).collect();
    Ok(json!({
        "by_status": by_status,
        "time_to_offer": {"offers": offers, "median_days": median, "longest_days": longest},
        "balances": balances(ctx).await?.iter().map(Balance::json).collect::<Vec<_>>(),
        "escalated": escalated,
        "held_completions": store::held_count(&ctx.pool).await?,
        "set_aside": set_aside(ctx, 50).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::{Balance, days};

    #[test]
    fn a_balance_reads_as_owed_or_owing() {
        let b = |opening, owed, owes| Balance { landlord: "l".into(), name: "L".into(), opening, owed, owes };
        assert_eq!((b(0, 1, 0).balance(), b(0, 1, 0).meaning()), (1, "is owed properties by the scheme"));
        assert_eq!((b(0, 0, 1).balance(), b(0, 0, 1).meaning()), (-1, "owes properties to the scheme"));
        assert_eq!(b(-1, 1, 0).meaning(), "even", "an opening balance carries over");
        assert_eq!(days(0, 36 * 3_600_000), 1.5);
    }
}
