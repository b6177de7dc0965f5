"""A synthetic organisation's outbound mail, one message a line, with injected leaks: the evaluation set of
`rcptguard eval-messages` (bench/README.md, "History and the odd recipient out").

    python bench/synth_org.py --seed 1 --out org.jsonl     # then:
    rcptguard eval-messages org.jsonl --train-until 2026-05-01 --protect org.example
    python bench/synth_org.py --seed 1 --text --out org.jsonl   # each message with an opening (a greeting)

The organisation (org.example) has --people people in teams; each team works with partner organisations whose
traffic follows a power law (a few partners get most of the mail), through threads: a group of recipients (one or
two partners' people, sometimes colleagues in copy) written to again and again (reply-all), now and then with
someone added. New partners and new people at old partners keep appearing, as in life. People also write to
contacts at free-mail providers.

Leaks are injected into about 1.5% of the messages after the cut, and a few before it (past slips that a history
import must not learn as real):
- `domain-slip`: one recipient's domain mistyped (a letter dropped, doubled, swapped, a neighbouring key, a
  suffix slip: .com as .co, .cm, .om; .de as .d);
- `wrong-person`: one recipient replaced by another person at the same domain with the same first name or the
  next address in an address book's order (autocomplete);
- `personal`: a colleague's address (often the sender's own) replaced or joined by a personal address at a
  free-mail provider built from the same name.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import string
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

OWN = "org.example"
START = dt.datetime(2026, 1, 1, 8, tzinfo=dt.UTC)
DAYS = 180
CUT = START + dt.timedelta(days=120)
FIRST = ("anna", "ben", "carla", "david", "emma", "felix", "greta", "hugo", "ines", "jonas", "karin", "lukas",
         "maria", "nils", "olga", "paul", "rita", "sven", "tina", "uwe", "vera", "walter", "xenia", "yusuf", "zoe",
         "john", "jane", "mark", "sarah", "peter", "laura", "tom", "nina", "omar", "lea", "max", "eva", "ali", "ivan",
         "mia")
LAST = ("smith", "miller", "schmidt", "meyer", "weber", "wagner", "becker", "hoffmann", "schulz", "koch", "richter",
        "klein", "wolf", "neumann", "schwarz", "braun", "hofmann", "lange", "werner", "krause", "lehmann", "koehler",
        "martin", "bernard", "dubois", "thomas", "robert", "petit", "durand", "leroy", "moreau", "simon", "laurent",
        "garcia", "lopez", "rossi", "russo", "ferrari", "jensen", "nielsen", "hansen", "berg", "lund", "novak")
SYLLABLES = ("ka", "ro", "ten", "vi", "lo", "mar", "tex", "ber", "qua", "sol", "dyn", "tri", "nor", "ex", "ga", "lex",
             "pro", "med", "tel", "ver", "an", "is", "co", "data", "net", "link", "corp", "sys", "tech", "bau", "plan",
             "fin", "agro", "bio", "chem", "log", "trans", "port", "werk", "haus", "max", "opti", "cura", "terra",
             "nova", "alpha", "omni", "logic", "soft", "ware", "sun", "star", "bright", "wave", "green", "blue",
             "stone", "field", "bridge", "west", "north", "east", "south", "ocean", "river", "peak", "vale", "mont")
TLDS = (("com", 50), ("de", 15), ("co.uk", 6), ("fr", 5), ("nl", 4), ("ch", 4), ("io", 3), ("net", 4), ("org", 4),
        ("at", 3), ("it", 2))
FREEMAIL = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "gmx.de", "web.de", "icloud.com")
KEYS = {c: n for row in ("qwertyuiop", "asdfghjkl", "zxcvbnm") for c, n in zip(row, [row[1:]] + [
    row[i - 1] + (row[i + 1] if i + 1 < len(row) else "") for i in range(1, len(row))], strict=False)}


@dataclass
class Org:
    domain: str
    people: list[str]
    weight: float


@dataclass
class Thread:
    sender: str
    group: list[str]
    left: int
    next_at: dt.datetime


@dataclass
class World:
    rng: random.Random
    colleagues: list[str] = field(default_factory=list)
    teams: list[list[str]] = field(default_factory=list)
    partners: list[list[Org]] = field(default_factory=list)  # by team
    orgs: list[Org] = field(default_factory=list)
    freemail: list[str] = field(default_factory=list)  # contacts at free-mail providers
    used: set[str] = field(default_factory=set)  # domains in use


def _name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST), rng.choice(LAST)


def _address(rng: random.Random, first: str, last: str, domain: str) -> str:
    style = rng.random()
    local = f"{first}.{last}" if style < 0.7 else f"{first[0]}.{last}" if style < 0.85 else f"{first}{last}"
    return f"{local}@{domain}"


def _domain(world: World) -> str:
    rng = world.rng
    while True:
        name = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3))))
        tld = rng.choices([t for t, _ in TLDS], [w for _, w in TLDS])[0]
        domain = f"{name}.{tld}"
        if domain not in world.used and len(name) >= 5:
            world.used.add(domain)
            return domain


def _org(world: World, weight: float) -> Org:
    rng = world.rng
    domain = _domain(world)
    people = sorted({_address(rng, *_name(rng), domain) for _ in range(rng.choice((1, 2, 3, 4, 6, 8, 12)))})
    org = Org(domain, people, weight)
    world.orgs.append(org)
    return org


def build(seed: int, people: int) -> World:
    rng = random.Random(seed)
    world = World(rng)
    world.used.add(OWN)
    world.colleagues = sorted({_address(rng, *_name(rng), OWN) for _ in range(people)})
    rng.shuffle(world.colleagues)
    size = max(len(world.colleagues) // 12, 3)
    world.teams = [world.colleagues[i : i + size] for i in range(0, len(world.colleagues), size)]
    for _team in world.teams:
        world.partners.append([_org(world, 1.0 / (rank + 1) ** 1.1) for rank in range(rng.randrange(15, 45))])
    world.freemail = [f"{f}.{last}{rng.choice(('', '', str(rng.randrange(10, 99))))}@{rng.choice(FREEMAIL)}"
                      for f, last in (_name(rng) for _ in range(people * 2))]
    return world


def _group(world: World, team: int, sender: str) -> list[str]:
    rng = world.rng
    partners = world.partners[team]
    if rng.random() < 0.08:
        return rng.sample(world.freemail, 1)
    first = rng.choices(partners, [o.weight for o in partners])[0]
    if rng.random() < 0.01:  # a new person at an old partner
        first.people.append(_address(rng, *_name(rng), first.domain))
    group = rng.sample(first.people, min(len(first.people), rng.choice((1, 1, 1, 2, 2, 3, 4))))
    if rng.random() < 0.2:
        second = rng.choices(partners, [o.weight for o in partners])[0]
        group += rng.sample(second.people, 1)
    mates = [c for c in world.teams[team] if c != sender]
    if mates and rng.random() < 0.35:
        group += rng.sample(mates, min(len(mates), rng.choice((1, 1, 2, 3))))
    return list(dict.fromkeys(group))


def _slip(rng: random.Random, domain: str) -> str:
    name, _, tld = domain.partition(".")
    kind = rng.random()
    if kind < 0.3:
        fixes = {"com": ("co", "cm", "om", "con"), "de": ("d", "dee", "ed"), "co.uk": ("co.u", "co.k", "couk"),
                 "fr": ("f", "rf"), "net": ("ne", "nt"), "org": ("or", "ogr")}.get(tld, (tld[:-1],))
        return f"{name}.{rng.choice(fixes)}"
    i = rng.randrange(1, len(name) - 1)
    if kind < 0.5:
        typed = name[:i] + name[i + 1 :]
    elif kind < 0.65:
        typed = name[:i] + name[i] + name[i:]
    elif kind < 0.8:
        typed = name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    else:
        near = KEYS.get(name[i], string.ascii_lowercase)
        typed = name[:i] + rng.choice(near) + name[i + 1 :]
    return f"{typed}.{tld}" if typed != name else f"{name}.{tld[:-1] or 'c'}"


def _namesake(world: World, address: str) -> str | None:
    rng = world.rng
    local, domain = address.split("@")
    org = next((o for o in world.orgs if o.domain == domain), None)
    first = local.split(".")[0]
    if org is None or len(org.people) < 2 or rng.random() < 0.5:  # a namesake made up: same first name
        return f"{first}.{rng.choice(LAST)}@{domain}" if "." in local else f"{local}x@{domain}"
    ordered = sorted(org.people)
    i = ordered.index(address) if address in ordered else 0
    return ordered[(i + 1) % len(ordered)] if ordered[(i + 1) % len(ordered)] != address else None


def _named(address: str) -> tuple[str, str | None, str | None]:
    """An address with the first and last name it spells (first.last), or None for another shape."""
    first, dot, last = address.split("@", maxsplit=1)[0].partition(".")
    return (address, first, last) if dot and first.isalpha() and last.isalpha() else (address, None, None)


def _personal(world: World, sender: str, group: list[str]) -> str:
    rng = world.rng
    colleague = sender if rng.random() < 0.6 else rng.choice([g for g in group if g.endswith(OWN)] or [sender])
    local = colleague.split("@")[0]
    first, _, last = local.partition(".")
    style = rng.random()
    personal = (f"{first}.{last}" if style < 0.4 else f"{first}{last}" if style < 0.7
                else f"{first}.{last}{rng.randrange(60, 99)}" if style < 0.9 else f"{first[0]}{last}")
    return f"{personal}@{rng.choice(FREEMAIL)}"


def _leak(world: World, sender: str, group: list[str]) -> tuple[list[str], str, str] | None:
    rng = world.rng
    external = [g for g in group if not g.endswith("@" + OWN) and g.split("@")[1] not in FREEMAIL]
    kind = rng.choice(("domain-slip", "wrong-person", "personal"))
    if kind == "personal":
        leak = _personal(world, sender, group)
        return ([*group, leak] if rng.random() < 0.5 else [leak if g == sender else g for g in group] + (
            [leak] if sender not in group else [])), leak, kind
    if not external:
        return None
    victim = rng.choice(external)
    leak = (f"{victim.split('@')[0]}@{_slip(rng, victim.split('@')[1])}" if kind == "domain-slip"
            else _namesake(world, victim))
    if leak is None or leak == victim or leak in group:
        return None
    return [leak if g == victim else g for g in group], leak, kind


def messages(world: World, per_day: int) -> Iterator[dict[str, object]]:
    rng = world.rng
    threads: list[Thread] = []
    for day in range(DAYS):
        today = START + dt.timedelta(days=day)
        if day % 7 in (5, 6):
            continue
        for team, _ in enumerate(world.teams):
            if rng.random() < 0.02:  # a new partner
                world.partners[team].append(_org(world, 0.05))
        for _ in range(per_day):
            when = today + dt.timedelta(seconds=rng.randrange(9 * 3600))
            due = [t for t in threads if t.next_at <= when and t.left > 0]
            if due and rng.random() < 0.6:
                thread = rng.choice(due)
                thread.left -= 1
                thread.next_at = when + dt.timedelta(hours=rng.expovariate(1 / 20))
                if rng.random() < 0.05:  # someone added to the thread
                    extra = _group(world, next(i for i, t in enumerate(world.teams) if thread.sender in t),
                                   thread.sender)
                    thread.group = list(dict.fromkeys(thread.group + extra[:1]))
                sender = thread.sender if rng.random() < 0.6 else rng.choice(
                    [g for g in thread.group if g.endswith("@" + OWN)] or [thread.sender])
                group = [g for g in thread.group if g != sender] + ([thread.sender] if sender != thread.sender else [])
            else:
                team = rng.randrange(len(world.teams))
                sender = rng.choice(world.teams[team])
                group = _group(world, team, sender)
                threads.append(Thread(sender, group, int(rng.expovariate(1 / 4)), when + dt.timedelta(hours=4)))
            leak, kind, meant = None, None, group
            rate = 0.015 if when >= CUT else 0.003
            if rng.random() < rate:
                found = _leak(world, sender, group)
                if found is not None:
                    group, leak, kind = found
            yield {"date": when.isoformat(), "sender": sender, "recipients": group, "leak": leak, "kind": kind,
                   "meant": [_named(m) for m in meant]}
        threads = [t for t in threads if t.left > 0][-5000:]


def command_line(doc: str, people: int, make: Callable[[int, int, int], Iterator[dict[str, object]]]) -> None:
    """The generators' command line: --seed, --people, --per-day, --out, --text; `make(seed, people, per_day)` gives
    the messages, written one JSON object a line in date order. Each message names the people it was meant for
    ("meant": [address, first name, last name], the recipients before a leak): with --text their greeting is written
    as the message's opening ("text", `opening_text`), without it the field is left out."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--people", type=int, default=people)
    parser.add_argument("--per-day", type=int, default=300, help="messages a working day")
    parser.add_argument("--out", type=Path, help="the JSONL file (default: standard output)")
    parser.add_argument("--text", action="store_true", help="give each message an opening line (a greeting)")
    args = parser.parse_args()
    out = args.out.open("w") if args.out else sys.stdout
    rng = random.Random(f"text {args.seed}")  # its own: the envelopes are the same with --text or without
    habits: dict[str, str] = {}
    try:
        for message in sorted(make(args.seed, args.people, args.per_day), key=lambda m: str(m["date"])):
            meant = message.pop("meant", [])
            if args.text:
                message["text"] = opening_text(rng, habits, str(message["sender"]), meant)  # type: ignore[arg-type]
            out.write(json.dumps(message) + "\n")
    finally:
        if args.out:
            out.close()


