"""The gate (SPEC section 3): admissions, heartbeats and releases of leases, and the
overrun fault of a drained job still running past its deadline.

Takes no lock: a job start must never wait for a tick. The last evaluation and the current
generation are each one atomic read, and decide() classifies occurrences by ``now``
itself, so a window that began after the last tick gates already. Every write (a lease, a
refusal's journal line, a heartbeat, a release) goes through the group-commit writer given
at construction, committed with the others that arrive meanwhile.

Each call has a blocking form (threads, tests) and an async one (the API: no trip through
the thread pool); both decide the same way and wait for the same commit.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from .. import plan
from ..errors import NotFoundError, StoreError, UsageError
from ..groupcommit import GroupCommit
from ..leasetoken import seal, unseal
from ..model import isoz, normalise_id, normalise_kind
from ..policy import Request, decide
from ..store.leases import secret_hash
from .enqueue import tenant_time
from .faults import Faults, StoreGuard
from .gatings import GatingIndex, gatings_until
from .generation import Generations
from .metrics import Metrics

log = logging.getLogger("maintd")

# Longer than any job; keeps now + expected_duration (and the occurrences expanded up to it)
# far from datetime's limits.
MAX_EXPECTED_DURATION = timedelta(days=366)


def whole_seconds(delta: timedelta) -> int:
    """Seconds rounded up, at least 1 (Retry-After, overrun reports)."""
    whole = int(delta.total_seconds())
    return max(1, whole + (whole < delta.total_seconds()))


def write_gate_batch(store, ops: Any) -> list:
    """The group-commit writer's ``run``: one transaction for every gate write waiting."""
    results: list = [None] * len(ops)
    if all(op is None for op in ops):
        return results  # flushes only: everything before them is written
    with store.transaction() as tx:
        tx.add_leases([op[1] for op in ops if op is not None and op[0] == "lease"])
        for i, op in enumerate(ops):
            if op is None:  # a flush: nothing to write
                continue
            if op[0] == "journal":
                tx.journal(op[1], **op[2])
            elif op[0] == "heartbeat":
                results[i] = tx.leases.heartbeat_secret(op[1], op[2])
            elif op[0] == "release":
                results[i] = tx.leases.release_secret(op[1], op[2])
            elif op[0] == "revive":  # a lease whose admission was answered but never committed
                results[i] = tx.leases.revive(op[1], op[2])
    return results


def normalised_request(tenant_id: str, kind: str, resource: str | None) -> tuple[str, str, str | None]:
    """Ids as the config compares them (NFKC; kinds casefolded): ``Backup`` is ``backup``, and
    ``backup\u200b`` or ``back\0up`` are refused, never a kind no rule names."""
    try:
        return (
            normalise_id(tenant_id),
            normalise_kind(kind),
            None if resource is None else normalise_id(resource),
        )
    except ValueError as exc:
        raise UsageError(f"invalid admission request: {exc}") from None


class Overruns:
    """``overrun:<lease>`` faults: raised by a late heartbeat, cleared by a release or expiry."""

    def __init__(self, faults: Faults, metrics: Metrics) -> None:
        self.faults = faults
        self.metrics = metrics
        self.on_overrun: Callable[[dict], Any] | None = None  # the ops room hears an overrun

    def lease_ids(self) -> list[str]:
        return [what.split(":", 1)[1] for what in self.faults.names("overrun:")]

    def raise_(self, row: dict, now: datetime) -> tuple | None:
        """Raise the overrun fault of a lease (once); returns the journal write it needs."""
        what = f"overrun:{row['id']}"
        if what in self.faults:
            return None
        late = whole_seconds(now - row["deadline"])
        message = (
            f"lease {row['id']} ({row['tenant']}/{row['kind']}) still runs {late}s after its drain "
            f"deadline {isoz(row['deadline'])}"
        )
        self.faults.raise_(what, message)
        self.metrics.drain_overrun.set(len(self.lease_ids()))
        log.warning(message, extra={"action": "drain-overrun", "tenant": row["tenant"]})
        if self.on_overrun is not None:
            self.on_overrun(
                {
                    "window": row.get("window") or "",
                    "occurrence": row.get("occurrence"),
                    "tenants": [row["tenant"]],
                    "jobs": [f"{row['tenant']}/{row['kind']}"],  # never the lease id: a capability
                    "count": 1,
                    "end": row["deadline"],
                }
            )
        detail: dict[str, Any] = {k: row[k] for k in ("tenant", "kind", "resource")}
        detail.update(lease=row["id"], deadline=isoz(row["deadline"]))
        return ("journal", "drain-overrun", dict(at=now, message=message, detail=detail))

    def clear(self, lease_id: str) -> None:
        if self.faults.clear(f"overrun:{lease_id}"):
            self.metrics.drain_overrun.set(len(self.lease_ids()))


