"""Envelopes: sealing (SPEC.md §6.3) and receiving, with every check of §8 and its reason code."""

import os
import time
from dataclasses import dataclass, field
from typing import Callable

import pyrage
from google.protobuf.message import DecodeError
from pyrage import x25519

from . import consent as consent_mod
from . import grammar, risk as risk_mod
from .common import Refused, sha256
from .directory import Directory
from .keys import KeyFile, age_key_id
from .names import link_token
from .policy import Policy
from .protos import (
    CONSENT_STATES, CONSENT_STATE_NUMBERS, KIND_NAMES, RISKS, RISK_NUMBERS,
    Envelope, Header, Payload, body_kind, carried, kind_token, minimise,
)

ENVELOPE_TAG = b"hub.v1.envelope\0"
DEFAULT_CLOCK_SKEW_MS = 600_000

# §8's table of every reason code (§10): the layer that refused, by reason code. The policy's
# own refusals name the policy rule that decided; not_receivable names roles.<role>.receives.
_RULES = {
    "malformed": "wire", "malformed_payload": "wire", "bad_clear_field": "wire",
    "unknown_sender": "crypto", "unknown_signing_key": "crypto", "retired_signing_key": "crypto",
    "bad_signature": "crypto", "payload_digest_mismatch": "crypto", "decrypt_failed": "crypto",
    "unknown_recipient_key": "crypto",
    "suspended_sender": "directory",
    "not_addressed_to_us": "crypto",
    "misrouted": "transport", "replayed": "transport", "clock_skew": "transport",
    "kind_mismatch": "declared-categories", "undeclared_categories": "declared-categories",
    "unproven_risk": "risk",
    "handler_panic": "receiver",
    "content_in_clear": "wire",
}
# §8: reasons marked "violation" (besides the policy decision's own reasons at step 9).
_VIOLATIONS = {"bad_clear_field", "without_consent_unjustified", "not_receivable", "malformed_payload", "kind_mismatch", "undeclared_categories", "unproven_risk", "content_in_clear"}


def message_subject(sender: str, recipient: str, kind: int) -> str:
    """§7: hub.v1.msg.<sender>.<recipient>.<kind subject token>."""
    return f"hub.v1.msg.{sender}.{recipient}.{kind_token(kind)}"


def uuid7(now_ms: int | None = None) -> str:
    """A UUIDv7 (RFC 9562 §5.7): 48 bits of Unix milliseconds, version 7, random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    value[6] = 0x70 | (value[6] & 0x0F)
    value[8] = 0x80 | (value[8] & 0x3F)
    h = value.hex()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def now_ms() -> int:
    return int(time.time() * 1000)


# §6.4: the statuses a content-free receipt may carry (AckStatus numbers).
CONTENT_FREE_STATUSES = (1, 5)  # received, opened
REFERRAL_ACK = 14


def content_free_payload(in_reply_to: str, status: int) -> bytes:
    """§6.4: the 42 bytes of a content-free receipt's payload, written from the byte layout the
    spec gives (not by a protobuf library), so the two implementations check each other."""
    return b"\x72\x28\x0a\x24" + in_reply_to.encode("ascii") + b"\x10" + bytes([status])


def is_content_free(kind: int, in_reply_to: str, plain: bytes) -> bool:
    """§6.4: whether `plain` is a content-free receipt's payload answering `in_reply_to`."""
    return kind == REFERRAL_ACK and grammar.is_envelope_id(in_reply_to) and any(plain == content_free_payload(in_reply_to, s) for s in CONTENT_FREE_STATUSES)


@dataclass
class Agent:
    """One agency as the protocol sees it: its secrets and the partnership files it runs."""

    keys: KeyFile
    directory: Directory
    policy: Policy

    @property
    def id(self) -> str:
        return self.keys.agency

    @property
    def role(self) -> str:
        return self.directory.agencies[self.id].role


# ---------------------------------------------------------------- sealing (§6.3)


@dataclass
class Sealed:
    envelope: bytes
    header: object  # the Header message
    header_bytes: bytes
    subject: str
    envelope_id: str
    categories: list[str]
    removed: list[str]
    rule: str


