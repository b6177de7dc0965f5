"""The core types every door into the mail path shares: addresses, domains, signals and verdicts."""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Self


class Level(enum.IntEnum):
    """An ordered scale read and written by its lower-case names (`hold`, `medium`)."""

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Self:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(str(a) for a in cls)
            raise ValueError(f"unknown {cls.__name__.lower()} {text!r} (expected one of {names})") from None


# The odd recipient out's signals that doubt the person at a domain, not the domain (rcptguard.history.judge)
PERSON_SIGNALS = frozenset({"ODD_NEW_TO_GROUP", "ODD_NEW_ADDRESS", "ODD_ADDRESS_SLIP", "ODD_NEW_FOR_SENDER",
                            "ODD_SUBSTITUTE", "ODD_PERSONAL", "ODD_GREETING"})
_DOUBT = "doubt"  # the evidence key of a signal that raised a recipient the guard passed: "person"


def mark_person(signal: Signal) -> Signal:
    """The signal, marked as one of those that raised a recipient whose domain the guard passed, for doubts of the
    person alone (`doubts_person`): history's judgement marks them, as they are stored with a hold."""
    return Signal(signal.name, {**signal.evidence, _DOUBT: "person"}, signal.score)


def doubts_person(evidence: Iterable[object]) -> bool:
    """Whether a recipient was raised only for doubts of the person at a domain the guard passed (a greeting of
    somebody else, a wrong pick in a group, an address nobody wrote to at a correspondent, a colleague's personal
    address), not of the domain: its signals' evidence (dicts, as stored with a hold) carry history's mark. Such a
    recipient's release says nothing of its domain, and a notice says it may not be the one the sender meant."""
    return any(isinstance(found, dict) and found.get(_DOUBT) == "person" for found in evidence)


class Action(Level):
    """What to do with one recipient, ordered from mildest to strongest."""

    PASS = 0
    WARN = 1
    HOLD = 2
    REJECT = 3


class Role(enum.IntEnum):
    """Why the engine knows a domain; a higher role is a stronger prior that mail is meant for it."""

    POPULAR = 1  # a major mailbox provider from the shipped list
    KNOWN = 2  # a correspondent: configured or learned from traffic
    PROTECTED = 3  # the organisation's own domains, or a whole suffix such as mil

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Domain:
    """A normalised domain name: lower case, no trailing dot, UTS-46 mapped.

    `ascii` is the A-label form (`xn--...`), `unicode` the U-label form; both are kept so that either
    spelling of one domain gets the same verdict. `suffix` is the public suffix of the ASCII form.
    """

    ascii: str
    unicode: str
    suffix: str

    @property
    def labels(self) -> int:
        return self.ascii.count(".") + 1

    @property
    def is_idn(self) -> bool:
        return self.ascii != self.unicode

    def display(self) -> str:
        """The form a person reads: the Unicode form, with the A-label beside it for IDN."""
        return f"{self.unicode} ({self.ascii})" if self.is_idn else self.ascii

    def __str__(self) -> str:
        return self.unicode


@dataclass(slots=True)  # a value never changed once made; not frozen, which costs on every check
class Address:
    """A recipient address parsed once: the local part as given and a normalised domain."""

    local: str
    domain: Domain

    @property
    def text(self) -> str:
        return f"{self.local}@{self.domain.unicode}"

    def with_domain(self, domain: str) -> str:
        return f"{self.local}@{domain}"

    @property
    def key(self) -> str:
        """How rcptguard compares and remembers the address: the local part in lower case, the domain in A-label
        form (`fold_local`)."""
        return f"{fold_local(self.local)}@{self.domain.ascii}"


def fold_local(local: str) -> str:
    """A local part as one mailbox is written however it is typed: in lower case, and a non-ASCII one in NFC (RFC
    6532), so `Ünal`, `ünal` and `u` + U+0308 `nal` are one; `ß` stays `ß`. A non-ASCII character that folding
    would make ASCII (the Kelvin sign's K, U+037E's semicolon, U+0130's dotted i) is another mailbox that looks like
    an ASCII one, not a way of writing it: such a local part is kept as written."""
    if local.isascii():
        return local.lower()
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", local).lower())
    return local if _ascii_count(folded) > _ascii_count(local) else folded


def _ascii_count(text: str) -> int:
    return sum(1 for c in text if c < "\x80")


@dataclass(frozen=True, slots=True)
class Malformed:
    """An address that could not be parsed: the raw text and a reason a person understands."""

    raw: str
    reason: str


@dataclass(slots=True)  # a value never changed once made; not frozen, which costs on every check
class Signal:
    """A named finding with its evidence, like an rspamd symbol: `TLD_SLIP(typed=army.ml, likely=army.mil)`.

    Detectors emit signals without scores; the policy gives each one its weight.
    """

    name: str
    evidence: dict[str, str] = field(default_factory=dict)
    score: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "score": round(self.score, 2), "evidence": dict(self.evidence)}


@dataclass(slots=True)  # a value never changed once made; not frozen, which costs on every check
class Verdict:
    """The decision for one recipient, in the shape every gateway turns into its own protocol's answer."""

    address: str
    domain: str | None
    action: Action
    score: float
    signals: tuple[Signal, ...]
    reason: str
    intended: str | None = None
    suggestion: str | None = None
    domain_ascii: str | None = None
    alternatives: tuple[str, ...] = ()

    def copy(self) -> Verdict:
        """A verdict equal to this one, for the caller to change (`dataclasses.replace` costs three times as much, and
        the judgement of most recipients makes one)."""
        return Verdict(self.address, self.domain, self.action, self.score, self.signals, self.reason, self.intended,
                       self.suggestion, self.domain_ascii, self.alternatives)

    def signal(self, name: str) -> Signal | None:
        for signal in self.signals:  # (a loop, not next() over a generator: asked several times of every verdict)
            if signal.name == name:
                return signal
        return None

    @property
    def about_person(self) -> bool:
        """Raised only for doubts of the person at a domain the guard passed (`doubts_person`): a notice then says
        the recipient may not be the one meant, and a warning is quieted per address rather than per domain."""
        return doubts_person(signal.evidence for signal in self.signals)

    def to_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "domain": self.domain,
            "domain_ascii": self.domain_ascii,
            "verdict": str(self.action),
            "intended": self.intended,
            "suggestion": self.suggestion,
            "score": round(self.score, 2),
            "signals": [s.to_json() for s in self.signals],
            "reason": self.reason,
            "alternatives": list(self.alternatives),
        }
