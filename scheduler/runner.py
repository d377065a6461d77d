"""``maintd run``: wire the daemon, the API server, logging and signals together.

The API server runs in a thread; the main thread owns the signals: SIGHUP reloads (in
a thread, so a slow reload never blocks signal delivery), SIGTERM/SIGINT stop gracefully.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import signal
import socket
import stat
import sys
import threading
from datetime import UTC, datetime
from typing import Any

from .errors import MaintdError

log = logging.getLogger("maintd")


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the ``extra`` fields the code logs (action, window, tenant)."""

    FIELDS = ("action", "window", "tenant")

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for f in self.FIELDS:
            if hasattr(record, f):
                out[f] = getattr(record, f)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        action = getattr(record, "action", None)
        return base if action is None else f"{base} action={action}"


def setup_logging(fmt: str, level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if fmt == "json"
        else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z")
    )
    _guard_log(handler)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("apscheduler", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _guard_log(handler: logging.Handler) -> None:
    """No tenant secret in any line; the same error at most once per 10 s (an attack makes
    asyncio log one error per refused socket)."""
    from .web.server import RepeatFilter, SecretPathFilter

    handler.addFilter(SecretPathFilter())
    handler.addFilter(RepeatFilter(every=10.0))


def server_config(app: Any) -> Any:
    """uvicorn's settings: request deadlines, a connection cap below the fd limit, no access
    log (its lines would carry tenant page secrets)."""
    import uvicorn

    from .web.server import KEEP_ALIVE, connection_limit, guarded_protocol

    limit = connection_limit()
    return uvicorn.Config(
        app,
        http=guarded_protocol(limit),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE,
        backlog=64,  # asyncio accepts up to `backlog` sockets per wake-up: small bursts stay under the cap
    )


def _deepen_backlog(server: Any, sock: socket.socket) -> None:
    """asyncio accepts as many sockets per wake-up as the backlog it was given (64: bursts stay
    well under the connection cap); the kernel's queue may be deeper, so that a burst of
    connections waits there instead of having its SYNs dropped (a 1 s retransmit each)."""
    for _ in range(100):
        if server.started:
            sock.listen(1024)
            return
        threading.Event().wait(0.05)


def lock_database(config_path: str, database: str, dry_run: bool) -> Any:
    """Hold an exclusive lock beside a SQLite database for the daemon's life: two daemons on
    one file would both lead. Returns the open lock file (None for a server database)."""
    import os

    from .runtime.daemon import _database
    from .store.engine import lock_sqlite

    db = os.environ.get("MAINTD_DATABASE") or database
    return lock_sqlite(_database(db, dry_run), os.path.dirname(os.path.abspath(config_path)))


def bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio turns Nagle off only on sockets whose proto is
    # IPPROTO_TCP, and with Nagle on every keep-alive response (headers and body are
    # two writes) waits 40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except (OSError, ValueError) as exc:
        sock.close()
        raise MaintdError(
            f"cannot listen on {listen}: {getattr(exc, 'strerror', None) or exc} (set daemon.listen or MAINTD_LISTEN)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def bind_unix(path: str) -> socket.socket:
    """The API's unix socket at ``path``, mode 0660 (the file's permissions are its access
    control). A stale socket file of a stopped daemon is removed; a live one, or a file that
    is not a socket, is an error rather than something to take over."""
    if os.path.lexists(path):
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise MaintdError(f"cannot listen on unix socket {path}: a file that is not a socket is in the way")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(path)
        except OSError:
            os.unlink(path)  # nobody answers: left behind by a daemon that died
        else:
            raise MaintdError(f"cannot listen on unix socket {path}: another process is listening on it")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o117)  # never world-accessible, not even between bind and chmod
    try:
        sock.bind(path)
        os.chmod(path, 0o660)
    except OSError as exc:
        sock.close()
        raise MaintdError(f"cannot listen on unix socket {path}: {exc.strerror or exc} (set daemon.socket)") from None
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def unlink_unix(sock: socket.socket, path: str) -> None:
    """Close the socket and remove its file on stop (never a file that is not a socket)."""
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass
    sock.close()


def _unix_path(cfg, config_path: str) -> str | None:
    path = cfg.daemon.socket
    if not path:
        return None
    return path if os.path.isabs(path) else os.path.join(os.path.dirname(os.path.abspath(config_path)), path)


def _run_servers(servers: list) -> None:
    """Run every (uvicorn server, socket) pair on one event loop, in this thread."""

    async def main() -> None:
        await asyncio.gather(*(server.serve(sockets=[sock]) for server, sock in servers))

    asyncio.run(main())


def serve(config_path: str, *, dry_run: bool = False, log_format: str = "text", log_level: str = "info") -> None:
    import uvicorn

    from . import config as config_mod
    from .api import create_app
    from .daemon import Daemon
    from .web.access import UnixSocket

    setup_logging(log_format, log_level)
    # Bind before opening the store: a port in use must not leave a fresh database behind.
    cfg = config_mod.load(config_path)
    db_lock = lock_database(config_path, cfg.daemon.database, dry_run)
    sock = bind(cfg.daemon.listen)
    unix_path = _unix_path(cfg, config_path)
    try:
        unix = bind_unix(unix_path) if unix_path else None
    except BaseException:
        sock.close()
        raise
    try:
        daemon = Daemon(config_path, dry_run=dry_run)
    except BaseException:
        sock.close()
        if unix is not None and unix_path:
            unlink_unix(unix, unix_path)
        raise
    app = create_app(daemon)
    server = uvicorn.Server(server_config(app))
    servers = [(server, sock)]
    if unix is not None:  # the same app; over the socket every request has admin scope
        servers.append((uvicorn.Server(server_config(UnixSocket(app))), unix))
    thread = threading.Thread(target=_run_servers, args=(servers,), name="api", daemon=True)
    stop = threading.Event()

    def on_stop(signum, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name, extra={"action": "stop"})
        stop.set()

    def on_hup(_signum, _frame) -> None:
        threading.Thread(target=daemon.reload, name="reload", daemon=True).start()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)
    daemon.start()
    # The config, its compiled policies and the first evaluation live as long as the
    # process: move them out of the cyclic GC's reach, or every full collection walks
    # them (hundreds of thousands of objects with 10,000 tenants) and stalls requests.
    gc.freeze()
    thread.start()
    _deepen_backlog(server, sock)
    log.info(
        "maintd listening on http://%s (config %s%s)",
        daemon.listen,
        config_path,
        ", dry run" if dry_run else "",
        extra={"action": "listen"},
    )
    if unix_path:
        log.info("maintd also listening on unix socket %s (mode 0660)", unix_path, extra={"action": "listen"})
    if not daemon.token:
        log.warning(
            "no token configured (MAINTD_TOKEN or daemon.token_file): state-changing API calls are refused",
            extra={"action": "no-token"},
        )
    while not stop.wait(0.5):
        if not thread.is_alive():
            log.error("API server stopped unexpectedly", extra={"action": "api-died"})
            break
    for each, _ in servers:
        each.should_exit = True
    thread.join(timeout=10)
    if unix is not None and unix_path:
        unlink_unix(unix, unix_path)
    daemon.stop()
    log.info("maintd stopped", extra={"action": "stopped"})
    if db_lock is not None:
        db_lock.close()
