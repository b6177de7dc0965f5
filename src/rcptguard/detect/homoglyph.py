"""Lookalikes: the same visual skeleton (Unicode TR39) as an indexed domain."""

from __future__ import annotations

from rcptguard.index import Candidate
from rcptguard.model import Signal
from rcptguard.typos.skeleton import scripts_of


def idn_homoglyph(c: Candidate) -> Signal | None:
    """Letters from another script that look the same (аmazon.com with a Cyrillic а)."""
    foreign = scripts_of(c.typed)
    if not foreign:
        return None
    letters = ", ".join(f"{ch} ({name.lower()})" for ch, name in foreign.items())
    return Signal("IDN_HOMOGLYPH", {"typed": c.typed, "likely": c.target.domain.unicode, "letters": letters,
                                    "detail": f"it uses {letters}"})


def ascii_lookalike(c: Candidate) -> Signal | None:
    """Plain letters or digits that look like others (arnazon.com: rn for m; amaz0n.com: 0 for o)."""
    if not c.typed.isascii():
        return None
    return Signal("ASCII_LOOKALIKE", {"typed": c.typed, "likely": c.target.domain.unicode,
                                      "detail": "letters that look like the real ones"})


DETECTORS = (idn_homoglyph, ascii_lookalike)
