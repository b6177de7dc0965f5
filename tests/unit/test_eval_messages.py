"""`rcptguard eval-messages` on small synthetic organisations (bench/synth_org.py, and bench/synth_books.py and
bench/synth_acme.py, made differently): the figures it prints are the ones its JSON gives, every kind of leak is
counted, and a malformed line is an error that names it."""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rcptguard.cli import main
from rcptguard.history.evaluate import Result

ROOT = Path(__file__).parents[2]


def small(generator: str, tmp_path: Path, protect: str = "org.example") -> tuple[Path, dict[str, Any]]:
    """A small organisation made by bench/`generator` (seed 5, 40 people, 60 messages a day), and its figures."""
    org = tmp_path / "org.jsonl"
    subprocess.run([sys.executable, str(ROOT / "bench" / generator), "--seed", "5", "--people", "40",
                    "--per-day", "60", "--out", str(org)], check=True)
    result = CliRunner().invoke(main, ["eval-messages", str(org), "--train-until", "2026-05-01",
                                       "--protect", protect, "--format", "json"])
    assert result.exit_code == 0, result.output
    return org, json.loads(result.output)


def test_a_small_organisation(tmp_path: Path) -> None:
    """Leaks of every kind are found in the judged part, domain slips nearly all held, and few clean messages are
    held (the full figures, on the full-size organisation, are in bench/README.md)."""
    org, figures = small("synth_org.py", tmp_path)
    assert set(figures["kinds"]) == {"domain-slip", "wrong-person", "personal"}
    assert figures["trained"] > figures["judged"] > 0
    assert figures["leaks"] + figures["clean"] == figures["judged"]
    assert figures["kinds"]["domain-slip"]["tpr"] >= 0.9
    assert figures["tpr"] >= 0.7
    assert figures["fpr"] <= 0.01
    text = CliRunner().invoke(main, ["eval-messages", str(org), "--train-until", "2026-05-01",
                                     "--protect", "org.example"]).output
    assert f"leaks held or warned: {figures['tpr']:.1%}" in text
    explained = tmp_path / "explained.jsonl"
    again = CliRunner().invoke(main, ["eval-messages", str(org), "--train-until", "2026-05-01",
                                      "--protect", "org.example", "--format", "json", "--explain", str(explained)])
    assert json.loads(again.output) == figures
    lines = [json.loads(line) for line in explained.read_text().splitlines()]
    outcomes = Counter(line["outcome"] for line in lines)
    assert outcomes["held"] == figures["leaks_held"]
    assert outcomes["warned"] == figures["leaks_warned"]
    assert outcomes["missed"] == figures["leaks"] - figures["leaks_held"] - figures["leaks_warned"]
    assert (outcomes["clean-held"], outcomes["clean-warned"]) == (figures["clean_held"], figures["clean_warned"])
    for line in lines:  # each shows the leak's verdict, and every recipient held or warned, with why
        shown = {v["address"].lower(): v for v in line["verdicts"]}
        if line["leak"]:
            assert line["leak"].lower() in shown
        assert all(v["reason"] for v in shown.values())
        assert {v["verdict"] for v in shown.values() if v["address"].lower() != (line["leak"] or "").lower()} <= {
            "warn", "hold"}


def test_a_small_organisation_made_differently(tmp_path: Path) -> None:
    """The second generator's organisation (address books, projects): every kind of leak counted, domain slips and
    personal addresses of the sender or a colleague (on the message or not) nearly all caught, few clean messages
    held."""
    _, figures = small("synth_books.py", tmp_path)
    assert set(figures["kinds"]) == {"domain-slip", "autocomplete", "namesake", "personal"}
    assert figures["kinds"]["domain-slip"]["tpr"] >= 0.9
    assert figures["kinds"]["personal"]["tpr"] >= 0.9
    assert figures["fpr"] <= 0.01


