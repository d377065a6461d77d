"""Tunables of a running daemon, read once from the environment by the composition root."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, kw_only=True)
class Settings:
    safety_tick: float = 30.0  # seconds between ticks when nothing else wakes the loop
    heartbeat: int = 10  # seconds a gate client waits between heartbeats
    hook_attempts: int = 5  # tries before a hook run is failed for good
    # Deliveries in flight at once (bounded). Webhook sends are coroutines on one event loop and
    # mostly wait on the network: 256 keeps a 50 ms receiver busy where 64 capped it at ~1,200/s
    # (benchmarks/notify_bench.py). Channels that block a thread (email, chat) use at most
    # ``threads`` of them at once; the rest of their claimed rows wait their turn.
    workers: int = 256
    threads: int = 64
    claim_batch: int = 256  # rows claimed per store round trip (at most)
    # A claim is extended while its send is in flight; one not extended for this long (its
    # instance hung) is claimed again. A dead instance's claims are taken back sooner (Outbox.recover).
    claim_lease: timedelta = timedelta(seconds=30)
    leader_poll: float = 1.0  # seconds between leadership checks (PostgreSQL)
    status_wait: float = 1.0  # seconds status waits for a tick in flight before answering from the last one

    @property
    def instance_stale(self) -> timedelta:
        """An instance silent this long is gone."""
        return timedelta(seconds=max(15.0, 5 * self.leader_poll))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        workers = int(env.get("MAINTD_DELIVERY_WORKERS", "256"))
        return cls(
            safety_tick=float(env.get("MAINTD_SAFETY_TICK", "30")),
            heartbeat=int(env.get("MAINTD_HEARTBEAT", "10")),
            hook_attempts=int(env.get("MAINTD_HOOK_ATTEMPTS", "5")),
            workers=workers,
            threads=min(workers, int(env.get("MAINTD_DELIVERY_THREADS", "64"))),
            claim_batch=int(env.get("MAINTD_CLAIM_BATCH", str(workers))),
            claim_lease=timedelta(seconds=float(env.get("MAINTD_CLAIM_LEASE", "30"))),
            leader_poll=float(env.get("MAINTD_LEADER_POLL", "1")),
        )
