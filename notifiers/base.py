"""The thin base every channel stands on: the Notifier protocol and the template renderer.

A channel's ``send`` returns nothing or raises ``DeliveryError(message, permanent=...)``;
the outbox alone decides about retries, so a channel never sleeps or loops.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

import jinja2

from scheduler.errors import DeliveryError as _BaseDeliveryError
from scheduler.model import NOTICE_KINDS, UTC, Notice, Tenant, isoz

from .calendar import build_ics
from .i18n import (
    DEFAULT_LOCALE,
    SHIPPED_TEMPLATES,
    available_locales,
    format_local,
    humanize_lead,
    humanize_span,
    label_colon,
    starts_text,
    summary_label,
    template_locale_or_default,
)

__all__ = ["Notifier", "Rendered", "Renderer", "format_local", "humanize_lead", "humanize_span", "summary_lines"]


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
    channel: str  # "email" | "webhook" | "apprise:<scheme>": the outbox keys deliveries on it

    def applies_to(self, tenant: Tenant) -> bool: ...

    def send(self, notice: Notice, tenant: Tenant) -> None: ...


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    ics: bytes
    payload: dict


# Markdown that a chat client would act on in text from windows.yaml (titles, messages).
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~#])")


class _Markdown(str):
    """Text already in Markdown: the chat environment's finalize leaves it alone."""


def md_escape(value: object) -> str:
    return _MD_SPECIAL.sub(r"\\\1", str(value))


@jinja2.pass_context
def _finalize(context: jinja2.runtime.Context, value: object) -> object:
    """Every ``{{ expression }}``: escaped for Markdown when rendering a chat body, as is
    otherwise (HTML autoescaping comes after). One environment serves mail and chat, so a
    template compiles once."""
    if not context.get("markdown") or value is None or isinstance(value, _Markdown):
        return value
    return md_escape(value)


