"""The policy service on real sockets: the protocol, the reply table, bad input, fail-closed behaviour."""

from __future__ import annotations

import contextlib
import logging
import resource
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from rcptguard.gateways.policyd import PER_MESSAGE, PendingNotices, PolicyService, PolicySettings, serve
from rcptguard.guard import Guard
from rcptguard.model import Verdict
from rcptguard.notify import Flagged
from rcptguard.policy import ConfigError, load_policy
from rcptguard.store import Store
from tests.support.processes import RCPTGUARD, ServedInThread, running
from tests.support.sink import RecordingSink


class Server(ServedInThread):
    """A PolicyService on a loopback port, served by an event loop in a thread."""

    def __init__(self, service: PolicyService) -> None:
        self.service = service
        super().__init__(lambda ready, stop: serve(service, "127.0.0.1", 0, ready, stop))


def guard_factory(protect: tuple[str, ...] = ("mil",), known: tuple[str, ...] = ("gmail.com",)):
    policy = load_policy().with_domains(protect, known)
    return lambda learned: Guard(policy, learned=learned)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
    running = Server(PolicyService(guard_factory(), store, PolicySettings(flush_interval=0.05)))
    yield running
    running.close()


def request(port: int, *requests: dict[str, str], raw: bytes | None = None, timeout: float = 5) -> list[str]:
    """Send requests on one connection; return the actions read back (until the server closes or all came)."""
    payload = raw if raw is not None else b"".join(
        b"".join(f"{k}={v}\n".encode() for k, v in r.items()) + b"\n" for r in requests)
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):  # the server closed on a violation: no answer
            return []
        expected = len(requests)
        while data.count(b"\n\n") < expected or expected == 0:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
    return [block.removeprefix("action=") for block in data.decode().split("\n\n") if block]


def rcpt(recipient: str, **more: str) -> dict[str, str]:
    return {"request": "smtpd_access_policy", "protocol_state": "RCPT", "sender": "me@example-corp.com",
            "recipient": recipient, **more}


def test_reply_table(server: Server) -> None:
    """pass -> DUNNO, warn -> DUNNO (no header for the recipients to see), hold -> REJECT 5.7.1 with the reason
    and suggestion."""
    answers = request(server.port, rcpt("x@army.mil"), rcpt("x@ymail.com"), rcpt("x@army.ml"), rcpt("a@@b"))
    assert answers[0] == "DUNNO"
    assert answers[1] == "DUNNO"
    assert answers[2] == ("REJECT 5.7.1 army.ml looks like army.mil: .ml is Mali's country domain, one letter "
                          "short of .mil. Did you mean x@army.mil? Check the address.")
    assert answers[3].startswith("REJECT 5.1.3 This is not a valid address")


def test_hold_mode_answers_postfix_hold(tmp_path: Path) -> None:
    """With hold_mode = hold, a held recipient gets Postfix's HOLD action with the explanation."""
    running = Server(PolicyService(guard_factory(), None, PolicySettings(hold_mode="hold")))
    try:
        (answer,) = request(running.port, rcpt("x@army.ml"))
    finally:
        running.close()
    assert answer.startswith("HOLD army.ml looks like army.mil")


@pytest.fixture
def notices() -> Iterator[RecordingSink]:
    with RecordingSink() as sink:
        yield sink


def hold_service(notices: RecordingSink, store: Store, **settings: object) -> Server:
    return Server(PolicyService(guard_factory(), store, PolicySettings.from_section(
        {"hold_mode": "hold", "notify_smtp": f"127.0.0.1:{notices.port}", **settings}, "policyd")))


