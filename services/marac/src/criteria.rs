//! The MARAC referral criteria, each with the evidence that it is met, and the repeat rule.
//! Pure (no I/O): [`classify`] takes every referral of one person and says which are
//! duplicates of one incident, which are repeats and how many incidents the last 12 months
//! held; [`assess`] turns one referral's facts into the criteria it meets.
//!
//! - Visible high risk, or professional judgement: proved only by the referral's signed DASH
//!   summary (checked on receipt by the inbox): high by score (14 or more) is visible high
//!   risk; high because professional judgement raised it is professional judgement, with the
//!   officer who made it. A referrer who names either without such a summary has claimed it,
//!   not proved it: the coordinator sees the claim and decides at screening.
//! - Repeat: a further incident within 12 months of the person's last MARAC (the day their
//!   earlier case was heard, or referred when it is not heard yet), found by the subject ref;
//!   or an earlier MARAC elsewhere within 12 months that the referral names.
//! - Potential escalation: [`ESCALATION_INCIDENTS`] or more incidents referred in 12 months,
//!   or the referrer's judgement that it names.
//!
//! What counts: a revoked referral counts for nothing; referrals of one incident (the same
//! person on the same day, or the same referrer's case reference again) count once, as the
//! first of them; a referral screened out (criteria not met) was no MARAC, so it starts no
//! repeat window (it is still an incident).

use proto::v1::MaracCriterion;
use runtime::{chronology, codes};
use serde_json::{Value, json};

/// The repeat window: 12 months.
pub const REPEAT_WITHIN_MS: i64 = 365 * 24 * 3600 * 1000;

/// Incidents in 12 months that make a case a potential escalation (the local threshold most
/// areas use).
pub const ESCALATION_INCIDENTS: u32 = 3;

codes!(
    /// A referral criterion.
    Criterion {
        VisibleHighRisk = "visible_high_risk": "Visible high risk: a DASH score of 14 or more",
        ProfessionalJudgement = "professional_judgement": "Professional judgement raised the risk to high",
        PotentialEscalation = "potential_escalation": "Potential escalation",
        Repeat = "repeat": "Repeat MARAC: a further incident within 12 months of the last",
    }
);

codes!(
    /// What shows a criterion is met.
    Source {
        DashSummary = "dash_summary": "The referral's signed DASH summary",
        Service = "service": "This service's own records",
        Referrer = "referrer": "The referrer's account",
    }
);

impl Criterion {
    pub fn from_proto(c: MaracCriterion) -> Option<Criterion> {
        Some(match c {
            MaracCriterion::VisibleHighRisk => Criterion::VisibleHighRisk,
            MaracCriterion::ProfessionalJudgement => Criterion::ProfessionalJudgement,
            MaracCriterion::PotentialEscalation => Criterion::PotentialEscalation,
            MaracCriterion::Repeat => Criterion::Repeat,
            MaracCriterion::Unspecified => return None,
        })
    }
}

/// The proved DASH summary a referral carried: its signature, band and score were checked
/// when it arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dash {
    pub assessment_id: String,
    pub assessed_by: String,
    pub score: u32,
    pub high: bool,
    /// Professional judgement raised the band (above the score's).
    pub judgement: bool,
    pub judgement_officer: String,
}

impl Dash {
    /// The facts of a checked summary.
    pub fn of(summary: &proto::v1::DashAssessment) -> Dash {
        Dash {
            assessment_id: summary.assessment_id.clone(),
            assessed_by: summary.assessed_by.clone(),
            score: summary.score,
            high: summary.risk() == proto::v1::RiskLevel::High,
            judgement: summary.professional_judgement,
            judgement_officer: summary.judgement_officer.clone(),
        }
    }
}

/// One referral of a person, as [`classify`] sees it.
#[derive(Debug, Clone, Default)]
pub struct Referral {
    pub id: String,
    pub referrer: String,
    /// The referrer's case reference (may be empty).
    pub case_ref: String,
    pub received_at_ms: i64,
    pub revoked: bool,
    /// The coordinator's last screening decision was "criteria not met".
    pub screened_out: bool,
    /// The coordinator closed it as a duplicate the service did not spot.
    pub closed_as_duplicate: bool,
    /// The day its meeting heard it (the start of that day, ms), if heard.
    pub heard_on_ms: Option<i64>,
}

