"""The config file parsed once: every key of every section typed, with file:line:key errors, for every command."""

from __future__ import annotations

import dataclasses
import smtplib
import subprocess
import types
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from click.testing import CliRunner

from rcptguard.cli import main
from rcptguard.config import SECTIONS, file_fields, key_of, load_config
from rcptguard.policy import ConfigError
from tests.support.processes import RCPTGUARD, free_port, wait_port
from tests.support.sink import RecordingSink


def wrong_value(expected: Any) -> str:
    """A TOML value that is not of the `expected` type."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return wrong_value(next(arm for arm in typing.get_args(expected) if arm is not type(None)))
    if origin is Literal:
        return '"none-of-these"'
    if origin is tuple:
        return "5"
    if expected is bool:
        return '"no"'
    if expected in (int, float):
        return '"soon"'
    return "12345"


def every_key() -> list[tuple[str, str, Any]]:
    """(table, key, annotation) for every key a file may set in every section, nested tables included."""
    keys = []
    pending: list[tuple[str, type]] = list(SECTIONS.items())
    while pending:
        table, cls = pending.pop()
        hints = typing.get_type_hints(cls)
        for field in file_fields(cls):
            expected = hints[field.name]
            if dataclasses.is_dataclass(expected):
                pending.append((f"{table}.{key_of(field)}", typing.cast("type", expected)))
            else:
                keys.append((table, key_of(field), expected))
    return keys


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rcptguard.toml"
    path.write_text('protect = ["mil"]\n\n' + text, encoding="utf-8")
    return path


def test_every_key_is_covered() -> None:
    """The walk below reaches every section and the relay's next-hop timeouts (so a new key is tested too)."""
    tables = {table for table, _, _ in every_key()}
    assert tables == {"content", "db", "dns", "history", "milter", "notify", "policyd", "relay", "relay.timeouts",
                      "retention", "sink", "web"}
    assert len(every_key()) > 60


