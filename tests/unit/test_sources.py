"""Unit tests for the archive readers (`rcptguard.sources`): every format, damage counted, memory flat."""

from __future__ import annotations

import datetime as dt
import gzip
import tracemalloc
from pathlib import Path

import pytest

from rcptguard.errors import SourceError
from rcptguard.sources import detect, open_source, open_sources
from rcptguard.sources.mailbox import Mbox
from rcptguard.sources.postfix import PostfixLog
from tests.support.archives import (
    Delivery,
    Sent,
    google_log_csv,
    m365_summary_csv,
    m365_trace_csv,
    mbox_bytes,
    postfix_lines,
    write_eml_dir,
    write_log,
    write_maildir,
    write_mbox,
)

T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


def _messages(count: int = 6) -> list[Sent]:
    return [Sent(f"Alice <alice{i}@example.com>", (f"Bob <bob{i}@army.mil>",), T0 + dt.timedelta(hours=i),
                 message_id=f"m{i}@example.com", cc=("carol@gmail.com",) if i % 2 else ())
            for i in range(count)]


# -- mailboxes ------------------------------------------------------------------------------------------


def test_mbox_records_and_offsets(tmp_path: Path) -> None:
    """Each mbox message is one record: its From:, To: and Cc:, its date and id, and the byte offset of its
    `From ` line; the content comes back with the From_ quoting undone."""
    sent = _messages()
    sent[2].body = "From here on the plan changes.\n>From the archive.\n"
    path = write_mbox(tmp_path / "sent.mbox", [m.build() for m in sent])
    source = open_source(path)
    assert source.format == "mbox"
    records = list(source.records())
    assert [r.message_id for r in records] == [f"m{i}@example.com" for i in range(6)]
    assert records[1].recipients == ("bob1@army.mil", "carol@gmail.com")
    assert records[0].recipients == ("bob0@army.mil",)
    assert records[0].sender == "alice0@example.com"
    assert records[3].when == T0 + dt.timedelta(hours=3)
    assert records[0].status is None
    data = path.read_bytes()
    for record in records:
        offset = int(record.where.rsplit(":", 1)[1])
        assert data[offset : offset + 5] == b"From "
    content = records[2].content()
    assert content is not None
    assert b"\nFrom here on the plan changes." in content
    assert b"\n>From the archive." in content
    assert not content.startswith(b"From ")
    assert not source.problems


def test_mbox_envelope_sender_wins(tmp_path: Path) -> None:
    """An mbox `From ` line with a real address is the envelope sender; MAILER-DAEMON falls back to From:."""
    raw = Sent("header@example.com", ("x@army.mil",), T0).build()
    path = tmp_path / "m.mbox"
    path.write_bytes(mbox_bytes([raw, raw], senders=["envelope@example.com", "MAILER-DAEMON"]))
    first, second = open_source(path).records()
    assert first.sender == "envelope@example.com"
    assert second.sender == "header@example.com"


def test_mbox_parts_give_the_same_records(tmp_path: Path) -> None:
    """An mbox cut into byte ranges for a process pool yields every message exactly once."""
    sent = [Sent("a@example.com", (f"r{i}@army.mil",), T0, message_id=f"p{i}@x", body="x" * 20_000 + "\n")
            for i in range(400)]
    path = write_mbox(tmp_path / "big.mbox", [m.build() for m in sent])
    whole = [r.message_id for r in open_source(path).records()]
    parts = open_source(path).parts(3)
    assert len(parts) == 3
    pieces = [r.message_id for part in parts for r in part.records()]
    assert pieces == whole
    assert len(whole) == 400


def test_maildir_with_flags(tmp_path: Path) -> None:
    """A Maildir's cur/ (with :2, flags) and new/ are read, tmp/ is not; `where` is the file's path."""
    sent = _messages(5)
    files = write_maildir(tmp_path / "Sent", [m.build() for m in sent])
    assert detect(tmp_path / "Sent") == "maildir"
    records = list(open_source(tmp_path / "Sent").records())
    assert sorted(r.where for r in records) == sorted(str(f) for f in files)
    assert sorted(r.message_id or "" for r in records) == sorted(f"m{i}@example.com" for i in range(5))
    assert all(r.content() == Path(r.where).read_bytes() for r in records)


