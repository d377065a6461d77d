"""Chat and push channels through Apprise (Slack, Teams, Matrix, ntfy, Gotify, JSON posts, ...).

One delivery is ONE Apprise URL: ``Apprise.notify`` answers a single boolean for all the
services it holds, so a shared object could not say which target failed. The URL is the
secret (tokens, passwords, webhook paths); it is shown only as ``mask_apprise_url`` gives
it, and Apprise's own log records -- which may carry it -- are masked before any handler
sees them.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import logging
import re
import threading
from collections.abc import Iterable, Iterator
from datetime import timedelta
from urllib.parse import unquote, urlsplit, urlunsplit

import apprise

from scheduler.errors import DeliveryError
from scheduler.model import Notice, Tenant

from .base import Renderer

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_TOKEN_SPLIT = re.compile(r"[/:@?&=#,;+\s]+")
_USERINFO_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")
_HOSTNAME = re.compile(r"^(localhost|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$")
# Apprise does not mask the path of these generic posts; a long segment there is a token.
_GENERIC = {"json", "jsons", "form", "forms", "xml", "xmls"}
_MASK = "****"
_ERROR_LIMIT = 300

_QUOTED_SECRET = re.compile(r"""(\b\w*(?:pass|token|secret|key|auth|webhook)\w*\s*[=:]\s*["']?)[^"'\s,]+""", re.I)

_capture: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("maintd_apprise_capture", default=None)
# While Apprise parses a URL whose secrets are not known yet, every part but the host is one.
_parsing: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("maintd_apprise_parsing", default=())


class _Redactor(logging.Filter):
    """Masks every known URL secret in the records of the loggers it is attached to, and
    copies WARNING+ records into the current delivery's capture (a context variable, which
    Apprise copies into its worker threads)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()  # guards only the set below
        self._secrets: tuple[str, ...] = ()

    def add(self, secrets: Iterable[str]) -> None:
        with self._lock:
            merged = set(self._secrets) | {s for s in secrets if s}
            self._secrets = tuple(sorted(merged, key=len, reverse=True))

    def redact(self, text: str) -> str:
        text = _USERINFO_PASSWORD.sub(rf"\g<1>{_MASK}@", text)
        text = _QUOTED_SECRET.sub(rf"\g<1>{_MASK}", text)
        for secret in _parsing.get() + self._secrets:
            if secret in text:
                text = text.replace(secret, _MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: show its template only
            message = str(record.msg)
        clean = self.redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        captured = _capture.get()
        if captured is not None and record.levelno >= logging.WARNING:
            captured.append(" ".join(clean.split()))
        return True


_REDACTOR = _Redactor()
# urllib3 logs the request line ("POST /services/T../B../XXX") at DEBUG: a Slack secret.
for _name in ("apprise", "urllib3.connectionpool"):
    logging.getLogger(_name).addFilter(_REDACTOR)


@contextlib.contextmanager
def _capturing() -> Iterator[list[str]]:
    lines: list[str] = []
    token = _capture.set(lines)
    try:
        yield lines
    finally:
        _capture.reset(token)


def _instantiate(url: str) -> tuple[apprise.NotifyBase | None, list[str]]:
    """Apprise's plugin for one URL without sending anything, and what Apprise logged."""
    candidates = {t for raw in _TOKEN_SPLIT.split(url.split("://", 1)[-1]) for t in (raw, unquote(raw))}
    hidden = tuple(sorted((t for t in candidates if len(t) >= 3 and not _HOSTNAME.match(t)), key=len, reverse=True))
    token = _parsing.set(((url,) if url else ()) + hidden)
    try:
        with _capturing() as log:
            plugin = apprise.Apprise.instantiate(url.strip(), asset=apprise.AppriseAsset(secure_logging=True))
    finally:
        _parsing.reset(token)
    return plugin, log


def _known_scheme(scheme: str) -> bool:
    try:
        from apprise.manager_plugins import NotificationManager
    except ImportError:  # pragma: no cover - an Apprise without the plugin manager module
        return False
    return scheme in NotificationManager()


def check_apprise_url(url: str) -> str:
    """The scheme for the channel name ``apprise:<scheme>`` (``ntfy``, ``slack``, ``json``...).

    Parses the URL with Apprise's own plugins and sends nothing. A native service URL
    (``https://hooks.slack.com/services/...``) answers the service's scheme. Raises
    ``ValueError('unknown scheme "x" ...')`` or ``ValueError('malformed ... URL ...')``;
    no secret of the URL is ever in the message.
    """
    text = (url or "").strip()
    match = _SCHEME.match(text)
    if not match:
        raise ValueError("malformed Apprise URL: expected scheme://..., e.g. ntfy://ntfy.example.com/topic")
    scheme = match.group(1).lower()
    plugin, log = _instantiate(text)
    if plugin is None:
        if scheme in ("http", "https") or not _known_scheme(scheme):
            raise ValueError(
                f'unknown scheme "{scheme}": not a service Apprise knows'
                + (" (for a plain webhook write json:// or form://)" if scheme in ("http", "https") else "")
            )
        reason = f": {_REDACTOR.redact(log[-1])}" if log else ""
        raise ValueError(f"malformed {scheme}:// URL {_fallback_mask(text)}{reason}")
    return urlsplit(plugin.url(privacy=True)).scheme.lower() or scheme


def mask_apprise_url(url: str) -> str:
    """The URL with every secret part hidden: passwords, tokens, webhook paths, the query.

    ``json://user:s3cr3t@host/`` -> ``json://user:****@host/``; Slack and Teams keep only
    the first and last character of each token (Apprise's ``url(privacy=True)``). A URL
    Apprise cannot parse keeps only its scheme and a plain host name.
    """
    plugin, _ = _instantiate(url or "")
    return _fallback_mask(url or "") if plugin is None else _display(plugin)


def _display(plugin: apprise.NotifyBase) -> str:
    parts = urlsplit(plugin.url(privacy=True))
    path = parts.path
    if parts.scheme in _GENERIC:
        path = "/".join(_shorten(seg) for seg in path.split("/"))
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def _shorten(segment: str) -> str:
    return f"{segment[0]}...{segment[-1]}" if len(segment) > 12 else segment


def _fallback_mask(url: str) -> str:
    match = _SCHEME.match(url.strip())
    if not match:
        return _MASK
    rest = url.strip()[match.end() :]
    netloc, _, tail = rest.partition("/")
    host = netloc.rpartition("@")[2].split(":", 1)[0]
    shown = host if _HOSTNAME.match(host) else _MASK
    return f"{match.group(1).lower()}://{shown}" + ("/" + _MASK if tail else "")


def _secrets_of(url: str, shown: str) -> set[str]:
    """Parts of ``url`` that its privacy form does not show: what logs must never print."""
    visible = set(_TOKEN_SPLIT.split(shown)) | set(_TOKEN_SPLIT.split(unquote(shown)))
    secrets = {url, url.strip()}
    for raw in _TOKEN_SPLIT.split(url.split("://", 1)[-1]):
        for token in {raw, unquote(raw)}:
            if _secretive(token) and token not in visible:
                secrets.add(token)
    return secrets


def _secretive(token: str) -> bool:
    """Long enough to be a secret and unlikely to be an ordinary word in a log line."""
    mixed = any(c.isdigit() for c in token) and any(c.isalpha() for c in token)
    return len(token) >= 8 or (len(token) >= 4 and (mixed or not token.isalpha()))


def _privacy_url(url: str) -> str:
    plugin, _ = _instantiate(url)
    return plugin.url(privacy=True) if plugin is not None else _fallback_mask(url)


_NOTIFY_TAKES_TIMEOUT = "timeout" in inspect.signature(apprise.Apprise.notify).parameters


def deliver(url: str, title: str, body: str, *, timeout: float, notify_type: str = "info") -> None:
    """Send one Markdown message to one Apprise URL; raise ``DeliveryError`` when it failed.

    ``timeout`` bounds each socket operation and, on Apprise versions that support it, the
    whole call. A failure is retryable unless the URL cannot be parsed; its message names
    the masked URL and what Apprise logged, masked.
    """
    # A fresh plugin per send: plugins keep per-instance state (throttling) between calls.
    plugin, log = _instantiate(url)
    if plugin is None:
        reason = f": {log[-1]}" if log else ""
        raise DeliveryError(f"{_fallback_mask(url)}: not a usable Apprise URL{reason}"[:_ERROR_LIMIT], permanent=True)
    masked = _display(plugin)
    _REDACTOR.add(_secrets_of(url, plugin.url(privacy=True)))
    plugin.socket_connect_timeout = min(float(plugin.socket_connect_timeout), timeout)
    plugin.socket_read_timeout = min(float(plugin.socket_read_timeout), timeout)
    sender = apprise.Apprise(asset=apprise.AppriseAsset(secure_logging=True))
    sender.add(plugin)
    kwargs: dict = {"body": body, "title": title, "notify_type": notify_type, "body_format": "markdown"}
    if _NOTIFY_TAKES_TIMEOUT:  # Apprise >= 2: a bound on the whole call, not only each socket read
        kwargs["timeout"] = timeout
    with _capturing() as log:
        try:
            ok = sender.notify(**kwargs)
        except Exception as exc:  # noqa: BLE001 - Apprise should not raise; if it does, a retry may help
            raise DeliveryError(f"{masked}: {_REDACTOR.redact(str(exc))}"[:_ERROR_LIMIT], permanent=False) from None
    if not ok:
        said = "; ".join(dict.fromkeys(log[-3:])) or "Apprise reported a failure"
        raise DeliveryError(f"{masked}: {said}"[:_ERROR_LIMIT], permanent=False)


class ChatNotifier:
    """Notices to one Apprise URL of a tenant (``notify_urls``): title = the email subject,
    body = the email's text template in Markdown, in the tenant's zone and language.

    ``channel`` is ``apprise:<scheme>``; ``target`` is the masked URL for ``notices``,
    ``status`` and logs. Nothing here retries: the outbox reads ``DeliveryError.permanent``.
    """

    def __init__(self, url: str, renderer: Renderer, *, timeout: timedelta = timedelta(seconds=10)) -> None:
        self.url = url
        self.renderer = renderer
        self.timeout = timeout.total_seconds()
        self.target = mask_apprise_url(url)
        try:
            scheme, self.problem = check_apprise_url(url), None
        except ValueError as exc:
            match = _SCHEME.match(url.strip())
            scheme, self.problem = (match.group(1).lower() if match else "invalid"), str(exc)
        self.channel = f"apprise:{scheme}"
        _REDACTOR.add(_secrets_of(url, _privacy_url(url)))

    def applies_to(self, tenant: Tenant) -> bool:
        return self.url in tuple(getattr(tenant, "notify_urls", ()) or ())

    def send(self, notice: Notice, tenant: Tenant) -> None:
        if self.problem:
            raise DeliveryError(f"{self.target}: {self.problem}", permanent=True)
        if not self.applies_to(tenant):
            raise DeliveryError(f"tenant {tenant.id} has no notify URL {self.target}", permanent=True)
        try:
            title, body = self.renderer.render_chat(notice, tenant)
        except Exception as exc:  # noqa: BLE001 - a template error; the same input fails again
            raise DeliveryError(f"cannot render the {notice.kind} chat message: {exc}", permanent=True) from exc
        deliver(self.url, title, body, timeout=self.timeout, notify_type=_NOTIFY_TYPES.get(notice.kind, "info"))


_NOTIFY_TYPES = {"started": "warning", "extended": "warning", "completed": "success", "cancelled": "info"}


def redact(text: str) -> str:
    """``text`` with every Apprise URL secret this process has seen masked (for callers that
    log or store an error that may quote one)."""
    return _REDACTOR.redact(text)
