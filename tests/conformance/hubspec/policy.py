"""The policy file (SPEC.md §4.2, with its `[deadlines]`) and the policy decision (§9)."""

import tomllib
from dataclasses import dataclass, field


def matches(pattern: str, name: str) -> bool:
    """§4.2: a pattern matches a name it equals, or, ending in `*`, a name starting with its
    text before the `*` (`*` alone matches everything)."""
    if pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return pattern == name


@dataclass
class RolePolicy:
    receives: list[str] = field(default_factory=list)
    never: list[str] = field(default_factory=list)
    never_kinds: list[str] = field(default_factory=list)
    subject_key: bool = True


@dataclass
class Rule:
    id: str
    from_roles: list[str]
    to_roles: list[str]
    kinds: list[str]
    purposes: list[str]
    lawful_bases: list[str]
    consent: str
    bases_without_consent: list[str]


@dataclass(frozen=True)
class Deadlines:
    """§4.2 `[deadlines]`: the partnership's time targets, in whole hours."""

    acknowledge_hours: int = 48
    idva_contact_hours: int = 48
    high_risk_referral_hours: int = 24
    concern_triage_hours: int = 72

    @classmethod
    def parse(cls, table) -> "Deadlines":
        """A member left out takes its default; any other member, or a value that is not a
        whole number of hours from 0 to 2^32 - 1, makes the policy invalid."""
        if not isinstance(table, dict):
            raise ValueError("[deadlines] is not a table")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(table) - known)
        if unknown:
            raise ValueError(f"[deadlines] has members §4.2 does not name: {unknown}")
        for name, value in table.items():
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
                raise ValueError(f"deadlines.{name} is not a whole number of hours from 0 to 4294967295")
        return cls(**table)

    @staticmethod
    def ms(hours: int) -> int:
        return hours * 3_600_000


@dataclass
class Decision:
    allowed: bool
    rule: str
    reason: str = ""  # the reason code of a refusal
    without_consent: bool = False
    forbidden: list[str] = field(default_factory=list)
    sentence: str = ""


CONSENT_RULES = ("required", "required-unless-high-risk", "not-required")


class Policy:
    def __init__(self, text: str):
        self.text = text
        data = tomllib.loads(text)
        self.version = data["version"]
        self.partnership = data.get("partnership", "")
        self.purposes = dict(data.get("purposes", {}))
        self.lawful_bases = dict(data.get("lawful_bases", {}))
        self.rationales = dict(data.get("rationales", {}))
        self.deadlines = Deadlines.parse(data.get("deadlines", {}))
        self.roles = {
            name: RolePolicy(r.get("receives", []), r.get("never", []), r.get("never_kinds", []), r.get("subject_key", True))
            for name, r in data.get("roles", {}).items()
        }
        self.rules = []
        for r in data.get("rules", []):
            if r.get("consent") not in CONSENT_RULES:
                raise ValueError(f"rule {r.get('id')} has an unknown consent rule")
            self.rules.append(
                Rule(r["id"], r["from"], r["to"], r["kinds"], r["purposes"], r["lawful_bases"], r["consent"], r.get("bases_without_consent", []))
            )

    @classmethod
    def load(cls, path) -> "Policy":
        with open(path, encoding="utf-8", newline="") as f:
            return cls(f.read())

    def holds_subject_key(self, role: str) -> bool:
        r = self.roles.get(role)
        return True if r is None else r.subject_key

    def receivable(self, role: str, category: str) -> bool:
        """A role may receive a category its `receives` matches and its `never` does not."""
        r = self.roles.get(role)
        if r is None:
            return False
        return any(matches(p, category) for p in r.receives) and not any(matches(p, category) for p in r.never)

    def decide(self, from_role: str, to_role: str, kind: str, purpose: str, lawful_basis: str, consent: str, risk: str, categories) -> Decision:
        """§9, step by step. `consent` and `risk` as the ledger writes them (`given`, `high`)."""
        role = self.roles.get(to_role)
        if role is None:  # 1.
            return Decision(False, f"roles.{to_role}", "role_not_recipient", sentence=f"the policy has no role {to_role} to receive")
        if any(matches(p, kind) for p in role.never_kinds):  # 2.
            return Decision(False, f"roles.{to_role}.never_kinds", "never_allowed_kind", sentence=f"{to_role} never receives {kind}")
        forbidden = sorted(c for c in categories if any(matches(p, c) for p in role.never))
        if forbidden:  # 3.
            return Decision(False, f"roles.{to_role}.never", "never_allowed_field", forbidden=forbidden, sentence=f"{to_role} never receives {', '.join(forbidden)}")
        candidates = [r for r in self.rules if from_role in r.from_roles and to_role in r.to_roles and kind in r.kinds]  # 4.
        if not candidates:
            return Decision(False, "no-rule", "no_flow", sentence=f"no rule lets {from_role} send {kind} to {to_role}")
        first_refusal = None
        for rule in candidates:  # 5.
            decision = self._try(rule, purpose, lawful_basis, consent, risk)
            if decision.allowed:
                return decision
            first_refusal = first_refusal or decision
        return first_refusal

    @staticmethod
    def _try(rule: Rule, purpose, lawful_basis, consent, risk) -> Decision:
        if purpose not in rule.purposes:
            return Decision(False, rule.id, "purpose_not_allowed", sentence=f"rule {rule.id} does not allow purpose {purpose}")
        if lawful_basis not in rule.lawful_bases:
            return Decision(False, rule.id, "lawful_basis_not_allowed", sentence=f"rule {rule.id} does not allow basis {lawful_basis}")
        if rule.consent == "not-required":
            return Decision(True, rule.id)
        if consent == "given":
            return Decision(True, rule.id)
        if rule.consent == "required":
            return Decision(False, rule.id, "consent_required", sentence=f"rule {rule.id} requires consent")
        # required-unless-high-risk, consent not given
        if risk != "high":
            return Decision(False, rule.id, "consent_required", sentence=f"rule {rule.id} requires consent unless the risk is high")
        if lawful_basis not in rule.bases_without_consent:
            return Decision(False, rule.id, "basis_not_valid_without_consent", sentence=f"{lawful_basis} is not a basis for sharing without consent under {rule.id}")
        return Decision(True, rule.id, without_consent=True)
