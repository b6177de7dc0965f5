"""The admin's sign-in, sessions and CSRF; forwarded headers believed from trusted proxies only; the access log."""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import TYPE_CHECKING

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from rcptguard.cli import main
from rcptguard.errors import ConfigError
from rcptguard.logs import JsonFormatter
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Quarantine
from rcptguard.web.proxy import ForwardedHeaders, logged_path
from rcptguard.web.settings import WebSettings
from tests.support.admin import ADMIN, csrf_in, sign_in, signed_in
from tests.unit.conftest import FakeClock, MakeClient
from tests.unit.test_web import BASE_URL, form, held, hold_message, issue

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

PROXY = ("192.0.2.1", 41000)  # the reverse proxy, in trusted_proxies
STRANGER = ("198.51.100.9", 42000)  # a client that talks to the page directly
FORGED = {"X-Forwarded-For": "203.0.113.50", "X-Forwarded-Proto": "https"}



@pytest.fixture
def behind_proxy(make_client: MakeClient) -> MakeClient:
    """Clients to the application with PROXY in its trusted_proxies, from STRANGER unless told."""

    def make(client: tuple[str, int] = STRANGER, **kwargs: object) -> TestClient:
        return make_client(client, **{"trusted_proxies": (PROXY[0],), **kwargs})

    return make


def cookies_set(response: object) -> dict[str, str]:
    """Each cookie the response sets: its name and its Set-Cookie line, lowercased."""
    lines = response.headers.get_list("set-cookie")  # type: ignore[attr-defined]
    return {line.partition("=")[0]: line.lower() for line in lines}


# -- sessions ---------------------------------------------------------------------------------------------------


def test_session_cookie_is_http_only_strict_and_ends_at_sign_out(behind_proxy: MakeClient) -> None:
    """Signing in sets a signed session cookie, HttpOnly, SameSite=Strict, for /admin only, without Secure over
    plain http; signing out (a form with the CSRF token) ends the session: the same cookie no longer works."""
    client = behind_proxy()
    answer = sign_in(client)
    assert answer.status_code == 303
    assert answer.headers["location"] == f"{BASE_URL}/admin"
    cookie = cookies_set(answer)["rcptguard_admin"]
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/admin" in cookie
    assert "secure" not in cookie
    value = client.cookies["rcptguard_admin"]
    csrf = csrf_in(client.get("/admin").text)
    assert client.post("/admin/logout", data={"csrf": "wrong"}).status_code == 403
    assert client.get("/admin").status_code == 200  # a forged sign-out changed nothing
    out = client.post("/admin/logout", data={"csrf": csrf})
    assert out.status_code == 303
    assert out.headers["location"] == f"{BASE_URL}/admin/login?out=1"
    assert 'rcptguard_admin=""' in out.headers["set-cookie"] or "max-age=0" in out.headers["set-cookie"].lower()
    assert "You are signed out." in client.get("/admin/login?out=1").text
    replay = behind_proxy()
    replay.cookies.set("rcptguard_admin", value, path="/admin")
    assert replay.get("/admin").status_code == 303


def test_cookie_is_secure_behind_an_https_proxy_only(behind_proxy: MakeClient) -> None:
    """The session cookie is Secure when the trusted proxy says the request came over https; the same header
    from a client that is not the proxy is ignored."""
    behind = behind_proxy(PROXY, headers=FORGED, url="https://testserver")  # its cookie jar sends Secure cookies
    assert "secure" in cookies_set(sign_in(behind))["rcptguard_admin"]
    direct = behind_proxy(STRANGER, headers=FORGED)
    assert "secure" not in cookies_set(sign_in(direct))["rcptguard_admin"]


def test_sessions_end_when_idle_or_too_old(behind_proxy: MakeClient, clock: FakeClock) -> None:
    """A session unused for admin_session_idle seconds ends; one in use ends admin_session_max after sign-in."""
    client = behind_proxy(admin_session_idle=100, admin_session_max=250)
    signed_in(client)
    clock.advance(99)
    assert client.get("/admin").status_code == 200
    clock.advance(101)
    assert client.get("/admin").status_code == 303
    signed_in(client)
    for _ in range(3):
        clock.advance(80)
        assert client.get("/admin").status_code == 200
    clock.advance(20)
    assert client.get("/admin").status_code == 303


