"""``maintd exec``: a tenant job behind the gate.

Asks for admission; when denied exits 75 (EX_TEMPFAIL) with the tenant message, so a
scheduler retries later. When admitted runs CMD in its own process group, heartbeats,
and on a drain order sends the group SIGTERM, then SIGKILL at the deadline. When the
daemon cannot be reached, ``--if-unreachable`` decides (default allow: a maintenance
daemon that is down must not stop a provider's backups).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from typing import Any, Optional

from .errors import RefusedError, UnreachableError

EX_TEMPFAIL = 75


def _warn(msg: str) -> None:
    print(f"maintd exec: {msg}", file=sys.stderr, flush=True)


def run_gated(client: Any, *, tenant: str, kind: str, resource: Optional[str], expected_duration: Optional[str],
              if_unreachable: str, cmd: list[str]) -> int:
    body: dict[str, Any] = {"tenant": tenant, "kind": kind}
    if resource:
        body["resource"] = resource
    if expected_duration:
        body["expected_duration"] = expected_duration
    lease: Optional[str] = None
    interval = 10.0
    try:
        status, out = client.call("POST", "/v1/admissions", json_body=body, ok_statuses=(423,), timeout=10)
    except UnreachableError as exc:
        if if_unreachable == "deny":
            _warn(f"{exc}; refusing to run (--if-unreachable deny)")
            return EX_TEMPFAIL
        _warn(f"WARNING: {exc}; running without the gate (--if-unreachable allow)")
        status, out = 0, None
    if status == 423:
        print(out.get("message") or "denied: maintenance", file=sys.stderr, flush=True)
        _warn(f"denied ({out.get('reason')}); retry after {out.get('retry_after')}s")
        return EX_TEMPFAIL
    if out:
        lease = out.get("lease")
        interval = float(out.get("heartbeat") or interval)
    try:
        proc = subprocess.Popen(cmd, start_new_session=True)
    except OSError as exc:
        _warn(f"cannot run {cmd[0]!r}: {exc.strerror or exc}")
        _release(client, lease)
        return 127 if isinstance(exc, FileNotFoundError) else 126

    # Signals sent to `maintd exec` itself go to the job too (it has its own process group).
    def forward(signum, _frame) -> None:
        _signal_group(proc, signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    done = threading.Event()
    if lease:
        threading.Thread(target=_heartbeat, args=(client, lease, interval, proc, done), daemon=True).start()
    code = proc.wait()
    done.set()
    _release(client, lease)
    return code if code >= 0 else 128 - code


def _signal_group(proc: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _release(client: Any, lease: Optional[str]) -> None:
    if not lease:
        return
    try:
        client.call("DELETE", f"/v1/leases/{lease}", timeout=5)
    except (UnreachableError, RefusedError):
        pass  # an unreleased lease expires after three heartbeats


def _heartbeat(client: Any, lease: str, interval: float, proc: subprocess.Popen, done: threading.Event) -> None:
    termed = False
    deadline: Optional[float] = None
    while not done.wait(min(interval, 1.0) if termed else interval):
        if deadline is not None and time.time() >= deadline:
            _warn("drain deadline passed: sending SIGKILL")
            _signal_group(proc, signal.SIGKILL)
            return
        if termed:
            continue
        try:
            _, out = client.call("POST", f"/v1/leases/{lease}/heartbeat", timeout=5)
        except (UnreachableError, RefusedError) as exc:
            _warn(f"heartbeat failed: {exc}")
            continue
        if out.get("drain") and out.get("deadline"):
            dl = datetime.fromisoformat(out["deadline"].replace("Z", "+00:00"))
            deadline = dl.astimezone(timezone.utc).timestamp()
            _warn(f"maintenance: draining, sending SIGTERM (SIGKILL at {out['deadline']})")
            _signal_group(proc, signal.SIGTERM)
            termed = True
