"""The gate and the drain end to end: a real ``maintd run`` and real ``maintd exec`` jobs.

Jobs are small shell scripts: one that exits cleanly on SIGTERM, one that ignores it (so
only SIGKILL at the deadline ends it), restores that must keep running. Windows start
3-4 s after the daemon with a 2-3 s grace; conftest runs the daemon with
MAINTD_HEARTBEAT=1, so clients heartbeat every second and a silent lease expires after
3 s. Everything is observed from outside: exit codes, stderr, ``/v1/status``,
``/v1/history``, ``/metrics`` and the leases table.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from conftest import DaemonProc, free_port, iso_in, maintd_argv
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

BASE = """\
version: 1
provider:
  name: Test Cloud
  timezone: UTC
  policy: standard
  message: "{provider} is under maintenance until {end}."
tenants:
  - id: acme
    name: ACME Corp
  - id: beta
    name: Beta GmbH
  - id: gamma
    name: Gamma Inc
policies:
  standard:
    default: deny
    rules:
      - allow: {kind: [restore]}
      - deny: {kind: [backup]}
        message: "Backups are paused until {end}; they resume automatically."
  strict:
    default: deny
daemon:
  listen: "{listen}"
"""

# Leaves on SIGTERM, cleanly (exit 0) and saying so.
GRACEFUL = ["sh", "-c", 'trap "echo cleaned-up >&2; exit 0" TERM; while :; do sleep 0.1; done']
# Ignores SIGTERM (so does its `sleep`, SIG_IGN is inherited): only SIGKILL ends it.
STUBBORN = ["sh", "-c", 'trap "" TERM; while :; do sleep 0.1; done']


def config(windows: str = "") -> str:
    return BASE + "windows:\n" + (windows or "  []\n")


def window(wid: str, start: str, end: str, extra: str = "") -> str:
    return f"  - id: {wid}\n    start: {start}\n    end: {end}\n" + extra


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def isoz(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Jobs:
    """``maintd exec`` processes of one test; whatever still runs at the end is stopped."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, d: DaemonProc, *args: str, cmd: list[str], url: str | None = None) -> subprocess.Popen:
        env = dict(d.env)
        env["MAINTD_URL"] = url or d.url
        p = subprocess.Popen(
            maintd_argv() + ["--config", str(d.config_path), "exec", *args, "--", *cmd],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=d.config_path.parent,
        )
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)  # maintd exec forwards it to the job's group
        for p in self.procs:
            try:
                p.communicate(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.communicate()


@pytest.fixture
def jobs():
    j = Jobs()
    yield j
    j.close()


def run_exec(
    d: DaemonProc, *args: str, cmd: list[str], input: str | None = None, url: str | None = None
) -> subprocess.CompletedProcess:
    return d.cli("exec", *args, "--", *cmd, input=input, env={"MAINTD_URL": url} if url else None)


def exit_time(p: subprocess.Popen, timeout: float) -> float:
    """Wait for ``p`` to end; return when it did (time.time())."""
    deadline = time.time() + timeout
    while p.poll() is None:
        if time.time() > deadline:
            raise AssertionError(f"job still running after {timeout}s")
        time.sleep(0.02)
    return time.time()


def finish(p: subprocess.Popen, timeout: float = 15) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def leases(st: dict) -> dict[str, dict]:
    """Running leases by (tenant, kind, resource) -> item (one job of each in these tests)."""
    return {(x["tenant"], x["kind"], x["resource"]): x for x in st["leases"]["items"]}


def journal(d: DaemonProc, kind: str) -> list[dict]:
    return [h for h in reversed(d.history()) if h["kind"] == kind]


def lease_rows(d: DaemonProc) -> dict[str, str]:
    db = sqlite3.connect(d.config_path.parent / "maintd.db")
    try:
        return dict(db.execute("SELECT id, status FROM leases"))
    finally:
        db.close()


def metric(d: DaemonProc, name: str) -> float | None:
    for fam in text_string_to_metric_families(d.get("/metrics").text):
        for s in fam.samples:
            if s.name == name and not s.labels:
                return s.value
    return None


def admit(d: DaemonProc, **body) -> requests.Response:
    return d.post("/v1/admissions", body)


# --------------------------------------------------------------------------- the drain at a window's start


def test_a_window_start_drains_backups_term_then_kill_and_restores_keep_running(daemon_factory, jobs) -> None:
    start, end = iso_in(6), iso_in(60)
    deadline = utc(start) + timedelta(seconds=2)
    d = daemon_factory(config(window("upgrade", start, end, "    drain: {grace: 2s, then: stop}\n")))
    graceful = jobs.start(d, "--tenant", "acme", "--kind", "backup", cmd=GRACEFUL)
    stubborn = jobs.start(d, "--tenant", "beta", "--kind", "backup", cmd=STUBBORN)
    restore = jobs.start(d, "--tenant", "acme", "--kind", "restore", cmd=["sh", "-c", "sleep 7; exit 3"])
    st = d.wait_for(lambda s: s["leases"]["running"] == 3, timeout=5, what="three leases")
    assert st["mode"] == "normal" and st["leases"]["draining"] == 0

    st = d.wait_for(lambda s: s["mode"] == "draining", timeout=8, what="draining")
    items = leases(st)
    # both backups draining (the graceful one may have left already), not the restore
    assert st["leases"]["draining"] == sum(1 for k in items if k[1] == "backup") >= 1, st["leases"]
    for key in (("acme", "backup", None), ("beta", "backup", None)):
        if key in items:  # the graceful one may be gone already
            assert items[key]["drain"] is True and items[key]["deadline"] == isoz(deadline), items[key]
    assert items[("acme", "restore", None)]["drain"] is False
    assert items[("acme", "restore", None)]["deadline"] is None

    code, _, err = finish(graceful, timeout=5)
    assert code == 0 and "cleaned-up" in err and "sending SIGTERM" in err, err
    killed_at = exit_time(stubborn, timeout=8)
    code, _, err = finish(stubborn)
    assert code == 128 + signal.SIGKILL, err
    assert "SIGTERM" in err and "SIGKILL" in err
    # SIGKILL at the deadline: not before it, and not long after
    assert deadline.timestamp() - 0.3 <= killed_at <= deadline.timestamp() + 2.5, (killed_at, deadline)

    # drained jobs gone, the restore still running: maintenance, not draining
    st = d.wait_for(lambda s: s["leases"]["running"] == 1, timeout=5, what="only the restore left")
    assert st["mode"] == "maintenance" and st["leases"]["draining"] == 0
    assert restore.poll() is None

    # during the window: a backup is refused (75, the tenant message), a restore runs
    r = run_exec(d, "--tenant", "acme", "--kind", "backup", cmd=["echo", "must not run"])
    assert r.returncode == 75 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("Backups are paused until ") and "retry in " in r.stderr, r.stderr
    r = run_exec(d, "--tenant", "beta", "--kind", "restore", cmd=["sh", "-c", "echo restored"])
    assert (r.returncode, r.stdout) == (0, "restored\n"), r.stderr

    assert finish(restore)[0] == 3  # the restore ran to its end; its code comes back unchanged
    st = d.wait_for(lambda s: s["leases"]["running"] == 0, timeout=5, what="no leases")
    assert st["mode"] == "maintenance"
    assert set(lease_rows(d).values()) == {"released"}  # every job released its lease itself

    drains = {(h["detail"]["tenant"], h["detail"]["kind"]): h for h in journal(d, "drain")}
    assert set(drains) == {("acme", "backup"), ("beta", "backup")}
    assert all(
        h["window"] == "upgrade" and h["detail"]["then"] == "stop" and h["detail"]["deadline"] == isoz(deadline)
        for h in drains.values()
    )
    refused = journal(d, "refused")
    assert [(h["detail"]["tenant"], h["detail"]["kind"], h["detail"]["reason"]) for h in refused] == [
        ("acme", "backup", "maintenance")
    ]
    assert not [f for f in d.status()["faults"] if f["what"].startswith("overrun:")]


def test_then_keep_lets_a_drained_job_finish(daemon_factory, jobs) -> None:
    start = iso_in(6)
    d = daemon_factory(config(window("keep", start, iso_in(60), "    drain: {grace: 1s, then: keep}\n")))
    job = jobs.start(d, "--tenant", "acme", "--kind", "backup", cmd=["sh", "-c", "sleep 8; exit 4"])
    d.wait_for(lambda s: s["leases"]["running"] == 1, timeout=5, what="the lease")
    st = d.wait_for(lambda s: s["mode"] == "draining", timeout=8, what="draining")
    item = leases(st)[("acme", "backup", None)]
    assert item["drain"] is True and item["deadline"] is None and item["overrun"] is False
    # well past start + grace, still running and still draining (never signalled)
    time.sleep(max(0.0, utc(start).timestamp() + 2.5 - time.time()))
    assert job.poll() is None
    assert d.status()["mode"] == "draining"
    code, _, err = finish(job)
    assert code == 4 and "may finish" in err and "SIGTERM" not in err, err
    st = d.wait_for(lambda s: s["leases"]["running"] == 0, timeout=5, what="released")
    assert st["mode"] == "maintenance"
    assert [(h["detail"]["tenant"], h["detail"]["then"], h["detail"]["deadline"]) for h in journal(d, "drain")] == [
        ("acme", "keep", None)
    ]


def test_windows_with_resources_gate_and_drain_only_jobs_on_them(daemon_factory, jobs) -> None:
    start = iso_in(6)
    d = daemon_factory(
        config(window("repo", start, iso_in(60), "    resources: [repo-1]\n    drain: {grace: 2s, then: stop}\n"))
    )
    on_it = jobs.start(d, "--tenant", "acme", "--kind", "backup", "--resource", "repo-1", cmd=["sleep", "30"])
    elsewhere = jobs.start(d, "--tenant", "acme", "--kind", "backup", "--resource", "repo-2", cmd=["sleep", "30"])
    nowhere = jobs.start(d, "--tenant", "beta", "--kind", "backup", cmd=["sleep", "30"])
    d.wait_for(lambda s: s["leases"]["running"] == 3, timeout=5, what="three leases")
    code, _, err = finish(on_it, timeout=8)  # `sleep` dies of the SIGTERM
    assert code == 128 + signal.SIGTERM and "sending SIGTERM" in err, err
    st = d.wait_for(lambda s: s["leases"]["running"] == 2, timeout=5, what="the repo-1 job gone")
    assert st["mode"] == "maintenance" and st["leases"]["draining"] == 0  # the others are not drained
    assert all(not x["drain"] for x in st["leases"]["items"])
    assert elsewhere.poll() is None and nowhere.poll() is None

    assert admit(d, tenant="acme", kind="backup", resource="repo-1").status_code == 423
    for body in ({"resource": "repo-2"}, {}):
        r = admit(d, tenant="acme", kind="backup", **body)
        assert r.status_code == 200, r.text
        assert d.delete(f"/v1/leases/{r.json()['lease']}").status_code == 200
    assert [h["detail"]["resource"] for h in journal(d, "drain")] == ["repo-1"]


def test_a_drain_past_its_deadline_with_the_job_still_heartbeating_is_a_fault(daemon_factory) -> None:
    start = iso_in(5)  # the backup must be admitted before the start, on a slow machine too
    deadline = isoz(utc(start) + timedelta(seconds=1))
    d = daemon_factory(config(window("w", start, iso_in(60), "    drain: {grace: 1s, then: stop}\n")))
    # a client that heartbeats but never stops its job (not `maintd exec`)
    r = admit(d, tenant="acme", kind="backup")
    assert r.status_code == 200 and r.json()["heartbeat"] == 1, r.text
    lease = r.json()["lease"]
    beats: list[dict] = []
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.5):
            beats.append(d.post(f"/v1/leases/{lease}/heartbeat").json())

    t = threading.Thread(target=beat, daemon=True)
    t.start()
    [public] = [item["id"] for item in d.status()["leases"]["items"]]  # faults name the public id
    try:
        st = d.wait_for(
            lambda s: any(f["what"] == f"overrun:{public}" for f in s["faults"]), timeout=10, what="the overrun fault"
        )
        assert {"drain": True, "deadline": deadline} in beats
        assert st["mode"] == "draining"
        assert leases(st)[("acme", "backup", None)]["overrun"] is True
        fault = next(f for f in st["faults"] if f["what"] == f"overrun:{public}")
        assert public in fault["message"] and "acme/backup" in fault["message"] and deadline in fault["message"]
        assert lease not in str(st)
        over = journal(d, "drain-overrun")
        assert len(over) == 1 and over[0]["detail"]["tenant"] == "acme" and over[0]["detail"]["lease"] == public
        assert metric(d, "maintd_drain_overruns") == 1
    finally:
        stop.set()
        t.join()
    assert d.delete(f"/v1/leases/{lease}").status_code == 200
    st = d.status()
    assert not [f for f in st["faults"] if f["what"].startswith("overrun:")] and st["mode"] == "maintenance"
    assert metric(d, "maintd_drain_overruns") == 0
    assert len(journal(d, "drain-overrun")) == 1  # once per lease, not per heartbeat


