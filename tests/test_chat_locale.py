"""Tenant languages and chat URLs at load and end to end (SPEC 4.2, 4.3).

Config: a bad Apprise scheme, an unknown locale and an unknown ops event are errors at their
exact FILE:LINE:COL, and no URL secret is in the message. End to end: a German and a French
tenant get their email, chat message and tenant page in their language, with the weekday and
month of the window's date spelled as that language does (checked against fixed tables, not
against Babel, which renders them).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import requests
from conftest import free_port
from test_chat_e2e import Receiver, wait_until

from scheduler import config as config_mod
from scheduler.errors import ConfigError

try:
    from notifier_fixtures import SMTP_PASSWORD, SMTP_USER, smtp_auth_server  # noqa: F401 - a fixture
except ImportError:  # tests/ became a package
    from tests.notifier_fixtures import SMTP_PASSWORD, SMTP_USER, smtp_auth_server  # noqa: F401

BASE = """\
version: 1
provider:
  name: Example Cloud
  timezone: Europe/Berlin
{extra}tenants:
  - id: acme
    {field}
windows: []
"""


@pytest.mark.parametrize(
    "extra, field, where, expected",
    [
        ("", 'notify_urls: ["nosuch://user:pw9876@host/x"]', (7, 19), 'notify_urls[0]: unknown scheme "nosuch"'),
        ("", 'notify_urls: ["https://user:pw9876@example.com/"]', (7, 19), 'unknown scheme "https"'),
        ("", "locale: es", (7, 13), 'unknown locale "es"; maintd has: de, en, fr'),
        ("", "locale: xx-YY", (7, 13), 'unknown locale "xx-YY"; maintd has: de, en, fr'),
        (
            "  ops:\n    urls: []\n    events: [started, teatime]\n",
            "locale: de",
            (7, 23),
            'unknown ops event "teatime"; expected one of: started, ended, extended',
        ),
        ('  ops:\n    urls: ["zzz://tok12345@h/"]\n', "locale: fr", (6, 12), 'urls[0]: unknown scheme "zzz"'),
    ],
    ids=["bad_scheme", "plain_https", "unknown_locale", "unknown_region_tag", "unknown_ops_event", "ops_bad_scheme"],
)
def test_channel_and_locale_errors_at_their_position(tmp_path, extra, field, where, expected):
    path = tmp_path / "windows.yaml"
    path.write_text(BASE.format(extra=extra, field=field))
    with pytest.raises(ConfigError) as info:
        config_mod.load(str(path), {})
    (issue,) = info.value.issues
    assert (issue.file, issue.line, issue.col) == (str(path), *where), str(issue)
    assert expected in issue.message
    for secret in ("pw9876", "tok12345"):
        assert secret not in str(issue)


def test_valid_channels_and_locales_reach_the_model(tmp_path):
    path = tmp_path / "windows.yaml"
    path.write_text(
        BASE.format(
            extra='  ops:\n    urls: ["json://127.0.0.1:9/ops"]\n    events: [started, notice_failed]\n',
            field='notify_urls: ["ntfy://127.0.0.1:9/t", "json://u:p@127.0.0.1:9/"]\n    locale: de-AT',
        )
    )
    cfg = config_mod.load(str(path), {})
    acme = cfg.tenants["acme"]
    assert acme.notify_urls == ("ntfy://127.0.0.1:9/t", "json://u:p@127.0.0.1:9/")
    assert acme.locale == "de-AT"
    assert cfg.provider.ops.urls == ("json://127.0.0.1:9/ops",)
    assert cfg.provider.ops.events == ("started", "notice_failed")


# --------------------------------------------------------------------------------------
# a German and a French tenant, end to end

WEEKDAYS = {
    "de": ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"],
    "fr": ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"],
}
MONTHS = {
    "de": "Januar Februar März April Mai Juni Juli August September Oktober November Dezember".split(),
    "fr": "janvier février mars avril mai juin juillet août septembre octobre novembre décembre".split(),
}
WORDS = {  # a fixed text of each rendering, in that language
    "de": {"subject": "Geplante Wartung", "page": "Geplante Wartungen"},
    "fr": {"subject": "Maintenance", "page": "Maintenances prévues"},
}

LOCALE_CONFIG = """
version: 1
daemon: {{listen: "{{listen}}", database: maintd.db}}
provider:
  name: Example Cloud
  timezone: Europe/Berlin
tenants:
  - id: berlin
    locale: de
    email: [it@berlin.example]
    notify_urls: ["json://127.0.0.1:{port}/de"]
  - id: paris
    locale: fr
    timezone: Europe/Paris
    email: [it@paris.example]
    notify_urls: ["json://127.0.0.1:{port}/fr"]
notifiers:
  email:
    host: 127.0.0.1
    port: {smtp}
    username: ${{SMTP_USER}}
    password: ${{SMTP_PASSWORD}}
    sender: "Example Cloud NOC <noc@example.com>"
windows:
  - id: fw
    title: Storage firmware update
    start: {start}
    duration: 2h
    notify: [7d]
"""


@pytest.mark.slow
def test_german_and_french_tenants_read_email_chat_and_page_in_their_language(daemon_factory, smtp_auth_server):
    receiver = Receiver()
    receiver.thread.start()
    try:
        _german_and_french(daemon_factory, smtp_auth_server, receiver)
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def _german_and_french(daemon_factory, smtp, receiver):
    berlin = ZoneInfo("Europe/Berlin")
    day = (datetime.now(berlin) + timedelta(days=3)).date()
    start = datetime(day.year, day.month, day.day, 22, 0, tzinfo=berlin)
    text = LOCALE_CONFIG.format(port=receiver.port, smtp=smtp.port, start=start.strftime("%Y-%m-%dT%H:%M"))
    d = daemon_factory(text, env={"SMTP_USER": SMTP_USER, "SMTP_PASSWORD": SMTP_PASSWORD})
    wait_until(lambda: len(smtp.inbox.messages) >= 2, 30, "both emails", d.log)
    wait_until(lambda: receiver.posts("/de") and receiver.posts("/fr"), 15, "both chat messages", d.log)
    weekday = {loc: WEEKDAYS[loc][start.weekday()] for loc in WEEKDAYS}
    month = {loc: MONTHS[loc][start.month - 1] for loc in MONTHS}

    mails = {m["To"].split("@")[1].split(".")[0]: m for m in smtp.inbox.messages}
    for tenant, loc in (("berlin", "de"), ("paris", "fr")):
        mail = mails[tenant]
        subject = str(mail["Subject"])
        assert WORDS[loc]["subject"] in subject, subject
        assert weekday[loc] in subject and month[loc] in subject, subject
        body = mail.get_body(("plain",)).get_content()
        assert weekday[loc] in body and f"{start.day}" in body and month[loc] in body, body
        chat = json.loads(receiver.posts(f"/{loc}")[0][2])
        assert weekday[loc] in chat["title"] + chat["message"], chat
        assert month[loc] in chat["message"], chat
        for other in ("de", "fr"):
            if other != loc:
                assert weekday[other] not in chat["message"]

        out = d.cli("tenant-url", tenant)
        assert out.returncode == 0, out.stderr
        page_url = re.search(r"page:\s+(\S+)", out.stdout).group(1)
        page = requests.get(page_url, timeout=10).text
        assert f'lang="{loc}"' in page, page[:300]
        assert WORDS[loc]["page"] in page
        assert weekday[loc] in page and month[loc] in page
    assert "Upcoming maintenance" not in page  # the French page has no English heading
    assert free_port()  # the receiver ports were loopback only
