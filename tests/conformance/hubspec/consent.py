"""Consent records: make, sign, verify, the current revision, the consent check (SPEC.md §13)."""

import json

from . import grammar
from .common import Refused, unhex
from .directory import Directory
from .keys import SigningKey

STATES = ("given", "refused", "not-sought", "withdrawn", "expired")
_MEMBERS = (
    "consent_id", "agency", "revision", "subject_ref", "state", "reason", "scope",
    "recorded_by", "recorded_at_ms", "created_at_ms", "expires_at_ms",
)
_SCOPE_MEMBERS = ("roles", "agencies", "purposes")
_VALUE_MEMBERS = ("record", "signature", "signing_key_id")
TAG = b"hub.v1.consent\0"


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_record(text: str) -> dict:
    """A record's JSON text to a dict, refusing unknown members and ill-formed values."""
    record = json.loads(text)
    if not isinstance(record, dict):
        raise ValueError("a consent record is a JSON object")
    unknown = set(record) - set(_MEMBERS)
    if unknown:
        raise ValueError(f"the consent record has unknown members {sorted(unknown)}")
    missing = [m for m in _MEMBERS if m != "expires_at_ms" and m not in record]
    if missing:
        raise ValueError(f"the consent record has no {', '.join(missing)}")
    if not grammar.is_consent_id(record["consent_id"]) or not grammar.is_agency_id(record["agency"]):
        raise ValueError("the consent record's consent_id or agency is not of its grammar")
    if not _is_int(record["revision"]) or record["revision"] < 1:
        raise ValueError("the consent record's revision is not a positive integer")
    if record["subject_ref"] and not grammar.is_subject_ref(record["subject_ref"]):
        raise ValueError("the consent record's subject_ref is not a subject ref")
    if record["state"] not in STATES:
        raise ValueError("the consent record's state is unknown")
    if record["reason"] and not grammar.is_policy_token(record["reason"]):
        raise ValueError("the consent record's reason is not a rationale code")
    if record["state"] == "not-sought" and not record["reason"]:
        raise ValueError("a not-sought record needs a reason")
    if not grammar.is_staff_id(record["recorded_by"]):
        raise ValueError("the consent record's recorded_by is not a staff id")
    for m in ("recorded_at_ms", "created_at_ms"):
        if not _is_int(record[m]):
            raise ValueError(f"the consent record's {m} is not an integer")
    if record.get("expires_at_ms") is not None and not _is_int(record["expires_at_ms"]):
        raise ValueError("the consent record's expires_at_ms is not an integer or null")
    scope = record["scope"]
    if not isinstance(scope, dict) or set(scope) - set(_SCOPE_MEMBERS):
        raise ValueError("the consent record's scope has unknown members")
    for m in _SCOPE_MEMBERS:
        if not isinstance(scope.get(m, []), list) or not all(isinstance(x, str) for x in scope.get(m, [])):
            raise ValueError(f"the consent record's scope.{m} is not a list of strings")
    if record["state"] == "given" and (not (scope.get("roles") or scope.get("agencies")) or not scope.get("purposes")):
        raise ValueError("a given record names roles or agencies, and purposes")
    return record


def make_record(consent_id, agency, revision, subject_ref, state, scope, recorded_by, recorded_at_ms, created_at_ms, expires_at_ms=None, reason="") -> str:
    """A record's JSON text, members in the order of §13, checked as a reader would."""
    record = {
        "consent_id": consent_id, "agency": agency, "revision": revision, "subject_ref": subject_ref,
        "state": state, "reason": reason,
        "scope": {m: list(scope.get(m, [])) for m in _SCOPE_MEMBERS},
        "recorded_by": recorded_by, "recorded_at_ms": recorded_at_ms, "created_at_ms": created_at_ms,
        "expires_at_ms": expires_at_ms,
    }
    text = json.dumps(record, separators=(",", ":"), ensure_ascii=False)
    parse_record(text)
    return text


