"""`rcptguard doctor`: the checks of a deployment, each a function that returns findings with the fix.

    findings = diagnose(Deployment(config=Path("/etc/rcptguard/rcptguard.toml"), postfix_dir=Path("/etc/postfix")))
    exit_status(findings)        # 0 all fine (warnings allowed), 1 a problem found

    check      what it looks at                                       how
    config     every section, the policy's files (known_files, psl)   load_config, Guard
    store      reachable, migrated to the newest revision, writable   read alembic_version; an UPDATE rolled back
    next-hop   [relay] next_hop answers 220 and EHLO; its extensions  smtplib, a short timeout
    page       [web] base_url: https unless loopback, behind a        GET {base_url}/healthz, a short timeout
               trusted proxy when https; answers
    secrets    secret_file, api_token_file, inline secrets; no        file modes
               plain-text admin password
    postfix    the lines docs/postfix/*.cf prescribe                  postconf -c DIR -x / -M / -P

A finding is data (`Finding`: check, level, message, fix), so the text and the JSON output come from one list.
Nothing here changes the deployment: the store is never created or migrated (a SQLite file is opened with
`mode=rw`, which does not create one), and the write test is rolled back. File permissions are those of the user
running the command: run it as the user the services run as (`sudo -u rcptguard rcptguard doctor ...`).

The checks on Postfix split in two: `read_postfix` runs postconf, `postfix_findings` is a pure function of what
it read (`PostfixConf`) and the config, so each rule is tested without a Postfix.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import os
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rcptguard.config import Config, load_config
from rcptguard.delivery import NextHop
from rcptguard.errors import ConfigError
from rcptguard.web.settings import NOT_HASHED

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["Deployment", "Finding", "Level", "PostfixConf", "Service", "check_base_url", "check_config",
           "check_next_hop", "check_secrets", "check_store", "diagnose", "exit_status", "hop_findings",
           "parse_master", "parse_params", "policy_entries", "postfix_findings", "postfix_seconds", "read_postfix",
           "render_json", "render_text", "url_findings"]

WANTED_EXTENSIONS = ("DSN", "XFORWARD", "SMTPUTF8", "8BITMIME")
PASSED_ON = ("DSN", "XFORWARD")  # what the relay says again to a next hop that offers it (docs/relay.md)
PERMITS = ("permit", "permit_mynetworks", "permit_sasl_authenticated", "permit_tls_clientcerts",
           "permit_tls_all_clientcerts")
RELAY_GUARDS = ("reject_unauth_destination", "defer_unauth_destination")
FAIL_CLOSED = ("DEFER_IF_PERMIT", "DEFER")
RELAY_MASTER_CF = "docs/postfix/relay.master.cf"
POLICYD_MAIN_CF = "docs/postfix/policyd.main.cf"
MILTER_MAIN_CF = "docs/postfix/milter.main.cf"
MILTER_MASTER_CF = "docs/postfix/milter.master.cf"


class Level(enum.Enum):
    """How bad a finding is; any `PROBLEM` makes the exit status 1."""

    OK = "ok"
    WARNING = "warning"
    PROBLEM = "problem"


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing a check found: which check, how bad, what it is, and how to fix it ("" when nothing to fix)."""

    check: str
    level: Level
    message: str
    fix: str = ""


def ok(check: str, message: str) -> Finding:
    return Finding(check, Level.OK, message)


def warning(check: str, message: str, fix: str) -> Finding:
    return Finding(check, Level.WARNING, message, fix)


def problem(check: str, message: str, fix: str) -> Finding:
    return Finding(check, Level.PROBLEM, message, fix)


@dataclass(frozen=True, slots=True)
class Deployment:
    """What to check: the command line of `rcptguard doctor`."""

    config: Path | None = None
    db_url: str | None = None  # wins over [db] url
    postfix_dir: Path | None = None
    relay_listen: tuple[str, int] = ("127.0.0.1", 10025)  # the relay's --listen (not in the config)
    policy_service: str = "inet:127.0.0.1:10040"  # the policy service as main.cf names it
    timeout: float = 5.0  # seconds for each network check
    postconf: str | None = None  # the postconf program (default: found in PATH or /usr/sbin)


def diagnose(deployment: Deployment) -> list[Finding]:
    """Every check, in order; when the config does not load, only that finding (the others need it)."""
    findings, config = check_config(deployment.config)
    if config is None:
        return findings
    findings += check_store(deployment.db_url or config.db.url)
    findings += check_next_hop(config.relay.hop, deployment.timeout, config.relay.hostname)
    findings += check_base_url(config, deployment.timeout)
    findings += check_secrets(config)
    if deployment.postfix_dir is not None:
        conf = read_postfix(deployment.postfix_dir, deployment.postconf)
        if isinstance(conf, Finding):
            findings.append(conf)
        else:
            findings += postfix_findings(conf, config, deployment.relay_listen, deployment.policy_service)
    return findings


