"""The web front's limits: body size, check-API access and rate, admin login lockout, URLs from base_url only."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rcptguard.guard import Guard
from rcptguard.store.links import Links
from rcptguard.store.quarantine import Quarantine
from rcptguard.web.settings import WebSettings
from tests.support.admin import ADMIN, sign_in
from tests.support.sink import RecordingSink
from tests.unit.conftest import FakeClock, MakeClient
from tests.unit.test_web import BASE_URL, LOCAL, build_app, form, hold_message, issue

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

# The fixtures of test_web: a store, a quarantine, links, a guard and a recording next hop per test; a clock and
# make_client (tests/unit/conftest.py).


TOKEN = "an-api-token-of-enough-length"
REMOTE = ("192.0.2.7", 40000)


def check(client: TestClient, *recipients: str, **kwargs: object) -> int:
    return client.post("/v1/check", json={"recipients": list(recipients or ["a@army.ml"])},
                       **kwargs).status_code


# -- the body limit --------------------------------------------------------------------------------------------


def test_declared_body_over_the_limit_is_413_before_reading(make_client: MakeClient) -> None:
    """A Content-Length over api_max_body is answered 413 with a short JSON error; one within it is read."""
    client = make_client(api_max_body=1000)
    body = json.dumps({"recipients": ["a@army.ml"] * 100}).encode()
    assert len(body) > 1000
    response = client.post("/v1/check", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is larger than 1000 bytes."}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert check(client, *["a@army.ml"] * 10) == 200


def test_chunked_body_over_the_limit_is_cut_off(quarantine: Quarantine, links: Links, guard: Guard,
                                                sink: RecordingSink) -> None:
    """A body without Content-Length (chunked) is counted as it arrives and refused with 413 once past the limit:
    the application takes no more of it from the server than the limit and one chunk."""
    app = build_app(quarantine, links, guard, sink.port, settings=WebSettings(api_max_body=10_000))
    taken = 0
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        nonlocal taken
        taken += 1
        if taken == 1:
            return {"type": "http.request", "body": b'{"recipients": ["', "more_body": True}
        return {"type": "http.request", "body": b"a" * 1000, "more_body": taken < 50_000}  # 50 MB in all

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/v1/check", "raw_path": b"/v1/check", "root_path": "", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                         (b"transfer-encoding", b"chunked")],
             "client": LOCAL, "server": ("127.0.0.1", 8025)}
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"]) == {"detail": "The request body is larger than 10000 bytes."}
    assert len(sent) == 2
    assert taken <= 12


def test_form_bodies_are_limited_too(make_client: MakeClient, quarantine: Quarantine,
                                     links: Links) -> None:
    """A page's form POST of more than 64 KiB is refused with 413 and decides nothing."""
    client = make_client()
    holds = hold_message(quarantine)
    token = issue(links, holds)
    data = form(token, holds[0].id, "cancel", confirm_domain="x" * 70_000)
    assert client.post(f"/confirm/{token}", data=data).status_code == 413
    assert quarantine.require(holds[0].id).state == "held"


def test_recipient_limit_is_configurable(make_client: MakeClient) -> None:
    """api_max_recipients sets the most recipients per request, in the handler and in the OpenAPI schema."""
    client = make_client(api_max_recipients=5)
    assert check(client, *["a@army.ml"] * 5) == 200
    assert check(client, *["a@army.ml"] * 6) == 422
    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["CheckRequest"]["properties"]["recipients"]["maxItems"] == 5


# -- who may call the API ----------------------------------------------------------------------------------------


