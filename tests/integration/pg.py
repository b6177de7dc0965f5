"""A throwaway PostgreSQL server for integration tests: Debian's binaries, a private cluster in a temp dir, loopback.

Nothing here touches the system cluster (``/var/lib/postgresql``): the cluster lives in its own temp dir, owned by
the ``postgres`` user, with its Unix socket in that dir too, and listens on ``127.0.0.1:PORT`` only. Facts this
relies on (Debian 12, PostgreSQL 15):

- the server binaries live in ``/usr/lib/postgresql/VERSION/bin`` (not on PATH); ``initdb`` and ``postgres`` refuse
  to run as root, so as root every command runs as ``postgres`` through ``runuser -u postgres --``;
- ``pg_ctl start -w`` returns once the server accepts connections, ``pg_ctl stop -m fast -w`` once the postmaster
  and all its children have exited and ``postmaster.pid`` is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from tests.support.processes import free_port

if TYPE_CHECKING:
    import psycopg

PG_LIB = Path("/usr/lib/postgresql")
INSTALL_HINT = "the PostgreSQL tests need Debian's server: `apt-get install -y postgresql`"
_DB_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresMissingError(RuntimeError):
    """Debian's PostgreSQL server binaries (or the postgres user) are not installed."""


class PostgresError(RuntimeError):
    """A PostgreSQL command failed or the server did not come up."""


def find_bindir() -> Path:
    """The bin folder of the newest installed PostgreSQL major version; PostgresMissingError if there is none."""
    candidates = [d / "bin" for d in PG_LIB.glob("*") if d.name.isdigit() and (d / "bin" / "pg_ctl").is_file()]
    if not candidates:
        raise PostgresMissingError(f"no {PG_LIB}/*/bin/pg_ctl: {INSTALL_HINT}")
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresMissingError(f"no postgres user: {INSTALL_HINT}") from exc
    return max(candidates, key=lambda d: int(d.parent.name))


def find_runuser() -> str:
    """Absolute path of util-linux's runuser (in /usr/sbin, which a non-login root PATH may lack)."""
    found = shutil.which("runuser") or shutil.which("runuser", path="/usr/sbin:/sbin")
    if found is None:
        raise PostgresMissingError("runuser (util-linux) is needed to run PostgreSQL as the postgres user")
    return found