impl Referral {
    /// When this referral's MARAC was: the day it was heard, or the day it was referred.
    fn marac_at_ms(&self) -> i64 {
        self.heard_on_ms.unwrap_or(self.received_at_ms)
    }

    /// Whether `later` is a referral of the same incident as this one.
    fn same_incident(&self, later: &Referral) -> bool {
        chronology::date_of(self.received_at_ms) == chronology::date_of(later.received_at_ms)
            || (!self.case_ref.is_empty() && self.referrer == later.referrer && self.case_ref == later.case_ref)
    }
}

/// The person's last MARAC before a referral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    pub case_id: String,
    pub marac_at_ms: i64,
}

/// What [`classify`] says of one referral.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Class {
    /// The first referral of the same incident, when this is a duplicate.
    pub duplicate_of: Option<String>,
    /// The person's last MARAC within 12 months before this referral: a repeat.
    pub repeat_of: Option<Previous>,
    /// Incidents referred in the 12 months up to this one, this one included (0 for a
    /// revoked referral or a duplicate).
    pub incidents_12m: u32,
}

/// Classifies every referral of one person (in the order received): duplicates of an
/// incident, repeats, and incidents in 12 months.
pub fn classify(referrals: &[Referral]) -> Vec<Class> {
    let mut sorted: Vec<&Referral> = referrals.iter().collect();
    sorted.sort_by(|a, b| (a.received_at_ms, &a.id).cmp(&(b.received_at_ms, &b.id)));
    let mut classes: Vec<(String, Class)> = Vec::with_capacity(sorted.len());
    // The incidents so far: first referrals of an incident, not revoked.
    let mut incidents: Vec<&Referral> = Vec::new();
    for r in sorted {
        let mut class = Class::default();
        if r.revoked {
            classes.push((r.id.clone(), class));
            continue;
        }
        if let Some(first) = incidents.iter().find(|i| i.same_incident(r)) {
            class.duplicate_of = Some(first.id.clone());
            classes.push((r.id.clone(), class));
            continue;
        }
        if r.closed_as_duplicate {
            classes.push((r.id.clone(), class));
            continue;
        }
        class.repeat_of = incidents
            .iter()
            .filter(|i| !i.screened_out)
            .max_by_key(|i| (i.marac_at_ms(), i.received_at_ms))
            .filter(|i| r.received_at_ms - i.marac_at_ms() <= REPEAT_WITHIN_MS)
            .map(|i| Previous { case_id: i.id.clone(), marac_at_ms: i.marac_at_ms() });
        class.incidents_12m = 1 + incidents.iter().filter(|i| r.received_at_ms - i.received_at_ms <= REPEAT_WITHIN_MS).count() as u32;
        incidents.push(r);
        classes.push((r.id.clone(), class));
    }
    referrals.iter().map(|r| classes.iter().find(|(id, _)| *id == r.id).map(|(_, c)| c.clone()).unwrap_or_default()).collect()
}

/// One criterion met, with what shows it (ids, scores and dates only: no free text).
#[derive(Debug, Clone, PartialEq)]
pub struct Met {
    pub criterion: Criterion,
    pub source: Source,
    pub evidence: Value,
}

/// Everything known of one referral that bears on the criteria.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    pub dash: Option<Dash>,
    /// The criteria the referrer named.
    pub claimed: Vec<Criterion>,
    pub class: Class,
    /// The latest earlier MARAC (elsewhere) the referral names, as the start of its day.
    pub named_previous_ms: Option<i64>,
    pub received_at_ms: i64,
}

/// The criteria a referral meets, and those its referrer claimed that nothing proves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Assessment {
    pub met: Vec<Met>,
    pub unproved: Vec<Criterion>,
}

impl Assessment {
    pub fn meets(&self) -> bool {
        !self.met.is_empty()
    }

    pub fn has(&self, c: Criterion) -> bool {
        self.met.iter().any(|m| m.criterion == c)
    }

    /// The codes met, in the order of [`Criterion::ALL`].
    pub fn codes(&self) -> Vec<&'static str> {
        Criterion::ALL.iter().filter(|c| self.has(**c)).map(|c| c.code()).collect()
    }

    pub fn json(&self) -> Value {
        json!({
            "met": self.met.iter().map(|m| json!({"criterion": m.criterion.code(), "source": m.source.code(), "evidence": m.evidence})).collect::<Vec<_>>(),
            "unproved": self.unproved.iter().map(|c| c.code()).collect::<Vec<_>>(),
        })
    }
}