def test_loopback_by_default_and_a_token_for_others(make_client: MakeClient) -> None:
    """By default loopback clients need no token; another address gets 401 without the right Bearer token
    (403 when no token is configured at all), and 200 with it."""
    assert check(make_client(LOCAL)) == 200
    assert check(make_client(("::1", 1))) == 200
    assert check(make_client(REMOTE)) == 403
    remote = make_client(REMOTE, api_token=TOKEN)
    assert check(remote) == 401
    refused = remote.post("/v1/check", json={"recipients": ["a@b.c"]}, headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert check(remote, headers={"Authorization": f"Basic {TOKEN}"}) == 401
    assert check(remote, headers={"Authorization": f"Bearer {TOKEN}x"}) == 401
    assert check(remote, headers={"Authorization": f"Bearer {TOKEN}"}) == 200


def test_token_mode_asks_everyone_and_off_hides_the_api(make_client: MakeClient) -> None:
    """api = "token" asks loopback clients for the token too; api = "off" answers 404 and drops it from the
    schema; the pages and /healthz stay."""
    local = make_client(LOCAL, api="token", api_token=TOKEN)
    assert check(local) == 401
    assert check(local, headers={"Authorization": f"Bearer {TOKEN}"}) == 200
    off = make_client(LOCAL, api="off")
    assert check(off) == 404
    assert "/v1/check" not in off.get("/openapi.json").json()["paths"]
    assert off.get("/healthz").status_code == 200
    assert check(make_client(REMOTE, api="open")) == 200


def test_rate_limit_per_address(make_client: MakeClient, clock: FakeClock) -> None:
    """Past the burst an address gets 429 with Retry-After until its bucket refills; other addresses are not
    affected."""
    client = make_client(LOCAL, api_rate=0.5, api_burst=3)
    assert [check(client) for _ in range(3)] == [200, 200, 200]
    refused = client.post("/v1/check", json={"recipients": ["a@b.c"]})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"
    other = make_client(("127.0.0.2", 1), api_rate=0.5, api_burst=3)
    assert [check(other) for _ in range(3)] == [200, 200, 200]
    assert check(other) == 429
    clock.advance(1.0)
    assert check(client) == 429
    clock.advance(1.0)
    assert check(client) == 200
    assert check(client) == 429


# -- the admin login -----------------------------------------------------------------------------------------------


def test_admin_login_locks_after_repeated_failures(make_client: MakeClient, clock: FakeClock,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """After 10 wrong passwords the right one is refused with 429 and Retry-After until the lock passes; the
    next lock is twice as long; each lock is logged as a structured line."""
    client = make_client(REMOTE)
    assert sign_in(client).status_code == 303
    with caplog.at_level(logging.WARNING, logger="rcptguard.web"):
        assert [sign_in(client, ADMIN[0], "guess").status_code for _ in range(10)] == [401] * 10
    locked = sign_in(client)
    assert locked.status_code == 429
    assert locked.headers["retry-after"] == "60"
    assert "Signing in is locked for a while" in locked.text
    clock.advance(59)
    assert sign_in(client).status_code == 429
    clock.advance(2)
    assert sign_in(client).status_code == 303
    records = [r for r in caplog.records if r.getMessage() == "admin_login_locked"]
    assert [r.fields["key"] for r in records] == ["address", "user"]
    assert records[0].fields == {"key": "address", "value": REMOTE[0], "failures": 10,
                                 "locked_seconds": 60.0, "lock": 1}
    failed = [r.fields for r in caplog.records if r.getMessage() == "admin_sign_in_failed"]
    assert failed[0] == {"user": ADMIN[0], "client": REMOTE[0]}
    assert all("guess" not in str(r.__dict__) for r in caplog.records)


def test_admin_lock_grows_and_counts_per_user(make_client: MakeClient, clock: FakeClock) -> None:
    """Wrong passwords for the admin user from many addresses lock the user everywhere; another lock within
    the window lasts twice as long; guesses of other user names lock only their address."""
    for number in range(10):
        assert sign_in(make_client((f"198.51.100.{number}", 1)), ADMIN[0], "guess").status_code == 401
    fresh = make_client(("203.0.113.1", 1))
    assert sign_in(fresh).status_code == 429
    clock.advance(61)
    for number in range(10):
        sign_in(make_client((f"198.51.100.{number + 20}", 1)), ADMIN[0], "guess")
    second = sign_in(fresh)
    assert (second.status_code, second.headers["retry-after"]) == (429, "120")
    clock.advance(121)
    assert sign_in(fresh).status_code == 303
    for number in range(20):
        sign_in(make_client((f"198.51.100.{number + 40}", 1)), "nobody", "x")
    assert sign_in(make_client(("203.0.113.2", 1))).status_code == 303


def test_lockout_settings_are_used(make_client: MakeClient, clock: FakeClock) -> None:
    """admin_max_failures and admin_lockout set when and for how long a login locks."""
    client = make_client(REMOTE, admin_max_failures=3, admin_lockout=5, admin_lockout_max=6)
    for _ in range(3):
        sign_in(client, ADMIN[0], "guess")
    assert sign_in(client).headers["retry-after"] == "5"
    clock.advance(5)
    for _ in range(3):
        sign_in(client, ADMIN[0], "guess")
    assert sign_in(client).headers["retry-after"] == "6"


# -- URLs from base_url, never from the Host header --------------------------------------------------------------


@pytest.mark.parametrize("headers", [{"Host": "evil.example"},
                                     {"Host": "evil.example", "X-Forwarded-Proto": "http",
                                      "X-Forwarded-Host": "evil.example"}])
def test_trailing_slash_redirects_under_base_url(make_client: MakeClient, headers: dict[str, str]) -> None:
    """GET /confirm/<token>/ with a forged Host (and forwarded headers) goes to base_url's page, over https as
    configured, never to the Host it named."""
    client = make_client()
    token = "A" * 43
    response = client.get(f"/confirm/{token}/", headers=headers)
    assert response.status_code == 308
    assert response.headers["location"] == f"{BASE_URL}/confirm/{token}"
    assert client.get("/admin/", headers=headers).status_code == 404
    assert client.get("/healthz/", headers=headers).status_code == 404
    odd = client.get("/confirm/a.b/", headers=headers)
    assert (odd.status_code, odd.headers.get("location")) == (404, None)


def test_decision_redirect_ignores_the_host_header(make_client: MakeClient, quarantine: Quarantine,
                                                   links: Links) -> None:
    """The redirect after a decision goes to base_url whatever Host and X-Forwarded-Proto the request named."""
    client = make_client()
    holds = hold_message(quarantine)
    token = issue(links, holds)
    response = client.post(f"/confirm/{token}", data=form(token, holds[0].id, "cancel"),
                           headers={"Host": "evil.example", "X-Forwarded-Proto": "http"})
    assert response.status_code == 303
    assert response.headers["location"] == f"https://mailguard.example.com/guard/confirm/{token}"


def signed_in_page(client: TestClient) -> object:
    """The admin list, signed in with a forged Host all along."""
    client.headers["Host"] = "evil.example"
    assert sign_in(client).status_code == 303
    return client.get("/admin")


def test_pages_link_only_to_relative_or_base_urls(make_client: MakeClient, quarantine: Quarantine,
                                                  links: Links) -> None:
    """No page names the Host it was asked under: links and form actions are relative paths."""
    client = make_client()
    holds = hold_message(quarantine)
    token = issue(links, holds)
    for response in (client.get(f"/confirm/{token}", headers={"Host": "evil.example"}),
                     signed_in_page(client)):
        assert response.status_code == 200
        assert "evil.example" not in response.text
        assert all(not url.startswith("//") and "://" not in url
                   for url in re.findall(r'(?:href|action)="([^"]*)"', response.text))


# -- the settings --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "message"), [
    ({"api": "public"}, "web.api: expected one of"),
    ({"api": "token"}, 'web.api: "token" needs api_token'),
    ({"api_token": "short"}, "web.api_token: at least 16"),
    ({"api_max_body": "1MB"}, "web.api_max_body: expected a whole number"),
    ({"api_max_body": 0}, "web.api_max_body: at least 1"),
    ({"api_rate": True}, "web.api_rate: expected a number"),
    ({"api_rate": -1}, "web.api_rate: expected 0 or more"),
    ({"admin_lockout": 0}, "web.admin_lockout: a number of seconds"),
    ({"admin_lockout": 100, "admin_lockout_max": 10}, "web.admin_lockout_max: at least admin_lockout"),
    ({"base_url": "mailguard.example.com"}, "web.base_url: expected http(s)://"),
    ({"base_url": 8025}, "web.base_url: expected a string"),
    ({"api_tokn": "x"}, "web.api_tokn: unknown key"),
    ({"api_token_file": "missing.txt"}, "web.api_token_file: cannot read"),
])
def test_settings_are_checked(section: dict[str, object], message: str, tmp_path: Path) -> None:
    """A [web] value of the wrong type or range is refused with the key's name."""
    with pytest.raises((TypeError, ValueError), match=re.escape(message)):
        WebSettings.from_section(section, "web").with_token_file(tmp_path)


