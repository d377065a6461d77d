"""Positions on demand (issue 19, 100,000 tenants): the first read keeps where mappings and
lists are, a Locator finds the rest; every answer equals the one of a read that kept all."""

from __future__ import annotations

import random

import pytest

from scheduler import config
from scheduler.config.positions import events
from scheduler.config.source import Collector, _Loader, _Reader, read_yaml
from scheduler.errors import ConfigError

TEXT = """\
version: 1
base: &base {tier: gold, "quoted key": 'v'}
provider: {name: "P", timezone: Europe/Berlin}
tenants:
  - id: t0
    labels: *base
    email: [a@x.example, "b@x.example"]
  - id: t1
    name: ${NAME:-Tenant one}
    labels: {<<: *base, region: eu}
    blackouts:
      - {cron: "0 0 1 * *", duration: 1d}
  - id: t2
    name: |
      two
    email: []
    id: dup
windows:
  - {id: w, start: 2027-01-10T22:00, duration: 2h, tenants: [t0, t1]}
  - id: w2
    cron: 0 1 * * *
"""


def _full(text: str) -> _Reader:
    reader = _Reader(text, "x.yaml", {})
    assert reader.run(events(_Loader(text)))
    return reader


def _paths(full: _Reader) -> list[tuple[tuple, bool]]:
    asked = [(p, False) for p in full.marks] + [(p, True) for p in full.key_marks]
    # and paths that are not there: the answer falls back to the nearest ancestor
    asked += [(p + ("nope",), k) for p, k in list(asked)] + [(p + (7, "x"), k) for p, k in list(asked)]
    return asked


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["shuffled_0", "shuffled_1", "shuffled_2"])
def test_every_position_equals_the_full_read_in_any_order(seed: int) -> None:
    full = _full(TEXT)
    asked = _paths(full)
    random.Random(seed).shuffle(asked)
    src = read_yaml(TEXT, "x.yaml", {}, Collector())
    assert src is not None
    for path, key in asked:
        want = full.src.at(path, key=key)
        assert src.at(path, key=key) == want, (path, key)


def test_first_read_keeps_no_position_per_scalar() -> None:
    n = 2000
    text = "version: 1\ntenants:\n" + "".join(
        f"  - id: t{i}\n    name: Tenant {i}\n    labels: {{tier: gold, region: eu}}\n    email: [o@t{i}.example]\n"
        for i in range(n)
    )
    src = read_yaml(text, "x.yaml", {}, Collector())
    assert src is not None
    # the root, the tenants list and each tenant (its line is part of the model): no
    # scalar, no key, not the labels or email inside a tenant
    assert len(src.marks) == 2 + n and not src.key_marks
    assert src.at(("tenants", 1)) == (7, 5) and src.at(("tenants", 1, "labels")) == (9, 13)
    assert src.at(("tenants", 0, "email", 0)) == (6, 13)
    # a question about the first tenant reads a few events, not the file
    locate = src.locate
    assert locate is not None and not locate._finished
    assert len(locate._reader.marks) < 20
    assert src.at(("tenants", n - 1, "name")) == (4 * n, 11)
    assert src.at(("tenants", 5, "labels", "tier"), key=True) == (25, 14)


def test_an_error_after_many_tenants_names_its_line_and_column() -> None:
    n = 3000
    text = (
        "version: 1\nprovider: {name: P}\ntenants:\n"
        + "".join(f"  - {{id: t{i}, labels: {{tier: gold}}}}\n" for i in range(n))
        + "windows:\n  - {id: w, start: 2027-01-10T22:00, duration: 2h, tenants: [t1, nobody]}\n"
        + "  - {id: v, start: 2027-01-10T22:00, duration: 0s, tenants: all}\n"
    )
    with pytest.raises(ConfigError) as exc:
        config.parse(text, "x.yaml", env={})
    line = 3 + n + 2
    lines = text.split("\n")
    col_nobody, col_zero = lines[line - 1].index("nobody") + 1, lines[line].index("0s") + 1
    assert [str(i) for i in exc.value.issues] == [
        f'x.yaml:{line}:{col_nobody}: unknown tenant "nobody" in window "w"',
        f'x.yaml:{line + 1}:{col_zero}: duration of window "v" must be positive',
    ]


URLS = [
    ("plain", "https://hooks.acme.example/maintd", True),
    ("port", "http://10.0.0.1:8080/x", True),
    ("no_host", "https:///x", False),
    ("ftp", "ftp://acme.example/x", False),
    ("userinfo", "https://user@acme.example/x", True),
    ("query", "https://acme.example/x?a=1", True),
    ("space", "https://acme .example/x", True),
    ("ipv6", "http://[::1]:80/x", True),
    ("bad_ipv6", "http://[::1/x", False),
]


@pytest.mark.parametrize(("text", "ok"), [c[1:] for c in URLS], ids=[c[0] for c in URLS])
def test_url_fast_path_gives_urlparses_verdict(text: str, ok: bool) -> None:
    from urllib.parse import urlparse

    from scheduler.config.values import url

    try:
        u = urlparse(text)
        want = u.scheme in ("http", "https") and bool(u.hostname)
    except ValueError:
        want = False
    assert want is ok
    if ok:
        assert url(text) == text
    else:
        with pytest.raises(ValueError):
            url(text)
