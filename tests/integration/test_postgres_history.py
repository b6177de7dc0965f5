"""History on a real PostgreSQL server, written by several instances at once and followed through the history feed:
a door's history in memory ends exactly as the store's, however the writes interleave with its reads."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rcptguard.history import Batch, Counted
from rcptguard.store import Store
from rcptguard.store.history import MirroredHistory, StoreHistory
from tests.support.archives import write_eml_dir
from tests.unit.test_history import NOW, busy_batch, only_one_runs, some_messages
from tests.unit.test_learn import OWN, cli, counted, numbered

pytestmark = pytest.mark.integration

WRITERS = 4
BATCHES = 25
OPENED: list[Store] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    yield
    while OPENED:
        OPENED.pop().close()


def mirror_on(url: str) -> MirroredHistory:
    store = Store.open(url)
    OPENED.append(store)
    return MirroredHistory(StoreHistory(store))


def a_door_writes(url: str, seed: int, mirrors: list[MirroredHistory]) -> None:
    """One instance of a door: its own mirror, its learning written in small batches, as at each flush."""
    mirror = mirror_on(url)
    mirrors.append(mirror)
    rng = random.Random(seed)
    for n in range(BATCHES):
        batch = busy_batch(rng.randrange(1000)) if n % 5 == 0 else Batch()
        address = f"p{rng.randrange(40)}@d{rng.randrange(8)}.example"
        batch.message(f"s{rng.randrange(20)}@org.example", [Counted(address, address.split("@")[1])], NOW)
        if rng.random() < 0.2:
            batch.confirmed(f"s{rng.randrange(20)}@org.example", "gmial.com", NOW)
        mirror.record(batch)
        mirror.follow()


def test_instances_writing_at_once_end_with_the_stores_facts(postgres_url: str) -> None:
    """Four instances learn at once (each following the others between its writes); a fifth only follows, and a
    sixth starts in the middle (its first full read in one snapshot with the feed's marks). Once the writes are
    over, one more look each, and every mirror gives exactly the store's facts: nothing missed, nothing twice."""
    store = mirror_on(postgres_url).store
    store.record(busy_batch(1))
    follower = mirror_on(postgres_url)
    mirrors: list[MirroredHistory] = []
    writers = [threading.Thread(target=a_door_writes, args=(postgres_url, seed, mirrors)) for seed in range(WRITERS)]
    for thread in writers:
        thread.start()
    late: list[MirroredHistory] = []
    for n in range(40):
        follower.follow()
        if n == 10:
            late.append(mirror_on(postgres_url))
        if late:
            late[0].follow()
    for thread in writers:
        thread.join(120)
    assert len(mirrors) == WRITERS
    for which, mirror in enumerate([follower, *late, *mirrors]):
        mirror.follow()
        for sender, recipients in some_messages(7):
            mine, theirs = mirror.facts(sender, recipients, NOW), store.facts(sender, recipients, NOW)
            assert mine == theirs, (which, sender, recipients)


def test_one_runner_at_a_time_on_postgres(postgres_url: str) -> None:
    """The jobs' lock on PostgreSQL is an advisory lock: a second store (another host) is refused while the first
    holds it, another job is not, and it is free again once the first is done."""
    first, second = Store.open(postgres_url), Store.open(postgres_url)
    OPENED.extend((first, second))
    only_one_runs(first, second, "quarantine-expire")


def test_a_folder_of_messages_learned_again_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    """`rcptguard learn` into PostgreSQL: a folder of .eml marked message by message (one executemany of upserts a
    checkpoint), then grown with files that sort first: only the new messages count; the same as on SQLite."""
    folder = tmp_path / "eml"
    write_eml_dir(folder, numbered(10))
    assert "total: 10 records read" in cli("learn", str(folder), "--own", OWN, "--db", postgres_url).output
    for n, raw in enumerate(numbered(3, first=10)):
        (folder / f"a-{n}.eml").write_bytes(raw)
    again = cli("learn", str(folder), "--own", OWN, "--db", postgres_url)
    assert "total: 3 records read" in again.output, again.output
    assert counted(postgres_url) == {f"firm{n}.com": 1 for n in range(13)}
