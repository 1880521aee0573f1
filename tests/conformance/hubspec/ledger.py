"""Ledger entries and their hash chain (SPEC.md §11)."""

from .common import field, i64be, sha256

ENTRY_TAG = b"hub.v1.ledger-entry\0"
ZERO_HASH = bytes(32)
_TEXT_FIELDS = (
    "entry_type", "entry_id", "recorded_by", "sender", "recipient", "kind", "purpose", "lawful_basis",
    "consent_id", "consent_state", "risk", "subject_ref", "case_ref", "categories", "forbidden",
    "policy_version", "rule", "reason", "in_reply_to",
)
# Every field of §11.1, in its order there.
ALL_FIELDS = (
    "seq", "stream_seq", "entry_type", "entry_id", "recorded_by", "sender", "recipient", "kind",
    "purpose", "lawful_basis", "consent_id", "consent_state", "risk", "subject_ref", "case_ref",
    "categories", "forbidden", "policy_version", "rule", "reason", "without_consent", "in_reply_to",
    "staff_id", "occurred_at_ms", "recorded_at_ms", "verified", "stream_epoch", "stream_first",
    "message_count", "subject", "signed", "prev_hash", "hash",
)
_BYTES_FIELDS = ("signed", "prev_hash", "hash")


def _text(entry: dict, name: str) -> bytes:
    value = entry.get(name, "")
    if isinstance(value, list):  # `categories` and `forbidden` are lists joined by ","
        value = ",".join(value)
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValueError(f"entry field {name} is not text")
    return value.encode()


def _int(entry: dict, name: str, default: int = 0) -> int:
    value = entry.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"entry field {name} is not an integer")
    return value


def _bytes(entry: dict, name: str) -> bytes:
    value = entry.get(name, b"")
    if isinstance(value, str):
        value = bytes.fromhex(value)
    return value


def has_stream_facts(entry: dict) -> bool:
    return _int(entry, "stream_epoch") != 0 or _int(entry, "stream_first") != 0 or _int(entry, "message_count", 1) != 1 or bool(entry.get("subject"))


def canonical(entry: dict) -> bytes:
    """§11.2 canonical(entry): the concatenation of field(x) over the entry's fields in order.
    `entry` as the APIs give it (signed, prev_hash, hash as hex) or with bytes."""
    out = [field(i64be(_int(entry, "seq"))), field(i64be(_int(entry, "stream_seq")))]  # 1.
    out += [field(_text(entry, n)) for n in _TEXT_FIELDS]  # 2.
    out.append(field(bytes([1 if entry.get("without_consent") else 0, 1 if entry.get("verified") else 0])))  # 3.
    out += [field(i64be(_int(entry, "occurred_at_ms"))), field(i64be(_int(entry, "recorded_at_ms")))]  # 4.
    out.append(field(_bytes(entry, "signed")))  # 5.
    staff = _text(entry, "staff_id")  # 6.
    if has_stream_facts(entry):
        out += [
            field(staff), field(b"stream"), field(i64be(_int(entry, "stream_epoch"))),
            field(i64be(_int(entry, "stream_first"))), field(i64be(_int(entry, "message_count", 1))),
            field(_text(entry, "subject")),
        ]
    elif staff:
        out.append(field(staff))
    return b"".join(out)


def entry_hash(entry: dict, prev_hash: bytes | None = None) -> bytes:
    """SHA-256("hub.v1.ledger-entry\\0" || prev_hash || canonical(entry)); `prev_hash` defaults
    to the entry's own `prev_hash` member."""
    prev = _bytes(entry, "prev_hash") if prev_hash is None else prev_hash
    if len(prev) != 32:
        raise ValueError("prev_hash is not 32 bytes")
    return sha256(ENTRY_TAG + prev + canonical(entry))


def verify_chain(entries: list[dict]) -> None:
    """Each entry's prev_hash is the previous hash (zeros first) and its hash recomputes."""
    prev = ZERO_HASH
    for e in entries:
        if _bytes(e, "prev_hash") != prev:
            raise ValueError(f"entry {e.get('seq')}: prev_hash is not the previous entry's hash")
        if entry_hash(e, prev) != _bytes(e, "hash"):
            raise ValueError(f"entry {e.get('seq')}: hash does not recompute")
        prev = _bytes(e, "hash")


# ---------------------------------------------------------------- §11.1: fields from the record


def fields_from_envelope(header, header_bytes: bytes, signature: bytes) -> dict:
    """The fields §11.1 says a verified envelope gives its `disclosure` entry."""
    from .protos import CONSENT_STATES, KIND_NAMES, RISKS, Envelope

    return {
        "entry_type": "disclosure",
        "entry_id": header.envelope_id,
        "recorded_by": header.sender,
        "sender": header.sender,
        "recipient": header.recipient,
        "kind": KIND_NAMES.get(header.kind, "unspecified"),
        "purpose": header.purpose,
        "lawful_basis": header.lawful_basis,
        "consent_id": header.consent.consent_id,
        "consent_state": CONSENT_STATES.get(header.consent.state, "unspecified"),
        "risk": RISKS.get(header.risk, "unspecified"),
        "subject_ref": header.subject_ref,
        "case_ref": header.case_ref,
        "categories": ",".join(header.data_categories),
        "policy_version": header.policy_version,
        "rule": header.policy_rule,
        "without_consent": header.shared_without_consent,
        "in_reply_to": header.in_reply_to,
        "occurred_at_ms": header.created_at_ms,
        "verified": True,
        # The payload never reaches the ledger: the envelope with sealed_payload emptied.
        "signed": Envelope(header=header_bytes, sealed_payload=b"", signature=signature).SerializeToString().hex(),
    }


def fields_from_event(event, signed_event: bytes) -> dict:
    """The fields §11.1 says a verified event gives its entry."""
    from .events import ENTRY_TYPES, entry_parties
    from .protos import CONSENT_STATES, KIND_NAMES, RISKS

    entry_type = ENTRY_TYPES.get(event.kind, "")
    sender, recipient = entry_parties(event)
    return {
        "entry_type": entry_type,
        "entry_id": event.event_id,
        "recorded_by": event.agency,
        "sender": sender,
        "recipient": recipient,
        "kind": KIND_NAMES.get(event.message_kind, "unspecified"),
        "purpose": event.purpose,
        "lawful_basis": event.lawful_basis,
        "consent_id": event.consent.consent_id,
        "consent_state": CONSENT_STATES.get(event.consent.state, "unspecified"),
        "risk": RISKS.get(event.risk, "unspecified"),
        "subject_ref": event.subject_ref,
        "case_ref": event.case_ref,
        "categories": ",".join(event.data_categories),
        "forbidden": ",".join(event.forbidden_categories),
        "policy_version": event.policy_version,
        "rule": event.rule,
        "reason": event.reason,
        "in_reply_to": event.envelope_id,
        "staff_id": event.staff_id,
        "occurred_at_ms": event.occurred_at_ms,
        "verified": True,
        "signed": signed_event.hex(),
    }


def mismatches(entry: dict, expected: dict) -> list[str]:
    """The names of the entry's fields that are not what its signed record gives."""
    out = []
    for name, want in expected.items():
        got = entry.get(name)
        if isinstance(got, list):
            got = ",".join(got)
        if got != want:
            out.append(name)
    return out
