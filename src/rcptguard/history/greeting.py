"""Whom a message greets, and whether its recipients answer to that name: a wrong person caught by the text.

    greeting_of("Hi Nils,\n\nthe figures you asked for...")   # Greeting(first=('nils',))
    greeting_of("Dear Dr Martin,")                             # Greeting(last=('martin',))
    unanswered(greeting, {"olga.smith@kavale.de": ""})         # ('nils',): nobody on the message is Nils

A person who picks the wrong entry from the address book (the next one down, a namesake's) still writes to the one
meant: "Hi Nils," to olga.smith@kavale.de. The envelope alone cannot tell that pick from a real message to Olga;
the opening line can. `opening` reads the first lines of a message's first text part cheaply (one part, a few
kilo-octets, no email parser for the usual shapes), `greeting_of` finds the names greeted there (first names, or a
last name after a title), and `answers` says whether a recipient could be that person: by a word of the local part
or of the display name, a run-together name that starts with it (nilsmartin), an initial (n.martin, nmartin), or a
nickname of it (Bob, robert.smith; the `nicknames` package's list of English given names). Anything doubtful counts
as an answer: the check only speaks when no recipient can be the person greeted, and history (judge.py) then says
whom the sender writes to by that name.
"""

from __future__ import annotations

import binascii
import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.utils import getaddresses

from nicknames import NickNamer

from rcptguard.content.extract import charset_of, charset_text, head_end, html_text, mime_fields

__all__ = ["NOBODY_GREETED", "Greeting", "answers", "display_names", "greeting_of", "opening", "spells", "unanswered"]

OPENING_OCTETS = 2048  # of the first text part, decoded: a greeting is on its first lines
LINES = 3  # non-empty lines looked at
MAX_LINE = 80  # characters: a longer line is no greeting
OPENING_CHARS = 1024  # of the text, where those lines are
PARTS = 8  # MIME parts walked to find the first text part


def _listed(words: str) -> frozenset[str]:
    return frozenset(words.split())


_SALUTE = (r"hi|hello|hey|hiya|dear|dearest|greetings|good\s+(?:morning|afternoon|evening|day)|morning|"
           r"hallo|hall[oö]chen|moin|servus|guten\s+(?:tag|morgen|abend)|gr[uü](?:e|ü)?(?:ß|ss)\s+dich|liebe[rs]?|"
           r"sehr\s+geehrte[rs]?|"
           r"bonjour|bonsoir|salut|coucou|cher|ch[eè]re|chers|ch[eè]res|hola|buenos\s+d[ií]as|estimad[oa]s?|"
           r"ciao|salve|buongiorno|buonasera|gentile|caro|cara|hej|hei|hoi|beste|goedemorgen|ol[aá]|prezad[oa]")
_TITLE = (r"mr|mrs|ms|miss|mx|dr|prof|professor|sir|madam|herr|frau|monsieur|madame|mme|mlle|m|se[ñn]or|se[ñn]ora|"
          r"sr|sra|signor|signora|sig|dott|dottoressa|mevrouw|meneer|dhr|mevr")
_NAME = r"[^\W\d_][^\W\d_'’\-]*(?:[-'’][^\W\d_]+)*"
_FULL = rf"{_NAME}(?:\s+{_NAME})?"  # Nils, or Nils Martin
_LIST = rf"{_FULL}(?:\s*(?:,|&|\+|/|\band\b|\bund\b|\bet\b|\by\b|\be\b|\ben\b|\bog\b|\boch\b)\s*{_FULL})*"
_GREETING = re.compile(
    rf"^\s*(?:(?:{_SALUTE})\b[\s,]*)?(?:(?P<title>(?:{_TITLE})\.?)\s+)?(?P<names>{_LIST})\s*[,:!;.]?\s*$",
    re.IGNORECASE)
