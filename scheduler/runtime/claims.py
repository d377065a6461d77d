"""Claims and resends, the outbox's recovery paths (SPEC 4.1): a dead instance's claims
taken back at once, and failed deliveries put back to pending."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from datetime import datetime, timedelta

from ..errors import NotFoundError
from ..notices import SUPERSEDED_AT_START, notice_from_json
from .faults import StoreGuard

log = logging.getLogger("maintd")


def recover(store, guard: StoreGuard, *, worker: str, shared: bool, lapse: timedelta, now: datetime) -> int:
    """Take back the claims of dead instances (SPEC 4.1: within seconds, not minutes).

    On SQLite this instance is the only writer, so every claim not its own belongs to a
    dead predecessor. On PostgreSQL an instance whose presence heartbeat lapsed
    (``lapse``) is dead. Each such row is due again now, with the same notice id
    (at least once; receivers deduplicate on it) -- except a ``scheduled`` notice whose
    window has started since: it is never sent after the start, and since the dead
    instance had begun its send, it is recorded ``sent`` with the doubt in its error.
    """
    alive, rows = {worker}, []
    with guard() as g:
        if shared:
            alive |= {i["id"] for i in store.instances() if i["heartbeat_at"] >= now - lapse}
        rows = store.orphaned_claims(alive=alive)
        if rows:
            with store.transaction() as tx:
                release, doubtful = [], []
                for row in rows:
                    notice = notice_from_json(row["payload"])
                    if notice.kind in SUPERSEDED_AT_START and now >= notice.start:
                        doubtful.append(row)
                    else:
                        release.append(row["id"])
                tx.outbox.release_claims(release, worker=None, now=now)
                tx.outbox.finish_many([(r["id"], _in_doubt(r, now)) for r in doubtful])
    if g.failed or not rows:
        return 0
    who = sorted({r["claimed_by"] for r in rows})
    log.warning(
        "took back %d notice claim%s of stopped instance%s %s",
        len(rows),
        "" if len(rows) == 1 else "s",
        "" if len(who) == 1 else "s",
        ", ".join(who),
        extra={"action": "notice-claims-recovered"},
    )
    return len(rows)


def resend(store, now: datetime, notice_id: str | None = None, *, failed: bool = False) -> dict:
    """Failed deliveries back to ``pending`` with a fresh schedule (SPEC 4.1): those of one
    notice id (every channel; a delivery row id works too), or with ``failed`` all of them.
    Enables the tenants' disabled endpoints of those channels. NotFoundError when there
    is no such failed delivery."""
    rows = store.resend_notices(now, notice_id=notice_id, all_failed=failed and notice_id is None)
    if not rows:
        what = f"notice {notice_id}" if notice_id is not None else "any notice"
        raise NotFoundError(f"no failed delivery of {what} to resend")
    ids = list(dict.fromkeys(r["notice_id"] for r in rows))
    log.info(
        "%d failed deliver%s back to pending (%s)",
        len(rows),
        "y" if len(rows) == 1 else "ies",
        ", ".join(ids[:10]) + (" ..." if len(ids) > 10 else ""),
        extra={"action": "notice-resend"},
    )
    return {"retried": len(rows), "ids": ids, "deliveries": [r["id"] for r in rows]}


def _in_doubt(row: dict, now: datetime) -> dict:
    """The result of a ``scheduled`` notice a dead instance was sending when the window started."""
    why = f"outcome unknown: {row['claimed_by']} stopped while sending it; not sent again after the start"
    return dict(status="sent", updated_at=now, sent_at=row["updated_at"], last_error=why)


class Held:
    """Claimed rows until their result is written: id -> (tenant, channel). Their claims are
    extended, and their endpoints get no second send meanwhile. Guards only memory."""

    def __init__(self) -> None:
        self._rows: dict[int, tuple[str, str]] = {}
        self._lock = threading.Lock()

    def add(self, ids: Iterable[int], endpoint: tuple[str, str]) -> None:
        with self._lock:
            self._rows.update((id, endpoint) for id in ids)

    def drop(self, ids: Iterable[int]) -> None:
        with self._lock:
            for id in ids:
                self._rows.pop(id, None)

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._rows)

    def endpoints(self) -> list[tuple[str, str]]:
        with self._lock:
            return sorted(set(self._rows.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._rows)
