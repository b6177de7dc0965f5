"""What history knows, as values: a tally of messages, and the facts about one message's recipients."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rcptguard.domains import MAX_ADDRESS, parse_address
from rcptguard.history.greeting import ROLES, aliases, shortened, words_of
from rcptguard.model import Address, Malformed
from rcptguard.providers import providers

__all__ = [
    "NAME_LETTERS",
    "DomainFacts",
    "Facts",
    "Seen",
    "Tally",
    "add_colleague",
    "address_key",
    "colleague_names",
    "guessed",
    "key_of",
    "name_forms",
    "named",
    "named_by",
    "named_in",
    "organisation_of",
    "places",
    "sender_key",
    "spelled",
]

NAME_LETTERS = 5  # a name spelled in fewer letters says too little to stand for one person in a whole organisation
EXACT = "."  # ends a name only a local part of just its letters spells (emilyw), never one that starts with them
CALLED = "~"  # ends a short first name with the last name (robnicholson): as EXACT, and only the last guess
SHORT_INITIALS = frozenset("bcdfghjklmnpqrtvwxz")  # a first name and one of these is rarely a name of its own


def address_key(address: Address) -> str:
    """How history names an address, as the archive readers do (`sources.normal_address`): `Address.key`."""
    return address.key


def sender_key(sender: str) -> str | None:
    """How history names a sender; None for the null sender or one that does not parse (no history of its own)."""
    if not sender.strip() or sender.strip() == "<>":
        return None
    return key_of(sender)


def key_of(raw: str) -> str | None:
    """`address_key` of an address as typed, None when it does not parse. Remembered for addresses of a sane length,
    as `parse_address` is: a door asks for the sender's and each recipient's key several times a message."""
    return _key_remembered(raw) if len(raw) <= MAX_ADDRESS + 2 else _key_of(raw)


def _key_of(raw: str) -> str | None:
    parsed = parse_address(raw)
    return None if isinstance(parsed, Malformed) else address_key(parsed)


_key_remembered = functools.lru_cache(maxsize=16384)(_key_of)


def places(sender: str | None, addresses: Iterable[str]) -> list[tuple[str, str]]:
    """Each recipient of a message with the place it takes in its group: (address, the rest's digest). The group is
    the message's people (its recipients and its sender); the rest is the group without that recipient, named by a
    digest of its sorted addresses (32 hex digits). Two messages whose groups differ only in one recipient give that
    recipient's place the same name: history counts who filled each place, and the odd recipient out sees a
    recipient who takes the place of somebody else (`ODD_SUBSTITUTE`)."""
    recipients = sorted(set(addresses))
    people = sorted({*recipients, sender}) if sender is not None else recipients
    out = []
    for address in recipients:
        rest = "\n".join(p for p in people if p != address)
        out.append((address, hashlib.blake2b(rest.encode(), digest_size=16).hexdigest()))
    return out


def spelled(local: str) -> str:
    """A local part's letters alone: ann.lee84, ann_lee and annlee all spell annlee."""
    return "".join(c for c in local if c.isalpha())


def _first_last(local: str) -> tuple[str, str]:
    """A local part written first, a separator (. _ -), last: its two names' letters; ("", "") for another shape."""
    for sep in ".-_":
        first, found, last = local.partition(sep)
        if found:
            middle, between, rest = last.partition(".")
            if between and len(spelled(middle)) == 1 and spelled(rest):  # a middle initial: john.q.smith
                last = rest
            first, last = spelled(first), spelled(last)
            return (first, last) if first and last else ("", "")
    return "", ""


def name_forms(local: str) -> tuple[str, ...]:
    """The names an address at the organisation's domain spells, as a personal address of its person would: all the
    letters of the local part (ann.lee: annlee), and for first.last the initial with the last name (alee), the last
    name first (leeann) and the first name with the last's initial (emily.wright: emilyw), this one marked `EXACT`
    (only a local part of just these letters is it: not emilywilliams) and only where it is no other name (not
    eric.adams as erica, mark.smith as marks, julian.alvarez as juliana, kari.nieminen as karin: a first name of five
    letters at least, not a vowel, s or y for the initial, nor a name the nicknames list knows); and what the first
    name is called for short with the last name (`greeting.shortened`; robert.nicholson: robnicholson;
    stephen.richardson: steverichardson), marked `CALLED`; none for a role's address (sales@, info@,
    accounts.payable@: its first word or every word a role's), which is nobody's name."""
    words = words_of(local)
    if words and (words[0] in ROLES or all(word in ROLES for word in words)):  # (maria.sales is a person)
        return ()
    first, last = _first_last(local)
    whole = spelled(local)
    if not first:
        return (whole,)
    short = first + last[:1]  # (emilyw: but erica, paula, peters, juliana are names of their own)
    called = tuple(sorted(nick + last + CALLED for nick in shortened(first)))  # (a guess, as emilyw's)
    if len(first) < 5 or last[:1] not in SHORT_INITIALS or len(aliases(short)) > 1:  # (kari.n: karin, jose.f)
        return whole, first[:1] + last, last + first, *called
    return whole, first[:1] + last, last + first, short + EXACT, *called


def colleague_names(addresses: Iterable[str]) -> dict[str, str | None]:
    """The names the organisation's people spell (their addresses at its domain), as a personal address of theirs
    would (`add_colleague`)."""
    names: dict[str, str | None] = {}
    for address in addresses:
        add_colleague(names, address)
    return names


def add_colleague(names: dict[str, str | None], address: str) -> None:
    """The names one person at the organisation's domain spells (`name_forms`), added, each of NAME_LETTERS letters
    at least; a name two people spell is nobody's (None)."""
    for name in name_forms(address.rpartition("@")[0]):
        if len(name.rstrip(EXACT + CALLED)) >= NAME_LETTERS:
            names[name] = address if names.get(name, address) == address else None


def named(word: str, names: Mapping[str, str | None]) -> str | None:
    """Whose name the letters of a personal address's local part (`spelled`) are, or start with (annleehome: annlee,
    the longest of NAME_LETTERS letters at least): a name in `names`, or None (also for a name two people spell)."""
    if word in names:
        return names[word]
    for end in range(len(word) - 1, NAME_LETTERS - 1, -1):
        if word[:end] in names:
            return names[word[:end]]
    return None


def named_by(local: str, names: Mapping[str, str | None]) -> str | None:
    """Whose name a personal address's local part spells, however its owner wrote it and the organisation writes
    it: its letters (`named`: annlee84, annleehome), else a guess (`guessed`)."""
    word = spelled(local)
    if not word:
        return None
    return named(word, names) or guessed(local, names)


def named_in(local: str, domains: Sequence[Mapping[str, str | None]]) -> str | None:
    """`named_by` across the names of the organisation's domains, in order (the sender's first): a name its letters
    spell (`named`) before a guess (`guessed`), and of each, the first domain that knows it decides. A person often
    has an address at each of its domains (flast@org.co.uk and first.last@org.example), so a name met again at a
    later domain is taken for the same person; a name two people spell at one domain is nobody's, and a later domain
    is not asked."""
    word = spelled(local)
    if not word:
        return None
    for names in domains:
        if names.get(word, "") is None:  # (named says None for a name two people spell, as for no name)
            return None
        if (who := named(word, names)) is not None:
            return who
    for names in domains:
        if (who := guessed(local, names)) is not None:
            return who
    return None


def organisation_of(home: str, sending: Iterable[str], own: Collection[str]) -> tuple[str, ...]:
    """The sender's organisation (`Facts.own`): the sender's domain `home`, then, in order, those of `sending` (the
    domains people send from) that are, or are under, one of `own` (uk.org.example under org.example); never a
    public mail provider."""
    public = providers()
    return (home, *sorted(d for d in sending if d != home and d not in public and _within(d, own)))


def _within(domain: str, domains: Collection[str]) -> bool:
    while True:
        if domain in domains:
            return True
        _, dot, domain = domain.partition(".")
        if not dot:
            return False


def guessed(local: str, names: Mapping[str, str | None], *, least: int = NAME_LETTERS) -> str | None:
    """Whose name a personal address's local part spells, guessed: its letters as a first name and the last's
    initial (emilyw5: emily.wright@, `name_forms`); or, where the organisation writes its people as an initial and a
    last name (alee@, thorvat@) and the address the whole first name, first.last as its initial and last name either
    way round (ann.lee84, lee.ann: alee), of `least` letters or more (the people on the message itself may be
    shorter: wei.li67 for wli@), or letters run together as their first letter and an ending of four letters or more
    (tomaszhorvat: thorvat). Only an address written so is named (thorvat@, not tina.horvat@: she is not Tomasz). A
    guess: a namesake who is somebody else fits too (hollywood for hwood@). Last, what a first name is called for
    short with the last name (robnicholson for robert.nicholson@: `name_forms`)."""
    if (who := names.get(spelled(local) + EXACT)) is not None:  # emilyw5: emily.wright
        return who
    first, last = _first_last(local)
    if first:
        forms: Iterable[str] = (first[:1] + last, last[:1] + first)
    else:  # word[0] and an ending of NAME_LETTERS - 1 letters or more, the longest first
        word = spelled(local)
        forms = (word[0] + word[i:] for i in range(2, len(word) - NAME_LETTERS + 2))
    shortest = least if first else NAME_LETTERS
    for form in forms:
        if (len(form) >= shortest and (who := names.get(form)) is not None
                and spelled(who.rpartition("@")[0]) == form):
            return who
    return names.get(spelled(local) + CALLED)  # robnicholson: robert.nicholson, when nothing else fits


@dataclass(slots=True)
class Tally:
    """Messages counted under one key, with the first and last time (a batch adds tallies together)."""

    count: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None

    def add(self, count: int, when: dt.datetime) -> None:
        self.count += count
        first = self.first
        if first is None:
            self.first = self.last = when
        elif when < first:
            self.first = when
        elif when > self.last:  # type: ignore[operator] # set with first
            self.last = when

    def merge(self, other: Tally) -> None:
        self.count += other.count
        if other.first is not None and (self.first is None or other.first < self.first):
            self.first = other.first
        if other.last is not None and (self.last is None or other.last > self.last):
            self.last = other.last


@dataclass(frozen=True, slots=True)
class Seen:
    """How much mail went somewhere, and when: a tally as read back from history."""

    count: int = 0
    first: dt.datetime | None = None
    last: dt.datetime | None = None

    def weight(self, now: dt.datetime, half_life: dt.timedelta) -> float:
        """The count, faded by the time since the last message: halved for every half-life since."""
        if not self.count or self.last is None:
            return 0.0
        age = max((now - self.last).total_seconds(), 0.0)
        return float(self.count * 0.5 ** (age / half_life.total_seconds()))


@dataclass(frozen=True, slots=True)
class DomainFacts:
    """What history says of one recipient domain: the organisation's mail to it, and this sender's."""

    org: Seen = Seen()
    senders: int = 0  # how many people wrote to it
    inbound: int = 0  # messages it sent us
    near: str | None = None  # the domain it is one slip from, when the guard warned or held it
    state: str | None = None  # added | forgotten (rcptguard known)
    sender: Seen = Seen()  # this sender's mail to it
    confirmed: dt.datetime | None = None  # when this sender confirmed a hold of it ("send anyway")


@dataclass(frozen=True, slots=True)
class Facts:
    """What history says about one message's recipients, for its sender (rcptguard.history.judge)."""

    domains: dict[str, DomainFacts] = field(default_factory=dict)  # by A-label domain
    by_sender: dict[str, int] = field(default_factory=dict)  # address -> this sender's messages to it
    by_org: dict[str, int] = field(default_factory=dict)  # address -> everybody's messages to it
    pairs: dict[tuple[str, str], int] = field(default_factory=dict)  # (a, b), a < b -> messages to both
    # domain -> the sender's most written-to addresses there, for the domains of addresses the sender never wrote to
    neighbours: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # domain -> the organisation's most written-to addresses there, for the domains of addresses nobody wrote to
    org_neighbours: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # address -> who filled its place in this group before (model.places), with their messages: for messages of
    # 2 to `max_group` recipients
    places: dict[str, dict[str, int]] = field(default_factory=dict)
    # the local part of a recipient at a public mail provider -> the one person of the sender's organisation (`own`)
    # whose name it spells (`colleague_names`, `named_in`: the senders and the addresses written to at its domains),
    # when that is the sender or somebody the sender has written to or had mail from
    colleagues: dict[str, str] = field(default_factory=dict)
    # the sender's organisation, when a recipient is at a public mail provider: the sender's domain, then the domains
    # its people send from that are (or are under) one of the organisation's domains asked for (`HistoryView.facts`'
    # own), in order
    own: tuple[str, ...] = ()