def exit_status(findings: Iterable[Finding]) -> int:
    """0 when nothing is a problem (warnings allowed), 1 otherwise."""
    return 1 if any(f.level is Level.PROBLEM for f in findings) else 0


def render_text(findings: list[Finding]) -> str:
    """One line per finding (level, check, message), the fix below it, and a count at the end."""
    lines = []
    for finding in findings:
        lines.append(f"{finding.level.value.upper():8} {finding.check:9} {finding.message}")
        if finding.fix:
            lines.append(f"{'':18} fix: {finding.fix}")
    problems = sum(f.level is Level.PROBLEM for f in findings)
    warnings = sum(f.level is Level.WARNING for f in findings)
    lines.append(f"{problems} problem{'s' * (problems != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    return "\n".join(lines)


def render_json(findings: list[Finding]) -> str:
    """{"status": 0|1, "findings": [{"check", "level", "message", "fix"}, ...]}."""
    rows = [{**asdict(f), "level": f.level.value} for f in findings]
    return json.dumps({"status": exit_status(findings), "findings": rows}, indent=2)


# -- the config ---------------------------------------------------------------------------------------------------

def check_config(path: Path | None) -> tuple[list[Finding], Config | None]:
    """Every section of the file, and the policy's own files (known_files, psl_file), as the servers read them."""
    from rcptguard.guard import Guard  # noqa: PLC0415 - builds the index: only when the config loads

    where = str(path) if path else "the built-in defaults (no --config)"
    try:
        config = load_config(path)
        Guard(config.policy)
    except ConfigError as exc:
        return [problem("config", str(exc), "correct that key (docs/configuration.md); `rcptguard config check "
                        "FILE` checks the file alone; the other checks need a config that loads")], None
    return [ok("config", f"{where}: every section loads")], config


# -- the store ----------------------------------------------------------------------------------------------------

def _head_revision() -> str:
    from alembic.config import Config as AlembicConfig  # noqa: PLC0415 - only to read the migrations' folder
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    config = AlembicConfig()
    config.set_main_option("script_location", "rcptguard.store:migrations")
    head = ScriptDirectory.from_config(config).get_current_head()
    return head or ""


def _known_revisions() -> set[str]:
    from alembic.config import Config as AlembicConfig  # noqa: PLC0415
    from alembic.script import ScriptDirectory  # noqa: PLC0415

    config = AlembicConfig()
    config.set_main_option("script_location", "rcptguard.store:migrations")
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


def _engine(url: str) -> Engine:
    from sqlalchemy import create_engine  # noqa: PLC0415 - SQLAlchemy only for the store's check

    return create_engine(url, connect_args={"timeout": 5} if url.startswith("sqlite") else {"connect_timeout": 5})


def _revision(urls: list[str]) -> str | None:
    """The store's alembic revision (None: no rcptguard store there), read through the first URL that opens."""
    from sqlalchemy import inspect, text  # noqa: PLC0415
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    for index, url in enumerate(urls):
        engine = _engine(url)
        try:
            with engine.connect() as connection:
                if not inspect(connection).has_table("alembic_version"):
                    return None
                return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar())
        except SQLAlchemyError:
            if index == len(urls) - 1:
                raise
        finally:
            engine.dispose()
    return None


def _write_error(url: str) -> str | None:
    """Why a write to the store fails (None: it works): an UPDATE that changes nothing, rolled back."""
    from sqlalchemy import text  # noqa: PLC0415
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from rcptguard.store import error_line  # noqa: PLC0415

    engine = _engine(url)
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            connection.execute(text("UPDATE alembic_version SET version_num = version_num"))
            transaction.rollback()
    except SQLAlchemyError as exc:
        return error_line(exc)
    finally:
        engine.dispose()
    return None


