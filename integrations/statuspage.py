"""Atlassian Statuspage (API v1): a scheduled maintenance (an incident) per occurrence.

Created when the occurrence is first planned (with the provider's message), moved on
reschedule or extension, ``in_progress`` at the start and ``completed`` at the end (the
components shown under maintenance meanwhile), deleted on cancellation; an early exit
completes it. Statuspage allows one request per second per token: requests of one target
are spaced. ``state = {"incident_id", "status", "start", "end"}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .base import Integration, IntegrationError, Occurrence, Reason, Spacing, State, isoz


class Statuspage(Integration):
    type = "statuspage"
    SETTINGS = frozenset({"url", "token", "page", "components"})
    REQUIRED = frozenset({"token", "page"})
    DEFAULT_URL = "https://api.statuspage.io"
    INTERVAL = 1.0  # seconds between requests (Statuspage's rate limit)

    def __init__(self, name: str, settings, *, spacing: Spacing | None = None, **kwargs) -> None:
        super().__init__(name, settings, **kwargs)
        components = settings.get("components") or []
        if isinstance(components, str) or not all(isinstance(c, str) and c for c in components):
            raise ValueError(f"integration {name!r}: components must be a list of Statuspage component ids")
        self.components = list(components)
        self.page = str(settings["page"])
        self.spacing = spacing or Spacing(self.INTERVAL)

    def headers(self) -> dict[str, str]:
        return {"authorization": f"OAuth {self.token}", "content-type": "application/json"}

    def call(self, method: str, path: str, **kwargs):  # type: ignore[override]
        self.spacing.wait()
        return super().call(method, f"/v1/pages/{self.page}{path}", **kwargs)

    def apply(self, occ: Occurrence, state: State, *, now: datetime) -> State:
        times = {"start": isoz(occ.start), "end": isoz(occ.end)}
        incident_id = state.get("incident_id")
        if incident_id and all(state.get(k) == v for k, v in times.items()):
            return state
        moved = {"scheduled_for": times["start"], "scheduled_until": times["end"]}
        if incident_id:
            if self.call("PATCH", f"/incidents/{incident_id}", json={"incident": moved}, ok_missing=True) is not None:
                return {**state, **times}
        incident = {
            "name": occ.title,
            "status": "scheduled",
            **moved,
            "body": occ.fill(occ.message) or occ.title,
            "component_ids": self.components,
            # maintd moves it itself, at the occurrence's real start and end (extensions).
            "scheduled_auto_in_progress": False,
            "scheduled_auto_completed": False,
            "scheduled_remind_prior": False,
        }
        answer = self.call("POST", "/incidents", json={"incident": incident})
        if not (answer or {}).get("id"):
            raise IntegrationError(f"{self.where}: no incident id in the answer", permanent=False)
        return {"incident_id": answer["id"], "status": "scheduled", **times}

    def start(self, occ: Occurrence, state: State, *, now: datetime) -> State:
        return self._move(state, "in_progress", "under_maintenance")

    def finish(self, occ: Occurrence, state: State, *, now: datetime) -> State:
        return self._move(state, "completed", "operational")

    def revert(self, occ: Occurrence, state: State, *, reason: Reason, now: datetime) -> State:
        incident_id = state.get("incident_id")
        if not incident_id:
            return {}
        if reason == "exited":
            self._move(state, "completed", "operational")  # it did happen: shown as done
        elif state.get("status") != "completed":
            self.call("DELETE", f"/incidents/{incident_id}", ok_missing=True)
        return {}

    def _move(self, state: State, status: str, component_status: str) -> State:
        incident_id = state.get("incident_id")
        if not incident_id or state.get("status") in (status, "completed"):
            return state
        change: dict[str, Any] = {"status": status, "components": {c: component_status for c in self.components}}
        if status == "in_progress":
            change["component_ids"] = self.components
        self.call("PATCH", f"/incidents/{incident_id}", json={"incident": change}, ok_missing=True)
        return {**state, "status": status}
