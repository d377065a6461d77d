"""Durable state: journal, occurrence events, outbox, leases, effects, tenant secrets. The only SQL.

SQLAlchemy Core on SQLite by default and PostgreSQL for several instances, with the same
code (:mod:`.engine`). :mod:`.schema` holds the tables, :mod:`.migrations` the versioned
steps that make them, and one repository per aggregate holds the queries:
:mod:`.journal`, :mod:`.outbox`, :mod:`.leases`, :mod:`.effects`, :mod:`.secrets`. Each
repository is bound to one connection, and :class:`~.tx.Tx` bundles them for one
transaction, so a transaction reads its own writes.

Rules the package keeps:

* Every instant is an aware UTC ``datetime`` in and out; a naive one is refused with
  ``ValueError`` (a bug, not a database failure).
* "Never twice" lives in the schema: primary and unique keys make a repeated
  ``record_event`` or ``enqueue`` a no-op. State changes of shared work (outbox rows,
  hook runs, leases) are compare-and-set ``UPDATE ... WHERE id=? AND status=?``.
* Any failure of the database (disk full, read-only, locked, server gone) leaves as
  :class:`~scheduler.errors.StoreError` naming the database and the cause, and the
  :class:`Store` stays usable: the next call works once the cause is gone.
* Nothing here reads the clock for decisions: callers pass ``now``.
"""

from __future__ import annotations

import secrets as _secrets
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import URL, make_url

from ..errors import StoreError
from ..retry import backoff as next_attempt
from ..retry import give_up
from .base import guard
from .engine import WRITE, database_url, describe, is_memory, make_engine, read_only
from .migrations import LATEST_VERSION, MIGRATIONS, migrate, refuse_newer, schema_version
from .schema import JSONText, OccurrenceKey, UTCDateTime, metadata
from .tx import Tx

__all__ = [
    "LATEST_VERSION",
    "MIGRATIONS",
    "JSONText",
    "OccurrenceKey",
    "Store",
    "StoreError",
    "Tx",
    "UTCDateTime",
    "database_url",
    "give_up",
    "make_engine",
    "metadata",
    "migrate",
    "next_attempt",
]