def test_settings_defaults_and_token_file(tmp_path: Path) -> None:
    """Every key has its default; api_token_file is read relative to the config file's folder."""
    assert WebSettings.from_section({}, "web") == WebSettings()
    assert (WebSettings().api, WebSettings().api_max_recipients, WebSettings().base_url) == (
        "loopback", 1000, "http://127.0.0.1:8025")
    (tmp_path / "token").write_text(TOKEN + "\n")
    section = {"api": "token", "api_token_file": "token", "api_rate": 2}
    settings = WebSettings.from_section(section, "web").with_token_file(tmp_path)
    assert (settings.api_token, settings.api_rate) == (TOKEN, 2.0)


def test_web_command_refuses_a_bad_web_setting(tmp_path: Path) -> None:
    """`rcptguard web` stops with a usage error (status 2) naming the key of a mistyped [web] value, and the
    policy loader accepts every [web] key."""
    from click.testing import CliRunner

    from rcptguard.cli import main
    from rcptguard.policy import load_policy

    config = tmp_path / "rcptguard.toml"
    keys = ('api = "token"\napi_token = "' + TOKEN + '"\napi_max_body = 2048\napi_max_recipients = 10\n'
            "api_rate = 1.5\napi_burst = 5\nadmin_max_failures = 3\nadmin_failure_window = 60\nadmin_lockout = 5\n"
            "admin_lockout_max = 50\nrelease_workers = 2\n")
    config.write_text(f'[web]\nbase_url = "https://mailguard.example.com"\n{keys}', encoding="utf-8")
    section = load_policy(config).sections["web"]
    assert WebSettings.from_section(section, "web").with_token_file(tmp_path).api_max_recipients == 10
    config.write_text('[web]\napi_rate = "fast"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["web", "--config", str(config), "--db", f"sqlite:///{tmp_path / 'w.db'}"])
    assert result.exit_code == 2
    assert "web.api_rate: expected a number, got 'fast'" in result.output