# --------------------------------------------------------------------------- the client: exit codes, io, failure


def test_exec_passes_io_and_the_exit_code_through_and_releases_the_lease(daemon_factory) -> None:
    d = daemon_factory(config(window("later", iso_in(3600), iso_in(7200))))
    r = run_exec(
        d,
        "--tenant",
        "acme",
        "--kind",
        "backup",
        cmd=["sh", "-c", 'read x; echo "out:$x"; echo "err:$x" >&2; exit 7'],
        input="hello\n",
    )
    assert (r.returncode, r.stdout, r.stderr) == (7, "out:hello\n", "err:hello\n")
    assert d.status()["leases"]["running"] == 0
    r = run_exec(d, "--tenant", "acme", "--kind", "backup", cmd=["sh", "-c", "kill -TERM $$"])
    assert r.returncode == 128 + signal.SIGTERM, r.stderr
    r = run_exec(d, "--tenant", "acme", "--kind", "backup", cmd=["./no-such-program"])
    assert r.returncode == 127 and "no-such-program" in r.stderr, r.stderr
    rows = lease_rows(d)
    assert len(rows) == 3 and set(rows.values()) == {"released"}, rows
    assert d.status()["leases"]["running"] == 0


def test_a_lease_whose_client_died_expires_after_three_intervals(daemon_factory, jobs, tmp_path: Path) -> None:
    d = daemon_factory(config())
    pidfile = tmp_path / "job.pid"
    job = jobs.start(d, "--tenant", "acme", "--kind", "backup", cmd=["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"])
    d.wait_for(lambda s: s["leases"]["running"] == 1 and pidfile.exists(), timeout=5, what="the lease")
    job.kill()  # kill -9 of `maintd exec`: no release, no more heartbeats
    job.wait()
    os.kill(int(pidfile.read_text()), signal.SIGKILL)  # the orphaned job (its own session)
    died = time.time()
    d.wait_for(lambda s: s["leases"]["running"] == 0, timeout=8, what="the lease to expire")
    assert time.time() - died >= 1.5  # not at once: after the missed heartbeats
    expired = journal(d, "lease-expired")
    assert len(expired) == 1 and set(lease_rows(d).values()) == {"expired"}


