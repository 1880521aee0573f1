#!/usr/bin/env python3
"""Verifies an inclusion proof of the audit ledger exactly as SPEC.md §12.2 says.

    verify_proof.py PROOF.json DIRECTORY.toml

PROOF.json is what the audit service's `GET /proof/inclusion?entry=N` (or `hub audit prove N`)
gives: {"entry": {...}, "leaf_index", "tree_size", "path": [hex...], "checkpoint": {...}}.
DIRECTORY.toml is the partnership's directory (the IG office's keys, and every agency's for
the signed record the entry holds). Exit 0 when every step holds; 1 naming the failing step.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubspec import checkpoint, events, ledger, merkle, protos  # noqa: E402
from hubspec.common import Refused, unhex  # noqa: E402
from hubspec.directory import Directory  # noqa: E402
from hubspec.envelope import ENVELOPE_TAG  # noqa: E402


class Failed(Exception):
    pass


def verify_checkpoint(cp: dict, directory: Directory) -> tuple[int, bytes]:
    """§12.4: (size, root) of the proof's checkpoint, verified with the IG office's keys. The
    JSON form of the APIs carries the note; only the note is signed, and origin, tree_size and
    root are checked against it. A 0.1 checkpoint (no note; a hex signature) is accepted, as
    §12.4 says readers SHOULD for old ledgers."""
    ig = directory.ig()
    keys = [bytes.fromhex(k) for k in ig.signing_keys()]
    if "note" in cp:
        verified = checkpoint.verify_checkpoint_json(cp, checkpoint.origin_for(ig.id), keys)
        return verified.tree_size, verified.root
    if cp.get("signer") != ig.id:
        raise ValueError("the checkpoint's signer is not the IG office")
    key = ig.signing_key_named(cp.get("key_id", ""))
    if key is None:
        raise ValueError("the checkpoint names no key of the IG office")
    return checkpoint.verify_legacy_checkpoint(cp, bytes.fromhex(key[0]))


def verify_signed_record(entry: dict, directory: Directory) -> None:
    """§12.2: for a verified entry, the signed header or event it holds verifies against the
    directory and the entry's fields are those it gives (§11.1)."""
    signed = unhex(entry["signed"], None, "signed")
    if entry["entry_type"] == "disclosure":
        env = protos.Envelope.FromString(signed)
        if env.sealed_payload:
            raise ValueError("a ledger entry holds a payload (§11.1: the payload never reaches the ledger)")
        header = protos.Header.FromString(env.header)
        # The broker's time the ledger judged the key at is not in the entry: the key is
        # judged at the header's created_at_ms (= occurred_at_ms).
        directory.verify_signature(header.sender, header.signing_key_id, ENVELOPE_TAG + env.header, env.signature, header.created_at_ms)
        expected = ledger.fields_from_envelope(header, env.header, env.signature)
    else:
        event = events.verify_event(signed, directory)
        expected = ledger.fields_from_event(event, signed)
    differ = ledger.mismatches(entry, expected)
    if differ:
        raise ValueError(f"the entry's {', '.join(differ)} differ from what its signed record gives")


def verify(proof: dict, directory: Directory) -> dict:
    entry = proof["entry"]
    step = "1 (the checkpoint verifies and its size is tree_size, §12.4)"
    try:
        size, root = verify_checkpoint(proof["checkpoint"], directory)
        if size != proof["tree_size"]:
            raise ValueError(f"the checkpoint's size {size} is not tree_size {proof['tree_size']}")
    except (ValueError, KeyError, TypeError) as e:
        raise Failed(f"step {step}: {e}") from e
    step = "2 (leaf_index = entry.seq - 1)"
    if proof["leaf_index"] != entry["seq"] - 1:
        raise Failed(f"step {step}: leaf_index {proof['leaf_index']}, entry seq {entry['seq']}")
    step = "3 (the entry's hash recomputes from its fields and prev_hash, §11.2)"
    try:
        if ledger.entry_hash(entry).hex() != entry["hash"]:
            raise ValueError("it does not")
    except (ValueError, KeyError, TypeError) as e:
        raise Failed(f"step {step}: {e}") from e
    step = "4 (a verified entry's signed record verifies and gives its fields, §11.1)"
    if entry.get("verified"):
        try:
            verify_signed_record(entry, directory)
        except Refused as e:
            raise Failed(f"step {step}: {e.reason}: {e.detail}") from e
        except (ValueError, KeyError, TypeError) as e:
            raise Failed(f"step {step}: {type(e).__name__}: {e}") from e
    step = "5 (the audit path leads from SHA-256(0x00 || entry.hash) to the checkpoint's root, RFC 9162 2.1.3.2)"
    try:
        path = [unhex(h, 32, "a path hash") for h in proof["path"]]
        leaf = merkle.leaf_hash(unhex(entry["hash"], 32, "hash"))
        if not merkle.verify_inclusion(leaf, proof["leaf_index"], size, path, root):
            raise ValueError("it does not")
    except (ValueError, KeyError, TypeError) as e:
        raise Failed(f"step {step}: {e}") from e
    return {"ok": True, "checkpoint_format": "c2sp-signed-note" if "note" in proof["checkpoint"] else "0.1-json", "seq": entry["seq"], "entry_type": entry["entry_type"], "tree_size": size, "root": root.hex()}


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        proof = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
        directory = Directory.load(sys.argv[2])
    except (OSError, ValueError) as e:
        print(f"verify_proof.py: cannot read the proof or the directory: {e}", file=sys.stderr)
        return 1
    try:
        result = verify(proof, directory)
    except Failed as e:
        print(f"verify_proof.py: FAILED {e}", file=sys.stderr)
        print(json.dumps({"ok": False, "failed": str(e)}))
        return 1
    except (KeyError, TypeError) as e:
        print(f"verify_proof.py: FAILED: the proof lacks or mistypes a member: {e}", file=sys.stderr)
        print(json.dumps({"ok": False, "failed": f"malformed proof: {e}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
