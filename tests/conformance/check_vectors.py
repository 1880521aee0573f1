#!/usr/bin/env python3
"""Checks every test vector file of tests/vectors (SPEC.md §14) against hubspec, the Python
implementation written from SPEC.md.

    check_vectors.py DIR

Prints one line per vector (`ok` or `FAIL`, what and why) and a total. Exits non-zero on any
mismatch, on a vector file it does not know, and on a file that the vectors' README.md or
SPEC.md §14 lists and that is missing: a checker that skips silently would prove nothing. Besides reproducing each
expected output, every file gets a few negative checks (a flipped byte, a wrong key) that must
fail, so a verifier that accepts everything cannot pass.
"""

import base64
import json
import re
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pyrage import x25519  # noqa: E402

from hubspec import checkpoint as cpmod  # noqa: E402
from hubspec import consent, envelope, events, ledger, merkle, names, protos, risk  # noqa: E402
from hubspec.common import Refused, sha256  # noqa: E402
from hubspec.directory import Directory  # noqa: E402
from hubspec.keys import KeyFile, SigningKey, key_id, verify_strict  # noqa: E402
from hubspec.policy import Deadlines, Policy  # noqa: E402
from hubspec.signed_files import SignatureFile, signed_message, verify_file  # noqa: E402


class Checker:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = ""):
        if ok:
            self.passed += 1
            print(f"ok    {name}")
        else:
            self.failed += 1
            print(f"FAIL  {name}{': ' + detail if detail else ''}")

    def equal(self, name: str, got, want):
        self.check(name, got == want, f"got {got!r}, want {want!r}")

    def raises(self, name: str, fn, exc=(ValueError, Refused)):
        try:
            fn()
        except exc as e:
            self.check(name, True)
            return e
        except Exception as e:  # noqa: BLE001
            self.check(name, False, f"raised {type(e).__name__}: {e}, not a refusal")
            return None
        self.check(name, False, "accepted, must be refused")
        return None


def flip(data: bytes, index: int = 0) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


class Vectors:
    """The shared partnership of every file (README: the one in signed_files.json)."""

    def __init__(self, root: Path, c: Checker):
        self.root = root
        self.c = c
        self.cache = {}

    def load(self, name):
        if name not in self.cache:
            self.cache[name] = json.loads((self.root / name).read_text(encoding="utf-8"))
        return self.cache[name]

    @property
    def directory(self) -> Directory:
        return Directory(self.load("signed_files.json")["directory"]["text"])

    @property
    def policy(self) -> Policy:
        return Policy(self.load("signed_files.json")["policy"]["text"])

    def seed_of(self, public_hex: str) -> SigningKey:
        for k in self.load("key_ids.json")["ed25519"]:
            if k["public"] == public_hex:
                return SigningKey.from_hex(k["seed"])
        raise KeyError("no seed in key_ids.json for that public key")

    def identity_of(self, recipient: str) -> str:
        for k in self.load("key_ids.json")["age"]:
            if k["recipient"] == recipient:
                return k["identity"]
        raise KeyError("no identity in key_ids.json for that recipient")

    def agent(self, agency_id: str, age_identity: str | None = None) -> envelope.Agent:
        """An Agent of the vector partnership, its secrets from key_ids.json (and the subject
        key of subject_refs.json when its role holds one)."""
        d = self.directory
        a = d.agencies[agency_id]
        policy = self.policy
        subject_key = bytes.fromhex(self.load("subject_refs.json")["subject_key"]) if policy.holds_subject_key(a.role) else None
        retired = [self.identity_of(r.age_recipient) for r in a.retired_keys]
        keys = KeyFile(agency_id, age_identity or self.identity_of(a.age_recipient), self.seed_of(a.signing_key), subject_key, retired)
        return envelope.Agent(keys, d, policy)


# ---------------------------------------------------------------- one function per file


def check_key_ids(v: Vectors, c: Checker):
    data = v.load("key_ids.json")
    for i, k in enumerate(data["ed25519"]):
        key = SigningKey.from_hex(k["seed"])
        c.equal(f"key_ids ed25519[{i}] public key from seed", key.public_hex, k["public"])
        c.equal(f"key_ids ed25519[{i}] key id", key_id("ed25519", k["public"]), k["key_id"])
    for i, k in enumerate(data["age"]):
        recipient = str(x25519.Identity.from_str(k["identity"]).to_public())
        c.equal(f"key_ids age[{i}] recipient from identity", recipient, k["recipient"])
        c.equal(f"key_ids age[{i}] key id", key_id("age", k["recipient"]), k["key_id"])
    # §1's strict verification, again with keys of this file (ed25519.json has the vectors):
    # with the neutral element as public key and as R, and S = 0, the cofactorless equation
    # holds for every message (OpenSSL, behind `cryptography`, accepts it); and S + L is the
    # same signature in a non-canonical form.
    neutral = bytes([1]) + bytes(31)
    c.check("strict Ed25519: a small-order public key and R are refused", not verify_strict(neutral, b"any message", neutral + bytes(32)))
    key = SigningKey.from_hex(data["ed25519"][0]["seed"])
    good = key.sign(b"m")
    big_s = (int.from_bytes(good[32:], "little") + 2**252 + 27742317777372353535851937790883648493).to_bytes(32, "little")
    c.check("strict Ed25519: a genuine signature verifies", verify_strict(key.public, b"m", good))
    c.check("strict Ed25519: a non-canonical S (S + L) is refused", not verify_strict(key.public, b"m", good[:32] + big_s))
    # The id is of the text form, not the 32 bytes: hashing the bytes must give another id.
    k = data["ed25519"][0]
    c.check("key_ids negative: the id of the raw bytes differs", "ed25519:" + sha256(bytes.fromhex(k["public"])).hex()[:16] != k["key_id"])


