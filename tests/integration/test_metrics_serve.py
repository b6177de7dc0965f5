"""`rcptguard relay`, `policyd` and `web` as real processes sharing one config: each serves its metrics where the
config says (`[relay] metrics_listen`, `[policyd] metrics_listen`, the page's /metrics), counted after real traffic;
a metrics port that is taken stops the server with one line."""

from __future__ import annotations

import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from rcptguard.store import Store
from tests.support.processes import RCPTGUARD, free_port, running
from tests.support.sink import RecordingSink
from tests.unit.test_metrics import scrape, value
from tests.unit.test_policyd import rcpt, request

pytestmark = pytest.mark.integration


def config(tmp_path: Path, sink: RecordingSink, relay_metrics: int, policyd_metrics: int) -> Path:
    path = tmp_path / "rcptguard.toml"
    path.write_text(f'protect = ["mil"]\nknown = ["gmail.com"]\n\n[db]\nurl = "sqlite:///rcptguard.db"\n\n'
                    f'[relay]\nnext_hop = "127.0.0.1:{sink.port}"\nmetrics_listen = "127.0.0.1:{relay_metrics}"\n\n'
                    f'[policyd]\nmetrics_listen = "127.0.0.1:{policyd_metrics}"\n\n'
                    '[web]\nsecret = "a metrics test secret, long enough"\n', encoding="utf-8")
    Store.open(f"sqlite:///{tmp_path / 'rcptguard.db'}").close()
    return path


def test_every_server_serves_its_metrics_from_one_config(tmp_path: Path, sink: RecordingSink) -> None:
    """A message through the relay (one recipient passed, one held), two policy requests (a pass, a hold), then
    each server's metrics: its own decisions, and the same store (the held recipient) in all three."""
    ports = {name: free_port() for name in ("relay", "relay_metrics", "policyd", "policyd_metrics", "web")}
    path = config(tmp_path, sink, ports["relay_metrics"], ports["policyd_metrics"])
    base = [RCPTGUARD]
    with running([*base, "relay", "--config", str(path), "--listen", f"127.0.0.1:{ports['relay']}"],
                 ports["relay"], tmp_path / "relay.log"), \
         running([*base, "policyd", "--config", str(path), "--listen", f"127.0.0.1:{ports['policyd']}"],
                 ports["policyd"], tmp_path / "policyd.log"), \
         running([*base, "web", "--config", str(path), "--listen", f"127.0.0.1:{ports['web']}"],
                 ports["web"], tmp_path / "web.log"):
        with smtplib.SMTP("127.0.0.1", ports["relay"], timeout=30) as smtp:
            refused = smtp.sendmail("me@example.org", ["crew@navy.mil", "bob@gmial.com"],
                                    b"Subject: crew list\r\n\r\nPassport numbers.\r\n")
        assert refused == {}
        answers = request(ports["policyd"], rcpt("a@navy.mil"), rcpt("b@army.ml"))
        assert [answer.split(" ")[0] for answer in answers] == ["DUNNO", "REJECT"]
        relay = scrape(ports["relay_metrics"])
        policyd = scrape(ports["policyd_metrics"])
        web = scrape(ports["web"])
    assert value(relay, "rcptguard_decisions_total", door="relay", verdict="pass") == 1
    assert value(relay, "rcptguard_decisions_total", door="relay", verdict="hold") == 1
    assert value(relay, "rcptguard_forwarded_total", door="relay", outcome="accepted") == 1
    assert value(policyd, "rcptguard_decisions_total", door="policyd", verdict="hold") == 1
    assert value(policyd, "rcptguard_signals_total", door="policyd", signal="TLD_SLIP") == 1
    for samples in (relay, policyd, web):
        assert value(samples, "rcptguard_quarantine_holds", state="held") == 1


def test_a_taken_metrics_port_stops_the_server_with_one_line(tmp_path: Path, sink: RecordingSink) -> None:
    """The relay's metrics_listen is taken: one line naming it, exit status 2, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = config(tmp_path, sink, port, free_port())
        started = time.monotonic()
        result = subprocess.run([RCPTGUARD, "relay", "--config", str(path), "--listen", f"127.0.0.1:{free_port()}"],
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert f"rcptguard relay (metrics_listen): cannot listen on 127.0.0.1:{port}: address already in use" \
        in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 30
