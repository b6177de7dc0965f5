"""The index's compact tables against plain dictionaries built the straightforward way, on thousands of random
domains and slips of them: the same entries for every key, in the same order, and the same candidates when
every hash is made to collide."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest

from rcptguard import index as index_module
from rcptguard.domains import DomainError, normalize_domain
from rcptguard.index import DomainIndex, Entry, _Table, split_unicode
from rcptguard.model import Domain, Role
from rcptguard.typos.skeleton import skeleton

_SYLLABLES = ["ba", "ko", "mi", "tra", "ne", "sol", "vi", "ge", "lu", "ar", "po", "zen", "ix", "o", "e"]
_SUFFIXES = ["com", "net", "org", "de", "co.uk", "com.au", "fr", "io", "gov", "edu"]
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-."


def _name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.05:
        return rng.choice(["a", "ab", "x1"])  # names too short for most deletions to be usable
    if roll < 0.10:
        return f"{rng.choice('abcdefg')}.{''.join(rng.choices(_SYLLABLES, k=2))}"  # a dot second: unusable keys
    if roll < 0.13:
        return rng.choice(["münchen", "zürich", "пример", "köln-bank"]) + rng.choice(["", "x", "24"])
    return "".join(rng.choices(_SYLLABLES, k=rng.choice([2, 3, 4]))) + rng.choice(["", "", "-tech", "bank"])


def _entries(rng: random.Random, count: int) -> list[Entry]:
    out = []
    for _ in range(count):
        domain = normalize_domain(f"{_name(rng)}.{rng.choice(_SUFFIXES)}")
        roll = rng.random()
        role = Role.PROTECTED if roll < 0.02 else Role.POPULAR if roll < 0.06 else Role.KNOWN
        out.append(Entry(domain, role, count=rng.choice([0, 1, 2, 7, 50, 900])))
    out.append(Entry(normalize_domain("mil"), Role.PROTECTED, is_suffix=True))
    return out


def _slip(text: str, rng: random.Random) -> str:
    i = rng.randrange(len(text) + 1)
    kind = rng.randrange(4)
    if kind == 0 and i < len(text):
        return text[:i] + text[i + 1 :]
    if kind == 1:
        return text[:i] + rng.choice(_ALPHABET) + text[i:]
    if kind == 2 and i < len(text):
        return text[:i] + rng.choice(_ALPHABET) + text[i + 1 :]
    if i + 1 < len(text):
        return text[:i] + text[i + 1] + text[i] + text[i + 2 :]
    return text


def _usable(key: str) -> bool:
    return key != "" and not key.startswith(".") and not key.endswith(".")


def _deletions(text: str) -> set[str]:
    return {text[:i] + text[i + 1 :] for i in range(len(text))}


class _Reference:
    """The deletion neighbourhood, names and skeletons as dictionaries of strings to lists of domains."""

    def __init__(self, entries: list[Entry], two_edit_known: int) -> None:
        merged: dict[str, Entry] = {}
        for e in entries:
            old = merged.get(e.domain.ascii)
            if old is None or (e.role, e.count) > (old.role, old.count):
                merged[e.domain.ascii] = e
        known = sorted((e for e in merged.values() if e.role is Role.KNOWN), key=lambda e: -e.count)
        strong = {e.domain.ascii for e in known[:two_edit_known]}
        strong.update(e.domain.ascii for e in merged.values() if e.role is not Role.KNOWN)
        self.near: dict[str, list[str]] = {}
        self.stems: dict[str, list[str]] = {}
        self.skeletons: dict[str, list[str]] = {}
        for e in merged.values():
            if e.is_suffix:
                continue
            keys = {k for k in _deletions(e.stem) if _usable(k)}
            if e.domain.ascii in strong and len(e.stem.rsplit(".", 1)[-1]) >= index_module.TWO_EDIT_MIN_NAME:
                keys |= {k2 for k in keys for k2 in _deletions(k) if _usable(k2)}
            keys.add(e.stem)
            for key in keys:
                self.near.setdefault(key, []).append(e.domain.ascii)
            self.stems.setdefault(e.stem, []).append(e.domain.ascii)
            self.skeletons.setdefault(skeleton(e.domain.unicode), []).append(e.domain.ascii)


def _near(index: DomainIndex, key: str) -> list[str]:
    return [index._ascii[i] for i in index._near.get(hash(key)) if index._within(key, i)]


@pytest.fixture(scope="module")
def built() -> tuple[list[Entry], DomainIndex, _Reference]:
    rng = random.Random(20261202)
    entries = _entries(rng, 4000)
    patch = pytest.MonkeyPatch()
    patch.setattr(index_module, "TWO_EDIT_KNOWN", 400)  # some known names one deletion deep, some two
    try:
        index = DomainIndex(entries)
    finally:
        patch.undo()
    return entries, index, _Reference(entries, 400)


def test_every_key_finds_the_reference_entries_in_order(built: tuple[list[Entry], DomainIndex, _Reference]) -> None:
    """Every key a check looks up (a typed name and its deletions), for indexed names, one and two slips of
    them and unrelated names: the entries of the compact table are the reference's, in the order given."""
    entries, index, reference = built
    rng = random.Random(7)
    typed = [e.stem for e in entries if not e.is_suffix]
    typed += [_slip(rng.choice(typed), rng) for _ in range(3000)]
    typed += [_slip(_slip(rng.choice(typed), rng), rng) for _ in range(2000)]
    typed += [_name(rng) for _ in range(1000)]
    looked = found = 0
    for stem in typed:
        for key in [*_deletions(stem), stem]:
            want = reference.near.get(key, [])
            assert _near(index, key) == want, key
            looked += 1
            found += bool(want)
        want_stem = reference.stems.get(stem, [])
        assert [index._ascii[i] for i in index._stem_entries(stem)] == want_stem
        assert index.suffix_count(stem) == len(want_stem)
    assert looked > 50_000  # the sample reaches the table...
    assert found > 10_000  # ...and finds entries in it


