"""History (rcptguard.history): tallies, the poisoning guard, facts from the store and from memory alike, and one
message judged with its sender's history (confirmations, truthful first contact, the odd recipient out)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import insert

from rcptguard.cli import main
from rcptguard.guard import Guard
from rcptguard.history import Batch, Counted, HistorySettings, MemoryHistory
from rcptguard.history import judge as judge_module
from rcptguard.history import memory as memory_module
from rcptguard.history.judge import judge_message
from rcptguard.history.model import key_of
from rcptguard.history.rules import HELD, near_for, why_not
from rcptguard.model import Action, Verdict
from rcptguard.policy import ForceRule, load_policy
from rcptguard.sources.addresses import normal_address
from rcptguard.store import Store, utc_now
from rcptguard.store.history import FEED_KEEP, MirroredHistory, StoreHistory, write_batch
from rcptguard.store.quarantine import confirmation
from rcptguard.store.schema import HoldState, history_feed

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)


def to(*addresses: str, near: str | None = None) -> list[Counted]:
    return [Counted(a, a.rsplit("@", 1)[1], near) for a in addresses]


def sample() -> Batch:
    batch = Batch()
    for day in range(10):
        batch.message("me@org.example", to("bob@northwind.com", "ann@northwind.com", "kim@contoso.com"),
                      NOW - day * DAY)
    batch.message("you@org.example", to("bob@northwind.com"), NOW - 30 * DAY)
    batch.message("me@org.example", to("x@acmo.com", near="acme.com"), NOW - DAY)
    batch.message("me@org.example", to("x@acmo.com", near="acme.com"), NOW)
    batch.inbound("contoso.com", NOW)
    return batch


@pytest.fixture
def store(tmp_path: Path) -> StoreHistory:
    return StoreHistory(Store.open(f"sqlite:///{tmp_path / 'h.db'}"))


def test_store_and_memory_give_the_same_facts(store: StoreHistory) -> None:
    """The store's facts of a message are exactly the in-memory history's, for the same batches: counts per
    sender, domain and address, first and last seen, distinct senders, co-recipients and neighbours."""
    memory = MemoryHistory()
    for history in (store, memory):
        history.record(sample())
        history.record(sample())  # counts add up
    addresses = ["bob@northwind.com", "kim@contoso.com", "x@acmo.com", "new@northwind.com"]
    assert store.facts("me@org.example", addresses, NOW) == memory.facts("me@org.example", addresses, NOW)
    facts = store.facts("me@org.example", addresses, NOW)
    northwind = facts.domains["northwind.com"]
    assert (northwind.org.count, northwind.senders, northwind.sender.count) == (22, 2, 20)
    assert (northwind.org.first, northwind.org.last) == (NOW - 30 * DAY, NOW)
    assert facts.pairs == {("bob@northwind.com", "kim@contoso.com"): 20}
    assert facts.by_org == {"bob@northwind.com": 22, "kim@contoso.com": 20, "x@acmo.com": 4}
    assert facts.domains["contoso.com"].inbound == 2
    assert set(facts.neighbours["northwind.com"]) == {"bob@northwind.com", "ann@northwind.com"}


def busy_batch(seed: int) -> Batch:
    """A few hundred messages among 20 senders and 40 addresses at 8 domains, some warned near misses, in groups."""
    rng = random.Random(seed)
    domains = [f"d{n}.example" for n in range(8)]
    addresses = [f"p{n}@{domains[n % 8]}" for n in range(40)]  # as some_messages names them
    batch = Batch()
    for n in range(400):
        group = rng.sample(addresses, rng.choice((1, 1, 2, 3, 5)))
        batch.message(f"s{rng.randrange(20)}@org.example", [Counted(a, a.rsplit("@", 1)[1]) for a in group],
                      NOW - rng.randrange(90) * DAY - dt.timedelta(seconds=n))
    batch.message("s1@org.example", to("x@d0.exampel", near="d0.example"), NOW)
    batch.inbound("d3.example", NOW - DAY)
    batch.confirmed("s2@org.example", "gmial.com", NOW - DAY)
    return batch


def some_messages(seed: int) -> list[tuple[str | None, list[str]]]:
    rng = random.Random(seed)
    known = [f"p{n}@d{n % 8}.example" for n in range(40)]
    return [(rng.choice([None, "s99@org.example", *(f"s{n}@org.example" for n in range(20))]),
             rng.sample([*known, "x@d0.exampel", "new@d1.example", "k@gmial.com"], rng.choice((1, 2, 4))))
            for _ in range(300)]


def test_the_doors_mirror_gives_the_stores_facts(store: StoreHistory) -> None:
    """A door judges against history in memory (MirroredHistory): read from the store once, it gives exactly the
    store's facts for any sender and recipients (counts, first and last seen, senders, confirmations, pairs,
    neighbours); what the door records goes to both; what another process writes reaches it through the history
    feed at its next look, its own entries not counted twice; an administrator's change makes it read everything."""
    store.record(busy_batch(1))
    store.set_state("d5.example", "added")
    mirror = MirroredHistory(store)

    def same(seed: int) -> None:
        for sender, recipients in some_messages(seed):
            assert mirror.facts(sender, recipients, NOW) == store.facts(sender, recipients, NOW), (sender, recipients)

    same(2)
    mirror.record(busy_batch(3))  # this door's own learning: in the store and in memory, counted once
    same(4)

    elsewhere = StoreHistory(store.store)  # another instance, or a release on the page
    elsewhere.record(busy_batch(5))
    confirmed = Batch()
    confirmed.confirmed("s7@org.example", "d0.exampel", NOW)
    elsewhere.record(confirmed)
    one = ("s1@org.example", ["p1@d1.example"], NOW)
    assert mirror.facts(*one) != store.facts(*one)  # not yet
    assert mirror.confirmation("s7@org.example", "d0.exampel") is None
    assert mirror.catch_up("s7@org.example", "d0.exampel") == NOW  # asked before a hold: at once
    assert [b.messages for b in mirror.follow()] == [busy_batch(5).messages, 0]  # the rest at the next look
    same(6)
    mirror.record(busy_batch(7))
    assert mirror.follow() == []  # its own entry is not added again
    assert mirror.follow() == []  # nor are the others' a second time
    same(8)
    loaded = mirror.loaded
    store.set_state("d0.exampel", "forgotten")  # drops the confirmations: an entry that says "read it all again"
    assert mirror.follow() == []
    assert mirror.loaded > loaded
    assert mirror.confirmation("s7@org.example", "d0.exampel") is None
    same(10)


