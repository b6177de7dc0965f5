"""A private Postfix instance for integration tests: own config, queue, data directory and log, on loopback.

Nothing here touches the system Postfix: every command runs with ``-c CONFIG_DIR`` and every path lives under the
instance's work directory. Facts this relies on (Debian 12, Postfix 3.7):

- ``postfix -c DIR`` is allowed for root without listing DIR in ``alternate_config_directories``; the ``postfix``
  command exports ``MAIL_CONFIG=DIR`` and the master and all its children inherit it (``import_environment``), which
  is how ``stop()`` finds leftover processes of exactly this instance.
- ``postfix start`` runs ``post-install create-missing``, which creates the queue subdirectories (owned by
  ``postfix``) below ``queue_directory``; ``data_directory`` must exist and be owned by ``postfix``.
- ``maillog_file`` is refused unless its folder is listed in ``maillog_file_prefixes``.
- Debian's master.cf chroots most services; a chroot breaks private paths, so every chroot column becomes ``n``.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Self

from tests.support.processes import StartStop

SYSTEM_MASTER_CF = Path("/etc/postfix/master.cf")
_SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")

INSTALL_HINT = (
    "the integration tests need Postfix (postfix, postconf, postqueue, smtp-source); "
    "install it with `DEBIAN_FRONTEND=noninteractive apt-get install -y postfix` (choose 'No configuration')"
)


class PostfixMissingError(RuntimeError):
    """Postfix (or one of its tools) is not installed."""


class PostfixError(RuntimeError):
    """A Postfix command failed or the instance did not come up."""


def find_tool(name: str) -> str:
    """Absolute path of a Postfix tool; looks in PATH and the sbin folders root's PATH may lack."""
    found = shutil.which(name) or shutil.which(name, path=os.pathsep.join(_SBIN_DIRS))
    if found is None:
        raise PostfixMissingError(f"{name!r} not found: {INSTALL_HINT}")
    return found


def check_installed() -> None:
    """Raise PostfixMissingError with an install hint unless Postfix and its test tools are present."""
    for tool in ("postfix", "postconf", "postqueue", "smtp-source"):
        find_tool(tool)
    if not SYSTEM_MASTER_CF.is_file():
        raise PostfixMissingError(f"{SYSTEM_MASTER_CF} is missing: {INSTALL_HINT}")
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError as exc:
        raise PostfixMissingError(f"user/group missing ({exc}): {INSTALL_HINT}") from exc


def private_master_cf(template: str, smtpd_port: int) -> str:
    """Rewrite a master.cf: every chroot column ``n``, the ``smtp inet`` service on ``127.0.0.1:PORT``."""
    out: list[str] = []
    for line in template.splitlines():
        if not line.strip() or line.startswith("#") or line[0].isspace():
            out.append(line)  # comment, blank or continuation line
            continue
        fields = line.split()
        if len(fields) < 8:
            out.append(line)
            continue
        fields[4] = "n"
        if fields[0] == "smtp" and fields[1] == "inet":
            fields[0] = f"127.0.0.1:{smtpd_port}"
        out.append("  ".join(fields[:8]) + ("  " + " ".join(fields[8:]) if len(fields) > 8 else ""))
    return "\n".join(out) + "\n"


