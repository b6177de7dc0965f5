"""`rcptguard milter` as its own process for the integration tests, and what they read back from its store."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.integration.test_relay_postfix import cli, held
from tests.support.processes import RCPTGUARD

__all__ = ["POLICY", "SENDER", "MilterProcess", "cli", "cli_content", "held"]

SENDER = "me@example-corp.com"
POLICY = """protect = ["mil"]
known = ["gmail.com"]

[[force]]
suffixes = ["ml"]
action = "reject"
message = "Mail to Mali's .ml domain is blocked."

[milter]
socket_mode = "0666"
"""


class MilterProcess:
    """`rcptguard milter` as its own process on a unix socket, with the tests' policy and its own store."""

    def __init__(self, tmp_path: Path, socket_path: Path, next_hop: int) -> None:
        self.socket = socket_path
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        self.db = f"sqlite:///{tmp_path / 'store.db'}"
        self.next_hop = next_hop
        self.config = tmp_path / "milter.toml"
        self.config.write_text(POLICY, encoding="utf-8")
        self.log = tmp_path / "milter.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MilterProcess:
        self.socket.unlink(missing_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([RCPTGUARD, "milter", "--config", str(self.config), "--listen",
                                          f"unix:{self.socket}", "--db", self.db,
                                          "--next-hop", f"127.0.0.1:{self.next_hop}"], stderr=log)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the milter did not start:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(self.socket))
        except OSError:
            return False
        return True

    def kill(self, signum: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)
            self.proc.wait(30)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def cli_content(db: str, hold_id: str) -> bytes:
    """The stored bytes of a held message, read from the store as the release reads them."""
    script = ("import sys; from rcptguard.store import Store; from rcptguard.store.quarantine import Quarantine; "
              "sys.stdout.buffer.write(Quarantine(Store.open(sys.argv[1])).content(sys.argv[2]))")
    python = Path(RCPTGUARD).with_name("python")
    return subprocess.run([str(python), "-c", script, db, hold_id], capture_output=True, timeout=60,
                          check=True).stdout
