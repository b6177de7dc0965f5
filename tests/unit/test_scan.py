"""Unit tests for `rcptguard scan` (`rcptguard.audit`): archives in every format with known misdirected messages,
bad input, the archive's own history, re-runs and --since."""

from __future__ import annotations

import datetime as dt
import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from rcptguard.audit.findings import read_findings
from rcptguard.audit.scan import ScanOptions, run_scan
from rcptguard.policy import Policy, load_policy
from tests.support.archives import (
    DOCX,
    MRZ,
    PDF,
    Delivery,
    Sent,
    docx_bytes,
    google_log_csv,
    m365_trace_csv,
    mbox_bytes,
    pdf_bytes,
    postfix_lines,
    write_eml_dir,
    write_log,
    write_maildir,
)
from tests.support.processes import RCPTGUARD

T0 = dt.datetime(2025, 1, 6, 9, 0, tzinfo=dt.UTC)
CLEAN = ("bob@army.mil", "ann@partner.com", "colleague@corp.example", "friend@gmail.com")
ONE = ScanOptions(jobs=1)


def _policy() -> Policy:
    return load_policy(None).with_domains(("mil", "corp.example"), ("partner.com",))


def _sent(number: int, to: str, body: str = "See you on Monday.\n", **kwargs: object) -> Sent:
    return Sent(f"user{number % 5}@corp.example", (to,), T0 + dt.timedelta(days=number), body=body,
                message_id=f"m{number}@corp.example", **kwargs)  # type: ignore[arg-type]


def _archive(root: Path) -> dict[str, str]:
    """Every format, with known misdirected recipients: slip address -> the severity its message should get."""
    expected: dict[str, str] = {}
    # mbox: From_ quoting in bodies, two slips (one carrying an SSN)
    mbox = [_sent(i, CLEAN[i % 4], "From the desk of the director.\n>From earlier.\n") for i in range(16)]
    mbox.append(_sent(20, "slip1@army.ml", "Crew manifest attached.\nSSN 536-22-8726\n"))
    mbox.append(_sent(21, "slip2@corp.exampel", "Lunch on Friday?\n"))
    expected |= {"slip1@army.ml": "high", "slip2@corp.exampel": "none"}
    (root / "sent.mbox").write_bytes(mbox_bytes([m.build() for m in mbox]))
    # Maildir with flags: a PDF with a passport's machine-readable zone
    maildir = [_sent(30 + i, CLEAN[i % 4]) for i in range(6)]
    maildir.append(_sent(40, "slip3@navy.ml", "Travel documents.\n", attachments=[
        ("traveller.pdf", PDF, pdf_bytes(MRZ.splitlines()))]))
    expected["slip3@navy.ml"] = "high"
    write_maildir(root / "Maildir", [m.build() for m in maildir])
    # .eml folder: nested multipart, base64 and quoted-printable, 8-bit and a broken charset, a DOCX
    emls = [_sent(50 + i, CLEAN[i % 4], transfer="base64" if i % 2 else "quoted-printable") for i in range(6)]
    emls.append(_sent(60, "slip4@partnr.com", "Draft attached.\n", html="<p>Draft</p>", attachments=[
        ("draft.docx", DOCX, docx_bytes(["CUI", "Controlled by: Logistics"]))]))
    emls.append(_sent(61, "slip5@corp.exmaple", "Caf\u00e9 au lait \u2615\n", transfer="8bit"))
    expected |= {"slip4@partnr.com": "medium", "slip5@corp.exmaple": "none"}
    written = write_eml_dir(root / "eml", [m.build() for m in emls])
    broken = (b"From: user1@corp.example\nTo: slip6@army.ml\nSubject: =?x-no-such?q?caf=E9?=\n"
              b"Date: Mon, 6 Jan 2025 09:00:00 +0000\nMessage-ID: <broken@corp.example>\nMIME-Version: 1.0\n"
              b"Content-Type: text/plain; charset=x-no-such\n\npassword: hunter2-and-more\n")
    (written[0].parent / "broken-charset.eml").write_bytes(broken)
    expected["slip6@army.ml"] = "high"
    # a Postfix log: deliveries only, no content
    deliveries = [Delivery(f"Q{i:04X}", "user1@corp.example", [(CLEAN[i % 4], "sent")], T0) for i in range(8)]
    deliveries.append(Delivery("QSLIP", "user2@corp.example", [("slip7@army.ml", "sent"),
                                                               ("bob@army.mil", "sent")], T0))
    expected["slip7@army.ml"] = "unknown"
    (root / "logs").mkdir()
    write_log(root / "logs" / "mail.log", postfix_lines(deliveries))
    # Microsoft 365 and Google Workspace exports
    (root / "trace.csv").write_bytes(m365_trace_csv(
        [(T0, "user3@corp.example", r, "Delivered", f"t{n}@x") for n, r in enumerate([*CLEAN, "slip8@army.ml"])]))
    (root / "els.csv").write_bytes(google_log_csv(
        [(T0, "user4@corp.example", r, f"g{n}@x", "SMTP_OUT") for n, r in enumerate([*CLEAN, "slip9@navy.ml"])]))
    expected |= {"slip8@army.ml": "unknown", "slip9@navy.ml": "unknown"}
    return expected


