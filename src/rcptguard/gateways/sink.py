"""The receiving side: an SMTP server for typo domains that refuses every recipient and says what was meant.

    sender's MTA ──RCPT TO:<j.doe@army.ml>──▶ rcptguard sink (the MX of army.ml)
                ◀── 550 5.1.2 army.ml is not army.mil -- your message was NOT delivered. Did you mean
                    j.doe@army.mil? Check the address and send it again.

The sending MTA turns the 550 into a bounce to its own sender at once. Nothing is ever accepted (no recipient is
taken, DATA is always refused), so nothing is kept and the sink never sends a bounce itself: no backscatter.

Per recipient, at RCPT:

    a typo domain it answers for   550 5.1.2 with the intended domain and the corrected address; one metadata row
                                   (when, the server and its HELO, the sender's domain, the typo and intended
                                   domains) is stored first: the refusal is said only once it is recorded
    any other domain               550 5.7.1 not served here (never an open relay)
    a malformed address            553 5.1.3 with the engine's reason
    over a limit                   452 4.5.3 (recipients per session), 450 4.7.1 (recipients per client per window)
    the store down or slow         451 4.3.0: the sending MTA tries again later; never a 5xx for our own failure

5.1.2 ("bad destination system address", RFC 3463) says what is wrong: the domain, not the mailbox (5.1.1 would
tell the sender the person does not exist) and not a policy (5.7.1 reads as "blocked", as if the sender had done
wrong). The typo domains come from `[sink] domains` (a map) and `[sink] intended` (the engine finds, for each
typed domain, which intended domain it is a slip of: `army.ml`, `navy.ml`, `af.ml` → `….mil`).

Metadata writes are grouped: every recipient being refused puts its row in one bounded queue, and one writer stores
what is waiting in one transaction (a busy sink writes hundreds of rows per commit). A reply waits for its row at
most `write_timeout`; a full queue or a store that fails or does not answer in time gets 451 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import re
import resource
import socket
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal, cast

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from rcptguard import logs
from rcptguard.domains import DomainError, normalize_domain, parse_address
from rcptguard.gateways.relay import GuardedSMTP
from rcptguard.gateways.replies import SmtpReply, ascii_line
from rcptguard.guard import Guard
from rcptguard.metrics import Metrics, check_metrics_listen
from rcptguard.model import Action, Address, Malformed
from rcptguard.policy import Policy, load_policy
from rcptguard.runtime import raise_fd_limit, serve_until_stopped
from rcptguard.settings import Settings, invalid
from rcptguard.store import StoreError
from rcptguard.store.sink import Refusal, Refusals

log = logging.getLogger("rcptguard.sink")

REPLY_LINE = 512  # octets of a reply line, CRLF included (RFC 5321 §4.5.3.1.5)
_RESERVED_FILES = 64  # open files kept free of client connections: the store, the listening socket, logs
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*\Z")


@dataclass(frozen=True, slots=True)
class SinkSettings(Settings):
    """The `[sink]` section of the config file (docs/sink.md)."""

    domains: dict[str, str] = field(default_factory=dict)  # typo domain -> intended domain, either in any IDN form
    intended: tuple[str, ...] = ()  # intended domains or whole suffixes ("mil"): the engine finds their typos
    answer_from: Literal["warn", "hold"] = "warn"  # the least the engine must say of a typed domain to answer for it
    hostname: str | None = None  # in the greeting (default: this host's name)
    keep_sender_local: bool = False  # record the sender's local part too, not only its domain
    keep_days: float = 30.0  # refusals are deleted after this many days (`rcptguard sink purge`, daily)
    tls_cert: str | None = None  # PEM certificate (chain) for STARTTLS, relative to the config file
    tls_key: str | None = None  # and its key; STARTTLS is offered when both are set
    metrics_listen: str = ""  # HOST:PORT of its Prometheus metrics (GET /metrics); empty: not served
    # -- limits and timeouts (docs/sink.md, "Abuse") --
    max_connections: int = 1000  # sessions at once, in total
    max_connections_per_client: int = 20  # and from one client (an IPv6 client: its /64)
    connection_rate: int = 60  # new sessions from one client per `rate_window`; more are answered 421
    recipient_rate: int = 600  # RCPTs from one client per `rate_window`; more are answered 450
    rate_window: float = 60.0
    max_recipients: int = 100  # RCPTs in one session; more are answered 452 (RFC 5321 §4.5.3.1.8: at least 100)
    error_limit: int = 20  # errors in one session (bad commands, DATA, RCPTs over the cap) before it is closed
    junk_command_limit: int = 20  # NOOP, RSET, HELP, VRFY in one session
    idle_timeout: float = 300.0  # a client that sends nothing this long is disconnected (RFC 5321 §4.5.3.2.7)
    session_time_limit: float = 900.0  # however busy, a session ends after this long
    write_timeout: float = 5.0  # a reply waits at most this long for its metadata row; then 451
    queue_size: int = 10_000  # rows waiting for the writer; when full, 451

    def check(self) -> None:
        check_metrics_listen(self.metrics_listen)
        for typo, intended in self.domains.items():
            for name in (typo, intended):
                try:
                    normalize_domain(name)
                except DomainError as exc:
                    raise invalid("domains", f"{name!r}: {exc}") from None
            if normalize_domain(typo).ascii == normalize_domain(intended).ascii:
                raise invalid("domains", f"{typo!r} maps to itself")
        for name in self.intended:
            try:
                normalize_domain(name)
            except DomainError as exc:
                raise invalid("intended", f"{name!r}: {exc}") from None
        for name in ("max_connections", "max_connections_per_client", "connection_rate", "recipient_rate",
                     "max_recipients", "error_limit", "junk_command_limit", "queue_size"):
            if getattr(self, name) < 1:
                raise invalid(name, "at least 1")
        for name in ("rate_window", "idle_timeout", "session_time_limit", "write_timeout"):
            if getattr(self, name) <= 0:
                raise invalid(name, "expected a positive number of seconds")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise invalid("tls_cert" if self.tls_cert is None else "tls_key", "tls_cert and tls_key go together")

    @property
    def keep(self) -> dt.timedelta:
        return dt.timedelta(days=self.keep_days)

    def tls_context(self) -> ssl.SSLContext | None:
        """The server's TLS context for STARTTLS, when a certificate is configured (OSError, ssl.SSLError when it
        cannot be read)."""
        if self.tls_cert is None or self.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


class Sunk(StrEnum):
    """Every answer of the sink that is not a refusal of a typo (those are `refusal`): one table, `SINK_REPLIES`."""

    NOT_SERVED = "not served"
    MALFORMED = "malformed"
    NEEDS_SMTPUTF8 = "needs SMTPUTF8"
    SENDER_OK = "sender accepted"
    NO_DATA = "no data"
    TOO_MANY_RECIPIENTS = "too many recipients"
    RECIPIENT_RATE = "recipient rate"
    TOO_MANY_CONNECTIONS = "too many connections"
    TOO_MANY_FROM_CLIENT = "too many connections from the client"
    CONNECTION_RATE = "connection rate"
    TOO_MANY_ERRORS = "too many errors"
    JUNK_COMMANDS = "junk commands"
    SESSION_TOO_LONG = "session too long"
    NOT_IMPLEMENTED = "not implemented"
    SHUTTING_DOWN = "shutting down"
    UNRECORDED = "not recorded"


SINK_REPLIES: dict[Sunk, SmtpReply] = {
    Sunk.NOT_SERVED: SmtpReply(550, "5.7.1", "This server receives no mail for that domain; relaying denied"),
    Sunk.MALFORMED: SmtpReply(553, "5.1.3", "The address is malformed"),
    Sunk.NEEDS_SMTPUTF8: SmtpReply(553, "5.6.7", "This address needs SMTPUTF8: give MAIL FROM the SMTPUTF8 "
                                                 "parameter"),
    Sunk.SENDER_OK: SmtpReply(250, "2.1.0", "OK"),
    Sunk.NO_DATA: SmtpReply(554, "5.5.1", "No valid recipients: this server accepts no mail"),
    Sunk.TOO_MANY_RECIPIENTS: SmtpReply(452, "4.5.3", "Too many recipients in this session; send the rest later"),
    Sunk.RECIPIENT_RATE: SmtpReply(450, "4.7.1", "Too many recipients from this client; try again later"),
    Sunk.TOO_MANY_CONNECTIONS: SmtpReply(421, "4.7.0", "Too many connections; try again later"),
    Sunk.TOO_MANY_FROM_CLIENT: SmtpReply(421, "4.7.0", "Too many connections from this client; try again later"),
    Sunk.CONNECTION_RATE: SmtpReply(421, "4.7.0", "Too many new connections from this client; try again later"),
    Sunk.TOO_MANY_ERRORS: SmtpReply(421, "4.7.0", "Too many errors; closing"),
    Sunk.JUNK_COMMANDS: SmtpReply(421, "4.7.0", "Too many commands without a message; closing"),
    Sunk.SESSION_TOO_LONG: SmtpReply(421, "4.4.2", "Session too long; closing"),
    Sunk.NOT_IMPLEMENTED: SmtpReply(502, "5.5.1", "Command not implemented"),
    Sunk.SHUTTING_DOWN: SmtpReply(421, "4.3.2", "Service shutting down; try again later"),
    Sunk.UNRECORDED: SmtpReply(451, "4.3.0", "Temporary failure; try again later"),
}
REFUSED_STATUS = "5.1.2"


def refusal(typo: str, intended: str, local: str | None) -> SmtpReply:
    """The refusal of a recipient at a typo domain, in plain words: `army.ml is not army.mil -- your message was
    NOT delivered. Did you mean j.doe@army.mil? Check the address and send it again.` Domains in their A-label
    form (a reply is ASCII); the local part is repeated only when it is a plain one (no quotes, no controls, no
    UTF-8), and the whole line fits RFC 5321's 512 octets however long the names are."""
    room = REPLY_LINE - len(f"550 {REFUSED_STATUS} \r\n")
    head = f"{typo} is not {intended} -- your message was NOT delivered."
    tail = "Check the address and send it again."
    if local is not None and _LOCAL_PART.match(local) and len(local) <= 64:
        text = f"{head} Did you mean {local}@{intended}? {tail}"
        if len(text) <= room:
            return SmtpReply(550, REFUSED_STATUS, text)
    text = f"{head} Did you mean the same address at {intended}? {tail}"
    return SmtpReply(550, REFUSED_STATUS, ascii_line(text, room))


