"""The world's evidence, classification: pure functions over hand-made DNS answers (no I/O)."""

from __future__ import annotations

import pytest

from rcptguard.world import Answer, Finding, Outcome, SharedHosts, classify
from rcptguard.world.classify import brand, merge_addresses, needs_address, needs_intended, registrable
from rcptguard.world.shared import SHARED_HOSTS


def mx(name: str, *hosts: str) -> Answer:
    return Answer(name, "MX", Outcome.ANSWER, hosts, 300)


def nx(name: str, rdtype: str = "MX") -> Answer:
    return Answer(name, rdtype, Outcome.NXDOMAIN, ttl=60)


def nodata(name: str, rdtype: str = "MX") -> Answer:
    return Answer(name, rdtype, Outcome.ANSWER, ttl=60)


def failed(name: str, detail: str = "SERVFAIL", rdtype: str = "MX") -> Answer:
    return Answer(name, rdtype, Outcome.FAILED, detail=detail)


def timeout(name: str, rdtype: str = "MX") -> Answer:
    return Answer(name, rdtype, Outcome.TIMEOUT, detail="within 150 ms")


def addresses(name: str, *records: str) -> Answer:
    return Answer(name, "A/AAAA", Outcome.ANSWER, records, 300)


def test_nxdomain_is_no_domain() -> None:
    """An MX question answered NXDOMAIN means the domain does not exist, and the text says the mail would bounce."""
    found = classify("army.ml", "army.mil", nx("army.ml"))
    assert found.finding is Finding.NO_DOMAIN
    assert found.finding.would_bounce
    assert found.text == "army.ml does not exist (the DNS has no such domain): mail to it would bounce."


def test_null_mx_is_no_mail() -> None:
    """A lone null MX (RFC 7505) means no mail is taken."""
    assert classify("army.ml", "army.mil", mx("army.ml", ".")).finding is Finding.NO_MAIL


def test_null_mx_beside_real_hosts_is_ignored() -> None:
    """A null MX next to real MX hosts is not a refusal: the real hosts are compared."""
    found = classify("usarmy.mil", "army.mil", mx("usarmy.mil", ".", "mx1.army.mil"), None,
                     mx("army.mil", "mx1.army.mil"))
    assert found.finding is Finding.SAME_OPERATOR
    assert found.hosts == ("mx1.army.mil",)


def test_no_mx_and_no_address_is_no_mail() -> None:
    """NODATA for MX, A and AAAA: no implicit MX either (RFC 5321 5.1), so no mail server."""
    address = merge_addresses(nodata("navy.ml", "A"), nodata("navy.ml", "AAAA"))
    found = classify("navy.ml", "navy.mil", nodata("navy.ml"), address)
    assert found.finding is Finding.NO_MAIL
    assert "would bounce" in found.text


def test_no_mx_with_an_address_goes_to_that_address() -> None:
    """NODATA for MX but an AAAA record: the implicit MX is the domain's own address, a different operator."""
    address = merge_addresses(nodata("web.co", "A"), Answer("web.co", "AAAA", Outcome.ANSWER, ("2001:db8::1",), 30))
    found = classify("web.co", "web.com", nodata("web.co"), address)
    assert found.finding is Finding.DIFFERENT_OPERATOR
    assert found.hosts == ("2001:db8::1",)


def test_no_mx_and_an_address_question_that_failed_is_unknown() -> None:
    """NODATA for MX, one address question failed and the other found none: nothing is known."""
    address = merge_addresses(nodata("navy.ml", "A"), failed("navy.ml", rdtype="AAAA"))
    found = classify("navy.ml", "navy.mil", nodata("navy.ml"), address)
    assert found.finding is Finding.UNKNOWN
    assert "SERVFAIL" in found.text


def test_no_mx_without_an_address_answer_is_unknown() -> None:
    """NODATA for MX with no address answer given: not decided."""
    assert classify("navy.ml", "navy.mil", nodata("navy.ml")).finding is Finding.UNKNOWN


def test_servfail_and_timeout_are_unknown_and_said_so() -> None:
    """A failed or timed-out MX question is UNKNOWN, with the reason in the text."""
    servfail = classify("army.ml", "army.mil", failed("army.ml"))
    late = classify("army.ml", "army.mil", timeout("army.ml"))
    assert (servfail.finding, late.finding) == (Finding.UNKNOWN, Finding.UNKNOWN)
    assert "SERVFAIL" in servfail.text
    assert "within 150 ms" in late.text


