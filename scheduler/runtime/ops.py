"""The provider's own room (SPEC 4.2 ``provider.ops``): one outbox row per event and room.

Ops messages ride the notice outbox -- durable, claimed and retried on the common schedule
-- as non-tenant deliveries: tenant ``@ops`` (a name no tenant id can take), kind ``ops``,
the event in ``lead`` and channel ``ops:apprise:<scheme>#<url hash>``. They are journaled
(``ops``) and never counted in ``status.notices``. "Never twice" is the outbox's unique
key: an event's ``seq`` tells repeats apart (an extension's new end, a failed delivery).

Other parts call :meth:`Ops.emit` with an event of ``notifiers.ops.OPS_EVENTS`` and a
plain record (``window``, ``occurrence``, ``title``, ``start``, ``end``, ``tenants``, and
per event ``error``, ``channel``, ``hook``, ``jobs``...). Inside a store transaction they
pass ``tx``; without one the write happens on a thread of its own, so a caller on the gate
or outbox path never waits for the store.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from ..errors import DeliveryError, StoreError
from ..model import isoz
from .generation import Generations

log = logging.getLogger("maintd")

OPS_TENANT = "@ops"  # not a tenant id ([a-z0-9][a-z0-9_-]*): never a tenant's delivery
OPS_KIND = "ops"


def is_ops(row: Mapping[str, Any]) -> bool:
    return row.get("tenant") == OPS_TENANT


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return isoz(value)
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    return value


class OpsDelivery:
    """An ops row as the outbox sends it: ``send(notice, tenant)`` ignores both and sends the
    row's record to the room."""

    def __init__(self, notifier: Any, record: Mapping[str, Any]) -> None:
        self.notifier = notifier
        self.record = record
        self.channel = notifier.channel

    def send(self, _notice: Any = None, _tenant: Any = None) -> None:
        if not isinstance(self.record, Mapping) or "event" not in self.record:
            raise DeliveryError("not an ops message", permanent=True)
        self.notifier.send(self.record)


class Ops:
    def __init__(
        self, *, store, generations: Generations, clock: Callable[[], datetime], dry_run: bool = False
    ) -> None:
        self.store = store
        self.generations = generations
        self.clock = clock
        self.dry_run = dry_run
        self.after: Callable[[], None] = lambda: None  # wakes the outbox when rows were written
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ops")

    def rooms(self, event: str) -> dict[str, Any]:
        """The ops notifiers (by outbox channel) that listen to ``event``."""
        notifiers = self.generations.current.notifiers
        return {ch: n for ch, n in notifiers.items() if ch.startswith("ops:") and n.wants(event)}

    def rows(self, event: str, record: Mapping[str, Any], now: datetime) -> list[dict]:
        """Outbox rows for one event: one per room that hears it (none when no room does)."""
        rooms = self.rooms(event)
        if not rooms:
            return []
        cfg = self.generations.config
        payload = {k: _plain(v) for k, v in record.items() if v is not None}
        payload.setdefault("zone", cfg.provider.zone.key)
        payload["event"] = event
        occurrence = record.get("occurrence") or now
        seq = int(record.get("seq") or 0)
        key = f"{event}|{record.get('window') or ''}|{isoz(occurrence)}|{seq}"
        notice_id = "ops-" + hashlib.sha256(key.encode()).hexdigest()[:24]
        return [
            {
                "notice_id": notice_id,
                "channel": channel,
                "window": str(record.get("window") or ""),
                "occurrence": occurrence,
                "tenant": OPS_TENANT,
                "kind": OPS_KIND,
                "lead": event,
                "seq": seq,
                "payload": {**payload, "target": notifier.target},
                "created_at": now,
                "status": "dry-run" if self.dry_run else "pending",
            }
            for channel, notifier in rooms.items()
        ]

    def emit(self, event: str, record: Mapping[str, Any], tx: Any = None) -> None:
        """Queue ``event`` for every room that hears it. With ``tx`` the rows are part of the
        caller's transaction; without, they are written on the ops thread."""
        if not self.rooms(event):
            return
        if tx is not None:
            self._write(tx, event, record, self.clock())
            return
        try:
            self._pool.submit(self._own_transaction, event, dict(record))
        except RuntimeError:  # shutting down: the event is lost with the process, as a log line would be
            log.warning("ops %s not queued: stopping", event, extra={"action": "ops-dropped"})

    def _own_transaction(self, event: str, record: dict) -> None:
        try:
            with self.store.transaction() as tx:
                self._write(tx, event, record, self.clock())
        except StoreError as exc:
            log.error("ops %s not queued: %s", event, exc, extra={"action": "ops-dropped"})
            return
        self.after()

    def _write(self, tx: Any, event: str, record: Mapping[str, Any], now: datetime) -> None:
        rows = self.rows(event, record, now)
        if not rows or not tx.enqueue(rows):
            return  # already queued (the same event and seq): never twice
        window = str(record.get("window") or "") or None
        occurrence = record.get("occurrence") if isinstance(record.get("occurrence"), datetime) else None
        rooms = ", ".join(r["payload"]["target"] for r in rows)
        tx.journal(
            "ops",
            at=now,
            window=window,
            occurrence=occurrence,
            message=f"ops {event} to {rooms}",
            detail={"event": event, "rooms": len(rows)},
        )

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


def failed_record(row: Mapping[str, Any], error: str) -> dict[str, Any]:
    """The ``notice_failed`` record of a tenant delivery that failed for good."""
    payload = row.get("payload") or {}
    channel = str(row.get("channel") or "").split("#", 1)[0]
    target = payload.get("target")
    return {
        "window": row.get("window"),
        "title": payload.get("title") or row.get("window"),
        "occurrence": row.get("occurrence"),
        "start": payload.get("start"),
        "end": payload.get("end"),
        "tenants": [row.get("tenant")],
        "count": 1,
        "channel": f"{channel} {target}" if target else channel,
        "error": error[:300],
        "seq": int(row.get("id") or 0),
    }