def check_store(url: str) -> list[Finding]:
    """The store at `url` is there, migrated to the newest revision and writable; nothing is created or migrated:
    a SQLite file is opened with mode=rw, which never creates one (and, when even that fails, read as an immutable
    file for its revision)."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - SQLAlchemy only for this check
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError  # noqa: PLC0415

    from rcptguard.store import error_line  # noqa: PLC0415

    started = "start `rcptguard relay`, `policyd` or `web` once with this URL: each creates and migrates the store"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        return [problem("store", f"{url}: not a database URL ({exc})", "set [db] url (or --db) to sqlite:///PATH "
                        "or postgresql+psycopg://USER@HOST/DB")]
    findings: list[Finding] = []
    read_urls, write_url = [url], url
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database or ""
        if not path or path == ":memory:" or path.startswith("file:"):
            return [problem("store", f"{url}: an in-memory store keeps nothing", "set [db] url to a file")]
        file = Path(path).absolute()
        if not file.exists():
            return [problem("store", f"the store {file} does not exist (doctor does not create it)",
                            f"{started}, or correct [db] url / --db")]
        if not os.access(file.parent, os.W_OK | os.X_OK):
            findings.append(problem("store", f"the store's folder {file.parent} is not writable by this user: "
                                    "SQLite makes its -wal, -shm and journal files there",
                                    "make it writable by the user the services run as (chown; and in a systemd "
                                    "unit with ProtectSystem=strict, list it in ReadWritePaths)"))
        write_url = f"sqlite:///file:{file}?mode=rw&uri=true"
        read_urls = [write_url, f"sqlite:///file:{file}?mode=ro&immutable=1&uri=true"]
    try:
        version = _revision(read_urls)
    except (SQLAlchemyError, ImportError) as exc:
        reason = error_line(exc) if isinstance(exc, SQLAlchemyError) else str(exc)
        return [*findings, problem("store", f"cannot reach the store at {url}: {reason}",
                                   "start the database, or correct [db] url / --db")]
    if version is None:
        return [*findings, problem("store", f"{url}: the database has no rcptguard store in it", started)]
    head = _head_revision()
    if version != head:
        if version in _known_revisions():
            findings.append(problem("store", f"{url}: migrated to revision {version}, the newest is {head}",
                                    "start one server of this version (it migrates the store as it opens), after "
                                    "stopping those of the older version"))
        else:
            findings.append(problem("store", f"{url}: revision {version!r} is unknown to this rcptguard (a newer "
                                    "version made it?)", "upgrade rcptguard to the version that made the store"))
    failed = _write_error(write_url)
    if failed is not None:
        findings.append(problem("store", f"{url}: cannot write: {failed}", "give the user the services run as the "
                                "right to write the store (the file and its folder, or the database role)"))
    if not findings:
        findings.append(ok("store", f"{url}: reachable, at the newest revision ({head}), writable"))
    return findings


# -- the next hop -------------------------------------------------------------------------------------------------

def check_next_hop(hop: NextHop, timeout: float, helo: str | None = None) -> list[Finding]:
    """Connect, read the greeting, say EHLO and QUIT, each within `timeout` seconds."""
    try:
        with smtplib.SMTP(timeout=timeout, local_hostname=helo or socket.gethostname() or "localhost") as smtp:
            smtp.connect(hop.host, hop.port)  # SMTPConnectError unless the greeting is a 220
            code, reply = smtp.ehlo()
            if code != 250:
                return [problem("next-hop", f"{hop} answers EHLO with {code} {reply.decode(errors='replace')}",
                                "let the relay's host send to it ([relay] allow and smtpd restrictions there)")]
            features = dict(smtp.esmtp_features)
    except (OSError, smtplib.SMTPException) as exc:
        reason = getattr(exc, "smtp_error", b"")
        said = reason.decode(errors="replace") if isinstance(reason, bytes) and reason else str(exc) or type(
            exc).__name__
        return [problem("next-hop", f"cannot talk SMTP to the next hop {hop}: {said}",
                        "start the service there (the reinjection smtpd of docs/postfix/relay.master.cf), or "
                        "correct [relay] next_hop")]
    return hop_findings(str(hop), features)


def hop_findings(hop: str, features: Mapping[str, str]) -> list[Finding]:
    """What a next hop that said EHLO offers: the extensions the relay uses named, a warning for each it passes
    on (DSN, XFORWARD) that is missing."""
    offered = {name.upper() for name in features}
    listed = ", ".join(name for name in WANTED_EXTENSIONS if name.lower() in features or name in offered) or "none"
    findings = [ok("next-hop", f"{hop} answers EHLO; offers {listed}")]
    missing = [name for name in PASSED_ON if name not in offered]
    for name in missing:
        why = {"DSN": "senders' NOTIFY, RET, ENVID and ORCPT stop at the relay (it sends the reports itself)",
               "XFORWARD": "the log after the filter names the relay, not the original client"}[name]
        fix = {"DSN": "offer DSN on the reinjection smtpd (Postfix does by default: remove DSN from "
                      "smtpd_discard_ehlo_keywords there)",
               "XFORWARD": "add `-o smtpd_authorized_xforward_hosts=127.0.0.0/8` to the reinjection service "
                           f"({RELAY_MASTER_CF})"}[name]
        findings.append(warning("next-hop", f"{hop} does not offer {name}: {why}", fix))
    return findings


# -- the page -----------------------------------------------------------------------------------------------------

def _loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def url_findings(base_url: str, configured: bool) -> list[Finding]:
    """What the address of the page says by itself: senders reach it (not a default), over https unless on
    loopback."""
    parsed = urllib.parse.urlsplit(base_url)
    host = parsed.hostname or ""
    if not configured:
        return [warning("page", f"[web] base_url is not set: links in notices point to the default {base_url}",
                        "set [web] base_url to the address senders reach the page at (https://...)")]
    if parsed.scheme != "https" and not _loopback(host):
        return [warning("page", f"{base_url} is plain http: every confirmation link crosses the network in clear",
                        "put the page behind TLS (a reverse proxy) and set [web] base_url to its https:// address")]
    if _loopback(host):
        return [ok("page", f"{base_url} is on loopback: links work from this machine only")]
    return [ok("page", f"{base_url} is https")]


def check_base_url(config: Config, timeout: float) -> list[Finding]:
    """The page's address (`url_findings`), the relay's links pointing at it, and whether rcptguard web answers
    there (GET /healthz)."""
    base_url = config.web.base_url
    findings = url_findings(base_url, config.links_configured)
    if base_url.startswith("https:") and not config.web.trusted_proxies:
        findings.append(warning("page", f"{base_url} is https, but [web] trusted_proxies is empty: rcptguard web "
                                "believes no proxy, so it sees every request come from the proxy, over http (the "
                                "rate limits and the audit log see the proxy's address, and the admin's cookie "
                                "is sent without Secure)",
                                'set [web] trusted_proxies to the proxy\'s address (e.g. ["127.0.0.1"]); '
                                "docs/tls.md"))
    if config.relay.base_url.rstrip("/") != config.web.public_url:
        findings.append(warning("page", f"[relay] base_url {config.relay.base_url} is not [web] base_url "
                                f"{base_url}: the links in notices lead elsewhere than the page",
                                "remove [relay] base_url (it takes [web] base_url)"))
    host = urllib.parse.urlsplit(base_url).hostname or ""
    health = f"{config.web.public_url}/healthz"
    try:
        with urllib.request.urlopen(health, timeout=timeout) as response:  # noqa: S310 - http(s) only (checked)
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        message = f"nothing answers at {base_url} ({reason})"
        fix = "start `rcptguard web` (and the proxy in front of it), or correct [web] base_url"
        if _loopback(host):
            findings.append(problem("page", message, fix))
        else:  # doctor may run where the public name does not route: say so, do not fail
            findings.append(warning("page", f"{message} from this machine", f"check from outside; {fix}"))
        return findings
    if status == 200:
        findings.append(ok("page", f"rcptguard web answers at {health}"))
    else:
        findings.append(problem("page", f"{health} answers HTTP {status}: senders' links do not reach the page",
                                "point the proxy at `rcptguard web`, or correct [web] base_url"))
    return findings


# -- secrets ------------------------------------------------------------------------------------------------------

def _mode_problem(name: str, path: Path, readers: int) -> Finding | None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & readers:
        who = " and ".join(w for w, bit in (("its group", stat.S_IRGRP), ("everyone", stat.S_IROTH))
                           if mode & readers & bit)
        return problem("secrets", f"{name} {path} is readable by {who} (mode {stat.S_IMODE(mode):04o})",
                       f"chmod {'600' if readers & stat.S_IRGRP else '640'} {path}; chown it to the user the "
                       "services run as")
    return None


def _key_file(path: Path, configured: bool) -> list[Finding]:
    """The page's key file: 0600 and long enough when it is there; when not, whether `rcptguard web` can make it."""
    if path.exists():
        findings = [f for f in [_mode_problem("[web] secret_file", path, stat.S_IRGRP | stat.S_IROTH)] if f]
        try:
            short = len(path.read_text(encoding="ascii").strip()) < 16
        except (OSError, UnicodeDecodeError) as exc:
            return [*findings, problem("secrets", f"[web] secret_file {path} cannot be read: {exc}",
                                       "make it readable by the user the services run as")]
        if short:
            findings.append(problem("secrets", f"[web] secret_file {path} holds fewer than 16 characters: "
                                    "rcptguard web refuses to start", f"openssl rand -hex 32 > {path}"))
        return findings
    make = f"openssl rand -hex 32 > {path}; chmod 600 {path}; chown rcptguard {path}"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        level = problem if configured else warning  # not configured: maybe no page runs here at all
        return [level("secrets", f"[web] secret_file {path} is missing and its folder cannot be written: rcptguard "
                      "web cannot make it and will not start", f"{make}, or correct [web] secret_file")]
    if configured:
        return [warning("secrets", f"[web] secret_file {path} is missing: rcptguard web makes a new key there at its "
                        "first start (every web instance must share it)", make)]
    return []


