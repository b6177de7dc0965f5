"""Weighing the world's evidence into a verdict (world/weigh.py), and the `[dns]` section it is configured by."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from rcptguard.cli import main
from rcptguard.config import load_config
from rcptguard.guard import Guard
from rcptguard.model import Action, Signal, Verdict
from rcptguard.policy import ConfigError, load_policy
from rcptguard.world import SIGNALS, DnsSettings, Evidence, Finding, World, consult, wants_evidence, weigh

GUARD = Guard(load_policy().with_domains(("mil", "example-corp.com"), ("gmail.com",)))


def verdict(address: str = "x@army.ml") -> Verdict:
    return GUARD.check(address)


def evidence(finding: Finding, text: str = "", typed: str = "army.ml", intended: str = "army.mil") -> Evidence:
    return Evidence(finding, typed, intended, text or f"{finding} for {typed}.", hosts=("mx1.army.mil",),
                    elapsed_ms=12.0)


def test_no_domain_keeps_the_hold_and_says_it_would_bounce() -> None:
    """NXDOMAIN keeps the hold and the suggestion; the bounce is appended to the reason, and a DNS_NO_DOMAIN
    signal scored 0 leaves the score as it was."""
    before = verdict()
    assert before.action is Action.HOLD
    text = "army.ml does not exist (the DNS has no such domain): mail to it would bounce."
    after = weigh(before, evidence(Finding.NO_DOMAIN, text))
    assert (after.action, after.intended, after.suggestion, after.score) == (
        Action.HOLD, "army.mil", "x@army.mil", before.score)
    assert after.reason == f"{before.reason} {text}"
    signal = after.signal("DNS_NO_DOMAIN")
    assert signal is not None
    assert (signal.score, signal.evidence["text"]) == (0.0, text)


def test_no_mail_keeps_a_warning_a_warning() -> None:
    """A warning for a domain with no mail server stays a warning (no raise to hold), with the bounce in words."""
    before = dataclasses.replace(verdict(), action=Action.WARN)
    after = weigh(before, evidence(Finding.NO_MAIL, "navy.ml has no mail server: mail to it would bounce."))
    assert after.action is Action.WARN
    assert after.reason.endswith(". navy.ml has no mail server: mail to it would bounce.")
    assert after.signal("DNS_NO_MAIL") is not None


def test_same_operator_caps_a_hold_at_warn_and_says_why() -> None:
    """The intended domain's own MX behind the typed one: the hold becomes a warning, the suggestion stays, and
    the reason names the evidence and the cap."""
    after = weigh(verdict("x@example-corp.co"), evidence(Finding.SAME_OPERATOR,
                                                         "example-corp.co's mail goes to example-corp.com's own "
                                                         "mail servers.", "example-corp.co", "example-corp.com"))
    assert after.action is Action.WARN
    assert after.suggestion == "x@example-corp.com"
    assert "example-corp.com's own mail servers" in after.reason
    assert "probably a real sibling of example-corp.com: a warning, not a hold." in after.reason
    assert after.signal("DNS_SAME_OPERATOR") is not None


def test_same_operator_does_not_override_a_force_rule() -> None:
    """A [[force]] rule is the administrator's decision: the DNS adds its words to it but does not cap it."""
    before = verdict()
    forced = dataclasses.replace(before, action=Action.REJECT,
                                 signals=(*before.signals, Signal("FORCE_RULE", {"rule": "ml"})))
    after = weigh(forced, evidence(Finding.SAME_OPERATOR, "the same operator."))
    assert after.action is Action.REJECT
    assert after.reason.endswith("the same operator.")


@pytest.mark.parametrize("finding", [Finding.SHARED_HOSTING, Finding.DIFFERENT_OPERATOR, Finding.UNKNOWN])
def test_nothing_proven_changes_nothing_but_the_signal_list(finding: Finding) -> None:
    """Shared hosting, another operator, or no answer: action, reason and score as without DNS; the note is in
    the signal's evidence."""
    before = verdict()
    text = "The DNS gave no answer about army.ml within 150 ms; decided without it."
    after = weigh(before, evidence(finding, text))
    assert (after.action, after.reason, after.score, after.suggestion) == (
        before.action, before.reason, before.score, before.suggestion)
    assert [s.name for s in after.signals] == [*(s.name for s in before.signals), SIGNALS[finding]]
    assert after.signals[-1].evidence["text"] == text


@pytest.mark.parametrize("address", ["x@army.mil", "x@gmail.com", "x@nowhere-like-it.org", "not an address",
                                     "x@smallfirm.con"])
def test_only_a_slip_of_a_named_domain_is_looked_up(address: str) -> None:
    """A pass, a malformed address, and a suffix already known not to exist want no evidence, and weigh leaves
    them alone."""
    before = verdict(address)
    assert not wants_evidence(before)
    assert weigh(before, evidence(Finding.NO_DOMAIN)) is before


def test_weighed_once() -> None:
    """A verdict that carries DNS evidence is not weighed again (no second signal, no second sentence)."""
    once = weigh(verdict(), evidence(Finding.NO_DOMAIN, "gone."))
    assert weigh(once, evidence(Finding.NO_DOMAIN, "gone.")) is once


def test_consult_never_fails_the_mail_path() -> None:
    """A world whose check raises leaves the verdict as the engine gave it; no world leaves it too."""

    class Broken(World):
        async def check(self, typed: str, intended: str) -> Evidence:
            raise RuntimeError(typed + intended)

    before = verdict()
    assert asyncio.run(consult(Broken(DnsSettings(nameservers=("127.0.0.1",))), before)) is before
    assert asyncio.run(consult(None, before)) is before


def test_every_dns_signal_is_listed_by_detectors() -> None:
    """Each DNS_* signal weigh can add is a row of `rcptguard detectors`, so a verdict's signals can be looked up."""
    result = CliRunner().invoke(main, ["detectors"])
    rows = {line.split()[0] for line in result.output.splitlines()}
    assert set(SIGNALS.values()) <= rows


def test_the_dns_section_is_read_and_each_door_decides_unset(tmp_path: Path) -> None:
    """`[dns]` builds DnsSettings; `enabled` left out is None, which `for_door` turns into the door's default; a
    value given wins over it."""
    path = tmp_path / "rcptguard.toml"
    path.write_text('[dns]\nnameservers = ["127.0.0.1"]\nport = 5353\nbudget_ms = 80\n', encoding="utf-8")
    dns = load_config(path).dns
    assert (dns.enabled, dns.nameservers, dns.port, dns.budget_ms) == (None, ("127.0.0.1",), 5353, 80)
    assert dns.for_door(default=True).enabled is True
    assert dns.for_door(default=False).enabled is False
    path.write_text("[dns]\nenabled = false\n", encoding="utf-8")
    assert load_config(path).dns.for_door(default=True).enabled is False
    assert load_config(None).dns == DnsSettings()


@pytest.mark.parametrize(("line", "key"), [('nameservers = ["dns.example"]', "dns.nameservers"),
                                           ("budget_ms = 0", "dns.budget_ms"), ("port = -1", "dns.port")])
def test_a_dns_value_that_cannot_be_used_names_file_line_and_key(tmp_path: Path, line: str, key: str) -> None:
    """A value of the right type that DnsSettings cannot use stops the load with the file, its line and the key."""
    path = tmp_path / "rcptguard.toml"
    path.write_text(f"[dns]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert (error.value.line, error.value.key) == (2, key)