def test_the_feed_is_followed_with_an_overlap(store: StoreHistory) -> None:
    """An entry stamped a minute before the last look (committed late, or by a writer whose clock is behind) is
    still added, once; a door that looked away longer than the feed is kept reads everything again; pruning
    deletes only what is older than that."""
    mirror = MirroredHistory(store)
    assert mirror.follow() == []
    late = Batch()
    late.message("s1@org.example", to("a@late.example"), NOW)
    with store.engine.begin() as connection:
        connection.execute(insert(history_feed).values(at=utc_now() - dt.timedelta(minutes=1), origin="elsewhere",
                                                       batch=late.to_json()))
        write_batch(connection, late, feed=False)
    assert [b.messages for b in mirror.follow()] == [1]
    assert mirror.follow() == []
    late_facts = ("s1@org.example", ["a@late.example"], NOW)
    assert mirror.facts(*late_facts) == store.facts(*late_facts)
    with store.engine.begin() as connection:
        connection.execute(insert(history_feed).values(at=utc_now() - 2 * FEED_KEEP, origin=None, batch=None))
    assert store.prune_feed(utc_now() - FEED_KEEP) == 1
    mirror.looked -= FEED_KEEP
    loaded = mirror.loaded
    assert mirror.follow() == []
    assert mirror.loaded > loaded  # looked away too long: read it all


def test_a_near_miss_needs_a_second_sender_or_mail_from_it(store: StoreHistory) -> None:
    """acmo.com, one slip from acme.com, written to twice by one sender, is not a correspondent; a second sender
    makes it one; so does, instead, a message from it."""
    store.record(sample())
    assert "acmo.com" not in store.learned(NOW)
    assert set(store.learned(NOW)) == {"northwind.com", "contoso.com"}
    [acmo] = store.correspondents(["acmo.com"])
    assert why_not(acmo.facts, HistorySettings(), NOW) == (
        "it is one slip from acme.com, so it needs 2 people writing to it or a message from it")
    second = Batch()
    second.message("you@org.example", to("y@acmo.com", near="acme.com"), NOW)
    store.record(second)
    assert store.learned(NOW)["acmo.com"] == 3

    other = MemoryHistory()
    other.record(sample())
    inbound = Batch()
    inbound.inbound("acmo.com", NOW)
    other.record(inbound)
    assert other.learned(NOW)["acmo.com"] == 2


def test_forgotten_and_added_override_the_counts(store: StoreHistory) -> None:
    """`forget` makes a correspondent unknown whatever its counts (and drops confirmations); `add` makes a domain
    nobody wrote to known."""
    store.record(sample())
    store.set_state("northwind.com", "forgotten")
    store.set_state("fabrikam.com", "added")
    assert "northwind.com" not in store.learned(NOW)
    assert store.added() == ["fabrikam.com"]
    assert [c.known for c in store.correspondents(["fabrikam.com", "northwind.com"])] == [True, False]


def test_counts_fade_with_the_half_life() -> None:
    """Messages weigh half after each half-life since the last one, and a domain weighing less than half a message
    is no longer known: with a 30-day half-life, one message 40 days ago and 312 messages a year ago are forgotten;
    with 60 days, both still count."""
    batch = Batch()
    batch.message("me@org.example", to("a@once.example"), NOW - 40 * DAY)
    batch.message("me@org.example", to("a@often.example"), NOW - 365 * DAY, count=312)
    batch.message("me@org.example", to("a@recent.example"), NOW - 10 * DAY)
    short, longer = MemoryHistory(HistorySettings(half_life_days=30)), MemoryHistory(HistorySettings(half_life_days=60))
    for history in (short, longer):
        history.record(batch)
    assert set(short.learned(NOW)) == {"recent.example"}
    assert longer.learned(NOW) == {"once.example": 1, "often.example": 312, "recent.example": 1}


def guard(learned: dict[str, int] | None = None) -> Guard:
    return Guard(load_policy().with_domains(("mil",), ()), learned=learned or {})


def test_a_slip_of_a_learned_correspondent_says_how_much_the_organisation_writes_there() -> None:
    """After history of 312 messages to northwind.com, a first message there passes, and a slip of it is held with
    "Your organisation writes to northwind.com (312 messages)"."""
    history = MemoryHistory()
    batch = Batch()
    batch.message("you@org.example", to("bob@northwind.com"), NOW, count=312)
    history.record(batch)
    engine = guard(history.learned(NOW))
    ok, slip = judge_message(engine, "me@org.example", ["ann@northwind.com"], history, now=NOW) + judge_message(
        engine, "me@org.example", ["ann@northwind.co"], history, now=NOW)
    assert ok.action is Action.PASS
    assert slip.action is Action.HOLD
    assert "Your organisation writes to northwind.com (312 messages)." in slip.reason


def test_a_confirmation_lets_that_sender_through_and_nobody_else() -> None:
    """A sender who confirmed gmial.com gets it passed next time (SENDER_CONFIRMED), or warned by policy; another
    sender is still held; a force rule's reject is never lowered."""
    history = MemoryHistory()
    batch = Batch()
    batch.confirmed("me@org.example", "gmial.com", NOW - DAY)
    batch.confirmed("me@org.example", "army.ml", NOW - DAY)
    history.record(batch)
    engine = guard()
    [mine] = judge_message(engine, "Me@Org.Example", ["j@gmial.com"], history, now=NOW)
    [theirs] = judge_message(engine, "you@org.example", ["j@gmial.com"], history, now=NOW)
    [warned] = judge_message(engine, "me@org.example", ["j@gmial.com"], history,
                             HistorySettings(confirmed_action="warn"), now=NOW)
    assert (mine.action, theirs.action, warned.action) == (Action.PASS, Action.HOLD, Action.WARN)
    assert mine.reason.startswith("You confirmed mail to gmial.com on 2026-11-30.")
    assert mine.signal("SENDER_CONFIRMED") is not None
    assert mine.suggestion is None
    strict = Guard(dataclasses.replace(load_policy(), force=(ForceRule(Action.REJECT, suffixes=("ml",)),)))
    [rejected] = judge_message(strict, "me@org.example", ["j@army.ml"], history, now=NOW)
    assert rejected.action is Action.REJECT


def test_first_contact_is_said_truthfully_of_the_sender() -> None:
    """A near miss someone wrote to before is not called "never written to": the reason says who did, and why it
    is still new."""
    history = MemoryHistory()
    batch = Batch()
    batch.message("me@org.example", to("x@acmo.com", near="acme.com"), NOW)
    history.record(batch)
    engine = guard({"acme.com": 3})
    [mine] = judge_message(engine, "me@org.example", ["y@acmo.com"], history, now=NOW)
    [theirs] = judge_message(engine, "you@org.example", ["y@acmo.com"], history, now=NOW)
    assert "You have never written to acmo.com." not in mine.reason
    assert ("You have written to acmo.com before (1 message), but it is not a known correspondent: it is one slip "
            "from acme.com") in mine.reason
    assert "You have never written to acmo.com; your organisation has (1 message)" in theirs.reason