def test_a_warning_goes_to_the_sender_once_a_day_per_domain(notices: RecordingSink, store: Store) -> None:
    """A warned recipient is let through (DUNNO) and the sender, never the recipient, gets one short notice per
    domain: three warned recipients at ymail.com give one notice, one at gmail.de another."""
    running = Server(PolicyService(guard_factory(), store, PolicySettings.from_section(
        {"notify_smtp": f"127.0.0.1:{notices.port}"}, "policyd")))
    try:
        answers = request(running.port, rcpt("a@ymail.com"), rcpt("b@ymail.com"), rcpt("a@ymail.com"),
                          rcpt("c@gmail.de"))
        assert answers == ["DUNNO"] * 4
        got = notices.wait_for(2)
        time.sleep(0.3)
        assert len(notices.messages) == 2
    finally:
        running.close()
    assert {m.rcpt_tos for m in got} == {("me@example-corp.com",)}
    assert all(m.mail_from == "" for m in got)
    first = next(m.data for m in got if b"a@ymail.com" in m.data)
    assert b"ymail.com looks like gmail.com" in first
    assert b"Did you mean a@gmail.com?" in first


def test_a_deferred_notice_is_stored_and_sent_by_a_later_round(notices: RecordingSink, store: Store) -> None:
    """A hold notice that notify_smtp defers is kept in the store and sent by the service's next round, once."""
    notices.reply_rcpt = {"me@example-corp.com": "451 4.3.0 mailbox locked"}
    running = hold_service(notices, store, retry_interval=0.3)
    try:
        answers = request(running.port, rcpt("x@army.ml", instance="m1"),
                          rcpt("", protocol_state="END-OF-MESSAGE", instance="m1", queue_id="4XyZ1"))
        assert answers[0].startswith("HOLD ")
        time.sleep(0.6)
        assert notices.messages == []
        notices.reply_rcpt = None
        (notice,) = notices.wait_for(1)
        time.sleep(1.0)
    finally:
        running.close()
    assert len(notices.messages) == 1
    assert notice.rcpt_tos == ("me@example-corp.com",)
    assert b"is on hold" in notice.data


def test_notices_need_a_store() -> None:
    """A service told to send notices without a store to keep them until they are sent is refused at start."""
    with pytest.raises(ConfigError, match=r"policyd\.notify_smtp: notices are stored"):
        PolicyService(guard_factory(), None, PolicySettings(notify_smtp="127.0.0.1:25"))


def test_hold_notice_is_one_per_message_at_end_of_message(notices: RecordingSink, store: Store) -> None:
    """Held recipients of one message (one Postfix instance) get one notice, once the message is whole, with
    its queue id; END-OF-MESSAGE itself answers DUNNO; a transaction that never ends gets no notice."""
    running = hold_service(notices, store)
    try:
        answers = request(running.port, rcpt("x@army.ml", instance="a1"), rcpt("y@navy.ml", instance="a1"),
                          rcpt("z@army.ml", instance="b2"),  # never ends: no END-OF-MESSAGE for b2
                          rcpt("", protocol_state="END-OF-MESSAGE", instance="a1", queue_id="4XyZ1"))
        assert [a.split(" ", 1)[0] for a in answers] == ["HOLD", "HOLD", "HOLD", "DUNNO"]
        (notice,) = notices.wait_for(1)
        time.sleep(0.3)
        assert len(notices.messages) == 1
    finally:
        running.close()
    assert notice.rcpt_tos == ("me@example-corp.com",)
    assert b"x@army.ml" in notice.data
    assert b"y@navy.ml" in notice.data
    assert b"z@army.ml" not in notice.data
    assert b"queue id 4XyZ1" in notice.data


def test_end_of_message_with_one_recipient_is_not_decided_again(notices: RecordingSink, store: Store) -> None:
    """At DATA and END-OF-MESSAGE Postfix repeats a lone recipient: decided at RCPT, it is not counted again."""
    running = hold_service(notices, store)
    try:
        answers = request(running.port, rcpt("x@army.mil", instance="c3"),
                          rcpt("x@army.mil", protocol_state="DATA", instance="c3"),
                          rcpt("x@army.mil", protocol_state="END-OF-MESSAGE", instance="c3", queue_id="Q1"))
        assert answers == ["DUNNO", "DUNNO", "DUNNO"]
    finally:
        running.close()
    assert notices.messages == []
    assert store.learned() == {"army.mil": 1}


