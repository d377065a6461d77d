"""Tenant views, the ops page and the deploy files (issue: tenant views, packaging)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
import yaml
from starlette.testclient import TestClient

from scheduler.api import create_app
from scheduler.daemon import Daemon

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TOKEN = "web-test-token-0123456789abcdefghijk"

CONFIG = """\
version: 1
provider: {name: Example Cloud, timezone: Europe/Berlin, policy: standard}
tenants:
  - id: acme
    name: ACME Corp
    timezone: America/New_York
  - id: beta
    name: Beta GmbH
    timezone: Europe/Berlin
policies:
  standard:
    default: deny
    rules:
      - allow: {kind: [restore, failover]}
      - deny: {kind: [backup]}
windows:
  - id: acme-only
    title: "Firmware <script>alert(1)</script> update"
    start: 2026-12-05T22:00:00Z
    duration: 2h
    tenants: [acme]
  - id: beta-secret-window
    title: Beta private migration
    start: 2026-12-06T10:00:00Z
    duration: 1h
    tenants: [beta]
  - id: weekly
    title: Weekly patching
    cron: "0 3 * * 0"
    duration: 1h
    timezone: Europe/Berlin
    tenants: [acme]
    skip: [2026-12-13]
"""


@pytest.fixture
def daemon(tmp_path: Path):
    path = tmp_path / "windows.yaml"
    path.write_text(CONFIG)
    clock = {"now": NOW}
    d = Daemon(str(path), clock=lambda: clock["now"], env={"MAINTD_TOKEN": TOKEN})
    d.reconciler.tick("test")
    d.test_clock = clock
    yield d
    d.store.close()


@pytest.fixture
def client(daemon):
    return TestClient(create_app(daemon), headers={"Authorization": f"Bearer {TOKEN}"})


def secret_for(daemon, tenant: str) -> str:
    return daemon.store.tenant_secret(tenant)


def test_tenant_page_shows_own_windows_in_own_zone_and_nothing_of_others(daemon, client):
    page = client.get(f"/t/{secret_for(daemon, 'acme')}/")
    assert page.status_code == 200
    html = page.text
    # 22:00Z on 5 Dec is 17:00 in New York (EST).
    assert "Sat 5 Dec 2026 17:00 EST" in html
    assert "America/New_York" in html
    assert "ACME Corp" in html
    for other in ("Beta GmbH", "beta-secret-window", "Beta private migration", "beta"):
        assert other not in html
    assert "restore" in html and "backup paused" in html


def test_tenant_page_escapes_tenant_provided_text(daemon, client):
    html = client.get(f"/t/{secret_for(daemon, 'acme')}/").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" not in html


def test_tenant_page_shows_current_maintenance(daemon, client):
    daemon.test_clock["now"] = datetime(2026, 12, 5, 22, 30, tzinfo=UTC)
    daemon.reconciler.tick("test")
    html = client.get(f"/t/{secret_for(daemon, 'acme')}/").text
    assert "Maintenance in progress until Sat 5 Dec 2026 19:00 EST" in html
    html_beta = client.get(f"/t/{secret_for(daemon, 'beta')}/").text
    assert "No maintenance in progress" in html_beta


def test_calendar_feed_parses_with_stable_uids_and_exdate(daemon, client):
    resp = client.get(f"/t/{secret_for(daemon, 'acme')}/calendar.ics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/calendar")
    cal = icalendar.Calendar.from_ical(resp.content)
    events = [c for c in cal.walk("VEVENT")]
    uids = {str(e["UID"]) for e in events}
    assert "acme-only@maintd" in uids
    assert not any("beta" in u for u in uids)
    weekly = [e for e in events if str(e["UID"]).startswith("weekly-")]
    assert weekly, uids
    # 2026-12-13 03:00 Berlin is skipped: no event that day, and it is carried as EXDATE.
    starts = {e.decoded("DTSTART") for e in weekly}
    skipped = datetime(2026, 12, 13, 2, 0, tzinfo=UTC)
    assert skipped not in starts
    exdates = set()
    for e in weekly:
        ex = e.get("EXDATE")
        for item in ex if isinstance(ex, list) else [ex] if ex else []:
            exdates |= {d.dt.astimezone(UTC) for d in item.dts}
    assert skipped in exdates
    one = next(e for e in events if str(e["UID"]) == "acme-only@maintd")
    assert one.decoded("DTSTART") == datetime(2026, 12, 5, 22, 0, tzinfo=UTC)


def test_calendar_uid_matches_the_email_invitation(daemon, client):
    from notifiers.calendar import build_ics
    from scheduler import plan

    journal = daemon.reconciler.journal(NOW)
    a = next(
        x for x in plan.effective(daemon.config, journal, NOW, NOW + timedelta(days=30)) if x.window.id == "weekly"
    )
    action = plan.NoticeAction(
        kind="scheduled",
        window="weekly",
        occurrence=a.occ.key,
        tenants=frozenset({"acme"}),
        start=a.occ.start,
        end=a.occ.end,
        title=a.window.title,
        lead="1d",
        recurring=True,
    )
    invite = icalendar.Calendar.from_ical(
        build_ics(daemon.notice_rows.build_notice(action, daemon.config.tenants["acme"]))
    )
    invite_uid = str(next(iter(invite.walk("VEVENT")))["UID"])
    feed = icalendar.Calendar.from_ical(client.get(f"/t/{secret_for(daemon, 'acme')}/calendar.ics").content)
    assert invite_uid in {str(e["UID"]) for e in feed.walk("VEVENT")}


def test_rotated_and_unknown_secrets_are_plain_404(daemon, client):
    old = secret_for(daemon, "acme")
    new = daemon.store.rotate_secret("acme")
    assert client.get(f"/t/{old}/").status_code == 404
    assert client.get(f"/t/{old}/calendar.ics").status_code == 404
    assert client.get(f"/t/{new}/").status_code == 200
    resp = client.get("/t/nope/")
    assert resp.status_code == 404 and "acme" not in resp.text.lower()


def test_random_secrets_are_404_without_measurable_timing_difference(daemon, client):
    real = secret_for(daemon, "acme")

    def timed(secret: str) -> float:
        t0 = time.perf_counter()
        assert client.get(f"/t/{secret}/").status_code == 404
        return time.perf_counter() - t0

    randoms = [timed(secrets.token_urlsafe(32)) for _ in range(1000)]
    # Near misses share all but the last character with the real secret.
    near = [timed(real[:-1] + ("A" if real[-1] != "A" else "B")) for _ in range(300)]
    m_random, m_near = statistics.median(randoms), statistics.median(near)
    assert abs(m_random - m_near) < max(0.002, 0.5 * m_random), (m_random, m_near)


def test_ops_page_needs_a_token_from_any_address(daemon):
    app = create_app(daemon)
    remote = TestClient(app, client=("127.0.0.1", 5555))
    assert remote.get("/").status_code == 401
    assert remote.get("/v1/status").status_code == 401
    ok = remote.get("/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and "Next 30 days" in ok.text
    html = ok.text
    assert 'class="gantt"' in html and "acme" in html
    # tenant pages stay reachable from anywhere: the secret is the credential
    assert remote.get(f"/t/{secret_for(daemon, 'acme')}/").status_code == 200


def test_tenant_url_command_prints_working_urls(daemon_factory):
    d = daemon_factory(CONFIG.replace("windows:", 'daemon: {listen: "{listen}"}\nwindows:', 1))
    out = d.cli("tenant-url", "acme")
    assert out.returncode == 0, out.stderr
    page = re.search(r"page:\s+(\S+)", out.stdout).group(1)
    cal = re.search(r"calendar:\s+(\S+)", out.stdout).group(1)
    import requests

    assert requests.get(page, timeout=10).status_code == 200
    assert requests.get(cal, timeout=10).status_code == 200
    rotated = d.cli("tenant-url", "acme", "--rotate")
    assert rotated.returncode == 0
    assert requests.get(page, timeout=10).status_code == 404
    assert d.cli("tenant-url", "nobody").returncode == 2


# ---------------------------------------------------------------------------
# a real browser


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    # The suite provisions what it needs (CI runs on a fresh machine as root).
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "chromium"],
        check=True,
        capture_output=True,
        timeout=900,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return shutil.which("chromium")


def _browse(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp / 'profile'}",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_pages_render_in_a_real_browser(daemon_factory, tmp_path):
    d = daemon_factory(CONFIG.replace("windows:", 'daemon: {listen: "{listen}"}\nwindows:', 1))
    page = re.search(r"page:\s+(\S+)", d.cli("tenant-url", "acme").stdout).group(1)
    dom = _browse(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "ACME Corp" in dom.stdout and "EST" in dom.stdout
    assert "Beta" not in dom.stdout
    shot = tmp_path / "tenant.png"
    res = _browse(page, tmp_path, f"--screenshot={shot}", "--window-size=390,844")
    assert res.returncode == 0 and shot.exists() and shot.stat().st_size > 5000
    login = _browse(d.url + "/", tmp_path, "--dump-dom")  # no token: the login form
    assert 'type="password"' in login.stdout and "Sign in" in login.stdout
    # the page a signed-in browser gets (a headless browser cannot send the header or cookie)
    (tmp_path / "ops.html").write_text(d.get("/").text)
    ops = _browse((tmp_path / "ops.html").as_uri(), tmp_path, "--dump-dom")
    assert 'class="gantt"' in ops.stdout and "Next 30 days" in ops.stdout


# ---------------------------------------------------------------------------
# packaging


def test_systemd_unit_verifies_or_has_the_essentials():
    unit = (ROOT / "deploy" / "maintd.service").read_text()
    for needed in (
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=maintd",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ExecStart=/opt/maintd/bin/maintd run",
        "LimitNOFILE=",
    ):
        assert needed in unit
    analyze = shutil.which("systemd-analyze")
    maintd = shutil.which("maintd")
    if analyze and maintd:
        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"maintd-{os.getpid()}.service"
        tmp.write_text(unit.replace("/opt/maintd/bin/maintd", maintd))
        try:
            res = subprocess.run([analyze, "verify", str(tmp)], capture_output=True, text=True, timeout=60)
        finally:
            tmp.unlink()
        assert res.returncode == 0, res.stderr


def test_dockerfile_is_slim_non_root_and_health_checked():
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^USER maintd", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0:
        res = subprocess.run(
            [docker, "build", "-q", "-t", "maintd-test", str(ROOT)], capture_output=True, text=True, timeout=900
        )
        assert res.returncode == 0, res.stderr[-2000:]


def test_alert_rules_and_dashboard_use_real_metrics(daemon, client):
    exposed = client.get("/metrics").text
    names = set(re.findall(r"^# TYPE (\S+)", exposed, re.M))
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus-alerts.yml").read_text())
    alerts = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    for wanted in ("MaintdDown", "MaintdNoticeFailures", "MaintdDrainOverrun", "MaintdReloadError"):
        assert wanted in alerts
    dash = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = list(alerts.values()) + [t["expr"] for p in dash["panels"] for t in p["targets"]]
    for expr in exprs:
        for metric in re.findall(r"\bmaintd_[a-z_]+", expr):
            base = re.sub(r"_(bucket|count|sum|total)$", "", metric)
            assert metric in names or base in names, f"{metric} is not exposed by /metrics"
