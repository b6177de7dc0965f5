"""The log: one JSON line for every decision at every door, every decision on the page, every delivery and notice;
never a word of a message's subject or body."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rcptguard import logs
from rcptguard.gateways.policyd import PolicyService, PolicySettings
from rcptguard.store.links import Links
from rcptguard.web import create_app
from rcptguard.web.settings import WebSettings
from tests.support.admin import ADMIN, ADMIN_HASH
from tests.support.sink import RecordingSink
from tests.unit.relays import make_relay, send
from tests.unit.test_policyd import guard_factory, rcpt
from tests.unit.test_web import LOCAL, settled
from tests.unit.test_web_decisions import admin_post

SUBJECT = "Operation Nightfall 7731"
BODY_TEXT = "passport 5550173 of the crew"
MESSAGE = (f"From: me@example-corp.com\r\nTo: crew\r\nSubject: {SUBJECT}\r\nMessage-ID: <n1@example-corp.com>\r\n"
           f"\r\n{BODY_TEXT}\r\n").encode()


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    """Everything the rcptguard loggers write, as `rcptguard ... --log-level debug` writes it on stderr."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.JsonFormatter())
    root = logging.getLogger("rcptguard")
    before = root.handlers[:], root.level, root.propagate
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG)
    root.propagate = False
    yield stream
    root.handlers[:], level, root.propagate = before
    root.setLevel(level)


def entries(stream: io.StringIO) -> list[dict[str, object]]:
    """Every line, each a JSON object with a time, a level and an event (json.loads fails on anything else)."""
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    for line in lines:
        assert {"ts", "level", "event"} <= line.keys(), line
        assert line["level"] in ("debug", "info", "warning", "error", "critical")
    return lines


def test_every_decision_delivery_and_notice_is_a_line_without_content(
        tmp_path: Path, sink: RecordingSink, log_text: io.StringIO) -> None:
    """A message through the relay (one recipient passed, one held, one refused by a force rule), its sender's
    notice, the administrator's release from the page and its delivery, and a policy request: each is a JSON
    line naming the door or the actor, and neither the subject nor a word of the body is anywhere in the log."""
    relay = make_relay(tmp_path, sink, force_ml=True)
    try:
        code, _, refused = send(relay, ["crew@navy.mil", "j.doe@gmial.com", "x@army.ml"], MESSAGE)
        assert code == 250
        assert list(refused) == ["x@army.ml"]
        sink.wait_for(2)  # the message to navy.mil, and the held notice to its sender
        quarantine = relay.quarantine
        [hold] = quarantine.list()
        app = create_app(quarantine=quarantine, links=Links(quarantine.store), guard_provider=lambda: None,  # type: ignore[arg-type,return-value]
                         next_hop=relay.handler.next_hop, secret=b"a logs test secret, long enough",
                         settings=WebSettings(admin_user=ADMIN[0], admin_password_hash=ADMIN_HASH))
        client = TestClient(app, follow_redirects=False, client=LOCAL)
        admin_post(client, hold, "release")
        assert settled(quarantine, hold.id).delivery == "delivered"
    finally:
        relay.close()
    service = PolicyService(guard_factory(), None, PolicySettings())
    assert service.decide({**rcpt("b@army.ml"), "client_address": "192.0.2.9"}).startswith("REJECT")

    lines = entries(log_text)
    doors = {(line["door"], line["recipient"], line["verdict"]) for line in lines
             if line["event"] == "decision" and "door" in line}
    assert doors == {("relay", "crew@navy.mil", "pass"), ("relay", "j.doe@gmial.com", "hold"),
                     ("relay", "x@army.ml", "reject"), ("policyd", "b@army.ml", "hold")}
    [admin] = [line for line in lines if line["event"] == "decision" and "actor" in line]
    assert (admin["hold"], admin["actor"], admin["action"]) == (hold.id, "ops via web admin", "released")
    [notice] = [line for line in lines if line["event"] == "notice"]
    assert (notice["kind"], notice["outcome"], notice["to"]) == ("held", "sent", "me@example-corp.com")
    [delivery] = [line for line in lines if line["event"] == "delivery"]
    assert (delivery["hold"], delivery["outcome"], delivery["to"]) == (hold.id, "delivered", "j.doe@gmial.com")
    [message] = [line for line in lines if line["event"] == "message"]
    assert message["forwarded"] == ["crew@navy.mil"]
    text = log_text.getvalue()
    for secret in (SUBJECT, "Nightfall", BODY_TEXT, "5550173"):
        assert secret not in text
