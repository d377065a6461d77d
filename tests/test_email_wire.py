"""The email's wire form after the fan-out shortcuts (issue #19): the header fast path writes
exactly what the stdlib's compat32 folding writes, and the boundaries maintd chooses are
distinct, absent from the bodies, and parse back into the same three parts."""

from __future__ import annotations

import email
import random
import string
from email import policy

from notifier_fixtures import make_notice, make_tenant, renderer  # noqa: F401

from notifiers import EmailNotifier
from notifiers.email import _WIRE
from scheduler.model import EmailSettings

STOCK = policy.compat32.clone(max_line_length=998, linesep="\r\n")


def test_the_header_fast_path_writes_what_compat32_writes():
    rng = random.Random(19)
    alphabet = string.ascii_letters + string.digits + " ;,=\"'()<>@:/.-_?!\t"
    values = ["", " lead", "trail ", "a  b", "x" * 996, "x" * 997, "Grüße", "line\nbreak", "=?utf-8?b?w6Q=?="]
    values += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(5000)]
    for value in values:
        for name in ("Subject", "To", "Content-Type"):
            assert _WIRE.fold_binary(name, value) == STOCK.fold_binary(name, value), (name, value)


def test_a_message_flattens_as_the_stdlib_would_and_parses_back(renderer):  # noqa: F811
    notifier = EmailNotifier(EmailSettings(sender="Example Cloud NOC <noc@example.com>"), renderer)
    notice, tenant = make_notice(title="Storage upgrade — Nürnberg"), make_tenant()
    msg = notifier.build_message(notice, tenant)
    wire = msg.as_bytes(policy=_WIRE)
    assert wire == msg.as_bytes(policy=STOCK)  # same bytes as the stock policy writes
    parsed = email.message_from_bytes(wire)
    outer, inner = parsed.get_boundary(), parsed.get_payload(0).get_boundary()
    assert outer and inner and outer != inner
    for part in parsed.walk():
        if not part.is_multipart():
            text = part.get_payload(decode=True).decode("utf-8")
            assert outer not in text and inner not in text
    kinds = [p.get_content_type() for p in parsed.walk() if not p.is_multipart()]
    assert kinds == ["text/plain", "text/html", "text/calendar"]
    assert "Nürnberg" in str(email.header.make_header(email.header.decode_header(parsed["Subject"])))
    again = notifier.build_message(notice, tenant)
    assert again.get_boundary() != msg.get_boundary()  # a fresh boundary per message
