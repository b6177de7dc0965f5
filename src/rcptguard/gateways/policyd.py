"""A Postfix policy service (SMTPD_POLICY_README): refuse a mistyped recipient at RCPT time.

Postfix sends `name=value` lines ended by an empty line; the service answers one `action=...` line and an
empty line, on persistent connections, many clients at once. Each verdict becomes a Postfix action:

    pass    DUNNO                                       (never OK: relay restrictions still apply)
    warn    PREPEND X-Rcptguard-Warning: <explanation>
    hold    REJECT <status> <explanation>               (hold_mode = "reject", the default)
            HOLD <explanation>  + a notice to the sender (hold_mode = "hold"; `rcptguard release QUEUE_ID`),
            one per message, sent when Postfix asks again at END-OF-MESSAGE (smtpd_end_of_data_restrictions):
            a transaction that never ends holds nothing, so it gets no notice
    reject  REJECT <status> <explanation>

It fails closed: on a protocol violation or an internal error it answers nothing and closes the connection,
so Postfix applies `smtpd_policy_service_default_action` (451 4.3.5), never a permit.

Every recipient domain it lets through (pass or warn) is counted as a correspondent in the store, so a
domain written to regularly stops being a first contact; counts survive restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import BinaryIO, Literal

from rcptguard import logs
from rcptguard.guard import malformed_verdict
from rcptguard.model import Action, Malformed, Verdict
from rcptguard.notify import header_safe
from rcptguard.runtime import GuardFactory, Runtime
from rcptguard.store import Store

from .replies import ascii_line, explanation, header_value, warning_text

log = logging.getLogger("rcptguard.policyd")

MAX_LINE = 16384  # a policy attribute line longer than this is a protocol violation
MAX_REQUEST = 65536  # and a whole request longer than this
MAX_ATTRIBUTES = 200


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """The `[policyd]` section of the config file."""

    hold_mode: Literal["reject", "hold"] = "reject"
    reject_status: str = "5.7.1"
    malformed_status: str = "5.1.3"
    warn_header: str = "X-Rcptguard-Warning"
    idle_timeout: float = 330.0  # longer than Postfix's max_idle (300 s): Postfix closes first
    flush_interval: float = 2.0  # seconds between writes of learned counts to the store
    rebuild_interval: float = 60.0  # seconds between index rebuilds when new domains became known
    notify_smtp: str | None = None  # host:port to send hold notices through
    notify_from: str = "postmaster"
    notify_at: Literal["end-of-message", "rcpt"] = "end-of-message"  # rcpt: at once, one per held recipient

    @classmethod
    def from_section(cls, section: dict[str, object]) -> PolicySettings:
        known = {f: getattr(cls, f) for f in cls.__dataclass_fields__}
        values: dict[str, object] = {}
        for key, value in section.items():
            if key not in known:
                raise ValueError(f"policyd.{key}: unknown key (expected one of: {', '.join(sorted(known))})")
            values[key] = value
        settings = cls(**values)  # type: ignore[arg-type]
        if settings.hold_mode not in ("reject", "hold"):
            raise ValueError("policyd.hold_mode: expected 'reject' or 'hold'")
        if settings.notify_at not in ("end-of-message", "rcpt"):
            raise ValueError("policyd.notify_at: expected 'end-of-message' or 'rcpt'")
        return settings


@dataclass(slots=True)
class _HeldMessage:
    """The held recipients of one message (Postfix's `instance`), waiting for END-OF-MESSAGE."""

    since: float
    sender: str
    verdicts: list[Verdict]


NOTICE_WAIT = 3600.0  # seconds a message's held recipients wait for its END-OF-MESSAGE request


class ProtocolError(Exception):
    """The peer broke the policy protocol; the connection is closed without an answer."""


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
    if action is Action.WARN:
        return f"PREPEND {settings.warn_header}: {header_value(warning_text(verdict))}"
    if verdict.signal("MALFORMED_ADDRESS") is not None:
        return f"REJECT {settings.malformed_status} {ascii_line(verdict.reason)}"
    if action is Action.HOLD and settings.hold_mode == "hold":
        return f"HOLD {text}"
    return f"REJECT {settings.reject_status} {text}"


class PolicyService:
    """The policy protocol on any number of connections, one shared guard."""

    def __init__(self, guard_factory: GuardFactory, store: Store | None, settings: PolicySettings) -> None:
        self.settings = settings
        self.runtime = Runtime(guard_factory, store, flush_interval=settings.flush_interval,
                               rebuild_interval=settings.rebuild_interval)
        self.requests = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, _HeldMessage] = {}  # by Postfix's instance attribute

    # -- deciding -------------------------------------------------------------------------------------

    def decide(self, attrs: dict[str, str]) -> str:
        """The action for one request; raises on an internal error (the caller then closes the connection)."""
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
            verdict = malformed_verdict(Malformed(recipient, "the address is not valid UTF-8"))
        else:
            verdict = self.runtime.guard.check(recipient)
        action = postfix_action(verdict, self.settings)
        if verdict.action <= Action.WARN and verdict.domain_ascii:
            self.runtime.saw(verdict.domain_ascii)
        logs.event(log, "decision", sender=attrs.get("sender", ""), recipient=recipient,
                   client_address=attrs.get("client_address", ""), sasl_username=attrs.get("sasl_username", ""),
                   queue_id=attrs.get("queue_id", ""), verdict=str(verdict.action), intended=verdict.intended,
                   score=round(verdict.score, 2), signals=[s.name for s in verdict.signals],
                   reply=action.split(" ", 1)[0])
        if verdict.action is Action.HOLD and self.settings.hold_mode == "hold":
            self._held_recipient(attrs, verdict)
        return action

    def _held_recipient(self, attrs: dict[str, str], verdict: Verdict) -> None:
        sender, instance = attrs.get("sender", ""), attrs.get("instance", "")
        if not self.settings.notify_smtp or not sender:
            return
        if self.settings.notify_at == "rcpt" or not instance:
            self._notify(sender, [verdict], "")
            return
        now = time.monotonic()
        for stale in [key for key, held in self._held.items() if now - held.since > NOTICE_WAIT]:
            held = self._held.pop(stale)
            logs.event(log, "no END-OF-MESSAGE for a held message: no notice sent (is smtpd_end_of_data_restrictions"
                       " set to this service?)", logging.WARNING, sender=held.sender, instance=stale)
        self._held.setdefault(instance, _HeldMessage(now, sender, [])).verdicts.append(verdict)

    def _end_of_message(self, attrs: dict[str, str]) -> None:
        held = self._held.pop(attrs.get("instance", ""), None)
        if held is not None:
            self._notify(held.sender, held.verdicts, attrs.get("queue_id", ""))

    def _notify(self, sender: str, verdicts: list[Verdict], queue_id: str) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # stdio mode has no event loop
            threading.Thread(target=self._send_notice, args=(sender, verdicts, queue_id)).start()
            return
        task = loop.create_task(asyncio.to_thread(self._send_notice, sender, verdicts, queue_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_notice(self, sender: str, verdicts: list[Verdict], queue_id: str) -> None:
        host, _, port = (self.settings.notify_smtp or "").rpartition(":")
        addresses = ", ".join(v.address for v in verdicts)
        message = EmailMessage()
        message["From"] = self.settings.notify_from
        message["To"] = header_safe(sender)
        message["Subject"] = header_safe(f"Your message to {addresses} is on hold")
        message["Date"] = formatdate(localtime=False)
        message["Message-ID"] = make_msgid(domain="rcptguard.invalid")
        message["Auto-Submitted"] = "auto-generated"
        held = "".join(f"\n    {v.address}\n        {v.reason}\n"
                       + (f"        You probably meant: {v.suggestion}\n" if v.suggestion else "") for v in verdicts)
        reference = f"\nReference for your mail administrator: queue id {queue_id}\n" if queue_id else ""
        message.set_content(
            f"Your message has been held and not sent to anyone, because of:\n{held}{reference}\n"
            "Ask your mail administrator to release it if the addresses are right, or send it again to the "
            "right addresses.\n")
        try:
            with smtplib.SMTP(host, int(port), timeout=30) as smtp:
                smtp.send_message(message, from_addr="", to_addrs=[sender])
        except (OSError, smtplib.SMTPException, ValueError):
            logs.event(log, "notice failed", logging.WARNING, sender=sender, recipients=addresses, queue_id=queue_id)

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
                answer = self.decide(attrs)
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


def raise_fd_limit() -> None:
    """Allow as many open connections as the hard limit does (the soft limit is often 1,024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


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
    maintenance = asyncio.create_task(service.runtime.maintain())
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not in the main thread (tests)
            loop.add_signal_handler(signum, stop.set)
    try:
        async with server:
            await stop.wait()
    finally:
        maintenance.cancel()
        await asyncio.to_thread(service.close)
        logs.event(log, "stopped", requests=service.requests)


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
    """One connection on stdin/stdout, for Postfix's spawn(8) in master.cf: blocking, like the peer."""
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
