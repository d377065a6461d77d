"""Notices end to end: a real `maintd run`, a real SMTP server (aiosmtpd, with AUTH from
the environment) and a real webhook receiver (pytest-httpserver) that checks every
signature with the `standardwebhooks` package.

What SPEC section 4 promises and these tests hold it to: every kind reaches the tenants it
concerns exactly once, across a `kill -9`; a moved window is `rescheduled` (same calendar
UID, SEQUENCE + 1, the previous times) and a removed one `cancelled` to those told only;
retries keep the `webhook-id`; a receiver that never answers ends `failed`; the
`completed` notice reports each tenant's own refused jobs; a broken provider template is
a reload error, not a send error; `--dry-run` renders and records instead of sending.
"""

from __future__ import annotations

import base64
import email.message
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import icalendar
import pytest
from conftest import free_port, iso_in, maintd_argv
from standardwebhooks import Webhook
from werkzeug import Request, Response

from scheduler import config as config_mod
from scheduler.errors import ConfigError

try:
    from notifier_fixtures import SMTP_PASSWORD, SMTP_USER, smtp_auth_server  # noqa: F401 - a fixture
except ImportError:  # tests/ became a package
    from tests.notifier_fixtures import SMTP_PASSWORD, SMTP_USER, smtp_auth_server  # noqa: F401

pytestmark = pytest.mark.slow