@dataclass(frozen=True, slots=True)
class Answer:
    """A typo domain the sink answers for, and the domain meant, both in their A-label form."""

    typo: str
    intended: str


class TypoDomains:
    """Which typed domains the sink answers for, and what was meant: the configured map first, then the engine over
    the configured intended domains (only those: no popular providers, no known correspondents)."""

    def __init__(self, settings: SinkSettings, policy: Policy | None = None) -> None:
        self.mapped = {normalize_domain(typo).ascii: normalize_domain(intended).ascii
                       for typo, intended in settings.domains.items()}
        self.least = Action.parse(settings.answer_from)
        self.guard: Guard | None = None
        if settings.intended:
            base = policy or load_policy(None)
            self.guard = Guard(replace(base, protect=settings.intended, known=(), known_files=(), providers=False,
                                       force=()))

    def answer(self, address: Address) -> Answer | None:
        typed = address.domain.ascii
        mapped = self.mapped.get(typed)
        if mapped is not None:
            return Answer(typed, mapped)
        if self.guard is None:
            return None
        judged = self.guard.judge(address.domain)
        if judged.intended is None or judged.action < self.least:
            return None
        try:
            intended = normalize_domain(judged.intended)
        except DomainError:
            return None
        if self.guard.index.covering(intended) is None:  # a bogus suffix's nearest real one: not ours to name
            return None
        return Answer(typed, intended.ascii)