_SALUTED = re.compile(rf"^\s*(?:{_SALUTE})\b", re.IGNORECASE)
# the first words of the salutes and titles above: a line that starts otherwise and ends with no comma is passed
# over without the regular expressions (tests/unit/test_greeting.py checks every salute and title starts with one)
_OPENERS = _listed("""
hi hello hey hiya dear dearest greetings good morning hallo hallöchen hallochen moin servus guten grüß grüss gruss
grüsse grüße gruess liebe lieber liebes sehr bonjour bonsoir salut coucou cher chère chere chers chères cheres hola
buenos estimado estimada estimados estimadas ciao salve buongiorno buonasera gentile caro cara hej hei hoi beste
goedemorgen olá ola prezado prezada mr mrs ms miss mx dr prof professor sir madam herr frau monsieur madame mme
mlle m señor senor señora senora sr sra signor signora sig dott dottoressa mevrouw meneer dhr mevr
""")
_JOINERS = re.compile(r"\s*(?:,|&|\+|/|\band\b|\bund\b|\bet\b|\by\b|\be\b|\ben\b|\bog\b|\boch\b)\s*", re.IGNORECASE)
# words after a greeting that are nobody's name
NOBODY = _listed("""
all everyone everybody team teams folks guys both there you sir sirs madam madame colleagues colleague friends
friend partners partner customer customers client clients members member people ladies gentlemen gents y'all
yall together again thanks thank welcome back alle allerseits zusammen team kollegen kolleginnen
kollegin kollege damen herren leute ihr tous toutes vous collègues collegues équipe equipe amis todos todas
equipo compañeros colegas tutti tutte ragazzi colleghi allemaal iedereen collega's collegas hello hi hey dear
morning afternoon evening day good mr mrs ms miss mx dr prof professor herr frau monsieur mme mlle
""")
_NICKNAMES = NickNamer()


@dataclass(frozen=True, slots=True)
class Greeting:
    """The names a message's opening greets (in lower case): first names, or last names after a title."""

    first: tuple[str, ...] = ()
    last: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.first or self.last)

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.first, *self.last)


NOBODY_GREETED = Greeting()


def fold(word: str) -> str:
    """A name in lower case, its letters alone, without accents (Zoë, zoe; O'Brien, obrien), as addresses spell it."""
    lowered = word.casefold().replace("ø", "o").replace("æ", "ae").replace("ł", "l").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFKD", lowered) if c.isalpha() and not unicodedata.combining(c))


def forms(name: str) -> tuple[str, ...]:
    """The ways an address may spell a greeted name (kept as greeted, lower case): Müller as muller and mueller."""
    plain = fold(name)
    german = fold(name.casefold().replace("ä", "ae").replace("ö", "oe").replace("ü", "ue"))
    return (plain,) if german == plain else (plain, german)


def greeting_of(text: str) -> Greeting:
    """The names greeted on the first `LINES` non-empty lines of `text` (quoted lines skipped): "Hi Nils,", "Dear
    Nils and Carla,", "Dear Dr Martin,", "Nils," alone on its line. A line that is no greeting ends the search."""
    seen = 0
    for raw_line in text[:OPENING_CHARS].splitlines():
        line = raw_line.strip()
        if not line or line.startswith(">"):
            continue
        seen += 1
        if seen > LINES or len(line) > MAX_LINE:
            return NOBODY_GREETED
        if line.split(None, 1)[0].rstrip(",:!.").casefold() not in _OPENERS and not line.endswith((",", ":", "!")):
            continue  # a line with no salute, title or comma is no greeting ("Thanks", "Re: figures")
        saluted = _SALUTED.match(line) is not None
        found = _GREETING.match(line)
        if found is None:
            if saluted:  # "Hello," then the names on no line of their own: nobody by name
                return NOBODY_GREETED
            continue
        title = found["title"]
        # a full name: its first word is the first name; after a title, its last word the last name
        words = [w.split()[-1 if title else 0].casefold() for w in _JOINERS.split(found["names"]) if w.strip()]
        names = tuple(dict.fromkeys(w for w in words if fold(w) not in NOBODY and len(fold(w)) >= 2))
        if not names or len(names) != len(words):  # "Hi all", or "Hi Nils and team": not names alone
            return NOBODY_GREETED
        return Greeting(last=names) if title else Greeting(first=names)
    return NOBODY_GREETED


