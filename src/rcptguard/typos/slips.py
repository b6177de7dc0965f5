"""Which single edits are the slips people really make, and in what words to describe them."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

from rcptguard.typos.edits import Edit, Op
from rcptguard.typos.keyboards import neighbours

VOWELS = frozenset("aeiouy")


@cache
def lookalike_pairs() -> frozenset[frozenset[str]]:
    raw = tomllib.loads(resources.files("rcptguard.data").joinpath("lookalikes.toml").read_text("utf-8"))
    return frozenset(frozenset(pair) for pair in raw["pairs"])


def is_repetition(edit: Edit) -> bool:
    """An extra copy of the character beside it (`hotmaill`)."""
    return edit.op is Op.INSERTION and edit.now in (edit.before(), edit.after())


def keyboard_layouts(edit: Edit) -> tuple[str, ...]:
    """The layouts on which the edit is a fat finger: a neighbouring key hit instead of, or beside, the right one."""
    if edit.op is Op.SUBSTITUTION:
        return neighbours(edit.was, edit.now)
    if edit.op is Op.INSERTION:
        beside = [c for c in (edit.before(), edit.after()) if c]
        return tuple(dict.fromkeys(layout for c in beside for layout in neighbours(c, edit.now)))
    return ()


def is_lookalike(edit: Edit) -> bool:
    return edit.op is Op.SUBSTITUTION and frozenset((edit.was, edit.now)) in lookalike_pairs()


def is_bitflip(edit: Edit) -> bool:
    if edit.op is not Op.SUBSTITUTION:
        return False
    flipped = ord(edit.was) ^ ord(edit.now)
    return flipped & (flipped - 1) == 0


def likely_slip(edit: Edit) -> str | None:
    """A short name for the edit if it is one of the common slips, else None."""
    if edit.op is Op.OMISSION:
        return "omission"
    if edit.op is Op.TRANSPOSITION:
        return "transposition"
    if is_repetition(edit):
        return "repetition"
    if keyboard_layouts(edit):
        return "keyboard"
    return None


def describe(edit: Edit) -> str:
    """The slip in words a sender reads: "the 'i' is missing", "'ai' typed as 'ia'"."""
    if is_repetition(edit):
        return f"{edit.now!r} typed twice"
    layouts = keyboard_layouts(edit)
    if edit.op is Op.SUBSTITUTION and layouts:
        return f"{edit.now!r} typed for {edit.was!r}, its neighbour on the keyboard"
    if edit.op is Op.INSERTION and layouts:
        return f"an extra {edit.now!r}, a neighbouring key"
    return edit.describe()
