"""The evaluation harness: recall per slip category and false positives on a labelled set of recipients.

Cases are CSV rows `case,profile,recipient,expected,category`, where `expected` is `typo:DOMAIN` (the domain
meant), `legit` or `ambiguous`; a profile names an organisation's protected and known domains (JSON).

* a typo is caught when the verdict is hold or reject *and* names the expected domain;
* a hard false positive is a hold or reject on a legit or ambiguous recipient;
* a soft false positive is a warning on a legit recipient.

A *class* is the first word of a case's category. `Report.classes()` scores each: the share of its typos
caught, or, for a class of legit recipients, the share not held. tests/unit/test_eval_classes.py holds every
class of tests/data/classes_*.csv to at least 0.9.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rcptguard.errors import EvalError as EvalError  # noqa: PLC0414 - re-exported: the same class under its old home
from rcptguard.guard import Guard
from rcptguard.model import Action, Verdict
from rcptguard.policy import ConfigError, Policy


@dataclass(frozen=True, slots=True)
class Case:
    case: str
    profile: str
    recipient: str
    expected: str
    category: str

    @property
    def intended(self) -> str | None:
        return self.expected.partition(":")[2] if self.expected.startswith("typo:") else None

    @property
    def group(self) -> str:
        return self.category.split()[0] if self.category.strip() else "-"


@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    verdict: Verdict

    @property
    def caught(self) -> bool:
        return self.verdict.action >= Action.HOLD and self.verdict.intended == self.case.intended


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def typos(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.case.intended is not None]

    @property
    def legit(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.case.expected == "legit"]

    @property
    def recall(self) -> float:
        typos = self.typos
        return sum(o.caught for o in typos) / len(typos) if typos else 1.0

    @property
    def missed(self) -> list[Outcome]:
        return [o for o in self.typos if not o.caught]

    @property
    def hard_fp(self) -> list[Outcome]:
        return [o for o in self.outcomes
                if o.case.intended is None and o.verdict.action >= Action.HOLD]

    @property
    def soft_fp(self) -> list[Outcome]:
        return [o for o in self.legit if o.verdict.action is Action.WARN]

    @property
    def soft_fp_rate(self) -> float:
        legit = self.legit
        return len(self.soft_fp) / len(legit) if legit else 0.0

    def by_category(self) -> dict[str, tuple[int, int]]:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for o in self.typos:
            counts[o.case.group][0] += o.caught
            counts[o.case.group][1] += 1
        return {k: (v[0], v[1]) for k, v in sorted(counts.items())}

    def classes(self) -> dict[str, tuple[int, int]]:
        """Each class (first word of the category) with (right, total): typos caught, or legit ones not held."""
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for o in self.outcomes:
            right = o.caught if o.case.intended is not None else o.verdict.action < Action.HOLD
            counts[o.case.group][0] += right
            counts[o.case.group][1] += 1
        return {k: (v[0], v[1]) for k, v in sorted(counts.items())}

    def to_json(self) -> dict[str, Any]:
        def row(o: Outcome) -> dict[str, Any]:
            return {"case": o.case.case, "recipient": o.case.recipient, "expected": o.case.expected,
                    "verdict": str(o.verdict.action), "intended": o.verdict.intended}

        return {
            "cases": len(self.outcomes),
            "typos": len(self.typos),
            "recall": round(self.recall, 4),
            "recall_by_category": {k: {"caught": c, "total": t} for k, (c, t) in self.by_category().items()},
            "by_class": {k: {"right": c, "total": t} for k, (c, t) in self.classes().items()},
            "hard_false_positives": [row(o) for o in self.hard_fp],
            "soft_false_positives": [row(o) for o in self.soft_fp],
            "soft_false_positive_rate": round(self.soft_fp_rate, 4),
            "missed": [row(o) for o in self.missed],
        }


def load_cases(path: Path) -> list[Case]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"case", "profile", "recipient", "expected"} - set(reader.fieldnames or ())
            if missing:
                raise EvalError(f"{path}: missing columns: {', '.join(sorted(missing))}")
            return [Case(r["case"], r["profile"], r["recipient"], r["expected"].strip(), r.get("category") or "")
                    for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EvalError(f"{path}: {exc}") from None


def load_profiles(path: Path) -> dict[str, dict[str, list[str]]]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EvalError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise EvalError(f"{path}: expected an object of profiles")
    return data


def evaluate(cases_path: Path, profiles_path: Path, policy: Policy) -> Report:
    cases = load_cases(cases_path)
    profiles = load_profiles(profiles_path)
    guards: dict[str, Guard] = {}
    report = Report()
    for case in cases:
        if case.profile not in profiles:
            raise EvalError(f"{cases_path}: case {case.case} names an unknown profile {case.profile!r}")
        guard = guards.get(case.profile)
        if guard is None:
            profile = profiles[case.profile]
            try:
                guard = Guard(policy.with_domains(tuple(profile.get("protect", ())), tuple(profile.get("known", ()))))
            except ConfigError as exc:
                raise EvalError(f"profile {case.profile!r}: {exc}") from None
            guards[case.profile] = guard
        report.outcomes.append(Outcome(case, guard.check(case.recipient)))
    return report


def render_text(report: Report) -> str:
    lines = [f"cases {len(report.outcomes)}, typos {len(report.typos)}, legit {len(report.legit)}",
             f"recall {report.recall:.3f} (hold/reject naming the expected domain)", "", "recall by category:"]
    for name, (caught, total) in report.by_category().items():
        lines.append(f"  {name:<18} {caught:>3}/{total:<3} {caught / total:.2f}")
    legit_classes = {k: v for k, v in report.classes().items() if k not in report.by_category()}
    if legit_classes:
        lines.append("")
        lines.append("legit recipients not held, by category:")
        for name, (right, total) in legit_classes.items():
            lines.append(f"  {name:<18} {right:>3}/{total:<3} {right / total:.2f}")
    lines.append("")
    lines.append(f"hard false positives (hold/reject on legit or ambiguous): {len(report.hard_fp)}")
    lines.extend(f"  {o.case.case} {o.case.recipient} -> {o.verdict.action} {o.verdict.intended}"
                 for o in report.hard_fp)
    lines.append(f"soft false positives (warn on legit): {len(report.soft_fp)} "
                 f"({report.soft_fp_rate:.1%} of legit)")
    lines.extend(f"  {o.case.case} {o.case.recipient} -> warn {o.verdict.intended}" for o in report.soft_fp)
    if report.missed:
        lines.append(f"missed typos: {len(report.missed)}")
        lines.extend(f"  {o.case.case} {o.case.recipient} expected {o.case.intended} -> "
                     f"{o.verdict.action} {o.verdict.intended}" for o in report.missed)
    return "\n".join(lines)