class Renderer:
    """Jinja2 templates per notice kind and tenant language; a provider's directory wins.

    A template name resolves, for a tenant in locale L, to the first of: the provider's
    ``L/<name>``, the provider's ``<name>``, the shipped ``L/<name>``, the shipped ``<name>``
    (English). Times are shown in the tenant's zone and language. ``.html`` templates
    autoescape, so text from windows.yaml cannot inject markup into a mail client; chat
    bodies render the same ``<kind>.txt`` templates with Markdown escaping instead.
    """

    def __init__(self, provider_name: str, template_dir: str | None = None) -> None:
        self.provider_name = provider_name
        self.template_dir = template_dir
        # Read once: the templates a reload checked are the ones every send uses, even
        # if the provider edits (or breaks) a file later -- the next reload checks that.
        self.loader = _SnapshotLoader(str(SHIPPED_TEMPLATES), template_dir)
        self.locales = available_locales()
        self.envs = {loc: self._environment(loc) for loc in self.locales}
        self.env = self.envs[DEFAULT_LOCALE]  # kept for callers that used the single environment

    def _environment(self, locale: str) -> jinja2.Environment:
        return jinja2.Environment(
            loader=_LocaleLoader(self.loader, locale, self.locales),
            autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
            finalize=_finalize,
            # A typo in a provider's template should fail check(), not print an empty string.
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(
        self,
        notice: Notice,
        tenant: Tenant,
        *,
        organizer: str | None = None,
        now: datetime | None = None,
        locale: str | None = None,
    ) -> Rendered:
        """Subject, text, HTML and .ics of one notice; ``locale`` defaults to the tenant's."""
        loc = self.locale_of(tenant, locale)
        env = self.envs[loc]
        context = self.context(notice, tenant, locale=locale)
        subject = self.subject(notice, tenant, locale=locale, context=context)
        context["subject"] = subject
        summary = " ".join(env.get_template("calendar_summary.txt").render(context).split())
        description = env.get_template("calendar_description.txt").render(context).strip()
        return Rendered(
            subject=subject,
            text=env.get_template(f"{notice.kind}.txt").render(context),
            html=env.get_template(f"{notice.kind}.html").render(context),
            ics=build_ics(
                notice,
                organizer=organizer,
                attendees=tenant.email,
                now=now,
                summary=summary,
                description=description,
            ),
            payload=notice.payload(),
        )

    def subject(self, notice: Notice, tenant: Tenant, *, locale: str | None = None, context: dict | None = None) -> str:
        context = context if context is not None else self.context(notice, tenant, locale=locale)
        # A title with a newline would otherwise be a header injection (and EmailMessage refuses it).
        return " ".join(self.envs[self.locale_of(tenant, locale)].get_template("subject.txt").render(context).split())

    def render_chat(self, notice: Notice, tenant: Tenant, *, locale: str | None = None) -> tuple[str, str]:
        """``(title, markdown body)`` for a chat or push channel: the email's subject, and the
        email's ``<kind>.txt`` rendered in Markdown mode (no greeting or signature, rows as a
        list, text from windows.yaml escaped)."""
        title = self.subject(notice, tenant, locale=locale)
        context = self.context(notice, tenant, locale=locale, markdown=True)
        context["subject"] = title
        body = self.envs[self.locale_of(tenant, locale)].get_template(f"{notice.kind}.txt").render(context)
        return title, re.sub(r"\n{3,}", "\n\n", body).strip() + "\n"

    def locale_of(self, tenant: Tenant, locale: str | None = None) -> str:
        """The template folder for this tenant: ``locale`` if given, else ``tenant.locale``."""
        return template_locale_or_default(locale or getattr(tenant, "locale", None))

    def context(self, notice: Notice, tenant: Tenant, *, locale: str | None = None, markdown: bool = False) -> dict:
        zone = tenant.zone
        tag = locale or getattr(tenant, "locale", None) or DEFAULT_LOCALE

        def local(ts: datetime | str | None) -> str:  # also a helper for provider templates
            return format_local(ts, zone, tag)

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
            "locale": self.locale_of(tenant, locale),
            "markdown": markdown,
            "row": _row_helper(markdown, label_colon(tag)),
            "url": (lambda link: _Markdown(f"<{link}>")) if markdown else (lambda link: link),
            "local": local,
            "start": local(notice.start),
            "end": local(notice.end),
            "start_utc": isoz(notice.start),
            "end_utc": isoz(notice.end),
            "duration": humanize_span(notice.end - notice.start, tag),
            "zone": getattr(zone, "key", str(zone)),
            "lead_text": starts_text(notice.lead, getattr(notice, "time_left", None), notice.late, tag),
            "time_left": getattr(notice, "time_left", None),
            "short_notice": notice.late and notice.lead is not None,
            "previous_start": local(notice.previous_start) if notice.previous_start else None,
            "previous_end": local(notice.previous_end) if notice.previous_end else None,
            "summary": summary_lines(notice.summary, zone, tag),
            "reason": getattr(notice, "reason", None),  # why it was cancelled, in the tenant's language
        }

    def check(self) -> list[str]:
        """Compile every template, then render each kind once with a sample notice, in every
        locale maintd ships (so a provider's ``de/`` override is checked too).

        Returns ``FILE:LINE: message`` strings; empty when everything renders. Run it at
        config reload so a broken provider template is reported there, not at send time.
        """
        if self.template_dir and not Path(self.template_dir).is_dir():
            return [f"{self.template_dir}: template directory does not exist"]
        if self.loader.problems:
            return list(self.loader.problems)
        errors: list[str] = []
        for filename, source in self.loader.files():
            try:
                self.env.parse(source, filename=filename)
            except jinja2.TemplateSyntaxError as exc:
                errors.append(f"{filename}:{exc.lineno}: {exc.message}")
        if errors:
            return errors
        tenant, notices = _samples()
        for loc in self.locales:
            for notice in notices:
                for step in (
                    lambda: self.render(notice, tenant, locale=loc),
                    lambda: self.render_chat(notice, tenant, locale=loc),
                ):
                    try:
                        step()
                    except Exception as exc:  # noqa: BLE001 - whatever breaks, report it, don't crash a reload
                        error = self._locate(exc, notice.kind)
                        if error not in errors:
                            errors.append(error)
        return errors

    def _locate(self, exc: Exception, kind: str) -> str:
        # Jinja rewrites tracebacks so template frames carry the template's file and line.
        files = {filename for filename, _ in self.loader.files()}
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename in files]
        where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else f"({kind} notice)"
        return f"{where}: {exc.__class__.__name__}: {exc} (rendering a {kind} notice)"


