"""Asking the DNS, within a budget: `World.check(typed, intended)` on an event loop, `SyncWorld` without one.

    world = World(DnsSettings(nameservers=("127.0.0.1",), port=5300))
    evidence = await world.check("army.ml", "army.mil")      # never raises; at most budget_ms
    evidence.finding, evidence.text                           # Finding.NO_DOMAIN, "army.ml does not exist ..."

One check asks the typed domain's MX and, at the same time, the intended domain's MX (to compare; usually
cached, the intended domains being few); when the typed domain has no MX record, its A and AAAA. Each question
is one entry of the cache (`TtlLru`, keyed by name and type) and at most one look-up in flight: checks that ask
the same question while it runs wait on the same task. A look-up is a task of its own, so when the budget is
over the check decides with what it has while the look-up runs on (up to `query_timeout_ms`) and fills the cache
for the next message. Past `max_inflight` running look-ups a check answers UNKNOWN at once, so a flood of
distinct domains holds neither memory nor sockets beyond those bounds.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Self

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.rdatatype
import dns.resolver
import dns.rrset

from rcptguard.domains import DomainError, normalize_domain
from rcptguard.logs import event
from rcptguard.world.cache import CacheInfo, TtlLru
from rcptguard.world.classify import NULL_MX, classify, merge_addresses, needs_address, needs_intended
from rcptguard.world.model import Answer, Evidence, Finding, Outcome
from rcptguard.world.settings import DnsSettings
from rcptguard.world.shared import SharedHosts

__all__ = ["SyncWorld", "World"]

log = logging.getLogger("rcptguard.world")
Job = Answer | asyncio.Task[Answer]
REUSED_FOR = 1.0  # seconds an evidence drawn wholly from the cache answers the same check again
RECENT_SIZE = 4096  # such evidence kept at most (least recently used out first)


class World:
    """The world's evidence for one process (one event loop): a resolver, its cache and its running look-ups."""

    def __init__(self, settings: DnsSettings | None = None, *, clock: Callable[[], float] | None = None,
                 observe: Callable[[str, str], None] | None = None) -> None:
        self.settings = settings or DnsSettings()
        # told (record type, outcome) of each look-up sent, and "over_budget" for a check that went on without one
        self.observe = observe
        self._clock = clock or time.monotonic
        self._cache: TtlLru[tuple[str, str], Answer] = TtlLru(self.settings.cache_size, self._clock)
        # (typed, intended) -> the evidence: one drawn from the cache alone answers the same question
        # again for REUSED_FOR seconds (a flood of mail to one warned domain asks it for every message)
        self._recent: TtlLru[tuple[str, str], Evidence] = TtlLru(RECENT_SIZE, self._clock)
        self._inflight: dict[tuple[str, str], asyncio.Task[Answer]] = {}
        self._shared = SharedHosts(extra=self.settings.shared_hosts)
        self._resolver: dns.asyncresolver.Resolver | None = None
        self._no_resolver = ""
        try:
            self._resolver = _resolver(self.settings)
        except dns.exception.DNSException as exc:  # no /etc/resolv.conf and no nameservers given
            self._no_resolver = f"no DNS server configured: {exc}"

    async def check(self, typed: str, intended: str) -> Evidence:
        """What the DNS shows about mail to `typed`, which resembles `intended`; within the budget, never raises."""
        key = (typed, intended)
        recent = self._recent.get(key)
        if recent is not None:
            return recent
        started = time.perf_counter()
        try:
            evidence = await self._check(typed, intended, started)
        except Exception:  # the mail path must never fail on the world's evidence
            log.exception("dns check failed")
            return _evidence(Finding.UNKNOWN, typed, intended, "The DNS look-up failed; decided without it.",
                             started)
        if evidence.cached:  # every answer from the cache: the same a moment later (a fresh one is not kept)
            self._recent.put(key, evidence, REUSED_FOR)
        return evidence

    def cache_info(self) -> CacheInfo:
        return self._cache.info()

    @property
    def inflight(self) -> int:
        """Look-ups running now (some may outlive the check that started them)."""
        return len(self._inflight)

    async def close(self) -> None:
        """Cancel the look-ups still running and wait for them."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _check(self, typed: str, intended: str, started: float) -> Evidence:
        if self.settings.enabled is False:
            return _evidence(Finding.UNKNOWN, typed, intended, "DNS look-ups are off; decided without them.", started)
        try:
            typed_name, intended_name = normalize_domain(typed).ascii, normalize_domain(intended).ascii
        except DomainError as exc:
            return _evidence(Finding.UNKNOWN, typed, intended, f"Not looked up: {exc}.", started)
        deadline = asyncio.get_running_loop().time() + self.settings.budget
        mx_job = self._lookup(typed_name, "MX")
        intended_job = self._lookup(intended_name, "MX")
        jobs: list[Job] = [mx_job]
        mx = await self._by(mx_job, deadline, typed_name, "MX")
        address = None
        if needs_address(mx):
            a_job, aaaa_job = self._lookup(typed_name, "A"), self._lookup(typed_name, "AAAA")
            jobs += [a_job, aaaa_job]
            address = merge_addresses(await self._by(a_job, deadline, typed_name, "A"),
                                      await self._by(aaaa_job, deadline, typed_name, "AAAA"))
        intended_mx = None
        if needs_intended(mx) or mx.outcome is Outcome.NXDOMAIN or address is not None:
            jobs.append(intended_job)  # to compare hosts with, or to trust a "would bounce" (see classify)
            intended_mx = await self._by(intended_job, deadline, intended_name, "MX")
        found = classify(typed_name, intended_name, mx, address, intended_mx, self._shared)
        evidence = _evidence(found.finding, typed_name, intended_name, found.text, started, found.hosts,
                             cached=all(isinstance(job, Answer) for job in jobs))
        event(log, "dns_evidence", logging.DEBUG, typed=typed_name, intended=intended_name,
              finding=str(found.finding), ms=round(evidence.elapsed_ms, 1), cached=evidence.cached)
        return evidence

    def _lookup(self, name: str, rdtype: str) -> Job:
        """The cached answer, the look-up already running, or a new one (a FAILED answer past max_inflight)."""
        key = (name, rdtype)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        running = self._inflight.get(key)
        if running is not None and running.get_loop() is asyncio.get_running_loop():
            return running
        if len(self._inflight) >= self.settings.max_inflight:
            return Answer(name, rdtype, Outcome.FAILED, detail="too many DNS look-ups at once")
        task = asyncio.get_running_loop().create_task(self._resolve(name, rdtype), name=f"dns {rdtype} {name}")
        self._inflight[key] = task
        return task

    async def _by(self, job: Job, deadline: float, name: str, rdtype: str) -> Answer:
        """The job's answer if it comes before the deadline, else a TIMEOUT answer (the job runs on)."""
        if isinstance(job, Answer):
            return job
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining > 0 and not job.done():
            await asyncio.wait({job}, timeout=remaining)
        if job.done() and not job.cancelled():
            return job.result()
        if self.observe is not None:
            self.observe(rdtype, "over_budget")
        return Answer(name, rdtype, Outcome.TIMEOUT, detail=f"within {self.settings.budget_ms} ms")

    async def _resolve(self, name: str, rdtype: str) -> Answer:
        key = (name, rdtype)
        try:
            answer = await self._ask(name, rdtype)
            self._cache.put(key, answer, self._keep_for(answer))
            if self.observe is not None:
                self.observe(rdtype, str(answer.outcome))
            return answer
        finally:
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]

    async def _ask(self, name: str, rdtype: str) -> Answer:
        if self._resolver is None:
            return Answer(name, rdtype, Outcome.FAILED, detail=self._no_resolver)
        try:
            found = await self._resolver.resolve(dns.name.from_text(name), rdtype, raise_on_no_answer=False,
                                                 search=False)
        except dns.resolver.NXDOMAIN as exc:
            return Answer(name, rdtype, Outcome.NXDOMAIN, ttl=_negative_ttl(exc))
        except dns.resolver.NoNameservers as exc:
            return Answer(name, rdtype, Outcome.FAILED, detail=_failures(exc.kwargs.get("errors", ())))
        except dns.exception.Timeout:
            return Answer(name, rdtype, Outcome.TIMEOUT, detail=f"within {self.settings.query_timeout_ms} ms")
        except dns.exception.DNSException as exc:
            return Answer(name, rdtype, Outcome.FAILED, detail=str(exc) or type(exc).__name__)
        ttl = found.chaining_result.minimum_ttl
        if found.rrset is None:
            return Answer(name, rdtype, Outcome.ANSWER, ttl=ttl)
        return Answer(name, rdtype, Outcome.ANSWER, _records(found.rrset), ttl)

    def _keep_for(self, answer: Answer) -> float:
        s = self.settings
        if answer.outcome is Outcome.ANSWER and answer.records:
            return min(max(answer.ttl, s.min_ttl), s.max_ttl)
        if answer.known:
            return min(max(answer.ttl, s.negative_min_ttl), s.negative_max_ttl)
        return s.failure_ttl


