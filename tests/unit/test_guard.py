"""The engine's verdicts: what is held, what passes, and the words the sender reads."""

from __future__ import annotations

import gc
import weakref

import pytest

from rcptguard.guard import Guard
from rcptguard.model import Action
from tests.conftest import make_guard


@pytest.mark.parametrize(("address", "intended"), [
    ("x@army.ml", "army.mil"),
    ("x@mail.ml", "mail.mil"),
    ("x@us.af.ml", "us.af.mil"),
    ("x@usace.army.ml", "usace.army.mil"),
    ("x@af.il", "af.mil"),
])
def test_mil_slips_are_held_with_mali_in_the_reason(pentagon: Guard, address: str, intended: str) -> None:
    """A .mil address typed one letter short is held, names the domain meant and says whose domain it hit."""
    verdict = pentagon.check(address)
    assert verdict.action >= Action.HOLD
    assert verdict.intended == intended
    assert verdict.suggestion == f"x@{intended}"
    assert verdict.signals[0].name == "TLD_SLIP"
    if address.endswith(".ml"):
        assert "Mali" in verdict.reason


@pytest.mark.parametrize("address", ["x@army.mil", "x@navy.mil", "x@AF.MIL", "x@usace.army.mil.", "<x@js.mil>"])
def test_protected_suffix_passes(pentagon: Guard, address: str) -> None:
    """Anything under a protected suffix passes, in any case and with a trailing dot."""
    verdict = pentagon.check(address)
    assert verdict.action is Action.PASS
    assert verdict.signals[0].name == "PROTECTED_DOMAIN"


def test_known_correspondent_and_its_subdomains_pass() -> None:
    """A known domain and any subdomain of it pass as known correspondents."""
    guard = make_guard(known=("us.meridianbank.com",))
    for address in ("a@us.meridianbank.com", "a@ops.us.meridianbank.com"):
        assert guard.check(address).action is Action.PASS
    held = guard.check("a@usmeridianbank.com")
    assert held.action is Action.HOLD
    assert held.intended == "us.meridianbank.com"


def test_unicode_and_ascii_forms_get_one_verdict() -> None:
    """The U-label and the A-label of one domain get the same verdict, intended domain and reason."""
    guard = make_guard(protect=("altavista-group.com",))
    unicode_form = guard.check("a@altаvista-group.com")
    ascii_form = guard.check("a@xn--altvista-group-xtl.com")
    assert unicode_form.action is Action.HOLD
    assert unicode_form.to_json() == ascii_form.to_json() | {"address": unicode_form.address}
    assert unicode_form.signals[0].name == "IDN_HOMOGLYPH"
    assert "xn--altvista-group-xtl.com" in unicode_form.reason


def test_real_providers_near_a_known_domain_are_not_held() -> None:
    """ymail.com, email.com and mail.com are real providers one edit from gmail.com: at most a warning."""
    guard = make_guard(known=("gmail.com",))
    for address in ("a@ymail.com", "a@email.com", "a@mail.com", "a@gmx.com"):
        assert guard.check(address).action <= Action.WARN, address


def test_same_owner_passes() -> None:
    """gmx.net and gmx.de belong to one owner: writing to gmx.de makes gmx.net no slip."""
    verdict = make_guard(known=("gmx.de",)).check("a@gmx.net")
    assert verdict.action is Action.PASS
    assert verdict.signal("SAME_OWNER") is not None


def test_two_unknown_providers_pass() -> None:
    """A major provider that resembles another major provider, neither written to, passes."""
    assert make_guard(protect=("quillhaven.ai",)).check("a@gmail.com").action is Action.PASS


def test_restricted_suffix_caps_at_warn() -> None:
    """usda.gov is a real agency one letter from usa.gov: it gets a warning, never a hold."""
    verdict = make_guard(known=("usa.gov",)).check("a@usda.gov")
    assert verdict.action is Action.WARN
    assert verdict.signal("RESTRICTED_SUFFIX") is not None
    assert verdict.intended == "usa.gov"


