"""The `store` group: `store migrate` (create the store, or bring it to this version's schema, before the services
start: after an install or an upgrade) and `store copy --to URL` (move a deployment's store to another database,
SQLite to PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import click

from rcptguard.cli.common import build_config, db_url


@click.group("store")
def store_group() -> None:
    """The store itself."""


def _source(config: Path | None, db: str | None) -> str:
    return db_url(build_config(config), db)


@store_group.command("migrate")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="Config file; the store is its [db] url.")
@click.option("--db", "db", metavar="URL", help="Store URL; wins over the config's [db] url.")
def migrate(config: Path | None, db: str | None) -> None:
    """Create the store if it is missing and bring its schema to this version's newest revision."""
    from rcptguard.store import Store, StoreError  # noqa: PLC0415 - SQLAlchemy: only when a store is opened

    url = _source(config, db)
    try:
        Store.open(url).close()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{_shown(url)}: at the newest revision")


@store_group.command("copy")
@click.option("--config", "config", type=click.Path(dir_okay=False, path_type=Path),
              help="Config file; the store copied is its [db] url.")
@click.option("--db", "db", metavar="URL", help="The store to copy from; wins over the config's [db] url.")
@click.option("--to", "to", metavar="URL", required=True,
              help="The new, empty store (postgresql+psycopg://...): created and migrated, then filled.")
def copy(config: Path | None, db: str | None, to: str) -> None:
    """Copy every row of the store into a new, empty one, then compare the counts. Stop the services first."""
    from rcptguard.store import Store, StoreError  # noqa: PLC0415 - SQLAlchemy: only when a store is opened
    from rcptguard.store.copy import copy_store  # noqa: PLC0415 - same

    source_url = _source(config, db)
    if source_url == to:
        raise click.UsageError("--to names the store being copied")
    try:
        source = Store.open(source_url, create=False)
        target = Store.open(to)
        counts = copy_store(source, target)
    except StoreError as exc:
        raise click.ClickException(str(exc)) from None
    for table, count in counts.items():
        click.echo(f"{table}: {count} rows")
    click.echo(f"copied {sum(counts.values())} rows to {_shown(to)}: set [db] url to it, then start the services")


def _shown(url: str) -> str:
    """The URL with its password, if any, hidden."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - SQLAlchemy: only when a store is opened

    return make_url(url).render_as_string(hide_password=True)
