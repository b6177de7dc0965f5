"""The world's evidence against real DNS servers on 127.0.0.1: NSD serving test zones, and a server that lags."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from rcptguard.world import DnsSettings, Evidence, Finding, SyncWorld, World
from tests.integration.dns_server import NsdServer, lagging

pytestmark = pytest.mark.integration

ZONES = {
    "mil": """
army MX 10 mx1.army.mil.
mx1.army A 192.0.2.1
usarmy MX 10 mx2.army.mil.
navy MX 10 mx1.navy.mil.
airforce MX 10 mx1.airforce.mil.
air MX 10 mx1.air.mil.
""",
    "ml": """
army MX 10 mail.army.ml.
mail.army A 192.0.2.66
navy TXT "no mail here"
air MX 0 .
""",
    "com": """
smallfirm MX 1 aspmx.l.google.com.
smallfirm MX 5 alt1.aspmx.l.google.com.
gmx MX 10 mx00.emig.gmx.net.
raytheon MX 10 mx.raytheon.com.
""",
    "co": """
smallfirm MX 1 aspmx.l.google.com.
raytheon MX 10 mail.raytheon.co.
webonly A 192.0.2.10
""",
    "de": "gmx MX 10 mx00.emig.gmx.net.\ngmx MX 10 mx01.emig.gmx.net.",
    "at": "gmx MX 10 mx01.emig.gmx.net.",
}


@pytest.fixture(scope="module")
def nsd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    """One NSD for the module, serving ZONES, with `cm` configured but not loaded (SERVFAIL)."""
    with NsdServer(tmp_path_factory.mktemp("nsd"), ZONES, broken=("cm",), negative_ttl=5) as server:
        yield server


def settings(port: int, **changes: object) -> DnsSettings:
    return DnsSettings(**{"nameservers": ("127.0.0.1",), "port": port, "budget_ms": 1000, **changes})  # type: ignore[arg-type]


def check(port: int, typed: str, intended: str, **changes: object) -> Evidence:
    async def run() -> Evidence:
        world = World(settings(port, **changes))
        try:
            return await world.check(typed, intended)
        finally:
            await world.close()

    return asyncio.run(run())


def test_no_such_domain_would_bounce(nsd: NsdServer) -> None:
    """A typed domain that does not exist (NXDOMAIN) is NO_DOMAIN, and the sender reads that the mail would bounce."""
    evidence = check(nsd.port, "airforce.ml", "airforce.mil")
    assert evidence.finding is Finding.NO_DOMAIN
    assert evidence.would_bounce
    assert "airforce.ml does not exist" in evidence.text
    assert "bounce" in evidence.text


def test_no_mx_and_no_address_would_bounce(nsd: NsdServer) -> None:
    """A domain that exists with neither MX nor A/AAAA has no mail server (RFC 5321 implicit MX): NO_MAIL."""
    evidence = check(nsd.port, "navy.ml", "navy.mil")
    assert evidence.finding is Finding.NO_MAIL
    assert "no MX and no address" in evidence.text


def test_null_mx_would_bounce(nsd: NsdServer) -> None:
    """A null MX `0 .` (RFC 7505) says the domain takes no mail: NO_MAIL."""
    evidence = check(nsd.port, "air.ml", "air.mil")
    assert evidence.finding is Finding.NO_MAIL
    assert "null MX" in evidence.text


def test_address_only_domain_takes_mail_at_its_own_address(nsd: NsdServer) -> None:
    """No MX but an A record: mail would go to the domain's own address, which is not the intended operator."""
    evidence = check(nsd.port, "webonly.co", "webonly.com")
    assert evidence.finding is Finding.DIFFERENT_OPERATOR
    assert evidence.hosts == ("192.0.2.10",)


def test_mx_under_the_intended_domain_is_the_same_operator(nsd: NsdServer) -> None:
    """An MX host under the intended domain's registrable domain makes the typed domain a real sibling."""
    evidence = check(nsd.port, "usarmy.mil", "army.mil")
    assert evidence.finding is Finding.SAME_OPERATOR
    assert evidence.same_operator
    assert evidence.hosts == ("mx2.army.mil",)