def test_eml_dir_nested_and_single(tmp_path: Path) -> None:
    """A folder of .eml (nested) is one source; a single .eml is one too."""
    sent = _messages(4)
    files = write_eml_dir(tmp_path / "export", [m.build() for m in sent])
    assert detect(tmp_path / "export") == "eml-dir"
    assert len(list(open_source(tmp_path / "export").records())) == 4
    assert detect(files[0]) == "eml"
    (only,) = open_source(files[0]).records()
    assert only.where == str(files[0])


def test_idn_in_either_form_meets(tmp_path: Path) -> None:
    """An IDN recipient in U-label or A-label form, in any case, comes out as one A-label address."""
    sent = [Sent("a@example.com", ("Jöran <J.Doe@Bücher.example>",), T0),
            Sent("a@example.com", ("j.doe@xn--bcher-kva.example",), T0)]
    path = write_mbox(tmp_path / "idn.mbox", [m.build() for m in sent])
    recipients = {r.recipients for r in open_source(path).records()}
    assert recipients == {("j.doe@xn--bcher-kva.example",)}


# -- damage ---------------------------------------------------------------------------------------------


def test_truncated_mbox_counted(tmp_path: Path) -> None:
    """An mbox cut inside a header block yields the messages before it and counts the cut."""
    data = mbox_bytes([m.build() for m in _messages(3)])
    cut = data.rindex(b"Subject:")
    path = tmp_path / "cut.mbox"
    path.write_bytes(data[:cut])
    source = open_source(path)
    records = list(source.records())
    assert len(records) == 3
    assert source.problems["truncated"] >= 1


def test_huge_header_line_skipped(tmp_path: Path) -> None:
    """A message with a 10 MB header line is counted and skipped; its neighbours are read."""
    good = [m.build() for m in _messages(2)]
    huge = b"X-Junk: " + b"a" * 10_000_000 + b"\nTo: x@army.mil\n\nbody\n"
    path = write_mbox(tmp_path / "huge.mbox", [good[0], huge, good[1]])
    source = open_source(path)
    assert [r.message_id for r in source.records()] == ["m0@example.com", "m1@example.com"]
    assert source.problems["header too long"] == 1
    assert source.problems.examples["header too long"][0].startswith(f"{path}:")


def test_binary_and_non_utf8_headers(tmp_path: Path) -> None:
    """NUL octets and Latin-1 in headers are counted, the message still read; a bad address is counted."""
    raw = (b"From: Ren\xe9 <rene@example.com>\nTo: a@army.mil, not an address, b@@x\nSubject: caf\xe9\x00\n"
           b"Date: Mon, 2 Mar 2026 09:30:00 +0000\n\nbody\n")
    path = write_mbox(tmp_path / "bad.mbox", [raw])
    source = open_source(path)
    (record,) = source.records()
    assert record.recipients == ("a@army.mil",)
    assert record.sender == "rene@example.com"
    assert source.problems["binary"] == 1
    assert source.problems["not UTF-8"] == 1
    assert source.problems["bad address"] == 1


def test_junk_in_a_folder_is_an_unknown_source(tmp_path: Path) -> None:
    """Binary junk met while walking a folder becomes a source with no records and one problem; a path given
    by name in no known format is a SourceError."""
    (tmp_path / "junk.bin").write_bytes(bytes(range(256)) * 100)
    write_mbox(tmp_path / "a.mbox", [m.build() for m in _messages(2)])
    sources = open_sources([tmp_path])
    assert sorted(s.format for s in sources) == ["mbox", "unknown"]
    unknown = next(s for s in sources if s.format == "unknown")
    assert unknown.problems["unknown format"] == 1
    with pytest.raises(SourceError, match="not a format"):
        detect(tmp_path / "junk.bin")
    with pytest.raises(SourceError, match="no such file"):
        detect(tmp_path / "missing")


