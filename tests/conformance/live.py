#!/usr/bin/env python3
"""Takes part in a running partnership as one agency, with nothing but SPEC.md's protocol
(hubspec) and the agency's own keys and broker credentials:

  a. verifies the signed directory and policy (§4.3), on disk and in the hub-partnership bucket;
  b. makes, signs and puts a consent record in the hub-consent bucket (§13);
  c. seals a housing.idva_referral to the IDVA (§6.3), its medium risk proved by a DASH
     summary it signs as the assessing agency (§6.5), and publishes it with Nats-Msg-Id (§7);
  d. pulls from its own durable consumer until the IDVA's `received` receipt for that
     envelope arrives, opens it with every check of §8, and acknowledges it;
  e. verifies the latest checkpoint note (§12.4) with the IG office's key and a consistency
     proof between two checkpoints from hub.v1.audit.consistency (§12.3).

Prints a JSON summary on stdout; progress (ids and reason codes only, never a name) on stderr.
Exit 0 on success, 1 naming the step that failed.

    live.py --nats-url URL --ca CA.pem --seed AGENCY.nk --key-file AGENCY.toml \\
            --directory directory.toml --policy policy.toml [--timeout 90]
"""

import argparse
import asyncio
import json
import logging
import secrets
import ssl
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nats  # noqa: E402
from nats.errors import TimeoutError as NatsTimeout  # noqa: E402

from hubspec import checkpoint, consent, envelope, events, grammar, merkle, names, protos, risk  # noqa: E402
from hubspec.common import Refused, unhex  # noqa: E402
from hubspec.directory import Directory  # noqa: E402
from hubspec.keys import KeyFile  # noqa: E402
from hubspec.policy import Policy  # noqa: E402
from hubspec.signed_files import verify_file  # noqa: E402

# A synthetic survivor whose name exercises §5's folding: a diaeresis, polytonic Greek with a
# breathing and an accent, and a hyphen. Never printed.
TEST_NAME = "Zoë Ὀδυσσεύς-Smith"
TEST_DOB = "1987-06-05"
STAFF_ID = "conformance.py"
# The synthetic DASH assessment: the questions answered Yes of the SafeLives checklist (11 of
# 24: the medium band).
DASH_VERSION = "safelives-dash-2024"
DASH_YES = {1, 2, 3, 6, 8, 10, 11, 12, 14, 20, 21}


def say(*parts):
    print("[live.py]", *parts, file=sys.stderr, flush=True)


class StepFailed(Exception):
    pass


def step(name):
    """Runs one lettered step, turning its failure into StepFailed naming it."""

    def wrap(fn):
        async def run(*args, **kwargs):
            say(f"step {name}")
            try:
                return await fn(*args, **kwargs)
            except StepFailed:
                raise
            except Exception as e:  # noqa: BLE001 - the step's name is what the reader needs
                raise StepFailed(f"step {name}: {type(e).__name__}: {e}") from e

        return run

    return wrap


