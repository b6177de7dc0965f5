"""Synthetic outbound mail log of "Millbrook Engineering", with injected misdirected recipients.

Usage::

    python bench/synth_mill.py --seed N --out FILE.jsonl [--people N] [--per-day N] [--days N] [--notes]

One JSON object a line, sorted by date: ``date`` (ISO 8601, UTC, "+00:00"), ``sender``, ``recipients``
(To, Cc and Bcc flattened), ``leak`` (the misdirected recipient exactly as written in ``recipients``,
or null), ``kind`` ("domain-slip", "wrong-person", "personal" or null) and, with ``--notes``, ``note``
(the finer sub-kind of a leak, null on clean lines).  The same seed gives the same file.

The model
---------
* The firm: Millbrook Engineering, a mid-size engineering and defence contractor on ``millbrook-eng.com``.
  Staff who joined before the 2015 rebrand keep an alias ``flast@millbrook.co.uk``; some of them still send
  from it and colleagues address them at either domain.  About 200 staff in 16 teams, a few joining
  (with offer and onboarding mail to their personal address before they start) and a few leaving (who
  forward mail to themselves in their last fortnight; HR and payroll write to their personal address
  afterwards).  Some staff habitually send work to their own personal address.
* Senders are always the firm's: staff addresses and shared mailboxes (accounts@, purchasing@,
  recruitment@, info@, bids@).  Inbound mail is not in the log.
* About 360 correspondents outside: a German sister company (``millbrook-eng.de``), a US subsidiary,
  the parent group, suppliers, primes, law/audit/recruitment/IT services, UK and US government and
  military bodies (``mod.gov.uk``, ``army.mil``, ``us.af.mil``, ...), universities, trade bodies with
  mailing lists, and free-mail consultants.  Traffic per organisation follows a Zipf law in a random
  rank; the number of contacts and of internal correspondents shrinks with the rank.  Each
  organisation has its own address style (first.last, flast, firstl, first, first_last, f.last,
  last.first, .civ/.mil suffixes, numbered MoD addresses, Cambridge-style crsids, ...); collisions get a
  middle initial or a number, which is how real namesakes arise.  About 30% of the minor organisations
  first appear some time during the period, so some are first written to after the cut.
* Legitimate look-alikes: ``millbrook-eng.de``, ``millbrook-eng.us``, ``millbrook-group.com``,
  ``mill-brook.com``, ``millbrook-pg.co.uk``, and pairs of real partners one letter or one suffix apart
  (``axiom-aero.com``/``axion-aero.com``, ``vantec.co.uk``/``ventec.co.uk``, ...).
* Messages: ~300 a working day (Mondays busier, Fridays quieter), a few at weekends and bank holidays,
  office hours in UK local time.  About 40% are replies in open threads (reply-all mostly; a thread
  grows when someone adds a colleague or another contact).  New messages go to teammates,
  collaborators in other teams, team and site lists, external contacts (mostly the sender's usual
  ones, sometimes a new person at a known organisation), multi-organisation programme groups,
  supplier role addresses (accounts@, sales@), new candidates and enquirers at free-mail addresses.
  A contact's address is sometimes written with capitals (``John.Smith123@mod.gov.uk``) and sometimes
  not.  A social group of colleagues uses some members' personal addresses.

Leaks
-----
Misdirection happens when an address is typed or picked, so leaks are only placed on new messages
(or on the recipients a reply adds), about 1.5% of messages after 2026-05-01 and 0.1% before, in
roughly equal thirds (each leak takes the kind furthest behind; when a message cannot carry it, the
leak waits for a later message):

* domain-slip: the domain of a typed recipient, external or the firm's own, mistyped as a hurried
  typist would (dropped, doubled or transposed letter, adjacent key, suffix slip such as .com->.co,
  .mil->.ml, .co.uk->.co.uk.com, missing dot or hyphen, extra hyphen, a blend of the firm's two
  domains).  About one slip in five is of the firm's own domains, since colleagues are mostly picked
  from the directory.  Notes: the mechanism, prefixed "own-" when the firm's domain was slipped.  A slip never
  lands on a domain that is a real correspondent in the model.
* wrong-person: another person at the intended recipient's domain: "same-first-name", "same-surname",
  "same-full-name" (the numbered or middle-initial namesake), "autocomplete-neighbour" (the entry next
  to the intended one in the sender's own autocomplete list after one to three letters were typed;
  the list holds everyone the sender has written to, matched on first name, surname or address and
  ranked by use, so the wrong entry is always someone the sender has written to) and
  "directory-neighbour" (the next entry by "Surname, First" in the partner's directory, mostly a
  stranger).  Namesakes are picked from the sender's own contacts a third of the time when there are any.
* personal: a colleague's private address instead of ("personal-instead") or beside
  ("personal-beside") their work address; an address the sender has used before is five times as
  likely to be picked, since autocomplete is what offers it.  Private addresses are built the way
  people choose them (first.last, firstlast1984, nickname+surname, f.last, hobby handles, ...) at
  the providers of their country.

Assumptions: a leaked message is otherwise normal; the wrong recipient does not reply and is not
added to the sender's autocomplete list; no thread grows out of a leaked message.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import sys
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

FIRM = "millbrook-eng.com"
LEGACY = "millbrook.co.uk"
START = dt.date(2026, 1, 5)
CUT = dt.date(2026, 5, 1)
BST_FROM = dt.date(2026, 3, 29)
BANK_HOLIDAYS = frozenset({dt.date(2026, 4, 3), dt.date(2026, 4, 6), dt.date(2026, 5, 4), dt.date(2026, 5, 25)})
LEAK_RATE_JUDGED = 0.015
LEAK_RATE_TRAIN = 0.001
KINDS = ("domain-slip", "wrong-person", "personal")

# --------------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------------

_UK_FIRST = (
    "David James John Michael Paul Andrew Mark Richard Peter Robert Stephen Christopher Daniel Thomas "
    "Matthew Simon Ian Steven William Alexander Jonathan Benjamin Samuel Nicholas Martin Gary Neil Adam "
    "Luke Oliver Jack Harry Alan Graham Kevin Lee Jason Craig Stuart Gareth Philip Anthony Colin Ryan "
    "Liam Edward Joseph Patrick Callum Jamie Rhys Owen Sarah Emma Claire Laura Rachel Helen Nicola "
    "Rebecca Louise Catherine Jennifer Elizabeth Amy Jessica Hannah Charlotte Sophie Emily Lucy Katie "
    "Victoria Joanne Michelle Lisa Karen Susan Julie Fiona Alison Jane Gemma Kirsty Natalie Hayley Zoe "
    "Megan Anna Eleanor Grace Alice Olivia Amelia Chloe Samantha Kate Ruth Deborah Angela Caroline"
)
_UK_LAST = (
    "Smith Jones Williams Taylor Brown Davies Evans Wilson Thomas Johnson Roberts Robinson Thompson Wright "
    "Walker White Edwards Hughes Green Hall Lewis Harris Clarke Patel Jackson Wood Turner Martin Cooper "
    "Hill Ward Morris Moore Clark Lee King Baker Harrison Morgan Allen James Scott Phillips Watson Davis "
    "Parker Price Bennett Young Griffiths Mitchell Kelly Cook Carter Richardson Bailey Collins Bell Shaw "
    "Murphy Miller Cox Richards Khan Marshall Anderson Simpson Ellis Adams Wilkinson Foster Chapman "
    "Powell Webb Rogers Gray Mason Hunt Campbell Matthews Owen Palmer Holmes Mills Barnes Knight Lloyd "
    "Butler Russell Barker Fisher Stevens Jenkins Murray Dixon Harvey Graham Pearson Fletcher Walsh "
    "Gibson Howard Andrews Stewart Elliott Reynolds Saunders Payne Fox Ford Pearce Day Brooks West "
    "Lawrence Cole Atkinson Bradley Spencer Gill Dawson Ball Burton O'Brien Watts Rose Booth Perry Ryan "
    "Grant Wells Armstrong Francis Rees Hayes Hart Hudson Newman Barrett Webster Hunter Gregory Carr "
    "Lowe Page Marsh Riley Dunn Woods Parsons Berry Stone Reid Holland Hawkins Harding Porter Robertson "
    "Newton Reed Kennedy Williamson Bird Gardner Dean Lane Cooke Bates Henderson Parry Burgess Bishop "
    "Walton Burns Nicholson Shepherd Ross Cross Long Freeman Warren Nicholls Hamilton Byrne Sutton "
    "McDonald Yates Hodgson Robson Curtis Hopkins O'Connor Harper Coleman Watkins Moss McCarthy Chambers "
    "O'Neill Griffin Sharp Hardy Wheeler Potter Osborne Johnston Gordon Doyle Wallace Jordan Rowe Burke "
    "Pritchard Gilbert Willis Higgins Read Miles Stevenson Hammond Arnold Buckley Walters Hewitt Barber "
    "Nelson Slater Austin Sullivan Whitehead Mann Frost Lambert Blake Lynch Goodwin Barton Woodward"
)
_US_FIRST = (
    "James Robert John Michael David William Richard Joseph Thomas Christopher Charles Daniel Matthew "
    "Anthony Mark Steven Paul Andrew Joshua Kevin Brian Jason Ryan Eric Jeffrey Scott Timothy Jose Mary "
    "Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Ashley Michelle "
    "Amanda Melissa Stephanie Rebecca Laura Heather Amy"
)
_US_LAST = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker "
    "Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper "
    "Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood James "
    "Bennett Gray Mendoza Ruiz Hughes Price Alvarez Castillo Sanders Patel Myers Long Ross Foster"
)
_DE_FIRST = (
    "Thomas Michael Andreas Stefan Frank Markus Christian Peter Wolfgang Klaus Jürgen Uwe Martin "
    "Alexander Sebastian Tobias Jan Matthias Daniel Florian Jens Dirk Bernd Lukas Felix Maximilian "
    "Sabine Petra Claudia Susanne Andrea Nicole Stefanie Katrin Julia Anna Laura Lena Sarah Kathrin "
    "Monika Birgit Anja Christina Jana"
)
_DE_LAST = (
    "Müller Schmidt Schneider Fischer Weber Meyer Wagner Becker Schulz Hoffmann Schäfer Koch Bauer "
    "Richter Klein Wolf Schröder Neumann Schwarz Zimmermann Braun Krüger Hofmann Hartmann Lange Schmitt "
    "Werner Schmitz Krause Meier Lehmann Schmid Schulze Maier Köhler Herrmann König Walter Mayer Huber "
    "Kaiser Fuchs Peters Lang Scholz Möller Weiß Jung Hahn Schubert Vogel Friedrich Keller Günther "
    "Frank Berger Winkler Roth Beck Lorenz Baumann Franke Albrecht Schuster Simon Ludwig Böhm Winter"
)
_FR_FIRST = (
    "Jean Pierre Michel Philippe Alain Nicolas Christophe Laurent Frédéric Olivier Julien Thomas "
    "Sébastien Stéphane David Éric Antoine Guillaume Marie Nathalie Isabelle Sylvie Catherine Sophie "
    "Christine Valérie Sandrine Céline Julie Camille Aurélie Émilie"
)
_FR_LAST = (
    "Martin Bernard Dubois Thomas Robert Richard Petit Durand Leroy Moreau Simon Laurent Lefebvre Michel "
    "Garcia David Bertrand Roux Vincent Fournier Morel Girard André Lefèvre Mercier Dupont Lambert Bonnet "
    "François Legrand Garnier Faure Rousseau Blanc Guérin Henry Roussel Perrin Morin Mathieu Clément"
)
_NORDIC_FIRST = (
    "Lars Anders Johan Erik Per Karl Nils Mikael Jan Henrik Ole Magnus Fredrik Jonas Anna Maria Eva "
    "Karin Kristina Lena Sara Emma Ingrid Sofia Hanna Kari Linda"
)
_NORDIC_LAST = (
    "Andersson Johansson Karlsson Nilsson Eriksson Larsson Olsson Persson Svensson Gustafsson Pettersson "
    "Jonsson Hansen Johansen Olsen Larsen Andersen Pedersen Nilsen Kristiansen Jensen Berg Lindberg "
    "Lindqvist Nyström Holm Dahl Lund Haugen Bakken"
)
_NL_FIRST = "Jan Peter Kees Pieter Hans Willem Johan Henk Bas Thijs Daan Sander Maarten Ruud Anne Marieke Sanne Lotte"
_NL_LAST = (
    "de Jong,Jansen,de Vries,van den Berg,van Dijk,Bakker,Janssen,Visser,Smit,Meijer,de Boer,Mulder,"
    "de Groot,Bos,Vos,Peters,Hendriks,van Leeuwen,Dekker,Brouwer,de Wit,Dijkstra,Smits,de Graaf"
)
_IT_FIRST = "Marco Luca Giuseppe Alessandro Andrea Francesco Matteo Paolo Giulia Francesca Chiara Sara Elena Valentina"
_IT_LAST = "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci Marino Greco Bruno Gallo Conti Costa Giordano"
_IN_FIRST = "Raj Amit Sanjay Vikram Arjun Rahul Priya Anjali Deepa Neha Pooja Sunita Ravi Anil Kavita"
_IN_LAST = "Patel Sharma Singh Kumar Gupta Shah Mehta Iyer Nair Reddy Joshi Desai Chopra Rao"
_PL_FIRST = "Tomasz Piotr Marek Krzysztof Pawel Katarzyna Agnieszka Magdalena Anna Monika"
_PL_LAST = "Nowak Kowalski Wiśniewski Wójcik Kamiński Lewandowski Zieliński Szymański Woźniak Dąbrowski"
_CN_FIRST = "Wei Jing Hui Li Ming Yan Xin Lei Jun Fang"
_CN_LAST = "Wang Li Zhang Liu Chen Yang Huang Zhao Wu Zhou"
_NG_FIRST = "Chinedu Ngozi Oluwaseun Adebayo Kwame Chiamaka Emeka Funmilayo Tunde Ama"
_NG_LAST = "Okafor Adeyemi Okonkwo Mensah Eze Balogun Nwosu Ogunleye Boateng Adeleke"

NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "uk": (tuple(_UK_FIRST.split()), tuple(_UK_LAST.split())),
    "us": (tuple(_US_FIRST.split()), tuple(_US_LAST.split())),
    "de": (tuple(_DE_FIRST.split()), tuple(_DE_LAST.split())),
    "fr": (tuple(_FR_FIRST.split()), tuple(_FR_LAST.split())),
    "nordic": (tuple(_NORDIC_FIRST.split()), tuple(_NORDIC_LAST.split())),
    "nl": (tuple(_NL_FIRST.split()), tuple(_NL_LAST.split(","))),
    "it": (tuple(_IT_FIRST.split()), tuple(_IT_LAST.split())),
    "in": (tuple(_IN_FIRST.split()), tuple(_IN_LAST.split())),
    "pl": (tuple(_PL_FIRST.split()), tuple(_PL_LAST.split())),
    "cn": (tuple(_CN_FIRST.split()), tuple(_CN_LAST.split())),
    "ng": (tuple(_NG_FIRST.split()), tuple(_NG_LAST.split())),
}
STAFF_LOCALES = (("uk", 80.0), ("in", 5.0), ("pl", 3.0), ("de", 3.0), ("us", 3.0), ("cn", 2.0), ("ng", 2.0),
                 ("it", 1.0), ("fr", 1.0))
NICKNAMES = {
    "david": ("dave", "davey"), "james": ("jim", "jamie"), "robert": ("rob", "bob"), "michael": ("mike", "mick"),
    "christopher": ("chris",), "stephen": ("steve",), "steven": ("steve",), "thomas": ("tom", "tommy"),
    "william": ("will", "bill"), "jonathan": ("jon", "jonny"), "alexander": ("alex",), "daniel": ("dan", "danny"),
    "matthew": ("matt",), "andrew": ("andy", "drew"), "richard": ("rich", "rick"), "samuel": ("sam",),
    "benjamin": ("ben",), "nicholas": ("nick",), "jennifer": ("jen", "jenny"), "elizabeth": ("liz", "beth"),
    "rebecca": ("becky", "bex"), "victoria": ("vicky", "tori"), "katherine": ("kate",), "catherine": ("cat", "cathy"),
    "samantha": ("sam", "sammy"), "joanne": ("jo",), "deborah": ("debs", "debbie"), "philip": ("phil",),
    "anthony": ("tony", "ant"), "edward": ("ed", "eddie"), "joseph": ("joe",), "patrick": ("paddy", "pat"),
    "charlotte": ("charlie",), "nicola": ("nicky",), "gareth": ("gaz",), "peter": ("pete",), "simon": ("si",),
}
HOBBIES = ("cycling", "trailrunner", "spitfire", "rugbyfan", "fellwalker", "saints", "sailor", "birder",
           "gooner", "kayak", "climber", "piper", "bakingqueen", "chessnut", "triathlete", "landrover", "vinyl")
FREEMAIL = {
    "uk": (("gmail.com", 40.0), ("hotmail.co.uk", 10.0), ("outlook.com", 10.0), ("icloud.com", 8.0),
           ("yahoo.co.uk", 7.0), ("btinternet.com", 6.0), ("live.co.uk", 4.0), ("sky.com", 3.0),
           ("virginmedia.com", 3.0), ("googlemail.com", 2.0), ("aol.com", 2.0), ("protonmail.com", 2.0)),
    "de": (("web.de", 30.0), ("gmx.de", 25.0), ("gmail.com", 25.0), ("t-online.de", 12.0), ("gmx.net", 8.0)),
    "us": (("gmail.com", 55.0), ("yahoo.com", 15.0), ("hotmail.com", 10.0), ("icloud.com", 10.0),
           ("comcast.net", 5.0), ("outlook.com", 5.0)),
    "fr": (("gmail.com", 40.0), ("orange.fr", 25.0), ("free.fr", 15.0), ("laposte.net", 10.0), ("yahoo.fr", 10.0)),
}
FREEMAIL_DOMAINS = frozenset(d for table in FREEMAIL.values() for d, _ in table)

# --------------------------------------------------------------------------------------------------
# The firm
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Team:
    key: str
    name: str
    share: float
    list_local: str


TEAMS = (
    Team("syseng", "Systems Engineering", 0.14, "systems-eng"), Team("avionics", "Avionics", 0.09, "avionics"),
    Team("mech", "Mechanical & Structures", 0.09, "structures"), Team("software", "Software", 0.12, "software"),
    Team("test", "Test & Evaluation", 0.08, "test-eval"), Team("pm", "Programme Management", 0.08, "pmo"),
    Team("bids", "Bids & Capture", 0.04, "capture"), Team("contracts", "Contracts & Commercial", 0.05, "commercial"),
    Team("procurement", "Procurement", 0.05, "supply-chain"), Team("quality", "Quality", 0.04, "quality"),
    Team("finance", "Finance", 0.05, "finance-team"), Team("hr", "HR", 0.03, "people-team"),
    Team("it", "IT", 0.04, "it-team"), Team("security", "Security & Export Control", 0.02, "security-team"),
    Team("rnt", "Research & Technology", 0.05, "rnt"), Team("facilities", "Facilities", 0.03, "facilities"),
)
TEAM_KEYS = tuple(t.key for t in TEAMS)
ENGINEERING = ("syseng", "avionics", "mech", "software", "test", "rnt")
TEAMS_FOR_KIND: dict[str, tuple[str, ...]] = {
    "sister": (*ENGINEERING, "pm", "finance", "procurement", "quality", "hr", "it"),
    "parent": ("finance", "hr", "pm", "contracts", "it"),
    "supplier": (*ENGINEERING, "procurement", "quality"),
    "prime": ("syseng", "software", "avionics", "pm", "bids", "contracts", "test"),
    "gov": ("pm", "bids", "syseng", "contracts", "security", "test"),
    "mil": ("pm", "bids", "syseng", "contracts", "security", "test"),
    "university": ("rnt", "syseng", "software", "hr", "mech"),
    "services": ("finance", "hr", "it", "contracts", "facilities", "security"),
    "association": ("syseng", "rnt", "bids", "pm", "quality"),
    "freemail": (*ENGINEERING, "pm", "bids", "quality"),
}
SITE_LISTS = ("bristol-site", "filton-site", "all-staff", "eng-announce", "social-club")
MAILBOXES = (("accounts", 0.35), ("purchasing", 0.2), ("recruitment", 0.2), ("info", 0.15), ("bids", 0.1))

# --------------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Person:
    pid: int
    first: str
    last: str
    locale: str
    team: str
    start: int
    end: int
    activity: float
    work: Addr | None = None
    legacy: Addr | None = None
    sends_legacy: bool = False
    personal: list[Addr] = field(default_factory=list)
    self_rate: float = 0.0
    self_from: int = 0
    mates: list[Person] = field(default_factory=list)
    collabs: list[Person] = field(default_factory=list)

    def active(self, day: int) -> bool:
        return self.start <= day < self.end


@dataclass(eq=False)
class Org:
    name: str
    domain: str
    kind: str
    locale: str
    style: str
    rank: int = 0
    first_day: int = 0
    last_day: int = 10_000
    staff: list[Addr] = field(default_factory=list)
    contacts: list[Addr] = field(default_factory=list)
    roles: list[Addr] = field(default_factory=list)
    internal: list[Person] = field(default_factory=list)
    prefs: dict[int, list[Addr]] = field(default_factory=dict)

    @property
    def weight(self) -> float:
        return 1.0 / math.pow(self.rank, 1.05)

    def active(self, day: int) -> bool:
        return self.first_day <= day < self.last_day


@dataclass(eq=False)
class Addr:
    """One address: a member of staff, a list, a mailbox, an outside contact or a private address."""

    addr: str
    shown: str
    kind: str  # staff | legacy | list | mailbox | contact | role | personal | leak
    first: str = ""
    last: str = ""
    org: Org | None = None
    owner: Person | None = None


@dataclass
class Thread:
    members: list[Addr]
    senders: list[Person]
    last_day: int
    left: int
    last_sender: Person | None = None


@dataclass
class Programme:
    name: str
    orgs: list[Org]
    groups: dict[int, list[Addr]]
    members: list[Person]
    weight: float


@dataclass
class Draft:
    """A message before rendering: who sends, to whom, and which recipients were typed or picked."""

    sender_key: str
    sender: str
    person: Person | None
    rcpts: list[Addr]
    typed: list[bool]
    new: bool
    thread_p: float = 0.0
    thread_len: float = 3.0
    leak: Addr | None = None
    kind: str | None = None
    note: str | None = None


@dataclass
class Message:
    when: dt.datetime
    sender: str
    recipients: list[str]
    leak: str | None
    kind: str | None
    note: str | None

    def as_json(self, notes: bool) -> str:
        obj: dict[str, object] = {
            "date": self.when.isoformat(),
            "sender": self.sender,
            "recipients": self.recipients,
            "leak": self.leak,
            "kind": self.kind,
        }
        if notes:
            obj["note"] = self.note
        return json.dumps(obj, ensure_ascii=False)


@dataclass
class CacheEntry:
    addr: Addr
    count: int
    last: int


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def pick(rng: random.Random, items: Sequence[T], weights: Sequence[float]) -> T:
    return rng.choices(items, weights=weights, k=1)[0]


def pick_pair(rng: random.Random, table: Sequence[tuple[str, float]]) -> str:
    return pick(rng, [k for k, _ in table], [w for _, w in table])


def zipf_pick(rng: random.Random, items: Sequence[T], exponent: float = 0.9) -> T:
    """Pick from a list ordered by popularity: the i-th item has weight 1/(i+1)^exponent."""
    return pick(rng, items, [1.0 / (i + 1) ** exponent for i in range(len(items))])


def ascii_fold(text: str, german: bool = False) -> str:
    if german:
        for src, dst in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue")):
            text = text.replace(src, dst)
    for src, dst in (("ß", "ss"), ("ł", "l"), ("Ł", "L"), ("ø", "o"), ("æ", "ae")):
        text = text.replace(src, dst)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def token(name: str, german: bool = False) -> str:
    folded = ascii_fold(name, german).lower()
    return "".join(ch for ch in folded if ch.isalnum() or ch == "-")


def capitalised(local: str) -> str:
    """Write a local part the way people write names: John.Smith, J.deVries stays as it is."""
    out: list[str] = []
    upper_next = True
    for ch in local:
        out.append(ch.upper() if upper_next and ch.isalpha() else ch)
        upper_next = ch in "._-"
    return "".join(out)


def name_pick(rng: random.Random, locale: str) -> tuple[str, str]:
    firsts, lasts = NAMES[locale]
    return zipf_pick(rng, firsts, 0.7), zipf_pick(rng, lasts, 0.6)


def local_for(style: str, first: str, last: str, rng: random.Random, german: bool = False) -> str:
    f, lt = token(first, german), token(last, german)
    m = rng.choice("abcdefghjklmnprstw")
    styles: dict[str, Callable[[], str]] = {
        "first.last": lambda: f"{f}.{lt}",
        "flast": lambda: f"{f[0]}{lt}",
        "firstl": lambda: f"{f}{lt[0]}",
        "first": lambda: f,
        "first_last": lambda: f"{f}_{lt}",
        "f.last": lambda: f"{f[0]}.{lt}",
        "last.first": lambda: f"{lt}.{f}",
        "lastf": lambda: f"{lt}{f[0]}",
        "firstlast": lambda: f"{f}{lt}",
        "first.m.last": lambda: f"{f}.{m}.{lt}",
        "mil": lambda: f"{f}.{m}.{lt}.{rng.choice(('civ', 'civ', 'civ', 'mil', 'ctr'))}",
        "af": lambda: f"{f}.{lt}.{rng.randint(1, 9)}",
        "mod": lambda: f"{f}.{lt}{rng.randint(100, 999)}" if rng.random() < 0.55 else f"{f}.{lt}",
        "crsid": lambda: f"{f[0]}{m}{lt[0]}{rng.randint(10, 999)}",
    }
    return styles[style]()


def unique_local(style: str, first: str, last: str, taken: set[str], rng: random.Random, german: bool) -> str:
    """An unused local part: namesakes get a middle initial or a number, as directories do it."""
    local = local_for(style, first, last, rng, german)
    if local not in taken:
        return local
    if style in {"mil", "af", "mod", "crsid"}:
        for _ in range(30):
            local = local_for(style, first, last, rng, german)
            if style == "mil" and local in taken:
                head, _, tail = local.rpartition(".")
                local = f"{head}{rng.randint(2, 30)}.{tail}"
            if local not in taken:
                return local
    if "." in local and rng.random() < 0.5:
        head, _, tail = local.partition(".")
        alt = f"{head}.{rng.choice('abcdefghjklmnprstw')}.{tail}"
        if alt not in taken:
            return alt
    n = 2
    while f"{local}{n}" in taken:
        n += 1
    return f"{local}{n}"


def personal_local(rng: random.Random, first: str, last: str) -> tuple[str, bool]:
    """A private address's local part as people choose them; the flag says whether it shows the name."""
    f, lt = token(first, german=True).replace("-", ""), token(last, german=True).replace("-", "")
    year = rng.choice((rng.randint(60, 99), rng.randint(1962, 2002)))
    nick = rng.choice(NICKNAMES.get(f, (f,)))
    options: list[tuple[Callable[[], str], float, bool]] = [
        (lambda: f"{f}.{lt}", 25, True),
        (lambda: f"{f}{lt}", 12, True),
        (lambda: f"{f}{lt}{year}", 12, True),
        (lambda: f"{f[0]}{lt}", 6, True),
        (lambda: f"{f[0]}.{lt}", 4, True),
        (lambda: f"{f}.{lt}{year}", 6, True),
        (lambda: f"{nick}{lt}", 8, True),
        (lambda: f"{f}_{lt}", 5, True),
        (lambda: f"{lt}.{f}", 3, True),
        (lambda: f"{f}{year}", 5, True),
        (lambda: f"{f}{lt[0]}{rng.randint(1, 99)}", 4, True),
        (lambda: f"{rng.choice(HOBBIES)}{rng.choice(('', '_', ''))}{nick}", 4, False),
        (lambda: f"{rng.choice(HOBBIES)}{year}", 6, False),
    ]
    maker, _, namelike = pick(rng, options, [w for _, w, _ in options])
    return maker(), namelike


