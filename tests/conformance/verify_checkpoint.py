#!/usr/bin/env python3
"""Verifies a ledger checkpoint note (SPEC.md §12.4) and its witnesses' cosignatures.

    verify_checkpoint.py NOTE_FILE DIRECTORY.toml [--witness AGENCY]...

NOTE_FILE holds a C2SP signed note as the audit service publishes it on hub.v1.checkpoint
(or a witness's cosigned copy of it). The note must be signed by the IG office of
DIRECTORY.toml (origin `referral-hub/<IG id>/ledger`, any of its keys, current or retired);
each --witness must have added a verifying cosignature/v1 line with its signing key. Prints
{"tree_size", "root", "cosigned_by": {agency: time}} and exits 0, or names what failed and
exits 1.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hubspec import checkpoint  # noqa: E402
from hubspec.directory import Directory  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("note")
    ap.add_argument("directory")
    ap.add_argument("--witness", action="append", default=[], help="an agency id whose cosignature must verify")
    args = ap.parse_args()
    try:
        note = Path(args.note).read_text(encoding="utf-8")
        directory = Directory.load(args.directory)
        ig = directory.ig()
    except (OSError, ValueError) as e:
        print(f"verify_checkpoint.py: cannot read the note or the directory: {e}", file=sys.stderr)
        return 1
    try:
        cp = checkpoint.verify_checkpoint(note, checkpoint.origin_for(ig.id), [bytes.fromhex(k) for k in ig.signing_keys()])
    except ValueError as e:
        print(f"verify_checkpoint.py: FAILED: the IG office's signature: {e}", file=sys.stderr)
        return 1
    cosigned = {}
    for witness in args.witness:
        agency = directory.get(witness)
        if agency is None:
            print(f"verify_checkpoint.py: FAILED: witness {witness} is not in the directory", file=sys.stderr)
            return 1
        for key in agency.signing_keys():
            try:
                cosigned[witness] = checkpoint.verify_cosignature(note, witness, bytes.fromhex(key))
                break
            except ValueError:
                continue
        else:
            print(f"verify_checkpoint.py: FAILED: no cosignature of {witness} verifies", file=sys.stderr)
            return 1
    print(json.dumps({"origin": cp.origin, "tree_size": cp.tree_size, "root": cp.root.hex(), "cosigned_by": cosigned}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
