"""The milter's decisions without an MTA: the verdict table, the message as stored (Postfix's Received header made
again), holds, warnings and a failing store at end of message. tests/integration/test_milter_postfix.py runs it
inside a real Postfix."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcptguard.content.settings import ContentSettings
from rcptguard.dsn import MailParams, RcptParams
from rcptguard.errors import ConfigError
from rcptguard.gateways.milter import (
    Arrival,
    ContentCheck,
    MilterService,
    MilterSettings,
    Transaction,
    action_at_rcpt,
    build,
    libmilter_address,
    own_headers,
    postfix_date,
    protocol_name,
    raised,
)
from rcptguard.gateways.relay import RelaySettings
from rcptguard.history import Batch, Counted
from rcptguard.model import Action, Verdict
from rcptguard.runtime import Runtime
from rcptguard.store import Store
from rcptguard.store.history import StoreHistory
from rcptguard.store.outgoing import Outgoing
from rcptguard.store.quarantine import Quarantine
from tests.unit.relays import policy_factory

SENDER = "me@example-corp.com"


@pytest.fixture
def utc() -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


def make_service(tmp_path: Path, **milter: object) -> MilterService:
    store = Store.open(f"sqlite:///{tmp_path / 'milter.db'}")
    relay = RelaySettings.from_section({"next_hop": "127.0.0.1:10026"}, "relay")
    return MilterService(Runtime(policy_factory(force_ml=True), store), Quarantine(store), relay,
                         MilterSettings.from_section(dict(milter), "milter"))


def transaction(service: MilterService, *rcpts: str, headers: list[tuple[str, bytes]] | None = None) -> Transaction:
    tx = Transaction(SENDER, MailParams("HDRS", "env-1"), arrived=1796184101.0)
    for rcpt in rcpts:
        tx.verdicts[rcpt] = service.judge(rcpt)
        tx.as_given[rcpt] = f"<{rcpt}>"
        tx.rcpt_params[rcpt] = RcptParams(("FAILURE",), f"rfc822;{rcpt}")
    tx.headers = headers if headers is not None else [
        ("From", b" me@example-corp.com"), ("To", b" x@army.mil,\n  j@gmial.com"), ("Subject", b" crew list"),
        ("Message-ID", b" <crew-1@example-corp.com>")]
    tx.body += b"Passport numbers attached.\r\n"
    return tx


def arrival(queue_id: str = "D2B8C232905", recipients: tuple[str, ...] = ("x@army.mil", "j@gmial.com")) -> Arrival:
    return Arrival("client.example", "localhost [127.0.0.1]", "mx.example-corp.com", "Postfix", queue_id, "ESMTP",
                   1796184101.0, recipients)


# -- the verdict table --------------------------------------------------------------------------------------------


def test_rcpt_table_continues_pass_warn_hold_and_refuses_reject_and_malformed(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    for address, action in (("x@army.mil", Action.PASS), ("a@mail.com", Action.WARN), ("j@gmial.com", Action.HOLD)):
        verdict = service.judge(address)
        assert verdict.action is action
        assert action_at_rcpt(verdict, "5.7.1") is None
    rejected = action_at_rcpt(service.judge("y@army.ml"), "5.7.1")
    assert rejected is not None
    assert (rejected.code, rejected.status) == (550, "5.7.1")
    assert "Mali is blocked." in rejected.text
    assert "y@army.mil" in rejected.text
    malformed = action_at_rcpt(service.judge("a@@army.mil"), "5.7.1")
    assert malformed is not None
    assert (malformed.code, malformed.status) == (553, "5.1.3")


def test_an_address_that_is_not_utf8_is_malformed(tmp_path: Path) -> None:
    """pymilter hands over bytes that are not UTF-8 as surrogates: refused with why, never checked as text."""
    verdict = make_service(tmp_path).judge(b"j@gm\xe9il.com".decode("utf-8", "surrogateescape"))
    assert verdict.signal("MALFORMED_ADDRESS") is not None
    reply = action_at_rcpt(verdict, "5.7.1")
    assert reply is not None
    assert reply.code == 553
    assert "not valid UTF-8" in reply.text


def test_idn_both_forms_get_the_same_verdict(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    unicode, ascii_form = service.judge("a@gmаil.com"), service.judge("a@xn--gmil-63d.com")  # Cyrillic а
    assert unicode.action is ascii_form.action is Action.HOLD
    assert unicode.intended == ascii_form.intended == "gmail.com"


# -- the message as stored ----------------------------------------------------------------------------------------


def test_content_keeps_folding_leading_space_and_empty_values(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    tx = transaction(service, "x@army.mil", headers=[
        ("To", b" x@army.mil,\n  j@gmial.com"), ("Subject", b" a long\n\tfolded subject"), ("X-Empty", b""),
        ("X-NoSpace", b"value"), ("X-Rcptguard-Warning", b" forged\n\tover two lines"), ("X-CRLF", b" a\r\n b")])
    assert tx.content() == (b"To: x@army.mil,\r\n  j@gmial.com\r\nSubject: a long\r\n\tfolded subject\r\nX-Empty:\r\n"
                            b"X-NoSpace:value\r\nX-CRLF: a\r\n b\r\n\r\nPassport numbers attached.\r\n")


def test_own_headers_are_found_with_their_occurrence() -> None:
    headers = [("X-Rcptguard-Warning", b" a"), ("Subject", b" s"), ("x-rcptguard-warning", b" b"),
               ("X-Rcptguard-Other", b" c")]
    assert own_headers(headers) == [("X-Rcptguard-Warning", 1), ("x-rcptguard-warning", 2), ("X-Rcptguard-Other", 1)]


@pytest.mark.usefixtures("utc")
def test_received_header_as_postfix_writes_it() -> None:
    """The two forms of Postfix's smtpd_received_header: with one recipient it names it (`for <...>`)."""
    assert arrival().header() == (b"Received: from client.example (localhost [127.0.0.1])\r\n"
                                  b"\tby mx.example-corp.com (Postfix) with ESMTP id D2B8C232905;\r\n"
                                  b"\tWed,  2 Dec 2026 04:01:41 +0000 (UTC)\r\n")
    assert arrival(recipients=("j@gmial.com",)).header() == (
        b"Received: from client.example (localhost [127.0.0.1])\r\n"
        b"\tby mx.example-corp.com (Postfix) with ESMTP id D2B8C232905\r\n"
        b"\tfor <j@gmial.com>; Wed,  2 Dec 2026 04:01:41 +0000 (UTC)\r\n")
    no_helo = Arrival("", "unknown [192.0.2.1]", "mx", "Postfix", "Q1", "ESMTP", 1796184101.0, ())
    assert no_helo.header().startswith(b"Received: from unknown (unknown [192.0.2.1])\r\n")


