"""The demo's next hop (scripts/demo_next_hop.py), run as `bash scripts/run` runs it: it prints the envelope."""

from __future__ import annotations

import smtplib
import subprocess
import sys
from pathlib import Path

from tests.support.processes import free_port, wait_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "demo_next_hop.py"
MESSAGE = b"From: me@example-corp.com\r\nTo: j.doe@gmial.com\r\nSubject: crew list\r\n\r\nPassport numbers.\r\n"


def test_scripts_run_starts_this_next_hop() -> None:
    """`bash scripts/run` starts scripts/demo_next_hop.py on the demo config's next hop, 127.0.0.1:2526."""
    run = (ROOT / "scripts" / "run").read_text("utf-8")
    assert "python scripts/demo_next_hop.py 127.0.0.1:2526 &" in run.splitlines()


def test_each_message_is_printed_below_its_envelope() -> None:
    """A message sent with smtplib is printed with MAIL FROM and every RCPT TO above its header, so a corrected
    recipient shows where the mail really went whatever To: says."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SCRIPT), f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            refused = smtp.sendmail("me@example-corp.com", ["j.doe@gmail.com", "crew@navy.mil"], MESSAGE)
            assert refused == {}
            smtp.sendmail("", ["me@example-corp.com"], b"Subject: notice\r\n\r\nheld\r\n")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    lines = out.decode().splitlines()
    first = lines.index("MAIL FROM:<me@example-corp.com>")
    assert lines[first + 1 : first + 4] == ["RCPT TO:<j.doe@gmail.com>", "RCPT TO:<crew@navy.mil>", ""]
    assert lines[first + 4] == "From: me@example-corp.com"
    assert "Passport numbers." in lines
    second = lines.index("MAIL FROM:<>")
    assert lines[second + 1] == "RCPT TO:<me@example-corp.com>"
    assert first < second