def check_subject_refs(v: Vectors, c: Checker):
    data = v.load("subject_refs.json")
    key = bytes.fromhex(data["subject_key"])
    for i, f in enumerate(data["folding"]):
        c.equal(f"subject_refs folding[{i}]", names.fold(f["name"]), f["folded"])
    for i, s in enumerate(data["subject_refs"]):
        c.equal(f"subject_refs subject_refs[{i}]", names.subject_ref(key, s["full_name"], s["date_of_birth"]), s["subject_ref"])
    t = data["date_of_birth_trimmed"]
    c.equal("subject_refs date_of_birth_trimmed", names.subject_ref(key, t["full_name"], t["date_of_birth"]), t["subject_ref"])
    for i, r in enumerate(data["refused"]):
        c.raises(f"subject_refs refused[{i}]", lambda r=r: names.subject_ref(key, r["full_name"], r["date_of_birth"]), ValueError)
    for i, lt in enumerate(data["link_tokens"]):
        c.equal(f"subject_refs link_tokens[{i}]", names.link_token(key, lt["recipient"], lt["subject_ref"]), lt["link_token"])
    s = data["subject_refs"][0]
    c.check("subject_refs negative: another key gives another ref", names.subject_ref(flip(key), s["full_name"], s["date_of_birth"]) != s["subject_ref"])


def check_signed_files(v: Vectors, c: Checker):
    data = v.load("signed_files.json")
    d, p = data["directory"], data["policy"]
    dtext, ptext = d["text"].encode(), p["text"].encode()
    directory = Directory(d["text"])
    c.equal("signed_files directory digest", directory.digest, d["digest"])
    dsig = SignatureFile.parse(json.dumps(d["sig"]))
    psig = SignatureFile.parse(json.dumps(p["sig"]))
    c.equal("signed_files directory signed message prefix", signed_message("directory", dtext, dsig.sequence)[: -len(dtext)].hex(), d["signed_message_prefix"])
    c.equal("signed_files policy signed message prefix", signed_message("policy", ptext, psig.sequence)[: -len(ptext)].hex(), p["signed_message_prefix"])
    try:
        verify_file("directory", dtext, json.dumps(d["sig"]))
        c.check("signed_files directory verifies (trusted on first load)", True)
    except ValueError as e:
        c.check("signed_files directory verifies (trusted on first load)", False, str(e))
    try:
        verify_file("policy", ptext, json.dumps(p["sig"]), trusted=directory)
        c.check("signed_files policy verifies against the directory", True)
    except ValueError as e:
        c.check("signed_files policy verifies against the directory", False, str(e))
    try:
        legacy = verify_file("policy", ptext, json.dumps(data["policy_legacy_sig"]), trusted=directory)
        c.check("signed_files policy_legacy_sig verifies as sequence 0 with member policy_version", legacy.sequence == 0 and legacy.version == data["policy_legacy_sig"]["policy_version"])
    except ValueError as e:
        c.check("signed_files policy_legacy_sig verifies as sequence 0", False, str(e))
    # Ed25519 is deterministic: the IG seed reproduces the signatures exactly.
    ig = directory.ig()
    c.equal("signed_files directory signature reproduced", v.seed_of(ig.signing_key).sign(signed_message("directory", dtext, dsig.sequence)).hex(), dsig.signature)
    c.equal("signed_files policy signature reproduced", v.seed_of(ig.signing_key).sign(signed_message("policy", ptext, psig.sequence)).hex(), psig.signature)
    for i, r in enumerate(data["refused"]):
        text = dtext if r["file"] == "directory" else ptext
        c.raises(f"signed_files refused[{i}] ({r['why']})", lambda r=r, text=text: verify_file(r["file"], text, json.dumps(r["sig"]), trusted=directory), ValueError)
    # Negative checks: a changed text, a replayed older sequence, the same sequence with another text.
    c.raises("signed_files negative: a changed policy text", lambda: verify_file("policy", ptext + b"\n", json.dumps(p["sig"]), trusted=directory), ValueError)
    c.raises("signed_files negative: an older sequence put back", lambda: verify_file("policy", ptext, json.dumps(p["sig"]), trusted=directory, in_force=(psig.sequence + 1, psig.sha256)), ValueError)
    c.raises("signed_files negative: the same sequence with another text", lambda: verify_file("policy", ptext, json.dumps(p["sig"]), trusted=directory, in_force=(psig.sequence, "00" * 32)), ValueError)
    wrong_seq = dict(p["sig"], sequence=psig.sequence + 1)
    c.raises("signed_files negative: a signature moved to another sequence", lambda: verify_file("policy", ptext, json.dumps(wrong_seq), trusted=directory), ValueError)
    # §4.2 [deadlines]: the vector policy's, a member left out, and members refused.
    policy = Policy(p["text"])
    c.check("signed_files policy has a [deadlines] table", "[deadlines]" in p["text"])
    c.equal("signed_files policy deadlines", policy.deadlines, Deadlines(48, 48, 24, 72))
    c.equal("signed_files deadlines: a member left out takes its default", Deadlines.parse({"acknowledge_hours": 12}), Deadlines(acknowledge_hours=12))
    c.raises("signed_files negative: a [deadlines] member §4.2 does not name", lambda: Deadlines.parse({"review_hours": 12}), ValueError)
    c.raises("signed_files negative: a negative deadline", lambda: Deadlines.parse({"acknowledge_hours": -1}), ValueError)


