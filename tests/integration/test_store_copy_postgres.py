"""Moving from SQLite to PostgreSQL with `rcptguard store copy` as a real process: every row arrives, the held
bytes exact, and the relay and the quarantine go on from the copy (new events and holds after the copied ones)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from rcptguard.store import Store
from rcptguard.store.quarantine import Quarantine
from rcptguard.store.sink import Refusals
from tests.holds import gmial_recipient
from tests.support.processes import RCPTGUARD
from tests.unit.test_store_copy import counts, filled, refusal

pytestmark = pytest.mark.integration


def test_sqlite_to_postgresql(tmp_path: Path, postgres_url: str) -> None:
    """The documented move (docs/install.md): `store copy --config FILE --to postgresql+psycopg://...`; then
    every table's count matches, each hold and its message's bytes read back the same, and the copy takes new
    decisions and new holds."""
    source = f"sqlite:///{tmp_path / 'rcptguard.db'}"
    expected = filled(source)
    config = tmp_path / "rcptguard.toml"
    config.write_text('[db]\nurl = "sqlite:///rcptguard.db"\n', encoding="utf-8")
    result = subprocess.run([RCPTGUARD, "store", "copy", "--config", str(config), "--to", postgres_url],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "password" not in result.stdout
    copy = Store.open(postgres_url, create=False)
    try:
        quarantine = Quarantine(copy)
        assert counts(copy) == expected["counts"]
        held = expected["holds"]
        assert [quarantine.require(h.id) for h in held] == held  # type: ignore[attr-defined]
        assert quarantine.content(held[0].id) == expected["content"]  # type: ignore[index]
        quarantine.cancel(held[0].id, "ops")  # type: ignore[index]
        assert [event.id for event in quarantine.events(held[0].id)] == [3]  # type: ignore[index]
        more = quarantine.hold(mail_from="carol@example.org", recipients=[gmial_recipient()], client="mua",
                               content=b"Subject: after the move\r\n\r\nbody\r\n")
        assert quarantine.require(more[0].id).subject == "after the move"
        assert list(Refusals(copy).since()) == expected["refusals"]
        Refusals(copy).add([refusal(0)])  # the sink's ids go on after the copied ones
        assert len(list(Refusals(copy).since())) == 3
    finally:
        copy.close()
