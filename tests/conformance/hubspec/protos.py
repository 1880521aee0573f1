"""The hub.v1 schema (proto/hub/v1/*.proto), compiled at run time with grpcio-tools' protoc,
and what SPEC.md builds on it: kinds (§6.1), data categories (§6.2) and minimisation (§6.3
step 4). Categories are read from the `(hub.v1.category)` field options through the protobuf
descriptors, never listed by hand."""

import atexit
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROTO_DIR = Path(os.environ.get("HUB_PROTO_DIR", REPO / "proto"))


def _compile():
    """protoc proto/hub/v1/*.proto into a temp dir and import the generated modules."""
    import grpc_tools

    out = tempfile.mkdtemp(prefix="hubspec-proto-")
    atexit.register(shutil.rmtree, out, True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/descriptor.proto
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "hub" / "v1").glob("*.proto"))
    if not sources:
        raise RuntimeError(f"no .proto files under {PROTO_DIR / 'hub' / 'v1'}")
    cmd = [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out}", *sources]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR}: {run.stderr.strip()}")
    sys.path.insert(0, out)
    try:
        return (
            importlib.import_module("hub.v1.options_pb2"),
            importlib.import_module("hub.v1.envelope_pb2"),
            importlib.import_module("hub.v1.payloads_pb2"),
        )
    finally:
        sys.path.remove(out)


options_pb2, envelope_pb2, payloads_pb2 = _compile()

Envelope = envelope_pb2.Envelope
Header = envelope_pb2.Header
ConsentTag = envelope_pb2.ConsentTag
Event = envelope_pb2.Event
SignedEvent = envelope_pb2.SignedEvent
Payload = payloads_pb2.Payload

# ---------------------------------------------------------------- kinds (§6.1)

KIND_NAMES = {
    1: "housing.idva_referral",
    2: "marac.referral",
    3: "marac.research_request",
    4: "marac.research_response",
    5: "marac.action",
    6: "marac.action_update",
    7: "reciprocal.request",
    8: "reciprocal.property_request",
    9: "reciprocal.offer",
    10: "reciprocal.offer_response",
    11: "reciprocal.move_completed",
    12: "perpetrator.referral",
    13: "perpetrator.engagement_update",
    14: "referral.ack",
    15: "disclosure.revoke",
    16: "consent.changed",
}
KIND_NUMBERS = {name: number for number, name in KIND_NAMES.items()}


def kind_token(kind: int) -> str:
    """The subject token of a kind: its name with `.` replaced by `_`."""
    return KIND_NAMES[kind].replace(".", "_")


def body_kind(payload) -> int:
    """The kind of a payload: the field number of its `body` oneof member (0 when empty)."""
    which = payload.WhichOneof("body")
    return 0 if which is None else Payload.DESCRIPTOR.fields_by_name[which].number


# Consent states and risk levels as the ledger, the policy and consent records write them
# (§11.1, §13): the enum names, lowercased, with `-` for `not-sought`.
CONSENT_STATES = {0: "unspecified", 1: "given", 2: "refused", 3: "not-sought", 4: "withdrawn", 5: "expired"}
CONSENT_STATE_NUMBERS = {v: k for k, v in CONSENT_STATES.items()}
RISKS = {0: "unspecified", 1: "standard", 2: "medium", 3: "high"}
RISK_NUMBERS = {v: k for k, v in RISKS.items()}

# ---------------------------------------------------------------- data categories (§6.2)


def _category_option(field_descriptor) -> str:
    return field_descriptor.GetOptions().Extensions[options_pb2.category]


def _compose(base: str, field_descriptor) -> str:
    """A field with the option appends its segment with a `.`; one without takes its holder's."""
    segment = _category_option(field_descriptor)
    if not segment:
        return base
    return f"{base}.{segment}" if base else segment


def _is_message(field_descriptor) -> bool:
    return field_descriptor.message_type is not None


def _is_repeated(fd) -> bool:
    # `is_repeated` is the newer spelling; `label` is deprecated in protobuf 6+.
    return fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED


def carried(message, base: str = "") -> set[str]:
    """The categories a payload carries: those of leaf fields holding a non-default value (a
    repeated field: at least one element). Nested messages are walked, never counted.
    `ListFields` yields exactly the fields that are set in that proto3 sense."""
    found = set()
    for fd, value in message.ListFields():
        category = _compose(base, fd)
        if _is_message(fd):
            for sub in value if _is_repeated(fd) else [value]:
                found |= carried(sub, category)
        else:
            if not category:
                raise ValueError(f"field {fd.full_name} has no data category")
            found.add(category)
    return found


def minimise(message, receivable, base: str = "") -> set[str]:
    """§6.3 step 4: clears, in place, every set leaf field whose category `receivable(category)`
    refuses; returns the categories removed."""
    removed = set()
    for fd, value in message.ListFields():
        category = _compose(base, fd)
        if _is_message(fd):
            for sub in value if _is_repeated(fd) else [value]:
                removed |= minimise(sub, receivable, category)
        elif not receivable(category):
            message.ClearField(fd.name)
            removed.add(category)
    return removed


def all_categories(descriptor=None, base: str = "", seen=()) -> set[str]:
    """Every category the schema can give a leaf field (for checking a policy against it)."""
    descriptor = descriptor or Payload.DESCRIPTOR
    out = set()
    for fd in descriptor.fields:
        category = _compose(base, fd)
        if _is_message(fd):
            if fd.message_type.full_name not in seen:
                out |= all_categories(fd.message_type, category, (*seen, fd.message_type.full_name))
        else:
            out.add(category)
    return out
