"""Group commit: every op answered once, after its batch ran, errors kept to their op."""

from __future__ import annotations

import asyncio
import threading

import pytest

from scheduler.groupcommit import GroupCommit


class Recorder:
    def __init__(self, fail_on=()) -> None:
        self.batches: list[list] = []
        self.fail_on = set(fail_on)
        self.lock = threading.Lock()

    def __call__(self, ops):
        with self.lock:
            self.batches.append(list(ops))
        bad = self.fail_on.intersection(ops)
        if bad:
            raise ValueError(f"bad op {sorted(bad)[0]}")
        return [op * 10 for op in ops]


def test_threads_get_their_own_results_and_share_batches() -> None:
    rec = Recorder()
    gc = GroupCommit(rec)
    results: dict[int, int] = {}
    start = threading.Barrier(32)

    def worker(i: int) -> None:
        start.wait()
        for k in range(50):
            op = i * 1000 + k
            results[op] = gc.submit(op)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {op: op * 10 for op in results} and len(results) == 32 * 50
    assert sum(len(b) for b in rec.batches) == 32 * 50  # each op written once
    assert len(rec.batches) < 32 * 50  # and some of them together


def test_a_failing_op_fails_alone() -> None:
    rec = Recorder(fail_on={13})
    gc = GroupCommit(rec)
    errors: dict[int, str] = {}
    results: dict[int, int] = {}
    barrier = threading.Barrier(20)

    def worker(op: int) -> None:
        barrier.wait()
        try:
            results[op] = gc.submit(op)
        except ValueError as exc:
            errors[op] = str(exc)

    threads = [threading.Thread(target=worker, args=(op,)) for op in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == {13: "bad op 13"}
    assert results == {op: op * 10 for op in range(20) if op != 13}


def test_coroutines_and_threads_together() -> None:
    rec = Recorder(fail_on={7})
    gc = GroupCommit(rec)
    from_threads: list[int] = []
    threads = [threading.Thread(target=lambda i=i: from_threads.append(gc.submit(100 + i))) for i in range(10)]

    async def main():
        for t in threads:
            t.start()
        results = await asyncio.gather(*(gc.submit_async(op) for op in range(20)), return_exceptions=True)
        return results

    results = asyncio.run(main())
    for t in threads:
        t.join()
    assert [r for i, r in enumerate(results) if i != 7] == [op * 10 for op in range(20) if op != 7]
    assert isinstance(results[7], ValueError)
    assert sorted(from_threads) == [(100 + i) * 10 for i in range(10)]
    # the coroutines of one pass of the loop reach the writer together
    assert any(len([op for op in b if op < 100]) > 1 for b in rec.batches)


def test_a_cancelled_waiter_does_not_break_the_others() -> None:
    gate = threading.Event()

    def slow(ops):
        gate.wait(5)
        return list(ops)

    gc = GroupCommit(slow)

    async def main():
        first = asyncio.ensure_future(gc.submit_async(1))
        second = asyncio.ensure_future(gc.submit_async(2))
        await asyncio.sleep(0.05)
        first.cancel()
        gate.set()
        return await second

    assert asyncio.run(main()) == 2


@pytest.mark.parametrize("n", [1, 600])
def test_batches_never_exceed_the_limit(n: int) -> None:
    rec = Recorder()
    gc = GroupCommit(rec, max_batch=512)

    async def main():
        return await asyncio.gather(*(gc.submit_async(op) for op in range(n)))

    assert asyncio.run(main()) == [op * 10 for op in range(n)]
    assert max(len(b) for b in rec.batches) <= 512


class NoneSafe(Recorder):
    """A recorder whose flush op (None) writes nothing."""

    def __call__(self, ops):
        return super().__call__([op for op in ops if op is not None]) + [None] * sum(op is None for op in ops)


def test_writes_nobody_waits_for_linger_together_and_report_their_errors() -> None:
    rec = NoneSafe(fail_on={3})
    gc = GroupCommit(rec, linger=0.2)
    errors: list[tuple] = []

    async def main() -> None:
        for op in range(1, 6):
            gc.submit_nowait(op, lambda op, exc: errors.append((op, str(exc))))
            await asyncio.sleep(0.01)  # each in its own pass of the loop

    asyncio.run(main())
    gc.flush()  # a waiting op is written at once, after everything before it
    assert [sorted(op for op in b) for b in rec.batches if len(b) > 1] == [[1, 2, 3, 4, 5]]
    assert errors == [(3, "bad op 3")]  # the batch failed, each op was retried alone; only 3 failed


def test_a_waiting_op_does_not_linger() -> None:
    gc = GroupCommit(Recorder(), linger=5.0)
    loop_start = asyncio.new_event_loop()
    try:
        t0 = loop_start.time()
        assert loop_start.run_until_complete(gc.submit_async(7)) == 70
        assert gc.submit(8) == 80
        assert loop_start.time() - t0 < 1.0
    finally:
        loop_start.close()
