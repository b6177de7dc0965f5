"""The reverse index: from a typed domain to the protected or known domains it may be a slip of.

Built once from the protected, known and popular domains. A check is a handful of dictionary look-ups
whatever the number of indexed domains:

* `_cover`      exact domains and whole suffixes (`mil`); a typed domain under one of them is fine.
* `_by_stem`    name without its public suffix (`raytheon`), for suffix slips (`raytheon.co`).
* `_slips`      one-edit variants of protected/known *suffix entries* (`ml` -> `mil`), for `army.ml`.
* `_near`       each name and its deletion neighbourhood (`gmal.com`, `gmil.com`, ...): one omission,
                insertion, substitution or transposition in the typed name meets it in one or two look-ups
                (the symmetric-delete method).
* `_skeleton`   TR39 skeletons, for homoglyphs in either script (`аmazon.com`, `arnazon.com`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import idna

from rcptguard.model import Domain, Role
from rcptguard.typos.edits import Edit, deletions, one_edit_variants, single_edit
from rcptguard.typos.skeleton import skeleton

MAX_PREFIX_LABELS = 3  # typed labels left of a match that are carried over (`x.y.gmial.com`)
_SUFFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-"


class Family(enum.Enum):
    SUFFIX = "suffix"
    NAME = "name"
    SKELETON = "skeleton"


@dataclass(frozen=True, slots=True)
class Entry:
    """One indexed domain (or whole suffix) and why the engine knows it."""

    domain: Domain
    role: Role
    count: int = 0  # messages sent there, when learned from traffic
    owner: str | None = None  # provider group, for domains of one owner (gmx.de, gmx.net)
    is_suffix: bool = False  # a whole public suffix such as mil: everything under it is covered
    stem: str = field(init=False, compare=False)  # the Unicode name left of the public suffix
    suffix: str = field(init=False, compare=False)  # the Unicode public suffix

    def __post_init__(self) -> None:
        stem, suffix = split_unicode(self.domain)
        object.__setattr__(self, "stem", stem)
        object.__setattr__(self, "suffix", suffix)


@dataclass(slots=True)  # a value never changed once made; not frozen, which costs on every check
class Candidate:
    """A possible intended domain for a typed one, and the two strings a detector compares."""

    family: Family
    typed: str  # the typed domain (Unicode form), less any prefix labels carried over
    target: Entry
    intended: str  # the full intended domain, prefix restored
    typed_stem: str
    typed_suffix: str
    intended_stem: str
    intended_suffix: str
    edit: Edit | None = None  # NAME family: the one edit from the intended domain to the typed one


def split_unicode(domain: Domain) -> tuple[str, str]:
    """(name, suffix) of the Unicode form, split where the public suffix of the ASCII form starts."""
    n = domain.suffix.count(".") + 1
    labels = domain.unicode.split(".")
    if len(labels) <= n:
        return "", domain.unicode
    return ".".join(labels[:-n]), ".".join(labels[-n:])


def _to_ascii(name: str) -> str:
    if name.isascii():
        return name
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return name


def _add(table: dict[str, tuple[Entry, ...]], key: str, entry: Entry) -> None:
    present = table.get(key)
    if present is None:
        table[key] = (entry,)
    elif entry not in present:
        table[key] = (*present, entry)


class DomainIndex:
    """Protected, known and popular domains, indexed for reverse typo look-ups."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._cover: dict[str, Entry] = {}
        self._popular: dict[str, Entry] = {}
        self._by_name: dict[str, Entry] = {}
        self._by_stem: dict[str, tuple[Entry, ...]] = {}
        self._slips: dict[str, tuple[Entry, ...]] = {}
        self._near: dict[str, tuple[Entry, ...]] = {}
        self._skeleton: dict[str, tuple[Entry, ...]] = {}
        merged: dict[str, Entry] = {}
        for entry in entries:
            key = entry.domain.ascii
            old = merged.get(key)
            if old is None or (entry.role, entry.count) > (old.role, old.count):
                owner = entry.owner or (old.owner if old else None)
                merged[key] = Entry(entry.domain, entry.role, entry.count, owner, entry.is_suffix)
            elif entry.owner and not old.owner:
                merged[key] = Entry(old.domain, old.role, old.count, entry.owner, old.is_suffix)
        for entry in merged.values():
            self._insert(entry)
        self.size = len(merged)
        # A one-hash Bloom filter over `_near` (2 MiB: it stays in the processor's cache, the dictionary
        # does not): most deletion keys of an unknown domain are ruled out without touching the dictionary.
        bits = max(1 << 20, 1 << (len(self._near) * 12).bit_length())
        self._bloom = bytearray(bits >> 3)
        self._bloom_mask = (bits >> 3) - 1
        for key in self._near:
            h = hash(key)
            self._bloom[(h >> 3) & self._bloom_mask] |= 1 << (h & 7)

    def _insert(self, entry: Entry) -> None:
        key = entry.domain.ascii
        if entry.role is Role.POPULAR:
            self._popular[key] = entry
        else:
            self._cover[key] = entry
        if entry.is_suffix:
            for variant in one_edit_variants(entry.domain.ascii, _SUFFIX_ALPHABET):
                _add(self._slips, variant, entry)
            return
        stem, suffix = entry.stem, entry.suffix
        self._by_name[entry.domain.unicode] = entry
        _add(self._by_stem, stem, entry)
        _add(self._near, entry.domain.unicode, entry)
        for shorter in deletions(stem):
            if shorter and not shorter.startswith(".") and not shorter.endswith("."):
                _add(self._near, f"{shorter}.{suffix}", entry)
        _add(self._skeleton, skeleton(entry.domain.unicode), entry)

    # -- look-ups -------------------------------------------------------------------------------------

    def covering(self, domain: Domain) -> Entry | None:
        """The protected or known entry that `domain` is, or lies under (`ops.example.com`, `army.mil`)."""
        return self._walk(self._cover, domain.ascii)

    def popular(self, domain: Domain) -> Entry | None:
        """The popular provider entry that `domain` is, or lies under."""
        return self._walk(self._popular, domain.ascii)

    @staticmethod
    def _walk(table: dict[str, Entry], name: str) -> Entry | None:
        while True:
            found = table.get(name)
            if found is not None:
                return found
            dot = name.find(".")
            if dot < 0:
                return None
            name = name[dot + 1 :]

    def candidates(self, domain: Domain) -> list[Candidate]:
        """Every indexed domain that `domain` could be one slip away from, by every route."""
        stem, suffix = split_unicode(domain)
        if not stem:
            return []
        labels = stem.split(".")
        found: dict[tuple[str, Family], Candidate] = {}
        for cut in range(min(len(labels), MAX_PREFIX_LABELS + 1)):
            prefix = "".join(f"{label}." for label in labels[:cut])
            rest = ".".join(labels[cut:])
            for candidate in self._around(prefix, rest, suffix):
                found.setdefault((candidate.intended, candidate.family), candidate)
        return list(found.values())

    def _around(self, prefix: str, stem: str, suffix: str) -> Iterator[Candidate]:
        typed = f"{stem}.{suffix}"
        # Same name, another suffix: raytheon.co <- raytheon.com.
        for entry in self._by_stem.get(stem, ()):
            if entry.suffix != suffix:
                yield Candidate(Family.SUFFIX, typed, entry, prefix + entry.domain.unicode,
                                stem, suffix, stem, entry.suffix)
        # A slip of a protected or known whole suffix: army.ml <- army.mil.
        for entry in self._slips.get(_to_ascii(suffix), ()):
            yield Candidate(Family.SUFFIX, typed, entry, f"{prefix}{stem}.{entry.domain.unicode}",
                            stem, suffix, stem, entry.domain.unicode)
        # A suffix appended after a full domain: example.com.co <- example.com.
        inner, _, _ = typed.rpartition(".")
        if "." in inner:
            outer = self._by_name.get(inner) or self._walk(self._cover, _to_ascii(inner))
            if outer is not None:
                inner_stem, _, inner_suffix = inner.rpartition(".")
                yield Candidate(Family.SUFFIX, typed, outer, prefix + inner, inner_stem,
                                typed[len(inner_stem) + 1 :], inner_stem, inner_suffix)
        # One edit inside the name: gmial.com <- gmail.com (symmetric delete), verified as a single edit.
        # The typed name is looked up among the deletions of indexed names (an omission), and each of its
        # own deletions among indexed names (an insertion) and their deletions (a substitution or swap).
        near = self._near
        tail = "." + suffix
        keys = [stem[:i] + stem[i + 1 :] + tail for i in range(len(stem))]
        keys.append(typed)
        bloom, mask = self._bloom, self._bloom_mask
        found = [hit for key in keys
                 if bloom[((h := hash(key)) >> 3) & mask] >> (h & 7) & 1 and (hit := near.get(key)) is not None]
        for entry in dict.fromkeys(e for hit in found for e in hit):
            edit = single_edit(typed, entry.domain.unicode)
            if edit is not None:
                yield Candidate(Family.NAME, typed, entry, prefix + entry.domain.unicode,
                                stem, suffix, entry.stem, entry.suffix, edit)
        # The same look: аmazon.com <- amazon.com, arnazon.com <- amazon.com.
        for entry in self._skeleton.get(skeleton(typed), ()):
            if entry.domain.unicode != typed:
                yield Candidate(Family.SKELETON, typed, entry, prefix + entry.domain.unicode,
                                stem, suffix, entry.stem, entry.suffix)
