//! A risk level that can be proved: the DASH risk identification checklist as data, the
//! band a score gives, and the signed summary of a recorded assessment that a referral
//! carries in place of a risk the caller asserts.
//!
//! - The score is the number of Yes answers; 14 or more is high, 10-13 medium, 0-9 standard
//!   (SafeLives). Professional judgement may raise the band, never lower it, and names the
//!   officer who made it.
//! - The sending service fills a referral's `dash` from an assessment it recorded and signs
//!   the summary ([`sign_summary`]); the header's risk is the summary's band.
//! - The recipient checks the summary ([`check`]): signed by the agency that says it
//!   assessed, a band its score (and judgement) give, the header's risk, and where the
//!   answers flow to it, a score they give.

use ed25519_dalek::Signer as _;
use prost::Message as _;
use proto::v1::{DashAnswer, DashAssessment, Header, Kind, Payload, RiskLevel, payload::Body};

use crate::{AgencyKeys, Directory, OpenError, error::Denial};

/// Domain separation of a DASH summary's signature.
pub const DASH_CONTEXT: &[u8] = b"hub.v1.dash\0";

/// A checklist version: its name and its questions, in order.
#[derive(Debug)]
pub struct Checklist {
    pub version: &'static str,
    pub questions: &'static [&'static str],
}

/// The SafeLives DASH risk identification checklist (24 questions), each by its topic in
/// our own short words: the assessor asks the form's own wording.
const SAFELIVES_24: &[&str] = &[
    "Injury in the current incident",
    "Very frightened",
    "Afraid of further injury or violence (and of what)",
    "Isolated from family, friends or services",
    "Depressed or having suicidal thoughts",
    "Separated or tried to separate in the past year",
    "Conflict over child contact",
    "Constant contact, following, stalking or harassment",
    "Pregnant or recently had a baby",
    "Abuse happening more often",
    "Abuse getting worse",
    "Controlling or excessively jealous",
    "Weapons or objects used to hurt",
    "Threats to kill, believed",
    "Strangulation, choking, suffocation or drowning",
    "Sexual abuse",
    "Another person threatening, or feared",
    "Abuser known to have hurt anyone else",
    "Abuser has mistreated an animal or pet",
    "Financial issues",
    "Abuser's drugs, alcohol or mental health problems in the past year",
    "Abuser has threatened or attempted suicide",
    "Abuser has broken bail, an injunction or an agreement",
    "Abuser in trouble with the police or has a criminal history",
];

/// The older police version (27 questions): the 24 above and three on the abuser's record.
const POLICE_27: &[&str] = &[
    SAFELIVES_24[0], SAFELIVES_24[1], SAFELIVES_24[2], SAFELIVES_24[3], SAFELIVES_24[4], SAFELIVES_24[5], SAFELIVES_24[6],
    SAFELIVES_24[7], SAFELIVES_24[8], SAFELIVES_24[9], SAFELIVES_24[10], SAFELIVES_24[11], SAFELIVES_24[12], SAFELIVES_24[13],
    SAFELIVES_24[14], SAFELIVES_24[15], SAFELIVES_24[16], SAFELIVES_24[17], SAFELIVES_24[18], SAFELIVES_24[19], SAFELIVES_24[20],
    SAFELIVES_24[21], SAFELIVES_24[22], SAFELIVES_24[23],
    "Abuser convicted of domestic abuse offences",
    "Abuser convicted of violent offences",
    "Abuser subject of a previous MARAC",
];

/// The versions a partnership knows. A summary of any other version is refused.
pub const CHECKLISTS: [Checklist; 2] = [
    Checklist { version: "safelives-dash-2024", questions: SAFELIVES_24 },
    Checklist { version: "police-dash-27", questions: POLICE_27 },
];

/// The checklist of a version.
pub fn checklist(version: &str) -> Option<&'static Checklist> {
    CHECKLISTS.iter().find(|c| c.version == version)
}

/// The band a score gives by itself.
pub fn band_of_score(score: u32) -> RiskLevel {
    match score {
        14.. => RiskLevel::High,
        10..=13 => RiskLevel::Medium,
        _ => RiskLevel::Standard,
    }
}

