"""The page behind TLS: docs/nginx/rcptguard.conf run as it is (ports and paths aside) by a private nginx on
loopback with a self-signed certificate, in front of `rcptguard web`; the relay holds, the notice's link is the
https one, Chromium chooses on the page, and the message is delivered."""

from __future__ import annotations

import contextlib
import getpass
import json
import re
import shutil
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx2
import pytest

from rcptguard.store import Store
from rcptguard.store.quarantine import Quarantine
from tests.integration.test_confirm_e2e import text_of
from tests.support.admin import ADMIN, ADMIN_HASH, browser_sign_in, csrf_in, sign_in
from tests.support.processes import RCPTGUARD, free_port, running, wait_port
from tests.support.sink import Message, RecordingSink

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.integration

SITE = Path(__file__).parents[2] / "docs" / "nginx" / "rcptguard.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SENDER = "me@example-corp.com"
FORGED = {"X-Forwarded-For": "203.0.113.66", "X-Forwarded-Proto": "https"}
STRANGER = "127.0.0.2"  # a client on this machine that is not the proxy (which connects from 127.0.0.1)


@dataclass
class Site:
    url: str  # https, through nginx
    web: str  # http, rcptguard web itself
    http: str  # nginx's plain-http port
    cert: Path
    relay: int
    db: str
    web_log: Path
    sink: RecordingSink

    def access_lines(self) -> list[dict[str, object]]:
        lines = [json.loads(line) for line in self.web_log.read_text(encoding="utf-8").splitlines()
                 if line.startswith("{")]
        return [line for line in lines if line.get("logger") == "rcptguard.web.access"]

    def delivered_to(self, address: str, count: int = 1) -> list[Message]:
        deadline = time.monotonic() + 30
        while True:
            got = [m for m in self.sink.messages if address in m.rcpt_tos]
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, self.sink.messages
            time.sleep(0.1)

    def notice(self, count: int) -> Message:
        deadline = time.monotonic() + 30
        while True:
            notices = [m for m in self.sink.messages if m.rcpt_tos == (SENDER,)]
            if len(notices) >= count:
                return notices[count - 1]
            assert time.monotonic() < deadline, self.sink.messages
            time.sleep(0.1)


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def site_config(https: int, http: int, web: int, cert: Path, key: Path) -> str:
    """docs/nginx/rcptguard.conf with its ports and certificate paths replaced, and nothing else."""
    text = SITE.read_text(encoding="utf-8")
    for old, new in (("listen 443 ssl http2;", f"listen 127.0.0.1:{https} ssl http2;"),
                     ("listen 80;", f"listen 127.0.0.1:{http};"),
                     ("/etc/ssl/certs/mailguard.example.com.pem", str(cert)),
                     ("/etc/ssl/private/mailguard.example.com.key", str(key)),
                     ("http://127.0.0.1:8025", f"http://127.0.0.1:{web}")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@contextlib.contextmanager
def nginx(folder: Path, site: str, port: int) -> Iterator[None]:
    """A private nginx (its own prefix, config, pid and logs in `folder`; no system service) serving `site`."""
    folder.mkdir()
    (folder / "site.conf").write_text(site, encoding="utf-8")
    temp = " ".join(f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                       "scgi"))
    (folder / "nginx.conf").write_text(
        f"user {getpass.getuser()};\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
        f"error_log {folder / 'error.log'} info;\nevents {{ worker_connections 128; }}\n"
        f"http {{\n  {temp}\n  include {folder / 'site.conf'};\n}}\n", encoding="utf-8")
    command = [NGINX, "-p", f"{folder}/", "-e", str(folder / "error.log"), "-c", str(folder / "nginx.conf"),
               "-g", "daemon off;"]
    checked = subprocess.run([*command[:-2], "-t"], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stderr
    with running(command, port, folder / "nginx.out"):
        yield


@pytest.fixture
def site(sink: RecordingSink, tmp_path: Path) -> Iterator[Site]:
    """The relay and `rcptguard web` on one store, nginx with TLS in front of the page; the sink is the next hop."""
    assert Path(NGINX).exists(), "Debian's nginx is needed (apt-get install nginx)"
    https, http, web, relay = free_port(), free_port(), free_port(), free_port()
    cert, key = certificate(tmp_path)
    db = f"sqlite:///{tmp_path / 'store.db'}"
    config = tmp_path / "rcptguard.toml"
    config.write_text(
        f'protect = ["mil", "example-corp.com"]\nknown = ["gmail.com"]\n\n[relay]\n'
        f'next_hop = "127.0.0.1:{sink.port}"\n\n[web]\nbase_url = "https://127.0.0.1:{https}"\n'
        f'trusted_proxies = ["127.0.0.1"]\nsecret = "a tls test secret of enough length"\n'
        f'admin_user = "{ADMIN[0]}"\nadmin_password_hash = "{ADMIN_HASH}"\nadmin_max_failures = 3\n',
        encoding="utf-8")
    web_log = tmp_path / "web.log"
    with (running([RCPTGUARD, "relay", "--config", str(config), "--listen", f"127.0.0.1:{relay}", "--db", db],
                  relay, tmp_path / "relay.log"),
          running([RCPTGUARD, "web", "--config", str(config), "--listen", f"127.0.0.1:{web}", "--db", db],
                  web, web_log),
          nginx(tmp_path / "nginx", site_config(https, http, web, cert, key), https)):
        wait_port(http)
        yield Site(f"https://127.0.0.1:{https}", f"http://127.0.0.1:{web}", f"http://127.0.0.1:{http}", cert,
                   relay, db, web_log, sink)


def hold(site: Site, recipient: str, subject: str) -> None:
    """A message from SENDER to `recipient` through the relay (which holds it and sends the notice)."""
    with smtplib.SMTP("127.0.0.1", site.relay, timeout=30) as smtp:
        smtp.sendmail(SENDER, [recipient], f"From: {SENDER}\r\nTo: {recipient}\r\nSubject: {subject}\r\n\r\n"
                      "Passport numbers attached.\r\n".encode())


def link_in(message: Message) -> str:
    links = set(re.findall(r"https://127\.0\.0\.1:\d+/confirm/[A-Za-z0-9_-]+", text_of(message)))
    assert len(links) == 1, text_of(message)
    return links.pop()


def test_https_through_the_proxy_and_forwarded_headers(site: Site) -> None:
    """Over https (the certificate checked), the page answers through nginx with HSTS; the proxy's forwarded
    headers are believed (a client's own X-Forwarded-For is replaced by nginx), while the same headers sent to
    the page directly are ignored: the access log and the login lockout see the client's real address, and its
    cookie is not Secure. Plain http is sent to https; the access log holds no link token or password."""
    hold(site, "x@army.ml", "crew list")
    link = link_in(site.notice(1))
    assert link.startswith(f"{site.url}/confirm/")
    trust = ssl.create_default_context(cafile=str(site.cert))  # the self-signed certificate, and nothing else
    with httpx2.Client(base_url=site.url, verify=trust, headers=FORGED, follow_redirects=False) as client:
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.headers["strict-transport-security"] == "max-age=63072000"
        assert health.headers["x-content-type-options"] == "nosniff"
        assert client.get(link).status_code == 200
        answer = sign_in(client)
        assert answer.status_code == 303
        assert "secure" in answer.headers["set-cookie"].lower()
    moved = httpx2.get(f"{site.http}/admin", follow_redirects=False)
    assert (moved.status_code, moved.headers["location"]) == (301, "https://mailguard.example.com/admin")
    direct = httpx2.Client(base_url=site.web, headers=FORGED, follow_redirects=False,
                           transport=httpx2.HTTPTransport(local_address=STRANGER))
    assert direct.get("/healthz").status_code == 200
    assert [sign_in(direct, ADMIN[0], "guess").status_code for _ in range(3)] == [401] * 3
    direct.headers["X-Forwarded-For"] = "203.0.113.67"
    assert sign_in(direct).status_code == 429  # locked under its own address, whatever it claims
    direct.close()
    time.sleep(0.5)
    lines = site.access_lines()
    through = [line for line in lines if line.get("proxy") == "127.0.0.1"]
    assert {line["client"] for line in through} == {"127.0.0.1"}  # nginx replaced the forged header
    assert {line["scheme"] for line in through} == {"https"}
    mine = [line for line in lines if line["client"] == STRANGER]
    assert [line["path"] for line in mine][:2] == ["/healthz", "/admin/login"]
    assert all("proxy" not in line and line["scheme"] == "http" for line in mine)
    assert not [line for line in lines if line["client"] in ("203.0.113.66", "203.0.113.67")]
    text = site.web_log.read_text(encoding="utf-8")
    assert link.rpartition("/")[2] not in text
    assert ADMIN[1] not in text
    assert "/confirm/{token}" in text


def test_held_message_to_delivery_in_chromium_over_https(site: Site, browser: Browser) -> None:
    """A held message's notice links to the https page; Chromium, through nginx, chooses "Send to army.mil
    instead" and the message reaches x@army.mil. The admin signs in over https (a Secure, HttpOnly, strict
    cookie), cancels another hold (the audit log names them and where they were), and signs out."""
    hold(site, "x@army.ml", "crew list")
    hold(site, "y@army.ml", "for the admin")
    link = link_in(site.notice(1))
    context = browser.new_context(ignore_https_errors=True)  # the self-signed certificate
    page = context.new_page()
    page.goto(link)
    assert page.url == link
    assert "crew list" in page.content()
    page.get_by_role("button", name="Send to army.mil instead").click()
    page.wait_for_load_state()
    assert page.url == link  # redirect-after-POST, under base_url: https through the proxy
    page.get_by_text("Sent to x@army.mil.").wait_for(timeout=30_000)
    (delivered,) = site.delivered_to("x@army.mil")
    assert b"Passport numbers" in delivered.data
    browser_sign_in(page, site.url)
    (cookie,) = [c for c in context.cookies() if c["name"] == "rcptguard_admin"]
    assert (cookie["secure"], cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, True, "Strict",
                                                                                          "/admin")
    page.goto(f"{site.url}/admin")
    page.get_by_role("button", name="Cancel (never send) to y@army.ml").click()
    page.wait_for_load_state()
    assert "Not sent" in page.content()
    csrf = csrf_in(page.content())
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_load_state()
    assert page.get_by_text("You are signed out.").is_visible()
    page.goto(f"{site.url}/admin")
    assert page.url == f"{site.url}/admin/login"
    context.close()
    store = Store.open(site.db)
    quarantine = Quarantine(store)
    (cancelled,) = quarantine.list("cancelled")
    (event,) = quarantine.events(cancelled.id)
    assert (cancelled.recipient, event.actor, event.detail) == ("y@army.ml", "ops via web admin", "from 127.0.0.1")
    store.close()
    assert csrf not in site.web_log.read_text(encoding="utf-8")
    assert [m for m in site.sink.messages if "y@army.ml" in m.rcpt_tos] == []
