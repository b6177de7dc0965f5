"""The typo domains' sink served in a thread on loopback (with an smtplib client), or as its own process."""

from __future__ import annotations

import signal
import smtplib
import subprocess
from pathlib import Path
from typing import Self

import psutil

from rcptguard.gateways.sink import SinkHandler, SinkSettings, build, serve
from rcptguard.store import Store
from rcptguard.store.sink import Refusals
from tests.support.processes import RCPTGUARD, ServedInThread, wait_port

ARMY = {"intended": ["mil"], "domains": {"examp1e.com": "example.com"}}


class TypoSink(ServedInThread):
    """A sink on a loopback port; `refusals` is what it recorded."""

    def __init__(self, handler: SinkHandler) -> None:
        self.handler = handler
        self.refusals: Refusals = handler.recorder.refusals
        super().__init__(lambda ready, stop: serve(handler, "127.0.0.1", 0, ready=ready, stop=stop))

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=30)


def make_typo_sink(store: Store | str, refusals: Refusals | None = None, **settings: object) -> TypoSink:
    """A sink answering for the .mil typos and examp1e.com (`settings` laid over that), recording into `store`."""
    opened = Store.open(store) if isinstance(store, str) else store
    return TypoSink(build(SinkSettings.from_section({**ARMY, **settings}, "sink"), refusals or Refusals(opened)))


class SinkProcess:
    """`rcptguard sink` as its own process, with a config file of its own; `rss()` its resident memory."""

    def __init__(self, folder: Path, port: int, db: str, section: str = "", *, command: tuple[str, ...] = ()) -> None:
        self.port = port
        self.db = db
        self.log = folder / f"sink-{port}.log"
        self.config = folder / f"sink-{port}.toml"
        self.config.write_text(f'[db]\nurl = "{db}"\n\n[sink]\nintended = ["mil"]\n'
                               f'domains = {{ "examp1e.com" = "example.com" }}\n{section}\n', encoding="utf-8")
        self.command = command or (RCPTGUARD, "sink", "--listen", f"127.0.0.1:{port}")
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([*self.command, "--config", str(self.config)], stderr=log)
        wait_port(self.port, self.proc, self.log)
        return self

    def __exit__(self, *_exc: object) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(15)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def rss(self) -> int:
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`rcptguard sink ARGS --config` this sink's file (its store)."""
        return subprocess.run([RCPTGUARD, "sink", *args, "--config", str(self.config)], capture_output=True,
                              text=True, timeout=60, check=False)
