"""A job is its whole process tree: ``maintd exec`` waits for, signals and kills all of it.

Real ``sh`` jobs through :func:`scheduler.execjob.run_gated` against a recording fake
daemon (as in test_execjob.py), which notes when each call came and, at the release,
whether the job's processes were still there. The jobs write their pids to files so the
tests can look them up in ``/proc``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import maintd_argv

from scheduler import execjob, proctree
from scheduler.jobenv import is_secret_name, scrub_env

pytestmark = pytest.mark.skipif(not proctree.LINUX, reason="process trees are read from Linux's /proc")


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def alive(pid: int) -> bool:
    p = proctree.read_stat(pid)
    return p is not None and p.alive


class Daemon:
    """Admits at once (heartbeat 0.2 s), answers heartbeats from ``beats`` (the last repeats),
    records (time, method, path) of every call and runs ``on_release`` at the release."""

    def __init__(self, beats=({"drain": False, "deadline": None},), on_release=lambda: None) -> None:
        self.beats = list(beats)
        self.on_release = on_release
        self.calls: list[tuple[float, str, str]] = []
        self.released_at: float | None = None
        self.at_release: object = None
        self.lock = threading.Lock()

    def call(self, method: str, path: str, **_kw):
        with self.lock:
            self.calls.append((time.monotonic(), method, path))
        if path == "/v1/admissions":
            return 200, {"admitted": True, "lease": "lse_1", "heartbeat": 0.2}
        if path.endswith("/heartbeat"):
            return 200, self.beats.pop(0) if len(self.beats) > 1 else self.beats[0]
        self.released_at = time.monotonic()
        self.at_release = self.on_release()
        return 200, {"released": "lse_1"}

    def beat_times(self) -> list[float]:
        return [t for t, _m, p in self.calls if p.endswith("/heartbeat")]


def run(daemon: Daemon, script: str) -> int:
    return execjob.run_gated(
        daemon,
        tenant="acme",
        kind="backup",
        resource=None,
        expected_duration=None,
        if_unreachable="allow",
        cmd=["sh", "-c", script],
    )


def read_pids(path: Path, timeout: float = 3.0) -> list[int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().endswith("\n"):
            return [int(x) for x in path.read_text().split()]
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written")


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.fixture
def pidfiles(tmp_path):
    """Paths for the jobs' pid files; whatever they name is killed at the end, pass or fail."""
    made: list[Path] = []

    def make(name: str) -> Path:
        made.append(tmp_path / name)
        return made[-1]

    yield make
    for path in made:
        for pid in [int(x) for x in path.read_text().split()] if path.exists() else []:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def drain_in(seconds: float) -> dict:
    return {"drain": True, "deadline": iso(datetime.now(UTC) + timedelta(seconds=seconds))}


def test_a_child_that_ignores_sigterm_is_killed_before_the_lease_goes(pidfiles, capsys) -> None:
    child = pidfiles("child")
    bystander = subprocess.Popen(["sleep", "30"])  # the test runner's own child: not the job's
    d = Daemon(beats=[drain_in(2)], on_release=lambda: alive(read_pids(child)[0]))
    t0 = time.monotonic()
    try:
        # the main process dies of the SIGTERM; its child, in the same group, ignores it
        code = run(d, f"sh -c 'echo $$ > {child}; trap \"\" TERM; exec sleep 60' & sleep 60")
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
    (pid,) = read_pids(child)
    assert code == 128 + signal.SIGTERM
    assert not alive(pid) and proctree.read_stat(pid) is None  # killed and reaped (no zombie)
    assert d.at_release is False  # at the release the child was already gone ...
    assert d.released_at is not None and d.released_at - t0 >= execjob.MIN_TERM_TO_KILL  # ... after the kill
    assert "drain deadline reached" in capsys.readouterr().err
    # heartbeats went on while the main process was dead and the child was not
    assert [t for t in d.beat_times() if t > t0 + 1.2]
    assert proctree.set_subreaper(False) is False  # run_gated put the runner's setting back


def test_a_setsid_grandchild_is_gone_at_the_deadline(pidfiles) -> None:
    main, grand = pidfiles("main"), pidfiles("grand")
    inner = f'echo $$ $(cut -d" " -f5 /proc/$$/stat) > {grand}.tmp; trap "" TERM; sleep 60 & echo $! >> {grand}.tmp; mv {grand}.tmp {grand}; wait'
    d = Daemon(beats=[drain_in(2)], on_release=lambda: [alive(p) for p in read_pids(grand)[::2]])
    t0 = time.monotonic()
    code = run(d, f"echo $$ > {main}; setsid sh -c '{inner}' & wait")
    took = time.monotonic() - t0
    (main_pid,) = read_pids(main)
    grand_pid, grand_pgid, sleep_pid = read_pids(grand)
    assert grand_pgid == grand_pid != main_pid  # it did leave the job's process group
    assert code == 128 + signal.SIGTERM
    assert execjob.MIN_TERM_TO_KILL <= took < execjob.MIN_TERM_TO_KILL + 2.5, took
    assert d.at_release == [False, False]
    assert not alive(grand_pid) and not alive(sleep_pid)


