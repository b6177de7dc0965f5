"""Signing in to the admin pages in tests, as a browser does: the sign-in form, then the session's CSRF token."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from argon2 import PasswordHasher

if TYPE_CHECKING:
    import httpx2
    from playwright.sync_api import Page

ADMIN = ("ops", "correct horse battery staple")
# Cheap parameters, so that each sign-in in a test takes a millisecond, not 64 MiB; the check reads them from the
# hash, as it does for the real ones `rcptguard web hash-password` makes.
ADMIN_HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(ADMIN[1])
_CSRF = re.compile(r'<input type="hidden" name="csrf" value="([^"]+)">')


def csrf_in(html: str) -> str:
    """The CSRF token of the first form on a page."""
    found = _CSRF.search(html)
    assert found is not None, html
    return found.group(1)


def sign_in(client: httpx2.Client, user: str = ADMIN[0], password: str = ADMIN[1]) -> httpx2.Response:
    """Load the sign-in form and post it: the answer (303 to /admin when signed in)."""
    form = client.get("/admin/login")
    assert form.status_code == 200, form.text
    return client.post("/admin/login", data={"user": user, "password": password, "csrf": csrf_in(form.text)})


def signed_in(client: httpx2.Client) -> str:
    """Sign in as ADMIN; the session's CSRF token (on every admin form)."""
    answer = sign_in(client)
    assert answer.status_code == 303, answer.text
    return csrf_in(client.get("/admin").text)


def browser_sign_in(page: Page, url: str, user: str = ADMIN[0], password: str = ADMIN[1]) -> None:
    """Sign in on the admin pages at `url` in a browser, through the form, as a person does."""
    page.goto(f"{url}/admin/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    assert page.url == f"{url}/admin", page.url
    assert page.get_by_text("Signed in as").is_visible()
