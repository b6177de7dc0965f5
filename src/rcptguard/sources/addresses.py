"""Addresses, dates and header blocks as archives hold them, turned into the forms rcptguard compares.

An address is normalised once, as everywhere in rcptguard (`domains.parse_address`): the domain in its A-label
form (`xn--…`, so both spellings of an IDN meet), the local part lower-cased when it is ASCII (mail systems
treat it so in practice, and a history keyed on it must not split `J.Doe` from `j.doe`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from functools import lru_cache

from rcptguard.domains import parse_address
from rcptguard.model import Address

MAX_HEADER_BLOCK = 1 << 20  # octets of a message's header block read before it counts as damage
WANTED = frozenset({b"from", b"to", b"cc", b"bcc", b"date", b"message-id", b"subject", b"content-type"})

_FIELD = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:[ \t]*(.*)$")
_FOLD = re.compile(r"\r?\n[ \t]+")
_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_SPECIAL = frozenset('"()\\;:')


@lru_cache(maxsize=65536)
def normal_address(raw: str) -> str | None:
    """`raw` as rcptguard compares it (`local@a-label.domain`), or None when it is not an address."""
    parsed = parse_address(raw)
    if not isinstance(parsed, Address):
        return None
    return parsed.key


def _plain_items(value: str) -> list[str] | None:
    """The addresses of a header value with no quotes, comments or groups (most of them), else None."""
    if any(c in value for c in _SPECIAL):
        return None
    out = []
    for item in value.split(","):
        opening = item.rfind("<")
        if opening >= 0:
            closing = item.find(">", opening)
            if closing < 0:
                return None
            out.append(item[opening + 1 : closing])
        elif item.strip():
            out.append(item.strip())
    return out


def addresses_in(value: str) -> tuple[list[str], int]:
    """The addresses of a To/Cc/From header value (encoded words left as they are), normalised, and how many
    could not be read."""
    found, bad = [], 0
    plain = _plain_items(value)
    items = plain if plain is not None else [raw for _name, raw in email.utils.getaddresses([value])]
    for raw in items:
        if not raw:
            continue
        normal = normal_address(_WORD.sub(_decode_word, raw) if "=?" in raw else raw)
        if normal is None:
            bad += 1
        else:
            found.append(normal)
    return found, bad


def header_fields(block: bytes) -> tuple[dict[bytes, list[bytes]], bool]:
    """The fields of a header block that rcptguard reads (lower-case names), unfolded lazily; and whether any
    line was not a field (damage a reader counts)."""
    out: dict[bytes, list[bytes]] = {}
    last: list[bytes] | None = None
    damaged = False
    for line in block.split(b"\n"):
        if not line or line == b"\r":
            continue
        if line[0] in b" \t":
            if last is not None:
                last[-1] += b"\n" + line
            continue
        match = _FIELD.match(line)
        if match is None:
            damaged = True
            last = None
            continue
        name = match[1].lower()
        if name in WANTED:
            last = out.setdefault(name, [])
            last.append(match[2])
        else:
            last = None
    return out, damaged


def header_text(raw: bytes, words: bool = True) -> tuple[str, bool]:
    """A header value as text (folds joined, RFC 2047 words decoded unless `words` is False: address fields keep
    them, a decoded display name could hold commas); and whether it was not valid UTF-8."""
    try:
        text, bad = raw.decode("utf-8"), False
    except UnicodeDecodeError:
        text, bad = raw.decode("latin-1"), True
    text = _FOLD.sub(" ", text).strip()
    if words and "=?" in text:
        decoded = decode_words(text)
        bad = bad or (decoded == text and "?=" in text)
        text = decoded
    return text, bad


def _decode_word(match: re.Match[str]) -> str:
    """One RFC 2047 encoded word inside an address (some mailers encode an IDN domain so), decoded in place."""
    return decode_words(match[0])


def decode_words(text: str) -> str:
    """RFC 2047 encoded words decoded (some mailers encode an IDN domain so, and display names), the text as it is if
    they are bad."""
    try:
        return str(make_header(decode_header(text)))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return text


def parse_date(text: str) -> dt.datetime | None:
    """An RFC 5322 date as an aware datetime (UTC when it names no zone), or None when it is not one."""
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def message_id(text: str) -> str | None:
    """A Message-ID without its angle brackets, or None when empty."""
    text = text.strip().strip("<>").strip()
    return text or None
