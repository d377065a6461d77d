"""WebhookNotifier against a real HTTP server (pytest-httpserver), verified with the
reference ``standardwebhooks`` implementation rather than with our own sign()."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook as StandardWebhook
from standardwebhooks import WebhookVerificationError
from werkzeug import Response

from notifiers import WebhookNotifier, sign
from notifiers.base import DeliveryError
from scheduler.model import Webhook, WebhookSettings

try:
    from notifier_fixtures import free_port, make_notice, make_tenant, new_secret
    from raw_http_server import raw_server
except ImportError:  # tests/ became a package
    from tests.notifier_fixtures import free_port, make_notice, make_tenant, new_secret
    from tests.raw_http_server import raw_server

PATH = "/hooks/maintd"


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def tenant(httpserver, secret):
    return make_tenant(webhook=Webhook(url=httpserver.url_for(PATH), secret=secret))


def notifier(timeout: float = 2.0, **kwargs) -> WebhookNotifier:
    return WebhookNotifier(WebhookSettings(timeout=timedelta(seconds=timeout)), **kwargs)


def test_request_verifies_and_carries_the_spec_body(httpserver, tenant, secret):
    httpserver.expect_oneshot_request(PATH, method="POST").respond_with_data("", status=204)
    notice = make_notice()
    notifier().send(notice, tenant)

    ((request, _),) = httpserver.log
    body = request.get_data()
    assert StandardWebhook(secret).verify(body, dict(request.headers)) == json.loads(body)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == notice.id
    assert (
        body
        == json.dumps(
            {
                "type": "maintenance.scheduled",
                "id": notice.id,
                "window": "storage-firmware",
                "occurrence": "2026-12-05T21:00:00Z",
                "tenant": "acme",
                "title": "Storage firmware update",
                "start": "2026-12-05T21:00:00Z",
                "end": "2026-12-06T01:00:00Z",
                "message": notice.message,
                "lead": "24h",
                "late": False,
            },
            separators=(",", ":"),
        ).encode()
    )


def test_tampered_body_does_not_verify(httpserver, tenant, secret):
    httpserver.expect_oneshot_request(PATH).respond_with_data("ok")
    notifier().send(make_notice(), tenant)
    ((request, _),) = httpserver.log
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(secret).verify(request.get_data().replace(b"acme", b"evil"), dict(request.headers))


def test_sign_matches_the_reference_implementation(secret):
    body = b'{"a":1}'
    ts = 1_796_000_000
    expected = StandardWebhook(secret).sign("ntc_1", datetime.fromtimestamp(ts, UTC), body.decode())
    assert sign(secret, "ntc_1", ts, body) == expected


def test_id_is_the_same_on_every_retry_and_timestamp_is_send_time(httpserver, tenant, secret):
    httpserver.expect_request(PATH).respond_with_data("", status=200)
    clock = iter([1_796_000_000.4, 1_796_000_060.9])
    sender = notifier(clock=lambda: next(clock))
    notice = make_notice()
    sender.send(notice, tenant)
    sender.send(notice, tenant)

    first, second = (req for req, _ in httpserver.log)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == notice.id
    assert (first.headers["webhook-timestamp"], second.headers["webhook-timestamp"]) == ("1796000000", "1796000060")
    assert first.get_data() == second.get_data()
    assert first.headers["webhook-signature"] == sign(secret, notice.id, 1796000000, first.get_data())


def test_optional_fields_are_sent_when_present(httpserver, tenant):
    httpserver.expect_oneshot_request(PATH).respond_with_data("")
    start = datetime(2026, 12, 6, 21, tzinfo=UTC)
    notice = make_notice(
        "rescheduled",
        start=start,
        end=start + timedelta(hours=4),
        sequence=1,
        previous_start=datetime(2026, 12, 5, 21, tzinfo=UTC),
        previous_end=datetime(2026, 12, 6, 1, tzinfo=UTC),
        link="https://maint.example.com/t/abc/",
    )
    notifier().send(notice, tenant)
    body = json.loads(httpserver.log[0][0].get_data())
    assert body["type"] == "maintenance.rescheduled"
    assert body["previous"] == {"start": "2026-12-05T21:00:00Z", "end": "2026-12-06T01:00:00Z"}
    assert body["link"] == "https://maint.example.com/t/abc/"


@pytest.mark.parametrize(
    "status, permanent",
    [
        (500, False),
        (502, False),
        (503, False),
        (408, False),
        (429, False),
        (409, False),
        (302, False),
        (400, True),
        (401, True),
        (403, True),
        (404, True),
        (410, True),
        (413, True),
        (422, True),
    ],
    ids=lambda v: str(v),
)
def test_status_codes_map_to_permanence(httpserver, tenant, secret, status, permanent):
    httpserver.expect_oneshot_request(PATH).respond_with_data(
        "upstream said no\n  details", status=status, headers={"Location": "http://127.0.0.1:1/x"}
    )
    with pytest.raises(DeliveryError) as info:
        notifier().send(make_notice(), tenant)
    assert info.value.permanent is permanent
    assert info.value.detail["status"] == status
    assert f"HTTP {status}" in info.value.message
    assert "upstream said no details" in info.value.message
    assert secret not in info.value.message and secret.removeprefix("whsec_") not in info.value.message
    assert len(httpserver.log) == 1  # a redirect is reported, not followed


@pytest.mark.parametrize("status", [200, 201, 202, 204], ids=str)
def test_2xx_is_delivered(httpserver, tenant, status):
    httpserver.expect_oneshot_request(PATH).respond_with_data("", status=status)
    assert notifier().send(make_notice(), tenant) is None


def test_retry_after_is_passed_on(httpserver, tenant):
    httpserver.expect_oneshot_request(PATH).respond_with_data("slow down", status=429, headers={"Retry-After": "120"})
    with pytest.raises(DeliveryError) as info:
        notifier().send(make_notice(), tenant)
    assert info.value.detail == {"status": 429, "retry_after": 120}


def test_slow_receiver_is_a_temporary_failure(httpserver, tenant):
    def slow(request):
        time.sleep(0.8)
        return Response("too late", status=200)

    httpserver.expect_oneshot_request(PATH).respond_with_handler(slow)
    started = time.monotonic()
    with pytest.raises(DeliveryError) as info:
        notifier(timeout=0.3).send(make_notice(), tenant)
    assert time.monotonic() - started < 0.75
    assert info.value.permanent is False
    assert "0.3s" in info.value.message


def test_connection_refused_is_temporary_and_hides_the_url_path(secret):
    url = f"http://127.0.0.1:{free_port()}/hooks/token-abc123"
    with pytest.raises(DeliveryError) as info:
        notifier().send(make_notice(), make_tenant(webhook=Webhook(url=url, secret=secret)))
    assert info.value.permanent is False
    assert "token-abc123" not in info.value.message and secret not in info.value.message


def test_invalid_url_is_permanent(secret):
    with pytest.raises(DeliveryError) as info:
        notifier().send(make_notice(), make_tenant(webhook=Webhook(url="hooks.acme.example/x", secret=secret)))
    assert info.value.permanent is True


def test_bad_secret_is_permanent_and_not_echoed(httpserver):
    tenant = make_tenant(webhook=Webhook(url=httpserver.url_for(PATH), secret="whsec_not*base64!"))
    with pytest.raises(DeliveryError) as info:
        notifier().send(make_notice(), tenant)
    assert info.value.permanent is True
    assert "not*base64" not in info.value.message
    assert httpserver.log == []


def test_applies_to(tenant):
    assert notifier().applies_to(tenant)
    assert not notifier().applies_to(make_tenant(webhook=None))


def test_concurrent_senders_share_one_pooled_client(httpserver, tenant):
    """httpx.Client is thread-safe: the outbox's senders share one pool instead of one each."""
    import threading

    httpserver.expect_request(PATH, method="POST").respond_with_data("", status=204)
    n = notifier()
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            n.send(make_notice(tenant=f"t{i}"), tenant)
            n.send(make_notice(tenant=f"t{i}", kind="started"), tenant)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    assert sum(1 for _, resp in httpserver.log if resp.status_code == 204) == 8
    assert n.http is notifier().http  # the process-wide helper