UTC = UTC
REPO = Path(__file__).resolve().parent.parent


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def wait_until(predicate: Callable[[], object], timeout: float = 15.0, what: str = "", on_fail=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    extra = on_fail() if on_fail else ""
    raise AssertionError(f"timed out waiting for {what}\n{extra}")


class Receiver:
    """Webhook endpoint ``/hook/<tenant>``: verifies each signature with standardwebhooks,
    keeps every request, and answers what ``rules`` say for (tenant, kind)."""

    def __init__(self, httpserver, secrets: dict[str, str]) -> None:
        self.secrets = secrets
        self.server = httpserver
        self.calls: list[dict] = []
        self.rules: dict[tuple[str, str], Callable[[int], int]] = {}  # (tenant, kind) -> f(nth try) -> status
        self.lock = threading.Lock()
        httpserver.expect_request(re.compile(r"^/hook/[a-z0-9-]+$"), method="POST").respond_with_handler(self.handle)

    def url(self, tenant: str) -> str:
        return self.server.url_for(f"/hook/{tenant}")

    def handle(self, request: Request) -> Response:
        tenant = request.path.rsplit("/", 1)[1]
        body = request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            payload = Webhook(self.secrets[tenant]).verify(body, headers)
            verified = True
        except Exception:  # noqa: BLE001 - unsigned or forged: recorded, and the test fails on it
            payload, verified = json.loads(body), False
        with self.lock:
            nth = sum(1 for c in self.calls if c["id"] == headers.get("webhook-id")) + 1
            rule = self.rules.get((tenant, payload["type"].split(".", 1)[1]))
            answer = (rule(nth) if rule else 204) if verified else 400
            status, extra = answer if isinstance(answer, tuple) else (answer, {})
            self.calls.append(
                {
                    "tenant": tenant,
                    "id": headers.get("webhook-id"),
                    "payload": payload,
                    "status": status,
                    "verified": verified,
                    "at": time.time(),
                }
            )
        return Response("", status=status, headers=extra)

    def ok(self, tenant: str | None = None, kind: str | None = None) -> list[dict]:
        with self.lock:
            return [
                c
                for c in self.calls
                if 200 <= c["status"] < 300
                and (tenant is None or c["tenant"] == tenant)
                and (kind is None or c["payload"]["type"] == f"maintenance.{kind}")
            ]

    def tries(self, tenant: str, kind: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c["tenant"] == tenant and c["payload"]["type"] == f"maintenance.{kind}"]


@pytest.fixture
def receiver(httpserver):
    secrets = {t: new_secret() for t in ("acme", "gamma", "delta")}
    yield Receiver(httpserver, secrets)
    httpserver.clear()


def mails(inbox, tenant_addr: str, kind_prefix: str) -> list[email.message.EmailMessage]:
    return [m for m in list(inbox.messages) if m["To"] == tenant_addr and kind_prefix in m["Subject"]]


def ics_of(msg: email.message.EmailMessage) -> icalendar.Calendar:
    part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
    return icalendar.Calendar.from_ical(part.get_payload(decode=True))


def text_of(msg: email.message.EmailMessage) -> str:
    return msg.get_body(preferencelist=("plain",)).get_content()


CONFIG = """\
version: 1
provider:
  name: Example Cloud
  timezone: Europe/Berlin
  policy: standard
tenants:
  - id: acme
    name: ACME Corp
    timezone: America/New_York
    email: [ops@acme.example]
    webhook: {url: "@ACME_URL@", secret: "${ACME_SECRET}"}
  - id: beta
    name: Beta GmbH
    email: [it@beta.example]
  - id: gamma
    name: Gamma Ltd
    webhook: {url: "@GAMMA_URL@", secret: "${GAMMA_SECRET}"}
notifiers:
  email:
    host: 127.0.0.1
    port: @SMTP_PORT@
    starttls: false
    username: ${SMTP_USER}
    password: ${SMTP_PASSWORD}
    sender: "Example Cloud NOC <noc@example.com>"
    timeout: 5s
  webhook: {timeout: 2s}
  retry_base: 1s
  max_attempts: @MAX_ATTEMPTS@
@TEMPLATES@
policies:
  standard:
    default: deny
    rules:
      - allow: {kind: [restore]}
      - deny: {kind: [backup]}
        message: "Backups are paused until {end}."
windows:
@WINDOWS@
daemon:
  listen: {listen}
  database: maintd.db
"""


def make_config(
    receiver: Receiver, smtp, windows: str, *, max_attempts: int = 8, templates: str = "", gamma_url: str | None = None
) -> str:
    return (
        CONFIG.replace("@ACME_URL@", receiver.url("acme"))
        .replace("@GAMMA_URL@", gamma_url or receiver.url("gamma"))
        .replace("@SMTP_PORT@", str(smtp.port))
        .replace("@MAX_ATTEMPTS@", str(max_attempts))
        .replace("@TEMPLATES@", f"  templates: {templates}" if templates else "")
        .replace("@WINDOWS@", windows or "  []")
    )


def env_for(receiver: Receiver) -> dict:
    # Credentials reach the config only through ${VAR}: never inline (SPEC section 1).
    return {
        "ACME_SECRET": receiver.secrets["acme"],
        "GAMMA_SECRET": receiver.secrets["gamma"],
        "DELTA_SECRET": receiver.secrets["delta"],
        "SMTP_USER": SMTP_USER,
        "SMTP_PASSWORD": SMTP_PASSWORD,
    }


def notices(d) -> list[dict]:
    r = d.get("/v1/notices", params={"limit": 1000})
    r.raise_for_status()
    return r.json()


def rows(d, tenant: str, kind: str, channel: str) -> list[dict]:
    return [n for n in notices(d) if n["tenant"] == tenant and n["kind"] == kind and n["channel"] == channel]


# --------------------------------------------------------------------------------------
# the whole life of a window, with a kill -9 in the middle


def test_window_lifecycle_exactly_once_across_kill9(daemon_factory, receiver, smtp_auth_server):
    inbox = smtp_auth_server.inbox
    healed = threading.Event()
    # gamma's receiver refuses `scheduled` for good (the start supersedes it) and `started`
    # until after the restart, asking for a 4 s pause (the pending retry survives the kill,
    # and no attempt is in flight when it happens).
    receiver.rules[("gamma", "scheduled")] = lambda n: 503
    receiver.rules[("gamma", "started")] = lambda n: 204 if healed.is_set() else (503, {"Retry-After": "4"})
    start = datetime.now(UTC) + timedelta(seconds=8)
    windows = f"""\
  - id: fw
    title: Storage firmware update
    start: {iso_in(0, start)}
    end: {iso_in(10, start)}
    tenants: all
    notify: [1h]            # passed already: sent at once, marked late
"""
    d = daemon_factory(make_config(receiver, smtp_auth_server, windows), env=env_for(receiver))
    dump = lambda: f"calls={receiver.calls}\nnotices={json.dumps(notices(d), indent=1)}\nlog={d.log()[-3000:]}"

    # late `scheduled`: at once, to everyone, on every channel they have
    wait_until(
        lambda: (
            receiver.ok("acme", "scheduled")
            and mails(inbox, "ops@acme.example", "Scheduled")
            and mails(inbox, "it@beta.example", "Scheduled")
        ),
        10,
        "the late scheduled notices",
        dump,
    )
    (sched,) = receiver.ok("acme", "scheduled")
    assert sched["payload"]["late"] is True and sched["payload"]["lead"] == "1h"
    assert sched["payload"]["start"] == iso_in(0, start) and sched["payload"]["window"] == "fw"
    assert all(c["verified"] for c in receiver.calls)
    # SMTP AUTH with the credentials from the environment
    assert inbox.envelopes and all(authenticated for _, _, authenticated in inbox.envelopes)

    # in the window: jobs are refused, per tenant
    d.wait_for(lambda s: s["mode"] == "maintenance", timeout=15, what="maintenance mode")
    for tenant, kind, expected in [
        ("acme", "backup", 423),
        ("acme", "backup", 423),
        ("beta", "backup", 423),
        ("gamma", "restore", 200),
    ]:
        r = d.post("/v1/admissions", {"tenant": tenant, "kind": kind})
        assert r.status_code == expected, r.text
        if r.status_code == 200:
            assert d.delete(f"/v1/leases/{r.json()['lease']}").status_code == 200
    wait_until(
        lambda: (
            receiver.ok("acme", "started")
            and mails(inbox, "ops@acme.example", "started")
            and mails(inbox, "it@beta.example", "started")
            and receiver.tries("gamma", "started")
        ),
        10,
        "the started notices",
        dump,
    )
    # the undelivered `scheduled` was superseded at the start, never sent after it
    wait_until(
        lambda: [r["status"] for r in rows(d, "gamma", "scheduled", "webhook")] == ["superseded"],
        5,
        "gamma's scheduled notice superseded",
        dump,
    )
    assert receiver.ok("gamma", "scheduled") == []

    # every result is recorded; only gamma's `started` waits for its retry
    d.wait_for(
        lambda s: s["notices"] == {"sent": 6, "pending": 1, "failed": 0, "superseded": 1},
        timeout=5,
        what="results recorded before the kill",
    )
    d.kill9()  # in the middle of the window
    killed_at = time.time()
    healed.set()
    d.restart()

    wait_until(
        lambda: (
            receiver.ok("acme", "completed")
            and receiver.ok("gamma", "completed")
            and mails(inbox, "ops@acme.example", "completed")
            and mails(inbox, "it@beta.example", "completed")
            and receiver.ok("gamma", "started")
        ),
        20,
        "the completed notices",
        dump,
    )
    time.sleep(1.5)  # room for a duplicate to show up

    # exactly once: per notice id, one 2xx; per mail, one message
    ok_ids = Counter(c["id"] for c in receiver.ok())
    assert all(n == 1 for n in ok_ids.values()), ok_ids
    kinds = Counter((c["tenant"], c["payload"]["type"]) for c in receiver.ok())
    assert kinds == Counter(
        {
            ("acme", "maintenance.scheduled"): 1,
            ("acme", "maintenance.started"): 1,
            ("acme", "maintenance.completed"): 1,
            ("gamma", "maintenance.started"): 1,
            ("gamma", "maintenance.completed"): 1,
        }
    ), kinds
    mail_ids = Counter(m["Message-ID"] for m in inbox.messages)
    assert all(n == 1 for n in mail_ids.values()) and len(mail_ids) == 6, mail_ids
    first, *_, last = receiver.tries("gamma", "started")  # retried across the restart,
    assert last["at"] - first["at"] >= 3.5 and last["at"] > killed_at  # after the pause it asked for

    # the completed summary: each tenant's own jobs, refused by kind; the actual times
    summaries = {c["tenant"]: c["payload"]["summary"] for c in receiver.ok(kind="completed")}
    assert summaries["acme"]["refused"] == {"backup": 2}
    assert summaries["gamma"]["refused"] == {}
    assert summaries["acme"]["drained"] == 0 and summaries["acme"]["stopped"] == 0
    assert summaries["acme"]["actual_start"] == iso_in(0, start)
    assert summaries["acme"]["actual_end"] == iso_in(10, start)
    (beta_done,) = mails(inbox, "it@beta.example", "completed")
    assert "backup: 1" in text_of(beta_done) and "backup: 2" not in text_of(beta_done)

    # counts per delivery, in status and metrics
    st = d.status()
    assert st["notices"] == {"sent": 11, "pending": 0, "failed": 0, "superseded": 1}, st["notices"]
    metrics = d.get("/metrics").text
    assert 'maintd_notices_total{channel="webhook",result="sent"}' in metrics
    assert 'maintd_notices_total{channel="email",result="sent"}' in metrics
    assert re.search(r'maintd_delivery_seconds_count\{channel="email"\} [1-9]', metrics)
    assert "maintd_notices_pending 0.0" in metrics and "maintd_notices_failed 0.0" in metrics
    out = d.cli("notices", "--json")
    assert out.returncode == 0, out.stderr
    assert {(r["tenant"], r["kind"], r["channel"], r["status"]) for r in json.loads(out.stdout)} >= {
        ("gamma", "scheduled", "webhook", "superseded"),
        ("gamma", "started", "webhook", "sent"),
    }


# --------------------------------------------------------------------------------------
# moved, then removed


def test_reschedule_then_cancel_reaches_those_told_only(daemon_factory, receiver, smtp_auth_server):
    inbox = smtp_auth_server.inbox
    now = datetime.now(UTC)
    start, end = iso_in(3600, now), iso_in(3 * 3600, now)
    told = f"""\
  - id: fw
    title: Storage firmware update
    start: {start}
    end: {end}
    tenants: [acme, beta]
    notify: [2h]
  - id: quiet                 # nobody is ever told of this one, so nobody hears it is cancelled
    start: {start}
    duration: 1h
    tenants: all
"""
    d = daemon_factory(make_config(receiver, smtp_auth_server, told), env=env_for(receiver))
    dump = lambda: f"calls={receiver.calls}\nnotices={json.dumps(notices(d), indent=1)}\nlog={d.log()[-3000:]}"
    wait_until(
        lambda: (
            receiver.ok("acme", "scheduled")
            and mails(inbox, "it@beta.example", "Scheduled")
            and mails(inbox, "ops@acme.example", "Scheduled")
        ),
        10,
        "scheduled",
        dump,
    )
    (first_invite,) = mails(inbox, "ops@acme.example", "Scheduled")
    (event,) = ics_of(first_invite).walk("VEVENT")
    uid, seq = str(event["UID"]), int(event["SEQUENCE"])
    assert uid == "fw@maintd" and seq == 0

    # move it by 30 minutes (its lead stays passed, so no second `scheduled`)
    new_start, new_end = iso_in(5400, now), iso_in(3 * 3600 + 1800, now)
    d.config_path.write_text(
        d.config_path.read_text().replace(f"start: {start}\n    end: {end}", f"start: {new_start}\n    end: {new_end}")
    )
    d.signal(signal.SIGHUP)
    wait_until(
        lambda: (
            receiver.ok("acme", "rescheduled")
            and mails(inbox, "it@beta.example", "Rescheduled")
            and mails(inbox, "ops@acme.example", "Rescheduled")
        ),
        10,
        "rescheduled",
        dump,
    )
    (moved,) = receiver.ok("acme", "rescheduled")
    p = moved["payload"]
    assert (p["start"], p["end"]) == (new_start, new_end)
    assert p["occurrence"] == new_start
    assert p["previous"] == {"start": start, "end": end}
    (invite,) = mails(inbox, "ops@acme.example", "Rescheduled")
    cal = ics_of(invite)
    (event,) = cal.walk("VEVENT")
    assert cal["METHOD"] == "REQUEST"
    assert str(event["UID"]) == uid and int(event["SEQUENCE"]) == seq + 1
    assert event.decoded("DTSTART") == datetime.fromisoformat(new_start.replace("Z", "+00:00"))

    # remove both windows
    text = d.config_path.read_text()
    d.config_path.write_text(text[: text.index("windows:\n")] + "windows: []\n" + text[text.index("daemon:\n") :])
    d.signal(signal.SIGHUP)
    wait_until(
        lambda: (
            receiver.ok("acme", "cancelled")
            and mails(inbox, "it@beta.example", "Cancelled")
            and mails(inbox, "ops@acme.example", "Cancelled")
        ),
        10,
        "cancelled",
        dump,
    )
    (cancel,) = mails(inbox, "ops@acme.example", "Cancelled")
    cal = ics_of(cancel)
    (event,) = cal.walk("VEVENT")
    assert cal["METHOD"] == "CANCEL" and str(event["UID"]) == uid and int(event["SEQUENCE"]) == seq + 2
    time.sleep(1.0)
    assert not receiver.ok("gamma"), "gamma was never told, so it hears nothing"
    assert {c["payload"]["window"] for c in receiver.ok()} == {"fw"}
    assert Counter(m["To"] for m in inbox.messages) == Counter({"ops@acme.example": 3, "it@beta.example": 3})
    assert Counter(c["id"] for c in receiver.ok()).most_common(1)[0][1] == 1


# --------------------------------------------------------------------------------------
# retries


def test_retry_keeps_the_webhook_id_and_a_dead_receiver_ends_failed(daemon_factory, receiver, smtp_auth_server):
    receiver.rules[("gamma", "scheduled")] = lambda n: 500 if n == 1 else 200
    with_dead = make_config(
        receiver,
        smtp_auth_server,
        f"""\
  - id: fw
    start: {iso_in(3600)}
    duration: 1h
    tenants: [gamma, delta]
    notify: [2h]
""",
        max_attempts=2,
    )
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    with_dead = with_dead.replace(
        "tenants:\n",
        f"""tenants:
  - id: delta
    webhook: {{url: "{dead}", secret: "${{DELTA_SECRET}}"}}
""",
        1,
    )
    d = daemon_factory(with_dead, env=env_for(receiver))
    dump = lambda: f"calls={receiver.calls}\nnotices={json.dumps(notices(d), indent=1)}\nlog={d.log()[-3000:]}"
    st = d.wait_for(
        lambda s: s["notices"]["sent"] == 1 and s["notices"]["failed"] == 1,
        timeout=15,
        what="one sent after a retry, one failed after max_attempts",
    )
    assert st["notices"]["pending"] == 0

    tries = receiver.tries("gamma", "scheduled")
    assert [c["status"] for c in tries] == [500, 200], dump()
    assert tries[0]["id"] == tries[1]["id"] == tries[0]["payload"]["id"]  # the same webhook-id on the retry
    (sent,) = rows(d, "gamma", "scheduled", "webhook")
    assert sent["status"] == "sent" and sent["attempts"] == 2 and sent["id"] == tries[0]["id"]

    out = d.cli("notices", "--failed", "--json")
    assert out.returncode == 0, out.stderr
    (failed,) = json.loads(out.stdout)
    assert failed["tenant"] == "delta" and failed["status"] == "failed" and failed["attempts"] == 2
    assert "cannot connect" in failed["last_error"]
    assert [r["tenant"] for r in d.get("/v1/notices", params={"failed": "true"}).json()] == ["delta"]
    human = d.cli("notices", "--failed")
    assert human.returncode == 0 and "delta" in human.stdout and "gamma" not in human.stdout
    metrics = d.get("/metrics").text
    assert 'maintd_notices_total{channel="webhook",result="failed"} 1.0' in metrics
    assert 'maintd_notices_total{channel="webhook",result="retry"} 2.0' in metrics
    assert "maintd_notices_failed 1.0" in metrics


# --------------------------------------------------------------------------------------
# templates: checked at reload, the last good ones keep serving


def test_broken_template_is_a_reload_error_and_the_last_good_templates_keep_serving(
    daemon_factory, receiver, smtp_auth_server, tmp_path
):
    inbox = smtp_auth_server.inbox
    tpl = tmp_path / "templates"
    tpl.mkdir()
    (tpl / "subject.txt").write_text("CUSTOM {{ kind }}: {{ title }}\n")
    d = daemon_factory(make_config(receiver, smtp_auth_server, "", templates="templates"), env=env_for(receiver))
    (tpl / "subject.txt").write_text("BROKEN {{ kind }: {{ title }}\n")
    d.signal(signal.SIGHUP)
    st = d.wait_for(lambda s: s["config"]["error"], timeout=10, what="the reload error")
    assert "subject.txt" in st["config"]["error"], st["config"]["error"]
    assert any(h["kind"] == "reload-error" for h in d.history())

    # a notice after the failed reload renders with the templates that were checked
    r = d.post("/v1/maintenance", {"reason": "emergency patch", "for": "10m", "tenants": ["beta"]})
    assert r.status_code == 200, r.text
    (msg,) = wait_until(
        lambda: mails(inbox, "it@beta.example", "CUSTOM started"),
        10,
        "the started mail",
        lambda: f"{[m['Subject'] for m in inbox.messages]}\n{d.log()[-3000:]}",
    )
    assert msg["Subject"].startswith("CUSTOM started: Manual maintenance")
    assert d.status()["notices"]["failed"] == 0


# --------------------------------------------------------------------------------------
# bad input is a validation error at its line


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("email", "[ops@]", 'invalid email address "ops@"; expected something like ops@example.com'),
        ("email", "[ops at example.com]", 'invalid email address "ops at example.com"'),
        (
            "webhook",
            '{url: "ftp://hooks.example.com/x", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}',
            'invalid URL "ftp://hooks.example.com/x"; expected http(s)://host/path',
        ),
        (
            "webhook",
            '{url: "hooks.example.com/x", secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}',
            'invalid URL "hooks.example.com/x"',
        ),
    ],
    ids=["email_without_domain", "email_with_spaces", "webhook_ftp", "webhook_without_scheme"],
)
def test_bad_tenant_address_is_an_error_at_its_line(tmp_path, field, value, expected):
    path = tmp_path / "windows.yaml"
    path.write_text(f"""\
version: 1
provider: {{name: Example Cloud}}
tenants:
  - id: acme
  - id: beta
    {field}: {value}
windows: []
""")
    with pytest.raises(ConfigError) as info:
        config_mod.load(str(path), {})
    (issue,) = info.value.issues
    assert (issue.file, issue.line) == (str(path), 6)
    assert expected in issue.message