def test_a_daemonised_child_keeps_the_job_and_its_lease_alive(pidfiles, tmp_path) -> None:
    marker = tmp_path / "done"
    d = Daemon(on_release=lambda: marker.exists())
    t0 = time.monotonic()
    code = run(d, f"setsid sh -c 'sleep 1.5; echo done > {marker}' </dev/null >/dev/null 2>&1 & exit 3")
    took = time.monotonic() - t0
    assert code == 3  # the main process's code
    assert 1.5 <= took < 3.5, took
    assert d.at_release is True  # released only after the daemonised child had finished
    assert len([t for t in d.beat_times() if t > t0 + 0.5]) >= 3  # heartbeats after the main process ended


def test_a_drain_reaches_a_daemonised_child_that_outlived_the_main_process(pidfiles, tmp_path) -> None:
    child, marker = pidfiles("child"), tmp_path / "term"
    inner = f'echo $$ > {child}; trap "echo term > {marker}; exit 0" TERM; while :; do sleep 0.1; done'
    d = Daemon(beats=[{"drain": False, "deadline": None}, drain_in(30)])
    t0 = time.monotonic()
    code = run(d, f"setsid sh -c '{inner}' </dev/null >/dev/null 2>&1 & exit 0")
    assert code == 0  # it ended on the SIGTERM: nothing needed killing
    assert time.monotonic() - t0 < 2.5
    assert marker.read_text() == "term\n"
    assert not alive(read_pids(child)[0])


def test_descendants_and_kill_tree_follow_children_out_of_the_group(pidfiles) -> None:
    pids = pidfiles("pids")
    proc = subprocess.Popen(
        ["sh", "-c", f"setsid sh -c 'trap \"\" TERM; sleep 60 & echo $$ $! > {pids}; wait' & sleep 60"],
        start_new_session=True,
    )
    try:
        inner, sleep_pid = read_pids(pids)
        found = proctree.descendants(proc.pid)
        assert {inner, sleep_pid} <= found and proc.pid not in found
        t0 = time.monotonic()
        killed = proctree.kill_tree(proc.pid, grace=0.5)
        assert 0.5 <= time.monotonic() - t0 < 2.0
        assert proc.wait(timeout=2) == -signal.SIGTERM
        assert {inner, sleep_pid} <= killed and proc.pid not in killed
        assert not alive(inner) and not alive(sleep_pid)
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("MAINTD_TOKEN", True),
        ("MAINTD_GATE_TOKEN", True),
        ("MAINTD_READ_TOKEN", True),
        ("MAINTD_TOKEN_FILE", True),
        ("SMTP_PASSWORD", True),
        ("GITHUB_TOKEN", True),
        ("webhook_secret", True),
        ("DB_PASSWD", True),
        ("PATH", False),
        ("HOME", False),
        ("LANG", False),
        ("MAINTD_URL", False),
        ("MAINTD_SOCKET", False),
        ("BACKUP_TARGET", False),
        ("TOKENIZER", False),
    ],
    ids=lambda v: str(v),
)
def test_secret_names(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_scrub_env_drops_secrets_named_or_by_value_and_keeps_the_rest() -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/backup",
        "LANG": "de_DE.UTF-8",
        "MAINTD_TOKEN": "t" * 40,
        "SMTP_PASSWORD": "hunter22",
        "PAGERDUTY_KEY": "pd-routing-key-123",  # named in a ${VAR} of a secret field
        "COPY_OF_IT": "sm-api-key-abcdef",  # holds a secret maintd read
        "VERBOSE": "1",  # short values never count as a secret
        "BACKUP_TARGET": "s3://bucket",
    }
    out = scrub_env(env, ["pagerduty_key"], secret_values=["sm-api-key-abcdef", "1"])
    assert out == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/backup",
        "LANG": "de_DE.UTF-8",
        "VERBOSE": "1",
        "BACKUP_TARGET": "s3://bucket",
    }
    assert env["MAINTD_TOKEN"] == "t" * 40  # the input is not changed