def seal(
    agent: Agent,
    recipient: str,
    payload,
    purpose: str,
    lawful_basis: str,
    risk: str = "unspecified",
    consent_state: str = "unspecified",
    consent_id: str = "",
    consent_recorded_by: str = "",
    consent_record: dict | None = None,
    subject_ref: str = "",
    case_ref: str = "",
    in_reply_to: str = "",
    without_consent: tuple[str, str] | None = None,
    created_at_ms: int | None = None,
    envelope_id: str | None = None,
) -> Sealed:
    """Seals `payload` (a Payload message, not changed) from `agent` to `recipient`. Raises
    Refused with the policy's, the consent check's or the risk check's reason when the send is
    not allowed (a payload's DASH summary is signed beforehand, `risk.sign_summary`).
    `consent_record`: the current record the consent tag relies on, as the sender holds it.
    `without_consent`: (officer staff id, rationale code) for a send allowed only without it."""
    created = now_ms() if created_at_ms is None else created_at_ms
    envelope_id = envelope_id or uuid7(created)
    directory, policy = agent.directory, agent.policy
    kind = body_kind(payload)
    # 1. clear fields, both parties, the body.
    if kind == 0:
        raise ValueError("the payload has no body")
    checks = [
        (grammar.is_envelope_id(envelope_id), "envelope_id"),
        (grammar.is_policy_token(purpose), "purpose"),
        (grammar.is_policy_token(lawful_basis), "lawful_basis"),
        (subject_ref == "" or grammar.is_subject_ref(subject_ref), "subject_ref"),
        (case_ref == "" or grammar.is_case_ref(case_ref), "case_ref"),
        (in_reply_to == "" or grammar.is_envelope_id(in_reply_to), "in_reply_to"),
        (consent_id == "" or grammar.is_consent_id(consent_id), "consent id"),
        (consent_recorded_by == "" or consent_recorded_by in directory.agencies, "consent recorded_by"),
        (consent_state in CONSENT_STATE_NUMBERS, "consent state"),
        (risk in RISK_NUMBERS, "risk"),
    ]
    for ok, what in checks:
        if not ok:
            raise ValueError(f"{what} is not of its grammar (SPEC §3.1)")
    me, them = directory.get(agent.id), directory.get(recipient)
    if me is None or them is None:
        raise ValueError("sender and recipient must be agencies of the directory")
    if me.suspended_at(created) or them.suspended_at(created):
        raise Refused("suspended", "the sender or the recipient is suspended", "directory")
    # 2. the policy, with what the payload carries before minimisation.
    categories = carried(payload)
    decision = policy.decide(me.role, them.role, KIND_NAMES[kind], purpose, lawful_basis, consent_state, risk, categories)
    if not decision.allowed:
        raise Refused(decision.reason, decision.sentence, decision.rule)
    officer = rationale = ""
    if decision.without_consent:
        if without_consent is None:
            raise Refused("without_consent_unjustified", "sharing without consent needs an officer and a rationale", decision.rule)
        officer, rationale = without_consent
        if not grammar.is_staff_id(officer) or rationale not in policy.rationales:
            raise Refused("without_consent_unjustified", "the officer is not a staff id or the rationale not a code of [rationales]", decision.rule)
    # The header's subject: a link token for a role without the subject key (§5).
    header_subject = subject_ref
    if subject_ref and not policy.holds_subject_key(them.role):
        header_subject = link_token(agent.keys.subject_key, recipient, subject_ref)
    # 3. the consent record relied on (§13), judged now.
    if consent_id or consent_state == "given":
        consent_mod.check(consent_id, consent_state, consent_record, subject_ref, recipient, them.role, purpose, created)
    # 4. minimise for the recipient's role.
    minimised = Payload()
    minimised.CopyFrom(payload)
    removed = minimise(minimised, lambda c: policy.receivable(them.role, c))
    # 5. age, binary format, to the recipient's current key alone; a content-free receipt
    # (§6.4) goes signed but unencrypted.
    plain = minimised.SerializeToString()
    in_clear = is_content_free(kind, in_reply_to, plain)
    sealed_payload = plain if in_clear else pyrage.encrypt(plain, [x25519.Recipient.from_str(them.age_recipient)])
    # 6. the header.
    header = Header(
        envelope_id=envelope_id,
        sender=agent.id,
        recipient=recipient,
        kind=kind,
        purpose=purpose,
        lawful_basis=lawful_basis,
        risk=RISK_NUMBERS[risk],
        subject_ref=header_subject,
        case_ref=case_ref,
        data_categories=sorted(carried(minimised)),
        payload_digest=sha256(sealed_payload),
        policy_version=policy.version,
        policy_rule=decision.rule,
        created_at_ms=created,
        signing_key_id=agent.keys.signing_key.key_id,
        recipient_key_id="" if in_clear else age_key_id(them.age_recipient),
        in_reply_to=in_reply_to,
        shared_without_consent=decision.without_consent,
        without_consent_officer=officer,
        without_consent_rationale=rationale,
        payload_in_clear=in_clear,
    )
    header.consent.consent_id = consent_id
    header.consent.state = CONSENT_STATE_NUMBERS[consent_state]
    header.consent.recorded_by = consent_recorded_by
    # 7. the recipient's own risk check (§6.5), made here first: nothing unproven is sent.
    risk_mod.check(directory, header, minimised, policy.receivable(them.role, "risk.dash"))
    # 8. sign the header bytes; 9. the envelope.
    header_bytes = header.SerializeToString()
    signature = agent.keys.signing_key.sign(ENVELOPE_TAG + header_bytes)
    envelope = Envelope(header=header_bytes, sealed_payload=sealed_payload, signature=signature).SerializeToString()
    return Sealed(envelope, header, header_bytes, message_subject(agent.id, recipient, kind), envelope_id, list(header.data_categories), sorted(removed), decision.rule)


