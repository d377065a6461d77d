"""Debian programs the tests use for real (promtool, Alertmanager, Chromium, ...).

CI runs as root on a fresh machine: a program that is missing is installed from Debian's
packages once, the way tests/pgserver.py installs PostgreSQL.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def ensure_program(program: str, package: str) -> str:
    """The path of ``program``, installing Debian's ``package`` first when it is missing."""
    found = shutil.which(program) or (f"/usr/bin/{program}" if os.path.exists(f"/usr/bin/{program}") else None)
    if found:
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=600, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        check=True,
        capture_output=True,
        timeout=900,
        env=env,
    )
    found = shutil.which(program)
    if not found:
        raise RuntimeError(f"{program} not found after installing Debian's {package} package")
    return found
