"""A milter: the guard inside Postfix or Sendmail, through the MTA's mail filter protocol (one line in main.cf, no
second SMTP hop, no second queue). libmilter speaks the protocol (through pymilter): one thread per MTA connection.

    smtpd_milters = unix:rcptguard/milter.sock               (docs/postfix/milter.main.cf)
    rcptguard milter --listen unix:/var/spool/postfix/rcptguard/milter.sock

Per recipient, from the same `Verdict` as every door (`action_at_rcpt`, `MilterService.end_of_message`):

    pass    continue
    warn    continue; the sender (never the recipient) gets a short notice, once a day per domain, as from the
            relay; an X-Rcptguard-Warning header only with `[milter] warn_header = true`
    hold    at end of message, the message is stored in the quarantine for the held recipients (one transaction,
            the held notice owed in it), then they are removed with delete-recipient and the MTA delivers the rest
            (all held: the stored message is discarded by the MTA, nothing is delivered)
    reject  that RCPT refused: 550 5.7.1 and the explanation (a malformed address: 553 5.1.3 and why)

What reads the message (the sensitivity scanner, `[content]`) runs at end of message as `content_checks`, and may
raise a warned recipient to a hold. A store that fails, and any internal error, tempfail the message (451 4.3.0):
the client keeps it and retries, and the retry's hold is the first one again (keyed on what the milter saw, not on
Postfix's Received header). The MTA fails closed while the milter is down (milter_default_action = tempfail).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import re
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from rcptguard import logs
from rcptguard.content import Severity, raise_verdict, scan_message
from rcptguard.content.settings import ContentSettings
from rcptguard.dsn import DsnError, EnvelopeParams, MailParams, RcptParams, split_params
from rcptguard.guard import malformed_verdict
from rcptguard.history import HistorySettings
from rcptguard.metrics import Metrics, check_metrics_listen
from rcptguard.model import Action, Malformed, Verdict
from rcptguard.notify import Warned, wants_notice
from rcptguard.outbox import Backoff, Outbox
from rcptguard.runtime import GuardFactory, Runtime
from rcptguard.settings import Settings, invalid
from rcptguard.store import Store, StoreError
from rcptguard.store.quarantine import HeldRecipient, Quarantine, message_key
from rcptguard.world import DnsSettings, SyncWorld, consult_sync

from .relay import RelaySettings, WarningNotice, retry_pending, without_own_headers
from .replies import RELAY_REPLIES, Relayed, SmtpReply, ascii_line, explanation, rcpt_reply

log = logging.getLogger("rcptguard.milter")

DEFAULT_LISTEN = "unix:/var/spool/postfix/rcptguard/milter.sock"
_LISTEN = re.compile(r"unix:/.+|local:/.+|inet6?:\d{1,5}(@.+)?")


@dataclass(frozen=True, slots=True)
class MilterSettings(Settings):
    """The `[milter]` section of the config file. Where released mail goes, the notices and the page's links are the
    relay's (`[relay] next_hop`, `base_url`, `link_days`, `warn_notice`...): one quarantine, one page."""

    listen: str = DEFAULT_LISTEN  # unix:/path, or inet:PORT@HOST (libmilter's words; --listen takes inet:HOST:PORT)
    socket_mode: str = "0660"  # of a unix socket: the MTA's user must be able to write to it
    timeout: float = 600.0  # libmilter waits this long for the MTA's next command before it closes the session
    warn_header: bool = False  # add X-Rcptguard-Warning to a message with warned recipients (off: the sender is told)
    reject_status: str = "5.7.1"
    metrics_listen: str = ""  # HOST:PORT of its Prometheus metrics (GET /metrics); empty: not served

    def check(self) -> None:
        if not _LISTEN.fullmatch(self.listen):
            raise invalid("listen", f"unix:/path or inet:PORT@HOST, not {self.listen!r}")
        try:
            int(self.socket_mode, 8)
        except ValueError:
            raise invalid("socket_mode", f"an octal mode such as 0660, not {self.socket_mode!r}") from None
        if self.timeout <= 0:
            raise invalid("timeout", "more than 0 seconds")
        check_metrics_listen(self.metrics_listen)