def _header_fields(h) -> dict:
    """A decoded Header as envelope.json's header_fields writes it (enums as numbers, bytes
    as hex, empty values left out)."""
    out = {}
    for fd, value in h.ListFields():
        if fd.name == "consent":
            out["consent"] = {f.name: val for f, val in value.ListFields()}
        elif isinstance(value, bytes):
            out[fd.name] = value.hex()
        elif fd.name == "data_categories":
            out[fd.name] = list(value)
        else:
            out[fd.name] = value
    return out


def check_envelope(v: Vectors, c: Checker):
    data = v.load("envelope.json")
    header_bytes = bytes.fromhex(data["header"])
    sealed_payload = bytes.fromhex(data["sealed_payload"])
    signature = bytes.fromhex(data["signature"])
    env_bytes = bytes.fromhex(data["envelope"])
    header = protos.Header.FromString(header_bytes)
    c.equal("envelope header decodes to header_fields", _header_fields(header), data["header_fields"])
    # Our encoder writes the same header bytes from the same fields.
    rebuilt = protos.Header()
    for name, value in data["header_fields"].items():
        if name == "consent":
            for k, val in value.items():
                setattr(rebuilt.consent, k, val)
        elif name == "data_categories":
            rebuilt.data_categories.extend(value)
        elif name == "payload_digest":
            rebuilt.payload_digest = bytes.fromhex(value)
        else:
            setattr(rebuilt, name, value)
    c.equal("envelope header re-encoded from header_fields", rebuilt.SerializeToString().hex(), data["header"])
    c.equal("envelope signed message", (envelope.ENVELOPE_TAG + header_bytes).hex(), data["signed_message"])
    sender = v.directory.agencies[data["sender"]]
    named = sender.signing_key_named(header.signing_key_id)
    c.check("envelope signature verifies with the sender's key", named is not None and verify_strict(bytes.fromhex(named[0]), envelope.ENVELOPE_TAG + header_bytes, signature))
    if named:
        c.equal("envelope signature reproduced", v.seed_of(named[0]).sign(envelope.ENVELOPE_TAG + header_bytes).hex(), data["signature"])
    c.equal("envelope payload digest", sha256(sealed_payload), header.payload_digest)
    c.equal("envelope encoding", protos.Envelope(header=header_bytes, sealed_payload=sealed_payload, signature=signature).SerializeToString().hex(), data["envelope"])
    c.check("envelope sealed_payload is binary age (not armoured)", sealed_payload.startswith(b"age-encryption.org/v1\n"))
    c.equal("envelope subject", envelope.message_subject(header.sender, header.recipient, header.kind), data["subject"])
    # It opens as the recipient, at the broker's time, to exactly the payload.
    recipient = v.agent(data["recipient"], data["recipient_age_identity"])
    receiver = envelope.Receiver(recipient, consent_record=None, clock_skew_ms=data["clock_skew_window_ms"])
    try:
        opened = receiver.receive(env_bytes, data["subject"], data["broker_ms"], 1, store=False)
        c.equal("envelope opens to exactly payload", opened.payload.SerializeToString().hex(), data["payload"])
        c.equal("envelope payload carries exactly payload_categories", sorted(opened.categories), sorted(data["payload_categories"]))
        c.equal("envelope header declares what the payload carries", sorted(header.data_categories), sorted(opened.categories))
        # The payload is already minimised for the recipient's role: minimising removes nothing.
        again = protos.Payload.FromString(bytes.fromhex(data["payload"]))
        removed = protos.minimise(again, lambda cat: recipient.policy.receivable(recipient.role, cat))
        c.check("envelope payload is minimised for the recipient's role", not removed, f"would remove {sorted(removed)}")
    except envelope.Rejected as e:
        c.check("envelope opens as the recipient", False, f"refused {e.reason}: {e.detail}")
    for i, r in enumerate(data["refused"]):
        name = f"envelope refused[{i}] {r['case']} -> {r['reason']}"
        try:
            envelope.Receiver(recipient, consent_record=None, clock_skew_ms=data["clock_skew_window_ms"]).receive(bytes.fromhex(r["envelope"]), data["subject"], data["broker_ms"], 1)
            c.check(name, False, "opened, must be refused")
        except envelope.Rejected as e:
            c.equal(name, e.reason, r["reason"])
    # Negative checks of our own, beyond the vectors' cases.
    rx = envelope.Receiver(recipient, consent_record=None, clock_skew_ms=data["clock_skew_window_ms"])
    rx.receive(env_bytes, data["subject"], data["broker_ms"], 1)
    try:
        rx.receive(env_bytes, data["subject"], data["broker_ms"], 2)
        c.check("envelope negative: the same envelope at another stream position is replayed", False, "opened twice")
    except envelope.Rejected as e:
        c.equal("envelope negative: the same envelope at another stream position is replayed", e.reason, "replayed")
    try:
        envelope.Receiver(recipient, consent_record=None).receive(env_bytes, data["subject"].replace("housing_idva_referral", "referral_ack"), data["broker_ms"], 1)
        c.check("envelope negative: on another kind's subject it is misrouted", False, "opened")
    except envelope.Rejected as e:
        c.equal("envelope negative: on another kind's subject it is misrouted", e.reason, "misrouted")
    other = v.agent(data["sender"])
    try:
        envelope.Receiver(other, consent_record=None).receive(env_bytes, data["subject"], data["broker_ms"], 1)
        c.check("envelope negative: the sender cannot open it", False, "opened")
    except envelope.Rejected as e:
        c.equal("envelope negative: the sender cannot open it (not addressed to it)", e.reason, "not_addressed_to_us")
    # And what hubspec seals, hubspec opens with the same checks (a round trip in the
    # vector partnership, judged now).
    payload = protos.Payload.FromString(bytes.fromhex(data["payload"]))
    sealed = envelope.seal(
        other, data["recipient"], payload, header.purpose, "uk-gdpr-9-2-g-dpa-s1-p18", risk="high", consent_state="not-sought",
        without_consent=("hsg.officer", "serious-harm-imminent"), subject_ref=header.subject_ref, case_ref=header.case_ref,
    )
    fresh = envelope.Receiver(v.agent(data["recipient"], data["recipient_age_identity"]), consent_record=None)
    opened = fresh.receive(sealed.envelope, sealed.subject, envelope.now_ms(), 1)
    c.equal("envelope round trip: hubspec seals what hubspec opens", opened.payload.SerializeToString().hex(), data["payload"])
    check_content_free_receipt(v, c, data, header)