def test_notify_at_rcpt_sends_at_once(notices: RecordingSink, store: Store) -> None:
    running = hold_service(notices, store, notify_at="rcpt")
    try:
        request(running.port, rcpt("x@army.ml", instance="d4"), rcpt("y@navy.ml", instance="d4"))
        assert len(notices.wait_for(2)) == 2
    finally:
        running.close()


def test_notify_at_is_checked() -> None:
    with pytest.raises(ValueError, match="notify_at"):
        PolicySettings.from_section({"notify_at": "later"}, "policyd")


def test_never_permits(server: Server) -> None:
    """No answer is ever OK (or any other permit): relay restrictions must still apply."""
    recipients = ["x@army.mil", "x@gmail.com", "x@example.org", "x@army.ml", "x@ymail.com", "", "<>", "x@[1.2.3.4]"]
    answers = request(server.port, *(rcpt(r) for r in recipients))
    assert len(answers) == len(recipients)
    assert all(a.split(" ", 1)[0] in {"DUNNO", "REJECT"} for a in answers)


def test_request_without_recipient_is_dunno(server: Server) -> None:
    """A request with no recipient attribute (another stage) gets DUNNO."""
    assert request(server.port, {"request": "smtpd_access_policy", "protocol_state": "DATA"}) == ["DUNNO"]


def test_many_clients_at_once(server: Server) -> None:
    """Fifty persistent connections, each with ten requests, all answered correctly."""
    results: list[list[str]] = []

    def client() -> None:
        results.append(request(server.port, *[rcpt("x@army.ml"), rcpt("y@navy.mil")] * 5))

    threads = [threading.Thread(target=client) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 50
    assert all(len(r) == 10 and r[0].startswith("REJECT") and r[1] == "DUNNO" for r in results)


@pytest.mark.parametrize("raw", [
    b"this is not a policy request\n\n",
    b"=novalue\n\n",
    b"\n",
    b"recipient=" + b"a" * (1024 * 1024) + b"@army.ml\n\n",
])
def test_garbage_closes_without_an_answer(server: Server, raw: bytes) -> None:
    """Garbage lines, an empty request or a 1 MB line: the connection is closed with no answer at all."""
    assert request(server.port, raw=raw) == []
    assert request(server.port, rcpt("x@army.mil")) == ["DUNNO"]  # the service lives on


def test_non_utf8_recipient_is_rejected_as_malformed(server: Server) -> None:
    """A recipient that is not UTF-8 gets REJECT 5.1.3, not a pass."""
    raw = b"request=smtpd_access_policy\nrecipient=\xff\xfe@army.mil\n\n"
    (answer,) = request(server.port, raw=raw)
    assert answer.startswith("REJECT 5.1.3")
    assert "UTF-8" in answer


def test_half_request_then_disconnect(server: Server) -> None:
    """A client that sends half a request and goes away does no harm."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"request=smtpd_access_policy\nrecipient=x@ar")
    assert request(server.port, rcpt("x@army.ml"))[0].startswith("REJECT")


class ExplodingGuard(Guard):
    def check(self, raw: str) -> Verdict:
        if raw == "boom@example.com":
            raise RuntimeError("injected fault")
        return super().check(raw)


def test_internal_error_closes_without_an_answer() -> None:
    """An exception inside the service closes the connection unanswered: Postfix then defers (4xx)."""
    policy = load_policy().with_domains(("mil",))
    running = Server(PolicyService(lambda learned: ExplodingGuard(policy, learned), None, PolicySettings()))
    try:
        assert request(running.port, rcpt("x@army.mil"), rcpt("boom@example.com"), rcpt("x@navy.mil")) == ["DUNNO"]
        assert request(running.port, rcpt("x@navy.mil")) == ["DUNNO"]
    finally:
        running.close()


def test_learned_counts_are_stored(tmp_path: Path) -> None:
    """Domains let through are counted in the store; held ones are not."""
    store = Store.open(f"sqlite:///{tmp_path / 'learn.db'}")
    running = Server(PolicyService(guard_factory(), store, PolicySettings(flush_interval=0.05)))
    try:
        request(running.port, rcpt("a@partner.example"), rcpt("b@partner.example"), rcpt("x@army.ml"))
        time.sleep(0.3)
    finally:
        running.close()
    assert Store.open(f"sqlite:///{tmp_path / 'learn.db'}").learned() == {"partner.example": 2}


def test_learned_domain_stops_being_first_contact(tmp_path: Path) -> None:
    """After restarts, a domain written to often enough is a known correspondent."""
    url = f"sqlite:///{tmp_path / 'learn.db'}"
    Store.open(url).add_counts({"strpe.com": 5})
    service = PolicyService(guard_factory(known=("stripe.com",)), Store.open(url), PolicySettings())
    assert service.decide(rcpt("a@strpe.com")) == "DUNNO"
    fresh = PolicyService(guard_factory(known=("stripe.com",)), None, PolicySettings())
    assert fresh.decide(rcpt("a@strpe.com")).startswith("REJECT")


@contextlib.contextmanager
def policyd_process(tmp_path: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """The real `rcptguard policyd` command in its own process; its log goes to tmp_path/policyd.log."""
    with running([RCPTGUARD, "policyd", "--protect", "mil", "--listen", f"127.0.0.1:{port}",
                  "--db", f"sqlite:///{tmp_path / 'p.db'}"], port, tmp_path / "policyd.log") as proc:
        yield proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_thousand_idle_connections_memory_flat(tmp_path: Path) -> None:
    """1,000 idle connections: the real process still answers, and its memory stays flat."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    port = _free_port()
    with policyd_process(tmp_path, port) as proc:
        process = psutil.Process(proc.pid)
        request(port, *[rcpt(f"x{i}@army.ml") for i in range(200)])
        before = process.memory_info().rss
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(1000)]
        try:
            for sock in idle[:500]:
                sock.sendall(b"request=smtpd_access_policy\n")  # half a request, then silence
            assert request(port, rcpt("x@army.ml"))[0].startswith("REJECT")
            during = process.memory_info().rss
        finally:
            for sock in idle:
                sock.close()
        request(port, *[rcpt(f"y{i}@army.ml") for i in range(200)])
        assert proc.poll() is None
        assert during - before < 30 * 1024 * 1024, (before, during)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert '"event": "stopped"' in (tmp_path / "policyd.log").read_text()


