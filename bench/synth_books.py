"""A second synthetic organisation, built on other assumptions than synth_org.py, held out of the engine's tuning:
people write from their own address books, in projects, and slip the way address books make them slip.

    python bench/synth_books.py --seed 1 --out books.jsonl     # then:
    rcptguard eval-messages books.jsonl --train-until 2026-05-01 --protect org.example

Where synth_org.py has teams sharing partners and threads written to again and again, here:

- **Organisations of every size.** A few large ones (a ministry, a big customer: up to several hundred people) and
  many of one to five; each spells addresses its own way (first.last, flast, first_last, firstl, first, with a digit
  for a second John Smith) on domains of several shapes (name.com, name.gov, mail.name.gov, name.ac.uk, name.com.au).
- **Address books.** Each person has their own contacts: colleagues (mostly of their department), people at the
  organisations their department works with, personal contacts at public mail providers; how often they write to
  each follows a power law of their own.
- **Projects.** A department's projects come and go (new ones bring new organisations and people, as in life):
  a project is a few external people at one to three organisations and a few colleagues; a message goes to part of
  it, or to one contact of the sender's book, or inside the organisation only.

Leaks, about 1.5% of the messages after the cut (0.3% before it, past slips an import must not learn):
- `domain-slip`: an external recipient's domain mistyped: a letter dropped, doubled, swapped or next to it on the
  keyboard, the dot of a sub-domain dropped (mail.agency.gov as mailagency.gov), a suffix slip (.com as .co, .cm;
  .gov as .gv; .ac.uk as .ac.u; .com.au as .com.a);
- `autocomplete`: the sender types the first letters of the person meant and takes the entry next to it among the
  contacts of the sender's own book that match, by how often the sender writes to them: another external person,
  at the same organisation or another (a colleague picked instead is no leak, and is not injected);
- `namesake`: somebody with the same first name at the same organisation, or with the same name elsewhere;
- `personal`: the sender's own or a colleague's personal address at a public mail provider, instead of or beside
  the work address.
"""

from __future__ import annotations

import datetime as dt
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field

from synth_org import command_line  # (bench/: the same command line)

OWN = "org.example"
START = dt.datetime(2026, 1, 1, 7, tzinfo=dt.UTC)
DAYS = 180
CUT = START + dt.timedelta(days=120)
FIRST = ("aaron", "abigail", "adam", "alice", "amir", "andrea", "arjun", "beatriz", "bruno", "camille", "chen",
         "chloe", "daniel", "deepa", "diego", "elena", "elif", "fatima", "femi", "george", "hana", "harry", "irene",
         "isaac", "jamal", "james", "jennifer", "joao", "julia", "kenji", "kofi", "laila", "leon", "lucia", "malik",
         "marco", "marta", "mei", "michael", "nadia", "noah", "olivia", "oscar", "priya", "rafael", "rosa", "samuel",
         "sofia", "stefan", "tariq", "thomas", "valentina", "victor", "wei", "yara", "yuki", "zainab")
LAST = ("adams", "ahmed", "alvarez", "anderson", "baker", "bianchi", "brown", "campbell", "chen", "clark", "costa",
        "davies", "diaz", "evans", "fischer", "garcia", "gonzalez", "green", "hall", "haddad", "hughes", "ito",
        "jackson", "johnson", "kaur", "khan", "kim", "kowalski", "lee", "lewis", "martinez", "mensah", "moore",
        "morgan", "murphy", "nakamura", "nguyen", "novak", "obrien", "okafor", "olsen", "patel", "perez", "phillips",
        "reid", "roberts", "rossi", "santos", "sato", "singh", "smith", "taylor", "thompson", "walker", "wang",
        "white", "williams", "wilson", "wright", "young", "zhang")
WORDS = ("harbor", "meridian", "atlas", "summit", "keystone", "pinnacle", "granite", "cobalt", "vector", "beacon",
         "horizon", "sterling", "crescent", "evergreen", "lattice", "quantum", "anchor", "redwood", "falcon", "orbit",
         "cascade", "frontier", "heritage", "ironwood", "juniper", "lighthouse", "mosaic", "northstar", "oakridge",
         "paragon", "quarry", "riverside", "sapphire", "tidewater", "unity", "vantage", "willow", "zenith", "alder",
         "bayview", "cedar", "delta", "ember", "fjord", "glacier", "highland", "inlet", "jasper", "kestrel", "lumen")
TRADES = ("", "", "", "group", "labs", "health", "logistics", "capital", "systems", "legal", "energy", "travel",
          "partners", "consulting", "medical", "defense", "foods", "bank")