def libmilter_address(listen: str) -> str:
    """`--listen` as libmilter takes it: unix:/path as it is, inet:HOST:PORT as inet:PORT@HOST. ValueError if it is
    neither."""
    if listen.startswith(("unix:/", "local:/")):
        return listen
    kind, _, rest = listen.partition(":")
    if kind in ("inet", "inet6") and "@" not in rest:
        host, _, port = rest.rpartition(":")
        if port.isdigit() and 0 < int(port) < 65536:
            return f"{kind}:{port}@{host.strip('[]') or '127.0.0.1'}"
    if _LISTEN.fullmatch(listen):
        return listen
    raise ValueError(f"expected unix:/path or inet:HOST:PORT, got {listen!r}")


# -- what the MTA told of one message ------------------------------------------------------------------------------


@dataclass(slots=True)
class Transaction:
    """One message as the milter sees it: its envelope, each accepted recipient's verdict, its headers and body."""

    sender: str
    mail: MailParams = field(default_factory=MailParams)
    smtputf8: bool = False
    arrived: float = field(default_factory=time.time)  # when MAIL came: the time Postfix's Received header names
    verdicts: dict[str, Verdict] = field(default_factory=dict)  # accepted recipients, in order
    guarded: list[Verdict] = field(default_factory=list)  # their verdicts before history judged them together
    as_given: dict[str, str] = field(default_factory=dict)  # each as the MTA named it (delete-recipient wants that)
    rcpt_params: dict[str, RcptParams] = field(default_factory=dict)
    headers: list[tuple[str, bytes]] = field(default_factory=list)  # name, value as sent (leading space, folding)
    body: bytearray = field(default_factory=bytearray)

    @property
    def envelope(self) -> EnvelopeParams:
        return EnvelopeParams(self.mail, dict(self.rcpt_params))

    def content(self) -> bytes:
        """The message as the milter saw it: each header as `name:value` with its folding (the MTA sends the lines of
        a folded field joined by LF), an empty line, the body (CRLF, unstuffed). X-Rcptguard-* fields are left out:
        a header of ours is only what the guard itself says."""
        lines = b"".join(name.encode("ascii", "replace") + b":" + _crlf(value) + b"\r\n"
                         for name, value in self.headers)
        return without_own_headers(lines + b"\r\n" + bytes(self.body))


def _crlf(value: bytes) -> bytes:
    return value.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n") if b"\n" in value else value


@dataclass(frozen=True, slots=True)
class Arrival:
    """What Postfix's own Received header says (smtpd_received_header), from the macros: Postfix adds it to the
    queue file itself and never shows it to a milter, so it is made again for the stored copy."""

    helo: str  # what the client said in HELO/EHLO; "" none
    client: str  # the `_` macro: "name [address]"
    host: str  # {j}: myhostname
    mta: str  # the first word of {v}: mail_name ("Postfix")
    queue_id: str  # {i}
    protocol: str  # ESMTP, ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP...
    when: float
    recipients: tuple[str, ...]  # Postfix names the recipient when there is exactly one

    def header(self) -> bytes:
        name = self.client.partition(" ")[0]
        first = f"Received: from {self.helo or name} ({self.client})"
        by = f"\tby {self.host} ({self.mta}) with {self.protocol} id {self.queue_id}"
        if len(self.recipients) == 1:
            return f"{first}\r\n{by}\r\n\tfor <{self.recipients[0]}>; {postfix_date(self.when)}\r\n".encode()
        return f"{first}\r\n{by};\r\n\t{postfix_date(self.when)}\r\n".encode()


