"""Retry policy, pure: when to try a failed delivery again, or that it has failed for good.

SPEC 4.1: the wait after the n-th failed try is ``schedule[n-1]`` with up to ±10 %
jitter; a ``Retry-After`` (429/503) is honoured when it is longer than that wait; after
the last wait's try fails, or when the next try would fall past ``due_at + max_age``,
there is no next try. No clock, no I/O and no randomness of its own: the caller passes
``now`` and the jitter (``rng.uniform(-1, 1)`` from its own ``random.Random``).

:func:`legacy_schedule` expresses the older settings (``notifiers.max_attempts`` and
``retry_base``: the base doubled per attempt, capped at 1h) as such a schedule;
:func:`backoff` and :func:`give_up` are the older two-step form still used by the daemon.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

__all__ = [
    "DEFAULT_MAX_AGE",
    "DEFAULT_SCHEDULE",
    "JITTER",
    "backoff",
    "give_up",
    "legacy_schedule",
    "next_attempt",
]

# Standard Webhooks' schedule: seven retries over about 28 hours.
DEFAULT_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
DEFAULT_MAX_AGE = timedelta(hours=72)
JITTER = 0.1  # each wait moves by up to this fraction, so rows that failed together spread out
LEGACY_CAP = timedelta(hours=1)


def next_attempt(
    *,
    schedule: Sequence[timedelta],
    attempts: int,
    due_at: datetime,
    now: datetime,
    max_age: timedelta,
    retry_after: timedelta | None = None,
    jitter: float,
    spread: float = JITTER,
) -> datetime | None:
    """When to try again after ``attempts`` failed tries (1 after the first), or None: failed.

    The wait is ``schedule[attempts-1] * (1 + spread * jitter)``, ``jitter`` in [-1, 1]
    (``spread`` is ±10 % by default); a ``retry_after`` longer than that wait replaces
    it. None once the schedule is used up, or when the next try would come later than
    ``due_at + max_age`` (a "starts in 1h" notice delivered a day late is wrong, not slow).
    """
    if attempts < 1:
        raise ValueError(f"attempts counts failed tries and starts at 1, got {attempts}")
    if not -1.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be between -1 and 1, got {jitter}")
    if attempts > len(schedule):
        return None
    wait = schedule[attempts - 1] * (1.0 + spread * jitter)
    if retry_after is not None and retry_after > wait:
        wait = retry_after
    at = now + wait
    return None if at > due_at + max_age else at


def legacy_schedule(max_attempts: int, retry_base: timedelta, cap: timedelta = LEGACY_CAP) -> tuple[timedelta, ...]:
    """``max_attempts`` tries with waits of ``retry_base`` doubled per try, at most ``cap``.

    ``max_attempts`` tries have ``max_attempts - 1`` waits between them. With
    ``spread=0.5`` and ``jitter`` in [-1, 0] :func:`next_attempt` over this schedule
    waits what :func:`backoff` does (to the microsecond).
    """
    return tuple(timedelta(seconds=_doubled(n, retry_base, cap)) for n in range(1, max_attempts))


def backoff(
    attempts: int,
    now: datetime,
    *,
    base: timedelta = timedelta(seconds=30),
    cap: timedelta = LEGACY_CAP,
    jitter: float = 0.0,
) -> datetime:
    """When to try again after ``attempts`` failed tries: ``base * 2**(attempts-1)``, at most ``cap``.

    ``jitter`` (0..1, drawn by the caller so this stays pure) takes up to half the delay
    off, so rows that failed together do not all come back in the same second; the
    delay never exceeds ``cap`` and never drops below half of it.
    """
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
    return now + timedelta(seconds=_doubled(attempts, base, cap) * (1.0 - jitter / 2.0))


def give_up(attempts: int, first_created_at: datetime, now: datetime, max_attempts: int, max_age: timedelta) -> bool:
    """True when a notice has had ``max_attempts`` tries or is older than ``max_age``.

    The age bound matters as much as the count: a "starts in 1h" notice delivered a day
    late is wrong, not merely slow.
    """
    return attempts >= max_attempts or now - first_created_at >= max_age


def _doubled(attempts: int, base: timedelta, cap: timedelta) -> float:
    """Seconds: ``base`` doubled per failed try after the first, at most ``cap``."""
    exponent = min(max(attempts - 1, 0), 62)  # 2**62 * 30 s is far past any cap
    return min(cap.total_seconds(), base.total_seconds() * 2.0**exponent)
