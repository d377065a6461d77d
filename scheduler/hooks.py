"""Transition hooks and end checks: run a command (argv, never a shell) or probe a URL.

Used by the daemon only. A hook runs in its own process group so that a timeout kills
whatever it started too (``pwsh`` spawning children, say).
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import DeliveryError
from .model import isoz

OUTPUT_TAIL = 2000  # characters of a failed command's output kept for status and history

# maintd's own credentials: a hook or end check is the provider's script, not an API client.
MAINTD_SECRETS = frozenset({"MAINTD_TOKEN", "MAINTD_GATE_TOKEN", "MAINTD_READ_TOKEN", "SMTP_PASSWORD"})
_SECRET_KEYS = frozenset({"password", "secret", "token", "api_key", "routing_key"})
_VAR_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)[\"']?\s*:(?:\s|$)")


def _is_secret_key(name: str) -> bool:
    return name in _SECRET_KEYS or name.endswith(("_token", "_secret", "_password"))


def secret_values(obj: Any, depth: int = 0) -> set[str]:
    """Every value of a secret field (password, secret, token, ...) in a config record tree."""
    found: set[str] = set()
    if depth > 8:
        return found
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name, None)
            if isinstance(value, str) and value and _is_secret_key(f.name):
                found.add(value)
            elif not isinstance(value, (str, int, float, bool, type(None))):
                found |= secret_values(value, depth + 1)
    elif isinstance(obj, Mapping):
        for value in obj.values():
            found |= secret_values(value, depth + 1)
    elif isinstance(obj, (list, tuple, frozenset, set)):
        for value in obj:
            found |= secret_values(value, depth + 1)
    return found


def secret_env_names(config_text: str, env: Mapping[str, str], values: Iterable[str] = ()) -> frozenset[str]:
    """The environment variables a hook must not see: maintd's own, those a secret field of
    windows.yaml names as ``${VAR}``, and any whose value is a secret of the config."""
    names = set(MAINTD_SECRETS)
    for line in config_text.splitlines():
        for ref in _VAR_REF.finditer(line):
            keys = _KEY.findall(line[: ref.start()])  # the nearest key before it, block or flow style
            if keys and _is_secret_key(keys[-1].lower()):
                names.add(ref.group(1))
    secret = {v for v in values if len(v) >= 4}
    names.update(k for k, v in env.items() if v in secret)
    return frozenset(names)


def without_secrets(env: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    drop = set(names) | MAINTD_SECRETS
    return {k: v for k, v in env.items() if k not in drop}


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
    secrets: Iterable[str] = (),
) -> dict[str, str]:
    """The environment SPEC section 5 promises a hook, without maintd's secrets."""
    env = without_secrets(os.environ if base is None else base, secrets)
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