def answer_for(domains: TypoDomains, address: str) -> str:
    """The reply the sink gives at RCPT for `address` (its limits and store aside): what `rcptguard sink check`
    prints, so that an operator sees what senders will read before the MX points at it."""
    parsed = parse_address(address)
    if isinstance(parsed, Malformed):
        return str(SmtpReply(553, "5.1.3", ascii_line(f"The address is malformed: {parsed.reason}.", 200)))
    answer = domains.answer(parsed)
    if answer is None:
        return str(SINK_REPLIES[Sunk.NOT_SERVED])
    return str(refusal(answer.typo, answer.intended, parsed.local))


def client_key(peer: object) -> str:
    """Whom the per-client limits count: the address, an IPv6 client by its /64 (one host has all of it)."""
    host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Rates:
    """How often each client did something in the current window (fixed windows of `window` seconds), bounded in
    memory: the counts of a window are dropped when the next one starts."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._started = time.monotonic()
        self._counts: Counter[str] = Counter()

    def allow(self, key: str) -> bool:
        """Count one more for `key`; False when that goes over the limit."""
        now = time.monotonic()
        if now - self._started >= self.window:
            self._started = now
            self._counts.clear()
        self._counts[key] += 1
        return self._counts[key] <= self.limit


class Recorder:
    """One writer for the metadata of every session: rows wait in a bounded queue and are stored together, one
    transaction per batch; each refusal is answered once its row is stored."""

    def __init__(self, refusals: Refusals, size: int, wait: float, batch: int = 1000) -> None:
        self.refusals = refusals
        self.wait = wait
        self.batch = batch
        self.queue: asyncio.Queue[tuple[Refusal, asyncio.Future[None]]] = asyncio.Queue(size)
        self.stored = 0

    async def record(self, row: Refusal) -> None:
        """Return once `row` is stored; StoreError when it cannot be within `wait` seconds (queue full, the store
        failed, or it is too slow)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.add_done_callback(_retrieved)
        try:
            self.queue.put_nowait((row, done))
        except asyncio.QueueFull:
            raise StoreError("too many refusals waiting to be recorded") from None
        try:
            await asyncio.wait_for(asyncio.shield(done), self.wait)
        except TimeoutError:
            raise StoreError(f"the store did not record the refusal within {self.wait:g} s") from None

    async def run(self) -> None:
        """Store what waits, batch after batch, until cancelled."""
        while True:
            waiting = [await self.queue.get()]
            while len(waiting) < self.batch and not self.queue.empty():
                waiting.append(self.queue.get_nowait())
            try:
                await asyncio.to_thread(self._store, [row for row, _ in waiting])
            except Exception as exc:  # noqa: BLE001 - each waiting reply turns it into a 451
                error = exc if isinstance(exc, StoreError) else StoreError(f"{type(exc).__name__}: {exc}")
                for _, done in waiting:
                    if not done.done():
                        done.set_exception(error)
                continue
            self.stored += len(waiting)
            for _, done in waiting:
                if not done.done():
                    done.set_result(None)

    def _store(self, rows: list[Refusal]) -> None:
        self.refusals.add(rows)
        self.refusals.store.verify()