def test_daemon_restarts_during_a_drain_keep_leases_and_deadlines(daemon_factory, jobs) -> None:
    start = iso_in(6)
    deadline = utc(start) + timedelta(seconds=9)
    d = daemon_factory(config(window("w", start, iso_in(60), "    drain: {grace: 9s, then: stop}\n")))
    job = jobs.start(d, "--tenant", "acme", "--kind", "backup", cmd=STUBBORN)
    d.wait_for(lambda s: s["leases"]["running"] == 1, timeout=5, what="the lease")
    st = d.wait_for(lambda s: s["mode"] == "draining", timeout=8, what="draining")
    before = leases(st)[("acme", "backup", None)]
    assert before["deadline"] == isoz(deadline)

    for how in ("SIGTERM", "kill -9"):
        if how == "SIGTERM":
            assert d.stop() == 0
        else:
            d.kill9()
        d.restart()
        st = d.status()
        assert st["mode"] == "draining", (how, st)
        after = leases(st)[("acme", "backup", None)]
        assert (after["id"], after["drain"], after["deadline"]) == (before["id"], True, before["deadline"]), how
    # more than 3 heartbeat intervals after the last restart: the client kept it alive
    time.sleep(3.5)
    assert time.time() < deadline.timestamp() - 0.5, "restarts too slow for this test's grace"
    assert job.poll() is None and d.status()["leases"]["running"] == 1

    killed_at = exit_time(job, timeout=10)
    code, _, err = finish(job)
    assert code == 128 + signal.SIGKILL and "SIGKILL" in err, err
    assert deadline.timestamp() - 0.3 <= killed_at <= deadline.timestamp() + 2.5
    st = d.wait_for(lambda s: s["leases"]["running"] == 0, timeout=5, what="released")
    assert st["mode"] == "maintenance"
    assert len(journal(d, "drain")) == 1  # ordered once, not again after each restart


