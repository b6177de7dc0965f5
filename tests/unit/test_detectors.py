"""Unit tests for the detectors, fed with candidates from a real `DomainIndex`."""

from __future__ import annotations

import pytest

from rcptguard.detect import DETECTORS, catalogue, classify, explain, homoglyph, names, tld
from rcptguard.domains import normalize_domain
from rcptguard.index import Candidate, DomainIndex, Entry, Family
from rcptguard.model import Role, Signal

KNOWN = (
    "gmail.com",
    "hotmail.com",
    "google.com",
    "linkedin.com",
    "amazon.com",
    "raytheon.com",
    "web.de",
    "notion.so",
    "treasury.gov",
    "x.com",
    "us.meridianbank.com",
    "fr.altavista-group.com",
    "oakridge-clinic.org",
    "example.com",
    "outlook.com",
    "example.net",
    "microsoft.com",
    "yahoo.co.uk",
)

CYRILLIC_A = "\u0430"


@pytest.fixture(scope="module")
def index() -> DomainIndex:
    entries = [Entry(normalize_domain(name), Role.KNOWN) for name in KNOWN]
    entries.append(Entry(normalize_domain("mil"), Role.PROTECTED, is_suffix=True))
    return DomainIndex(entries)


def _candidates(index: DomainIndex, typed: str, family: Family | None = None) -> list[Candidate]:
    found = index.candidates(normalize_domain(typed))
    return [c for c in found if family is None or c.family is family]


def _only(index: DomainIndex, typed: str, family: Family) -> Candidate:
    found = _candidates(index, typed, family)
    assert len(found) == 1, f"{typed}: {[(c.family, c.intended) for c in found]}"
    return found[0]


def _signal(index: DomainIndex, typed: str, family: Family) -> tuple[Candidate, Signal]:
    candidate = _only(index, typed, family)
    signal = classify(candidate)
    assert signal is not None, f"{typed} -> {candidate.intended} was not recognised"
    return candidate, signal


# -- suffix family (detect/tld.py) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "intended", "edit", "slip"),
    [
        ("army.ml", "army.mil", "mil→ml", "omission"),
        ("af.il", "af.mil", "mil→il", "omission"),
        ("raytheon.co", "raytheon.com", "com→co", "omission"),
        ("web.re", "web.de", "de→re", "keyboard"),
        ("web.se", "web.de", "de→se", "keyboard"),
    ],
)
def test_tld_slip(index: DomainIndex, typed: str, intended: str, edit: str, slip: str) -> None:
    """A common slip inside the suffix (dropped, doubled, swapped letter, neighbouring key) is TLD_SLIP."""
    candidate, signal = _signal(index, typed, Family.SUFFIX)
    assert candidate.intended == intended
    assert signal.name == "TLD_SLIP"
    assert signal.evidence["typed"] == typed
    assert signal.evidence["likely"] == intended
    assert signal.evidence["edit"] == edit
    assert signal.evidence["slip"] == slip


def test_tld_slip_detail_names_the_keyboard(index: DomainIndex) -> None:
    """A keyboard slip in the suffix is explained as a neighbouring key."""
    _, signal = _signal(index, "web.re", Family.SUFFIX)
    assert signal.evidence["detail"] == "'r' typed for 'd', its neighbour on the keyboard"


@pytest.mark.parametrize(
    ("typed", "intended", "edit"),
    [
        ("notion.co", "notion.so", "so→co"),
        ("treasury.com", "treasury.gov", "gov→com"),
        ("web.com", "web.de", "de→com"),
    ],
)
def test_tld_habit(index: DomainIndex, typed: str, intended: str, edit: str) -> None:
    """A habitual suffix (.com, .co, ...) typed for the right one is TLD_HABIT, even one letter away."""
    _, signal = _signal(index, typed, Family.SUFFIX)
    assert signal.name == "TLD_HABIT"
    assert (signal.evidence["typed"], signal.evidence["likely"], signal.evidence["edit"]) == (typed, intended, edit)


def test_suffix_append(index: DomainIndex) -> None:
    """A public suffix added after the full domain (x.com.co) is SUFFIX_APPEND of x.com."""
    candidate, signal = _signal(index, "x.com.co", Family.SUFFIX)
    assert candidate.intended == "x.com"
    assert signal.name == "SUFFIX_APPEND"
    assert signal.evidence["typed"] == "x.com.co"
    assert signal.evidence["likely"] == "x.com"
    assert signal.evidence["edit"] == "com→com.co"
    assert signal.evidence["detail"] == "'.co' added after .com"


