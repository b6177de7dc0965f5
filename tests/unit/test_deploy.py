"""The systemd units in deploy/: every daemon has one, hardened, and systemd brings each back after any death."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).parents[2] / "deploy"
INSTALLED = "/opt/rcptguard/.venv/bin/rcptguard"
DAEMONS = ("policyd", "relay", "web")


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


def units() -> list[Path]:
    return sorted(DEPLOY.glob("*.service"))


def test_every_daemon_has_a_unit() -> None:
    """deploy/ has a unit for the policy service, the relay and the web page, each starting its own command."""
    assert [path.name for path in units()] == [f"rcptguard-{name}.service" for name in sorted(DAEMONS)]
    for name in DAEMONS:
        service = parse(DEPLOY / f"rcptguard-{name}.service")["Service"]
        [command] = service["ExecStart"]
        assert command.split()[:2] == [INSTALLED, name]
        assert "--config /etc/rcptguard/policy.toml" in command
        assert "--db sqlite:////var/lib/rcptguard/rcptguard.db" in command


@pytest.mark.parametrize("path", units(), ids=lambda path: path.name)
def test_unit_restarts_by_itself_and_is_hardened(path: Path) -> None:
    """Each unit restarts after any exit, a crash by signal (SIGBUS) included, without a start limit that would
    leave it down, prints a fatal signal's Python stacks, and runs unprivileged in a read-only system."""
    unit = parse(path)
    service = unit["Service"]
    assert service["Restart"] in (["always"], ["on-failure"])
    assert service["RestartSec"] == ["1s"]
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]
    assert "PYTHONFAULTHANDLER=1" in service["Environment"]
    assert (service["User"], service["Group"]) == (["rcptguard"], ["rcptguard"])
    for key, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                       "PrivateTmp": "yes", "ReadWritePaths": "/var/lib/rcptguard", "StateDirectory": "rcptguard",
                       "LimitNOFILE": "65536"}.items():
        assert service[key] == [value], key
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("path", units(), ids=lambda path: path.name)
def test_systemd_accepts_the_unit(path: Path, tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing wrong (no unknown key or section, no bad value), with ExecStart
    pointed at this checkout's rcptguard since /opt/rcptguard is not installed here."""
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: scripts/setup installs the systemd package"
    here = Path(sys.executable).parent / "rcptguard"
    copy = tmp_path / path.name
    copy.write_text(path.read_text(encoding="utf-8").replace(INSTALLED, str(here)), encoding="utf-8")
    result = subprocess.run(["systemd-analyze", "verify", str(copy)],
                            capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr
