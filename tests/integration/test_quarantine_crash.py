"""`rcptguard quarantine release` killed (-9) while the next hop holds the copy: real processes, a real SMTP sink."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from rcptguard.store import Store
from rcptguard.store.quarantine import Quarantine
from tests.holds import gmial_recipient
from tests.support.processes import RCPTGUARD
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration

CONTENT = (b"From: alice@example.org\r\nTo: bob@gmial.com\r\nSubject: plans\r\nMessage-ID: <k9@example.org>\r\n"
           b"\r\nhi\r\n")


def quarantine_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([RCPTGUARD, "quarantine", *args], capture_output=True, text=True, check=False, timeout=60)


def test_killed_release_is_not_sent_again_before_the_claim_timeout(tmp_path: Path) -> None:
    """A release killed after the next hop took the copy (its reply to the final dot still on the way) leaves the
    delivery claimed by that process: deliver-pending right after sends nothing (the claim is younger than the
    1-hour timeout); only once the claim timeout passes is it sent again (at least once, never lost)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store.open(url)
    hold_id = Quarantine(store).hold(mail_from="alice@example.org", recipients=[gmial_recipient()],
                                     content=CONTENT)[0].id
    with RecordingSink(delay_data=30.0) as slow:  # records the message, then waits before its 250
        release = subprocess.Popen([RCPTGUARD, "quarantine", "release", hold_id, "--db", url, "--next-hop",
                                    str(slow.hop)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            slow.wait_for(1)
        finally:
            release.send_signal(signal.SIGKILL)
            release.wait(10)
    hold = Quarantine(store).require(hold_id)
    assert (hold.state, hold.delivery) == ("released", "sending")
    assert hold.claimed_by == f"{socket.gethostname()} pid {release.pid}"
    assert hold.claim_id
    shown = quarantine_command("show", hold_id, "--db", url)
    assert f"pid {release.pid} (claim {hold.claim_id})" in shown.stdout
    with RecordingSink() as sink:
        soon = quarantine_command("deliver-pending", "--db", url, "--next-hop", str(sink.hop))
        assert "delivered 0 of 1 pending" in soon.stdout, soon.stdout + soon.stderr
        assert sink.messages == []
        time.sleep(1.1)
        late = quarantine_command("deliver-pending", "--db", url, "--next-hop", str(sink.hop), "--claim-timeout", "1s")
        assert "delivered 1 of 1 pending" in late.stdout, late.stdout + late.stderr
        assert [m.rcpt_tos for m in sink.messages] == [("bob@gmial.com",)]
    assert Quarantine(store).require(hold_id).delivery == "delivered"
    store.close()