@pytest.mark.usefixtures("utc")
def test_postfix_date_pads_the_day_with_a_space() -> None:
    assert postfix_date(1796184101.0) == "Wed,  2 Dec 2026 04:01:41 +0000 (UTC)"
    assert postfix_date(1797048101.0) == "Sat, 12 Dec 2026 04:01:41 +0000 (UTC)"


def test_protocol_names() -> None:
    assert protocol_name(smtputf8=False, tls=False, auth=False) == "ESMTP"
    assert protocol_name(smtputf8=False, tls=True, auth=True) == "ESMTPSA"
    assert protocol_name(smtputf8=True, tls=True, auth=False) == "UTF8SMTPS"


# -- at end of message --------------------------------------------------------------------------------------------


def test_held_recipient_stored_with_received_header_and_deleted(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    tx = transaction(service, "x@army.mil", "j@gmial.com")
    outcome = service.end_of_message(tx, arrival(), "localhost[127.0.0.1]")
    assert outcome.answer == "continue"
    assert outcome.delete == ["<j@gmial.com>"]
    (hold,) = service.quarantine.list()
    assert hold.recipient == "j@gmial.com"
    assert hold.notice == "pending"  # the held notice is owed in the same transaction
    assert service.quarantine.content(hold.id) == arrival().header() + tx.content()
    params = hold.params
    assert (params.mail.ret, params.mail.envid) == ("HDRS", "env-1")
    assert params.rcpt("j@gmial.com") == RcptParams(("FAILURE",), "rfc822;j@gmial.com")
    assert service.owed == {hold.message_id}


def test_a_retry_with_a_new_queue_id_is_the_same_hold(tmp_path: Path) -> None:
    """Postfix names a new queue id in its Received header at each attempt: the hold is keyed on what the milter saw,
    so a message tempfailed after it was stored and sent again is held once, with one notice."""
    service = make_service(tmp_path)
    first = service.end_of_message(transaction(service, "j@gmial.com"), arrival("AAAA1"), "")
    again = service.end_of_message(transaction(service, "j@gmial.com"), arrival("BBBB2"), "")
    assert first.answer == again.answer == "discard"  # every recipient held: nothing for the MTA to deliver
    (hold,) = service.quarantine.list()
    assert b"id AAAA1" in service.quarantine.content(hold.id)


def test_a_store_that_fails_tempfails_the_whole_message(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    (tmp_path / "milter.db").unlink()  # replaced under the running milter: verify() notices
    outcome = service.end_of_message(transaction(service, "x@army.mil", "j@gmial.com"), arrival(), "")
    assert outcome.answer == "tempfail"
    assert outcome.reply is not None
    assert (outcome.reply.code, outcome.reply.status) == (451, "4.3.0")
    assert outcome.delete == []
    assert service.counts["tempfailed"] == 1


def test_warned_recipient_tells_the_sender_once_and_adds_a_header_only_when_asked(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    outcome = service.end_of_message(transaction(service, "a@mail.com"), arrival(), "")
    assert outcome.answer == "continue"
    assert outcome.delete == []
    assert outcome.add_headers == []
    again = make_service(tmp_path, warn_header=True)
    again.warned = service.warned  # the same memory: this sender heard of mail.com already
    with_header = again.end_of_message(transaction(again, "a@mail.com"), arrival(), "")
    (name, value), = with_header.add_headers
    assert name == "X-Rcptguard-Warning"
    assert value.startswith("a@mail.com: mail.com looks like gmail.com")
    queued = Outgoing(service.quarantine.store).due()
    assert [item.recipient for item in queued] == [SENDER]  # one warning, to the sender
    assert len(service.queued) == 1


def test_a_content_check_may_raise_a_verdict_never_lower_it(tmp_path: Path) -> None:
    """The seam for what reads the message (the sensitivity scanner, the odd-recipient judgement): a check that
    holds a warned recipient holds it; one that would pass a held recipient changes nothing."""
    service = make_service(tmp_path)
    tx = transaction(service, "a@mail.com", "j@gmial.com")

    def check(seen: Transaction, content: bytes) -> dict[str, Verdict]:
        assert b"Passport numbers" in content
        warned, held = seen.verdicts["a@mail.com"], seen.verdicts["j@gmial.com"]
        return {"a@mail.com": Verdict(warned.address, warned.domain, Action.HOLD, warned.score, warned.signals,
                                      "Passport numbers to an address that looks mistyped."),
                "j@gmial.com": Verdict(held.address, held.domain, Action.PASS, 0.0, (), "fine")}

    service.content_checks.append(ContentCheck("test", check))
    outcome = service.end_of_message(tx, arrival(), "")
    assert outcome.answer == "discard"
    assert sorted(outcome.delete) == ["<a@mail.com>", "<j@gmial.com>"]
    assert sorted(h.recipient for h in service.quarantine.list()) == ["a@mail.com", "j@gmial.com"]
    assert raised({"a": tx.verdicts["j@gmial.com"]}, {}) == {"a": tx.verdicts["j@gmial.com"]}


# -- settings --------------------------------------------------------------------------------------------------------


def test_listen_addresses_as_libmilter_takes_them() -> None:
    assert libmilter_address("unix:/run/m.sock") == "unix:/run/m.sock"
    assert libmilter_address("inet:127.0.0.1:8891") == "inet:8891@127.0.0.1"
    assert libmilter_address("inet:[::1]:8891") == "inet:8891@::1"
    assert libmilter_address("inet:8891@127.0.0.1") == "inet:8891@127.0.0.1"
    for bad in ("127.0.0.1:8891", "unix:relative.sock", "inet:host:99999", "tcp:1@x"):
        with pytest.raises(ValueError, match="expected"):
            libmilter_address(bad)


def test_settings_are_checked() -> None:
    for section in ({"listen": "somewhere"}, {"socket_mode": "rw"}, {"timeout": 0.0}):
        with pytest.raises(ConfigError):
            MilterSettings.from_section(section, "milter")


def test_each_recipient_is_counted_in_the_milters_metrics(tmp_path: Path) -> None:
    service = make_service(tmp_path)
    for address in ("x@army.mil", "j@gmial.com", "y@army.ml"):
        service.judge(address)
    text = service.metrics.exposition().decode()
    for verdict in ("pass", "hold", "reject"):
        assert f'rcptguard_decisions_total{{door="milter",verdict="{verdict}"}} 1.0' in text
    assert 'rcptguard_signals_total{door="milter",signal="FORCE_RULE"} 1.0' in text


def test_the_sensitivity_scanner_holds_a_warned_recipient_of_a_marked_message(tmp_path: Path) -> None:
    """[content] on (the default): a warned recipient of a message with a classification marking is held, and the
    hold says what the message carries; a message to passing recipients only is not read at all."""
    store = Store.open(f"sqlite:///{tmp_path / 'milter.db'}")
    relay = RelaySettings.from_section({"next_hop": "127.0.0.1:10026"}, "relay")
    service = build(policy_factory(), store, relay, MilterSettings(), content=ContentSettings())
    tx = transaction(service, "a@mail.com")
    tx.body[:] = b"SECRET//NOFORN\r\nThe plan.\r\n"
    assert service.reads_content(tx)
    outcome = service.end_of_message(tx, arrival(), "")
    assert outcome.delete == ["<a@mail.com>"]
    (hold,) = service.quarantine.list()
    assert "classification marking" in hold.reason
    assert "SENSITIVE_CONTENT" in [s["name"] for s in hold.signals]
    assert not service.reads_content(transaction(service, "x@army.mil"))


def test_a_greeting_that_names_somebody_else_warns_at_end_of_message(tmp_path: Path) -> None:
    """The sender writes to nils.martin@partner.com and olga.smith@partner.com; with every message read
    (`warn_header`), a message to Olga opening "Hi Nils," warns of her, the header naming Nils's address; "Hi Olga,"
    does not."""
    store = Store.open(f"sqlite:///{tmp_path / 'milter.db'}")
    batch = Batch()
    when = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for _ in range(5):
        batch.message(SENDER, [Counted("nils.martin@partner.com", "partner.com")], when)
        batch.message(SENDER, [Counted("olga.smith@partner.com", "partner.com")], when)
    StoreHistory(store).record(batch)
    relay = RelaySettings.from_section({"next_hop": "127.0.0.1:10026"}, "relay")
    service = build(policy_factory(), store, relay, MilterSettings(warn_header=True))
    warnings = {}
    for name in ("Olga", "Nils"):
        tx = transaction(service, "olga.smith@partner.com", headers=[("To", b" olga.smith@partner.com")])
        tx.body[:] = f"Hi {name},\r\n\r\nthe figures.\r\n".encode()
        service.in_company(tx)
        assert service.reads_content(tx)
        warnings[name] = service.end_of_message(tx, arrival(), "").add_headers
    assert warnings["Olga"] == []
    [(field, value)] = warnings["Nils"]
    assert field == "X-Rcptguard-Warning"
    assert "greets Nils" in value
    assert "nils.martin@partner.com" in value