def test_forged_posts_are_refused(behind_proxy: MakeClient, quarantine: Quarantine) -> None:
    """An admin's form posted without the session's CSRF token (a forged cross-site post rides on the cookie) is
    refused with 403 and changes nothing; so is another session's token, and a sign-in form that this browser
    did not load."""
    (hold,) = hold_message(quarantine)
    client, other = behind_proxy(), behind_proxy(("198.51.100.10", 1))
    csrf, other_csrf = signed_in(client), signed_in(other)
    assert csrf != other_csrf
    for data in ({"action": "cancel"}, {"action": "cancel", "csrf": ""}, {"action": "cancel", "csrf": other_csrf},
                 {"action": "cancel", "csrf": csrf[:-1]}):
        assert client.post(f"/admin/holds/{hold.id}", data=data).status_code == 403
    assert quarantine.require(hold.id).state == "held"
    fresh = behind_proxy(("198.51.100.11", 1))
    csrf_of_another_browser = csrf_in(client.get("/admin/login").text)
    refused = fresh.post("/admin/login", data={"user": ADMIN[0], "password": ADMIN[1],
                                               "csrf": csrf_of_another_browser})
    assert refused.status_code == 403
    assert "rcptguard_admin" not in cookies_set(refused)
    assert client.post(f"/admin/holds/{hold.id}", data={"action": "cancel", "csrf": csrf}).status_code == 200
    assert quarantine.require(hold.id).state == "cancelled"


def test_signing_in_again_ends_the_old_session(behind_proxy: MakeClient) -> None:
    """A new sign-in in the same browser starts a new session (a new id) and ends the one it replaces."""
    client = behind_proxy()
    signed_in(client)
    old = client.cookies["rcptguard_admin"]
    signed_in(client)
    assert client.cookies["rcptguard_admin"] != old
    replay = behind_proxy()
    replay.cookies.set("rcptguard_admin", old, path="/admin")
    assert replay.get("/admin").status_code == 303


# -- forwarded headers ------------------------------------------------------------------------------------------


def test_forwarded_for_is_believed_from_the_proxy_only(behind_proxy: MakeClient, quarantine: Quarantine) -> None:
    """Through the trusted proxy, the audit log names the client the proxy saw; a client that sends
    X-Forwarded-For itself is recorded under its own address."""
    first, second = hold_message(quarantine, held("a@army.ml"), held("b@army.ml"))
    behind = behind_proxy(PROXY, headers=FORGED, url="https://testserver")
    for client, hold, seen in ((behind, first, FORGED["X-Forwarded-For"]),
                               (behind_proxy(STRANGER, headers=FORGED), second, STRANGER[0])):
        csrf = signed_in(client)
        assert client.post(f"/admin/holds/{hold.id}", data={"action": "cancel", "csrf": csrf}).status_code == 200
        (event,) = quarantine.events(hold.id)
        assert (event.actor, event.detail) == ("ops via web admin", f"from {seen}")


def test_forged_forwarded_for_does_not_escape_the_limits(behind_proxy: MakeClient) -> None:
    """A client that names a new X-Forwarded-For on every request is still counted under its own address: the
    login locks it and the check API's bucket empties."""
    client = behind_proxy(STRANGER, admin_max_failures=3)
    for number in range(3):
        client.headers["X-Forwarded-For"] = f"203.0.113.{number}"
        assert sign_in(client, ADMIN[0], "guess").status_code == 401
    client.headers["X-Forwarded-For"] = "203.0.113.99"
    assert sign_in(client).status_code == 429
    api = behind_proxy(STRANGER, api="open", api_rate=0.01, api_burst=2)
    codes = [api.post("/v1/check", json={"recipients": ["a@army.ml"]},
                      headers={"X-Forwarded-For": f"203.0.113.{number}"}).status_code for number in range(3)]
    assert codes == [200, 200, 429]


