"""Byte-level conventions of SPEC.md §1 and the length-prefixed `field()` of §11.2."""

import hashlib
import hmac
import struct


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def u64be(n: int) -> bytes:
    return struct.pack(">Q", n)


def i64be(n: int) -> bytes:
    return struct.pack(">q", n)


def field(x: bytes) -> bytes:
    """§11.2: field(x) = u64be(len(x)) || x."""
    return u64be(len(x)) + x


def unhex(text: str, length: int | None = None, what: str = "value") -> bytes:
    """Lowercase hex (§1) to bytes, refusing anything else, optionally of an exact length."""
    if not isinstance(text, str) or text != text.lower():
        raise ValueError(f"{what} is not lowercase hex")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        raise ValueError(f"{what} is not hex") from None
    if len(data) * 2 != len(text):
        raise ValueError(f"{what} is not hex")
    if length is not None and len(data) != length:
        raise ValueError(f"{what} is {len(data)} bytes, not {length}")
    return data


class Refused(Exception):
    """A check of the protocol failed: `reason` is the spec's reason code."""

    def __init__(self, reason: str, detail: str = "", rule: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.rule = rule