def freemail_domain(rng: random.Random, locale: str) -> str:
    return pick_pair(rng, FREEMAIL.get(locale, FREEMAIL["uk"]))


def new_personal(rng: random.Random, taken: set[str], first: str, last: str, locale: str,
                 owner: Person | None) -> Addr:
    """A fresh private address for a person; one in twenty is written with capitals."""
    while True:
        local, _ = personal_local(rng, first, last)
        addr = f"{local}@{freemail_domain(rng, locale if locale in FREEMAIL else 'uk')}"
        if addr not in taken:
            taken.add(addr)
            shown = capitalised(local) + addr[len(local):] if rng.random() < 0.05 else addr
            return Addr(addr, shown, "personal", first, last, owner=owner)


def prefer(rng: random.Random, org: Org, p: Person) -> None:
    """Give an internal correspondent their usual contacts at an organisation (popular ones more often)."""
    k = min(len(org.contacts), rng.choice((1, 1, 2, 2, 3, 4)))
    chosen: list[Addr] = []
    while len(chosen) < k:
        c = zipf_pick(rng, org.contacts, 0.8)
        if c not in chosen:
            chosen.append(c)
    org.prefs[p.pid] = chosen


# --------------------------------------------------------------------------------------------------
# Domain slips
# --------------------------------------------------------------------------------------------------

