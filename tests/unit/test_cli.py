"""The `rcptguard` command line: the shared `check` contract, `explain`, `eval` and exit codes."""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rcptguard.cli import main

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "rcptguard"
CONTRACT_KEYS = {"address", "domain", "verdict", "intended", "suggestion", "score", "signals", "reason"}


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), input=stdin)
    return result.exit_code, result.output


def test_jsonl_follows_the_shared_contract() -> None:
    """--format jsonl prints one object per address in input order, with the contract's fields."""
    code, out = run("check", "--protect", "mil", "--format", "jsonl", "x@army.ml", "x@army.mil", "nope")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["address"] for r in rows] == ["x@army.ml", "x@army.mil", "nope"]
    assert all(set(r) >= CONTRACT_KEYS for r in rows)
    assert rows[0]["verdict"] == "hold"
    assert rows[0]["intended"] == "army.mil"
    assert rows[0]["suggestion"] == "x@army.mil"
    assert rows[0]["signals"][0] == {"name": "TLD_SLIP", "score": 7.0, "evidence": rows[0]["signals"][0]["evidence"]}
    assert rows[0]["signals"][0]["evidence"]["edit"] == "mil→ml"
    assert rows[1]["verdict"] == "pass"
    assert rows[1]["intended"] is None
    assert rows[2]["verdict"] == "reject"
    assert rows[2]["signals"][0]["name"] == "MALFORMED_ADDRESS"
    assert code == 1


def test_exit_zero_only_when_everything_passes() -> None:
    """Exit status 0 when every verdict is pass."""
    code, _ = run("check", "--protect", "mil", "x@army.mil", "y@navy.mil")
    assert code == 0


def test_usage_and_config_errors_exit_two(tmp_path: Path) -> None:
    """A bad option or a bad config file exits with status 2 and says what is wrong."""
    bad = tmp_path / "p.toml"
    bad.write_text("[thresholds]\nhold = 'x'\n", encoding="utf-8")
    code, out = run("check", "--config", str(bad), "a@b.com")
    assert code == 2
    assert "p.toml:2: thresholds.hold" in out
    code, out = run("check", "--protect", "not a domain", "a@b.com")
    assert code == 2
    code, _ = run("check", "--format", "xml", "a@b.com")
    assert code == 2


def test_json_format_is_one_array() -> None:
    """--format json prints a single JSON array."""
    _, out = run("check", "--known", "gmail.com", "--format", "json", "a@gmial.com", "b@gmail.com")
    rows = json.loads(out)
    assert [r["verdict"] for r in rows] == ["hold", "pass"]


def test_text_format_reads_like_a_sentence() -> None:
    """The text format shows the action, the suggestion and the reason."""
    _, out = run("check", "--protect", "mil", "x@army.ml")
    assert out.startswith("hold")
    assert "->  x@army.mil" in out
    assert "Mali's country domain" in out


def test_stdin_streams_and_skips_blank_lines() -> None:
    """'-' reads addresses from stdin, one a line, CRLF or LF, blank lines skipped."""
    _, out = run("check", "--protect", "mil", "--format", "jsonl", "-", stdin="x@army.ml\r\n\n x@army.mil \n")
    assert [json.loads(line)["verdict"] for line in out.splitlines()] == ["hold", "pass"]


def test_known_file_option(tmp_path: Path) -> None:
    """--known-file reads known domains from a file."""
    known = tmp_path / "known.txt"
    known.write_text("raytheon.com\n", encoding="utf-8")
    _, out = run("check", "--known-file", str(known), "--format", "jsonl", "a@raytheon.co")
    assert json.loads(out)["intended"] == "raytheon.com"


def test_explain_lists_every_candidate_with_scores() -> None:
    """explain shows each candidate domain with its family, role and score, then the verdict."""
    code, out = run("explain", "--protect", "mil", "--known", "gmail.com", "mail.ml")
    assert code == 0
    assert "mail.mil" in out
    assert "TLD_SLIP +7.0" in out
    assert "verdict: hold (intended mail.mil)" in out


def test_detectors_lists_signal_weights() -> None:
    """detectors prints each detector's signal with its default weight."""
    _, out = run("detectors")
    assert "TLD_SLIP" in out
    assert "IDN_HOMOGLYPH" in out


def test_detectors_lists_every_signal_the_guard_emits() -> None:
    """detectors also lists each context signal guard.py can emit (FIRST_CONTACT, KNOWN_TARGET, ...), with its
    default prior, so that every name in a verdict's signals can be looked up there."""
    _, out = run("detectors")
    rows = {line.split()[0]: line.split() for line in out.splitlines()}
    emitted = set(re.findall(r'Signal\("([A-Z_]+)"', (SRC / "guard.py").read_text("utf-8")))
    assert {"FIRST_CONTACT", "KNOWN_TARGET", "PROTECTED_TARGET", "RESTRICTED_SUFFIX", "FORCE_RULE"} <= emitted
    assert emitted <= set(rows)
    assert rows["FIRST_CONTACT"][1:3] == ["context", "1.0"]
    assert rows["PROTECTED_TARGET"][1:3] == ["context", "3.0"]
    assert rows["SHORT_NAME"][1:3] == ["context", "-3.0"]
    assert rows["TLD_SLIP"][1:3] == ["suffix", "7.0"]