def test_every_format_every_slip_found_none_invented(tmp_path: Path) -> None:
    """Archives in every format: each misdirected recipient is found once, with the severity its content gives
    and a place to find it; no clean recipient is a finding."""
    root = tmp_path / "archive"
    root.mkdir()
    expected = _archive(root)
    result = run_scan([root], _policy(), tmp_path / "out", ONE)
    found = {f.recipient: f for f in result.findings}
    assert len(result.findings) == len(found), "a recipient was found twice"
    assert set(found) == set(expected)
    assert {r: f.severity for r, f in found.items()} == expected
    assert result.sources == {"mbox": 1, "maildir": 1, "eml-dir": 2, "postfix-log": 1, "m365-trace": 1,
                              "google-log": 1}  # eml/ and eml/sub/ are two folders of .eml
    assert result.messages == 18 + 7 + 9 + 10 + 5 + 5
    slip1 = found["slip1@army.ml"]
    assert slip1.intended == "army.mil"
    assert slip1.verdict == "hold"
    assert "NATIONAL_ID" in slip1.raised_by
    path, _, offset = slip1.where.rpartition(":")
    assert Path(path).read_bytes()[int(offset) : int(offset) + 5] == b"From "
    assert found["slip3@navy.ml"].where.startswith(str(root / "Maildir"))
    assert "PASSPORT" in found["slip3@navy.ml"].raised_by
    assert found["slip7@army.ml"].status == "sent"
    assert found["slip7@army.ml"].where.startswith(str(root / "logs" / "mail.log") + ":")
    assert [f.recipient for f in read_findings(tmp_path / "out" / "findings.jsonl")].count("slip1@army.ml") == 1
    lines = (tmp_path / "out" / "findings.csv").read_text("utf-8").splitlines()
    assert len(lines) == 1 + len(expected)
    assert "536-22-8726" not in (tmp_path / "out" / "findings.jsonl").read_text("utf-8")


def test_bad_input_counted_never_a_crash(tmp_path: Path) -> None:
    """A truncated mbox, broken MIME, binary junk, a 10 MB header line, non-UTF-8 headers and a zip bomb are
    counted in the summary and skipped; the good messages beside them are still found."""
    root = tmp_path / "bad"
    root.mkdir()
    good = _sent(1, "slip1@army.ml", "SSN 536-22-8726\n").build()
    huge = b"From: a@corp.example\nX-Junk: " + b"a" * 10_000_000 + b"\nTo: slip2@army.ml\n\nbody\n"
    broken_mime = (b"From: a@corp.example\nTo: slip3@army.ml\nMIME-Version: 1.0\n"
                   b'Content-Type: multipart/mixed; boundary="AA"\n\n--AA\nContent-Type: text/plain\n\nhello\n--AB--\n')
    latin = b"From: Ren\xe9 <rene@corp.example>\nTo: slip4@army.ml\nSubject: caf\xe9\n\nbody\n"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"0" * 60_000_000)
    bomb = _sent(5, "slip5@army.ml", attachments=[("big.docx", DOCX, out.getvalue())]).build()
    data = mbox_bytes([good, huge, broken_mime, latin, bomb, good])
    (root / "cut.mbox").write_bytes(data[: data.rindex(b"Subject:")])
    (root / "junk.bin").write_bytes(bytes(range(256)) * 64)
    result = run_scan([root], _policy(), tmp_path / "out", ONE)
    found = sorted(f.recipient for f in result.findings)
    assert found == ["slip1@army.ml", "slip1@army.ml", "slip3@army.ml", "slip4@army.ml", "slip5@army.ml"]
    assert result.problems["header too long"] == 1
    assert result.problems["truncated"] >= 1
    assert result.problems["not UTF-8"] == 1
    assert result.problems["unknown format"] == 1
    assert result.unread_content >= 1


