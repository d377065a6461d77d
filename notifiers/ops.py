"""Messages for the provider's own room (SPEC 4.2 ``provider.ops``): one per event.

``render_ops(record)`` is pure: a plain mapping in, ``(title, markdown body)`` out, from
the table below -- what happened, when, to whom, and what to do about it. The texts are
for the provider's team, so they are English and name the maintd commands to run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo

from .base import md_escape
from .chat import check_apprise_url, deliver, mask_apprise_url
from .i18n import format_local


@dataclass(frozen=True)
class OpsText:
    title: str  # "{title}" is the window's title
    what: str  # one sentence; fields from the record, see render_ops
    todo: str  # Markdown; maintd commands in backticks


OPS_TEXTS: Mapping[str, OpsText] = {
    "started": OpsText(
        title="Maintenance started: {title}",
        what="{window_ref} started; {tenants} now in maintenance until {end}.",
        todo="Nothing, unless it must stop early: `maintd exit --window {window}`. `maintd status` shows drains.",
    ),
    "ended": OpsText(
        title="Maintenance ended: {title}",
        what="{window_ref} ended at {end}; {tenants} released.",
        todo="Check `maintd history` for refused and stopped jobs; tenants got their `completed` notice.",
    ),
    "extended": OpsText(
        title="Maintenance extended: {title}",
        what="{window_ref} now ends {end} (was {previous_end}). {reason}",
        todo="When the work is done, run `maintd exit --window {window}`; tenants got an `extended` notice.",
    ),
    "drain_overrun": OpsText(
        title="Drain overrun: {title}",
        what="{count} job(s) still run past the drain grace of {window_ref} ({tenants}): {jobs}.",
        todo="See them in `maintd status`; stop them by hand, or give them time with `maintd extend {window} 30m`.",
    ),
    "notice_failed": OpsText(
        title="Notices failed: {title}",
        what="{count} notice(s) of {window_ref} to {tenants} failed after the last retry ({channel}): {error}",
        todo="Run `maintd notices --failed`, fix the address or receiver, then `maintd notices --retry --failed`.",
    ),
    "end_check_failing": OpsText(
        title="End check failing: {title}",
        what="The end check of {window_ref} fails ({error}); the window was extended to {end}, at most {max_end}.",
        todo="Fix what the check tests, or end it anyway with `maintd exit --window {window}`.",
    ),
    "hook_failed": OpsText(
        title="Hook failed: {title}",
        what="The {hook} hook of {window_ref} failed after {attempts} attempt(s): {error}",
        todo="Run the hook by hand and check its output; `maintd status` shows its next retry.",
    ),
    "integration_failed": OpsText(
        title="Integration failed: {title}",
        what="{integration} could not {action} for {window_ref}: {error}",
        todo="Check the integration's credentials and reachability; `maintd status` shows its next retry.",
    ),
}
OPS_EVENTS: tuple[str, ...] = tuple(OPS_TEXTS)
# SPEC 8: a wave's end check still failing at ``max`` halts the later waves. The room hears
# it as an ``end_check_failing`` (the closest of SPEC 4.2's events, so a room listing only
# those hears it too) whose record has ``halted``, in words of its own.
HALTED_TEXT = OpsText(
    title="Waves halted: {title}",
    what="The end check of wave {wave} of {window_ref} still fails at its max ({error}); "
    "the later waves will not start, and their tenants were told `cancelled`.",
    todo="Fix what the check tests, then plan the remaining waves with `maintd resume {window} --at TIME`.",
)
_LIST_LIMIT = 5


class _Fields(dict):
    """Formatting values: a field the record lacks reads "?" rather than failing a send."""

    def __missing__(self, key: str) -> str:
        return "?"


def render_ops(record: Mapping, *, provider: str = "") -> tuple[str, str]:
    """``(title, markdown body)`` for one ops event.

    ``record`` keys: ``event`` (one of ``OPS_EVENTS``), ``window`` (id), ``title``,
    ``occurrence``/``start``/``end``/``previous_end``/``max_end`` (aware datetimes or ISO
    strings), ``zone`` (IANA name or ZoneInfo; default UTC), ``tenants`` (list of ids) or
    ``tenant_count``; per event ``reason``, ``count``, ``jobs``, ``channel``, ``error``,
    ``hook``, ``attempts``, ``integration``, ``action``. Unknown events raise ``ValueError``.
    """
    event = record.get("event", "")
    if event not in OPS_TEXTS:
        raise ValueError(f'unknown ops event "{event}"; known: {", ".join(OPS_EVENTS)}')
    text = HALTED_TEXT if event == "end_check_failing" and record.get("halted") else OPS_TEXTS[event]
    zone = _zone(record.get("zone"))
    fields = _Fields({k: md_escape(v) for k, v in record.items() if isinstance(v, (str, int, float))})
    for key in ("occurrence", "start", "end", "previous_end", "max_end", "since"):
        if record.get(key):
            fields[key] = format_local(record[key], zone)
    window = str(record.get("window", "?"))
    fields["window"] = window  # inside backticks in the to-do line: not escaped
    fields["title"] = md_escape(record.get("title") or window)
    fields["window_ref"] = f"**{md_escape(record.get('title') or window)}** (`{window}`)"
    fields["tenants"] = _tenants(record)
    fields["jobs"] = _listing(record.get("jobs") or ())
    fields["count"] = str(record.get("count", len(record.get("jobs") or ()) or "?"))
    title = text.title.format_map(_Fields(title=record.get("title") or window))
    when = f"{fields.get('start', '?')} to {fields.get('end', '?')}"
    lines = [
        f"**What:** {text.what.format_map(fields)}".rstrip(),
        f"**When:** {when} ({getattr(zone, 'key', zone)})",
        f"**Tenants:** {fields['tenants']}",
        f"**To do:** {text.todo.format_map(fields)}",
    ]
    if provider:
        title = f"[{provider}] {title}"
    return title, "\n".join(lines) + "\n"


def _zone(value: object) -> ZoneInfo:
    if isinstance(value, ZoneInfo):
        return value
    return ZoneInfo(str(value)) if value else ZoneInfo("UTC")


def _tenants(record: Mapping) -> str:
    tenants = record.get("tenants")
    if tenants is None:
        count = record.get("tenant_count")
        return f"{count} tenant(s)" if count is not None else "all affected tenants"
    return _listing(tenants, noun="tenant")


def _listing(items: Sequence | str, noun: str = "") -> str:
    if isinstance(items, str):
        return md_escape(items)
    names = [md_escape(x) for x in items]
    if not names:
        return "none"
    shown = ", ".join(names[:_LIST_LIMIT])
    if len(names) > _LIST_LIMIT:
        shown += f" and {len(names) - _LIST_LIMIT} more"
    return f"{len(names)} {noun}(s): {shown}" if noun and len(names) > 1 else shown


class OpsNotifier:
    """The provider's room at one Apprise URL (``provider.ops.urls``; one notifier per URL).

    ``send(record)`` renders with ``render_ops`` and delivers, raising ``DeliveryError``
    like the tenant channels; ``wants(event)`` says whether this room listens to it.
    """

    def __init__(
        self,
        url: str,
        *,
        provider: str = "",
        events: Sequence[str] = OPS_EVENTS,
        timeout: timedelta = timedelta(seconds=10),
    ) -> None:
        unknown = sorted(set(events) - set(OPS_EVENTS))
        if unknown:
            raise ValueError(f"unknown ops event(s): {', '.join(unknown)}; known: {', '.join(OPS_EVENTS)}")
        self.url = url
        self.provider = provider
        self.events = frozenset(events)
        self.timeout = timeout.total_seconds()
        self.channel = f"apprise:{check_apprise_url(url)}"
        self.target = mask_apprise_url(url)

    def wants(self, event: str) -> bool:
        return event in self.events

    def send(self, record: Mapping) -> None:
        title, body = render_ops(record, provider=self.provider)
        failing = record.get("event") in (
            "drain_overrun",
            "notice_failed",
            "end_check_failing",
            "hook_failed",
            "integration_failed",
        )
        deliver(self.url, title, body, timeout=self.timeout, notify_type="failure" if failing else "info")
