"""The corrected address in the To and Cc of a released message, where that is safe.

    rewritten, why_not = correct_headers(content, "j.doe@gmial.com", "j.doe@gmail.com")

A message corrected from `gmial.com` to `gmail.com` still names `j.doe@gmial.com` in its To or Cc: the
recipient's Reply-All would go back to the lookalike domain. So the address is replaced in those two fields,
in place (the rest of the header and the body stay byte for byte), unless a DKIM signature covers them: then
the change would break the signature (and re-signing is the sending domain's business, not ours), so the
message goes as it is and the caller tells the sender that replies may go to the mistyped address.
"""

from __future__ import annotations

import re

__all__ = ["correct_headers"]

_FIELD = re.compile(rb"(?m)^([!-9;-~]+)[ \t]*:(.*(?:\r?\n[ \t].*)*)(?:\r?\n|\Z)")
_REWRITTEN = {b"to", b"cc"}


def _end_of_header(content: bytes) -> int:
    found = [i for i in (content.find(b"\r\n\r\n"), content.find(b"\n\n")) if i >= 0]
    return min(found) if found else len(content)


def _signed_fields(header: bytes) -> set[bytes]:
    """The header fields that some DKIM-Signature in `header` signs (its h= tag), lower case."""
    signed: set[bytes] = set()
    for match in _FIELD.finditer(header):
        if match[1].lower() != b"dkim-signature":
            continue
        tags = re.search(rb"(?:^|;)\s*h\s*=\s*([^;]*)", match[2])
        if tags:
            signed.update(name.strip().lower() for name in re.sub(rb"\s+", b"", tags[1]).split(b":"))
    return signed


def correct_headers(content: bytes, typed: str, corrected: str) -> tuple[bytes, str | None]:
    """The message with `typed` replaced by `corrected` in its To and Cc fields, and None; or the message as it
    was and why it was not changed ("signed": a DKIM signature covers To or Cc; "absent": neither names it)."""
    end = _end_of_header(content)
    header = content[:end]
    pattern = re.compile(rb"(?<![\w.!#$%&'*+/=?^`{|}~-])" + re.escape(typed.encode("utf-8", "surrogateescape"))
                         + rb"(?![\w-]|\.[\w-])", re.IGNORECASE)
    targets = [m for m in _FIELD.finditer(header) if m[1].lower() in _REWRITTEN and pattern.search(m[2])]
    if not targets:
        return content, "absent"
    if {m[1].lower() for m in targets} & _signed_fields(header):
        return content, "signed"
    replacement = corrected.encode("utf-8", "surrogateescape")
    out = bytearray()
    last = 0
    for match in targets:
        start, stop = match.span(2)
        out += header[last:start] + pattern.sub(lambda _m: replacement, header[start:stop])
        last = stop
    return bytes(out + header[last:]) + content[end:], None