class PostgresServer:
    """A private PostgreSQL cluster on ``127.0.0.1:port`` with fsync on and trust auth for loopback only.

    ``with PostgresServer() as server: server.url`` is a SQLAlchemy URL of a fresh database ``database``;
    ``create_database(name)`` makes more. On exit the server is stopped (``pg_ctl stop -m fast``) and its dir removed.
    """

    def __init__(self, database: str = "rcptguard", *, start_timeout: float = 60.0) -> None:
        self.bindir = find_bindir()
        self.database = database
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.workdir: Path | None = None
        self._started = False
        self._as_postgres = [find_runuser(), "-u", "postgres", "--"] if os.geteuid() == 0 else []

    # -- paths and commands --------------------------------------------------------------------------------------

    @property
    def datadir(self) -> Path:
        assert self.workdir is not None, "the server was not started"
        return self.workdir / "data"

    @property
    def logfile(self) -> Path:
        assert self.workdir is not None, "the server was not started"
        return self.workdir / "server.log"

    def _run(self, tool: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        command = [*self._as_postgres, str(self.bindir / tool), *args]
        # A clean environment: no PGDATA/PGPORT of the caller, and a cwd the postgres user can enter.
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                                cwd=self.workdir, check=False)
        if result.returncode != 0:
            raise PostgresError(f"{tool} {' '.join(args)} failed ({result.returncode}): "
                                f"{result.stdout}{result.stderr}{self._log_tail()}")
        return result

    def _log_tail(self) -> str:
        if self.workdir is None or not self.logfile.exists():
            return ""
        return "\nserver log:\n" + "\n".join(self.logfile.read_text(errors="replace").splitlines()[-20:])

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._started:
            return self
        self.workdir = Path(tempfile.mkdtemp(prefix="rcptguard-pg-"))
        atexit.register(self.stop)
        try:
            if self._as_postgres:
                postgres = pwd.getpwnam("postgres")
                os.chown(self.workdir, postgres.pw_uid, postgres.pw_gid)
            self.workdir.chmod(0o700)
            self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                      "--locale=C.UTF-8")
            self._configure()
            self._start_on_a_free_port()
            self._started = True
            self.create_database(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def _configure(self) -> None:
        """Loopback only, fsync on, trust only for the private socket and 127.0.0.1; the files stay postgres's."""
        assert self.workdir is not None
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(
                "\n# rcptguard integration tests\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.workdir}'\n"
                "fsync = on\n"
                "synchronous_commit = on\n"
                "full_page_writes = on\n"
                "max_connections = 100\n"
                "log_min_messages = warning\n"
            )
        (self.datadir / "pg_hba.conf").write_text(
            "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
            "local   all       all                 trust\n"
            "host    all       all   127.0.0.1/32  trust\n",
            encoding="utf-8",
        )

    def _start_on_a_free_port(self) -> None:
        """pg_ctl start on a free port; another process may take the port first, so try a few."""
        error: PostgresError | None = None
        for _ in range(3):
            self.port = free_port()
            try:
                self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w",
                          "-t", str(int(self.start_timeout)), "-o", f"-p {self.port}", "start",
                          timeout=self.start_timeout + 10)
            except PostgresError as exc:
                error = exc
                if "already in use" not in self._log_tail():
                    raise
                continue
            return
        assert error is not None
        raise error

    def stop(self) -> None:
        """Stop the server (fast: roll back open transactions) and remove its dir; safe to call twice."""
        workdir = self.workdir
        if workdir is None:
            return
        atexit.unregister(self.stop)
        try:
            pidfile = self.datadir / "postmaster.pid"
            if pidfile.exists():
                try:
                    self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "60", "stop", timeout=70)
                except (PostgresError, subprocess.TimeoutExpired):
                    self._kill_postmaster(pidfile)
        finally:
            self.workdir = None
            self._started = False
            shutil.rmtree(workdir, ignore_errors=True)

    def shut_down(self) -> None:
        """Stop the server (fast) but keep its cluster and port: a database restart, with `start_again`."""
        assert self._started, "the server was not started"
        self._run("pg_ctl", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "60", "stop", timeout=70)

    def start_again(self) -> None:
        """Start the cluster `shut_down` stopped, on the same port (clients' URLs stay valid)."""
        assert self._started, "the server was not started"
        self._run("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", str(int(self.start_timeout)),
                  "-o", f"-p {self.port}", "start", timeout=self.start_timeout + 10)

    @staticmethod
    def _kill_postmaster(pidfile: Path) -> None:
        """Last resort: SIGQUIT, then SIGKILL, the postmaster this server started (first line of postmaster.pid)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
            for sig in (signal.SIGQUIT, signal.SIGKILL):
                os.kill(pid, sig)
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline:
                    os.kill(pid, 0)  # OSError (ESRCH) once it is gone
                    time.sleep(0.1)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------------------------------

    def url_for(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{database}"

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the database created at start."""
        return self.url_for(self.database)

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        import psycopg  # the test extra's driver; imported here so that collecting other tests never needs it

        return psycopg.connect(host=self.host, port=self.port, user="postgres", dbname="postgres", autocommit=True,
                               connect_timeout=10)

    def create_database(self, name: str) -> str:
        """CREATE DATABASE name; its SQLAlchemy URL."""
        if not _DB_NAME.fullmatch(name):
            raise ValueError(f"not a plain database name: {name!r}")
        from psycopg import sql

        with self._admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE name, ending any connection to it still open."""
        from psycopg import sql

        with self._admin() as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def __repr__(self) -> str:
        state = "running" if self._started else "stopped"
        return f"<PostgresServer {self.host}:{self.port} {state}>"
