"""`rcptguard doctor` against real parts: a deployment built as the docs say (a migrated SQLite store, a next hop
that offers DSN and XFORWARD, a page that answers /healthz, a 0600 key file, the main.cf and master.cf lines of
docs/postfix/*.cf read by the real `postconf -c DIR`), then broken one way at a time.

Each broken setup must be found by the check it concerns, with exit status 1, and by no other check: the good
setup exits 0 with no problem at all, so a finding is caused by the one thing the test broke.
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rcptguard.store import Store
from tests.integration.postfix import SYSTEM_MASTER_CF, PostfixInstance, check_installed, private_master_cf
from tests.support.admin import ADMIN_HASH
from tests.support.processes import free_port
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration

DOCS = Path(__file__).parents[2] / "docs" / "postfix"
DOCTOR = [sys.executable, "-c", "from rcptguard.cli import main; main()", "doctor"]


def documented_main_cf() -> dict[str, str]:
    """The main.cf lines of docs/postfix/relay.main.cf and policyd.main.cf, as printed."""
    main: dict[str, str] = {}
    for name in ("relay.main.cf", "policyd.main.cf"):
        for line in (DOCS / name).read_text("utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                key, _, value = line.partition("=")
                main[key.strip()] = value.strip()
    return main


def documented_master_cf(reinject_port: int) -> str:
    """The master.cf lines of docs/postfix/relay.master.cf, the reinjection service on `reinject_port`."""
    lines = [line for line in (DOCS / "relay.master.cf").read_text("utf-8").splitlines() if not line.startswith("#")]
    return "\n".join(lines).replace("127.0.0.1:10026", f"127.0.0.1:{reinject_port}") + "\n"


class Healthz(http.server.BaseHTTPRequestHandler):
    """A stand-in for `rcptguard web`: 200 on /healthz, 404 elsewhere."""

    def do_GET(self) -> None:
        body = b'{"status": "ok"}' if self.path == "/healthz" else b"not found"
        self.send_response(200 if self.path == "/healthz" else 404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        """Quiet."""


@pytest.fixture(scope="module")
def page() -> Iterator[int]:
    """The port of a page that answers /healthz on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def hop() -> Iterator[RecordingSink]:
    """A next hop that offers DSN and XFORWARD, as Postfix's reinjection smtpd does."""
    with RecordingSink(extensions=True) as started:
        yield started


@dataclass
class Setup:
    """A deployment in a folder; the fields are what a test may break before `run` writes and checks it."""

    root: Path
    next_hop: int
    page: int
    main_cf: dict[str, str] = field(default_factory=documented_main_cf)
    master_cf: str = ""
    config_extra: dict[str, list[str]] = field(default_factory=dict)  # more lines per section
    store_revision: str | None = "head"  # None: no store file at all
    secret_mode: int = 0o600
    secret_file: str = "web.secret"

    def __post_init__(self) -> None:
        self.master_cf = documented_master_cf(self.next_hop)
        self.data = self.root / "data"
        self.config = self.root / "rcptguard.toml"
        self.postfix = self.root / "postfix"

    def section(self, name: str, *lines: str) -> None:
        self.config_extra.setdefault(name, []).extend(lines)

    def write(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        sections = {
            "db": ['url = "sqlite:///data/store.db"'],
            "relay": [f'next_hop = "127.0.0.1:{self.next_hop}"'],
            "web": [f'base_url = "http://127.0.0.1:{self.page}"', f'secret_file = "{self.secret_file}"'],
            "policyd": ['hold_mode = "hold"'],
        }
        for name, lines in self.config_extra.items():
            sections.setdefault(name, []).extend(lines)
        self.config.write_text("".join(f"[{name}]\n" + "".join(f"{line}\n" for line in lines) + "\n"
                                       for name, lines in sections.items()), encoding="utf-8")
        secret = self.root / "web.secret"
        secret.write_text("0123456789abcdef" * 4, encoding="ascii")
        secret.chmod(self.secret_mode)
        if self.store_revision is not None:
            store = Store.open(f"sqlite:///{self.data / 'store.db'}", migrate=False)
            store.migrate(self.store_revision)
            store.close()
        instance = PostfixInstance(self.postfix, smtpd_port=free_port(), relay_port=self.next_hop)
        main = {**instance.main_cf_params(), **self.main_cf}
        instance.config_dir.mkdir(parents=True, exist_ok=True)
        (instance.config_dir / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in main.items()))
        master = private_master_cf(SYSTEM_MASTER_CF.read_text(), instance.smtpd_port) + self.master_cf
        (instance.config_dir / "master.cf").write_text(master)

    def run(self, *extra: str) -> tuple[int, list[dict[str, str]]]:
        """Write the deployment (unless written already), run `rcptguard doctor --format json` on it; the exit
        status and the findings."""
        if not self.config.exists():
            self.write()
        command = [*DOCTOR, "--config", str(self.config), "--postfix-config", str(self.postfix / "etc"),
                   "--timeout", "3", "--format", "json", *extra]
        env = {**os.environ, "HOME": "/tmp", "PYTHONPATH": os.pathsep.join(sys.path)}
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env,
                              cwd="/")
        assert proc.returncode in (0, 1), proc.stderr + proc.stdout
        report = json.loads(proc.stdout)
        assert report["status"] == proc.returncode
        return proc.returncode, report["findings"]