def test_unreachable_daemon_allows_with_a_warning_or_denies(daemon_factory) -> None:
    d = daemon_factory(config())
    nobody = f"http://127.0.0.1:{free_port()}"
    r = run_exec(d, "--tenant", "acme", "--kind", "backup", cmd=["sh", "-c", "echo ran; exit 5"], url=nobody)
    assert (r.returncode, r.stdout) == (5, "ran\n") and "WARNING" in r.stderr and "cannot reach" in r.stderr
    r = run_exec(d, "--tenant", "acme", "--kind", "backup", "--if-unreachable", "deny", cmd=["echo", "ran"], url=nobody)
    assert (r.returncode, r.stdout) == (75, "") and "cannot reach" in r.stderr, r.stderr


def test_manual_enter_gates_with_provider_policy_unless_told_otherwise(daemon_factory, jobs) -> None:
    d = daemon_factory(config())
    running = jobs.start(d, "--tenant", "acme", "--kind", "backup", cmd=["sleep", "30"])
    d.wait_for(lambda s: s["leases"]["running"] == 1, timeout=5, what="the lease")
    assert d.cli("enter", "--reason", "SAN firmware", "--for", "1h").returncode == 0
    code, _, err = finish(running, timeout=6)  # drained through provider.policy: backups denied
    assert code == 128 + signal.SIGTERM and "sending SIGTERM" in err, err
    r = run_exec(d, "--tenant", "beta", "--kind", "backup", cmd=["true"])
    assert r.returncode == 75 and "Backups are paused" in r.stderr, r.stderr
    assert run_exec(d, "--tenant", "beta", "--kind", "restore", cmd=["true"]).returncode == 0

    assert d.cli("exit").returncode == 0
    assert run_exec(d, "--tenant", "beta", "--kind", "backup", cmd=["true"]).returncode == 0
    assert d.cli("enter", "--reason", "everything stops", "--policy", "strict").returncode == 0
    r = run_exec(d, "--tenant", "beta", "--kind", "restore", cmd=["true"])
    assert r.returncode == 75 and "Test Cloud is under maintenance until" in r.stderr, r.stderr