def group_history() -> MemoryHistory:
    history = MemoryHistory()
    batch = Batch()
    team = ("ann@army.mil", "bob@army.mil", "cat@army.mil", "dan@army.mil", "eve@army.mil")
    for day in range(20):
        batch.message("me@org.example", to(*team), NOW - day * DAY)
        batch.message("me@org.example", to("pat@partner.com", "joe@partner.com", "kim@contoso.com"),
                      NOW - day * DAY)
        batch.message("me@org.example", to("john.smith@partner.com"), NOW - day * DAY)
    history.record(batch)
    return history


def test_the_odd_recipient_out() -> None:
    """Judged in company: army.ml among five at army.mil (the slip is unknown: nothing is protected here), a
    personal address among a long-standing group, a namesake at a right domain; the usual group passes."""
    history = group_history()
    engine = Guard(load_policy(), learned=history.learned(NOW))
    team = ["ann@army.mil", "bob@army.mil", "cat@army.mil", "dan@army.mil"]
    *_, slip = judge_message(engine, "me@org.example", [*team, "eve@army.ml"], history, now=NOW)
    assert slip.action >= Action.WARN
    assert slip.signal("ODD_DOMAIN_SLIP") is not None
    assert slip.suggestion == "eve@army.mil"
    assert "army.ml is one slip from army.mil, where 4 other recipients of this message are." in slip.reason
    usual = judge_message(engine, "me@org.example", ["pat@partner.com", "joe@partner.com", "kim@contoso.com"],
                          history, now=NOW)
    assert [v.action for v in usual] == [Action.PASS] * 3
    *_, personal = judge_message(engine, "me@org.example", ["pat@partner.com", "joe@partner.com", "kim@gmail.com"],
                                 history, now=NOW)
    assert personal.action is Action.WARN
    assert {s.name for s in personal.signals} >= {"ODD_NEW_TO_GROUP", "ODD_NEW_DOMAIN"}
    [namesake] = judge_message(engine, "me@org.example", ["john.smyth@partner.com"], history, now=NOW)
    assert (namesake.action, namesake.suggestion) == (Action.WARN, "john.smith@partner.com")
    [colleague] = judge_message(engine, "me@org.example", ["lee@partner.com"], history, now=NOW)
    assert colleague.action is Action.PASS  # a new address at a long-standing domain alone is no reason to stop


def test_inside_the_organisation_only_a_slip_of_the_domain_counts() -> None:
    """A namesake of a colleague (at the sender's domain) or of somebody at a protected domain is no mail leaving for
    the wrong recipient: not warned of; the same namesake at a partner is, and a slip of the organisation's own
    domain among colleagues still is."""
    history = MemoryHistory()
    batch = Batch()
    for day in range(10):
        batch.message("me@org.example", to("john.smith@org.example", "a@org.example", "b@org.example"), NOW - day * DAY)
        batch.message("me@org.example", to("john.smith@partner.com"), NOW - day * DAY)
        batch.message("me@org.example", to("john.smith@army.mil"), NOW - day * DAY)
    history.record(batch)
    engine = Guard(load_policy().with_domains(("army.mil",), ()), learned=history.learned(NOW))
    [colleague] = judge_message(engine, "me@org.example", ["john.doe@org.example"], history, now=NOW)
    assert (colleague.action, colleague.signals[-1].name) == (Action.PASS, "KNOWN_CORRESPONDENT")
    [protected] = judge_message(engine, "me@org.example", ["john.doe@army.mil"], history, now=NOW)
    assert protected.action is Action.PASS
    assert not [s for s in protected.signals if s.name.startswith("ODD_")]
    [partner] = judge_message(engine, "me@org.example", ["john.doe@partner.com"], history, now=NOW)
    assert (partner.action, partner.suggestion) == (Action.WARN, "john.smith@partner.com")
    *_, slip = judge_message(engine, "me@org.example", ["a@org.example", "b@org.example", "c@org.exmple"], history,
                             now=NOW)
    assert slip.action >= Action.WARN


def test_somebody_in_a_colleagues_place_in_a_group_written_to_before() -> None:
    """A wrong pick from the address book in a thread: lee@partner.com, whom the sender writes to, in the place
    joe@partner.com had in this group (with pat and kim) on each of 20 messages, is warned of, with joe suggested;
    the usual group passes; a place that many people filled in turn, a place taken by somebody at another domain,
    and a group seen once are no reason; the places go through the history feed's JSON unchanged."""
    history = group_history()
    batch = Batch()
    batch.message("me@org.example", to("lee@partner.com"), NOW)
    for n in range(6):  # a place somebody new fills each time
        batch.message("me@org.example", to("ann@rota.com", "bea@rota.com", f"guest{n}@rota.com"), NOW - n * DAY)
    batch.message("me@org.example", to("ann@once.com", "bob@once.com", "cy@once.com"), NOW)
    history.record(Batch.from_json(batch.to_json()))
    engine = Guard(load_policy(), learned=history.learned(NOW))

    def judged(*recipients: str) -> dict[str, Verdict]:
        verdicts = judge_message(engine, "me@org.example", list(recipients), history, now=NOW)
        return {v.address: v for v in verdicts}

    taken = judged("pat@partner.com", "lee@partner.com", "kim@contoso.com")["lee@partner.com"]
    assert taken.action is Action.WARN
    assert taken.signal("ODD_SUBSTITUTE") is not None
    assert taken.suggestion == "joe@partner.com"
    assert ("The others on this message had joe@partner.com with them where lee@partner.com is now (20 messages), "
            "never lee@partner.com") in taken.reason
    usual = judged("pat@partner.com", "joe@partner.com", "kim@contoso.com")
    assert [v.action for v in usual.values()] == [Action.PASS] * 3
    rota = judged("ann@rota.com", "bea@rota.com", "guest9@rota.com")["guest9@rota.com"]
    assert rota.signal("ODD_SUBSTITUTE") is None
    elsewhere = judged("pat@partner.com", "joe@partner.com", "kim@fabrikam.com")["kim@fabrikam.com"]
    assert elsewhere.signal("ODD_SUBSTITUTE") is None
    once = judged("ann@once.com", "bob@once.com", "dee@once.com")["dee@once.com"]
    assert once.signal("ODD_SUBSTITUTE") is None
    with_both = judged("pat@partner.com", "joe@partner.com", "lee@partner.com", "kim@contoso.com")
    assert with_both["lee@partner.com"].signal("ODD_SUBSTITUTE") is None