def test_forwarded_for_chain() -> None:
    """The client is the right-most address that is not a trusted proxy; garbage stops the walk at the last
    proxy that spoke."""
    trusted = ForwardedHeaders(None, trusted=[ipaddress.ip_network("10.0.0.0/8")])  # type: ignore[arg-type]
    peer = ipaddress.ip_address("10.0.0.1")

    def client_of(header: str) -> str:
        return str(trusted.client_of(header.split(","), peer))

    assert client_of("203.0.113.5") == "203.0.113.5"
    assert client_of("198.51.100.1, 203.0.113.5") == "203.0.113.5"  # the left one is the client's own claim
    assert client_of("203.0.113.5, 10.0.0.2") == "203.0.113.5"
    assert client_of("10.0.0.3, 10.0.0.2") == "10.0.0.3"
    assert client_of("not-an-address, 10.0.0.2") == "10.0.0.2"
    assert client_of("[2001:db8::1]") == "2001:db8::1"


# -- single sign-on by the proxy --------------------------------------------------------------------------------


def test_proxy_names_the_admin_in_a_header(behind_proxy: MakeClient, quarantine: Quarantine) -> None:
    """With admin_user_header, the trusted proxy's header signs the admin in (and names them in the audit log);
    the same header from anyone else is dropped."""
    (hold,) = hold_message(quarantine)
    settings = {"admin_user": None, "admin_password_hash": None, "admin_user_header": "X-Remote-User"}
    proxy = behind_proxy(PROXY, headers={"X-Remote-User": "alice"}, **settings)
    page = proxy.get("/admin")
    assert page.status_code == 200
    assert "Signed in as" in page.text
    assert "alice" in page.text
    done = proxy.post(f"/admin/holds/{hold.id}", data={"action": "cancel", "csrf": csrf_in(page.text)})
    assert done.status_code == 200
    assert quarantine.require(hold.id).decided_by == "alice via web admin"
    assert proxy.post(f"/admin/holds/{hold.id}", data={"action": "cancel"}).status_code == 403
    stranger = behind_proxy(STRANGER, headers={"X-Remote-User": "alice"}, **settings)
    assert stranger.get("/admin").status_code == 303
    assert "single sign-on" in stranger.get("/admin/login").text


# -- the access log ---------------------------------------------------------------------------------------------


def test_access_log_has_one_line_a_request_and_no_secrets(behind_proxy: MakeClient, quarantine: Quarantine,
                                                          links: Links, caplog: pytest.LogCaptureFixture) -> None:
    """Each request is one JSON line (method, path, status, bytes, time, client); a link's token, a password,
    a CSRF token and a session cookie appear in none of them, not even for a mistyped link."""
    holds = hold_message(quarantine)
    token = issue(links, holds)
    client = behind_proxy(PROXY, headers={"X-Forwarded-For": "203.0.113.7"})
    with caplog.at_level(logging.INFO, logger="rcptguard.web.access"):
        client.get(f"/confirm/{token}")
        client.post(f"/confirm/{token}", data=form(token, holds[0].id, "cancel"))
        client.get(f"/confirm/{token}/")
        client.get(f"/confirm/{token}/more")
        client.get(f"/c/{token}")
        csrf = signed_in(client)
        client.post("/admin/logout", data={"csrf": csrf})
    records = [r for r in caplog.records if r.name == "rcptguard.web.access"]
    lines = [json.loads(JsonFormatter().format(r)) for r in records]
    assert [(line["method"], line["path"], line["status"]) for line in lines] == [
        ("GET", "/confirm/{token}", 200), ("POST", "/confirm/{token}", 303), ("GET", "/confirm/{token}/…", 308),
        ("GET", "/confirm/{token}/…", 404), ("GET", "/c/…", 404), ("GET", "/admin/login", 200),
        ("POST", "/admin/login", 303), ("GET", "/admin", 200), ("POST", "/admin/logout", 303)]
    assert all(line["client"] == "203.0.113.7" and line["proxy"] == PROXY[0] for line in lines)
    assert lines[-2]["admin"] == ADMIN[0]
    assert all(line["bytes"] >= 0 and line["ms"] >= 0 for line in lines)
    text = "\n".join(JsonFormatter().format(r) for r in records)
    for secret in (token, ADMIN[1], csrf, "rcptguard_admin"):
        assert secret not in text


