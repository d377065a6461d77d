"""The Alertmanager integration against a REAL Alertmanager (Debian's binary), checked
through Alertmanager's own API; plus the matcher parser as a table.

Alertmanager keeps real time, so occurrences here are placed around the real clock.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from integrations import Alertmanager, IntegrationError, Occurrence, build
from integrations.alertmanager import parse_matcher
from notifiers.http import HttpClient

BINARY = "/usr/bin/prometheus-alertmanager"
CONFIG = 'route:\n  receiver: "null"\nreceivers:\n  - name: "null"\n'


def ensure_installed() -> str:
    """Debian's package, installed when missing (CI runs as root on a fresh machine)."""
    if not os.path.exists(BINARY):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "prometheus-alertmanager"],
            check=True,
            capture_output=True,
            timeout=900,
            env=env,
        )
    if not os.path.exists(BINARY):
        raise RuntimeError(f"{BINARY} not found after installing Debian's prometheus-alertmanager")
    return BINARY


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def alertmanager_url():
    binary = ensure_installed()
    root = tempfile.mkdtemp(prefix="maintd-am-")
    config = os.path.join(root, "alertmanager.yml")
    with open(config, "w") as f:
        f.write(CONFIG)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={os.path.join(root, 'data')}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip: one standalone instance
    ]
    log = open(os.path.join(root, "log"), "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("alertmanager did not start: " + open(os.path.join(root, "log")).read()[-2000:])
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def silences(url: str) -> list[dict]:
    return [s for s in httpx.get(f"{url}/api/v2/silences", timeout=5).json() if s["status"]["state"] != "expired"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


_counter = iter(range(1000))


def occurrence(now: datetime, *, starts_in: timedelta, lasts: timedelta = timedelta(hours=1)) -> Occurrence:
    start = (now + starts_in).replace(microsecond=0)
    return Occurrence(
        window=f"storage-firmware-{next(_counter)}",  # one window per test: silences don't mix
        title="Storage firmware",
        occurrence=start,
        start=start,
        end=start + lasts,
        tenants=("acme", "beta.eu"),
        message="Firmware update",
    )


def integration(url: str) -> Alertmanager:
    settings = {
        "type": "alertmanager",
        "url": url,
        "matchers": ['maintenance_tenant=~"{tenants_regex}"', 'cluster="eu-1"'],
        "ahead": "5m",
    }
    return build("am", settings, http=HttpClient(timeout=5))  # type: ignore[return-value]


def mine(url: str, occ: Occurrence) -> list[dict]:
    return [s for s in silences(url) if occ.window in s["comment"]]


def test_apply_creates_one_silence_over_the_range_with_the_matchers(alertmanager_url):
    now = datetime.now(UTC)
    occ = occurrence(now, starts_in=timedelta(minutes=30))
    state = integration(alertmanager_url).apply(occ, {}, now=now)
    (silence,) = mine(alertmanager_url, occ)
    assert state == {"silence_id": silence["id"]}
    assert silence["status"]["state"] == "pending"
    assert at(silence["startsAt"]) == occ.start - timedelta(minutes=5)
    assert at(silence["endsAt"]) == occ.end
    assert sorted(silence["matchers"], key=lambda m: m["name"]) == [
        {"name": "cluster", "value": "eu-1", "isRegex": False, "isEqual": True},
        {"name": "maintenance_tenant", "value": r"acme|beta\.eu", "isRegex": True, "isEqual": True},
    ]
    assert silence["createdBy"] == "maintd"
    assert occ.window in silence["comment"] and occ.key in silence["comment"]


@pytest.mark.parametrize("starts_in", [timedelta(minutes=30), timedelta(minutes=-10)], ids=["pending", "active"])
def test_update_with_a_later_end_moves_ends_at_and_keeps_the_id(alertmanager_url, starts_in):
    now = datetime.now(UTC)
    occ = occurrence(now, starts_in=starts_in)
    am = integration(alertmanager_url)
    state = am.apply(occ, {}, now=now)
    assert mine(alertmanager_url, occ)[0]["status"]["state"] == ("active" if starts_in < timedelta(0) else "pending")
    later = Occurrence(**{**occ.__dict__, "end": occ.end + timedelta(minutes=45)})
    assert am.update(later, state, now=datetime.now(UTC)) == state
    (silence,) = mine(alertmanager_url, occ)
    assert silence["id"] == state["silence_id"]
    assert at(silence["endsAt"]) == later.end


def test_a_restart_never_creates_a_second_silence(alertmanager_url):
    now = datetime.now(UTC)
    occ = occurrence(now, starts_in=timedelta(minutes=30))
    state = integration(alertmanager_url).apply(occ, {}, now=now)
    again = integration(alertmanager_url).apply(occ, state, now=now)  # a new process, the stored state
    assert again == state
    lost = integration(alertmanager_url).apply(occ, {}, now=now)  # a crash before the state was stored
    assert lost == state
    assert len(mine(alertmanager_url, occ)) == 1


def test_revert_expires_the_silence_and_is_idempotent(alertmanager_url):
    now = datetime.now(UTC)
    occ = occurrence(now, starts_in=timedelta(minutes=-10))
    am = integration(alertmanager_url)
    state = am.apply(occ, {}, now=now)
    assert am.revert(occ, state, reason="exited", now=now) == {}
    assert mine(alertmanager_url, occ) == []
    gone = httpx.get(f"{alertmanager_url}/api/v2/silence/{state['silence_id']}", timeout=5).json()
    assert gone["status"]["state"] == "expired"
    assert am.revert(occ, state, reason="exited", now=now) == {}


def test_apply_after_an_expiry_creates_a_fresh_silence(alertmanager_url):
    now = datetime.now(UTC)
    occ = occurrence(now, starts_in=timedelta(minutes=30))
    am = integration(alertmanager_url)
    state = am.apply(occ, {}, now=now)
    httpx.delete(f"{alertmanager_url}/api/v2/silence/{state['silence_id']}", timeout=5)  # someone expired it
    fresh = am.apply(occ, state, now=now)
    assert fresh["silence_id"] != state["silence_id"]
    assert [s["id"] for s in mine(alertmanager_url, occ)] == [fresh["silence_id"]]


def test_an_unreachable_alertmanager_is_a_retryable_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"
    now = datetime.now(UTC)
    with pytest.raises(IntegrationError) as info:
        integration(url).apply(occurrence(now, starts_in=timedelta(minutes=5)), {}, now=now)
    assert info.value.permanent is False


def test_bearer_token_is_sent(httpserver):
    httpserver.expect_request("/api/alertmanager/grafana/api/v2/silences", method="GET").respond_with_json([])
    httpserver.expect_request("/api/alertmanager/grafana/api/v2/silences", method="POST").respond_with_json(
        {"silenceID": "abc"}
    )
    am = build(
        "grafana",
        {
            "type": "alertmanager",
            "url": httpserver.url_for("/api/alertmanager/grafana"),
            "token": "glsa_x",
            "matchers": ["a=b"],
        },
    )
    now = datetime.now(UTC)
    assert am.apply(occurrence(now, starts_in=timedelta(minutes=5)), {}, now=now) == {"silence_id": "abc"}
    assert [r.headers["Authorization"] for r, _ in httpserver.log] == ["Bearer glsa_x", "Bearer glsa_x"]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('job="api"', ("job", "api", False, True)),
        ("job=api", ("job", "api", False, True)),
        ('job!="api"', ("job", "api", False, False)),
        ('tenant=~"{tenants_regex}"', ("tenant", "{tenants_regex}", True, True)),
        ('tenant!~"a|b"', ("tenant", "a|b", True, False)),
        (' path = "a\\"b" ', ("path", 'a"b', False, True)),
    ],
    ids=["equal_quoted", "equal_bare", "not_equal", "regex_placeholder", "not_regex", "escaped_quote"],
)
def test_parse_matcher(text, expected):
    m = parse_matcher(text)
    assert (m["name"], m["value"], m["isRegex"], m["isEqual"]) == expected


@pytest.mark.parametrize(
    "settings, error",
    [
        ({"url": "http://x", "matchers": ["1job=x"]}, "matcher '1job=x' is not like"),
        ({"url": "http://x", "matchers": ['a="b']}, "unbalanced quotes"),
        ({"url": "http://x", "matchers": ["a=b"], "ahead": "5 minutes"}, "ahead: '5 minutes' is not a duration"),
        ({"url": "http://x", "matchers": ["a=b"], "silence": True}, "unknown setting 'silence' for type alertmanager"),
        ({"url": "http://x"}, "alertmanager needs 'matchers'"),
    ],
    ids=["bad_name", "unbalanced", "bad_ahead", "unknown_key", "missing_matchers"],
)
def test_settings_are_validated(settings, error):
    with pytest.raises(ValueError, match=error):
        Alertmanager("am", settings)