def check_content_free_receipt(v: Vectors, c: Checker, data: dict, referral):
    """§6.4: the IDVA's received receipt for the vector referral, its payload signed in clear."""
    r = data["content_free_receipt"]
    receipt = bytes.fromhex(r["envelope"])
    header = protos.Header.FromString(bytes.fromhex(r["header"]))
    c.equal("receipt payload is §6.4's 42 bytes, written from the spec's layout", r["payload"], envelope.content_free_payload(referral.envelope_id, 1).hex())
    c.check("receipt header is marked in clear and names no recipient key", header.payload_in_clear and header.recipient_key_id == "")
    c.equal("receipt encoding", protos.Envelope(header=bytes.fromhex(r["header"]), sealed_payload=bytes.fromhex(r["payload"]), signature=bytes.fromhex(r["signature"])).SerializeToString().hex(), r["envelope"])
    housing = v.agent(r["recipient"])
    window = data["clock_skew_window_ms"]
    try:
        opened = envelope.Receiver(housing, consent_record=None, clock_skew_ms=window).receive(receipt, r["subject"], data["broker_ms"], 1)
        c.equal("receipt opens to exactly its payload", opened.payload.SerializeToString().hex(), r["payload"])
    except envelope.Rejected as e:
        c.check("receipt opens as the referral's sender", False, f"refused {e.reason}: {e.detail}")
    for i, case in enumerate(r["refused"]):
        name = f"receipt refused[{i}] {case['case']} -> {case['reason']}"
        try:
            envelope.Receiver(housing, consent_record=None, clock_skew_ms=window).receive(bytes.fromhex(case["envelope"]), r["subject"], data["broker_ms"], 1)
            c.check(name, False, "opened, must be refused")
        except envelope.Rejected as e:
            c.equal(name, e.reason, case["reason"])
    # What hubspec sends for the same answer goes in clear too, and a decline stays sealed.
    idva = v.agent(data["recipient"], data["recipient_age_identity"])
    for status, reason, clear in ((1, "", True), (3, "no capacity", False)):
        ack = protos.Payload()
        ack.referral_ack.envelope_id = referral.envelope_id
        ack.referral_ack.status = status
        ack.referral_ack.reason = reason
        sealed = envelope.seal(idva, r["recipient"], ack, header.purpose, header.lawful_basis, subject_ref=header.subject_ref, case_ref=header.case_ref, in_reply_to=referral.envelope_id)
        c.equal(f"hubspec's receipt of status {status} in clear", sealed.header.payload_in_clear, clear)
        opened = envelope.Receiver(housing, consent_record=None).receive(sealed.envelope, sealed.subject, envelope.now_ms(), 1)
        c.equal(f"hubspec's receipt of status {status} opens", opened.payload.referral_ack.status, status)


def check_events(v: Vectors, c: Checker):
    data = v.load("events.json")
    event_bytes = bytes.fromhex(data["event"])
    signed = protos.SignedEvent.FromString(bytes.fromhex(data["signed_event"]))
    c.equal("events SignedEvent.event", signed.event.hex(), data["event"])
    c.equal("events signing_key_id", signed.signing_key_id, data["signing_key_id"])
    c.equal("events signed message", (events.EVENT_TAG + event_bytes).hex(), data["signed_message"])
    c.equal("events signature", signed.signature.hex(), data["signature"])
    try:
        event = events.verify_event(bytes.fromhex(data["signed_event"]), v.directory)
        c.equal("events agency", event.agency, data["agency"])
        c.equal("events subject", events.event_subject(event.agency, event.kind), data["subject"])
        key = v.directory.agencies[event.agency].signing_key_named(signed.signing_key_id)
        c.equal("events signature reproduced", v.seed_of(key[0]).sign(events.EVENT_TAG + event_bytes).hex(), data["signature"])
        c.equal("events signed event re-encoded", events.sign_event(event, v.seed_of(key[0])).hex(), data["signed_event"])
    except Refused as e:
        c.check("events signed event verifies", False, f"{e.reason}: {e.detail}")
    tampered = protos.SignedEvent(event=flip(event_bytes, len(event_bytes) - 1), signature=signed.signature, signing_key_id=signed.signing_key_id)
    c.raises("events negative: a changed event does not verify", lambda: events.verify_event(tampered.SerializeToString(), v.directory))
    for i, case in enumerate(data["refused"]):
        try:
            events.verify_event(bytes.fromhex(case["signed_event"]), v.directory)
            c.check(f"events refused[{i}] ({case['case']})", False, "verified")
        except Refused as e:
            c.equal(f"events refused[{i}] ({case['case']})", e.reason, case["reason"])
    # Other kinds (§10): each verifies, on its kind's subject, with its ledger entry type (§11.1).
    for i, k in enumerate(data["other_kinds"]):
        name = f"events other_kinds[{i}] {k['token']}"
        signed_bytes = bytes.fromhex(k["signed_event"])
        try:
            event = events.verify_event(signed_bytes, v.directory)
        except Refused as e:
            c.check(f"{name} verifies", False, f"{e.reason}: {e.detail}")
            continue
        c.equal(f"{name} event", event.SerializeToString().hex(), k["event"])
        c.equal(f"{name} kind", (event.kind, event.agency), (k["kind"], k["agency"]))
        c.equal(f"{name} token of the kind", events.EVENT_TOKENS.get(event.kind), k["token"])
        c.equal(f"{name} subject", events.event_subject(event.agency, event.kind), k["subject"])
        c.equal(f"{name} ledger entry type", events.ENTRY_TYPES.get(event.kind), k["entry_type"])
        key = v.directory.agencies[event.agency].signing_key_named(k["signing_key_id"])
        c.equal(f"{name} signed event reproduced", events.sign_event(event, v.seed_of(key[0])).hex(), k["signed_event"])
        c.check(f"{name} clear fields of their grammars", events.bad_clear_field(event) is None)


