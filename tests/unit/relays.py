"""A relay served in a thread on loopback, the fixtures that start one, and an smtplib client for it."""

from __future__ import annotations

import smtplib
from dataclasses import replace
from pathlib import Path

from rcptguard.gateways.relay import RelayHandler, RelaySettings, build, serve
from rcptguard.guard import Guard
from rcptguard.model import Action
from rcptguard.policy import ForceRule, load_policy
from rcptguard.runtime import GuardFactory
from rcptguard.store import Store
from rcptguard.store.quarantine import Quarantine
from tests.support.processes import ServedInThread
from tests.support.sink import RecordingSink

BODY = (b"From: me@example-corp.com\r\nTo: crew\r\nSubject: crew list\r\nMessage-ID: <m1@example-corp.com>\r\n"
        b"\r\nPassport numbers: \xc3\xa9t\xc3\xa9\r\n.starts with a dot\r\nend\r\n")


class Relay(ServedInThread):
    """A relay on a loopback port, served by an event loop in a thread."""

    def __init__(self, handler: RelayHandler) -> None:
        self.handler = handler
        self.quarantine: Quarantine = handler.quarantine
        super().__init__(lambda ready, stop: serve(handler, "127.0.0.1", 0, ready=ready, stop=stop))

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=30)


def policy_factory(force_ml: bool = False) -> GuardFactory:
    policy = load_policy().with_domains(("mil", "example-corp.com"), ("gmail.com",))
    if force_ml:
        policy = replace(policy, force=(ForceRule(Action.REJECT, suffixes=("ml",), message="Mali is blocked."),))
    return lambda learned: Guard(policy, learned=learned)


def make_relay(tmp_path: Path, sink: RecordingSink, *, force_ml: bool = False, store_url: str | None = None,
               **settings: object) -> Relay:
    store = Store.open(store_url or f"sqlite:///{tmp_path / 'relay.db'}")
    relay_settings = RelaySettings.from_section({"next_hop": f"127.0.0.1:{sink.port}", "flush_interval": 0.05,
                                                 **settings}, "relay")
    return Relay(build(policy_factory(force_ml), store, relay_settings))


def send(relay: Relay, rcpts: list[str], body: bytes = BODY) -> tuple[int, bytes, dict[str, tuple[int, bytes]]]:
    """MAIL, RCPT each, DATA; return the DATA reply and the refused recipients."""
    with relay.smtp() as smtp:
        smtp.ehlo()
        smtp.mail("me@example-corp.com")
        refused = {}
        for rcpt in rcpts:
            code, text = smtp.rcpt(rcpt)
            if code >= 400:
                refused[rcpt] = (code, text)
        if len(refused) == len(rcpts):
            return 0, b"", refused
        code, text = smtp.data(body)
        return code, text, refused
