"""False positives at scale: 16,539 real .gov domains, many one edit apart, must never hold each other."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rcptguard.model import Action
from tests.conftest import make_guard


def load(data_dir: Path) -> list[str]:
    lines = (data_dir / "dotgov_domains.txt").read_text("utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_no_gov_domain_is_held_for_another(data_dir: Path) -> None:
    """With half of .gov known, no domain of the other half is held or rejected (at most warned)."""
    domains = load(data_dir)
    assert len(domains) > 16_000
    guard = make_guard(("example.com",), tuple(domains[::2]))
    actions = Counter(guard.check(f"info@{d}").action for d in domains[1::2])
    assert actions[Action.HOLD] == actions[Action.REJECT] == 0
    assert actions[Action.WARN] > 0  # near neighbours exist and are noticed
    assert actions[Action.WARN] < 0.15 * len(domains[1::2])


def test_gov_names_under_com_are_held(data_dir: Path) -> None:
    """The same names under .com (not vetted) are held as slips of the known .gov domains."""
    domains = load(data_dir)[:2000]
    guard = make_guard((), tuple(domains))
    held = [d for d in domains if guard.check(f"x@{d[:-4]}.com").action is Action.HOLD]
    assert len(held) > 0.9 * len(domains)
