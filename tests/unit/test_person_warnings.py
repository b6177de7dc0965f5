"""A recipient who may be the wrong person at a right domain, told apart from a mistyped-looking domain: which
verdicts history marks as doubts of the person (real judgements), and a sender's warnings quieted per address for
them, per domain for the rest."""

from __future__ import annotations

import datetime as dt

from rcptguard.gateways.relay import WarningNotice
from rcptguard.guard import Guard
from rcptguard.history import Batch, Counted, MemoryHistory
from rcptguard.history.greeting import greeting_of
from rcptguard.history.judge import ODD_SIGNALS, judge_message
from rcptguard.model import PERSON_SIGNALS, Action, Signal, Verdict, doubts_person, mark_person
from rcptguard.notify import Doubt, Warned
from rcptguard.policy import load_policy
from rcptguard.runtime import counted

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
ME = "mark.jones@org.example"


def to(*addresses: str) -> list[Counted]:
    return [Counted(a, a.rpartition("@")[2]) for a in addresses]


def judged(history: MemoryHistory, recipients: list[str], sender: str = ME, opening: str = "") -> list[Verdict]:
    engine = Guard(load_policy(), learned=history.learned(NOW))
    greeting = greeting_of(opening) if opening else None
    return judge_message(engine, sender, recipients, history, now=NOW, greeting=greeting)


def history_of(*messages: list[str], sender: str = ME, days: int = 10) -> MemoryHistory:
    batch = Batch()
    for day in range(days):
        for recipients in messages:
            batch.message(sender, to(*recipients), NOW - day * DAY)
    history = MemoryHistory()
    history.record(batch)
    return history


def test_person_signals_are_the_odd_signals_but_the_domains() -> None:
    assert set(ODD_SIGNALS) - PERSON_SIGNALS == {"ODD_DOMAIN_SLIP", "ODD_NEW_DOMAIN"}


def test_a_greeting_of_somebody_else_at_a_partner_doubts_the_person() -> None:
    history = history_of(["nils.martin@partner.com"], ["olga.smith@partner.com"])
    [olga] = judged(history, ["olga.smith@partner.com"], opening="Hi Nils,\n\nthe figures.")
    assert olga.action is Action.WARN
    assert olga.signal("ODD_GREETING") is not None
    assert olga.about_person


def test_a_personal_address_at_a_major_provider_doubts_the_person_not_the_provider() -> None:
    """At gmail.com, outlook.com, yahoo.com the guard keeps the signals of the provider resembling another, which it
    capped to a pass: they do not make the colleague's personal address a mistyped domain."""
    history = history_of(["ann.lee@org.example", "bob@partner.com"])
    for provider in ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "web.de"):
        [personal] = judged(history, [f"annlee84@{provider}"])
        assert personal.action is Action.WARN, provider
        assert personal.signal("ODD_PERSONAL") is not None, provider
        assert personal.about_person, (provider, [(s.name, s.score) for s in personal.signals])


def test_a_slip_of_a_domain_or_a_suffix_that_does_not_exist_doubts_the_domain() -> None:
    """A slip of a co-recipient's domain, a lookalike the guard warns of, and a suffix that does not exist (held by
    policy, score 0) with an odd recipient's signal beside it: none is a doubt of the person."""
    history = history_of(["pat@partner.com", "joe@partner.com", "kim@contoso.com"], days=20)
    *_, slip, bogus, new = judged(history, ["pat@partner.com", "joe@partner.com", "kim@contoso.com",
                                            "sue@partner.co", "x@foo.qqqqqq", "y@new.example"])
    assert slip.action >= Action.WARN
    assert not slip.about_person
    assert bogus.action is Action.HOLD
    assert bogus.signal("NO_SUCH_TLD") is not None
    assert not bogus.about_person
    assert not new.about_person
    [typo] = judged(history, ["a@gmial.com"])
    assert typo.action >= Action.WARN
    assert not typo.about_person


def test_the_mark_is_read_from_stored_evidence_whatever_else_is_there() -> None:
    marked = mark_person(Signal("ODD_SUBSTITUTE", {"like": "nils@partner.com"}, 4.0))
    assert marked.evidence == {"like": "nils@partner.com", "doubt": "person"}
    assert doubts_person([{}, None, "junk", 3, marked.evidence])
    assert not doubts_person([{"doubt": "domain"}, {}, None])
    assert not doubts_person([])