class Gate:
    def __init__(
        self,
        *,
        writer: GroupCommit,
        generations: Generations,
        evaluation: Callable[[], plan.Evaluation | None],
        index: GatingIndex,
        overruns: Overruns,
        guard: StoreGuard,
        metrics: Metrics,
        clock: Callable[[], datetime],
        heartbeat: int,
        key: Callable[[], bytes] | None = None,
    ) -> None:
        self.writer = writer
        self.generations = generations
        self.evaluation = evaluation
        self.index = index
        self.overruns = overruns
        self.guard = guard
        self.metrics = metrics
        self.clock = clock
        self.heartbeat_interval = heartbeat
        # the store's lease key (leasetoken): shared by instances and restarts; without one
        # (tests of the part alone) a key of this object's own
        own = secrets.token_bytes(32)
        self.key = key or (lambda: own)

    def admit(
        self, tenant_id: str, kind: str, resource: str | None = None, expected_duration: timedelta | None = None
    ) -> dict:
        """Decide, and on admission hand out a lease (``POST /v1/admissions``)."""
        result, write = self.decide(tenant_id, kind, resource, expected_duration)
        try:
            self.writer.submit(write)
        except StoreError as exc:
            return self._unwritten(result, exc)
        return self._counted(result)

    async def admit_async(
        self, tenant_id: str, kind: str, resource: str | None = None, expected_duration: timedelta | None = None
    ) -> dict:
        """:meth:`admit` for the API. While the store is healthy the answer does not wait for
        the commit: the row goes with the next batch, and the secret carries the admission
        so a crash in between is repaired by the job's next heartbeat (:meth:`heartbeat_async`).
        After a store error it waits again, so no job is admitted that the store cannot hold."""
        if expected_duration is not None and expected_duration > timedelta(days=1):
            # may expand occurrences far ahead (gatings_until): not on the event loop
            return await asyncio.get_running_loop().run_in_executor(
                None, self.admit, tenant_id, kind, resource, expected_duration
            )
        result, write = self.decide(tenant_id, kind, resource, expected_duration)
        if "store" not in self.guard.faults or not result["admitted"]:
            self.writer.submit_nowait(write, self._unrecorded)
            return self._counted(result)
        try:
            await self.writer.submit_async(write)
        except StoreError as exc:
            return self._unwritten(result, exc)
        return self._counted(result)

    def _unrecorded(self, op: tuple, exc: BaseException) -> None:
        """A write that did not wait for its commit failed (on the writer thread)."""
        if isinstance(exc, StoreError):
            self.guard.failed(exc)
        if op[0] == "lease":
            log.warning(
                "lease %s (%s/%s) was admitted but not recorded (%s); its next heartbeat records it",
                op[1]["id"],
                op[1]["tenant"],
                op[1]["kind"],
                exc,
                extra={"action": "lease-unrecorded", "tenant": op[1]["tenant"]},
            )

    def decide(
        self, tenant_id: str, kind: str, resource: str | None, expected_duration: timedelta | None
    ) -> tuple[dict, tuple]:
        """The answer to an admission request, and the write that must commit before it is given."""
        tenant_id, kind, resource = normalised_request(tenant_id, kind, resource)
        now = self.clock()
        generation = self.generations.current
        cfg = generation.config
        tenant = cfg.tenants.get(tenant_id)
        if tenant is None:
            raise NotFoundError(f'unknown tenant "{tenant_id}"')
        longest = MAX_EXPECTED_DURATION
        if expected_duration is not None and not timedelta(0) <= expected_duration <= longest:
            raise UsageError(f"expected_duration must be between 0s and {longest.days}d")
        ev = self.evaluation()
        gatings = self.index.gatings(tenant, ev, cfg)
        if expected_duration is not None and ev is not None and now + expected_duration > ev.now + timedelta(days=1):
            gatings = gatings_until(tenant, ev, cfg, now + expected_duration)
        if gatings:
            decision = decide(
                Request(tenant=tenant, kind=kind, resource=resource, expected_duration=expected_duration),
                [g for g in gatings if g.occurrence.start <= now],
                [g for g in gatings if g.occurrence.start > now],
                now,
                provider=cfg.provider,
                compiled=generation.compiled,
                format_time=tenant_time(tenant),  # the refusal's dates in the tenant's language
            )
            if not decision.admitted:
                return self._refusal(decision, tenant_id, kind, resource, now)
        # The secret is the capability to heartbeat and release; only the admitted job learns it
        # and the store keeps its hash. Status shows the public id, which can do neither.
        lease: dict[str, Any] = {"id": "lse_" + secrets.token_hex(6), "tenant": tenant_id, "kind": kind}
        lease.update(resource=resource, admitted_at=now, interval_s=self.heartbeat_interval)
        secret = seal(self.key(), lease)
        lease["secret_hash"] = secret_hash(secret)
        return {"admitted": True, "lease": secret, "heartbeat": self.heartbeat_interval}, ("lease", lease)

    @staticmethod
    def _refusal(decision: Any, tenant_id: str, kind: str, resource: str | None, now: datetime) -> tuple[dict, tuple]:
        retry = whole_seconds(decision.retry_after - now) if decision.retry_after else 60
        # tenant and kind in `detail`: the completed notice counts refusals per tenant
        detail: dict[str, Any] = {"tenant": tenant_id, "kind": kind, "resource": resource}
        detail.update(reason=decision.reason, retry_after=retry)
        write = (
            "journal",
            "refused",
            dict(
                at=now,
                window=decision.window,
                occurrence=decision.occurrence,
                message=f"{tenant_id}/{kind} refused ({decision.reason})",
                detail=detail,
            ),
        )
        answer = {"admitted": False, "reason": decision.reason, "message": decision.message, "retry_after": retry}
        return answer, write

    def _counted(self, result: dict) -> dict:
        self.metrics.admissions.labels("admitted" if result["admitted"] else result["reason"] or "denied").inc()
        return result

    def _unwritten(self, result: dict, exc: StoreError) -> dict:
        self.guard.failed(exc)
        if result["admitted"]:
            raise exc  # no lease without its row: the client hears 503 (and --if-unreachable decides)
        return self._counted(result)  # a refusal is still a refusal without its journal line

    def heartbeat(self, secret: str) -> dict:
        """A gate client is alive: ``{"drain": bool, "deadline": ts|null}``. A drained job
        that still heartbeats after its deadline is an overrun: a fault ops must see.
        ``secret`` is what the admission returned as ``lease``; a public id is unknown here."""
        now = self.clock()
        row = self.writer.submit(("heartbeat", secret_hash(secret), now))
        if row is None and (lease := self._sealed(secret)) is not None:
            row = self.writer.submit(("revive", lease, now))
        result, write = self._heartbeat_answer(row, now)
        if write is not None:
            with self.guard():
                self.writer.submit(write)
        return result

    async def heartbeat_async(self, secret: str) -> dict:
        now = self.clock()
        row = await self.writer.submit_async(("heartbeat", secret_hash(secret), now))
        if row is None and (lease := self._sealed(secret)) is not None:
            row = await self.writer.submit_async(("revive", lease, now))
        result, write = self._heartbeat_answer(row, now)
        if write is not None:
            with self.guard():
                await self.writer.submit_async(write)
        return result

    def _sealed(self, secret: str) -> dict | None:
        """The lease an unknown secret was issued for, if this daemon (or one on the same
        store) issued it and its tenant still exists: the admission's row was lost in a crash
        before its commit."""
        lease = unseal(self.key(), secret)
        if lease is None or lease["tenant"] not in self.generations.current.config.tenants:
            return None
        lease["secret_hash"] = secret_hash(secret)
        return lease

    def _heartbeat_answer(self, row: dict | None, now: datetime) -> tuple[dict, tuple | None]:
        if row is None:  # never echo the secret back: it may be a real one of an ended lease
            raise NotFoundError("unknown or expired lease")
        write = self.overruns.raise_(row, now) if row.get("overrun") else None
        return {"drain": bool(row["drain"]), "deadline": isoz(row["deadline"])}, write

    def release(self, secret: str) -> str:
        """The job ended (``DELETE /v1/leases/{secret}``); returns the lease's public id."""
        return self._released(self.writer.submit(("release", secret_hash(secret), self.clock())))

    async def release_async(self, secret: str) -> str:
        return self._released(await self.writer.submit_async(("release", secret_hash(secret), self.clock())))

    def _released(self, lease_id: str | None) -> str:
        if lease_id is None:
            raise NotFoundError("unknown or finished lease")
        self.overruns.clear(lease_id)
        return lease_id