def test_the_policy_service_sees_no_substitute_in_an_envelope_still_growing() -> None:
    """The policy service judges each recipient with those before it: lee after pat, where joe always followed
    pat, is no substitute yet (joe may be the next RCPT); the relay, seeing the whole envelope, agrees."""
    history = MemoryHistory()
    batch = Batch()
    for day in range(10):
        batch.message("me@org.example", to("pat@partner.com", "joe@partner.com"), NOW - day * DAY)
        batch.message("me@org.example", to("pat@partner.com", "joe@partner.com", "lee@partner.com"), NOW - day * DAY)
    history.record(batch)
    engine = Guard(load_policy(), learned=history.learned(NOW))
    order = ["pat@partner.com", "lee@partner.com", "joe@partner.com"]
    verdicts = [engine.check(r) for r in order]
    for n in range(1, len(order) + 1):
        last = judge_module.adjust("me@org.example", verdicts[:n], history, engine.policy, now=NOW, last_only=True)[-1]
        assert last.signal("ODD_SUBSTITUTE") is None, order[n - 1]
    whole = judge_message(engine, "me@org.example", order, history, now=NOW)
    assert [v.action for v in whole] == [Action.PASS] * 3


def test_the_store_gives_each_domains_neighbours_however_busy_the_others(store: StoreHistory) -> None:
    """A sender's neighbours and the organisation's are worked out per domain: 450 addresses at one domain do not
    crowd out the 3 at another, in the store as in memory; a domain of more than ORG_NEIGHBOURS_AT_MOST addresses
    has no organisation's neighbours in either."""
    memory = MemoryHistory()
    batch = Batch()
    for n in range(450):
        batch.message("me@org.example", to(f"p{n}@busy.example"), NOW - n * dt.timedelta(minutes=1))
    for n in range(3):
        batch.message("me@org.example", to(f"q{n}@quiet.example"), NOW)
    for n in range(2001):
        batch.message("you@org.example", to(f"r{n}@huge.example"), NOW)
    for history in (store, memory):
        history.record(batch)
    asked = ["new@busy.example", "new@quiet.example"]
    facts = store.facts("me@org.example", asked, NOW)
    assert facts == memory.facts("me@org.example", asked, NOW)
    assert len(facts.neighbours["busy.example"]) == 200
    assert facts.neighbours["quiet.example"] == ("q0@quiet.example", "q1@quiet.example", "q2@quiet.example")
    assert set(facts.org_neighbours) == {"busy.example", "quiet.example"}
    huge = store.facts("me@org.example", ["new@huge.example"], NOW)
    assert huge == memory.facts("me@org.example", ["new@huge.example"], NOW)
    assert huge.org_neighbours == {}


def test_a_namesake_of_somebody_the_sender_or_the_organisation_writes_to() -> None:
    """An address the sender never wrote to, with the first name (or, written initial first, the initial) of one
    the sender writes to at that domain, or (an address nobody wrote to) of one the organisation writes to there,
    is warned of with the other suggested; at a public mail provider a namesake is nobody's colleague."""
    history = MemoryHistory()
    batch = Batch()
    for day in range(10):
        batch.message("me@org.example", to("j.schulz@bluestone.com"), NOW - day * DAY)
        batch.message("you@org.example", to("jonas.ferrari@stoneber.fr"), NOW - day * DAY)
        batch.message("me@org.example", to("anna.lee@gmail.com"), NOW - day * DAY)
        batch.message("you@org.example", to("anna.berg@gmail.com"), NOW - day * DAY)
    history.record(batch)
    engine = Guard(load_policy(), learned=history.learned(NOW))
    [initial] = judge_message(engine, "me@org.example", ["j.martin@bluestone.com"], history, now=NOW)
    assert (initial.action, initial.suggestion) == (Action.WARN, "j.schulz@bluestone.com")
    assert "You write to j.schulz@bluestone.com: is j.martin@bluestone.com the person you meant?" in initial.reason
    [theirs] = judge_message(engine, "me@org.example", ["jonas.richter@stoneber.fr"], history, now=NOW)
    assert (theirs.action, theirs.suggestion) == (Action.WARN, "jonas.ferrari@stoneber.fr")
    assert "Your organisation writes to jonas.ferrari@stoneber.fr" in theirs.reason
    [other] = judge_message(engine, "me@org.example", ["k.martin@bluestone.com"], history, now=NOW)
    assert other.signal("ODD_ADDRESS_SLIP") is None  # another initial
    [provider] = judge_message(engine, "me@org.example", ["anna.berg@gmail.com"], history, now=NOW)
    assert provider.signal("ODD_ADDRESS_SLIP") is None
    [slip] = judge_message(engine, "me@org.example", ["anna.le@gmail.com"], history, now=NOW)
    assert slip.signal("ODD_ADDRESS_SLIP") is not None  # a slip is a slip anywhere


def colleagues_history() -> Batch:
    """mark.jones writes to his colleagues ann.lee, james.smith and jane.smith and to a partner; kim.novak sends mail
    too, to the same partner, and mark never wrote to her."""
    batch = Batch()
    for day in range(10):
        batch.message("mark.jones@org.example", to("ann.lee@org.example", "bob@partner.com"), NOW - day * DAY)
        batch.message("mark.jones@org.example", to("james.smith@org.example", "jane.smith@org.example"),
                      NOW - day * DAY)
        batch.message("kim.novak@org.example", to("bob@partner.com"), NOW - day * DAY)
    return batch


@pytest.mark.parametrize("kind", ["memory", "store"])
def test_a_personal_address_of_a_colleague_warns_alone(kind: str, tmp_path: Path) -> None:
    """An address at a public mail provider that spells the name of the sender, or of the one colleague history
    knows by that name whom the sender writes to (not on the message: the work address replaced by a personal
    one), is warned of by itself, with the work address suggested; a name two colleagues spell, a colleague the
    sender never wrote to, and an address the sender has written to `established` times are not."""
    history: MemoryHistory | StoreHistory = (MemoryHistory() if kind == "memory" else
                                             StoreHistory(Store.open(f"sqlite:///{tmp_path / 'h.db'}")))
    history.record(colleagues_history())
    engine = Guard(load_policy(), learned=history.learned(NOW))

    def judged(recipient: str, sender: str = "mark.jones@org.example") -> Verdict:
        return judge_message(engine, sender, [recipient], history, now=NOW)[0]

    colleague = judged("annlee84@gmail.com")
    assert colleague.action is Action.WARN
    assert colleague.signal("ODD_PERSONAL") is not None
    assert colleague.suggestion == "ann.lee@org.example"
    assert ("annlee84@gmail.com looks like a personal address of your colleague ann.lee@org.example, at a public "
            "mail provider: is ann.lee@org.example the address you meant?") in colleague.reason
    for form in ("ann.lee.home@gmail.com", "lee_ann@yahoo.com", "annlee.private@gmail.com"):  # longer, last first
        assert judged(form).suggestion == "ann.lee@org.example", form
    own = judged("markjones@outlook.com")
    assert own.action is Action.WARN
    assert "personal address of mark.jones@org.example" in own.reason
    assert judged("alee@gmail.com").signal("ODD_PERSONAL") is None  # four letters: too few to name one person
    assert judged("jsmith@gmail.com").signal("ODD_PERSONAL") is None  # james.smith or jane.smith
    assert judged("jsmith.home@gmail.com").signal("ODD_PERSONAL") is None
    assert judged("jamessmith@gmail.com").signal("ODD_PERSONAL") is not None
    assert judged("kimnovak@gmail.com").signal("ODD_PERSONAL") is None  # mark never wrote to kim.novak
    hers = Batch()
    hers.message("kim.novak@org.example", to("mark.jones@org.example"), NOW)
    history.record(hers)
    assert judged("kimnovak@gmail.com").signal("ODD_PERSONAL") is not None  # ... she wrote to him
    assert judged("kimnovak@gmail.com", "kim.novak@org.example").action is Action.WARN  # her own
    assert judged("annlee@partner.com").signal("ODD_PERSONAL") is None  # not a public mail provider
    assert judged("annlee84@gmail.com", "someone@gmail.com").signal("ODD_PERSONAL") is None  # no organisation
    sent = Batch()
    for day in range(3):
        sent.message("mark.jones@org.example", to("annlee84@gmail.com"), NOW - day * DAY)
    history.record(sent)
    assert judged("annlee84@gmail.com").signal("ODD_PERSONAL") is None  # written to three times: meant


