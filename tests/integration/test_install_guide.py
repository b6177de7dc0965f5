"""docs/install.md, run: every `sh` block of the guide, in order, in a clean directory tree under a temporary folder,
as far as a test can go without a booted systemd (docs/install.md, "What the test does", says what is stood in for).
The blocks are read from the page itself, so the guide and the test cannot drift apart."""

from __future__ import annotations

import re
import shlex
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.sink import RecordingSink
from tests.unit.test_deploy import parse

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]
GUIDE = REPO / "docs" / "install.md"
MOVED = ("/usr/local/src/rcptguard", "/opt/rcptguard", "/etc/rcptguard", "/var/lib/rcptguard", "/etc/systemd/system")
NEXT_HOP = "127.0.0.1:10026"
# What a test cannot do for real: each records its arguments in $ROOT/stood-in.log and succeeds.
STAND_INS = """
set -euo pipefail
record() { printf '%s\\n' "$*" >> "$ROOT/stood-in.log"; }
useradd() { record useradd "$@"; }
chown() { record chown "$@"; }
systemctl() { record systemctl "$@"; }
sudo() { if [ "$1" = "-u" ]; then record sudo -u "$2"; shift 2; fi; "$@"; }
"""


def blocks(text: str) -> list[str]:
    """The guide's `sh` blocks, in order."""
    return re.findall(r"^```sh\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def moved(block: str, root: Path, next_hop: str) -> str:
    """The block with every path of the layout under `root`, and the next hop the test's."""
    pattern = "|".join(re.escape(path) for path in MOVED)
    return re.sub(pattern, lambda found: f"{root}{found[0]}", block).replace(NEXT_HOP, next_hop)


def release(root: Path) -> Path:
    """This checkout's files (tracked and new, not ignored) as the unpacked release, and its wheel in dist/ (what
    section 2 of the guide builds)."""
    source = root / "usr/local/src/rcptguard"
    listed = subprocess.run(["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(source / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    return source


def lend_libraries(venv: Path) -> None:
    """The new environment sees the test's libraries (rcptguard's own left out: it is what the guide installs),
    through a folder of links named in a .pth file."""
    [packages] = venv.glob("lib/python3*/site-packages")
    lent = venv.parent / "lent-libraries"
    lent.mkdir()
    for runner in site.getsitepackages():
        for entry in Path(runner).iterdir():
            if not entry.name.startswith(("rcptguard", "__editable__", "_distutils_hack", "distutils-precedence",
                                          "pip", "setuptools", "pkg_resources")) and not (lent / entry.name).exists():
                (lent / entry.name).symlink_to(entry)
    (packages / "zz-lent-libraries.pth").write_text(f"{lent}\n", encoding="utf-8")


def test_the_install_guide_runs(tmp_path: Path, sink: RecordingSink) -> None:
    """Each `sh` block exits 0: the user, the venv and the wheel, the config (checked) and the data folder, the
    store migrated, the units copied and enabled, doctor without a problem; then the installed units verify."""
    root = tmp_path / "root"
    (root / "etc/systemd/system").mkdir(parents=True)  # there on every Debian system
    source = release(root)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path),
           "ROOT": str(root), "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "LANG": "C.UTF-8"}
    found = blocks(GUIDE.read_text(encoding="utf-8"))
    assert len(found) >= 5, "the guide's sh blocks"
    outputs = []
    for number, block in enumerate(found, 1):
        script = STAND_INS + moved(block, root, f"127.0.0.1:{sink.port}")
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=300,
                                check=False, cwd=tmp_path)
        assert result.returncode == 0, f"block {number}:\n{block}\n{result.stdout}\n{result.stderr}"
        outputs.append(result.stdout)
        venv = root / "opt/rcptguard/.venv"
        if venv.exists() and not (venv.parent / "lent-libraries").exists():
            lend_libraries(venv)
    program = root / "opt/rcptguard/.venv/bin/rcptguard"
    assert f"rcptguard, version {source_version(source)}" in "".join(outputs)
    assert (root / "var/lib/rcptguard/rcptguard.db").exists()
    assert (root / "etc/rcptguard/rcptguard.toml").stat().st_mode & 0o777 == 0o640
    stood_in = (root / "stood-in.log").read_text(encoding="utf-8")
    assert "useradd --system --user-group" in stood_in
    assert "systemctl enable --now rcptguard-relay.service rcptguard-web.service" in stood_in
    doctor = outputs[-1]
    assert "PROBLEM" not in doctor
    assert f"127.0.0.1:{sink.port} answers EHLO" in doctor
    verify_installed(root, program, tmp_path)


def source_version(source: Path) -> str:
    found = re.search(r'^version = "([^"]+)"', (source / "pyproject.toml").read_text(encoding="utf-8"), re.MULTILINE)
    assert found
    return found[1]


def verify_installed(root: Path, program: Path, tmp_path: Path) -> None:
    """systemd-analyze verify on the units the guide installed, each ExecStart pointed at the installed program
    (and its config under ROOT); every daemon and job unit of deploy/ is among them."""
    installed = sorted((root / "etc/systemd/system").glob("rcptguard-*"))
    names = {path.name for path in installed}
    assert {"rcptguard-relay.service", "rcptguard-policyd.service", "rcptguard-web.service",
            "rcptguard-purge.timer"} <= names
    checked = tmp_path / "verify"
    checked.mkdir()
    for path in installed:
        text = path.read_text(encoding="utf-8").replace("/opt/rcptguard", f"{root}/opt/rcptguard")
        (checked / path.name).write_text(text.replace("/etc/rcptguard", f"{root}/etc/rcptguard"), encoding="utf-8")
    for path in sorted(checked.glob("*.service")):
        [start] = parse(path)["Service"]["ExecStart"]
        assert shlex.split(start)[0] == str(program)
    result = subprocess.run(["systemd-analyze", "verify", *map(str, sorted(checked.iterdir()))],
                            capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
