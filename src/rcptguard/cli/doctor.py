"""`rcptguard doctor`: check a deployment and print what is wrong with the fix (rcptguard.doctor)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command()
@click.option("--config", "config", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The config file the services use (see docs/configuration.md).")
@click.option("--postfix-config", "postfix_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Also check the Postfix configuration in DIR (postconf -c DIR).")
@click.option("--db", "db", metavar="URL", help="Store URL; wins over [db] url in the config.")
@click.option("--relay-listen", default="127.0.0.1:10025", show_default=True, metavar="HOST:PORT",
              help="The relay's --listen, which content_filter must point at.")
@click.option("--policy-service", default="inet:127.0.0.1:10040", show_default=True, metavar="ENDPOINT",
              help="The policy service as main.cf's check_policy_service names it.")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds for each network check (next hop, page).")
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True)
def doctor(config: Path | None, postfix_dir: Path | None, db: str | None, relay_listen: str, policy_service: str,
           timeout: float, output: str) -> None:
    """Check a deployment: the config, the store, the next hop, the page's address, the secrets' permissions and,
    with --postfix-config, the Postfix settings the docs prescribe. Each finding says what is wrong and the fix.
    Exit status: 0 all fine (warnings allowed), 1 a problem found, 2 a usage error. Run it as the user the
    services run as: files are checked for that user."""
    from rcptguard import doctor as checks  # noqa: PLC0415 - the checks load SQLAlchemy and the index

    deployment = checks.Deployment(config=config, db_url=db, postfix_dir=postfix_dir,
                                   relay_listen=_address(relay_listen), policy_service=policy_service,
                                   timeout=timeout)
    findings = checks.diagnose(deployment)
    click.echo(checks.render_json(findings) if output == "json" else checks.render_text(findings))
    sys.exit(checks.exit_status(findings))