def _row_helper(markdown: bool, colon: str = ":") -> Callable[[str, object], str]:
    """``row(label, value)`` for the detail lines of ``.txt`` templates: aligned columns in
    mail, a bulleted list in chat; ``colon`` as the tenant's language writes it."""

    def row(label: str, value: object) -> str:
        if markdown:
            return _Markdown(f"- **{md_escape(label)}{colon}** {md_escape(value)}")
        head = f"{label}{colon}"
        return f"  {head.ljust(15)}{value}" if len(head) < 15 else f"  {head} {value}"

    return row


class _SnapshotLoader:
    """Every template's source as it was on disk when the renderer was made, by origin
    (``provider`` or ``shipped``) and relative name (``scheduled.txt``, ``de/scheduled.txt``).

    Jinja's own loaders re-read a changed file on the next render; a broken edit would
    then surface at send time instead of at the reload that can report it.
    """

    def __init__(self, shipped: str, provider: str | None) -> None:
        self.sources: dict[tuple[str, str], tuple[str, str]] = {}
        self.problems: list[str] = []
        for origin, root in (("shipped", shipped), ("provider", provider)):
            if root and Path(root).is_dir():
                self._read(origin, jinja2.FileSystemLoader(root))

    def _read(self, origin: str, loader: jinja2.FileSystemLoader) -> None:
        probe = jinja2.Environment()
        for name in loader.list_templates():
            try:
                source, filename, _ = loader.get_source(probe, name)
            except jinja2.TemplateNotFound:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                self.problems.append(f"{name}: cannot read template: {exc}")
                continue
            self.sources[(origin, name)] = (source, filename or name)

    def files(self) -> list[tuple[str, str]]:
        """(filename, source) of every template ending in .txt or .html."""
        return sorted((fn, src) for (_, name), (src, fn) in self.sources.items() if name.endswith((".txt", ".html")))


class _LocaleLoader(jinja2.BaseLoader):
    """One locale's view of the snapshot: provider ``L/name``, provider ``name``, shipped
    ``L/name``, shipped ``name``. ``extends`` and ``include`` resolve the same way."""

    def __init__(self, snapshot: _SnapshotLoader, locale: str, locales: list[str]) -> None:
        self.snapshot = snapshot
        self.locale = locale
        self.locales = set(locales)

    def get_source(self, environment: jinja2.Environment, template: str):
        for key in (
            ("provider", f"{self.locale}/{template}"),
            ("provider", template),
            ("shipped", f"{self.locale}/{template}"),
            ("shipped", template),
        ):
            if key in self.snapshot.sources:
                source, filename = self.snapshot.sources[key]
                return source, filename, lambda: True
        raise jinja2.TemplateNotFound(template)

    def list_templates(self) -> list[str]:
        names = set()
        for _, name in self.snapshot.sources:
            first, _, rest = name.partition("/")
            if not rest or first not in self.locales:
                names.add(name)
            elif first == self.locale:
                names.add(rest)
        return sorted(names)


def summary_lines(summary: Mapping | None, zone: ZoneInfo, locale: str | None = None) -> list[tuple[str, str]]:
    """What the daemon reported about a finished occurrence, as (label, value) rows; only
    the keys that are present, known ones first."""
    if not summary:
        return []
    rows = []
    known = ("actual_start", "actual_end", "refused", "drained", "stopped")
    keys = [k for k in known if k in summary] + [k for k in summary if k not in known]
    for key in keys:
        value = summary[key]
        if key in ("actual_start", "actual_end") and value:
            text = format_local(value, zone, locale)
        elif isinstance(value, Mapping):
            text = ", ".join(f"{k}: {v}" for k, v in value.items()) or "none"
        else:
            text = str(value)
        rows.append((summary_label(key, locale), text))
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
            reason="halted: sample" if kind == "cancelled" else None,
        )
        for kind in NOTICE_KINDS
    ]