def check_dash(v: Vectors, c: Checker):
    """§6.5: the checklists and bands, the signed summary and its exact signed bytes, and the
    risk check's cases."""
    data = v.load("dash.json")
    directory, policy = v.directory, v.policy
    c.equal("dash checklists", {x["version"]: x["questions"] for x in data["checklists"]}, risk.CHECKLISTS)
    for b in data["bands"]:
        c.equal(f"dash band of score {b['score']}", risk.band_of_score(b["score"]), b["band"])
    summary = protos.payloads_pb2.DashAssessment.FromString(bytes.fromhex(data["summary"]))
    rebuilt = _dash_from_fields(data["summary_fields"])
    c.equal("dash summary re-encoded from summary_fields", rebuilt.SerializeToString().hex(), data["summary"])
    c.equal("dash signed bytes", risk.signed_bytes(summary).hex(), data["signed"])
    c.equal("dash signed message", (risk.DASH_TAG + bytes.fromhex(data["signed"])).hex(), data["signed_message"])
    c.equal("dash signed by", (summary.assessed_by, summary.signing_key_id, summary.signature.hex()), (data["assessed_by"], data["signing_key_id"], data["signature"]))
    assessor = directory.agencies[data["assessed_by"]]
    named = assessor.signing_key_named(summary.signing_key_id)
    c.check("dash signature verifies with the assessing agency's key", named is not None and verify_strict(bytes.fromhex(named[0]), bytes.fromhex(data["signed_message"]), summary.signature))
    if named:
        again = protos.payloads_pb2.DashAssessment()
        again.CopyFrom(summary)
        again.ClearField("signature")
        again.ClearField("signing_key_id")
        again.ClearField("assessed_by")
        risk.sign_summary(again, data["assessed_by"], v.seed_of(named[0]))
        c.equal("dash summary signed afresh with the seed", again.SerializeToString().hex(), data["summary"])
    for i, case in enumerate(data["checks"]):
        header = protos.Header.FromString(bytes.fromhex(case["header"]))
        payload = protos.Payload.FromString(bytes.fromhex(case["payload"]))
        try:
            risk.check(directory, header, payload, policy.receivable(case["recipient_role"], "risk.dash"))
            got = ""
        except Refused as e:
            got = e.reason if e.rule == "risk" else f"{e.reason} (rule {e.rule}, not risk)"
        c.equal(f"dash checks[{i}] {case['case']} -> {case['reason'] or 'proves its risk'}", got, case["reason"])
    _dash_negative(v, c, data, summary)


def _dash_from_fields(fields: dict):
    out = protos.payloads_pb2.DashAssessment()
    for name, value in fields.items():
        if name == "items":
            for item in value:
                out.items.add(**item)
        elif name == "signature":
            out.signature = bytes.fromhex(value)
        else:
            setattr(out, name, value)
    return out


def _dash_negative(v: Vectors, c: Checker, data: dict, summary):
    """Checks of our own: the re-encoding rule, the sender's side of the check."""
    directory = v.directory
    envelope_data = v.load("envelope.json")
    header = protos.Header.FromString(bytes.fromhex(envelope_data["header"]))
    idva_can = v.policy.receivable("idva", "risk.dash")

    def referral(dash=None):
        p = protos.Payload()
        p.idva_referral.reason = "Threats after separation"
        if dash is not None:
            p.idva_referral.dash.CopyFrom(dash)
        return p

    # A field this schema does not know is dropped before the signature is checked (§6.5).
    with_unknown = protos.payloads_pb2.DashAssessment.FromString(bytes.fromhex(data["summary"]) + bytes([0x98, 0x06, 0x01]))
    c.check("dash: protobuf for Python keeps an unknown field", with_unknown.SerializeToString() != summary.SerializeToString())
    c.check("dash: an unknown field is dropped from the signed bytes", risk.signed_bytes(with_unknown).hex() == data["signed"])
    flipped = protos.payloads_pb2.DashAssessment()
    flipped.CopyFrom(summary)
    flipped.signature = flip(summary.signature)
    c.raises("dash negative: a flipped signature byte", lambda: risk.check(directory, header, referral(flipped), idva_can), Refused)
    redated = protos.payloads_pb2.DashAssessment()
    redated.CopyFrom(summary)
    redated.assessed_on = "2026-11-19"
    c.raises("dash negative: a changed assessment date (signed, unlike the answers)", lambda: risk.check(directory, header, referral(redated), idva_can), Refused)
    # The sender makes the recipient's check before signing (§6.3 step 7): hubspec does not
    # seal a high-risk referral without a summary, and seals one with it.
    housing = v.agent(envelope_data["sender"])
    seal = lambda payload, risk_level: envelope.seal(  # noqa: E731
        housing, envelope_data["recipient"], payload, "safeguarding", "uk-gdpr-9-2-g-dpa-s1-p18", risk=risk_level, consent_state="not-sought",
        without_consent=("hsg.officer", "serious-harm-imminent"), subject_ref=header.subject_ref,
    )
    try:
        seal(referral(), "high")
        c.check("dash: hubspec refuses to seal a high-risk referral without a summary", False, "sealed")
    except Refused as e:
        c.equal("dash: hubspec refuses to seal a high-risk referral without a summary", (e.reason, e.rule), ("unproven_risk", "risk"))
    try:
        sealed = seal(referral(summary), "high")
        recipient = v.agent(envelope_data["recipient"], envelope_data["recipient_age_identity"])
        opened = envelope.Receiver(recipient, consent_record=None).receive(sealed.envelope, sealed.subject, envelope.now_ms(), 1)
        c.check("dash: hubspec seals and opens a high-risk referral with its signed summary", risk.summary_of(opened.payload) == summary)
    except Refused as e:
        c.check("dash: hubspec seals and opens a high-risk referral with its signed summary", False, f"{e.reason}: {e.detail}")


