"""`rcptguard store migrate` and `store copy`: a whole store copied to a new one, every row of every table, the
held bytes exact; refused into a store that has rows, leaving it as it was."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import func, select

from rcptguard.cli import main
from rcptguard.store import Store
from rcptguard.store.links import Links
from rcptguard.store.outgoing import Outgoing
from rcptguard.store.quarantine import Quarantine
from rcptguard.store.schema import metadata
from rcptguard.store.sink import Refusal, Refusals
from tests.holds import awkward_message, gmial_recipient


def filled(url: str) -> dict[str, object]:
    """A store with a held, a cancelled and a released hold (events), a link, outgoing mail, learned domains and the
    sink's refusals; what the copy must reproduce."""
    store = Store.open(url)
    quarantine = Quarantine(store)
    made = [quarantine.hold(mail_from="alice@example.org", recipients=[gmial_recipient(f"bob{n}@gmial.com")],
                            content=awkward_message(f"m{n}@example.org", binary=True), client="mua")[0]
            for n in range(3)]
    quarantine.cancel(made[1].id, "alice")
    quarantine.decide(made[2].id, "released", "alice")
    token = Links(store).issue(made[0].message_id, dt.timedelta(days=7))
    Outgoing(store).add("warning", "", "alice@example.org", b"Subject: warned\r\n\r\nx\r\n")
    store.add_counts({"navy.mil": 3, "gmail.com": 12})
    Refusals(store).add([refusal(days) for days in (2, 1)])
    expected = {"holds": [quarantine.require(h.id) for h in made], "content": quarantine.content(made[0].id),
                "events": [quarantine.events(h.id) for h in made], "token": token, "counts": counts(store),
                "refusals": list(Refusals(store).since())}
    store.close()
    return expected


def refusal(days_ago: int) -> Refusal:
    return Refusal(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=days_ago), "192.0.2.1",
                   "mx.partner.example", "partner.example", None, "army.ml", "army.mil")


def counts(store: Store) -> dict[str, int]:
    with store.engine.connect() as connection:
        return {table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
                for table in metadata.sorted_tables}


def test_copy_reproduces_every_row(tmp_path: Path) -> None:
    """Every table's rows, the holds as the quarantine reads them, the message's exact bytes (8-bit, NUL), each
    hold's history, a working link and the learned domains are in the copy; the copy can go on (a decision adds
    an event numbered after the two copied)."""
    source, target = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    expected = filled(source)
    result = CliRunner().invoke(main, ["store", "copy", "--db", source, "--to", target])
    assert result.exit_code == 0, result.output
    assert "holds: 3 rows" in result.output
    copy = Store.open(target, create=False)
    quarantine = Quarantine(copy)
    assert counts(copy) == expected["counts"]
    assert [quarantine.require(h.id) for h in expected["holds"]] == expected["holds"]  # type: ignore[attr-defined]
    assert quarantine.content(expected["holds"][0].id) == expected["content"]  # type: ignore[index]
    assert [quarantine.events(h.id) for h in expected["holds"]] == expected["events"]  # type: ignore[attr-defined]
    assert Links(copy).resolve(str(expected["token"])).message_id == expected["holds"][0].message_id  # type: ignore[index]
    assert copy.learned() == {"navy.mil": 3, "gmail.com": 12}
    assert list(Refusals(copy).since()) == expected["refusals"]
    Refusals(copy).add([refusal(0)])  # the sink goes on recording into the copy
    quarantine.cancel(expected["holds"][0].id, "ops")  # type: ignore[index]
    assert [event.id for event in quarantine.events(expected["holds"][0].id)] == [3]  # type: ignore[index]


def test_copy_into_a_store_with_rows_is_refused(tmp_path: Path) -> None:
    """The target must be empty: a store that has rows is left exactly as it was, and the command says why."""
    source, target = f"sqlite:///{tmp_path / 'old.db'}", f"sqlite:///{tmp_path / 'new.db'}"
    filled(source)
    before = filled(target)["counts"]
    result = CliRunner().invoke(main, ["store", "copy", "--db", source, "--to", target])
    assert result.exit_code == 1
    assert "the target store is not empty" in result.output
    assert counts(Store.open(target, create=False)) == before


def test_copy_needs_a_store_to_copy_and_another_to_fill(tmp_path: Path) -> None:
    """A source that does not exist is not created; --to naming the source is a usage error."""
    missing = f"sqlite:///{tmp_path / 'missing.db'}"
    result = CliRunner().invoke(main, ["store", "copy", "--db", missing, "--to", f"sqlite:///{tmp_path / 'n.db'}"])
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert not (tmp_path / "missing.db").exists()
    assert CliRunner().invoke(main, ["store", "copy", "--db", missing, "--to", missing]).exit_code == 2


def test_migrate_creates_the_store_of_the_config(tmp_path: Path) -> None:
    """`store migrate --config` creates the store its [db] url names (relative to the config) at the newest
    revision, and says so; a second run changes nothing."""
    config = tmp_path / "rcptguard.toml"
    config.write_text('[db]\nurl = "sqlite:///data/rcptguard.db"\n', encoding="utf-8")
    for _ in range(2):
        result = CliRunner().invoke(main, ["store", "migrate", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert result.output.strip().endswith("data/rcptguard.db: at the newest revision")
    assert counts(Store.open(f"sqlite:///{tmp_path / 'data' / 'rcptguard.db'}", create=False))["holds"] == 0