# --------------------------------------------------------------------------- the API


def test_would_overlap_and_retry_after_at_the_api(daemon_factory) -> None:
    now = datetime.now(UTC)
    at = lambda s: iso_in(s, now)  # noqa: E731 - one instant for the whole config
    d = daemon_factory(
        config(
            window("soon", at(3600), at(7200), "    tenants: [acme]\n")
            + window("touching", at(7200), at(10800), "    tenants: [acme]\n")
            + window("far", at(5 * 86400), at(5 * 86400 + 3600), "    tenants: [gamma]\n")
            + window("now", at(-60), at(600), "    tenants: [beta]\n")
            + window("next", at(600), at(1200), "    tenants: [beta]\n    policy: strict\n")
        )
    )

    def refused(body: dict, reason: str, until: str) -> dict:
        r = admit(d, **body)
        assert r.status_code == 423, (body, r.status_code, r.text)
        out = r.json()
        assert out["admitted"] is False and out["reason"] == reason, out
        assert r.headers["Retry-After"] == str(out["retry_after"]) and isinstance(out["retry_after"], int)
        expected = utc(until).timestamp() - time.time()
        assert abs(out["retry_after"] - expected) <= 3, (body, out["retry_after"], expected)
        return out

    def admitted(body: dict) -> None:
        r = admit(d, **body)
        assert r.status_code == 200, (body, r.text)
        out = r.json()
        assert out["admitted"] is True and len(out["lease"]) >= 32 and out["heartbeat"] == 1
        assert d.delete(f"/v1/leases/{out['lease']}").json()["released"].startswith("lse_")

    admitted({"tenant": "acme", "kind": "backup"})
    admitted({"tenant": "acme", "kind": "backup", "expected_duration": "30m"})
    admitted({"tenant": "acme", "kind": "backup", "expected_duration": 3000})
    admitted({"tenant": "acme", "kind": "restore", "expected_duration": "2h"})  # restores are allowed
    # would still run at `soon`'s start: told to come back after soon+touching (one period)
    out = refused({"tenant": "acme", "kind": "backup", "expected_duration": "2h"}, "would-overlap", at(10800))
    assert out["message"].startswith("Backups are paused until ")
    refused({"tenant": "acme", "kind": "backup", "expected_duration": 3700}, "would-overlap", at(10800))
    # beyond the day the daemon plans ahead
    admitted({"tenant": "gamma", "kind": "backup", "expected_duration": "4d"})
    refused({"tenant": "gamma", "kind": "backup", "expected_duration": "6d"}, "would-overlap", at(5 * 86400 + 3600))
    # in maintenance now: until the end of the merged period (now + next), not of `now`
    out = refused({"tenant": "beta", "kind": "backup"}, "maintenance", at(1200))
    assert out["message"] == (
        f"Backups are paused until {utc(at(1200)).strftime('%a %-d %b %Y %H:%M')} UTC; they resume automatically."
    )
    admitted({"tenant": "beta", "kind": "restore"})
    # ... but a restore that would run into `next` (strict) is not
    refused({"tenant": "beta", "kind": "restore", "expected_duration": "15m"}, "would-overlap", at(1200))
    st = d.status()
    assert st["leases"]["running"] == 0
    reasons = sorted((h["detail"]["tenant"], h["detail"]["reason"]) for h in journal(d, "refused"))
    assert reasons == [("acme", "would-overlap")] * 2 + [
        ("beta", "maintenance"),
        ("beta", "would-overlap"),
        ("gamma", "would-overlap"),
    ]


