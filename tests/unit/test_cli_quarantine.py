"""The quarantine commands as an administrator meets them: no store created by a read, corrections checked by the
engine, and one JSON log line per decision."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import make_url

from rcptguard.cli.quarantine import quarantine as quarantine_group
from rcptguard.store.quarantine import Quarantine
from tests.holds import gmial_recipient
from tests.support.processes import free_port
from tests.support.sink import RecordingSink

CONTENT = b"From: alice@example.org\r\nTo: bob@gmial.com\r\nSubject: plans\r\n\r\nbody\r\n"


def run(*args: str, cwd: Path | None = None) -> Result:
    if cwd is None:
        return CliRunner().invoke(quarantine_group, list(args))
    before = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(quarantine_group, list(args))
    finally:
        os.chdir(before)


def hold_one(quarantine: Quarantine) -> str:
    return quarantine.hold(mail_from="alice@example.org", recipients=[gmial_recipient()], content=CONTENT,
                           client="mua.example")[0].id


def log_lines(result: Result) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]


# -- a command that only reads never creates a store ----------------------------------------------------------


@pytest.mark.parametrize("command", [["list"], ["show", "abc123"], ["release", "abc123"], ["cancel", "abc123"],
                                     ["mark-delivered", "abc123"]])
def test_no_store_in_the_directory_is_an_error_not_a_new_store(tmp_path: Path, command: list[str]) -> None:
    """Without --db or --config in a directory with no store, the command exits 1 with one line naming the file
    it looked for and how to point at the right one, and leaves no file behind."""
    result = run(*command, cwd=tmp_path)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert str(tmp_path / "rcptguard.db") in line
    assert "does not exist" in line
    assert "--db URL or --config FILE" in line
    assert "the default" in line
    assert list(tmp_path.iterdir()) == []


def test_a_mistyped_db_is_named_and_not_created(quarantine: Quarantine, tmp_path: Path) -> None:
    """`list --db` with a path next to the real store's exits 1 naming that path, instead of saying 'nothing held'."""
    hold_one(quarantine)
    wrong = tmp_path / "quarantine.bd"
    result = run("list", "--db", f"sqlite:///{wrong}")
    assert result.exit_code == 1
    assert "nothing held" not in result.output
    assert f"{wrong} does not exist (the URL is --db)" in result.stderr
    assert not wrong.exists()


def test_a_config_without_the_store_names_the_config(tmp_path: Path) -> None:
    """With --config whose [db] url names no existing store, the error says the URL came from that file."""
    config = tmp_path / "rcptguard.toml"
    config.write_text('[db]\nurl = "sqlite:///elsewhere/q.db"\n', "utf-8")
    result = run("list", "--config", str(config))
    assert result.exit_code == 1
    assert f"{tmp_path}/elsewhere/q.db does not exist (the URL is [db] url in {config})" in result.stderr
    assert not (tmp_path / "elsewhere").exists()


def test_a_database_without_the_schema_is_refused_not_migrated(tmp_path: Path) -> None:
    """An existing SQLite file that holds no rcptguard store is refused by `list` and left without tables (as an
    empty PostgreSQL database would be)."""
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()
    result = run("list", "--db", f"sqlite:///{other}")
    assert result.exit_code == 1
    assert "has no rcptguard store in it" in result.stderr
    with sqlite3.connect(other) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []


def test_list_still_reads_an_existing_store(quarantine: Quarantine, db_url: str) -> None:
    """`list` on the store the relay created shows what is held."""
    hold_id = hold_one(quarantine)
    result = run("list", "--db", db_url)
    assert result.exit_code == 0, result.output
    assert hold_id in result.output


