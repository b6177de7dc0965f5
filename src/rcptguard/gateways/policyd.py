"""A Postfix policy service (SMTPD_POLICY_README): refuse a mistyped recipient at RCPT time.

Postfix sends `name=value` lines ended by an empty line; the service answers one `action=...` line and an
empty line, on persistent connections, many clients at once. Each verdict becomes a Postfix action:

    pass    DUNNO                                       (never OK: relay restrictions still apply)
    warn    DUNNO; with notify_smtp, the sender (never the recipients) gets a short notice, once a day per domain
    hold    REJECT <status> <explanation>               (hold_mode = "reject", the default)
            HOLD <explanation>  + a notice to the sender (hold_mode = "hold"; `rcptguard release QUEUE_ID`),
            one per message, sent when Postfix asks again at END-OF-MESSAGE (smtpd_end_of_data_restrictions):
            a transaction that never ends holds nothing, so it gets no notice (PendingNotices bounds how many
            unfinished ones are remembered, and for how long)
    reject  REJECT <status> <explanation>

It fails closed: on a protocol violation or an internal error it answers nothing and closes the connection,
so Postfix applies `smtpd_policy_service_default_action` (451 4.3.5), never a permit.

Every recipient it lets through (pass or warn) is counted in the store's history, per sender (docs/history.md); a
recipient that is warned or held, or follows others in its transaction, is judged with that history and them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, Literal

from rcptguard import logs
from rcptguard.delivery import NextHop
from rcptguard.errors import ConfigError, ProtocolError
from rcptguard.guard import malformed_verdict
from rcptguard.history import HistorySettings
from rcptguard.metrics import Metrics, check_metrics_listen
from rcptguard.model import Action, Malformed, Verdict
from rcptguard.notify import Flagged, Notifier, Warned
from rcptguard.outbox import Backoff, Outbox
from rcptguard.runtime import GuardFactory, Runtime, raise_fd_limit, serve_until_stopped
from rcptguard.settings import Settings, invalid
from rcptguard.store import Store
from rcptguard.store.quarantine import Quarantine
from rcptguard.world import DnsSettings, SyncWorld, World, consult, consult_sync

from .replies import ascii_line, explanation

log = logging.getLogger("rcptguard.policyd")

MAX_LINE = 16384  # a policy attribute line longer than this is a protocol violation
MAX_REQUEST = 65536  # and a whole request longer than this
MAX_ATTRIBUTES = 200


@dataclass(frozen=True, slots=True)
class PolicySettings(Settings):
    """The `[policyd]` section of the config file."""

    hold_mode: Literal["reject", "hold"] = "reject"
    reject_status: str = "5.7.1"
    malformed_status: str = "5.1.3"
    warn_notice_interval: float = 86400.0  # at most one warning notice per sender and domain (or address), seconds
    idle_timeout: float = 330.0  # longer than Postfix's max_idle (300 s): Postfix closes first
    flush_interval: float = 2.0  # seconds between writes of learned counts to the store
    rebuild_interval: float = 60.0  # seconds between index rebuilds when new domains became known
    notify_smtp: str | None = None  # host:port to send hold notices through
    notify_from: str = "postmaster"
    notify_at: Literal["end-of-message", "rcpt"] = "end-of-message"  # rcpt: at once, one per held recipient
    pending_limit: int = 10000  # unfinished held messages remembered for their END-OF-MESSAGE; the oldest go first
    retry_interval: float = 60.0  # seconds between tries of notices notify_smtp deferred (each waits its backoff)
    metrics_listen: str = ""  # HOST:PORT of its Prometheus metrics (GET /metrics); empty: not served

    def check(self) -> None:
        check_metrics_listen(self.metrics_listen)
        if self.notify_smtp:
            try:
                NextHop.parse(self.notify_smtp)
            except ValueError as exc:
                raise invalid("notify_smtp", str(exc)) from None
        if self.pending_limit < 1:
            raise invalid("pending_limit", "at least 1")


@dataclass(slots=True)
class HeldMessage:
    """The held recipients of one message (Postfix's `instance`), waiting for END-OF-MESSAGE."""

    since: float
    sender: str
    lines: list[Flagged] = field(default_factory=list)
    more: int = 0  # held recipients past PER_MESSAGE, counted, not listed


NOTICE_WAIT = 3600.0  # seconds a message's held recipients wait for its END-OF-MESSAGE request
PER_MESSAGE = 100  # held recipients listed in one notice; the rest are counted
EVICTION_LOG_INTERVAL = 60.0  # seconds between two log lines about forgotten messages


class PendingNotices:
    """Held messages waiting for their END-OF-MESSAGE, by Postfix's `instance` attribute.

        pending = PendingNotices(limit=10000)
        evicted = pending.add(instance, sender, line)   # [(instance, HeldMessage, why)] forgotten to make room
        held = pending.pop(instance)                    # at END-OF-MESSAGE: the message to tell its sender of

    One dict in arrival order: a message is inserted at its first held recipient and never moves, so the
    oldest is always at the front. Forgetting the stale ones (older than `max_age`) and the ones over `limit`
    looks at the front only and stops at the first young one: every request costs O(1) (amortised), however many
    transactions never ended, and memory is bounded by `limit` messages of at most `per_message` lines.
    `examined` counts the entries eviction looked at, for tests and benchmarks.
    """

    def __init__(self, limit: int = 10000, max_age: float = NOTICE_WAIT, per_message: int = PER_MESSAGE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.max_age = max_age
        self.per_message = per_message
        self.clock = clock
        self.examined = 0
        self._messages: dict[str, HeldMessage] = {}

    def __len__(self) -> int:
        return len(self._messages)

    def add(self, instance: str, sender: str, line: Flagged) -> list[tuple[str, HeldMessage, str]]:
        """Remember a held recipient of the message `instance`; the messages forgotten to make room (or gone
        stale), each with why."""
        now = self.clock()
        held = self._messages.get(instance)
        if held is not None:
            if len(held.lines) < self.per_message:
                held.lines.append(line)
            else:
                held.more += 1
            return []
        evicted = []
        while self._messages:
            self.examined += 1
            oldest = next(iter(self._messages))
            if now - self._messages[oldest].since > self.max_age:
                evicted.append((oldest, self._messages.pop(oldest), "stale"))
            elif len(self._messages) >= self.limit:
                evicted.append((oldest, self._messages.pop(oldest), "limit"))
            else:
                break
        self._messages[instance] = HeldMessage(now, sender, [line])
        return evicted

    def pop(self, instance: str) -> HeldMessage | None:
        return self._messages.pop(instance, None)


def add_attribute(attrs: dict[str, str], line: bytes) -> bool:
    """Add one `name=value` line to a request; True when the line was the empty one that ends it."""
    if len(line) > MAX_LINE:
        raise ProtocolError(f"attribute line longer than {MAX_LINE} bytes")
    line = line.rstrip(b"\r\n")
    if not line:
        if not attrs:
            raise ProtocolError("empty request")
        return True
    name, sep, value = line.partition(b"=")
    if not sep or not name:
        raise ProtocolError("a line without name=value")
    if len(attrs) >= MAX_ATTRIBUTES:
        raise ProtocolError("too many attributes")
    attrs[name.decode("ascii", "replace")] = value.decode("utf-8", "replace")
    return False


def postfix_action(verdict: Verdict, settings: PolicySettings) -> str:
    """The table from a verdict to a Postfix access(5) action."""
    action = verdict.action
    if action is Action.PASS:
        return "DUNNO"
    text = ascii_line(explanation(verdict))
    if action is Action.WARN:  # the sender is told (PolicyService._warned), not the recipients: no header
        return "DUNNO"
    if verdict.signal("MALFORMED_ADDRESS") is not None:
        return f"REJECT {settings.malformed_status} {ascii_line(verdict.reason)}"
    if action is Action.HOLD and settings.hold_mode == "hold":
        return f"HOLD {text}"
    return f"REJECT {settings.reject_status} {text}"


class PolicyService:
    """The policy protocol on any number of connections, one shared guard."""

    def __init__(self, guard_factory: GuardFactory, store: Store | None, settings: PolicySettings,
                 dns: DnsSettings | None = None, history: HistorySettings | None = None) -> None:
        if settings.notify_smtp and store is None:
            raise ConfigError("notices are stored before they are sent: the service needs a store",
                              key="policyd.notify_smtp")
        self.settings = settings
        self.hop = NextHop.parse(settings.notify_smtp) if settings.notify_smtp else None
        self.outbox = Outbox(Quarantine(store), backoff=Backoff(first=settings.retry_interval)) \
            if store is not None and self.hop is not None else None
        self.notifier = Notifier(sender=settings.notify_from)
        self.runtime = Runtime(guard_factory, store, flush_interval=settings.flush_interval,
                               rebuild_interval=settings.rebuild_interval, history=history)
        # Per transaction (Postfix's `instance`): the recipients let through so far, the company the next is
        # judged in; forgotten at END-OF-MESSAGE, the oldest first past pending_limit.
        self.transactions: OrderedDict[str, list[Verdict]] = OrderedDict()
        self.requests = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.pending = PendingNotices(settings.pending_limit)
        self.warned = Warned(settings.warn_notice_interval, settings.pending_limit)  # who heard of which domain
        # (or, for a person doubted, which address)
        self._evicted = {"stale": 0, "limit": 0}  # forgotten since the last log line about it
        self._evictions_logged = -EVICTION_LOG_INTERVAL
        # The world's evidence (DNS), when `dns` is enabled: `World` on the server's loop (decide_async); on
        # stdio, where nothing runs a loop, serve_stdio opens a `SyncWorld` for `decide`.
        self.dns = dns if dns is not None and dns.enabled else None
        self.metrics = Metrics("policyd", store)
        self.metrics.watch(self.runtime)
        self.world = World(self.dns, observe=self.metrics.dns_answer) if self.dns is not None else None
        self.sync_world: SyncWorld | None = None

    # -- deciding -------------------------------------------------------------------------------------

    def decide(self, attrs: dict[str, str]) -> str:
        """The action for one request; raises on an internal error (the caller then closes the connection).
        Without an event loop: the DNS step, if on, through `sync_world` (stdio mode)."""
        started = time.perf_counter()
        verdict = self._verdict(attrs)
        if isinstance(verdict, str):
            return verdict
        verdict = consult_sync(self.sync_world, verdict)
        if self._may_catch_up(attrs, verdict):
            self.runtime.catch_up(attrs.get("sender", ""), [verdict])
        if self._needs_history(attrs, verdict):
            verdict = self._in_company(attrs, verdict)
        return self._act(attrs, verdict, started)

    async def decide_async(self, attrs: dict[str, str]) -> str:
        """`decide` on the server's loop: the DNS step, if on, awaited within its budget (never blocking the loop
        nor failing the request: `consult`)."""
        started = time.perf_counter()
        verdict = self._verdict(attrs)
        if isinstance(verdict, str):
            return verdict
        verdict = await consult(self.world, verdict)
        if self._may_catch_up(attrs, verdict):  # one read of the store, off the loop
            await asyncio.to_thread(self.runtime.catch_up, attrs.get("sender", ""), [verdict])
        if self._needs_history(attrs, verdict):
            verdict = self._in_company(attrs, verdict)  # history in memory: no read to wait for
        return self._act(attrs, verdict, started)

    def _may_catch_up(self, attrs: dict[str, str], verdict: Verdict) -> bool:
        """Whether to ask the store for a confirmation the history in memory may not have yet: for a recipient
        warned or held whose sender has not confirmed its domain as far as memory knows."""
        return (verdict.action in (Action.WARN, Action.HOLD) and verdict.domain_ascii is not None
                and not self.runtime.may_be_confirmed(attrs.get("sender", ""), verdict.domain_ascii))

    def _needs_history(self, attrs: dict[str, str], verdict: Verdict) -> bool:
        """Whether the sender's history can change the verdict: a confirmation lowers a warning or a hold (the
        runtime knows who confirmed what), and the recipients already accepted in this transaction are the company
        an odd one is judged in. A first recipient that passes, or is held unconfirmed, is not judged again."""
        if verdict.domain_ascii is None or verdict.action is Action.REJECT:
            return False
        if self.transactions.get(attrs.get("instance", "")):
            return True
        return verdict.action >= Action.WARN and self.runtime.may_be_confirmed(attrs.get("sender", ""),
                                                                              verdict.domain_ascii)

    def _in_company(self, attrs: dict[str, str], verdict: Verdict) -> Verdict:
        """The verdict judged with the sender's history and the recipients accepted before it in this transaction
        (Postfix asks one recipient at a time: an earlier recipient's answer cannot change, so only the newest is
        judged in company; the company is the last `[history] max_group` recipients, so that a message to a
        thousand costs each recipient the same)."""
        earlier = self.transactions.get(attrs.get("instance", ""), [])[-self.runtime.settings.max_group :]
        return self.runtime.judge_or_not(attrs.get("sender", ""), [*earlier, verdict], last_only=True,
                                         fresh=False)[-1]  # caught up before, off the loop

    def _verdict(self, attrs: dict[str, str]) -> Verdict | str:
        """The engine's verdict for the request's recipient, or the action at once for a request without one."""
        state = attrs.get("protocol_state", "RCPT")
        if state == "END-OF-MESSAGE":  # decided at RCPT; now the message is whole
            self._end_of_message(attrs)
            return "DUNNO"
        if state not in ("RCPT", ""):  # DATA, VRFY, ETRN...: recipients are decided (and counted) at RCPT only
            return "DUNNO"
        recipient = attrs.get("recipient", "")
        if not recipient:
            return "DUNNO"  # nothing to check (a request from a stage without a recipient)
        if "\ufffd" in recipient:
            return malformed_verdict(Malformed(recipient, "the address is not valid UTF-8"))
        return self.runtime.guard.check(recipient)

    def _act(self, attrs: dict[str, str], verdict: Verdict, started: float) -> str:
        """The Postfix action for the verdict, with what it entails (counted, logged, the sender told)."""
        recipient = attrs.get("recipient", "")
        sender = attrs.get("sender", "")
        if self.runtime.observing and verdict.signal("MALFORMED_ADDRESS") is None:
            if verdict.action is not Action.PASS:
                self.runtime.observed("policyd", sender, verdict)
            self._accepted(attrs, verdict)
            self.metrics.decided(verdict, time.perf_counter() - started)
            return "DUNNO"
        action = postfix_action(verdict, self.settings)
        if verdict.action <= Action.WARN:
            self._accepted(attrs, verdict)
        self.metrics.decided(verdict, time.perf_counter() - started)
        logs.decision(log, verdict, door="policyd", sender=attrs.get("sender", ""), recipient=recipient,
                      client_address=attrs.get("client_address", ""), sasl_username=attrs.get("sasl_username", ""),
                      queue_id=attrs.get("queue_id", ""), reply=action.split(" ", 1)[0])
        if verdict.action is Action.HOLD and self.settings.hold_mode == "hold":
            self._held_recipient(attrs, verdict)
        elif verdict.action is Action.WARN:
            self._warned(attrs.get("sender", ""), recipient, verdict)
        return action

    def _accepted(self, attrs: dict[str, str], verdict: Verdict) -> None:
        """A recipient let through: learned (if it counts), and remembered as company for the transaction's next."""
        if verdict.domain_ascii:
            self.runtime.saw(attrs.get("sender", ""), [verdict])
            instance = attrs.get("instance", "")
            if instance:
                self.transactions.setdefault(instance, []).append(verdict)
                self.transactions.move_to_end(instance)
                while len(self.transactions) > self.settings.pending_limit:
                    self.transactions.popitem(last=False)

    def _warned(self, sender: str, recipient: str, verdict: Verdict) -> None:
        """Tell the sender that a recipient looks mistyped, at most once per sender and domain (or address, for a
        person doubted: `Warned.topic`) in `warn_notice_interval` (remembered in this process, bounded)."""
        if not self.settings.notify_smtp or not sender:
            return
        if not self.warned.due(sender, Warned.topic(recipient, verdict)):
            return
        self._send_warning(sender, recipient, verdict)

    def _held_recipient(self, attrs: dict[str, str], verdict: Verdict) -> None:
        sender, instance = attrs.get("sender", ""), attrs.get("instance", "")
        if not self.settings.notify_smtp or not sender:
            return
        if self.settings.notify_at == "rcpt" or not instance:
            self._notify(HeldMessage(time.monotonic(), sender, [Flagged.of(verdict)]), "")
            return
        evicted = self.pending.add(instance, sender, Flagged.of(verdict))
        if evicted:
            self._forgot(evicted)

    def _forgot(self, evicted: list[tuple[str, HeldMessage, str]]) -> None:
        """Log the messages forgotten without a notice: the first at once, then one line a minute with counts
        (a flood of unfinished transactions must not become a flood of log lines)."""
        for _instance, _held, why in evicted:
            self._evicted[why] += 1
        now = time.monotonic()
        if now - self._evictions_logged < EVICTION_LOG_INTERVAL:
            return
        self._evictions_logged = now
        instance, held, _why = evicted[-1]
        logs.event(log, "held messages forgotten without END-OF-MESSAGE: no notice sent for them (is "
                   "smtpd_end_of_data_restrictions set to this service?)", logging.WARNING,
                   stale=self._evicted["stale"], over_limit=self._evicted["limit"], limit=self.pending.limit,
                   pending=len(self.pending), last_sender=held.sender, last_instance=instance)
        self._evicted = {"stale": 0, "limit": 0}

    def _end_of_message(self, attrs: dict[str, str]) -> None:
        self.transactions.pop(attrs.get("instance", ""), None)
        held = self.pending.pop(attrs.get("instance", ""))
        if held is not None:
            self._notify(held, attrs.get("queue_id", ""))

    def _notify(self, held: HeldMessage, queue_id: str) -> None:
        self._queue("queue-hold", held.sender, lambda: self.notifier.queue_held(
            held.sender, held.lines,
            more=held.more, queue_id=queue_id), queue_id=queue_id)

    def _send_warning(self, sender: str, recipient: str, verdict: Verdict) -> None:
        self._queue("warning", sender, lambda: self.notifier.warned(
            sender, [Flagged.of(verdict)], None, dt.timedelta(seconds=self.settings.warn_notice_interval)),
            recipient=recipient)

    def _queue(self, kind: str, sender: str, make: Callable[[], bytes], **about: str) -> None:
        """Store a notice for the outbox and have it sent now, off the event loop (in a thread in stdio mode);
        one the next hop defers is sent again by the next round (serve) or any relay sharing the store."""
        def store_and_send() -> None:
            assert self.outbox is not None  # only called with notify_smtp, which needs a store
            assert self.hop is not None
            try:
                row = self.outbox.queue(kind, "", sender, make())
                self.outbox.send_queued(self.hop, ids=[row])
            except Exception as exc:  # noqa: BLE001 - the mail itself is Postfix's: log and go on
                logs.event(log, "notice failed", logging.WARNING, kind=kind, sender=sender,
                           error=f"{type(exc).__name__}: {exc}", **about)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # stdio mode has no event loop
            threading.Thread(target=store_and_send).start()
            return
        task = loop.create_task(asyncio.to_thread(store_and_send))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the protocol ---------------------------------------------------------------------------------

    async def read_request(self, reader: asyncio.StreamReader) -> dict[str, str] | None:
        """One request's attributes, or None at a clean end of the connection."""
        try:
            async with asyncio.timeout(self.settings.idle_timeout):
                block = await reader.readuntil(b"\n\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial.strip():
                return None
            raise ProtocolError("connection closed in the middle of a request") from None
        except asyncio.LimitOverrunError:
            raise ProtocolError(f"request longer than {MAX_REQUEST} bytes") from None
        except TimeoutError:
            raise ProtocolError("idle too long") from None
        attrs: dict[str, str] = {}
        for line in block.split(b"\n")[:-1]:
            if add_attribute(attrs, line):
                break
        return attrs

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or "stdio"
        try:
            while True:
                attrs = await self.read_request(reader)
                if attrs is None:
                    break
                answer = await self.decide_async(attrs)
                self.requests += 1
                writer.write(f"action={answer}\n\n".encode())
                await writer.drain()
        except ProtocolError as exc:
            logs.event(log, "protocol error", logging.WARNING, peer=str(peer), problem=str(exc))
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:  # fail closed: no answer at all, Postfix applies its default action (4xx)
            log.exception("internal error; connection closed without an answer", extra={"fields": {"peer": str(peer)}})
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    def close(self) -> None:
        self.runtime.close()
        if self.sync_world is not None:
            self.sync_world.close()


async def serve(service: PolicyService, host: str, port: int, ready: Callable[[int], None] | None = None,
                stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM or SIGINT (or until `stop` is set), then save what was learned."""
    raise_fd_limit()
    server = await asyncio.start_server(service.connection, host, port, limit=MAX_REQUEST, reuse_address=True,
                                        backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    logs.event(log, "listening", host=host, port=bound)
    if ready is not None:
        ready(bound)
    tasks = [asyncio.create_task(service.runtime.maintain())]
    if service.outbox is not None:
        tasks.append(asyncio.create_task(_send_stored(service)))
    try:
        await serve_until_stopped(server, stop or asyncio.Event(), tasks)
    finally:
        await asyncio.to_thread(service.close)
        if service.world is not None:
            await service.world.close()
        logs.event(log, "stopped", requests=service.requests)


async def _send_stored(service: PolicyService) -> None:
    """Every `retry_interval`, send the stored notices that are due (those notify_smtp deferred, and any another
    process stored and could not send)."""
    assert service.outbox is not None
    assert service.hop is not None
    while True:
        await asyncio.sleep(service.settings.retry_interval)
        try:
            await asyncio.to_thread(service.outbox.send_queued, service.hop)
        except Exception as exc:  # noqa: BLE001 - stored: the next round tries again
            logs.event(log, "stored notices not sent", logging.WARNING, error=f"{type(exc).__name__}: {exc}")


def _requests(stdin: BinaryIO) -> Iterator[dict[str, str]]:
    attrs: dict[str, str] = {}
    while line := stdin.readline(MAX_LINE + 1):
        if len(line) > MAX_LINE:
            raise ProtocolError(f"attribute line longer than {MAX_LINE} bytes")
        if add_attribute(attrs, line):
            yield attrs
            attrs = {}
    if attrs:
        raise ProtocolError("connection closed in the middle of a request")


def serve_stdio(service: PolicyService, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """One connection on stdin/stdout, for Postfix's spawn(8) in master.cf: blocking, like the peer. With DNS on,
    a `SyncWorld` (a loop in a thread, its cache for this connection's life) gives the evidence within its budget."""
    if service.dns is not None and service.sync_world is None:
        service.sync_world = SyncWorld(service.dns)
    try:
        for attrs in _requests(stdin):
            stdout.write(f"action={service.decide(attrs)}\n\n".encode())
            stdout.flush()
            service.requests += 1
    except ProtocolError as exc:
        logs.event(log, "protocol error", logging.WARNING, peer="stdio", problem=str(exc))
    except (BrokenPipeError, ConnectionError):
        pass
    except Exception:  # fail closed: no answer, the peer sees the connection end
        log.exception("internal error; connection closed without an answer")
    finally:
        service.close()
