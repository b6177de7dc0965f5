"""The `rcptguard` command line: the `main` group, and the commands of the modules of this package.

- `common`: what every command module shares (the detection options, the config, policy and guard, the store);
- `check`: check, explain, detectors, eval;
- `servers`: policyd, relay, milter, web, and release (Postfix HOLD);
- `quarantine`: the `quarantine` group;
- `config`: the `config` group (`config check`);
- `doctor`: `doctor`, the checks of a deployment (rcptguard.doctor);
- `sink`: the `sink` group, the typo domains' SMTP server and its report and purge;
- `store`: the `store` group (`store migrate`, `store copy`);
- `scan`: `scan`, the archive audit (rcptguard.audit);
- `history`: learn, known, report observe, eval-messages.

Each command module imports `common` and nothing else of the package; only this module imports them all, and no
module imports this one.

Exit status of deciding commands: 0 if every verdict is pass, 1 if any is not, 2 for a usage or config error.
"""

from __future__ import annotations

import click

from rcptguard import __version__
from rcptguard.cli import check, config, doctor, history, quarantine, scan, servers, sink, store


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rcptguard")
def main() -> None:
    """Stops email from leaving for the wrong recipient: typo and lookalike domains, caught in the mail path."""


for _command in (check.check, check.explain, check.detectors_command, check.eval_command,
                 servers.policyd, servers.release, servers.relay, servers.milter, servers.web,
                 quarantine.quarantine, config.config_group, doctor.doctor, sink.sink, store.store_group, scan.scan,
                 history.learn, history.known, history.report, history.eval_messages):
    main.add_command(_command)
