"""PagerDuty (REST API v2): a maintenance window on the configured services per occurrence.

Created when the occurrence is first planned, moved on reschedule or extension (PUT),
deleted on cancellation. An ongoing window cannot be deleted (PagerDuty: "once started,
a maintenance window cannot be deleted; it can only be ended"), so an early exit ends
it with ``end_time = now``. ``state = {"window_id", "start", "end"}``: the times last
sent, so a repeated apply makes no request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .base import Integration, IntegrationError, Occurrence, Reason, State, isoz

ACCEPT = "application/vnd.pagerduty+json;version=2"


class PagerDuty(Integration):
    type = "pagerduty"
    SETTINGS = frozenset({"url", "token", "from", "services"})
    REQUIRED = frozenset({"token", "from", "services"})
    DEFAULT_URL = "https://api.pagerduty.com"

    def __init__(self, name: str, settings, **kwargs) -> None:
        super().__init__(name, settings, **kwargs)
        services = settings["services"]
        if isinstance(services, str) or not all(isinstance(s, str) and s for s in services):
            raise ValueError(f"integration {name!r}: services must be a list of PagerDuty service ids")
        self.services = list(services)
        self.sender = str(settings["from"])

    def headers(self) -> dict[str, str]:
        return {
            "authorization": f"Token token={self.token}",
            "from": self.sender,  # the requester; PagerDuty requires it with an account token
            "accept": ACCEPT,
            "content-type": "application/json",
        }

    def body(self, occ: Occurrence, *, start: datetime, end: datetime) -> dict[str, Any]:
        return {
            "maintenance_window": {
                "type": "maintenance_window",
                "start_time": isoz(start),
                "end_time": isoz(end),
                "description": f"{occ.title} ({occ.window}, occurrence {occ.key}) - maintd",
                "services": [{"id": s, "type": "service_reference"} for s in self.services],
            }
        }

    def apply(self, occ: Occurrence, state: State, *, now: datetime) -> State:
        times = {"start": isoz(occ.start), "end": isoz(occ.end)}
        window_id = state.get("window_id")
        if window_id and all(state.get(k) == v for k, v in times.items()):
            return state
        if occ.end <= now:
            return state  # over: nothing left to mute
        body = self.body(occ, start=occ.start, end=occ.end)
        if window_id:
            answer = self.call("PUT", f"/maintenance_windows/{window_id}", json=body, ok_missing=True)
            if answer is not None:
                return {"window_id": window_id, **times}
            # Deleted behind our back: make it again.
        answer = self.call("POST", "/maintenance_windows", json=body)
        created = ((answer or {}).get("maintenance_window") or {}).get("id")
        if not created:
            raise IntegrationError(f"{self.where}: no maintenance_window.id in the answer", permanent=False)
        return {"window_id": created, **times}

    def revert(self, occ: Occurrence, state: State, *, reason: Reason, now: datetime) -> State:
        window_id = state.get("window_id")
        if not window_id:
            return {}
        if reason == "cancelled" or now < occ.start:
            self.call("DELETE", f"/maintenance_windows/{window_id}", ok_missing=True)
            return {}
        if now < occ.end:
            body = self.body(occ, start=occ.start, end=now)
            self.call("PUT", f"/maintenance_windows/{window_id}", json=body, ok_missing=True)
        return {}