class SyncWorld:
    """A `World` on an event loop of its own, in a daemon thread, for callers without a loop (the CLI).

        with SyncWorld(DnsSettings()) as world:
            world.check("army.ml", "army.mil")

    Look-ups that outlive a check go on in that thread and fill the cache for the next call.
    """

    def __init__(self, settings: DnsSettings | None = None, *,
                 observe: Callable[[str, str], None] | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rcptguard-dns", daemon=True)
        self._thread.start()
        self.world = World(settings, observe=observe)  # `observe`: as World's (a door's metrics.dns_answer)
        self._closed = False

    def check(self, typed: str, intended: str) -> Evidence:
        """`World.check` from a thread without a running loop; never raises."""
        started = time.perf_counter()
        if self._closed:
            return _evidence(Finding.UNKNOWN, typed, intended, "DNS look-ups are closed; decided without them.",
                             started)
        future = asyncio.run_coroutine_threadsafe(self.world.check(typed, intended), self._loop)
        try:
            return future.result(timeout=self.world.settings.budget + 5)
        except Exception:  # noqa: BLE001 - the check path must never fail on the world's evidence
            future.cancel()
            return _evidence(Finding.UNKNOWN, typed, intended, "The DNS look-up failed; decided without it.", started)

    def check_all(self, pairs: Sequence[tuple[str, str]]) -> list[Evidence]:
        """`check` for each (typed, intended) pair, all at once: the whole batch waits about one budget, not one
        budget a pair; never raises."""
        if not pairs:
            return []
        started = time.perf_counter()
        if self._closed:
            return [_evidence(Finding.UNKNOWN, typed, intended, "DNS look-ups are closed; decided without them.",
                              started) for typed, intended in pairs]

        async def together() -> list[Evidence]:
            return list(await asyncio.gather(*(self.world.check(typed, intended) for typed, intended in pairs)))

        future = asyncio.run_coroutine_threadsafe(together(), self._loop)
        try:
            return future.result(timeout=self.world.settings.budget + 5)
        except Exception:  # noqa: BLE001 - the check path must never fail on the world's evidence
            future.cancel()
            return [_evidence(Finding.UNKNOWN, typed, intended, "The DNS look-up failed; decided without it.",
                              started) for typed, intended in pairs]

    def cache_info(self) -> CacheInfo:
        return self.world.cache_info()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        asyncio.run_coroutine_threadsafe(self.world.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _resolver(settings: DnsSettings) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=not settings.nameservers)
    if settings.nameservers:
        resolver.nameservers = list(settings.nameservers)
    resolver.port = settings.port
    resolver.timeout = resolver.lifetime = settings.query_timeout
    resolver.cache = None  # ours, bounded, is in front
    return resolver


def _records(rrset: dns.rrset.RRset) -> tuple[str, ...]:
    if rrset.rdtype == dns.rdatatype.MX:
        exchanges = sorted((rd.preference, _host(rd.exchange)) for rd in rrset)
        return tuple(host for _, host in exchanges)
    return tuple(sorted(rd.to_text() for rd in rrset))


def _host(name: dns.name.Name) -> str:
    return NULL_MX if name == dns.name.root else name.to_text(omit_final_dot=True).lower()


def _negative_ttl(exc: dns.resolver.NXDOMAIN) -> int:
    for response in dict(exc.kwargs.get("responses") or {}).values():
        if isinstance(response, dns.message.QueryMessage):
            try:
                return int(response.resolve_chaining().minimum_ttl)
            except dns.exception.DNSException:
                break
    return 0


def _failures(errors: Iterable[tuple[object, ...]]) -> str:
    said: list[str] = []
    for error in errors:
        what = error[3] if len(error) > 3 else error  # (server, tcp, port, rcode text or exception, response)
        text = what if isinstance(what, str) else type(what).__name__
        if text not in said:
            said.append(text)
    return ", ".join(said) or "no server answered"


def _evidence(finding: Finding, typed: str, intended: str, text: str, started: float,
              hosts: tuple[str, ...] = (), *, cached: bool = False) -> Evidence:
    return Evidence(finding, typed, intended, text, hosts, (time.perf_counter() - started) * 1000, cached)
