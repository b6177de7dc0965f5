"""What the sensitivity scanner finds: named signals with evidence and a severity, never the values themselves."""

from __future__ import annotations

from dataclasses import dataclass, field

from rcptguard.model import Level


class Severity(Level):
    """How much is at stake if a message goes astray, ordered from nothing to most."""

    NONE = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3


@dataclass(frozen=True, slots=True)
class ContentSignal:
    """One kind of sensitive content found in one part: `PASSPORT_MRZ` in `attachment crew.pdf`, three times.

    `evidence` says where and by which pattern (`part`, `pattern`, `count`); it never holds the value found.
    `phrase` is what a sender reads: "what looks like a passport number".
    """

    name: str
    severity: Severity
    phrase: str
    evidence: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "severity": str(self.severity), "phrase": self.phrase,
                "evidence": dict(self.evidence)}


@dataclass(frozen=True, slots=True)
class Sensitivity:
    """The scanner's answer for one message: its severity, the signals that raised it, what could not be read."""

    severity: Severity = Severity.NONE
    signals: tuple[ContentSignal, ...] = ()
    unread: tuple[str, ...] = ()  # parts skipped or cut by the budget, or broken: "attachment x.zip: too large"

    @property
    def raised_by(self) -> tuple[ContentSignal, ...]:
        """The signals at the message's severity: what a reason names."""
        return tuple(s for s in self.signals if s.severity == self.severity and s.severity > Severity.NONE)

    def reason(self) -> str:
        """A sentence for the sender: "It contains what looks like a passport number and a password."."""
        phrases = list(dict.fromkeys(s.phrase for s in self.raised_by))
        if not phrases:
            return ""
        listed = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
        return f"It contains {listed}."

    def to_json(self) -> dict[str, object]:
        return {"severity": str(self.severity), "signals": [s.to_json() for s in self.signals],
                "unread": list(self.unread)}