class Live:
    def __init__(self, args):
        self.args = args
        self.keys = KeyFile.load(args.key_file)
        self.me = self.keys.agency
        self.summary = {"agency": self.me}

    # ------------------------------------------------------------------ a. partnership files
    @step("a (directory and policy signatures, SPEC 4.3)")
    async def files(self):
        dir_text = Path(self.args.directory).read_bytes()
        pol_text = Path(self.args.policy).read_bytes()
        dir_sig = verify_file("directory", dir_text, Path(self.args.directory + ".sig").read_text())
        self.directory = Directory(dir_text.decode())
        pol_sig = verify_file("policy", pol_text, Path(self.args.policy + ".sig").read_text(), trusted=self.directory)
        self.policy = Policy(pol_text.decode())
        if self.me not in self.directory.agencies:
            raise StepFailed(f"step a: {self.me} is not in the directory")
        if self.directory.agencies[self.me].age_recipient != self.keys.age_recipient:
            raise StepFailed("step a: the key file's age identity is not the directory's recipient for this agency")
        if self.directory.agencies[self.me].signing_key != self.keys.signing_key.public_hex:
            raise StepFailed("step a: the key file's signing key is not the directory's for this agency")
        self.agent = envelope.Agent(self.keys, self.directory, self.policy)
        # The bucket's copies: each must verify too, and be no older than what is on disk.
        # A partnership whose files never changed since it started may have none there yet
        # (`hub up` publishes only updates): that is said, not failed.
        for name, kind, sig in (("directory", "directory", dir_sig), ("policy", "policy", pol_sig)):
            raw = await self.direct_get("KV_hub-partnership", f"$KV.hub-partnership.{name}")
            if raw is None:
                say(f"the hub-partnership bucket holds no {name} (no update published yet); the file on disk verified")
                self.summary[f"{name}_sequence"] = sig.sequence
                self.summary[f"{name}_in_bucket"] = False
                continue
            value = json.loads(raw.data)
            self.summary[f"{name}_in_bucket"] = True
            trusted = None if kind == "directory" else self.directory
            bucket_sig = verify_file(kind, value["text"].encode(), value["signature"], trusted=trusted, in_force=(sig.sequence, sig.sha256))
            self.summary[f"{name}_sequence"] = bucket_sig.sequence
        self.summary["directory_digest"] = self.directory.digest
        self.summary["policy_version"] = self.policy.version
        say(f"directory {self.directory.digest} and policy {self.policy.version} verify (signer {dir_sig.signer})")

    # ------------------------------------------------------------------ broker
    async def connect(self):
        tls = ssl.create_default_context(cafile=self.args.ca)
        self.nc = await nats.connect(
            servers=self.args.nats_url.split(","),
            nkeys_seed=self.args.seed,
            tls=tls,
            tls_hostname=self.args.tls_hostname,
            inbox_prefix=f"_INBOX_{self.me}",  # SPEC §7: the only inbox this identity may read
            connect_timeout=10,
            max_reconnect_attempts=3,
            error_cb=self._nats_error,
        )
        self.js = self.nc.jetstream(timeout=10)

    async def _nats_error(self, e):
        say(f"broker error: {e}")

    async def direct_get(self, stream, subject=None, seq=None, next_by_subject=False):
        """A JetStream direct get (SPEC §7: allowed on both buckets and HUB_CHECKPOINTS):
        the last message of a subject, the message at `seq`, or the first of `subject` at or
        after `seq`. None when there is none."""
        request = {}
        if next_by_subject:
            request = {"seq": seq, "next_by_subj": subject}
        elif seq is not None:
            request = {"seq": seq}
        else:
            request = {"last_by_subj": subject}
        reply = await self.nc.request(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), timeout=10)
        status = (reply.headers or {}).get("Status")
        if status == "404":
            return None
        if status:
            raise RuntimeError(f"direct get on {stream}: status {status} {reply.headers.get('Description', '')}")
        return reply

    # ------------------------------------------------------------------ b. consent record
    @step("b (consent record, SPEC 13)")
    async def record_consent(self):
        idva = [a for a in self.directory.agencies.values() if a.role == "idva" and a.suspended_at_ms is None]
        if not idva:
            raise StepFailed("step b: the directory has no IDVA agency in force")
        self.idva = idva[0]
        self.subject_ref = names.subject_ref(self.keys.subject_key, TEST_NAME, TEST_DOB)
        self.consent_id = f"PYC-{int(time.time() * 1000) % 10**12}"
        now = envelope.now_ms()
        text = consent.make_record(
            self.consent_id, self.me, 1, self.subject_ref, "given",
            {"roles": [self.idva.role], "agencies": [], "purposes": ["safeguarding"]},
            STAFF_ID, now, now, expires_at_ms=now + 24 * 3600 * 1000,
        )
        value = consent.sign_record(text, self.keys.signing_key)
        # Read back as any reader would, before relying on it.
        self.consent_record = consent.verify_value(value, self.me, self.consent_id, self.directory)
        ack = await self.js.publish(f"$KV.hub-consent.{consent.bucket_key(self.me, self.consent_id)}", value.encode())
        stored = await self.direct_get("KV_hub-consent", f"$KV.hub-consent.{self.me}.{self.consent_id}")
        if stored is None or stored.data != value.encode():
            raise StepFailed("step b: the consent bucket does not hold the record just put")
        self.summary["consent_id"] = self.consent_id
        say(f"consent record {self.consent_id} stored (stream {ack.stream}, seq {ack.seq})")
        # §10: the owner of a consent record publishes a consent_changed event for each
        # revision it records (ids and codes only), so the ledger has it.
        event = protos.Event(
            event_id=envelope.uuid7(), agency=self.me, kind=events.EVENT_NUMBERS["consent_changed"], occurred_at_ms=envelope.now_ms(),
            policy_version=self.policy.version, subject_ref=self.subject_ref,
            case_ref=f"revision-{self.consent_record['revision']}",
        )
        event.consent.consent_id = self.consent_id
        event.consent.state = protos.CONSENT_STATE_NUMBERS["given"]
        event.consent.recorded_by = self.me
        ack = await self.js.publish(events.event_subject(self.me, event.kind), events.sign_event(event, self.keys.signing_key), headers={"Nats-Msg-Id": event.event_id})
        self.summary["consent_event_id"] = event.event_id
        say(f"consent_changed event {event.event_id} published (HUB seq {ack.seq})")

    # ------------------------------------------------------------------ c. the referral
    def dash_summary(self, dash):
        """Fills and signs `dash` (§6.5): the summary of an assessment this agency recorded,
        its band the one its score gives, signed as this agency."""
        dash.checklist_version = DASH_VERSION
        dash.assessed_on = time.strftime("%Y-%m-%d", time.gmtime())
        dash.score = len(DASH_YES)
        dash.risk = protos.RISK_NUMBERS[risk.band_of_score(dash.score)]
        dash.items.extend(risk.answers(risk.CHECKLISTS[DASH_VERSION], DASH_YES))
        dash.assessment_id = envelope.uuid7()
        dash.assessor = STAFF_ID
        risk.sign_summary(dash, self.me, self.keys.signing_key)
        why = risk.inconsistency(dash)
        if why:
            raise StepFailed(f"step c: the DASH summary made here is inconsistent: {why}")
        return protos.RISKS[dash.risk]

    @step("c (seal and publish a housing.idva_referral with a signed DASH summary, SPEC 6.3, 6.5 and 7)")
    async def send_referral(self):
        payload = protos.Payload()
        r = payload.idva_referral
        r.referrer.name = "Conformance Test Officer"
        r.referrer.agency = self.me
        r.referrer.role = "Housing officer"
        r.survivor.full_name = TEST_NAME
        r.survivor.date_of_birth = TEST_DOB
        r.survivor.address = "1 Synthetic Street, Northbridge"
        r.survivor.safe_to_call = True
        level = self.dash_summary(r.dash)
        r.reason = "Synthetic referral from the conformance suite"
        r.survivor_aware = True
        sealed = envelope.seal(
            self.agent, self.idva.id, payload, "safeguarding", "uk-gdpr-6-1-a", risk=level,
            consent_state="given", consent_id=self.consent_id, consent_recorded_by=self.me,
            consent_record=self.consent_record, subject_ref=self.subject_ref,
            case_ref=f"RVH-{int(time.time()) % 10**9}",
        )
        # §13: the sender judges expiry at sealing and again before publishing.
        consent.check(self.consent_id, "given", self.consent_record, self.subject_ref, self.idva.id, self.idva.role, "safeguarding", envelope.now_ms())
        ack = await self.js.publish(sealed.subject, sealed.envelope, headers={"Nats-Msg-Id": sealed.envelope_id})
        if ack.stream != "HUB":
            raise StepFailed(f"step c: the envelope went to stream {ack.stream}, not HUB")
        if ack.duplicate:
            raise StepFailed("step c: the broker took a fresh envelope id as a duplicate")
        self.sealed = sealed
        self.summary.update(
            envelope_id=sealed.envelope_id, envelope_stream_seq=ack.seq, rule=sealed.rule, categories=sealed.categories, removed=sealed.removed,
            risk=level, dash_score=r.dash.score, dash_assessment_id=r.dash.assessment_id,
        )
        say(f"published {sealed.envelope_id} on {sealed.subject} (HUB seq {ack.seq}), rule {sealed.rule}")

    # ------------------------------------------------------------------ d. the receipt
    def consent_lookup(self, recorded_by, consent_id):
        """§8 step 13 needs the current record as the bucket holds it now; this runs inside
        the synchronous receive checks, so it uses the history fetched beforehand."""
        return self._consent_cache.get((recorded_by, consent_id))

    async def fetch_consent_history(self, recorded_by, consent_id):
        """Every revision the bucket keeps of one record (direct gets, next by subject), and
        the current one of them (§13)."""
        subject = f"$KV.hub-consent.{recorded_by}.{consent_id}"
        values, seq = [], 1
        while True:
            msg = await self.direct_get("KV_hub-consent", subject, seq=seq, next_by_subject=True)
            if msg is None:
                break
            values.append(msg.data)
            seq = int(msg.headers["Nats-Sequence"]) + 1
        return consent.current(values, recorded_by, consent_id, self.directory)

    @step("d (pull and open the IDVA's received receipt, SPEC 8)")
    async def await_receipt(self):
        self._consent_cache = {}
        receiver = envelope.Receiver(self.agent, consent_record=self.consent_lookup)
        sub = await self.js.pull_subscribe_bind(durable=f"agency-{self.me}", stream="HUB")
        deadline = time.monotonic() + self.args.timeout
        opened_count = rejected_count = 0
        while time.monotonic() < deadline:
            try:
                msgs = await sub.fetch(batch=10, timeout=2)
            except NatsTimeout:
                continue
            for msg in msgs:
                meta = msg.metadata
                broker_ms = int(meta.timestamp.timestamp() * 1000)
                header = _peek_header(msg.data)
                if header is not None and header.consent.consent_id and grammar_ok(header):
                    key = (header.consent.recorded_by, header.consent.consent_id)
                    if key not in self._consent_cache:
                        self._consent_cache[key] = await self.fetch_consent_history(*key)
                try:
                    opened = receiver.receive(msg.data, msg.subject, broker_ms, meta.sequence.stream)
                except envelope.Rejected as e:
                    rejected_count += 1
                    say(f"refused HUB seq {meta.sequence.stream}: {e.reason} (rule {e.rule})")
                    await self.publish_rejection(e, meta.sequence.stream)
                    await msg.ack()
                    continue
                opened_count += 1
                await msg.ack()
                h, p = opened.header, opened.payload
                say(f"opened {protos.KIND_NAMES[h.kind]} {h.envelope_id} from {h.sender} (HUB seq {meta.sequence.stream})")
                if (
                    h.kind == protos.KIND_NUMBERS["referral.ack"]
                    and h.sender == self.idva.id
                    and h.in_reply_to == self.sealed.envelope_id
                    and p.referral_ack.envelope_id == self.sealed.envelope_id
                    and p.referral_ack.status == protos.payloads_pb2.ACK_STATUS_RECEIVED
                ):
                    self.summary.update(
                        receipt_envelope_id=h.envelope_id, receipt_stream_seq=meta.sequence.stream,
                        receipt_rule=h.policy_rule, receipt_subject_ref_matches=h.subject_ref == self.subject_ref,
                        receipt_in_clear=h.payload_in_clear,
                        opened=opened_count, refused=rejected_count,
                    )
                    await sub.unsubscribe()
                    return
        raise StepFailed(f"step d: no received receipt for {self.sealed.envelope_id} within {self.args.timeout} s ({opened_count} opened, {rejected_count} refused)")

    async def publish_rejection(self, e, stream_seq):
        """§8: a refusal is reported as a signed receive_rejected (or violation) event (§10).
        It names the envelope only when the header passed checks 1-5."""
        ev = protos.Event(
            event_id=envelope.uuid7(), agency=self.me, kind=events.EVENT_NUMBERS["violation" if e.violation else "receive_rejected"],
            occurred_at_ms=envelope.now_ms(), policy_version=self.policy.version, rule=e.rule,
            reason=e.reason, stream_sequence=stream_seq,
        )
        if e.header is not None:
            h = e.header
            ev.envelope_id, ev.counterpart, ev.message_kind = h.envelope_id, h.sender, h.kind
            ev.purpose, ev.lawful_basis, ev.risk = h.purpose, h.lawful_basis, h.risk
            ev.consent.CopyFrom(h.consent)
            ev.subject_ref, ev.case_ref = h.subject_ref, h.case_ref
            ev.data_categories.extend(h.data_categories)
        data = events.sign_event(ev, self.keys.signing_key)
        await self.js.publish(events.event_subject(self.me, ev.kind), data, headers={"Nats-Msg-Id": ev.event_id})

    # ------------------------------------------------------------------ e. checkpoints
    def verify_checkpoint_message(self, raw):
        """(size, root) of one message on hub.v1.checkpoint: a C2SP signed note verified with
        the IG office's keys (§12.4); a 0.1 JSON checkpoint is accepted too, as §12.4 says
        readers SHOULD for old ledgers. Raises ValueError for anything else."""
        ig = self.directory.ig()
        text = raw.data.decode("utf-8", "replace")
        if text.lstrip().startswith("{"):
            cp = json.loads(text)
            if cp.get("signer") != ig.id:
                raise ValueError("a 0.1 checkpoint not signed by the IG office")
            key = ig.signing_key_named(cp.get("key_id", ""))
            if key is None:
                raise ValueError("a 0.1 checkpoint signed with no key of the IG office")
            self.summary["checkpoint_format"] = "0.1-json"
            return checkpoint.verify_legacy_checkpoint(cp, bytes.fromhex(key[0]))
        cp = checkpoint.verify_checkpoint(text, checkpoint.origin_for(ig.id), [bytes.fromhex(k) for k in ig.signing_keys()])
        self.summary["checkpoint_format"] = "c2sp-signed-note"
        return cp.tree_size, cp.root

    async def latest_checkpoint(self):
        """The latest IG-signed checkpoint (size, root), or None. Messages on the subject that
        do not verify (anyone's junk) are skipped backwards, as a witness ignores them."""
        raw = await self.direct_get("HUB_CHECKPOINTS", "hub.v1.checkpoint")
        while raw is not None:
            try:
                return self.verify_checkpoint_message(raw)
            except (ValueError, KeyError, UnicodeError) as e:
                say(f"ignored a message on hub.v1.checkpoint that is no IG checkpoint: {e}")
                seq = int(raw.headers["Nats-Sequence"]) - 1
                raw = None
                while seq >= 1 and raw is None:
                    raw = await self.direct_get("HUB_CHECKPOINTS", seq=seq)
                    if raw is not None and raw.headers.get("Nats-Subject") != "hub.v1.checkpoint":
                        raw = None
                    seq -= 1
        return None

    async def checkpoint_beyond(self, size, what):
        """Waits for an IG checkpoint larger than `size` (None: any)."""
        deadline = time.monotonic() + self.args.timeout
        while True:
            cp = await self.latest_checkpoint()
            if cp is not None and (size is None or cp[0] > size):
                return cp
            if time.monotonic() > deadline:
                raise StepFailed(f"no checkpoint beyond size {size} {what} within {self.args.timeout} s")
            await asyncio.sleep(0.5)

    @step("e (checkpoint note and consistency proof, SPEC 12.3 and 12.4)")
    async def checkpoints(self):
        """The checkpoint after our referral and its receipt, and a consistency proof from the
        one taken after the consent event (step b), so the two sizes always differ."""
        first_size, first_root = self.first_checkpoint
        size, root = await self.checkpoint_beyond(first_size, "after the referral and its receipt")
        # SPEC 12.3: the answer comes to _INBOX_<own id>.consistency.<token>, the only replies
        # the audit service may publish.
        reply_to = f"_INBOX_{self.me}.consistency.{secrets.token_hex(16)}"
        answers = await self.nc.subscribe(reply_to, max_msgs=1)
        await self.nc.publish("hub.v1.audit.consistency", json.dumps({"first": first_size, "second": size}).encode(), reply=reply_to)
        reply = await answers.next_msg(timeout=10)
        answer = json.loads(reply.data)
        if "error" in answer:
            raise StepFailed(f"step e: the audit service refused the consistency proof: {answer['error']}")
        proof = [unhex(h, 32, "a consistency proof hash") for h in answer["proof"]]
        if not merkle.verify_consistency(first_size, size, first_root, root, proof):
            raise StepFailed(f"step e: the consistency proof from {first_size} to {size} does not verify")
        # A tampered proof must not verify: a verifier that accepts anything proves nothing.
        if merkle.verify_consistency(first_size, size, first_root, root, proof[:-1] + [bytes(32)]):
            raise StepFailed("step e: a tampered consistency proof verified")
        self.summary.update(checkpoint_size=size, checkpoint_root=root.hex(), consistency_from=first_size, consistency_proof_len=len(proof))
        say(f"checkpoint {size} verifies with the IG key; consistent with checkpoint {first_size}")

    @step("b' (a checkpoint covering the consent event, SPEC 12.4)")
    async def checkpoint_after_consent(self):
        self.first_checkpoint = await self.checkpoint_beyond(self.start_checkpoint[0] if self.start_checkpoint else None, "after the consent event")
        say(f"checkpoint {self.first_checkpoint[0]} verifies with the IG key")

    async def run(self):
        await self.files_after_connect()
        self.start_checkpoint = await self.latest_checkpoint()
        await self.record_consent()
        await self.checkpoint_after_consent()
        await self.send_referral()
        await self.await_receipt()
        await self.checkpoints()

    async def files_after_connect(self):
        try:
            await self.connect()
        except Exception as e:  # noqa: BLE001
            raise StepFailed(f"connecting to the broker as {self.me}: {type(e).__name__}: {e}") from e
        await self.files()