def test_expire_may_still_create_the_store(tmp_path: Path) -> None:
    """`expire` (run by cron, maybe before the relay ever started) creates the store as before."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    result = run("expire", "--db", url, "--no-notify")
    assert result.exit_code == 0, result.output
    assert Path(str(make_url(url).database)).exists()


# -- an administrator's correction is checked ------------------------------------------------------------------


def test_a_correction_to_another_typo_is_refused(quarantine: Quarantine, db_url: str, sink: RecordingSink) -> None:
    """`release --to` an address the guard holds exits 1 with the verdict and its reason, and decides nothing."""
    hold_id = hold_one(quarantine)
    result = run("release", "--db", db_url, hold_id, "--next-hop", str(sink.hop), "--to", "bob@gmali.com")
    assert result.exit_code == 1
    [line] = result.stderr.strip().splitlines()
    assert "--to bob@gmali.com: hold (did you mean bob@gmail.com?)" in line
    assert "gmali.com looks like gmail.com" in line
    assert "--force" in line
    assert quarantine.require(hold_id).state == "held"
    assert sink.messages == []


def test_a_correction_that_only_warns_is_refused_too(quarantine: Quarantine, db_url: str, tmp_path: Path,
                                                     sink: RecordingSink) -> None:
    """The issue's `--to max@treasury.cm` (a warn with treasury.gov known) also needs --force: nobody would read
    the warning."""
    config = tmp_path / "rcptguard.toml"
    config.write_text(f'known = ["treasury.gov"]\n[db]\nurl = "{db_url}"\n[relay]\nnext_hop = "{sink.hop}"\n',
                      "utf-8")
    hold_id = hold_one(quarantine)
    result = run("release", "--config", str(config), hold_id, "--to", "max@treasury.cm")
    assert result.exit_code == 1
    assert "--to max@treasury.cm: warn (did you mean max@treasury.gov?)" in result.stderr
    assert quarantine.require(hold_id).state == "held"
    assert sink.messages == []


def test_force_delivers_to_the_checked_address(quarantine: Quarantine, db_url: str, sink: RecordingSink) -> None:
    """With --force the correction is delivered as given, and recorded as corrected."""
    hold_id = hold_one(quarantine)
    result = run("release", "--db", db_url, hold_id, "--next-hop", str(sink.hop), "--to", "bob@gmali.com",
                 "--force")
    assert result.exit_code == 0, result.output
    assert [m.rcpt_tos for m in sink.messages] == [("bob@gmali.com",)]
    assert quarantine.require(hold_id).state == "corrected"


def test_a_correction_the_config_knows_passes(quarantine: Quarantine, db_url: str, tmp_path: Path,
                                              sink: RecordingSink) -> None:
    """The check uses the config's policy: a correction to a protected domain passes without --force."""
    config = tmp_path / "rcptguard.toml"
    config.write_text(f'protect = ["example-corp.com"]\n[db]\nurl = "{db_url}"\n', "utf-8")
    hold_id = hold_one(quarantine)
    result = run("release", "--config", str(config), hold_id, "--next-hop", str(sink.hop),
                 "--to", "bob@example-corp.com")
    assert result.exit_code == 0, result.output
    assert [m.rcpt_tos for m in sink.messages] == [("bob@example-corp.com",)]


# -- decisions are logged --------------------------------------------------------------------------------------


def test_release_logs_one_json_line(quarantine: Quarantine, db_url: str, sink: RecordingSink) -> None:
    """`release --to` writes one JSON "decision" line on stderr: the hold, who, what and where to."""
    hold_id = hold_one(quarantine)
    result = run("release", "--db", db_url, hold_id, "--next-hop", str(sink.hop), "--to", "bob@gmail.com",
                 "--actor", "carol")
    assert result.exit_code == 0, result.output
    [entry] = [e for e in log_lines(result) if e["event"] == "decision"]
    assert (entry["hold"], entry["actor"], entry["action"]) == (hold_id, "carol", "corrected")
    assert (entry["recipient"], entry["deliver_to"]) == ("bob@gmial.com", "bob@gmail.com")
    assert entry["level"] == "info"


def test_cancel_logs_one_json_line(quarantine: Quarantine, db_url: str) -> None:
    """`cancel` writes one JSON "decision" line on stderr."""
    hold_id = hold_one(quarantine)
    result = run("cancel", "--db", db_url, hold_id, "--actor", "carol")
    assert result.exit_code == 0, result.output
    [entry] = [e for e in log_lines(result) if e["event"] == "decision"]
    assert (entry["hold"], entry["actor"], entry["action"]) == (hold_id, "carol", "cancelled")


def test_mark_delivered_logs_one_json_line(quarantine: Quarantine, db_url: str) -> None:
    """`mark-delivered` writes one JSON "decision" line on stderr, with the note."""
    hold_id = hold_one(quarantine)
    down = f"127.0.0.1:{free_port()}"
    assert run("release", "--db", db_url, hold_id, "--next-hop", down).exit_code == 0
    result = run("mark-delivered", "--db", db_url, hold_id, "--actor", "carol", "--note", "queued as 4Xyz")
    assert result.exit_code == 0, result.output
    [entry] = [e for e in log_lines(result) if e["event"] == "decision"]
    assert (entry["hold"], entry["actor"], entry["action"]) == (hold_id, "carol", "marked delivered")
    assert entry["detail"] == "queued as 4Xyz"


def test_a_refused_decision_logs_nothing(quarantine: Quarantine, db_url: str) -> None:
    """Cancelling a hold already decided logs no decision."""
    hold_id = hold_one(quarantine)
    quarantine.cancel(hold_id, "alice")
    result = run("cancel", "--db", db_url, hold_id)
    assert result.exit_code == 1
    assert [e for e in log_lines(result) if e["event"] == "decision"] == []


def test_an_administrators_cancel_and_release_owe_the_sender_a_notice(quarantine: Quarantine, db_url: str,
                                                                     sink: RecordingSink) -> None:
    """`quarantine cancel` and `release` from the command line owe the sender a notice of the decision (sent
    by the relay's retry loop or deliver-pending), as the admin page does."""
    cancelled = hold_one(quarantine)
    released = quarantine.hold(mail_from="alice@example.org", recipients=[gmial_recipient("carol@gmial.com")],
                               content=b"Subject: 2\r\n\r\nx\r\n")[0].id
    assert run("cancel", cancelled, "--db", db_url).exit_code == 0
    assert run("release", released, "--force", "--db", db_url, "--next-hop", str(sink.hop)).exit_code == 0
    assert quarantine.require(cancelled).notice == "pending"
    assert quarantine.require(released).notice == "pending"