def test_flat_memory_on_a_large_mbox(tmp_path: Path) -> None:
    """Streaming 20 MB of mbox holds under 4 MB: the bodies stay on disk (bench/ measures it on gigabytes)."""
    body = ("lorem ipsum dolor sit amet " * 40 + "\n") * 36
    raw = [Sent("a@example.com", ("b@army.mil",), T0, body=body, message_id=f"{i}@x").build() for i in range(250)]
    path = tmp_path / "large.mbox"
    with path.open("wb") as out:
        for _ in range(2):
            out.write(mbox_bytes(raw))
    assert path.stat().st_size > 20_000_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in Mbox(path).records())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 500
    assert peak < 4_000_000


# -- Postfix logs ---------------------------------------------------------------------------------------


def _deliveries() -> list[Delivery]:
    return [
        Delivery("4AbC1", "alice@example.com", [("bob@army.mil", "sent"), ("eve@army.ml", "sent")], T0, "a@x"),
        Delivery("4AbC2", "carol@example.com", [("dan@gmial.com", "bounced")], T0 + dt.timedelta(minutes=5), "b@x"),
        Delivery("4AbC3", "", [("alice@example.com", "deferred")], T0 + dt.timedelta(minutes=9), "c@x"),
    ]


@pytest.mark.parametrize("style", ["classic", "rfc3339", "journal"])
def test_postfix_deliveries(tmp_path: Path, style: str) -> None:
    """Each to= line is a record with its status, its sender and message id joined by queue id."""
    path = write_log(tmp_path / "mail.log", postfix_lines(_deliveries(), style))
    assert detect(path) == "postfix-log"
    source = open_source(path)
    records = list(source.records())
    assert [(r.sender, r.recipients, r.status, r.message_id) for r in records] == [
        ("alice@example.com", ("bob@army.mil",), "sent", "a@x"),
        ("alice@example.com", ("eve@army.ml",), "sent", "a@x"),
        ("carol@example.com", ("dan@gmial.com",), "bounced", "b@x"),
        ("", ("alice@example.com",), "deferred", "c@x"),
    ]
    assert records[2].when is not None
    assert records[2].when.astimezone(dt.UTC) == T0 + dt.timedelta(minutes=5) or style == "classic"
    assert records[0].where == f"{path}:4"
    assert not source.problems


def test_classic_timestamp_in_the_local_zone(tmp_path: Path) -> None:
    """A classic syslog time is read in the given zone, the year from the file (a later month: last year)."""
    zone = dt.timezone(dt.timedelta(hours=2))
    path = write_log(tmp_path / "mail.log", postfix_lines(_deliveries()[:1]))
    (first, _) = PostfixLog(path, local_zone=zone).records()
    assert first.when == dt.datetime(2026, 3, 2, 9, 30, tzinfo=zone) or first.when == dt.datetime(
        dt.datetime.now(zone).year - (dt.datetime.now(zone).month < 3), 3, 2, 9, 30, tzinfo=zone)


def test_rotated_logs_join_across_rotation(tmp_path: Path) -> None:
    """mail.log.2.gz, mail.log.1 and mail.log are read oldest first as one stream: a from= in an older file
    joins a to= in a newer one; a to= whose from= was rotated away is counted once, not lost."""
    deliveries = [Delivery(f"Q{i:04d}", f"s{i}@example.com", [(f"r{i}@army.mil", "sent")],
                           T0 + dt.timedelta(minutes=i)) for i in range(6)]
    lines = postfix_lines(deliveries)
    orphan = [line for line in postfix_lines([Delivery("ORPHAN", "x@example.com", [
        ("a@army.mil", "sent"), ("b@army.mil", "deferred")], T0)]) if "to=<" in line]
    assert "Q0002: from=" in lines[12]
    write_log(tmp_path / "mail.log.2.gz", orphan + lines[:13])  # Q0002 is cut after its from= line
    write_log(tmp_path / "mail.log.1", lines[13:25])
    write_log(tmp_path / "mail.log", lines[25:])
    (tmp_path / "mail.log.3").write_bytes(b"")  # an empty file, as rotation leaves them
    assert detect(tmp_path) == "postfix-log"
    (source,) = open_sources([tmp_path])
    records = list(source.records())
    assert [r.sender for r in records] == ["", ""] + [f"s{i}@example.com" for i in range(6)]
    assert records[4].where.startswith(str(tmp_path / "mail.log.1"))
    assert source.problems["no from= line"] == 1


