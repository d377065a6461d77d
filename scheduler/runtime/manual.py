"""Manual actions (SPEC section 3): enter maintenance now, end it early, extend it.

Each writes its record and journal line in one transaction under the reconciler's lock,
then ticks, so the answer and the next status agree.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from ..errors import ConflictError, NotFoundError, UsageError
from ..guardrails import freeze_for
from ..model import Freeze, isoz
from .defer import defer as defer_slot
from .generation import Generations
from .reconciler import Reconciler
from .snapshot import OPEN_ENDED
from .waves import parse_at
from .waves import resume as resume_waves


def freeze_refusal(
    freezes: Sequence[Freeze], now: datetime, end: datetime | None, override: str | None
) -> Freeze | None:
    """The freeze manual maintenance ``[now, end)`` (``end`` None: starting now) runs into, or
    None; raises ConflictError (exit 1) when there is one and no ``override`` reason."""
    frozen = freeze_for(now, end or now + timedelta(seconds=1), freezes)
    if frozen is not None and not (override or "").strip():
        reason = f" ({frozen.reason})" if frozen.reason else ""
        raise ConflictError(
            f'change freeze "{frozen.id}"{reason} is in effect until {isoz(frozen.end)}; '
            "give --override-freeze REASON to enter maintenance anyway"
        )
    return frozen


class Manual:
    def __init__(
        self, *, store, generations: Generations, reconciler: Reconciler, clock: Callable[[], datetime]
    ) -> None:
        self.store = store
        self.generations = generations
        self.reconciler = reconciler
        self.clock = clock

    def enter(
        self,
        *,
        reason: str,
        duration: timedelta | None = None,
        tenants: list[str] | None = None,
        policy: str | None = None,
        actor: str = "api",
        override_freeze: str | None = None,
    ) -> dict:
        # Whole seconds: the start is the occurrence key, which the store keeps as isoz() text
        # (seconds). With microseconds the journal's key would never match the plan's again:
        # the occurrence read as "removed" one tick after it started, and its overrides
        # (extend, exit) never applied.
        now = self.clock().replace(microsecond=0)
        with self.reconciler.lock:
            cfg = self.generations.config
            if tenants:
                unknown = [t for t in tenants if t not in cfg.tenants]
                if unknown:
                    raise NotFoundError(f"unknown tenant(s): {', '.join(unknown)}")
            if policy is not None and policy not in cfg.policies:
                raise NotFoundError(f'unknown policy "{policy}"')
            if duration is not None and duration <= timedelta(0):
                raise UsageError("--for must be a positive duration")
            mid = "manual-" + now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)
            end = now + duration if duration else None
            frozen = freeze_refusal(cfg.freezes, now, end, override_freeze)  # SPEC 7
            with self.store.transaction() as tx:
                tx.add_manual(
                    mid, reason=reason, start=now, end=end, tenants=tenants, policy=policy, created_at=now, actor=actor
                )
                tx.journal(
                    "enter",
                    at=now,
                    window=mid,
                    occurrence=now,
                    actor=actor,
                    message=f"manual maintenance: {reason}" + (f" until {isoz(end)}" if end else ""),
                    detail={"reason": reason, "tenants": tenants, "end": isoz(end), "policy": policy},
                )
                if frozen is not None:  # SPEC 7: an override of a freeze is journaled with its reason
                    tx.journal(
                        "override-freeze",
                        at=now,
                        window=mid,
                        occurrence=now,
                        actor=actor,
                        message=f'{mid} runs inside freeze "{frozen.id}": {override_freeze}',
                        detail={"freeze": frozen.id, "reason": override_freeze},
                    )
            self.reconciler.tick("enter")
        return {
            "window": mid,
            "occurrence": isoz(now),
            "start": isoz(now),
            "end": isoz(end),
            "tenants": sorted(tenants) if tenants else sorted(cfg.tenants),
        }

    def exit(self, *, window: str | None = None, actor: str = "api") -> dict:
        now = self.clock()
        with self.reconciler.lock:
            ev = self.reconciler.tick("exit-pre") or self.reconciler.evaluation
            targets = [a for a in (ev.active if ev else ()) if window is None or a.window.id == window]
            if not targets:
                raise ConflictError(
                    "no maintenance is active" if window is None else f'window "{window}" is not active'
                )
            with self.store.transaction() as tx:
                for a in targets:
                    if a.window.manual:
                        tx.end_manual(a.window.id, now)
                    tx.set_override(a.window.id, a.occ.key, end=now, reason="exit", at=now, actor=actor)
                    tx.journal(
                        "exit",
                        at=now,
                        window=a.window.id,
                        occurrence=a.occ.key,
                        actor=actor,
                        message=f"{a.window.id} ended early by {actor}",
                    )
            self.reconciler.tick("exit")
        return {"ended": [{"window": a.window.id, "occurrence": isoz(a.occ.key)} for a in targets]}

    def extend(self, window_id: str, by: timedelta, *, actor: str = "api") -> dict:
        if by <= timedelta(0):
            raise UsageError("the extension must be a positive duration such as 30m")
        now = self.clock()
        with self.reconciler.lock:
            ev = self.reconciler.tick("extend-pre") or self.reconciler.evaluation
            known = self.generations.config.window(window_id) is not None or any(
                a.window.id == window_id for a in (ev.active + ev.upcoming if ev else ())
            )
            target = next((a for a in (ev.active if ev else ()) if a.window.id == window_id), None)
            if target is None:
                if not known:
                    raise NotFoundError(f'unknown window "{window_id}"')
                raise ConflictError(f'window "{window_id}" is not active; only a running occurrence can be extended')
            if by > OPEN_ENDED or target.occ.end + by - now > 2 * OPEN_ENDED:  # far from datetime's year 9999
                raise UsageError(f"cannot extend {window_id} more than {2 * OPEN_ENDED.days} days ahead")
            new_end = target.occ.end + by
            with self.store.transaction() as tx:
                tx.set_override(window_id, target.occ.key, end=new_end, reason="extend", at=now, actor=actor)
                tx.journal(
                    "extend",
                    at=now,
                    window=window_id,
                    occurrence=target.occ.key,
                    actor=actor,
                    message=f"{window_id} extended by {by} to {isoz(new_end)}",
                    detail={"by_seconds": int(by.total_seconds()), "end": isoz(new_end)},
                )
            self.reconciler.tick("extend")
        return {
            "window": window_id,
            "occurrence": isoz(target.occ.key),
            "start": isoz(target.occ.start),
            "end": isoz(new_end),
        }

    def resume(self, window_id: str, at: str | datetime | None = None, *, actor: str = "api") -> dict:
        """SPEC 8: plan the halted waves of ``window_id`` again from ``at`` (default now)."""
        now = self.clock().replace(microsecond=0)
        when = parse_at(at, self.generations.config.provider.zone, now)
        at = when.replace(microsecond=0)  # whole seconds: the start becomes an occurrence key
        with self.reconciler.lock:
            journal = self.reconciler.journal(now)
            with self.store.transaction() as tx:
                out = resume_waves(tx, self.generations.config, journal, window_id, at, now=now, actor=actor)
            self.reconciler.tick("resume")
        return out

    def defer(self, tenant_id: str, window_id: str, occurrence: str) -> dict:
        """SPEC 9: the tenant moves itself out of its slot ``occurrence`` of ``window_id``."""
        now = self.clock()
        with self.reconciler.lock:
            cfg = self.generations.config
            tenant = cfg.tenants.get(tenant_id)
            if tenant is None:
                raise NotFoundError(f'unknown tenant "{tenant_id}"')
            try:
                key = datetime.fromisoformat(occurrence.replace("Z", "+00:00"))
            except ValueError:
                raise UsageError(f'invalid occurrence "{occurrence}"') from None
            if key.tzinfo is None:
                raise UsageError(f'invalid occurrence "{occurrence}"')
            journal = self.reconciler.journal(now)
            with self.store.transaction() as tx:
                out = defer_slot(tx, cfg, journal, tenant, window_id, key, now=now, rows=self.reconciler.rows.rows)
            self.reconciler.tick("defer")
        return out
