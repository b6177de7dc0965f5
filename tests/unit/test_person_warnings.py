"""A recipient who may be the wrong person at a right domain, told apart from a mistyped-looking domain: which
verdicts are about the person, and a sender's warnings quieted per address for them, per domain for the rest."""

from __future__ import annotations

import pytest

from rcptguard.gateways.relay import WarningNotice
from rcptguard.history.judge import ODD_SIGNALS
from rcptguard.model import DOMAIN_DOUBTS, PERSON_SIGNALS, Action, Signal, Verdict
from rcptguard.notify import Warned


def verdict(address: str, *names: str, intended: str | None = None, suggestion: str | None = None) -> Verdict:
    """A warned verdict with these signals: history's and the typo model's add points, context (KNOWN_CORRESPONDENT,
    or NAME:0) none."""
    domain = address.rpartition("@")[2]
    signals = tuple(Signal(n.split(":")[0], {}, float(n.split(":")[1]) if ":" in n else
                           0.0 if n == "KNOWN_CORRESPONDENT" else 4.0) for n in names)
    return Verdict(address, domain, Action.WARN, 4.0, signals, "why", intended=intended, suggestion=suggestion,
                   domain_ascii=domain)


def test_every_odd_signal_is_about_the_person_or_the_domain() -> None:
    """A new odd-recipient signal must be placed on one side: the two sets split history's signals exactly."""
    assert set(ODD_SIGNALS) == PERSON_SIGNALS | DOMAIN_DOUBTS
    assert not PERSON_SIGNALS & DOMAIN_DOUBTS


@pytest.mark.parametrize(("made", "person"), [
    (verdict("olga@partner.com", "KNOWN_CORRESPONDENT", "ODD_GREETING", intended="partner.com",
             suggestion="nils@partner.com"), True),
    (verdict("olga@partner.com", "ODD_SUBSTITUTE", "ODD_NEW_FOR_SENDER", suggestion="nils@partner.com"), True),
    (verdict("x@partner.com", "ODD_NEW_TO_GROUP"), True),  # nobody suggested: still the person doubted
    (verdict("ann.lee@gmail.com", "ODD_PERSONAL", intended="org.example", suggestion="ann.lee@org.example"), True),
    (verdict("a@ymail.com", "TLD_SLIP", intended="gmail.com", suggestion="a@gmail.com"), False),  # the typo model
    (verdict("a@ymail.com", "TLD_SLIP", "ODD_NEW_ADDRESS", intended="gmail.com"), False),  # the domain too
    (verdict("a@army.ml", "ODD_DOMAIN_SLIP", "ODD_NEW_ADDRESS", intended="army.mil"), False),
    (verdict("x@new.example", "ODD_NEW_DOMAIN", "ODD_NEW_TO_GROUP"), False),
    (verdict("x@partner.co", "FIRST_CONTACT:1", "ODD_ADDRESS_SLIP"), False),  # never written to: the domain doubted
    (verdict("x@partner.com", "FORCE_RULE:0", "ODD_SUBSTITUTE"), False),  # a force rule always doubts the domain
    (verdict("x@partner.com", "KNOWN_CORRESPONDENT"), False),  # nothing raised it
])
def test_which_verdicts_doubt_the_person(made: Verdict, person: bool) -> None:
    assert made.about_person is person


def test_a_wrong_person_is_told_per_address_a_mistyped_domain_per_domain() -> None:
    """Two wrong picks at one partner the same day are each told; the same wrong pick again is not; a mistyped
    domain is told once whatever the address; a notice that could not be stored is forgotten as told."""
    warned = Warned(86400, 100)
    olga = ("olga@partner.com", verdict("olga@partner.com", "ODD_GREETING", intended="partner.com"))
    berg = ("o.berg@partner.com", verdict("o.berg@partner.com", "ODD_SUBSTITUTE", intended="partner.com"))
    typo = [(a, verdict(a, "TLD_SLIP", intended="gmail.com")) for a in ("a@ymail.com", "b@ymail.com")]
    first = WarningNotice.due(warned, "me@org.example", [olga, typo[0]])
    assert first is not None
    assert [f.recipient for f in first.flagged] == ["olga@partner.com", "a@ymail.com"]
    assert [f.person for f in first.flagged] == [True, False]
    assert WarningNotice.due(warned, "me@org.example", [olga, typo[1]]) is None
    second = WarningNotice.due(warned, "me@org.example", [berg])
    assert second is not None
    assert second.topics == ["o.berg@partner.com"]
    assert WarningNotice.due(warned, "someone.else@org.example", [olga]) is not None  # per sender
    second.not_sent(warned, OSError("disk full"))
    assert WarningNotice.due(warned, "me@org.example", [berg]) is not None
