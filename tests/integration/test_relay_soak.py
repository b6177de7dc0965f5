"""Soak: 2,000 messages through Postfix -> relay -> a next hop that is slow or refuses at random points.

Not in the default run (marker `soak`, about 5 minutes here):

    .venv/bin/python -m pytest -m soak tests/integration/test_relay_soak.py
"""

from __future__ import annotations

import asyncio
import random
import smtplib
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Self

import pytest
from aiosmtpd.controller import Controller

from tests.integration.conftest import MakePostfix
from tests.integration.postfix import PostfixInstance
from tests.integration.test_relay_postfix import RelayProcess, documented
from tests.support.processes import free_port

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP, Envelope, Session

pytestmark = [pytest.mark.integration, pytest.mark.soak]

MESSAGES = 2000
SLOW = 0.02  # of final dots answered after 30-90 s
REFUSED = 0.05  # of transactions refused with 452 or 421, at a random point


class FlakyHop:
    """A next hop that accepts most transactions, answers some final dots late, and refuses some with 452 or
    421 at MAIL, RCPT, DATA or the final dot (421 closes the connection). It records (Message-ID, recipient) for
    every transaction it answered 250."""

    def __init__(self, seed: int = 5321) -> None:
        self.random = random.Random(seed)  # a test's dice, seeded
        self.port = free_port()
        self.accepted: Counter[tuple[str, str]] = Counter()
        self.null_sender = 0
        self.slow = 0
        self.refused: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, decode_data=False,
                                      enable_SMTPUTF8=True, ready_timeout=10.0)

    def _refuse(self, server: SMTP, stage: str) -> str | None:
        fate = server.session.fate  # type: ignore[union-attr]
        if fate is None or fate[0] != stage:
            return None
        server.session.fate = None  # type: ignore[union-attr]
        with self._lock:
            self.refused[f"{stage} {fate[1]}"] += 1
        if fate[1] == 421:
            asyncio.get_running_loop().call_later(0.05, server.transport.close)  # type: ignore[union-attr]
            return "421 4.3.2 Service shutting down"
        return "452 4.5.3 Error: too many recipients" if stage == "rcpt" else "452 4.3.1 Insufficient system storage"

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,  # noqa: N802
                          address: str, options: list[str]) -> str:
        with self._lock:
            roll = self.random.random()
            stage = self.random.choice(["mail", "rcpt", "data", "dot"])
            code = self.random.choice([452, 421])
            delay = self.random.uniform(30, 90)
        session.fate = (stage, code) if roll < REFUSED else None  # type: ignore[attr-defined]
        session.delay = delay if REFUSED <= roll < REFUSED + SLOW else 0.0  # type: ignore[attr-defined]
        refusal = self._refuse(server, "mail")
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,  # noqa: N802
                          address: str, options: list[str]) -> str:
        refusal = self._refuse(server, "rcpt")
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        refusal = self._refuse(server, "data") or self._refuse(server, "dot")
        if refusal is not None:
            return refusal
        if session.delay:  # type: ignore[attr-defined]
            with self._lock:
                self.slow += 1
            await asyncio.sleep(session.delay)  # type: ignore[attr-defined]
        data = envelope.original_content or b""
        message_id = next((line.split(b":", 1)[1].strip().decode() for line in data.split(b"\r\n")
                           if line.lower().startswith(b"message-id:")), "")
        with self._lock:
            if envelope.mail_from in ("", "<>"):
                self.null_sender += 1
            for rcpt in envelope.rcpt_tos:
                self.accepted[(message_id, rcpt)] += 1
        return "250 2.0.0 OK"

    def __enter__(self) -> Self:
        self._controller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._controller.stop()


def submit(instance: PostfixInstance, number: int) -> list[tuple[str, str]]:
    """One message with 1-3 recipients that pass; the (Message-ID, recipient) pairs it should deliver."""
    domains = ("army.mil", "navy.mil", "af.mil")[:1 + number % 3]
    rcpts = [f"crew{number}-{n}@{domain}" for n, domain in enumerate(domains)]
    msg = EmailMessage()
    msg["From"] = "me@example-corp.com"
    msg["To"] = ", ".join(rcpts)
    msg["Subject"] = f"soak {number}"
    msg["Message-ID"] = f"<soak-{number}@example-corp.com>"
    msg.set_content("Crew list attached.\n" * 20)
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=60) as smtp:
        assert smtp.send_message(msg) == {}
    return [(str(msg["Message-ID"]), rcpt) for rcpt in rcpts]


def test_soak_flaky_next_hop_exactly_once(postfix: MakePostfix, tmp_path: Path) -> None:
    """2,000 messages, 2% of final dots answered after 30-90 s, 5% of transactions refused with 452 or 421 at
    random points: every recipient gets every message exactly once, nothing bounces, the relay's memory is flat."""
    with FlakyHop() as hop:
        relay_port = free_port()
        main, master = documented(relay_port, hop.port)
        scan_only = master.split("\n127.0.0.1:", 1)[0]  # no reinjection port: the relay's next hop is the flaky one
        instance = postfix(main_cf=main, master_cf_extra=scan_only)
        relay = RelayProcess(tmp_path, relay_port, hop.port, relay_section="notify = false").start()
        try:
            expected: list[tuple[str, str]] = []
            with ThreadPoolExecutor(8) as pool:
                for pairs in pool.map(lambda n: submit(instance, n), range(MESSAGES // 2)):
                    expected.extend(pairs)
                early = relay.rss()
                for pairs in pool.map(lambda n: submit(instance, n), range(MESSAGES // 2, MESSAGES)):
                    expected.extend(pairs)
            deadline = time.monotonic() + 900
            while sum(hop.accepted.values()) < len(expected) and time.monotonic() < deadline:
                time.sleep(1)
            instance.wait_queue_empty(300)
            late = relay.rss()
        finally:
            relay.kill()
        duplicated = {pair: n for pair, n in hop.accepted.items() if n > 1}
        missing = set(expected) - set(hop.accepted)
        assert not duplicated, f"{len(duplicated)} delivered more than once, e.g. {list(duplicated)[:5]}"
        assert not missing, f"{len(missing)} never delivered, e.g. {sorted(missing)[:5]}"
        assert set(hop.accepted) == set(expected)
        assert hop.null_sender == 0  # no delivery report: nothing refused for good
        assert "status=bounced" not in instance.log()
        assert hop.slow >= 10
        assert sum(hop.refused.values()) >= 50
        assert late - early < 30 * 1024 * 1024, (early, late)
        print(f"soak: {len(expected)} deliveries, {hop.slow} slow final dots, refusals {dict(hop.refused)}, "
              f"relay RSS {early / 2**20:.1f} -> {late / 2**20:.1f} MB")
