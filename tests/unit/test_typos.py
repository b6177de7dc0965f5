"""Unit tests for the typo model: single edits, keyboard neighbours, skeletons and slip helpers."""

from __future__ import annotations

import pytest

from rcptguard.typos import cost, slips, suffixes
from rcptguard.typos.edits import Edit, Op, deletions, one_edit_variants, paths, single_edit
from rcptguard.typos.keyboards import distance, layouts, neighbours
from rcptguard.typos.skeleton import scripts_of, skeleton


def _edit(typed: str, intended: str) -> Edit:
    edit = single_edit(typed, intended)
    assert edit is not None, f"{typed!r} is not one edit from {intended!r}"
    return edit


# -- single_edit -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "intended", "op", "pos", "was", "now"),
    [
        ("gmil", "gmail", Op.OMISSION, 2, "a", ""),
        ("gmaiql", "gmail", Op.INSERTION, 4, "", "q"),
        ("gmbil", "gmail", Op.SUBSTITUTION, 2, "a", "b"),
        ("gmial", "gmail", Op.TRANSPOSITION, 2, "ai", "ia"),
        ("mail", "gmail", Op.OMISSION, 0, "g", ""),
        ("gmailx", "gmail", Op.INSERTION, 5, "", "x"),
    ],
)
def test_single_edit_finds_each_op(typed: str, intended: str, op: Op, pos: int, was: str, now: str) -> None:
    """`single_edit` names the operation, its position and the characters on each side."""
    edit = _edit(typed, intended)
    assert (edit.op, edit.pos, edit.was, edit.now) == (op, pos, was, now)
    assert (edit.typed, edit.intended) == (typed, intended)


@pytest.mark.parametrize(
    ("typed", "intended"),
    [
        ("gmail", "gmail"),  # identical
        ("gmxyl", "gmail"),  # two substitutions
        ("gmial", "gmali"),  # two transpositions' worth
        ("abc", "cba"),  # a swap of non-neighbours
        ("gmailxx", "gmail"),  # length differs by two
        ("gm", "gmail"),  # length differs by three
    ],
)
def test_single_edit_none(typed: str, intended: str) -> None:
    """Identical strings, two edits or a length difference of two or more give None."""
    assert single_edit(typed, intended) is None


def test_edit_before_and_after() -> None:
    """`before` and `after` are the typed characters around the edit, empty at the ends."""
    edit = _edit("gmaiql", "gmail")
    assert (edit.before(), edit.after()) == ("i", "l")
    start = _edit("xgmail", "gmail")
    assert (start.before(), start.after()) == ("", "g")
    end = _edit("gmai", "gmail")
    assert (end.before(), end.after()) == ("i", "")


@pytest.mark.parametrize(
    ("typed", "intended", "text"),
    [
        ("gmil", "gmail", "the 'a' is missing"),
        ("usmeridian", "us.meridian", "the dot is missing"),
        ("gmaiql", "gmail", "an extra 'q'"),
        ("e-xample", "example", "an extra hyphen"),
        ("gmial", "gmail", "'ai' typed as 'ia'"),
        ("gmbil", "gmail", "'b' typed for 'a'"),
    ],
)
def test_edit_describe(typed: str, intended: str, text: str) -> None:
    """`Edit.describe` words each op, naming dot and hyphen instead of quoting them."""
    assert _edit(typed, intended).describe() == text


# -- deletions and one_edit_variants ---------------------------------------------------------------


def test_deletions() -> None:
    """`deletions` is every string with exactly one character removed."""
    assert deletions("abc") == {"bc", "ac", "ab"}
    assert deletions("aab") == {"ab", "aa"}
    assert deletions("") == set()


def test_one_edit_variants_exact_set() -> None:
    """`one_edit_variants` holds every omission, insertion, substitution and transposition, not the input."""
    assert one_edit_variants("ab", "ab") == {"a", "b", "aab", "bab", "abb", "aba", "bb", "aa", "ba"}


