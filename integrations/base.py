"""The thin base every integration stands on, and the record of one occurrence it acts on.

An integration mirrors one occurrence into an outside system (an Alertmanager silence, a
PagerDuty maintenance window, a Statuspage scheduled maintenance). The caller (the
daemon's effects runner) owns durability: each method takes the small JSON-able ``state``
it returned last time (``{}`` the first time) and returns the new one, which the caller
stores before it calls again. Every method is idempotent given that state: calling it
twice does nothing the second time, so a retry after a crash never makes a second object.

Failures raise ``IntegrationError`` saying whether a retry can help and, when the target
asked for a pause (429/503 ``Retry-After``), how long. Nothing here sleeps for a retry or
keeps state between calls except a rate limiter's last-request time.

Only the caller reads the clock: every method takes ``now`` (aware, UTC).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from notifiers.http import DeliveryError, HttpClient, mask_url, shared

State = dict[str, Any]
Reason = Literal["cancelled", "exited"]

# Go's regexp.QuoteMeta set: Alertmanager compiles matcher regexes with RE2.
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


def isoz(ts: datetime) -> str:
    """``2026-12-05T21:00:00Z``: UTC, whole seconds, as every target here accepts."""
    return ts.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time as the targets answer it (``...Z``, fractions, offsets) -> aware UTC."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True, kw_only=True)
class Occurrence:
    """One occurrence of a window as integrations see it.

    ``occurrence`` is the UTC start as originally scheduled: the key that stays the same
    when the occurrence is rescheduled or extended (``start``/``end`` move). The window
    is ``[start, end)``.
    """

    window: str
    title: str
    occurrence: datetime
    start: datetime
    end: datetime
    tenants: tuple[str, ...]
    message: str = ""

    @property
    def key(self) -> str:
        return isoz(self.occurrence)

    def placeholders(self) -> dict[str, str]:
        return {
            "{window}": self.window,
            "{title}": self.title,
            "{occurrence}": self.key,
            "{tenants_regex}": "|".join(_RE2_SPECIAL.sub(r"\\\1", t) for t in self.tenants),
            "{start}": isoz(self.start),
            "{end}": isoz(self.end),
        }

    def fill(self, text: str) -> str:
        """Replace the SPEC 6 placeholders; other braces (regex counts ``{2,3}``) stay."""
        for name, value in self.placeholders().items():
            text = text.replace(name, value)
        return text


class IntegrationError(Exception):
    """An integration action failed. ``permanent``: retrying cannot help (bad token, unknown
    service); ``retry_after``: the target asked for this pause before the next try."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after: timedelta | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status

    def __str__(self) -> str:
        return self.message


class Integration:
    """Base: settings checked at construction, one HTTP helper, errors mapped.

    Subclasses set ``type``, ``SETTINGS`` (allowed keys), ``REQUIRED`` and override the
    actions they need; the defaults do nothing and return the state unchanged.
    """

    type: ClassVar[str] = ""
    SETTINGS: ClassVar[frozenset[str]] = frozenset()
    REQUIRED: ClassVar[frozenset[str]] = frozenset()
    DEFAULT_URL: ClassVar[str] = ""

    def __init__(self, name: str, settings: Mapping[str, Any], *, http: HttpClient | None = None) -> None:
        unknown = sorted(set(settings) - self.SETTINGS)
        if unknown:
            raise ValueError(f"integration {name!r}: unknown setting {unknown[0]!r} for type {self.type}")
        missing = sorted(k for k in self.REQUIRED if not settings.get(k))
        if missing:
            raise ValueError(f"integration {name!r}: {self.type} needs {missing[0]!r}")
        self.name = name
        self.settings = dict(settings)
        self.url = str(settings.get("url") or self.DEFAULT_URL).rstrip("/")
        self.token = str(settings.get("token") or "")
        self.http = http or shared()
        self.where = f"{self.type} {name} ({mask_url(self.url)})"

    # The actions. ``state`` is what the previous call returned ({} at first).
    def apply(self, occ: Occurrence, state: State, *, now: datetime) -> State:
        """Make the target reflect the occurrence as planned (create it, or bring it up to date)."""
        return state

    def update(self, occ: Occurrence, state: State, *, now: datetime) -> State:
        """The occurrence moved or was extended: same object, new times."""
        return self.apply(occ, state, now=now)

    def start(self, occ: Occurrence, state: State, *, now: datetime) -> State:
        """The occurrence started."""
        return state

    def finish(self, occ: Occurrence, state: State, *, now: datetime) -> State:
        """The occurrence ended as planned (or after its extensions)."""
        return state

    def revert(self, occ: Occurrence, state: State, *, reason: Reason, now: datetime) -> State:
        """Undo: the occurrence was cancelled, or maintenance was exited early."""
        return state

    def headers(self) -> dict[str, str]:
        return {}

    def call(self, method: str, path: str, *, json: Any = None, ok_missing: bool = False, max_body: int | None = None):
        """One request to ``url + path``; the parsed JSON answer (None when empty).

        ``ok_missing``: a 404 (or 410) means "already gone" and returns None.
        """
        try:
            response = self.http.request(
                method, self.url + path, json=json, headers=self.headers(), where=self.where, max_body=max_body
            )
        except DeliveryError as exc:
            if ok_missing and exc.status in (404, 410):
                return None
            raise IntegrationError(
                exc.message, permanent=exc.permanent, retry_after=exc.retry_after, status=exc.status
            ) from None
        if not response.body.strip():
            return None
        if response.truncated:
            raise IntegrationError(f"{self.where}: answer larger than the read limit", permanent=False)
        try:
            return response.json()
        except ValueError:
            raise IntegrationError(f"{self.where}: answer is not JSON", permanent=False) from None


class Spacing:
    """At most one request per ``interval`` (Statuspage allows 1/s per token).

    The lock guards only the next free slot; the wait happens outside it.
    """

    def __init__(
        self,
        interval: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def wait(self) -> None:
        with self._lock:
            now = self._monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)


_DURATION = re.compile(r"(\d+)([hms])")


def as_timedelta(value: Any, *, name: str) -> timedelta:
    """``5m``, ``1h30m``, seconds as a number, or a timedelta (config may pass any)."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    text = str(value).strip()
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{name}: {value!r} is not a duration like 5m or 1h30m")
    unit = {"h": 3600, "m": 60, "s": 1}
    return timedelta(seconds=sum(int(n) * unit[u] for n, u in parts))