def _retrieved(done: asyncio.Future[None]) -> None:
    """Mark an outcome nobody waits for any more as seen (a reply that timed out): no warning at exit."""
    if not done.cancelled():
        done.exception()


def _sender_parts(mail_from: str | None) -> tuple[str, str]:
    """The envelope sender as (local part, domain in A-label form), bounded and printable; ("", "") for <>."""
    local, _, domain = (mail_from or "").removeprefix("<").removesuffix(">").rpartition("@")
    try:
        domain = normalize_domain(domain).ascii if domain else ""
    except DomainError:
        domain = ascii_line(domain.lower(), 253)
    return ascii_line(local, 64), domain


_PREFIXED: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def prefixed(cls: type, *prefixes: str) -> list[str]:
    """The attribute names of `cls` that start with one of `prefixes` (read once per class)."""
    key = (f"{cls.__module__}.{cls.__qualname__}", prefixes)
    if key not in _PREFIXED:
        _PREFIXED[key] = [name for name in dir(cls) if name.startswith(prefixes)]
    return _PREFIXED[key]


class SinkHandler:
    """aiosmtpd hooks and the limits GuardedSMTP asks of its handler: refuse at RCPT, record, never take DATA."""

    def __dir__(self) -> list[str]:
        """Only its `handle_` hooks and `auth_` mechanisms, which aiosmtpd reads for every session (SinkSMTP)."""
        return prefixed(type(self), "handle_", "auth_")

    def __init__(self, domains: TypoDomains, recorder: Recorder, settings: SinkSettings) -> None:
        self.domains = domains
        self.metrics = Metrics("sink", recorder.refusals.store)
        self.recorder = recorder
        self.settings = settings
        self.hostname = settings.hostname or socket.getfqdn() or "localhost"
        self.connections: Counter[str] = Counter()  # open sessions by client
        self.connection_rates = Rates(settings.connection_rate, settings.rate_window)
        self.recipient_rates = Rates(settings.recipient_rate, settings.rate_window)
        self.refused = 0  # recipients refused as typos
        self.sessions: set[SinkSMTP] = set()  # open, to be closed at shutdown
        self._limit_logged: dict[str, float] = {}
        self._limit_counts: Counter[str] = Counter()

    def fit_connections(self, open_files: int) -> None:
        """Lower `max_connections` to what `open_files` allows: a server out of file descriptors serves nobody."""
        total = min(self.settings.max_connections, max(open_files - _RESERVED_FILES, 2))
        if total != self.settings.max_connections:
            logs.event(log, "connection limit lowered", logging.WARNING, open_files=open_files, max_connections=total)
            self.settings = replace(self.settings, max_connections=total,
                                    max_connections_per_client=min(self.settings.max_connections_per_client, total))

    # -- what GuardedSMTP asks (relay.Door) --------------------------------------------------------------

    def admit(self, peer: object) -> str | None:
        """None when a new session may go on (counted until `left`), else the 421 that closes it."""
        key = client_key(peer)
        if self.connections.total() >= self.settings.max_connections:
            return self._refuse_session("max_connections", peer, Sunk.TOO_MANY_CONNECTIONS)
        if self.connections[key] >= self.settings.max_connections_per_client:
            return self._refuse_session("max_connections_per_client", peer, Sunk.TOO_MANY_FROM_CLIENT)
        if not self.connection_rates.allow(key):
            return self._refuse_session("connection_rate", peer, Sunk.CONNECTION_RATE)
        self.connections[key] += 1
        return None

    def _refuse_session(self, limit: str, peer: object, reply: Sunk) -> str:
        self.limit_hit(limit, peer)
        return str(SINK_REPLIES[reply])

    def left(self, peer: object) -> None:
        key = client_key(peer)
        self.connections[key] -= 1
        if self.connections[key] <= 0:
            del self.connections[key]

    def limit_hit(self, limit: str, peer: object) -> None:
        """Log that a limit refused or closed a client: at most once a minute per limit and client, with the count."""
        self.metrics.sink_limits.labels(limit).inc()
        key = f"{limit}:{client_key(peer)}"
        self._limit_counts[key] += 1
        now = time.monotonic()
        if now - self._limit_logged.get(key, -3600.0) >= 60.0:
            self._limit_logged[key] = now
            logs.event(log, "limit hit", logging.WARNING, limit=limit, client=client_key(peer),
                       times=self._limit_counts.pop(key), connections=self.connections.total())
        if len(self._limit_logged) > 10_000:  # many clients: forget the quiet ones
            self._limit_logged = {k: t for k, t in self._limit_logged.items() if now - t < 60.0}

    def malformed(self, address: str) -> str | None:
        if isinstance(parse_address(address), Malformed):
            self.metrics.sink_answers.labels("malformed").inc()
            return answer_for(self.domains, address)
        return None

    # -- aiosmtpd's hooks --------------------------------------------------------------------------------

    async def handle_EHLO(self, _server: SMTP, session: Session, _envelope: Envelope,  # noqa: N802 - aiosmtpd hook
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]

    async def handle_MAIL(self, _server: SMTP, _session: Session, envelope: Envelope,  # noqa: N802 - aiosmtpd hook
                          address: str, mail_options: list[str]) -> str:
        if address and not address.isascii() and "SMTPUTF8" not in (o.upper() for o in mail_options):
            return str(SINK_REPLIES[Sunk.NEEDS_SMTPUTF8])
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return str(SINK_REPLIES[Sunk.SENDER_OK])

    async def handle_RCPT(self, _server: SMTP, session: Session, envelope: Envelope,  # noqa: N802 - aiosmtpd hook
                          address: str, _rcpt_options: list[str]) -> str:
        """Refuse the recipient: a typo domain with what was meant (once its row is stored), any other domain as
        not served. No recipient is ever taken, so DATA never follows."""
        answer, reply = await self._answer(session, envelope, address)
        if answer is not None:
            self.metrics.sink_answers.labels(answer).inc()
        return reply

    def over_limit(self, server: SinkSMTP) -> str | None:
        """Count one more RCPT of this session and client, whatever it names; the 452 or 450 when that is too many
        (a session over its cap also counts an error: a client that goes on is closed)."""
        peer = server.session.peer if server.session is not None else None
        server.recipients += 1
        if server.recipients > self.settings.max_recipients:
            self.limit_hit("max_recipients", peer)
            server.errors += 1
            self.metrics.sink_answers.labels("limited").inc()
            return str(SINK_REPLIES[Sunk.TOO_MANY_RECIPIENTS])
        if not self.recipient_rates.allow(client_key(peer)):
            self.limit_hit("recipient_rate", peer)
            self.metrics.sink_answers.labels("limited").inc()
            return str(SINK_REPLIES[Sunk.RECIPIENT_RATE])
        return None

    async def _answer(self, session: Session, envelope: Envelope, address: str) -> tuple[str | None, str]:
        """What kind of answer (the metric's label; None when counted already) and the reply."""
        if not address.isascii() and not envelope.smtp_utf8:
            return "malformed", str(SINK_REPLIES[Sunk.NEEDS_SMTPUTF8])
        parsed = parse_address(address)
        if isinstance(parsed, Malformed):
            return None, self.malformed(address) or str(SINK_REPLIES[Sunk.MALFORMED])
        answer = self.domains.answer(parsed)
        if answer is None:
            logs.event(log, "not served", client=client_key(session.peer), domain=parsed.domain.ascii)
            return "not_served", str(SINK_REPLIES[Sunk.NOT_SERVED])
        local, sender_domain = _sender_parts(envelope.mail_from)
        row = Refusal(dt.datetime.now(dt.UTC), _peer_address(session.peer), ascii_line(session.host_name or "", 255),
                      sender_domain, local if self.settings.keep_sender_local else None, answer.typo, answer.intended)
        try:
            await self.recorder.record(row)
        except StoreError as exc:
            logs.event(log, "refusal not recorded", logging.ERROR, error=str(exc), typo=answer.typo)
            return "tempfail", str(SINK_REPLIES[Sunk.UNRECORDED])
        self.refused += 1
        logs.event(log, "refused", client=row.client_ip, helo=row.helo, sender_domain=sender_domain,
                   typo=answer.typo, intended=answer.intended)
        return "typo", str(refusal(answer.typo, answer.intended, parsed.local))

    async def handle_exception(self, error: Exception) -> str:
        log.error("internal error", exc_info=error)
        return str(SINK_REPLIES[Sunk.UNRECORDED])