def test_one_edit_variants_of_mil() -> None:
    """The variants of `mil` include the usual suffix slips and all are exactly one edit away."""
    variants = one_edit_variants("mil", "abcdefghijklmnopqrstuvwxyz0123456789-")
    assert {"ml", "mli", "mill", "mul", "il", "nil"} <= variants
    assert "mil" not in variants
    assert "lim" not in variants
    assert all(single_edit(v, "mil") is not None for v in variants)


# -- keyboards ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "layout"),
    [
        ("d", "s", "qwerty"),
        ("d", "r", "qwerty"),
        ("s", "d", "qwerty"),
        ("z", "u", "qwertz"),
        ("a", "z", "azerty"),
        ("q", "a", "qwerty"),
    ],
)
def test_keyboard_neighbours(a: str, b: str, layout: str) -> None:
    """Keys that touch on a layout are neighbours there."""
    assert layout in neighbours(a, b)


@pytest.mark.parametrize(("a", "b"), [("s", "c"), ("a", "p"), ("d", "d"), ("d", "1")])
def test_keyboard_not_neighbours(a: str, b: str) -> None:
    """Keys that do not touch, and a key with itself, are neighbours on no layout."""
    assert neighbours(a, b) == ()


def test_keyboard_layout_specific_neighbours() -> None:
    """z/u touch only on QWERTZ, and z/a not on QWERTZ (where z sits in the top row)."""
    assert neighbours("z", "u") == ("qwertz",)
    assert "qwerty" not in neighbours("z", "u")
    assert "qwertz" not in neighbours("a", "z")
    assert "azerty" in neighbours("z", "a")


def test_keyboard_neighbours_are_symmetric() -> None:
    """If a touches b on a layout then b touches a on it."""
    for name, keys in layouts().items():
        for key, near in keys.items():
            for other in near:
                assert key in keys[other], f"{key}/{other} on {name}"


# -- skeleton ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "real"),
    [
        ("\u0430mazon", "amazon"),  # Cyrillic а
        ("arnazon", "amazon"),  # rn for m
        ("amaz0n", "amazon"),  # 0 for o
        ("AMAZON", "amazon"),  # case
        ("paypa1", "paypal"),  # 1 for l
    ],
)
def test_skeleton_equal_for_lookalikes(typed: str, real: str) -> None:
    """Strings that look alike on screen share a skeleton."""
    assert typed != real
    assert skeleton(typed) == skeleton(real)


@pytest.mark.parametrize(("a", "b"), [("amazon", "amazen"), ("gmail", "gmial"), ("rn", "rm")])
def test_skeleton_differs_for_different_looks(a: str, b: str) -> None:
    """Strings that look different keep different skeletons."""
    assert skeleton(a) != skeleton(b)


def test_skeleton_is_lower_case() -> None:
    """The skeleton is folded to lower case and stable under a second application."""
    value = skeleton("PayPal")
    assert value == value.lower()
    assert skeleton(value) == value


def test_scripts_of() -> None:
    """`scripts_of` names each non-ASCII character once and ignores ASCII."""
    assert scripts_of("\u0430m\u0430zon") == {"\u0430": "CYRILLIC SMALL LETTER A"}
    assert scripts_of("amazon") == {}


# -- slips -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "intended", "expected"),
    [
        ("hotmaill", "hotmail", True),  # copy of the character before
        ("gmaail", "gmail", True),
        ("ggmail", "gmail", True),  # copy of the character after
        ("gmaiql", "gmail", False),  # an insertion of something else
        ("gmil", "gmail", False),  # not an insertion at all
    ],
)
def test_is_repetition(typed: str, intended: str, expected: bool) -> None:
    """A repetition is an inserted copy of a neighbouring character."""
    assert slips.is_repetition(_edit(typed, intended)) is expected


