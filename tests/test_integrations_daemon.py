"""SPEC 6 end to end: a real `maintd run` subprocess drives a REAL Alertmanager (Debian's
binary, the fixture of tests/test_integrations_alertmanager.py), and the PagerDuty and
Statuspage stand-ins; everything is read back through the target's own API.

Windows start seconds after the daemon; every wait polls with a deadline.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx

from tests.conftest import iso_in
from tests.test_integrations_alertmanager import alertmanager_url  # noqa: F401 - the fixture
from tests.test_integrations_pagerduty import pagerduty  # noqa: F401 - the fixture
from tests.test_integrations_statuspage import statuspage  # noqa: F401 - the fixture

CONFIG = """\
version: 1
provider: {{name: Example Cloud, timezone: UTC, integrations: [am]}}
daemon: {{listen: "{{listen}}", database: maintd.db}}
tenants:
  - id: acme
  - id: beta-eu
integrations:
  am:
    type: alertmanager
    url: {am}
    matchers: ['maintenance_tenant=~"{{tenants_regex}}"', 'cluster="eu-1"']
    ahead: 2s
windows:
  - id: fw
    title: Storage firmware
    start: {fw_start}
    duration: 10m
  - id: short
    start: {short_start}
    duration: 3s
    integrations:
      am: {{matchers: ['maintd_window="{{window}}"']}}
"""


def _until(what: str, probe: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.time() + timeout
    last: object = None
    while time.time() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


def _silences(am: str, window: str) -> list[dict]:
    listing = httpx.get(f"{am}/api/v2/silences", timeout=5).json()
    return [s for s in listing if s["createdBy"] == "maintd" and f":{window}:" in s["comment"]]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _integrations(status: dict, window: str) -> list[dict]:
    for entry in status["active"] + status["next"]:
        if entry["window"] == window:
            return entry["integrations"]
    return []


def test_a_window_mutes_alertmanager_follows_extend_and_restarts_and_expires(daemon_factory, alertmanager_url):  # noqa: F811
    am = alertmanager_url
    fw_start, short_start = iso_in(15), iso_in(15)
    d = daemon_factory(CONFIG.format(am=am, fw_start=fw_start, short_start=short_start))

    # Before start - ahead nothing is muted; status says the silence is still to come.
    st = d.status()
    if datetime.now(UTC) < _at(fw_start) - timedelta(seconds=3):  # a slow start leaves no time to look
        assert _integrations(st, "fw") == [{"name": "am", "type": "alertmanager", "state": "pending", "error": None}]
        assert _silences(am, "fw") == []

    # One silence per occurrence, created by start - ahead, active during the window.
    d.wait_for(lambda s: any(a["window"] == "fw" for a in s["active"]), timeout=25, what="fw active")
    (silence,) = _until(
        "fw silence active", lambda: [s for s in _silences(am, "fw") if s["status"]["state"] == "active"]
    )
    assert _at(silence["startsAt"]) <= _at(fw_start)
    assert _at(silence["endsAt"]) == _at(fw_start) + timedelta(minutes=10)
    matchers = {(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in silence["matchers"]}
    assert matchers == {("maintenance_tenant", "acme|beta-eu", True, True), ("cluster", "eu-1", False, True)}
    assert "fw" in silence["comment"] and "Storage firmware" in silence["comment"]
    st = d.wait_for(lambda s: _integrations(s, "fw")[0]["state"] == "applied", what="am applied")

    # kill -9 and restart: the stored id is found again, no second silence.
    d.kill9()
    d.restart()
    d.wait_for(lambda s: s["last_tick"] is not None and _integrations(s, "fw")[0]["state"] == "applied")
    time.sleep(2)  # a second silence would be made at once: give the worker a few passes
    live = [s for s in _silences(am, "fw") if s["status"]["state"] != "expired"]
    assert [s["id"] for s in live] == [silence["id"]]

    # extend moves endsAt of the same silence.
    r = d.cli("extend", "fw", "30m")
    assert r.returncode == 0, r.stderr
    wanted = _at(silence["endsAt"]) + timedelta(minutes=30)
    moved = _until(
        "endsAt moved",
        lambda: [s for s in _silences(am, "fw") if s["id"] == silence["id"] and _at(s["endsAt"]) == wanted],
    )
    assert moved[0]["status"]["state"] == "active"
    assert [s["id"] for s in _silences(am, "fw") if s["status"]["state"] != "expired"] == [silence["id"]]

    # The short window ran out on its own: its silence (own matchers) has expired.
    (short,) = _until(
        "short silence expired",
        lambda: [s for s in _silences(am, "short") if s["status"]["state"] == "expired"],
    )
    assert [(m["name"], m["value"]) for m in short["matchers"]] == [("maintd_window", "short")]

    # An early exit expires the silence at once.
    r = d.cli("exit", "--window", "fw")
    assert r.returncode == 0, r.stderr
    _until("fw silence expired", lambda: all(s["status"]["state"] == "expired" for s in _silences(am, "fw")))
    history = d.history()
    actions = [h["detail"]["action"] for h in history if h["kind"] == "integration" and h["window"] == "fw"]
    assert sorted(actions) == ["apply", "revert", "start", "update"], actions  # each once


def test_a_failing_integration_never_blocks_the_window(daemon_factory):
    config = CONFIG.format(am="http://127.0.0.1:9", fw_start=iso_in(3), short_start=iso_in(3600))
    d = daemon_factory(config)
    st = d.wait_for(lambda s: any(a["window"] == "fw" for a in s["active"]), timeout=20, what="fw active")
    st = d.wait_for(lambda s: _integrations(s, "fw")[0]["state"] == "failed", timeout=20, what="am failed")
    (entry,) = _integrations(st, "fw")
    assert entry["error"] and "127.0.0.1" in entry["error"]
    assert st["mode"] == "maintenance"
    metrics = d.get("/metrics", headers={"Authorization": "Bearer " + d.env["MAINTD_TOKEN"]}).text
    assert 'maintd_integration_failures_total{integration="am"}' in metrics
    assert "maintd_integrations_failed 1.0" in metrics
    page = d.get("/").text  # loopback: the ops page
    assert "<h2>Integrations</h2>" in page and ">failed</td>" in page


PD_SP_CONFIG = """\
version: 1
provider: {{name: Example Cloud, timezone: UTC, integrations: [pd, status]}}
daemon: {{listen: "{{listen}}", database: maintd.db}}
tenants: [{{id: acme}}]
integrations:
  pd: {{type: pagerduty, url: "{url}", token: "${{PD_TOKEN}}", from: noc@example.com, services: [PABC123]}}
  status: {{type: statuspage, url: "{url}", token: "${{SP_TOKEN}}", page: {page}, components: [{component}]}}