def two_domains_history() -> Batch:
    """An organisation on org.example with an older org.co.uk: dyoung@org.co.uk writes to david.johnston@org.example,
    who sends mail too; the organisation writes to people at a partner (partner.com), at army.mil, and at its old
    brand old-org.com, from which nobody sends any more."""
    batch = Batch()
    for day in range(10):
        batch.message("dyoung@org.co.uk", to("david.johnston@org.example", "ruth.baker@partner.com"), NOW - day * DAY)
        batch.message("david.johnston@org.example", to("sam.carter@army.mil"), NOW - day * DAY)
        batch.message("david.johnston@org.example", to("helen.price@old-org.com"), NOW - day * DAY)
    return batch


@pytest.mark.parametrize("kind", ["memory", "store"])
def test_a_personal_address_of_a_colleague_at_the_organisations_other_domain(kind: str, tmp_path: Path) -> None:
    """Colleagues are the people of the sender's domain and of the organisation's other domains, the protected ones
    its people send from (or under one): dyoung@org.co.uk's colleague david.johnston@org.example, on the message or
    written to. Not the people of a protected partner nobody sends from, of a protected whole suffix (mil), or of a
    protected domain only written to; nor of the other domain when it is not protected. The first domain that knows
    a name decides whose it is (the sender's first). A protected partner whose people's mail was imported as the
    organisation's looks the same: its person is named, but never called a colleague."""
    history: MemoryHistory | StoreHistory = (MemoryHistory() if kind == "memory" else
                                             StoreHistory(Store.open(f"sqlite:///{tmp_path / 'h.db'}")))
    history.record(two_domains_history())
    protected = load_policy().with_domains(protect=("org.example", "org.co.uk", "partner.com", "mil", "old-org.com"))
    engine = Guard(protected, learned=history.learned(NOW))

    def whose(recipients: list[str], sender: str = "dyoung@org.co.uk", guard: Guard = engine) -> str | None:
        verdict = judge_message(guard, sender, recipients, history, now=NOW)[-1]
        signal = verdict.signal("ODD_PERSONAL")
        return None if signal is None else signal.evidence["colleague"]

    assert whose(["david.johnston@org.example", "davidjohnston@icloud.com"]) == "david.johnston@org.example"
    alone = judge_message(engine, "dyoung@org.co.uk", ["d.johnston@icloud.com"], history, now=NOW)[0]
    assert alone.action is Action.WARN
    assert alone.suggestion == "david.johnston@org.example"
    assert "personal address of david.johnston@org.example, at a public mail provider" in alone.reason
    assert whose(["dyoung1970@gmail.com"], "david.johnston@org.example") == "dyoung@org.co.uk"  # he has mail from him
    assert whose(["ruth.baker@partner.com", "ruthbaker@gmail.com"]) is None  # a protected partner's
    assert whose(["ruthbaker@gmail.com"]) is None
    assert whose(["sam.carter@army.mil", "samcarter@gmail.com"], "david.johnston@org.example") is None
    assert whose(["samcarter@gmail.com"], "david.johnston@org.example") is None
    assert whose(["helen.price@old-org.com", "helenprice@gmail.com"], "david.johnston@org.example") is None
    assert whose(["helenprice@gmail.com"], "david.johnston@org.example") is None
    unprotected = Guard(load_policy().with_domains(protect=("org.co.uk",)), learned=history.learned(NOW))
    assert whose(["d.johnston@icloud.com"], guard=unprotected) is None
    assert whose(["david.johnston@org.example", "davidjohnston@icloud.com"], guard=unprotected) is None
    later = Batch()
    later.message("john.smith@uk.org.example", to("dyoung@org.co.uk"), NOW)  # under a protected domain
    later.message("johnny.hale@org.co.uk", to("ruth.baker@partner.com"), NOW)
    history.record(later)
    assert whose(["jsmith77@gmail.com"]) == "john.smith@uk.org.example"
    assert whose(["johnnyhale@gmail.com"]) is None  # dyoung never wrote to him, nor he to dyoung
    namesakes = Batch()  # two more J. Smiths, at the sender's domain
    namesakes.message("j.smith@org.co.uk", to("ruth.baker@partner.com"), NOW)
    namesakes.message("jane.smith@org.co.uk", to("ruth.baker@partner.com"), NOW)
    history.record(namesakes)
    assert whose(["jsmith77@gmail.com"]) is None  # the first domain that knows the name decides: two people's there
    robs = Batch()  # robert.smith at home; rob.smith, whom dyoung has mail from, at the other domain
    robs.message("robert.smith@org.co.uk", to("ruth.baker@partner.com"), NOW)
    robs.message("rob.smith@org.example", to("dyoung@org.co.uk"), NOW)
    history.record(robs)
    assert whose(["robsmith77@gmail.com"]) == "rob.smith@org.example"  # a name spelled before a guess at home
    ruth = Batch()
    ruth.message("ruth.baker@partner.com", to("dyoung@org.co.uk"), NOW)  # a partner's mail imported as ours
    history.record(ruth)
    partner = judge_message(engine, "dyoung@org.co.uk", ["ruthbaker@gmail.com"], history, now=NOW)[0]
    assert "a personal address of ruth.baker@partner.com" in partner.reason  # never called a colleague