def test_a_small_third_organisation(tmp_path: Path) -> None:
    """The third generator's organisation (acme-corp.com: mostly internal mail, address styles of every kind, a
    colleague's personal address spelled from the name however the organisation writes it): every kind counted,
    domain slips and personal addresses nearly all caught, few clean messages held; the same seed gives the same
    file."""
    org, figures = small("synth_acme.py", tmp_path, "acme-corp.com")
    assert set(figures["kinds"]) == {"domain-slip", "wrong-person", "personal"}
    assert figures["kinds"]["domain-slip"]["tpr"] >= 0.9
    assert figures["kinds"]["personal"]["tpr"] >= 0.9
    assert figures["fpr"] <= 0.01
    again = tmp_path / "again.jsonl"
    subprocess.run([sys.executable, str(ROOT / "bench" / "synth_acme.py"), "--seed", "5", "--people", "40",
                    "--per-day", "60", "--out", str(again)], check=True)
    assert again.read_bytes() == org.read_bytes()


def test_a_small_fourth_organisation(tmp_path: Path) -> None:
    """The fourth generator's organisation (millbrook-eng.com and its older millbrook.co.uk, written with the
    engine's code out of view): every kind counted, few clean messages held; the same seed gives the same file."""
    org = tmp_path / "org.jsonl"
    command = [sys.executable, str(ROOT / "bench" / "synth_mill.py"), "--seed", "5", "--people", "40", "--per-day",
               "60", "--out"]
    subprocess.run([*command, str(org)], check=True, capture_output=True)
    result = CliRunner().invoke(main, ["eval-messages", str(org), "--train-until", "2026-05-01", "--protect",
                                       "millbrook-eng.com", "--protect", "millbrook.co.uk", "--format", "json"])
    figures = json.loads(result.output)
    assert set(figures["kinds"]) == {"domain-slip", "wrong-person", "personal"}
    assert figures["kinds"]["domain-slip"]["tpr"] >= 0.8
    assert figures["fpr"] <= 0.01
    again = tmp_path / "again.jsonl"
    subprocess.run([*command, str(again)], check=True, capture_output=True)
    assert again.read_bytes() == org.read_bytes()


