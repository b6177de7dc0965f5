"""Held recipients for quarantine tests, the same on SQLite and PostgreSQL."""

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
