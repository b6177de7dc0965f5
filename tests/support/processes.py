"""Real processes and servers for tests: the `rcptguard` command, and asyncio servers run in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

RCPTGUARD = str(Path(sys.executable).parent / "rcptguard")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None, log: Path | None = None,
              timeout: float = 30.0) -> None:
    """Until something accepts connections on 127.0.0.1:port; fails early if `proc` exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            if time.monotonic() > deadline or (proc is not None and proc.poll() is not None):
                detail = log.read_text() if log is not None and log.exists() else ""
                raise AssertionError(f"nothing listens on port {port}: {detail}") from None
            time.sleep(0.1)
        else:
            return


@contextlib.contextmanager
def running(command: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A server process (its output appended to `log`), up once its port answers, terminated at the end."""
    with log.open("ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=out)
    try:
        wait_port(port, proc, log)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


Serve = Callable[[Callable[[int], None], asyncio.Event], Coroutine[Any, Any, None]]


T = TypeVar("T")


class StartStop:
    """A test server as a context manager: `with Server(...) as started:` starts it and stops it after."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class ServedInThread:
    """An asyncio server on an event loop in a thread: `serve(ready, stop)` calls `ready(port)` once
    listening and returns when `stop` is set."""

    def __init__(self, serve: Serve) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        ready = threading.Event()
        self.port = 0

        def on_ready(port: int) -> None:
            self.port = port
            ready.set()

        def run() -> None:
            try:
                self.loop.run_until_complete(serve(on_ready, self.stop))
            finally:
                # As asyncio.run does: the work the server handed to threads (a relay's held notice being sent)
                # ends before the loop does. Left running, it went on into the next test: its connection to a
                # recording sink that was stopping was accepted after the sink's server had closed, an asyncio
                # transport that Python 3.11 half-builds and never closes, collected at some later test's setup
                # as an "unclosed transport" error.
                self.loop.run_until_complete(self.loop.shutdown_default_executor())

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert ready.wait(10), "the server did not start"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        assert not self.thread.is_alive(), "the server did not stop"
        # A connection a test left open (a client cut off mid-session) dies with the loop. Its transport is
        # collected here rather than at some later test's setup, where its "unclosed transport" warning (an error
        # under filterwarnings) would fail a test that has nothing to do with it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            self.loop.close()
            gc.collect()


def race(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run work(0..count-1) in `count` threads released at once; each result or the exception it raised."""
    barrier = threading.Barrier(count)
    results: dict[int, T | BaseException] = {}

    def run(index: int) -> None:
        barrier.wait(10)
        try:
            results[index] = work(index)
        except Exception as exc:  # noqa: BLE001 - the caller asserts on what each thread got
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i,), name=f"racer{i}") for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a racing thread hung"
    return [results[i] for i in range(count)]