def check_secrets(config: Config) -> list[Finding]:
    """The page's key file and API token file: present (or creatable), not readable by group or others; a config
    file with a password, key or token written in it: not readable by others."""
    findings: list[Finding] = []
    checked: list[str] = []
    web = config.web
    if web.admin_password:
        findings.append(problem("secrets", f"{NOT_HASHED}: rcptguard web refuses to start",
                                "run `rcptguard web hash-password` (it asks for the password), set admin_password_hash "
                                "to the line it prints and delete admin_password (docs/web.md)"))
    inline = [key for key in ("admin_password", "admin_password_hash", "secret", "api_token") if getattr(web, key)
              and not (key == "api_token" and web.api_token_file)]
    if inline and config.source is not None:
        checked.append(str(config.source))
        found = _mode_problem(f"the config, with [web] {', '.join(inline)} written in it,", config.source,
                              stat.S_IROTH)
        findings += [found] if found else []
    if not web.secret:
        path = Path(web.secret_file) if web.secret_file else config.base / "rcptguard-web.secret"
        checked += [str(path)] if path.exists() else []
        findings += _key_file(path, configured=web.secret_file is not None)
    if web.api_token_file:
        path = config.base / web.api_token_file
        checked.append(str(path))
        found = _mode_problem("[web] api_token_file", path, stat.S_IRGRP | stat.S_IROTH)
        findings += [found] if found else []
    if not findings:
        findings.append(ok("secrets", f"{', '.join(checked)}: not readable by others" if checked
                           else "no secret files yet (rcptguard web makes its key at its first start)"))
    return findings


