"""`rcptguard config check FILE`: lint a whole config file."""

from __future__ import annotations

from pathlib import Path

import click

from rcptguard.cli.common import build_config, build_guard


@click.group("config")
def config_group() -> None:
    """The configuration file."""


@config_group.command("check")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def config_check(path: Path) -> None:
    """Check every section of a config file: unknown keys, wrong types and bad values are reported with the
    file, the line and the key (exit 2); a good file is summed up (exit 0)."""
    loaded = build_config(path)
    build_guard(loaded.policy)  # builds the index too: known_files and psl_file are read
    policy = loaded.policy
    click.echo(f"{path}: ok")
    click.echo(f"  protect {len(policy.protect)} domains or suffixes, know {len(policy.known)} "
               f"(+ {len(policy.known_files)} files), {len(policy.force)} force rules")
    click.echo(f"  store {loaded.db.url}")
    click.echo(f"  relay next hop {loaded.relay.next_hop}, links to {loaded.relay.base_url}"
               + ("" if loaded.links_configured else " (the default: set [web] base_url)"))
    web = loaded.web
    admin = ("refused (a plain-text admin_password: see `rcptguard web hash-password`)" if web.admin_password
             else "on" if web.admin_user_header or (web.admin_user and web.admin_password_hash) else "off")
    click.echo(f"  policy service hold_mode {loaded.policyd.hold_mode}; web page api {web.api}, admin pages {admin}")
