"""The thin base every channel stands on: the Notifier protocol and the template renderer.

A channel's ``send`` returns nothing or raises ``DeliveryError(message, permanent=...)``;
the outbox alone decides about retries, so a channel never sleeps or loops.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import jinja2

from scheduler.errors import DeliveryError as _BaseDeliveryError
from scheduler.model import NOTICE_KINDS, UTC, Notice, Tenant, isoz

from .calendar import build_ics


@dataclass
class DeliveryError(_BaseDeliveryError):
    """A failed send, classified: ``permanent`` (a retry cannot help), ``retry_after`` (the
    receiver asked for a pause), ``status`` (the HTTP status, if any), ``gone`` (a 410: the
    receiver says the endpoint is gone for good; SPEC 4.1 disables it).

    A subclass of ``scheduler.errors.DeliveryError``, so every ``except`` on that one still
    catches it; ``detail`` is kept filled (``status``, ``retry_after`` in whole seconds) for
    readers of the older shape.
    """

    retry_after: timedelta | None = None
    status: int | None = None
    gone: bool = False

    def __post_init__(self) -> None:
        if self.status is not None:
            self.detail.setdefault("status", self.status)
        if self.retry_after is not None:
            self.detail.setdefault("retry_after", max(0, int(self.retry_after.total_seconds())))


@runtime_checkable
class Notifier(Protocol):
    channel: str  # "email" | "webhook": the outbox keys deliveries on it

    def applies_to(self, tenant: Tenant) -> bool: ...

    def send(self, notice: Notice, tenant: Tenant) -> None: ...


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    ics: bytes
    payload: dict


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_UNIT_NAMES = {"w": "week", "d": "day", "h": "hour", "m": "minute", "s": "second"}
_SUMMARY_LABELS = {
    "actual_start": "Started",
    "actual_end": "Ended",
    "refused": "Jobs refused",
    "drained": "Jobs drained",
    "stopped": "Jobs stopped",
}


def format_local(ts: datetime | str | None, zone: ZoneInfo) -> str:
    """``Sat 5 Dec 2026 22:00 CET``: English names whatever the process locale is."""
    if ts is None:
        return ""
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    local = ts.astimezone(zone)
    return (
        f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year} {local:%H:%M} {local.tzname()}"
    )


def humanize_lead(lead: str | None) -> str:
    """``24h`` -> ``24 hours``, ``1h30m`` -> ``1 hour 30 minutes``; unknown text passes through."""
    if not lead:
        return ""
    parts = re.findall(r"(\d+)([wdhms])", lead)
    if not parts or "".join(n + u for n, u in parts) != lead.strip():
        return lead
    return " ".join(f"{n} {_UNIT_NAMES[u]}{'' if n == '1' else 's'}" for n, u in parts)


def humanize_span(span: timedelta) -> str:
    days, rest = divmod(int(span.total_seconds() // 60), 1440)
    bits = [(days, "day"), (rest // 60, "hour"), (rest % 60, "minute")]
    return " ".join(f"{n} {name}{'' if n == 1 else 's'}" for n, name in bits if n) or "0 minutes"


class Renderer:
    """Jinja2 templates per notice kind; a provider's directory is searched first.

    Times are shown in the tenant's zone. ``.html`` templates autoescape, so text that comes
    from windows.yaml (titles, messages) cannot inject markup into a tenant's mail client.
    """

    def __init__(self, provider_name: str, template_dir: str | None = None) -> None:
        self.provider_name = provider_name
        self.template_dir = template_dir
        loaders: list[jinja2.BaseLoader] = [jinja2.PackageLoader("notifiers", "templates")]
        if template_dir:
            loaders.insert(0, jinja2.FileSystemLoader(template_dir))
        # Read once: the templates a reload checked are the ones every send uses, even
        # if the provider edits (or breaks) a file later -- the next reload checks that.
        self.loader = _SnapshotLoader(jinja2.ChoiceLoader(loaders))
        self.env = jinja2.Environment(
            loader=self.loader,
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            # A typo in a provider's template should fail check(), not print an empty string.
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(
        self, notice: Notice, tenant: Tenant, *, organizer: str | None = None, now: datetime | None = None
    ) -> Rendered:
        context = self.context(notice, tenant)
        # A title with a newline would otherwise be a header injection (and EmailMessage refuses it).
        subject = " ".join(self.env.get_template("subject.txt").render(context).split())
        context["subject"] = subject
        return Rendered(
            subject=subject,
            text=self.env.get_template(f"{notice.kind}.txt").render(context),
            html=self.env.get_template(f"{notice.kind}.html").render(context),
            ics=build_ics(notice, organizer=organizer, attendees=tenant.email, now=now),
            payload=notice.payload(),
        )

    def context(self, notice: Notice, tenant: Tenant) -> dict:
        zone = tenant.zone

        def local(ts: datetime | str | None) -> str:  # also a helper for provider templates
            return format_local(ts, zone)

        return {
            "provider": self.provider_name,
            "notice": notice,
            "tenant": tenant,
            "kind": notice.kind,
            "title": notice.title,
            "message": notice.message,
            "lead": notice.lead,
            "late": notice.late,
            "link": notice.link,
            "local": local,
            "start": local(notice.start),
            "end": local(notice.end),
            "start_utc": isoz(notice.start),
            "end_utc": isoz(notice.end),
            "duration": humanize_span(notice.end - notice.start),
            "zone": getattr(zone, "key", str(zone)),
            "lead_text": f"in {humanize_lead(notice.lead)}" if notice.lead else "",
            "previous_start": local(notice.previous_start) if notice.previous_start else None,
            "previous_end": local(notice.previous_end) if notice.previous_end else None,
            "summary": summary_lines(notice.summary, zone),
        }

    def check(self) -> list[str]:
        """Compile every template, then render each kind once with a sample notice.

        Returns ``FILE:LINE: message`` strings; empty when everything renders. Run it at
        config reload so a broken provider template is reported there, not at send time.
        """
        errors: list[str] = []
        if self.template_dir and not Path(self.template_dir).is_dir():
            return [f"{self.template_dir}: template directory does not exist"]
        if self.loader.problems:
            return list(self.loader.problems)
        for name in sorted(self.env.list_templates(extensions=("txt", "html"))):
            try:
                self.env.get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                errors.append(f"{exc.filename or name}:{exc.lineno}: {exc.message}")
        if errors:
            return errors
        tenant, notices = _samples()
        for notice in notices:
            try:
                self.render(notice, tenant)
            except Exception as exc:  # noqa: BLE001 - whatever breaks, report it, don't crash a reload
                errors.append(self._locate(exc, notice.kind))
        return errors

    def _locate(self, exc: Exception, kind: str) -> str:
        # Jinja rewrites tracebacks so template frames carry the template's file and line.
        files = {
            self.env.loader.get_source(self.env, name)[1]
            for name in self.env.list_templates(extensions=("txt", "html"))
        }
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else f"({kind} notice)"
        return f"{where}: {exc.__class__.__name__}: {exc} (rendering a {kind} notice)"


class _SnapshotLoader(jinja2.BaseLoader):
    """Every template's source as it was on disk when the renderer was made.

    Jinja's own loaders re-read a changed file on the next render; a broken edit would
    then surface at send time instead of at the reload that can report it.
    """

    def __init__(self, loader: jinja2.BaseLoader) -> None:
        self.sources: dict[str, tuple[str, str | None]] = {}
        self.problems: list[str] = []
        probe = jinja2.Environment()
        for name in loader.list_templates():
            try:
                source, filename, _ = loader.get_source(probe, name)
            except jinja2.TemplateNotFound:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                self.problems.append(f"{name}: cannot read template: {exc}")
                continue
            self.sources[name] = (source, filename)

    def get_source(self, environment: jinja2.Environment, template: str):
        try:
            source, filename = self.sources[template]
        except KeyError:
            raise jinja2.TemplateNotFound(template) from None
        return source, filename, lambda: True

    def list_templates(self) -> list[str]:
        return sorted(self.sources)


def summary_lines(summary: Mapping | None, zone: ZoneInfo) -> list[tuple[str, str]]:
    """What the daemon reported about a finished occurrence, as (label, value) rows; only
    the keys that are present, known ones first."""
    if not summary:
        return []
    rows = []
    keys = [k for k in _SUMMARY_LABELS if k in summary] + [k for k in summary if k not in _SUMMARY_LABELS]
    for key in keys:
        value = summary[key]
        if key in ("actual_start", "actual_end") and value:
            text = format_local(value, zone)
        elif isinstance(value, Mapping):
            text = ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
        else:
            text = str(value)
        rows.append((_SUMMARY_LABELS.get(key, key.replace("_", " ").capitalize()), text))
    return rows


def _samples() -> tuple[Tenant, list[Notice]]:
    """A notice of every kind with every optional field set, for check()."""
    start = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)
    end, day = start + timedelta(hours=4), timedelta(days=1)
    tenant = Tenant(id="sample", name="Sample", zone=ZoneInfo("Europe/Berlin"), email=("a@b.example",))
    summary = {
        "actual_start": isoz(start),
        "actual_end": isoz(end),
        "refused": {"backup": 3},
        "drained": 2,
        "stopped": 1,
    }
    return tenant, [
        Notice(
            id=f"ntc_{kind}",
            kind=kind,
            window="sample",
            occurrence=start,
            tenant=tenant.id,
            title="Sample",
            start=start,
            end=end,
            message="Sample.",
            provider="Sample",
            lead="24h",
            late=True,
            uid="sample@maintd",
            sequence=1,
            previous_start=start - day,
            previous_end=end - day,
            summary=summary,
            link="https://maint.example.com/t/x/",
        )
        for kind in NOTICE_KINDS
    ]
