//! The figures a MARAC reports each quarter (calendar quarters: Q1 is January to March), from
//! the service's own records:
//!
//! - cases heard: cases heard at the meetings held in the quarter;
//! - repeats: of those, the repeat MARACs (and the repeat rate; practitioners quote 28-40% as
//!   healthy);
//! - referrals by referring agency: referrals received in the quarter, each incident once (a
//!   duplicate of an incident and a revoked referral are counted apart, not as referrals);
//! - cases with an IDVA: of the cases heard, those an IDVA service referred, answered research
//!   on holding information, or owns an action on.

use std::collections::BTreeMap;

use isp::Role;
use runtime::{
    Ctx,
    api::ApiError,
    chronology::{date_of, day_ms},
};
use serde_json::{Value, json};

use crate::{criteria::Criterion, store};

/// A calendar quarter, `2026-Q4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quarter {
    pub year: i32,
    /// 1 to 4.
    pub number: u8,
}

impl Quarter {
    pub fn parse(s: &str) -> Option<Quarter> {
        let (year, q) = s.split_once("-Q")?;
        let year: i32 = year.parse().ok().filter(|y| (1900..=2200).contains(y))?;
        let number: u8 = q.parse().ok().filter(|n| (1..=4).contains(n))?;
        (year.to_string().len() == 4 && q.len() == 1).then_some(Quarter { year, number })
    }

    /// The quarter a time falls in.
    pub fn of(ms: i64) -> Quarter {
        let day = date_of(ms);
        let month: u8 = day[5..7].parse().unwrap_or(1);
        Quarter { year: day[..4].parse().unwrap_or(1970), number: (month - 1) / 3 + 1 }
    }

    pub fn first_day(self) -> String {
        format!("{:04}-{:02}-01", self.year, (self.number - 1) * 3 + 1)
    }

    pub fn last_day(self) -> String {
        let next = if self.number == 4 { Quarter { year: self.year + 1, number: 1 } } else { Quarter { number: self.number + 1, ..self } };
        date_of(day_ms(&next.first_day()).unwrap_or_default() - 86_400_000)
    }

    pub fn previous(self) -> Quarter {
        if self.number == 1 { Quarter { year: self.year - 1, number: 4 } } else { Quarter { number: self.number - 1, ..self } }
    }

    pub fn next(self) -> Quarter {
        if self.number == 4 { Quarter { year: self.year + 1, number: 1 } } else { Quarter { number: self.number + 1, ..self } }
    }
}

impl std::fmt::Display for Quarter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-Q{}", self.year, self.number)
    }
}

/// The quarter asked for, or the current one.
pub fn quarter(ctx: &Ctx, asked: Option<&str>) -> Result<Quarter, ApiError> {
    match asked.filter(|q| !q.is_empty()) {
        Some(q) => Quarter::parse(q).ok_or_else(|| ApiError::bad_request("quarter is a year and a quarter, like 2026-Q4")),
        None => Ok(Quarter::of(ctx.config.clock.now_ms())),
    }
}

fn percent(part: usize, whole: usize) -> Value {
    if whole == 0 { Value::Null } else { json!(((part as f64) * 1000.0 / whole as f64).round() / 10.0) }
}

/// The quarter's figures.
pub async fn figures(ctx: &Ctx, q: Quarter) -> Result<Value, ApiError> {
    let (first, last) = (q.first_day(), q.last_day());
    let isp = ctx.isp();
    let role = |agency: &str| isp.directory.get(agency).map(|a| a.role);
    let meetings = store::meetings_between(&ctx.pool, &first, &last).await?;
    let mut heard = Vec::new();
    for m in &meetings {
        for c in store::on_meeting(&ctx.pool, &m.id).await? {
            if store::hearing(&ctx.pool, &c.id).await?.is_some_and(|h| h.meeting_id == m.id) {
                heard.push(c);
            }
        }
    }
    let repeats = heard.iter().filter(|c| c.assessment().has(Criterion::Repeat)).count();
    let mut with_idva = 0;
    for c in &heard {
        let referred = role(&c.referrer) == Some(Role::Idva);
        let researched = store::research_of(&ctx.pool, &c.id).await?.iter().any(|r| r.holds_information == Some(true) && role(&r.member) == Some(Role::Idva));
        let acting = store::actions_of(&ctx.pool, &c.id).await?.iter().any(|a| role(&a.owner_agency) == Some(Role::Idva));
        if referred || researched || acting {
            with_idva += 1;
        }
    }
    let from = day_ms(&first).unwrap_or_default();
    let until = day_ms(&last).unwrap_or_default() + 86_400_000;
    let received = store::received_between(&ctx.pool, from, until).await?;
    let (mut duplicates, mut revoked) = (0, 0);
    let mut by_agency: BTreeMap<String, usize> = BTreeMap::new();
    for c in &received {
        if c.revoked_at_ms.is_some() {
            revoked += 1;
        } else if c.class.duplicate_of.is_some() || c.close_reason == Some(crate::case::CloseReason::Duplicate) {
            duplicates += 1;
        } else {
            *by_agency.entry(c.referrer.clone()).or_default() += 1;
        }
    }
    let referrals: usize = by_agency.values().sum();
    Ok(json!({
        "quarter": q.to_string(),
        "from": first,
        "until": last,
        "meetings_held": meetings.iter().filter(|m| m.minuted_at_ms.is_some()).count(),
        "cases_heard": heard.len(),
        "repeats": repeats,
        "repeat_rate_percent": percent(repeats, heard.len()),
        "referrals": referrals,
        "referrals_by_agency": by_agency.iter().map(|(agency, n)| json!({
            "agency": agency,
            "name": isp.directory.get(agency).map(|a| a.name.clone()).unwrap_or_default(),
            "referrals": n,
        })).collect::<Vec<_>>(),
        "duplicates": duplicates,
        "revoked": revoked,
        "cases_with_idva": with_idva,
        "idva_rate_percent": percent(with_idva, heard.len()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quarters_parse_and_span_their_months() {
        let q = Quarter::parse("2026-Q4").unwrap();
        assert_eq!((q.first_day(), q.last_day()), ("2026-10-01".to_owned(), "2026-12-31".to_owned()));
        assert_eq!(Quarter::parse("2024-Q1").unwrap().last_day(), "2024-03-31");
        assert_eq!(Quarter::parse("2026-Q3").unwrap().last_day(), "2026-09-30");
        for bad in ["2026-Q5", "2026-Q0", "2026Q4", "26-Q4", "2026-Q4 ", "Q4-2026", "2026-Q44"] {
            assert_eq!(Quarter::parse(bad), None, "{bad}");
        }
        assert_eq!(Quarter::of(day_ms("2026-11-27").unwrap()).to_string(), "2026-Q4");
        assert_eq!(q.next().to_string(), "2027-Q1");
        assert_eq!(q.previous().to_string(), "2026-Q3");
        assert_eq!(percent(1, 3), json!(33.3));
        assert_eq!(percent(0, 0), Value::Null);
    }
}