def postfix_date(when: float) -> str:
    """A date as Postfix writes it in headers (mail_date): `Wed,  2 Dec 2026 04:01:41 +0000 (UTC)`."""
    local = time.localtime(when)
    offset = local.tm_gmtoff or 0
    sign = "-" if offset < 0 else "+"
    hours, minutes = divmod(abs(offset) // 60, 60)
    return time.strftime(f"%a, %e %b %Y %H:%M:%S {sign}{hours:02d}{minutes:02d} (%Z)", local)


def protocol_name(*, smtputf8: bool, tls: bool, auth: bool) -> str:
    """Postfix's name for the session's protocol in its Received header (RFC 3848, RFC 6531)."""
    return ("UTF8SMTP" if smtputf8 else "ESMTP") + ("S" if tls else "") + ("A" if auth else "")


# -- the door's verdict table ---------------------------------------------------------------------------------------


def action_at_rcpt(verdict: Verdict, reject_status: str) -> SmtpReply | None:
    """What RCPT gets for a verdict: None to continue (pass, warn, hold: decided at end of message), else the reply
    that refuses that recipient (the relay's words: 550 with the explanation, 553 for a malformed address)."""
    reply = rcpt_reply(verdict, reject_status)
    return None if reply.code == 250 else reply


@dataclass(slots=True)
class Outcome:
    """What the milter does at end of message: the answer (continue, discard or tempfail, with the reply for a
    tempfail), the recipients to delete (as the MTA named them), the headers to add and to remove."""

    answer: str  # "continue" | "discard" | "tempfail"
    reply: SmtpReply | None = None
    delete: list[str] = field(default_factory=list)
    add_headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ContentCheck:
    """A check that reads the message at end of message (the sensitivity scanner; the odd-recipient judgement to
    come): given the transaction and the message as the milter saw it, the verdicts it changes, by recipient. It may
    raise an action (a warned recipient held because of what the message carries) or say more with the same one (a
    hold's reason naming what the message carries), never lower one (`raised`). `every_message`: it needs messages
    whose recipients all pass too (otherwise those are accepted at DATA, unread)."""

    name: str
    judge: Callable[[Transaction, bytes], Mapping[str, Verdict]]
    every_message: bool = False


def raised(verdicts: Mapping[str, Verdict], found: Mapping[str, Verdict]) -> dict[str, Verdict]:
    """`verdicts` with each recipient's verdict replaced by the one a content check found, unless that is weaker."""
    return {rcpt: found[rcpt] if rcpt in found and found[rcpt].action >= verdict.action else verdict
            for rcpt, verdict in verdicts.items()}


def sensitivity(settings: ContentSettings) -> ContentCheck:
    """The sensitivity scanner (rcptguard.content) as the relay runs it: a message with a warned or held recipient is
    scanned within `[content]`'s budget; a warned recipient of a message at least `raise_at` sensitive is held, and
    every hold says what the message carries."""

    def judge(tx: Transaction, content: bytes) -> dict[str, Verdict]:
        if not any(v.action in (Action.WARN, Action.HOLD) for v in tx.verdicts.values()):
            return {}
        found = scan_message(content, settings.limits)
        if found.severity is Severity.NONE:
            return {}
        logs.event(log, "content", severity=str(found.severity), signals=sorted({s.name for s in found.signals}))
        return {r: raise_verdict(v, found, settings.threshold) for r, v in tx.verdicts.items()}

    return ContentCheck("sensitivity", judge)


def greetings(runtime: Runtime) -> ContentCheck:
    """Whom the message greets (rcptguard.history.greeting), on the messages the milter reads: the recipients judged
    again with the others, the sender's history and the greeting; what that raises (`ODD_GREETING`) is kept."""

    def judge(tx: Transaction, content: bytes) -> dict[str, Verdict]:
        greeting, displays = runtime.greeting(content)
        if not greeting or len(tx.guarded) != len(tx.verdicts):
            return {}
        judged = runtime.judge_or_not(tx.sender, tx.guarded, greeting=greeting, displays=displays)
        return {r: v for r, v in zip(tx.verdicts, judged, strict=True) if v.signal("ODD_GREETING") is not None}

    return ContentCheck("greeting", judge)


class MilterService:
    """What every MTA connection shares: the guard, the quarantine, the outbox and its background rounds."""

    def __init__(self, runtime: Runtime, quarantine: Quarantine, relay: RelaySettings, settings: MilterSettings,
                 dns: DnsSettings | None = None) -> None:
        self.runtime = runtime
        self.quarantine = quarantine
        self.settings = relay  # the outbox's rounds read [relay] (retry_pending)
        self.milter = settings
        self.metrics = Metrics("milter", quarantine.store)
        self.metrics.watch(runtime)
        # The world's evidence (DNS) when on, through a loop of its own: libmilter's threads have none.
        self.world = SyncWorld(dns, observe=self.metrics.dns_answer) if dns is not None and dns.enabled else None
        self.next_hop = relay.hop
        self.notifier = relay.notifier()
        self.outbox = Outbox(quarantine, backoff=Backoff(relay.retry_backoff, relay.retry_backoff_max),
                             notifier=self.notifier)
        self.warned = Warned(relay.warn_notice_interval, 10_000)
        self.content_checks: list[ContentCheck] = []
        self.counts: Counter[str] = Counter()  # messages, held, rejected, tempfailed ... (logged at stop)
        self._lock = threading.Lock()  # the warned memory and the counts, shared by the connections' threads
        self.loop: asyncio.AbstractEventLoop | None = None  # the background rounds' loop (`background`)
        self.notices_due = asyncio.Event()
        self.owed: set[str] = set()
        self.queued: set[str] = set()

    # -- per recipient -----------------------------------------------------------------------------------------

    def judge(self, address: str) -> Verdict:
        """The verdict for a recipient as the MTA gave it (without <>), counted; bytes that were not UTF-8 make it
        malformed."""
        started = time.perf_counter()
        if any("\udc80" <= ch <= "\udcff" for ch in address):
            readable = address.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            verdict = malformed_verdict(Malformed(readable, "the address is not valid UTF-8"))
        else:
            verdict = consult_sync(self.world, self.runtime.guard.check(address))
        self.metrics.decided(verdict, time.perf_counter() - started)
        return verdict

    def observes(self, verdict: Verdict) -> bool:
        """Whether observe mode lets this recipient through (a malformed address is refused all the same: it
        cannot be delivered)."""
        return self.runtime.observing and verdict.signal("MALFORMED_ADDRESS") is None

    def would(self, sender: str, verdict: Verdict) -> None:
        """Observe mode: a verdict not enforced, recorded for `rcptguard report observe` (on the background loop,
        where the learner lives)."""
        self._on_loop(self.runtime.observed, "milter", sender, verdict)

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self.counts[what] += n

    # -- at DATA ------------------------------------------------------------------------------------------------

    def reads_content(self, tx: Transaction) -> bool:
        """Whether the end of message may act on this message: a recipient held or warned, or a content check that
        reads every message. With `warn_header` on, every message is read, so that a forged X-Rcptguard-* field is
        removed from each (the organisation's mail programs trust that header). Otherwise a message whose
        recipients all pass is accepted at DATA, unread."""
        return self.milter.warn_header or any(c.every_message for c in self.content_checks) or any(
            v.action >= Action.WARN for v in tx.verdicts.values())

    def in_company(self, tx: Transaction) -> None:
        """Every recipient judged with the others and the sender's history (rcptguard.history.judge), once all are
        in: a confirmation lowers a hold, an odd recipient out is warned or held (as they were when the store cannot
        be read)."""
        tx.guarded = list(tx.verdicts.values())
        judged = self.runtime.judge_or_not(tx.sender, tx.guarded)
        tx.verdicts = dict(zip(tx.verdicts, judged, strict=True))

    def passed(self, tx: Transaction) -> None:
        """A message accepted at DATA (every recipient passed): its recipients are learned (from this thread: the
        learner takes them at its next flush, without a wake-up of the loop for each message), it is counted."""
        self.runtime.saw(tx.sender, list(tx.verdicts.values()))
        self.count("messages")

    # -- at end of message -------------------------------------------------------------------------------------

    def end_of_message(self, tx: Transaction, arrival: Arrival | None, client: str = "") -> Outcome:
        """Hold, warn and pass the recipients of a whole message; a tempfail when the held copy cannot be stored."""
        seen = tx.content()
        verdicts = tx.verdicts
        for check in self.content_checks:  # each sees what the ones before it raised
            verdicts = tx.verdicts = raised(verdicts, check.judge(tx, seen))
        held = [r for r, v in verdicts.items() if v.action is Action.HOLD]
        warned = [r for r, v in verdicts.items() if v.action is Action.WARN]
        passed = [r for r, v in verdicts.items() if v.action <= Action.WARN]
        stored = (arrival.header() if arrival is not None else b"") + seen
        hold_ids: list[str] = []
        if held:
            try:
                hold_ids = self._hold(tx, held, verdicts, seen, stored, client)
            except StoreError as exc:
                logs.event(log, "quarantine unavailable", logging.ERROR, sender=tx.sender, error=str(exc))
                self.count("tempfailed")
                return Outcome("tempfail", RELAY_REPLIES[Relayed.QUARANTINE_UNAVAILABLE])
        outcome = Outcome("continue" if passed else "discard", delete=[tx.as_given[r] for r in held])
        if warned and self.milter.warn_header:
            outcome.add_headers = [("X-Rcptguard-Warning", ascii_line(f"{r}: {explanation(verdicts[r])}", 900))
                                   for r in warned]
        if warned and self.settings.warn_notice and wants_notice(tx.sender, seen):
            self._tell_of_warnings(tx.sender, [(r, verdicts[r]) for r in warned], seen)
        self.runtime.saw(tx.sender, [verdicts[r] for r in passed])
        self.count("messages")
        self.count("held", len(held))
        logs.event(log, "message", sender=tx.sender, client=client, queue_id=arrival.queue_id if arrival else "",
                   passed=passed, held=dict(zip(held, hold_ids, strict=False)), warned=warned, size=len(stored))
        return outcome

    def _hold(self, tx: Transaction, held: list[str], verdicts: Mapping[str, Verdict], seen: bytes, stored: bytes,
              client: str) -> list[str]:
        """Store the message for the held recipients (the held notice owed in the same transaction); the hold ids."""
        recipients = [HeldRecipient(r, verdicts[r].intended, verdicts[r].suggestion, verdicts[r].reason,
                                    [s.to_json() for s in verdicts[r].signals], verdicts[r].score) for r in held]
        notify = self.settings.notify and wants_notice(tx.sender, seen)
        holds = self.quarantine.hold(mail_from=tx.sender, recipients=recipients, content=stored, client=client,
                                     notify=notify, envelope=tx.envelope, key=message_key(tx.sender, held, seen))
        self.quarantine.store.verify()
        if notify and holds:  # owed in the store with the holds: the outbox's rounds send it now, and until it goes
            self._on_loop(self.owed.add, holds[0].message_id)
            self._on_loop(self.notices_due.set)
        return [h.id for h in holds]

    def _tell_of_warnings(self, mail_from: str, warned: Sequence[tuple[str, Verdict]], content: bytes) -> None:
        with self._lock:
            notice = WarningNotice.due(self.warned, mail_from, warned)
        if notice is None:
            return
        try:
            mail = notice.compose(self.notifier, content, self.settings.warn_notice_interval)
            self._on_loop(self.queued.add, self.outbox.queue("warning", "", mail_from, mail))
            self._on_loop(self.notices_due.set)
        except (StoreError, ValueError, TypeError, jinja2.TemplateError) as exc:
            with self._lock:
                notice.not_sent(self.warned, exc)

    def _on_loop(self, call: Callable[..., Any], *args: Any) -> None:  # noqa: ANN401 - any callable's arguments
        """Run `call` on the background loop's thread, where the guard's learning and what the outbox's rounds take
        (`owed`, `queued`, `notices_due`) live; calls keep their order. Without that loop (not started), at once."""
        if self.loop is None:
            call(*args)
        elif not self.loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop is stopping: nothing more is counted or sent now
                self.loop.call_soon_threadsafe(call, *args)

    # -- the background rounds ---------------------------------------------------------------------------------

    def background(self) -> threading.Thread:
        """Start the loop that writes what was learned, rebuilds the index, and runs the outbox's rounds (the held
        notices, warnings, deferred releases), in a thread of its own; `stop_background` ends it."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.loop = loop
            self.notices_due = asyncio.Event()
            tasks = [loop.create_task(self.runtime.maintain()), loop.create_task(retry_pending(self))]
            ready.set()
            try:
                loop.run_forever()
            finally:
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.close()

        thread = threading.Thread(target=run, name="rcptguard-milter-rounds", daemon=True)
        thread.start()
        ready.wait(10)
        return thread

    def stop_background(self, thread: threading.Thread) -> None:
        if self.loop is not None:
            with contextlib.suppress(RuntimeError):
                self.loop.call_soon_threadsafe(self.loop.stop)
        thread.join(30)
        self.runtime.close()
        if self.world is not None:
            self.world.close()


# -- the protocol, through libmilter ---------------------------------------------------------------------------------


def _path(arg: str) -> str:
    return arg.strip()[1:-1] if arg.strip().startswith("<") and arg.strip().endswith(">") else arg.strip()


def _params(words: Sequence[str], take: Callable[[dict[str, str]], Any]) -> Any:  # noqa: ANN401 - Mail or RcptParams
    """The DSN parameters of MAIL or RCPT as the MTA passed them on; the MTA already accepted them, so one that does
    not parse is dropped (and logged) rather than refused."""
    try:
        return take(split_params(" ".join(words)))
    except DsnError as exc:
        logs.event(log, "envelope parameter not kept", logging.WARNING, words=list(words), problem=str(exc))
        return take({})


def connection_class(service: MilterService) -> type[Any]:
    """The class libmilter makes one of per MTA connection (pymilter's `Milter.Base`), bound to `service`."""
    import Milter  # noqa: PLC0415 - libmilter only for the command that runs the milter

    class Connection(Milter.Base):  # type: ignore[misc]  # pymilter has no type information
        """One MTA connection; callbacks run on libmilter's thread for it. Headers and the body arrive without
        replies (protocol 6's no-reply steps); any internal error tempfails the message, never passes it."""

        def __init__(self) -> None:
            self.helo = ""
            self.client = ""
            self.tx: Transaction | None = None

        @Milter.noreply  # type: ignore[untyped-decorator]
        def connect(self, hostname: str, _family: int, hostaddr: Any) -> int:  # noqa: ANN401 - tuple or path
            address = hostaddr[0] if isinstance(hostaddr, tuple) and hostaddr else ""
            self.client = f"{hostname}[{address}]" if address else hostname
            return int(Milter.CONTINUE)

        @Milter.noreply  # type: ignore[untyped-decorator]
        def hello(self, name: str) -> int:
            self.helo = name
            return int(Milter.CONTINUE)

        @Milter.noreply  # type: ignore[untyped-decorator]
        def envfrom(self, sender: str, *words: str) -> int:
            params = [w for w in words if w.split("=", 1)[0].upper() in ("RET", "ENVID", "BODY")]
            self.tx = Transaction(_path(sender), _params(params, MailParams.take),
                                  smtputf8=any(w.upper() == "SMTPUTF8" for w in words))
            return int(Milter.CONTINUE)

        def envrcpt(self, to: str, *words: str) -> int:
            try:
                return self._recipient(to, words)
            except Exception:  # fail closed: this recipient is deferred, never passed unchecked
                log.exception("internal error at RCPT")
                self._reply(RELAY_REPLIES[Relayed.INTERNAL])
                return int(Milter.TEMPFAIL)

        def _recipient(self, to: str, words: Sequence[str]) -> int:
            if self.tx is None:
                self.tx = Transaction(self.getsymval("{mail_addr}") or "")
            address = _path(to)
            verdict = service.judge(address)
            refusal = action_at_rcpt(verdict, service.milter.reject_status)
            if refusal is not None and service.observes(verdict):  # observe mode: recorded, not refused
                service.would(self.tx.sender, verdict)
                refusal = None
            logs.decision(log, verdict, door="milter", sender=self.tx.sender, recipient=address, client=self.client,
                          reply=refusal.code if refusal is not None else 250)
            if refusal is not None:
                service.count("rejected")
                self._reply(refusal)
                return int(Milter.REJECT)
            if address not in self.tx.verdicts:
                self.tx.verdicts[address] = verdict
                self.tx.as_given[address] = to
                params = [w for w in words if w.split("=", 1)[0].upper() in ("NOTIFY", "ORCPT")]
                self.tx.rcpt_params[address] = _params(params, RcptParams.take)
            return int(Milter.CONTINUE)

        def data(self) -> int:
            """All recipients are in: a message that nothing at its end would act on (`reads_content`) is accepted
            here, and its headers and body never cross the socket; the others are read to their end."""
            tx = self.tx
            if tx is not None and tx.verdicts:
                service.in_company(tx)
                if service.runtime.observing:  # what would have been held or warned is recorded; all pass
                    for verdict in tx.verdicts.values():
                        if verdict.action in (Action.WARN, Action.HOLD):
                            service.would(tx.sender, verdict)
            if tx is None or not tx.verdicts or service.runtime.observing or not service.reads_content(tx):
                if tx is not None:
                    service.passed(tx)
                self.tx = None
                return int(Milter.ACCEPT)
            return int(Milter.CONTINUE)

        @Milter.noreply  # type: ignore[untyped-decorator]
        @Milter.decode("bytes")  # type: ignore[untyped-decorator]
        def header(self, name: str, value: bytes) -> int:
            if self.tx is not None:
                self.tx.headers.append((name, value))
            return int(Milter.CONTINUE)

        @Milter.noreply  # type: ignore[untyped-decorator]
        def eoh(self) -> int:
            return int(Milter.CONTINUE)

        @Milter.noreply  # type: ignore[untyped-decorator]
        def body(self, chunk: bytes) -> int:
            if self.tx is not None:
                self.tx.body += chunk
            return int(Milter.CONTINUE)

        def eom(self) -> int:
            tx, self.tx = self.tx, None
            try:
                if tx is None or not tx.verdicts:
                    return int(Milter.CONTINUE)
                outcome = service.end_of_message(tx, self._arrival(tx), self.client)
                return self._apply(tx, outcome)
            except Exception:  # fail closed: the client keeps the message and retries; nothing is passed unchecked
                log.exception("internal error at end of message")
                service.count("tempfailed")
                self._reply(RELAY_REPLIES[Relayed.INTERNAL])
                return int(Milter.TEMPFAIL)

        def _apply(self, tx: Transaction, outcome: Outcome) -> int:
            if outcome.answer == "tempfail":
                self._reply(outcome.reply or RELAY_REPLIES[Relayed.INTERNAL])
                return int(Milter.TEMPFAIL)
            for name, index in own_headers(tx.headers):
                self.chgheader(name, index, None)
            for rcpt in outcome.delete:
                self.delrcpt(rcpt)
            for name, value in outcome.add_headers:
                self.addheader(name, value)
            return int(Milter.DISCARD if outcome.answer == "discard" else Milter.CONTINUE)

        def _arrival(self, tx: Transaction) -> Arrival | None:
            """Postfix's Received header for this message, or None when the MTA is not Postfix (Sendmail shows its
            own to the milter) or a macro it needs is missing."""
            mta, queue_id, host, client = (self.getsymval(m) or "" for m in ("v", "i", "j", "_"))
            if not mta.startswith("Postfix") or not (queue_id and host and client):
                return None
            protocol = protocol_name(smtputf8=tx.smtputf8, tls=bool(self.getsymval("{tls_version}")),
                                     auth=bool(self.getsymval("{auth_type}")))
            return Arrival(self.helo, client, host, mta.split()[0], queue_id, protocol, tx.arrived, tuple(tx.verdicts))

        def abort(self) -> int:
            self.tx = None
            return int(Milter.CONTINUE)

        def close(self) -> int:
            return int(Milter.CONTINUE)

        def _reply(self, reply: SmtpReply) -> None:
            with contextlib.suppress(Exception):  # a reply libmilter refuses leaves the MTA's own words
                self.setreply(str(reply.code), reply.status, reply.text.replace("%", " percent"))

    return Milter.header_leading_space(Connection)  # type: ignore[no-any-return]


def own_headers(headers: Sequence[tuple[str, bytes]]) -> list[tuple[str, int]]:
    """The X-Rcptguard-* fields of a message, each as (name, its occurrence among fields of that name, from 1): what
    change-header needs to remove it."""
    seen: Counter[str] = Counter()
    found = []
    for name, _ in headers:
        key = name.lower()
        seen[key] += 1
        if key.startswith("x-rcptguard-"):
            found.append((name, seen[key]))
    return found


class ListenError(RuntimeError):
    """The milter's socket could not be opened (a folder that is missing or not writable, a port in use)."""


def why_not(listen: str) -> str:
    """Why libmilter could not open `listen` (it says only "cannot opensocket"), as the system says it: the socket's
    folder missing or not writable, a port in use or not this host's. "" when no reason is found."""
    kind, _, rest = listen.partition(":")
    try:
        if kind in ("unix", "local"):
            folder = Path(rest).parent
            if not folder.is_dir():
                return f"no folder {folder}"
            with socket.socket(socket.AF_UNIX) as probe:
                probe.bind(str(folder / f".rcptguard-probe-{os.getpid()}"))
            (folder / f".rcptguard-probe-{os.getpid()}").unlink()
        else:
            port, _, host = rest.partition("@")
            family = socket.AF_INET6 if kind == "inet6" or ":" in host else socket.AF_INET
            with socket.socket(family) as probe:
                probe.bind((host, int(port)))
    except (OSError, ValueError) as exc:
        reason = os.strerror(exc.errno) if isinstance(exc, OSError) and exc.errno else str(exc)
        return reason[:1].lower() + reason[1:]
    return ""


def run(service: MilterService, listen: str, *, ready: Callable[[], None] | None = None) -> None:
    """Serve the MTA on `listen` (libmilter's address) until SIGTERM or SIGINT, then save what was learned."""
    import Milter  # noqa: PLC0415 - libmilter only for the command that runs the milter
    import milter as libmilter  # noqa: PLC0415 - same

    settings = service.milter
    Milter.factory = connection_class(service)
    libmilter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.DELRCPT)
    _open(listen, settings, ready)  # ListenError: nothing started yet
    rounds = service.background()
    started = dt.datetime.now(dt.UTC)
    logs.event(log, "listening", listen=listen, next_hop=str(service.next_hop))
    try:
        libmilter.main()
    finally:
        service.stop_background(rounds)
        logs.event(log, "stopped", since=started.isoformat(), **dict(service.counts))


def _open(listen: str, settings: MilterSettings, ready: Callable[[], None] | None) -> None:
    """Register with libmilter and open its socket (mode `socket_mode` for a unix one)."""
    import Milter  # noqa: PLC0415 - libmilter only for the command that runs the milter
    import milter as libmilter  # noqa: PLC0415 - same

    libmilter.set_connect_callback(Milter.connect_callback)
    libmilter.set_helo_callback(lambda ctx, host: ctx.getpriv().hello(host))
    libmilter.set_envfrom_callback(lambda ctx, *b: ctx.getpriv().envfrom_bytes(*b))
    libmilter.set_envrcpt_callback(lambda ctx, *b: ctx.getpriv().envrcpt_bytes(*b))
    libmilter.set_header_callback(lambda ctx, f, v: ctx.getpriv().header_bytes(f, v))
    libmilter.set_eoh_callback(lambda ctx: ctx.getpriv().eoh())
    libmilter.set_body_callback(lambda ctx, chunk: ctx.getpriv().body(chunk))
    libmilter.set_eom_callback(lambda ctx: ctx.getpriv().eom())
    libmilter.set_abort_callback(lambda ctx: ctx.getpriv().abort())
    libmilter.set_close_callback(Milter.close_callback)
    libmilter.settimeout(int(settings.timeout))
    libmilter.register("rcptguard", data=lambda ctx: ctx.getpriv().data(),
                       unknown=lambda ctx, cmd: ctx.getpriv().unknown(cmd), negotiate=Milter.negotiate_callback)
    try:
        libmilter.setconn(listen)
        libmilter.opensocket(True)  # noqa: FBT003 - libmilter's own argument: remove a stale socket first
        if listen.startswith(("unix:", "local:")):
            Path(listen.partition(":")[2]).chmod(int(settings.socket_mode, 8))
    except (libmilter.error, OSError) as exc:
        raise ListenError(why_not(listen) or str(exc)) from None
    if ready is not None:
        ready()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def leave_stop_signals_to_libmilter() -> None:
    """Block SIGTERM, SIGINT and SIGHUP in this thread, so in every thread started from now on: libmilter takes them
    in a thread of its own (sigwait) and ends its main loop, and the milter then saves what it learned. A thread that
    did not block them would take SIGTERM itself, and die at once. Call it first, before `build` starts any thread
    (the DNS look-ups' loop), and only in the process that runs the milter: child processes inherit the mask."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def build(factory: GuardFactory, store: Store, relay: RelaySettings, settings: MilterSettings,
          dns: DnsSettings | None = None, content: ContentSettings | None = None,
          history: HistorySettings | None = None) -> MilterService:
    """The milter's service: the guard from `factory` (what the store learned), its quarantine in `store`; with `dns`
    enabled, the world's evidence for the rare verdicts that want it (through a loop of its own: libmilter's threads
    have none)."""
    runtime = Runtime(factory, store, flush_interval=relay.flush_interval, rebuild_interval=relay.rebuild_interval,
                      history=history)
    service = MilterService(runtime, Quarantine(store, stale_after=relay.claim_window), relay, settings, dns)
    if runtime.settings.greetings:  # first: the sensitivity scanner then weighs what the greeting raised
        service.content_checks.append(greetings(runtime))
    if content is not None and content.enabled:
        service.content_checks.append(sensitivity(content))
    return service