def test_unrelated_domain_passes_without_signals(pentagon: Guard) -> None:
    """A domain near nothing indexed passes and says so."""
    verdict = pentagon.check("someone@example.org")
    assert verdict.action is Action.PASS
    assert verdict.signals == ()
    assert verdict.intended is None
    assert "does not look like" in verdict.reason


def test_malformed_address_is_rejected_with_its_problem(pentagon: Guard) -> None:
    """A malformed address gets reject with a MALFORMED_ADDRESS signal that says what is wrong."""
    verdict = pentagon.check("a@@b.com")
    assert verdict.action is Action.REJECT
    assert verdict.signals[0].name == "MALFORMED_ADDRESS"
    assert "@" in verdict.signals[0].evidence["problem"]


def test_short_names_are_only_warned() -> None:
    """A one-letter change to a three-letter name (cvs.com -> cbs.com) is too likely a real domain to hold."""
    guard = make_guard(known=("cvs.com",))
    assert guard.check("a@cbs.com").action is Action.WARN
    assert guard.check("a@cvs.co").action is Action.HOLD


def test_learned_correspondent_is_not_first_contact() -> None:
    """A domain written to before (but not yet known) loses the first-contact point."""
    fresh = make_guard(known=("stripe.com",)).check("a@strpe.com")
    seen = make_guard(known=("stripe.com",), **{"strpe.com": 1}).check("a@strpe.com")
    assert fresh.signal("FIRST_CONTACT") is not None
    assert seen.signal("FIRST_CONTACT") is None
    assert seen.score == fresh.score - 1.0


def test_learned_domain_becomes_known_after_enough_messages() -> None:
    """A learned domain with at least learn_min_count messages is a known correspondent."""
    guard = make_guard(known=("stripe.com",), **{"strpe.com": 5})
    assert guard.check("a@strpe.com").action is Action.PASS


def test_ties_break_deterministically() -> None:
    """Two intended domains at equal score: the same one wins whatever the order they were given in."""
    one = make_guard(known=("abcdj.com", "abcdk.com")).check("a@abcdq.com")
    two = make_guard(known=("abcdk.com", "abcdj.com")).check("a@abcdq.com")
    assert one.signals[0].name == two.signals[0].name == "SUBSTITUTION"
    assert one.intended == two.intended == "abcdj.com"
    assert one.alternatives == two.alternatives == ("abcdk.com",)


def test_score_is_the_sum_of_signals(pentagon: Guard) -> None:
    """The verdict's score is the sum of its signals' scores, so the explanation adds up."""
    verdict = pentagon.check("x@gmial.com")
    assert verdict.score == pytest.approx(sum(s.score for s in verdict.signals))
    assert verdict.score == pytest.approx(6.0 + 2.5 + 1.0)


def test_popular_provider_typo_is_held_even_if_not_known() -> None:
    """gmial.com is held for gmail.com even when the organisation has never written to gmail.com."""
    verdict = make_guard(protect=("quillhaven.ai",)).check("a@gmial.com")
    assert verdict.action is Action.HOLD
    assert verdict.intended == "gmail.com"


# -- compound and two-edit slips, suffixes that do not exist, real siblings ---------------------------------


@pytest.mark.parametrize(("address", "intended", "slips"), [
    ("x@yhaoo.con", "yahoo.com", ("TRANSPOSITION", "NO_SUCH_TLD")),
    ("x@outlok.co", "outlook.com", ("OMISSION", "TLD_SLIP")),
    ("x@gmial.cmo", "gmail.com", ("TRANSPOSITION", "NO_SUCH_TLD")),
    ("x@hotmial.cm", "hotmail.com", ("TRANSPOSITION", "TLD_SLIP")),
])
def test_a_name_slip_on_top_of_a_suffix_slip_is_held(address: str, intended: str, slips: tuple[str, ...]) -> None:
    """Two slips at once against a popular provider are held, and the verdict names both and the second's cost."""
    verdict = make_guard().check(address)
    assert verdict.action is Action.HOLD
    assert verdict.intended == intended
    assert tuple(s.name for s in verdict.signals[:2]) == slips
    assert verdict.signals[2].name == "SECOND_SLIP"
    assert verdict.signals[2].score < 0
    assert " and " in verdict.reason


