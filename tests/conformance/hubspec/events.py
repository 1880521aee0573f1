"""Signed events (SPEC.md §10)."""

from . import grammar
from .common import Refused
from .directory import Directory
from .keys import SigningKey
from .protos import Event, SignedEvent, envelope_pb2

EVENT_TAG = b"hub.v1.event\0"
# EventKind numbers to the event tokens of §7 (subjects): the enum's names without
# `EVENT_KIND_`, in lower case.
EVENT_TOKENS = {number: name.removeprefix("EVENT_KIND_").lower() for name, number in envelope_pb2.EventKind.items() if number != 0}
EVENT_NUMBERS = {token: number for number, token in EVENT_TOKENS.items()}
# The ledger's entry type of each event kind (§11.1): its token, but for these two.
_ENTRY_TYPE_OF_TOKEN = {"send_denied": "near_miss", "receive_rejected": "rejected"}
ENTRY_TYPES = {number: _ENTRY_TYPE_OF_TOKEN.get(token, token) for number, token in EVENT_TOKENS.items()}
# §11.1: the entry's sender and recipient by entry type, from the event's agency and counterpart.
_PARTIES = {
    "near_miss": ("agency", "counterpart"),
    "rejected": ("counterpart", "agency"),
    "violation": ("counterpart", "agency"),
    "consent_changed": ("agency", None),
    "accessed": ("agency", None),
    "acknowledged": ("counterpart", "agency"),
    "deadline_missed": ("agency", "counterpart"),
}


def entry_parties(event) -> tuple[str, str]:
    """The (sender, recipient) §11.1 gives the entry of a verified event."""
    sender, recipient = _PARTIES.get(ENTRY_TYPES.get(event.kind, ""), ("agency", "counterpart"))
    pick = {"agency": event.agency, "counterpart": event.counterpart, None: ""}
    return pick[sender], pick[recipient]


def event_subject(agency: str, kind: int) -> str:
    return f"hub.v1.evt.{agency}.{EVENT_TOKENS[kind]}"


def sign_event(event, key: SigningKey) -> bytes:
    """SignedEvent{event = encode(Event), signature = Ed25519("hub.v1.event\\0" || event), signing_key_id}."""
    event_bytes = event.SerializeToString()
    return SignedEvent(event=event_bytes, signature=key.sign(EVENT_TAG + event_bytes), signing_key_id=key.key_id).SerializeToString()


def verify_event(data: bytes, directory: Directory):
    """Decodes and verifies a SignedEvent by `Event.agency`, the key judged at
    `occurred_at_ms`. Returns the Event; raises Refused."""
    signed = SignedEvent.FromString(data)
    event = Event.FromString(signed.event)
    if not grammar.is_agency_id(event.agency) or not grammar.is_envelope_id(event.event_id):
        raise Refused("bad_clear_field", "the event's agency or event id is not of its grammar")
    directory.verify_signature(event.agency, signed.signing_key_id, EVENT_TAG + signed.event, signed.signature, event.occurred_at_ms)
    bad = bad_clear_field(event)
    if bad:
        raise Refused("bad_clear_field", f"the event's {bad} is not of its grammar")
    return event


def bad_clear_field(event) -> str | None:
    """The first clear field of a verified event that is not of its grammar (§10), or None."""
    g = grammar
    empty_or = lambda check: lambda v: v == "" or check(v)  # noqa: E731
    consent_changed = event.kind == EVENT_NUMBERS["consent_changed"]
    checks = [
        ("counterpart", event.counterpart, empty_or(g.is_agency_id)),
        ("policy_version", event.policy_version, empty_or(g.is_policy_token)),
        ("reason", event.reason, empty_or(g.is_policy_token)),
        ("purpose", event.purpose, empty_or(g.is_policy_token)),
        ("lawful_basis", event.lawful_basis, empty_or(g.is_policy_token)),
        ("rule", event.rule, empty_or(lambda v: g.is_policy_token(v) or g.is_route(v))),
        ("envelope_id", event.envelope_id, empty_or(g.is_consent_id)),
        ("subject_ref", event.subject_ref, empty_or(g.is_subject_ref)),
        ("case_ref", event.case_ref, empty_or(g.is_revision if consent_changed else g.is_case_ref)),
        ("consent.id", event.consent.consent_id, empty_or(g.is_consent_id)),
        ("consent.recorded_by", event.consent.recorded_by, empty_or(g.is_agency_id)),
        ("data_categories", list(event.data_categories) + list(event.forbidden_categories), lambda vs: all(g.is_policy_token(c) for c in vs)),
        ("staff_id", event.staff_id, empty_or(g.is_staff_id)),
    ]
    return next((name for name, value, ok in checks if not ok(value)), None)