PUBLIC_SUFFIX2 = frozenset({"co.uk", "ac.uk", "gov.uk", "org.uk", "mod.uk", "com.au", "gov.au", "gc.ca", "gouv.fr"})
TLD_SLIPS: dict[str, tuple[str, ...]] = {
    "com": ("co", "cm", "om", "con", "comm", "cmo", "vom", "xom", "co.uk.com"),
    "co.uk": ("co.uk.com", "uk.co", "co.k", "couk", "co.uj", "cp.uk", "co", "com.uk"),
    "org": ("or", "ogr", "orh", "org.com"),
    "org.uk": ("org.k", "or.uk", "org.uk.com", "org.co.uk"),
    "mil": ("ml", "mill", "mil.com", "mik"),
    "gov": ("go", "gv", "gov.com", "giv"),
    "gov.uk": ("gov.uk.com", "gv.uk", "gov.co.uk", "go.uk", "giv.uk"),
    "ac.uk": ("ac.uk.com", "ac.k", "ac.com", "ca.uk"),
    "mod.uk": ("mod.uk.com", "mod.co.uk", "mo.uk"),
    "edu": ("ed", "eud", "edu.com", "edi"),
    "de": ("dr", "de.com", "ed", "d"),
    "net": ("ner", "nt", "met", "net.com"),
    "se": ("sw", "se.com", "es"),
    "nl": ("nl.com", "ml", "n"),
    "fr": ("fr.com", "ft", "rf"),
    "it": ("ir", "it.com"),
    "us": ("su", "us.com"),
    "int": ("in", "itn"),
    "gc.ca": ("gc.com", "ca.gc"),
    "com.au": ("com.au.com", "cm.au", "co.au"),
}
_KEY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _key_neighbours() -> dict[str, str]:
    pos: dict[str, tuple[float, float]] = {}
    for row, keys in enumerate(_KEY_ROWS):
        for col, ch in enumerate(keys):
            pos[ch] = (col + row * 0.4, float(row))
    out: dict[str, str] = {}
    for ch, (x, y) in pos.items():
        out[ch] = "".join(o for o, (ox, oy) in pos.items() if o != ch and math.hypot(ox - x, oy - y) < 1.3)
    return out


