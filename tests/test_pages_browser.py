"""Every page in headless Chromium at 1280 px and 390 px (issue 14, "Web pages"): nothing
overflows sideways, pills stay whole, the ops page labels its bars and shows time left,
jobs and history, the tenant page shows time left and windows however far out, and HEAD
answers like GET. Screenshots are kept under a directory whose path is printed."""

from __future__ import annotations

import json
import re
import subprocess
from html import escape, unescape
from pathlib import Path

import pytest
import requests
from conftest import TOKEN, iso_in
from debian import ensure_program

AUTH = {"Authorization": f"Bearer {TOKEN}"}  # the ops page needs a read or admin token; tenant pages ignore it

LONG = "storage-firmware-rollout-for-the-eu-central-cluster-with-a-very-long-window-identifier"
CONFIG = f"""\
version: 1
provider: {{name: Example Cloud, timezone: Asia/Kolkata}}
tenants:
  - id: acme
    name: ACME Corp
    timezone: America/New_York
  - id: beta
    name: Beta GmbH
    timezone: Australia/Sydney
policies:
  standard:
    default: deny
    rules:
      - allow: {{kind: [restore, failover, read-only-replica-promotion]}}
      - deny: {{kind: [backup, long-running-nightly-export]}}
windows:
  - id: {LONG}
    title: "Storage firmware rollout with a title long enough to wrap on a phone screen"
    start: {iso_in(-600)}
    end: {iso_in(5400)}
    policy: standard
    tenants: [acme]
  - id: weekly-patching
    title: Weekly patching
    cron: "30 2 * * 6"
    duration: 1h
    timezone: Europe/Berlin
    policy: standard
    tenants: [acme, beta]
  - id: datacenter-move-2030
    title: Data-centre move
    start: 2030-06-01T22:00:00Z
    duration: 8h
    tenants: [acme]
daemon: {{listen: "{{listen}}"}}
"""

# Chromium's headless window is at least 500 px wide, so the page is laid out in an iframe
# of the exact width (srcdoc: same origin, so the parent can measure it).
FRAME = """<!doctype html><html><body style="margin:0">
<iframe id="f" style="border:0;width:{width}px;height:{height}px" srcdoc="{srcdoc}"></iframe>
<script>
document.getElementById("f").addEventListener("load", function () {{
  var w = this.contentWindow, d = this.contentDocument;
  var pills = Array.from(d.querySelectorAll(".pill"));
  document.body.setAttribute("data-probe", JSON.stringify({{
    scroll: d.documentElement.scrollWidth,
    inner: w.innerWidth,
    brokenPills: pills.filter(function (p) {{ return p.getClientRects().length > 1; }}).length,
    pills: pills.length
  }}));
}});
</script></body></html>"""


def chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            ensure_program("chromium", "chromium"),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={tmp / 'profile'}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def framed(html: str, width: int, tmp: Path, name: str, height: int = 900) -> Path:
    """A local page showing ``html`` in an iframe exactly ``width`` px wide (refresh disabled)."""
    inner = html.replace('http-equiv="refresh"', 'data-refresh="off"')
    copy = tmp / f"{name}-{width}.html"
    copy.write_text(FRAME.format(width=width, height=height, srcdoc=escape(inner, quote=True)))
    return copy


def measure(html: str, width: int, tmp: Path, name: str) -> dict:
    """Lay ``html`` out at ``width`` px in Chromium and return the probe's findings."""
    copy = framed(html, width, tmp, name)
    res = chromium(
        tmp, f"--window-size={max(width, 500)},900", "--virtual-time-budget=5000", "--dump-dom", copy.as_uri()
    )
    assert res.returncode == 0, res.stderr[-2000:]
    found = re.search(r'data-probe="([^"]*)"', res.stdout)
    assert found, res.stdout[-2000:]
    return json.loads(unescape(found.group(1)))


@pytest.fixture
def pages(daemon_factory, tmp_path):
    d = daemon_factory(CONFIG, env={"MAINTD_HEARTBEAT": "300"})  # the job stays running while we look
    page = re.search(r"page:\s+(\S+)", d.cli("tenant-url", "acme").stdout).group(1)
    entered = d.cli("enter", "--reason", "SAN failover", "--for", "30m", "--tenants", "beta")
    assert entered.returncode == 0, entered.stderr
    window = re.search(r"manual-\S+", entered.stdout + entered.stderr).group(0)
    assert d.cli("exit", "--window", window).returncode == 0
    lease = d.post("/v1/admissions", {"tenant": "beta", "kind": "backup", "resource": "vm-with-a-long-name-0042"})
    assert lease.status_code in (200, 201) and lease.json()["admitted"], lease.text
    return d, page


def test_pages_fit_a_phone_and_a_desktop(pages, tmp_path):
    d, page = pages
    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"\nscreenshots in {shots}")
    # the login form is what a browser without a session gets at /
    for name, url, headers in (("tenant", page, AUTH), ("ops", d.url + "/", AUTH), ("login", d.url + "/", {})):
        html = requests.get(url, timeout=10, headers=headers).text
        assert (name == "login") == ('action="/login"' in html), name
        for width in (1280, 390):
            probe = measure(html, width, tmp_path, name)
            assert probe["scroll"] <= probe["inner"] == width, (name, width, probe)
            assert probe["brokenPills"] == 0, (name, width, probe)
            shot = shots / f"{name}-{width}.png"
            page_file = framed(html, width, tmp_path, f"shot-{name}", height=1600)
            size = f"--window-size={width if width >= 500 else 500},1600"
            res = chromium(tmp_path, size, "--virtual-time-budget=3000", f"--screenshot={shot}", page_file.as_uri())
            assert res.returncode == 0 and shot.stat().st_size > 5000, res.stderr[-2000:]
        if name == "tenant":
            assert probe["pills"] >= 3


def test_tenant_page_shows_time_left_and_far_windows(pages):
    d, page = pages
    html = requests.get(page, timeout=10, headers=AUTH).text
    assert "Maintenance in progress" in html
    assert re.search(r'id="left">1h \d\dm left<', html), html
    assert "Data-centre move" in html and "2030" in html  # four years out, still listed
    assert "Weekly patching" in html
    assert re.search(r'<meta http-equiv="refresh" content="\d+">', html)


def test_ops_page_labels_bars_and_shows_jobs_history_and_refreshes(pages):
    d, _ = pages
    html = requests.get(d.url + "/", timeout=10, headers=AUTH).text
    assert '<meta http-equiv="refresh" content="30">' in html
    assert "Times in Asia/Kolkata" in html and "IST" in html
    labels = re.search(r'<div class="barlabels">(.*?)</div>', html, re.S)
    assert labels and "<b>weekly-patching</b>" in html
    assert re.search(r'class="left">1h \d\dm left<', html)  # the long window's time left
    jobs = re.search(r'<table class="cards" id="jobs">.*?</table>', html, re.S).group(0)
    assert "beta" in jobs and "backup" in jobs and "running" in jobs
    history = re.search(r'<table class="cards" id="history">.*?</table>', html, re.S).group(0)
    assert "enter" in history and "SAN failover" in history
    assert 0 < history.count("<tr>") <= 11


@pytest.mark.parametrize("path", ["/", "TENANT", "TENANT" + "calendar.ics", "/healthz"])
def test_head_answers_like_get_without_a_body(pages, path):
    d, page = pages
    url = page + path[len("TENANT") :] if path.startswith("TENANT") else d.url + path
    get = requests.get(url, timeout=10, headers=AUTH)
    head = requests.head(url, timeout=10, headers=AUTH)
    assert head.status_code == get.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]
