"""Parse recipient addresses once and normalise their domains (UTS-46, Public Suffix List).

Malformed input is returned as a `Malformed` value with a reason, never raised: a gateway must be able to
answer every input without a traceback.

The Public Suffix List comes from the `publicsuffixlist` package (ICANN section only: mail goes to
registrable domains, not to private hosting suffixes). Refresh it with `pip install -U publicsuffixlist`, or
point `psl_file` in the config at a newer `public_suffix_list.dat`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import idna
from publicsuffixlist import PublicSuffixList

from rcptguard.errors import DomainError as DomainError  # noqa: PLC0414 - re-exported: the same class under its old home
from rcptguard.model import Address, Domain, Malformed

MAX_DOMAIN = 253  # octets of the A-label form, without the trailing dot (RFC 1035)
MAX_LABEL = 63
MAX_LOCAL = 64  # octets (RFC 5321 4.5.3.1.1)
MAX_ADDRESS = 254  # octets of local@domain (RFC 5321 forward-path of 256 less the angle brackets)
MAX_INPUT = 4096  # characters looked at before anything else

_LDH_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)\Z")
_LDH_DOMAIN = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)(?:\.(?!-)[a-z0-9-]{1,63}(?<!-))*\Z")
_ATEXT = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\x80-\U0010ffff]+\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")  # C0, DEL, C1 (NEL), line/paragraph separators
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u2028\u2029]")
# A plain dot-atom address, optionally in angle brackets: the common case, answered in one match;
# everything else takes the careful path below.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_SIMPLE = re.compile(rf"<?({_ATOM}(?:\.{_ATOM})*)@([A-Za-z0-9.-]{{1,253}})>?")
_QUOTED = re.compile(r'"((?:[^"\\\r\n]|\\[\x20-\x7e])*)"\Z')


class _SuffixList:
    """The Public Suffix List, with look-ups memoised on the few labels that can decide them.

    A domain's public suffix depends only on its last N labels, N being the depth of the longest rule under
    its top-level label (1 for com, 3 for uk's `*.sch.uk`). Memoising on that tail makes the look-up for the
    common top-level domains a dictionary hit, whatever the number of distinct domains.
    """

    def __init__(self, psl: PublicSuffixList) -> None:
        self.psl = psl
        rules = getattr(psl, "_publicsuffix", None)
        self.depth: dict[str, int] = {}
        self.default_depth = 1
        if rules is None:  # another version of the package: no shortcut, always correct
            self.default_depth = 64
        else:
            for rule in rules:
                name = rule.lstrip("!")
                tld = name.rsplit(".", 1)[-1]
                self.depth[tld] = max(self.depth.get(tld, 1), name.count(".") + 1)
        self.lookup = lru_cache(maxsize=16384)(self._lookup)

    def _lookup(self, tail: str) -> str:
        suffix: str | None = self.psl.publicsuffix(tail, accept_unknown=True)
        return suffix or tail.rsplit(".", 1)[-1]

    def suffix(self, ascii_domain: str) -> str:
        tld = ascii_domain[ascii_domain.rfind(".") + 1 :]
        depth = self.depth.get(tld, self.default_depth)
        if depth == 1:
            return tld
        labels = ascii_domain.split(".")
        return self.lookup(".".join(labels[-depth:]))


_psl = _SuffixList(PublicSuffixList(only_icann=True))


def use_suffix_list(path: Path) -> None:
    """Load a newer `public_suffix_list.dat` than the one the package ships."""
    global _psl  # noqa: PLW0603 - one list per process, replaced only at configuration time
    with path.open("rb") as source:
        _psl = _SuffixList(PublicSuffixList(source, only_icann=True))
    normalize_domain.cache_clear()
    from rcptguard.typos import suffixes  # noqa: PLC0415 - the typo model reads this module's list lazily

    suffixes.real_tlds.cache_clear()
    suffixes.country_codes.cache_clear()
    suffixes.nearest.cache_clear()
    suffixes.neighbourhood.cache_clear()
    suffixes.fix_for.cache_clear()
    suffixes.is_suffix_slip.cache_clear()


def psl_top_labels() -> frozenset[str]:
    """The top-level labels the Public Suffix List in use has rules for, in A-label form."""
    out = set()
    for label in _psl.depth:
        try:
            out.add(label if label.isascii() else idna.encode(label, uts46=True).decode("ascii"))
        except (idna.IDNAError, UnicodeError):
            continue
    return frozenset(out)


def suffix_depth(tld: str) -> int:
    """The most labels a public suffix under this top-level label has (1 for com, 2 for uk's co.uk)."""
    return _psl.depth.get(tld, _psl.default_depth)


def public_suffix(ascii_domain: str) -> str:
    """The public suffix of an A-label domain; an unlisted top-level label counts as a suffix."""
    return _psl.suffix(ascii_domain)


def is_public_suffix(ascii_domain: str) -> bool:
    return public_suffix(ascii_domain) == ascii_domain


@lru_cache(maxsize=65536)
def normalize_domain(raw: str) -> Domain:
    """Normalise a domain to lower case A-label and U-label forms; raise DomainError if it is not one."""
    text = raw.removesuffix(".")
    if not text:
        raise DomainError("the domain is empty")
    if _SPACE_OR_CONTROL.search(text):
        raise DomainError("the domain contains spaces or control characters")
    if text.isascii():
        ascii_form = text.lower()
        if "xn--" in ascii_form:
            try:
                unicode_form = idna.decode(ascii_form)
                ascii_form = idna.encode(unicode_form, uts46=True).decode("ascii")
            except (idna.IDNAError, UnicodeError) as exc:
                raise DomainError(f"the domain is not a valid internationalised name ({exc})") from None
        else:
            unicode_form = ascii_form
    else:
        try:
            ascii_form = idna.encode(text, uts46=True).decode("ascii")
            unicode_form = idna.decode(ascii_form)
        except (idna.IDNAError, UnicodeError) as exc:
            raise DomainError(f"the domain is not a valid internationalised name ({exc})") from None
    _check_ascii_domain(ascii_form)
    return Domain(ascii=ascii_form, unicode=unicode_form, suffix=public_suffix(ascii_form))


def _check_ascii_domain(domain: str) -> None:
    if len(domain) <= MAX_DOMAIN and _LDH_DOMAIN.match(domain) and not domain[domain.rfind(".") + 1 :].isdigit():
        return  # the usual case, in one match; otherwise find what is wrong, for the message
    if len(domain) > MAX_DOMAIN:
        raise DomainError(f"the domain is {len(domain)} characters long; at most {MAX_DOMAIN} are allowed")
    labels = domain.split(".")
    for label in labels:
        if not label:
            raise DomainError("the domain has an empty label (two dots in a row, or a leading dot)")
        if len(label) > MAX_LABEL:
            raise DomainError(f"a label of the domain is {len(label)} characters long; at most 63 are allowed")
        if not _LDH_LABEL.match(label):
            raise DomainError(f"the label {label[:40]!r} has characters a domain name cannot have")
    if labels[-1].isdigit():
        raise DomainError("the domain ends in a number: an IP address is not a mail domain")


def parse_address(raw: str) -> Address | Malformed:
    """Parse one recipient: `user@example.com`, `<user@example.com>`, `Name <user@example.com>`,
    quoted local parts, UTF-8 local parts, IDN domains in either form, a trailing dot, any case.

    Remembered for addresses of a sane length (the same address comes back with every message, and a door parses
    it at RCPT, for the history's keys and for the learner): the result is a value nobody changes."""
    return _parse_remembered(raw) if len(raw) <= MAX_ADDRESS + 2 else _parse_address(raw)


@lru_cache(maxsize=16384)
def _parse_remembered(raw: str) -> Address | Malformed:
    return _parse_address(raw)


def _parse_address(raw: str) -> Address | Malformed:
    simple = _SIMPLE.fullmatch(raw)
    if simple is not None and len(simple[1]) <= MAX_LOCAL and (raw[0] == "<") == (raw[-1] == ">"):
        try:
            domain = normalize_domain(simple[2])
        except DomainError as exc:
            return Malformed(raw, str(exc))
        if len(simple[1]) + 1 + len(domain.ascii) <= MAX_ADDRESS:
            return Address(local=simple[1], domain=domain)
    if len(raw) > MAX_INPUT:
        return Malformed(raw[:80] + "...", f"the address is {len(raw)} characters long")
    text = raw.strip(" \t")
    if _CONTROL.search(text):
        return Malformed(raw, "the address contains a line break, NUL or another control character")
    if text.endswith(">") and "<" in text:
        text = _strip_angle_brackets(text)
    if not text:
        return Malformed(raw, "the address is empty")
    local, sep, domain_text = _split_local(text)
    if not sep:
        return Malformed(raw, local)
    if not local:
        return Malformed(raw, "the address has nothing before the @")
    if "@" in domain_text:
        return Malformed(raw, "the address has more than one @")
    if not domain_text:
        return Malformed(raw, "the address has no domain after the @")
    if domain_text.startswith("["):
        return Malformed(raw, "the address names an IP address instead of a domain")
    if not local.startswith('"') and (
        ".." in local or local.startswith(".") or local.endswith(".") or not _ATEXT.match(local.replace(".", ""))
    ):
        return Malformed(raw, "the part before the @ has characters an address cannot have unquoted")
    local_octets = len(local.encode("utf-8", "surrogatepass"))
    if local_octets > MAX_LOCAL:
        return Malformed(raw, f"the part before the @ is {local_octets} octets long; at most 64 are allowed")
    try:
        domain = normalize_domain(domain_text)
    except DomainError as exc:
        return Malformed(raw, str(exc))
    if local_octets + 1 + len(domain.ascii) > MAX_ADDRESS:
        return Malformed(raw, f"the address is longer than {MAX_ADDRESS} octets")
    return Address(local=local, domain=domain)


def _strip_angle_brackets(text: str) -> str:
    """`<path>` or `Display Name <path>` -> `path`, finding the `<` that opens the path outside any quotes."""
    opening, quoted, escaped = -1, False, False
    for i, ch in enumerate(text[:-1]):
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            opening = i
    return text[opening + 1 : -1].strip() if opening >= 0 else text


def _split_local(text: str) -> tuple[str, str, str]:
    """Split at the @ that ends the local part; on failure the first item is the reason."""
    if text.startswith('"'):
        end = 1
        while end < len(text):
            if text[end] == "\\":
                end += 2
                continue
            if text[end] == '"':
                break
            end += 1
        if end >= len(text) or not _QUOTED.match(text[: end + 1]):
            return "the quoted part before the @ is not closed", "", ""
        rest = text[end + 1 :]
        if not rest.startswith("@"):
            return "the quoted part must be followed by @", "", ""
        return text[: end + 1], "@", rest[1:]
    if "@" not in text:
        return "the address has no @", "", ""
    local, _, domain = text.partition("@")
    return local, "@", domain


def to_ascii(name: str) -> str:
    """`name` with its U-labels encoded (`xn--…`, UTS-46), or unchanged when it is ASCII or cannot be encoded."""
    if name.isascii():
        return name
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return name