def test_the_store_and_memory_know_the_organisations_other_domains_alike(store: StoreHistory) -> None:
    memory = MemoryHistory()
    private = Batch()
    private.message("davidjohnston@icloud.com", to("dyoung@org.co.uk"), NOW)  # somebody sends from a provider
    for history in (store, memory):
        history.record(two_domains_history())
        history.record(private)
    own = {"org.example", "org.co.uk", "partner.com", "old-org.com", "gmail.com", "icloud.com"}
    for sender, recipients in [("dyoung@org.co.uk", ["d.johnston@icloud.com", "ruthbaker@gmail.com"]),
                               ("david.johnston@org.example", ["dyoung1970@gmail.com", "helen.price@old-org.com"]),
                               ("dyoung@org.co.uk", ["ruth.baker@partner.com"])]:
        facts = memory.facts(sender, recipients, NOW, own)
        assert store.facts(sender, recipients, NOW, own) == facts
    facts = memory.facts("dyoung@org.co.uk", ["d.johnston@icloud.com"], NOW, own)
    assert facts.own == ("org.co.uk", "org.example")
    assert facts.colleagues == {"d.johnston": "david.johnston@org.example"}
    assert memory.facts("dyoung@org.co.uk", ["ruth.baker@partner.com"], NOW, own).own == ()  # nothing to ask


def initials_history() -> Batch:
    """An organisation that writes some addresses as an initial and a last name (thorvat@, wli@): t.horvat writes
    to his colleagues cpeterson, emily.wright, tina.berg, a shared mailbox sales@ and to a partner."""
    batch = Batch()
    for day in range(10):
        batch.message("thorvat@org.example", to("cpeterson@org.example", "emily.wright@org.example"), NOW - day * DAY)
        batch.message("thorvat@org.example", to("tina.berg@org.example", "bob@partner.com"), NOW - day * DAY)
        batch.message("thorvat@org.example", to("sales@org.example", "hwood@org.example"), NOW - day * DAY)
        batch.message("thorvat@org.example", to("eric.adams@org.example", "julian.alvarez@org.example",
                                                 "mark.smith@org.example", "kari.nieminen@org.example"),
                      NOW - day * DAY)
        batch.message("thorvat@org.example", to("maria.sales@org.example", "john.q.smith@org.example",
                                                 "anna.martin@org.example"), NOW - day * DAY)
        batch.message("thorvat@org.example", to("robert.nicholson@org.example", "stephen.richardson@org.example"),
                      NOW - day * DAY)
        batch.message("wli@org.example", to("bob@partner.com"), NOW - day * DAY)
        batch.message("ben@org.example", to("sarahgonzales@gmail.com"), NOW - day * DAY)
    return batch


@pytest.mark.parametrize("kind", ["memory", "store"])
def test_a_personal_address_names_a_colleague_however_either_is_written(kind: str, tmp_path: Path) -> None:
    """A person's personal address spells their whole name where the organisation writes an initial (christopher.
    peterson63@ for cpeterson@, tomaszhorvat@ for thorvat@: T. Horvat may be Tina too), or the first name and the
    last's initial (emilyw5@ for emily.wright@): the colleague's. Not: a whole first name that is not the
    colleague's (carl.berg for tina.berg), a first name and an initial that make another name (erica, juliana, marks
    for eric.adams, julian.alvarez, mark.smith) or a longer word (emilywilliams), a role's mailbox (sales@ is no Sarah
    Gonzales), an ending of fewer than four letters (ben@ is no Brian Allen), an initial and a last name of
    four letters (wei.li) unless the colleague is on the message or sends it; and a guess no more once the sender has
    written to the address `established` times (hollywood@ is Holly Wood, not hwood@). What a first name is called
    for short names too (robnicholson@, steverichardson@), but only as the whole local part."""
    history: MemoryHistory | StoreHistory = (MemoryHistory() if kind == "memory" else
                                             StoreHistory(Store.open(f"sqlite:///{tmp_path / 'h.db'}")))
    history.record(initials_history())
    engine = Guard(load_policy(), learned=history.learned(NOW))

    def whose(recipients: list[str], sender: str = "thorvat@org.example") -> str | None:
        verdict = judge_message(engine, sender, recipients, history, now=NOW)[0]
        signal = verdict.signal("ODD_PERSONAL")
        return None if signal is None else signal.evidence["colleague"]

    for personal, colleague in [("christopher.peterson63@gmx.de", "cpeterson@org.example"),
                                ("peterson.christopher@gmail.com", "cpeterson@org.example"),
                                ("christopherpeterson@proton.me", "cpeterson@org.example"),
                                ("tomaszhorvat11@gmail.com", "thorvat@org.example"),
                                ("tomasz.horvat@outlook.com", "thorvat@org.example"),
                                ("horvat.tomasz@outlook.com", "thorvat@org.example"),
                                ("tina.horvat@gmail.com", "thorvat@org.example"),
                                ("tina.berg1987@gmail.com", "tina.berg@org.example"),
                                ("hollywood@gmail.com", "hwood@org.example"),
                                ("emilyw5@yahoo.com", "emily.wright@org.example"),
                                ("mariasales@gmail.com", "maria.sales@org.example"),  # a person, not a mailbox
                                ("jsmith84@gmail.com", "john.q.smith@org.example"),  # a middle initial left out
                                ("annamartinez@gmail.com", "anna.martin@org.example"),  # a guess, until written to
                                ("robnicholson@sky.com", "robert.nicholson@org.example"),  # what Robert is called
                                ("Rob.Nicholson71@gmail.com", "robert.nicholson@org.example"),
                                ("steverichardson@gmail.com", "stephen.richardson@org.example")]:
        assert whose([personal]) == colleague, personal
    for other in ("carl.berg@gmail.com", "tina.wright@gmail.com", "emilywilliams@gmail.com", "emily.williams@gmail.com",
                  "erica1990@gmail.com", "juliana@gmail.com", "marks@gmail.com", "karin@gmail.com",
                  "wei.li67@gmail.com",
                  "xpeterson@gmail.com", "peter.horvat@gmail.com",
                  "sarahgonzales@gmail.com", "sales.team@gmail.com", "sales2020@gmail.com",
                  "robnicholsonphoto@gmail.com", "stevierichardson@gmail.com",
                  "bobnicholson@gmail.com",  # a name the shortening hides: not spelled from Robert
                  "iansmith@gmail.com", "jacksmith1990@gmail.com"):  # the nicknames list's other people for John
        assert whose([other]) is None, other
    assert whose(["wei.li67@gmail.com"], "wli@org.example") == "wli@org.example"  # the sender's own
    assert whose(["wei.li67@gmail.com", "wli@org.example"]) == "wli@org.example"  # a colleague on the message
    assert whose(["brianallen@gmail.com", "ben@org.example"]) is None
    assert whose(["sarahgonzales@gmail.com", "sales@org.example"]) is None
    assert whose(["sarahgonzales@gmail.com"], "ben@org.example") is None
    sent = Batch()
    for day in range(3):
        sent.message("thorvat@org.example", to("hollywood@gmail.com", "hwood@org.example"), NOW - day * DAY)
    history.record(sent)
    assert whose(["hollywood@gmail.com", "hwood@org.example"]) is None  # written to three times: somebody else
    mine = Batch()
    for day in range(3):
        mine.message("anna.martin@org.example", to("annamartinez@gmail.com"), NOW - day * DAY)
        mine.message("anna.martin@org.example", to("annamartin84@gmail.com"), NOW - day * DAY)
    history.record(mine)
    assert whose(["annamartinez@gmail.com"], "anna.martin@org.example") is None  # a name that only starts with hers
    assert whose(["annamartin84@gmail.com"], "anna.martin@org.example") == "anna.martin@org.example"  # her own
    assert whose(["tomaszhorvat11@gmail.com"]) == "thorvat@org.example"  # the guess still stands for others


