"""`rcptguard learn`, `known` and `report observe` on archives in every format the readers know: counts checked
against the archives' own lists, an import repeated or a log grown counting nothing twice, inbound mail as
evidence, bad input reported, never a crash."""

from __future__ import annotations

import datetime as dt
import gc
import gzip
import json
import random
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from click.testing import CliRunner, Result

from rcptguard.cli import main
from rcptguard.guard import Guard
from rcptguard.history import Batch
from rcptguard.history.learn import FINGERPRINT_RECORDS, Importer, fingerprint
from rcptguard.policy import load_policy
from rcptguard.sources import Record, Source, open_sources
from rcptguard.store import Store
from rcptguard.store.history import SourceMark, StoreHistory
from tests.support.archives import (
    Delivery,
    Sent,
    google_log_csv,
    m365_trace_csv,
    postfix_lines,
    write_eml_dir,
    write_log,
    write_maildir,
    write_mbox,
)

START = dt.datetime(2026, 10, 1, 8, tzinfo=dt.UTC)
OWN = "org.example"


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def deliveries(count: int, seed: int = 3) -> list[Delivery]:
    """Mail from ten people at org.example to partners, most of it delivered, some deferred or bounced."""
    rng = random.Random(seed)
    domains = ["partner-example.com", "contoso.com", "northwind.de", "gmail.com"] + [f"firm{i}.com" for i in range(30)]
    out = []
    for n in range(count):
        rcpts = [(f"p{rng.randrange(40)}@{rng.choice(domains)}", rng.choice(("sent", "sent", "sent", "deferred")))
                 for _ in range(rng.choice((1, 1, 2, 3)))]
        out.append(Delivery(f"Q{n:08X}", f"user{rng.randrange(10)}@{OWN}", rcpts, START + dt.timedelta(minutes=n),
                            f"m{n}@{OWN}"))
    return out


def reference(sent: list[Delivery]) -> Counter[str]:
    """Messages per domain counted the plain way: each message once per domain it was delivered to."""
    counts: Counter[str] = Counter()
    for d in sent:
        counts.update({a.rsplit("@", 1)[1] for a, status in d.recipients if status == "sent"})
    return counts


def counted(db: str) -> dict[str, int]:
    listed = cli("known", "list", "--all", "--format", "jsonl", "--db", db).output
    rows = [json.loads(line) for line in listed.splitlines()]
    return {r["domain"]: r["messages"] for r in rows if r["messages"]}


def test_a_postfix_log_is_counted_exactly_and_only_once(tmp_path: Path) -> None:
    """The counts of a log equal the reference computed from the deliveries themselves; the same log again, its
    gzipped rotation, or the log after it grew add only what is new."""
    db = f"sqlite:///{tmp_path / 'h.db'}"
    sent = deliveries(1500)
    log = write_log(tmp_path / "mail.log", postfix_lines(sent[:1000]))
    first = cli("learn", str(log), "--own", OWN, "--db", db)
    assert first.exit_code == 0, first.output
    assert counted(db) == reference(sent[:1000])
    rotated = tmp_path / "rotated" / "mail.log.1.gz"
    rotated.parent.mkdir()
    rotated.write_bytes(gzip.compress(log.read_bytes()))
    again = cli("learn", str(log), str(rotated), "--own", OWN, "--db", db)
    assert "total: 0 records read" in again.output
    assert counted(db) == reference(sent[:1000])
    write_log(log, postfix_lines(sent))  # the log grew
    cli("learn", str(log), "--own", OWN, "--db", db)
    assert counted(db) == reference(sent)
    history = StoreHistory(Store.open(db))
    facts = history.facts(f"user1@{OWN}", ["p1@contoso.com"], START)
    expected = sum(1 for d in sent if d.sender == f"user1@{OWN}"
                   and any(a.endswith("@contoso.com") and s == "sent" for a, s in d.recipients))
    assert facts.domains["contoso.com"].sender.count == expected
    assert facts.domains["contoso.com"].senders == len({d.sender for d in sent if any(
        a.endswith("@contoso.com") and s == "sent" for a, s in d.recipients)})


def sent_messages() -> list[Sent]:
    return [Sent(f"ann@{OWN}", ("bob@partner-example.com", "kim@contoso.com"), START, message_id="a1@x"),
            Sent(f"ann@{OWN}", ("bob@partner-example.com",), START + dt.timedelta(hours=1), cc=("lee@contoso.com",),
                 message_id="a2@x"),
            Sent("bob@partner-example.com", (f"ann@{OWN}",), START + dt.timedelta(hours=2), message_id="b1@x")]