def check_consent(v: Vectors, c: Checker):
    data = v.load("consent.json")
    directory = v.directory
    owner, consent_id = data["key"].split(".", 1)
    c.equal("consent owner", owner, data["owner"])
    values = data["values"]
    rejected = 0
    for i, value in enumerate(values):
        try:
            consent.verify_value(value, owner, consent_id, directory)
        except (ValueError, Refused):
            rejected += 1
    c.equal("consent values that do not verify", rejected, data["current"]["rejected"])
    current = consent.current(values, owner, consent_id, directory)
    want = json.loads(json.loads(values[data["current"]["index"]])["record"])
    c.check("consent current revision", current is not None and current == want and current["revision"] == data["current"]["revision"] and current["state"] == data["current"]["state"], f"got {current and (current['revision'], current['state'])}")
    # The owner's seed reproduces the first value's signature exactly.
    first = json.loads(values[0])
    key = directory.agencies[owner].signing_key_named(first["signing_key_id"])
    if key:
        c.equal("consent signature reproduced", v.seed_of(key[0]).sign(consent.TAG + first["record"].encode()).hex(), first["signature"])
    tag = data["tag"]
    for i, chk in enumerate(data["checks"]):
        record = consent.current([values[j] for j in chk["values"]], tag["recorded_by"], tag["consent_id"], directory)
        try:
            consent.check(tag["consent_id"], tag["state"], record, data["subject_ref"], data["recipient"], data["recipient_role"], chk["purpose"], chk["judged_at_ms"])
            got = ""
        except Refused as e:
            got = e.reason
        c.equal(f"consent checks[{i}] {chk['case']}", got, chk["reason"])
    # Negative checks: another subject; the record moved under another key.
    record = consent.current([values[0]], owner, consent_id, directory)
    try:
        consent.check(tag["consent_id"], tag["state"], record, "s-" + "0" * 32, data["recipient"], data["recipient_role"], "safeguarding", data["checks"][0]["judged_at_ms"])
        c.check("consent negative: another subject ref", False, "accepted")
    except Refused as e:
        c.equal("consent negative: another subject ref", e.reason, "consent_subject_mismatch")
    c.raises("consent negative: a value read under another consent id", lambda: consent.verify_value(values[0], owner, "CON-2026-8", directory))


def check_ledger(v: Vectors, c: Checker):
    data = v.load("ledger.json")
    entries = [e["entry"] for e in data["entries"]]
    prev = ledger.ZERO_HASH
    for i, e in enumerate(data["entries"]):
        entry = e["entry"]
        missing = [f for f in ledger.ALL_FIELDS if f not in entry]
        c.check(f"ledger entry {entry.get('seq')} has every field of §11.1", not missing, f"missing {missing}")
        c.equal(f"ledger entry {entry.get('seq')} canonical", ledger.canonical(entry).hex(), e["canonical"])
        c.equal(f"ledger entry {entry.get('seq')} prev_hash", entry["prev_hash"], prev.hex())
        c.equal(f"ledger entry {entry.get('seq')} hash", ledger.entry_hash(entry, prev).hex(), entry["hash"])
        prev = bytes.fromhex(entry["hash"])
    # Entry 3 is envelope.json's disclosure, entry 4 events.json's event: their fields are
    # what the signed records give (§11.1).
    env = v.load("envelope.json")
    header = protos.Header.FromString(bytes.fromhex(env["header"]))
    expected = ledger.fields_from_envelope(header, bytes.fromhex(env["header"]), bytes.fromhex(env["signature"]))
    c.check("ledger entry 3 fields are the envelope's (§11.1)", not ledger.mismatches(entries[2], expected), f"differ: {ledger.mismatches(entries[2], expected)}")
    ev = v.load("events.json")
    event = events.verify_event(bytes.fromhex(ev["signed_event"]), v.directory)
    expected = ledger.fields_from_event(event, bytes.fromhex(ev["signed_event"]))
    c.check("ledger entry 4 fields are the event's (§11.1)", not ledger.mismatches(entries[3], expected), f"differ: {ledger.mismatches(entries[3], expected)}")
    # Then the other kinds of events.json, in order.
    others = ev["other_kinds"]
    c.equal("ledger entries after 4 are events.json's other_kinds", len(entries) - 4, len(others))
    for entry, k in zip(entries[4:], others):
        event = events.verify_event(bytes.fromhex(k["signed_event"]), v.directory)
        expected = ledger.fields_from_event(event, bytes.fromhex(k["signed_event"]))
        c.check(f"ledger entry {entry.get('seq')} ({k['entry_type']}) fields are the event's (§11.1)", not ledger.mismatches(entry, expected), f"differ: {ledger.mismatches(entry, expected)}")
    # Negative checks: any changed field changes the hash; the stream facts are hashed.
    changed = dict(entries[2], purpose="marac")
    c.check("ledger negative: a changed purpose changes the hash", ledger.entry_hash(changed).hex() != entries[2]["hash"])
    changed = dict(entries[2], message_count=2)
    c.check("ledger negative: a changed message_count changes the hash", ledger.entry_hash(changed).hex() != entries[2]["hash"])
    c.raises("ledger negative: a broken chain is found", lambda: ledger.verify_chain([entries[0], entries[2]]), ValueError)


