"""Every server that cannot listen says so in one line and exits 2, run as a real process."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import RCPTGUARD


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port this test holds open (bound and listening) while the server tries it."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


@pytest.mark.parametrize("command", ["relay", "policyd", "web"])
def test_a_taken_port_is_one_line_and_exit_two(command: str, taken_port: int, tmp_path: Path) -> None:
    """`rcptguard relay|policyd|web --listen` on a port in use exits 2 with one line naming the address and the
    reason, and no traceback."""
    proc = subprocess.run([RCPTGUARD, command, "--listen", f"127.0.0.1:{taken_port}",
                           "--db", f"sqlite:///{tmp_path / 'store.db'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    ours = [line for line in proc.stderr.splitlines() if not line.startswith("{")]  # JSON lines: the logs
    assert ours == [f"rcptguard {command}: cannot listen on 127.0.0.1:{taken_port}: address already in use"]


def test_an_unknown_host_is_one_line_and_exit_two(tmp_path: Path) -> None:
    """A --listen host that does not resolve is the same kind of line, with the resolver's reason."""
    proc = subprocess.run([RCPTGUARD, "policyd", "--listen", "no-such-host.invalid:10040",
                           "--db", f"sqlite:///{tmp_path / 'store.db'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("rcptguard policyd: cannot listen on no-such-host.invalid:10040: ")


def test_the_milter_says_why_it_cannot_listen(taken_port: int, tmp_path: Path) -> None:
    """`rcptguard milter` on a port in use, or on a socket in a folder that does not exist: one line with the reason
    (libmilter itself only says "cannot opensocket"), exit 2."""
    for listen, reason in ((f"inet:127.0.0.1:{taken_port}", "address already in use"),
                           (f"unix:{tmp_path}/missing/milter.sock", f"no folder {tmp_path}/missing")):
        proc = subprocess.run([RCPTGUARD, "milter", "--listen", listen, "--db", f"sqlite:///{tmp_path / 'store.db'}"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        ours = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
        assert ours == [f"rcptguard milter: cannot listen on {listen}: {reason}"]