KEY_NEIGHBOURS = _key_neighbours()
SLIP_WEIGHTS = (("dropped-letter", 20.0), ("transposition", 16.0), ("adjacent-key", 14.0),
                ("doubled-letter", 10.0), ("tld-slip", 20.0), ("missing-dot", 6.0), ("extra-hyphen", 4.0),
                ("missing-hyphen", 7.0), ("hyphen-dot", 3.0))
OWN_BLENDS = {FIRM: ("millbrook-eng.co.uk", "millbrook.com", "millbrookeng.co.uk"),
              LEGACY: ("millbrook.com", "millbrook-eng.co.uk", "millbrook.uk")}


def split_domain(domain: str) -> tuple[list[str], str]:
    labels = domain.split(".")
    if len(labels) >= 3 and ".".join(labels[-2:]) in PUBLIC_SUFFIX2:
        return labels[:-2], ".".join(labels[-2:])
    return labels[:-1], labels[-1]


def valid_domain(domain: str) -> bool:
    labels = domain.split(".")
    return len(labels) >= 2 and all(
        lab and not lab.startswith("-") and not lab.endswith("-") and "--" not in lab
        and all(c.isalnum() or c == "-" for c in lab) for lab in labels
    )


def _edit_label(label: str, mech: str, rng: random.Random) -> str | None:
    n = len(label)
    if n < 3:
        return None
    if mech == "dropped-letter":
        spots = list(range(1, n))
        i = pick(rng, spots, [4.0 if label[i] == label[i - 1] else 1.0 for i in spots])
        return label[:i] + label[i + 1:]
    if mech == "doubled-letter":
        i = rng.randrange(1, n)
        return label[: i + 1] + label[i] + label[i + 1:] if label[i].isalpha() else None
    if mech == "transposition":
        spots = [i for i in range(n - 1) if label[i] != label[i + 1]]
        if not spots:
            return None
        i = pick(rng, spots, [0.3 if i == 0 else 1.0 for i in spots])
        return label[:i] + label[i + 1] + label[i] + label[i + 2:]
    if mech == "adjacent-key":
        i = rng.randrange(1, n)
        near = KEY_NEIGHBOURS.get(label[i], "")
        return label[:i] + rng.choice(near) + label[i + 1:] if near else None
    if mech == "extra-hyphen":
        spots = [i for i in range(2, n - 1) if label[i - 1] != "-" and label[i] != "-"]
        if n < 6 or not spots:
            return None
        i = rng.choice(spots)
        return label[:i] + "-" + label[i:]
    if mech == "missing-hyphen":
        return label.replace("-", "", 1) if "-" in label else None
    if mech == "hyphen-dot":
        return label.replace("-", ".", 1) if "-" in label else None
    return None


def slip_domain(domain: str, mech: str, rng: random.Random) -> str | None:
    labels, suffix = split_domain(domain)
    if not labels:
        return None
    if mech == "tld-slip":
        options = TLD_SLIPS.get(suffix)
        return ".".join([*labels, rng.choice(options)]) if options else None
    if mech == "missing-dot":
        parts = [*labels, *suffix.split(".")]
        if len(parts) < 3:
            return None
        i = rng.randrange(0, len(parts) - 2)
        return ".".join([*parts[:i], parts[i] + parts[i + 1], *parts[i + 2:]])
    idx = max(range(len(labels)), key=lambda i: (len(labels[i]), i))
    edited = _edit_label(labels[idx], mech, rng)
    if edited is None:
        return None
    return ".".join([*labels[:idx], edited, *labels[idx + 1:], suffix])


# --------------------------------------------------------------------------------------------------
# Building the world
# --------------------------------------------------------------------------------------------------

PREFIXES = words(
    "Kestrel Harrier Osprey Falcon Merlin Vanguard Apex Orion Titan Sentinel Northgate Westbury Ashford "
    "Calder Pennine Severn Thames Tamar Mercia Wessex Cobalt Quartz Halcyon Nimbus Stratos Vector Helix "
    "Zenith Polaris Aurora Meridian Summit Keystone Ironbridge Redwood Blackwater Greenfield Brightwater "
    "Fenwick Hadley Marston Thornbury Wickham Lydney Corsham Tetbury Kingsway Castleton Radcliffe Atlas "
    "Argus Lyra Vega Altair Cygnus Draco Pegasus Hydra Norland Solent Clyde Forth Tay Wye Avalon Beacon "
    "Carrick Dunmore Elstree Foxley Glenmore Hawksmoor Invicta Jura Kelvin Lomond Malvern Nevis Oakham "
    "Portland Quantock Ribble Stanmore Trent Ullswater Wolds Yarrow Anvil Bastion Cirrus Dynamo Ember "
    "Flux Gyro Halo Ion Jet Kinetic Lumen Magnet Nova Optic Pulse Radiant Sigma Tensor Umbra Vertex Xenon"
)
SUFFIXES = (
    ("Aerospace", ("aero", "aerospace")), ("Systems", ("sys", "systems")), ("Dynamics", ("dynamics", "dyn")),
    ("Precision", ("precision",)), ("Composites", ("composites",)), ("Electronics", ("electronics", "elec")),
    ("Engineering", ("eng", "engineering")), ("Technologies", ("tech", "technologies")), ("Controls", ("controls",)),
    ("Instruments", ("instruments",)), ("Defence", ("defence", "defense")), ("Materials", ("materials",)),
    ("Fabrications", ("fab", "fabrications")), ("Machining", ("machining",)), ("Coatings", ("coatings",)),
    ("Software", ("software", "soft")), ("Sensors", ("sensors",)), ("Optics", ("optics",)), ("Power", ("power",)),
    ("Hydraulics", ("hydraulics",)), ("Castings", ("castings",)), ("Microwave", ("microwave", "rf")),
    ("Test", ("test",)), ("Avionics", ("avionics",)), ("Logistics", ("logistics",)),
)
LOCALE_TLDS = {
    "uk": (("co.uk", 55.0), ("com", 40.0), ("uk", 5.0)), "us": (("com", 90.0), ("us", 4.0), ("net", 6.0)),
    "de": (("de", 75.0), ("com", 25.0)), "fr": (("fr", 70.0), ("com", 30.0)),
    "nordic": (("se", 50.0), ("no", 30.0), ("dk", 10.0), ("com", 10.0)), "nl": (("nl", 75.0), ("com", 25.0)),
    "it": (("it", 75.0), ("com", 25.0)),
}
SUPPLIER_LOCALES = (("uk", 55.0), ("us", 15.0), ("de", 10.0), ("fr", 6.0), ("nordic", 5.0), ("nl", 5.0),
                    ("it", 4.0))
COMMERCIAL_STYLES = (("first.last", 40.0), ("flast", 14.0), ("firstl", 5.0), ("first", 6.0), ("first_last", 4.0),
                     ("f.last", 10.0), ("last.first", 4.0), ("lastf", 3.0), ("firstlast", 5.0))
ROLE_LOCALS = ("sales", "orders", "accounts", "invoices", "info", "support", "contracts", "quotes", "ap")

