"""Fixtures for integration tests: a recording SMTP sink and private Postfix instances that relay to it."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.integration.pg import PostgresMissingError, PostgresServer
from tests.integration.postfix import PostfixInstance, PostfixMissingError, check_installed
from tests.support.processes import free_port
from tests.support.sink import RecordingSink

MakePostfix = Callable[..., PostfixInstance]
_postgres_databases = itertools.count(1)


def make_traversable(path: Path) -> None:
    """Let the ``postfix`` user traverse every folder from the temp root down to ``path``.

    pytest creates ``/tmp/pytest-of-USER`` with mode 0700 (and resets it so each session); Postfix daemons run
    as ``postfix`` and need search (x) permission on each parent of their queue and data directories.
    """
    tmp_root = Path(tempfile.gettempdir()).resolve()
    path = path.resolve()
    for folder in [path, *path.parents]:
        if folder in {tmp_root, folder.parent}:
            break
        mode = folder.stat().st_mode
        if mode & stat.S_IXOTH == 0:
            folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


@pytest.fixture
def postfix(sink: RecordingSink, tmp_path: Path) -> Iterator[MakePostfix]:
    """Factory: ``make(main_cf=..., master_cf_extra=...)`` starts a private Postfix that relays to ``sink``."""
    try:
        check_installed()
    except PostfixMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
    # Not under tmp_path: pytest resets /tmp/pytest-of-USER to 0700 whenever another session starts, and
    # the postfix user must be able to reach its queue. A folder of our own, 0755, removed afterwards.
    base = Path(tempfile.mkdtemp(prefix="rcptguard-postfix-"))
    base.chmod(0o755)
    instances: list[PostfixInstance] = []

    def make(main_cf: dict[str, str] | None = None, master_cf_extra: str = "") -> PostfixInstance:
        instance = PostfixInstance(
            base / f"postfix{len(instances)}",
            smtpd_port=free_port(),
            relay_port=sink.port,
            main_cf=main_cf,
            master_cf_extra=master_cf_extra,
        )
        instances.append(instance)
        return instance.start()

    yield make
    for instance in reversed(instances):
        instance.stop()
    for instance in instances:  # keep the mail log with the test's other files
        with contextlib.suppress(OSError):
            (tmp_path / f"{instance.workdir.name}.log").write_text(instance.log(), encoding="utf-8")
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server on 127.0.0.1 for the whole test session, stopped at its end."""
    try:
        server = PostgresServer()
    except PostgresMissingError as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server (dropped after the test); its SQLAlchemy URL."""
    name = f"test_{next(_postgres_databases)}"
    url = postgres_server.create_database(name)
    yield url
    postgres_server.drop_database(name)


CHROMIUM = "/usr/bin/chromium"  # Debian's, installed by scripts/setup; Playwright drives it


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for the page tests of one module."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield launched
        launched.close()
