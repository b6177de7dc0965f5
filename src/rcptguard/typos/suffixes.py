"""Top-level domains that exist, and the real ones a suffix that does not exist was probably meant to be.

The list is IANA's root zone (`data/tlds-alpha-by-domain.txt`, refreshed by `scripts/refresh_tlds.py`),
joined with the top-level labels of the Public Suffix List in use, so that a newer suffix list brings its
new top-level domains along. A domain under a top-level label in neither cannot receive mail.

A correction of a suffix that does not exist is ranked by the typing cost of the slip (`typos.cost`), less
a prior for suffixes in wide use: `.con` is `.com` (a neighbouring key), `.c` is `.com` rather than `.cl`
(the sender stopped typing, and .com is the suffix people mean most), `.com123` is `.com` with junk after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources

from rcptguard.domains import to_ascii
from rcptguard.typos.cost import cheapest, costs, path_cost, suffix_prior
from rcptguard.typos.slips import describe, likely_slip

MAX_FIX_COST = 4.5  # bits of typing cost beyond which a real suffix is no longer a plausible correction
TWO_EDIT_SUFFIX = 4  # letters a typed suffix needs before two edits in it are looked for
MAX_TRAILING = 4  # characters cut off, or added after, a complete suffix that are still taken as a slip


@dataclass(frozen=True, slots=True)
class Fix:
    """A real top-level domain that a non-existent one was probably meant to be, and how it was mistyped."""

    tld: str
    cost: float  # typing cost less the suffix's popularity prior: lower is likelier
    detail: str  # the slip in words: "'m' typed as 'n', its neighbour on the keyboard"


@cache
def real_tlds() -> frozenset[str]:
    """Every delegated top-level domain, in A-label form (IANA's list joined with the suffix list's)."""
    from rcptguard.domains import psl_top_labels  # noqa: PLC0415 - domains imports the typo model lazily

    text = resources.files("rcptguard.data").joinpath("tlds-alpha-by-domain.txt").read_text("utf-8")
    listed = {line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#")}
    return frozenset(listed | psl_top_labels())


def is_real_tld(label: str) -> bool:
    return label in real_tlds()


@cache
def country_codes() -> frozenset[str]:
    """The two-letter (country) top-level domains."""
    return frozenset(t for t in real_tlds() if len(t) == 2)


@lru_cache(maxsize=4096)
def nearest(tld: str) -> tuple[Fix, ...]:
    """Real top-level domains `tld` (which does not exist) was probably meant to be, likeliest first."""
    table = costs().edit
    found: dict[str, Fix] = {}

    def offer(real: str, cost: float, detail: str) -> None:
        fix = Fix(real, round(cost - suffix_prior(real), 3), detail)
        if real not in found or fix.cost < found[real].cost:
            found[real] = fix

    size = len(tld)
    most = 2 if size >= TWO_EDIT_SUFFIX else 1  # two edits in a suffix of three letters make any other
    for real in _around(tld, most):
        if real.startswith(tld) and len(real) - size <= 2:
            missing = len(real) - size
            offer(real, table["truncation"] * missing, f"'.{tld}' is '.{real}' cut short")
        if abs(len(real) - size) <= most and size >= 2:
            edits = cheapest(tld, real, most, in_name=False)
            if edits is not None:
                cost = path_cost(edits, in_name=False)
                if cost <= MAX_FIX_COST:
                    offer(real, cost, " and ".join(describe(e) for e in edits))
    plain = neighbourhood()[1]
    for end in range(max(1, size - MAX_TRAILING), size):  # a real suffix with junk after it: com123
        real, extra = tld[:end], tld[end:]
        if real in plain and (len(extra) > 1 or not extra.isalpha()):
            offer(real, table["junk"] * len(extra), f"{extra!r} typed after '.{real}'")
    return tuple(sorted(found.values(), key=lambda f: (f.cost, f.tld)))


def _around(tld: str, most: int) -> set[str]:
    """The real top-level domains that may be `most` edits from `tld`, or `tld` cut short: those sharing a
    deletion of at most two letters with it (the symmetric-delete method), a superset the caller verifies."""
    near = neighbourhood()[0]
    keys = {tld}
    for _ in range(most):
        keys |= {key[:i] + key[i + 1 :] for key in keys for i in range(len(key))}
    return {real for key in keys for real in near.get(key, ())}


@cache
def neighbourhood() -> tuple[dict[str, tuple[str, ...]], frozenset[str]]:
    """Each real top-level domain in plain letters (no `xn--`) under itself and every string made by deleting
    one or two of its letters; and the set of them. Built once (~50 ms; the index builds it with itself, so
    that no check pays for it)."""
    plain = frozenset(t for t in real_tlds() if not t.startswith("xn--"))
    near: dict[str, list[str]] = {}
    for real in plain:
        keys = {real} | {real[:i] + real[i + 1 :] for i in range(len(real))}
        keys |= {key[:i] + key[i + 1 :] for key in keys for i in range(len(key))}
        for key in keys:
            near.setdefault(key, []).append(real)
    return {key: tuple(reals) for key, reals in near.items()}, plain


@lru_cache(maxsize=16384)
def fix_for(typed_suffix: str, intended_suffix: str) -> Fix | None:
    """How `intended_suffix` (real) was mistyped as `typed_suffix`, whose top-level label does not exist."""
    head, _, tld = typed_suffix.rpartition(".")
    real_head, _, real_tld = intended_suffix.rpartition(".")
    if head != real_head or is_real_tld(to_ascii(tld)):
        return None
    return next((f for f in nearest(to_ascii(tld)) if f.tld == to_ascii(real_tld)), None)


@lru_cache(maxsize=16384)
def is_suffix_slip(typed_suffix: str, intended_suffix: str) -> bool:
    """Whether the typed suffix is a common slip of the intended one: a letter dropped, doubled, swapped or
    a neighbouring key (com→co), another suffix added after it (com→com.com), or a suffix that does not
    exist for the one meant (com→con). Such a suffix slip may come on top of one slip in the name."""
    if typed_suffix.startswith(intended_suffix + "."):
        return True
    if not is_real_tld(to_ascii(typed_suffix.rpartition(".")[2])):
        return fix_for(typed_suffix, intended_suffix) is not None
    edit = cheapest(typed_suffix, intended_suffix, 1, in_name=False)
    return edit is not None and likely_slip(edit[0]) is not None


