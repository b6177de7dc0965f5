"""The store: learned correspondents (and, later, the quarantine), on SQLite by default or PostgreSQL.

    store = Store.open("sqlite:///rcptguard.db")   # creates and migrates the schema
    Store.open(url, create=False)                   # StoreNotFound when there is no store there yet
    store.add_counts({"army.mil": 3})
    store.learned()                                 # {"army.mil": 3}

SQLite runs in WAL mode with synchronous=FULL, so a committed write survives a crash or power loss. The database
file is never memory-mapped (mmap_size=0); the WAL index (`-shm`) always is, as SQLite requires for several
processes on one database, so an I/O error on it arrives as SIGBUS, which no Python code can handle (docs/relay.md,
"Quarantine claims and release retries"): the daemons rely on systemd to restart them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import threading
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError

from rcptguard.errors import StoreError, StoreNotFound
from rcptguard.store.schema import correspondents, metadata

DEFAULT_URL = "sqlite:///rcptguard.db"
_MIGRATION_LOCK_KEY = 0x72637074  # "rcpt": PostgreSQL advisory lock held while migrating
_MIGRATING = threading.Lock()  # alembic is not thread-safe

__all__ = ["DEFAULT_URL", "Store", "StoreError", "StoreNotFound", "as_utc", "error_line", "metadata", "utc_now"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite hands datetimes back naive; everything is stored in UTC."""
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def error_line(exc: BaseException) -> str:
    """A database error as one line: the driver's message, without SQLAlchemy's background link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:  # noqa: ANN401 - a DB-API connection
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA mmap_size=0")  # reads through read(2): a failing disk is an error, not a SIGBUS
    cursor.close()


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._file = self._file_identity()

    def _sqlite_path(self) -> str | None:
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        return path if path and path != ":memory:" and not path.startswith("file:") else None

    def _file_identity(self) -> tuple[int, int] | None:
        path = self._sqlite_path()
        if path is None:
            return None
        with contextlib.suppress(OSError):
            found = os.stat(path)  # noqa: PTH116 - one stat, the device and inode
            return found.st_dev, found.st_ino
        return None

    def verify(self) -> None:
        """StoreError unless the store is still the one opened: a SQLite file deleted or replaced under a running
        server takes every later write with it (its open connections write on to the unlinked file), so a
        server must check before it promises that something is stored."""
        path = self._sqlite_path()
        if path is None:
            return
        if self._file is None:  # created after the engine was made (first connection): remember it now
            self._file = self._file_identity()
        try:
            found = os.stat(path)  # noqa: PTH116
        except OSError as exc:
            raise StoreError(f"the store {path} is gone ({exc.strerror}): restart to create a new one") from None
        if self._file is not None and (found.st_dev, found.st_ino) != self._file:
            raise StoreError(f"the store {path} was replaced since it was opened: restart to use the new one")

    @classmethod
    def open(cls, url: str = DEFAULT_URL, *, migrate: bool = True, create: bool = True) -> Store:
        """The store at `url`, its schema brought up to date. With `create=False` (for commands that only read)
        nothing is created: StoreNotFound when the SQLite file does not exist, or when the database has no
        rcptguard schema yet (an empty PostgreSQL database is not migrated)."""
        try:
            if url.startswith("sqlite"):
                engine = create_engine(url, connect_args={"timeout": 5})
                event.listen(engine, "connect", _sqlite_pragmas)
                path = engine.url.database
                if path and path != ":memory:":
                    if not create and not path.startswith("file:") and not Path(path).exists():
                        raise StoreNotFound(f"cannot open the store at {url}: {Path(path).absolute()} does not exist")
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            store = cls(engine)
            if not create and not inspect(engine).has_table("alembic_version"):
                engine.dispose()
                raise StoreNotFound(f"cannot open the store at {url}: the database has no rcptguard store in it")
            if migrate:
                store.migrate()
                store._file = store._file_identity()
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"cannot open the store at {url}: {exc}") from exc
        return store

    def migrate(self, revision: str = "head") -> None:
        """Bring the schema to the newest version (alembic upgrade head), one migrator at a time: the
        relay, the policy service and the web page may all start at once on a new database."""
        from alembic import command  # noqa: PLC0415 - alembic is only needed when migrating
        from alembic.config import Config  # noqa: PLC0415

        config = Config()
        config.set_main_option("script_location", "rcptguard.store:migrations")
        with _MIGRATING, self._file_lock(), self.engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        """For SQLite, whose schema changes do not lock out another process: a lock file beside it."""
        path = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        if not path or path == ":memory:":
            yield
            return
        with open(f"{path}.migrate-lock", "a+b") as handle:  # noqa: PTH123 - fcntl needs a file object
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def alone(self, job: str) -> Iterator[bool]:
        """Whether this caller is the only one running `job` (expiry, a purge) against this store now: on
        PostgreSQL a session advisory lock, tried, not waited for, held on a connection of its own until the block
        ends (and released by the server if this process dies); on SQLite a lock file beside the database. Each
        job's writes are safe to run twice at once; the lock saves the second runner its work, and the senders a
        second copy of a log line. False: another runner has it; do nothing."""
        if self.engine.dialect.name == "postgresql":
            key = zlib.crc32(f"rcptguard:{job}".encode()) - 2**31
            try:
                connection = self.engine.connect()
                got = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
                connection.commit()
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot take the lock of {job}: {error_line(exc)}") from exc
            try:
                yield got
            finally:
                with contextlib.suppress(SQLAlchemyError):  # a lost connection has lost its lock with it
                    if got:
                        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                        connection.commit()
                connection.close()
            return
        path = self.engine.url.database
        if not path or path == ":memory:" or path.startswith("file:"):
            yield True
            return
        with open(f"{path}.{job}-lock", "a+b") as handle:  # noqa: PTH123 - fcntl needs a file object
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- correspondents -------------------------------------------------------------------------------

    def learned(self) -> dict[str, int]:
        """Every domain mail was let through to that counts as a correspondent (the poisoning guard's default rule,
        rcptguard.history.rules), with its message count."""
        from rcptguard.store.history import StoreHistory  # noqa: PLC0415 - the history module imports this one

        return StoreHistory(self).learned()

    def add_counts(self, counts: Mapping[str, int], when: dt.datetime | None = None) -> None:
        """Add message counts to correspondents in one transaction (creating the domains not seen yet)."""
        if not counts:
            return
        now = when or utc_now()
        rows = [{"domain": d, "count": n, "first_seen": now, "last_seen": now} for d, n in sorted(counts.items())]
        insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        statement = insert(correspondents)
        statement = statement.on_conflict_do_update(
            index_elements=[correspondents.c.domain],
            set_={"count": correspondents.c.count + statement.excluded.count,
                  "last_seen": statement.excluded.last_seen},
        )
        try:
            with self.engine.begin() as connection:
                connection.execute(statement, rows)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot record correspondents: {exc}") from exc
