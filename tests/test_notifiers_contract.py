"""One contract, every channel: deliver, fail permanently, fail temporarily, applies_to."""

from __future__ import annotations

import pytest

from notifiers import Notifier
from scheduler.errors import DeliveryError

try:
    from notifier_fixtures import email_receiver, make_notice, renderer, smtp_server, webhook_receiver  # noqa: F401
except ImportError:  # tests/ became a package
    from tests.notifier_fixtures import email_receiver, make_notice, renderer, smtp_server, webhook_receiver  # noqa: F401

CHANNELS = ["email", "webhook"]


@pytest.fixture(params=CHANNELS)
def receiver(request):
    return request.getfixturevalue(f"{request.param}_receiver")


def test_is_a_notifier(receiver):
    assert isinstance(receiver.notifier, Notifier)
    assert receiver.notifier.channel in CHANNELS


def test_delivers_a_notice(receiver):
    receiver.answer("ok")
    assert receiver.notifier.send(make_notice(), receiver.tenant) is None
    assert len(receiver.received()) == 1


@pytest.mark.parametrize(
    "outcome, permanent", [("permanent", True), ("temporary", False)], ids=["permanent", "temporary"]
)
def test_failure_says_whether_a_retry_can_help(receiver, outcome, permanent):
    receiver.answer(outcome)
    with pytest.raises(DeliveryError) as info:
        receiver.notifier.send(make_notice(), receiver.tenant)
    assert info.value.permanent is permanent
    assert info.value.message
    assert receiver.received() == []


def test_applies_to_tenants_with_the_channel(receiver):
    assert receiver.notifier.applies_to(receiver.tenant)
    assert not receiver.notifier.applies_to(receiver.without_channel)


def test_send_to_tenant_without_the_channel_is_permanent(receiver):
    with pytest.raises(DeliveryError) as info:
        receiver.notifier.send(make_notice(), receiver.without_channel)
    assert info.value.permanent