def test_mode_is_enforce_or_observe(tmp_path: Path) -> None:
    """`mode` is read from the top of the file; anything but "enforce" or "observe" stops the load at its line."""
    assert load_config(write(tmp_path, "")).policy.mode == "enforce"
    path = tmp_path / "observe.toml"
    path.write_text('mode = "observe"\n', encoding="utf-8")
    assert load_config(path).policy.mode == "observe"
    path.write_text('protect = []\nmode = "watch"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="mode: expected one of 'enforce', 'observe', got 'watch'") as error:
        load_config(path)
    assert error.value.line == 2


@pytest.mark.parametrize(("table", "key", "expected"), every_key(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_wrong_type_is_refused_with_file_line_and_key(tmp_path: Path, table: str, key: str, expected: Any) -> None:
    """Every key of every section: a value of the wrong type stops the load, naming the file, line 4 and the key."""
    path = write(tmp_path, f"[{table}]\n{key} = {wrong_value(expected)}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert (error.value.path, error.value.line, error.value.key) == (path, 4, f"{table}.{key}"), str(error.value)
    assert str(error.value).startswith(f"{path}:4: {table}.{key}: ")


@pytest.mark.parametrize("table", [*SECTIONS, "relay.timeouts"])
def test_an_unknown_key_is_refused(tmp_path: Path, table: str) -> None:
    """In every section, a key it does not have stops the load with the list of those it has."""
    path = write(tmp_path, f"[{table}]\nnot_a_key = 1\n")
    with pytest.raises(ConfigError, match="unknown key") as error:
        load_config(path)
    assert (error.value.line, error.value.key) == (4, f"{table}.not_a_key")


@pytest.mark.parametrize("command", [
    ["check", "a@army.mil"], ["explain", "army.ml"], ["relay"], ["policyd"], ["web"], ["quarantine", "list"],
    ["config", "check"], ["sink"], ["sink", "report"], ["sink", "purge"],
])
def test_every_command_that_reads_the_file_refuses_it(tmp_path: Path, command: list[str]) -> None:
    """A wrong type in [web] stops `check` as much as `web`: every command that reads the file checks all of it."""
    path = write(tmp_path, '[web]\nrelease_workers = "four"\n')
    args = [*command, str(path)] if command[0] == "config" else [*command, "--config", str(path)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert f"{path}:4: web.release_workers: expected a whole number" in result.output


def test_relative_paths_are_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative SQLite path in [db] url is beside the config file, whatever the working directory, like
    [notify] template_dir; an absolute one stays."""
    folder = tmp_path / "etc"
    folder.mkdir()
    path = folder / "rcptguard.toml"
    path.write_text('[db]\nurl = "sqlite:///store/rcptguard.db"\n[notify]\ntemplate_dir = "notices"\n')
    monkeypatch.chdir(tmp_path)
    loaded = load_config(path)
    assert loaded.db.url == f"sqlite:///{folder.resolve() / 'store' / 'rcptguard.db'}"
    assert loaded.relay.template_dir == str(folder / "notices")
    path.write_text('[db]\nurl = "sqlite:////var/lib/rcptguard/rcptguard.db"\n')
    assert load_config(path).db.url == "sqlite:////var/lib/rcptguard/rcptguard.db"


def test_defaults_one_section_takes_from_another(tmp_path: Path) -> None:
    """The relay's links go to [web] base_url and its notices come from [notify] from, unless [relay] says."""
    path = write(tmp_path, '[web]\nbase_url = "https://guard.example.org"\n[notify]\nfrom = "guard@example.org"\n')
    loaded = load_config(path)
    assert (loaded.relay.base_url, loaded.relay.notice_from) == ("https://guard.example.org", "guard@example.org")
    assert loaded.links_configured
    path = write(tmp_path, '[web]\nbase_url = "https://guard.example.org"\n[relay]\nbase_url = "https://x.example"\n')
    assert load_config(path).relay.base_url == "https://x.example"
    assert not load_config(write(tmp_path, "")).links_configured


def test_config_check_sums_up_a_good_file(tmp_path: Path) -> None:
    """`rcptguard config check` says ok, and what the file sets up, with exit status 0."""
    path = write(tmp_path, '[relay]\nnext_hop = "127.0.0.1:10026"\n[web]\nbase_url = "https://guard.example.org"\n')
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: ok" in result.output
    assert "links to https://guard.example.org" in result.output


def test_a_mistyped_worker_count_no_longer_delivers_twice(tmp_path: Path) -> None:
    """`[relay] workers = "many"` used to start, and a message the next hop accepted was answered 451 (the pool
    failed after the send) and sent again. Now the relay refuses to start, naming the key; with a good value the
    same message arrives exactly once."""
    with RecordingSink() as sink:
        port = free_port()
        bad = write(tmp_path, f'[relay]\nnext_hop = "127.0.0.1:{sink.port}"\nworkers = "many"\n')
        refused = subprocess.run([RCPTGUARD, "relay", "--config", str(bad), "--listen", f"127.0.0.1:{port}",
                                  "--db", f"sqlite:///{tmp_path / 'store.db'}"],
                                 capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 2
        assert f"{bad}:5: relay.workers: expected a whole number, got 'many'" in refused.stderr
        good = write(tmp_path, f'[relay]\nnext_hop = "127.0.0.1:{sink.port}"\nworkers = 4\n')
        log = tmp_path / "relay.log"
        with log.open("wb") as out:
            relay = subprocess.Popen([RCPTGUARD, "relay", "--config", str(good), "--listen", f"127.0.0.1:{port}",
                                      "--db", f"sqlite:///{tmp_path / 'store.db'}"], stderr=out)
        try:
            wait_port(port, relay, log)
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
                smtp.sendmail("me@example-corp.com", ["x@army.mil"], b"Subject: once\r\n\r\nbody\r\n")
        finally:
            relay.terminate()
            relay.wait(15)
        assert [m.rcpt_tos for m in sink.messages] == [("x@army.mil",)]


def test_every_error_is_in_the_one_tree() -> None:
    """Each error class rcptguard raises on purpose derives from RcptguardError, is drawn in errors.py's tree,
    and is the same class under its old home (so `except StoreError` anywhere catches it)."""
    from rcptguard import errors
    from rcptguard.domains import DomainError
    from rcptguard.store import StoreError
    from rcptguard.store.links import LinkExpired
    from rcptguard.store.quarantine import AlreadyDecided

    assert (ConfigError, DomainError, StoreError, LinkExpired, AlreadyDecided) == (
        errors.ConfigError, errors.DomainError, errors.StoreError, errors.LinkExpired, errors.AlreadyDecided)
    tree = errors.__doc__ or ""
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.RcptguardError), name
        assert f" {name}" in tree, f"{name} is not drawn in the tree"


def test_the_page_secret_file_is_relative_to_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`[web] secret_file` in a config in another folder is made (0600) next to where the config says, wherever
    the command starts; the demo's config puts it in .demo/ of the checkout."""
    from rcptguard.cli.servers import web_secret

    folder = tmp_path / "conf"
    folder.mkdir()
    path = folder / "rcptguard.toml"
    path.write_text('[web]\nsecret_file = "../state/web.secret"\n', encoding="utf-8")
    (tmp_path / "state").mkdir()
    monkeypatch.chdir(tmp_path)  # the config named by a relative path, as `--config conf/rcptguard.toml`
    loaded = load_config(Path("conf/rcptguard.toml"))
    key = web_secret(loaded.web, loaded.base)
    made = tmp_path / "state" / "web.secret"
    assert made.read_text(encoding="ascii").strip().encode() == key
    assert made.stat().st_mode & 0o777 == 0o600
    demo = load_config(Path(__file__).parents[2] / "examples" / "demo.toml")
    assert demo.web.secret_file == str(Path(__file__).parents[2] / "examples" / "../.demo/web.secret")