def test_same_hosts_are_the_same_operator() -> None:
    """The intended domain's own MX host serves the typed domain too."""
    found = classify("gmx.com", "gmx.de", mx("gmx.com", "mx00.emig.gmx.net"), None, mx("gmx.de", "mx00.emig.gmx.net"))
    assert found.finding is Finding.SAME_OPERATOR
    assert "gmx.de's own mail servers" in found.text


def test_host_under_the_intended_domain_is_the_same_operator_without_its_mx() -> None:
    """A host under the intended registrable domain is its own even when the intended MX could not be read."""
    found = classify("usarmy.mil", "army.mil", mx("usarmy.mil", "mx9.army.mil"), None, timeout("army.mil"))
    assert found.finding is Finding.SAME_OPERATOR


def test_host_under_the_brands_mail_domain_is_the_same_operator() -> None:
    """gmx.de's MX lies under gmx.net (brand gmx), so another gmx.net host serves gmx.at for the same operator."""
    found = classify("gmx.at", "gmx.de", mx("gmx.at", "mx01.emig.gmx.net"), None, mx("gmx.de", "mx00.emig.gmx.net"))
    assert found.finding is Finding.SAME_OPERATOR


def test_mail_domain_of_another_brand_counts_only_by_exact_host() -> None:
    """hotmail.com's MX lies under outlook.com: a different outlook.com host does not make a sibling of hotmail.com."""
    intended = mx("hotmail.com", "hotmail-com.olc.protection.outlook.com")
    other_host = classify("hotmial.com", "hotmail.com", mx("hotmial.com", "mx.outlook.com"), None, intended)
    same_host = classify("hotmail.co", "hotmail.com", mx("hotmail.co", "hotmail-com.olc.protection.outlook.com"),
                         None, intended)
    assert other_host.finding is Finding.DIFFERENT_OPERATOR
    assert same_host.finding is Finding.SAME_OPERATOR


def test_brand_alone_is_not_the_same_operator() -> None:
    """army.ml's own mail.army.ml carries the brand `army` but is not army.mil's."""
    found = classify("army.ml", "army.mil", mx("army.ml", "mail.army.ml"), None, mx("army.mil", "mx1.army.mil"))
    assert found.finding is Finding.DIFFERENT_OPERATOR
    assert found.text == "army.ml takes mail at mail.army.ml, which is not one of army.mil's mail servers."


def test_shared_hosting_is_never_the_same_operator() -> None:
    """Both on Google Workspace, with exactly the same hosts: SHARED_HOSTING, not SAME_OPERATOR."""
    hosts = ("aspmx.l.google.com", "alt1.aspmx.l.google.com")
    found = classify("smallfirm.co", "smallfirm.com", mx("smallfirm.co", *hosts), None, mx("smallfirm.com", *hosts))
    assert found.finding is Finding.SHARED_HOSTING
    assert "Google Workspace" in found.text


def test_shared_tenant_hosts_are_shared_hosting() -> None:
    """Microsoft 365 tenant hosts are shared hosting even when the intended domain is on Microsoft 365 too."""
    found = classify("smallfirm.co", "smallfirm.com", mx("smallfirm.co", "smallfirm-co.mail.protection.outlook.com"),
                     None, mx("smallfirm.com", "smallfirm-com.mail.protection.outlook.com"))
    assert found.finding is Finding.SHARED_HOSTING
    assert "Microsoft 365" in found.text


def test_own_host_beside_a_shared_host_proves_nothing() -> None:
    """An own host next to a shared one: the shared one proves nothing, so no SAME_OPERATOR."""
    found = classify("usarmy.mil", "army.mil", mx("usarmy.mil", "mx1.army.mil", "aspmx.l.google.com"), None,
                     mx("army.mil", "mx1.army.mil"))
    assert found.finding is Finding.SHARED_HOSTING


def test_unknown_intended_mx_leaves_a_foreign_host_unknown() -> None:
    """A host not under the intended domain, and the intended MX unreadable: cannot be compared, UNKNOWN."""
    found = classify("gmx.com", "gmx.de", mx("gmx.com", "mx00.emig.gmx.net"), None, failed("gmx.de"))
    assert found.finding is Finding.UNKNOWN
    assert "could not be compared with gmx.de's (SERVFAIL)" in found.text


def test_many_hosts_are_shortened_in_the_text() -> None:
    """More than three hosts are named as the first three and a count."""
    found = classify("x.co", "x.com", mx("x.co", "a.x.co", "b.x.co", "c.x.co", "d.x.co", "e.x.co"), None,
                     mx("x.com", "mx.x.com"))
    assert "a.x.co, b.x.co, c.x.co and 2 more" in found.text


