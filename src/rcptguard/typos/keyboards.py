"""Keyboard neighbours, computed from the layouts in `data/keyboards.toml` (data apart from the algorithm)."""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources

_NEAR = 1.3  # key pitches: a neighbour's centre is at most this far away (diagonals are about 1.1)


@cache
def layouts() -> dict[str, dict[str, frozenset[str]]]:
    """Each layout's map from a key to the keys that touch it."""
    raw = tomllib.loads(resources.files("rcptguard.data").joinpath("keyboards.toml").read_text("utf-8"))
    result: dict[str, dict[str, frozenset[str]]] = {}
    for name, spec in raw["layouts"].items():
        positions: dict[str, tuple[float, float]] = {}
        for row, (keys, offset) in enumerate(zip(spec["rows"], spec["offsets"], strict=True)):
            for col, key in enumerate(keys):
                positions.setdefault(key, (float(row), col + float(offset)))
        result[name] = {
            key: frozenset(
                other
                for other, (r2, c2) in positions.items()
                if other != key and abs(r - r2) <= 1 and ((r - r2) ** 2 + (c - c2) ** 2) ** 0.5 <= _NEAR
            )
            for key, (r, c) in positions.items()
        }
    return result


@cache
def neighbours(a: str, b: str) -> tuple[str, ...]:
    """The layouts on which keys `a` and `b` touch (empty if none)."""
    return tuple(name for name, keys in layouts().items() if b in keys.get(a, ()))
