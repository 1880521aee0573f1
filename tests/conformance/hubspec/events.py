"""Signed events (SPEC.md §10)."""

from . import grammar
from .common import Refused
from .directory import Directory
from .keys import SigningKey
from .protos import Event, SignedEvent

EVENT_TAG = b"hub.v1.event\0"
# EventKind numbers to the event tokens of §7 (subjects) and the ledger's entry types (§11.1).
EVENT_TOKENS = {1: "send_denied", 2: "receive_rejected", 3: "violation", 4: "consent_changed", 5: "accessed"}
ENTRY_TYPES = {1: "near_miss", 2: "rejected", 3: "violation", 4: "consent_changed", 5: "accessed"}


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
    return event