def test_which_questions_follow() -> None:
    """Addresses are asked only for a domain without MX; the intended MX only when there are hosts to compare."""
    assert needs_address(nodata("a.co"))
    assert not needs_address(mx("a.co", "mx.a.co"))
    assert not needs_address(nx("a.co"))
    assert needs_intended(mx("a.co", "mx.a.co"))
    assert not needs_intended(mx("a.co", "."))
    assert not needs_intended(failed("a.co"))


def test_merge_addresses() -> None:
    """Any address answers; NXDOMAIN on either is no domain; none only when both said none."""
    a, aaaa = Answer("a.co", "A", Outcome.ANSWER, ("192.0.2.1",), 50), timeout("a.co", "AAAA")
    assert merge_addresses(a, aaaa).records == ("192.0.2.1",)
    assert merge_addresses(a, aaaa).ttl == 50
    assert merge_addresses(nx("a.co", "A"), nodata("a.co", "AAAA")).outcome is Outcome.NXDOMAIN
    assert merge_addresses(nodata("a.co", "A"), nodata("a.co", "AAAA")).outcome is Outcome.ANSWER
    assert merge_addresses(nodata("a.co", "A"), timeout("a.co", "AAAA")).outcome is Outcome.TIMEOUT


@pytest.mark.parametrize(("host", "expected"), [
    ("mx1.army.mil", "army.mil"), ("army.mil", "army.mil"), ("mx.bbc.co.uk", "bbc.co.uk"), ("co.uk", "co.uk"),
    ("mx00.emig.gmx.net", "gmx.net"),
])
def test_registrable(host: str, expected: str) -> None:
    """The registrable domain is one label left of the public suffix."""
    assert registrable(host) == expected


def test_brand() -> None:
    """The brand is the registrable domain's first label."""
    assert brand("mx00.emig.gmx.net") == brand("gmx.de") == "gmx"


def test_shared_hosts_match_a_host_or_what_lies_under_it() -> None:
    """An entry matches itself and hosts under it, not hosts that merely end in the same letters."""
    shared = SharedHosts()
    assert shared.operator("ALT3.aspmx.l.google.com.") == "Google Workspace"
    assert shared.operator("contoso-com.mail.protection.outlook.com") == "Microsoft 365"
    assert shared.operator("mx0a-001.pphosted.com") == "Proofpoint"
    assert shared.operator("gmail-smtp-in.l.google.com") is None  # Gmail's own, not Workspace's
    assert shared.operator("hotmail-com.olc.protection.outlook.com") is None
    assert shared.operator("notsecureserver.net") is None
    assert "smtp.secureserver.net" in shared


def test_extra_shared_hosts_from_the_settings() -> None:
    """A site adds its regional hoster; it then counts as shared."""
    shared = SharedHosts(extra=("mail.regional-isp.example",))
    assert shared.operator("mx2.mail.regional-isp.example") == "a shared mail host"
    found = classify("a.co", "a.com", mx("a.co", "mx2.mail.regional-isp.example"), None,
                     mx("a.com", "mx2.mail.regional-isp.example"), shared)
    assert found.finding is Finding.SHARED_HOSTING


def test_shared_host_list_is_well_formed() -> None:
    """Every entry names its operator and source, every suffix is a host name below a registrable domain or one,
    never a bare public suffix, and no suffix is listed twice."""
    seen: set[str] = set()
    for entry in SHARED_HOSTS:
        assert entry.operator
        assert len(entry.source) > 15
        for suffix in entry.suffixes:
            assert suffix == suffix.lower().strip(".")
            assert registrable(suffix) != suffix.rsplit(".", 1)[-1]
            assert "." in suffix
            assert suffix not in seen
            seen.add(suffix)


@pytest.mark.parametrize("intended_answer", [nx("army.mil"), failed("army.mil"), timeout("army.mil")])
def test_a_bounce_is_believed_only_when_the_intended_domain_is_known(intended_answer: Answer) -> None:
    """A resolver that does not know the intended domain either (it denies every name, or fails) cannot prove
    that the typed one would bounce: the finding is UNKNOWN, and the sender is never told a real domain is gone."""
    found = classify("gmial.com", "army.mil", nx("gmial.com"), intended_mx=intended_answer)
    assert found.finding is Finding.UNKNOWN
    assert "not to be trusted" in found.text
    confirmed = classify("gmial.com", "army.mil", nx("gmial.com"), intended_mx=mx("army.mil", "mx1.army.mil"))
    assert confirmed.finding is Finding.NO_DOMAIN
    no_mail = classify("gmial.com", "army.mil", nodata("gmial.com"), nodata("gmial.com", "A/AAAA"),
                       intended_mx=nx("army.mil"))
    assert no_mail.finding is Finding.UNKNOWN