def _peek_header(data):
    """The header of an envelope before it is checked, only to know which consent record to
    fetch ahead of §8 step 13 (nothing from it is trusted or shown)."""
    try:
        return protos.Header.FromString(protos.Envelope.FromString(data).header)
    except Exception:  # noqa: BLE001
        return None


def grammar_ok(header):
    """Only a consent tag of its grammar is looked up (its text is never shown either way)."""
    return grammar.is_agency_id(header.consent.recorded_by) and grammar.is_consent_id(header.consent.consent_id)


def main():
    # asyncio's note that a TLS transport ignores eof_received() is noise at every close.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nats-url", required=True)
    ap.add_argument("--ca", required=True, help="the partnership's CA certificate (PEM)")
    ap.add_argument("--seed", required=True, help="this agency's broker nkey seed file")
    ap.add_argument("--key-file", required=True, help="this agency's key file (SPEC 3.3)")
    ap.add_argument("--directory", required=True, help="directory.toml (its .sig beside it)")
    ap.add_argument("--policy", required=True, help="policy.toml (its .sig beside it)")
    ap.add_argument("--tls-hostname", default=None, help="the name the broker's certificate is checked against")
    ap.add_argument("--timeout", type=float, default=90)
    args = ap.parse_args()
    live = Live(args)

    async def go():
        try:
            await live.run()
        finally:
            if hasattr(live, "nc"):
                await live.nc.drain()

    try:
        asyncio.run(go())
    except StepFailed as e:
        say(f"FAILED {e}")
        print(json.dumps({**live.summary, "ok": False, "failed": str(e)}))
        return 1
    except Refused as e:
        say(f"FAILED: refused by the protocol: {e}")
        print(json.dumps({**live.summary, "ok": False, "failed": str(e)}))
        return 1
    print(json.dumps({**live.summary, "ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