def test_two_slips_in_a_known_name_are_held() -> None:
    """Two swaps in a known name of six letters or more are held (micorsfot.com for microsoft.com)."""
    verdict = make_guard(known=("microsoft.com",)).check("x@micorsfot.com")
    assert verdict.action is Action.HOLD
    assert verdict.intended == "microsoft.com"


def test_two_unlikely_slips_are_not_held() -> None:
    """A far key in the name on top of a suffix that no slip explains is no candidate at all."""
    assert make_guard(known=("acmetools.com",)).check("x@acmetopls.de").action is Action.PASS


@pytest.mark.parametrize(("address", "intended"), [
    ("x@protonmailc.om", "protonmail.com"),
    ("x@hotmailc.om", "hotmail.com"),
])
def test_a_misplaced_dot_is_held(address: str, intended: str) -> None:
    """A dot typed one place off is held, though the suffix it makes (.om, Oman) is real."""
    verdict = make_guard().check(address)
    assert verdict.action is Action.HOLD
    assert verdict.intended == intended
    assert verdict.signals[0].name == "MISPLACED_DOT"


@pytest.mark.parametrize(("address", "intended"), [
    ("x@smallfirm.con", "smallfirm.com"),
    ("x@unheard-of.cmo", "unheard-of.com"),
    ("x@outlook.com123", "outlook.com"),
    ("x@outlook.c", "outlook.com"),
    ("x@example.nett", "example.net"),
])
def test_a_suffix_that_does_not_exist_bounces(address: str, intended: str) -> None:
    """A domain under a top-level label that does not exist is held, the reason says the mail would bounce,
    and the nearest real suffix is named for any name, known or not."""
    verdict = make_guard().check(address)
    assert verdict.action is Action.HOLD
    assert verdict.intended == intended
    assert "would bounce" in verdict.reason
    assert any(s.name == "NO_SUCH_TLD" for s in verdict.signals)


def test_army_ml_is_army_mil_not_army_nl() -> None:
    """With .mil protected and army.nl known, army.ml is still army.mil: a dropped letter outranks a key."""
    verdict = make_guard(("mil",), ("army.nl",)).check("x@army.ml")
    assert verdict.action is Action.HOLD
    assert verdict.intended == "army.mil"
    assert "Mali" in verdict.reason


@pytest.mark.parametrize("address", ["x@host.local", "x@fileserver.corp", "x@box.lan", "x@a.example"])
def test_private_top_level_labels_are_not_called_non_existent(address: str) -> None:
    """Internal and reserved top-level labels (policy no_such_tld.private) pass."""
    assert make_guard().check(address).action is Action.PASS


def test_a_distinct_provider_name_under_another_suffix_points_to_it() -> None:
    """gmail.co.uk is gmail.com (a warning), not fmail.co.uk: the name typed is the provider's own."""
    verdict = make_guard().check("x@gmail.co.uk")
    assert verdict.action is Action.WARN
    assert verdict.intended == "gmail.com"


@pytest.mark.parametrize(("address", "known", "intended"), [
    ("x@linkedn.com.com", ("linkedin.com",), "linkedin.com"),
    ("x@gmial.com.com", (), "gmail.com"),
    ("x@yaho.co.uk.uk", (), "yahoo.co.uk"),
    ("x@githib.com.co", ("github.com",), "github.com"),
])
def test_a_slip_in_the_name_and_a_suffix_typed_twice(address: str, known: tuple[str, ...], intended: str) -> None:
    """A slip in the name and a suffix typed again after it: both slips named, the domain meant suggested
    (not the first suffix read as a slip of a name, linkedn.cox.com)."""
    verdict = make_guard((), known).check(address)
    assert verdict.action is Action.HOLD
    assert verdict.intended == intended
    names = [s.name for s in verdict.signals]
    assert "SUFFIX_APPEND" in names
    assert "SECOND_SLIP" in names


@pytest.mark.parametrize(("address", "intended"), [("x@outlok.com.br", "outlook.com.br"),
                                                   ("x@yaho.com.br", "yahoo.com.br")])
