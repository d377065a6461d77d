"""The store methods the notices work added: the completed summary's journal counts and
the outbox worker's batched claim, results and change lookups. On SQLite and PostgreSQL,
through test_store's ``store`` fixture."""

from __future__ import annotations

from datetime import timedelta

import pytest

from scheduler.store import Store

try:
    from test_store import MIN, OCC, T0, notice_row, store, url  # noqa: F401 - fixtures
except ImportError:  # tests/ became a package
    from tests.test_store import MIN, OCC, T0, notice_row, store, url  # noqa: F401

W = "storage-firmware"


def _lease(tx, id: str, tenant: str, kind: str = "backup") -> None:
    tx.add_lease(id, tenant=tenant, kind=kind, admitted_at=T0 - 10 * MIN, interval_s=600)


def test_journal_counts_per_tenant(store: Store) -> None:
    other = OCC + timedelta(days=7)
    with store.transaction() as tx:
        for tenant, kind in [("acme", "backup"), ("acme", "backup"), ("acme", "agent-backup"), ("beta", "backup")]:
            tx.journal(
                "refused",
                at=T0,
                window=W,
                occurrence=OCC,
                detail={"tenant": tenant, "kind": kind, "reason": "maintenance"},
            )
        tx.journal("refused", at=T0, window=W, occurrence=other, detail={"tenant": "acme", "kind": "x"})
        tx.journal("refused", at=T0, window="other", occurrence=OCC, detail={"tenant": "acme", "kind": "y"})
        for lease, tenant in [("l-done", "acme"), ("l-late", "acme"), ("l-running", "acme"), ("l-keep", "beta")]:
            _lease(tx, lease, tenant)
        for lease, tenant, then in [
            ("l-done", "acme", "stop"),
            ("l-late", "acme", "stop"),
            ("l-late", "acme", "stop"),  # journaled twice: still one job
            ("l-running", "acme", "stop"),
            ("l-keep", "beta", "keep"),
        ]:
            tx.journal(
                "drain",
                at=T0,
                window=W,
                occurrence=OCC,
                detail={
                    "lease": lease,
                    "tenant": tenant,
                    "kind": "backup",
                    "then": then,
                    "deadline": "2026-12-05T21:10:00Z",
                },
            )
        tx.order_drain(["l-done", "l-late", "l-running"], deadline=T0 + 10 * MIN, then="stop")
        tx.order_drain(["l-keep"], deadline=None, then="keep")
    store.release("l-done", T0 + 5 * MIN)  # finished within its grace: drained
    store.release("l-late", T0 + 11 * MIN)  # ended after the deadline: stopped
    store.release("l-keep", T0 + 90 * MIN)  # allowed to finish: drained
    # l-running never ended (overran): stopped
    assert store.journal_counts(W, OCC) == {
        "acme": {"refused": {"backup": 2, "agent-backup": 1}, "drained": 1, "stopped": 2},
        "beta": {"refused": {"backup": 1}, "drained": 1, "stopped": 0},
    }
    assert store.journal_counts(W, OCC + timedelta(days=14)) == {}


def test_claim_batch_takes_due_rows_once_and_counts_the_attempt(store: Store) -> None:
    with store.transaction() as tx:
        tx.enqueue(
            [notice_row(f"t{i}", at=T0 - MIN) for i in range(5)]
            + [notice_row("later", at=T0 - MIN, next_attempt_at=T0 + MIN)]
        )
    first = store.claim_batch(T0, worker="a", limit=3, lease=5 * MIN)
    second = store.claim_batch(T0, worker="b", limit=10, lease=5 * MIN)
    assert [r["tenant"] for r in first] == ["t0", "t1", "t2"]
    assert [r["tenant"] for r in second] == ["t3", "t4"]  # not the one due later
    assert all(
        r["status"] == "sending" and r["attempts"] == 1 and r["claimed_until"] == T0 + 5 * MIN for r in first + second
    )
    assert store.claim_batch(T0, worker="c", limit=10, lease=5 * MIN) == []
    # a claim that ran out (crashed worker) is taken over, and counts as another attempt
    taken = store.claim_batch(T0 + 6 * MIN, worker="c", limit=10, lease=5 * MIN)
    assert sorted(r["tenant"] for r in taken) == ["later", "t0", "t1", "t2", "t3", "t4"]
    assert {r["tenant"]: r["attempts"] for r in taken}["t0"] == 2


def test_finish_many_is_compare_and_set_per_row(store: Store) -> None:
    with store.transaction() as tx:
        tx.enqueue([notice_row(f"t{i}", at=T0 - MIN) for i in range(4)])
    a = store.claim_batch(T0, worker="a", limit=3, lease=5 * MIN)
    b = store.claim_batch(T0, worker="b", limit=3, lease=5 * MIN)
    now = T0 + MIN
    done = store.finish_many(
        [
            (a[0]["id"], {"status": "sent", "sent_at": now, "last_error": None, "updated_at": now}),
            (
                a[1]["id"],
                {"status": "pending", "next_attempt_at": now + MIN, "last_error": "HTTP 503", "updated_at": now},
            ),
            (a[2]["id"], {"status": "failed", "last_error": "HTTP 410", "updated_at": now}),
            (b[0]["id"], {"status": "sent", "sent_at": now, "last_error": None, "updated_at": now}),  # b's claim
        ],
        worker="a",
    )
    assert done == {a[0]["id"], a[1]["id"], a[2]["id"]}
    rows = {r["id"]: r for r in store.notices()}
    assert rows[a[0]["id"]]["status"] == "sent" and rows[a[0]["id"]]["sent_at"] == now
    assert rows[a[1]["id"]]["status"] == "pending" and rows[a[1]["id"]]["next_attempt_at"] == now + MIN
    assert rows[a[1]["id"]]["last_error"] == "HTTP 503" and rows[a[1]["id"]]["sent_at"] is None
    assert rows[a[2]["id"]]["status"] == "failed" and rows[a[2]["id"]]["next_attempt_at"] == T0 - MIN
    assert rows[b[0]["id"]]["status"] == "sending"
    assert all(rows[i]["claimed_by"] is None for i in done)
    # already finished: nothing moves twice
    assert (
        store.finish_many([(a[0]["id"], {"status": "failed", "last_error": "x", "updated_at": now})], worker="a")
        == set()
    )
    with pytest.raises(ValueError):
        store.finish_many([(b[0]["id"], {"status": "dry-run", "updated_at": now})])


def test_changes_after_lists_later_reschedules_and_cancellations(store: Store) -> None:
    with store.transaction() as tx:
        tx.enqueue([notice_row("acme"), notice_row("beta")])
    first = max(r["id"] for r in store.notices())
    with store.transaction() as tx:
        tx.enqueue(
            [
                notice_row("acme", kind="rescheduled", lead=None, seq=1),
                notice_row("acme", kind="started", lead=None),
                notice_row("beta", kind="cancelled", lead=None, seq=1, window="other"),
            ]
        )
    changes = store.changes_after([W], first)
    assert [(c["tenant"], c["kind"], c["window"]) for c in changes] == [("acme", "rescheduled", W)]
    assert store.changes_after([W, "other"], first)[-1]["kind"] == "cancelled"
    assert store.changes_after([], 0) == []
