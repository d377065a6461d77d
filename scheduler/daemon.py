"""Old import path of the daemon: the parts live in :mod:`scheduler.runtime`."""

from __future__ import annotations

from .notices import compose_notice, notice_seq, tenant_message
from .runtime.daemon import Daemon
from .runtime.settings import Settings

__all__ = ["Daemon", "Settings", "compose_notice", "notice_seq", "tenant_message"]
