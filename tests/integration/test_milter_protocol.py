"""The milter driven packet by packet as Sendmail drives it (Sendmail cannot be installed next to Postfix in Debian):
protocol negotiation at versions 6 and 2, Sendmail's macros and macros nobody asked for, Sendmail's own Received
header among the headers, and the replies and actions of a whole transaction."""

from __future__ import annotations

import signal
import struct
from collections.abc import Iterator

import pytest

from tests.integration.milters import SENDER, MilterProcess, cli_content, held
from tests.support.milter_client import (
    ADDHDRS,
    CHGHDRS,
    DELRCPT,
    HDR_LEADSPC,
    MilterClient,
    Packet,
    connect_data,
    strings,
)
from tests.support.processes import free_port

pytestmark = pytest.mark.integration

SENDMAIL_CONNECT = {"j": "mx.example-corp.com", "_": "client.example [192.0.2.7]", "{daemon_name}": "MTA",
                    "{if_name}": "localhost", "{if_addr}": "127.0.0.1", "v": "8.17.1", "{client_connections}": "0",
                    "{something_new}": "a macro this milter never heard of"}
SENDMAIL_RECEIVED = (b" from client.example (client.example [192.0.2.7])\n\tby mx.example-corp.com (8.17.1/8.17.1/"
                     b"Debian-2) with ESMTP id 2B2402Ab012345\n\tfor <x@army.mil>; Wed, 2 Dec 2026 04:01:41 GMT")


@pytest.fixture(scope="module")
def milter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MilterProcess]:
    """One milter for the module (each test holds at most one message, for j@gmial.com)."""
    tmp_path = tmp_path_factory.mktemp("milter")
    process = MilterProcess(tmp_path, tmp_path / "run" / "milter.sock", free_port()).start()
    try:
        yield process
    finally:
        process.kill()


def test_sendmail_transaction_one_of_each(milter: MilterProcess) -> None:
    """Version 6 with every action and step offered: the milter asks for what it uses (header leading spaces, no
    replies to headers and body, delete-recipient and change-header), refuses y@army.ml with its reason, and at the
    end of message removes a forged X-Rcptguard field and the held recipient; the stored copy has Sendmail's
    Received header as the milter saw it, and the DSN parameters."""
    before = {e["message_id"] for e in held(milter.db)}
    with MilterClient.connect(str(milter.socket)) as mta:
        negotiated = mta.negotiate()
        assert negotiated.version == 6
        assert negotiated.actions & (DELRCPT | CHGHDRS | ADDHDRS) == DELRCPT | CHGHDRS | ADDHDRS
        assert negotiated.protocol & HDR_LEADSPC
        assert not negotiated.replies("L")
        assert not negotiated.replies("B")
        mta.macros("C", SENDMAIL_CONNECT)
        assert mta.step("C", connect_data("client.example", "192.0.2.7", 40000)) in ([], [Packet("c", b"")])
        mta.macros("H", {"{tls_version}": "TLSv1.3", "{cipher}": "TLS_AES_256_GCM_SHA384"})
        mta.step("H", strings("client.example"))
        mta.macros("M", {"i": "2B2402Ab012345", "{mail_addr}": SENDER, "{mail_mailer}": "esmtp"})
        assert [p.code for p in mta.step("M", strings(f"<{SENDER}>", "RET=HDRS", "ENVID=q+2B1", "SIZE=300"))] \
            in ([], ["c"])
        assert [p.code for p in mta.step("R", strings("<x@army.mil>"))] == ["c"]
        (refusal,) = mta.step("R", strings("<y@army.ml>"))
        assert refusal.code == "y"
        assert refusal.text.startswith("550 5.7.1 ")
        assert "blocked" in refusal.text
        assert "y@army.mil" in refusal.text
        mta.macros("R", {"{rcpt_addr}": "j@gmial.com", "{rcpt_mailer}": "esmtp"})
        assert [p.code for p in mta.step("R", strings("<j@gmial.com>", "NOTIFY=FAILURE,DELAY",
                                                      "ORCPT=rfc822;j@gmial.com"))] == ["c"]
        assert [p.code for p in mta.step("T")] == ["c"]  # a held recipient: the message is read to its end
        for name, value in (("Received", SENDMAIL_RECEIVED), ("From", b" me@example-corp.com"),
                            ("X-Rcptguard-Warning", b" forged"), ("Subject", b" crew\n list")):
            assert mta.step("L", strings(name, value)) == []
        mta.step("N")
        assert mta.step("B", b"Passport numbers attached.\r\n") == []
        actions = mta.step("E")
        assert [(p.code, p.data) for p in actions[:-1]] == [
            ("m", struct.pack("!I", 1) + strings("X-Rcptguard-Warning", "")), ("-", strings("<j@gmial.com>"))]
        assert actions[-1].code == "c"
        mta.send("Q")
    (entry,) = [e for e in held(milter.db) if e["message_id"] not in before]
    assert entry["recipient"] == "j@gmial.com"
    assert entry["envelope"] == {"mail": {"ret": "HDRS", "envid": "q+2B1"}, "rcpts": {
        "j@gmial.com": {"notify": ["FAILURE", "DELAY"], "orcpt": "rfc822;j@gmial.com"}}}  # DSN, kept for the release
    stored = cli_content(milter.db, str(entry["id"]))
    assert stored == (b"Received:" + SENDMAIL_RECEIVED.replace(b"\n", b"\r\n") + b"\r\nFrom: me@example-corp.com\r\n"
                      b"Subject: crew\r\n list\r\n\r\nPassport numbers attached.\r\n")


