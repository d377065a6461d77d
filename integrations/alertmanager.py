"""Alertmanager (API v2; also Grafana's Alertmanager-compatible API): a silence per occurrence.

The silence covers ``[start - ahead, end)``, carries ``createdBy: maintd`` and a comment
naming the window and occurrence (and a marker that finds it again if a crash lost the
stored id). ``state = {"silence_id": ...}``.

Alertmanager updates a silence in place only while it may (silence.go ``canUpdate``):
same matchers, and once active the same ``startsAt``; otherwise it expires the old one
and answers with a NEW id. So updates send the active silence's own ``startsAt`` back,
and whatever id comes back is the one kept.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from .base import Integration, IntegrationError, Occurrence, Reason, State, as_timedelta, isoz, parse_time

CREATED_BY = "maintd"
_MATCHER = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")
_LIST_LIMIT = 4 << 20  # a listing is parsed whole: allow more than the helper's 64 KiB


def parse_matcher(text: str) -> dict[str, Any]:
    """``name=~"value"`` (Alertmanager matcher syntax) -> the API's matcher object.

    The value may be quoted (Go-style escapes) or bare. Placeholders are filled after
    parsing, so a regex-escaped tenant id (``a\\.b``) is never unquoted twice.
    """
    match = _MATCHER.match(text)
    if match is None:
        raise ValueError(f'matcher {text!r} is not like name="value", name!=..., name=~... or name!~...')
    name, op, value = match.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError(f"matcher {text!r}: the quoted value is not a valid string") from None
    elif '"' in value:
        raise ValueError(f"matcher {text!r}: unbalanced quotes")
    return {"name": name, "value": value, "isRegex": "~" in op, "isEqual": not op.startswith("!")}


class Alertmanager(Integration):
    type = "alertmanager"
    SETTINGS = frozenset({"url", "token", "matchers", "ahead"})
    REQUIRED = frozenset({"url", "matchers"})

    def __init__(self, name: str, settings, **kwargs) -> None:
        super().__init__(name, settings, **kwargs)
        matchers = settings["matchers"]
        if isinstance(matchers, str) or not isinstance(matchers, list | tuple):
            raise ValueError(f"integration {name!r}: matchers must be a list of strings")
        try:
            self.matchers = [parse_matcher(str(m)) for m in matchers]
        except ValueError as exc:
            raise ValueError(f"integration {name!r}: {exc}") from None
        self.ahead = as_timedelta(settings.get("ahead", 0), name=f"integration {name!r}: ahead")

    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def marker(self, occ: Occurrence) -> str:
        return f"[maintd:{self.name}:{occ.window}:{occ.key}]"

    def silence(self, occ: Occurrence) -> dict[str, Any]:
        """The PostableSilence for this occurrence (no id)."""
        return {
            "matchers": [{**m, "value": occ.fill(m["value"])} for m in self.matchers],
            "startsAt": isoz(occ.start - self.ahead),
            "endsAt": isoz(occ.end),
            "createdBy": CREATED_BY,
            "comment": f"Maintenance {occ.window} ({occ.title}), occurrence {occ.key} {self.marker(occ)}",
        }

    def apply(self, occ: Occurrence, state: State, *, now: datetime) -> State:
        if occ.end <= now:
            return state  # over: Alertmanager refuses a silence that ends in the past
        wanted = self.silence(occ)
        current = self._current(occ, state)
        if current is not None:
            if _same(current, wanted):
                return {"silence_id": current["id"]}
            wanted["id"] = current["id"]
            if current["status"]["state"] == "active":
                # An active silence keeps its startsAt, or Alertmanager replaces it.
                wanted["startsAt"] = current["startsAt"]
        try:
            answer = self.call("POST", "/api/v2/silences", json=wanted)
        except IntegrationError as exc:
            if exc.status != 404 or "id" not in wanted:
                raise
            # Garbage-collected between our GET and POST ("silence not found"): make a new one.
            del wanted["id"]
            answer = self.call("POST", "/api/v2/silences", json=wanted)
        silence_id = (answer or {}).get("silenceID")
        if not silence_id:
            raise IntegrationError(f"{self.where}: no silenceID in the answer", permanent=False)
        return {"silence_id": silence_id}

    def revert(self, occ: Occurrence, state: State, *, reason: Reason, now: datetime) -> State:
        current = self._current(occ, state)
        if current is not None:
            self.call("DELETE", f"/api/v2/silence/{current['id']}", ok_missing=True)
        return {}

    def _current(self, occ: Occurrence, state: State) -> dict[str, Any] | None:
        """The occurrence's silence if it exists and is not expired: by the stored id, or,
        when a crash lost the id, by the marker in the comment."""
        silence_id = state.get("silence_id")
        if silence_id:
            found = self.call("GET", f"/api/v2/silence/{silence_id}", ok_missing=True)
            return found if found and found["status"]["state"] != "expired" else None
        listing = self.call("GET", "/api/v2/silences", max_body=_LIST_LIMIT) or []
        marker = self.marker(occ)
        for silence in listing:
            if (
                silence.get("createdBy") == CREATED_BY
                and marker in silence.get("comment", "")
                and silence["status"]["state"] != "expired"
            ):
                return silence
        return None


def _same(current: dict[str, Any], wanted: dict[str, Any]) -> bool:
    def key(matchers: list[dict[str, Any]]) -> set[tuple]:
        return {(m["name"], m["value"], m["isRegex"], m.get("isEqual", True)) for m in matchers}

    starts_ok = current["status"]["state"] == "active" or _at(current["startsAt"]) == _at(wanted["startsAt"])
    return (
        starts_ok
        and _at(current["endsAt"]) == _at(wanted["endsAt"])
        and key(current["matchers"]) == key(wanted["matchers"])
        and current.get("comment") == wanted["comment"]
    )


def _at(text: str) -> datetime:
    return parse_time(text).replace(microsecond=0)


__all__ = ["Alertmanager", "parse_matcher"]
