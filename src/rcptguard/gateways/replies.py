"""Plain-words texts for protocol replies: one line, ASCII, bounded length, no injection."""

from __future__ import annotations

import unicodedata
from email.header import Header

from rcptguard.model import Verdict

MAX_REPLY_TEXT = 400  # Postfix and most clients show a reply line of this length whole


def ascii_line(text: str, limit: int = MAX_REPLY_TEXT) -> str:
    """One line of printable ASCII: accents dropped, other letters as '?', controls as spaces."""
    out = []
    for ch in text:
        if ch.isascii():
            out.append(ch if ch.isprintable() else " ")
            continue
        base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
        out.append(base or "?")
    line = " ".join("".join(out).split())
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."


def explanation(verdict: Verdict) -> str:
    """What looked wrong and what was probably meant, for a bounce or a warning header: the finding, the
    message of a force rule if one decided, and the suggestion."""
    forced = verdict.signal("FORCE_RULE")
    message = forced.evidence.get("message", "") if forced else ""
    reason = verdict.reason.removeprefix(message).strip() if message else verdict.reason
    parts = [reason.split(". ", 1)[0].rstrip(".") + "."]
    if message:
        parts.append(message)
    parts.append(f"Did you mean {verdict.suggestion}? Check the address." if verdict.suggestion
                 else "Check the address.")
    return " ".join(parts)


def header_value(text: str) -> str:
    """A header field body: RFC 2047 encoded if it is not plain ASCII, never with a line break."""
    line = " ".join(text.split())
    if line.isascii():
        return line[:900]
    return Header(line[:300], "utf-8").encode(linesep=" ")


def warning_text(verdict: Verdict) -> str:
    """A warning about the recipient's domain, for a header every recipient may see: no address in it."""
    first = verdict.reason.split(". ", 1)[0].rstrip(".") + "."
    return f"{first} Check the address." if verdict.intended else first
