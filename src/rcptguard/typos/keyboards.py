"""Keyboard neighbours and distances, computed from the layouts in `data/keyboards.toml` (data apart from
the algorithm)."""

from __future__ import annotations

import math
import tomllib
from functools import cache
from importlib import resources

_NEAR = 1.3  # key pitches: a neighbour's centre is at most this far away (diagonals are about 1.1)


@cache
def positions() -> dict[str, dict[str, tuple[float, float]]]:
    """Each layout's map from a key to its centre (row, column), in key pitches."""
    raw = tomllib.loads(resources.files("rcptguard.data").joinpath("keyboards.toml").read_text("utf-8"))
    result: dict[str, dict[str, tuple[float, float]]] = {}
    for name, spec in raw["layouts"].items():
        keys: dict[str, tuple[float, float]] = {}
        for row, (row_keys, offset) in enumerate(zip(spec["rows"], spec["offsets"], strict=True)):
            for col, key in enumerate(row_keys):
                keys.setdefault(key, (float(row), col + float(offset)))
        result[name] = keys
    return result


@cache
def layouts() -> dict[str, dict[str, frozenset[str]]]:
    """Each layout's map from a key to the keys that touch it."""
    return {
        name: {
            key: frozenset(
                other
                for other, (r2, c2) in keys.items()
                if other != key and abs(r - r2) <= 1 and math.hypot(r - r2, c - c2) <= _NEAR
            )
            for key, (r, c) in keys.items()
        }
        for name, keys in positions().items()
    }


@cache
def neighbours(a: str, b: str) -> tuple[str, ...]:
    """The layouts on which keys `a` and `b` touch (empty if none)."""
    return tuple(name for name, keys in layouts().items() if b in keys.get(a, ()))


@cache
def distance(a: str, b: str) -> float:
    """The distance between keys `a` and `b` in key pitches, on the layout where they are closest
    (`inf` when no layout has both)."""
    best = math.inf
    for keys in positions().values():
        pa, pb = keys.get(a), keys.get(b)
        if pa is not None and pb is not None:
            best = min(best, math.hypot(pa[0] - pb[0], pa[1] - pb[1]))
    return best