def test_tld_change(index: DomainIndex) -> None:
    """A one-letter suffix change that is neither a common slip nor a habit (de→me) is TLD_CHANGE."""
    _, signal = _signal(index, "web.me", Family.SUFFIX)
    assert signal.name == "TLD_CHANGE"
    assert (signal.evidence["likely"], signal.evidence["edit"]) == ("web.de", "de→me")


def test_tld_swap(index: DomainIndex) -> None:
    """The same name under an unrelated suffix (amazon.co.uk) is only TLD_SWAP."""
    candidate, signal = _signal(index, "amazon.co.uk", Family.SUFFIX)
    assert candidate.intended == "amazon.com"
    assert signal.name == "TLD_SWAP"
    assert signal.evidence["edit"] == "com→co.uk"
    assert signal.evidence["detail"] == ".co.uk instead of .com"


# -- name family (detect/names.py) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "intended", "name", "edit"),
    [
        ("usmeridianbank.com", "us.meridianbank.com", "MISSING_DOT", "omission"),
        ("fr-altavista-group.com", "fr.altavista-group.com", "DOT_HYPHEN", "substitution"),
        ("oakridgeclinic.org", "oakridge-clinic.org", "HYPHEN_DROP", "omission"),
        ("e-xample.com", "example.com", "HYPHEN_ADD", "insertion"),
        ("examples.com", "example.com", "PLURAL", "insertion"),
        ("outlooks.com", "outlook.com", "PLURAL", "insertion"),
        ("hotmaill.com", "hotmail.com", "REPETITION", "insertion"),
        ("gmaail.com", "gmail.com", "REPETITION", "insertion"),
        ("linkedln.com", "linkedin.com", "ASCII_LOOKALIKE", "substitution"),
        ("gmial.com", "gmail.com", "TRANSPOSITION", "transposition"),
        ("gmaik.com", "gmail.com", "KEYBOARD_TYPO", "substitution"),
        ("gmaikl.com", "gmail.com", "KEYBOARD_TYPO", "insertion"),
        ("gmeil.com", "gmail.com", "VOWEL_SWAP", "substitution"),
        ("gmil.com", "gmail.com", "OMISSION", "omission"),
        ("gogle.com", "google.com", "OMISSION", "omission"),
        ("amazoo.com", "amazon.com", "BITFLIP", "substitution"),
        ("gmaiql.com", "gmail.com", "INSERTION", "insertion"),
        ("gmbil.com", "gmail.com", "SUBSTITUTION", "substitution"),
    ],
)
def test_name_detectors(index: DomainIndex, typed: str, intended: str, name: str, edit: str) -> None:
    """A single edit inside the name is named by the most specific matching name detector."""
    candidate, signal = _signal(index, typed, Family.NAME)
    assert candidate.intended == intended
    assert signal.name == name
    assert signal.evidence["typed"] == typed
    assert signal.evidence["likely"] == intended
    assert signal.evidence["edit"] == edit
    assert signal.evidence["detail"]


@pytest.mark.parametrize(
    ("typed", "detail"),
    [
        ("usmeridianbank.com", "the dot is missing"),
        ("fr-altavista-group.com", "hyphen typed for dot"),
        ("hotmaill.com", "'l' typed twice"),
        ("gmial.com", "'ai' typed as 'ia'"),
    ],
)
def test_name_detector_details(index: DomainIndex, typed: str, detail: str) -> None:
    """The evidence carries a sentence a sender can read about the slip."""
    _, signal = _signal(index, typed, Family.NAME)
    assert signal.evidence["detail"] == detail


def test_plural_needs_the_end_of_a_label(index: DomainIndex) -> None:
    """An 's' inserted inside a name (not at its end) is not PLURAL."""
    _, signal = _signal(index, "exsample.com", Family.NAME)
    assert signal.name != "PLURAL"


# -- skeleton family (detect/homoglyph.py) --------------------------------------------------------------


