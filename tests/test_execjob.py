"""``maintd exec``'s client logic against a scripted daemon: what it does with each answer.

The real daemon is in test_gate_e2e.py; here the answers that are hard to provoke there
(a 503, a lease the daemon forgot, a drain order learned after its deadline) drive real
``sh`` jobs through :func:`scheduler.execjob.run_gated`.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from scheduler import execjob
from scheduler.errors import MaintdError, RefusedError, UnreachableError


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Daemon:
    """Answers ``client.call`` from a script: ``admit`` is the admission's (status, body) or
    an exception; ``beats`` are heartbeat answers in order (the last one repeats)."""

    def __init__(self, admit, beats=({"drain": False, "deadline": None},)) -> None:
        self.admit = admit
        self.beats = list(beats)
        self.calls: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def call(self, method: str, path: str, **_kw):
        with self.lock:
            self.calls.append((method, path))
        if path == "/v1/admissions":
            admit = self.admit
            if isinstance(admit, list):  # one answer per admission, the last one repeats
                admit = admit.pop(0) if len(admit) > 1 else admit[0]
            if isinstance(admit, BaseException):
                raise admit
            return admit
        if path.endswith("/heartbeat"):
            answer = self.beats.pop(0) if len(self.beats) > 1 else self.beats[0]
            if isinstance(answer, BaseException):
                raise answer
            return 200, answer
        return 200, {"released": path.rsplit("/", 1)[1]}

    def released(self) -> bool:
        return ("DELETE", "/v1/leases/lse_1") in self.calls


ADMITTED = (200, {"admitted": True, "lease": "lse_1", "heartbeat": 0.2})


def run(daemon: Daemon, cmd: list[str], if_unreachable: str = "allow") -> int:
    return execjob.run_gated(
        daemon,
        tenant="acme",
        kind="backup",
        resource=None,
        expected_duration=None,
        if_unreachable=if_unreachable,
        cmd=cmd,
    )


@pytest.fixture(autouse=True)
def keep_signal_handlers():
    # run_gated installs SIGTERM/SIGINT/SIGHUP forwarders for the job's lifetime
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


@pytest.mark.parametrize(
    "error",
    [
        UnreachableError("cannot reach maintd at http://x (timed out)"),
        MaintdError("maintd at http://x failed: cannot write: database is locked"),
    ],
    ids=["unreachable", "http_503"],
)
def test_a_daemon_that_cannot_answer_follows_if_unreachable(error, capsys) -> None:
    assert run(Daemon(error), ["sh", "-c", "exit 9"]) == 9
    assert "WARNING" in capsys.readouterr().err
    assert run(Daemon(error), ["sh", "-c", "exit 9"], if_unreachable="deny") == execjob.EX_TEMPFAIL
    assert "not running the job" in capsys.readouterr().err


def test_a_4xx_refusal_is_an_error_not_a_run() -> None:
    with pytest.raises(RefusedError):
        run(Daemon(RefusedError('unknown tenant "acme"')), ["sh", "-c", "exit 0"])


def test_denied_prints_the_tenant_message_and_exits_75(capsys) -> None:
    denied = (
        423,
        {
            "admitted": False,
            "reason": "maintenance",
            "retry_after": 600,
            "message": "Backups are paused until Sat 5 Dec 2026 23:00 CET.",
        },
    )
    assert run(Daemon(denied), ["sh", "-c", "echo ran"]) == execjob.EX_TEMPFAIL
    out = capsys.readouterr()
    assert out.out == "" and out.err.splitlines()[0] == "Backups are paused until Sat 5 Dec 2026 23:00 CET."
    assert "retry in 10m" in out.err


def test_a_drain_learned_after_its_deadline_still_gives_the_job_a_moment(capsys) -> None:
    late = {"drain": True, "deadline": iso(datetime.now(UTC) - timedelta(minutes=5))}
    d = Daemon(ADMITTED, beats=[late])
    t0 = time.monotonic()
    assert run(d, ["sh", "-c", 'trap "" TERM; while :; do sleep 0.1; done']) == 128 + signal.SIGKILL
    took = time.monotonic() - t0
    assert execjob.MIN_TERM_TO_KILL <= took < execjob.MIN_TERM_TO_KILL + 2, took
    assert d.released()
    assert "sending SIGTERM" in capsys.readouterr().err


def test_heartbeats_go_on_through_the_grace(capsys) -> None:
    deadline = datetime.now(UTC) + timedelta(seconds=2)
    d = Daemon(ADMITTED, beats=[{"drain": True, "deadline": iso(deadline)}])
    t0 = time.time()
    assert run(d, ["sh", "-c", 'trap "" TERM; while :; do sleep 0.1; done']) == 128 + signal.SIGKILL
    killed = time.time()
    # SIGKILL at the deadline (whole seconds on the wire: up to 1 s before "now + 2 s")
    assert deadline.replace(microsecond=0).timestamp() - 0.3 <= killed <= deadline.timestamp() + 1.0
    beats = [c for c in d.calls if c[1].endswith("/heartbeat")]
    assert len(beats) >= int((killed - t0) / 0.2) - 2  # one every 0.2 s, SIGTERM or not
    assert d.released()


GONE = RefusedError("unknown or expired lease")
DENIED = (423, {"admitted": False, "reason": "maintenance", "retry_after": 60, "message": "paused"})


def test_a_lease_the_daemon_forgot_is_re_admitted_and_heartbeats_go_on_with_the_new_one(capsys) -> None:
    again = (200, {"admitted": True, "lease": "lse_2", "heartbeat": 0.2})
    d = Daemon([ADMITTED, again], beats=[GONE, {"drain": False, "deadline": None}])
    assert run(d, ["sh", "-c", "sleep 1; exit 6"]) == 6
    assert [c[1] for c in d.calls if c[1] == "/v1/admissions"] == ["/v1/admissions"] * 2
    beats = [c[1] for c in d.calls if c[1].endswith("/heartbeat")]
    assert beats[0] == "/v1/leases/lse_1/heartbeat" and set(beats[1:]) == {"/v1/leases/lse_2/heartbeat"}
    assert d.calls[-1] == ("DELETE", "/v1/leases/lse_2")  # the lease it holds at the end
    assert "re-admitted with a new lease" in capsys.readouterr().err


def test_a_lost_lease_whose_re_admission_is_denied_stops_the_job_term_then_kill(capsys) -> None:
    d = Daemon([ADMITTED, DENIED], beats=[GONE])
    t0 = time.monotonic()
    code = run(d, ["sh", "-c", 'trap "" TERM; while :; do sleep 0.1; done'])
    took = time.monotonic() - t0
    assert code == 128 + signal.SIGKILL  # never left running unseen
    assert execjob.MIN_TERM_TO_KILL <= took < execjob.MIN_TERM_TO_KILL + 2, took
    err = capsys.readouterr().err
    assert "re-admission denied (maintenance): sending SIGTERM" in err


def test_a_lost_lease_with_maintd_unreachable_lets_the_job_go_on_when_allowed(capsys) -> None:
    down = UnreachableError("cannot reach maintd at http://x (connection refused)")
    d = Daemon([ADMITTED, down], beats=[GONE])
    assert run(d, ["sh", "-c", "sleep 1; exit 6"]) == 6
    assert len([c for c in d.calls if c[1] == "/v1/admissions"]) >= 2  # asked again on each beat
    d = Daemon([ADMITTED, down], beats=[GONE])
    assert run(d, ["sh", "-c", 'trap "" TERM; sleep 10'], if_unreachable="deny") == 128 + signal.SIGKILL


def test_heartbeat_failures_are_reported_once_and_recovery_too(capsys) -> None:
    down = UnreachableError("cannot reach maintd at http://x (connection refused)")
    d = Daemon(ADMITTED, beats=[down, down, down, {"drain": False, "deadline": None}])
    assert run(d, ["sh", "-c", "sleep 1.2; exit 0"]) == 0
    err = capsys.readouterr().err
    assert err.count("heartbeat failed") == 1 and err.count("heartbeat ok again") == 1, err
