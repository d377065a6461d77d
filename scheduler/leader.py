"""Leadership over the store: which instance runs transitions, drains and hooks.

- SQLite: one instance per file, always the leader.
- PostgreSQL: a session-level advisory lock held on a dedicated connection. The lock
  lives exactly as long as that database session: a leader that dies (``kill -9``, host
  down, network cut) loses it as soon as PostgreSQL notices the session is gone, and the
  next instance to poll takes over. A leader re-checks its session on every poll and steps
  down when it cannot, so two instances never both believe they lead for longer than one
  poll; everything a leader writes is idempotent by key anyway (events, outbox, hook runs),
  so an overlap could not double work.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import sqlalchemy as sa

log = logging.getLogger("maintd.leader")

LOCK_KEY = 7262847  # any constant shared by all instances of one deployment


class Leadership:
    """``poll(now)`` returns whether this instance leads; ``since`` when it started leading."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        self._conn: sa.Connection | None = None
        self._lock = threading.Lock()
        self.leader = not self.postgres
        self.since: datetime | None = None
        self.error: str | None = None

    def poll(self, now: datetime) -> bool:
        with self._lock:
            if not self.postgres:
                if self.since is None:
                    self.since = now
                self.leader = True
                return True
            try:
                if self._conn is None:
                    self._conn = self.engine.connect()
                    self._conn.execution_options(isolation_level="AUTOCOMMIT")
                if self.leader:
                    # Still holding it? The lock is ours only while this session lives.
                    held = self._conn.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = :k "
                            "AND pid = pg_backend_pid() AND granted"
                        ),
                        {"k": LOCK_KEY},
                    ).scalar()
                    if not held:
                        self._step_down("lost the advisory lock")
                else:
                    got = self._conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY}).scalar()
                    if got:
                        self.leader, self.since = True, now
                        log.info("became leader", extra={"action": "leader"})
                self.error = None
            except sa.exc.SQLAlchemyError as exc:
                self.error = str(exc).splitlines()[0][:300]
                self._step_down(f"database unreachable: {self.error}")
                self._drop()
            return self.leader

    def _step_down(self, why: str) -> None:
        if self.leader:
            log.warning("stepping down as leader: %s", why, extra={"action": "follower"})
        self.leader, self.since = False, None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except sa.exc.SQLAlchemyError:
                pass
            self._conn = None

    def release(self) -> None:
        """Give the lock back on a clean stop so another instance takes over at once."""
        with self._lock:
            if self.postgres and self._conn is not None and self.leader:
                try:
                    self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": LOCK_KEY})
                except sa.exc.SQLAlchemyError:
                    pass
            self._drop()
            self.leader, self.since = False, None
