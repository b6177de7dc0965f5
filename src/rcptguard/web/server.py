"""Serving the web application in-process with uvicorn, until SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    import socket

    from fastapi import FastAPI

__all__ = ["serve"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """Stands in while uvicorn serves: uvicorn re-raises the signal that stopped it once it has shut down."""


def serve(app: FastAPI, host: str, port: int, *, log_level: str = "info", sock: socket.socket | None = None) -> None:
    """Serve `app` on host:port until SIGTERM or SIGINT, then finish the requests in flight and return.

    uvicorn handles the signals itself (a graceful shutdown) and afterwards re-raises the one it caught; the
    stand-in handlers installed here swallow that, so the caller gets a normal return instead of a
    KeyboardInterrupt or a death by SIGTERM. Signals are only handled this way in the main thread. Releases
    being sent in the background are finished before it returns; queued ones stay pending for the relay. `sock`:
    a socket the caller bound and listens on (so that it can say, itself, when the port is taken).
    """
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off", server_header=False,
                            proxy_headers=False, access_log=False)
    server = uvicorn.Server(config)
    close = getattr(app.state, "close", None)  # the application's background releases (web.releases)
    sockets = [sock] if sock is not None else None
    try:
        if threading.current_thread() is not threading.main_thread():
            server.run(sockets)
            return
        previous = {sig: signal.signal(sig, _ignore) for sig in _SIGNALS}
        try:
            server.run(sockets)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        if callable(close):
            close()