def problems(findings: list[dict[str, str]]) -> list[dict[str, str]]:
    return [f for f in findings if f["level"] == "problem"]


@pytest.fixture
def setup(tmp_path: Path, hop: RecordingSink, page: int) -> Setup:
    try:
        check_installed()
    except Exception as exc:  # noqa: BLE001 - PostfixMissingError, with the install hint
        pytest.fail(str(exc), pytrace=False)
    return Setup(tmp_path / "deployment", hop.port, page)


def test_the_documented_setup_has_no_problem(setup: Setup) -> None:
    """The deployment the docs describe exits 0; every check says ok (the loopback page is no warning either)."""
    status, findings = setup.run()
    assert status == 0, findings
    assert {f["check"] for f in findings} == {"config", "store", "next-hop", "page", "secrets", "postfix"}
    assert [f for f in findings if f["level"] != "ok"] == []
    hop_line = next(f["message"] for f in findings if f["check"] == "next-hop")
    assert "DSN" in hop_line
    assert "XFORWARD" in hop_line


Break = Callable[[Setup], None]


def _wrong_content_filter_port(s: Setup) -> None:
    s.main_cf["content_filter"] = "scan:[127.0.0.1]:10024"


def _policy_before_relay_check(s: Setup) -> None:
    s.main_cf["smtpd_relay_restrictions"] = ""
    s.main_cf["smtpd_recipient_restrictions"] = ("check_policy_service inet:127.0.0.1:10040, "
                                                 "reject_unauth_destination")


def _policy_after_permit(s: Setup) -> None:
    s.main_cf["smtpd_recipient_restrictions"] = "permit_mynetworks, check_policy_service inet:127.0.0.1:10040"


def _default_action_dunno(s: Setup) -> None:
    s.main_cf["smtpd_policy_service_default_action"] = "DUNNO"


def _default_action_5xx(s: Setup) -> None:
    s.main_cf["smtpd_policy_service_default_action"] = "554 5.7.1 Recipient check unavailable"


def _no_end_of_data_check(s: Setup) -> None:
    del s.main_cf["smtpd_end_of_data_restrictions"]


def _missing_reinjection(s: Setup) -> None:
    s.master_cf = s.master_cf.split(f"127.0.0.1:{s.next_hop} ")[0]


def _reinjection_filters_again(s: Setup) -> None:
    s.master_cf = s.master_cf.replace("  -o content_filter=\n", "")