def test_the_store_and_memory_know_the_same_colleagues(store: StoreHistory) -> None:
    memory = MemoryHistory()
    hers = Batch()
    hers.message("kim.novak@org.example", to("mark.jones@org.example"), NOW)
    for history in (store, memory):
        history.record(colleagues_history())
        history.record(hers)
    for sender, recipients in [("mark.jones@org.example", ["annlee84@gmail.com", "jamessmith@gmail.com",
                                                          "jsmith@gmail.com", "bob@partner.com"]),
                               ("kim.novak@org.example", ["annlee@gmail.com", "kimnovak@yahoo.com",
                                                          "markjones@gmail.com"]),
                               ("mark.jones@org.example", ["bob@partner.com"])]:
        facts = memory.facts(sender, recipients, NOW)
        assert store.facts(sender, recipients, NOW) == facts
    assert memory.facts("mark.jones@org.example", ["annlee84@gmail.com", "jamessmith@gmail.com"],
                        NOW).colleagues == {"annlee84": "ann.lee@org.example", "jamessmith": "james.smith@org.example"}
    assert memory.facts("kim.novak@org.example", ["annlee@gmail.com", "kimnovak@yahoo.com", "markjones@gmail.com"],
                        NOW).colleagues == {"kimnovak": "kim.novak@org.example", "markjones": "mark.jones@org.example"}
    assert memory.facts("mark.jones@org.example", ["kimnovak@gmail.com"], NOW).colleagues == {
        "kimnovak": "kim.novak@org.example"}  # she wrote to him
    late = Batch()
    late.message("mark.jones@org.example", to("ann.lee2@org.example", "zoe.king@org.example"), NOW)  # new people
    memory.record(late)
    assert memory.facts("mark.jones@org.example", ["annlee@gmail.com", "zoeking@gmail.com"], NOW).colleagues == {
        "zoeking": "zoe.king@org.example"}  # a second ann lee: annlee is nobody's now


def test_the_names_of_the_organisations_people_are_kept_as_they_come(monkeypatch: pytest.MonkeyPatch) -> None:
    """History in memory works out a domain's names once, when its first sender is seen, and adds each new person
    after that: a door that sees a new colleague on every message does not read them all again each time."""
    built = []
    monkeypatch.setattr(memory_module, "colleague_names", lambda addresses: built.append(1) or {})
    history = MemoryHistory()
    for n in range(200):
        batch = Batch()
        batch.message(f"person.{n}@org.example", to(f"new.colleague{n}@org.example", "x.y@gmail.com"), NOW)
        history.record(batch)
        assert history.facts(f"person.{n}@org.example", ["x.y@gmail.com"], NOW).colleagues == {}
    assert len(built) == 1
    assert history.names_at["org.example"]["newcolleague"] is None  # 200 people spell it: nobody
    assert history.names_at["org.example"]["colleaguenew"] is None
    assert "gmail.com" not in history.names_at  # nobody's colleagues at a public mail provider


def test_a_domain_is_doubted_only_for_a_slip_of_another() -> None:
    """The poisoning guard's `near` is kept for a let-through recipient the guard took for a slip of another domain,
    never for one it doubted as a person at the right domain (its intended domain the recipient's own, in either
    form); a release of a hold raised only by doubts of the person says nothing of the domain, a force rule's does."""
    assert near_for("partner.com", "partnr.com") == "partnr.com"
    assert near_for("partner.com", "partner.com") is None
    assert near_for("xn--mnchen-3ya.de", "münchen.de") is None
    assert near_for("partner.com", None) is None
    assert near_for("partner.com", HELD) == HELD
    batch = Batch()
    batch.message("me@org.example", [Counted("a@partnr.com", "partnr.com", "partner.com"),
                                     Counted("b@partner.com", "partner.com", "partner.com"),
                                     Counted("c@xn--mnchen-3ya.de", "xn--mnchen-3ya.de", "münchen.de")], NOW)
    assert batch.near == {"partnr.com": "partner.com"}

    def released(intended: str | None, *signals: tuple[str, float], person: bool = False,
                 recipient: str = "bob@partner.com") -> dict[str, str]:
        marked = {"doubt": "person"} if person else {}
        row = {"mail_from": "me@org.example", "deliver_to": None, "recipient": recipient,
               "intended": intended, "signals": json.dumps([{"name": n, "score": v, "evidence": marked if v else {}}
                                                            for n, v in signals])}
        return confirmation(row, HoldState.RELEASED, NOW).near

    assert released("partner.com", ("ODD_SUBSTITUTE", 4.0), ("ODD_NEW_TO_GROUP", 2.5), person=True) == {}
    assert released(None, ("ODD_NEW_TO_GROUP", 2.5), ("ODD_NEW_ADDRESS", 1.5), ("ODD_ADDRESS_SLIP", 3.0),
                    ("KNOWN_CORRESPONDENT", 0.0), person=True) == {}
    # a colleague's personal address: its intended domain is the colleague's, and nothing is held against gmail.com
    assert released("org.example", ("ODD_PERSONAL", 4.0), ("KNOWN_CORRESPONDENT", 0.0), person=True,
                    recipient="annlee84@gmail.com") == {}
    assert released(None, ("NO_SUCH_TLD", 0.0), ("ODD_NEW_TO_GROUP", 2.5)) == {"partner.com": HELD}  # not marked
    assert released(None, ("FORCE_RULE", 0.0)) == {"partner.com": HELD}
    assert released(None, ("ODD_NEW_DOMAIN", 2.0), ("FIRST_CONTACT", 3.0)) == {"partner.com": HELD}
    assert released("partnr.com", ("KEYBOARD_TYPO", 5.0)) == {"partner.com": "partnr.com"}


