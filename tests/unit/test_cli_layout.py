"""The `rcptguard.cli` package: each module imports on its own, no module imports one that imports it back, and
`rcptguard --help` lists the commands it listed before the package was split."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "src" / "rcptguard" / "cli"
MODULES = ["rcptguard.cli", "rcptguard.cli.common", "rcptguard.cli.check", "rcptguard.cli.servers",
           "rcptguard.cli.quarantine", "rcptguard.cli.config", "rcptguard.cli.doctor", "rcptguard.cli.sink",
           "rcptguard.cli.store", "rcptguard.cli.scan", "rcptguard.cli.history"]

# `rcptguard --help` and the groups' --help before the split (cli.py and cli_quarantine.py), pinned.
COMMANDS = ["check", "config", "detectors", "doctor", "eval", "eval-messages", "explain", "known", "learn", "milter",
            "policyd", "quarantine", "relay", "release", "report", "scan", "sink", "store", "web"]
GROUPS = {
    "quarantine": ["cancel", "deliver-pending", "expire", "list", "mark-delivered", "purge", "release", "show"],
    "config": ["check"],
    "sink": ["check", "purge", "report"],
    "store": ["copy", "migrate"],
    "known": ["add", "forget", "list", "prune", "show"],
    "report": ["observe"],
}


def _listed(help_text: str) -> list[str]:
    """The command names under `Commands:` in a click help page."""
    lines = help_text.split("\nCommands:\n", 1)[1].splitlines()
    return [line.split()[0] for line in lines if line.startswith("  ") and not line.startswith("   ")]


def _console_script() -> list[str]:
    exe = shutil.which("rcptguard", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from rcptguard.cli import main; main()"]


def test_every_module_of_the_package_is_listed() -> None:
    found = {"rcptguard.cli" if p.stem == "__init__" else f"rcptguard.cli.{p.stem}" for p in CLI.glob("*.py")}
    assert found == set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_on_its_own(module: str) -> None:
    """First thing in a fresh interpreter, so that no earlier import hides a cycle."""
    proc = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr


def _cli_imports(path: Path) -> set[str]:
    """The `rcptguard.cli` modules a module imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rcptguard.cli"):
            if node.module == "rcptguard.cli":  # `from rcptguard.cli import check`: the submodules, or main
                submodules = {f"rcptguard.cli.{a.name}" for a in node.names}
                found |= {m for m in submodules if m in MODULES} or {"rcptguard.cli"}
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rcptguard.cli")}
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    """The package's import graph is a tree: the package imports the command modules, they import `common`, and
    `common` imports none of them; nothing imports the package (`main`) back."""
    graph = {("rcptguard.cli" if p.stem == "__init__" else f"rcptguard.cli.{p.stem}"): _cli_imports(p)
             for p in CLI.glob("*.py")}
    assert graph["rcptguard.cli.common"] == set()
    commands = {"rcptguard.cli.check", "rcptguard.cli.servers", "rcptguard.cli.quarantine", "rcptguard.cli.config",
                "rcptguard.cli.sink", "rcptguard.cli.store", "rcptguard.cli.scan",
                "rcptguard.cli.history"}
    assert graph["rcptguard.cli"] == commands | {"rcptguard.cli.doctor"}
    for module in commands:
        assert graph[module] == {"rcptguard.cli.common"}, module
    assert graph["rcptguard.cli.doctor"] == set()  # its checks are rcptguard.doctor


def test_help_lists_every_command_it_listed_before() -> None:
    proc = subprocess.run([*_console_script(), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert _listed(proc.stdout) == COMMANDS


@pytest.mark.parametrize(("group", "commands"), GROUPS.items())
def test_the_groups_list_every_command_they_listed_before(group: str, commands: list[str]) -> None:
    from click.testing import CliRunner

    from rcptguard.cli import main

    result = CliRunner().invoke(main, [group, "--help"])
    assert result.exit_code == 0, result.output
    assert _listed(result.output) == commands