def test_sigterm_saves_learned_counts(tmp_path: Path) -> None:
    """On SIGTERM the process saves what it learned, and a new process starts from it."""
    port = _free_port()
    with policyd_process(tmp_path, port) as proc:
        request(port, rcpt("a@partner.example"))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert Store.open(f"sqlite:///{tmp_path / 'p.db'}").learned() == {"partner.example": 1}


def test_stdio_mode_for_postfix_spawn(tmp_path: Path) -> None:
    """`policyd --stdio` (master.cf spawn) answers requests on stdin/stdout and exits at end of input."""
    payload = b"request=smtpd_access_policy\nrecipient=x@army.ml\n\nrecipient=x@army.mil\n\nrecipient=half"
    config = tmp_path / "rcptguard.toml"  # the engine's words, whatever this host's DNS says of army.ml
    config.write_text("[dns]\nenabled = false\n", encoding="utf-8")
    result = subprocess.run([RCPTGUARD, "policyd", "--stdio", "--protect", "mil", "--config", str(config),
                             "--db", f"sqlite:///{tmp_path / 's.db'}"],
                            input=payload, capture_output=True, timeout=60, check=False)
    assert result.returncode == 0
    answers = result.stdout.decode().split("\n\n")
    assert answers[0].startswith("action=REJECT 5.7.1 army.ml looks like army.mil")
    assert answers[1] == "action=DUNNO"
    assert answers[2] == ""
    assert b"connection closed in the middle of a request" in result.stderr
    assert Store.open(f"sqlite:///{tmp_path / 's.db'}").learned() == {"army.mil": 1}


# -- unfinished transactions in HOLD mode -------------------------------------------------------------------------


def held_rcpt(instance: str, recipient: str = "x@army.ml") -> dict[str, str]:
    return rcpt(recipient, instance=instance)


