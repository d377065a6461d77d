"""This instance on the store: its leadership and its row among the live instances."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..model import isoz
from .faults import StoreGuard
from .metrics import Metrics


class Presence:
    def __init__(
        self,
        *,
        store,
        leadership,
        instance_id: str,
        listen: str,
        guard: StoreGuard,
        metrics: Metrics,
        stale: timedelta,
    ) -> None:
        self.store = store
        self.leadership = leadership
        self.instance_id = instance_id
        self.listen = listen
        self.guard = guard
        self.metrics = metrics
        self.stale = stale  # an instance silent this long is gone

    @property
    def leader(self) -> bool:
        return self.leadership.leader

    def poll(self, now: datetime) -> tuple[bool, bool]:
        """Check (or take) leadership and heartbeat this instance's row: (was, is) leader."""
        was = self.leadership.leader
        leader = self.leadership.poll(now)
        self.metrics.leader.set(1 if leader else 0)
        with self.guard():
            self.store.register_instance(
                self.instance_id, listen=self.listen, now=now, leader=leader, since=self.leadership.since
            )
        return was, leader

    def leave(self) -> None:
        self.leadership.release()  # another instance takes over at its next poll
        try:
            self.store.remove_instance(self.instance_id)
        except Exception:  # noqa: BLE001 - stopping: the row goes stale anyway
            pass

    def me(self) -> dict:
        return {
            "id": self.instance_id,
            "listen": self.listen,
            "leader": self.leadership.leader,
            "since": isoz(self.leadership.since),
            "self": True,
        }

    def instances(self, now: datetime) -> list[dict]:
        """Every live instance on this store; this one's row from its own live state."""
        if not self.leadership.postgres:
            return [self.me()]  # one instance per SQLite file; old rows are past runs
        out = [self.me()]
        for i in self.store.instances():
            if i["id"] == self.instance_id or i["heartbeat_at"] < now - self.stale:
                continue
            out.append(
                {
                    "id": i["id"],
                    "listen": i["listen"],
                    "leader": bool(i["leader"]),
                    "since": isoz(i["since"]),
                    "self": False,
                }
            )
        return sorted(out, key=lambda i: (not i["leader"], i["listen"]))
