"""Held recipients and messages for quarantine tests, the same on SQLite and PostgreSQL."""

from __future__ import annotations

from rcptguard.store.quarantine import HeldRecipient


def gmial_recipient(address: str = "bob@gmial.com", suggestion: str | None = "bob@gmail.com") -> HeldRecipient:
    """A recipient held as a slip of gmail.com, with the signals and reason the engine would give."""
    return HeldRecipient(
        address=address, intended=suggestion, suggestion=suggestion,
        reason="gmial.com looks like a slip of gmail.com",
        signals=[{"name": "TYPO_SWAP", "score": 6.0, "evidence": {"typed": "gmial.com", "likely": "gmail.com"}}],
        score=6.0,
    )


def awkward_message(message_id: str, *, binary: bool = False) -> bytes:
    """A message a store must keep to the byte: an encoded subject, 8-bit UTF-8, lines that start with dots, a
    bare LF, trailing spaces, a lone dot line; with `binary`, bytes that are not UTF-8 and a NUL too."""
    return (
        b"From: Alice <alice@example.org>\r\n"
        b"To: bob@gmial.com\r\n"
        b"Subject: =?utf-8?q?Quarterly_r=C3=A9sum=C3=A9?=\r\n"
        b"Message-ID: <" + message_id.encode() + b">\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n"
        b"\r\n"
        b"Caf\xc3\xa9 at n\xc3\xa4chste Woche, the secret body text.\r\n"
        b".a line that starts with a dot\r\n"
        b"..and one with two\r\n"
        b"bare\nnewline and trailing spaces   \r\n"
        + (b"not UTF-8: \xff\xfe\x80 and a NUL \x00 byte\r\n" if binary else b"")
        + b".\r\n"
        b"end\r\n"
    )
