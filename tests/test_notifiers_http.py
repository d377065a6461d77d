"""The one HTTP helper: classification, Retry-After, masking, connection reuse, body cap.

The deadline and the 64 KiB cap against misbehaving receivers are in test_notifiers_webhook.py
(through a channel, as the daemon uses them); here the helper's own rules, as tables.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from notifiers.base import DeliveryError
from notifiers.http import HttpClient, Response, mask_url, parse_retry_after, raise_for_response

try:
    from raw_http_server import raw_server
except ImportError:  # tests/ became a package
    from tests.raw_http_server import raw_server

NOW = datetime(2026, 12, 5, 21, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "url, masked",
    [
        ("https://user:pw@am.example:9093/api?token=abc", "https://***@am.example:9093/api?***"),
        ("http://127.0.0.1:9093", "http://127.0.0.1:9093"),
        ("https://hooks.example/x/y", "https://hooks.example/x/y"),
        ("hooks.example/x", "(invalid URL)"),
    ],
    ids=["userinfo_and_query", "plain", "path_kept", "no_scheme"],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


@pytest.mark.parametrize(
    "value, expected",
    [
        ("120", timedelta(seconds=120)),
        ("Sat, 05 Dec 2026 21:02:00 GMT", timedelta(minutes=2)),
        ("Sat, 05 Dec 2026 20:00:00 GMT", timedelta(0)),
        ("soon", None),
        (None, None),
    ],
    ids=["seconds", "http_date", "date_in_the_past", "garbage", "absent"],
)
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value, now=NOW) == expected


def answer(status: int, body: bytes = b"", headers: dict | None = None) -> Response:
    return Response(status=status, headers=httpx.Headers(headers or {}), body=body)


@pytest.mark.parametrize(
    "status, permanent, gone",
    [
        (408, False, False),
        (425, False, False),
        (429, False, False),
        (500, False, False),
        (503, False, False),
        (302, True, False),
        (400, True, False),
        (404, True, False),
        (409, True, False),
        (410, True, True),
    ],
    ids=str,
)
def test_classification(status, permanent, gone):
    with pytest.raises(DeliveryError) as info:
        raise_for_response(answer(status, b"no"), where="x")
    assert (info.value.permanent, info.value.gone, info.value.status) == (permanent, gone, status)


@pytest.mark.parametrize("status", [200, 201, 204], ids=str)
def test_2xx_passes(status):
    assert raise_for_response(answer(status), where="x") is None


def test_retry_after_date_is_read_against_the_receivers_date_header():
    response = answer(
        503, headers={"Retry-After": "Sat, 05 Dec 2026 21:05:00 GMT", "Date": "Sat, 05 Dec 2026 21:00:00 GMT"}
    )
    with pytest.raises(DeliveryError) as info:
        raise_for_response(response, where="x", now=NOW + timedelta(hours=1))  # our clock is off
    assert info.value.retry_after == timedelta(minutes=5)
    assert info.value.detail == {"status": 503, "retry_after": 300}


def test_message_quotes_at_most_200_characters():
    with pytest.raises(DeliveryError) as info:
        raise_for_response(answer(400, b"word " * 500), where="am http://127.0.0.1")
    assert len(info.value.message) < 260 and info.value.message.startswith("am http://127.0.0.1 answered HTTP 400: ")


def ok(conn) -> None:
    conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"id": "a"}')


def test_connections_are_reused():
    client = HttpClient(timeout=2)
    with raw_server(ok, requests_per_connection=5) as url:
        for _ in range(3):
            assert client.request("GET", url).json() == {"id": "a"}
        assert raw_server.accepted == 1
    client.close()


def test_a_channel_can_judge_the_answer_itself():
    def strict(response: Response) -> None:
        if response.json().get("id") != "b":
            raise DeliveryError("unexpected id", permanent=True)

    with raw_server(ok) as url, pytest.raises(DeliveryError, match="unexpected id"):
        HttpClient(timeout=2).request("GET", url, check=strict)


def test_connection_refused_is_retryable_and_masks_the_url():
    with raw_server(ok) as url:
        pass  # closed again: nobody listens there now
    with pytest.raises(DeliveryError) as info:
        HttpClient(timeout=2).request("GET", url.replace("http://", "http://u:pw@"))
    assert info.value.permanent is False
    assert "s3cret" not in info.value.message and "pw" not in info.value.message
