"""Transition hooks and end checks: run a command (argv, never a shell) or probe a URL.

Used by the daemon only. A hook runs in its own process group so that a timeout kills
whatever it started too (``pwsh`` spawning children, say).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .errors import DeliveryError
from .model import isoz

OUTPUT_TAIL = 2000  # characters of a failed command's output kept for status and history


@dataclass(frozen=True)
class Result:
    ok: bool
    exit_code: int | None = None
    error: str | None = None
    output: str = ""


def hook_env(
    *,
    event: str,
    window: str,
    occurrence: datetime,
    start: datetime,
    end: datetime,
    tenants: Iterable[str],
    message: str,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment SPEC section 5 promises a hook."""
    env = dict(os.environ if base is None else base)
    # A hook is the provider's script, not a client of the API: it gets no credentials.
    for secret in ("MAINTD_TOKEN",):
        env.pop(secret, None)
    env.update(
        {
            "MAINTD_EVENT": event,
            "MAINTD_WINDOW": window,
            "MAINTD_OCCURRENCE": isoz(occurrence) or "",
            "MAINTD_START": isoz(start) or "",
            "MAINTD_END": isoz(end) or "",
            "MAINTD_TENANTS": ",".join(sorted(tenants)),
            "MAINTD_MESSAGE": message,
        }
    )
    return env


def run(argv: Iterable[str], *, timeout: float, env: Mapping[str, str] | None = None, cwd: str | None = None) -> Result:
    """Run ``argv`` to completion or ``timeout`` seconds; never raises for a failing command."""
    argv = list(argv)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )
    except (OSError, ValueError) as exc:
        return Result(ok=False, error=f"cannot run {argv[0]!r}: {getattr(exc, 'strerror', None) or exc}")
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, _ = proc.communicate()
        tail = (out or b"").decode(errors="replace")[-OUTPUT_TAIL:]
        return Result(ok=False, exit_code=None, error=f"timed out after {timeout:g}s", output=tail)
    tail = (out or b"").decode(errors="replace")[-OUTPUT_TAIL:]
    if proc.returncode == 0:
        return Result(ok=True, exit_code=0, output=tail)
    last = tail.strip().splitlines()[-1] if tail.strip() else ""
    return Result(
        ok=False,
        exit_code=proc.returncode,
        error=f"exited with {proc.returncode}" + (f": {last[:200]}" if last else ""),
        output=tail,
    )


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def probe(url: str, *, timeout: float) -> Result:
    """An HTTP end check: 2xx is healthy; anything else, or no answer, is not.

    Through the one HTTP helper: a total deadline, no redirects, a bounded body read."""
    from notifiers.http import Response, shared

    answer: list[Response] = []
    try:
        shared().request("GET", url, timeout=timeout, check=answer.append)
    except DeliveryError as exc:
        return Result(ok=False, error=str(exc)[:300])
    status = answer[0].status
    if 200 <= status < 300:
        return Result(ok=True, exit_code=status)
    return Result(ok=False, exit_code=status, error=f"HTTP {status}")