@pytest.mark.parametrize("typed", ["xn--mazon-3ve.com", f"{CYRILLIC_A}mazon.com"])
def test_idn_homoglyph(index: DomainIndex, typed: str) -> None:
    """A Cyrillic а in place of a Latin a, in A-label or U-label form, is IDN_HOMOGLYPH of amazon.com."""
    candidate, signal = _signal(index, typed, Family.SKELETON)
    assert candidate.intended == "amazon.com"
    assert signal.name == "IDN_HOMOGLYPH"
    assert signal.evidence["typed"] == f"{CYRILLIC_A}mazon.com"
    assert signal.evidence["likely"] == "amazon.com"
    assert "cyrillic small letter a" in signal.evidence["letters"]


@pytest.mark.parametrize("typed", ["arnazon.com", "amaz0n.com"])
def test_ascii_lookalike_via_skeleton(index: DomainIndex, typed: str) -> None:
    """Plain ASCII with the skeleton of amazon.com (rn for m, 0 for o) is ASCII_LOOKALIKE."""
    candidate, signal = _signal(index, typed, Family.SKELETON)
    assert candidate.intended == "amazon.com"
    assert signal.name == "ASCII_LOOKALIKE"
    assert (signal.evidence["typed"], signal.evidence["likely"]) == (typed, "amazon.com")


def test_homoglyph_detectors_order() -> None:
    """IDN_HOMOGLYPH is tried before ASCII_LOOKALIKE, and each family has its own detector tuple."""
    assert DETECTORS[Family.SKELETON] == (homoglyph.idn_homoglyph, homoglyph.ascii_lookalike)
    assert DETECTORS[Family.SUFFIX] == tld.DETECTORS
    assert DETECTORS[Family.NAME] == names.DETECTORS


def test_catalogue_lists_every_detector_once() -> None:
    """The catalogue names each detector with its signal name and a one-line description."""
    listed = [d.name for d in catalogue()]
    assert len(listed) == sum(len(d) for d in DETECTORS.values())
    assert {"TLD_SLIP", "SUFFIX_APPEND", "MISSING_DOT", "BITFLIP", "IDN_HOMOGLYPH"} <= set(listed)
    assert all(d.description for d in catalogue())


@pytest.mark.parametrize(("typed", "intended", "edit", "detail"), [
    ("army.mli", "army.mil", "mil→mli", "'il' typed as 'li'"),
    ("army.mill", "army.mil", "mil→mill", "'l' typed twice"),
    ("outlook.com123", "outlook.com", "com→com123", "'123' typed after '.com'"),
    ("outlook.c", "outlook.com", "com→c", "'.c' is '.com' cut short"),
    ("yahoo.co.ukk", "yahoo.co.uk", "co.uk→co.ukk", "'k' typed twice"),
])
def test_no_such_tld(index: DomainIndex, typed: str, intended: str, edit: str, detail: str) -> None:
    """A suffix whose top-level label does not exist, typed for a real one, is NO_SUCH_TLD with the slip named."""
    found = [c for c in _candidates(index, typed, Family.SUFFIX) if c.intended == intended]
    assert len(found) == 1
    signal = classify(found[0])
    assert signal is not None
    assert signal.name == "NO_SUCH_TLD"
    assert (signal.evidence["edit"], signal.evidence["detail"]) == (edit, detail)


@pytest.mark.parametrize(("typed", "intended", "names"), [
    ("gmali.co", "gmail.com", ("TRANSPOSITION", "TLD_SLIP")),
    ("amzaon.co", "amazon.com", ("TRANSPOSITION", "TLD_SLIP")),
    ("outlok.co", "outlook.com", ("OMISSION", "TLD_SLIP")),
    ("gmial.cmo", "gmail.com", ("TRANSPOSITION", "NO_SUCH_TLD")),
])
def test_name_slip_on_top_of_a_suffix_slip(index: DomainIndex, typed: str, intended: str,
                                           names: tuple[str, ...]) -> None:
    """A slip in the name on top of a common slip in the suffix is one candidate whose signals name both."""
    candidate = _only(index, typed, Family.NAME)
    assert candidate.intended == intended
    assert candidate.suffix_slip
    signals = explain(candidate)
    assert signals is not None
    assert tuple(s.name for s in signals) == names
    assert all(s.evidence["likely"] == intended for s in signals)