def test_mailboxes_and_hosted_mail_exports(tmp_path: Path) -> None:
    """mbox, Maildir, a folder of .eml, a Microsoft 365 trace and a Google log export each teach the same history:
    two messages out to partner-example.com and contoso.com (To and Cc), one in from partner-example.com."""
    raw = [m.build() for m in sent_messages()]
    archives = {
        "mbox": write_mbox(tmp_path / "sent.mbox", raw),
        "maildir": tmp_path / "Maildir",
        "eml": tmp_path / "eml",
    }
    write_maildir(archives["maildir"], raw)
    write_eml_dir(archives["eml"], raw)
    for name, path in archives.items():
        db = f"sqlite:///{tmp_path / f'{name}.db'}"
        result = cli("learn", str(path), "--own", OWN, "--db", db)
        assert result.exit_code == 0, result.output
        assert counted(db) == {"partner-example.com": 2, "contoso.com": 2}, name
        [row] = [json.loads(x) for x in cli("known", "show", "partner-example.com", "--format", "jsonl",
                                             "--db", db).output.splitlines()]
        assert (row["inbound"], row["senders"]) == (1, 1), name
    trace = tmp_path / "trace.csv"
    trace.write_bytes(m365_trace_csv([(START, f"ann@{OWN}", "bob@partner-example.com", "Delivered", "t1@x"),
                                      (START, f"ann@{OWN}", "kim@contoso.com", "Failed", "t2@x")]))
    google = tmp_path / "google.csv"
    google.write_bytes(google_log_csv([(START, f"ann@{OWN}", "bob@partner-example.com", "g1@x", "SMTP_OUT")]))
    for path in (trace, google):
        db = f"sqlite:///{tmp_path / f'{path.stem}.db'}"
        assert cli("learn", str(path), "--own", OWN, "--db", db).exit_code == 0
        assert counted(db) == {"partner-example.com": 1}, path.name


def numbered(count: int, first: int = 0) -> list[bytes]:
    """`count` messages from ann@org.example, one to each of p<n>@firm<n>.com, numbered from `first`."""
    return [Sent(f"ann@{OWN}", (f"p{n}@firm{n}.com",), START + dt.timedelta(hours=n), message_id=f"n{n}@x").build()
            for n in range(first, first + count)]


def test_a_folder_of_messages_imported_again_counts_only_its_new_messages(tmp_path: Path) -> None:
    """A folder of .eml and a Maildir, imported, then grown with messages whose files sort before and among the old
    ones, the Maildir's new/ moved to cur/ with flags (as a mail client does), one old file copied under another
    name: imported again, only the new messages count, each once. A folder marked the earlier way (one mark for
    the folder, read on from its first records) is not counted again."""
    eml, maildir = tmp_path / "eml", tmp_path / "Maildir"
    write_eml_dir(eml, numbered(10))
    write_maildir(maildir, numbered(10))
    for path in (eml, maildir):
        db = f"sqlite:///{tmp_path / f'{path.name}.db'}"
        assert "10 records read" in cli("learn", str(path), "--own", OWN, "--db", db).output
        assert cli("learn", str(path), "--own", OWN, "--db", db).output.count("0 records read") == 1
    for n, raw in enumerate(numbered(5, first=10)):  # files that sort first, and among the old ones
        (eml / f"a-{n}.eml").write_bytes(raw)
    (eml / "sub" / "message-0001-copy.eml").write_bytes((eml / "sub" / "message-0001.eml").read_bytes())
    for n, raw in enumerate(numbered(5, first=10)):
        (maildir / "new" / f"1767225000.M{n}P9.host").write_bytes(raw)  # older names than the first import's
    for old in list((maildir / "new").iterdir())[:3]:
        old.rename(maildir / "cur" / f"{old.name}:2,S")
    for path in (eml, maildir):
        db = f"sqlite:///{tmp_path / f'{path.name}.db'}"
        again = cli("learn", str(path), "--own", OWN, "--db", db)
        assert "total: 5 records read" in again.output, again.output
        assert counted(db) == {f"firm{n}.com": 1 for n in range(15)}, path.name

    legacy = tmp_path / "legacy"
    write_eml_dir(legacy, numbered(12))
    db = f"sqlite:///{tmp_path / 'legacy.db'}"
    store = StoreHistory(Store.open(db))
    for source in open_sources([legacy]):  # as learn reads it: the folder, and its sub-folder
        records = list(source.records())
        store.record_source(SourceMark(fingerprint(records[:FINGERPRINT_RECORDS]), source.format, str(source.path),
                                       len(records)), Batch())
    assert "total: 0 records read" in cli("learn", str(legacy), "--own", OWN, "--db", db).output
    [first] = numbered(1, first=20)
    (legacy / "a-first.eml").write_bytes(first)  # sorts first: the old mark no longer matches, the new ones do
    again = cli("learn", str(legacy), "--own", OWN, "--db", db)
    assert "total: 1 records read" in again.output, again.output


def test_counts_lists_and_bad_input(tmp_path: Path) -> None:
    """A list of domains with counts is learned; binary junk, a truncated gzip and a missing file are reported
    with what was wrong, the good archives still imported, and the exit status says something failed."""
    counts = tmp_path / "counts.txt"
    counts.write_text("domain,count\npartner-example.com,312\ncontoso.com,4\n")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 50)
    truncated = tmp_path / "mail.log.2.gz"
    truncated.write_bytes(gzip.compress("\n".join(postfix_lines(deliveries(50))).encode())[:300])
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = CliRunner().invoke(main, ["learn", str(counts), str(junk), str(truncated), str(tmp_path / "none.log"),
                                       "--db", db])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert counted(db) == {"partner-example.com": 312, "contoso.com": 4}
    assert "junk.bin: not a format rcptguard reads" in result.output
    assert "none.log: no such file or folder" in result.output


