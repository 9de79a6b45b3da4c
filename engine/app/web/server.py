"""Serving the console: in the foreground (`dondoc web`) or in a thread of `dondoc run`.

Why a thread in the daemon: the README's first command starts one process that chases deadlines
and serves the console; the console must never take the daemon down, so a port already in use
or a crash of the server is logged and the daemon goes on without it.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from engine.app.config import Settings
from engine.app.rulesholder import RulesHolder
from engine.rules_loader import RulePack
from engine.simclock import Clock

log = logging.getLogger("dondoc.web")


def make_app(settings: Settings, clock: Clock | None = None, provider: Callable[[], RulePack | None] | None = None):
    from engine.app.web.app import create_app
    from engine.app.web.context import WebContext

    holder = RulesHolder.following(settings, provider) if provider is not None else RulesHolder(settings)
    return create_app(WebContext(settings, holder, clock or Clock()))


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, opened before the server starts, so "port in use" is known at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP given explicitly: uvicorn sets TCP_NODELAY only on sockets whose proto is TCP; with
    # proto 0 every small response waited on Nagle + delayed ACK (48 ms a request instead of 3 ms)
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    return sock


def server(app, sock: socket.socket, log_level: str = "warning"):
    import uvicorn

    # log_config=None: uvicorn's own dictConfig would print plain "ERROR: …" lines to stderr; without
    # it its loggers go through the daemon's handlers (one JSON object per line with --log-format json).
    cfg = uvicorn.Config(app, log_level=log_level, log_config=None, access_log=False, proxy_headers=True,
                         forwarded_allow_ips="127.0.0.1", server_header=False, lifespan="off")
    srv = uvicorn.Server(cfg)
    return srv


def serve_forever(app, sock: socket.socket) -> None:
    srv = server(app, sock)
    srv.run(sockets=[sock])


class BackgroundConsole:
    """The console in a daemon thread of `dondoc run`; ``stop()`` ends it with the daemon."""

    def __init__(self, app, sock: socket.socket):
        self.srv = server(app, sock)
        self.sock = sock
        self.thread = threading.Thread(target=self._run, name="dondoc-web", daemon=True)

    def _run(self) -> None:
        try:
            self.srv.run(sockets=[self.sock])
        except Exception:  # noqa: BLE001 - the console must never take the daemon down
            log.exception("web console stopped after an error; the daemon goes on without it",
                          extra={"event": "web_failed"})

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.srv.should_exit = True
        self.thread.join(timeout)
