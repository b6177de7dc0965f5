"""Observe mode end to end: Postfix -> relay (`mode = "observe"`) -> Postfix -> sink. Nothing is held, nobody is
warned, every verdict the relay would have given is logged and reported by `rcptguard report observe`."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.conftest import MakePostfix
from tests.integration.test_relay_postfix import cli, documented, send
from tests.support.processes import RCPTGUARD, free_port, running
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration


def test_observe_mode_holds_nothing_and_reports_everything(postfix: MakePostfix, sink: RecordingSink,
                                                           tmp_path: Path) -> None:
    """Three recipients, two of them slips the relay would hold: all three get the message once, the sender gets
    no notice, the quarantine stays empty; the log has a `would` line for each slip, and `report observe` counts
    them and names the domain meant."""
    relay_port, reinject = free_port(), free_port()
    main, master = documented(relay_port, reinject)
    instance = postfix(main_cf=main, master_cf_extra=master)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    config = tmp_path / "rcptguard.toml"
    config.write_text(f'mode = "observe"\nprotect = ["mil", "example-corp.com"]\nknown = ["gmail.com"]\n\n'
                      f'[relay]\nnext_hop = "127.0.0.1:{reinject}"\n', encoding="utf-8")
    log = tmp_path / "relay.log"
    relay = [RCPTGUARD, "relay", "--config", str(config), "--listen", f"127.0.0.1:{relay_port}", "--db", db]
    with running(relay, relay_port, log):
        assert send(instance, "x@army.mil", "y@army.ml", "z@gmial.com") == {}
        got = sink.wait_for(1)
        instance.wait_queue_empty()
        time.sleep(3)  # a notice, had one been sent, would have arrived by now; observations are written
    assert sorted(r for m in got for r in m.rcpt_tos) == ["x@army.mil", "y@army.ml", "z@gmial.com"]
    assert [m for m in sink.messages if m.rcpt_tos == ("me@example-corp.com",)] == []
    listed = cli("quarantine", "list", "--db", db, "--format", "jsonl")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == ""
    would = [json.loads(line) for line in log.read_text().splitlines()
             if line.startswith("{") and json.loads(line).get("event") == "would"]
    assert sorted((w["recipient"], w["verdict"], w["intended"]) for w in would) == [
        ("y@army.ml", "hold", "army.mil"), ("z@gmial.com", "hold", "gmail.com")]
    report = cli("report", "observe", "--db", db)
    assert report.returncode == 0, report.stderr
    assert "2 recipients would not have simply passed" in report.stdout
    assert "2 hold" in report.stdout
    assert "army.ml (for army.mil)" in report.stdout
