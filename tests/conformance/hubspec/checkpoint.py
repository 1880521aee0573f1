"""Checkpoints (SPEC.md §12.4): C2SP signed notes holding a C2SP tlog checkpoint, signed by
the IG office; witness cosignatures (C2SP tlog-cosignature, cosignature/v1); and the JSON
checkpoints of hub 0.1."""

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass

from .common import field, i64be, sha256, u64be, unhex
from .keys import SigningKey, verify_strict

EM_DASH = "\u2014"
MAX_NOTE_BYTES = 1 << 20
MAX_SIGNATURES = 100
_SIG_LINE = re.compile(r"\u2014 ([^ \n]+) ([A-Za-z0-9+/=]+)")
_SIZE = re.compile(r"0|[1-9][0-9]*")


def origin_for(ig_agency: str) -> str:
    return f"referral-hub/{ig_agency}/ledger"


def _b64decode(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _strict_b64decode(text: str) -> bytes:
    """Standard base64 with padding, and the only encoding of its bytes (no stray bits)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("a signature line's signature is not base64") from None
    if base64.b64encode(raw).decode() != text:
        raise ValueError("a signature line's base64 is not in its canonical form")
    return raw


def note_key_hash(name: str, public: bytes) -> bytes:
    """signed-note Ed25519 (type 0x01): SHA-256(name || 0x0A || 0x01 || key)[0..4]."""
    return sha256(name.encode() + b"\n\x01" + public)[:4]


def cosignature_key_hash(name: str, public: bytes) -> bytes:
    """tlog-cosignature (type 0x04): SHA-256(name || 0x0A || 0x04 || key)[0..4]."""
    return sha256(name.encode() + b"\n\x04" + public)[:4]


def verifier_key(name: str, public: bytes) -> str:
    """The signed-note verifier key `<name>+<hex key hash>+<base64(0x01 || key)>`."""
    key = base64.b64encode(b"\x01" + public).decode()
    return f"{name}+{note_key_hash(name, public).hex()}+{key}"


def cosigner_verifier_key(name: str, public: bytes) -> str:
    """A witness's cosigner key `<agency id>+<hex key hash>+<base64(0x04 || key)>`."""
    key = base64.b64encode(b"\x04" + public).decode()
    return f"{name}+{cosignature_key_hash(name, public).hex()}+{key}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes]:
    name, key_hash, key = vkey.split("+")
    raw = _b64decode(key)
    if len(raw) != 33 or raw[0] != 1:
        raise ValueError("the verifier key is not an Ed25519 signed-note key")
    if note_key_hash(name, raw[1:]).hex() != key_hash:
        raise ValueError("the verifier key's hash does not match its name and key")
    return name, raw[1:]


@dataclass
class Signature:
    name: str
    key_hash: bytes
    blob: bytes  # what follows the key hash


@dataclass
class Note:
    text: str  # the signed bytes: up to and including the last text line's \n
    signatures: list[Signature]

    @classmethod
    def parse(cls, note: str | bytes) -> "Note":
        """A C2SP signed note, with SPEC §12.4's parsing rules: UTF-8, no control character
        but newline, ending in a newline, at most 1 MiB; split at its last blank line into
        text and at most 100 signature lines `— <name> <base64>`, the base64 strict and of
        at least 5 bytes (a 4-byte key hash and a signature)."""
        if isinstance(note, bytes):
            if len(note) > MAX_NOTE_BYTES:
                raise ValueError("a signed note over 1 MiB")
            try:
                note = note.decode("utf-8")
            except UnicodeDecodeError:
                raise ValueError("a signed note is UTF-8") from None
        if len(note.encode("utf-8")) > MAX_NOTE_BYTES:
            raise ValueError("a signed note over 1 MiB")
        if any(unicodedata.category(ch) == "Cc" and ch != "\n" for ch in note):
            raise ValueError("a signed note has no control character but newline")
        if not note.endswith("\n"):
            raise ValueError("a signed note ends with a newline")
        cut = note.rfind("\n\n")
        if cut < 0:
            raise ValueError("a signed note has a blank line before its signatures")
        text, rest = note[: cut + 1], note[cut + 2 :]
        lines = rest.split("\n")[:-1]
        if not lines:
            raise ValueError("a signed note has at least one signature")
        if len(lines) > MAX_SIGNATURES:
            raise ValueError(f"a signed note with more than {MAX_SIGNATURES} signature lines")
        signatures = []
        for line in lines:
            m = _SIG_LINE.fullmatch(line)
            if not m:
                raise ValueError("a signature line is not `— <name> <base64>`")
            raw = _strict_b64decode(m.group(2))
            if len(raw) < 5:
                raise ValueError("a signature line is too short for a key hash and a signature")
            signatures.append(Signature(m.group(1), raw[:4], raw[4:]))
        return cls(text, signatures)

    def render(self) -> str:
        lines = [f"{EM_DASH} {s.name} {base64.b64encode(s.key_hash + s.blob).decode()}\n" for s in self.signatures]
        return self.text + "\n" + "".join(lines)


@dataclass
class Checkpoint:
    origin: str
    tree_size: int
    root: bytes
    note: Note


def checkpoint_text(origin: str, tree_size: int, root: bytes) -> str:
    return f"{origin}\n{tree_size}\n{base64.b64encode(root).decode()}\n"


def sign_checkpoint(origin: str, tree_size: int, root: bytes, key: SigningKey) -> str:
    text = checkpoint_text(origin, tree_size, root)
    signature = key.sign(text.encode())
    return Note(text, [Signature(origin, note_key_hash(origin, key.public), signature)]).render()


def parse_checkpoint(note_text: str) -> Checkpoint:
    note = Note.parse(note_text)
    lines = note.text.split("\n")[:-1]
    if len(lines) != 3:
        raise ValueError(f"a checkpoint's text is 3 lines (origin, size, root), not {len(lines)}")
    origin, size, root_b64 = lines
    if not origin or not _SIZE.fullmatch(size):
        raise ValueError("the checkpoint's size is not a decimal without leading zeros")
    try:
        root = _b64decode(root_b64)
    except binascii.Error:
        raise ValueError("the checkpoint's root is not base64") from None
    if len(root) != 32:
        raise ValueError("the checkpoint's root is not 32 bytes")
    return Checkpoint(origin, int(size), root, note)


def verify_checkpoint(note_text: str, origin: str, ig_public_keys: list[bytes]) -> Checkpoint:
    """A checkpoint note verifies if its origin is the expected one and a signature line of
    that name, whose key hash is one of the IG office's keys (current or retired), verifies
    over the text. Other signature lines (cosignatures) are ignored."""
    cp = parse_checkpoint(note_text)
    if cp.origin != origin:
        raise ValueError("the checkpoint's origin is not the IG office's log")
    verified = False
    for s in cp.note.signatures:
        if s.name != origin:
            continue
        for public in ig_public_keys:
            if s.key_hash != note_key_hash(origin, public):
                continue
            # A line of the IG office's name and key hash that does not verify makes the
            # whole note invalid, whatever other lines say.
            if len(s.blob) != 64 or not verify_strict(public, cp.note.text.encode(), s.blob):
                raise ValueError("a signature line of the IG office's key does not verify")
            verified = True
    if not verified:
        raise ValueError("no signature of the IG office's key verifies the checkpoint")
    return cp


def cosignature_message(signed_text: str, timestamp: int) -> bytes:
    return f"cosignature/v1\ntime {timestamp}\n".encode() + signed_text.encode()


def cosign(note_text: str, name: str, key: SigningKey, timestamp: int) -> str:
    """Adds a witness's cosignature line to a note (key name = the agency id)."""
    note = Note.parse(note_text)
    signature = key.sign(cosignature_message(note.text, timestamp))
    note.signatures.append(Signature(name, cosignature_key_hash(name, key.public), u64be(timestamp) + signature))
    return note.render()


def verify_cosignature(note_text: str, name: str, public: bytes) -> int:
    """Returns the timestamp of a verifying cosignature of `name` with `public`."""
    note = Note.parse(note_text)
    for s in note.signatures:
        if s.name == name and s.key_hash == cosignature_key_hash(name, public) and len(s.blob) == 72:
            timestamp = int.from_bytes(s.blob[:8], "big")
            if verify_strict(public, cosignature_message(note.text, timestamp), s.blob[8:]):
                return timestamp
    raise ValueError(f"no cosignature of {name} verifies")


def verify_checkpoint_json(cp: dict, origin: str, ig_public_keys: list[bytes]) -> Checkpoint:
    """The APIs' checkpoint JSON: only `note` is signed; origin, tree_size and root are
    checked against it."""
    verified = verify_checkpoint(cp["note"], origin, ig_public_keys)
    if cp.get("origin") != verified.origin:
        raise ValueError("the checkpoint's origin is not the note's")
    if cp.get("tree_size") != verified.tree_size:
        raise ValueError("the checkpoint's tree_size is not the note's")
    if unhex(cp.get("root", ""), 32, "root") != verified.root:
        raise ValueError("the checkpoint's root is not the note's")
    return verified


def legacy_message(partnership: str, tree_size: int, root_hex: str, at_ms: int, signer: str) -> bytes:
    """The signed message of a checkpoint from before 0.2."""
    return b"hub.v1.checkpoint\0" + field(partnership.encode()) + field(u64be(tree_size)) + field(root_hex.encode()) + field(i64be(at_ms)) + field(signer.encode())


def verify_legacy_checkpoint(cp: dict, public: bytes) -> tuple[int, bytes]:
    """A 0.1 JSON checkpoint {partnership, tree_size, root, at_ms, signer, key_id, signature}."""
    message = legacy_message(cp["partnership"], cp["tree_size"], cp["root"], cp["at_ms"], cp["signer"])
    if not verify_strict(public, message, unhex(cp["signature"], 64, "signature")):
        raise ValueError("the legacy checkpoint's signature does not verify")
    return cp["tree_size"], unhex(cp["root"], 32, "root")