def _words(text: str) -> list[str]:
    """The words of a local part or display name, folded: ann.lee84 -> ann, lee."""
    return [w for w in (fold(part) for part in re.split(r"[\W\d_]+", text)) if w]


@functools.lru_cache(maxsize=4096)
def aliases(name: str) -> frozenset[str]:
    """A first name and every name it may stand for or be called: bob, robert, rob, bobby, bill..."""
    canonical = _NICKNAMES.canonicals_of(name) | {name}
    found = set(canonical)
    for one in canonical:
        found |= _NICKNAMES.nicknames_of(one)
    return frozenset(found)


def answers(name: str, address: str, display: str = "", *, last: bool = False) -> bool:
    """Whether the recipient `address` (with its display name) could be the person greeted as `name`: a doubt is an
    answer."""
    local = address.rpartition("@")[0]
    words = _words(local)
    said = _words(display)
    if not words:
        return True
    both = (*words, *said)
    run = fold(local)  # the local part's letters run together: annalena.schmidt, annalenaschmidt
    for form in forms(name):
        if form in both or run.startswith(form) or fold(display).startswith(form):
            return True
        if len(words) == 1 and not _names_another(words[0], form, last=last):
            return True  # one word (nmartin, martin, yarar, yuki): whose it is, only a name at its start tells
        if last:
            if any(w.endswith(form) or w.startswith(form) for w in both):
                return True
            continue
        names = aliases(form)
        if any(w in names for w in both) or any(w.startswith(n) for w in both for n in names if len(n) >= 3):
            return True  # a nickname, or run together: nilsmartin
        if any(len(w) == 1 and any(n[0] == w for n in names) for w in words):
            return True  # n.martin
    return False


def spells(name: str, address: str, *, last: bool = False) -> bool:
    """Whether `address` is plainly the address of somebody called `name`: its first word (nils.martin), or the
    last (martin, after a title), or run together (nilsmartin, nmartin). Stricter than `answers`: this finds whom
    the sender meant, `answers` whom a recipient may be."""
    local = address.rpartition("@")[0]
    words = _words(local)
    if not words:
        return False
    for form in forms(name):
        if last:
            if words[-1] == form or (len(words) == 1 and len(words[0]) > len(form) and words[0].endswith(form)):
                return True
        elif words[0] in aliases(form) or (len(words) == 1 and len(words[0]) > len(form) + 2
                                           and words[0].startswith(form)):
            return True
    return False


def _given_names() -> frozenset[str]:
    table = _NICKNAMES.nickname_lookup
    return frozenset(n for n in {*table, *(v for names in table.values() for v in names)} if len(n) >= 3)


GIVEN = _given_names()  # the English given names and nicknames the `nicknames` package lists


def _names_another(word: str, name: str, *, last: bool) -> bool:
    """Whether a local part of one word is plainly somebody else's: a given name other than `name` run together with
    a last name of three letters or more (olgasmith for Nils; jamesevans for Mr Wright). Anything else may be
    anybody's: a first name alone (adam), an initial and a last name (shall: S. Hall), a first name and an initial
    (isaacj: Isaac J.)."""
    names = aliases(name) if not last else frozenset()
    if last and (name in word or word.endswith(name[0])):
        return False
    if not last and any(word[0] == n[0] for n in names):
        return False  # an initial, then the last name
    for given in reversed(_starts(word)):  # the longest given name first
        rest = word[len(given):]
        if len(rest) >= 3 and not (last and name.startswith(rest)) and given not in names:
            return True
    return False