def test_a_message_to_a_thousand_costs_each_recipient_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """A message to 1,000 recipients at 500 domains, one of them army.ml among 20 at army.mil: the slip is still
    found, and each recipient's domain is compared with at most SLIP_COMPANY others (no recipient is compared with
    every other: that was minutes of work for one message, the policy service's per-RCPT judging included)."""
    calls = 0
    real = judge_module.single_edit

    def counted(a: str, b: str) -> object:
        nonlocal calls
        calls += 1
        return real(a, b)

    monkeypatch.setattr(judge_module, "single_edit", counted)
    history = group_history()
    engine = Guard(load_policy(), learned=history.learned(NOW))
    recipients = [f"p{n}@d{n % 489}.example" for n in range(979)] + [f"s{n}@army.mil" for n in range(20)]
    verdicts = judge_message(engine, "me@org.example", [*recipients, "eve@army.ml"], history, now=NOW)
    assert verdicts[-1].signal("ODD_DOMAIN_SLIP") is not None
    assert verdicts[-1].suggestion == "eve@army.mil"
    assert calls <= judge_module.SLIP_COMPANY * len(verdicts)


def test_a_flood_of_holds_asks_the_store_a_few_times_a_second(store: StoreHistory,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Before each hold a door asks the store whether the sender confirmed the domain; a thousand holds to one
    domain in a second ask it at most three times (`would_ask` says which: the others are judged from memory, on
    the door's loop), and a confirmation recorded meanwhile is still found within the next second."""
    mirror = MirroredHistory(store)
    asked: list[tuple[str, str]] = []
    real = store.confirmation
    monkeypatch.setattr(store, "confirmation", lambda s, d: asked.append((s, d)) or real(s, d))
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    for n in range(1000):
        assert mirror.would_ask("s1@org.example", "gmial.com") is (n < 3)  # a door judges on its loop otherwise
        assert mirror.catch_up("s1@org.example", "gmial.com") is None
    assert len(asked) == 3
    confirmed = Batch()
    confirmed.confirmed("s1@org.example", "gmial.com", NOW)
    StoreHistory(store.store).record(confirmed)
    assert mirror.catch_up("s1@org.example", "gmial.com") is None  # this second's asks are spent
    clock[0] += 1.0
    assert mirror.would_ask("s1@org.example", "gmial.com")
    assert mirror.catch_up("s1@org.example", "gmial.com") == NOW
    assert mirror.catch_up("s2@org.example", "gmial.com") is None  # another pair asks for itself
    assert len(asked) == 5


def test_prune_deletes_only_what_counts_for_nothing(store: StoreHistory) -> None:
    """Hundreds of rows of random counts and ages: every row `prune` deletes weighed under half a message (it
    counted for nothing), a row weighing more is always kept, the correspondents the guard knows are the same
    before and after, and so is every sender's facts but for what had faded."""
    rng = random.Random(5)
    half_life = store.settings.half_life
    batch = Batch()
    for n in range(400):
        age = rng.uniform(0, 12) * half_life
        count = rng.choice((1, 1, 2, 3, 4, 5, 8, 30, 300))
        address = f"a{n}@d{n % 150}.example"
        batch.message(f"s{n % 7}@org.example", [Counted(address, address.split("@")[1])], NOW - age, count=count)
    batch.confirmed("s1@org.example", "kept.example", NOW - 1.5 * half_life)
    batch.confirmed("s1@org.example", "gone.example", NOW - 2.5 * half_life)
    store.record(batch)
    store.set_state("d149.example", "added")
    before = store.learned(NOW)
    rows_before = {(s, a): t for (s, a), t in batch.sender_addresses.items()}
    assert store.prune(NOW, dry_run=True) == store.prune(NOW, dry_run=True)  # counting changes nothing
    counts = store.prune(NOW)
    assert store.learned(NOW) == before
    kept = {(s, a) for s in {k[0] for k in rows_before} for a in
            store.facts(s, [k[1] for k in rows_before if k[0] == s], NOW).by_sender}
    assert counts["sender_addresses"] == len(rows_before) - len(kept) > 50
    for key, tally in rows_before.items():
        weight = tally.count * 0.5 ** ((NOW - tally.last) / half_life)  # type: ignore[operator]
        assert key in kept or weight < 0.5, (key, tally)  # deleted: it had faded
        assert key not in kept or weight >= 0.5 / 2, (key, tally)  # kept: it errs on keeping, by at most 2x
    assert store.confirmation("s1@org.example", "kept.example") is not None
    assert store.confirmation("s1@org.example", "gone.example") is None
    assert store.correspondents(["d149.example"])  # an administrator's word stays


def only_one_runs(first: Store, second: Store, job: str, meanwhile: Callable[[], None] = lambda: None) -> None:
    """While `first` runs `job`, `second` may not (and `meanwhile` is called), but may run another job; then it
    may run `job`."""
    with first.alone(job) as alone:
        assert alone
        with second.alone(job) as also:
            assert not also
        with second.alone(f"not {job}") as other_job:
            assert other_job
        meanwhile()
    with second.alone(job) as alone:
        assert alone


def test_one_runner_at_a_time(tmp_path: Path) -> None:
    """A job (expiry, a purge, the history prune) runs once against one store: a second runner, in another
    process or the same, is told it is not alone and does nothing; another job is not held up; once the first
    ends, the next run goes ahead."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"

    def meanwhile() -> None:
        pruned = CliRunner().invoke(main, ["known", "prune", "--db", url])
        assert pruned.exit_code == 0, pruned.output
        assert "another `rcptguard known prune` is running" in pruned.output

    only_one_runs(Store.open(url), Store.open(url), "history-prune", meanwhile)
    pruned = CliRunner().invoke(main, ["known", "prune", "--db", url])
    assert pruned.exit_code == 0, pruned.output
    assert pruned.output.startswith("deleted: 0 from sender_addresses")


def test_an_address_is_one_key_however_its_letters_are_written() -> None:
    """History, the archive readers and eval-messages key an address alike: a non-ASCII local part in lower case and
    NFC (`Ünal`, `ünal`, `u` + U+0308 `nal` are one mailbox), the domain in A-label form; `ß` is not `ss`."""
    forms = ["Ünal@Bücher.de", "ünal@xn--bcher-kva.de", "u\u0308nal@bücher.de", "ÜNAL <ÜNAL@BÜCHER.DE>"]
    assert {key_of(form) for form in forms} == {"ünal@xn--bcher-kva.de"}
    assert {normal_address(form) for form in forms} == {"ünal@xn--bcher-kva.de"}
    assert key_of("Straße@x.de") == "straße@x.de" != key_of("strasse@x.de")
    assert key_of("\u0394\u03aa\u0301@x.gr") == key_of("\u03b4\u0390@x.gr")  # NFC again after lower case
    # a character that only looks like an ASCII one is another mailbox, never the ASCII one's history
    for lookalike, plain in (("\u212aate@x.de", "kate@x.de"), ("\u0130nci@x.de", "i\u0307nci@x.de"),
                             ("a\u037e@x.de", "a;@x.de")):
        assert key_of(lookalike) != key_of(plain), lookalike
        assert normal_address(lookalike) == key_of(lookalike)