SHAPES = ((".com", 45), (".gov", 8), (".org", 8), (".net", 5), (".co.uk", 6), (".ac.uk", 3), (".com.au", 3),
          (".de", 6), (".fr", 3), (".nl", 3), (".io", 3), (".ca", 3), (".edu", 4))
PROVIDERS = ("gmail.com", "outlook.com", "yahoo.com", "hotmail.com", "icloud.com", "aol.com", "proton.me",
             "gmx.net", "yahoo.co.uk", "live.com")
STYLES = ("first.last", "first.last", "first.last", "flast", "first_last", "firstl", "firstlast", "first")
SUFFIX_SLIPS = {".ac.uk": (".ac.u", ".ac.k", ".acuk"), ".com.au": (".com.a", ".co.au", ".cm.au"),
                ".co.uk": (".co.u", ".couk", ".co.k"), ".com": (".co", ".cm", ".om", ".comm"),
                ".gov": (".gv", ".go", ".gob"), ".org": (".or", ".og"), ".edu": (".ed", ".eud"),
                ".net": (".ne", ".nte")}
KEYS = {c: n for row in ("qwertyuiop", "asdfghjkl", "zxcvbnm") for c, n in zip(row, [row[1:]] + [
    row[i - 1] + (row[i + 1] if i + 1 < len(row) else "") for i in range(1, len(row))], strict=False)}


@dataclass
class Person:
    first: str
    last: str
    address: str


@dataclass
class Organisation:
    domain: str
    style: str
    people: list[Person] = field(default_factory=list)
    taken: set[str] = field(default_factory=set)

    def hire(self, rng: random.Random, first: str | None = None) -> Person:
        first, last = first or rng.choice(FIRST), rng.choice(LAST)
        local = {"first.last": f"{first}.{last}", "flast": f"{first[0]}{last}", "first_last": f"{first}_{last}",
                 "firstl": f"{first}{last[0]}", "firstlast": f"{first}{last}", "first": first}[self.style]
        base, n = local, 2
        while local in self.taken:
            local, n = f"{base}{n}", n + 1
        self.taken.add(local)
        person = Person(first, last, f"{local}@{self.domain}")
        self.people.append(person)
        return person


@dataclass
class Project:
    external: list[Person]
    internal: list[Person]
    ends: int  # the day it ends


@dataclass
class World:
    rng: random.Random
    staff: Organisation = field(default_factory=lambda: Organisation(OWN, "first.last"))
    departments: list[list[Person]] = field(default_factory=list)
    organisations: list[Organisation] = field(default_factory=list)
    accounts: list[list[Organisation]] = field(default_factory=list)  # by department: who it works with
    projects: list[list[Project]] = field(default_factory=list)  # by department
    books: dict[str, dict[str, float]] = field(default_factory=dict)  # staff address -> contact -> weight
    people: dict[str, Person] = field(default_factory=dict)  # every address -> its person
    private: dict[str, str] = field(default_factory=dict)  # staff address -> a personal address
    sent: dict[str, dict[str, int]] = field(default_factory=dict)  # staff address -> recipient -> messages
    used: set[str] = field(default_factory=set)


def _domain(world: World) -> tuple[str, str]:
    rng = world.rng
    while True:
        name = rng.choice(WORDS) + rng.choice(TRADES)
        if rng.random() < 0.15:
            name += rng.choice(WORDS)
        suffix = rng.choices([s for s, _ in SHAPES], [w for _, w in SHAPES])[0]
        if suffix == ".gov" and rng.random() < 0.4:
            name = f"mail.{name}"
        domain = name + suffix
        if domain not in world.used:
            world.used.add(domain)
            return domain, suffix


def _organisation(world: World) -> Organisation:
    rng = world.rng
    domain, suffix = _domain(world)
    size = min(400, int(rng.paretovariate(1.1)) + (rng.randrange(20, 80) if suffix in (".gov", ".edu") else 0))
    style = rng.choice(STYLES[:-1] if size > 5 else STYLES)
    org = Organisation(domain, style)
    for _ in range(max(size, 1)):
        person = org.hire(rng)
        world.people[person.address] = person
    world.organisations.append(org)
    return org


def _personal(rng: random.Random, person: Person) -> str:
    style = rng.random()
    local = (f"{person.first}.{person.last}" if style < 0.35 else f"{person.first}{person.last}" if style < 0.6
             else f"{person.first}.{person.last}{rng.randrange(70, 99)}" if style < 0.8
             else f"{person.first[0]}{person.last}{rng.randrange(1, 30)}")
    return f"{local}@{rng.choice(PROVIDERS)}"