/// The band of a score, raised (never lowered) by professional judgement.
pub fn band(score: u32, judgement: Option<RiskLevel>) -> RiskLevel {
    let by_score = band_of_score(score);
    match judgement {
        Some(j) if (j as i32) > (by_score as i32) => j,
        _ => by_score,
    }
}

/// The bytes a summary's signature covers (after [`DASH_CONTEXT`]): the summary without its
/// answers and signature.
fn signed_bytes(summary: &DashAssessment) -> Vec<u8> {
    DashAssessment { items: Vec::new(), signature: Vec::new(), signing_key_id: String::new(), ..summary.clone() }.encode_to_vec()
}

/// Signs a summary as `keys`' agency (which it names as `assessed_by`).
pub fn sign_summary(keys: &AgencyKeys, summary: &mut DashAssessment) {
    summary.assessed_by = keys.agency.clone();
    summary.signature = Vec::new();
    summary.signing_key_id = keys.signing_key_id();
    summary.signature = keys.signing.sign(&[DASH_CONTEXT, &signed_bytes(summary)].concat()).to_bytes().to_vec();
}

/// Why a summary does not prove its band, or None when it does: its checklist, its band
/// from its score and judgement, and its answers where they are present.
pub fn inconsistency(summary: &DashAssessment) -> Option<String> {
    let Some(list) = checklist(&summary.checklist_version) else {
        return Some("the DASH summary names a checklist version this partnership does not know".into());
    };
    let questions = list.questions.len() as u32;
    if summary.score > questions {
        return Some(format!("a DASH score of {} is more than the {questions} questions of {}", summary.score, list.version));
    }
    let by_score = band_of_score(summary.score);
    let risk = summary.risk();
    if summary.professional_judgement {
        if (risk as i32) <= (by_score as i32) {
            return Some("the DASH summary says professional judgement raised the band, but the band is not above the score's".into());
        }
        if summary.judgement_officer.is_empty() {
            return Some("professional judgement raised the band, but the summary names no officer who made it".into());
        }
    } else if risk != by_score {
        return Some(format!("a DASH score of {} gives the {} band, not {}", summary.score, crate::codes::risk_name(by_score), crate::codes::risk_name(risk)));
    }
    if !summary.items.is_empty() {
        if summary.items.len() as u32 != questions {
            return Some(format!("{} has {questions} questions; the summary carries {} answers", list.version, summary.items.len()));
        }
        let yes = summary.items.iter().filter(|i| i.answer == DashAnswer::Yes as i32).count() as u32;
        if yes != summary.score {
            return Some(format!("the answers carried give a score of {yes}, not {}", summary.score));
        }
    }
    None
}

/// The DASH summary a payload carries, if its kind has one.
pub fn summary_of(payload: &Payload) -> Option<&DashAssessment> {
    match &payload.body {
        Some(Body::IdvaReferral(r)) => r.dash.as_ref(),
        Some(Body::MaracReferral(r)) => r.dash.as_ref(),
        _ => None,
    }
}

/// The DASH summary of a payload, to fill in, if its kind has one.
pub fn summary_slot(payload: &mut Payload) -> Option<&mut Option<DashAssessment>> {
    match &mut payload.body {
        Some(Body::IdvaReferral(r)) => Some(&mut r.dash),
        Some(Body::MaracReferral(r)) => Some(&mut r.dash),
        _ => None,
    }
}

/// Whether messages of a kind carry a DASH summary.
pub fn kind_carries_summary(kind: Kind) -> bool {
    matches!(kind, Kind::IdvaReferral | Kind::MaracReferral)
}