def test_only_passing_recipients_accepted_at_data_unread(milter: MilterProcess) -> None:
    """A message whose recipients all pass is accepted at DATA: its headers and body never cross the socket."""
    with MilterClient.connect(str(milter.socket)) as mta:
        mta.negotiate()
        mta.macros("C", SENDMAIL_CONNECT)
        mta.step("C", connect_data("client.example", "192.0.2.7", 40000))
        mta.step("H", strings("client.example"))
        mta.step("M", strings(f"<{SENDER}>"))
        assert [p.code for p in mta.step("R", strings("<x@army.mil>"))] == ["c"]
        assert [p.code for p in mta.step("T")] == ["a"]


def test_version_2_negotiation_of_an_old_mta(milter: MilterProcess) -> None:
    """An MTA of protocol version 2 (Sendmail 8.13 and older) that offers only the old actions and steps: libmilter
    answers within what was offered, and a transaction still works (RCPT answered, the reject with its reason)."""
    with MilterClient.connect(str(milter.socket)) as mta:
        negotiated = mta.negotiate(version=2, actions=0x0F, protocol=0x3F)
        assert negotiated.version <= 6
        assert negotiated.actions & ~0x0F == 0
        assert negotiated.protocol & ~0x3F == 0
        assert [p.code for p in mta.step("C", connect_data("client.example", "192.0.2.7", 40000))] == ["c"]
        mta.step("H", strings("client.example"))
        assert [p.code for p in mta.step("M", strings(f"<{SENDER}>"))] == ["c"]
        (refusal,) = mta.step("R", strings("<y@army.ml>"))
        assert refusal.code == "y"
        assert refusal.text.startswith("550 5.7.1 ")


def test_cut_in_the_middle_and_garbage(milter: MilterProcess) -> None:
    """A session cut after RCPT, a packet that claims 2 GB, an unknown command: the milter closes those sessions and
    serves the next one."""
    before = held(milter.db)
    with MilterClient.connect(str(milter.socket)) as mta:
        mta.negotiate()
        mta.step("C", connect_data("client.example", "192.0.2.7", 40000))
        mta.step("M", strings(f"<{SENDER}>"))
        mta.send("R", strings("<j@gmial.com>"))  # and gone without reading the reply
    with MilterClient.connect(str(milter.socket)) as mta:
        mta.sock.sendall(struct.pack("!I", 0x7FFFFFFF) + b"O")
    with MilterClient.connect(str(milter.socket)) as mta:
        mta.negotiate()
        mta.send("Z", b"what is this")
    assert milter.alive()
    with MilterClient.connect(str(milter.socket)) as mta:
        mta.negotiate()
        mta.step("C", connect_data("client.example", "192.0.2.7", 40000))
        mta.step("M", strings(f"<{SENDER}>"))
        assert [p.code for p in mta.step("R", strings("<x@army.mil>"))] == ["c"]
    assert held(milter.db) == before


def test_sigterm_stops_it_cleanly(milter: MilterProcess) -> None:
    """SIGTERM: libmilter stops taking connections, the milter saves what it learned, logs its counts and exits 0.
    (Last in the module: it stops the module's milter.)"""
    with MilterClient.connect(str(milter.socket)) as mta:
        mta.negotiate()
        mta.step("C", connect_data("client.example", "192.0.2.7", 40000))
        mta.step("M", strings(f"<{SENDER}>"))
        assert [p.code for p in mta.step("R", strings("<x@army.mil>"))] == ["c"]
        assert [p.code for p in mta.step("T")] == ["a"]
    milter.kill(signal.SIGTERM)
    assert milter.proc is not None
    assert milter.proc.returncode == 0
    stopped = [line for line in milter.log.read_text().splitlines() if '"event": "stopped"' in line]
    assert len(stopped) == 1
    assert '"messages": ' in stopped[0]
