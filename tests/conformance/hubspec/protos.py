"""The hub.v1 schema (proto/hub/v1/*.proto), compiled at run time with grpcio-tools' protoc,
and what SPEC.md builds on it: kinds (§6.1), event kinds (§7, §10), data categories (§6.2) and
minimisation (§6.3 step 4). None of these is listed by hand: categories are read from the
`(hub.v1.category)` field options through the protobuf descriptors, kinds' dotted names from
the comments the `Kind` enum gives them, event tokens from the `EventKind` names."""

import atexit
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
PROTO_DIR = Path(os.environ.get("HUB_PROTO_DIR", REPO / "proto"))


def _compile():
    """protoc proto/hub/v1/*.proto into a temp dir and import the generated modules; also the
    descriptor set with source info, whose comments name the kinds."""
    import grpc_tools
    from google.protobuf import descriptor_pb2

    out = tempfile.mkdtemp(prefix="hubspec-proto-")
    atexit.register(shutil.rmtree, out, True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"  # google/protobuf/descriptor.proto
    sources = sorted(str(p.relative_to(PROTO_DIR)) for p in (PROTO_DIR / "hub" / "v1").glob("*.proto"))
    if not sources:
        raise RuntimeError(f"no .proto files under {PROTO_DIR / 'hub' / 'v1'}")
    descriptor_set = Path(out) / "hub.v1.pb"
    cmd = [
        sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_DIR}", f"-I{well_known}", f"--python_out={out}",
        "--include_source_info", f"--descriptor_set_out={descriptor_set}", *sources,
    ]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"protoc failed on {PROTO_DIR}: {run.stderr.strip()}")
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes())
    sys.path.insert(0, out)
    try:
        return (
            importlib.import_module("hub.v1.options_pb2"),
            importlib.import_module("hub.v1.envelope_pb2"),
            importlib.import_module("hub.v1.payloads_pb2"),
            files,
        )
    finally:
        sys.path.remove(out)


options_pb2, envelope_pb2, payloads_pb2, _DESCRIPTOR_SET = _compile()

Envelope = envelope_pb2.Envelope
Header = envelope_pb2.Header
ConsentTag = envelope_pb2.ConsentTag
Event = envelope_pb2.Event
SignedEvent = envelope_pb2.SignedEvent
Payload = payloads_pb2.Payload

# ---------------------------------------------------------------- kinds (§6.1)

_DOTTED_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+")


def _kind_names() -> dict[int, str]:
    """Kind number to dotted name. envelope.proto gives each value of `enum Kind` its dotted
    name as a trailing comment (`KIND_MARAC_REFERRAL = 2; // marac.referral`), the names §6.1
    tabulates; a value without one is an error here, not a kind silently unknown."""
    for file in _DESCRIPTOR_SET.file:
        if file.package != "hub.v1":
            continue
        for e, enum in enumerate(file.enum_type):
            if enum.name != "Kind":
                continue
            comments = {tuple(loc.path): loc.trailing_comments.strip() for loc in file.source_code_info.location}
            names = {}
            for v, value in enumerate(enum.value):
                if value.number == 0:
                    continue
                name = comments.get((5, e, 2, v), "")  # FileDescriptorProto.enum_type, EnumDescriptorProto.value
                if not _DOTTED_NAME.fullmatch(name):
                    raise RuntimeError(f"{file.name}: {value.name} has no dotted kind name as its trailing comment")
                names[value.number] = name
            return names
    raise RuntimeError("the hub.v1 protos have no enum Kind")


KIND_NAMES = _kind_names()
KIND_NUMBERS = {name: number for number, name in KIND_NAMES.items()}
_BODIES = {fd.number: fd for fd in Payload.DESCRIPTOR.oneofs_by_name["body"].fields}
if set(KIND_NAMES) - set(_BODIES):
    raise RuntimeError(f"kinds without a Payload body of their number (§6.1): {sorted(set(KIND_NAMES) - set(_BODIES))}")


def kind_token(kind: int) -> str:
    """The subject token of a kind: its name with `.` replaced by `_`."""
    return KIND_NAMES[kind].replace(".", "_")


def body_kind(payload) -> int:
    """The kind of a payload: the field number of its `body` oneof member (0 when empty)."""
    which = payload.WhichOneof("body")
    return 0 if which is None else Payload.DESCRIPTOR.fields_by_name[which].number


def body_descriptor(kind: int):
    """The message descriptor of kind `kind`'s body, or None for a number no body has."""
    fd = _BODIES.get(kind)
    return None if fd is None else fd.message_type


def body(payload):
    """The body message of a payload, or None."""
    which = payload.WhichOneof("body")
    return None if which is None else getattr(payload, which)


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
            # A message left with nothing in it goes too: an empty section would still tell
            # the recipient that the sender had one.
            if _is_repeated(fd):
                for i in reversed(range(len(value))):
                    if not value[i].ListFields():
                        del value[i]
                if not len(value):
                    message.ClearField(fd.name)
            elif not value.ListFields():
                message.ClearField(fd.name)
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
