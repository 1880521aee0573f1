"""The partnership directory (SPEC.md §4.1) and the question every verifier asks of it:
which keys of an agency are in force at a time."""

import tomllib
from dataclasses import dataclass, field

from . import grammar
from .common import Refused, sha256, unhex
from .keys import age_key_id, ed25519_key_id, verify_strict

ROLES = ("housing", "idva", "marac", "reciprocals", "perpetrator", "partner", "ig")


@dataclass
class RetiredKey:
    age_recipient: str
    signing_key: str
    retired_at_ms: int


@dataclass
class Agency:
    id: str
    name: str
    role: str
    age_recipient: str
    signing_key: str
    suspended_at_ms: int | None = None
    removed: bool = False
    retired_keys: list[RetiredKey] = field(default_factory=list)

    def suspended_at(self, t_ms: int) -> bool:
        """§4.1: no key of a suspended agency is in force at any t >= suspended_at_ms."""
        return self.suspended_at_ms is not None and t_ms >= self.suspended_at_ms

    def signing_key_named(self, key_id: str):
        """(public key hex, retired_at_ms or None for the current key) of the signing key with
        this key id, current or retired, or None."""
        if ed25519_key_id(self.signing_key) == key_id:
            return self.signing_key, None
        for r in self.retired_keys:
            if ed25519_key_id(r.signing_key) == key_id:
                return r.signing_key, r.retired_at_ms
        return None

    def age_recipients(self) -> list[str]:
        """The current age recipient, then the retired ones."""
        return [self.age_recipient, *(r.age_recipient for r in self.retired_keys)]

    def signing_keys(self) -> list[str]:
        return [self.signing_key, *(r.signing_key for r in self.retired_keys)]


def _int(v, what):
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{what} is not an integer")
    return v


class Directory:
    def __init__(self, text: str):
        self.text = text
        data = tomllib.loads(text)
        self.partnership = data.get("partnership", "")
        self.agencies: dict[str, Agency] = {}
        for a in data.get("agency", []):
            if not grammar.is_agency_id(a.get("id")):
                raise ValueError("the directory lists an agency whose id is not an agency id")
            if a["id"] in self.agencies:
                raise ValueError(f"the directory lists agency {a['id']} twice")
            if a.get("role") not in ROLES:
                raise ValueError(f"agency {a['id']} has an unknown role")
            unhex(a.get("signing_key", ""), 32, f"the signing key of {a['id']}")
            retired = []
            for r in a.get("retired_keys", []):
                unhex(r.get("signing_key", ""), 32, f"a retired signing key of {a['id']}")
                retired.append(RetiredKey(r["age_recipient"], r["signing_key"], _int(r["retired_at_ms"], "retired_at_ms")))
            suspended = a.get("suspended_at_ms")
            self.agencies[a["id"]] = Agency(
                id=a["id"],
                name=a.get("name", ""),
                role=a["role"],
                age_recipient=a["age_recipient"],
                signing_key=a["signing_key"],
                suspended_at_ms=None if suspended is None else _int(suspended, "suspended_at_ms"),
                removed=bool(a.get("removed", False)),
                retired_keys=retired,
            )

    @classmethod
    def load(cls, path) -> "Directory":
        with open(path, encoding="utf-8", newline="") as f:
            return cls(f.read())

    @property
    def digest(self) -> str:
        """§4.1: hex(SHA-256(text)[0..8]) of the file's exact text."""
        return sha256(self.text.encode()).hex()[:16]

    def get(self, agency_id: str) -> Agency | None:
        return self.agencies.get(agency_id)

    def ig(self) -> Agency:
        igs = [a for a in self.agencies.values() if a.role == "ig"]
        if len(igs) != 1:
            raise ValueError(f"the directory has {len(igs)} agencies of role ig, not exactly one")
        return igs[0]

    def verify_signature(self, signer: str, key_id: str, message: bytes, signature: bytes, t_ms: int) -> Agency:
        """Checks a signature by `signer` with the key `key_id`, judged at time t (§4.1 keys in
        force; the checks and reason codes of §8 step 2-3). Returns the signer; raises Refused.
        The signer and key id are repeated in an error only when of their grammar (§8)."""
        agency = self.agencies.get(signer)
        if agency is None:
            raise Refused("unknown_sender", f"sender {signer} is not in the directory" if grammar.is_agency_id(signer) else "the sender is not an agency id")
        if agency.suspended_at(t_ms):
            raise Refused("suspended_sender", f"{signer} is suspended")
        named = agency.signing_key_named(key_id)
        if named is None:
            shown = key_id if grammar.is_key_id(key_id) else "the signing key id"
            raise Refused("unknown_signing_key", f"{shown} is no key of {signer}")
        public_hex, retired_at = named
        if retired_at is not None and not retired_at > t_ms:
            raise Refused("retired_signing_key", f"{key_id} of {signer} was retired before the time judged")
        if not verify_strict(bytes.fromhex(public_hex), message, signature):
            raise Refused("bad_signature", f"the signature does not verify with {key_id} of {signer}")
        return agency

    def age_key_ids(self, agency_id: str) -> list[str]:
        agency = self.agencies[agency_id]
        return [age_key_id(r) for r in agency.age_recipients()]