# -- Postfix ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Service:
    """One master.cf entry: name, type, command, and its `-o` overrides."""

    name: str
    type: str
    command: str
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PostfixConf:
    """What postconf said: main.cf's effective parameters (`-x`, defaults included) and master.cf's services."""

    main: Mapping[str, str]
    services: tuple[Service, ...] = ()

    def service(self, name: str, kind: str) -> Service | None:
        return next((s for s in self.services if s.name == name and s.type == kind), None)

    def param(self, service: Service | None, name: str) -> str:
        """The parameter as `service` sees it: its `-o` override, else main.cf's."""
        if service is not None and name in service.params:
            return service.params[name]
        return self.main.get(name, "")


def parse_params(output: str) -> dict[str, str]:
    """`name = value` lines (postconf -x, -P) as a dict."""
    found = {}
    for line in output.splitlines():
        name, sep, value = line.partition(" =")
        if sep:
            found[name.strip()] = value.strip()
    return found


def parse_master(services: str, params: str) -> tuple[Service, ...]:
    """postconf -M (one entry a line) and postconf -P (`service/type/name = value`) as services."""
    overrides: dict[tuple[str, str], dict[str, str]] = {}
    for key, value in parse_params(params).items():
        name, kind, param = key.rsplit("/", 2)
        overrides.setdefault((name, kind), {})[param] = value
    found = []
    for line in services.splitlines():
        fields = line.split()
        if len(fields) >= 8:
            found.append(Service(fields[0], fields[1], fields[7], overrides.get((fields[0], fields[1]), {})))
    return tuple(found)


def _postconf(program: str, directory: Path, *args: str) -> str:
    result = subprocess.run([program, "-c", str(directory), *args], capture_output=True, text=True,  # noqa: S603
                            check=False, timeout=30)
    if result.returncode != 0:
        raise OSError((result.stderr.strip() or f"exit status {result.returncode}").splitlines()[0])
    return result.stdout


def read_postfix(directory: Path, program: str | None = None) -> PostfixConf | Finding:
    """The Postfix configuration in `directory`, read with postconf; a problem finding when it cannot be."""
    program = program or shutil.which("postconf") or shutil.which("postconf", path="/usr/sbin:/usr/local/sbin")
    if program is None:
        return problem("postfix", "postconf is not installed here", "run doctor on the Postfix host, or install "
                       "postfix")
    try:
        main = parse_params(_postconf(program, directory, "-x"))
        services = parse_master(_postconf(program, directory, "-M"), _postconf(program, directory, "-P"))
    except (OSError, subprocess.SubprocessError) as exc:
        return problem("postfix", f"cannot read the Postfix configuration in {directory}: {exc}",
                       "give the directory of main.cf and master.cf (postconf -c DIR)")
    return PostfixConf(main, services)