def _data_done_before_reply(s: Setup) -> None:
    s.master_cf = s.master_cf.replace("  -o smtp_generic_maps=\n",
                                      "  -o smtp_generic_maps=\n  -o smtp_data_done_timeout=500s\n")


def _milter_fails_open(s: Setup) -> None:
    s.main_cf["smtpd_milters"] = "inet:127.0.0.1:10050"
    s.main_cf["milter_default_action"] = "accept"


def _unmigrated_store(s: Setup) -> None:
    s.store_revision = "0005"


def _no_store(s: Setup) -> None:
    s.store_revision = None


def _next_hop_down(s: Setup) -> None:
    s.next_hop = free_port()
    s.master_cf = documented_master_cf(s.next_hop)  # Postfix's side stays consistent: only the hop is down


def _world_readable_secret(s: Setup) -> None:
    s.secret_mode = 0o644


def _secret_in_missing_folder(s: Setup) -> None:
    s.secret_file = "no-such-folder/web.secret"


def _inline_password_readable(s: Setup) -> None:
    s.section("web", 'admin_user = "admin"', f'admin_password_hash = "{ADMIN_HASH}"')  # the file is 0644


def _plain_text_password(s: Setup) -> None:
    s.section("web", 'admin_user = "admin"', 'admin_password = "correct horse battery"')


def _missing_token_file(s: Setup) -> None:
    s.section("web", 'api = "token"', 'api_token_file = "api.token"')


def _nothing_at_base_url(s: Setup) -> None:
    s.page = free_port()


def _config_type_error(s: Setup) -> None:
    s.section("relay", 'workers = "many"')