def check_merkle(v: Vectors, c: Checker):
    data = v.load("merkle.json")
    leaves = [merkle.leaf_hash(bytes.fromhex(x)) for x in data["leaves"]]
    roots = {r["size"]: bytes.fromhex(r["root"]) for r in data["roots"]}
    for size, r in sorted(roots.items()):
        c.equal(f"merkle root of size {size}", merkle.root(leaves[:size]).hex(), r.hex())
    for p in data["inclusion"]:
        i, n = p["index"], p["size"]
        path = [bytes.fromhex(h) for h in p["path"]]
        c.equal(f"merkle inclusion path {i} in {n}", [h.hex() for h in merkle.inclusion_path(i, leaves[:n])], p["path"])
        c.check(f"merkle inclusion {i} in {n} verifies", merkle.verify_inclusion(leaves[i], i, n, path, roots[n]))
        c.check(f"merkle inclusion {i} in {n} negative: another leaf fails", not merkle.verify_inclusion(flip(leaves[i]), i, n, path, roots[n]))
    for p in data["consistency"]:
        m, n = p["first"], p["second"]
        proof = [bytes.fromhex(h) for h in p["proof"]]
        c.equal(f"merkle consistency proof {m} to {n}", [h.hex() for h in merkle.consistency_proof(m, leaves[:n])], p["proof"])
        c.check(f"merkle consistency {m} to {n} verifies", merkle.verify_consistency(m, n, roots[m], roots[n], proof))
        if m != n:
            c.check(f"merkle consistency {m} to {n} negative: another first root fails", not merkle.verify_consistency(m, n, flip(roots[m]), roots[n], proof))


def check_ed25519(v: Vectors, c: Checker):
    for i, case in enumerate(v.load("ed25519.json")["cases"]):
        got = verify_strict(bytes.fromhex(case["public"]), bytes.fromhex(case["message"]), bytes.fromhex(case["signature"]))
        c.equal(f"ed25519 cases[{i}] {case['case']}", got, case["valid"])