# name, domain, kind, locale, style, rank hint (0 = random), first day (None = usual rule)
FIXED_ORGS: tuple[tuple[str, str, str, str, str, int], ...] = (
    ("Millbrook Engineering GmbH", "millbrook-eng.de", "sister", "de", "first.last", 1),
    ("Ministry of Defence", "mod.gov.uk", "gov", "uk", "mod", 2),
    ("Dstl", "dstl.gov.uk", "gov", "uk", "flast", 5),
    ("Millbrook Engineering Inc", "millbrook-eng.us", "sister", "us", "first.last", 7),
    ("US Army DEVCOM", "army.mil", "mil", "us", "mil", 11),
    ("Defense Information Systems", "mail.mil", "mil", "us", "mil", 16),
    ("US Air Force", "us.af.mil", "mil", "us", "af", 22),
    ("US Navy", "us.navy.mil", "mil", "us", "mil", 30),
    ("DARPA", "darpa.mil", "mil", "us", "first.last", 60),
    ("Defense Logistics Agency", "dla.mil", "mil", "us", "first.last", 95),
    ("NASA", "nasa.gov", "gov", "us", "first.m.last", 80),
    ("US State Department", "state.gov", "gov", "us", "lastf", 140),
    ("MoD (legacy)", "mod.uk", "gov", "uk", "first.last", 120),
    ("Defence Equipment & Support", "des.mod.uk", "gov", "uk", "first.last", 45),
    ("UK Hydrographic Office", "ukho.gov.uk", "gov", "uk", "first.last", 150),
    ("Export Control Joint Unit", "trade.gov.uk", "gov", "uk", "first.last", 70),
    ("HMRC", "hmrc.gov.uk", "gov", "uk", "first.last", 190),
    ("NCSC", "ncsc.gov.uk", "gov", "uk", "first.last", 170),
    ("Civil Aviation Authority", "caa.co.uk", "gov", "uk", "first.last", 110),
    ("Australian Defence", "defence.gov.au", "gov", "uk", "first.last", 130),
    ("Canadian Forces", "forces.gc.ca", "gov", "us", "first.last", 160),
    ("NATO NCIA", "ncia.nato.int", "gov", "fr", "first.last", 90),
    ("FMV", "fmv.se", "gov", "nordic", "first.last", 180),
    ("University of Cambridge", "cam.ac.uk", "university", "uk", "crsid", 25),
    ("University of Bristol", "bristol.ac.uk", "university", "uk", "first.last", 14),
    ("Cranfield University", "cranfield.ac.uk", "university", "uk", "f.last", 35),
    ("University of Sheffield", "sheffield.ac.uk", "university", "uk", "f.last", 75),
    ("Imperial College", "imperial.ac.uk", "university", "uk", "f.last", 100),
    ("University of Strathclyde", "strath.ac.uk", "university", "uk", "first.last", 125),
    ("University of Oxford", "eng.ox.ac.uk", "university", "uk", "first.last", 145),
    ("MIT", "mit.edu", "university", "us", "flast", 175),
    ("Georgia Tech", "gatech.edu", "university", "us", "first.last", 200),
    ("TU Munich", "tum.de", "university", "de", "first.last", 155),
    ("TU Delft", "tudelft.nl", "university", "nl", "f.last", 135),
    ("Millbrook Group plc", "millbrook-group.com", "parent", "uk", "first.last", 40),
    ("Mill-Brook Fasteners", "mill-brook.com", "supplier", "uk", "flast", 85),
    ("Millbrook Proving Ground", "millbrook-pg.co.uk", "supplier", "uk", "first.last", 165),
    ("Axiom Aerostructures", "axiom-aero.com", "supplier", "uk", "first.last", 20),
    ("Axion Aero", "axion-aero.com", "supplier", "us", "flast", 105),
    ("Vantec Coatings", "vantec.co.uk", "supplier", "uk", "f.last", 50),
    ("Ventec Electronics", "ventec.co.uk", "supplier", "uk", "first.last", 65),
    ("Norcom AB", "norcom.se", "supplier", "nordic", "first.last", 115),
    ("Norcomm Systems", "norcomm.se", "supplier", "nordic", "first.last", 185),
    ("Calder Precision Ltd", "calder-precision.co.uk", "supplier", "uk", "first.last", 28),
    ("Calder Precision Inc", "calder-precision.com", "supplier", "us", "first.last", 88),
    ("Ortec Sensors", "ortec-sensors.com", "supplier", "uk", "flast", 55),
    ("Ortek Sensors GmbH", "ortek-sensors.de", "supplier", "de", "first.last", 210),
    ("ADS Group", "adsgroup.org.uk", "association", "uk", "first.last", 78),
    ("INCOSE lists", "lists.incose.org", "association", "us", "first.last", 98),
    ("Royal Aeronautical Society", "aerosociety.com", "association", "uk", "first.last", 220),
    ("Kestrel Prime Systems", "kestrel-prime.com", "prime", "uk", "first.last", 3),
    ("Halden Defence", "haldendefence.com", "prime", "uk", "first.last", 4),
    ("Trident Mission Systems", "trident-ms.com", "prime", "us", "first.last", 6),
    ("Saxon Avionik", "saxon-avionik.de", "prime", "de", "first.last", 9),
    ("Thalassa Naval", "thalassa-naval.fr", "prime", "fr", "first.last", 12),
)


@dataclass
class World:
    people: list[Person]
    orgs: list[Org]
    programmes: list[Programme]
    mailboxes: dict[str, Addr]
    team_lists: dict[str, Addr]
    site_lists: dict[str, Addr]
    legit_domains: set[str]
    taken_personal: set[str]


class Builder:
    """Builds the organisation, its correspondents and their address books."""

    def __init__(self, rng: random.Random, n_people: int, days: int) -> None:
        self.rng = rng
        self.n_people = n_people
        self.days = days
        self.taken_work: set[str] = set()
        self.taken_legacy: set[str] = set()
        self.taken_personal: set[str] = set()
        self.domains: set[str] = {FIRM, LEGACY, *FREEMAIL_DOMAINS}

    # -- staff ---------------------------------------------------------------------------------
    def staff(self) -> list[Person]:
        rng = self.rng
        teams = [t.key for t in TEAMS]
        shares = [t.share for t in TEAMS]
        people: list[Person] = []
        for pid in range(self.n_people):
            locale = pick_pair(rng, STAFF_LOCALES)
            first, last = name_pick(rng, locale)
            start, end = -1000, 10_000
            if rng.random() < 0.08:
                start = rng.randint(10, self.days - 10)
            elif rng.random() < 0.06:
                end = rng.randint(20, self.days - 5)
            person = Person(pid, first, last, locale, pick(rng, teams, shares), start, end,
                            rng.lognormvariate(0.0, 0.8))
            self.give_addresses(person)
            people.append(person)
        self.link_people(people)
        return people

    def give_addresses(self, p: Person) -> None:
        rng = self.rng
        german = p.locale == "de"
        local = unique_local("first.last", p.first, p.last, self.taken_work, rng, german)
        self.taken_work.add(local)
        p.work = Addr(f"{local}@{FIRM}", f"{local}@{FIRM}", "staff", p.first, p.last, owner=p)
        if p.start < 0 and rng.random() < 0.22:
            leg = unique_local("flast", p.first, p.last, self.taken_legacy, rng, german)
            self.taken_legacy.add(leg)
            p.legacy = Addr(f"{leg}@{LEGACY}", f"{leg}@{LEGACY}", "legacy", p.first, p.last, owner=p)
            p.sends_legacy = rng.random() < 0.45
        n_personal = 1 if rng.random() < 0.85 else 2
        for _ in range(n_personal):
            p.personal.append(new_personal(rng, self.taken_personal, p.first, p.last, p.locale, p))
        if rng.random() < 0.12:
            p.self_rate = rng.uniform(0.05, 0.6)
            p.self_from = -1000 if rng.random() < 0.75 else rng.randint(0, self.days - 1)

    def link_people(self, people: list[Person]) -> None:
        rng = self.rng
        by_team: dict[str, list[Person]] = {}
        for p in people:
            by_team.setdefault(p.team, []).append(p)
        for p in people:
            team = [q for q in by_team[p.team] if q is not p]
            rng.shuffle(team)
            p.mates = team[: rng.randint(3, 8)]
            others = [q for q in people if q.team != p.team]
            p.collabs = rng.sample(others, k=min(len(others), rng.randint(2, 7)))

    # -- organisations ------------------------------------------------------------------------
    def orgs(self, people: list[Person]) -> list[Org]:
        orgs = [Org(name, dom, kind, loc, style, rank) for name, dom, kind, loc, style, rank in FIXED_ORGS]
        assert len({o.rank for o in orgs}) == len(orgs), "rank hints must differ"
        self.domains.update(o.domain for o in orgs)
        orgs.extend(self.commercial_org("supplier") for _ in range(200))
        orgs.extend(self.services_org() for _ in range(45))
        orgs.extend(self.freemail_contact() for _ in range(60))
        self.assign_ranks(orgs)
        for org in orgs:
            self.populate(org, people)
        return orgs

    def commercial_org(self, kind: str) -> Org:
        rng = self.rng
        locale = pick_pair(rng, SUPPLIER_LOCALES)
        while True:
            prefix = rng.choice(PREFIXES)
            suffix, abbrs = rng.choice(SUFFIXES)
            stem = prefix.lower()
            tld = pick_pair(rng, LOCALE_TLDS[locale])
            label = rng.choice((f"{stem}-{rng.choice(abbrs)}", f"{stem}{rng.choice(abbrs)}", stem, f"{stem}group"))
            domain = f"{label}.{tld}"
            if domain not in self.domains:
                self.domains.add(domain)
                return Org(f"{prefix} {suffix}", domain, kind, locale, pick_pair(rng, COMMERCIAL_STYLES))

    def services_org(self) -> Org:
        rng = self.rng
        lasts = NAMES["uk"][1]
        while True:
            a, b = rng.sample(lasts[:120], 2)
            a, b = token(a), token(b)
            kind = rng.choice(("law", "audit", "recruit", "it", "travel", "insure", "bank"))
            label = {
                "law": rng.choice((f"{a}{b}", f"{a}-{b}", f"{a[0]}{b[0]}-law")),
                "audit": rng.choice((f"{a}{b}", f"{a}-accountants")),
                "recruit": f"{rng.choice(PREFIXES).lower()}-{rng.choice(('recruitment', 'talent', 'resourcing'))}",
                "it": f"{rng.choice(PREFIXES).lower()}{rng.choice(('it', 'cloud', 'networks'))}",
                "travel": f"{rng.choice(PREFIXES).lower()}travel",
                "insure": f"{rng.choice(PREFIXES).lower()}-insurance",
                "bank": f"{rng.choice(PREFIXES).lower()}bank",
            }[kind]
            domain = f"{label}.{rng.choice(('co.uk', 'co.uk', 'com'))}"
            if domain not in self.domains:
                self.domains.add(domain)
                return Org(f"{a.title()} {b.title()} ({kind})", domain, "services", "uk",
                           pick_pair(rng, COMMERCIAL_STYLES))

    def freemail_contact(self) -> Org:
        locale = pick_pair(self.rng, (("uk", 80.0), ("de", 8.0), ("us", 8.0), ("fr", 4.0)))
        first, last = name_pick(self.rng, locale)
        addr = new_personal(self.rng, self.taken_personal, first, last, locale, None)
        addr.kind = "contact"
        org = Org(f"{first} {last} (consultant)", addr.addr.split("@")[1], "freemail", locale, "first.last")
        addr.org = org
        org.staff = [addr]
        org.contacts = [addr]
        return org

    def assign_ranks(self, orgs: list[Org]) -> None:
        rng = self.rng
        fixed = {o.rank for o in orgs if o.rank}
        free = [r for r in range(1, len(orgs) + 1) if r not in fixed]
        rng.shuffle(free)
        for org in orgs:
            if not org.rank:
                org.rank = free.pop()
            if org.rank > 40 and org.kind not in {"sister", "parent"} and rng.random() < 0.3:
                org.first_day = rng.randint(1, self.days - 3)
            if org.rank > 20 and rng.random() < 0.08:
                org.last_day = rng.randint(max(org.first_day + 20, 60), self.days + 30)

    def populate(self, org: Org, people: list[Person]) -> None:
        rng = self.rng
        if org.kind != "freemail":
            n_contacts = max(1, round(48 / org.rank**0.55 * rng.uniform(0.7, 1.3)))
            big = org.kind in {"gov", "mil", "university", "sister", "prime"}
            if big:
                n_staff = n_contacts * rng.uniform(6, 14) + 30
            else:
                n_staff = n_contacts * rng.uniform(2, 6) + rng.randint(0, 12)
            self.fill_directory(org, min(int(n_staff), 700))
            org.contacts = rng.sample(org.staff, k=min(n_contacts, len(org.staff)))
            if org.kind in {"supplier", "services", "prime"}:
                for role in rng.sample(ROLE_LOCALS, k=rng.randint(1, 3)):
                    org.roles.append(Addr(f"{role}@{org.domain}", f"{role}@{org.domain}", "role", org=org))
        teams = set(TEAMS_FOR_KIND[org.kind])
        pool = [p for p in people if p.team in teams] or people
        n_internal = max(1, round(30 / org.rank**0.6 * rng.uniform(0.6, 1.4)))
        org.internal = rng.sample(pool, k=min(n_internal, len(pool)))
        for p in org.internal:
            prefer(rng, org, p)

    def fill_directory(self, org: Org, n: int) -> None:
        rng = self.rng
        taken: set[str] = set()
        german = org.locale == "de"
        for _ in range(n):
            first, last = name_pick(rng, org.locale)
            local = unique_local(org.style, first, last, taken, rng, german)
            taken.add(local)
            addr = f"{local}@{org.domain}"
            if org.domain == "tudelft.nl" or (org.style == "mod" and rng.random() < 0.7) or rng.random() < 0.05:
                shown = capitalised(local) + "@" + org.domain
            else:
                shown = addr
            org.staff.append(Addr(addr, shown, "contact", first, last, org=org))

    # -- programmes, lists, mailboxes ---------------------------------------------------------
    def programmes(self, orgs: list[Org], people: list[Person]) -> list[Programme]:
        rng = self.rng
        customers = sorted((o for o in orgs if o.kind in {"gov", "mil"}), key=lambda o: o.rank)[:12]
        partners = sorted((o for o in orgs if o.kind in {"prime", "sister", "supplier", "university"}),
                          key=lambda o: o.rank)[:40]
        names = ("TEMPEST-LINK", "SEAHAWK", "ORION-2", "BRIMSTONE-C2", "SKYFORGE", "NIGHTJAR", "CORVUS",
                 "HALBERD", "WAVECREST", "IRONSIDE", "LODESTAR")
        out: list[Programme] = []
        for i, name in enumerate(names):
            chosen = [zipf_pick(rng, customers, 0.8)]
            for o in rng.sample(partners, k=rng.randint(1, 3)):
                if o not in chosen:
                    chosen.append(o)
            groups = {id(o): rng.sample(o.contacts, k=min(len(o.contacts), rng.randint(1, 4))) for o in chosen}
            pool = [p for p in people if p.team in {"pm", "syseng", "software", "avionics", "test", "contracts"}]
            members = rng.sample(pool, k=min(len(pool), rng.randint(4, 12)))
            out.append(Programme(name, chosen, groups, members, 1.0 / (i + 1)))
        return out

    def build(self) -> World:
        people = self.staff()
        orgs = self.orgs(people)
        progs = self.programmes(orgs, people)
        boxes = {name: Addr(f"{name}@{FIRM}", f"{name}@{FIRM}", "mailbox") for name, _ in MAILBOXES}
        team_lists = {t.key: Addr(f"{t.list_local}@{FIRM}", f"{t.list_local}@{FIRM}", "list") for t in TEAMS}
        team_lists["mech"] = Addr(f"structures@{LEGACY}", f"structures@{LEGACY}", "list")
        sites = {s: Addr(f"{s}@{FIRM}", f"{s}@{FIRM}", "list") for s in SITE_LISTS}
        return World(people, orgs, progs, boxes, team_lists, sites, self.domains, self.taken_personal)


