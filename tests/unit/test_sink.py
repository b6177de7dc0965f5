"""The typo domains' sink against smtplib and raw sockets: refusals at RCPT in plain words, what it records, what it
refuses to be (a relay, a mailbox), and replies that stay one safe line."""

from __future__ import annotations

import smtplib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcptguard.domains import normalize_domain
from rcptguard.gateways.sink import REPLY_LINE, SinkSettings, SinkSMTP, TypoDomains, refusal
from rcptguard.model import Address
from rcptguard.policy import ConfigError
from rcptguard.store import Store
from tests.support.typosink import TypoSink, make_typo_sink

SUGGESTION = ("550 5.1.2 army.ml is not army.mil -- your message was NOT delivered. Did you mean j.doe@army.mil? "
              "Check the address and send it again.")


@pytest.fixture
def typo_sink(store: Store) -> Iterator[TypoSink]:
    running = make_typo_sink(store)
    yield running
    running.close()


def talk(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    """Send `data` on a new connection and read everything the server says until it closes or `wait` passes."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        conn.sendall(data)
        received = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            received += chunk
        return received


def reply(smtp: smtplib.SMTP, command: str) -> str:
    code, text = smtp.docmd(command)
    return f"{code} {text.decode()}"


def test_a_typo_domain_is_refused_with_what_was_meant(typo_sink: TypoSink) -> None:
    """RCPT to army.ml: 550 5.1.2 and the plain words with the corrected address; one row of metadata only."""
    with typo_sink.smtp() as smtp:
        smtp.ehlo("mx.partner.example")
        smtp.mail("alice.private@partner.example")
        assert reply(smtp, "RCPT TO:<j.doe@army.ml>") == SUGGESTION
    [row] = list(typo_sink.refusals.since())
    assert (row.client_ip, row.helo, row.sender_domain, row.sender_local, row.typo_domain, row.intended_domain) == (
        "127.0.0.1", "mx.partner.example", "partner.example", None, "army.ml", "army.mil")


def test_typo_domains_are_derived_from_intended_ones_and_taken_from_the_map(typo_sink: TypoSink) -> None:
    """army.ml, navy.ml, af.ml -> .mil with nothing listed but `mil`; examp1e.com from the explicit map."""
    with typo_sink.smtp() as smtp:
        smtp.ehlo()
        smtp.mail("")
        for typed, meant in (("army.ml", "army.mil"), ("navy.ml", "navy.mil"), ("af.ml", "af.mil"),
                             ("examp1e.com", "example.com"), ("ARMY.ML", "army.mil")):
            code, text = smtp.rcpt(f"x@{typed}")
            assert (code, text.split()[0]) == (550, b"5.1.2")
            assert f"is not {meant} -- your message was NOT delivered. Did you mean x@{meant}?" in text.decode()
    rows = list(typo_sink.refusals.since())
    assert [(r.typo_domain, r.intended_domain, r.sender_domain) for r in rows] == [
        ("army.ml", "army.mil", ""), ("navy.ml", "navy.mil", ""), ("af.ml", "af.mil", ""),
        ("examp1e.com", "example.com", ""), ("army.ml", "army.mil", "")]


def test_other_domains_are_refused_as_not_served(typo_sink: TypoSink) -> None:
    """Not an open relay: the intended domain itself, a provider, an unrelated domain and a bogus suffix's nearest
    real one (foo.con is not ours to correct) are refused 550 5.7.1, and nothing is recorded."""
    with typo_sink.smtp() as smtp:
        smtp.ehlo()
        smtp.mail("me@partner.example")
        for address in ("x@army.mil", "x@gmail.com", "x@partner.example", "x@foo.con", "x@example.com"):
            assert smtp.rcpt(address) == (550, b"5.7.1 This server receives no mail for that domain; relaying denied")
    assert list(typo_sink.refusals.since()) == []


def test_each_recipient_of_a_session_is_refused_on_its_own_and_data_never_accepted(typo_sink: TypoSink) -> None:
    """A session with a typo, an unserved domain and another typo: each answered for itself, then DATA gets 554 and
    the message's lines are never read as a message (the session ends among the 'unknown commands')."""
    session = (b"EHLO mx.partner.example\r\nMAIL FROM:<a@partner.example>\r\nRCPT TO:<j.doe@army.ml>\r\n"
               b"RCPT TO:<x@gmail.com>\r\nRCPT TO:<k@navy.ml>\r\nDATA\r\nSubject: secret plans\r\n\r\n"
               b"body line one\r\nbody line two\r\nbody three\r\nbody four\r\nbody five\r\n.\r\nQUIT\r\n")
    said = talk(typo_sink.port, session).decode()
    assert "550 5.1.2 army.ml is not army.mil" in said
    assert "550 5.7.1 This server receives no mail for that domain" in said
    assert "550 5.1.2 navy.ml is not navy.mil" in said
    assert "554 5.5.1 No valid recipients: this server accepts no mail" in said
    assert "354" not in said
    assert "250 2.0.0" not in said
    assert [r.typo_domain for r in typo_sink.refusals.since()] == ["army.ml", "navy.ml"]


def test_the_sender_local_part_is_kept_only_when_configured(store: Store) -> None:
    running = make_typo_sink(store, keep_sender_local=True)
    try:
        with running.smtp() as smtp:
            smtp.ehlo()
            smtp.mail("alice@Partner.EXAMPLE")
            smtp.rcpt("j.doe@army.ml")
        [row] = list(running.refusals.since())
        assert (row.sender_local, row.sender_domain) == ("alice", "partner.example")
    finally:
        running.close()


def test_idn_in_either_form_gets_one_answer(store: Store) -> None:
    """A typo domain listed in its U-label form is answered for in both forms (UTF-8 under SMTPUTF8, and the
    xn-- form); the reply names both domains in their A-label form, a UTF-8 local part is not echoed."""
    running = make_typo_sink(store, domains={"bücher.example": "buecher.example"})
    try:
        with running.smtp() as smtp:
            smtp.ehlo()
            smtp.mail("me@partner.example", options=["SMTPUTF8"])
            code, text = smtp.rcpt("anna@bücher.example")
            assert (code, text.decode()) == (550, ("5.1.2 xn--bcher-kva.example is not buecher.example -- your "
                                                   "message was NOT delivered. Did you mean anna@buecher.example? "
                                                   "Check the address and send it again."))
            code, text = smtp.rcpt("anna@xn--bcher-kva.example")
            assert code == 550
            assert b"xn--bcher-kva.example is not buecher.example" in text
            code, text = smtp.rcpt("jörg@bücher.example")
            assert b"Did you mean the same address at buecher.example?" in text
        assert {r.typo_domain for r in running.refusals.since()} == {"xn--bcher-kva.example"}
    finally:
        running.close()


def test_utf8_without_smtputf8_is_refused_for_that(typo_sink: TypoSink) -> None:
    said = talk(typo_sink.port, "EHLO x\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<anna@ármy.ml>\r\nQUIT\r\n".encode())
    assert "553 5.6.7 This address needs SMTPUTF8" in said.decode()


@pytest.mark.parametrize(("rcpt", "expected", "recorded"), [
    (b"RCPT TO:<j.doe@army.ml\r\n550 fake@x>", b"501 5.5.4 Syntax: RCPT TO:<address>", 0),  # CR LF in the path
    (b"RCPT TO:<j.doe@arm\ny.ml>", b"501 5.5.4 Syntax: RCPT TO:<address>", 0),  # a bare LF stays in the line
    (b"RCPT TO:<x@@army.ml>", b"553 5.1.3", 0),
    (b"RCPT TO:<x@army.ml\x00>", b"501 5.5.4 Syntax: RCPT TO:<address>", 0),
    # bytes that are not UTF-8 in the local part: the domain is still a typo; the local part is not said back
    (b"RCPT TO:<\xff\xfe@army.ml>", (b"550 5.1.2 army.ml is not army.mil -- your message was NOT delivered. Did "
                                      b"you mean the same address at army.mil?"), 1),
])
def test_odd_bytes_in_the_address_get_a_clean_answer(typo_sink: TypoSink, rcpt: bytes, expected: bytes,
                                                     recorded: int) -> None:
    said = talk(typo_sink.port, b"EHLO x\r\nMAIL FROM:<a@b.example> SMTPUTF8\r\n" + rcpt + b"\r\nQUIT\r\n")
    lines = said.split(b"\r\n")
    assert any(line.startswith(expected) for line in lines), said
    assert all(line.isascii() and b"\n" not in line and len(line) + 2 <= REPLY_LINE for line in lines)
    assert b"fake" not in said
    assert b"221 Bye" in said
    assert len(list(typo_sink.refusals.since())) == recorded


def test_a_reply_never_passes_512_octets() -> None:
    """RFC 5321's limit on a reply line, with the longest names an address can have: the local part goes first."""
    long_typo = ".".join(["a" * 63] * 3) + ".ml"
    long_meant = ".".join(["a" * 63] * 3) + ".mil"
    line = str(refusal(long_typo, long_meant, "j" * 64))
    assert len(line) + 2 <= REPLY_LINE
    assert line.startswith(f"550 5.1.2 {long_typo} is not {long_meant}")
    assert str(refusal("army.ml", "army.mil", '"a b"')).endswith("Did you mean the same address at army.mil? Check "
                                                                 "the address and send it again.")


def test_typo_domains_answer_only_for_their_intended_domains() -> None:
    domains = TypoDomains(SinkSettings(intended=("army.mil",), domains={"armymil.example": "army.mil"}))

    def answer(domain: str) -> tuple[str, str] | None:
        found = domains.answer(Address("x", normalize_domain(domain)))
        return None if found is None else (found.typo, found.intended)

    assert answer("army.ml") == ("army.ml", "army.mil")
    assert answer("armymil.example") == ("armymil.example", "army.mil")
    assert answer("navy.ml") is None  # only army.mil is meant
    assert answer("army.mil") is None
    assert answer("gmial.com") is None  # no providers, no correspondents: only what the operator names


def test_settings_refuse_what_cannot_work() -> None:
    with pytest.raises(ConfigError, match=r"domains: 'army\.ml' maps to itself"):
        SinkSettings(domains={"army.ml": "ARMY.ML"})
    with pytest.raises(ConfigError, match="intended: 'not a domain'"):
        SinkSettings(intended=("not a domain",))
    with pytest.raises(ConfigError, match="tls_cert and tls_key go together"):
        SinkSettings(tls_cert="cert.pem")
    with pytest.raises(ConfigError, match="max_recipients: at least 1"):
        SinkSettings(max_recipients=0)


def test_a_dead_store_gets_a_tempfail_never_a_5xx(tmp_path: Path) -> None:
    """The SQLite file removed under the running sink: 451 4.3.0 (the sender's server tries again), no traceback in
    the reply; with a store again, the refusal is said."""
    path = tmp_path / "sink.db"
    running = make_typo_sink(f"sqlite:///{path}")
    try:
        with running.smtp() as smtp:
            smtp.ehlo()
            smtp.mail("a@partner.example")
            assert smtp.rcpt("j.doe@army.ml")[0] == 550
            path.unlink()
            assert smtp.rcpt("j.doe@army.ml") == (451, b"4.3.0 Temporary failure; try again later")
            assert smtp.rcpt("x@gmail.com")[0] == 550  # what needs no record is still answered
    finally:
        running.close()


class SlowRefusals:
    """A store that takes `delay` seconds to record (a database under load)."""

    def __init__(self, store: Store, delay: float) -> None:
        from rcptguard.store.sink import Refusals

        self.inner = Refusals(store)
        self.store = store
        self.delay = delay

    def add(self, rows: list[object]) -> None:
        time.sleep(self.delay)
        self.inner.add(rows)  # type: ignore[arg-type]

    def since(self) -> Iterator[object]:
        return self.inner.since()


def test_a_slow_store_does_not_slow_the_reply_beyond_write_timeout(store: Store) -> None:
    """The reply waits for its row at most write_timeout, then 451; rows that arrive meanwhile are written together
    with it (one transaction for the batch), not one commit each."""
    slow = SlowRefusals(store, delay=1.5)
    running = make_typo_sink(store, refusals=slow, write_timeout=0.3)  # type: ignore[arg-type]
    try:
        with running.smtp() as smtp:
            smtp.ehlo()
            smtp.mail("a@partner.example")
            started = time.monotonic()
            assert smtp.rcpt("j.doe@army.ml") == (451, b"4.3.0 Temporary failure; try again later")
            assert time.monotonic() - started < 1.2
    finally:
        running.close()


def test_starttls_with_the_configured_certificate(store: Store, tmp_path: Path) -> None:
    """With tls_cert and tls_key, EHLO offers STARTTLS and the refusal is said inside TLS."""
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=sink.test", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    running = make_typo_sink(store, tls_cert=str(cert), tls_key=str(key))
    try:
        with running.smtp() as smtp:
            smtp.ehlo()
            assert smtp.has_extn("starttls")
            context = ssl.create_default_context(cafile=str(cert))
            context.check_hostname = False
            smtp.starttls(context=context)
            smtp.ehlo()
            smtp.mail("a@partner.example")
            assert smtp.rcpt("j.doe@army.ml")[0] == 550
            assert smtp.sock.version() is not None  # type: ignore[union-attr]
    finally:
        running.close()


def test_answers_and_limits_are_counted_in_the_metrics(store: Store) -> None:
    """rcptguard_sink_answers_total by answer and rcptguard_sink_limits_total by limit; no domain in any label."""
    running = make_typo_sink(store, max_recipients=4)
    try:
        with running.smtp() as smtp:
            smtp.ehlo()
            smtp.mail("a@partner.example")
            for address in ("j.doe@army.ml", "x@gmail.com", "x@@army.ml", "k@navy.ml", "l@army.ml"):
                smtp.rcpt(address)
        text = running.handler.metrics.exposition().decode()
    finally:
        running.close()
    assert 'rcptguard_sink_answers_total{answer="typo"} 2.0' in text
    assert 'rcptguard_sink_answers_total{answer="not_served"} 1.0' in text
    assert 'rcptguard_sink_answers_total{answer="malformed"} 1.0' in text
    assert 'rcptguard_sink_answers_total{answer="limited"} 1.0' in text
    assert 'rcptguard_sink_limits_total{limit="max_recipients"} 1.0' in text
    assert "army" not in text


def test_a_session_knows_every_command_and_hook_though_its_dir_is_narrowed(typo_sink: TypoSink) -> None:
    """SinkSMTP and SinkHandler show aiosmtpd only their prefixed names (it reads dir() for every new session);
    the tables aiosmtpd builds from them are the same as from the full lists."""
    session = SinkSMTP(typo_sink.handler, hostname="x", loop=typo_sink.loop)
    everything = object.__dir__(session)
    assert set(session._smtp_methods) == {n[5:] for n in everything if n.startswith("smtp_")}
    assert set(session._handle_hooks) == {n[7:] for n in object.__dir__(typo_sink.handler)
                                          if n.startswith("handle_")}
    assert {"RCPT", "DATA", "STARTTLS", "EHLO", "QUIT"} <= set(session._smtp_methods)
    assert {"EHLO", "MAIL", "RCPT", "exception"} == set(session._handle_hooks)
