"""The reverse index: from a typed domain to the protected or known domains it may be a slip of.

Built once from the protected, known and popular domains. A check is a handful of table look-ups
whatever the number of indexed domains:

* `_ids`        exact domains and whole suffixes (`mil`); a typed domain under one of them is fine (or is
                a popular provider's).
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

An entry is a number: its domain, role and count are held in lists and arrays, and `_near`, `_by_stem` and
`_skeleton` are `_Table`s of hashes rather than dictionaries of strings, so that a million known domains take
about 400 MB rather than 2.7 GB, and build in a third of the time (bench/README.md, "bench_index.py").

A typed domain whose top-level label does not exist (`.con`, `.c`, `.com123`) is also read with the real
suffixes it was probably meant to be (`typos.suffixes.nearest`), so `yahoo.co.ukk` meets `yahoo.co.uk`; and a
name that is a country code glued to a protected domain (`deibm.com`) is read as that subdomain (`de.ibm.com`).
Two slips move where the name seems to end, and are looked for apart, each only as a whole indexed domain (or one
under a protected whole suffix): a dot left out before a suffix (`tetburyco.uk` for `tetbury.co.uk`, `armymil` for
`army.mil`: a look-up for each suffix the typed domain ends with) and a slip in the first label of a suffix of two
labels (`dstl.gv.uk` for `dstl.gov.uk`).
"""

from __future__ import annotations

import copy
import enum
import itertools
import os
import weakref
from array import array
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import _lru_cache_wrapper, lru_cache
from typing import NamedTuple, TypeVar

# numpy's BLAS (OpenBLAS) starts a pool of threads when numpy is imported, before any door can set its threads'
# signal mask; the milter leaves SIGTERM to libmilter's own thread (milter.leave_stop_signals_to_libmilter), and a
# pool thread that did not block it would take it and end the process at once, unsaved. The index does no linear
# algebra: one BLAS thread, so no pool.
os.environ["OPENBLAS_NUM_THREADS"] = "1"

import numpy as np
import numpy.typing as npt

from rcptguard.domains import public_suffix, suffix_depth, to_ascii
from rcptguard.model import Domain, Role
from rcptguard.typos.cost import cheapest
from rcptguard.typos.edits import Edit, deletions, one_edit_variants, single_edit
from rcptguard.typos.skeleton import skeleton, uncached_skeleton
from rcptguard.typos.suffixes import country_codes, fix_for, is_suffix_slip, nearest, neighbourhood, real_tlds

MAX_PREFIX_LABELS = 3  # typed labels left of a match that are carried over (`x.y.gmial.com`)
TWO_EDIT_KNOWN = 5000  # known domains (most written to first) indexed two deletions deep, with all protected
TWO_EDIT_MIN_NAME = 6  # letters a name needs before two slips in it are taken for a slip of it
TWO_EDIT_MIN_TYPED = 5  # letters the typed name needs for that
BLOOM_BITS_MAX = 1 << 24  # 2 MiB: a larger filter falls out of the processor's cache and costs more than it saves
ENTRY_CACHE = 65536  # entries kept made as `Entry` objects (a judgement is remembered for as many domains)
SUFFIX_FIXES = 3  # real suffixes a non-existent one is read as, at most
_SUFFIX_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-"
MAX_SUFFIX_LABEL = 5  # letters of a label read as a slip of a suffix's first label (gv for gov in gov.uk)
GLUED_POPULAR = 6  # letters a popular provider's name needs before it is read glued to its suffix (hotmailco.uk)
GLUED_WHOLE = 3  # letters a name needs before it is read glued to a protected whole suffix (armymil)
# the parts of an index that `DomainIndex.add` changes in place (the rest it replaces)
_COLUMNS = ("_ids", "_idn", "_owner", "_cut", "_count", "_role", "_is_suffix", "_deep", "_slips", "_anagram",
            "_glued", "_bloom", "_wholes")


_ROLES = {int(role): role for role in Role}  # a dictionary look-up, quicker than calling the enum
_POPULAR = int(Role.POPULAR)
_new, _set = object.__new__, object.__setattr__


class Family(enum.Enum):
    SUFFIX = "suffix"
    NAME = "name"
    SKELETON = "skeleton"