@pytest.mark.parametrize(
    ("typed", "intended", "layout", "present"),
    [
        ("gmaik", "gmail", "qwerty", True),  # k for l
        ("gnail", "gmail", "qwerty", True),  # n for m
        ("gmaikl", "gmail", "qwerty", True),  # k inserted beside l
        ("gmbil", "gmail", "qwerty", False),  # b for a: far apart
        ("gmaiql", "gmail", "qwerty", False),  # q inserted between i and l
        ("gmial", "gmail", "qwerty", False),  # transposition: not a fat finger
        ("gmil", "gmail", "qwerty", False),  # omission: not a fat finger
        ("tahoo", "yahoo", "qwerty", True),  # t for y
        ("gmaiu", "gmail", "qwertz", False),  # u for l: apart on every layout
    ],
)
def test_keyboard_layouts(typed: str, intended: str, layout: str, present: bool) -> None:
    """`keyboard_layouts` lists the layouts where a substitution or insertion hit a neighbouring key."""
    assert (layout in slips.keyboard_layouts(_edit(typed, intended))) is present


@pytest.mark.parametrize(
    ("typed", "intended", "expected"),
    [
        ("linkedln", "linkedin", True),  # l for i
        ("paypa1", "paypal", True),  # 1 for l
        ("g00gle", "go0gle", True),  # 0 for o
        ("gmbil", "gmail", False),
        ("gmil", "gmail", False),  # not a substitution
    ],
)
def test_is_lookalike(typed: str, intended: str, expected: bool) -> None:
    """`is_lookalike` is true for a substitution of a listed lookalike pair."""
    assert slips.is_lookalike(_edit(typed, intended)) is expected


@pytest.mark.parametrize(
    ("typed", "intended", "expected"),
    [
        ("amazoo", "amazon", True),  # n 0x6e -> o 0x6f
        ("gmahl", "gmail", True),  # i 0x69 -> h 0x68
        ("gmcil", "gmail", True),  # a 0x61 -> c 0x63: 0x02
        ("gmbil", "gmail", False),  # a 0x61 -> b 0x62: 0x03, two bits
        ("gmzil", "gmail", False),  # a 0x61 -> z 0x7a: 0x1b
        ("gmil", "gmail", False),  # not a substitution
    ],
)
def test_is_bitflip(typed: str, intended: str, expected: bool) -> None:
    """`is_bitflip` is true when the two characters differ in exactly one bit."""
    assert slips.is_bitflip(_edit(typed, intended)) is expected


@pytest.mark.parametrize(
    ("typed", "intended", "expected"),
    [
        ("gmil", "gmail", "omission"),
        ("gmial", "gmail", "transposition"),
        ("hotmaill", "hotmail", "repetition"),
        ("gmaik", "gmail", "keyboard"),
        ("gmaikl", "gmail", "keyboard"),
        ("gmbil", "gmail", None),  # a plain substitution is not a common slip
        ("gmaiql", "gmail", None),  # nor an insertion away from its neighbours
    ],
)
def test_likely_slip(typed: str, intended: str, expected: str | None) -> None:
    """`likely_slip` names omissions, transpositions, repetitions and keyboard slips, and nothing else."""
    assert slips.likely_slip(_edit(typed, intended)) == expected


@pytest.mark.parametrize(
    ("typed", "intended", "text"),
    [
        ("hotmaill", "hotmail", "'l' typed twice"),
        ("gmaik", "gmail", "'k' typed for 'l', its neighbour on the keyboard"),
        ("gmaikl", "gmail", "an extra 'k', a neighbouring key"),
        ("gmbil", "gmail", "'b' typed for 'a'"),
        ("gmil", "gmail", "the 'a' is missing"),
        ("gmial", "gmail", "'ai' typed as 'ia'"),
        ("gmaiql", "gmail", "an extra 'q'"),
    ],
)
def test_describe(typed: str, intended: str, text: str) -> None:
    """`describe` words repetitions and keyboard slips specially and falls back to `Edit.describe`."""
    assert slips.describe(_edit(typed, intended)) == text


