"""The sensitivity detectors: each a pure function over one part's text, yielding (name, pattern) hits.

    MARKING_CLASSIFIED  high    TOP SECRET, SECRET or CONFIDENTIAL with caveats (SECRET//NOFORN) or on a banner line
    MARKING_HANDLING    medium  CUI, FOUO, FOR OFFICIAL USE ONLY, NOFORN, LES, OFFICIAL-SENSITIVE, PROTECTED A/B/C
    MARKING_CONFIDENTIAL low    "confidential", "internal use only" in running text
    PASSPORT            high    a passport's machine-readable zone with valid ICAO 9303 check digits;
                        medium  a passport number after the word "passport"
    NATIONAL_ID         high    US SSN (area, group, serial rules), and national numbers with their check digits
                                (python-stdnum): Spain DNI, Italy codice fiscale, Finland HETU by their shape;
                                the Netherlands BSN, France NIR, Poland PESEL, Sweden, Denmark, Norway, Germany
                                IdNr, Canada SIN, India Aadhaar after a word naming them
    PAYMENT_CARD        high    13-19 digits with a card network's prefix and a valid Luhn digit
    IBAN                medium  an IBAN with a valid ISO 7064 mod 97 check
    CREDENTIAL          high    "password: value", a private key block, API token shapes (AWS, GitHub, Slack,
                                Google, Stripe, OpenAI-style keys), a JSON web token
    TRAVEL              medium  a booking reference after its name, or flight numbers next to dates
    MEDICAL             medium  two or more distinct medical terms, or an ICD-10 code after "diagnosis"

The value matched is only ever validated and counted: no detector returns it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator

import ahocorasick_rs
from stdnum import iban, luhn
from stdnum.ca import sin
from stdnum.de import idnr
from stdnum.dk import cpr
from stdnum.es import dni
from stdnum.fi import hetu
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.nl import bsn
from stdnum.no import fodselsnummer
from stdnum.pl import pesel
from stdnum.se import personnummer
from stdnum.us import ssn

from rcptguard.content.model import Severity

Hit = tuple[str, Severity, str]  # (signal name, severity, pattern that matched)

_RUN = re.compile(r"[0-9][0-9 -]{3,}")
_RUN_MAPPED = re.compile(rb"0[0 -]{3,}")  # _RUN over ASCII text mapped by _DIGITS: it starts with one literal
_DIGITS = bytes(ord("0") if b in b"0123456789" else b if b in b" -" else ord(".") for b in range(256))
GAP = "\n\n"  # between two windows: no pattern spans it


_KEYWORDS: set[str] = set()


def keywords(*words: str) -> tuple[str, ...]:
    """Words a detector looks for first (lower case); all of them are found in one pass over a text."""
    _KEYWORDS.update(words)
    return words


def written(*words: str) -> tuple[str, ...]:
    """Words a detector looks for as they are written (`Text.holds`): their lower case is found in the one pass."""
    keywords(*(word.lower() for word in words))
    return words


@functools.cache
def _machine() -> tuple[tuple[str, ...], ahocorasick_rs.AhoCorasick, ahocorasick_rs.BytesAhoCorasick]:
    """Aho-Corasick automata of every detector's words (ahocorasick-rs): one pass finds them all. The one over
    octets serves ASCII text (most text is), whose offsets in octets are its offsets in characters; it is the
    faster of the two. A full DFA (some hundred states) reads a text about twice as fast as the library's default."""
    words = tuple(sorted(_KEYWORDS))
    dfa = ahocorasick_rs.Implementation.DFA
    return (words, ahocorasick_rs.AhoCorasick(words, implementation=dfa),
            ahocorasick_rs.BytesAhoCorasick([word.encode() for word in words], implementation=dfa))