@dataclass(slots=True, unsafe_hash=True)  # never changed once made; not frozen, as entries are made on checks
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
        self.stem, self.suffix = split_unicode(self.domain)


class Listed(NamedTuple):
    """A domain given to the index, as an `Entry` but without the names worked out: a million of them are
    made in a build, and a tuple costs a tenth of an `Entry`."""

    domain: Domain
    role: Role
    messages: int = 0  # `Entry.count` (a tuple has a `count` already)
    owner: str | None = None
    is_suffix: bool = False


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




_K = TypeVar("_K", bound=Hashable)
_T = TypeVar("_T")


def weakly_cached(method: Callable[..., _T], maxsize: int) -> _lru_cache_wrapper[_T]:
    """`lru_cache(maxsize)(method)` of a bound method, without the reference cycle that makes (the object holds the
    cache, the cache the bound method, the method the object): an object so cached is freed as soon as it is
    dropped, not at the cycle collector's next full pass (a guard replaced at an index rebuild, with its index)."""
    ref = weakref.WeakMethod(method)

    def call(*args: Hashable) -> _T:
        bound = ref()
        assert bound is not None  # the object holds the cache that calls it
        return bound(*args)

    return lru_cache(maxsize=maxsize)(call)


def _add(table: dict[_K, tuple[int, ...]], key: _K, value: int) -> None:
    present: tuple[int, ...] | None = table.get(key)
    if present is None:
        table[key] = (value,)
    elif value not in present:
        table[key] = (*present, value)


class _Table:
    """Strings to entry numbers, held in three arrays instead of a dictionary of strings and tuples.

    A million known domains make about twelve million deletion keys: as Python strings in a dictionary of
    tuples they took 1.5 KB a domain. Here each (key, entry) pair is 8 bytes, and the buckets 4 bytes each: the
    pairs are sorted by the key's `hash()` (one numpy sort of the hash and the entry number packed in 64 bits,
    so a key's entries stay in the order they were given), the top bits of the hash pick a bucket (as many
    buckets as pairs, rounded up to a power of two: one pair or none in most), and 32 more bits of it tell the
    pairs of a bucket apart. Only this process's `hash()` is used, so the table is never written out. Two
    strings may share those bits: every caller checks the entries it gets against the string it looked up, so
    a shared hash never adds a candidate.
    """

    __slots__ = ("_bucket_shift", "_buckets", "_id_bits", "_ids", "_marks", "size")

    def __init__(self, hashes: npt.NDArray[np.int64], ids: npt.NDArray[np.int32], entries: int) -> None:
        # In place where it can be, as the arrays are 100 MB each at a million domains: the build's peak.
        self._id_bits = id_bits = max(1, (max(entries, 2) - 1).bit_length())
        packed = hashes.view(np.uint64) >> np.uint64(id_bits)
        packed <<= np.uint64(id_bits)
        packed |= ids.view(np.uint32)
        packed.sort()
        if len(packed):
            packed = packed[np.concatenate(([True], packed[1:] != packed[:-1]))]  # each pair once
        high = packed >> np.uint64(id_bits)
        self.size = int(np.count_nonzero(high[1:] != high[:-1])) + 1 if len(high) else 0  # distinct keys, about
        self._marks = high.astype(np.uint32).data  # the low 32 bits
        del high
        bits = max(1, len(packed).bit_length())  # 2**bits buckets: at most one pair in each, on average
        self._bucket_shift = 64 - bits
        counts = np.bincount((packed >> np.uint64(self._bucket_shift)).astype(np.intp), minlength=1 << bits)
        buckets = np.zeros((1 << bits) + 1, dtype=np.int32)
        np.cumsum(counts, out=buckets[1:])
        del counts
        self._buckets = buckets.data
        packed &= np.uint64((1 << id_bits) - 1)
        self._ids = packed.astype(np.int32).data

    def get(self, h: int) -> Sequence[int]:
        """The entry numbers added under a string of hash `h`, and rarely a few more (empty if none)."""
        u = h & 0xFFFFFFFFFFFFFFFF
        bucket = u >> self._bucket_shift
        start, end = self._buckets[bucket], self._buckets[bucket + 1]
        if start == end:
            return ()
        mark = (u >> self._id_bits) & 0xFFFFFFFF
        marks, ids = self._marks, self._ids
        if end - start == 1:  # the usual case
            return (ids[start],) if marks[start] == mark else ()
        return [ids[j] for j in range(start, end) if marks[j] == mark]