# --------------------------------------------------------------------------------------
# dry run, on the example windows.yaml


def test_dry_run_renders_and_records_the_example_config_without_sending(tmp_path, caplog):
    from scheduler.daemon import Daemon

    shutil.copy(REPO / "windows.yaml", tmp_path / "windows.yaml")
    now = [datetime(2026, 12, 5, 20, 30, tzinfo=UTC)]  # 30 min before storage-firmware
    env = {"MAINTD_LISTEN": "127.0.0.1:1"}
    caplog.set_level(logging.INFO, logger="maintd")
    d = Daemon(str(tmp_path / "windows.yaml"), dry_run=True, clock=lambda: now[0], env=env)
    try:
        kinds = []
        for at in (
            datetime(2026, 12, 5, 20, 30, tzinfo=UTC),
            datetime(2026, 12, 5, 21, 0, 5, tzinfo=UTC),
            datetime(2026, 12, 6, 1, 0, 5, tzinfo=UTC),
        ):
            now[0] = at
            kinds += [n.kind for n in d.reconciler.tick().notices]
            assert d.outbox.deliver_due() == 0  # nothing to send: the rows are records, not work
        assert kinds == ["scheduled", "started", "completed"]
        out = d.store.notices()
        assert {r["status"] for r in out} == {"dry-run"}
        # 3 tenants by email, acme also by webhook; each of the 3 kinds
        assert Counter(r["kind"] for r in out) == {"scheduled": 4, "started": 4, "completed": 4}
        assert d.store.notice_counts() == {"sent": 0, "pending": 0, "failed": 0, "superseded": 0}
        journaled = [h for h in d.store.history() if h["kind"] == "notice"]
        assert len(journaled) == 3 and all(h["detail"]["dry_run"] for h in journaled)
        assert all(h["message"].endswith("(dry run: rendered, not sent)") for h in journaled)
    finally:
        d.stop()
    assert (tmp_path / "maintd.dry-run.db").exists() and not (tmp_path / "maintd.db").exists()
    logged = [r.getMessage() for r in caplog.records if getattr(r, "action", None) == "notice-dry-run"]
    assert len(logged) == 12
    assert any(
        "email to ops@acme.example: [Example Cloud] Scheduled maintenance: Storage firmware update — "
        "Sat 5 Dec 2026 16:00 EST" in m
        for m in logged
    ), logged
    assert any("webhook maintenance.completed" in m for m in logged)