def test_a_new_correspondent_is_known_within_minutes(tmp_path: Path) -> None:
    """As in a door, the index takes in a correspondent first written to after the cut a minute after its messages
    were let through: a slip of it on the same day is caught."""
    rows = [{"date": f"2026-04-{day:02d}T09:00:00+00:00", "sender": "me@org.example", "recipients": ["a@old.example"],
             "leak": None} for day in range(1, 20)]
    rows += [{"date": f"2026-05-04T09:0{n}:00+00:00", "sender": "me@org.example", "recipients": ["b@newpartner.com"],
              "leak": None} for n in range(3)]
    rows.append({"date": "2026-05-04T09:30:00+00:00", "sender": "me@org.example", "recipients": ["b@newpartnr.com"],
                 "leak": "b@newpartnr.com", "kind": "domain-slip"})
    org = tmp_path / "new.jsonl"
    org.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = CliRunner().invoke(main, ["eval-messages", str(org), "--train-until", "2026-05-01", "--format", "json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["leaks"], figures["tpr"], figures["clean_held"]) == (1, 1.0, 0)


def test_lines_that_are_not_messages_are_skipped_and_named(tmp_path: Path) -> None:
    """A line that is not a message is skipped, counted and named with its line number and why (never a traceback);
    the others are judged. A file with no message at all is an error that names its first bad line."""
    bad = tmp_path / "bad.jsonl"
    lines = [b'{"date": "2026-01-01T00:00:00", "sender": "a@org.example", "recipients": ["b@x.com"], "leak": null}',
             b'{"date": "yesterday", "sender": "a@org.example", "recipients": []}',
             (b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": ["b@x.com"], '
              b'"leak": ["b@x.com", "c@x.com"]}'),
             b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": ["b@x.com", "c@x.com"], "leak": true}',
             b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": ["b@x.com"], "leak": 0}',
             b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": ["b@x.com"], "leak": ""}',
             b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": "b@x.com", "leak": false}',
             b'{"date": "2026-05-02", "sender": "a@org.\xff", "recipients": ["b@x.com"]}',
             b'["not", "an", "object"]',
             b'{"date": "2026-05-02", "recipients": ["b@x.com"]}',
             b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": ["b@x.com"',
             b'{"date": 1e300, "sender": "a@org.example", "recipients": ["b@x.com"]}',
             b'{"date": "2026-05-03", "sender": "a@org.example", "recipients": [7]}']
    bad.write_bytes(b"\n".join(lines) + b"\n\n")
    result = CliRunner().invoke(main, ["eval-messages", str(bad), "--train-until", "2026-05-01", "--format", "json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["trained"], figures["judged"], figures["lines_skipped"]) == (1, 2, 10)
    assert figures["skipped"] == [
        {"at": "line 2", "reason": "date: 'yesterday' is neither ISO 8601 nor an RFC 5322 date with its zone"},
        {"at": "line 3", "reason": "leak: 2 leaks in one message; give each its own line or name one"},
        {"at": "line 4", "reason": "leak: true names no address among 2 recipients"},
        {"at": "line 5", "reason": "leak: 0 is not an address"},
        {"at": "line 8", "reason": "not UTF-8"},
        {"at": "line 9", "reason": "a list, not an object"},
        {"at": "line 10", "reason": "no 'sender'"},
        {"at": "line 11", "reason": "not JSON (Expecting ',' delimiter at column 75)"},
        {"at": "line 12", "reason": "date: 1e+300 is out of range"},
        {"at": "line 13", "reason": "recipients: 7 is not an address"}]
    text = CliRunner().invoke(main, ["eval-messages", str(bad), "--train-until", "2026-05-01"]).output
    assert ("10 skipped as no message (line 2: date: 'yesterday' is neither ISO 8601 nor an RFC 5322 date with its "
            "zone; line 3: leak: 2 leaks in one message; give each its own line or name one; line 4: leak: true "
            "names no address among 2 recipients and 7 more)") in text
    bad.write_bytes(lines[1] + b"\n" + lines[9] + b"\n")
    result = CliRunner().invoke(main, ["eval-messages", str(bad), "--train-until", "2026-05-01"])
    assert result.exit_code == 1
    assert ("no message in the file: line 1: date: 'yesterday' is neither ISO 8601 nor an RFC 5322 date with its "
            "zone") in result.output
    bad.write_bytes(b'[{"date": "2026-01-01"')
    result = CliRunner().invoke(main, ["eval-messages", str(bad), "--train-until", "2026-05-01"])
    assert result.exit_code == 1
    assert "not a JSON array of messages" in result.output
    bad.write_bytes(b"\x1f\x8b\x08\x00 truncated")
    result = CliRunner().invoke(main, ["eval-messages", str(bad), "--train-until", "2026-05-01"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output


def test_a_message_may_be_written_in_other_forms(tmp_path: Path) -> None:
    """The same messages written otherwise give the same figures: dates as a Date: header writes them, in Unix
    seconds or milliseconds, or as a day alone; the recipients as one header-like string or as "to", "cc" and
    "bcc"; "from" for the sender; a leak marked `true` on a message of one recipient; the file gzip-compressed,
    one JSON array, with a byte-order mark or CRLF line ends."""
    rows = [{"date": f"2026-04-{day:02d}T09:00:00+00:00", "sender": "me@org.example",
             "recipients": ["a@old.example", "Nils <nils@partner.com>"], "leak": None} for day in range(1, 20)]
    rows += [{"date": "2026-05-04T09:00:00+00:00", "sender": "me@org.example", "recipients": ["nils@parnter.com"],
              "leak": "nils@parnter.com", "kind": "domain-slip"},
             {"date": "2026-05-04T10:00:00+00:00", "sender": "me@org.example",
              "recipients": ["a@old.example", "nils@partner.com"], "leak": None}]

    def figures(path: Path) -> dict[str, Any]:
        result = CliRunner().invoke(main, ["eval-messages", str(path), "--train-until", "2026-05-01", "--format",
                                           "json"])
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output))

    def written(name: str, change: Callable[[dict[str, Any]], dict[str, Any]], *, end: str = "\n") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(change(dict(row))) + end for row in rows), encoding="utf-8")
        return path

    def when(row: dict[str, Any]) -> dt.datetime:
        return dt.datetime.fromisoformat(row["date"])

    plain = figures(written("plain.jsonl", lambda row: row))
    assert (plain["leaks"], plain["leaks_held"], plain["clean"], plain["lines_skipped"]) == (1, 1, 1, 0)
    forms = {
        "header-date": lambda r: {**r, "date": email.utils.format_datetime(when(r))},
        "seconds": lambda r: {**r, "date": when(r).timestamp()},
        "milliseconds": lambda r: {**r, "date": int(when(r).timestamp() * 1000)},
        "day": lambda r: {**r, "date": r["date"][:10]},
        "string": lambda r: {**r, "recipients": ", ".join(r["recipients"])},
        "to-cc-bcc": lambda r: {"date": r["date"], "from": r["sender"], "to": r["recipients"][:1],
                                "cc": r["recipients"][1:], "bcc": None, "leak": r["leak"], "kind": r.get("kind")},
        "leak-true": lambda r: {**r, "leak": r["leak"] is not None},
    }
    for name, change in forms.items():
        assert figures(written(f"{name}.jsonl", change)) == plain, name
    assert figures(written("crlf.jsonl", lambda row: row, end="\r\n")) == plain
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "plain.jsonl").read_bytes())
    array = tmp_path / "array.json"
    array.write_text(json.dumps(rows, indent=2))
    packed = tmp_path / "plain.jsonl.gz"
    packed.write_bytes(gzip.compress((tmp_path / "plain.jsonl").read_bytes()))
    for path in (bom, array, packed):
        assert figures(path) == plain, path.name


