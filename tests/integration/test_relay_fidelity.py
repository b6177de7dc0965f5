"""What the envelope asks for survives the relay behind a real Postfix: DSN parameters and XFORWARD, on forward
and on release, as Postfix's own smtpd and log see them after the filter."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import smtplib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcptguard.delivery import NextHop
from rcptguard.notify import Notifier, send_owed
from rcptguard.store import Store
from rcptguard.store.quarantine import Quarantine
from tests.integration.conftest import MakePostfix
from tests.integration.postfix import PostfixInstance
from tests.integration.test_relay_postfix import RelayProcess, cli, documented, held, relay_process
from tests.support.processes import free_port
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration

MESSAGE = (b"From: me@example-corp.com\r\nTo: x@army.mil, y@army.ml\r\nSubject: crew list\r\n"
           b"Message-ID: <fidelity1@example-corp.com>\r\n\r\nPassport numbers attached.\r\n")


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    """The next hop behind Postfix offers DSN and XFORWARD (as a Postfix would) and records what it is told."""
    with RecordingSink(extensions=True) as started:
        yield started


@pytest.fixture
def filtered(postfix: MakePostfix, tmp_path: Path) -> Iterator[tuple[PostfixInstance, RelayProcess]]:
    """Postfix with the relay as its documented content filter; the submitting client may use XCLIENT, so that
    the original client is an outside address, not the loopback the filter also uses."""
    relay_port, reinject = free_port(), free_port()
    main, master = documented(relay_port, reinject)
    instance = postfix(main_cf={**main, "smtpd_authorized_xclient_hosts": "127.0.0.0/8",
                                "mynetworks": "127.0.0.0/8 192.0.2.0/24"}, master_cf_extra=master)
    with relay_process(tmp_path, relay_port, reinject) as relay:
        yield instance, relay


def submit(instance: PostfixInstance, rcpts: dict[str, list[str]]) -> None:
    """Send MESSAGE as if from mail.example.net[192.0.2.7] (XCLIENT), with RET, ENVID and each RCPT's options."""
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30) as client:
        client.ehlo("laptop.example-corp.com")
        assert client.docmd("XCLIENT", "NAME=mail.example.net ADDR=192.0.2.7")[0] == 220
        client.ehlo("laptop.example-corp.com")
        assert client.mail("me@example-corp.com", ["RET=HDRS", "ENVID=QQ314159"])[0] == 250
        for rcpt, options in rcpts.items():
            assert client.rcpt(rcpt, options)[0] == 250
        assert client.data(MESSAGE)[0] == 250


def params(text: str) -> dict[str, str]:
    return dict(word.partition("=")[::2] for word in text.split())


def test_dsn_and_the_original_client_survive_the_filter(filtered: tuple[PostfixInstance, RelayProcess],
                                                        sink: RecordingSink) -> None:
    """A message with RET=HDRS, ENVID, NOTIFY=SUCCESS,FAILURE and ORCPT goes Postfix -> relay -> Postfix -> next
    hop with the same parameters; Postfix's log after the filter and the relay's log name the original client."""
    instance, relay = filtered
    submit(instance, {"x@army.mil": ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;X@army.mil"]})
    (got,) = sink.wait_for(1)
    instance.wait_queue_empty()
    assert got.rcpt_tos == ("x@army.mil",)
    mail = params(got.mail_params)
    assert (mail["RET"], mail["ENVID"]) == ("HDRS", "QQ314159")
    rcpt = params(got.rcpt_params[0])
    assert (rcpt["NOTIFY"], rcpt["ORCPT"]) == ("SUCCESS,FAILURE", "rfc822;X@army.mil")
    clients = re.findall(r"postfix/smtpd\[\d+\]: \w+: client=([^,\s]+)(?:.*orig_client=(\S+))?", instance.log())
    # submitted (the client as XCLIENT set it), and reinjected after the filter, where Postfix's smtpd names
    # the relay as its client and the original one as XFORWARD told it
    assert clients == [("mail.example.net[192.0.2.7]", ""), ("localhost[127.0.0.1]", "mail.example.net[192.0.2.7]")]
    lines = [json.loads(line) for line in relay.log.read_text("utf-8").splitlines() if line.startswith("{")]
    (message,) = [line for line in lines if line.get("event") == "message"]
    assert message["client"] == "mail.example.net[192.0.2.7]"


def test_a_release_to_the_suggestion_keeps_the_original_recipient(filtered: tuple[PostfixInstance, RelayProcess],
                                                                   sink: RecordingSink) -> None:
    """Held, then released to the suggested address: the copy goes out with the sender's RET, ENVID and NOTIFY,
    and ORCPT naming the address the sender typed."""
    instance, relay = filtered
    submit(instance, {"y@army.ml": ["NOTIFY=SUCCESS,FAILURE"]})
    sink.wait_for(1)  # the held notice
    instance.wait_queue_empty()
    (entry,) = held(relay.db)
    assert entry["envelope"]["mail"] == {"ret": "HDRS", "envid": "QQ314159"}
    sink.clear()
    result = cli("quarantine", "release", str(entry["id"]), "--to", "y@army.mil", "--db", relay.db,
                 "--next-hop", f"127.0.0.1:{relay.next_hop}")
    assert result.returncode == 0, result.stdout + result.stderr
    (got,) = sink.wait_for(1)
    instance.wait_queue_empty()
    assert got.rcpt_tos == ("y@army.mil",)
    assert params(got.mail_params)["ENVID"] == "QQ314159"
    rcpt = params(got.rcpt_params[0])
    assert (rcpt["NOTIFY"], rcpt["ORCPT"]) == ("SUCCESS,FAILURE", "rfc822;y@army.ml")


def test_a_cancelled_hold_is_a_standard_bounce(filtered: tuple[PostfixInstance, RelayProcess],
                                               sink: RecordingSink) -> None:
    """An administrator's cancel sends the sender a multipart/report that Python's email parser reads: a
    message/delivery-status part naming the recipient with Action: failed, and the sender's ENVID."""
    instance, relay = filtered
    submit(instance, {"y@army.ml": ["NOTIFY=FAILURE"]})
    sink.wait_for(1)
    instance.wait_queue_empty()
    (entry,) = held(relay.db)
    sink.clear()
    result = cli("quarantine", "cancel", str(entry["id"]), "--db", relay.db)
    assert result.returncode == 0, result.stdout + result.stderr
    store = Store.open(relay.db)
    try:  # what the relay's round does once the decision's grace (30 s) is over, without the wait
        counts = send_owed(Quarantine(store), Notifier(), NextHop("127.0.0.1", relay.next_hop, timeout=30),
                           warn=print, grace=dt.timedelta(0))
    finally:
        store.close()
    assert counts == Counter(sent=1)
    (report,) = sink.wait_for(1)
    parsed = email.message_from_bytes(report.data, policy=email.policy.default)
    assert parsed.get_content_type() == "multipart/report"
    status = next(part for part in parsed.iter_parts() if part.get_content_type() == "message/delivery-status")
    per_message, per_recipient = status.get_payload()
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert per_recipient["Final-Recipient"] == "rfc822; y@army.ml"
    assert per_recipient["Action"] == "failed"