def test_a_near_miss_in_an_archive_waits_for_a_second_sender_or_inbound_mail(tmp_path: Path) -> None:
    """gmial.com in the sent mail of one person is imported but does not count; a message from gmial.com makes
    it real."""
    db = f"sqlite:///{tmp_path / 'n.db'}"
    one = [Sent(f"ann@{OWN}", ("j@gmial.com",), START + dt.timedelta(days=d), message_id=f"n{d}@x") for d in range(5)]
    cli("learn", str(write_mbox(tmp_path / "a.mbox", [m.build() for m in one])), "--own", OWN, "--db", db)
    rows = {json.loads(x)["domain"]: json.loads(x) for x in
            cli("known", "list", "--all", "--format", "jsonl", "--db", db).output.splitlines()}
    assert rows["gmial.com"]["known"] is False
    assert rows["gmial.com"]["near"] == "gmail.com"
    shown = cli("known", "show", "gmial.com", "--db", db).output
    assert "it is one slip from gmail.com, so it needs 2 people writing to it or a message from it" in shown
    inbound = [Sent("j@gmial.com", (f"ann@{OWN}",), START, message_id="in@x")]
    cli("learn", str(write_mbox(tmp_path / "in.mbox", [m.build() for m in inbound])), "--own", OWN, "--db", db)
    assert "known" in cli("known", "list", "--db", db).output.split("gmial.com")[0].splitlines()[-1]


def test_known_add_and_forget(tmp_path: Path) -> None:
    """`known add` makes a domain nobody wrote to known, `forget` a counted one unknown; both show in the list."""
    db = f"sqlite:///{tmp_path / 'k.db'}"
    counts = tmp_path / "counts.txt"
    counts.write_text("partner-example.com 12\n")
    cli("learn", str(counts), "--db", db)
    assert cli("known", "add", "fabrikam.com", "--db", db).exit_code == 0
    assert cli("known", "forget", "partner-example.com", "--db", db).exit_code == 0
    listed = cli("known", "list", "--format", "jsonl", "--db", db).output
    assert [json.loads(x)["domain"] for x in listed.splitlines()] == ["fabrikam.com"]
    assert StoreHistory(Store.open(db)).added() == ["fabrikam.com"]
    unknown = CliRunner().invoke(main, ["known", "show", "nowhere.example", "--db", db])
    assert unknown.exit_code == 1
    assert "history knows nothing of nowhere.example" in unknown.output


def test_every_postfix_log_style_teaches_the_same(tmp_path: Path) -> None:
    """Classic syslog, RFC 3339 syslog and the journal's JSON export of the same deliveries (one gzipped) give
    the same counts."""
    sent = deliveries(200, seed=9)
    for style in ("classic", "rfc3339", "journal"):
        db = f"sqlite:///{tmp_path / f'{style}.db'}"
        log = write_log(tmp_path / f"{style}.log.gz", postfix_lines(sent, style=style))
        result = cli("learn", str(log), "--own", OWN, "--db", db)
        assert result.exit_code == 0, result.output
        assert counted(db) == reference(sent), style


class _Cyclic:
    """An object in a reference cycle: only the cycle collector frees it."""

    def __init__(self) -> None:
        self.me = self


def test_an_import_runs_the_cycle_collector_at_its_checkpoints_only(tmp_path: Path) -> None:
    """The collector is paused while records stream in (it walked the batch's tallies over and over: a quarter of
    an import's CPU), a cycle made meanwhile is freed at the next checkpoint, and the collector is left as found."""

    seen: list[tuple[int, bool, bool | None]] = []  # (record, collector on, the first cycle still alive)
    first: list[weakref.ref[_Cyclic]] = []

    class Made(Source):
        format = "test"

        def records(self) -> Iterator[Record]:
            for n in range(12):
                if n == 1:
                    first.append(weakref.ref(_Cyclic()))
                seen.append((n, gc.isenabled(), first[0]() is not None if first else None))
                yield Record(START + dt.timedelta(minutes=n), f"user@{OWN}", (f"p{n}@partner.example",), None,
                             f"made:{n}", "sent")

    history = StoreHistory(Store.open(f"sqlite:///{tmp_path / 'h.db'}"))
    importer = Importer(history, Guard(load_policy()), [OWN], checkpoint=FINGERPRINT_RECORDS + 2)
    assert gc.isenabled()
    done = importer.run(Made(tmp_path / "made"))
    assert done.outbound == 12
    assert gc.isenabled()
    assert not any(on for _, on, _ in seen)
    assert [alive for n, _, alive in seen if n in (2, 9)] == [True, True]  # not freed before the checkpoint...
    assert [alive for n, _, alive in seen if n == 11] == [False]  # ...and freed by it (10 records read)

    gc.disable()
    try:
        seen.clear()
        importer.run(Made(tmp_path / "again"))
        assert not gc.isenabled()
    finally:
        gc.enable()