/// The recipient's check: a summary that is present is signed by the agency it names, at a
/// band its score gives and equal to the header's risk; a header of high risk on a kind that
/// carries a summary has one (where the recipient may receive it).
pub fn check(directory: &Directory, header: &Header, payload: &Payload, summary_receivable: bool) -> Result<(), OpenError> {
    let refuse = |detail: String| OpenError::Denied(Denial { rule: "risk".into(), reason: "unproven_risk", detail, forbidden: Vec::new() });
    let header_risk = header.risk();
    let kind = Kind::try_from(header.kind).unwrap_or(Kind::Unspecified);
    let Some(summary) = summary_of(payload) else {
        if header_risk == RiskLevel::High && kind_carries_summary(kind) && summary_receivable {
            return Err(refuse("the header says high risk, but the referral carries no signed DASH summary to prove it".into()));
        }
        return Ok(());
    };
    let Some(assessor) = directory.get(&summary.assessed_by) else {
        return Err(refuse("the DASH summary names an assessing agency that is not in the directory".into()));
    };
    crate::signature::check_signature_at(assessor, &summary.signing_key_id, header.created_at_ms, DASH_CONTEXT, &signed_bytes(summary), &summary.signature)
        .map_err(|_| refuse("the DASH summary's signature does not verify: it was altered or not signed by the agency it names".into()))?;
    if let Some(why) = inconsistency(summary) {
        return Err(refuse(why));
    }
    if summary.risk() != header_risk {
        return Err(refuse(format!(
            "the header says {} risk, the signed DASH summary {}",
            crate::codes::risk_name(header_risk),
            crate::codes::risk_name(summary.risk())
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::DashItem;

    fn summary(yes: u32, risk: RiskLevel, judgement: bool) -> DashAssessment {
        DashAssessment {
            checklist_version: "safelives-dash-2024".into(),
            assessed_on: "2026-11-27".into(),
            score: yes,
            risk: risk as i32,
            professional_judgement: judgement,
            items: (0..24).map(|i| DashItem { question: i + 1, answer: if i < yes { DashAnswer::Yes } else { DashAnswer::No } as i32, source: String::new() }).collect(),
            assessment_id: "0193a0c4-7b1e-7000-8000-000000000001".into(),
            assessor: "hsg.officer".into(),
            judgement_officer: if judgement { "hsg.manager".into() } else { String::new() },
            ..Default::default()
        }
    }

    #[test]
    fn bands_and_judgement_only_raises() {
        assert_eq!(band(14, None), RiskLevel::High);
        assert_eq!(band(13, None), RiskLevel::Medium);
        assert_eq!(band(9, None), RiskLevel::Standard);
        assert_eq!(band(3, Some(RiskLevel::High)), RiskLevel::High);
        assert_eq!(band(15, Some(RiskLevel::Standard)), RiskLevel::High);
    }

    #[test]
    fn a_summary_proves_only_the_band_its_answers_give() {
        assert_eq!(inconsistency(&summary(14, RiskLevel::High, false)), None);
        assert_eq!(inconsistency(&summary(3, RiskLevel::High, true)), None);
        assert!(inconsistency(&summary(3, RiskLevel::High, false)).unwrap().contains("gives the standard band"));
        assert!(inconsistency(&summary(15, RiskLevel::High, true)).unwrap().contains("not above"));
        let mut no_officer = summary(3, RiskLevel::High, true);
        no_officer.judgement_officer.clear();
        assert!(inconsistency(&no_officer).unwrap().contains("no officer"));
        let mut claimed = summary(4, RiskLevel::Standard, false);
        claimed.score = 20;
        claimed.risk = RiskLevel::High as i32;
        assert!(inconsistency(&claimed).unwrap().contains("give a score of 4"));
        let mut invented = summary(14, RiskLevel::High, false);
        invented.checklist_version = "made-up-v9".into();
        assert!(inconsistency(&invented).unwrap().contains("does not know"));
        let mut short = summary(14, RiskLevel::High, false);
        short.items.pop();
        assert!(inconsistency(&short).unwrap().contains("24 questions"));
        let mut no_answers = summary(14, RiskLevel::High, false);
        no_answers.items.clear();
        assert_eq!(inconsistency(&no_answers), None, "a summary without its answers is checked on score and band");
    }

    #[test]
    fn the_checklists_have_their_question_counts() {
        assert_eq!(checklist("safelives-dash-2024").unwrap().questions.len(), 24);
        assert_eq!(checklist("police-dash-27").unwrap().questions.len(), 27);
    }
}