def test_skeletons_match_the_reference(built: tuple[list[Entry], DomainIndex, _Reference]) -> None:
    entries, index, reference = built
    for e in entries:
        if e.is_suffix:
            continue
        look = skeleton(e.domain.unicode)
        hits = [index._ascii[i] for i in index._skeleton.get(hash(look)) if skeleton(index._unicode[i]) == look]
        assert hits == reference.skeletons[look]


def test_a_shared_hash_never_adds_a_candidate(built: tuple[list[Entry], DomainIndex, _Reference],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """With tables that answer every entry for every hash (as if all keys collided), the candidates of every
    typed domain are still exactly those of the real tables: each hit is checked against its string."""
    entries, index, _ = built
    rng = random.Random(3)
    typed = []
    for entry in rng.sample([e for e in entries if not e.is_suffix], 120):
        try:
            domain = normalize_domain(_slip(entry.domain.unicode, rng).strip(".").replace("..", "."))
        except DomainError:
            continue
        if index.covering(domain) is None:
            typed.append(domain)
    honest = {d.ascii: sorted((c.intended, c.family.value) for c in index.candidates(d)) for d in typed}
    assert sum(map(len, honest.values())) > len(typed) / 2
    everything = list(range(index.size))
    monkeypatch.setattr(_Table, "get", lambda self, h: everything)
    monkeypatch.setattr(index, "_bloom", bytearray(b"\xff") * len(index._bloom))
    for d in typed:
        assert sorted((c.intended, c.family.value) for c in index.candidates(d)) == honest[d.ascii], d.ascii


def test_merging_keeps_the_strongest_and_the_owner() -> None:
    """A domain given twice is one entry: the higher (role, count), with an owner given either time."""
    ab = normalize_domain("ab-corp.com")
    index = DomainIndex([Entry(ab, Role.KNOWN, count=3), Entry(ab, Role.POPULAR, owner="AB"),
                         Entry(ab, Role.KNOWN, count=9)])
    entry = index.covering(ab)
    assert entry is not None
    assert (entry.role, entry.count, entry.owner) == (Role.KNOWN, 9, "AB")
    assert index.size == 1
    assert index.popular(ab) is None


def test_importing_the_index_starts_no_thread() -> None:
    """A fresh interpreter that imports the engine has one thread: numpy's BLAS pool is not started, so every
    thread of a door is started after the door set its signal mask (the milter leaves SIGTERM to libmilter; a
    thread that did not block it would end the process at once, with what it learned unsaved)."""
    probe = ("import os, signal\nsignal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM,))\n"
             "import rcptguard.cli, rcptguard.gateways.milter, rcptguard.guard\n"
             "print(len(os.listdir('/proc/self/task')))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env,
                           timeout=120)
    assert found.stdout.strip() == "1", found.stdout + found.stderr


def _answers(index: DomainIndex, domain: Domain) -> tuple[object, ...]:
    found = [(c.intended, c.family.value, c.target.domain.ascii, c.target.role, c.target.count, c.edits,
              c.suffix_slip) for c in index.candidates(domain)]
    covering, popular = index.covering(domain), index.popular(domain)
    return (found, covering and (covering.domain.ascii, covering.role, covering.count),
            popular and (popular.domain.ascii, popular.owner))


def test_an_extended_index_answers_as_one_built_with_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    """An index extended twice (`DomainIndex.extended`: the domains a door learned since its build) gives, for
    every typed domain, the candidates, covering and popular entries of an index built with all of them at once;
    and the index it was extended from is unchanged."""
    monkeypatch.setattr(index_module, "TWO_EDIT_KNOWN", 400)  # the new known ones are not among the strong
    rng = random.Random(20261203)
    base = _entries(rng, 3000)
    names = {e.domain.ascii for e in base}
    more: list[Entry] = []
    while len(more) < 700:
        try:
            domain = normalize_domain(f"{_name(rng)}.{rng.choice(_SUFFIXES)}")
        except DomainError:
            continue
        if domain.ascii not in names:
            names.add(domain.ascii)
            role = Role.PROTECTED if len(more) % 50 == 0 else Role.KNOWN  # a protected one is strong at once
            more.append(Entry(domain, role, count=rng.choice([1, 2, 7])))
    more += [Entry(e.domain, Role.KNOWN, count=e.count + 5) for e in rng.sample(base, 40) if e.role is Role.KNOWN]
    rng.shuffle(more)
    whole = DomainIndex(base + more)
    first = DomainIndex(base)
    before = {e.domain: _answers(first, e.domain) for e in rng.sample(more, 100)}
    grown = first.extended(more[:350]).extended(more[350:])
    assert grown.size == whole.size
    typed = [e.domain for e in base + more if not e.is_suffix]
    for entry in rng.sample(base + more, 1500):
        try:
            typed.append(normalize_domain(_slip(entry.domain.unicode, rng).strip(".").replace("..", ".")))
        except DomainError:
            continue
    compared = 0
    for domain in typed:
        want = _answers(whole, domain)
        assert _answers(grown, domain) == want, domain.ascii
        compared += bool(want[0])
        stem = split_unicode(domain)[0]
        assert grown.suffix_count(stem) == whole.suffix_count(stem)
    assert compared > 1000  # slips that have candidates, not only unknown names
    for domain, answers in before.items():
        assert _answers(first, domain) == answers