@pytest.mark.parametrize(("typed", "intended", "details"), [
    ("micorsfot.com", "microsoft.com", ("'ro' typed as 'or'", "'of' typed as 'fo'")),
    ("otmaill.com", "hotmail.com", ("the 'h' is missing", "'l' typed twice")),
    ("hotmial.co", "hotmail.com", ("'ai' typed as 'ia'", "the 'm' is missing")),
])
def test_two_slips_in_a_long_name(index: DomainIndex, typed: str, intended: str, details: tuple[str, ...]) -> None:
    """Two slips in a name of six letters or more are found, and each is named in words."""
    candidate = _only(index, typed, Family.NAME)
    assert candidate.intended == intended
    signals = explain(candidate)
    assert signals is not None
    assert tuple(s.evidence["detail"] for s in signals) == details


@pytest.mark.parametrize(("typed", "intended"), [
    ("hotmailc.om", "hotmail.com"),
    ("examplen.et", "example.net"),
])
def test_misplaced_dot(index: DomainIndex, typed: str, intended: str) -> None:
    """A dot typed one place off moves a letter into the suffix (.om is Oman: a real suffix); MISPLACED_DOT."""
    candidate, signal = _signal(index, typed, Family.NAME)
    assert candidate.intended == intended
    assert signal.name == "MISPLACED_DOT"


def test_glued_prefix_of_a_protected_domain() -> None:
    """A country code glued to a protected domain is read as that subdomain (deibm.com for de.ibm.com)."""
    glued = DomainIndex([Entry(normalize_domain("ibm.com"), Role.PROTECTED),
                         Entry(normalize_domain("acme.com"), Role.KNOWN)])
    [candidate] = [c for c in glued.candidates(normalize_domain("deibm.com")) if c.family is Family.NAME]
    assert candidate.intended == "de.ibm.com"
    signal = classify(candidate)
    assert signal is not None
    assert signal.name == "GLUED_PREFIX"
    assert glued.candidates(normalize_domain("deacme.com")) == []  # known, not protected
    assert glued.candidates(normalize_domain("xyibm.com")) == []  # xy is no country code


# -- the index ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["unrelated.org", "wikipedia.org", "gmail.net.invalid"])
def test_index_finds_nothing_for_an_unrelated_domain(index: DomainIndex, typed: str) -> None:
    """A domain that is no slip of an indexed one has no candidates."""
    assert index.candidates(normalize_domain(typed)) == []


@pytest.mark.parametrize(
    "typed",
    [
        "gmxyl.com",  # two substitutions
        "gnial.com",  # a substitution and a transposition
        "xgmai.com",  # shares the deletion `gmai` with gmail.com: an insertion plus an omission, in a short name
        "gmial.de",  # a name slip, and a suffix no slip explains
        "amzaon.fr",
    ],
)
def test_index_finds_nothing_two_edits_away(index: DomainIndex, typed: str) -> None:
    """Two slips in a name of five letters, or a name slip under an unrelated suffix, give no candidates,
    even when a deletion is shared."""
    assert index.candidates(normalize_domain(typed)) == []


def test_candidates_carry_over_subdomain_prefix(index: DomainIndex) -> None:
    """Labels left of a slipped name are kept in the intended domain (x.gmial.com -> x.gmail.com)."""
    candidate, signal = _signal(index, "x.gmial.com", Family.NAME)
    assert candidate.intended == "x.gmail.com"
    assert candidate.typed == "gmial.com"
    assert signal.name == "TRANSPOSITION"


def test_candidates_carry_over_prefix_under_protected_suffix(index: DomainIndex) -> None:
    """A slip of a protected whole suffix keeps every label before it (usace.army.ml -> usace.army.mil)."""
    candidate, signal = _signal(index, "usace.army.ml", Family.SUFFIX)
    assert candidate.intended == "usace.army.mil"
    assert candidate.target.role is Role.PROTECTED
    assert signal.name == "TLD_SLIP"
    assert signal.evidence["likely"] == "usace.army.mil"


@pytest.mark.parametrize("typed", ["gmail.com", "army.mil", "usace.army.mil", "mail.gmail.com"])
def test_indexed_and_covered_domains_are_not_their_own_slip(index: DomainIndex, typed: str) -> None:
    """An indexed domain, or one under a protected suffix, yields no candidate pointing at itself."""
    domain = normalize_domain(typed)
    assert all(c.intended != domain.unicode for c in index.candidates(domain))


def test_covering(index: DomainIndex) -> None:
    """`covering` finds the entry a domain is or lies under, and nothing for a slip."""
    covered = index.covering(normalize_domain("usace.army.mil"))
    assert covered is not None
    assert covered.domain.ascii == "mil"
    assert index.covering(normalize_domain("army.ml")) is None
