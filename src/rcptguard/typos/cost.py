"""A model of typing: what each slip costs, in bits, so that likely slips rank before unlikely ones.

The figures are data (`data/typing.toml`, with their sources); this module only applies them. A cost ranks
explanations: of two intended domains, the one reached by the cheaper slips is named first, and of the ways
two edits turn one name into another, the cheapest is the one the sender reads. It never decides an action.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from rcptguard.typos.edits import Edit, Op, paths, single_edit
from rcptguard.typos.keyboards import distance
from rcptguard.typos.slips import VOWELS, is_lookalike, is_repetition, keyboard_layouts


@dataclass(frozen=True, slots=True)
class Costs:
    edit: dict[str, float]
    registrations: dict[str, float]
    popularity: float


@cache
def costs() -> Costs:
    raw = tomllib.loads(resources.files("rcptguard.data").joinpath("typing.toml").read_text("utf-8"))
    return Costs({k: float(v) for k, v in raw["edit"].items()},
                 {k: float(v) for k, v in raw["suffix"]["registrations"].items()},
                 float(raw["suffix"]["popularity"]))


def edit_cost(edit: Edit, in_name: bool = True) -> float:
    """The cost of one edit: dropped letters cheapest, then doubles, swaps and neighbouring keys; far keys
    and stray letters dearest; more at the first letter of a name (not of a suffix: `in_name` False)."""
    table = costs().edit
    if edit.op is Op.OMISSION:
        cost = table["omission"]
    elif edit.op is Op.TRANSPOSITION:
        cost = table["transposition"]
    elif is_repetition(edit):
        cost = table["repetition"]
    elif keyboard_layouts(edit):
        cost = table["neighbour"]
    elif is_lookalike(edit):
        cost = table["lookalike"]
    elif edit.op is Op.SUBSTITUTION and edit.was in VOWELS and edit.now in VOWELS:
        cost = table["vowel"]
    elif edit.op is Op.SUBSTITUTION:
        far = distance(edit.was, edit.now)
        cost = table["substitution"] + table["per_key_pitch"] * (far if math.isfinite(far) else 10.0)
    else:
        cost = table["insertion"]
    if in_name and edit.pos == 0 and edit.op is not Op.TRANSPOSITION:
        cost += table["first_letter"]
    return cost


def cheapest(typed: str, intended: str, most: int = 2, in_name: bool = True) -> tuple[Edit, ...] | None:
    """The cheapest way, of at most `most` (1 or 2) edits, to type `typed` for `intended`; None if there is none."""
    one = single_edit(typed, intended)
    if one is not None:
        return (one,)
    if most < 2:
        return None
    options = paths(typed, intended)
    if not options:
        return None
    return min(options, key=lambda pair: edit_cost(pair[0], in_name) + edit_cost(pair[1], in_name))


def path_cost(edits: tuple[Edit, ...], in_name: bool = True) -> float:
    return sum(edit_cost(e, in_name) for e in edits)


def suffix_prior(tld: str) -> float:
    """How much cheaper a correction to `tld` is because it is much used (com, de, net, ...)."""
    table = costs()
    return table.popularity * math.log10(table.registrations.get(tld, 0.0) + 1.0)
