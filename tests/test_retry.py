"""scheduler.retry: the pure retry policy (SPEC 4.1), and the legacy backoff the daemon uses until
``notifiers.retry`` replaces ``max_attempts``/``retry_base``."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from scheduler.retry import (
    DEFAULT_MAX_AGE,
    DEFAULT_SCHEDULE,
    backoff,
    give_up,
    legacy_schedule,
    next_attempt,
)

T0 = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
S, M, H = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1)


# --------------------------------------------------------------------------- next_attempt (SPEC 4.1)


def test_the_default_schedule_is_the_specs() -> None:
    assert DEFAULT_SCHEDULE == (5 * S, 5 * M, 30 * M, 2 * H, 5 * H, 10 * H, 10 * H)
    assert DEFAULT_MAX_AGE == 72 * H


# (attempts, failed after due_at by, jitter, retry_after) -> wait from now, or None (failed)
NEXT_CASES = {
    "first_failure_waits_5s": (1, 0 * S, 0.0, None, 5 * S),
    "second_failure_waits_5m": (2, 5 * S, 0.0, None, 5 * M),
    "fifth_failure_waits_5h": (5, 3 * H, 0.0, None, 5 * H),
    "last_wait": (7, 18 * H, 0.0, None, 10 * H),
    "after_the_last_waits_try_failed": (8, 28 * H, 0.0, None, None),
    "far_past_the_schedule": (50, 28 * H, 0.0, None, None),
    "jitter_plus_one_is_10_percent_more": (3, 6 * M, 1.0, None, 33 * M),
    "jitter_minus_one_is_10_percent_less": (3, 6 * M, -1.0, None, 27 * M),
    "jitter_half_is_5_percent": (4, 36 * M, 0.5, None, 126 * M),
    "retry_after_longer_is_honoured": (1, 0 * S, 0.0, 2 * M, 2 * M),
    "retry_after_shorter_is_ignored": (2, 5 * S, 0.0, 30 * S, 5 * M),
    "retry_after_beats_jitter_plus": (1, 0 * S, 1.0, 6 * S, 6 * S),
    "retry_after_under_jittered_wait_is_ignored": (1, 0 * S, 1.0, timedelta(seconds=5.2), 5.5 * S),
    "retry_after_does_not_extend_the_schedule": (8, 28 * H, 0.0, 1 * M, None),
    "next_try_exactly_at_max_age_is_allowed": (6, 62 * H, 0.0, None, 10 * H),
    "next_try_past_max_age_fails": (6, 63 * H, 0.0, None, None),
    "retry_after_past_max_age_fails": (2, 5 * S, 0.0, 73 * H, None),
    "jitter_pushes_past_max_age": (6, 62 * H, 0.1, None, None),
}


@pytest.mark.parametrize(
    ("attempts", "late", "jitter", "retry_after", "wait"), list(NEXT_CASES.values()), ids=list(NEXT_CASES)
)
def test_next_attempt(
    attempts: int, late: timedelta, jitter: float, retry_after: timedelta | None, wait: timedelta | None
) -> None:
    now = T0 + late
    got = next_attempt(
        schedule=DEFAULT_SCHEDULE,
        attempts=attempts,
        due_at=T0,
        now=now,
        max_age=DEFAULT_MAX_AGE,
        retry_after=retry_after,
        jitter=jitter,
    )
    assert got == (None if wait is None else now + wait)


BAD_CASES = {
    "no_failure_yet": (0, 0.0, "attempts counts failed tries and starts at 1, got 0"),
    "jitter_above_one": (1, 1.5, "jitter must be between -1 and 1, got 1.5"),
    "jitter_below_minus_one": (1, -1.01, "jitter must be between -1 and 1, got -1.01"),
}


@pytest.mark.parametrize(("attempts", "jitter", "message"), list(BAD_CASES.values()), ids=list(BAD_CASES))
def test_next_attempt_refuses(attempts: int, jitter: float, message: str) -> None:
    with pytest.raises(ValueError) as err:
        next_attempt(
            schedule=DEFAULT_SCHEDULE, attempts=attempts, due_at=T0, now=T0, max_age=DEFAULT_MAX_AGE, jitter=jitter
        )
    assert str(err.value) == message


def test_jitter_from_a_seeded_random_stays_within_ten_percent() -> None:
    rng = random.Random(7)
    waits = set()
    for _ in range(200):
        at = next_attempt(
            schedule=DEFAULT_SCHEDULE,
            attempts=3,
            due_at=T0,
            now=T0,
            max_age=DEFAULT_MAX_AGE,
            jitter=rng.uniform(-1, 1),
        )
        assert at is not None and 27 * M <= at - T0 <= 33 * M
        waits.add(at)
    assert len(waits) > 100  # rows that failed together come back spread out


# --------------------------------------------------------------------------- legacy settings as a schedule

LEGACY_CASES = {
    "defaults_8_tries_30s": (8, 30 * S, (30 * S, 1 * M, 2 * M, 4 * M, 8 * M, 16 * M, 32 * M)),
    "capped_at_an_hour": (10, 30 * S, (30 * S, 1 * M, 2 * M, 4 * M, 8 * M, 16 * M, 32 * M, 1 * H, 1 * H)),
    "one_try_no_waits": (1, 30 * S, ()),
    "two_tries_one_wait": (2, 10 * S, (10 * S,)),
    "base_over_the_cap": (3, 2 * H, (1 * H, 1 * H)),
}


@pytest.mark.parametrize(("max_attempts", "base", "schedule"), list(LEGACY_CASES.values()), ids=list(LEGACY_CASES))
def test_legacy_schedule(max_attempts: int, base: timedelta, schedule: tuple[timedelta, ...]) -> None:
    assert legacy_schedule(max_attempts, base) == schedule


@pytest.mark.parametrize(
    ("attempts", "j"), [(1, 0.0), (2, 0.3), (5, 1.0), (7, 0.77)], ids=["first", "second", "fifth_full", "last_wait"]
)
def test_legacy_schedule_waits_what_backoff_waits(attempts: int, j: float) -> None:
    """The daemon's ``backoff`` (jitter 0..1 takes up to half off) is ``next_attempt`` over
    ``legacy_schedule`` with ``spread=0.5`` and the jitter negated; and both stop at ``max_attempts``."""
    schedule = legacy_schedule(8, 30 * S)
    got = next_attempt(schedule=schedule, attempts=attempts, due_at=T0, now=T0, max_age=H * 24, jitter=-j, spread=0.5)
    assert got == backoff(attempts, T0, base=30 * S, jitter=j)
    assert not give_up(attempts, T0, T0, max_attempts=8, max_age=H * 24)
    assert next_attempt(schedule=schedule, attempts=8, due_at=T0, now=T0, max_age=H * 24, jitter=0.0) is None
    assert give_up(8, T0, T0, max_attempts=8, max_age=H * 24)


# --------------------------------------------------------------------------- legacy backoff and give_up (daemon)


@pytest.mark.parametrize(
    ("attempts", "jitter", "delay"),
    [
        (1, 0.0, timedelta(seconds=30)),
        (2, 0.0, timedelta(seconds=60)),
        (3, 0.0, timedelta(seconds=120)),
        (7, 0.0, timedelta(seconds=1920)),
        (8, 0.0, timedelta(hours=1)),
        (500, 0.0, timedelta(hours=1)),
        (0, 0.0, timedelta(seconds=30)),
        (1, 1.0, timedelta(seconds=15)),
        (3, 0.5, timedelta(seconds=90)),
        (500, 1.0, timedelta(minutes=30)),
    ],
    ids=[
        "first_retry",
        "doubles",
        "doubles_again",
        "just_under_cap",
        "capped",
        "huge_attempts_capped",
        "zero_attempts_is_base",
        "full_jitter_halves",
        "half_jitter_quarter_off",
        "jitter_under_cap",
    ],
)
def test_backoff(attempts: int, jitter: float, delay: timedelta) -> None:
    assert backoff(attempts, T0, jitter=jitter) == T0 + delay


def test_backoff_custom_base_and_cap_and_bad_jitter() -> None:
    assert backoff(3, T0, base=S, cap=5 * S) == T0 + 4 * S
    assert backoff(4, T0, base=S, cap=5 * S) == T0 + 5 * S
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="jitter must be between 0 and 1"):
            backoff(1, T0, jitter=bad)


@pytest.mark.parametrize(
    ("attempts", "age", "expected"),
    [
        (1, timedelta(minutes=1), False),
        (7, timedelta(hours=23, minutes=59), False),
        (8, timedelta(minutes=1), True),
        (9, timedelta(minutes=1), True),
        (1, timedelta(hours=24), True),
        (1, timedelta(days=3), True),
    ],
    ids=["fresh", "just_under_both", "max_attempts_reached", "past_max_attempts", "max_age_reached", "way_too_old"],
)
def test_give_up(attempts: int, age: timedelta, expected: bool) -> None:
    assert give_up(attempts, T0 - age, T0, max_attempts=8, max_age=timedelta(hours=24)) is expected