def test_same_mx_host_is_the_same_operator(nsd: NsdServer) -> None:
    """`gmx.com` whose MX is `gmx.de`'s own host is the same operator."""
    assert check(nsd.port, "gmx.com", "gmx.de").finding is Finding.SAME_OPERATOR


def test_mx_under_the_intended_brands_mail_domain_is_the_same_operator(nsd: NsdServer) -> None:
    """Another host under the registrable domain the intended domain's own MX uses (gmx.net, brand gmx) counts."""
    evidence = check(nsd.port, "gmx.at", "gmx.de")
    assert evidence.finding is Finding.SAME_OPERATOR, evidence.text


def test_shared_hosting_mx_proves_nothing(nsd: NsdServer) -> None:
    """Both domains on Google Workspace's shared MX: SHARED_HOSTING, never the same operator."""
    evidence = check(nsd.port, "smallfirm.co", "smallfirm.com")
    assert evidence.finding is Finding.SHARED_HOSTING
    assert not evidence.same_operator
    assert "Google Workspace" in evidence.text


def test_own_mx_of_a_lookalike_is_a_different_operator(nsd: NsdServer) -> None:
    """`army.ml` with its own `mail.army.ml` is a different operator, though it carries the brand `army`."""
    evidence = check(nsd.port, "army.ml", "army.mil")
    assert evidence.finding is Finding.DIFFERENT_OPERATOR
    assert "mail.army.ml" in evidence.text
    assert "army.mil" in evidence.text


def test_different_operator(nsd: NsdServer) -> None:
    """`raytheon.co` whose MX is its own host, not `raytheon.com`'s: DIFFERENT_OPERATOR."""
    evidence = check(nsd.port, "raytheon.co", "raytheon.com")
    assert evidence.finding is Finding.DIFFERENT_OPERATOR
    assert evidence.hosts == ("mail.raytheon.co",)


def test_servfail_is_unknown_and_said_so(nsd: NsdServer) -> None:
    """A SERVFAIL (NSD's answer for a zone it could not load) is UNKNOWN, and the evidence names it."""
    evidence = check(nsd.port, "army.cm", "army.mil")
    assert evidence.finding is Finding.UNKNOWN
    assert "SERVFAIL" in evidence.text
    assert "decided without it" in evidence.text


def test_unicode_typed_domain_is_looked_up_as_its_a_label(nsd: NsdServer) -> None:
    """An IDN typed domain is asked in its A-label form and reported so (it does not exist in the zone)."""
    evidence = check(nsd.port, "аrmy.ml", "army.mil")
    assert evidence.finding is Finding.NO_DOMAIN
    assert evidence.typed.startswith("xn--")


def test_silent_server_keeps_the_budget() -> None:
    """A server that never answers: the check returns UNKNOWN "no answer ... within 150 ms" in about 150 ms."""
    with lagging(None) as server:
        started = time.perf_counter()
        evidence = check(server.port, "army.ml", "army.mil", budget_ms=150)
        took = (time.perf_counter() - started) * 1000
    assert evidence.finding is Finding.UNKNOWN
    assert "within 150 ms" in evidence.text
    assert 140 <= evidence.elapsed_ms < 250, evidence.elapsed_ms
    assert took < 400, took  # the world's close() does not wait for the look-up's own 2 s timeout


def test_slow_answer_arrives_after_the_budget_and_fills_the_cache() -> None:
    """An answer 300 ms late: the check decides UNKNOWN at 100 ms; once it arrives, the next check has it cached."""

    async def run(port: int) -> tuple[Evidence, Evidence]:
        world = World(settings(port, budget_ms=100))
        first = await world.check("army.ml", "army.mil")
        await asyncio.sleep(0.4)
        second = await world.check("army.ml", "army.mil")
        await world.close()
        return first, second

    with lagging(0.3) as server:
        first, second = asyncio.run(run(server.port))
    assert first.finding is Finding.UNKNOWN
    assert first.elapsed_ms < 200
    assert second.finding is Finding.NO_DOMAIN
    assert second.cached
    assert second.elapsed_ms < 5