def build(seed: int, people: int) -> World:
    rng = random.Random(seed)
    world = World(rng)
    world.used.add(OWN)
    for _ in range(people):
        person = world.staff.hire(rng)
        world.people[person.address] = person
        world.private[person.address] = _personal(rng, person)
    staff = list(world.staff.people)
    rng.shuffle(staff)
    count = max(people // 25, 2)
    world.departments = [staff[i::count] for i in range(count)]
    for _department in world.departments:
        world.accounts.append([_organisation(world) for _ in range(rng.randrange(8, 30))])
        world.projects.append([])
    for index, department in enumerate(world.departments):
        for person in department:
            world.books[person.address] = _book(world, index, person)
    return world


def _book(world: World, department: int, person: Person) -> dict[str, float]:
    """A person's contacts, each with how much they write to it (a power law of their own)."""
    rng = world.rng
    contacts: list[str] = []
    contacts += [p.address for p in rng.sample(world.departments[department],
                                                min(len(world.departments[department]), 12)) if p is not person]
    contacts += [p.address for p in rng.sample(world.staff.people, 4) if p is not person]
    for org in rng.sample(world.accounts[department], min(len(world.accounts[department]), rng.randrange(3, 9))):
        contacts += [p.address for p in rng.sample(org.people, min(len(org.people), rng.randrange(1, 6)))]
    for _ in range(rng.randrange(0, 6)):
        contacts.append(_personal(rng, Person(rng.choice(FIRST), rng.choice(LAST), "")))
    contacts = list(dict.fromkeys(contacts))
    rng.shuffle(contacts)
    return {c: 1.0 / (rank + 1) ** 0.9 for rank, c in enumerate(contacts)}


def _project(world: World, department: int, day: int) -> Project:
    rng = world.rng
    accounts = world.accounts[department]
    if rng.random() < 0.15:  # a new organisation to work with
        accounts.append(_organisation(world))
    orgs = rng.sample(accounts, min(len(accounts), rng.choice((1, 1, 1, 2, 2, 3))))
    external = []
    for org in orgs:
        if rng.random() < 0.1:  # somebody new there
            person = org.hire(rng)
            world.people[person.address] = person
        external += rng.sample(org.people, min(len(org.people), rng.choice((1, 1, 2, 2, 3, 4))))
    internal = rng.sample(world.departments[department], min(len(world.departments[department]),
                                                             rng.choice((1, 2, 2, 3))))
    return Project(external, internal, day + int(rng.expovariate(1 / 30)) + 3)


def _slip(rng: random.Random, domain: str) -> str:
    suffix = next((s for s in SUFFIX_SLIPS if domain.endswith(s)), domain[domain.rindex(".") :])
    slips = SUFFIX_SLIPS.get(suffix, (suffix[:-1],))
    name = domain[: -len(suffix)]
    kind = rng.random()
    if kind < 0.25:
        return name + rng.choice(slips)
    if kind < 0.35 and name.startswith("mail."):
        return "mail" + name[5:] + suffix
    i = rng.randrange(1, len(name) - 1)
    if name[i] == "." or name[i + 1] == ".":
        return name + rng.choice(slips)
    if kind < 0.55:
        typed = name[:i] + name[i + 1 :]
    elif kind < 0.7:
        typed = name[:i] + name[i] + name[i:]
    elif kind < 0.85:
        typed = name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    else:
        typed = name[:i] + rng.choice(KEYS.get(name[i], string.ascii_lowercase)) + name[i + 1 :]
    return typed + suffix if typed != name else name + rng.choice(slips)


def _autocomplete(world: World, sender: str, meant: str) -> str | None:
    """The entry next to the one meant among the addresses the sender wrote to (as a mail program offers them) that
    match its first letters (the person's first or last name, or the address), most written to first."""
    rng = world.rng
    person = world.people.get(meant)
    typed = (person.first if person and rng.random() < 0.7 else meant)[: rng.choice((1, 2, 2, 3))]
    book = world.sent.get(sender, {})

    def matches(address: str) -> bool:
        who = world.people.get(address)
        return address.startswith(typed) or (who is not None and (who.first.startswith(typed)
                                                                   or who.last.startswith(typed)))

    shown = sorted((c for c in book if matches(c)), key=lambda c: -book[c])[:8]
    if meant not in shown or len(shown) < 2:
        return None
    i = shown.index(meant)
    other = shown[i + 1] if i + 1 < len(shown) and (i == 0 or rng.random() < 0.7) else shown[i - 1]
    return None if other.endswith("@" + OWN) else other


def _namesake(world: World, meant: str) -> str | None:
    rng = world.rng
    person = world.people.get(meant)
    if person is None:
        return None
    domain = meant.rsplit("@", 1)[1]
    org = next((o for o in world.organisations if o.domain == domain), None)
    if org is not None and rng.random() < 0.6:
        same = [p.address for p in org.people if p.first == person.first and p.address != meant]
        if same:
            return rng.choice(same)
        return org.hire(rng, person.first).address if org.style != "first" else None  # one who joined since
    others = [a for a, p in world.people.items() if p.first == person.first and p.last == person.last
              and a != meant and not a.endswith("@" + OWN)]
    return rng.choice(others) if others else None


def _leak(world: World, sender: str, recipients: list[str]) -> tuple[list[str], str, str] | None:
    rng = world.rng
    external = [r for r in recipients if not r.endswith("@" + OWN) and r.rsplit("@", 1)[1] not in PROVIDERS]
    kind = rng.choice(("domain-slip", "autocomplete", "namesake", "personal"))
    if kind == "personal":
        colleagues = [r for r in recipients if r.endswith("@" + OWN)]
        whose = sender if not colleagues or rng.random() < 0.6 else rng.choice(colleagues)
        leak = world.private[whose]
        if leak in recipients:
            return None
        if whose in recipients and rng.random() < 0.5:
            return [leak if r == whose else r for r in recipients], leak, kind
        return [*recipients, leak], leak, kind
    if not external:
        return None
    meant = rng.choice(external)
    if kind == "domain-slip":
        leak = f"{meant.rsplit('@', 1)[0]}@{_slip(rng, meant.rsplit('@', 1)[1])}"
    elif kind == "autocomplete":
        leak = _autocomplete(world, sender, meant)
    else:
        leak = _namesake(world, meant)
    if leak is None or leak in recipients:
        return None
    return [leak if r == meant else r for r in recipients], leak, kind


def _recipients(world: World, department: int, sender: Person, day: int) -> list[str]:
    rng = world.rng
    projects = world.projects[department]
    choice = rng.random()
    if choice < 0.5:
        live = [p for p in projects if p.ends > day]
        if not live or rng.random() < 0.04:
            live = [_project(world, department, day)]
            projects.append(live[0])
        project = rng.choices(live, [1.0 / (i + 1) for i in range(len(live))])[0]
        people = [p.address for p in project.external + project.internal if p is not sender]
        chosen = rng.sample(people, min(len(people), rng.choice((1, 1, 2, 2, 3, 4, 6))))
        if not any(not c.endswith("@" + OWN) for c in chosen) and project.external:
            chosen.append(rng.choice(project.external).address)
        return chosen
    book = world.books[sender.address]
    if choice < 0.85:
        contacts = list(book)
        return list(dict.fromkeys(rng.choices(contacts, [book[c] for c in contacts], k=rng.choice((1, 1, 1, 2)))))
    mates = [p.address for p in world.departments[department] if p is not sender]
    return rng.sample(mates, min(len(mates), rng.choice((1, 2, 3))))


def messages(world: World, per_day: int) -> Iterator[dict[str, object]]:
    rng = world.rng
    senders = [(i, p) for i, d in enumerate(world.departments) for p in d]
    activity = [rng.paretovariate(1.5) for _ in senders]
    for day in range(DAYS):
        today = START + dt.timedelta(days=day)
        if today.weekday() >= 5:
            continue
        for _ in range(int(per_day * rng.uniform(0.8, 1.2))):
            department, sender = rng.choices(senders, activity)[0]
            when = today + dt.timedelta(seconds=rng.randrange(10 * 3600))
            recipients = _recipients(world, department, sender, day)
            if not recipients:
                continue
            leak, kind, meant = None, None, recipients
            if rng.random() < (0.015 if when >= CUT else 0.003):
                found = _leak(world, sender.address, recipients)
                if found is not None:
                    recipients, leak, kind = found
            sent = world.sent.setdefault(sender.address, {})
            for recipient in recipients:
                sent[recipient] = sent.get(recipient, 0) + 1
            named = [(m, p.first, p.last) if (p := world.people.get(m)) else (m, None, None) for m in meant]
            yield {"date": when.isoformat(), "sender": sender.address, "recipients": recipients, "leak": leak,
                   "kind": kind, "meant": named}


def main() -> None:
    command_line(__doc__ or "", 200, lambda seed, people, per_day: messages(build(seed, people), per_day))


if __name__ == "__main__":
    main()