def sign_record(text: str, key: SigningKey) -> str:
    """The bucket value of §13: {"record", "signature", "signing_key_id"}."""
    signature = key.sign(TAG + text.encode())
    return json.dumps({"record": text, "signature": signature.hex(), "signing_key_id": key.key_id})


def bucket_key(agency: str, consent_id: str) -> str:
    return f"{agency}.{consent_id}"


def verify_value(value: bytes | str, owner: str, consent_id: str, directory: Directory) -> dict:
    """A bucket value under `<owner>.<consent_id>`, accepted only if its signature verifies
    against the owner's key it names (judged at `recorded_at_ms`) and the record names that
    owner and consent id. Returns the record; raises ValueError or Refused."""
    data = json.loads(value)
    if not isinstance(data, dict) or set(data) != set(_VALUE_MEMBERS):
        raise ValueError("a consent value is {record, signature, signing_key_id}")
    record = parse_record(data["record"])
    if record["agency"] != owner or record["consent_id"] != consent_id:
        raise ValueError("the record names another agency or consent id than its key")
    signature = unhex(data["signature"], 64, "signature")
    directory.verify_signature(owner, data["signing_key_id"], TAG + data["record"].encode(), signature, record["recorded_at_ms"])
    return record


def current(values, owner: str, consent_id: str, directory: Directory) -> dict | None:
    """The current revision among a key's history: the verified value with the highest
    revision, except that a verified `withdrawn` revision is current whatever follows."""
    verified = []
    for v in values:
        try:
            verified.append(verify_value(v, owner, consent_id, directory))
        except (ValueError, Refused, KeyError):
            continue  # an unverifiable value is no consent at all
    if not verified:
        return None
    withdrawn = [r for r in verified if r["state"] == "withdrawn"]
    pool = withdrawn or verified
    return max(pool, key=lambda r: r["revision"])


def state_at(record: dict, t_ms: int) -> str:
    """A given record whose expiry is at or before t is expired."""
    if record["state"] == "given" and record.get("expires_at_ms") is not None and record["expires_at_ms"] <= t_ms:
        return "expired"
    return record["state"]


def check(tag_consent_id: str, tag_state: str, record: dict | None, subject_ref: str, recipient: str, recipient_role: str, purpose: str, t_ms: int, linked_subject_ref=None):
    """§13's consent check of a header's consent tag against the current record of
    `<recorded_by>.<consent_id>`; raises Refused with the first failing reason code.

    `subject_ref`: the disclosure's subject as the header carries it. When that is a link
    token, a sender passes `linked_subject_ref(record_ref)` to link the record's ref to the
    recipient; a recipient (no subject key) passes None and relies on the sender."""
    rule = "consent-record"
    if not tag_consent_id:  # 1.
        if tag_state == "given":
            raise Refused("consent_unknown", "consent given names no consent record", rule)
        return
    if record is None:  # 2.
        raise Refused("consent_unknown", f"no verified consent record {tag_consent_id}", rule)
    if grammar.is_link_token(subject_ref):  # 3.
        if linked_subject_ref is not None and linked_subject_ref(record["subject_ref"]) != subject_ref:
            raise Refused("consent_subject_mismatch", "the consent record is about another subject", rule)
    elif record["subject_ref"] != subject_ref:
        raise Refused("consent_subject_mismatch", "the consent record is about another subject", rule)
    state = state_at(record, t_ms)  # 4.
    if tag_state != "given":
        if state != tag_state:
            raise Refused("consent_state_mismatch", f"the header claims {tag_state}, the record is {state}", rule)
        return
    if state == "withdrawn":
        raise Refused("consent_withdrawn", "the consent was withdrawn", rule)
    if state == "expired":
        raise Refused("consent_expired", "the consent expired", rule)
    if state in ("refused", "not-sought"):
        raise Refused("consent_not_given", f"the record's state is {state}", rule)
    scope = record["scope"]  # 5.
    if not (recipient in scope.get("agencies", []) or recipient_role in scope.get("roles", [])) or purpose not in scope.get("purposes", []):
        raise Refused("consent_out_of_scope", "the consent does not cover this recipient and purpose", rule)