@pytest.mark.parametrize(("access_log", "lines"), [("info", 1), ("debug", 0), ("off", 0)])
def test_access_log_level(behind_proxy: MakeClient, caplog: pytest.LogCaptureFixture, access_log: str,
                          lines: int) -> None:
    """[web] access_log sets the level of its lines ("debug" hides them at the info level) or turns it off."""
    client = behind_proxy(access_log=access_log)
    with caplog.at_level(logging.INFO, logger="rcptguard.web.access"):
        client.get("/healthz")
    assert len([r for r in caplog.records if r.name == "rcptguard.web.access"]) == lines


def test_logged_path() -> None:
    """A route's path as it is; a sender's page without its token; an unknown path by its first segment."""
    assert logged_path("/admin/holds/abc", matched=True) == "/admin/holds/abc"
    assert logged_path("/confirm/SECRET", matched=True) == "/confirm/{token}"
    assert logged_path("/wp-login.php", matched=False) == "/wp-login.php"
    assert logged_path("/x/SECRET/y", matched=False) == "/x/…"


# -- the password hash ------------------------------------------------------------------------------------------


def test_hash_password_reads_stdin_and_prints_an_argon2_hash() -> None:
    """`rcptguard web hash-password` reads the password from stdin (never an argument) and prints its argon2id
    hash, which checks against it; a short one is refused."""
    result = CliRunner().invoke(main, ["web", "hash-password"], input="a long enough password\n")
    assert result.exit_code == 0, result.output
    line = result.output.strip()
    assert line.startswith("$argon2id$")
    assert PasswordHasher().verify(line, "a long enough password")
    assert "a long enough password" not in result.output
    assert CliRunner().invoke(main, ["web", "hash-password", "secret-argument"]).exit_code == 2
    short = CliRunner().invoke(main, ["web", "hash-password"], input="short\n")
    assert short.exit_code == 2
    assert "at least 8 characters" in short.output


def test_web_refuses_a_plain_text_password(tmp_path: object) -> None:
    """`rcptguard web` with admin_password in the config stops with status 2, saying how to make the hash."""
    path = tmp_path / "rcptguard.toml"  # type: ignore[operator]
    path.write_text('[web]\nadmin_user = "ops"\nadmin_password = "plain"\nsecret = "0123456789abcdef"\n')
    result = CliRunner().invoke(main, ["web", "--config", str(path), "--db", "sqlite://"])
    assert result.exit_code == 2
    assert "admin_password is a password in plain text" in result.output
    assert "rcptguard web hash-password" in result.output


@pytest.mark.parametrize(("section", "message"), [
    ({"admin_password_hash": "plain"}, "web.admin_password_hash: expected an argon2 hash"),
    ({"trusted_proxies": ["10.0.0.0/33"]}, "web.trusted_proxies: expected an address or network"),
    ({"trusted_proxies": "127.0.0.1"}, "web.trusted_proxies: expected a list of strings"),
    ({"admin_user_header": "X-Remote-User"}, "web.admin_user_header: needs trusted_proxies"),
    ({"admin_user_header": "X Remote", "trusted_proxies": ["127.0.0.1"]}, "web.admin_user_header: expected"),
    ({"access_log": "loud"}, "web.access_log: expected one of"),
    ({"admin_session_idle": 0}, "web.admin_session_idle: a number of seconds above 0"),
])
def test_admin_and_proxy_settings_are_checked(section: dict[str, object], message: str) -> None:
    """The new [web] keys are refused with their name when they cannot be used."""
    with pytest.raises(ConfigError, match=message):
        WebSettings.from_section(section, "web")
