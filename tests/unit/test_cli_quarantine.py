"""The quarantine commands as an administrator meets them: no store created by a read."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import make_url

from rcptguard.cli_quarantine import quarantine as quarantine_group
from rcptguard.store import Store
from rcptguard.store.quarantine import Quarantine
from tests.holds import gmial_recipient
from tests.integration.sink import RecordingSink

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


@pytest.fixture
def sink() -> Iterator[RecordingSink]:
    with RecordingSink() as server:
        yield server


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'quarantine.db'}"


@pytest.fixture
def quarantine(db_url: str) -> Iterator[Quarantine]:
    store = Store.open(db_url)
    yield Quarantine(store)
    store.close()


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
    config.write_text('[db]\nurl = "sqlite:////nonexistent/dir/q.db"\n', "utf-8")
    result = run("list", "--config", str(config))
    assert result.exit_code == 1
    assert f"/nonexistent/dir/q.db does not exist (the URL is [db] url in {config})" in result.stderr
    assert not Path("/nonexistent/dir").exists()


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
