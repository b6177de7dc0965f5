"""Whom a message greets, and whether its recipients answer to that name: a wrong person caught by the text.

    greeting_of("Hi Nils,\n\nthe figures you asked for...")   # Greeting(first=('nils',))
    greeting_of("Dear Dr Martin,")                             # Greeting(last=('martin',))
    unanswered(greeting, {"olga.smith@kavale.de": ""})         # ('nils',): nobody on the message is Nils

A person who picks the wrong entry from the address book (the next one down, a namesake's) still writes to the one
meant: "Hi Nils," to olga.smith@kavale.de. The envelope alone cannot tell that pick from a real message to Olga;
the opening line can. `opening` reads the first lines of a message's first text part cheaply (one part, a few
kilo-octets, no email parser for the usual shapes), `greeting_of` finds the names greeted there (first names, or a
last name after a title), and `answers` says whether a recipient could be that person: by a word of the local part
or of the display name that is the name or starts with it, an initial (n.martin), or a nickname of it (Bob,
robert.smith; the `nicknames` package's list of English given names); a local part of one word (nmartin, olga) may
be anybody's, a role's (info, accounts.payable) everybody's. Anything doubtful counts as an answer: the check only
speaks when no address on the message can be the person greeted, and history (judge.py) then says whom the sender
writes to by that name at the recipient's domain.
"""

from __future__ import annotations

import binascii
import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import getaddresses

from nicknames import NickNamer

from rcptguard.content.extract import (
    charset_of,
    charset_text,
    head_end,
    html_text,
    mime_fields,
    transfer_decoded,
)
from rcptguard.sources.addresses import decode_words, header_fields, header_text

__all__ = ["NOBODY_GREETED", "Greeting", "answers", "greeting_of", "header_addresses", "opening", "spells",
           "unanswered", "words_of"]

OPENING_OCTETS = 2048  # of the first text part, decoded: a greeting is on its first lines
OPENING_SCAN = 262_144  # octets of a message walked to find that part
HEADER_CHARS = 16_384  # of the To and Cc fields read for addresses and display names
LINES = 3  # non-empty lines looked at
MAX_LINE = 80  # characters: a longer line is no greeting
OPENING_CHARS = 1024  # of the text, where those lines are
PARTS = 8  # MIME parts walked to find the first text part
MAX_NAMES = 3  # names greeted that nobody answers to, looked for in history (a longer list says little)


def _listed(words: str) -> frozenset[str]:
    return frozenset(words.split())


_SALUTE = (r"hi|hello|hey|hiya|dear|dearest|greetings|good\s+(?:morning|afternoon|evening|day)|morning|"
           r"hallo|hall[oö]chen|moin|servus|guten\s+(?:tag|morgen|abend)|gr[uü](?:e|ü)?(?:ß|ss)\s+dich|liebe[rs]?|"
           r"sehr\s+geehrte[rs]?|"
           r"bonjour|bonsoir|salut|coucou|cher|ch[eè]re|chers|ch[eè]res|hola|buenos\s+d[ií]as|estimad[oa]s?|"
           r"ciao|salve|buongiorno|buonasera|gentile|caro|cara|hej|hei|hoi|beste|goedemorgen|ol[aá]|prezad[oa]")
_TITLE = (r"mr|mrs|ms|miss|mx|dr|prof|professor|sir|madam|herr|frau|monsieur|madame|mme|mlle|m|se[ñn]or|se[ñn]ora|"
          r"sr|sra|don|do[ñn]a|signor|signora|sig|dott|dottoressa|avv|ing|dipl|mag|mevrouw|meneer|dhr|mevr")