def test_nothing_on_one_side_of_the_cut_is_said(tmp_path: Path) -> None:
    """A cut after the last message judges nothing, one before the first learns nothing: both are said."""
    org = tmp_path / "org.jsonl"
    org.write_text("".join(json.dumps({"date": f"2026-04-{day:02d}", "sender": "me@org.example",
                                       "recipients": ["a@old.example"], "leak": None}) + "\n" for day in range(1, 9)))
    text = CliRunner().invoke(main, ["eval-messages", str(org), "--train-until", "2026-05-01"]).output
    assert "nothing judged: every message is dated before the cut (2026-04-01 to 2026-04-08)" in text
    text = CliRunner().invoke(main, ["eval-messages", str(org), "--train-until", "2026-03-01"]).output
    assert ("nothing learned: no message is dated before the cut (2026-04-01 to 2026-04-08), every correspondent is "
            "new") in text
    text = CliRunner().invoke(main, ["eval-messages", str(org), "--train-until", "2026-04-05"]).output
    assert "nothing" not in text


def test_a_leak_is_found_however_the_file_writes_it(tmp_path: Path) -> None:
    """The leak named with a display name, in another case, or with the other form of an internationalised domain
    than its recipient is still that recipient: caught when held, and a held leak is corrected, never learned as a
    confirmation (the same slip again is held again)."""
    rows = [{"date": f"2026-04-{day:02d}T09:00:00+00:00", "sender": "me@org.example",
             "recipients": ["Nils Martin <nils@partner.com>", "anna@bücher.de"], "leak": None} for day in range(1, 20)]
    rows += [{"date": "2026-05-04T09:00:00+00:00", "sender": "me@org.example", "recipients": ["nils@parnter.com"],
              "leak": "Nils <nils@parnter.com>", "kind": "domain-slip"},
             {"date": "2026-05-04T10:00:00+00:00", "sender": "me@org.example", "recipients": ["NILS@PARTNER.CO"],
              "leak": "nils@partner.co", "kind": "domain-slip"}]
    rows += [{"date": f"2026-05-05T09:0{n}:00+00:00", "sender": "me@org.example",
              "recipients": ["anna@xn--bchr-0ra.de"], "leak": "Anna@büchr.de", "kind": "domain-slip"} for n in range(2)]
    org = tmp_path / "forms.jsonl"
    org.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    explained = tmp_path / "why.jsonl"
    result = CliRunner().invoke(main, ["eval-messages", str(org), "--train-until", "2026-05-01", "--format", "json",
                                       "--explain", str(explained)])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert (figures["leaks"], figures["leaks_held"], figures["clean"]) == (4, 4, 0)
    outcomes = [json.loads(line)["outcome"] for line in explained.read_text(encoding="utf-8").splitlines()]
    assert outcomes == ["held"] * 4
    assert figures["leaks_unmatched"] == 0
    elsewhere = tmp_path / "elsewhere.jsonl"  # a leak that is none of its message's recipients: missed, and said
    stray = {"date": "2026-05-04T09:00:00+00:00", "sender": "me@org.example", "recipients": ["nils@partner.com"],
             "leak": "olga@partner.com", "kind": "wrong-person"}
    elsewhere.write_text("".join(json.dumps(row) + "\n" for row in [*rows[:19], stray]), encoding="utf-8")
    text = CliRunner().invoke(main, ["eval-messages", str(elsewhere), "--train-until", "2026-05-01"]).output
    assert "1 leaks name no recipient of their message (counted as missed): check the file" in text
    assert "leaks held or warned: 0.0% (0 held, 0 warned; 95% interval 0.0%–79.3%)" in text