def test_the_job_does_not_see_maintds_tokens(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("MAINTD_TOKEN", "a" * 40)
    monkeypatch.setenv("MAINTD_GATE_TOKEN", "g" * 40)
    monkeypatch.setenv("SMTP_PASSWORD", "hunter22")
    monkeypatch.setenv("BACKUP_TARGET", "s3://bucket")
    out = tmp_path / "env"
    assert run(Daemon(), f"env > {out}") == 0
    names = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert not {"MAINTD_TOKEN", "MAINTD_GATE_TOKEN", "SMTP_PASSWORD"} & names.keys()
    assert names["BACKUP_TARGET"] == "s3://bucket" and names["PATH"] == os.environ["PATH"]


def test_without_proc_only_the_group_is_known(monkeypatch, pidfiles) -> None:
    """Non-Linux fallback: the process group gets the signals; the main process ends the wait."""
    monkeypatch.setattr(proctree, "LINUX", False)
    assert proctree.table() == {} and proctree.descendants(os.getpid()) == set()
    d = Daemon(beats=[drain_in(30)])
    t0 = time.monotonic()
    assert run(d, 'trap "exit 7" TERM; while :; do sleep 0.1; done') == 7  # the group got the SIGTERM
    assert d.released_at is not None and d.released_at - t0 < 2.0


def test_a_sigterm_to_exec_itself_reaches_a_child_that_left_the_group(pidfiles) -> None:
    child = pidfiles("child")
    inner = f'trap "exit 0" TERM; echo $$ > {child}; while :; do sleep 0.1; done'

    def stop_exec() -> None:
        read_pids(child)
        os.kill(os.getpid(), signal.SIGTERM)  # as systemd or a terminal would stop `maintd exec`

    threading.Thread(target=stop_exec, daemon=True).start()
    t0 = time.monotonic()
    code = run(Daemon(), f"setsid sh -c '{inner}' </dev/null >/dev/null 2>&1 & wait")
    assert code == 128 + signal.SIGTERM and time.monotonic() - t0 < 3.0
    assert not alive(read_pids(child)[0])


def P(ppid: int, start: int, state: str = "S") -> proctree.Proc:
    return proctree.Proc(ppid=ppid, state=state, pgid=ppid, start=start)


@pytest.mark.parametrize(
    ("tracked", "procs", "alive_after", "tracked_after"),
    [
        ({10: 0}, {10: P(1, 50), 11: P(10, 60), 12: P(11, 61)}, {10, 11, 12}, {10: 50, 11: 60, 12: 61}),
        ({10: 50, 11: 60}, {10: P(1, 50), 11: P(1, 60, "Z")}, {10}, {10: 50, 11: 60}),
        ({10: 50, 11: 60}, {10: P(1, 50)}, {10}, {10: 50}),
        ({10: 50}, {10: P(1, 99), 11: P(10, 100)}, set(), {}),
    ],
    ids=["descendants_join", "zombie_kept_to_reap", "gone_dropped", "reused_pid_is_not_the_job"],
)
def test_follow(tracked, procs, alive_after, tracked_after) -> None:
    assert proctree._follow(tracked, procs) == alive_after
    assert tracked == tracked_after


def test_the_real_command_adopts_and_waits_for_an_orphan(tmp_path, pidfiles) -> None:
    """`maintd exec` as its own process (no daemon: --if-unreachable allow): the orphan is
    re-parented to it (the subreaper), not to init, and it waits for the orphan."""
    out, child = tmp_path / "out", pidfiles("child")
    inner = f"echo $$ > {child}; sleep 1; grep PPid /proc/$$/status > {out}.tmp; mv {out}.tmp {out}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAINTD_")}
    env["MAINTD_URL"] = "http://127.0.0.1:9"  # nobody listens on the discard port
    argv = ["exec", "--tenant", "acme", "--kind", "backup", "--", "sh", "-c"]
    script = f"setsid sh -c '{inner}' </dev/null >/dev/null 2>&1 & exit 4"
    p = subprocess.Popen(maintd_argv() + argv + [script], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    _, err = p.communicate(timeout=20)
    assert p.returncode == 4, err
    assert out.exists()  # exec ended only after the orphan had
    assert out.read_text().split() == ["PPid:", str(p.pid)]  # adopted by exec, not by init
    assert not alive(read_pids(child)[0])


def test_a_job_whose_main_process_exited_0_but_whose_rest_was_killed_exits_137(pidfiles) -> None:
    child = pidfiles("child")
    d = Daemon(beats=[drain_in(1)], on_release=lambda: alive(read_pids(child)[0]))
    code = run(
        d, f"setsid sh -c 'echo $$ > {child}; trap \"\" TERM; exec sleep 60' </dev/null >/dev/null 2>&1 & exit 0"
    )
    assert code == 128 + signal.SIGKILL
    assert d.at_release is False
