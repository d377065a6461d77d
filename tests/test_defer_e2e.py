"""A tenant defers its own slot from its page (SPEC 9), end to end: a real ``maintd run``,
the page rendered by headless Chromium, the form posted as a browser
posts it (``application/x-www-form-urlencoded``)."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
import requests
from conftest import TOKEN, iso_in
from test_web import _browse

pytestmark = pytest.mark.slow

CONFIG = """\
version: 1
provider: {{name: Test Cloud, timezone: UTC}}
tenants:
  - {{id: acme, name: ACME Corp, email: [ops@acme.example]}}
  - {{id: beta, name: Beta GmbH, email: [ops@beta.example]}}
notifiers:
  email: {{host: 127.0.0.1, port: 9}}
windows:
  - id: roll
    title: Agent upgrade
    start: {start}
    duration: 1h
    notify: [1d]
    waves: {{size: 1, every: 1d}}
    defer: {{max: 1, until: 1h}}
daemon:
  listen: "{{listen}}"
"""
FORM = re.compile(r'<form method="post" action="([^"]+)" class="defer">(.*?)</form>', re.S)


def forms(page: str) -> list[tuple[str, dict[str, str]]]:
    out = []
    for action, inner in FORM.findall(page):
        fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', inner))
        out.append((html.unescape(action), {k: html.unescape(v) for k, v in fields.items()}))
    return out


def page_url(d, tenant: str) -> str:
    return re.search(r"page:\s+(\S+)", d.cli("tenant-url", tenant).stdout).group(1)


def status(d) -> dict:
    return d.get("/v1/status").json()


def slot(st: dict, tenant: str) -> list[tuple[int, str]]:
    return [(n["wave"], n["start"]) for n in st["next"] if n["window"] == "roll" and tenant in n["tenants"]]


def test_a_tenant_defers_once_from_its_page_and_not_twice(daemon_factory, tmp_path: Path) -> None:
    start = iso_in(3 * 3600)
    d = daemon_factory(CONFIG.format(start=start))
    wave2 = status(d)["next"][1]["start"]
    assert slot(status(d), "acme") == [(1, start)]
    acme = page_url(d, "acme")
    origin = acme.split("/t/")[0]

    # the page as Chromium renders it: one plain Defer form per upcoming slot (no script involved)
    dom = _browse(acme, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    found = forms(dom.stdout)
    assert len(found) == 1 and ">Defer</button>" in dom.stdout, dom.stdout[-3000:]
    action, fields = found[0]
    assert action == acme.removeprefix(origin) + "defer" and set(fields) == {"window", "occurrence", "token"}
    assert fields["occurrence"] == start

    # no token, a wrong one, or one for another slot: 403 and nothing moves
    target = origin + action
    for bad in ({k: v for k, v in fields.items() if k != "token"}, {**fields, "token": "0" * 64}):
        assert requests.post(target, data=bad, timeout=10).status_code == 403
    assert requests.post(target, data={**fields, "occurrence": wave2}, timeout=10).status_code == 403
    assert slot(status(d), "acme") == [(1, start)]

    r = requests.post(target, data=fields, timeout=10)  # form-encoded, as a browser posts it
    assert r.status_code == 200, r.text
    assert 'id="defer-result"' in r.text and "Deferred" in r.text
    st = status(d)
    assert slot(st, "acme") == [(2, wave2)]
    assert [n for n in st["next"] if n["wave"] == 1] == []  # wave 1 held only acme
    rescheduled = [
        n
        for n in d.get("/v1/notices", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        if n["kind"] == "rescheduled" and n["tenant"] == "acme"
    ]
    assert rescheduled and rescheduled[0]["occurrence"] == wave2
    cancelled = [n for n in d.get("/v1/notices").json() if n["kind"] == "cancelled"]
    assert cancelled == []
    moved = [h for h in d.history() if h["kind"] == "defer"]
    assert moved and moved[0]["actor"] == "tenant:acme" and moved[0]["window"] == "roll"

    # the second defer is refused, with the reason on the page
    again = forms(requests.get(acme, timeout=10).text)
    assert len(again) == 1 and again[0][1]["occurrence"] == wave2
    r = requests.post(origin + again[0][0], data=again[0][1], timeout=10)
    assert r.status_code == 409
    assert "already deferred once; the limit is 1" in r.text
    assert slot(status(d), "acme") == [(2, wave2)]

    # beta's page shows nothing of acme, and beta's slot did not move
    beta = requests.get(page_url(d, "beta"), timeout=10).text
    assert "ACME" not in beta and "acme" not in beta
    assert slot(status(d), "beta") == [(2, wave2)]

    # the move survives a restart
    assert d.stop() == 0
    d.restart()
    assert slot(status(d), "acme") == [(2, wave2)]
    assert d.stop() == 0


def test_a_page_rendered_before_a_restart_still_defers(daemon_factory) -> None:
    """The form key lives in the store: a restarted daemon (or another instance on the same
    store) accepts the token of a page the previous process rendered."""
    start = iso_in(3 * 3600)
    d = daemon_factory(CONFIG.format(start=start))
    wave2 = status(d)["next"][1]["start"]
    acme = page_url(d, "acme")
    origin = acme.split("/t/")[0]
    found = forms(requests.get(acme, timeout=10).text)
    assert len(found) == 1
    action, fields = found[0]

    assert d.stop() == 0
    d.restart()
    r = requests.post(origin + action, data=fields, timeout=10)
    assert r.status_code == 200, r.text
    assert slot(status(d), "acme") == [(2, wave2)]
    assert requests.post(origin + action, data={**fields, "token": "0" * 64}, timeout=10).status_code == 403
    assert d.stop() == 0