# How people open a message, an assumption (no measured share): each sender has a habit, kept
HABITS = {"first": 0.40, "formal": 0.15, "plain": 0.25, "none": 0.20}
BARE = 0.3  # a message with no greeting whatever the habit (a quick reply, a note)
FILLER = ("please find the figures attached.", "thanks for your message.", "a short update on where we are.",
          "could you have a look at the draft below?", "as discussed, here are the next steps.")


def opening_text(rng: random.Random, habits: dict[str, str], sender: str,
                 meant: list[tuple[str, str | None, str | None]]) -> str:
    """The first lines of a message to `meant` (address, first, last name: None when the address does not say):
    the greeting of the sender's habit, addressed to the people meant (a leak's message still greets the person
    its sender meant), then a line of text."""
    habit = habits.setdefault(sender, rng.choices(list(HABITS), list(HABITS.values()))[0])
    line = rng.choice(FILLER)
    first = [m for m in meant if m[1]]
    if habit == "none" or rng.random() < BARE:
        return line.capitalize()
    if habit == "plain" or not first:
        return f"{rng.choice(('Hello,', 'Hi all,', 'Good morning,', 'Hi,'))}\n\n{line.capitalize()}"
    if habit == "formal":
        last = first[0][2]
        title = rng.choice(("Mr", "Ms", "Dr"))
        return f"Dear {title} {str(last).capitalize()},\n\n{line.capitalize()}" if last else f"Dear all,\n\n{line}"
    if (len(meant) >= 3 and rng.random() < 0.6) or (len(meant) == 2 and rng.random() < 0.2):
        return f"Hi all,\n\n{line.capitalize()}"
    named = [str(m[1]).capitalize() for m in first[: 2 if len(meant) == 2 and rng.random() < 0.4 else 1]]
    return f"{rng.choice(('Hi', 'Dear', 'Hello'))} {' and '.join(named)},\n\n{line.capitalize()}"


def main() -> None:
    command_line(__doc__ or "", 150, lambda seed, people, per_day: messages(build(seed, people), per_day))


if __name__ == "__main__":
    main()