def test_a_rate_comes_with_its_interval() -> None:
    """The 95% Wilson interval: 1,602 leaks of 1,771 caught is 89.0–91.7%; none of 100 is at most 3.7%; every one of
    100 at least 96.3%; nothing counted, nothing said."""
    assert Result.interval(1602, 1771) == (0.89, 0.91739)
    assert Result.interval(0, 100) == (0.0, 0.03699)
    assert Result.interval(100, 100) == (0.96301, 1.0)
    assert Result.interval(0, 0) == (0.0, 0.0)
    result = Result(leaks=Counter({"domain-slip": 10}), held=Counter({"domain-slip": 9}), clean=1000)
    lines = list(result.lines())
    assert "leaks held or warned: 90.0% (9 held, 0 warned; 95% interval 59.6%–98.2%)" in lines
    assert "clean messages with a recipient held: 0.00% (0; at most 0.38% at 95%); warned: 0.0% (0)" in lines
    lines = list(Result(leaks=Counter({"leak": 203}), held=Counter({"leak": 155}), clean=10).lines())
    assert lines[1].startswith("leaks held or warned: 76.4% (155 held")  # 0.76354, not the JSON's 0.7635 again
    assert "  leak             76.4% of 203 (155 held, 0 warned)" in lines
    lines = list(Result(clean=100_000).lines())
    assert "leaks held or warned: 0.0% (0 held, 0 warned)" in lines  # no leak: no interval
    assert "clean messages with a recipient held: 0.00% (0; at most 0.004% at 95%); warned: 0.0% (0)" in lines


def test_without_a_cut_two_thirds_are_learned(tmp_path: Path) -> None:
    """No --train-until: the first two thirds of the messages are learned and the rest judged, and the date is said."""
    org = tmp_path / "org.jsonl"
    org.write_text("".join(json.dumps({"date": f"2026-04-{day:02d}", "sender": "me@org.example",
                                       "recipients": ["a@old.example"], "leak": None}) + "\n" for day in range(1, 10)))
    result = CliRunner().invoke(main, ["eval-messages", str(org)])
    assert result.exit_code == 0, result.output
    assert "trained on 6 messages, judged 3: 0 leaks, 3 clean" in result.output
    assert ("no --train-until: learning from the messages dated before 2026-04-07T00:00:00+00:00, 6 of 9 (two "
            "thirds, as near as their dates allow)") in result.output