def test_one_slip_is_not_outranked_by_the_same_slip_and_another(address: str, intended: str) -> None:
    """The brand's own domain with one slip in the name beats the same slip plus a slipped suffix (outlok.com.br
    is not outlook.com.gr, whose weights would add up to more)."""
    verdict = make_guard().check(address)
    assert verdict.intended == intended
    assert verdict.signal("SECOND_SLIP") is None


def test_a_suffix_cut_short_is_the_most_used_of_its_completions() -> None:
    """treasury.go could be .gop, .got or .gov, all one letter short: .gov is named (more registrations)."""
    verdict = make_guard().check("x@treasury.go")
    assert verdict.intended == "treasury.gov"


@pytest.mark.parametrize("address", ["x@gmx.com.ar", "x@hotmail.com.pe", "x@yahoo.com.bo"])
def test_a_brand_under_a_country_registry_is_at_most_a_warning(address: str) -> None:
    """A provider's name and suffix under a country's own registry (com.ar is a public suffix), for a brand
    with domains in several countries, is probably its own: a warning, not a hold."""
    verdict = make_guard((), ("yahoo.com",)).check(address)
    assert verdict.action is Action.WARN
    assert verdict.signal("LIKELY_SIBLING") is not None


@pytest.mark.parametrize("address", ["x@gmail.com.co", "x@yahoo.com.com", "x@example.com.au"])
def test_a_suffix_added_that_is_no_brand_registry_is_held(address: str) -> None:
    """com.co is a slip of .com (not read as a country), com.com is no registry, and a name known under one
    suffix only is not a brand of many countries: held."""
    assert make_guard((), ("gmail.com", "yahoo.com", "example.com")).check(address).action is Action.HOLD


def test_a_slip_under_the_same_registered_domain_is_at_most_a_warning() -> None:
    """mial.example.com for the known mail.example.com: whoever owns example.com gets the mail either way."""
    verdict = make_guard((), ("mail.example.com",)).check("x@mial.example.com")
    assert verdict.action is Action.WARN
    signal = verdict.signal("LIKELY_SIBLING")
    assert signal is not None
    assert signal.evidence["why"] == "registrable"


def test_glued_country_code_of_a_protected_domain_is_held() -> None:
    """deibm.com, with ibm.com protected, is held as de.ibm.com."""
    verdict = make_guard(("ibm.com",)).check("x@deibm.com")
    assert verdict.action is Action.HOLD
    assert verdict.intended == "de.ibm.com"


def test_the_same_name_under_com_and_net_is_at_most_a_warning() -> None:
    """A provider's name under the other big generic suffix is probably its owner's (cox.com for cox.net)."""
    guard = make_guard()
    for typed in ("x@charter.com", "x@mail.charter.com"):
        verdict = guard.check(typed)
        assert verdict.action <= Action.WARN, typed