def postfix_seconds(value: str) -> float | None:
    """A Postfix time ("600s", "10m", "1h", "600": seconds) in seconds, None when it is not one."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", value)
    if match is None:
        return None
    return int(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match[2]]


def _tokens(value: str) -> list[str]:
    """A restriction list as tokens; `{ ... }` (an argument with attributes) is one token."""
    return re.findall(r"\{[^{}]*\}|[^\s,{}]+", value)


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """One `check_policy_service` in a restriction list: where, the endpoint, and its `{ name=value }` attributes."""

    where: str
    index: int
    endpoint: str
    attributes: Mapping[str, str]
    before: tuple[str, ...]  # the tokens in front of it in its list


def policy_entries(conf: PostfixConf, where: str) -> list[PolicyEntry]:
    """Every check_policy_service in the restriction list `where`."""
    tokens = _tokens(conf.main.get(where, ""))
    found = []
    for index, token in enumerate(tokens[:-1]):
        if token.lower() != "check_policy_service":
            continue
        argument = tokens[index + 1]
        attributes: dict[str, str] = {}
        if argument.startswith("{"):
            parts = [part.strip() for part in argument[1:-1].split(",")]
            argument = parts[0]
            for part in parts[1:]:
                name, _, value = part.partition("=")
                attributes[name.strip()] = value.strip()
        found.append(PolicyEntry(where, index, argument, attributes, tuple(t.lower() for t in tokens[:index])))
    return found


def _same_endpoint(one: str, other: str) -> bool:
    def norm(text: str) -> str:
        text = text.strip().lower().removeprefix("inet:")
        host, sep, port = text.rpartition(":")
        if sep and _loopback(host.strip("[]")) and port.isdigit():
            return f"loopback:{port}"
        return text

    return norm(one) == norm(other)


def _host_port(text: str) -> tuple[str, int] | None:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _same_address(one: tuple[str, int], other: tuple[str, int]) -> bool:
    return one[1] == other[1] and (one[0] == other[0] or (_loopback(one[0]) and _loopback(other[0])))


def postfix_findings(conf: PostfixConf, config: Config, relay_listen: tuple[str, int],
                     policy_service: str) -> list[Finding]:
    """What docs/postfix/*.cf prescribe, checked against what postconf said."""
    findings = _content_filter(conf, config, relay_listen)
    findings += _policy_service(conf, config, policy_service)
    policy_in_path = any(policy_entries(conf, where) for where in ("smtpd_relay_restrictions",
                                                                   "smtpd_recipient_restrictions"))
    milter = _our_milter(conf, config)
    if not conf.main.get("content_filter") and not policy_in_path and milter is None:
        findings.append(problem("postfix", "neither the relay (content_filter), the policy service "
                                "(check_policy_service) nor the milter (smtpd_milters) is in Postfix's path: "
                                "nothing is checked", f"add the lines of docs/postfix/relay.main.cf, {POLICYD_MAIN_CF} "
                                f"or {MILTER_MAIN_CF}"))
    findings += _milters(conf)
    if milter is not None:
        findings += _milter(conf, config, milter)
    return findings


def _content_filter(conf: PostfixConf, config: Config, relay_listen: tuple[str, int]) -> list[Finding]:
    value = conf.main.get("content_filter", "")
    listen = f"[{relay_listen[0]}]:{relay_listen[1]}"
    if not value:
        return [ok("postfix", "no content_filter: the relay is not Postfix's filter")]
    transport, _, destination = value.partition(":")
    address = _host_port(destination)
    if address is None or not _same_address(address, relay_listen):
        return [problem("postfix", f"content_filter = {value} does not send mail to the relay, which listens on "
                        f"{listen}", f"set content_filter = scan:{listen} (docs/postfix/relay.main.cf), or pass "
                        "the relay's --listen as --relay-listen")]
    findings = [ok("postfix", f"content_filter = {value} sends mail to the relay")]
    scan = conf.service(transport, "unix")
    if scan is None or scan.command not in ("smtp", "lmtp"):
        findings.append(problem("postfix", f"content_filter's transport {transport!r} is not an smtp service in "
                                "master.cf: Postfix defers every message", f"add the `scan` entry of "
                                f"{RELAY_MASTER_CF}"))
    else:
        name = f"{scan.command}_data_done_timeout"
        done = postfix_seconds(conf.param(scan, name))
        if done is not None and done <= config.relay.reply_within:
            findings.append(problem("postfix", f"{transport}'s {name} ({done:g} s) is not longer than the relay's "
                                    f"reply_within ({config.relay.reply_within:g} s): Postfix can give up on a "
                                    "message the relay then delivers, and send it again",
                                    f"lower [relay] reply_within below {done:g}, or raise {name} (default 600s)"))
        if conf.param(scan, f"{scan.command}_send_xforward_command").lower() != "yes":
            findings.append(warning("postfix", f"{transport} does not send XFORWARD: the relay logs Postfix, not "
                                    "the original client", f"-o {scan.command}_send_xforward_command=yes "
                                    f"({RELAY_MASTER_CF})"))
    findings += _reinjection(conf, config)
    return findings


def _next_hop_service(conf: PostfixConf, config: Config) -> Service | None:
    """The smtpd of master.cf on the port of `[relay] next_hop` (where the relay and releases hand mail back)."""
    hop = _host_port(config.relay.next_hop)
    assert hop is not None  # RelaySettings.check parsed it
    return next((s for s in conf.services if s.type == "inet" and s.command == "smtpd"
                 and (s.name == str(hop[1]) or ((found := _host_port(s.name)) is not None
                                                and _same_address(found, hop)))), None)


def _reinjection(conf: PostfixConf, config: Config) -> list[Finding]:
    service = _next_hop_service(conf, config)
    if service is None:
        return [problem("postfix", f"no smtpd service in master.cf on the relay's next hop {config.relay.next_hop}: "
                        "mail the relay passes on has nowhere to go", f"add the `127.0.0.1:10026 inet ... smtpd` "
                        f"entry of {RELAY_MASTER_CF}, on the port of [relay] next_hop")]
    findings = []
    if service.params.get("content_filter", None) != "":
        findings.append(problem("postfix", f"the reinjection service {service.name} does not turn content_filter "
                                "off: mail the relay passes on goes back to the relay, round and round",
                                f"add `-o content_filter=` to {service.name} in master.cf"))
    if not service.params.get("smtpd_authorized_xforward_hosts"):
        findings.append(warning("postfix", f"the reinjection service {service.name} accepts no XFORWARD: Postfix's "
                                "log after the filter names the relay, not the original client",
                                f"add `-o smtpd_authorized_xforward_hosts=127.0.0.0/8` to {service.name}"))
    if not findings:
        findings.append(ok("postfix", f"the reinjection service {service.name} has content_filter off and takes "
                           "XFORWARD"))
    return findings


def _fails_closed(action: str) -> bool:
    return bool(re.match(r"4\d\d(\s|$)", action)) or action.strip().upper() in FAIL_CLOSED


def _policy_service(conf: PostfixConf, config: Config, endpoint: str) -> list[Finding]:
    relay = conf.main.get("smtpd_relay_restrictions", "")
    relay_tokens = [t.lower() for t in _tokens(relay)]
    ours = [e for where in ("smtpd_relay_restrictions", "smtpd_recipient_restrictions")
            for e in policy_entries(conf, where) if _same_endpoint(e.endpoint, endpoint)]
    if not ours:
        return [ok("postfix", f"no check_policy_service {endpoint}: the policy service is not in Postfix's path")]
    findings = []
    for entry in ours:
        name = f"check_policy_service {entry.endpoint} in {entry.where}"
        guarded = any(t in RELAY_GUARDS for t in entry.before) or (
            entry.where == "smtpd_recipient_restrictions" and any(t in RELAY_GUARDS for t in relay_tokens))
        if not guarded:
            findings.append(problem("postfix", f"{name} comes before reject_unauth_destination: the service is "
                                    "asked about mail Postfix would not relay, and learns from it",
                                    f"end smtpd_relay_restrictions with reject_unauth_destination and keep the "
                                    f"check in smtpd_recipient_restrictions ({POLICYD_MAIN_CF})"))
        permits = [t for t in entry.before if t in PERMITS]
        if permits:
            findings.append(problem("postfix", f"{name} comes after {', '.join(permits)}: mail those clients send "
                                    "is permitted before it is checked", f"move {', '.join(permits)} behind the "
                                    f"check, or out of {entry.where} ({POLICYD_MAIN_CF})"))
        action = entry.attributes.get("default_action") or conf.main.get("smtpd_policy_service_default_action", "")
        if not _fails_closed(action):
            findings.append(problem("postfix", f"{name}: its default action is {action!r}, so mail passes unchecked "
                                    "while the service is down", "smtpd_policy_service_default_action = 451 4.3.5 "
                                    "Recipient check unavailable, try again later"))
        idle = postfix_seconds(entry.attributes.get("max_idle") or conf.main.get("smtpd_policy_service_max_idle", ""))
        if idle is not None and idle >= config.policyd.idle_timeout:
            findings.append(warning("postfix", f"{name}: Postfix keeps idle connections {idle:g} s, the service "
                                    f"closes them after {config.policyd.idle_timeout:g} s: Postfix meets closed "
                                    "connections", "keep smtpd_policy_service_max_idle below [policyd] "
                                    "idle_timeout"))
    policyd = config.policyd
    if policyd.hold_mode == "hold" and policyd.notify_at == "end-of-message" and not any(
            _same_endpoint(e.endpoint, endpoint) for e in policy_entries(conf, "smtpd_end_of_data_restrictions")):
        findings.append(problem("postfix", f'hold_mode = "hold" but smtpd_end_of_data_restrictions does not ask '
                                f"{endpoint}: senders of held mail are never told",
                                f"smtpd_end_of_data_restrictions = check_policy_service {endpoint} "
                                f"({POLICYD_MAIN_CF})"))
    if not findings:
        findings.append(ok("postfix", f"check_policy_service {endpoint} sits after reject_unauth_destination and "
                           "fails closed"))
    return findings


def _milter_address(entry: str, queue_directory: str) -> str:
    """A milter's address in libmilter's words, as `[milter] listen` says it, from main.cf's or libmilter's: a
    relative unix: path is relative to Postfix's queue directory, inet:HOST:PORT is inet:PORT@HOST, and every
    loopback host is 127.0.0.1."""
    kind, _, rest = entry.strip().partition(":")
    if kind in ("unix", "local"):
        return "unix:" + (rest if rest.startswith("/") else f"{queue_directory.rstrip('/')}/{rest}")
    port, at, host = rest.partition("@")
    found = (host, int(port)) if at and port.isdigit() else _host_port(rest)
    if kind in ("inet", "inet6") and found is not None:
        return f"inet:{found[1]}@{'127.0.0.1' if _loopback(found[0]) else found[0]}"
    return entry.strip()


def _our_milter(conf: PostfixConf, config: Config) -> str | None:
    """rcptguard's milter as `smtpd_milters` names it, or None when it is not there."""
    queue = conf.main.get("queue_directory", "/var/spool/postfix")
    ours = _milter_address(config.milter.listen, queue)
    return next((entry for entry in _milter_entries(conf.main.get("smtpd_milters", ""))
                 if _milter_address(entry, queue) == ours), None)


def _milter_entries(value: str) -> list[str]:
    """The milters of a smtpd_milters list, each as named (`{ inet:..., default_action=... }` as its address)."""
    return [token[1:-1].split(",")[0].strip() if token.startswith("{") else token for token in _tokens(value)]


def _milter(conf: PostfixConf, config: Config, entry: str) -> list[Finding]:
    """rcptguard's milter is in smtpd_milters: the protocol it needs, mail from sendmail(1), and a way back in for
    released mail that does not pass the milter again."""
    findings = []
    queue = conf.main.get("queue_directory", "/var/spool/postfix")
    protocol = conf.main.get("milter_protocol", "6")
    if not protocol.isdigit() or int(protocol) < 6:
        findings.append(warning("postfix", f"milter_protocol = {protocol}: the milter's headers and body are "
                                "answered one by one (version 6 sends them without waiting)",
                                f"milter_protocol = 6 ({MILTER_MAIN_CF})"))
    others = [_milter_address(e, queue) for e in _milter_entries(conf.main.get("non_smtpd_milters", "").replace(
        "$smtpd_milters", conf.main.get("smtpd_milters", "")))]
    if _milter_address(entry, queue) not in others:
        findings.append(warning("postfix", "the milter is not in non_smtpd_milters: mail submitted with sendmail(1) "
                                "is not checked", f"non_smtpd_milters = $smtpd_milters ({MILTER_MAIN_CF})"))
    service = _next_hop_service(conf, config)
    if service is None:
        findings.append(problem("postfix", f"no smtpd service in master.cf on [relay] next_hop "
                                f"{config.relay.next_hop}: released mail has nowhere to go",
                                f"add the `127.0.0.1:10026 inet ... smtpd` entry of {MILTER_MASTER_CF}"))
    elif service.params.get("smtpd_milters", None) != "" and "no_milters" not in service.params.get(
            "receive_override_options", ""):
        findings.append(problem("postfix", f"the reinjection service {service.name} runs the milters: a released "
                                "message is judged again and held again", f"add `-o smtpd_milters=` to "
                                f"{service.name} in master.cf ({MILTER_MASTER_CF})"))
    if not findings:
        findings.append(ok("postfix", f"the milter {entry} is in smtpd_milters and non_smtpd_milters (protocol "
                           f"{protocol}); released mail comes back through {service.name if service else '-'} "
                           "without it"))
    return findings


def _milters(conf: PostfixConf) -> list[Finding]:
    milters = conf.main.get("smtpd_milters", "") or conf.main.get("non_smtpd_milters", "")
    if not milters:
        return []
    action = conf.main.get("milter_default_action", "tempfail").lower()
    if action == "tempfail":
        return [ok("postfix", f"milters {milters} fail closed (milter_default_action = tempfail)")]
    level = problem if action == "accept" else warning
    return [level("postfix", f"milter_default_action = {action}: when a milter is down, mail is "
                  + ("accepted unchecked" if action == "accept" else f"{action}ed"),
                  "milter_default_action = tempfail")]

