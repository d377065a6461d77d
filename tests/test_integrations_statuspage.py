"""The Statuspage integration against a local stand-in for API v1 that checks what the
Statuspage reference documents (paths under /v1/pages/{page}, ``Authorization: OAuth``,
the incident fields) and answers like it; plus the 1 request/s spacing."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from werkzeug import Request, Response

from integrations import IntegrationError, Occurrence, Statuspage, build
from integrations.base import Spacing
from notifiers.http import HttpClient

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
START = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
OCC = Occurrence(
    window="storage-firmware",
    title="Storage firmware",
    occurrence=START,
    start=START,
    end=START + timedelta(hours=4),
    tenants=("acme",),
    message="We update {title} from {start} to {end}.",
)
PAGE, COMPONENT = "kctbh9vrtdwd", "8kbf7d35c070"
STATUSES = {"scheduled", "in_progress", "verifying", "completed"}


class FakeStatuspage:
    def __init__(self) -> None:
        self.incidents: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.throttle = 0
        self.ids = (f"inc{n:04d}" for n in itertools.count(1))

    def __call__(self, request: Request) -> Response:
        if request.headers.get("Authorization") != "OAuth sp-secret":
            return Response('{"error": "Could not authenticate"}', status=401)
        body = request.get_json(silent=True) if request.data else None
        self.requests.append((request.method, request.path, body))
        if self.throttle:
            self.throttle -= 1
            return Response('{"error": "rate limited"}', status=429, headers={"Retry-After": "1"})
        match = re.fullmatch(rf"/v1/pages/{PAGE}/incidents(?:/(\w+))?", request.path)
        if match is None:
            return Response('{"error": "not found"}', status=404)
        incident_id = match.group(1)
        if request.method == "POST" and incident_id is None:
            incident = dict(body["incident"])
            assert incident["status"] == "scheduled" and incident["name"]
            assert datetime.fromisoformat(incident["scheduled_for"]) < datetime.fromisoformat(
                incident["scheduled_until"]
            )
            assert incident["component_ids"] == [COMPONENT]
            incident["id"] = next(self.ids)
            self.incidents[incident["id"]] = incident
            return Response(json.dumps(incident), status=201, content_type="application/json")
        if incident_id not in self.incidents:
            return Response('{"error": "not found"}', status=404)
        if request.method == "PATCH":
            change = body["incident"]
            assert change.get("status", "scheduled") in STATUSES
            self.incidents[incident_id].update(change)
            return Response(json.dumps(self.incidents[incident_id]), status=200, content_type="application/json")
        if request.method == "DELETE":
            return Response(json.dumps(self.incidents.pop(incident_id)), status=200, content_type="application/json")
        return Response(status=405)


class NoWait(Spacing):
    def __init__(self) -> None:
        super().__init__(1.0, monotonic=lambda: 0.0, sleep=lambda s: None)


@pytest.fixture
def statuspage(httpserver):
    fake = FakeStatuspage()
    httpserver.expect_request(re.compile(r"^/v1/.*")).respond_with_handler(fake)
    fake.url = httpserver.url_for("")
    return fake


def integration(fake) -> Statuspage:
    settings = {"type": "statuspage", "url": fake.url, "token": "sp-secret", "page": PAGE, "components": [COMPONENT]}
    sp = build("status", settings, http=HttpClient(timeout=5))
    sp.spacing = NoWait()  # type: ignore[attr-defined]
    return sp  # type: ignore[return-value]


def test_apply_creates_one_scheduled_maintenance_across_restarts(statuspage):
    state = integration(statuspage).apply(OCC, {}, now=NOW)
    (incident,) = statuspage.incidents.values()
    assert state["incident_id"] == incident["id"] and state["status"] == "scheduled"
    assert (incident["scheduled_for"], incident["scheduled_until"]) == ("2026-12-05T21:00:00Z", "2026-12-06T01:00:00Z")
    assert incident["body"] == "We update Storage firmware from 2026-12-05T21:00:00Z to 2026-12-06T01:00:00Z."
    assert incident["scheduled_auto_in_progress"] is False and incident["scheduled_auto_completed"] is False
    assert integration(statuspage).apply(OCC, state, now=NOW) == state
    assert [m for m, _, _ in statuspage.requests] == ["POST"]


def test_start_and_finish_move_the_status_once_each(statuspage):
    sp = integration(statuspage)
    state = sp.apply(OCC, {}, now=NOW)
    state = sp.start(OCC, state, now=START)
    incident = statuspage.incidents[state["incident_id"]]
    assert incident["status"] == "in_progress" and incident["components"] == {COMPONENT: "under_maintenance"}
    assert sp.start(OCC, state, now=START) == state  # again: no request
    state = sp.finish(OCC, state, now=OCC.end)
    assert incident["status"] == "completed" and incident["components"] == {COMPONENT: "operational"}
    assert sp.finish(OCC, state, now=OCC.end) == state
    assert [m for m, _, _ in statuspage.requests] == ["POST", "PATCH", "PATCH"]


def test_a_reschedule_patches_the_same_incident(statuspage):
    sp = integration(statuspage)
    state = sp.apply(OCC, {}, now=NOW)
    later = Occurrence(**{**OCC.__dict__, "start": START + timedelta(days=1), "end": OCC.end + timedelta(days=1)})
    moved = sp.update(later, state, now=NOW)
    assert moved["incident_id"] == state["incident_id"] and len(statuspage.incidents) == 1
    assert statuspage.incidents[state["incident_id"]]["scheduled_for"] == "2026-12-06T21:00:00Z"


def test_cancellation_deletes_and_an_early_exit_completes(statuspage):
    sp = integration(statuspage)
    cancelled = sp.apply(OCC, {}, now=NOW)
    assert sp.revert(OCC, cancelled, reason="cancelled", now=NOW) == {}
    assert statuspage.incidents == {}
    exited = sp.start(OCC, sp.apply(OCC, {}, now=NOW), now=START)
    assert sp.revert(OCC, exited, reason="exited", now=START + timedelta(hours=1)) == {}
    assert statuspage.incidents[exited["incident_id"]]["status"] == "completed"
    assert [m for m, _, _ in statuspage.requests] == ["POST", "DELETE", "POST", "PATCH", "PATCH"]


def test_429_is_retryable_with_retry_after_and_the_retry_creates_once(statuspage):
    statuspage.throttle = 1
    sp = integration(statuspage)
    with pytest.raises(IntegrationError) as info:
        sp.apply(OCC, {}, now=NOW)
    assert info.value.permanent is False and info.value.retry_after == timedelta(seconds=1)
    sp.apply(OCC, {}, now=NOW)
    assert len(statuspage.incidents) == 1


def test_requests_are_spaced_one_second_apart():
    clock, slept = [100.0], []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    spacing = Spacing(1.0, monotonic=lambda: clock[0], sleep=sleep)
    spacing.wait()
    clock[0] += 0.25
    spacing.wait()
    spacing.wait()
    clock[0] += 5
    spacing.wait()
    assert slept == [0.75, 1.0]


def test_default_url_and_validation():
    assert Statuspage("s", {"token": "t", "page": "p"}).url == "https://api.statuspage.io"
    with pytest.raises(ValueError, match="statuspage needs 'page'"):
        Statuspage("s", {"token": "t"})
    with pytest.raises(ValueError, match="unknown setting 'impact'"):
        Statuspage("s", {"token": "t", "page": "p", "impact": "minor"})