@pytest.mark.parametrize(("args", "note"), [
    (["--known", "treasury.gov", "x@treasuy.gov"], "; hold by score, capped at warn: real domain under .gov"),
    (["--known", "gmail.com", "x@mail.com"], "capped at warn: mail.com is itself a major mail provider"),
    (["y@gmail.com"], "; hold by score, capped at pass: both are major mail providers"),
    (["--known", "gmx.de", "w@gmx.net"], "; hold by score, capped at pass: both belong to United Internet"),
])
def test_the_score_line_says_when_a_cap_lowered_the_action(args: list[str], note: str) -> None:
    """When a real domain's cap lowers the action the score gives, the score line says from what, to what, and why."""
    _, out = run("check", *args)
    [score_line] = [line for line in out.splitlines() if line.strip().startswith("score")]
    assert note in score_line


def test_the_score_line_says_when_a_force_rule_decided() -> None:
    """A [[force]] rule that changes the score's action is named on the score line."""
    _, out = run("check", "--config", str(ROOT / "examples" / "demo.toml"), "j@army.ml")
    assert "; hold by score, forced to reject by [[force]] ml" in out


def test_the_score_line_has_no_note_when_the_score_decided() -> None:
    """A hold the score alone gives has a plain score line, and the jsonl contract is unchanged by the note."""
    _, out = run("check", "--protect", "mil", "x@army.ml")
    assert out.splitlines()[-1].strip() == "score 11.0: TLD_SLIP +7.0, PROTECTED_TARGET +3.0, FIRST_CONTACT +1.0"
    _, out = run("check", "--known", "treasury.gov", "--format", "jsonl", "x@treasuy.gov")
    assert "capped" not in out


def test_eval_meets_the_dev_gates(data_dir: Path) -> None:
    """On the dev set: recall >= 0.97, no hard false positive, soft false positives <= 5%."""
    code, out = run("eval", str(data_dir / "dev_cases.csv"), "--profiles", str(data_dir / "dev_profiles.json"),
                    "--format", "json", "--min-recall", "0.97", "--max-hard-fp", "0", "--max-soft-fp-rate", "0.05")
    report = json.loads(out)
    assert code == 0, out
    assert report["recall"] >= 0.97
    assert report["hard_false_positives"] == []
    assert report["soft_false_positive_rate"] <= 0.05


def test_eval_gate_fails_when_the_policy_is_too_lax(data_dir: Path, tmp_path: Path) -> None:
    """The eval gate can fail: a policy that never holds has zero recall and exits 1."""
    lax = tmp_path / "lax.toml"
    lax.write_text("[thresholds]\nwarn = 50\nhold = 100\n", encoding="utf-8")
    code, out = run("eval", str(data_dir / "dev_cases.csv"), "--profiles", str(data_dir / "dev_profiles.json"),
                    "--config", str(lax), "--min-recall", "0.97")
    assert code == 1
    assert "recall 0.000" in out


def _console_script() -> list[str]:
    exe = shutil.which("rcptguard", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-c", "from rcptguard.cli import main; main()"]


def test_ten_megabyte_line_on_stdin_is_reported_not_crashed() -> None:
    """A 10 MB line on stdin gives a MALFORMED_ADDRESS verdict, and the lines after it are still checked."""
    payload = b"a" * (10 * 1024 * 1024) + b"@example.com\nx@army.ml\n"
    proc = subprocess.run([*_console_script(), "check", "--protect", "mil", "--format", "jsonl", "-"],
                          input=payload, capture_output=True, timeout=120, check=False)
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert proc.returncode == 1, proc.stderr
    assert [r["verdict"] for r in rows] == ["reject", "hold"]
    assert "bytes long" in rows[0]["reason"]
    assert len(proc.stdout) < 10_000


@pytest.mark.parametrize("raw", [b"\xff\xfe@example.com\n", b"a@exa\xc3mple.com\n", b"a@b.com\x00\n"])
def test_undecodable_bytes_on_stdin_are_malformed(raw: bytes) -> None:
    """Bytes that are not UTF-8, or a NUL, give MALFORMED_ADDRESS rather than a crash."""
    proc = subprocess.run([*_console_script(), "check", "--format", "jsonl", "-"],
                          input=raw, capture_output=True, timeout=60, check=False)
    row = json.loads(proc.stdout)
    assert row["verdict"] == "reject"
    assert row["signals"][0]["name"] == "MALFORMED_ADDRESS"
    assert proc.returncode == 1


def test_a_line_too_long_inside_one_chunk_is_reported() -> None:
    """A line of 5,000 bytes, read whole in one chunk, is reported like a longer one; its neighbours are checked."""
    _, out = run("check", "--protect", "mil", "--format", "jsonl", "-",
                 stdin="x@army.mil\n" + "b" * 5000 + "@example.com\nx@army.ml")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["verdict"] for r in rows] == ["pass", "reject", "hold"]
    assert "5013 bytes long" in rows[1]["reason"]


def test_stdin_answers_each_address_before_waiting_for_the_next() -> None:
    """A program that writes one address and waits for its answer gets it: answers are buffered, but flushed
    before `check -` waits for more input."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    with subprocess.Popen([*_console_script(), "check", "--protect", "mil", "--format", "jsonl", "-"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env) as proc:
        assert proc.stdin is not None
        assert proc.stdout is not None
        for address, verdict in (("x@army.ml", "hold"), ("y@army.mil", "pass")):
            proc.stdin.write(f"{address}\n".encode())
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, f"no answer for {address}"
            assert json.loads(proc.stdout.readline())["verdict"] == verdict
        proc.stdin.close()
        assert proc.wait(timeout=60) == 1