def _starts(word: str) -> list[str]:
    return [word[:size] for size in range(3, min(len(word), 12) + 1) if word[:size] in GIVEN]


ROLES = _listed("""
info office contact contacts sales support help helpdesk admin administrator team hello mail post postmaster
kontakt service services hr jobs careers billing accounts accounting invoices invoice finance orders order
booking bookings reservations reception enquiries inquiries press media marketing legal compliance security
noreply no-reply webmaster it ops operations procurement purchasing team desk general secretariat sekretariat
verwaltung buchhaltung vertrieb bureau secretariaat administratie
""")


def unanswered(greeting: Greeting, recipients: Mapping[str, str]) -> tuple[str, ...]:
    """The names greeted that no recipient (address -> display name) answers to; () when a recipient is a role's
    address (info@, office@: anyone may read it) or none was greeted."""
    if not greeting:
        return ()
    for address in recipients:
        if address.rpartition("@")[0].lower() in ROLES:
            return ()
    missing = [n for n in greeting.first if not any(answers(n, a, d) for a, d in recipients.items())]
    missing += [n for n in greeting.last if not any(answers(n, a, d, last=True) for a, d in recipients.items())]
    return tuple(missing)


def display_names(raw: bytes) -> dict[str, str]:
    """The display names of a message's To and Cc fields, by address in lower case ("Nils Martin" <n@x>)."""
    end = head_end(raw)
    if end is None:
        return {}
    head = re.sub(r"\r?\n[ \t]", " ", raw[: end[0]].decode("utf-8", "replace"))  # unfolded
    values = [line[3:] for line in head.splitlines() if line[:3].lower() in ("to:", "cc:")]
    found: dict[str, str] = {}
    for name, address in getaddresses(values):
        if address and name:
            found[address.lower()] = _decoded(name) if "=?" in name else name
    return found


def _decoded(name: str) -> str:
    """A display name's encoded words (RFC 2047) decoded; one that cannot be read, as written."""
    try:
        return str(make_header(decode_header(name)))
    except (LookupError, ValueError, UnicodeError):
        return name


def opening(raw: bytes) -> str:
    """The first lines of a message's first text part (plain text, else HTML as text), decoded: `OPENING_OCTETS`
    of it at most. Multipart messages are walked by their boundaries, `PARTS` parts at most; "" when there is no
    text part to read there."""
    for _ in range(PARTS):
        end = head_end(raw)
        if end is None:
            return ""
        fields = mime_fields(raw[: end[0]])
        content_type = fields.get("content-type", "text/plain")
        kind = content_type.split(";", 1)[0].strip().lower()
        body = raw[end[1]:]
        if kind.startswith("multipart/"):  # its first part: text/plain in an alternative, the body in mixed
            boundary = re.search(r"""boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))""", content_type, re.IGNORECASE)
            if boundary is None:
                return ""
            marker = b"--" + (boundary[1] or boundary[2]).encode("latin-1", "replace")
            start = body.find(marker)
            start = body.find(b"\n", start) if start >= 0 else -1
            if start < 0:
                return ""
            raw = body[start + 1:]
            stop = raw.find(b"\n" + marker)
            raw = raw if stop < 0 else raw[:stop]
            continue
        if kind not in ("text/plain", "text/html") or "attachment" in fields.get("content-disposition", ""):
            return ""
        encoding = fields.get("content-transfer-encoding", "7bit").strip().lower()
        part = body[: OPENING_OCTETS * 2]
        try:
            if encoding == "base64":
                cut = part.rfind(b"\n") if len(part) == OPENING_OCTETS * 2 else -1
                part = binascii.a2b_base64(part[:cut] if cut > 0 else part)  # whole lines: whole quanta
            elif encoding == "quoted-printable":
                part = binascii.a2b_qp(part)
        except (binascii.Error, ValueError):
            return ""
        text = charset_text(part[:OPENING_OCTETS], charset_of(content_type))
        return html_text(text) if kind == "text/html" else text
    return ""