@pytest.mark.parametrize(("line", "reason"), [
    (b'{"date": 1' + b"0" * 400 + b', "sender": "a@org.example", "recipients": ["b@x.com"]}', "out of range"),
    (b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": ["b@\xed\xa0\x80.com"]}', "not UTF-8"),
    (b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": ["b@\\ud800.com"]}', "not UTF-8"),
    (b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": ["b@x.com"], "leak": "\\ud800"}',
     "not UTF-8"),
    (b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": []}', "no recipients"),
    (b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": null}', "no recipients"),
    (b'{"date": "2026-05-02", "sender": "a@org.example", "to": null}', "no recipients"),
    (b'{"date": "2026-05-02", "sender": "a@org.example", "recipients": "nobody at all"}', "no address in"),
    (b'{"date": "Sat May 02 2026 10:00:00 GMT+0200 (CEST)", "sender": "a@org.example", "recipients": ["b@x.com"]}',
     "with its zone"),
    (b'{"date": "Sat, 02 May 2026 10:00:00 +02", "sender": "a@org.example", "recipients": ["b@x.com"]}',
     "with its zone"),
    (b'{"date": "Sat, 02 May 2026 10:00:00 CEST", "sender": "a@org.example", "recipients": ["b@x.com"]}',
     "with its zone"),
])
def test_a_line_that_would_be_misread_is_skipped(tmp_path: Path, line: bytes, reason: str) -> None:
    """A date too large, a lone surrogate (as bytes or as a JSON escape), no recipient, a recipients string with no
    address, a date whose zone is not one RFC 5322 names: skipped with the reason, never a traceback or a guess."""
    good = b'{"date": "2026-01-01", "sender": "a@org.example", "recipients": ["b@x.com"], "leak": null}'
    path = tmp_path / "odd.jsonl"
    path.write_bytes(good + b"\n" + line + b"\n")
    result = CliRunner().invoke(main, ["eval-messages", str(path), "--train-until", "2026-05-01", "--format", "json",
                                       "--explain", str(tmp_path / "why.jsonl")])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["lines_skipped"] == 1
    assert figures["skipped"][0]["at"] == "line 2"
    assert reason in figures["skipped"][0]["reason"]


def test_recipients_written_as_a_header_are_each_an_address(tmp_path: Path) -> None:
    """A recipients string as Outlook writes it (a display name with a comma), separated by semicolons or spaces:
    each address is a recipient and nothing else is, whatever the Python's getaddresses does with it."""
    rows = [{"date": f"2026-04-{day:02d}", "sender": "me@org.example", "recipients": ["a@old.example",
                                                                                    "j@partner.com"], "leak": None}
            for day in range(1, 20)]
    forms = ["Smith, John <j@partner.com>, a@old.example", "a@old.example; j@partner.com",
             "a@old.example j@partner.com", '"Smith, John" <j@partner.com>;<a@old.example>']
    rows += [{"date": "2026-05-04", "sender": "me@org.example", "recipients": form, "leak": None} for form in forms]
    path = tmp_path / "header.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = CliRunner().invoke(main, ["eval-messages", str(path), "--train-until", "2026-05-01", "--format", "json"])
    figures = json.loads(result.output)
    assert (figures["judged"], figures["clean_held"], figures["clean_warned"], figures["lines_skipped"]) == (4, 0, 0, 0)


def test_a_file_is_read_once_as_a_stream(tmp_path: Path) -> None:
    """From a pipe (read once: nothing lost to a look at its first bytes), in UTF-16 as PowerShell writes it, as a
    JSON array over many lines (skipped messages named by their place in it), after a first line that is a list
    (a header row): the same figures; a corrupt gzip file is an error, not a traceback."""
    rows = [{"date": f"2026-04-{day:02d}T09:00:00+00:00", "sender": "me@org.example", "recipients": ["a@old.example"],
             "leak": None} for day in range(1, 29)]
    rows += [{"date": "2026-05-04T09:00:00+00:00", "sender": "me@org.example", "recipients": ["a@old.exmaple"],
              "leak": "a@old.exmaple", "kind": "domain-slip"}] * 3
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps(row) + "\n" for row in rows))
    args = ["--train-until", "2026-05-01", "--format", "json"]
    expected = json.loads(CliRunner().invoke(main, ["eval-messages", str(plain), *args]).output)
    assert (expected["trained"], expected["leaks_held"]) == (28, 3)
    piped = subprocess.run(f"cat {plain} | {sys.executable} -c 'from rcptguard.cli import main; main()' "
                           f"eval-messages /dev/stdin {' '.join(args)}", shell=True, capture_output=True, text=True,
                           check=False,
                           env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == expected
    utf16 = tmp_path / "utf16.jsonl"
    utf16.write_text(plain.read_text(), encoding="utf-16")
    headed = tmp_path / "headed.jsonl"
    headed.write_text('["date", "sender", "recipients", "leak"]\n' + plain.read_text())
    array = tmp_path / "array.json"
    array.write_text(json.dumps([*rows, {"date": "someday"}], indent=1))
    someday = "date: 'someday' is neither ISO 8601 nor an RFC 5322 date with its zone"
    for path, skipped in ((utf16, []), (headed, [{"at": "line 1", "reason": "a list, not an object"}]),
                          (array, [{"at": "message 32", "reason": someday}])):
        figures = json.loads(CliRunner().invoke(main, ["eval-messages", str(path), *args]).output)
        assert figures["skipped"] == skipped, path.name
        assert {**figures, "skipped": [], "lines_skipped": 0} == expected, path.name
    corrupt = tmp_path / "corrupt.jsonl.gz"
    packed = gzip.compress(plain.read_bytes())
    corrupt.write_bytes(packed[:20] + bytes(len(packed) - 28) + packed[-8:])
    result = CliRunner().invoke(main, ["eval-messages", str(corrupt), *args])
    assert result.exit_code == 1
    assert "Error:" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
