"""The grammars of everything that travels in clear (SPEC.md §3.1).

A value that is not of its grammar is refused; its text is never repeated in an error.
`re.fullmatch` with explicit ASCII classes: Python's `\\d` would take any Unicode digit.
"""

import re

AGENCY_ID = re.compile(r"[a-z0-9-]{1,64}")
KEY_ID = re.compile(r"(?:ed25519|age):[0-9a-f]{16}")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
SUBJECT_REF = re.compile(r"s-[0-9a-f]{32}")
LINK_TOKEN = re.compile(r"l-[0-9a-f]{32}")
_CASE_REF = re.compile(r"[A-Z]{2,8}(?:-(?:[0-9]{1,12}|[A-Z]{1,3})){1,4}")
_DIGIT_GROUP = re.compile(r"-[0-9]+(?=-|$)")
STAFF_ID = re.compile(r"[a-z0-9][a-z0-9._-]{1,63}")
POLICY_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _full(pattern: re.Pattern, value) -> bool:
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def is_agency_id(v) -> bool:
    return _full(AGENCY_ID, v)


def is_key_id(v) -> bool:
    return _full(KEY_ID, v)


def is_envelope_id(v) -> bool:
    """Envelope ids and event ids: a lowercase hyphenated UUID (36 characters)."""
    return _full(UUID, v)


def is_subject_ref(v) -> bool:
    return _full(SUBJECT_REF, v)


def is_link_token(v) -> bool:
    return _full(LINK_TOKEN, v)


def is_case_ref(v) -> bool:
    """2-8 capitals, then 1-4 groups of `-` and 1-12 digits or 1-3 capitals, at least one
    group of digits, 32 characters at most."""
    return (
        isinstance(v, str)
        and len(v) <= 32
        and _CASE_REF.fullmatch(v) is not None
        and _DIGIT_GROUP.search(v) is not None
    )


def is_consent_id(v) -> bool:
    return is_envelope_id(v) or is_case_ref(v)


def is_staff_id(v) -> bool:
    return _full(STAFF_ID, v)


def is_policy_token(v) -> bool:
    return _full(POLICY_TOKEN, v)


ROUTE = re.compile(r"[A-Z]{3,7} /[A-Za-z0-9/{}_.-]*")
REVISION = re.compile(r"revision-[0-9]{1,20}")


def is_route(v) -> bool:
    """The rule of an `accessed` event: a method, a space and a route pattern (§10)."""
    return isinstance(v, str) and len(v) <= 128 and _full(ROUTE, v)


def is_revision(v) -> bool:
    """The case_ref of a `consent_changed` event (§10)."""
    return _full(REVISION, v)