def check_checkpoint(v: Vectors, c: Checker):
    data = v.load("checkpoint.json")
    directory = v.directory
    ig = directory.ig()
    ig_public = bytes.fromhex(ig.signing_key)
    ig_keys = [bytes.fromhex(k) for k in ig.signing_keys()]
    origin = cpmod.origin_for(ig.id)
    c.equal("checkpoint origin", origin, data["origin"])
    c.equal("checkpoint vkey", cpmod.verifier_key(origin, ig_public), data["vkey"])
    name, public = cpmod.parse_verifier_key(data["vkey"])
    c.check("checkpoint vkey parses to the IG office's key", (name, public) == (origin, ig_public))
    # The tree is ledger.json's entries.
    entries = [e["entry"] for e in v.load("ledger.json")["entries"]]
    leaves = [merkle.leaf_hash(bytes.fromhex(e["hash"])) for e in entries[: data["tree_size"]]]
    c.equal("checkpoint root is the tree of ledger.json's entries", merkle.root(leaves).hex(), data["root"])
    try:
        cp = cpmod.verify_checkpoint_json(data["checkpoint"], origin, ig_keys)
        c.equal("checkpoint (API form) verifies: tree_size", cp.tree_size, data["tree_size"])
        c.equal("checkpoint (API form) verifies: root", cp.root.hex(), data["root"])
        c.equal("checkpoint note reproduced with the IG seed", cpmod.sign_checkpoint(origin, cp.tree_size, cp.root, v.seed_of(ig.signing_key)), data["checkpoint"]["note"])
    except ValueError as e:
        c.check("checkpoint (API form) verifies", False, str(e))
    wrong_size = dict(data["checkpoint"], tree_size=data["tree_size"] + 1)
    c.raises("checkpoint negative: an API form whose tree_size is not the note's", lambda: cpmod.verify_checkpoint_json(wrong_size, origin, ig_keys), ValueError)
    for i, r in enumerate(data["refused"]):
        c.raises(f"checkpoint refused[{i}] {r['case']}", lambda r=r: cpmod.verify_checkpoint(r["note"], origin, ig_keys), ValueError)
    # A line of the IG office's name and key hash that does not verify voids the note, even
    # beside one that does (SPEC 12.4).
    note = data["checkpoint"]["note"]
    sig_line = note.split("\n")[-2]
    raw = base64.b64decode(sig_line.split(" ")[2])
    bad_line = f"{cpmod.EM_DASH} {origin} {base64.b64encode(raw[:4] + flip(raw[4:])).decode()}"
    c.raises("checkpoint negative: a failing IG line beside a good one voids the note", lambda: cpmod.verify_checkpoint(note + bad_line + "\n", origin, ig_keys), ValueError)
    # The witness's cosignature.
    cosigner = directory.agencies[data["cosigner"]]
    co_public = bytes.fromhex(cosigner.signing_key)
    c.equal("checkpoint cosigner_vkey", cpmod.cosigner_verifier_key(cosigner.id, co_public), data["cosigner_vkey"])
    try:
        c.equal("checkpoint cosignature verifies, at cosigned_at", cpmod.verify_cosignature(data["cosigned_note"], cosigner.id, co_public), data["cosigned_at"])
    except ValueError as e:
        c.check("checkpoint cosignature verifies", False, str(e))
    cosigned = cpmod.cosign(note, cosigner.id, v.seed_of(cosigner.signing_key), data["cosigned_at"])
    c.equal("checkpoint cosigned note reproduced", cosigned, data["cosigned_note"])
    c.equal("checkpoint cosignature line", cosigned[len(note) :], data["cosignature"])
    try:
        cpmod.verify_checkpoint(data["cosigned_note"], origin, ig_keys)
        c.check("checkpoint cosigned note still verifies as the IG checkpoint", True)
    except ValueError as e:
        c.check("checkpoint cosigned note still verifies as the IG checkpoint", False, str(e))
    c.check("checkpoint cosignature negative: another witness's name does not verify", _refuses(lambda: cpmod.verify_cosignature(data["cosigned_note"], "idva-vector", bytes.fromhex(directory.agencies["idva-vector"].signing_key))))
    # The same cosignature line claiming a time one second later: key hash || u64be(T) || sig.
    blob = base64.b64decode(data["cosignature"].split(" ")[2])
    moved = blob[:4] + (int.from_bytes(blob[4:12], "big") + 1).to_bytes(8, "big") + blob[12:]
    moved_line = f"{cpmod.EM_DASH} {cosigner.id} {base64.b64encode(moved).decode()}\n"
    c.check("checkpoint cosignature negative: a changed time does not verify", _refuses(lambda: cpmod.verify_cosignature(note + moved_line, cosigner.id, co_public)))
    # The inclusion proof of entry 3, exactly as SPEC 12.2 says (verify_proof.py's steps).
    import verify_proof

    try:
        result = verify_proof.verify(data["inclusion_proof"], directory)
        c.check("checkpoint inclusion_proof verifies (SPEC 12.2)", result["ok"])
    except verify_proof.Failed as e:
        c.check("checkpoint inclusion_proof verifies (SPEC 12.2)", False, str(e))
    changed = json.loads(json.dumps(data["inclusion_proof"]))
    changed["entry"]["recipient"] = "pathway-vector"
    c.check("checkpoint inclusion_proof negative: a changed entry fails", _refuses(lambda: verify_proof.verify(changed, directory), verify_proof.Failed))
    # The form before 0.2.
    legacy = data["legacy_checkpoint"]
    try:
        size, root = cpmod.verify_legacy_checkpoint(legacy, ig_public)
        c.check("checkpoint legacy_checkpoint verifies", (size, root.hex()) == (data["tree_size"], data["root"]))
    except ValueError as e:
        c.check("checkpoint legacy_checkpoint verifies", False, str(e))
    c.check("checkpoint legacy negative: another at_ms fails", _refuses(lambda: cpmod.verify_legacy_checkpoint(dict(legacy, at_ms=legacy["at_ms"] + 1), ig_public)))


def _refuses(fn, exc=ValueError) -> bool:
    try:
        fn()
    except exc:
        return True
    return False


CHECKERS = {
    "key_ids.json": check_key_ids,
    "subject_refs.json": check_subject_refs,
    "signed_files.json": check_signed_files,
    "envelope.json": check_envelope,
    "events.json": check_events,
    "dash.json": check_dash,
    "consent.json": check_consent,
    "ledger.json": check_ledger,
    "merkle.json": check_merkle,
    "checkpoint.json": check_checkpoint,
    "ed25519.json": check_ed25519,
}


def listed_files(readme: Path, table_heading: str = "| File |") -> set[str]:
    """The vector files a README's table lists (`| `name.json` | ...`)."""
    if not readme.exists():
        return set()
    text = readme.read_text(encoding="utf-8")
    return set(re.findall(r"^\|\s*`([a-z0-9_]+\.json)`\s*\|", text, flags=re.M))


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(sys.argv[1])
    c = Checker()
    present = {p.name for p in root.glob("*.json")}
    expected = listed_files(root / "README.md")
    spec_listed = listed_files(Path(__file__).resolve().parents[2] / "SPEC.md")
    if not expected:
        c.check(f"{root}/README.md lists the vector files", False, "no README.md table of files")
    for name in sorted(present - set(CHECKERS)):
        c.check(f"{name}", False, "a vector file this checker does not know: teach check_vectors.py to check it")
    for name in sorted(expected - present):
        c.check(f"{name}", False, "listed in the vectors' README.md but missing")
    for name in sorted(expected - set(CHECKERS)):
        if name in present:
            continue
        c.check(f"{name}", False, "listed in the vectors' README.md and unknown to this checker")
    for name in sorted(spec_listed - present - expected):
        c.check(f"{name}", False, f"named by SPEC.md §14 but missing from {root} (and its README.md)")
    for name in sorted(present & set(CHECKERS)):
        v = Vectors(root, c)
        try:
            CHECKERS[name](v, c)
        except Exception as e:  # noqa: BLE001 - a vector whose members we cannot read is a failure
            c.check(f"{name}", False, f"checking stopped: {type(e).__name__}: {e}\n{traceback.format_exc()}")
    print(f"{c.passed} passed, {c.failed} failed")
    return 0 if c.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
