"""Suffix slips: the name is right, the public suffix is not (`army.ml`, `raytheon.co`, `example.com.co`)."""

from __future__ import annotations

from rcptguard.index import Candidate
from rcptguard.model import Signal
from rcptguard.typos.cost import suffix_prior
from rcptguard.typos.edits import single_edit
from rcptguard.typos.slips import describe, likely_slip
from rcptguard.typos.suffixes import fix_for

# Suffixes typed out of habit in place of the one meant (the most used generic and "startup" suffixes).
HABIT_SUFFIXES = frozenset({"com", "net", "org", "io", "co"})


def _evidence(c: Candidate, **more: str) -> dict[str, str]:
    return {"typed": c.typed, "likely": c.intended, "edit": f"{c.intended_suffix}→{c.typed_suffix}", **more}


def no_such_tld(c: Candidate) -> Signal | None:
    """A suffix that does not exist, typed for a real one (.con for .com, .c for .com): the mail would bounce."""
    fix = fix_for(c.typed_suffix, c.intended_suffix)
    if fix is None:
        return None
    return Signal("NO_SUCH_TLD", _evidence(c, detail=fix.detail, cost=f"{fix.cost:.2f}"))


def tld_slip(c: Candidate) -> Signal | None:
    """A common slip inside the suffix: a letter dropped, doubled, swapped, or a neighbouring key (mil→ml)."""
    edit = single_edit(c.typed_suffix, c.intended_suffix)
    if edit is None or (kind := likely_slip(edit)) is None:
        return None
    return Signal("TLD_SLIP", _evidence(c, slip=kind, detail=describe(edit)))


def suffix_append(c: Candidate) -> Signal | None:
    """Another suffix added after the right one (example.com.co)."""
    if not c.typed_suffix.startswith(c.intended_suffix + "."):
        return None
    extra = c.typed_suffix[len(c.intended_suffix) :]
    return Signal("SUFFIX_APPEND", _evidence(c, detail=f"{extra!r} added after .{c.intended_suffix}"))


def tld_habit(c: Candidate) -> Signal | None:
    """A habitual suffix typed in place of the right one (.gov, .de, .ai typed as .com, .io, .co)."""
    if c.typed_suffix not in HABIT_SUFFIXES:
        return None
    if c.intended_suffix in HABIT_SUFFIXES and suffix_prior(c.typed_suffix) <= suffix_prior(c.intended_suffix):
        return None  # of two habitual suffixes, habit types the commoner for the rarer: not .io for .com
    return Signal("TLD_HABIT", _evidence(c, detail=f".{c.typed_suffix} typed out of habit"))


def tld_change(c: Candidate) -> Signal | None:
    """Any other one-letter change in the suffix (so→co, de→me)."""
    edit = single_edit(c.typed_suffix, c.intended_suffix)
    if edit is None:
        return None
    return Signal("TLD_CHANGE", _evidence(c, detail=describe(edit)))


def tld_swap(c: Candidate) -> Signal | None:
    """The same name under an unrelated suffix (amazon.com vs amazon.co.uk): weak, often the same owner."""
    return Signal("TLD_SWAP", _evidence(c, detail=f".{c.typed_suffix} instead of .{c.intended_suffix}"))


DETECTORS = (no_such_tld, tld_slip, suffix_append, tld_habit, tld_change, tld_swap)
