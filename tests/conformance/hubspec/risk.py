"""Risk and the DASH summary (SPEC.md §6.5): the checklists, the band a score gives, the signed
summary of a recorded assessment, and the check a recipient (and, first, the sender) makes
that a header's risk is what such a summary proves."""

from .common import Refused
from .directory import Directory
from .keys import SigningKey
from .protos import RISKS, body, body_descriptor, body_kind, payloads_pb2

DASH_TAG = b"hub.v1.dash\0"
# §6.5: the checklist versions a partnership knows, and their numbers of questions.
CHECKLISTS = {"safelives-dash-2024": 24, "police-dash-27": 27}
_ORDER = ("standard", "medium", "high")  # bands, lowest first
_SUMMARY = payloads_pb2.DashAssessment.DESCRIPTOR.full_name


def band_of_score(score: int) -> str:
    """14 or more Yes answers is high, 10 to 13 medium, 0 to 9 standard."""
    return "high" if score >= 14 else "medium" if score >= 10 else "standard"


def _risk(value: int) -> str:
    """A RiskLevel as its name; a number outside the enum counts as unspecified."""
    return RISKS.get(value, "unspecified")


def _above(a: str, b: str) -> bool:
    """Band a is above band b (unspecified is below every band)."""
    rank = lambda r: _ORDER.index(r) if r in _ORDER else -1  # noqa: E731
    return rank(a) > rank(b)


def signed_bytes(summary) -> bytes:
    """encode(summary with items, signature and signing_key_id cleared): proto3's encoding of
    the fields payloads.proto knows, in field-number order, unknown fields dropped (protobuf
    for Python keeps what it does not know; a recipient whose schema does not has dropped it)."""
    copy = payloads_pb2.DashAssessment()
    copy.CopyFrom(summary)
    copy.DiscardUnknownFields()
    for name in ("items", "signature", "signing_key_id"):
        copy.ClearField(name)
    return copy.SerializeToString(deterministic=True)


def sign_summary(summary, agency: str, key: SigningKey) -> None:
    """Signs `summary` in place as `agency` with its signing key, which it names."""
    summary.assessed_by = agency
    summary.signing_key_id = key.key_id
    summary.ClearField("signature")
    summary.signature = key.sign(DASH_TAG + signed_bytes(summary))


def answers(questions: int, yes: set[int]) -> list:
    """One DashItem per question, from 1: Yes for the numbers in `yes`, No for the others."""
    return [
        payloads_pb2.DashItem(question=q, answer=payloads_pb2.DASH_ANSWER_YES if q in yes else payloads_pb2.DASH_ANSWER_NO)
        for q in range(1, questions + 1)
    ]


def inconsistency(summary) -> str | None:
    """Why a summary does not prove its band (§6.5 check, step 3), or None."""
    questions = CHECKLISTS.get(summary.checklist_version)
    if questions is None:
        return "the summary names a checklist version the partnership does not know"
    if summary.score > questions:
        return f"a score of {summary.score} is more than the {questions} questions of {summary.checklist_version}"
    by_score, risk = band_of_score(summary.score), _risk(summary.risk)
    if summary.professional_judgement:
        if not _above(risk, by_score):
            return "professional judgement is claimed, but the band is not above the score's"
        if not summary.judgement_officer:
            return "professional judgement raised the band, but no officer is named"
    elif risk != by_score:
        return f"a score of {summary.score} gives the {by_score} band, not {risk}"
    if len(summary.items):
        if len(summary.items) != questions:
            return f"{summary.checklist_version} has {questions} questions; the summary carries {len(summary.items)} answers"
        yes = sum(1 for i in summary.items if i.answer == payloads_pb2.DASH_ANSWER_YES)
        if yes != summary.score:
            return f"the answers give a score of {yes}, not {summary.score}"
    return None


def _summary_fields(kind: int) -> list[str]:
    """The fields of kind `kind`'s body that hold a DASH summary (none: the kind carries none)."""
    descriptor = body_descriptor(kind)
    if descriptor is None:
        return []
    return [fd.name for fd in descriptor.fields if fd.message_type is not None and fd.message_type.full_name == _SUMMARY and not _repeated(fd)]


def _repeated(fd) -> bool:
    return fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED


def kind_carries_summary(kind: int) -> bool:
    """§6.5: the kinds whose body has a DashAssessment field."""
    return bool(_summary_fields(kind))


def summary_of(payload):
    """The DASH summary a payload carries: its body's summary field when set (even to an empty
    message), else None."""
    b = body(payload)
    if b is None:
        return None
    for name in _summary_fields(body_kind(payload)):
        if b.HasField(name):
            return getattr(b, name)
    return None


def check(directory: Directory, header, payload, summary_receivable: bool) -> None:
    """§6.5's check of a header and its (minimised, decoded) payload, given whether the
    recipient's role may receive `risk.dash`. Raises Refused("unproven_risk", rule "risk")."""

    def refuse(detail: str):
        raise Refused("unproven_risk", detail, "risk")

    header_risk = _risk(header.risk)
    summary = summary_of(payload)
    if summary is None:  # 1.
        if header_risk == "high" and kind_carries_summary(header.kind) and summary_receivable:
            refuse("the header says high risk, but the referral carries no signed DASH summary to prove it")
        return
    # 2. signed by the agency it names, its key judged at the header's created_at_ms.
    if summary.assessed_by not in directory.agencies:
        refuse("the DASH summary names an assessing agency that is not in the directory")
    try:
        directory.verify_signature(summary.assessed_by, summary.signing_key_id, DASH_TAG + signed_bytes(summary), summary.signature, header.created_at_ms)
    except Refused:
        refuse("the DASH summary's signature does not verify: altered, or not signed by the agency it names")
    why = inconsistency(summary)  # 3.
    if why:
        refuse(why)
    if _risk(summary.risk) != header_risk:  # 4.
        refuse(f"the header says {header_risk} risk, the signed DASH summary {_risk(summary.risk)}")

