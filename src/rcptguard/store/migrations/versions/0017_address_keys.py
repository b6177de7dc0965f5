"""History's addresses keyed as they are keyed now: a non-ASCII local part in lower case and NFC (`Address.key`,
2026-12-04). Before, such a local part was kept as written, so `Ünal@…` and `ünal@…` were two histories, and after
the change a door asked for history under the new key found none under the old. Each row whose sender or address
has a non-ASCII local part is moved to its new key, added to a row already there (counts summed, the first time
the earliest, the last the latest, a confirmation the latest); a pair of recipients that becomes one address with
itself is dropped (and two of one message, to two spellings of one mailbox beside a third recipient, count that
message twice in the pair they make). A group's digest (`co_places.rest`) names its people as they were written
and cannot be worked out again: such a place is only found again once the group writes again. The history feed
tells running doors to read history again. Stop the doors before migrating: one of the version before writes
history under the old keys (docs/install.md, Upgrading).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-04
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    rekey(op.get_bind())


def downgrade() -> None:
    pass  # the old keys split one mailbox in two: nothing to put back


_TIME = sa.DateTime(timezone=True)
_feed = sa.table("history_feed", sa.column("id", sa.Integer), sa.column("at", _TIME), sa.column("origin", sa.String),
                 sa.column("batch", sa.Text))
_NON_ASCII = "[^ -~]"  # an address is printable ASCII but for the non-ASCII letters of an internationalised one


def _latest(a: Any, b: Any) -> Any:  # noqa: ANN401 - a time or None
    return b if a is None else a if b is None else max(a, b)


class _Table(NamedTuple):  # (not a dataclass: alembic loads a revision as no module of sys.modules)
    table: sa.TableClause
    keys: tuple[str, ...]  # the primary key
    addresses: tuple[str, ...]  # those of its columns that are addresses
    merge: Mapping[str, Callable[[Any, Any], Any]]  # every other column, and how two rows' values make one
    pair: bool = False  # (a, b) with a < b: each pair once


_TABLES = (
    _Table(sa.table("sender_domains", sa.column("sender", sa.String), sa.column("domain", sa.String),
                    sa.column("count", sa.BigInteger), sa.column("first_seen", _TIME),
                    sa.column("last_seen", _TIME), sa.column("confirmed_at", _TIME)),
           ("sender", "domain"), ("sender",),
           {"count": int.__add__, "first_seen": min, "last_seen": max, "confirmed_at": _latest}),
    _Table(sa.table("sender_addresses", sa.column("sender", sa.String), sa.column("address", sa.String),
                    sa.column("domain", sa.String), sa.column("count", sa.BigInteger),
                    sa.column("first_seen", _TIME), sa.column("last_seen", _TIME)),
           ("sender", "address"), ("sender", "address"),
           {"domain": lambda a, _b: a, "count": int.__add__, "first_seen": min, "last_seen": max}),
    _Table(sa.table("co_recipients", sa.column("a", sa.String), sa.column("b", sa.String),
                    sa.column("count", sa.BigInteger), sa.column("last_seen", _TIME)),
           ("a", "b"), ("a", "b"), {"count": int.__add__, "last_seen": max}, pair=True),
    _Table(sa.table("co_places", sa.column("rest", sa.String), sa.column("address", sa.String),
                    sa.column("count", sa.BigInteger), sa.column("last_seen", _TIME)),
           ("rest", "address"), ("address",), {"count": int.__add__, "last_seen": max}),
)


def rekey(connection: sa.Connection) -> int:
    """Move every row of history whose key has a non-ASCII local part to its key of today; the number of rows
    moved (a row added to another counts as moved). When there were any, an entry of the history feed (no batch:
    "read everything again") makes running doors take it in.

    The tables are locked against writers first (PostgreSQL: a table lock until the commit; SQLite: its one write
    lock, taken by writing the feed's entry before anything is read, and the entry taken back if nothing moved), so
    that no door adds to a row between its read here and its move: a door waits, and writes after the commit."""
    if connection.dialect.name == "postgresql":
        names = ", ".join(spec.table.name for spec in _TABLES)
        connection.execute(sa.text(f"LOCK TABLE {names} IN SHARE ROW EXCLUSIVE MODE"))
    entry = connection.execute(sa.insert(_feed).values(at=dt.datetime.now(dt.UTC), origin=None, batch=None)
                               .returning(_feed.c.id)).scalar_one()
    moved = sum(_rekey(connection, spec) for spec in _TABLES)
    if not moved:
        connection.execute(sa.delete(_feed).where(_feed.c.id == entry))
    return moved


_CHUNK = 500  # keys looked up in one statement


def _rekey(connection: sa.Connection, spec: _Table) -> int:
    columns = spec.table.c
    wide = sa.or_(*(columns[name].regexp_match(_NON_ASCII) for name in spec.addresses))
    rows = connection.execute(sa.select(spec.table).where(wide)).mappings().all()
    gone: list[tuple[Any, ...]] = []
    arriving: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        old = tuple(row[name] for name in spec.keys)
        new = _new_key(spec, row)
        if new == old:
            continue
        gone.append(old)
        if new is None:
            continue
        values = {name: row[name] for name in spec.merge}
        arriving[new] = _merged(spec, arriving[new], values) if new in arriving else values
    if not gone:
        return 0
    keys = [columns[name] for name in spec.keys]
    by_key = [column == sa.bindparam(f"k_{column.name}") for column in keys]
    connection.execute(sa.delete(spec.table).where(*by_key),
                       [{f"k_{name}": value for name, value in zip(spec.keys, old, strict=True)} for old in gone])
    wanted = list(arriving)
    there: dict[tuple[Any, ...], dict[str, Any]] = {}
    for at in range(0, len(wanted), _CHUNK):
        found = connection.execute(sa.select(*keys, *(columns[name] for name in spec.merge))
                                   .where(sa.tuple_(*keys).in_(wanted[at:at + _CHUNK]))).mappings()
        for row in found:
            there[tuple(row[name] for name in spec.keys)] = {name: row[name] for name in spec.merge}
    fresh = [{**dict(zip(spec.keys, new, strict=True)), **values}
             for new, values in arriving.items() if new not in there]
    if fresh:
        connection.execute(sa.insert(spec.table), fresh)
    added = [{**{f"k_{name}": value for name, value in zip(spec.keys, new, strict=True)},
              **{f"v_{name}": value for name, value in _merged(spec, there[new], values).items()}}
             for new, values in arriving.items() if new in there]
    if added:
        connection.execute(sa.update(spec.table).where(*by_key)
                           .values({name: sa.bindparam(f"v_{name}") for name in spec.merge}), added)
    return len(gone)


def _merged(spec: _Table, a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    return {name: how(a[name], b[name]) for name, how in spec.merge.items()}


def _new_key(spec: _Table, row: sa.RowMapping) -> tuple[Any, ...] | None:
    """The row's key with its addresses keyed anew; None for a pair that became one address twice."""
    key = {name: (_address_key(row[name]) if name in spec.addresses else row[name]) for name in spec.keys}
    if spec.pair:
        a, b = sorted((key["a"], key["b"]))
        return None if a == b else (a, b)
    return tuple(key[name] for name in spec.keys)


def _address_key(address: str) -> str:
    """`Address.key` of a stored key (its domain is in A-label form already): `rcptguard.model.fold_local` of the
    local part as it was on 2026-12-04, written out here so that the migration stays what it was."""
    local, at, domain = address.rpartition("@")
    if not at or local.isascii():
        return address
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", local).lower())
    if sum(c < "\x80" for c in folded) > sum(c < "\x80" for c in local):  # folding made a lookalike ASCII
        return address
    return f"{folded}{at}{domain}"
