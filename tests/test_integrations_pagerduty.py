"""The PagerDuty integration against a local stand-in for REST API v2 that checks what
PagerDuty's reference documents (method, path, headers, body fields) and answers like it."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from werkzeug import Request, Response

from integrations import IntegrationError, Occurrence, PagerDuty, build
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
)
ACCEPT = "application/vnd.pagerduty+json;version=2"


class FakePagerDuty:
    """Maintenance windows in memory; refuses what PagerDuty refuses."""

    def __init__(self) -> None:
        self.windows: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict | None]] = []
        self.throttle = 0
        self.now = NOW
        self.ids = (f"PW{n:05d}" for n in itertools.count(1))

    def __call__(self, request: Request) -> Response:
        auth = request.headers.get("Authorization")
        if auth != "Token token=pd-secret":
            return Response(json.dumps({"error": {"message": "Unauthorized"}}), status=401)
        assert request.headers.get("Accept") == ACCEPT
        body = request.get_json(silent=True) if request.data else None
        self.requests.append((request.method, request.path, body))
        if self.throttle:
            self.throttle -= 1
            return Response('{"error": "rate limited"}', status=429, headers={"Retry-After": "7"})
        match = re.fullmatch(r"/maintenance_windows(?:/(\w+))?", request.path)
        assert match, request.path
        window_id = match.group(1)
        if request.method == "POST" and window_id is None:
            assert request.headers.get("From") == "noc@example.com"
            assert request.headers.get("Content-Type") == "application/json"
            window = self._valid(body)
            window["id"] = next(self.ids)
            self.windows[window["id"]] = window
            return Response(json.dumps({"maintenance_window": window}), status=201, content_type="application/json")
        if window_id not in self.windows:
            return Response('{"error": {"message": "Not Found"}}', status=404)
        if request.method == "PUT":
            self.windows[window_id].update(self._valid(body))
            return Response(json.dumps({"maintenance_window": self.windows[window_id]}), status=200)
        if request.method == "DELETE":
            if datetime.fromisoformat(self.windows[window_id]["start_time"]) <= self.now:
                return Response('{"error": {"message": "cannot delete an ongoing window"}}', status=405)
            del self.windows[window_id]
            return Response(status=204)
        return Response(status=405)

    @staticmethod
    def _valid(body: dict | None) -> dict:
        window = dict(body["maintenance_window"])
        assert window["type"] == "maintenance_window"
        assert datetime.fromisoformat(window["start_time"]) < datetime.fromisoformat(window["end_time"])
        assert window["services"] == [{"id": "PABC123", "type": "service_reference"}]
        assert window["description"]
        return window


@pytest.fixture
def pagerduty(httpserver):
    fake = FakePagerDuty()
    httpserver.expect_request(re.compile(r"^/maintenance_windows.*")).respond_with_handler(fake)
    fake.url = httpserver.url_for("")
    return fake


def integration(fake, token: str = "pd-secret") -> PagerDuty:
    settings = {
        "type": "pagerduty",
        "url": fake.url,
        "token": token,
        "from": "noc@example.com",
        "services": ["PABC123"],
    }
    return build("pd", settings, http=HttpClient(timeout=5))  # type: ignore[return-value]


def test_apply_creates_one_window_across_restarts(pagerduty):
    state = integration(pagerduty).apply(OCC, {}, now=NOW)
    (window,) = pagerduty.windows.values()
    assert state["window_id"] == window["id"]
    assert window["start_time"] == "2026-12-05T21:00:00Z" and window["end_time"] == "2026-12-06T01:00:00Z"
    assert "storage-firmware" in window["description"]
    assert integration(pagerduty).apply(OCC, state, now=NOW) == state  # a new object, the stored state
    assert [m for m, _, _ in pagerduty.requests] == ["POST"]


def test_an_extension_moves_the_end_of_the_same_window(pagerduty):
    pd = integration(pagerduty)
    state = pd.apply(OCC, {}, now=NOW)
    longer = Occurrence(**{**OCC.__dict__, "end": OCC.end + timedelta(hours=1)})
    moved = pd.update(longer, state, now=NOW)
    assert moved["window_id"] == state["window_id"] and len(pagerduty.windows) == 1
    assert pagerduty.windows[state["window_id"]]["end_time"] == "2026-12-06T02:00:00Z"
    assert [m for m, _, _ in pagerduty.requests] == ["POST", "PUT"]


def test_cancellation_deletes_the_window(pagerduty):
    pd = integration(pagerduty)
    state = pd.apply(OCC, {}, now=NOW)
    assert pd.revert(OCC, state, reason="cancelled", now=NOW) == {}
    assert pagerduty.windows == {}
    assert pd.revert(OCC, {}, reason="cancelled", now=NOW) == {}  # again: nothing to do


def test_an_early_exit_ends_the_ongoing_window_instead_of_deleting_it(pagerduty):
    pd = integration(pagerduty)
    state = pd.apply(OCC, {}, now=NOW)
    pagerduty.now = exit_at = START + timedelta(hours=1)
    assert pd.revert(OCC, state, reason="exited", now=exit_at) == {}
    assert pagerduty.windows[state["window_id"]]["end_time"] == "2026-12-05T22:00:00Z"
    assert [m for m, _, _ in pagerduty.requests] == ["POST", "PUT"]


def test_429_is_retryable_with_retry_after_and_the_retry_creates_once(pagerduty):
    pagerduty.throttle = 1
    pd = integration(pagerduty)
    with pytest.raises(IntegrationError) as info:
        pd.apply(OCC, {}, now=NOW)
    assert info.value.permanent is False and info.value.retry_after == timedelta(seconds=7)
    state = pd.apply(OCC, {}, now=NOW)
    assert list(pagerduty.windows) == [state["window_id"]]


def test_a_bad_token_is_permanent_and_not_echoed(pagerduty):
    with pytest.raises(IntegrationError) as info:
        integration(pagerduty, token="wrong-token").apply(OCC, {}, now=NOW)
    assert info.value.permanent is True and info.value.status == 401
    assert "wrong-token" not in info.value.message


def test_a_window_deleted_behind_our_back_is_made_again(pagerduty):
    pd = integration(pagerduty)
    state = pd.apply(OCC, {}, now=NOW)
    pagerduty.windows.clear()
    longer = Occurrence(**{**OCC.__dict__, "end": OCC.end + timedelta(hours=1)})
    again = pd.update(longer, state, now=NOW)
    assert again["window_id"] != state["window_id"] and list(pagerduty.windows) == [again["window_id"]]


@pytest.mark.parametrize(
    "settings, error",
    [
        ({"token": "t", "from": "a@b", "services": "PABC123"}, "services must be a list"),
        ({"token": "t", "services": ["P1"]}, "pagerduty needs 'from'"),
        ({"token": "t", "from": "a@b", "services": ["P1"], "team": "x"}, "unknown setting 'team'"),
    ],
    ids=["services_not_a_list", "missing_from", "unknown_key"],
)
def test_settings_are_validated(settings, error):
    with pytest.raises(ValueError, match=error):
        PagerDuty("pd", settings)


def test_default_url_is_pagerdutys():
    assert PagerDuty("pd", {"token": "t", "from": "a@b", "services": ["P1"]}).url == "https://api.pagerduty.com"