def test_concurrent_checks_of_one_domain_share_one_query() -> None:
    """Twenty checks of one domain at once send one MX query for it (and one for the intended domain)."""

    async def run(port: int) -> list[Evidence]:
        world = World(settings(port))
        found = await asyncio.gather(*(world.check("army.ml", "army.mil") for _ in range(20)))
        await world.close()
        return found

    with lagging(0.05) as server:
        found = asyncio.run(run(server.port))
        queries = server.queries
    assert {e.finding for e in found} == {Finding.NO_DOMAIN}
    assert queries == 2


def test_flood_of_distinct_domains_keeps_the_cache_bounded(nsd: NsdServer) -> None:
    """Two thousand distinct typed domains leave at most cache_size answers, each looked up for real."""

    async def run() -> World:
        world = World(settings(nsd.port, cache_size=100))
        for start in range(0, 2000, 200):
            found = await asyncio.gather(*(world.check(f"flood{i}.ml", "army.mil") for i in range(start, start + 200)))
            assert {e.finding for e in found} == {Finding.NO_DOMAIN}
        await world.close()
        return world

    world = asyncio.run(run())
    info = world.cache_info()
    assert info.size <= 100
    assert info.evictions >= 1900
    assert world.inflight == 0


def test_flood_against_a_silent_server_keeps_lookups_in_flight_bounded() -> None:
    """A thousand distinct domains to a server that never answers: at most max_inflight look-ups run, all UNKNOWN."""

    async def run(port: int) -> tuple[list[Evidence], int]:
        world = World(settings(port, budget_ms=100, max_inflight=50))
        found = await asyncio.gather(*(world.check(f"flood{i}.ml", "army.mil") for i in range(1000)))
        running = world.inflight
        await world.close()
        return found, running

    with lagging(None) as server:
        found, running = asyncio.run(run(server.port))
    assert running <= 50
    assert {e.finding for e in found} == {Finding.UNKNOWN}
    assert sum("too many DNS look-ups" in e.text for e in found) >= 900
    assert max(e.elapsed_ms for e in found) < 1000


def test_negative_answer_is_kept_for_the_zones_negative_ttl(nsd: NsdServer) -> None:
    """NXDOMAIN is cached for the zone's negative TTL (5 s here), then asked again."""
    now = [1000.0]

    async def run() -> list[Evidence]:
        world = World(settings(nsd.port, negative_min_ttl=0), clock=lambda: now[0])
        seen = [await world.check("gone.ml", "army.mil")]
        now[0] += 4
        seen.append(await world.check("gone.ml", "army.mil"))
        now[0] += 2
        seen.append(await world.check("gone.ml", "army.mil"))
        await world.close()
        return seen

    first, within, after = asyncio.run(run())
    assert (first.cached, within.cached, after.cached) == (False, True, False)
    assert {first.finding, within.finding, after.finding} == {Finding.NO_DOMAIN}


def test_sync_world_for_callers_without_a_loop(nsd: NsdServer) -> None:
    """SyncWorld answers from plain code, and a second call is served from its cache."""
    with SyncWorld(settings(nsd.port)) as world:
        first = world.check("airforce.ml", "airforce.mil")
        second = world.check("airforce.ml", "airforce.mil")
    assert first.finding is second.finding is Finding.NO_DOMAIN
    assert second.cached
    assert world.check("airforce.ml", "airforce.mil").finding is Finding.UNKNOWN  # closed: decided without DNS


def test_lookups_off_decide_without_dns() -> None:
    """With `enabled = false` nothing is asked (the silent server counts no query) and the evidence says DNS is off."""
    with lagging(None) as server:
        evidence = check(server.port, "army.ml", "army.mil", enabled=False)
        queries = server.queries
    assert evidence.finding is Finding.UNKNOWN
    assert "off" in evidence.text
    assert queries == 0
