"""What every command shares: the clock reading, times and durations on the command line, JSON out.

The config loader, the planner and rich are imported where a command uses them: ``maintd
exec`` runs before every backup and must start in a fraction of a second.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click

from ..duration import parse_duration
from ..errors import UsageError
from ..model import UTC, Config

DEFAULT_CONFIG = "windows.yaml"


def clock() -> datetime:
    """The CLI's one reading of the clock (commands pass it down)."""
    return datetime.now(UTC)


def parse_time(text: str, config: Config | None, now: datetime) -> datetime:
    """ISO 8601 with or without offset (without: the provider's zone), or ``now``."""
    t = text.strip()
    if t.lower() == "now":
        return now
    try:
        ts = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(
            f'invalid time "{text}"; expected ISO 8601 such as 2026-12-05T22:00, 2026-12-05T21:00Z or now'
        ) from None
    if ts.tzinfo is None:
        from ..recurrence import resolve_local

        zone = config.provider.zone if config else ZoneInfo("UTC")
        return resolve_local(ts, zone)
    return ts.astimezone(UTC)


class Duration(click.ParamType):
    """A positive duration such as 30m or 1h30m, checked where the flag is parsed; the
    text is passed on as written (the daemon parses it again)."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            if parse_duration(value) <= timedelta(0):
                raise ValueError("expected a positive duration such as 30m")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return value


DURATION = Duration()


def load_config(ctx: click.Context) -> Config:
    """The whole config, for the offline commands (client commands read only ``daemon:``)."""
    from .. import config as config_mod  # here: `maintd exec` starts without pydantic

    return config_mod.load(ctx.obj["config"])


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


def unknown(what: str, name: str, known: Any) -> UsageError:
    """``known`` in the order to show it."""
    return UsageError(f'unknown {what} "{name}"; known: {", ".join(known) or "none"}')