/// The criteria `facts` meet, each with its evidence.
pub fn assess(facts: &Facts) -> Assessment {
    let mut a = Assessment::default();
    let high = facts.dash.as_ref().filter(|d| d.high);
    if let Some(d) = high {
        let mut evidence = json!({"assessment_id": d.assessment_id, "assessed_by": d.assessed_by, "score": d.score});
        let criterion = if d.judgement {
            evidence["judgement_officer"] = json!(d.judgement_officer);
            Criterion::ProfessionalJudgement
        } else {
            Criterion::VisibleHighRisk
        };
        a.met.push(Met { criterion, source: Source::DashSummary, evidence });
    }
    for claimed in [Criterion::VisibleHighRisk, Criterion::ProfessionalJudgement] {
        if facts.claimed.contains(&claimed) && high.is_none() {
            a.unproved.push(claimed);
        }
    }
    if facts.class.duplicate_of.is_none() {
        if facts.class.incidents_12m >= ESCALATION_INCIDENTS {
            a.met.push(Met { criterion: Criterion::PotentialEscalation, source: Source::Service, evidence: json!({"incidents_12m": facts.class.incidents_12m}) });
        } else if facts.claimed.contains(&Criterion::PotentialEscalation) {
            a.met.push(Met { criterion: Criterion::PotentialEscalation, source: Source::Referrer, evidence: json!({"incidents_12m": facts.class.incidents_12m}) });
        }
        match (&facts.class.repeat_of, facts.named_previous_ms) {
            (Some(p), _) => a.met.push(Met {
                criterion: Criterion::Repeat,
                source: Source::Service,
                evidence: json!({"previous_case": p.case_id, "previous_marac_on": chronology::date_of(p.marac_at_ms)}),
            }),
            (None, Some(at)) if at <= facts.received_at_ms && facts.received_at_ms - at <= REPEAT_WITHIN_MS => a.met.push(Met {
                criterion: Criterion::Repeat,
                source: Source::Referrer,
                evidence: json!({"previous_marac_on": chronology::date_of(at)}),
            }),
            _ if facts.claimed.contains(&Criterion::Repeat) => a.unproved.push(Criterion::Repeat),
            _ => {}
        }
    }
    a.met.sort_by_key(|m| Criterion::ALL.iter().position(|c| *c == m.criterion));
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-01-01.
    const T0: i64 = 20_454 * DAY;

    fn referral(id: &str, referrer: &str, case_ref: &str, day: i64) -> Referral {
        Referral { id: id.into(), referrer: referrer.into(), case_ref: case_ref.into(), received_at_ms: T0 + day * DAY + 3_600_000, ..Default::default() }
    }

    fn repeat(c: &Class) -> Option<&str> {
        c.repeat_of.as_ref().map(|p| p.case_id.as_str())
    }

    #[test]
    fn two_referrals_of_one_incident_count_once() {
        // Housing and the police refer the same incident on the same day; housing sends its
        // own case again a week later.
        let all = [referral("a", "housing", "HSG-1", 0), referral("b", "police", "POL-9", 0), referral("c", "housing", "HSG-1", 7)];
        let c = classify(&all);
        assert_eq!(c[0], Class { incidents_12m: 1, ..Default::default() });
        assert_eq!((c[1].duplicate_of.as_deref(), repeat(&c[1]), c[1].incidents_12m), (Some("a"), None, 0));
        assert_eq!((c[2].duplicate_of.as_deref(), repeat(&c[2])), (Some("a"), None));
    }

    #[test]
    fn a_further_incident_within_12_months_of_the_last_marac_is_a_repeat() {
        let mut first = referral("a", "housing", "HSG-1", 0);
        first.heard_on_ms = Some(T0 + 20 * DAY);
        let all = [first, referral("b", "police", "POL-1", 300), referral("c", "idva", "IDV-1", 700)];
        let c = classify(&all);
        assert_eq!(repeat(&c[1]), Some("a"));
        assert_eq!(c[1].repeat_of.as_ref().unwrap().marac_at_ms, T0 + 20 * DAY, "measured from the day it was heard");
        assert_eq!(c[1].incidents_12m, 2);
        assert_eq!(repeat(&c[2]), None, "400 days after b: not a repeat");
        assert_eq!(c[2].incidents_12m, 1);
        // 12 months from the hearing, not from the referral.
        let mut heard_late = referral("a", "housing", "HSG-1", 0);
        heard_late.heard_on_ms = Some(T0 + 30 * DAY);
        let c = classify(&[heard_late, referral("b", "police", "POL-1", 380)]);
        assert_eq!(repeat(&c[1]), Some("a"));
    }

    #[test]
    fn a_revoked_referral_counts_for_nothing() {
        let mut revoked = referral("a", "housing", "HSG-1", 0);
        revoked.revoked = true;
        let c = classify(&[revoked.clone(), referral("b", "police", "POL-1", 10)]);
        assert_eq!(c[0], Class::default());
        assert_eq!((repeat(&c[1]), c[1].duplicate_of.as_deref(), c[1].incidents_12m), (None, None, 1));
        // Revoking the first of one incident's referrals makes the next of it the one that counts.
        let c = classify(&[revoked, referral("b", "police", "POL-1", 0)]);
        assert_eq!((c[1].duplicate_of.as_deref(), c[1].incidents_12m), (None, 1));
    }

    #[test]
    fn a_screened_out_referral_starts_no_repeat_window_but_is_an_incident() {
        let mut out = referral("a", "housing", "HSG-1", 0);
        out.screened_out = true;
        let c = classify(&[out, referral("b", "police", "POL-1", 30), referral("c", "idva", "IDV-1", 60)]);
        assert_eq!(repeat(&c[1]), None);
        assert_eq!(repeat(&c[2]), Some("b"));
        assert_eq!(c[2].incidents_12m, 3);
    }

    #[test]
    fn visible_high_risk_and_judgement_need_a_proved_summary() {
        let dash = |score, judgement| Dash { assessment_id: "x".into(), assessed_by: "housing".into(), score, high: true, judgement, judgement_officer: if judgement { "j.officer".into() } else { String::new() } };
        let a = assess(&Facts { dash: Some(dash(16, false)), class: Class { incidents_12m: 1, ..Default::default() }, ..Default::default() });
        assert_eq!(a.codes(), ["visible_high_risk"]);
        assert_eq!(a.met[0].evidence["score"], 16);
        let a = assess(&Facts { dash: Some(dash(4, true)), class: Class { incidents_12m: 1, ..Default::default() }, ..Default::default() });
        assert_eq!(a.codes(), ["professional_judgement"], "judgement that raised the band to high meets the criteria");
        assert!(a.meets());
        assert_eq!(a.met[0].evidence["judgement_officer"], "j.officer");
        let medium = Dash { high: false, ..dash(11, false) };
        let a = assess(&Facts { dash: Some(medium), claimed: vec![Criterion::VisibleHighRisk], class: Class { incidents_12m: 1, ..Default::default() }, ..Default::default() });
        assert!(!a.meets());
        assert_eq!(a.unproved, [Criterion::VisibleHighRisk]);
    }

    #[test]
    fn repeat_and_escalation_carry_their_evidence() {
        let class = Class { repeat_of: Some(Previous { case_id: "a".into(), marac_at_ms: T0 }), incidents_12m: 3, ..Default::default() };
        let a = assess(&Facts { class, received_at_ms: T0 + 40 * DAY, ..Default::default() });
        assert_eq!(a.codes(), ["potential_escalation", "repeat"]);
        assert_eq!(a.met[1].evidence, json!({"previous_case": "a", "previous_marac_on": "2026-01-01"}));
        assert_eq!(a.met[0].evidence["incidents_12m"], 3);
        // An earlier MARAC elsewhere that the referral names, within 12 months.
        let a = assess(&Facts { named_previous_ms: Some(T0), received_at_ms: T0 + 100 * DAY, class: Class { incidents_12m: 1, ..Default::default() }, ..Default::default() });
        assert_eq!((a.codes(), a.met[0].source), (vec!["repeat"], Source::Referrer));
        let a = assess(&Facts { named_previous_ms: Some(T0), received_at_ms: T0 + 400 * DAY, claimed: vec![Criterion::Repeat], class: Class { incidents_12m: 1, ..Default::default() }, ..Default::default() });
        assert_eq!((a.meets(), a.unproved.clone()), (false, vec![Criterion::Repeat]));
        // A duplicate repeats nothing.
        let dup = Class { duplicate_of: Some("a".into()), ..Default::default() };
        assert!(!assess(&Facts { class: dup, claimed: vec![Criterion::PotentialEscalation], ..Default::default() }).meets());
    }
}