BROKEN: dict[str, tuple[Break, str, str]] = {
    # name: (what breaks it, the check that must say so, words of its message)
    "wrong content_filter port": (_wrong_content_filter_port, "postfix", "does not send mail to the relay"),
    "policy service before reject_unauth_destination": (_policy_before_relay_check, "postfix",
                                                        "before reject_unauth_destination"),
    "policy service after permit_mynetworks": (_policy_after_permit, "postfix", "after permit_mynetworks"),
    "policy default action DUNNO": (_default_action_dunno, "postfix", "default action is 'DUNNO'"),
    "policy default action 5xx": (_default_action_5xx, "postfix", "default action is '554"),
    "hold mode without the end-of-data check": (_no_end_of_data_check, "postfix", "never told"),
    "missing reinjection service": (_missing_reinjection, "postfix", "no smtpd service in master.cf"),
    "reinjection service filters again": (_reinjection_filters_again, "postfix", "round and round"),
    "scan transport gives up before reply_within": (_data_done_before_reply, "postfix", "smtp_data_done_timeout"),
    "milter fails open": (_milter_fails_open, "postfix", "accepted unchecked"),
    "unmigrated store": (_unmigrated_store, "store", "migrated to revision 0005"),
    "store file missing": (_no_store, "store", "does not exist"),
    "next hop down": (_next_hop_down, "next-hop", "cannot talk SMTP"),
    "world-readable secret": (_world_readable_secret, "secrets", "readable by its group and everyone"),
    "secret file missing, cannot be made": (_secret_in_missing_folder, "secrets", "is missing"),
    "inline password hash, config readable by all": (_inline_password_readable, "secrets", "admin_password_hash"),
    "plain-text admin password": (_plain_text_password, "secrets", "a password in plain text"),
    "missing api token file": (_missing_token_file, "config", "web.api_token_file: cannot read"),
    "nothing answers at base_url": (_nothing_at_base_url, "page", "nothing answers"),
    "config error": (_config_type_error, "config", "relay.workers: expected a whole number"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_each_broken_setup_is_found_by_its_check(setup: Setup, name: str) -> None:
    """Each broken setup exits 1 with a problem from the check it concerns, saying what is wrong and the fix."""
    breaks, check, words = BROKEN[name]
    breaks(setup)
    status, findings = setup.run()
    found = problems(findings)
    assert status == 1, findings
    assert {f["check"] for f in found} == {check}, found
    assert any(words in f["message"] for f in found), found
    assert all(f["fix"] for f in found)


def test_a_config_error_names_file_line_and_key(setup: Setup) -> None:
    """A value load_config refuses is one problem naming the file, the line and the key (a bad base_url here)."""
    setup.write()
    text = setup.config.read_text().replace(f'base_url = "http://127.0.0.1:{setup.page}"', 'base_url = "ftp://page"')
    setup.config.write_text(text)
    proc = subprocess.run([*DOCTOR, "--config", str(setup.config), "--format", "json"], capture_output=True,
                          text=True, timeout=60, check=False)
    findings = json.loads(proc.stdout)["findings"]
    line = text.splitlines().index('base_url = "ftp://page"') + 1
    assert proc.returncode == 1
    assert [f["message"] for f in findings] == [
        f"{setup.config}:{line}: web.base_url: expected http(s)://host[:port][/path], got 'ftp://page'"]


def test_a_missing_store_is_not_created(setup: Setup) -> None:
    """Doctor reports a missing SQLite store and leaves no file behind (it never creates a store)."""
    setup.store_revision = None
    status, _ = setup.run()
    assert status == 1
    assert sorted(p.name for p in setup.data.iterdir()) == []


def test_an_unwritable_data_directory_is_found(setup: Setup) -> None:
    """A data folder mounted read-only (what systemd's ProtectSystem=strict does to a folder missing from
    ReadWritePaths; root cannot write there either) is reported: the folder and the store cannot be written."""
    setup.write()
    subprocess.run(["mount", "--bind", str(setup.data), str(setup.data)], check=True, capture_output=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(setup.data)], check=True, capture_output=True)
        status, findings = setup.run()
    finally:
        subprocess.run(["umount", str(setup.data)], check=True, capture_output=True)
    found = problems(findings)
    assert status == 1, findings
    assert {f["check"] for f in found} == {"store"}, found
    assert any(f"folder {setup.data} is not writable" in f["message"] for f in found), found
    assert any("cannot write" in f["message"] for f in found), found


def test_a_next_hop_without_dsn_or_xforward_is_a_warning(setup: Setup) -> None:
    """A next hop that offers neither DSN nor XFORWARD gets one warning for each, and the exit status stays 0."""
    with RecordingSink() as plain:
        setup.next_hop = plain.port
        setup.master_cf = documented_master_cf(plain.port)
        status, findings = setup.run()
    warned = [f["message"] for f in findings if f["level"] == "warning"]
    assert status == 0, findings
    assert len(warned) == 2, warned
    assert "does not offer DSN" in warned[0]
    assert "does not offer XFORWARD" in warned[1]


def test_text_output_gives_each_fix(setup: Setup) -> None:
    """The text format prints each problem with its fix below it, and the count."""
    _wrong_content_filter_port(setup)
    setup.write()
    proc = subprocess.run([*DOCTOR, "--config", str(setup.config), "--postfix-config", str(setup.postfix / "etc")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("PROBLEM  postfix"))
    assert lines[at + 1].strip().startswith("fix: set content_filter = scan:[127.0.0.1]:10025")
    assert lines[-1] == "1 problem, 0 warnings"


def test_usage_errors_exit_2(setup: Setup) -> None:
    """A config file that does not exist, or a --relay-listen that is not HOST:PORT, is a usage error (2)."""
    missing = subprocess.run([*DOCTOR, "--config", str(setup.root / "nope.toml")], capture_output=True, text=True,
                             timeout=60, check=False)
    setup.write()
    bad = subprocess.run([*DOCTOR, "--config", str(setup.config), "--relay-listen", "10025"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert (missing.returncode, bad.returncode) == (2, 2)