def _peer_address(peer: object) -> str:
    return str(peer[0]) if isinstance(peer, tuple) and peer else ""


_ERRORS = (b"500", b"501", b"502", b"503", b"504", b"553", b"554")  # replies that count against `error_limit`


class SinkSMTP(GuardedSMTP):
    """GuardedSMTP (CRLF-only command lines, strict paths, limits before the greeting, junk commands, batched
    replies) that never reads a message: DATA is refused with 554, and a session ends after `error_limit` errors
    or `session_time_limit` seconds, whatever it does."""

    line_length_limit = 4096  # a longer command line is read to its end and answered 500, in bounded memory
    recipients = 0  # RCPT commands in this session
    errors = 0
    _closing = False
    _session_timer: asyncio.TimerHandle | None = None

    @property
    def door(self) -> SinkHandler:
        return cast("SinkHandler", self.event_handler)

    def __dir__(self) -> list[str]:
        """Only the names aiosmtpd looks up by prefix as each session starts (its `smtp_` commands and `auth_`
        mechanisms): it reads dir() of every new session and of its handler (`inspect.getmembers`, every
        attribute fetched), a third of the sink's time per connection when the whole list is read."""
        return prefixed(type(self), "smtp_", "auth_")

    async def _handle_client(self) -> None:
        self._session_timer = self.loop.call_later(self.door.settings.session_time_limit, self._session_over)
        self.door.sessions.add(self)
        await super()._handle_client()

    def _session_over(self) -> None:
        if self.transport is not None and not self._closing:
            self.door.limit_hit("session_time_limit", self.session.peer if self.session else None)
            self.close_with(SINK_REPLIES[Sunk.SESSION_TOO_LONG])

    def close_with(self, reply: SmtpReply) -> None:
        """Say `reply` and close the session (the client may be gone already: then only close)."""
        if self._closing:
            return
        self._closing = True
        if self.transport is not None and not self.transport.is_closing():
            self._writer.write(f"{reply}\r\n".encode())
            self.transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        if self._session_timer is not None:
            self._session_timer.cancel()
        self.door.sessions.discard(self)
        super().connection_lost(error)

    async def push(self, status: str | bytes) -> None:
        if self._closing:
            return
        await super().push(status)
        line = status.encode() if isinstance(status, str) else status
        if line[:3] in _ERRORS:
            self.errors += 1
        if self.errors > self.door.settings.error_limit:
            self.door.limit_hit("error_limit", self.session.peer if self.session else None)
            await super().push(str(SINK_REPLIES[Sunk.TOO_MANY_ERRORS]))
            self._closing = True
            if self.transport is not None:
                self.transport.close()

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        """Every RCPT counts against the limits, a malformed one too, before anything else is looked at."""
        limited = self.door.over_limit(self)
        if limited is not None:
            await self.push(limited)
            return
        await super().smtp_RCPT(arg)

    @syntax("DATA")
    async def smtp_DATA(self, _arg: str) -> None:  # noqa: N802 - aiosmtpd's command name
        await self.push(str(SINK_REPLIES[Sunk.NO_DATA]))

    @syntax("XFORWARD attribute=value ...")
    async def smtp_XFORWARD(self, _arg: str | None) -> None:  # noqa: N802 - aiosmtpd's command name
        await self.push(str(SINK_REPLIES[Sunk.NOT_IMPLEMENTED]))