windows:
  - id: fw
    start: {start}
    duration: 1h
    cancelled: {cancelled}
"""


def test_pagerduty_and_statuspage_once_per_occurrence_across_a_restart_and_deleted_on_cancel(
    daemon_factory,
    pagerduty,  # noqa: F811 - the fixtures
    statuspage,  # noqa: F811 - the fixtures
):
    from tests.test_integrations_statuspage import COMPONENT, PAGE

    pagerduty.now = datetime.now(UTC)  # the stand-in refuses to delete a window it thinks has begun
    start = iso_in(3600)
    config = dict(url=pagerduty.url.rstrip("/"), page=PAGE, component=COMPONENT, start=start)
    env = {"PD_TOKEN": "pd-secret", "SP_TOKEN": "sp-secret"}
    d = daemon_factory(PD_SP_CONFIG.format(**config, cancelled="false"), env=env)

    def both(state: str) -> Callable[[dict], bool]:
        return lambda s: [i["state"] for i in _integrations(s, "fw")] == [state, state]

    d.wait_for(both("applied"), timeout=20, what="both applied")
    assert len(pagerduty.windows) == 1 and len(statuspage.incidents) == 1
    (window,) = pagerduty.windows.values()
    assert (window["start_time"], window["services"]) == (start, [{"id": "PABC123", "type": "service_reference"}])
    (incident,) = statuspage.incidents.values()
    assert (incident["scheduled_for"], incident["status"]) == (start, "scheduled")
    assert "Example Cloud is under scheduled maintenance" in incident["body"]

    d.kill9()
    d.restart()
    d.wait_for(lambda s: s["last_tick"] is not None and both("applied")(s))
    time.sleep(2)
    posts = [(m, p) for m, p, _ in pagerduty.requests + statuspage.requests if m == "POST"]
    assert len(posts) == 2, posts  # one create per target for the occurrence

    d.config_path.write_text(PD_SP_CONFIG.format(**config, cancelled="true").replace("{listen}", f"127.0.0.1:{d.port}"))
    d.signal(signal.SIGHUP)
    _until("both deleted", lambda: not pagerduty.windows and not statuspage.incidents, timeout=20)
    deletes = [m for m, _, _ in pagerduty.requests + statuspage.requests if m == "DELETE"]
    assert deletes == ["DELETE", "DELETE"]
    status_text = d.cli("status", "--json").stdout
    assert "pd-secret" not in status_text and "sp-secret" not in status_text and "pd-secret" not in d.log()