def verdict(address: str, *, person: bool) -> Verdict:
    domain = address.rpartition("@")[2]
    signal = Signal("ODD_GREETING", {}, 4.0) if person else Signal("TLD_SLIP", {}, 7.0)
    ascii_domain = domain.encode("idna").decode() if not domain.isascii() else domain
    return Verdict(address, domain, Action.WARN, 4.0, (mark_person(signal) if person else signal,), "why",
                   domain_ascii=ascii_domain)


def test_a_wrong_person_is_told_per_address_a_mistyped_domain_per_domain() -> None:
    """Two wrong picks at one partner the same day are each told; the same wrong pick again is not (in either form
    of an IDN); a mistyped domain is told once whatever the address; a notice that could not be stored is forgotten
    as told."""
    warned = Warned(86400, 100)
    olga = ("olga@partner.com", verdict("olga@partner.com", person=True))
    berg = ("o.berg@partner.com", verdict("o.berg@partner.com", person=True))
    typo = [(a, verdict(a, person=False)) for a in ("a@ymail.com", "b@ymail.com")]
    first = WarningNotice.due(warned, "me@org.example", [olga, typo[0]])
    assert first is not None
    assert [f.recipient for f in first.flagged] == ["olga@partner.com", "a@ymail.com"]
    assert [f.about_person for f in first.flagged] == [True, False]
    assert WarningNotice.due(warned, "me@org.example", [olga, typo[1]]) is None
    assert WarningNotice.due(warned, "ME@org.example", [("Olga@Partner.com", olga[1])]) is None
    second = WarningNotice.due(warned, "me@org.example", [berg])
    assert second is not None
    assert second.topics == ["o.berg@partner.com"]
    assert WarningNotice.due(warned, "someone.else@org.example", [olga]) is not None  # per sender
    second.not_sent(warned, OSError("disk full"))
    assert WarningNotice.due(warned, "me@org.example", [berg]) is not None
    assert WarningNotice.due(warned, "me@org.example", [("olga@bücher.de", verdict("olga@bücher.de", person=True))])
    assert WarningNotice.due(warned, "me@org.example", [("olga@xn--bcher-kva.de",
                                                         verdict("olga@xn--bcher-kva.de", person=True))]) is None


def test_the_words_for_what_is_doubted() -> None:
    assert (Doubt(0, 1).doubted, Doubt(0, 1).because, Doubt(0, 1).topics, Doubt(0, 1).check) == (
        "an address that looks mistyped", "an address looks mistyped", "this domain", "Check the address")
    assert (Doubt(2, 2).doubted, Doubt(2, 2).because, Doubt(2, 2).topics, Doubt(2, 2).check) == (
        "recipients who may not be the ones you meant", "the recipients may not be the ones you meant",
        "these addresses", "Check the recipient")
    assert (Doubt(1, 3).doubted, Doubt(1, 3).topics, Doubt(1, 3).check) == (
        "addresses that look mistyped or may not be the ones you meant", "these domains and addresses",
        "Check the address")


def test_a_flood_of_people_doubted_forgets_no_domain_told() -> None:
    """One message to more people doubted than the memory holds forgets other people first, never the domains
    other senders were told of (they are not warned again the same day)."""
    warned = Warned(86400, 100)
    typo = ("a@ymail.com", verdict("a@ymail.com", person=False))
    assert WarningNotice.due(warned, "other@org.example", [typo]) is not None
    early = ("first@partner.com", verdict("first@partner.com", person=True))
    assert WarningNotice.due(warned, "other@org.example", [early]) is not None
    flood = [(f"n{i}@partner.com", verdict(f"n{i}@partner.com", person=True)) for i in range(150)]
    notice = WarningNotice.due(warned, "bulk@org.example", flood)
    assert notice is not None
    assert len(notice.flagged) == 150
    assert WarningNotice.due(warned, "other@org.example", [typo]) is None  # the domain still remembered
    assert WarningNotice.due(warned, "other@org.example", [early]) is not None  # the oldest person forgotten


def test_a_person_let_through_with_a_warning_holds_nothing_against_the_domain() -> None:
    """A colleague's personal address at gmail.com, warned of and let through, is learned as a message to gmail.com
    with no near miss of the colleague's domain (as its release would be); a warned lookalike keeps its near miss."""
    history = history_of(["ann.lee@org.example", "bob@partner.com"])
    [personal] = judged(history, ["annlee84@gmail.com"])
    assert personal.action is Action.WARN
    assert personal.about_person
    assert personal.intended == "org.example"
    assert [c.near for c in counted([personal])] == [None]
    lookalike = verdict("a@ymail.com", person=False)
    lookalike.intended = "gmail.com"
    assert [c.near for c in counted([lookalike])] == ["gmail.com"]