class _Grown:
    """A `_Table` and the entries added to an index after it was built (`DomainIndex.extended`), by hash in a
    dictionary: the arrays are shared, never copied or changed, between the index and its extensions."""

    __slots__ = ("base", "extra", "size")

    def __init__(self, base: _Table, extra: dict[int, tuple[int, ...]]) -> None:
        self.base, self.extra = base, extra
        self.size = base.size + len(extra)

    def get(self, h: int) -> Sequence[int]:
        hits = self.base.get(h)
        more = self.extra.get(h)
        if more is None:
            return hits
        return [*hits, *more]  # in the order of their numbers, as a rebuild's table gives them


def _grow(table: _Table | _Grown, additions: dict[int, tuple[int, ...]]) -> _Grown:
    """`table` with more entries under some hashes; `table` itself is left as it was."""
    base, extra = (table.base, dict(table.extra)) if isinstance(table, _Grown) else (table, {})
    for h, ids in additions.items():
        extra[h] = extra.get(h, ()) + ids
    return _Grown(base, extra)


class DomainIndex:
    """Protected, known and popular domains, indexed for reverse typo look-ups.

    A million known domains must fit in well under a gigabyte, so no Python object is kept for each: an entry
    is a number, with its name in one list and its role, count and flags in arrays, and the `Entry` a look-up
    returns is made from those (the last `ENTRY_CACHE` are kept). The tables from names to entries are
    `_Table`s of hashes, except the small ones (suffixes, anagrams, glued country codes).
    """

    def __init__(self, entries: Iterable[Entry | Listed]) -> None:
        self._ids: dict[str, int] = {}  # ASCII domain -> entry number
        # Tuples, not lists: the garbage collector walks a list of a million names at every full collection, and
        # leaves a tuple of strings alone (0.14 s a collection at a million known domains, against a few ms).
        self._ascii: tuple[str, ...] = ()
        self._unicode: tuple[str, ...] = ()  # the same string as the ASCII one unless an IDN
        self._idn: dict[str, int] = {}  # Unicode form -> entry number, for IDN entries (not suffixes)
        self._dsuffix: tuple[str, ...] = ()  # the ASCII public suffix (one shared string per suffix)
        self._cut = array("H")  # the length of the Unicode name left of the suffix
        self._role = bytearray()
        self._count = array("q")
        self._owner: dict[int, str] = {}
        self._is_suffix = bytearray()
        self._take(entries)
        self.size = len(self._ascii)
        self._entry = weakly_cached(self._make_entry, ENTRY_CACHE)
        self._build()

    def _take(self, entries: Iterable[Entry | Listed]) -> None:
        """The entries into the columns, one number per ASCII domain: given twice, the higher (role, count)
        wins, and an owner given either time is kept."""
        suffixes: dict[str, str] = {}
        ids, owners = self._ids, self._owner
        names, unicode, dsuffix = list(self._ascii), list(self._unicode), list(self._dsuffix)
        for given in entries:
            if isinstance(given, Entry):
                domain, role, count, owner, is_suffix = (given.domain, given.role, given.count, given.owner,
                                                         given.is_suffix)
            else:
                domain, role, count, owner, is_suffix = given
            i = ids.get(domain.ascii)
            if i is None:
                ids[domain.ascii] = len(names)
                names.append(domain.ascii)
                unicode.append(domain.unicode)
                dsuffix.append(suffixes.setdefault(domain.suffix, domain.suffix))
                self._cut.append(_stem_length(domain))
                self._role.append(role)
                self._count.append(count)
                self._is_suffix.append(is_suffix)
                if owner:
                    owners[len(names) - 1] = owner
            elif (role, count) > (self._role[i], self._count[i]):
                self._role[i], self._count[i], self._is_suffix[i] = role, count, is_suffix
                if owner:
                    owners[i] = owner
            elif owner and i not in owners:
                owners[i] = owner
        self._ascii, self._unicode, self._dsuffix = tuple(names), tuple(unicode), tuple(dsuffix)

    def _build(self) -> None:
        """The look-up tables over the columns."""
        n = self.size
        self._slips: dict[str, tuple[int, ...]] = {}
        self._anagram: dict[str, tuple[int, ...]] = {}
        self._glued: dict[str, Entry] = {}  # each country code glued to each protected name: deibm.com
        self._wholes: set[str] = set()  # the whole suffixes indexed (mil, gov.uk)
        self._real = real_tlds()
        neighbourhood()  # the real suffixes' own look-up table, made now rather than in the first check
        self._country_codes = country_codes()
        strong, roles = self._strong().tobytes(), self._role
        self._deep = bytearray(n)  # entries indexed two edits deep (strong, with a long enough name)
        near_hashes, near_counts = array("q"), array("q")
        stem_hashes, skeleton_hashes, named = array("q"), array("q"), array("i")
        unicode, ascii_names, cut, is_suffix = self._unicode, self._ascii, self._cut, self._is_suffix
        # The loop runs once per domain, a million times for a million: its methods are looked up once.
        add_near, count_near, add_named = near_hashes.extend, near_counts.append, named.append
        add_stem, add_look, protected = stem_hashes.append, skeleton_hashes.append, int(Role.PROTECTED)
        for i in range(n):
            if is_suffix[i]:
                self._index_suffix(i)
                count_near(0)
                continue
            name = unicode[i]
            stem = name[: cut[i]]
            add_named(i)
            add_stem(hash(stem))
            add_look(hash(uncached_skeleton(name)))  # a million names would only churn the cache
            if name is not ascii_names[i]:
                self._idn[name] = i
            length = len(stem)
            if strong[i] == 1 and len(stem.rsplit(".", 1)[-1]) >= TWO_EDIT_MIN_NAME:
                keys: Collection[str] = self._deepen(i, stem)
            elif length > 2 and stem[1] != "." and stem[-2] != ".":  # the usual name: every deletion usable
                keys = [stem[:j] + stem[j + 1 :] for j in range(length)]  # a letter doubled gives a key twice:
                keys.append(stem)  # the table keeps each (key, entry) once
            else:
                keys = _deletion_keys(stem, deep=False)
            add_near(map(hash, keys))
            count_near(len(keys))
            if roles[i] == protected and "." not in stem:
                self._glue(i, name)
        self._strong_known = min(TWO_EDIT_KNOWN, roles.count(Role.KNOWN))
        numbers = np.arange(n, dtype=np.int32)
        self._near: _Table | _Grown = _Table(_int64(near_hashes), np.repeat(numbers, _int64(near_counts)), n)
        self._bloom, self._bloom_mask = _bloom(_int64(near_hashes), self._near.size)
        named_ids = np.frombuffer(named, dtype=np.int32) if len(named) else np.zeros(0, dtype=np.int32)
        self._by_stem: _Table | _Grown = _Table(_int64(stem_hashes), named_ids, n)
        self._skeleton: _Table | _Grown = _Table(_int64(skeleton_hashes), named_ids, n)
        self._suffixes = frozenset(unicode[i][cut[i] + 1 :] if cut[i] else unicode[i]
                                   for i in range(n) if not is_suffix[i])  # com, co.uk, ...
        self._tails = _tails(self._suffixes, self._wholes)

    # What `_build` and `_index_from` both do for an entry, on their rarer paths.

    def _index_suffix(self, i: int) -> None:
        """A whole suffix (`mil`): its one-edit variants lead to it (`ml`)."""
        self._wholes.add(self._unicode[i])
        for variant in one_edit_variants(self._ascii[i], _SUFFIX_ALPHABET):
            _add(self._slips, variant, i)

    def _deepen(self, i: int, stem: str) -> set[str]:
        """Mark entry `i` as indexed two deletions deep, and index its sorted letters; its deletion keys."""
        self._deep[i] = 1
        _add(self._anagram, "".join(sorted(stem)), i)
        return _deletion_keys(stem, deep=True)

    def _glue(self, i: int, name: str) -> None:
        """A protected name with each country code glued to its front (`deibm.com`) leads to it."""
        entry = self._entry(i)
        for code in self._country_codes:
            self._glued.setdefault(f"{code}{name}", entry)

    def extended(self, entries: Iterable[Entry | Listed]) -> DomainIndex:
        """This index with more domains, in a time that grows with the domains added, not with the index: the
        columns are copied (a few milliseconds a hundred thousand domains), the large tables shared, and what the
        new domains add to them kept beside them in dictionaries (`_Grown`). A domain given again takes the higher
        (role, count), as in a build. A new known domain is indexed two deletions deep while fewer than
        `TWO_EDIT_KNOWN` known ones are; a build ranks them all by count again. This index is left as it was: a
        check it is serving meanwhile sees nothing change."""
        grown = copy.copy(self)
        grown.add(entries)
        return grown

    def __copy__(self) -> DomainIndex:
        """An index with the same domains whose columns are its own, and whose tables are shared until `add`."""
        twin = object.__new__(DomainIndex)
        twin.__setstate__(vars(self))
        return twin

    def __setstate__(self, state: dict[str, object]) -> None:
        vars(self).update(state)
        for name in _COLUMNS:  # what `add` changes in place
            setattr(self, name, copy.copy(state[name]))
        self._entry = weakly_cached(self._make_entry, ENTRY_CACHE)

    def add(self, entries: Iterable[Entry | Listed]) -> None:
        """Add domains to this index in place: only to an index no check is using yet (`extended`)."""
        start = self.size
        self._take(entries)
        self.size = len(self._ascii)
        self._deep.extend(bytes(self.size - start))
        self._entry.cache_clear()  # an entry given again may have a higher count
        self._index_from(start)

    def _index_from(self, start: int) -> None:
        """Index the entries from number `start` on (`extended`): as `_build` does, into dictionaries."""
        near: dict[int, tuple[int, ...]] = {}
        stems: dict[int, tuple[int, ...]] = {}
        looks: dict[int, tuple[int, ...]] = {}
        bloom, mask = self._bloom, self._bloom_mask
        suffixes = set(self._suffixes)
        unicode, cut, roles = self._unicode, self._cut, self._role
        for i in range(start, self.size):
            if self._is_suffix[i]:
                self._index_suffix(i)
                continue
            name = unicode[i]
            stem = name[: cut[i]]
            suffixes.add(name[cut[i] + 1 :] if cut[i] else name)
            _add(stems, hash(stem), i)
            _add(looks, hash(uncached_skeleton(name)), i)
            if name != self._ascii[i]:
                self._idn[name] = i
            strong = roles[i] != Role.KNOWN or self._strong_known < TWO_EDIT_KNOWN
            if strong and roles[i] == Role.KNOWN:
                self._strong_known += 1
            deep = strong and len(stem.rsplit(".", 1)[-1]) >= TWO_EDIT_MIN_NAME
            for key in self._deepen(i, stem) if deep else _deletion_keys(stem, deep=False):
                h = hash(key)
                _add(near, h, i)
                bloom[(h >> 3) & mask] |= 1 << (h & 7)
            if roles[i] == Role.PROTECTED and "." not in stem:
                self._glue(i, name)
        self._near, self._by_stem, self._skeleton = (_grow(self._near, near), _grow(self._by_stem, stems),
                                                     _grow(self._skeleton, looks))
        self._suffixes = frozenset(suffixes)
        self._tails = _tails(self._suffixes, self._wholes)

    def _strong(self) -> npt.NDArray[np.bool_]:
        """The entries indexed two edits deep (if their name is long enough): every protected and popular one,
        and the `TWO_EDIT_KNOWN` known ones most written to (ties: the first given)."""
        roles = np.frombuffer(bytes(self._role), dtype=np.uint8)
        counts = _int64(self._count)
        known = np.flatnonzero(roles == Role.KNOWN)
        strong: npt.NDArray[np.bool_] = roles != Role.KNOWN
        strong[known[np.argsort(-counts[known], kind="stable")[:TWO_EDIT_KNOWN]]] = True
        return strong

    def _make_entry(self, i: int) -> Entry:
        # Made field by field, with the name and suffix already known (`__post_init__` would split the domain
        # again): an entry is made on many checks.
        name, cut = self._unicode[i], self._cut[i]
        domain = _new(Domain)
        _set(domain, "ascii", self._ascii[i])  # Domain is frozen: as its own __init__ does
        _set(domain, "unicode", name)
        _set(domain, "suffix", self._dsuffix[i])
        entry = _new(Entry)
        entry.domain, entry.role, entry.count = domain, _ROLES[self._role[i]], self._count[i]
        entry.owner, entry.is_suffix = self._owner.get(i), self._is_suffix[i] == 1
        entry.stem, entry.suffix = name[:cut], (name[cut + 1 :] if cut else name)
        return entry

    def _stem(self, i: int) -> str:
        return self._unicode[i][: self._cut[i]]

    def _within(self, key: str, i: int) -> bool:
        """Whether `key` is one of the deletion keys entry `i` was indexed under (its name, the name less one
        character, or less two for an entry indexed two deep): a hash shared by another string is not."""
        stem = self._stem(i)
        if key == stem:
            return True
        if not _usable(key):
            return False
        short = len(stem) - len(key)
        if short == 1:
            return _less_one(key, stem)
        return short == 2 and self._deep[i] == 1 and any(_usable(k) and _less_one(key, k) for k in deletions(stem))

    def _named(self, name: str) -> Entry | None:
        """The entry (not a whole suffix) whose Unicode form is `name`."""
        i = self._ids.get(name)
        if i is not None and self._unicode[i] == name and not self._is_suffix[i]:
            return self._entry(i)
        i = self._idn.get(name)
        return None if i is None else self._entry(i)

    def _stem_entries(self, stem: str) -> Sequence[int]:
        """The non-suffix entries whose name is `stem`, in the order they were given."""
        hits = self._by_stem.get(hash(stem))
        return [i for i in hits if self._stem(i) == stem] if hits else hits

    # -- look-ups -------------------------------------------------------------------------------------

    def covering(self, domain: Domain) -> Entry | None:
        """The protected or known entry that `domain` is, or lies under (`ops.example.com`, `army.mil`)."""
        return self._walk(domain.ascii, popular=False)

    def popular(self, domain: Domain) -> Entry | None:
        """The popular provider entry that `domain` is, or lies under."""
        return self._walk(domain.ascii, popular=True)

    def suffix_count(self, stem: str) -> int:
        """How many indexed domains have this name (under different suffixes: hotmail.de, hotmail.fr, ...)."""
        return len(self._stem_entries(stem))

    def _walk(self, name: str, popular: bool) -> Entry | None:
        """The entry `name` is or lies under: among the popular ones, or among the others."""
        ids, roles = self._ids, self._role
        while True:
            i = ids.get(name)
            if i is not None and (roles[i] == _POPULAR) is popular:
                return self._entry(i)
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
        same = {stem: self._stem_entries(stem) for _, stem, _ in reads}  # the entries of each name read
        names = not any(same.values()) or self.popular(domain) is not None
        found: dict[tuple[str, Family], Candidate] = {}
        for prefix, stem, suffix in reads:
            for candidate in self._around(prefix, stem, suffix, real,
                                          names and not (prefix and stem in self._suffixes), same[stem]):
                found.setdefault((candidate.intended, candidate.family), candidate)
        extra = self._dot_left_out(domain.unicode, *splits[0])
        if "." not in splits[0][1] and suffix_depth(tld) > 1:
            extra = itertools.chain(extra, self._suffix_label_slips(domain.unicode))
        for candidate in extra:
            found.setdefault((candidate.intended, candidate.family), candidate)
        return list(found.values())

    def _suffix_label_slips(self, typed: str) -> Iterator[Candidate]:
        """A slip in the first label of a two-label suffix, which leaves the typed domain under no such suffix at all
        (dstl.gv.uk, mod.giv.uk for gov.uk): the domain with that label mended, looked up whole (an indexed domain,
        or one under a protected whole suffix). Only such whole domains: the name read with the mended suffix is
        never searched for slips of its own."""
        labels = typed.split(".")
        label, tld = labels[-2] if len(labels) > 2 else "", labels[-1]
        slipped = f"{label}.{tld}"
        if not label or len(label) > MAX_SUFFIX_LABEL or slipped in self._suffixes:
            return
        stem = ".".join(labels[:-2])
        for entry in map(self._entry, self._slips.get(to_ascii(slipped), ())):  # gv.uk <- gov.uk, protected
            if "." in entry.domain.unicode:
                yield Candidate(Family.SUFFIX, typed, entry, f"{stem}.{entry.domain.unicode}", stem, slipped, stem,
                                entry.domain.unicode)
        for variant in one_edit_variants(label, _SUFFIX_ALPHABET):
            suffix = f"{variant}.{tld}"
            named = self._named(f"{stem}.{suffix}") if suffix in self._suffixes else None
            if named is not None:
                yield Candidate(Family.SUFFIX, typed, named, named.domain.unicode, stem, slipped, named.stem,
                                named.suffix)

    def _dot_left_out(self, typed: str, stem: str, suffix: str) -> Iterator[Candidate]:
        """An indexed domain with one dot more, before one of its indexed suffixes or a protected whole suffix: the
        dot that parts the name from its suffix, or the labels of a suffix (tetburyco.uk <- tetbury.co.uk,
        dstl.govuk <- dstl.gov.uk, armymil <- army.mil). A popular provider's name needs `GLUED_POPULAR` letters
        (zenco.uk is a name of its own, not zen.co.uk). A dot left out inside the name (usmeridianbank.com) is the
        name index's."""
        for tail in self._tails.get(typed[-2:], ()):  # the suffixes the typed domain ends with, glued or not
            cut = len(typed) - len(tail)
            if cut < 1 or not typed.endswith(tail) or typed[cut - 1] in ".-" or tail[0] in ".-":
                continue
            name = typed[:cut]
            label = name[name.rfind(".") + 1 :]
            entry = self._named(f"{name}.{tail}") if tail in self._suffixes else None
            if entry is not None and entry.role is Role.POPULAR and len(label) < GLUED_POPULAR:
                continue
            if entry is None and len(label) >= GLUED_WHOLE and tail in self._wholes:
                entry = self._whole_suffix(tail)
            if entry is None:
                continue
            edit = single_edit(typed, f"{name}.{tail}")
            if edit is not None:
                yield Candidate(Family.NAME, typed, entry, f"{name}.{tail}", stem, suffix, name, tail, edit, (edit,))

    def _whole_suffix(self, suffix: str) -> Entry | None:
        """The protected or known whole suffix (mil, gov.uk) that `suffix` is, if any."""
        i = self._ids.get(to_ascii(suffix))
        return self._entry(i) if i is not None and self._is_suffix[i] else None

    def _inner_suffix(self, stem: str) -> str | None:
        """The suffix of an indexed domain that the typed name ends with, leaving a name before it (com in
        linkedn.com, co.uk in yaho.co.uk): the longest of two labels or one."""
        labels = stem.split(".")
        for n in (2, 1):
            if len(labels) > n and (inner := ".".join(labels[-n:])) in self._suffixes:
                return inner
        return None

    def _around(self, prefix: str, stem: str, suffix: str, real: bool, names: bool,
                same: Sequence[int]) -> Iterator[Candidate]:
        typed = f"{stem}.{suffix}"
        # Same name, another suffix: raytheon.co <- raytheon.com (`same`: the entries named `stem`).
        for entry in map(self._entry, same):
            if entry.suffix != suffix and (real or fix_for(suffix, entry.suffix) is not None):
                yield Candidate(Family.SUFFIX, typed, entry, prefix + entry.domain.unicode,
                                stem, suffix, stem, entry.suffix)
        # A slip of a protected or known whole suffix: army.ml <- army.mil.
        for entry in map(self._entry, self._slips.get(to_ascii(suffix), ())):
            yield Candidate(Family.SUFFIX, typed, entry, f"{prefix}{stem}.{entry.domain.unicode}",
                            stem, suffix, stem, entry.domain.unicode)
        # A suffix appended after a full domain: example.com.co <- example.com.
        inner, _, _ = typed.rpartition(".")
        if "." in inner:
            outer = self._named(inner) or self._walk(to_ascii(inner), popular=False)
            if outer is not None:
                inner_stem, _, inner_suffix = inner.rpartition(".")
                yield Candidate(Family.SUFFIX, typed, outer, prefix + inner, inner_stem,
                                typed[len(inner_stem) + 1 :], inner_stem, inner_suffix)
        if names:
            yield from self._name_slips(prefix, typed, stem, suffix, real)
        # The same look: аmazon.com <- amazon.com, arnazon.com <- amazon.com.
        look = skeleton(typed)
        for entry in map(self._entry, self._skeleton.get(hash(look))):
            if entry.domain.unicode != typed and skeleton(entry.domain.unicode) == look:
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
        found: list[Sequence[int]] = []
        hit: Sequence[int]
        for key in keys:
            if bloom[((h := hash(key)) >> 3) & mask] >> (h & 7) & 1:
                hit = near.get(h)
                if hit:
                    found.append([i for i in hit if self._within(key, i)])
        if not prefix and len(stem) >= TWO_EDIT_MIN_NAME:  # two swaps keep the length of a strong name
            anagram = self._anagram.get("".join(sorted(stem)))
            if anagram is not None:
                found.append(anagram)
        # Each entry once, each name's edit made once.
        seen: set[int] = set()
        edits: dict[str, Edit | None] = {}
        for hit in found:
            for i in hit:
                if i in seen:
                    continue
                other = self._stem(i)
                if other == stem:
                    continue  # the same name under another suffix is the suffix family's
                seen.add(i)
                entry = self._entry(i)
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
            if not self._deep[self._ids[entry.domain.ascii]]:
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