BAD_REQUESTS = [
    # (json body, status, text the error must contain)
    ({"tenant": "nobody", "kind": "backup"}, 404, 'unknown tenant "nobody"'),
    ({"tenant": "acme", "kind": ""}, 422, "kind: String should have at least 1 character"),
    ({"tenant": "acme", "kind": "   "}, 422, "kind: must not be blank"),
    ({"tenant": "acme", "kind": "backup", "resource": ""}, 422, "resource: "),
    ({"tenant": "acme", "kind": "backup", "expected_duration": -1}, 422, "expected_duration: must not be negative"),
    ({"tenant": "acme", "kind": "backup", "expected_duration": "-1h"}, 422, "expected_duration: expected a duration"),
    ({"tenant": "acme", "kind": "backup", "expected_duration": "400d"}, 422, "expected_duration: must be at most 366d"),
    ({"tenant": "acme", "kind": "backup", "expected_duration": True}, 422, "expected_duration: "),
    ({"tenant": "acme"}, 422, "kind: Field required"),
    ({"kind": "backup"}, 422, "tenant: Field required"),
    ({"tenant": ["acme"], "kind": "backup"}, 422, "tenant: Input should be a valid string"),
    ({"tenant": "acme", "kind": 7}, 422, "kind: Input should be a valid string"),
]


def test_bad_requests_are_4xx_with_a_clear_message(daemon_factory) -> None:
    d = daemon_factory(config())
    for body, status, needle in BAD_REQUESTS:
        r = admit(d, **body)
        assert r.status_code == status, (body, r.status_code, r.text)
        assert needle in r.json()["error"], (body, r.json())
    for method in ("post", "delete"):
        path = "/v1/leases/lse_nope/heartbeat" if method == "post" else "/v1/leases/lse_nope"
        r = getattr(d, method)(path)
        assert r.status_code == 404 and "unknown" in r.json()["error"], r.text
    r = run_exec(d, "--tenant", "nobody", "--kind", "backup", cmd=["echo", "ran"])
    assert (r.returncode, r.stdout, r.stderr) == (1, "", 'Error: unknown tenant "nobody"\n')
    r = run_exec(d, "--tenant", "acme", "--kind", "backup", "--expected-duration", "soon", cmd=["echo", "ran"])
    assert r.returncode == 2 and r.stdout == "" and "--expected-duration" in r.stderr, r.stderr
    assert d.status()["leases"]["running"] == 0 and lease_rows(d) == {}