class Store:
    """maintd's durable state over one SQLAlchemy engine.

    ``with store.transaction() as tx:`` for writes that belong together (and the reads
    they depend on), ``with store.read() as r:`` for a consistent read. The methods here
    are each one short transaction, delegating to a repository. Do not nest transactions
    in one thread (SQLite has one writer).
    """

    def __init__(self, url: str | URL) -> None:
        self.url = make_url(url)
        self.where = describe(self.url)
        self.engine = make_engine(self.url)
        # An in-memory database is one shared connection: its transactions take turns.
        self._turns: AbstractContextManager[Any] = threading.RLock() if is_memory(self.url) else nullcontext()
        try:
            self._upgrade()
        except BaseException:
            self.engine.dispose()
            raise

    @classmethod
    def open(cls, database: str, base_dir: str) -> Store:
        """Open ``daemon.database``: a path (relative to ``base_dir``) or a SQLAlchemy URL."""
        return cls(database_url(database, base_dir))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.where!r})"

    # transactions ----------------------------------------------------------

    @contextmanager
    def _open(self, action: str, *, write: bool = False) -> Iterator[Tx]:
        """One transaction on a pooled connection. A write commits on leaving and rolls back
        on an exception; a read refuses writes and always rolls back."""
        with self._turns, guard(self.where, action), self.engine.connect() as conn:
            if write:
                conn.execution_options(**{WRITE: True})
                with conn.begin():
                    yield Tx(conn, self.where)
            else:
                with read_only(conn), conn.begin() as trans:
                    yield Tx(conn, self.where)
                    trans.rollback()

    def transaction(self) -> AbstractContextManager[Tx]:
        """``with store.transaction() as tx:`` -- commit on leaving the block, roll back on an exception."""
        return self._open("write", write=True)

    def read(self) -> AbstractContextManager[Tx]:
        """``with store.read() as r:`` -- the same repositories, one snapshot, nothing written."""
        return self._open("read")

    def _upgrade(self) -> None:
        with self._open("open") as tx:
            version = schema_version(tx.connection)
        refuse_newer(version, self.where)
        if version < LATEST_VERSION:
            with self._open("upgrade the schema", write=True) as tx:
                migrate(tx.connection, where=self.where)  # re-reads the version under the write lock

    def schema_version(self) -> int:
        with self._open("read the schema version") as tx:
            return schema_version(tx.connection)

    # journal ---------------------------------------------------------------

    def history(
        self,
        *,
        limit: int = 200,
        kinds: Iterable[str] | None = None,
        window: str | None = None,
        since: datetime | None = None,
    ) -> list[dict]:
        with self._open("read the history") as tx:
            return tx.journal.history(limit=limit, kinds=kinds, window=window, since=since)

    def journal_counts(self, window: str, occurrence: datetime) -> dict[str, dict[str, Any]]:
        with self._open("read the journal of an occurrence") as tx:
            return tx.journal.counts(window, occurrence)

    def events(self, since: datetime | None = None) -> dict[tuple[str, datetime, str], dict]:
        with self._open("read occurrence events") as tx:
            return tx.journal.events(since)

    def open_occurrences(self) -> list[dict]:
        with self._open("read open occurrences") as tx:
            return tx.journal.open_occurrences()

    def announcements(self) -> dict[tuple[str, datetime], dict]:
        with self._open("read announcements") as tx:
            return tx.journal.announcements()

    def overrides(self) -> dict[tuple[str, datetime], dict]:
        with self._open("read overrides") as tx:
            return tx.journal.overrides()

    def manual_windows(self, active_only: bool = True, now: datetime | None = None) -> list[dict]:
        with self._open("read manual maintenance") as tx:
            return tx.journal.manual_windows(active_only, now)

    def get_meta_time(self, key: str) -> datetime | None:
        with self._open("read " + key) as tx:
            return tx.journal.get_meta_time(key)

    def register_instance(
        self, id: str, *, listen: str, now: datetime, leader: bool = False, since: datetime | None = None
    ) -> None:
        with self._open("register the instance", write=True) as tx:
            tx.journal.register_instance(id, listen=listen, now=now, leader=leader, since=since)

    def remove_instance(self, id: str) -> None:
        with self._open("remove the instance", write=True) as tx:
            tx.journal.remove_instance(id)

    def instances(self) -> list[dict]:
        with self._open("read instances") as tx:
            return tx.journal.instances()

    # outbox ----------------------------------------------------------------

    def claim_batch(
        self,
        now: datetime,
        *,
        worker: str,
        limit: int,
        lease: timedelta,
        busy: Iterable[tuple[str, str]] = (),
        per_endpoint: int = 1,
    ) -> list[dict]:
        with self._open("claim notices", write=True) as tx:
            busy = list(busy)
            return tx.outbox.claim_batch(
                now, worker=worker, limit=limit, lease=lease, busy=busy, per_endpoint=per_endpoint
            )

    def finish_many(self, results: Iterable[tuple[int, Mapping[str, Any]]], *, worker: str | None = None) -> set[int]:
        with self._open("record notice results", write=True) as tx:
            return tx.outbox.finish_many(results, worker=worker)

    def extend_claims(self, ids: Iterable[int], *, worker: str, until: datetime) -> int:
        with self._open("extend notice claims", write=True) as tx:
            return tx.outbox.extend_claims(list(ids), worker=worker, until=until)

    def orphaned_claims(self, *, alive: Iterable[str]) -> list[dict]:
        with self._open("read orphaned claims") as tx:
            return tx.outbox.orphaned_claims(alive=list(alive))

    def resend_notices(self, now: datetime, *, notice_id: str | None = None, all_failed: bool = False) -> list[dict]:
        """Failed deliveries back to pending (SPEC 4.1); their tenants' disabled endpoints
        of those channels are enabled again in the same transaction."""
        with self._open("resend notices", write=True) as tx:
            rows = tx.outbox.resend(now, notice_id=notice_id, all_failed=all_failed)
            for tenant, channel in sorted({(r["tenant"], r["channel"]) for r in rows}):
                tx.endpoints.enable(tenant, channel)
            return rows

    def disabled_endpoints(self) -> list[dict]:
        with self._open("read disabled endpoints") as tx:
            return tx.endpoints.listing()

    def notice_counts(self) -> dict[str, int]:
        with self._open("count notices") as tx:
            return tx.outbox.counts()

    def notices(
        self, *, failed_only: bool = False, limit: int = 500, window: str | None = None, tenant: str | None = None
    ) -> list[dict]:
        with self._open("read notices") as tx:
            return tx.outbox.listing(failed_only=failed_only, limit=limit, window=window, tenant=tenant)

    def was_notified(self, window: str, occurrence: datetime, *, include_dry_run: bool = False) -> set[str]:
        with self._open("read notified tenants") as tx:
            return tx.outbox.was_notified(window, occurrence, include_dry_run=include_dry_run)

    def sent_leads(self, since: datetime) -> set[tuple[str, datetime, str]]:
        with self._open("read sent leads") as tx:
            return tx.outbox.sent_leads(since)

    def changes_after(self, windows: Iterable[str], after_id: int) -> list[dict]:
        with self._open("read changed notices") as tx:
            return tx.outbox.changes_after(windows, after_id)

    # leases ----------------------------------------------------------------

    def heartbeat(self, id: str, now: datetime) -> dict | None:
        with self._open("record a heartbeat", write=True) as tx:
            return tx.leases.heartbeat(id, now)

    def release(self, id: str, now: datetime) -> bool:
        with self._open("release a lease", write=True) as tx:
            return tx.leases.release(id, now)

    def leases(self, status: str | None = "running") -> list[dict]:
        with self._open("read leases") as tx:
            return tx.leases.leases(status)

    def lease(self, id: str) -> dict | None:
        with self._open("read a lease") as tx:
            return tx.leases.lease(id)

    # effects ---------------------------------------------------------------

    def claim_hook(self, window: str, occurrence: datetime, event: str, now: datetime) -> bool:
        with self._open("claim a hook run", write=True) as tx:
            return tx.effects.claim_hook(window, occurrence, event, now)

    def finish_hook(
        self,
        key: tuple[str, datetime, str],
        *,
        ok: bool,
        now: datetime,
        exit_code: int | None = None,
        error: str | None = None,
        next_at: datetime | None = None,
    ) -> bool:
        with self._open("record a hook result", write=True) as tx:
            return tx.effects.finish_hook(key, ok=ok, now=now, exit_code=exit_code, error=error, next_at=next_at)

    def reset_running_hooks(self, now: datetime) -> int:
        with self._open("reset hook runs", write=True) as tx:
            return tx.effects.reset_running_hooks(now)

    def hook_runs(self, status: str | None = None) -> list[dict]:
        with self._open("read hook runs") as tx:
            return tx.effects.hook_runs(status)

    # tenant secrets --------------------------------------------------------

    def tenant_secret(
        self,
        tenant: str,
        create: bool = True,
        token_factory: Callable[[], str] = _secrets.token_urlsafe,
        *,
        now: datetime | None = None,
    ) -> str | None:
        with self._open("read a tenant secret", write=create) as tx:
            return tx.secrets.tenant_secret(tenant, create, token_factory, now=now)

    def rotate_secret(
        self, tenant: str, token_factory: Callable[[], str] = _secrets.token_urlsafe, *, now: datetime | None = None
    ) -> str:
        with self._open("rotate a tenant secret", write=True) as tx:
            return tx.secrets.rotate_secret(tenant, token_factory, now=now)

    def tenant_for_secret(self, secret: str) -> str | None:
        with self._open("read a tenant secret") as tx:
            return tx.secrets.tenant_for_secret(secret)