def test_truncated_gzip_and_junk_lines(tmp_path: Path) -> None:
    """A gzipped log cut short yields what it holds and counts the cut; junk lines are counted."""
    lines = postfix_lines(_deliveries())
    data = gzip.compress(("\n".join(["\x00\x01 binary junk", *lines]) + "\n").encode())
    (tmp_path / "mail.log.1.gz").write_bytes(data[: len(data) * 2 // 3])
    source = open_source(tmp_path / "mail.log.1.gz", "postfix-log")
    list(source.records())
    assert source.problems["truncated"] == 1
    assert source.problems["unparsable line"] == 1


# -- hosted mail's exports ------------------------------------------------------------------------------


@pytest.mark.parametrize("utf16", [False, True])
def test_m365_message_trace(tmp_path: Path, utf16: bool) -> None:
    """Get-MessageTrace | Export-Csv (with its #TYPE line, UTF-8 or UTF-16): one record per row."""
    path = tmp_path / "trace.csv"
    path.write_bytes(m365_trace_csv([(T0, "alice@contoso.com", "bob@army.ml", "Delivered", "m1@x"),
                                     (T0, "alice@contoso.com", "carol@gmial.com", "Failed", "m2@x")], utf16=utf16))
    assert detect(path) == "m365-trace"
    records = list(open_source(path).records())
    assert [(r.sender, r.recipients, r.status, r.message_id, r.when) for r in records] == [
        ("alice@contoso.com", ("bob@army.ml",), "sent", "m1@x", T0),
        ("alice@contoso.com", ("carol@gmial.com",), "bounced", "m2@x", T0),
    ]
    assert records[0].where == f"{path}:3"


def test_m365_historical_summary(tmp_path: Path) -> None:
    """A historical search's summary report: one record per recipient in recipient_status, outbound."""
    path = tmp_path / "summary.csv"
    path.write_bytes(m365_summary_csv([(T0, "alice@contoso.com", [("bob@army.ml", "Send"),
                                                                  ("eve@army.mil", "Fail")], "m1@x")]))
    assert detect(path) == "m365-trace"
    records = list(open_source(path).records())
    assert [(r.recipients, r.status, r.direction) for r in records] == [
        (("bob@army.ml",), "sent", "out"), (("eve@army.mil",), "bounced", "out")]
    assert records[0].when == T0


def test_google_email_log_search(tmp_path: Path) -> None:
    """An Email Log Search export: a message's recipient once, though the export lists each delivery step."""
    path = tmp_path / "els.csv"
    path.write_bytes(google_log_csv([(T0, "alice@example.com", "bob@army.ml", "g1@x", "SMTP_OUT"),
                                     (T0, "alice@example.com", "carol@example.com", "g1@x", "GMAIL_INBOX")]))
    assert detect(path) == "google-log"
    records = list(open_source(path).records())
    assert [(r.recipients, r.status, r.message_id, r.direction) for r in records] == [
        (("bob@army.ml",), "sent", "g1@x", "out"), (("carol@example.com",), "sent", "g1@x", "out")]
    assert records[0].when == T0


def test_counts(tmp_path: Path) -> None:
    """A plain list of domains or addresses, with optional counts and a header line."""
    path = tmp_path / "counts.csv"
    path.write_text("domain,count\narmy.mil,120\n# a comment\nBÜCHER.example, 3\nbob@Gmail.com\nbad..domain\n"
                    "not a domain\n")
    assert detect(path) == "counts"
    source = open_source(path)
    assert [(r.recipients, r.count) for r in source.records()] == [
        (("army.mil",), 120), (("xn--bcher-kva.example",), 3), (("bob@gmail.com",), 1)]
    assert source.problems == {"bad address": 1, "unparsable line": 1}