# each part of a greeting matched on its own, anchored, with no nested repetition: a line of 80 characters is read in
# one pass whatever it holds
_SALUTED = re.compile(rf"\s*(?:{_SALUTE})\b[\s,]*", re.IGNORECASE)
_TITLED = re.compile(rf"(?:{_TITLE})\.?\s+", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+(?:[-'’][^\W\d_]+)*")
_JOINERS = re.compile(r"\s*[,&+/]\s*|\s+(?:and|und|et|y|e|en|og|och)\s+", re.IGNORECASE)
# the first words of the salutes and titles above: a line that starts otherwise and ends with no comma is passed
# over without the regular expressions (tests/unit/test_greeting.py checks every salute and title starts with one)
_OPENERS = _listed("""
hi hello hey hiya dear dearest greetings good morning hallo hallöchen hallochen moin servus guten grüß grüss gruss
grüsse grüße gruess liebe lieber liebes sehr bonjour bonsoir salut coucou cher chère chere chers chères cheres hola
buenos estimado estimada estimados estimadas ciao salve buongiorno buonasera gentile caro cara hej hei hoi beste
goedemorgen olá ola prezado prezada mr mrs ms miss mx dr prof professor sir madam herr frau monsieur madame mme
mlle m señor senor señora senora sr sra don doña dona signor signora sig dott dottoressa avv ing dipl mag mevrouw
meneer dhr mevr
""")
# the addresses of a role, which anyone may read: a recipient with one of these words answers to every name
ROLES = _listed("""
info office contact contacts sales support help helpdesk admin administrator team hello mail post postmaster
kontakt service services customer customers care hr jobs careers billing accounts account accounting payable
receivable invoices invoice finance orders order booking bookings reservations reception enquiries inquiries press
media marketing legal compliance security noreply no reply webmaster it ops operations procurement purchasing
desk general secretariat sekretariat verwaltung buchhaltung vertrieb bureau secretariaat administratie events
studio library donations contracts shared group list staff board
""")
# words after a greeting that are nobody's name
NOBODY = ROLES | _listed("""
all everyone everybody team teams folks guys both there you sir sirs madam madame colleagues colleague friends
friend partners partner customer customers client clients members member people ladies gentlemen gents y'all
yall together again thanks thank welcome back alle allerseits zusammen team kollegen kolleginnen
kollegin kollege damen herren leute ihr tous toutes vous collègues collegues équipe equipe amis todos todas
equipo compañeros colegas tutti tutte ragazzi colleghi allemaal iedereen collega's collegas hello hi hey dear
morning afternoon evening day good mr mrs ms miss mx dr prof professor herr frau monsieur mme mlle yes no ok okay
sure cheers regards best thanks fyi re fw fwd
""")
_NICKNAMES = NickNamer()


@dataclass(frozen=True, slots=True)
class Greeting:
    """The names a message's opening greets (in lower case): first names, or last names after a title."""

    first: tuple[str, ...] = ()
    last: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.first or self.last)


NOBODY_GREETED = Greeting()


def fold(word: str) -> str:
    """A name in lower case, its letters alone, without accents (Zoë, zoe; O'Brien, obrien), as addresses spell it."""
    lowered = word.casefold().replace("ø", "o").replace("æ", "ae").replace("ł", "l").replace("đ", "d")
    return "".join(c for c in unicodedata.normalize("NFKD", lowered) if c.isalpha() and not unicodedata.combining(c))


def forms(name: str) -> tuple[str, ...]:
    """The ways an address may spell a greeted name (kept as greeted, lower case): Müller as muller and mueller,
    Søren as soren and soeren, Åse as ase and aase."""
    plain = fold(name)
    lowered = name.casefold()
    for letter, spelled in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ø", "oe"), ("å", "aa")):
        lowered = lowered.replace(letter, spelled)
    written = fold(lowered)
    return (plain,) if written == plain else (plain, written)


def greeting_of(text: str) -> Greeting:
    """The names greeted on the first `LINES` non-empty lines of `text` (quoted lines skipped): a salute or a title
    and one or more names ("Hi Nils,", "Dear Nils and Carla,", "Dear Dr Martin,"), or, on the first line alone, one
    name and a comma ("Nils,"). A line that starts otherwise is passed over ("Re: figures"); a salute followed by
    anything but names ("Hello, I hope...", "Hi all,") greets nobody by name."""
    seen = 0
    for raw_line in text[:OPENING_CHARS].splitlines():
        line = raw_line.strip()
        if not line or line.startswith(">"):
            continue
        seen += 1
        if seen > LINES or len(line) > MAX_LINE:
            return NOBODY_GREETED
        opener = line.split(None, 1)[0].rstrip(",:!.").casefold()
        if opener not in _OPENERS and not (seen == 1 and line.endswith(",")):
            continue
        found = _greeted(line)
        if found is not None:
            return found
        if opener in _OPENERS:  # a salute, and no names alone after it
            return NOBODY_GREETED
    return NOBODY_GREETED


def _greeted(line: str) -> Greeting | None:
    """The names one line greets, or None when it is no greeting of names."""
    rest, saluted = line, False
    salute = _SALUTED.match(rest)
    if salute is not None:
        rest, saluted = rest[salute.end():], True
    title = _TITLED.match(rest)
    if title is not None:
        rest = rest[title.end():]
    if not saluted and title is None and not rest.endswith(","):
        return None  # a name alone must be followed by its comma: "Nils," (not "Nils wrote:")
    rest = rest.rstrip().rstrip(",:!;.").rstrip()
    items = _JOINERS.split(rest)
    if not rest or any(not item for item in items) or (not saluted and title is None and len(items) > 1):
        return None
    names = []
    for item in items:
        words = item.split()
        if not 1 <= len(words) <= 2 or not all(_WORD.fullmatch(w) for w in words):
            return None
        names.append(words[-1 if title is not None else 0].casefold())
    kept = tuple(dict.fromkeys(n for n in names if fold(n) not in NOBODY and len(fold(n)) >= 2))
    if len(kept) != len(dict.fromkeys(names)):  # "Hi all", or "Hi Nils and team": not names alone
        return NOBODY_GREETED
    return Greeting(last=kept) if title is not None else Greeting(first=kept)


def words_of(text: str) -> list[str]:
    """The words of a local part or display name, folded: ann.lee84 -> ann, lee."""
    return [w for w in (fold(part) for part in re.split(r"[\W\d_]+", text)) if w]


@functools.lru_cache(maxsize=4096)
def shortened(name: str) -> frozenset[str]:
    """What a first name is called for short, of the names the nicknames list gives it: those of three letters or
    more that begin as it begins and are shorter (robert: rob, robby; stephen: steph, steve; richard: rich, rick;
    david: dave). The list also gives names of other people (john: ian, jack; emily: emma; patrick: peter), words
    (david: day) and names a shortening hides (robert: bob, bill): none of them is what an address is spelled from."""
    return frozenset(nick for nick in _NICKNAMES.nicknames_of(name)
                     if 3 <= len(nick) < len(name) and nick.isalpha() and nick[:3] == name[:3])


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
    answer. A local part of one word (nmartin, mueller, olga, isaacj) may be anybody's, and a role's (info,
    accounts.payable) everybody's; one of several words answers by a word, a nickname, a word starting with the
    name (nilsm) or an initial (n.martin)."""
    words = words_of(address.rpartition("@")[0])
    if len(words) < 2 or any(w in ROLES for w in words):
        return True
    said = words_of(display)
    both = (*words, *said)
    for form in forms(name):
        if form in both or fold(display).startswith(form):
            return True
        if last:
            if any(w.endswith(form) or w.startswith(form) for w in both):
                return True
            continue
        names = aliases(form)
        if any(w in names for w in both) or any(w.startswith(n) for w in both for n in names if len(n) >= 3):
            return True  # a nickname, or a word that starts with the name
        if any(len(w) == 1 and any(n[0] == w for n in names) for w in words):
            return True  # n.martin
    return False


def spells(name: str, address: str, *, last: bool = False) -> bool:
    """Whether `address` is plainly the address of somebody called `name`: its first word (nils.martin, or a
    nickname's: robert.king for Bob), or the last after a title (nils.martin for Mr Martin). Stricter than
    `answers`: this finds whom the sender meant, `answers` whom a recipient may be."""
    words = words_of(address.rpartition("@")[0])
    if len(words) < 2:
        return False
    return any(words[-1] == form if last else words[0] in aliases(form) for form in forms(name))


def unanswered(greeting: Greeting, recipients: Mapping[str, str]) -> tuple[str, ...]:
    """The names greeted that no recipient (address -> display name) answers to, `MAX_NAMES` at most."""
    missing = [n for n in greeting.first if not any(answers(n, a, d) for a, d in recipients.items())]
    missing += [n for n in greeting.last if not any(answers(n, a, d, last=True) for a, d in recipients.items())]
    return tuple(missing[:MAX_NAMES])


def header_addresses(raw: bytes) -> dict[str, str]:
    """Every address of a message's To and Cc fields, in lower case, with its display name ("" when it has none):
    those the message was written to, whether or not this door delivers to them."""
    end = head_end(raw)
    if end is None:
        return {}
    fields, _ = header_fields(raw[: end[0]])
    values = [header_text(value, words=False)[0][:HEADER_CHARS] for name in (b"to", b"cc")
              for value in fields.get(name, ())]
    try:
        pairs = getaddresses(values)
    except (RecursionError, ValueError, IndexError):  # comments nested beyond the parser: nobody named
        return {}
    return {address.lower(): decode_words(name) if "=?" in name else name for name, address in pairs if "@" in address}


def opening(raw: bytes) -> str:
    """The first lines of a message's first text part (plain text, else HTML as text), decoded: `OPENING_OCTETS`
    of it at most. Multipart messages are walked by their boundaries within the first `OPENING_SCAN` octets,
    `PARTS` parts at most; "" when there is no text part to read there."""
    raw = raw[:OPENING_SCAN]
    for _ in range(PARTS):
        if raw.startswith((b"\r\n", b"\n")):  # a part with no header fields: text/plain
            raw = b"Content-Type: text/plain\r\n" + raw[:OPENING_OCTETS * 2]
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
        if encoding == "base64" and len(part) == OPENING_OCTETS * 2 and (cut := part.rfind(b"\n")) > 0:
            part = part[:cut]  # cut at whole lines: whole quanta
        try:
            part = transfer_decoded(part, encoding)
        except (binascii.Error, ValueError):
            return ""
        text = charset_text(part[:OPENING_OCTETS], charset_of(content_type))
        return html_text(text) if kind == "text/html" else text
    return ""