def test_trickling_receiver_hits_the_total_deadline(secret):
    """A byte every 0.5 s never trips a per-read timeout; the total deadline must."""

    def trickle(conn) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100:
            conn.sendall(bytes([byte]))
            time.sleep(0.5)

    with raw_server(trickle) as url:
        started = time.monotonic()
        with pytest.raises(DeliveryError) as info:
            notifier(timeout=1.5).send(make_notice(), make_tenant(webhook=Webhook(url=url, secret=secret)))
        elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 2.2
    assert info.value.permanent is False and "1.5s" in info.value.message


def test_a_huge_error_body_is_read_only_up_to_64_kib(secret):
    """A 500 with a 50 MB body: at most 64 KiB is read, and memory barely moves."""
    import tracemalloc

    sent = []

    def huge(conn) -> None:
        conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\n\r\n" % (50 << 20))
        chunk, total = b"e" * 65536, 0
        try:
            while total < 50 << 20:
                conn.sendall(chunk)
                total += len(chunk)
        except OSError:
            pass  # the client hung up: what we want
        sent.append(total)

    with raw_server(huge) as url:
        tracemalloc.start()
        try:
            with pytest.raises(DeliveryError) as info:
                notifier().send(make_notice(), make_tenant(webhook=Webhook(url=url, secret=secret)))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert info.value.status == 500 and info.value.permanent is False
    assert len(info.value.message) < 400  # an excerpt, not the body
    assert peak < 2 << 20, f"peak Python allocations {peak} bytes"
    assert sent and sent[0] < 20 << 20  # the sender was stopped long before 50 MB


def test_410_is_permanent_and_gone(httpserver, tenant):
    httpserver.expect_oneshot_request(PATH).respond_with_data("gone", status=410)
    with pytest.raises(DeliveryError) as info:
        notifier().send(make_notice(), tenant)
    assert (info.value.permanent, info.value.gone, info.value.status) == (True, True, 410)


def test_429_retry_after_gives_retry_after(httpserver, tenant):
    httpserver.expect_oneshot_request(PATH).respond_with_data("later", status=429, headers={"Retry-After": "90"})
    with pytest.raises(DeliveryError) as info:
        notifier().send(make_notice(), tenant)
    assert info.value.permanent is False and info.value.gone is False
    assert info.value.retry_after == timedelta(seconds=90)
