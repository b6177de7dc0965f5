"""The systemd units in deploy/: every daemon has one, and every periodic job a oneshot service and a timer, all
reading one config file, hardened alike; systemd brings each daemon back after any death, and accepts every file."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import update

from rcptguard.history import Batch, Counted
from rcptguard.store import Store
from rcptguard.store.history import StoreHistory
from rcptguard.store.quarantine import Quarantine
from rcptguard.store.schema import holds
from rcptguard.store.sink import Refusal, Refusals
from tests.holds import gmial_recipient
from tests.support.sink import RecordingSink

DEPLOY = Path(__file__).parents[2] / "deploy"
INSTALLED = "/opt/rcptguard/.venv/bin/rcptguard"
CONFIG = "/etc/rcptguard/rcptguard.toml"
DAEMONS = ("policyd", "relay", "milter", "web", "sink")
JOBS = {"deliver-pending": "quarantine deliver-pending", "expire": "quarantine expire", "purge": "quarantine purge",
        "sink-purge": "sink purge", "history-prune": "known prune"}
SOCKETS = ("sink",)  # daemons systemd hands their listening socket (port 25 without privilege)
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
             "ReadWritePaths": "/var/lib/rcptguard", "StateDirectory": "rcptguard", "PrivateDevices": "yes",
             "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
             "RestrictSUIDSGID": "yes", "RestrictNamespaces": "yes", "LockPersonality": "yes",
             "CapabilityBoundingSet": "", "SystemCallFilter": "@system-service", "UMask": "0077"}
# What one unit may write besides /var/lib/rcptguard: the milter's socket folder, in Postfix's queue directory.
OWN_WRITABLE = {("rcptguard-milter.service", "ReadWritePaths"): ["-/var/spool/postfix/rcptguard"]}
HERE = Path(sys.executable).parent / "rcptguard"  # this checkout's rcptguard, for the units' commands


def parse(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as {section: {key: [values]}} (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} before any section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def units(pattern: str = "*.service") -> list[Path]:
    return sorted(DEPLOY.glob(pattern))


def daemon_units() -> list[Path]:
    return [DEPLOY / f"rcptguard-{name}.service" for name in DAEMONS]


def job_units() -> list[Path]:
    return [DEPLOY / f"rcptguard-{name}.service" for name in JOBS]


def test_every_daemon_and_job_has_a_unit_reading_one_config() -> None:
    """deploy/ has a unit for the policy service, the relay, the milter and the page, and a service and a timer for each
    periodic job; each starts its own command with the one shared config file, whose [db] url names the store
    (no --db, no --next-hop on a command line: one place to change them)."""
    expected = ({f"rcptguard-{name}.service" for name in (*DAEMONS, *JOBS)} | {f"rcptguard-{n}.timer" for n in JOBS}
                | {f"rcptguard-{n}.socket" for n in SOCKETS})
    assert {path.name for path in DEPLOY.iterdir()} == expected
    commands = {name: name for name in DAEMONS} | JOBS
    for name, command in commands.items():
        [start] = parse(DEPLOY / f"rcptguard-{name}.service")["Service"]["ExecStart"]
        words = shlex.split(start)
        assert words[0] == INSTALLED
        assert " ".join(words[1:]).startswith(command), start
        assert words[words.index("--config") + 1] == CONFIG
        assert "--db" not in words
        assert "--next-hop" not in words


@pytest.mark.parametrize("path", daemon_units(), ids=lambda path: path.name)
def test_a_daemon_restarts_by_itself(path: Path) -> None:
    """Each daemon restarts after any exit, a crash by signal (SIGBUS) included, without a start limit that would
    leave it down, and starts at boot."""
    unit = parse(path)
    service = unit["Service"]
    assert service["Type"] == ["simple"]
    assert service["Restart"] in (["always"], ["on-failure"])
    assert service["RestartSec"] == ["1s"]
    assert service["LimitNOFILE"] == ["65536"]
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("path", units(), ids=lambda path: path.name)
def test_every_unit_is_hardened(path: Path) -> None:
    """Every service runs as the rcptguard user in a read-only system with /var/lib/rcptguard writable (the milter its
    socket's folder too), without capabilities, devices or privileged system calls, and prints a fatal signal's
    Python stacks."""
    service = parse(path)["Service"]
    assert (service["User"], service["Group"]) == (["rcptguard"], ["rcptguard"])
    assert "PYTHONFAULTHANDLER=1" in service["Environment"]
    for key, value in HARDENING.items():
        assert service.get(key) == [value, *OWN_WRITABLE.get((path.name, key), [])], key


@pytest.mark.parametrize("name", JOBS)
def test_a_job_is_a_oneshot_started_by_its_timer(name: str) -> None:
    """Each job is a oneshot that nothing but its timer starts, with a time limit so that a hung run cannot stop
    the next; its timer starts at boot, and the daily and hourly ones catch up on a run missed while down."""
    service = parse(DEPLOY / f"rcptguard-{name}.service")
    assert service["Service"]["Type"] == ["oneshot"]
    assert "Restart" not in service["Service"]
    assert service["Service"]["TimeoutStartSec"]
    assert "Install" not in service
    timer = parse(DEPLOY / f"rcptguard-{name}.timer")
    assert timer["Install"]["WantedBy"] == ["timers.target"]
    schedule = timer["Timer"]
    if "OnCalendar" in schedule:
        assert schedule["Persistent"] == ["yes"]
        assert schedule["RandomizedDelaySec"]
    else:  # counted from the end of the last run: never two at once
        assert schedule["OnUnitInactiveSec"]
        assert schedule["OnActiveSec"]
    expected = {"expire": ["hourly"], "purge": ["daily"], "sink-purge": ["daily"], "history-prune": ["daily"]}.get(name)
    assert schedule.get("OnCalendar") == expected


def verify(paths: list[Path], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on copies of `paths` whose commands run this checkout's rcptguard."""
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: scripts/setup installs the systemd package"
    copies = []
    for path in paths:
        copy = tmp_path / path.name
        copy.write_text(path.read_text(encoding="utf-8").replace(INSTALLED, str(HERE)), encoding="utf-8")
        copies.append(str(copy))
    return subprocess.run(["systemd-analyze", "verify", *copies], capture_output=True, text=True, check=False,
                          timeout=60)


@pytest.mark.parametrize("name", SOCKETS)
def test_a_socket_unit_hands_port_25_to_its_daemon(name: str) -> None:
    """The sink listens on port 25 through systemd's socket (IPv4 and IPv6), so its service keeps no capability;
    the service needs the socket and takes it with `--listen systemd`."""
    socket_unit = parse(DEPLOY / f"rcptguard-{name}.socket")
    assert socket_unit["Socket"]["ListenStream"] == ["25"]
    assert socket_unit["Socket"]["BindIPv6Only"] == ["both"]
    assert socket_unit["Install"]["WantedBy"] == ["sockets.target"]
    service = parse(DEPLOY / f"rcptguard-{name}.service")
    assert f"rcptguard-{name}.socket" in service["Unit"]["Requires"]
    [start] = service["Service"]["ExecStart"]
    assert shlex.split(start)[-2:] == ["--listen", "systemd"]


@pytest.mark.parametrize("path", units("*.service") + units("*.timer") + units("*.socket"), ids=lambda path: path.name)
def test_systemd_accepts_the_unit(path: Path, tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing wrong (no unknown key or section, no bad value, a timer's or socket's
    service exists), with ExecStart pointed at this checkout's rcptguard since /opt/rcptguard is not installed here."""
    paths = [path, path.with_suffix(".service")] if path.suffix in (".timer", ".socket") else [path]
    if path.name in {f"rcptguard-{n}.service" for n in SOCKETS}:
        paths.append(path.with_suffix(".socket"))
    result = verify(paths, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("path", units(), ids=lambda path: path.name)
def test_systemd_rates_the_sandbox_well(path: Path, tmp_path: Path) -> None:
    """systemd-analyze security rates every service's exposure at 2.0 or less of 10 ("OK"; a unit without any
    sandboxing rates 9.6)."""
    copy = tmp_path / path.name
    copy.write_text(path.read_text(encoding="utf-8").replace(INSTALLED, str(HERE)), encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "security", "--offline=true", str(copy)],
                            capture_output=True, text=True, check=False, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found[1]) <= 2.0, result.stdout


@pytest.mark.parametrize("name", JOBS)
def test_a_jobs_command_runs(name: str, tmp_path: Path, sink: RecordingSink) -> None:
    """The command of each job's unit, as written (the config's path aside), runs to exit status 0 on a store
    with a hold to expire, a release to deliver and a message to purge, and does its job."""
    store = Store.open(f"sqlite:///{tmp_path / 'rcptguard.db'}")
    old = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
    Refusals(store).add([Refusal(when, "192.0.2.1", "mx.example.org", "example.org", None, "army.ml", "army.mil")
                         for when in (old, dt.datetime.now(dt.UTC))])
    quarantine = Quarantine(store)
    made = [quarantine.hold(mail_from="alice@example.org", recipients=[gmial_recipient()], client="mua",
                            content=f"Subject: {n}\r\n\r\nbody {n}\r\n".encode())[0] for n in range(3)]
    quarantine.decide(made[1].id, "released", "alice")
    quarantine.cancel(made[2].id, "alice")
    with store.engine.begin() as connection:  # held two days ago: past link_days, the time expire waits
        connection.execute(update(holds).where(holds.c.id == made[0].id)
                           .values(created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=2)))
    history = Batch()  # one message ten years ago (long faded), one today
    history.message("alice@example.org", [Counted("old@faded.example", "faded.example")],
                    dt.datetime.now(dt.UTC) - dt.timedelta(days=3650))
    history.message("alice@example.org", [Counted("new@fresh.example", "fresh.example")], dt.datetime.now(dt.UTC))
    StoreHistory(store).record(history)
    store.close()
    config = tmp_path / "rcptguard.toml"
    config.write_text(f'[db]\nurl = "sqlite:///rcptguard.db"\n\n[relay]\nnext_hop = "127.0.0.1:{sink.port}"\n'
                      "link_days = 1\n\n[retention]\nbodies_days = 0\nmetadata_days = 30\n", encoding="utf-8")
    [start] = parse(DEPLOY / f"rcptguard-{name}.service")["Service"]["ExecStart"]
    words = [str(HERE) if word == INSTALLED else str(config) if word == CONFIG else word for word in shlex.split(start)]
    result = subprocess.run(words, capture_output=True, text=True, check=False, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    after = Quarantine(Store.open(f"sqlite:///{tmp_path / 'rcptguard.db'}"))
    try:
        if name == "expire":
            assert after.require(made[0].id).state == "expired"
        elif name == "sink-purge":
            assert [r.at.date() for r in Refusals(after.store).since()] == [dt.datetime.now(dt.UTC).date()]
        elif name == "history-prune":
            kept = {c.domain for c in StoreHistory(after.store).correspondents()}
            assert "fresh.example" in kept
            assert "faded.example" not in kept
            assert "deleted: 1 from sender_addresses" in result.stdout
        elif name == "deliver-pending":
            assert after.require(made[1].id).delivery == "delivered"
            assert [message.rcpt_tos for message in sink.messages] == [("bob@gmial.com",)]
        else:
            assert after.require(made[2].id).purged_at is not None
            assert after.require(made[0].id).purged_at is None
    finally:
        after.store.close()
