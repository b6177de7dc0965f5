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

    letters = set(tld)
    size = len(tld)
    for real, real_letters in _by_length():
        if abs(len(real) - size) > MAX_TRAILING or (len(letters & real_letters) < len(real) - 2
                                                    and not tld.startswith(real)):
            continue
        if real.startswith(tld) and len(real) - len(tld) <= 2:
            missing = len(real) - len(tld)
            offer(real, table["truncation"] * missing, f"'.{tld}' is '.{real}' cut short")
        extra = tld[len(real) :]
        if tld.startswith(real) and len(extra) <= MAX_TRAILING and (len(extra) > 1 or not extra.isalpha()):
            offer(real, table["junk"] * len(extra), f"{extra!r} typed after '.{real}'")
        # Two edits leave at least all but two letters in common: a cheap test before the edit paths.
        most = 2 if size >= TWO_EDIT_SUFFIX else 1  # two edits in a suffix of three letters make any other
        if abs(len(real) - size) <= most and size >= 2 and len(letters & real_letters) >= len(real) - most:
            edits = cheapest(tld, real, most, in_name=False)
            if edits is not None:
                cost = path_cost(edits, in_name=False)
                if cost <= MAX_FIX_COST:
                    offer(real, cost, " and ".join(describe(e) for e in edits))
    return tuple(sorted(found.values(), key=lambda f: (f.cost, f.tld)))


@cache
def _by_length() -> tuple[tuple[str, frozenset[str]], ...]:
    """The real top-level domains in plain letters (no `xn--`), each with its letters, as a tuple to scan."""
    return tuple((t, frozenset(t)) for t in sorted(real_tlds()) if not t.startswith("xn--"))


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


