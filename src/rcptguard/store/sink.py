"""What the typo domains' sink keeps: one row per refused recipient, metadata only (never a message, which the sink
never accepts), deleted after the retention period.

    refusals = Refusals(store)
    refusals.add([Refusal(at, "192.0.2.1", "mx.example.org", "example.org", None, "army.ml", "army.mil")])
    for row in refusals.since(cutoff): ...          # oldest first, streamed
    refusals.purge(older_than=now - 30 days)        # the number deleted
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

from sqlalchemy import delete, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from rcptguard.store import Store, StoreError, as_utc, error_line
from rcptguard.store.schema import sink_refusals

__all__ = ["Refusal", "Refusals"]


@dataclass(frozen=True, slots=True)
class Refusal:
    """One refused recipient: when, from which server (address and HELO), from which sender's domain (and local
    part, only when configured), for which typo domain, and the domain the sink said was meant. Domains are in
    their A-label form."""

    at: dt.datetime
    client_ip: str
    helo: str
    sender_domain: str
    sender_local: str | None
    typo_domain: str
    intended_domain: str

    @property
    def day(self) -> str:
        return self.at.date().isoformat()


class Refusals:
    """The `sink_refusals` table. Safe from several threads and processes: rows are only added and deleted."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.engine = store.engine

    def add(self, rows: Sequence[Refusal]) -> None:
        """Store `rows` in one transaction (StoreError when the store cannot)."""
        if not rows:
            return
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(sink_refusals), [asdict(row) for row in rows])
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record refusals: {error_line(exc)}") from exc

    def since(self, cutoff: dt.datetime | None = None) -> Iterator[Refusal]:
        """Every row from `cutoff` on (all of them when None), oldest first, read as a stream."""
        query = select(sink_refusals).order_by(sink_refusals.c.at, sink_refusals.c.id)
        if cutoff is not None:
            query = query.where(sink_refusals.c.at >= cutoff)
        try:
            with self.engine.connect() as connection:
                for row in connection.execution_options(stream_results=True, yield_per=1000).execute(query):
                    yield Refusal(as_utc(row.at), row.client_ip, row.helo, row.sender_domain, row.sender_local,
                                  row.typo_domain, row.intended_domain)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot read refusals: {error_line(exc)}") from exc

    def older_than(self, cutoff: dt.datetime) -> int:
        """How many rows are older than `cutoff`."""
        try:
            with self.engine.connect() as connection:
                query = select(func.count()).select_from(sink_refusals).where(sink_refusals.c.at < cutoff)
                return int(connection.execute(query).scalar_one())
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot count refusals: {error_line(exc)}") from exc

    def purge(self, cutoff: dt.datetime) -> int:
        """Delete every row older than `cutoff`; how many went."""
        try:
            with self.engine.begin() as connection:
                result = connection.execute(delete(sink_refusals).where(sink_refusals.c.at < cutoff))
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot purge refusals: {error_line(exc)}") from exc
        return int(result.rowcount)
