"""One edit inside the name: omissions, insertions, swaps, neighbouring keys, dots, hyphens, bit flips.

A candidate with two slips (two in a strong name, or one in the name and one in the suffix) is named one
edit at a time by the same detectors (see `detect.explain`).
"""

from __future__ import annotations

from collections.abc import Callable

from rcptguard.index import Candidate
from rcptguard.model import Signal
from rcptguard.typos.edits import Edit, Op
from rcptguard.typos.slips import VOWELS, describe, is_bitflip, is_lookalike, is_repetition, keyboard_layouts
from rcptguard.typos.suffixes import country_codes


def _signal(name: str, c: Candidate, edit: Edit, detail: str | None = None) -> Signal:
    return Signal(
        name,
        {"typed": c.typed, "likely": c.target.domain.unicode, "edit": edit.op.value,
         "detail": detail or describe(edit)},
    )


def _detector(name: str, doc: str, test: Callable[[Edit], bool]) -> Callable[[Candidate], Signal | None]:
    def detect(c: Candidate) -> Signal | None:
        edit = c.edit
        return _signal(name, c, edit) if edit is not None and test(edit) else None

    detect.__name__ = name.lower()
    detect.__qualname__ = name.lower()
    detect.__doc__ = doc
    return detect


def _ends_label(edit: Edit) -> bool:
    return edit.after() in ("", ".")


def glued_prefix(c: Candidate) -> Signal | None:
    """A country code glued to a protected domain (deibm.com for de.ibm.com)."""
    edit = c.edit
    if edit is None or c.intended_stem == c.target.stem or edit.was != ".":
        return None
    label = c.intended_stem.split(".", 1)[0]
    if label not in country_codes():  # another dot left out is MISSING_DOT (armymil, dstl.govuk)
        return None
    return Signal("GLUED_PREFIX", {"typed": c.typed, "likely": c.intended, "edit": edit.op.value,
                                   "detail": f"the dot after {label!r} is missing"})


misplaced_dot = _detector(
    "MISPLACED_DOT", "A dot typed one place off, moving a letter across it (hotmailc.om for hotmail.com).",
    lambda e: e.op is Op.TRANSPOSITION and "." in e.was)
missing_dot = _detector(
    "MISSING_DOT", "A dot left out between two labels (usmeridianbank.com for us.meridianbank.com).",
    lambda e: e.op is Op.OMISSION and e.was == ".")
dot_hyphen = _detector(
    "DOT_HYPHEN", "A dot typed as a hyphen or the reverse (fr-example.com for fr.example.com).",
    lambda e: e.op is Op.SUBSTITUTION and {e.was, e.now} == {".", "-"})
hyphen_drop = _detector(
    "HYPHEN_DROP", "A hyphen left out (oakridgeclinic.org for oakridge-clinic.org).",
    lambda e: e.op is Op.OMISSION and e.was == "-")
hyphen_add = _detector(
    "HYPHEN_ADD", "A hyphen added (e-xample.com for example.com).",
    lambda e: e.op is Op.INSERTION and e.now == "-")
plural = _detector(
    "PLURAL", "An 's' added or dropped at the end of a name (examples.com for example.com).",
    lambda e: e.op in (Op.INSERTION, Op.OMISSION) and (e.now or e.was) == "s" and _ends_label(e))
repetition = _detector(
    "REPETITION", "A letter typed twice (hotmaill.com).", is_repetition)
ascii_lookalike = _detector(
    "ASCII_LOOKALIKE", "A letter that looks like another in many fonts (linkedln.com: l for i).", is_lookalike)
transposition = _detector(
    "TRANSPOSITION", "Two neighbouring letters swapped (gmial.com).", lambda e: e.op is Op.TRANSPOSITION)
keyboard_typo = _detector(
    "KEYBOARD_TYPO", "A neighbouring key hit instead of, or beside, the right one (gmaik.com).",
    lambda e: bool(keyboard_layouts(e)))
vowel_swap = _detector(
    "VOWEL_SWAP", "One vowel typed for another (gmeil.com).",
    lambda e: e.op is Op.SUBSTITUTION and e.was in VOWELS and e.now in VOWELS)
omission = _detector("OMISSION", "A letter left out (gmil.com).", lambda e: e.op is Op.OMISSION)
bitflip = _detector(
    "BITFLIP", "One bit of one character flipped in memory or on the wire (amazoo.com).", is_bitflip)
insertion = _detector("INSERTION", "An extra letter (gmaill.com is REPETITION; gmaiql.com).",
                      lambda e: e.op is Op.INSERTION)
substitution = _detector("SUBSTITUTION", "One letter typed for another, not a neighbour (gmbil.com).",
                         lambda e: e.op is Op.SUBSTITUTION)

DETECTORS = (glued_prefix, missing_dot, dot_hyphen, hyphen_drop, hyphen_add, plural, repetition, ascii_lookalike,
             misplaced_dot, transposition, keyboard_typo, vowel_swap, omission, bitflip, insertion, substitution)