def _tails(suffixes: Iterable[str], wholes: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """The indexed suffixes and whole suffixes by their last two characters: those a typed domain may end with,
    its dot before them left out (`DomainIndex._dot_left_out`)."""
    tails: dict[str, list[str]] = {}
    for suffix in {*suffixes, *wholes}:
        tails.setdefault(suffix[-2:], []).append(suffix)
    return {end: tuple(sorted(found, key=len)) for end, found in tails.items()}


def _affix(typed: str, intended: str) -> bool:
    """The typed name is the start or the end of the intended one: a different name (post, posteo; bell,
    nvbell), not two letters dropped."""
    return intended.startswith(typed) or intended.endswith(typed) or typed.startswith(intended) or typed.endswith(
        intended)


def _bloom(hashes: npt.NDArray[np.int64], distinct: int) -> tuple[bytearray, int]:
    """A one-hash Bloom filter over the deletion keys' hashes, at most 2 MiB so that it stays in the processor's
    cache (the table does not): most deletion keys of an unknown domain are ruled out without touching the
    table, whose every look-up is a cache miss on a cold check. Sized by the number of distinct keys; the filter
    and its byte mask (a key may be there if `filter[(h >> 3) & mask] >> (h & 7) & 1`)."""
    bits = min(BLOOM_BITS_MAX, max(1 << 20, 1 << (distinct * 12).bit_length()))
    mask = (bits >> 3) - 1
    marks = np.zeros(bits, dtype=bool)
    for start in range(0, len(hashes), 1 << 20):  # a slice at a time: no full-length temporaries
        chunk = hashes[start : start + (1 << 20)]
        marks[((chunk >> 3) & mask) * 8 + (chunk & 7)] = True
    return bytearray(np.packbits(marks, bitorder="little").tobytes()), mask


def _stem_length(domain: Domain) -> int:
    """The length of the Unicode name left of the public suffix (`Entry.stem`), 0 if there is none."""
    parts = domain.unicode.rsplit(".", domain.suffix.count(".") + 1)
    return len(parts[0]) if len(parts) > domain.suffix.count(".") + 1 else 0


def _deletion_keys(stem: str, deep: bool) -> set[str]:
    """The keys a name is indexed under in `_near`: itself and its usable deletions, one deep or two."""
    keys = _usable_deletions(stem)
    if deep:
        for shorter in tuple(keys):
            keys.update(_usable_deletions(shorter))
    keys.add(stem)
    return keys


def _usable_deletions(text: str) -> set[str]:
    """The deletions of `text` that are usable keys (`_usable`)."""
    if len(text) > 2 and text[1] != "." and text[-2] != ".":  # none starts or ends with a dot: no need to look
        return {text[:j] + text[j + 1 :] for j in range(len(text))}
    return {key for key in deletions(text) if _usable(key)}


def _less_one(short: str, long: str) -> bool:
    """`long` with one character deleted is `short` (their lengths differ by one)."""
    i = 0
    while i < len(short) and short[i] == long[i]:
        i += 1
    return short[i:] == long[i + 1 :]


def _int64(values: array[int]) -> npt.NDArray[np.int64]:
    return np.frombuffer(values, dtype=np.int64) if len(values) else np.zeros(0, dtype=np.int64)


def _usable(key: str) -> bool:
    return key != "" and key[0] != "." and key[-1] != "."
