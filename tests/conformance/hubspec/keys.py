"""Keys: key ids (SPEC.md §3.2), strict Ed25519 (§1), the key file (§3.3)."""

import os
import stat
import tomllib
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from . import grammar
from .common import sha256, unhex


def key_id(scheme: str, text: str) -> str:
    """§3.2: scheme || ":" || hex(SHA-256(text)[0..8]), `text` the key's text form exactly as
    the directory writes it (64 lowercase hex digits for ed25519, `age1…` for age)."""
    if scheme not in ("ed25519", "age"):
        raise ValueError("a key id's scheme is ed25519 or age")
    return f"{scheme}:{sha256(text.encode()).hex()[:16]}"


def ed25519_key_id(public_hex: str) -> str:
    return key_id("ed25519", public_hex)


def age_key_id(recipient: str) -> str:
    return key_id("age", recipient)


# ---------------------------------------------------------------- strict Ed25519 (§1)
#
# §1 asks for ed25519-dalek's `verify_strict`: reject a non-canonical S and a small-order
# public key A or commitment R. OpenSSL (behind `cryptography`) already refuses S >= L and
# compares R by its encoding; it does not refuse small-order points, so they are tested here:
# a point P is of small order when [8]P is the neutral element.

_P = 2**255 - 19
_D = (-121665 * pow(121666, -1, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decompress(encoding: bytes):
    """The Edwards point of a 32-byte encoding (RFC 8032 §5.1.3), or None. Like
    curve25519-dalek, the y coordinate is taken mod p (a non-canonical y still decodes)."""
    if len(encoding) != 32:
        return None
    y = int.from_bytes(encoding, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    y %= _P
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P != 0:
        x = (x * _SQRT_M1) % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x == 0 and sign:
        return None
    if x & 1 != sign:
        x = _P - x
    return (x, y)


def _add(p1, p2):
    """Twisted Edwards addition, a = -1 (complete on edwards25519)."""
    (x1, y1), (x2, y2) = p1, p2
    t = (_D * x1 * x2 * y1 * y2) % _P
    x3 = ((x1 * y2 + y1 * x2) * pow(1 + t, -1, _P)) % _P
    y3 = ((y1 * y2 + x1 * x2) * pow(1 - t, -1, _P)) % _P
    return (x3, y3)


def _is_small_order(encoding: bytes) -> bool:
    point = _decompress(encoding)
    if point is None:
        return True  # not a point at all: refused all the same
    for _ in range(3):
        point = _add(point, point)
    return point == (0, 1)


def verify_strict(public: bytes, message: bytes, signature: bytes) -> bool:
    """Ed25519 (RFC 8032) with the strict rules of SPEC.md §1."""
    if len(public) != 32 or len(signature) != 64:
        return False
    if _is_small_order(public) or _is_small_order(signature[:32]):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
        return True
    except (InvalidSignature, ValueError):
        return False


class SigningKey:
    """An agency's ed25519 signing key from its 32-byte seed."""

    def __init__(self, seed: bytes):
        if len(seed) != 32:
            raise ValueError("an ed25519 seed is 32 bytes")
        self._key = Ed25519PrivateKey.from_private_bytes(seed)
        self.public = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def from_hex(cls, text: str) -> "SigningKey":
        return cls(unhex(text, 32, "signing key"))

    @property
    def public_hex(self) -> str:
        return self.public.hex()

    @property
    def key_id(self) -> str:
        return ed25519_key_id(self.public_hex)

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


# ---------------------------------------------------------------- the key file (§3.3)

_KEY_FILE_MEMBERS = {"agency", "age_identity", "signing_key", "subject_key", "retired_age_identities"}


@dataclass
class KeyFile:
    agency: str
    age_identity: str
    signing_key: SigningKey
    subject_key: bytes | None
    retired_age_identities: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str) -> "KeyFile":
        data = tomllib.loads(text)
        unknown = set(data) - _KEY_FILE_MEMBERS
        if unknown:
            raise ValueError(f"the key file has members SPEC §3.3 does not name: {sorted(unknown)}")
        for member in ("agency", "age_identity", "signing_key"):
            if not isinstance(data.get(member), str):
                raise ValueError(f"the key file has no {member}")
        if not grammar.is_agency_id(data["agency"]):
            raise ValueError("the key file's agency is not an agency id")
        if not data["age_identity"].startswith("AGE-SECRET-KEY-1"):
            raise ValueError("the key file's age_identity is not an age X25519 identity")
        subject_key = None
        if "subject_key" in data:
            subject_key = unhex(data["subject_key"], 32, "subject_key")
        retired = data.get("retired_age_identities", [])
        if not isinstance(retired, list) or not all(isinstance(r, str) for r in retired):
            raise ValueError("retired_age_identities is not a list of identities")
        return cls(data["agency"], data["age_identity"], SigningKey.from_hex(data["signing_key"]), subject_key, retired)

    @classmethod
    def load(cls, path) -> "KeyFile":
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            raise ValueError(f"{path} is readable by others (mode {mode:o}); §3.3 asks for 0600")
        with open(path, encoding="utf-8") as f:
            return cls.parse(f.read())

    def age_identities(self):
        """Every age identity this agency holds, current first (§3.3: the retired ones keep
        what was sealed to an old key readable)."""
        from pyrage import x25519

        return [x25519.Identity.from_str(s) for s in [self.age_identity, *self.retired_age_identities]]

    @property
    def age_recipient(self) -> str:
        from pyrage import x25519

        return str(x25519.Identity.from_str(self.age_identity).to_public())
