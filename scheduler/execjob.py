"""``maintd exec``: a tenant job behind the gate.

Asks for admission; when denied exits 75 (EX_TEMPFAIL) with the tenant message on
stderr, so the job's scheduler retries later. When admitted runs CMD in its own process
group (stdin, stdout and stderr are CMD's own; its environment without maintd's secrets,
see :mod:`scheduler.jobenv`), heartbeats the lease in the background until the job ends,
and on a drain order sends SIGTERM, then SIGKILL at the deadline (``then: keep`` has
none: the job may finish). The job is CMD's whole process tree (:mod:`scheduler.proctree`):
children that left its group or outlived it are waited for, signalled and killed too, and
the lease is released only once the last of them is gone. CMD's exit code is returned
unchanged (a signal as 128 + its number, as shells report it; 137 when CMD exited 0 but
the rest of the job had to be killed at the deadline).

When the daemon cannot be reached (or fails with a 5xx) ``--if-unreachable`` decides:
``allow`` (default: a maintenance daemon that is down must not stop a provider's
backups) runs CMD with a warning, ``deny`` exits 75. A 4xx refusal (unknown tenant, a
bad request) is an error: exit 1 with the daemon's message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from . import proctree
from .errors import MaintdError, RefusedError
from .jobenv import scrub_env
from .status_view import human

EX_TEMPFAIL = 75
# A drain order learned after its deadline (maintd was down through the grace) still
# gives the job this long between SIGTERM and SIGKILL.
MIN_TERM_TO_KILL = 2.0


def _warn(msg: str) -> None:
    print(f"maintd exec: {msg}", file=sys.stderr, flush=True)


def run_gated(
    client: Any,
    *,
    tenant: str,
    kind: str,
    resource: str | None,
    expected_duration: str | None,
    if_unreachable: str,
    cmd: list[str],
) -> int:
    body: dict[str, Any] = {"tenant": tenant, "kind": kind}
    if resource:
        body["resource"] = resource
    if expected_duration:
        body["expected_duration"] = expected_duration
    lease: str | None = None
    interval = 10.0
    try:
        status, out = client.call("POST", "/v1/admissions", json_body=body, ok_statuses=(423,), timeout=10)
    except RefusedError:
        raise  # 4xx: the request is wrong (unknown tenant ...); exit 1 with the daemon's message
    except MaintdError as exc:  # unreachable, or a daemon that answers 5xx: as good as down
        if if_unreachable == "deny":
            _warn(f"{exc}; not running the job (--if-unreachable deny)")
            return EX_TEMPFAIL
        _warn(f"WARNING: {exc}; running the job without the gate (--if-unreachable allow)")
        status, out = 0, None
    if status == 423:
        print(out.get("message") or "denied: maintenance", file=sys.stderr, flush=True)
        _warn(f"denied ({out.get('reason')}){_retry_in(out.get('retry_after'))}")
        return EX_TEMPFAIL
    if out:
        lease = out.get("lease")
        try:
            interval = max(0.2, float(out.get("heartbeat") or interval))
        except (TypeError, ValueError):
            pass
    previous = proctree.set_subreaper(True)  # the job's orphans come back to us, not to init
    try:
        return _run_job(client, lease, interval, cmd, partial(_regate, client, body, if_unreachable))
    finally:
        if previous is False:
            proctree.set_subreaper(False)  # (in a test runner) the job and its orphans are gone


def _run_job(client: Any, lease: str | None, interval: float, cmd: list[str], regate: Callable) -> int:
    """Run CMD and wait for its whole process tree; release the lease only after the last one."""
    before = proctree.children(os.getpid())  # a test runner's own children are not the job's
    try:
        proc = subprocess.Popen(cmd, start_new_session=True, env=scrub_env(os.environ))
    except OSError as exc:
        _warn(f"cannot run {cmd[0]!r}: {exc.strerror or exc}")
        _release(client, lease)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    tree = proctree.JobTree(proc, exclude=before)

    # Signals sent to `maintd exec` itself go to the job too (it has its own process group,
    # so a terminal's Ctrl-C reaches it only through here). From a thread: the handler runs
    # in the main thread, which may hold the tree's lock just then.
    def forward(signum, _frame) -> None:
        threading.Thread(target=tree.signal, args=(signum,), daemon=True, name="forward").start()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    done = threading.Event()
    beat = None
    held = [lease]  # the heartbeat thread replaces it when the job is re-admitted
    if lease:
        beat = threading.Thread(
            target=_heartbeat, args=(client, held, interval, tree, done, regate), daemon=True, name="heartbeat"
        )
        beat.start()
    # The main process's exit is not the job's end: daemonised children are the job too,
    # and the lease (with its heartbeats) stays until the last of them is gone.
    code = tree.wait()
    done.set()
    if beat is not None:
        beat.join(timeout=12)  # a heartbeat or re-admission in flight must not land after the release
    _release(client, held[0])
    if code == 0 and tree.killing:
        return 128 + signal.SIGKILL  # the main process was done, but the rest of the job was killed
    return code if code >= 0 else 128 - code


def _retry_in(seconds: Any) -> str:
    try:
        return f"; retry in {human(float(seconds))}" if seconds is not None else ""
    except (TypeError, ValueError):
        return ""


def _release(client: Any, lease: str | None) -> None:
    if not lease:
        return
    try:
        client.call("DELETE", f"/v1/leases/{lease}", timeout=5)
    except MaintdError:
        pass  # an unreleased lease expires after three heartbeat intervals


def _regate(client: Any, body: dict, if_unreachable: str) -> tuple[str | None, str | None]:
    """Ask again after the lease was lost (it expired while maintd was unreachable, or it was
    deleted): ``(new lease, None)``, ``(None, why the job must stop)``, or ``(None, None)``
    when maintd cannot be reached and ``--if-unreachable allow`` lets the job go on for now."""
    try:
        status, out = client.call("POST", "/v1/admissions", json_body=body, ok_statuses=(423,), timeout=5)
    except RefusedError as exc:  # the tenant is gone from the config, or the token lost its scope
        return None, f"re-admission refused: {exc}"
    except MaintdError as exc:
        return None, (f"{exc} (--if-unreachable deny)" if if_unreachable == "deny" else None)
    if status == 423 or not isinstance(out, dict) or not out.get("lease"):
        return None, f"re-admission denied ({(out or {}).get('reason') or 'no lease'})"
    return str(out["lease"]), None


def _heartbeat(
    client: Any,
    held: list,
    interval: float,
    tree: proctree.JobTree,
    done: threading.Event,
    regate: Callable[[], tuple[str | None, str | None]],
) -> None:
    """Heartbeat ``held[0]`` every ``interval`` until ``done`` (the job ended), and carry out a drain order.

    Heartbeats go on after SIGTERM: the lease (and the drain the status shows) must stay
    alive through the grace, and a job that outlives its deadline is an overrun the daemon
    can only see while it hears from it. SIGKILL is timed by this process's own clock, so
    it happens at the deadline even when the daemon is down by then.
    """
    kill_at: float | None = None  # time.monotonic() of the SIGKILL, once a stop drain is ordered
    drained = False
    failing = False
    lost = False
    next_beat = time.monotonic() + interval
    timeout = min(5.0, max(1.0, interval))
    while True:
        wake = next_beat if kill_at is None else min(next_beat, kill_at)
        if done.wait(max(0.0, wake - time.monotonic())):
            return
        if kill_at is not None and time.monotonic() >= kill_at:
            _warn("drain deadline reached: sending SIGKILL")
            tree.kill()
            kill_at = None
        if time.monotonic() < next_beat:
            continue
        next_beat = time.monotonic() + interval
        if lost:
            continue
        try:
            _, out = client.call("POST", f"/v1/leases/{held[0]}/heartbeat", timeout=timeout)
        except RefusedError as exc:  # 404: maintd no longer knows the lease (it expired, or was deleted)
            lost, kill_at = _lost(exc, held, regate, tree, interval, kill_at)
            continue
        except MaintdError as exc:
            if not failing:
                _warn(f"heartbeat failed: {exc}; still trying")
            failing = True
            continue
        if failing:
            _warn("heartbeat ok again")
            failing = False
        if drained or not isinstance(out, dict) or not out.get("drain"):
            continue
        drained = True
        deadline = _parse(out.get("deadline"))
        if deadline is None:
            _warn("maintenance started: this job may finish (drain: keep)")
            continue
        left = deadline.timestamp() - time.time()
        kill_at = time.monotonic() + max(left, MIN_TERM_TO_KILL)
        _warn(f"maintenance started: sending SIGTERM, SIGKILL at {out['deadline']}")
        tree.signal(signal.SIGTERM)


def _lost(
    exc: Exception, held: list, regate: Callable, tree: proctree.JobTree, interval: float, kill_at: float | None
) -> tuple[bool, float | None]:
    """The heartbeat's lease is gone: re-admitted (a new lease), stopped, or asked again next beat."""
    _warn(f"heartbeat refused: {exc}; asking for a new admission")
    new, stop = regate()
    if new:
        held[0] = new
        _warn("re-admitted with a new lease")
        return False, kill_at
    if stop is None:
        return False, kill_at  # maintd unreachable and --if-unreachable allow: try again next beat
    grace = max(MIN_TERM_TO_KILL, 3 * interval)
    _warn(f"{stop}: sending SIGTERM, SIGKILL in {grace:g}s")
    tree.signal(signal.SIGTERM)
    return True, time.monotonic() + grace if kill_at is None else min(kill_at, time.monotonic() + grace)


def _parse(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        ts = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