# --------------------------------------------------------------------------------------------------
# Generating the log
# --------------------------------------------------------------------------------------------------


class Mill:
    """Generates the messages day by day, keeps threads and autocomplete lists, and injects leaks."""

    def __init__(self, seed: int, n_people: int, per_day: int, days: int) -> None:
        self.rng = random.Random(seed)
        self.days = days
        self.per_day = per_day
        self.world = Builder(self.rng, n_people, days).build()
        self.threads: list[Thread] = []
        self.cache: dict[str, dict[str, CacheEntry]] = {}
        self.seq = 0
        self.pair_legacy: dict[tuple[int, int], bool] = {}
        self.candidates: list[tuple[Addr, int]] = []
        self.events: dict[int, list[Callable[[int], Draft | None]]] = {}
        self.leaks = {True: dict.fromkeys(KINDS, 0), False: dict.fromkeys(KINDS, 0)}
        self.seen = {True: 0, False: 0}
        self.eligible = {True: 1, False: 1}
        self.social: list[tuple[Person, Addr]] = []

    # -- calendar -----------------------------------------------------------------------------
    def daily_count(self, date: dt.date) -> int:
        base = float(self.per_day)
        if date in BANK_HOLIDAYS:
            base *= 0.07
        elif date.weekday() >= 5:
            base *= 0.05 if date.weekday() == 5 else 0.07
        else:
            base *= (1.1, 1.02, 1.0, 1.0, 0.86)[date.weekday()]
        return max(0, round(base * self.rng.gauss(1.0, 0.1)))

    def moment(self, date: dt.date) -> dt.datetime:
        rng = self.rng
        if date.weekday() >= 5 or date in BANK_HOLIDAYS:
            hour = rng.uniform(8.0, 22.5)
        else:
            hour = 0.0
            while not 6.5 <= hour < 23.0:
                hour = rng.gauss(10.8, 2.0) if rng.random() < 0.5 else rng.gauss(14.8, 2.0)
        local = dt.datetime.combine(date, dt.time(), tzinfo=dt.UTC) + dt.timedelta(seconds=int(hour * 3600))
        return local - dt.timedelta(hours=1 if date >= BST_FROM else 0)

    # -- addresses ----------------------------------------------------------------------------
    def sender_addr(self, p: Person) -> str:
        assert p.work is not None
        if p.legacy is not None and p.sends_legacy and self.rng.random() < 0.85:
            return p.legacy.addr
        return p.work.addr

    def colleague(self, sender: Person | None, p: Person) -> Addr:
        assert p.work is not None
        if p.legacy is None:
            return p.work
        key = (sender.pid if sender else -1, p.pid)
        if key not in self.pair_legacy:
            self.pair_legacy[key] = self.rng.random() < (0.6 if p.sends_legacy else 0.12)
        return p.legacy if self.pair_legacy[key] else p.work

    def people_on(self, day: int) -> list[Person]:
        return [p for p in self.world.people if p.active(day)]

    def draft(self, sender: Person, rcpts: list[Addr], new: bool = True, thread_p: float = 0.0,
              thread_len: float = 3.0) -> Draft:
        return Draft(str(sender.pid), self.sender_addr(sender), sender, rcpts, [new] * len(rcpts), new,
                     thread_p, thread_len)

    # -- message kinds ------------------------------------------------------------------------
    def new_message(self, day: int) -> Draft | None:
        makers: tuple[tuple[Callable[[int], Draft | None], float], ...] = (
            (self.internal_team, 0.31), (self.internal_cross, 0.16), (self.internal_list, 0.03),
            (self.external, 0.37), (self.programme, 0.06), (self.mailbox, 0.05), (self.self_mail, 0.012),
        )
        maker = pick(self.rng, [m for m, _ in makers], [w for _, w in makers])
        return maker(day)

    def active_sender(self, day: int, pool: Sequence[Person] | None = None) -> Person | None:
        people = [p for p in (pool if pool is not None else self.world.people) if p.active(day)]
        if not people:
            return None
        return pick(self.rng, people, [p.activity for p in people])

    def internal_team(self, day: int) -> Draft | None:
        rng = self.rng
        sender = self.active_sender(day)
        if sender is None:
            return None
        mates = [q for q in sender.mates if q.active(day)]
        if not mates:
            return None
        if rng.random() < 0.06:
            rcpts = [self.world.team_lists[sender.team]]
        else:
            k = min(len(mates), pick(rng, (1, 2, 3, 4, 5), (55, 25, 10, 6, 4)))
            rcpts = [self.colleague(sender, q) for q in zipf_pick_k(rng, mates, k)]
        if rng.random() < 0.005 and sender.work is not None:
            rcpts.append(sender.work)
        return self.draft(sender, rcpts, thread_p=0.5, thread_len=3.0)

    def internal_cross(self, day: int) -> Draft | None:
        rng = self.rng
        sender = self.active_sender(day)
        if sender is None:
            return None
        pool = [q for q in sender.collabs if q.active(day)]
        if rng.random() < 0.15 or not pool:
            pool = [q for q in self.people_on(day) if q is not sender]
        k = min(len(pool), pick(rng, (1, 2, 3), (60, 28, 12)))
        rcpts = [self.colleague(sender, q) for q in rng.sample(pool, k)]
        if rng.random() < 0.25:
            mates = [q for q in sender.mates if q.active(day)]
            if mates:
                rcpts.append(self.colleague(sender, rng.choice(mates)))
        return self.draft(sender, rcpts, thread_p=0.55, thread_len=3.0)

    def internal_list(self, day: int) -> Draft | None:
        rng = self.rng
        sender = self.active_sender(day)
        if sender is None:
            return None
        if rng.random() < 0.7:
            target = self.world.team_lists[rng.choice(TEAM_KEYS)]
        else:
            site = rng.choice(SITE_LISTS)
            if site == "all-staff" and sender.team not in {"hr", "it", "facilities", "pm"}:
                site = "eng-announce"
            target = self.world.site_lists[site]
        return self.draft(sender, [target], thread_p=0.2, thread_len=2.0)

    def external(self, day: int) -> Draft | None:
        rng = self.rng
        orgs = [o for o in self.world.orgs if o.active(day)]
        org = pick(rng, orgs, [o.weight for o in orgs])
        sender = self.org_sender(org, day)
        if sender is None:
            return None
        rcpts = self.org_recipients(org, sender)
        cc = rng.random()
        if cc < 0.35:
            extra = [q for q in (*sender.mates, *org.internal) if q.active(day) and q is not sender]
            if extra:
                k = 1 if cc < 0.27 else min(len(extra), rng.randint(2, 3))
                rcpts.extend(self.colleague(sender, q) for q in rng.sample(extra, k))
        return self.draft(sender, dedupe(rcpts), thread_p=0.65, thread_len=3.5)

    def org_sender(self, org: Org, day: int) -> Person | None:
        active = [p for p in org.internal if p.active(day)]
        if not active:
            teams = set(TEAMS_FOR_KIND[org.kind])
            pool = [p for p in self.people_on(day) if p.team in teams]
            if not pool:
                return None
            heir = self.rng.choice(pool)
            org.internal.append(heir)
            prefer(self.rng, org, heir)
            active = [heir]
        return pick(self.rng, active, [p.activity for p in active])

    def org_recipients(self, org: Org, sender: Person) -> list[Addr]:
        rng = self.rng
        if sender.pid not in org.prefs:
            prefer(rng, org, sender)
        prefs = org.prefs[sender.pid]
        r = rng.random()
        if org.roles and r < 0.06:
            return [rng.choice(org.roles)]
        if r < 0.10 and len(org.staff) > len(org.contacts):
            newcomer = rng.choice([a for a in org.staff if a not in org.contacts])
            org.contacts.append(newcomer)
            prefs.append(newcomer)
            return [newcomer]
        if r < 0.2:
            return [zipf_pick(rng, org.contacts, 0.8)]
        k = min(len(prefs), pick(rng, (1, 2, 3), (72, 20, 8)))
        return rng.sample(prefs, k)

    def programme(self, day: int) -> Draft | None:
        rng = self.rng
        progs = self.world.programmes
        prog = pick(rng, progs, [p.weight for p in progs])
        sender = self.active_sender(day, prog.members)
        if sender is None:
            return None
        rcpts: list[Addr] = []
        for org in prog.orgs:
            group = prog.groups[id(org)]
            if org.active(day) and group and (org is prog.orgs[0] or rng.random() < 0.7):
                rcpts.extend(rng.sample(group, k=rng.randint(1, len(group))))
        mates = [q for q in prog.members if q is not sender and q.active(day)]
        rcpts.extend(self.colleague(sender, q) for q in rng.sample(mates, k=min(len(mates), rng.randint(1, 4))))
        if not rcpts:
            return None
        return self.draft(sender, dedupe(rcpts), thread_p=0.9, thread_len=6.0)

    def mailbox(self, day: int) -> Draft | None:
        rng = self.rng
        name = pick_pair(rng, MAILBOXES)
        box = self.world.mailboxes[name]
        orgs = [o for o in self.world.orgs if o.active(day)]
        if name in {"accounts", "purchasing"}:
            suppliers = [o for o in orgs if o.roles]
            org = pick(rng, suppliers, [o.weight**0.7 for o in suppliers])
            rcpt = rng.choice(org.roles) if rng.random() < 0.6 else zipf_pick(rng, org.contacts, 0.8)
            rcpts = [rcpt]
        elif name == "bids":
            govs = [o for o in orgs if o.kind in {"gov", "mil", "prime"}]
            org = pick(rng, govs, [o.weight for o in govs])
            rcpts = [zipf_pick(rng, org.contacts, 0.8)]
        elif name == "recruitment":
            rcpts = [self.candidate(day)]
        else:
            rcpts = [self.enquirer()]
        return Draft(name, box.addr, None, rcpts, [True] * len(rcpts), new=True, thread_p=0.3, thread_len=2.0)

    def candidate(self, day: int) -> Addr:
        rng = self.rng
        live = [a for a, until in self.candidates if until >= day]
        if live and rng.random() < 0.55:
            return rng.choice(live)
        locale = pick_pair(rng, (("uk", 80.0), ("in", 8.0), ("pl", 4.0), ("de", 4.0), ("us", 4.0)))
        first, last = name_pick(rng, locale)
        addr = new_personal(rng, self.world.taken_personal, first, last, locale, None)
        self.candidates.append((addr, day + rng.randint(5, 40)))
        return addr

    def enquirer(self) -> Addr:
        rng = self.rng
        first, last = name_pick(rng, "uk")
        if rng.random() < 0.5:
            return new_personal(rng, self.world.taken_personal, first, last, "uk", None)
        stem = f"{rng.choice(PREFIXES).lower()}{rng.choice(('-ltd', 'solutions', '-uk', 'consulting', 'works'))}"
        domain = f"{stem}{rng.randint(1, 99) if rng.random() < 0.3 else ''}.{rng.choice(('co.uk', 'com'))}"
        local = local_for(pick_pair(rng, COMMERCIAL_STYLES), first, last, rng)
        return Addr(f"{local}@{domain}", f"{local}@{domain}", "contact", first, last)

    def self_mail(self, day: int) -> Draft | None:
        pool = [p for p in self.world.people if p.self_rate > 0 and p.active(day) and day >= p.self_from]
        if not pool:
            return None
        p = pick(self.rng, pool, [q.self_rate for q in pool])
        return self.draft(p, [p.personal[0]], new=False)

    # -- threads ------------------------------------------------------------------------------
    def reply(self, day: int) -> Draft | None:
        rng = self.rng
        self.threads = [t for t in self.threads if t.left > 0 and day - t.last_day <= 12]
        recent = [t for t in self.threads if day - t.last_day <= 3]
        pool = recent if recent and rng.random() < 0.85 else self.threads
        if not pool:
            return None
        thread = rng.choice(pool[-400:])
        senders = [p for p in thread.senders if p.active(day) and p is not thread.last_sender] or [
            p for p in thread.senders if p.active(day)]
        if not senders:
            thread.left = 0
            return None
        sender = pick(rng, senders, [p.activity for p in senders])
        mine = {a for a in (sender.work, sender.legacy) if a is not None}
        others = [a for a in thread.members if a not in mine]
        if thread.last_sender is not None and thread.last_sender is not sender and rng.random() < 0.25:
            others = [a for a in others if a.owner is thread.last_sender] or others
        typed = [False] * len(others)
        if rng.random() < 0.12:
            added = self.grow(thread, sender, day)
            if added is not None and added not in others:
                others.append(added)
                typed.append(True)
                thread.members.append(added)
        if not others:
            return None
        thread.left -= 1
        thread.last_day = day
        thread.last_sender = sender
        if sender not in thread.senders:
            thread.senders.append(sender)
        return Draft(str(sender.pid), self.sender_addr(sender), sender, others, typed, any(typed))

    def grow(self, thread: Thread, sender: Person, day: int) -> Addr | None:
        rng = self.rng
        orgs = [a.org for a in thread.members if a.org is not None and a.org.kind != "freemail"]
        if orgs and rng.random() < 0.5:
            org = rng.choice(orgs)
            return self.org_recipients(org, sender)[0] if org.active(day) else None
        mates = [q for q in sender.mates if q.active(day)]
        if not mates:
            return None
        q = rng.choice(mates)
        if q not in thread.senders:
            thread.senders.append(q)
        return self.colleague(sender, q)

    def open_thread(self, d: Draft, day: int) -> None:
        if d.person is None or self.rng.random() >= d.thread_p:
            return
        senders = [d.person] + [a.owner for a in d.rcpts if a.kind in {"staff", "legacy"} and a.owner is not None]
        members = [a for a in d.rcpts if a.kind != "personal"]
        sender_addr = d.person.legacy if d.sender.endswith(LEGACY) else d.person.work
        if sender_addr is not None:
            members = [sender_addr, *members]
        left = 1 + int(self.rng.expovariate(1.0 / d.thread_len))
        self.threads.append(Thread(members, senders, day, left, d.person))

    # -- scheduled life events ----------------------------------------------------------------
    def schedule(self) -> None:
        rng = self.rng
        for p in self.world.people:
            if p.start > 0:
                for _ in range(rng.randint(2, 5)):
                    self.at(rng.randint(max(0, p.start - 30), p.start - 1), self.to_joiner(p))
            if p.end < self.days:
                for _ in range(rng.randint(2, 8)):
                    self.at(rng.randint(max(0, p.end - 14), p.end - 1), self.leaver_forward(p))
                for _ in range(rng.randint(1, 3)):
                    self.at(p.end + rng.randint(1, 40), self.to_leaver(p))
        self.social = self.social_group()
        for day in range(0, self.days, 7):
            self.at(day + rng.choice((2, 3, 4)), self.social_message)

    def at(self, day: int, fn: Callable[[int], Draft | None]) -> None:
        if 0 <= day < self.days:
            self.events.setdefault(day, []).append(fn)

    def to_joiner(self, p: Person) -> Callable[[int], Draft | None]:
        def make(day: int) -> Draft | None:
            hr = self.world.mailboxes["recruitment"]
            mgr = self.active_sender(day, [q for q in self.world.people if q.team == p.team and q is not p])
            if mgr is not None and self.rng.random() < 0.4:
                return self.draft(mgr, [p.personal[0]])
            return Draft("recruitment", hr.addr, None, [p.personal[0]], [True], new=True)
        return make

    def leaver_forward(self, p: Person) -> Callable[[int], Draft | None]:
        def make(day: int) -> Draft | None:
            return self.draft(p, [p.personal[0]], new=False) if p.active(day) else None
        return make

    def to_leaver(self, p: Person) -> Callable[[int], Draft | None]:
        def make(day: int) -> Draft | None:
            if self.rng.random() < 0.6:
                box = self.world.mailboxes["accounts" if self.rng.random() < 0.3 else "recruitment"]
                return Draft(box.addr.split("@")[0], box.addr, None, [p.personal[0]], [True], new=True)
            friend = self.active_sender(day, p.mates)
            return self.draft(friend, [p.personal[0]]) if friend else None
        return make

    def social_group(self) -> list[tuple[Person, Addr]]:
        rng = self.rng
        members = rng.sample(self.world.people, k=min(len(self.world.people), 12))
        out: list[tuple[Person, Addr]] = []
        for p in members:
            assert p.work is not None
            out.append((p, p.personal[0] if rng.random() < 0.35 else p.work))
        return out

    def social_message(self, day: int) -> Draft | None:
        active = [(p, a) for p, a in self.social if p.active(day)]
        if len(active) < 3:
            return None
        organiser = self.rng.choice(active[:3])[0]
        rcpts = [a for p, a in active if p is not organiser]
        return self.draft(organiser, rcpts, new=False)

    # -- leaks --------------------------------------------------------------------------------
    def maybe_leak(self, d: Draft, judged: bool) -> None:
        self.seen[judged] += 1
        if not d.new:
            return
        self.eligible[judged] += 1
        rate = LEAK_RATE_JUDGED if judged else LEAK_RATE_TRAIN
        share = max(0.2, self.eligible[judged] / max(1, self.seen[judged]))
        deficit = rate * self.seen[judged] - sum(self.leaks[judged].values())
        p = rate / share * (1.0 + 0.4 * min(max(deficit, -0.9), 4.0))
        if self.rng.random() >= p:
            return
        counts = self.leaks[judged]
        kind = min(KINDS, key=lambda k: counts[k] + self.rng.random() * 1.5)
        injectors: dict[str, Callable[[Draft], bool]] = {
            "domain-slip": self.inject_slip, "wrong-person": self.inject_wrong_person, "personal": self.inject_personal,
        }
        if injectors[kind](d):
            d.kind = kind
            counts[kind] += 1

    def typed_indices(self, d: Draft, kinds: set[str]) -> list[int]:
        return [i for i, a in enumerate(d.rcpts) if d.typed[i] and a.kind in kinds]

    def inject_slip(self, d: Draft) -> bool:
        rng = self.rng
        outside = self.typed_indices(d, {"contact", "role"})
        own = self.typed_indices(d, {"staff", "legacy", "list"})
        use_own = bool(own) and rng.random() < 0.15
        if not (own if use_own else outside):
            return False
        i = rng.choice(own if use_own else outside)
        target = d.rcpts[i]
        local, _, domain = target.shown.rpartition("@")
        for _ in range(12):
            mech = pick_pair(rng, SLIP_WEIGHTS + ((("own-blend", 8.0),) if use_own else ()))
            slipped = rng.choice(OWN_BLENDS[domain.lower()]) if mech == "own-blend" else slip_domain(
                domain.lower(), mech, rng)
            if slipped and valid_domain(slipped) and slipped not in self.world.legit_domains:
                note = mech if mech.startswith("own-") else ("own-" if use_own else "") + mech
                self.replace(d, i, f"{local}@{slipped}", target, note)
                return True
        return False

    def inject_wrong_person(self, d: Draft) -> bool:
        rng = self.rng
        idx = self.typed_indices(d, {"contact"})
        rng.shuffle(idx)
        subkinds = (("autocomplete-neighbour", 60.0), ("same-first-name", 25.0), ("directory-neighbour", 15.0),
                    ("same-full-name", 12.0), ("same-surname", 13.0))
        for i in idx:
            target = d.rcpts[i]
            options = {name: self.wrong_candidates(name, d, target) for name, _ in subkinds}
            feasible = [(n, w) for n, w in subkinds if options[n]]
            if not feasible:
                continue
            name = pick_pair(rng, feasible)
            wrong = self.namesake_choice(d, options[name]) if name.startswith("same") else options[name][0]
            self.replace(d, i, wrong.shown, target, name)
            return True
        return False

    def wrong_candidates(self, subkind: str, d: Draft, target: Addr) -> list[Addr]:
        org = target.org
        present = {a.addr for a in d.rcpts}
        if subkind == "autocomplete-neighbour":
            return self.autocomplete_neighbours(d.sender_key, target, present)
        if org is None or org.kind == "freemail":
            return []
        if subkind == "directory-neighbour":
            book = sorted(org.staff, key=lambda a: (token(a.last), token(a.first), a.addr))
            pos = book.index(target)
            near = [book[j] for j in (pos + 1, pos - 1) if 0 <= j < len(book)]
            return [a for a in near if a.addr not in present][:1]
        same: Callable[[Addr], bool] = {
            "same-first-name": lambda a: a.first == target.first and a.last != target.last,
            "same-surname": lambda a: a.last == target.last and a.first != target.first,
            "same-full-name": lambda a: a.first == target.first and a.last == target.last,
        }[subkind]
        return [a for a in org.staff if a is not target and same(a) and a.addr not in present]

    def namesake_choice(self, d: Draft, candidates: list[Addr]) -> Addr:
        book = self.cache.get(d.sender_key, {})
        known = [a for a in candidates if a.addr in book]
        if known and self.rng.random() < 1 / 3:
            return self.rng.choice(known)
        return self.rng.choice(candidates)

    def autocomplete_neighbours(self, key: str, target: Addr, present: set[str]) -> list[Addr]:
        """The entries next to the intended one in the sender's autocomplete list, at the same domain."""
        book = self.cache.get(key, {})
        if target.addr not in book:
            return []
        domain = target.addr.rpartition("@")[2]
        for k in self.rng.sample((1, 2, 3), 3):
            prefix = token(target.first)[:k]
            matches = [e for e in book.values() if prefix and (
                token(e.addr.first).startswith(prefix) or token(e.addr.last).startswith(prefix)
                or e.addr.addr.startswith(prefix))]
            matches.sort(key=lambda e: (-e.count, -e.last))
            ranked = [e.addr.addr for e in matches]
            if target.addr not in ranked:
                continue
            pos = ranked.index(target.addr)
            near = [matches[j].addr for j in (pos + 1, pos - 1, pos + 2) if 0 <= j < len(matches)]
            near = [a for a in near if a.addr.endswith("@" + domain) and a.addr not in present and a is not target]
            if near:
                return near[:1]
        return []

    def inject_personal(self, d: Draft) -> bool:
        rng = self.rng
        idx = [i for i in self.typed_indices(d, {"staff", "legacy"})
               if d.rcpts[i].owner is not None and d.rcpts[i].owner is not d.person]
        if not idx:
            return False
        book = self.cache.get(d.sender_key, {})
        options: list[tuple[int, Addr]] = []
        weights: list[float] = []
        for i in idx:
            owner = d.rcpts[i].owner
            assert owner is not None
            for priv in owner.personal:
                if priv.addr not in {a.addr for a in d.rcpts}:
                    options.append((i, priv))
                    weights.append(5.0 if priv.addr in book else 1.0)
        if not options:
            return False
        i, priv = pick(rng, options, weights)
        if rng.random() < 0.6:
            self.replace(d, i, priv.shown, d.rcpts[i], "personal-instead")
        else:
            leak = Addr(priv.addr, priv.shown, "leak", priv.first, priv.last)
            d.rcpts.insert(i + 1, leak)
            d.typed.insert(i + 1, True)
            d.leak, d.note = leak, "personal-beside"
        return True

    def replace(self, d: Draft, i: int, shown: str, target: Addr, note: str) -> None:
        leak = Addr(shown.lower(), shown, "leak", target.first, target.last, target.org)
        d.rcpts[i] = leak
        d.leak, d.note = leak, note

    # -- rendering ----------------------------------------------------------------------------
    def render(self, a: Addr) -> str:
        if a.kind == "leak":
            return a.shown
        r = self.rng.random()
        if a.shown != a.addr and r < 0.12:
            return a.addr
        if a.kind in {"contact", "staff", "legacy"} and r < 0.004:
            local, _, domain = a.addr.partition("@")
            return capitalised(local) + "@" + (domain.upper() if r < 0.001 else domain)
        return a.shown

    def finish(self, d: Draft, when: dt.datetime, day: int) -> Message:
        recipients: list[str] = []
        seen: set[str] = set()
        for a in d.rcpts:
            text = self.render(a)
            if text.lower() not in seen:
                seen.add(text.lower())
                recipients.append(text)
        self.remember(d)
        if d.leak is None and d.new:
            self.open_thread(d, day)
        leak = d.leak.shown if d.leak is not None else None
        return Message(when, d.sender, recipients, leak, d.kind, d.note)

    def remember(self, d: Draft) -> None:
        self.seq += 1
        book = self.cache.setdefault(d.sender_key, {})
        for a in d.rcpts:
            if a is d.leak:
                continue
            entry = book.get(a.addr)
            if entry is None:
                book[a.addr] = CacheEntry(a, 1, self.seq)
            else:
                entry.count += 1
                entry.last = self.seq

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> list[Message]:
        self.schedule()
        out: list[Message] = []
        for day in range(self.days):
            date = START + dt.timedelta(days=day)
            judged = date >= CUT
            for when in sorted(self.moment(date) for _ in range(self.daily_count(date))):
                d = self.reply(day) if self.rng.random() < 0.4 else None
                d = d or self.new_message(day)
                if d is None or not d.rcpts:
                    continue
                self.maybe_leak(d, judged)
                out.append(self.finish(d, when, day))
            for fn in self.events.get(day, []):
                ev = fn(day)
                if ev is not None and ev.rcpts:
                    out.append(self.finish(ev, self.moment(date), day))
        out.sort(key=lambda m: m.when)
        return out


def dedupe(addrs: list[Addr]) -> list[Addr]:
    out: list[Addr] = []
    for a in addrs:
        if all(a.addr != b.addr for b in out):
            out.append(a)
    return out


def zipf_pick_k(rng: random.Random, items: Sequence[T], k: int) -> list[T]:
    chosen: list[T] = []
    while len(chosen) < min(k, len(items)):
        item = zipf_pick(rng, items, 0.9)
        if item not in chosen:
            chosen.append(item)
    return chosen


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--per-day", type=int, default=300)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--notes", action="store_true", help="add the leak's sub-kind as 'note'")
    args = parser.parse_args(argv)
    messages = Mill(args.seed, args.people, args.per_day, args.days).run()
    with args.out.open("w", encoding="utf-8") as fh:
        for m in messages:
            fh.write(m.as_json(args.notes) + "\n")
    leaks = sum(1 for m in messages if m.leak)
    print(f"{len(messages)} messages, {leaks} leaks -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
