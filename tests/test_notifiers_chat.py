"""Apprise chat channel and the ops room, against real receivers on loopback.

Each Apprise URL is one delivery; its secrets never reach an exception, a log record or
the masked form. Receivers are pytest-httpserver instances speaking the services' APIs.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Response

from notifiers import ChatNotifier, Notifier, Renderer, build_chat_notifiers, check_apprise_url, mask_apprise_url
from notifiers.ops import OPS_EVENTS, OPS_TEXTS, OpsNotifier, render_ops
from scheduler.errors import DeliveryError
from scheduler.model import NOTICE_KINDS, Tenant

try:
    from notifier_fixtures import PROVIDER, free_port, make_notice, make_tenant
except ImportError:  # tests/ became a package
    from tests.notifier_fixtures import PROVIDER, free_port, make_notice, make_tenant

TITLE = "Storage firmware update"
PASSWORD = "s3cr3t-Pa55"


@dataclass(frozen=True, kw_only=True)
class ChatTenant(Tenant):
    """A tenant with the SPEC 4.2/4.3 fields the model will carry (read with getattr)."""

    notify_urls: tuple[str, ...] = ()
    locale: str = "en"

    __hash__ = Tenant.__hash__


def tenant_with(*urls: str, locale: str = "en") -> ChatTenant:
    base = make_tenant()
    return ChatTenant(
        id=base.id, name=base.name, zone=base.zone, email=base.email, notify_urls=tuple(urls), locale=locale
    )


def notifier(url: str, timeout: float = 2.0) -> ChatNotifier:
    return ChatNotifier(url, Renderer(PROVIDER), timeout=timedelta(seconds=timeout))


# --- receivers: (URL template, request path, how to read title and body from the request) ---


def _json(req):
    body = req.get_json()
    return body.get("title", ""), body.get("message") or body.get("text") or ""


def _form(req):
    form = parse_qs(req.get_data(as_text=True))
    return form["title"][0], form["message"][0]


RECEIVERS = {
    "json": ("json://127.0.0.1:{port}/maintd", "/maintd", _json),
    "form": ("form://127.0.0.1:{port}/maintd", "/maintd", _form),
    "ntfy": ("ntfy://127.0.0.1:{port}/maint", "/", _json),
    "gotify": ("gotify://127.0.0.1:{port}/AbCdEfGh12345", "/message", _json),
    "mmost": (
        "mmost://127.0.0.1:{port}/3ccdd113474722377935511fc85d3dd4",
        "/hooks/3ccdd113474722377935511fc85d3dd4",
        _json,
    ),
}


def _serve(httpserver, path: str, status: int = 200) -> None:
    httpserver.clear_all_handlers()
    httpserver.expect_request(path, method="POST").respond_with_data(
        "{}", status=status, content_type="application/json"
    )


@pytest.mark.parametrize("kind", NOTICE_KINDS)
@pytest.mark.parametrize("scheme", sorted(RECEIVERS))
def test_every_kind_arrives_at_every_receiver(httpserver, scheme, kind):
    template, path, read = RECEIVERS[scheme]
    url = template.format(port=httpserver.port)
    _serve(httpserver, path)
    chat = notifier(url)
    assert chat.channel == f"apprise:{scheme}"
    assert chat.send(make_notice(kind), tenant_with(url)) is None
    ((req, resp),) = httpserver.log
    assert resp.status_code == 200
    title, body = read(req)
    assert TITLE in title + body
    assert "Sat 5 Dec 2026 22:00 CET" in title + body  # the tenant's zone


def test_title_is_the_subject_and_body_is_markdown(httpserver):
    url = f"json://127.0.0.1:{httpserver.port}/maintd"
    _serve(httpserver, "/maintd")
    notifier(url).send(make_notice("scheduled", link="https://maint.example.com/t/a_b/"), tenant_with(url))
    title, body = _json(httpserver.log[0][0])
    assert title == f"[{PROVIDER}] Scheduled maintenance: {TITLE} — Sat 5 Dec 2026 22:00 CET"
    assert "- **Start:** Sat 5 Dec 2026 22:00 CET" in body
    assert "<https://maint.example.com/t/a_b/>" in body
    assert "Hello" not in body and "-- \n" not in body  # no mail greeting or signature


def test_markup_from_windows_yaml_is_escaped_in_markdown():
    title, body = Renderer(PROVIDER).render_chat(make_notice(title="*bold* <b>x</b> [l](u)"), make_tenant())
    assert r"\*bold\* \<b\>x\</b\> \[l\](u)" in body
    assert "*bold* <b>x</b>" in title  # a title is plain text everywhere


@pytest.mark.parametrize("status", [500, 503, 404])
def test_a_failing_receiver_is_retryable(httpserver, status):
    url = f"json://127.0.0.1:{httpserver.port}/maintd"
    _serve(httpserver, "/maintd", status=status)
    with pytest.raises(DeliveryError) as info:
        notifier(url).send(make_notice(), tenant_with(url))
    assert info.value.permanent is False
    assert str(info.value).startswith(f"json://127.0.0.1:{httpserver.port}/maintd: ")
    assert str(status) in str(info.value)


def test_refused_connection_is_retryable():
    url = f"ntfy://127.0.0.1:{free_port()}/maint"
    with pytest.raises(DeliveryError) as info:
        notifier(url).send(make_notice(), tenant_with(url))
    assert info.value.permanent is False


def test_a_slow_receiver_is_cut_off_by_the_timeout():
    def slow(request):
        time.sleep(1.0)
        return Response("{}", status=200)

    # Its own server: the handler outlives the test and must not answer the next test's request.
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request("/maintd", method="POST").respond_with_handler(slow)
    server.start()
    try:
        url = f"json://127.0.0.1:{server.port}/maintd"
        began = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            notifier(url, timeout=0.3).send(make_notice(), tenant_with(url))
        assert info.value.permanent is False
        assert time.monotonic() - began < 0.9
    finally:
        server.stop()


@pytest.mark.parametrize(
    "url, message",
    [
        ("foo://example.com/x", 'unknown scheme "foo"'),
        ("https://example.com/hook", 'unknown scheme "https"'),
        ("json://", "malformed json:// URL"),
        ("gotify://127.0.0.1/", "malformed gotify:// URL"),
        ("not a url", "malformed Apprise URL"),
    ],
    ids=["unknown_scheme", "plain_https", "json_without_host", "gotify_without_token", "no_scheme"],
)
def test_unusable_urls_are_permanent_failures(url, message):
    chat = notifier(url)
    assert chat.problem.startswith(message)
    with pytest.raises(DeliveryError) as info:
        chat.send(make_notice(), tenant_with(url))
    assert info.value.permanent is True


def test_a_tenant_without_the_url_is_a_permanent_failure():
    chat = notifier("ntfy://127.0.0.1:9/maint")
    assert isinstance(chat, Notifier)
    assert chat.applies_to(tenant_with("ntfy://127.0.0.1:9/maint"))
    assert not chat.applies_to(make_tenant())  # today's Tenant has no notify_urls at all
    with pytest.raises(DeliveryError) as info:
        chat.send(make_notice(), tenant_with("ntfy://127.0.0.1:9/other"))
    assert info.value.permanent is True


def test_build_chat_notifiers_makes_one_per_distinct_url():
    a, b = "ntfy://127.0.0.1:9/a", "json://127.0.0.1:9/b"
    built = build_chat_notifiers([tenant_with(a, b), tenant_with(a), make_tenant()], Renderer(PROVIDER))
    assert list(built) == [a, b]
    assert [n.channel for n in built.values()] == ["apprise:ntfy", "apprise:json"]


# --- URL checks and masks -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url, scheme",
    [
        ("json://127.0.0.1:8080/hook", "json"),
        ("jsons://user:pw@hooks.example.com/hook", "jsons"),
        ("ntfys://ntfy.acme.example/maint", "ntfys"),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general", "slack"),
        ("https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "slack"),
        ("tgram://123456789:AAHabcdefghijklmnop/12315544/", "tgram"),
        ("mmost://mattermost.example.com/3ccdd113474722377935511fc85d3dd4", "mmost"),
    ],
    ids=["json", "jsons_with_password", "ntfys", "slack", "slack_native_https", "telegram", "mattermost"],
)
def test_check_apprise_url_names_the_scheme(url, scheme):
    assert check_apprise_url(url) == scheme


@pytest.mark.parametrize(
    "url, secrets, shown",
    [
        ("json://user:s3cr3t@127.0.0.1:8080/", ["s3cr3t"], "json://user:****@127.0.0.1:8080/"),
        (
            "json://hooks.example.com/incoming/Zx81f7Qk2LmN0pR4sT6v?token=abcdef123",
            ["Zx81f7Qk2LmN0pR4sT6v", "abcdef123"],
            "json://hooks.example.com/incoming/Z...v",
        ),
        (
            "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
            ["T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"],
            "slack://",
        ),
        ("tgram://123456789:AAHabcdefghijklmnop/12315544/", ["123456789", "AAHabcdefghijklmnop"], "tgram://"),
        ("gotify://127.0.0.1:8080/AbCdEfGh12345", ["AbCdEfGh12345"], "gotify://127.0.0.1:8080/"),
        ("matrix://bot:hunter22@matrix.example.com/#ops", ["hunter22"], "matrix://bot:****@matrix.example.com/"),
        ("foo://user:pw123@example.com/tok3n", ["pw123", "tok3n", "user"], "foo://example.com/****"),
        ("tgram://", [], "tgram://"),
    ],
    ids=["json_password", "json_path_and_query", "slack_native", "telegram", "gotify", "matrix", "unknown", "empty"],
)
def test_mask_apprise_url_hides_every_secret(url, secrets, shown):
    masked = mask_apprise_url(url)
    assert masked.startswith(shown)
    for secret in secrets:
        assert secret not in masked


def test_a_password_appears_nowhere(httpserver, caplog):
    """In no exception text, no log record (Apprise's TRACE included) and no mask."""
    url = f"json://user:{PASSWORD}@127.0.0.1:{httpserver.port}/maintd"
    _serve(httpserver, "/maintd")
    caplog.set_level(1)
    chat = notifier(url)
    chat.send(make_notice(), tenant_with(url))
    (auth,) = [req.headers["Authorization"] for req, _ in httpserver.log if "Authorization" in req.headers]
    assert base64.b64decode(auth.split()[1]).decode() == f"user:{PASSWORD}"  # the URL was really used
    _serve(httpserver, "/maintd", status=500)
    with pytest.raises(DeliveryError) as failed:
        chat.send(make_notice(), tenant_with(url))
    unknown = f"json://user:{PASSWORD}@"  # json:// without a host: Apprise cannot parse it
    with pytest.raises(DeliveryError) as unparsed:
        notifier(unknown).send(make_notice(), tenant_with(unknown))
    with pytest.raises(ValueError) as invalid:
        check_apprise_url(unknown)
    texts = [str(failed.value), str(unparsed.value), str(invalid.value), mask_apprise_url(url), chat.target]
    texts += [r.getMessage() for r in caplog.records]
    assert any(r.name == "apprise" for r in caplog.records)  # Apprise did log
    assert [t for t in texts if PASSWORD in t] == []


def test_apprise_records_are_masked_for_other_handlers_too(caplog):
    """A URL Apprise logs at ERROR (it could not load it) reaches handlers masked."""
    caplog.set_level(logging.DEBUG, logger="apprise")
    mask_apprise_url("gotify://127.0.0.1/")  # no token: Apprise logs an error while loading it
    url = "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js"
    check_apprise_url(url)
    assert caplog.records
    assert not [r for r in caplog.records if "JHMHI8qBe7bk2ZwO5U711o3dV_js" in r.getMessage()]


# --- the ops room ---------------------------------------------------------------------------

RECORD = dict(
    window="storage-firmware",
    title=TITLE,
    occurrence="2026-12-05T21:00:00Z",
    start="2026-12-05T21:00:00Z",
    end="2026-12-06T01:00:00Z",
    zone="Europe/Berlin",
    tenants=["acme", "beta", "gamma"],
)
OPS_CASES = {
    "started": (
        {},
        ["Maintenance started", "3 tenant(s): acme, beta, gamma", "`maintd exit --window storage-firmware`"],
    ),
    "ended": ({}, ["Maintenance ended", "released", "`maintd history`"]),
    "extended": (
        {"previous_end": "2026-12-06T00:00:00Z", "reason": "End check failing."},
        ["was Sun 6 Dec 2026 01:00 CET", "End check failing.", "`maintd exit --window storage-firmware`"],
    ),
    "drain_overrun": (
        {"jobs": ["acme/backup-17", "beta/copy-3"]},
        ["2 job(s)", "acme/backup-17, beta/copy-3", "`maintd extend storage-firmware 30m`"],
    ),
    "notice_failed": (
        {"count": 2, "channel": "apprise:ntfy", "error": "HTTP 500"},
        ["2 notice(s)", "apprise:ntfy", "HTTP 500", "`maintd notices --failed`", "`maintd notices --retry --failed`"],
    ),
    "end_check_failing": (
        {"error": "exit 1", "max_end": "2026-12-06T03:00:00Z"},
        ["exit 1", "at most Sun 6 Dec 2026 04:00 CET", "`maintd exit --window storage-firmware`"],
    ),
    "hook_failed": (
        {"hook": "on_start", "attempts": 3, "error": "exit 2"},
        ["on\\_start hook", "3 attempt(s)", "exit 2"],
    ),
    "integration_failed": (
        {"integration": "alertmanager", "action": "create the silence", "error": "HTTP 503"},
        ["alertmanager could not create the silence", "HTTP 503", "`maintd status`"],
    ),
}
assert set(OPS_CASES) == set(OPS_EVENTS) == set(OPS_TEXTS)


@pytest.mark.parametrize("event", OPS_EVENTS)
def test_ops_texts_say_what_when_and_what_to_do(event):
    extra, expected = OPS_CASES[event]
    title, body = render_ops({**RECORD, "event": event, **extra}, provider=PROVIDER)
    assert title.startswith(f"[{PROVIDER}] ") and title.endswith(TITLE)
    what, when, tenants, todo = body.splitlines()
    assert what.startswith("**What:** ") and f"**{TITLE}** (`storage-firmware`)" in what
    assert when == "**When:** Sat 5 Dec 2026 22:00 CET to Sun 6 Dec 2026 02:00 CET (Europe/Berlin)"
    assert tenants == "**Tenants:** 3 tenant(s): acme, beta, gamma"
    assert todo.startswith("**To do:** ")
    for snippet in expected:
        assert snippet in title + body
    assert "?" not in what  # every field the text names was filled


@pytest.mark.parametrize(
    "record, expected",
    [
        ({"tenant_count": 40}, "40 tenant(s)"),
        ({"tenants": [f"t{i}" for i in range(8)]}, "8 tenant(s): t0, t1, t2, t3, t4 and 3 more"),
        ({"tenants": ["solo"]}, "solo"),
        ({}, "all affected tenants"),
    ],
    ids=["count_only", "long_list", "one", "none_given"],
)
def test_ops_tenants_line(record, expected):
    base = {k: v for k, v in RECORD.items() if k != "tenants"}
    _, body = render_ops({**base, "event": "started", **record})
    assert f"**Tenants:** {expected}\n" in body


def test_ops_unknown_event_is_refused():
    with pytest.raises(ValueError, match='unknown ops event "exploded"'):
        render_ops({**RECORD, "event": "exploded"})
    with pytest.raises(ValueError, match="unknown ops event"):
        OpsNotifier("json://127.0.0.1:9/", events=["started", "exploded"])


def test_ops_notifier_delivers_to_the_room(httpserver):
    _serve(httpserver, "/noc")
    room = OpsNotifier(f"json://127.0.0.1:{httpserver.port}/noc", provider=PROVIDER, events=["notice_failed"])
    assert room.channel == "apprise:json" and room.wants("notice_failed") and not room.wants("started")
    room.send({**RECORD, "event": "notice_failed", "count": 1, "channel": "email", "error": "550"})
    title, body = _json(httpserver.log[0][0])
    assert title == f"[{PROVIDER}] Notices failed: {TITLE}"
    assert "maintd notices --retry --failed" in body
    assert json.loads(httpserver.log[0][0].get_data())["type"] == "failure"
