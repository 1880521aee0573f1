"""Name folding, subject refs and link tokens (SPEC.md §5)."""

import datetime
import re
import unicodedata

from . import grammar
from .common import hmac_sha256

# §5: "leading and trailing ASCII whitespace removed". Taken as the WHATWG / Rust
# `is_ascii_whitespace` set (space, tab, LF, FF, CR), which leaves out vertical tab (0x0B).
_ASCII_WHITESPACE = " \t\n\x0c\r"
_DOB = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def fold(full_name: str) -> str:
    """§5 name folding. Raises ValueError for a name that folds to nothing."""
    # 1. The compatibility caseless form (Unicode §3.13 D146), full case folding.
    x = unicodedata.normalize("NFKD", unicodedata.normalize("NFKD", unicodedata.normalize("NFD", full_name).casefold()).casefold())
    words, word = [], []
    for ch in x:
        category = unicodedata.category(ch)
        if category == "Mn":
            continue  # 2. nonspacing marks go
        if category in ("Zs", "Zl", "Zp", "Cc"):
            if word:  # 3. separators end a word
                words.append("".join(word))
                word = []
        elif category[0] in ("L", "N") or category in ("Mc", "Me"):
            word.append(ch)
        # everything else (punctuation, symbols, format, private use, unassigned) goes
    if word:
        words.append("".join(word))
    if not words:
        raise ValueError("the name has no letter or number: it would give one ref to everybody born that day")
    return " ".join(words)  # 4.


def normalise_dob(dob: str) -> str:
    """§5: YYYY-MM-DD, a real calendar date, after trimming ASCII whitespace."""
    d = dob.strip(_ASCII_WHITESPACE)
    if not _DOB.fullmatch(d):
        raise ValueError("the date of birth is not YYYY-MM-DD")
    try:
        datetime.date.fromisoformat(d)
    except ValueError:
        raise ValueError("the date of birth is not a calendar date") from None
    return d


def subject_ref(subject_key: bytes, full_name: str, dob: str) -> str:
    """§5: "s-" || hex(HMAC-SHA-256(subject_key, fold(full_name) || "\\0" || dob)[0..16])."""
    if subject_key is None:
        raise ValueError("this agency holds no subject key")
    message = fold(full_name).encode() + b"\0" + normalise_dob(dob).encode()
    return "s-" + hmac_sha256(subject_key, message)[:16].hex()


def link_token(subject_key: bytes, recipient_id: str, ref: str) -> str:
    """§5: the stand-in for a subject ref sent to an agency whose role holds no subject key."""
    if subject_key is None:
        raise ValueError("this agency holds no subject key")
    if not grammar.is_agency_id(recipient_id) or not grammar.is_subject_ref(ref):
        raise ValueError("a link token links a subject ref to an agency id")
    message = b"hub.v1.link\0" + recipient_id.encode() + b"\0" + ref.encode()
    return "l-" + hmac_sha256(subject_key, message)[:16].hex()