def test_dry_run_daemon_starts_on_the_example_config(daemon_factory):
    d = daemon_factory(
        (REPO / "windows.yaml").read_text().replace("${MAINTD_LISTEN:-127.0.0.1:8787}", "{listen}"), args=("--dry-run",)
    )
    st = d.status()
    assert st["dry_run"] is True and st["config"]["error"] is None
    assert (d.config_path.parent / "maintd.dry-run.db").exists()
    assert not (d.config_path.parent / "maintd.db").exists()
    assert d.stop() == 0


# --------------------------------------------------------------------------------------
# preview


def test_preview_prints_every_rendering_without_sending(tmp_path):
    shutil.copy(REPO / "windows.yaml", tmp_path / "windows.yaml")

    def preview(*args):
        return subprocess.run(
            maintd_argv() + ["--config", str(tmp_path / "windows.yaml"), "preview", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )

    out = preview("--window", "storage-firmware", "--tenant", "acme")
    assert out.returncode == 0, out.stderr
    for heading in (
        "===== Email headers",
        "===== Email text/plain",
        "===== Email text/html",
        "===== Calendar attachment invite.ics",
        "===== Webhook JSON",
    ):
        assert heading in out.stdout
    assert (
        "Subject: [Example Cloud] Scheduled maintenance: Storage firmware update — Sat 5 Dec 2026 16:00 EST"
        in out.stdout
    )
    assert "starting in 7 days" in out.stdout  # the first lead
    assert "METHOD:REQUEST" in out.stdout and "UID:storage-firmware@maintd" in out.stdout
    body = json.loads(out.stdout[out.stdout.index("{", out.stdout.index("===== Webhook JSON")) :])
    assert body["type"] == "maintenance.scheduled" and body["lead"] == "7d" and body["tenant"] == "acme"
    assert not list(tmp_path.glob("*.db")), "a preview touches no database"

    out = preview("--window", "patch-tuesday", "--tenant", "gamma", "--kind", "cancelled")
    assert out.returncode == 0, out.stderr
    assert "cancel.ics" in out.stdout and "METHOD:CANCEL" in out.stdout
    assert "tenant has no webhook" in out.stdout

    for args, message in [
        (("--window", "nope", "--tenant", "acme"), 'unknown window "nope"'),
        (("--window", "storage-firmware", "--tenant", "nobody"), 'unknown tenant "nobody"'),
        (("--window", "patch-tuesday", "--tenant", "beta"), 'tenant "beta" is not affected by window'),
    ]:
        out = preview(*args)
        assert out.returncode == 2 and message in out.stderr and out.stdout == "", (args, out)
    assert preview("--window", "storage-firmware", "--tenant", "acme", "--kind", "nope").returncode == 2