# ---------------------------------------------------------------- receiving (§8)


class Rejected(Refused):
    """A refused envelope: `reason` (§8), `rule` (§10), whether it is a violation, and the
    header when it passed checks 1-5 (only then may an event name the envelope)."""

    def __init__(self, reason: str, detail: str = "", rule: str = "", violation: bool = False, header=None):
        super().__init__(reason, detail, rule or _RULES.get(reason, ""))
        self.violation = violation or reason in _VIOLATIONS
        self.header = header


@dataclass
class Opened:
    header: object
    payload: object
    stream_seq: int
    categories: set[str] = field(default_factory=set)


class Receiver:
    """Receiver R: runs §8's checks in order on each message from its consumer.

    `consent_record(recorded_by, consent_id)` returns the current verified record the bucket
    holds now (§13), or None. `seen` maps envelope ids stored to their stream sequence."""

    def __init__(self, agent: Agent, consent_record: Callable[[str, str], dict | None] | None = None, clock_skew_ms: int = DEFAULT_CLOCK_SKEW_MS):
        # consent_record None: no bucket to read, so step 13 cannot run (only the test
        # vectors open an envelope so: envelope.json gives no record for its consent tag).
        self.agent = agent
        self.consent_record = consent_record
        self.clock_skew_ms = clock_skew_ms
        self.seen: dict[str, int] = {}

    def receive(self, data: bytes, subject: str, broker_time_ms: int, stream_seq: int = 0, store: bool = True) -> Opened:
        agent, directory, policy = self.agent, self.agent.directory, self.agent.policy
        # 1. decode; an envelope id, sender and recipient named.
        try:
            envelope = Envelope.FromString(data)
            header = Header.FromString(envelope.header)
        except DecodeError:
            raise Rejected("malformed", "the envelope or its header does not decode") from None
        if not header.envelope_id or not header.sender or not header.recipient:
            raise Rejected("malformed", "the header names no envelope id, sender or recipient")
        # 2-3. sender, suspension, key, signature: judged at the broker's time.
        try:
            sender = directory.verify_signature(header.sender, header.signing_key_id, ENVELOPE_TAG + envelope.header, envelope.signature, broker_time_ms)
        except Refused as e:
            raise Rejected(e.reason, e.detail) from None
        # 4. the digest binds the ciphertext to the signed header.
        if sha256(envelope.sealed_payload) != header.payload_digest:
            raise Rejected("payload_digest_mismatch", "SHA-256 of sealed_payload is not the header's payload_digest")
        # 5. every clear field of its grammar.
        bad = _bad_clear_field(header, directory)
        if bad:
            raise Rejected("bad_clear_field", f"{bad} is not of its grammar")
        verified = header  # from here on an event may name the envelope
        # 6. the claimed time near the broker's.
        if abs(header.created_at_ms - broker_time_ms) > self.clock_skew_ms:
            raise Rejected("clock_skew", "created_at_ms is outside the window of the broker's time", header=verified)
        # 7-8. for us, to one of our keys.
        if header.recipient != agent.id:
            raise Rejected("not_addressed_to_us", f"addressed to {header.recipient}", header=verified)
        if not header.payload_in_clear and header.recipient_key_id not in directory.age_key_ids(agent.id):
            raise Rejected("unknown_recipient_key", f"{header.recipient_key_id} is none of our age keys", header=verified)
        # 9. our own policy decision on the declared facts.
        # A kind outside §6.1 is decided as "unspecified", which no rule names.
        kind_name = KIND_NAMES.get(header.kind, "unspecified")
        consent_state = CONSENT_STATES.get(header.consent.state, "unspecified")
        risk = RISKS.get(header.risk, "unspecified")
        declared = set(header.data_categories)
        decision = policy.decide(sender.role, agent.role, kind_name, header.purpose, header.lawful_basis, consent_state, risk, declared)
        if not decision.allowed:
            raise Rejected(decision.reason, decision.sentence, decision.rule, violation=True, header=verified)
        if header.shared_without_consent and (not grammar.is_staff_id(header.without_consent_officer) or header.without_consent_rationale not in policy.rationales):
            raise Rejected("without_consent_unjustified", "shared without consent with no officer or no rationale code of our policy", decision.rule, header=verified)
        not_receivable = sorted(c for c in declared if not policy.receivable(agent.role, c))
        if not_receivable:
            raise Rejected("not_receivable", f"{agent.role} may not receive {', '.join(not_receivable)}", f"roles.{agent.role}.receives", header=verified)
        # 10. open (a content-free receipt's payload is in clear), decode, the body's kind,
        # nothing undeclared, and nothing in clear but a content-free receipt.
        if header.payload_in_clear:
            plain = envelope.sealed_payload
        else:
            try:
                plain = pyrage.decrypt(envelope.sealed_payload, agent.keys.age_identities())
            except pyrage.DecryptError:
                raise Rejected("decrypt_failed", "none of our age identities opens the payload", header=verified) from None
        try:
            payload = Payload.FromString(plain)
        except DecodeError:
            raise Rejected("malformed_payload", "the payload does not decode", header=verified) from None
        if body_kind(payload) != header.kind:
            raise Rejected("kind_mismatch", "the payload's body is not the header's kind", header=verified)
        categories = carried(payload)
        undeclared = sorted(categories - declared)
        if undeclared:
            raise Rejected("undeclared_categories", f"the payload carries {', '.join(undeclared)} undeclared", header=verified)
        if header.payload_in_clear and not is_content_free(header.kind, header.in_reply_to, plain):
            raise Rejected("content_in_clear", "a payload sent unencrypted is not a content-free receipt", header=verified)
        # 11. the risk its DASH summary proves (§6.5).
        try:
            risk_mod.check(directory, header, payload, policy.receivable(agent.role, "risk.dash"))
        except Refused as e:
            raise Rejected(e.reason, e.detail, e.rule, header=verified) from None
        # 12. the subject it came on.
        expected = message_subject(header.sender, header.recipient, header.kind).split(".")
        got = subject.split(".")
        if got != expected:
            names = ["", "", "", "sender", "recipient", "kind"]
            wrong = next((names[i] for i in range(min(len(got), len(expected))) if got[i] != expected[i] and names[i]), "subject")
            raise Rejected("misrouted", f"the {wrong} token of the subject is not the signed header's", header=verified)
        # 13. the consent record relied on, as the bucket holds it now, at created_at_ms.
        if header.consent.consent_id and self.consent_record is not None:
            record = self.consent_record(header.consent.recorded_by, header.consent.consent_id)
            try:
                consent_mod.check(header.consent.consent_id, consent_state, record, header.subject_ref, agent.id, agent.role, header.purpose, header.created_at_ms)
            except Refused as e:
                raise Rejected(e.reason, e.detail, "consent-record", header=verified) from None
        # 14. an envelope id stored already under another stream position.
        earlier = self.seen.get(header.envelope_id)
        if earlier is not None and earlier != stream_seq:
            raise Rejected("replayed", "this envelope id was stored already", header=verified)
        if store:
            self.seen[header.envelope_id] = stream_seq
        return Opened(header, payload, stream_seq, categories)