def test_a_guard_replaced_at_a_rebuild_is_freed_at_once() -> None:
    """A guard and its index are freed as soon as they are dropped (no reference cycle through their caches): a door
    that rebuilds its index does not keep the old one until the cycle collector's next full pass."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        guard = make_guard(("mil", "example-corp.com"), tuple(f"d{n}.example.org" for n in range(300)))
        grown = guard.extended({"new.example.net": 5})
        for address in ("a@army.ml", "b@gmial.com", "c@d1.example.orq", "d@d7.example.org"):
            guard.check(address)
            grown.check(address)
        dropped = [weakref.ref(guard), weakref.ref(guard.index)]
        del guard
        assert all(ref() is None for ref in dropped)
        action = grown.check("a@army.ml").action  # the grown guard lives on, with its own index
        assert action >= Action.WARN
        dropped = [weakref.ref(grown), weakref.ref(grown.index)]
        del grown
        assert all(ref() is None for ref in dropped)
    finally:
        if collecting:
            gc.enable()


@pytest.mark.parametrize(("address", "intended", "signal"), [
    ("x@tetburyco.uk", "tetbury.co.uk", "MISSING_DOT"),  # the dot before a suffix of two labels
    ("x@sheffieldac.uk", "sheffield.ac.uk", "MISSING_DOT"),
    ("x@ncscgov.uk", "ncsc.gov.uk", "MISSING_DOT"),
    ("x@gyro-castingsco.uk", "gyro-castings.co.uk", "MISSING_DOT"),
    ("x@dstl.govuk", "dstl.gov.uk", "MISSING_DOT"),  # the dot inside the suffix
    ("x@examplecom", "example.com", "MISSING_DOT"),  # the only dot
    ("x@armymil", "army.mil", "MISSING_DOT"),  # not .army with junk after it
    ("x@dstl.gv.uk", "dstl.gov.uk", "TLD_SLIP"),  # a slip inside a suffix of two labels, which then is none
    ("x@mod.giv.uk", "mod.gov.uk", "TLD_SLIP"),
])
def test_a_slip_across_the_suffixs_dots_is_held(address: str, intended: str, signal: str) -> None:
    """A dot left out where the name meets its suffix, or inside a suffix of two labels, and a slip in a suffix's
    first label (gv.uk for gov.uk) move where the name ends: each is still the slip of the domain it was."""
    guard = make_guard(protect=("army.mil",), known=("tetbury.co.uk", "sheffield.ac.uk", "ncsc.gov.uk",
                                                     "gyro-castings.co.uk", "dstl.gov.uk", "example.com",
                                                     "mod.gov.uk"))
    verdict = guard.check(address)
    assert verdict.action is Action.HOLD, verdict.reason
    assert verdict.intended == intended
    assert verdict.signals[0].name == signal
    for fine in ("x@tetbury.co.uk", "x@mail.abc.uk", "x@ac.uk", "x@mail.gv.at", "x@dstl.gov.uk"):
        assert guard.check(fine).action is Action.PASS, fine
    assert ".gv.uk is no public suffix, one letter short of .gov.uk" in guard.check("x@dstl.gv.uk").reason


def test_a_protected_whole_suffix_is_met_across_its_dots() -> None:
    """With gov.uk or mil protected as whole suffixes, a dot left out before them and a slip in gov.uk's first label
    are held as slips of the domain under them; a name of two letters glued to one is not read so."""
    guard = make_guard(protect=("gov.uk", "mil"))
    for address, intended, signal in (("x@dstl.gv.uk", "dstl.gov.uk", "TLD_SLIP"),
                                      ("x@ncscgov.uk", "ncsc.gov.uk", "MISSING_DOT"),
                                      ("x@armymil", "army.mil", "MISSING_DOT"),
                                      ("x@navymil", "navy.mil", "MISSING_DOT")):
        verdict = guard.check(address)
        assert (verdict.action, verdict.intended, verdict.signals[0].name) == (Action.HOLD, intended, signal), address
    assert guard.check("x@ukgov.uk").action is Action.PASS


def test_reading_a_slipped_suffix_loses_no_slip_and_invents_none() -> None:
    """The second reading of a domain (its name and a two-label suffix mended) only ever offers a whole indexed
    domain: the name-slips of the first reading still count (mail.oo.jp is mail.goo.jp, mail.col.uk is mail.cole.uk,
    though mail.com makes `mail` a known name), and no other domain of the same name is offered for a suffix one slip
    from a popular one (acme.eco.uk is not acme.com). A popular provider's short name glued to its suffix is a name
    of its own (zenco.uk is not zen.co.uk)."""
    guard = make_guard(protect=("acme.com",), known=("cole.uk", "mail.com"))
    assert guard.check("x@mail.oo.jp").intended == "mail.goo.jp"
    assert guard.check("x@mail.col.uk").intended == "mail.cole.uk"
    for fine in ("x@acme.eco.uk", "x@mail.neto.au", "x@zenco.uk", "x@sparkco.nz", "x@hanaor.jp", "x@adamcom.au"):
        assert guard.check(fine).action is Action.PASS, fine
    assert guard.check("x@poczta.onet.il").intended != "poczta.fm"
    assert guard.check("x@hotmailco.uk").intended == "hotmail.co.uk"
