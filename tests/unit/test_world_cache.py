"""The world's evidence: the bounded TTL cache, the settings, and a World that cannot reach any DNS."""

from __future__ import annotations

import asyncio

import pytest

from rcptguard.errors import ConfigError
from rcptguard.world import DnsSettings, Finding, World
from rcptguard.world.cache import TtlLru
from rcptguard.world.lookup import REUSED_FOR
from rcptguard.world.model import Answer, Evidence, Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_entry_expires_after_its_ttl() -> None:
    """An entry is returned while its TTL runs and gone after it."""
    clock = Clock()
    cache: TtlLru[str, int] = TtlLru(10, clock)
    cache.put("a", 1, ttl=5)
    clock.now += 4.9
    assert cache.get("a") == 1
    clock.now += 0.2
    assert cache.get("a") is None
    assert len(cache) == 0


def test_least_recently_used_goes_first() -> None:
    """At the bound the least recently used entry is pushed out, and a read makes an entry recent."""
    cache: TtlLru[str, int] = TtlLru(2, Clock())
    cache.put("a", 1, 60)
    cache.put("b", 2, 60)
    assert cache.get("a") == 1
    cache.put("c", 3, 60)
    assert cache.get("b") is None
    assert (cache.get("a"), cache.get("c")) == (1, 3)
    assert cache.info().evictions == 1


def test_size_stays_bounded_under_a_flood() -> None:
    """A hundred thousand distinct keys leave at most maxsize entries."""
    cache: TtlLru[int, int] = TtlLru(1000, Clock())
    for i in range(100_000):
        cache.put(i, i, 3600)
    assert len(cache) == 1000
    assert cache.info().evictions == 99_000


def test_zero_ttl_and_zero_size_keep_nothing() -> None:
    """A TTL of 0 drops what was there; a cache of size 0 keeps nothing."""
    cache: TtlLru[str, int] = TtlLru(5, Clock())
    cache.put("a", 1, 60)
    cache.put("a", 2, 0)
    assert cache.get("a") is None
    empty: TtlLru[str, int] = TtlLru(0, Clock())
    empty.put("a", 1, 60)
    assert len(empty) == 0


def test_hits_and_misses_are_counted() -> None:
    """info() counts hits and misses."""
    cache: TtlLru[str, int] = TtlLru(5, Clock())
    cache.put("a", 1, 60)
    cache.get("a")
    cache.get("b")
    info = cache.info()
    assert (info.hits, info.misses, info.size, info.maxsize) == (1, 1, 1, 5)


def test_default_settings() -> None:
    """The defaults: the door decides, 150 ms, system resolver, 10,000 answers."""
    settings = DnsSettings()
    assert settings.enabled is None
    assert settings.budget_ms == 150
    assert settings.budget == 0.15
    assert settings.nameservers == ()
    assert settings.cache_size == 10_000


@pytest.mark.parametrize(("changes", "key"), [
    ({"nameservers": ("dns.example",)}, "nameservers"),
    ({"port": 0}, "port"),
    ({"budget_ms": 0}, "budget_ms"),
    ({"budget_ms": 500, "query_timeout_ms": 400}, "query_timeout_ms"),
    ({"cache_size": -1}, "cache_size"),
    ({"min_ttl": 100, "max_ttl": 10}, "max_ttl"),
    ({"negative_min_ttl": 100, "negative_max_ttl": 10}, "negative_max_ttl"),
    ({"max_inflight": 0}, "max_inflight"),
])
def test_settings_refuse_unusable_values(changes: dict[str, object], key: str) -> None:
    """A value that cannot be used is a ConfigError keyed by its name."""
    with pytest.raises(ConfigError) as caught:
        DnsSettings(**changes)  # type: ignore[arg-type]
    assert caught.value.key == key


def test_malformed_domain_is_unknown_not_an_exception() -> None:
    """A typed domain that cannot be a domain gives UNKNOWN with the reason, never an exception."""
    world = World(DnsSettings(nameservers=("127.0.0.1",), port=9))
    evidence = asyncio.run(world.check("no spaces allowed.com", "army.mil"))
    assert evidence.finding is Finding.UNKNOWN
    assert evidence.text.startswith("Not looked up:")


def test_unexpected_error_is_unknown_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever goes wrong inside a check, the caller gets UNKNOWN, not a traceback."""
    world = World(DnsSettings(nameservers=("127.0.0.1",), port=9))

    def broken(name: str, rdtype: str) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(world, "_lookup", broken)
    evidence = asyncio.run(world.check("army.ml", "army.mil"))
    assert evidence.finding is Finding.UNKNOWN
    assert "failed" in evidence.text


def test_evidence_from_the_cache_answers_the_same_check_for_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood of mail to one warned domain asks the same question for every message: evidence drawn wholly from the
    cache is reused for REUSED_FOR seconds (of the world's clock), then worked out again; evidence that needed a
    look-up is never reused."""
    clock = Clock()
    world = World(DnsSettings(nameservers=("127.0.0.1",), port=9), clock=clock)
    asked: list[tuple[str, str]] = []

    def cached(name: str, rdtype: str) -> Answer:
        asked.append((name, rdtype))
        return Answer(name, rdtype, Outcome.NXDOMAIN)

    monkeypatch.setattr(world, "_lookup", cached)

    async def twice() -> tuple[Evidence, Evidence]:
        return await world.check("army.ml", "army.mil"), await world.check("army.ml", "army.mil")

    first, again = asyncio.run(twice())
    assert first.cached
    assert again is first
    asked_once = len(asked)
    assert asked_once > 0
    clock.now += REUSED_FOR + 0.1
    later = asyncio.run(world.check("army.ml", "army.mil"))
    assert later is not first
    assert len(asked) == 2 * asked_once
    assert later.finding is first.finding

    live = World(DnsSettings(nameservers=("127.0.0.1",), port=9, budget_ms=20), clock=clock)
    checks: list[Evidence] = []

    async def looked_up_twice() -> None:
        checks.append(await live.check("army.ml", "army.mil"))
        checks.append(await live.check("army.ml", "army.mil"))
        await live.close()

    asyncio.run(looked_up_twice())
    assert not checks[0].cached
    assert checks[1] is not checks[0]
