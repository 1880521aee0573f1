"""Signature files of the directory and the policy (SPEC.md §4.3)."""

import json
from dataclasses import dataclass

from . import grammar
from .common import sha256, u64be, unhex
from .directory import Directory
from .keys import SigningKey, verify_strict

# The domain tags of the signed message, by file and by whether the file has a sequence.
_TAGS = {
    "policy": (b"hub.v1.policy.seq\0", b"hub.v1.policy\0"),
    "directory": (b"hub.v1.directory.seq\0", b"hub.v1.directory\0"),
}


def signed_message(kind: str, text: bytes, sequence: int) -> bytes:
    with_seq, without = _TAGS[kind]
    if sequence >= 1:
        return with_seq + u64be(sequence) + text
    return without + text


@dataclass
class SignatureFile:
    version: str
    sequence: int
    sha256: str
    signer: str
    key_id: str
    signature: str

    @classmethod
    def parse(cls, text: str) -> "SignatureFile":
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("the signature file is not a JSON object")
        # Files written before 0.2 name `version` `policy_version`: readers accept either.
        version = data.get("version", data.get("policy_version", ""))
        sequence = data.get("sequence", 0)
        if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
            raise ValueError("the signature file's sequence is not a non-negative integer")
        for member in ("sha256", "signer", "key_id", "signature"):
            if not isinstance(data.get(member), str):
                raise ValueError(f"the signature file has no {member}")
        return cls(version, sequence, data["sha256"], data["signer"], data["key_id"], data["signature"])

    def to_json(self) -> str:
        return json.dumps(
            {"version": self.version, "sequence": self.sequence, "sha256": self.sha256, "signer": self.signer, "key_id": self.key_id, "signature": self.signature}
        )


def sign_file(kind: str, text: bytes, sequence: int, signer: str, key: SigningKey, version: str) -> SignatureFile:
    signature = key.sign(signed_message(kind, text, sequence))
    return SignatureFile(version, sequence, sha256(text).hex(), signer, key.key_id, signature.hex())


def verify_file(kind: str, text: bytes, sig_text: str, trusted: Directory | None = None, in_force: tuple[int, str] | None = None) -> SignatureFile:
    """Accepts `text` (the exact bytes of directory.toml or policy.toml) with its .sig file, or
    raises ValueError saying which check failed (§4.3).

    `trusted`: the directory in force; None for the very first load of a directory, which is
    then checked against itself. `in_force`: (sequence, sha256 hex) of the version in force,
    if any, to refuse an older file put back."""
    if kind not in _TAGS:
        raise ValueError(f"no signed file of kind {kind}")
    sig = SignatureFile.parse(sig_text)
    if trusted is None:
        if kind != "directory":
            raise ValueError("a policy is checked against a trusted directory")
        trusted = Directory(text.decode("utf-8"))
    signer = trusted.get(sig.signer)
    if signer is None or signer.role != "ig":
        raise ValueError("the signer is not the IG office of the trusted directory")
    if sig.sha256 != sha256(text).hex():
        raise ValueError("sha256 does not match the file's bytes")
    named = signer.signing_key_named(sig.key_id)
    if named is None:
        raise ValueError(("key " + sig.key_id if grammar.is_key_id(sig.key_id) else "the key id") + " is no key of the IG office")
    signature = unhex(sig.signature, 64, "signature")
    if not verify_strict(bytes.fromhex(named[0]), signed_message(kind, text, sig.sequence), signature):
        raise ValueError("the signature does not verify")
    if in_force is not None:
        seq, digest = in_force
        if sig.sequence < seq:
            raise ValueError(f"older than sequence {seq}")
        if sig.sequence == seq and sig.sha256 != digest:
            raise ValueError(f"sequence {seq} again with another text")
    return sig