def test_history_in_the_archive(tmp_path: Path) -> None:
    """A lookalike of a known domain written to for a year by several senders is a correspondent, not a
    finding; the same volume to a slip of a protected domain is still a finding until mail comes from it."""
    root = tmp_path / "history"
    root.mkdir()
    # partners.com (near partner.com) and army.ml, weekly, by three senders
    messages = [Sent(f"user{week % 3}@corp.example", (to,), T0 + dt.timedelta(weeks=week),
                     message_id=f"{week}.{to}").build()
                for week in range(60) for to in ("x@partners.com", "y@army.ml")]
    messages.append(Sent("z@partnr.com", ("user1@corp.example",), T0, message_id="in@partnr.com").build())
    messages.append(Sent("user1@corp.example", ("z@partnr.com",), T0, message_id="out@corp.example").build())
    (root / "all.mbox").write_bytes(mbox_bytes(messages))
    result = run_scan([root], _policy(), tmp_path / "out", ONE)
    domains = {f.domain for f in result.findings}
    assert domains == {"army.ml"}
    assert len(result.findings) == 60
    assert result.dropped_by_history == 61
    assert {f.domain_messages for f in result.findings} == {60}


def test_rerun_reads_only_what_is_new(tmp_path: Path) -> None:
    """A second scan of a grown archive (an mbox appended to, a Maildir file added, a log grown) adds only the
    new findings; the report counts every run."""
    root = tmp_path / "grow"
    root.mkdir()
    mbox = root / "sent.mbox"
    mbox.write_bytes(mbox_bytes([_sent(1, "slip1@army.ml").build(), _sent(2, "bob@army.mil").build()]))
    write_maildir(root / "Maildir", [_sent(3, "slip2@army.ml").build()])
    log = root / "logs" / "mail.log"
    log.parent.mkdir()
    lines = postfix_lines([Delivery("3F2A1C", "u@corp.example", [("slip3@army.ml", "sent")], T0)])
    write_log(log, lines)
    out = tmp_path / "out"
    first = run_scan([root], _policy(), out, ONE)
    assert sorted(f.recipient for f in first.findings) == ["slip1@army.ml", "slip2@army.ml", "slip3@army.ml"]
    with mbox.open("ab") as handle:
        handle.write(mbox_bytes([_sent(4, "slip4@army.ml").build()]))
    (root / "Maildir" / "new" / "1767225999.Mnew.host").write_bytes(_sent(5, "slip5@army.ml").build())
    write_log(log, lines + postfix_lines([Delivery("3F2A1D", "u@corp.example", [("slip6@army.ml", "sent")], T0)]))
    second = run_scan([root], _policy(), out, ONE)
    assert sorted(f.recipient for f in second.findings) == ["slip4@army.ml", "slip5@army.ml", "slip6@army.ml"]
    assert second.messages == 3
    third = run_scan([root], _policy(), out, ONE)
    assert third.findings == []
    assert len(list(read_findings(out / "findings.jsonl"))) == 6


def test_since(tmp_path: Path) -> None:
    """--since leaves out older messages."""
    root = tmp_path / "since"
    root.mkdir()
    (root / "sent.mbox").write_bytes(mbox_bytes([_sent(i, f"slip{i}@army.ml").build() for i in range(10)]))
    options = ScanOptions(jobs=1, since=T0 + dt.timedelta(days=7))
    result = run_scan([root], _policy(), tmp_path / "out", options)
    assert sorted(f.recipient for f in result.findings) == ["slip7@army.ml", "slip8@army.ml", "slip9@army.ml"]
    assert result.skipped == 7


@pytest.mark.parametrize("jobs", [2])
def test_command_with_a_process_pool(tmp_path: Path, jobs: int) -> None:
    """`rcptguard scan` with two worker processes over an mbox cut into parts finds what one process finds, and
    writes the report."""
    body = "Quarterly figures follow.\n" + ("x" * 76 + "\n") * 120
    messages = [_sent(i, "slip@army.ml" if i % 50 == 0 else CLEAN[i % 4], body).build() for i in range(1200)]
    archive = tmp_path / "big.mbox"
    archive.write_bytes(mbox_bytes(messages))
    assert archive.stat().st_size > 4 << 20
    command = [RCPTGUARD, "scan", str(archive), "--protect", "mil", "--protect",
               "corp.example", "--known", "partner.com", "--out", str(tmp_path / "out"), "--jobs", str(jobs)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "Findings: 24 new" in done.stdout
    findings = list(read_findings(tmp_path / "out" / "findings.jsonl"))
    assert len(findings) == 24
    assert len({f.where for f in findings}) == 24
    report = (tmp_path / "out" / "report.html").read_text("utf-8")
    assert "army.ml → army.mil" in report
    assert json.loads(report.split('<script type="application/json" id="data">')[1].split("</script>")[0])
