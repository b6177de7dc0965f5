"""The reverse index: from a typed domain to the protected or known domains it may be a slip of.

Built once from the protected, known and popular domains. A check is a handful of dictionary look-ups
whatever the number of indexed domains:

* `_cover`      exact domains and whole suffixes (`mil`); a typed domain under one of them is fine.
* `_by_stem`    name without its public suffix (`raytheon`), for suffix slips (`raytheon.co`).
* `_slips`      one-edit variants of protected/known *suffix entries* (`ml` -> `mil`), for `army.ml`.
* `_near`       each name (without its suffix) and its deletion neighbourhood (`gmal`, `gmil`, ...): one
                omission, insertion, substitution or transposition in the typed name meets it in one or two
                look-ups (the symmetric-delete method). Keyed without the suffix, so a slip in the name on
                top of a slip in the suffix is found too (`outlok.co`, `yhaoo.con`), and a dot moved into
                the suffix (`hotmailc.om`). The strong names (protected, popular, and the most used known
                ones, of six letters or more) are indexed two deletions deep: two slips in one name
                (`hotmial`, `microsfot`) meet them in the same look-ups.
* `_anagram`    the letters of each strong name, sorted: names with two swaps (`micorsfot`) in one look-up.
* `_skeleton`   TR39 skeletons, for homoglyphs in either script (`аmazon.com`, `arnazon.com`).

A typed domain whose top-level label does not exist (`.con`, `.c`, `.com123`) is also read with the real
suffixes it was probably meant to be (`typos.suffixes.nearest`), so `yahoo.co.ukk` meets `yahoo.co.uk`; and a
name that is a country code glued to a protected domain (`deibm.com`) is read as that subdomain (`de.ibm.com`).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from rcptguard.domains import public_suffix, suffix_depth, to_ascii
from rcptguard.model import Domain, Role
from rcptguard.typos.cost import cheapest
from rcptguard.typos.edits import Edit, deletions, one_edit_variants, single_edit
from rcptguard.typos.skeleton import skeleton
from rcptguard.typos.suffixes import country_codes, fix_for, is_suffix_slip, nearest, neighbourhood, real_tlds

MAX_PREFIX_LABELS = 3  # typed labels left of a match that are carried over (`x.y.gmial.com`)
TWO_EDIT_KNOWN = 5000  # known domains (most written to first) indexed two deletions deep, with all protected
TWO_EDIT_MIN_NAME = 6  # letters a name needs before two slips in it are taken for a slip of it
TWO_EDIT_MIN_TYPED = 5  # letters the typed name needs for that
BLOOM_BITS_MAX = 1 << 24  # 2 MiB: a larger filter falls out of the processor's cache and costs more than it saves
SUFFIX_FIXES = 3  # real suffixes a non-existent one is read as, at most
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
    edit: Edit | None = None  # NAME family with one edit: that edit, from the intended domain to the typed one
    edits: tuple[Edit, ...] = ()  # NAME family: the edits in the name (one or two)
    suffix_slip: bool = False  # NAME family: the suffix is slipped too (outlok.co for outlook.com)


def split_unicode(domain: Domain, n: int | None = None) -> tuple[str, str]:
    """(name, suffix) of the Unicode form, split where the public suffix of the ASCII form starts (or
    before the last `n` labels)."""
    if n is None:
        n = domain.suffix.count(".") + 1
    labels = domain.unicode.split(".")
    if len(labels) <= n:
        return "", domain.unicode
    return ".".join(labels[:-n]), ".".join(labels[-n:])




def _add(table: dict[str, tuple[Entry, ...]], key: str, value: Entry) -> None:
    present = table.get(key)
    if present is None:
        table[key] = (value,)
    elif value not in present:
        table[key] = (*present, value)



class DomainIndex:
    """Protected, known and popular domains, indexed for reverse typo look-ups."""

    def __init__(self, entries: Iterable[Entry]) -> None:
        self._cover: dict[str, Entry] = {}
        self._popular: dict[str, Entry] = {}
        self._by_name: dict[str, Entry] = {}
        self._by_stem: dict[str, tuple[Entry, ...]] = {}
        self._slips: dict[str, tuple[Entry, ...]] = {}
        self._near: dict[str, tuple[Entry, ...]] = {}
        self._anagram: dict[str, tuple[Entry, ...]] = {}
        self._glued: dict[str, Entry] = {}  # each country code glued to each protected name: deibm.com
        self._deep: set[str] = set()  # strong entries (ASCII) indexed two edits deep
        self._real = real_tlds()
        neighbourhood()  # the real suffixes' own look-up table, made now rather than in the first check
        self._country_codes = country_codes()
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
        known = sorted((e for e in merged.values() if e.role is Role.KNOWN), key=lambda e: -e.count)
        deep = {e.domain.ascii for e in known[:TWO_EDIT_KNOWN]}
        deep.update(e.domain.ascii for e in merged.values() if e.role is not Role.KNOWN)
        for entry in merged.values():
            self._insert(entry, entry.domain.ascii in deep)
        self.size = len(merged)
        self._suffixes = frozenset(e.suffix for e in merged.values() if not e.is_suffix)  # com, co.uk, ...
        # A one-hash Bloom filter over `_near`, at most 2 MiB so that it stays in the processor's cache (the
        # dictionary does not): most deletion keys of an unknown domain are ruled out without touching the
        # dictionary, whose every look-up is a cache miss on a cold check.
        bits = min(BLOOM_BITS_MAX, max(1 << 20, 1 << (len(self._near) * 12).bit_length()))
        self._bloom = bytearray(bits >> 3)
        self._bloom_mask = (bits >> 3) - 1
        for key in self._near:
            h = hash(key)
            self._bloom[(h >> 3) & self._bloom_mask] |= 1 << (h & 7)

    def _insert(self, entry: Entry, strong: bool) -> None:
        key = entry.domain.ascii
        if entry.role is Role.POPULAR:
            self._popular[key] = entry
        else:
            self._cover[key] = entry
        if entry.is_suffix:
            for variant in one_edit_variants(entry.domain.ascii, _SUFFIX_ALPHABET):
                _add(self._slips, variant, entry)
            return
        stem = entry.stem
        self._by_name[entry.domain.unicode] = entry
        _add(self._by_stem, stem, entry)
        deep = strong and len(stem.rsplit(".", 1)[-1]) >= TWO_EDIT_MIN_NAME
        keys = {key for key in deletions(stem) if _usable(key)}
        if deep:
            keys.update(key for shorter in tuple(keys) for key in deletions(shorter) if _usable(key))
        keys.add(stem)
        near = self._near
        for key in keys:  # each key once, each entry inserted once: no need to look for it first
            present = near.get(key)
            near[key] = (entry,) if present is None else (*present, entry)
        if deep:
            self._deep.add(entry.domain.ascii)
            _add(self._anagram, "".join(sorted(stem)), entry)
        _add(self._skeleton, skeleton(entry.domain.unicode), entry)
        if entry.role is Role.PROTECTED and "." not in stem:
            for code in self._country_codes:
                self._glued.setdefault(f"{code}{entry.domain.unicode}", entry)

    # -- look-ups -------------------------------------------------------------------------------------

    def covering(self, domain: Domain) -> Entry | None:
        """The protected or known entry that `domain` is, or lies under (`ops.example.com`, `army.mil`)."""
        return self._walk(self._cover, domain.ascii)

    def popular(self, domain: Domain) -> Entry | None:
        """The popular provider entry that `domain` is, or lies under."""
        return self._walk(self._popular, domain.ascii)

    def suffix_count(self, stem: str) -> int:
        """How many indexed domains have this name (under different suffixes: hotmail.de, hotmail.fr, ...)."""
        return len(self._by_stem.get(stem, ()))

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
        """Every indexed domain that `domain` could be a slip of, by every route."""
        splits = [split_unicode(domain)]
        tld = domain.ascii[domain.ascii.rfind(".") + 1 :]
        real = tld in self._real
        if not real:  # read it as well with the suffixes it was probably meant to be
            head = domain.ascii[: -len(tld)]
            for fix in nearest(tld)[:SUFFIX_FIXES]:
                if suffix_depth(fix.tld) == 1:
                    continue  # split as typed already: the suffix is one label
                depth = public_suffix(head + fix.tld).count(".") + 1
                split = split_unicode(domain, depth)
                if split not in splits:
                    splits.append(split)
        stem, suffix = splits[0]
        if "." in stem:  # a suffix typed twice, or another after it: linkedn.com.com is linkedn + com.com
            inner = self._inner_suffix(stem)
            if inner is not None:
                splits.append((stem[: -len(inner) - 1], f"{inner}.{suffix}"))
        reads: list[tuple[str, str, str]] = []  # (labels carried over, name, suffix)
        for stem, suffix in splits:
            if not stem:
                continue
            labels = stem.split(".")
            reads.extend(("".join(f"{label}." for label in labels[:cut]), ".".join(labels[cut:]), suffix)
                         for cut in range(min(len(labels), MAX_PREFIX_LABELS + 1)))
        # A name typed that is an indexed domain's own name was typed as meant (gmail.co.uk is not a slip of
        # fmail.co.uk): no slips inside it are looked for, unless the domain is itself a provider's. Nor in a
        # suffix typed before the suffix (the com of linkedn.com.com is not a slip of cox.com's name).
        names = not any(stem in self._by_stem for _, stem, _ in reads) or self.popular(domain) is not None
        found: dict[tuple[str, Family], Candidate] = {}
        for prefix, stem, suffix in reads:
            for candidate in self._around(prefix, stem, suffix, real,
                                          names and not (prefix and stem in self._suffixes)):
                found.setdefault((candidate.intended, candidate.family), candidate)
        return list(found.values())

    def _inner_suffix(self, stem: str) -> str | None:
        """The suffix of an indexed domain that the typed name ends with, leaving a name before it (com in
        linkedn.com, co.uk in yaho.co.uk): the longest of two labels or one."""
        labels = stem.split(".")
        for n in (2, 1):
            if len(labels) > n and (inner := ".".join(labels[-n:])) in self._suffixes:
                return inner
        return None

    def _around(self, prefix: str, stem: str, suffix: str, real: bool, names: bool) -> Iterator[Candidate]:
        typed = f"{stem}.{suffix}"
        # Same name, another suffix: raytheon.co <- raytheon.com.
        for entry in self._by_stem.get(stem, ()):
            if entry.suffix != suffix and (real or fix_for(suffix, entry.suffix) is not None):
                yield Candidate(Family.SUFFIX, typed, entry, prefix + entry.domain.unicode,
                                stem, suffix, stem, entry.suffix)
        # A slip of a protected or known whole suffix: army.ml <- army.mil.
        for entry in self._slips.get(to_ascii(suffix), ()):
            yield Candidate(Family.SUFFIX, typed, entry, f"{prefix}{stem}.{entry.domain.unicode}",
                            stem, suffix, stem, entry.domain.unicode)
        # A suffix appended after a full domain: example.com.co <- example.com.
        inner, _, _ = typed.rpartition(".")
        if "." in inner:
            outer = self._by_name.get(inner) or self._walk(self._cover, to_ascii(inner))
            if outer is not None:
                inner_stem, _, inner_suffix = inner.rpartition(".")
                yield Candidate(Family.SUFFIX, typed, outer, prefix + inner, inner_stem,
                                typed[len(inner_stem) + 1 :], inner_stem, inner_suffix)
        if names:
            yield from self._name_slips(prefix, typed, stem, suffix, real)
        # The same look: аmazon.com <- amazon.com, arnazon.com <- amazon.com.
        for entry in self._skeleton.get(skeleton(typed), ()):
            if entry.domain.unicode != typed:
                yield Candidate(Family.SKELETON, typed, entry, prefix + entry.domain.unicode,
                                stem, suffix, entry.stem, entry.suffix)

    def _name_slips(self, prefix: str, typed: str, stem: str, suffix: str, real: bool) -> Iterator[Candidate]:
        """Slips inside the name (symmetric delete, keyed without the suffix): the typed name is looked up
        among the deletions of indexed names (an omission), and each of its own deletions among indexed
        names (an insertion) and their deletions (a substitution or swap); strong names are indexed two
        deletions deep, and by their sorted letters. Each hit is verified and its slips named."""
        near = self._near
        keys = [stem[:i] + stem[i + 1 :] for i in range(len(stem))]
        keys.append(stem)
        bloom, mask = self._bloom, self._bloom_mask
        found = [hit for key in keys
                 if bloom[((h := hash(key)) >> 3) & mask] >> (h & 7) & 1 and (hit := near.get(key)) is not None]
        if not prefix and len(stem) >= TWO_EDIT_MIN_NAME:  # two swaps keep the length of a strong name
            anagram = self._anagram.get("".join(sorted(stem)))
            if anagram is not None:
                found.append(anagram)
        # Each entry once (by identity: hashing a dataclass costs more), each name's edit made once.
        seen: set[int] = set()
        edits: dict[str, Edit | None] = {}
        for hit in found:
            for entry in hit:
                if id(entry) in seen or entry.stem == stem:
                    continue  # the same name under another suffix is the suffix family's
                seen.add(id(entry))
                other = entry.stem
                one = edits[other] if other in edits else edits.setdefault(other, single_edit(stem, other))
                candidate = self._name_slip(prefix, typed, stem, suffix, real, entry, one)
                if candidate is not None:
                    yield candidate
        # A country code glued to a protected domain: deibm.com <- de.ibm.com.
        if not prefix and self._glued:
            glued = self._glued.get(typed)
            if glued is not None:
                intended = f"{stem[:2]}.{glued.domain.unicode}"
                edit = single_edit(typed, intended)
                if edit is not None:
                    yield Candidate(Family.NAME, typed, glued, intended, stem, suffix,
                                    f"{stem[:2]}.{glued.stem}", glued.suffix, edit, (edit,))

    def _name_slip(self, prefix: str, typed: str, stem: str, suffix: str, real: bool,
                   entry: Entry, one: Edit | None) -> Candidate | None:
        """The slips that turn `entry` into the typed domain, if they are few enough to be a slip of it:
        one edit anywhere (a dot moved into the suffix too: hotmailc.om), two in a strong name
        (hotmial.cm is one in the name and one in the suffix; micorsfot.com two in the name). `one` is the
        single edit from the entry's name to the typed one, if there is one."""
        intended = prefix + entry.domain.unicode
        if entry.suffix == suffix and one is not None:  # the name's edit, over the whole domain
            whole: Edit | None = Edit(one.op, one.pos, one.was, one.now, typed, entry.domain.unicode)
        elif real and entry.suffix != suffix and len(typed) == len(entry.domain.unicode):
            whole = single_edit(typed, entry.domain.unicode)  # across suffixes only a moved dot keeps the length
        else:
            whole = None
        if whole is not None:
            return Candidate(Family.NAME, typed, entry, intended, stem, suffix, entry.stem, entry.suffix, whole,
                             (whole,))
        if entry.suffix == suffix:
            if entry.domain.ascii not in self._deep:
                return None
            if len(stem.rsplit(".", 1)[-1]) < TWO_EDIT_MIN_TYPED or _affix(stem, entry.stem):
                return None
            edits = cheapest(stem, entry.stem, 2)
            if edits is None or len(edits) != 2:
                return None
            return Candidate(Family.NAME, typed, entry, intended, stem, suffix, entry.stem, entry.suffix, None,
                             edits)
        if one is None or not is_suffix_slip(suffix, entry.suffix):
            return None
        return Candidate(Family.NAME, typed, entry, intended, stem, suffix, entry.stem, entry.suffix, one, (one,),
                         suffix_slip=True)


def _affix(typed: str, intended: str) -> bool:
    """The typed name is the start or the end of the intended one: a different name (post, posteo; bell,
    nvbell), not two letters dropped."""
    return intended.startswith(typed) or intended.endswith(typed) or typed.startswith(intended) or typed.endswith(
        intended)


def _usable(key: str) -> bool:
    return key != "" and key[0] != "." and key[-1] != "."