def _proc_env_config(pid: int) -> str | None:
    """MAIL_CONFIG of a running process, or None (gone, zombie, unreadable, unset)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "Z":
            return None
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except (OSError, IndexError):
        return None
    for item in environ.split(b"\0"):
        if item.startswith(b"MAIL_CONFIG="):
            return item.removeprefix(b"MAIL_CONFIG=").decode(errors="replace")
    return None


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an unreaped master counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


_LIVE: set[PostfixInstance] = set()


@atexit.register
def _stop_all() -> None:  # pragma: no cover - safety net when a test run is interrupted
    for instance in list(_LIVE):
        with contextlib.suppress(Exception):
            instance.stop()


class PostfixInstance(StartStop):
    """A private Postfix on ``127.0.0.1:smtpd_port`` that relays everything to ``[127.0.0.1]:relay_port``."""

    def __init__(
        self,
        workdir: Path,
        smtpd_port: int,
        relay_port: int,
        main_cf: dict[str, str] | None = None,
        master_cf_extra: str = "",
    ) -> None:
        self.workdir = workdir.absolute()
        self.smtpd_port = smtpd_port
        self.relay_port = relay_port
        self.config_dir = self.workdir / "etc"
        self.queue_dir = self.workdir / "spool"
        self.data_dir = self.workdir / "data"
        self.log_dir = self.workdir / "log"
        self.log_file = self.log_dir / "postfix.log"
        self.main_cf_extra = dict(main_cf or {})
        self.master_cf_extra = master_cf_extra
        self._configured = False

    # -- configuration ---------------------------------------------------------------------------------------

    def main_cf_params(self) -> dict[str, str]:
        """The main.cf this instance runs with (defaults overridden by the constructor's ``main_cf``)."""
        params = {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "myhostname": "postfix-test.localdomain",
            "mydomain": "localdomain",
            "myorigin": "$myhostname",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mydestination": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "mynetworks": "127.0.0.0/8",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "relayhost": f"[127.0.0.1]:{self.relay_port}",
            "smtp_tls_security_level": "none",
            "smtpd_tls_security_level": "none",
            "smtputf8_enable": "yes",
            "biff": "no",
            "maillog_file": str(self.log_file),
            "maillog_file_prefixes": str(self.log_dir),
            # deferred mail is retried within seconds, not minutes
            "queue_run_delay": "2s",
            "minimal_backoff_time": "2s",
            "maximal_backoff_time": "4s",
            # a client that makes errors is not slowed down or cut off
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_client_connection_count_limit": "0",
            "smtpd_client_connection_rate_limit": "0",
        }
        params.update(self.main_cf_extra)
        return params

    def _write_config(self) -> None:
        postfix = pwd.getpwnam("postfix")
        for folder in (self.workdir, self.config_dir, self.queue_dir, self.log_dir):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o755)  # the queue directory itself must be owned by root; daemons traverse all of them
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chown(self.data_dir, postfix.pw_uid, postfix.pw_gid)
        self.data_dir.chmod(0o700)
        main_cf = "".join(f"{key} = {value}\n" for key, value in self.main_cf_params().items())
        (self.config_dir / "main.cf").write_text(main_cf)
        master_cf = private_master_cf(SYSTEM_MASTER_CF.read_text(), self.smtpd_port)
        if self.master_cf_extra:
            master_cf += self.master_cf_extra.rstrip("\n") + "\n"
        (self.config_dir / "master.cf").write_text(master_cf)
        self._configured = True

    # -- commands --------------------------------------------------------------------------------------------

    def _run(
        self, tool: str, *args: str, check: bool = True, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        cmd = [find_tool(tool), "-c", str(self.config_dir), *args]
        env = {**os.environ, "MAIL_CONFIG": str(self.config_dir)}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        if check and proc.returncode != 0:
            raise PostfixError(
                f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
                f"\nlog tail:\n{self.log()[-3000:]}"
            )
        return proc

    def postconf(self, *args: str) -> str:
        return self._run("postconf", *args).stdout

    def master_pid(self) -> int | None:
        """PID from the master's pid file if that process is alive, else None."""
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _alive(pid) else None

    def processes(self) -> list[int]:
        """PIDs of all live processes of this instance (master and children), found by their MAIL_CONFIG."""
        mine = {str(self.config_dir), str(self.config_dir.resolve())}
        pids = [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]
        return [pid for pid in pids if pid != os.getpid() and _proc_env_config(pid) in mine]

    @property
    def running(self) -> bool:
        return self.master_pid() is not None

    def start(self, timeout: float = 30.0) -> Self:
        """Write the configuration, check it, start the master and wait until smtpd answers on its port."""
        check_installed()
        if not self._configured:
            self._write_config()
        _LIVE.add(self)
        try:
            self._run("postfix", "check")
            self._run("postfix", "start")
            self._wait_for_smtpd(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_smtpd(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.smtpd_port), timeout=5) as sock:
                    sock.settimeout(5)
                    banner = sock.recv(512)
                    if banner.startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return
                    last_error = PostfixError(f"unexpected banner {banner!r}")
            except OSError as exc:
                last_error = exc
            time.sleep(0.1)
        raise PostfixError(
            f"smtpd did not answer on 127.0.0.1:{self.smtpd_port} within {timeout}s ({last_error})"
            f"\nlog tail:\n{self.log()[-3000:]}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the instance; also kills what a half-failed start or a hung stop left behind. Never raises."""
        try:
            if self.master_pid() is not None:
                with contextlib.suppress(subprocess.SubprocessError, OSError, PostfixError):
                    self._run("postfix", "stop", check=False, timeout=timeout)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and (self.master_pid() is not None or self.processes()):
                time.sleep(0.1)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                pids = self.processes()
                if not pids:
                    break
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, sig)
                end = time.monotonic() + 5
                while time.monotonic() < end and self.processes():
                    time.sleep(0.1)
        finally:
            _LIVE.discard(self)

    def reload(self) -> None:
        self._run("postfix", "reload")

    def set_main(self, params: dict[str, str]) -> None:
        """Change main.cf parameters with ``postconf -e`` and reload."""
        self.main_cf_extra.update(params)
        self._run("postconf", "-e", *(f"{key}={value}" for key, value in params.items()))
        if self.running:
            self.reload()

    def queue(self) -> list[dict[str, Any]]:
        """The mail queue as ``postqueue -j`` reports it: one dict per message."""
        out = self._run("postqueue", "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def flush(self) -> None:
        """Ask the queue manager to retry all deferred mail now."""
        self._run("postqueue", "-f")

    def wait_queue_empty(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            entries = self.queue()
            if not entries:
                return
            if time.monotonic() >= deadline:
                raise AssertionError(f"queue not empty after {timeout}s: {entries}")
            time.sleep(0.2)

    def log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def __repr__(self) -> str:
        return f"<PostfixInstance {self.config_dir} smtpd=127.0.0.1:{self.smtpd_port} relay={self.relay_port}>"