Ready = Callable[[int], None]


async def serve(handler: SinkHandler, host: str, port: int, *, ready: Ready | None = None,
                stop: asyncio.Event | None = None, sockets: list[socket.socket] | None = None) -> None:
    """Serve on host:port, or on `sockets` already listening (systemd's), until SIGTERM/SIGINT (or `stop`), the
    metadata writer beside the sessions."""
    loop = asyncio.get_running_loop()
    settings = handler.settings
    tls = settings.tls_context()

    def factory() -> SMTP:
        return SinkSMTP(handler, data_size_limit=None, enable_SMTPUTF8=True, decode_data=False,
                        hostname=handler.hostname, ident="rcptguard sink", timeout=settings.idle_timeout,
                        tls_context=tls, loop=loop)

    raise_fd_limit()
    handler.fit_connections(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    if sockets:
        servers = [await loop.create_server(factory, sock=sock, backlog=1024) for sock in sockets]
    else:
        servers = [await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)]
    bound = [sock.getsockname() for server in servers for sock in server.sockets]
    logs.event(log, "listening", on=[f"{a[0]}:{a[1]}" for a in bound], starttls=tls is not None,
               typo_domains=len(handler.domains.mapped), intended=list(settings.intended))
    if ready is not None:
        ready(bound[0][1])
    for extra in servers[1:]:
        await extra.start_serving()
    tasks = [asyncio.create_task(handler.recorder.run())]
    try:
        await serve_until_stopped(servers[0], stop or asyncio.Event(), tasks)
    finally:
        for extra in servers[1:]:
            extra.close()
        for session in list(handler.sessions):  # no session outlives the server
            session.close_with(SINK_REPLIES[Sunk.SHUTTING_DOWN])
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(100):
            if not handler.sessions:
                break
            await asyncio.sleep(0.01)
        logs.event(log, "stopped", refused=handler.refused)


def build(settings: SinkSettings, refusals: Refusals, policy: Policy | None = None) -> SinkHandler:
    """The sink's handler: its typo domains (with `policy`'s weights and suffix list for the derived ones), the
    metadata writer into `refusals`."""
    recorder = Recorder(refusals, settings.queue_size, settings.write_timeout)
    return SinkHandler(TypoDomains(settings, policy), recorder, settings)