def test_lookalike_pairs_are_unordered_pairs() -> None:
    """Every configured lookalike pair has two distinct characters and includes l/i and 0/o."""
    pairs = slips.lookalike_pairs()
    assert all(len(pair) == 2 for pair in pairs)
    assert frozenset("il") in pairs
    assert frozenset("o0") in pairs


# -- two edits and the cost of typing -------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "intended", "ops"), [
    ("micorsfot", "microsoft", (Op.TRANSPOSITION, Op.TRANSPOSITION)),
    ("otmaill", "hotmail", (Op.OMISSION, Op.INSERTION)),
    ("hotml", "hotmail", (Op.OMISSION, Op.OMISSION)),
])
def test_paths_find_two_edits(typed: str, intended: str, ops: tuple[Op, Op]) -> None:
    """`paths` finds two-edit ways from the intended text to the typed one, and `cheapest` picks one."""
    assert single_edit(typed, intended) is None
    assert paths(typed, intended)
    best = cost.cheapest(typed, intended, 2)
    assert best is not None
    assert tuple(e.op for e in best) == ops


@pytest.mark.parametrize(("typed", "intended"), [("gmxyz", "gmail"), ("a", "abcd")])
def test_paths_none_beyond_two(typed: str, intended: str) -> None:
    """Three edits, none, or a length difference of three give no two-edit path."""
    assert paths(typed, intended) == []
    assert cost.cheapest(typed, intended, 2) is None


def test_a_dropped_letter_costs_less_than_a_neighbouring_key() -> None:
    """The typing model ranks a dropped letter before a neighbouring key, and that before a far key."""
    dropped = cost.edit_cost(_edit("ml", "mil"))
    neighbour = cost.edit_cost(_edit("nl", "ml"))
    far = cost.edit_cost(_edit("gmpil", "gmail"))
    assert dropped < neighbour < far


def test_one_likely_slip_costs_less_than_two_unlikely_ones() -> None:
    """A single transposition is cheaper than two far substitutions."""
    one = cost.path_cost((_edit("gmial", "gmail"),))
    two = cost.cheapest("gxaiz", "gmail", 2)
    assert two is not None
    assert one < cost.path_cost(two)


def test_keyboard_distance() -> None:
    """Touching keys are about one pitch apart, far keys several; keys on no layout are infinitely far."""
    assert distance("s", "d") == pytest.approx(1.0)
    assert distance("q", "p") > 8
    assert distance("a", "☃") == float("inf")


# -- suffixes that exist -------------------------------------------------------------------------------


def test_real_tlds_come_from_iana_and_the_suffix_list() -> None:
    """The root zone's list holds the usual suffixes and none of the usual slips of them."""
    tlds = suffixes.real_tlds()
    assert {"com", "mil", "ml", "om", "co", "cm", "uk", "xn--p1ai"} <= tlds
    assert not {"con", "cmo", "comm", "c", "com123"} & tlds
    assert len(tlds) > 1400


@pytest.mark.parametrize(("typed", "best"), [
    ("con", "com"), ("cmo", "com"), ("c", "com"), ("comm", "com"), ("com123", "com"), ("nett", "net"),
    ("ukk", "uk"), ("orgg", "org"), ("xom", "com"), ("dee", "de"),
])
def test_nearest_real_suffix(typed: str, best: str) -> None:
    """A suffix that does not exist is read as the likeliest real one, by typing cost and use."""
    fixes = suffixes.nearest(typed)
    assert fixes
    assert fixes[0].tld == best


def test_suffix_slips() -> None:
    """Common slips of a suffix, appended suffixes and non-existent ones count as a suffix slip; others not."""
    assert suffixes.is_suffix_slip("co", "com")
    assert suffixes.is_suffix_slip("com.com", "com")
    assert suffixes.is_suffix_slip("con", "com")
    assert not suffixes.is_suffix_slip("de", "com")
    assert not suffixes.is_suffix_slip("con", "de")