def test_unfinished_held_transactions_stay_bounded_and_cheap(caplog: pytest.LogCaptureFixture, store: Store) -> None:
    """200,000 held RCPTs whose transactions never end: the service remembers at most pending_limit messages,
    each request looks at a bounded number of entries (not all of them), the forgotten ones are logged in a few
    lines, and a message that does end still gets its notice."""
    service = PolicyService(guard_factory(), store, PolicySettings.from_section(
        {"hold_mode": "hold", "notify_smtp": "127.0.0.1:9", "pending_limit": 1000}, "policyd"))
    sent: list[tuple[str, list[str], str]] = []
    service._notify = lambda held, queue_id: sent.append(  # type: ignore[method-assign]
        (held.sender, [line.recipient for line in held.lines], queue_id))
    with caplog.at_level(logging.WARNING, "rcptguard.policyd"):
        for number in range(200_000):
            assert service.decide(held_rcpt(f"t{number}")).startswith("HOLD ")
            if number == 100_000:
                examined = service.pending.examined
        assert len(service.pending) == 1000
        assert service.pending.examined - examined <= 2 * 100_000  # O(1) a request, not O(pending)
        before = service.pending.examined
        assert service.decide(held_rcpt("last", "y@navy.ml")).startswith("HOLD ")
        assert service.pending.examined - before <= 2
        assert service.decide(rcpt("", protocol_state="END-OF-MESSAGE", instance="last", queue_id="Q9")) == "DUNNO"
    assert sent == [("me@example-corp.com", ["y@navy.ml"], "Q9")]
    forgotten = [r for r in caplog.records if "forgotten" in r.getMessage()]
    assert 1 <= len(forgotten) <= 3
    assert forgotten[0].fields["over_limit"] >= 1  # type: ignore[attr-defined]


def test_pending_notices_forget_the_stale_and_the_oldest() -> None:
    """A held message older than the wait is forgotten when the next one comes; over the limit the oldest goes
    first; more recipients of a remembered message are added to it (up to per_message, the rest counted)."""
    now = [0.0]
    pending = PendingNotices(limit=3, max_age=3600.0, per_message=2, clock=lambda: now[0])
    line = Flagged("x@army.ml", "army.ml looks like army.mil", "x@army.mil")
    assert pending.add("a", "s@example.org", line) == []
    now[0] = 10.0
    for instance in ("b", "c"):
        assert pending.add(instance, "s@example.org", line) == []
    for _ in range(3):
        assert pending.add("a", "s@example.org", line) == []  # a recipient more: no new message
    now[0] = 20.0
    assert [(i, why) for i, _held, why in pending.add("d", "s@example.org", line)] == [("a", "limit")]
    now[0] = 3615.0  # b and c waited 3,605 s, d 3,595 s
    assert [(i, why) for i, _held, why in pending.add("e", "s@example.org", line)] == [("b", "stale"), ("c", "stale")]
    assert len(pending) == 2
    held = pending.pop("d")
    assert held is not None
    assert (len(held.lines), held.more) == (1, 0)
    assert pending.pop("d") is None


def test_a_notice_lists_at_most_per_message_recipients(notices: RecordingSink, store: Store) -> None:
    """A message with more held recipients than a notice lists names the first ones and counts the rest."""
    running = hold_service(notices, store)
    try:
        many = [held_rcpt("m1", f"u{n}@army.ml") for n in range(PER_MESSAGE + 5)]
        request(running.port, *many, rcpt("", protocol_state="END-OF-MESSAGE", instance="m1", queue_id="Q1"))
        (notice,) = notices.wait_for(1)
    finally:
        running.close()
    assert b"u0@army.ml" in notice.data
    assert f"u{PER_MESSAGE - 1}@army.ml".encode() in notice.data
    assert f"u{PER_MESSAGE}@army.ml".encode() not in notice.data
    assert b"and 5 more held recipients" in notice.data


def test_pending_limit_is_checked() -> None:
    """A pending_limit that is not a positive whole number is refused with the key's name."""
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"policyd\.pending_limit"):
            PolicySettings.from_section({"pending_limit": bad}, "policyd")
