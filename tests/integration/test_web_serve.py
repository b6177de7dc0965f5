"""`rcptguard web` as a real process: huge bodies refused in bounded memory, releases that never stall the pages."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import psutil
import pytest

from rcptguard.store import Store
from rcptguard.store.links import Links, token_hash
from rcptguard.store.quarantine import Quarantine
from rcptguard.web import csrf_token
from tests.support.processes import RCPTGUARD, free_port, running
from tests.support.sink import RecordingSink
from tests.unit.test_web import SENDER, held, message

pytestmark = pytest.mark.integration

SECRET = "a web serve test secret of enough length"
BODY = 50 * 1024 * 1024


@dataclass
class Web:
    port: int
    pid: int
    db: str

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def rss(self) -> int:
        return int(psutil.Process(self.pid).memory_info().rss)


@pytest.fixture
def slow_sink() -> Iterator[RecordingSink]:
    """A next hop that records each message, then sits 4 s on its answer to the final dot."""
    with RecordingSink(delay_data=4.0) as sink:
        yield sink


@pytest.fixture
def web(tmp_path: Path, slow_sink: RecordingSink) -> Iterator[Web]:
    port = free_port()
    db = f"sqlite:///{tmp_path / 'store.db'}"
    Store.open(db).close()  # created and migrated before the server starts
    config = tmp_path / "rcptguard.toml"
    config.write_text(f'protect = ["mil"]\n\n[relay]\nnext_hop = "127.0.0.1:{slow_sink.port}"\n\n[web]\n'
                      f'base_url = "http://127.0.0.1:{port}"\nsecret = "{SECRET}"\n', encoding="utf-8")
    command = [RCPTGUARD, "web", "--config", str(config), "--listen", f"127.0.0.1:{port}", "--db", db,
               "--log-level", "warning"]
    with running(command, port, tmp_path / "web.log") as process:
        yield Web(port, process.pid, db)


def request_head(port: int, extra: str) -> bytes:
    return (f"POST /v1/check HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{extra}"
            "\r\n").encode()


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (it does, after refusing a body)."""
    sock.settimeout(5)
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def push(sock: socket.socket, chunks: Iterator[bytes]) -> tuple[int, bytes]:
    """Send chunks until the server answers or drops the connection: the bytes it took, and its answer."""
    sent = 0
    for chunk in chunks:
        if select.select([sock], [], [], 0)[0]:
            break
        try:
            sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += len(chunk)
    sock.settimeout(5)
    try:
        return sent, sock.recv(4096)
    except (ConnectionResetError, TimeoutError):
        return sent, b""


def test_huge_bodies_are_refused_in_bounded_memory(web: Web) -> None:
    """A 50 MB body, declared or chunked, is refused with 413 while the server's memory grows by under 10 MB;
    the server answers normally afterwards."""
    assert httpx2.post(f"{web.url}/v1/check", json={"recipients": ["a@army.ml"]}).status_code == 200
    before = web.rss()
    with socket.create_connection(("127.0.0.1", web.port)) as sock:
        sock.sendall(request_head(web.port, f"Content-Length: {BODY}\r\n"))
        answer = read_answer(sock)  # before any of the body is sent
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        assert b'"detail": "The request body is larger than 1048576 bytes."' in answer
    piece = b"a" * 65536
    with socket.create_connection(("127.0.0.1", web.port)) as sock:
        sock.sendall(request_head(web.port, "Transfer-Encoding: chunked\r\n") + b'11\r\n{"recipients": ["\r\n')
        sent, answer = push(sock, (b"10000\r\n" + piece + b"\r\n" for _ in range(BODY // len(piece))))
    assert sent < BODY // 2, "the server kept reading a chunked body past its limit"
    assert answer == b"" or answer.startswith(b"HTTP/1.1 413 "), answer  # or reset before the answer was read
    grown = web.rss() - before
    assert grown < 10 * 1024 * 1024, f"the server grew by {grown / 1e6:.1f} MB"
    assert httpx2.post(f"{web.url}/v1/check", json={"recipients": ["a@army.ml"]}).status_code == 200


UNSTALLED = 2.5  # seconds: less than the slow next hop's 4 s on one final dot


def test_slow_next_hop_stalls_no_page(web: Web, slow_sink: RecordingSink) -> None:
    """Eight releases at once to a next hop that sits 4 s on each final dot: every POST, /healthz and a page answer
    while they are sent, each well within the 4 s a page that waited on the next hop would take, and each message
    arrives exactly once. (The bound is not a speed test: a loaded machine answers in about a second.)"""
    store = Store.open(web.db)
    quarantine, links = Quarantine(store), Links(store)
    posts = []
    for number in range(8):
        (hold,) = quarantine.hold(mail_from=SENDER, recipients=[held()], content=message(marker=str(number)))
        token = links.issue(hold.message_id, dt.timedelta(days=1))
        data = {"hold": hold.id, "action": "correct", "csrf": csrf_token(SECRET.encode(), token_hash(token), hold.id)}
        posts.append((hold.id, token, data))

    def post(item: tuple[str, str, dict[str, str]]) -> tuple[int, float]:
        started = time.monotonic()
        response = httpx2.post(f"{web.url}/confirm/{item[1]}", data=item[2], timeout=30)
        return response.status_code, time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, posts))
    assert [status for status, _ in answers] == [303] * 8
    assert max(seconds for _, seconds in answers) < UNSTALLED, answers
    slow_sink.wait_for(1)  # a delivery is in progress: the next hop has a message and sits on its answer
    for url in ("/healthz", f"/confirm/{posts[-1][1]}"):
        started = time.monotonic()
        response = httpx2.get(f"{web.url}{url}", timeout=30)
        assert response.status_code == 200
        assert time.monotonic() - started < UNSTALLED, url
    assert "Sending to c@army.mil" in httpx2.get(f"{web.url}/confirm/{posts[0][1]}").text
    deadline = time.monotonic() + 60
    while any(quarantine.require(hold_id).delivery != "delivered" for hold_id, _, _ in posts):
        assert time.monotonic() < deadline, [quarantine.require(hold_id) for hold_id, _, _ in posts]
        time.sleep(0.2)
    time.sleep(1)
    assert len(slow_sink.messages) == 8
    corrected = [message(marker=str(n)).replace(b"To: c@army.ml\r\n", b"To: c@army.mil\r\n") for n in range(8)]
    assert sorted(m.data for m in slow_sink.messages) == sorted(corrected)  # each once, To: corrected
    page = httpx2.get(f"{web.url}/confirm/{posts[0][1]}").text
    assert "Sent to c@army.mil" in page
    assert 'http-equiv="refresh"' not in page
    store.close()


def test_sigterm_finishes_a_release_in_progress(web: Web, slow_sink: RecordingSink) -> None:
    """SIGTERM while a release sits at the next hop's final dot: the process waits for the answer, records the
    delivery, and exits; the message arrives once."""
    store = Store.open(web.db)
    quarantine, links = Quarantine(store), Links(store)
    (hold,) = quarantine.hold(mail_from=SENDER, recipients=[held()], content=message())
    token = links.issue(hold.message_id, dt.timedelta(days=1))
    data = {"hold": hold.id, "action": "correct", "csrf": csrf_token(SECRET.encode(), token_hash(token), hold.id)}
    assert httpx2.post(f"{web.url}/confirm/{token}", data=data).status_code == 303
    slow_sink.wait_for(1)
    process = psutil.Process(web.pid)
    process.terminate()
    assert process.wait(30) == 0
    assert quarantine.require(hold.id).delivery == "delivered"
    assert len(slow_sink.messages) == 1
    store.close()
