"""Engines and connection settings: where the database is and how maintd talks to it.

SQLAlchemy Core on SQLite by default (one file beside windows.yaml) and PostgreSQL for
several instances, with the same code. Writers announce themselves with the execution
option :data:`WRITE`; on SQLite that makes their transaction ``BEGIN IMMEDIATE``.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.pool import StaticPool

__all__ = [
    "BUSY_TIMEOUT_MS",
    "WRITE",
    "database_url",
    "describe",
    "file_identity",
    "is_memory",
    "lock_sqlite",
    "make_engine",
    "read_only",
    "sqlite_path",
]

WRITE = "maintd_write"  # execution option: this transaction will write

# How long a SQLite writer waits for another to commit before "database is locked".
# SQLite has one writer; every writer of one process (the tick, the outbox's result
# writer, the gate's group commit, API calls) queues on this wait. It must outlast the
# longest write transaction of this process (ten thousand notices enqueued on a loaded
# machine take a few seconds), yet stay short enough that a lock held by ANOTHER process
# (a stray sqlite3 shell, a backup tool) becomes a visible store fault within seconds and
# the gate answers 503 instead of hanging: 5 s.
BUSY_TIMEOUT_MS = 5_000


def database_url(database: str, base_dir: str) -> str:
    """``daemon.database`` -> a SQLAlchemy URL: URLs pass through, a path becomes SQLite.

    A relative path is relative to ``base_dir`` (the directory of windows.yaml).
    """
    if "://" in database:
        return database
    path = os.path.expanduser(database)
    if not os.path.isabs(path):
        path = os.path.join(base_dir, path)
    return f"sqlite:///{os.path.abspath(path)}"


def is_memory(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def describe(url: URL) -> str:
    """The database as error messages name it: a file path, ``:memory:``, or a URL without its password."""
    if url.get_backend_name() == "sqlite":
        return ":memory:" if is_memory(url) else str(url.database)
    return url.render_as_string(hide_password=True)


def make_engine(url: str | URL) -> Engine:
    """An engine with maintd's connection settings (for :class:`~scheduler.store.Store` and tests).

    SQLite: WAL (readers never block the writer), ``synchronous=NORMAL`` (durable at
    checkpoints, safe with WAL), a ``busy_timeout`` of :data:`BUSY_TIMEOUT_MS` for a
    second writer, foreign keys on. sqlite3's own transaction handling is switched off so
    that DDL is transactional (migrations) and writers ``BEGIN IMMEDIATE``: a writer takes
    the write lock before reading, so a compare-and-set never fails on a stale snapshot.
    """
    url = make_url(url)
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    memory = is_memory(url)
    if memory:  # one shared connection, so every caller sees the same in-memory database
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = sa.create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not memory:
                cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = NORMAL")
            cur.execute("PRAGMA foreign_keys = ON")
        finally:
            cur.close()

    if not memory and url.database:
        _replace_read_only_connections(engine, url.database)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE) else "BEGIN")

    return engine


def _replace_read_only_connections(engine: Engine, path: str) -> None:
    @event.listens_for(engine, "connect")
    def _note_read_only(_dbapi_conn: Any, record: Any) -> None:
        record.info["opened_read_only"] = os.path.exists(path) and not os.access(path, os.W_OK)

    @event.listens_for(engine, "checkout")
    def _drop_stale_read_only(_dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        # sqlite3 opens a file it may not write read-only, and that connection stays
        # read-only after the file is fixed; the pool replaces it on this signal.
        if record.info.get("opened_read_only") and os.access(path, os.W_OK):
            raise sa.exc.DisconnectionError(f"{path} has become writable")


@contextmanager
def read_only(conn: Connection) -> Iterator[None]:
    """Make the transaction begun inside this block refuse writes, on either database.

    PostgreSQL: a ``READ ONLY`` transaction (reset when the connection goes back to the
    pool). SQLite: ``query_only`` for as long as the block lasts.
    """
    if conn.dialect.name == "postgresql":
        conn.execution_options(postgresql_readonly=True)
        yield
        return
    raw: Any = conn.connection.dbapi_connection  # outside SQLAlchemy's transaction: no autobegin
    raw.execute("PRAGMA query_only = ON")
    try:
        yield
    finally:
        raw.execute("PRAGMA query_only = OFF")


def sqlite_path(url: str | URL) -> str | None:
    """The file of a SQLite database; None for memory or a server database."""
    url = make_url(url)
    if url.get_backend_name() != "sqlite" or is_memory(url):
        return None
    return str(url.database)


def file_identity(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of ``path``; None when it no longer exists. A database file deleted
    or replaced under a running daemon has none, or another."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def lock_sqlite(database: str, base_dir: str) -> Any:
    """An exclusive ``flock`` on ``<db>.lock`` beside a SQLite database, for the caller's life
    (the returned open file; closing it releases the lock). None for a server database.

    Two daemons on one SQLite file would both believe they lead and both send every notice;
    several instances need PostgreSQL, whose advisory lock elects one leader.
    """
    from ..errors import UsageError

    path = sqlite_path(database_url(database, base_dir))
    if path is None:
        return None
    lock_path = path + ".lock"
    try:
        fh = open(lock_path, "a+b")  # noqa: SIM115 - held open for the daemon's life
    except OSError as exc:
        raise UsageError(f"cannot open lock file {lock_path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        fh.close()
        if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise UsageError(f"cannot lock {lock_path}: {exc.strerror or exc}") from None
        raise UsageError(
            f"another maintd already runs on {path} (it holds {lock_path}); "
            "several instances need a PostgreSQL database (daemon.database: postgresql://...), "
            "not one SQLite file"
        ) from None
    return fh
