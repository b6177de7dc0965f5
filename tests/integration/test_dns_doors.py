"""The world's evidence at the doors (relay, policy service, `check --dns`) against a real NSD on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email
import email.policy
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from rcptguard.cli import main
from rcptguard.gateways.policyd import PolicyService, PolicySettings, serve_stdio
from rcptguard.gateways.relay import RelaySettings, build
from rcptguard.model import Action
from rcptguard.store import Store
from rcptguard.world import DnsSettings, World, consult
from tests.integration.dns_server import NsdServer, lagging
from tests.support.sink import Message, RecordingSink
from tests.unit.relays import Relay, policy_factory, send
from tests.unit.test_metrics import parse, value

pytestmark = pytest.mark.integration

# army.ml is not in the ml zone (NXDOMAIN); example-corp.co's mail goes to example-corp.com's own server.
ZONES = {
    "mil": "army MX 10 mx1.army.mil.\nmx1.army A 192.0.2.1",
    "ml": 'navy TXT "no mail here"',
    "com": "example-corp MX 10 mx.example-corp.com.\nmx.example-corp A 192.0.2.7",
    "co": "example-corp MX 10 mx.example-corp.com.",
}


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    """One NSD for the module, serving ZONES."""
    with NsdServer(tmp_path_factory.mktemp("nsd"), ZONES) as server:
        yield server


def dns_at(port: int, **changes: object) -> DnsSettings:
    return DnsSettings(**{"enabled": True, "nameservers": ("127.0.0.1",), "port": port, "budget_ms": 1000,  # type: ignore[arg-type]
                          **changes})


def relay_with_dns(tmp_path: Path, sink: RecordingSink, dns: DnsSettings) -> Relay:
    store = Store.open(f"sqlite:///{tmp_path / 'relay.db'}")
    settings = RelaySettings.from_section({"next_hop": f"127.0.0.1:{sink.port}", "flush_interval": 0.05}, "relay")
    return Relay(build(policy_factory(), store, settings, dns=dns))


def notice_text(message: Message) -> str:
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    return " ".join(parsed.get_body(("plain",)).get_content().split())  # type: ignore[union-attr]


def test_the_relay_holds_a_domain_that_does_not_exist_and_says_it_would_bounce(
        tmp_path: Path, sink: RecordingSink, nsd: NsdServer) -> None:
    """x@army.ml (NXDOMAIN in the zone) is held, not forwarded; the sender's notice says the mail would bounce
    and suggests army.mil."""
    relay = relay_with_dns(tmp_path, sink, dns_at(nsd.port))
    try:
        code, _, refused = send(relay, ["x@army.ml"])
        assert (code, refused) == (250, {})
        (notice,) = sink.wait_for(1)
        assert notice.mail_from == ""
        body = notice_text(notice)
        assert "army.ml does not exist" in body
        assert "would bounce" in body
        assert "x@army.mil" in body
        samples = parse(relay.handler.metrics.exposition().decode())
        assert value(samples, "rcptguard_dns_lookups_total", door="relay", rdtype="MX", outcome="nxdomain") == 1
        assert value(samples, "rcptguard_dns_lookups_total", door="relay", rdtype="MX", outcome="answer") == 1
        assert value(samples, "rcptguard_dns_over_budget_total", door="relay") == 0
    finally:
        relay.close()


def test_the_relay_forwards_a_same_operator_sibling_with_a_warning(
        tmp_path: Path, sink: RecordingSink, nsd: NsdServer) -> None:
    """example-corp.co, held without DNS, has its mail at example-corp.com's own server: capped at warn, the
    message is forwarded and the sender is warned, with the evidence in the words."""
    relay = relay_with_dns(tmp_path, sink, dns_at(nsd.port))
    try:
        code, _, _ = send(relay, ["x@example-corp.co"])
        assert code == 250
        got = sink.wait_for(2)
        assert [m.rcpt_tos for m in got if m.mail_from] == [("x@example-corp.co",)]
        (notice,) = [m for m in got if m.mail_from == ""]
        body = notice_text(notice)
        assert "probably a real sibling of example-corp.com" in body
        assert "mx.example-corp.com" in body
    finally:
        relay.close()


def test_without_dns_the_same_sibling_is_held(tmp_path: Path, sink: RecordingSink) -> None:
    """The witness of the test above: with [dns] enabled = false, example-corp.co is held (nothing forwarded)."""
    relay = relay_with_dns(tmp_path, sink, DnsSettings(enabled=False))
    try:
        assert relay.handler.world is None
        send(relay, ["x@example-corp.co"])
        (notice,) = sink.wait_for(1)
        assert notice.mail_from == ""
        assert "sibling" not in notice_text(notice)
    finally:
        relay.close()


def test_a_silent_dns_server_costs_the_relay_no_more_than_the_budget(tmp_path: Path, sink: RecordingSink) -> None:
    """Against a server that never answers, RCPT for army.ml is answered within the budget (150 ms, plus the
    test's slack) and the recipient is held as without DNS."""
    with lagging(None) as server:
        relay = relay_with_dns(tmp_path, sink, dns_at(server.port, budget_ms=150))
        try:
            with relay.smtp() as smtp:
                smtp.ehlo()
                smtp.mail("me@example-corp.com")
                started = time.perf_counter()
                code, _ = smtp.rcpt("x@army.ml")
                elapsed = time.perf_counter() - started
                assert code == 250
                assert 0.14 <= elapsed < 0.6, elapsed
                smtp.data(b"Subject: hi\r\n\r\nhello\r\n")
            (notice,) = sink.wait_for(1)
            body = notice_text(notice)
            assert "army.ml looks like army.mil" in body
            assert "would bounce" not in body
            assert server.queries >= 1
            samples = parse(relay.handler.metrics.exposition().decode())
            assert value(samples, "rcptguard_dns_over_budget_total", door="relay") >= 1
        finally:
            relay.close()


def test_a_silent_dns_server_is_said_in_the_signals(nsd: NsdServer) -> None:
    """No answer in the budget: the verdict is the engine's, with a DNS_UNKNOWN signal that says so."""
    verdict = policy_factory()({}).check("x@army.ml")

    async def run() -> None:
        with lagging(None) as server:
            world = World(dns_at(server.port, budget_ms=100))
            try:
                weighed = await consult(world, verdict)
            finally:
                await world.close()
        assert (weighed.action, weighed.reason) == (verdict.action, verdict.reason)
        signal = weighed.signal("DNS_UNKNOWN")
        assert signal is not None
        assert "decided without it" in signal.evidence["text"]

    asyncio.run(run())
    assert nsd.port  # the module's server is up: the silent one above is the test's own


def request(recipient: str) -> dict[str, str]:
    return {"request": "smtpd_access_policy", "protocol_state": "RCPT", "sender": "me@example-corp.com",
            "recipient": recipient}


def test_the_policy_service_on_its_loop_weighs_the_evidence(nsd: NsdServer) -> None:
    """On the server's loop (decide_async): army.ml (NXDOMAIN) is still refused with the engine's first sentence
    and the suggestion; example-corp.co, refused without DNS, is capped at warn (DUNNO)."""
    service = PolicyService(policy_factory(), None, PolicySettings(), dns=dns_at(nsd.port))

    async def run() -> tuple[str, str]:
        try:
            return await service.decide_async(request("x@army.ml")), await service.decide_async(
                request("x@example-corp.co"))
        finally:
            assert service.world is not None
            await service.world.close()

    army, sibling = asyncio.run(run())
    assert army.startswith("REJECT 5.7.1 army.ml looks like army.mil")
    assert "x@army.mil" in army
    assert sibling == "DUNNO"
    assert service.decide(request("x@example-corp.co")).startswith("REJECT 5.7.1")  # no loop, no SyncWorld
    service.close()


def test_the_policy_service_on_stdio_asks_through_a_sync_world(nsd: NsdServer) -> None:
    """--stdio has no loop: serve_stdio opens a SyncWorld, and the sibling is capped at warn as on the loop."""
    service = PolicyService(policy_factory(), None, PolicySettings(), dns=dns_at(nsd.port))
    lines = "".join(f"{k}={v}\n" for k, v in request("x@army.ml").items()) + "\n"
    lines += "".join(f"{k}={v}\n" for k, v in request("x@example-corp.co").items()) + "\n"
    out = io.BytesIO()
    serve_stdio(service, io.BytesIO(lines.encode()), out)
    army, sibling = out.getvalue().decode().split("\n\n")[:2]
    assert army.startswith("action=REJECT 5.7.1 army.ml looks like army.mil")
    assert sibling == "action=DUNNO"
    assert service.sync_world is not None


def test_check_asks_the_dns_only_when_told(tmp_path: Path, nsd: NsdServer) -> None:
    """`rcptguard check` with [dns] pointing at the NSD: off by default (the engine's words), on with --dns (the
    bounce named, the action kept), and a same-operator sibling capped at warn."""
    config = tmp_path / "rcptguard.toml"
    config.write_text(f'protect = ["mil", "example-corp.com"]\n[dns]\nnameservers = ["127.0.0.1"]\n'
                      f"port = {nsd.port}\nbudget_ms = 1000\n", encoding="utf-8")
    runner = CliRunner()
    plain = runner.invoke(main, ["check", "--config", str(config), "x@army.ml"])
    assert plain.exit_code == 1, plain.output
    assert "does not exist" not in plain.output
    asked = runner.invoke(main, ["check", "--config", str(config), "--dns", "x@army.ml", "x@example-corp.co"])
    assert asked.exit_code == 1, asked.output
    heads = [line for line in asked.output.splitlines() if not line.startswith(" ")]
    assert heads == ["hold   x@army.ml  ->  x@army.mil",
                     f"{Action.WARN!s:<6} x@example-corp.co  ->  x@example-corp.com"]
    assert "army.ml does not exist (the DNS has no such domain): mail to it would bounce." in asked.output
    assert "capped at warn: the DNS shows the same operator" in asked.output
    config.write_text(config.read_text() + "enabled = true\n", encoding="utf-8")
    assert "does not exist" not in runner.invoke(
        main, ["check", "--config", str(config), "--no-dns", "x@army.ml"]).output