class Text:
    """One part's text, prepared once for every detector: its lower-case form, where each detector's words occur
    (one Aho-Corasick pass), and windows of it around numbers or words. A regular expression over 20 KB costs a
    millisecond in Python; so the detectors run their expressions only on the windows around their words or
    around runs of digits (most texts have none)."""

    __slots__ = ("_lower", "_numbers", "_octets", "_positions", "aligned", "raw")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        # ASCII text (most text) is read as octets: its lower case and its digits mapped in C, no str copies
        self._octets = raw.encode("ascii") if raw.isascii() else None
        self._lower: str | None = None
        self._numbers: str | None = None
        self._positions: dict[str, list[int]] | None = None
        # whether offsets in the lower-case text are offsets in the text (not so when a character's lower case is
        # longer, as İ's)
        self.aligned = self._octets is not None or len(self.lower) == len(raw)

    @property
    def lower(self) -> str:
        if self._lower is None:
            self._lower = self.raw.lower()
        return self._lower

    @property
    def positions(self) -> dict[str, list[int]]:
        """Where each registered word occurs in the lower-case text."""
        if self._positions is None:
            words, text_machine, octet_machine = _machine()
            octets = self._octets
            matches = (octet_machine.find_matches_as_indexes(octets.lower(), overlapping=True) if octets is not None
                       else text_machine.find_matches_as_indexes(self.lower, overlapping=True))
            found: dict[str, list[int]] = {}
            for index, start, _end in matches:
                found.setdefault(words[index], []).append(start)
            self._positions = found
        return self._positions

    def has(self, words: Iterable[str]) -> bool:
        positions = self.positions
        return any(word in positions for word in words)

    def holds(self, words: Iterable[str]) -> bool:
        """Whether one of the words (registered with `written`) occurs as it is written, case and all: read from
        where its lower case occurs, instead of another pass over the text for each word."""
        raw, positions = self.raw, self.positions
        if not self.aligned:
            return any(word in raw for word in words)
        return any(raw.startswith(word, at) for word in words for at in positions.get(word.lower(), ()))

    def count(self, words: Iterable[str]) -> int:
        positions = self.positions
        return sum(1 for word in words if word in positions)

    @property
    def numbers(self) -> str:
        """The text around every run of four digits or more (60 characters before, 30 after), windows merged."""
        if self._numbers is None:
            raw, octets = self.raw, self._octets
            if octets is not None:  # every digit one '0', every other octet but space and '-' a '.': the same runs
                runs = _RUN_MAPPED.finditer(octets.translate(_DIGITS))
                self._numbers = self._join((m.start() - 60, m.end() + 30) for m in runs)
            else:
                self._numbers = self._join((m.start() - 60, m.end() + 30) for m in _RUN.finditer(raw))
        return self._numbers

    def around(self, words: Iterable[str], before: int = 10, after: int = 80) -> str:
        """The text around every place one of the words occurs (any case), windows merged; "" when none does."""
        positions = self.positions
        found = [word for word in words if word in positions]
        if not found:  # the usual case
            return ""
        if not self.aligned:  # a character whose lower case is longer: positions do not match
            return self.raw
        return self._join(sorted((at - before, at + len(word) + after) for word in found for at in positions[word]))

    def _join(self, spans: Iterable[tuple[int, int]]) -> str:
        merged: list[list[int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([max(start, 0), end])
        return GAP.join(self.raw[start:end] for start, end in merged)


# -- markings -----------------------------------------------------------------------------------------------

_CLASSIFIED = re.compile(r"\b(TOP SECRET|SECRET|CONFIDENTIAL|STRENG GEHEIM|GEHEIM|VS-VERTRAULICH|TR[ÈE]S SECRET|"
                         r"SECRET D[ÉE]FENSE|CONFIDENTIEL D[ÉE]FENSE)"
                         r"(?://[A-Z][A-Z0-9 ,/-]*|\s*$|\s*\|)", re.MULTILINE)  # also Germany's and France's levels;
# alone on a line, or alone in a table's cell (an HTML mail laid out in tables: extract.html_text)
_PORTION = re.compile(r"^\s*\((TS|S|C)(?://[A-Z ,/-]+)?\)\s", re.MULTILINE)
_HANDLING = re.compile(
    r"\b(CUI|CONTROLLED UNCLASSIFIED INFORMATION|FOUO|FOR OFFICIAL USE ONLY|NOFORN|LAW ENFORCEMENT SENSITIVE|"
    r"OFFICIAL[- ]SENSITIVE|NATO RESTRICTED|PROTECTED [ABC]|Protected [ABC]|LIMDIS|EXDIS|"
    r"(?i:(?:VS[- ])?nur f(?:ü|ue|u)r den dienstgebrauch)|VS-N[fF]D|(?i:diffusion restreinte))\b"
)  # the last ones: Germany's VS-NfD and France's Diffusion Restreinte, often written in lower case
_BANNER = re.compile(r"^[ \t*=-]*(UNCLASSIFIED//[A-Z /,-]+|CUI(?://[A-Z /,-]+)?)[ \t*=-]*(?:$|\|)", re.MULTILINE)
_CONFIDENTIAL = re.compile(r"\b(strictly confidential|confidential|internal use only|vertraulich|confidentiel)\b",
                           re.IGNORECASE)


_HANDLING_WORDS = keywords("cui", "fouo", "official", "noforn", "sensitive", "nato", "protected", "limdis", "exdis",
                           "controlled", "unclassified", "dienstgebrauch", "vs-nfd", "restreinte")
_CLASSIFIED_MARKS = written("SECRET", "CONFIDENTIAL", "GEHEIM", "VS-VERTRAULICH", "CONFIDENTIEL")
_PORTION_MARKS = written("(S", "(TS", "(C")
_BANNER_MARKS = written("CUI", "UNCLASSIFIED//")
_CONFIDENTIAL_WORDS = keywords("confidential", "internal use", "vertraulich")


def markings(text: Text) -> Iterator[Hit]:
    raw = text.raw
    if text.holds(_CLASSIFIED_MARKS):
        for match in _CLASSIFIED.finditer(raw):
            yield "MARKING_CLASSIFIED", Severity.HIGH, match[0].strip().rstrip(" |")[:60]
    if text.holds(_PORTION_MARKS):
        for match in _PORTION.finditer(raw):
            yield "MARKING_CLASSIFIED", Severity.HIGH, f"portion mark ({match[1]})"
    if text.has(_HANDLING_WORDS):
        for match in _HANDLING.finditer(text.around(_HANDLING_WORDS, 40, 40)):
            yield "MARKING_HANDLING", Severity.MEDIUM, match[1].upper()
        if text.holds(_BANNER_MARKS):
            for match in _BANNER.finditer(raw):
                yield "MARKING_HANDLING", Severity.MEDIUM, f"banner line {match[1].strip()[:40]}"
    for match in _CONFIDENTIAL.finditer(text.around(_CONFIDENTIAL_WORDS, 10, 20)):
        yield "MARKING_CONFIDENTIAL", Severity.LOW, match[1].lower()


# -- identity numbers ---------------------------------------------------------------------------------------

_MRZ_LINE2 = re.compile(r"^([A-Z0-9<]{9})([0-9])([A-Z<]{3})([0-9]{6})([0-9])[MFX<]([0-9]{6})([0-9])[A-Z0-9<]{14}"
                        r"[0-9<][0-9]\s*$", re.MULTILINE)
_MRZ_LINE1 = re.compile(r"^P[A-Z<][A-Z<]{3}[A-Z<]{39}\s*$", re.MULTILINE)
_PASSPORT_SHAPE = r"[A-Z]{0,3}[0-9][A-Z0-9]{5,8}"  # a passport number (Spain: three letters, six digits)
_PASSPORT_NUMBER = re.compile(r"\b(?:pass(?:port|eport|ausweis|aporto)|reisepass(?:nummer)?|pasaporte|paspoort|"
                              rf"paszport)\b[^\n\d]{{0,30}}?\b({_PASSPORT_SHAPE})\b", re.IGNORECASE)
_PASSPORT_CELL = re.compile(_PASSPORT_SHAPE)
_MRZ_VALUES = {**{str(d): d for d in range(10)}, **{chr(65 + i): 10 + i for i in range(26)}, "<": 0}


def mrz_check_digit(field: str) -> int:
    """The ICAO 9303 check digit (weights 7, 3, 1; A=10 … Z=35, < = 0): no maintained library offers it."""
    return sum(_MRZ_VALUES[c] * (7, 3, 1)[i % 3] for i, c in enumerate(field)) % 10


_PASSPORT_WORDS = keywords("passport", "passeport", "passausweis", "passaporto", "reisepass", "pasaporte", "paspoort",
                           "paszport")
_MRZ_FILLER = written("<<")
_DELIMITERS = ("\t", " | ", ";", ",", "|")  # between a table's cells: a spreadsheet's or document's text, CSV
TABLE_CHARS = 200_000  # of a table read below its header row, at most
TABLE_HEADERS = 16  # header rows read in one text, at most


def passports(text: Text) -> Iterator[Hit]:
    if text.holds(_MRZ_FILLER) and _MRZ_LINE1.search(text.raw):
        for match in _MRZ_LINE2.finditer(text.raw):
            number, check, _nation, born, born_check, expiry, expiry_check = match.groups()
            if (mrz_check_digit(number) == int(check) and mrz_check_digit(born) == int(born_check)
                    and mrz_check_digit(expiry) == int(expiry_check)):
                yield "PASSPORT", Severity.HIGH, "passport machine-readable zone (ICAO 9303 check digits)"
    for _match in _PASSPORT_NUMBER.finditer(text.around(_PASSPORT_WORDS, 0, 60)):
        yield "PASSPORT", Severity.MEDIUM, "passport number after the word 'passport'"
    for _value in column(text, _PASSPORT_WORDS, _PASSPORT_CELL.fullmatch):
        yield "PASSPORT", Severity.MEDIUM, "passport numbers in a column headed 'passport'"


def column(text: Text, words: tuple[str, ...], valid: Callable[[str], object]) -> Iterator[str]:
    """The cells under a header cell that names one of `words`, that `valid` takes: a table (a crew list) as CSV,
    or as the text of a spreadsheet or of a document's table (cells between tabs, bars, semicolons or commas), read
    down to its first blank line. The word and its number are on different lines there, out of the other
    patterns' reach. The text is read once at most: TABLE_HEADERS header rows, each table at most TABLE_CHARS, and
    a word inside a table already read is not taken for another header."""
    raw = text.raw
    if not text.aligned:  # a character whose lower case is longer: positions do not match (rare)
        return
    positions = text.positions
    read_until, headers = 0, 0
    for at in sorted(at for word in words for at in positions.get(word, ())):
        if at < read_until:
            continue
        start, end = raw.rfind("\n", 0, at) + 1, raw.find("\n", at)
        if end < 0 or headers >= TABLE_HEADERS:
            return
        read_until = end
        header = raw[start:end]
        delimiter = next((d for d in _DELIMITERS if d in header), None)
        if delimiter is None:
            continue
        cells = [cell.strip().lower() for cell in header.split(delimiter)]
        place = next((i for i, cell in enumerate(cells) if len(cell) <= 40 and any(w in cell for w in words)), None)
        if place is None:
            continue
        headers += 1
        stop = min(len(raw), end + 1 + TABLE_CHARS)
        line_start = end + 1
        while line_start < stop:
            line_end = raw.find("\n", line_start, stop)
            line_end = stop if line_end < 0 else line_end
            line = raw[line_start:line_end]
            if not line.strip():
                break
            row = line.split(delimiter)
            if place < len(row) and valid(value := row[place].strip().strip("\"'")):
                yield value
            line_start = line_end + 1
        read_until = line_start


_SSN = re.compile(r"\b(\d{3})-(\d{2})-(\d{4})\b")
_SSN_WORD = re.compile(r"\b(?:SSN|social security(?: number| no\.?)?)\D{0,20}(\d{9}|\d{3} \d{2} \d{4})\b",
                       re.IGNORECASE)
_SSN_WORDS = keywords("ssn", "social security")
# Numbers of a recognisable shape, looked for around runs of digits; one whose runs of digits are too short for
# those windows (a codice fiscale's are of two and three) also around the words that usually come with it.
_SHAPED: list[tuple[str, tuple[str, ...], re.Pattern[str], Callable[[str], bool]]] = [
    ("Spain DNI", (), re.compile(r"\b\d{8}-?[A-Z]\b"), dni.is_valid),
    ("Italy codice fiscale", keywords("fiscale", "fiscal code", "tax code", "c.f.", "cod. fisc"),
     re.compile(r"\b[A-Z]{6}\d{2}[A-EHLMPR-T]\d{2}[A-Z]\d{3}[A-Z]\b"), codicefiscale.is_valid),
    ("Finland HETU", (), re.compile(r"\b\d{6}[-+A]\d{3}[0-9A-Y]\b"), hetu.is_valid),
]
LEAD = 30  # characters kept before a word found, for a pattern that starts before it (client_secret, sécurité sociale)
_WORDED: list[tuple[str, tuple[str, ...], re.Pattern[str], Callable[[str], bool]]] = [
    ("Netherlands BSN", keywords("bsn", "burgerservicenummer"),
     re.compile(r"\b(?:BSN|burgerservicenummer)\D{0,20}(\d{9})\b", re.IGNORECASE), bsn.is_valid),
    ("France NIR", keywords("nir", "sociale", "insee"),
     re.compile(r"\b(?:NIR|s[ée]curit[ée] sociale|INSEE)\D{0,25}([12](?: ?\d){12}(?: ?\d\d)?)\b", re.IGNORECASE),
     nir.is_valid),
    ("Poland PESEL", keywords("pesel"), re.compile(r"\bPESEL\D{0,20}(\d{11})\b", re.IGNORECASE), pesel.is_valid),
    ("Sweden personnummer", keywords("personnummer"),
     re.compile(r"\bpersonnummer\D{0,20}(\d{6,8}[-+]?\d{4})\b", re.IGNORECASE), personnummer.is_valid),
    ("Denmark CPR", keywords("cpr"), re.compile(r"\bCPR\D{0,20}(\d{6}-?\d{4})\b", re.IGNORECASE), cpr.is_valid),
    ("Norway fødselsnummer", keywords("dselsnummer"),
     re.compile(r"\bf(?:ø|o)dselsnummer\D{0,20}(\d{11})\b", re.IGNORECASE), fodselsnummer.is_valid),
    ("Germany IdNr", keywords("steuer", "idnr"),
     re.compile(r"\b(?:Steuer-?ID|Steueridentifikationsnummer|IdNr)\D{0,20}(\d{11}|\d{2} \d{3} \d{3} \d{3})\b",
                re.IGNORECASE), idnr.is_valid),
    ("Canada SIN", keywords("sin", "social insurance"),
     re.compile(r"\b(?:SIN|social insurance(?: number)?)\D{0,20}(\d{3}[- ]?\d{3}[- ]?\d{3})\b", re.IGNORECASE),
     sin.is_valid),
    ("India Aadhaar", keywords("aadhaar"), re.compile(r"\bAadhaar\D{0,20}(\d{4} ?\d{4} ?\d{4})\b", re.IGNORECASE),
     aadhaar.is_valid),
]


def national_ids(text: Text) -> Iterator[Hit]:
    numbers = text.numbers  # every pattern but a codice fiscale has a run of four digits: none in the text, no match
    if numbers:
        yield from _numbered_ids(text, numbers)
    for name, words, pattern, valid in _SHAPED:
        found = [match[0] for match in pattern.finditer(numbers) if valid(match[0])]
        if not found and words:  # found in neither window twice: the word's window only when the digits' had none
            found = [match[0] for match in pattern.finditer(text.around(words, 0, 60)) if valid(match[0])]
        for _number in found:
            yield "NATIONAL_ID", Severity.HIGH, f"{name} (check digit)"


def _undashed_ssn(value: str) -> bool:
    return len(value) == 9 and value.isdigit() and ssn.is_valid(value)


def _numbered_ids(text: Text, numbers: str) -> Iterator[Hit]:
    for match in _SSN.finditer(numbers):
        if ssn.is_valid(match[0]):
            yield "NATIONAL_ID", Severity.HIGH, "US SSN (area, group and serial rules)"
    after_word = set()
    for match in _SSN_WORD.finditer(text.around(_SSN_WORDS, 0, 60)):
        if ssn.is_valid(number := match[1].replace(" ", "")):
            after_word.add(number)
            yield "NATIONAL_ID", Severity.HIGH, "US SSN after 'SSN'"
    for value in column(text, _SSN_WORDS, _undashed_ssn):  # written with dashes, `_SSN` found it already
        if value not in after_word:  # the first row is near enough the word
            yield "NATIONAL_ID", Severity.HIGH, "US SSN in a column headed 'SSN'"
    for name, words, pattern, valid in _WORDED:
        for match in pattern.finditer(text.around(words, LEAD, 60)):
            if valid(match[1]):
                yield "NATIONAL_ID", Severity.HIGH, f"{name} (check digit)"


_CARD = re.compile(r"(?<![\d-])\d[\d -]{11,35}\d(?![\d-])")
_CARD_PREFIX = re.compile(r"4|5[1-5]|2(?:2[2-9]|[3-6]\d|7[01]|720)|3[47]|6(?:011|5|4[4-9])|35(?:2[89]|[3-8]\d)|"
                          r"3(?:0[0-5]|[68])")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")


def payment_cards(text: Text) -> Iterator[Hit]:
    for match in _CARD.finditer(text.numbers):
        digits = match[0].replace(" ", "").replace("-", "")
        if (13 <= len(digits) <= 19 and "  " not in match[0] and "--" not in match[0] and _CARD_PREFIX.match(digits)
                and luhn.is_valid(digits) and len(set(digits)) > 1):
            yield "PAYMENT_CARD", Severity.HIGH, "payment card number (network prefix and Luhn check)"


def ibans(text: Text) -> Iterator[Hit]:
    for match in _IBAN.finditer(text.numbers):
        if iban.is_valid(match[0]):
            yield "IBAN", Severity.MEDIUM, "IBAN (mod 97 check)"


# -- credentials --------------------------------------------------------------------------------------------

_PASSWORD = re.compile(r"\b(?:password|passwd|pwd|passcode|pass ?phrase|kennwort|passwort|mot de passe|contraseña)"
                       r"\s*(?P<sep>is\s*[:=-]?|:|=|-)\s*[\"']?(?=\S*[A-Za-z0-9])(?P<value>[^\s\"']{4,})",
                       re.IGNORECASE)
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----")
_PASSWORD_WORDS = keywords("password", "passwd", "pwd", "passcode", "pass phrase", "passphrase", "kennwort",
                           "passwort", "mot de passe", "contraseña")
_PRIVATE_KEY_MARK = written("PRIVATE KEY")
_TOKENS = [
    ("AWS access key id", keywords("akia", "asia"), re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("GitHub token", keywords("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_"),
     re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b|\bgithub_pat_[A-Za-z0-9_]{40,}\b")),
    ("Slack token", keywords("xox"), re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b")),
    ("Google API key", keywords("aiza"), re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("Stripe secret key", keywords("k_live_"), re.compile(r"\b[sr]k_live_[0-9A-Za-z]{20,}\b")),
    ("secret API key", keywords("sk-"), re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{32,}\b")),
    ("JSON web token", keywords("eyj"),
     re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}")),
    ("API key assignment", keywords("key", "token", "secret"),
     re.compile(r"\b(?:api[_-]?key|secret[_-]?key|access[_-]?token|client[_-]?secret)\s*[:=]\s*"
                r"[\"']?[A-Za-z0-9_\-/+]{16,}", re.IGNORECASE)),
]


def credentials(text: Text) -> Iterator[Hit]:
    for match in _PASSWORD.finditer(text.around(_PASSWORD_WORDS, 0, 120)):
        value = match["value"].rstrip(".,;!?")
        if match["sep"].strip().lower() in ("is", "-") and value.isalpha() and value[1:].islower():
            continue  # prose: "the password is required", "password - please reset it" (a value after ':' counts)
        yield "CREDENTIAL", Severity.HIGH, "a password after the word 'password'"
    if text.holds(_PRIVATE_KEY_MARK):
        for _match in _PRIVATE_KEY.finditer(text.raw):
            yield "CREDENTIAL", Severity.HIGH, "private key block"
    for name, words, pattern in _TOKENS:
        for _match in pattern.finditer(text.around(words, LEAD, 200)):
            yield "CREDENTIAL", Severity.HIGH, name


# -- travel and health --------------------------------------------------------------------------------------

_BOOKING = re.compile(r"\b(?:booking|confirmation|reservation|record locator|PNR)"
                      r"(?: ref(?:erence)?| code| number| no\.?)?\s*[:#]?\s*[A-Z0-9]{6}\b", re.IGNORECASE)
_FLIGHT = re.compile(r"\b(?:[A-Z]{2}|[A-Z]\d|\d[A-Z])\s?\d{2,4}\b")
_DATE = re.compile(r"\b(?:\d{1,2}[ -](?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*[ -]\d{2,4}|"
                   r"\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4}|\d{1,2}\.\d{1,2}\.\d{2,4}|"
                   r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d{1,2}(?:st|nd|rd|th)?,? \d{4}|"
                   r"\d{2}(?:JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC))\b")
_FLIGHT_WORDS = re.compile(r"\b(?:flight|depart(?:ure|s)?|arriv(?:al|es)|boarding|itinerary|gate|seat|"
                           r"flug|abflug|ankunft|vuelo|volo)\b", re.IGNORECASE)
_MEDICAL = re.compile(
    r"\b(diagnos[ie]s|diagnosed|prognosis|patient|medical record|medical history|prescription|prescribed|"
    r"oncology|chemotherapy|HIV|hepatitis|psychiatric|mental health|blood test|biopsy|allerg(?:y|ies)|"
    r"medication|dosage|surgery|pregnan(?:t|cy)|disability|sick leave|tumou?r|cancer|diabetes|MRI|"
    r"health record|treatment plan|"
    r"krankmeldung|arbeitsunf[äa]hig(?:keit)?|medikament(?:e|ion)?|"
    r"ordonnance|arr[êe]t maladie|baja m[ée]dica|receta m[ée]dica|historia cl[íi]nica|dossier m[ée]dical|"
    r"krankheit|chemotherapie|schwanger(?:schaft)?|grossesse|embarazo)\b", re.IGNORECASE)
# (the last lines: the same in German, French and Spanish; not their words for diagnosis or finding, said as often of
# a network or a server)
_ICD10 = re.compile(r"\b(?:diagnos[ie]s|ICD-?10)\D{0,20}[A-TV-Z]\d{2}(?:\.\d{1,2})?\b", re.IGNORECASE)


_BOOKING_WORDS = keywords("booking", "confirmation", "reservation", "record locator", "pnr")
_FLIGHT_KEYS = keywords("flight", "depart", "arriv", "boarding", "itinerary", "gate", "seat", "flug", "ankunft",
                        "vuelo", "volo")


def travel(text: Text) -> Iterator[Hit]:
    for _match in _BOOKING.finditer(text.around(_BOOKING_WORDS, 0, 60)):
        yield "TRAVEL", Severity.MEDIUM, "booking reference"
    if text.has(_FLIGHT_KEYS) and _FLIGHT_WORDS.search(text.around(_FLIGHT_KEYS, 2, 12)) and \
            _DATE.search(text.numbers):
        flights = {m[0].replace(" ", "") for m in _FLIGHT.finditer(text.numbers)}
        if flights:
            yield "TRAVEL", Severity.MEDIUM, "flight numbers with dates"


_MEDICAL_STEMS = keywords("diagnos", "prognos", "patient", "medical", "prescri", "oncolog", "chemo", "hiv", "hepatitis",
                  "psychiatr", "mental health", "blood test", "biopsy", "allerg", "medication", "dosage", "surgery",
                  "pregnan", "disabilit", "sick leave", "tumo", "cancer", "diabetes", "mri", "health record",
                  "treatment plan", "krankmeldung", "arbeitsunf", "medikament", "ordonnance",
                  "maladie", "baja m", "receta m", "historia cl", "dossier m", "krankheit", "schwanger", "grossesse",
                  "embarazo")


_ICD_WORDS = keywords("diagnos", "icd")


def medical(text: Text) -> Iterator[Hit]:
    if text.count(_MEDICAL_STEMS) >= 2:
        terms = {m[1].lower() for m in _MEDICAL.finditer(text.around(_MEDICAL_STEMS, 4, 30))}
        if len(terms) >= 2:
            yield "MEDICAL", Severity.MEDIUM, f"{len(terms)} medical terms"
    for _match in _ICD10.finditer(text.around(_ICD_WORDS, 0, 60)):
        yield "MEDICAL", Severity.MEDIUM, "ICD-10 code after 'diagnosis'"


# -- all of them --------------------------------------------------------------------------------------------


def _words(*groups: tuple[str, ...]) -> frozenset[str]:
    return frozenset(word.lower() for group in groups for word in group)


Detector = Callable[[Text], Iterator[Hit]]
# Each detector with what it cannot find anything without: one of its words in the text, or a run of digits
# (`Text.numbers`). A text that has neither is not given to it (most mail has none of most detectors' words).
GATED: tuple[tuple[Detector, frozenset[str], bool], ...] = (
    (markings, _words(_CLASSIFIED_MARKS, _PORTION_MARKS, _HANDLING_WORDS, _CONFIDENTIAL_WORDS), False),
    (passports, _words(_MRZ_FILLER, _PASSPORT_WORDS), False),
    (national_ids, _words(*(words for _, words, _, _ in _SHAPED)), True),  # the codice fiscale's words, or digits
    (payment_cards, frozenset(), True),
    (ibans, frozenset(), True),
    (credentials, _words(_PASSWORD_WORDS, _PRIVATE_KEY_MARK, *(words for _, words, _ in _TOKENS)), False),
    (travel, _words(_BOOKING_WORDS, _FLIGHT_KEYS), False),
    (medical, _words(_MEDICAL_STEMS, _ICD_WORDS), False),
)
DETECTORS: tuple[Detector, ...] = tuple(detector for detector, _, _ in GATED)


def detect(text: Text) -> Iterator[Hit]:
    """Every detector's hits in one text, each detector run only when the text has what it needs."""
    present = text.positions.keys()
    for detector, words, digits in GATED:
        if (digits and text.numbers) or not words.isdisjoint(present):
            yield from detector(text)


# -- attachments --------------------------------------------------------------------------------------------

KEY_FILES = (".pem", ".key", ".p12", ".pfx", ".kdbx", ".ppk", ".ovpn", ".jks", ".keystore", ".asc")
KEY_NAMES = ("id_rsa", "id_ed25519", "id_ecdsa", ".env", "credentials", "shadow")
_NAMES = re.compile(r"passport|visa|crew|manifest|payroll|salar|medical|patient|diagnos|classified|secret|"
                    r"confidential|itinerar|boarding|personnel|roster|ssn|tax[ _-]?return|bank[ _-]?details",
                    re.IGNORECASE)


def attachment(filename: str, content_type: str) -> Iterator[Hit]:
    name = filename.lower()
    if name.endswith(KEY_FILES) or name.rsplit("/", 1)[-1] in KEY_NAMES or content_type in {
            "application/x-pkcs12", "application/pkcs8", "application/x-pem-file"}:
        yield "ATTACHMENT_KEYS", Severity.HIGH, f"key or password file ({content_type})"
    found = _NAMES.search(filename)
    if found is not None:
        yield "ATTACHMENT_NAME", Severity.MEDIUM, f"attachment named like '{found[0].lower()}'"