def _bad_clear_field(h, directory: Directory) -> str | None:
    """§8 step 5: the name of the first header field not of its grammar, or None."""
    g = grammar
    fields = [
        ("envelope_id", g.is_envelope_id(h.envelope_id)),
        ("sender", g.is_agency_id(h.sender)),
        ("recipient", g.is_agency_id(h.recipient)),
        ("signing_key_id", g.is_key_id(h.signing_key_id)),
        # Empty exactly when the payload travels in clear (§6.4).
        ("recipient_key_id", h.recipient_key_id == "" if h.payload_in_clear else g.is_key_id(h.recipient_key_id)),
        ("purpose", g.is_policy_token(h.purpose)),
        ("lawful_basis", g.is_policy_token(h.lawful_basis)),
        ("policy_version", g.is_policy_token(h.policy_version)),
        ("policy_rule", g.is_policy_token(h.policy_rule)),
        ("data_categories", all(g.is_policy_token(c) for c in h.data_categories)),
        ("without_consent_rationale", h.without_consent_rationale == "" or g.is_policy_token(h.without_consent_rationale)),
        ("subject_ref", h.subject_ref == "" or g.is_subject_ref(h.subject_ref) or g.is_link_token(h.subject_ref)),
        ("case_ref", h.case_ref == "" or g.is_case_ref(h.case_ref)),
        ("in_reply_to", h.in_reply_to == "" or g.is_envelope_id(h.in_reply_to)),
        ("consent.consent_id", h.consent.consent_id == "" or g.is_consent_id(h.consent.consent_id)),
        ("consent.recorded_by", h.consent.recorded_by == "" or (g.is_agency_id(h.consent.recorded_by) and h.consent.recorded_by in directory.agencies)),
        ("without_consent_officer", h.without_consent_officer == "" or g.is_staff_id(h.without_consent_officer)),
    ]
    return next((name for name, ok in fields if not ok), None)
