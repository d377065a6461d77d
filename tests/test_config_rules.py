"""Rules of meaning added to windows.yaml: SMTP credentials only encrypted, names that can
render, ids and kinds normalised. Tables of named cases with the exact FILE:LINE:COL lines."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scheduler import config
from scheduler.errors import ConfigError

# 10 lines; a case's `notifiers:` body starts on line 11, its keys in column 3.
BASE = """\
version: 1
provider:
  name: Example Cloud
tenants:
  - id: acme
windows:
  - id: w
    start: 2027-01-01T00:00
    duration: 1h
notifiers:
"""


FULL = BASE + "  templates: t\n"  # a whole valid file


def N(body: str) -> str:
    return BASE + textwrap.indent(textwrap.dedent(body).lstrip("\n"), "  ")


def load(tmp_path: Path, text: str, env: dict | None = None):
    (tmp_path / "windows.yaml").write_text(text)
    return config.load(str(tmp_path / "windows.yaml"), env=env or {})


def errors(tmp_path: Path, text: str, env: dict | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env)
    return [str(i).removeprefix(str(tmp_path) + "/") for i in info.value.issues]


# --- SMTP credentials travel encrypted unless the relay is local -------------------------

PLAIN = (
    "would send {what} unencrypted; set starttls: true or ssl: true "
    "(only a loopback host such as localhost or 127.0.0.1 may go without)"
)


def smtp(host: str, extra: str = "username: noc\npassword: pw") -> str:
    return N(f"email:\n  host: {host}\n  " + extra.replace("\n", "\n  ") + "\n")


SMTP_BAD = [
    ("remote_user_and_password", smtp("smtp.example.com"), "13:5", "username and password"),
    ("remote_password_only", smtp("smtp.example.com", "password: pw"), "13:5", "password"),
    ("remote_username_only", smtp("smtp.example.com", "username: noc"), "13:5", "username"),
    ("starttls_false_spelled_out", smtp("smtp.example.com", "starttls: false\npassword: pw"), "14:5", "password"),
    ("ip_next_to_loopback", smtp("128.0.0.1"), "13:5", "username and password"),
    ("ipv6_not_loopback", smtp('"::2"'), "13:5", "username and password"),
    ("name_that_starts_with_localhost", smtp("localhost.example.com"), "13:5", "username and password"),
]


@pytest.mark.parametrize(("text", "where", "what"), [c[1:] for c in SMTP_BAD], ids=[c[0] for c in SMTP_BAD])
def test_smtp_credentials_without_tls_to_a_remote_host(tmp_path, text, where, what):
    assert errors(tmp_path, text) == [f"windows.yaml:{where}: notifiers.email " + PLAIN.format(what=what)]


SMTP_OK = [
    ("starttls", smtp("smtp.example.com", "starttls: true\nusername: noc\npassword: pw")),
    ("ssl", smtp("smtp.example.com", "ssl: true\nport: 465\nusername: noc\npassword: pw")),
    ("localhost", smtp("localhost")),
    ("localhost_upper_case", smtp("LOCALHOST")),
    ("loopback_v4", smtp("127.0.0.1")),
    ("loopback_v4_other", smtp("127.10.0.2")),
    ("loopback_v6", smtp('"::1"')),
    ("loopback_v6_bracketed", smtp('"[::1]"')),
    ("no_credentials", smtp("smtp.example.com", "port: 25")),
    ("empty_password_from_env_default", smtp("smtp.example.com", 'password: "${SMTP_PASSWORD:-}"')),
]


@pytest.mark.parametrize("text", [c[1] for c in SMTP_OK], ids=[c[0] for c in SMTP_OK])
def test_smtp_credentials_that_are_fine(tmp_path, text):
    assert load(tmp_path, text).notifiers.email is not None


# --- names that cannot render: one printable line -----------------------------------------

NAME_BAD = [
    (
        "provider_name_newline",
        FULL.replace("  name: Example Cloud", '  name: "Example\\nCloud"'),
        "windows.yaml:3:9: name contains a line break (U+000A); expected one line of printable text",
    ),
    (
        "provider_name_carriage_return",
        FULL.replace("  name: Example Cloud", '  name: "Example Cloud\\r"'),
        "windows.yaml:3:9: name contains a line break (U+000D); expected one line of printable text",
    ),
    (
        "tenant_name_nul",
        FULL.replace("  - id: acme", '  - id: acme\n    name: "Acme\\0 Corp"'),
        "windows.yaml:6:11: name contains a control character (U+0000); expected one line of printable text",
    ),
    (
        "tenant_name_line_separator",
        FULL.replace("  - id: acme", '  - id: acme\n    name: "Acme\\LCorp"'),
        "windows.yaml:6:11: name contains a line break (U+2028); expected one line of printable text",
    ),
    (
        "window_title_newline",
        FULL.replace("  - id: w", '  - id: w\n    title: "Storage\\nfirmware"'),
        "windows.yaml:8:12: title contains a line break (U+000A); expected one line of printable text",
    ),
    (
        "window_title_escape",
        FULL.replace("  - id: w", '  - id: w\n    title: "Storage \\e[31mfirmware"'),
        "windows.yaml:8:12: title contains a control character (U+001B); expected one line of printable text",
    ),
    (
        "sender_display_name_header_injection",
        N('email: {host: 127.0.0.1, sender: "NOC\\r\\nBcc: all@example.com <noc@example.com>"}\n'),
        "windows.yaml:11:36: sender contains a line break (U+000D); expected one line of printable text",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in NAME_BAD], ids=[c[0] for c in NAME_BAD])
def test_names_that_cannot_render(tmp_path, text, expected):
    assert errors(tmp_path, text) == [expected]


def test_names_in_any_script_render(tmp_path):
    text = FULL.replace("  name: Example Cloud", "  name: Beispiel Wolke – Ünïcødé 雲")
    text = text.replace("  - id: w", "  - id: w\n    title: Speicher-Firmware „heute“")
    cfg = load(tmp_path, text + "  email: {host: 127.0.0.1, sender: 'Größe NOC <noc@example.com>'}\n")
    assert cfg.provider.name == "Beispiel Wolke – Ünïcødé 雲" and cfg.windows[0].title == "Speicher-Firmware „heute“"


# --- ids, label values and kinds: normalised, no control or invisible characters ------------

INVISIBLE = "an invisible character; expected visible characters only"
CONTROL = "a control character; expected visible characters only"
POLICY = "policies:\n  p:\n    rules:\n      - allow: {kind: KIND}\n"  # lines 12-15; KIND at 15:23

ID_BAD = [
    (
        "tenant_id_zero_width_space",
        FULL.replace("- id: acme", '- id: "acme\\u200b"'),
        f"windows.yaml:5:9: tenant id 'acme\\u200b' contains U+200B ZERO WIDTH SPACE, {INVISIBLE}",
    ),
    (
        "tenant_id_nul",
        FULL.replace("- id: acme", '- id: "ac\\0me"'),
        f"windows.yaml:5:9: tenant id 'ac\\x00me' contains U+0000, {CONTROL}",
    ),
    (
        "window_tenant_with_bom",
        FULL.replace("    duration: 1h\n", '    duration: 1h\n    tenants: [acme, "\\uFEFFacme"]\n'),
        f"windows.yaml:10:21: tenant id '\\ufeffacme' contains U+FEFF ZERO WIDTH NO-BREAK SPACE, {INVISIBLE}",
    ),
    (
        "label_value_zero_width_joiner",
        FULL.replace("- id: acme", '- id: acme\n    labels: {tier: "gold\\u200d"}'),
        f"windows.yaml:6:20: label value 'gold\\u200d' contains U+200D ZERO WIDTH JOINER, {INVISIBLE}",
    ),
    (
        "kind_zero_width_space",
        FULL + POLICY.replace("KIND", '"backup\\u200b"'),
        f"windows.yaml:15:23: kind 'backup\\u200b' contains U+200B ZERO WIDTH SPACE, {INVISIBLE}",
    ),
    (
        "kind_nul",
        FULL + POLICY.replace("KIND", '"back\\0up"'),
        f"windows.yaml:15:23: kind 'back\\x00up' contains U+0000, {CONTROL}",
    ),
    (
        "kind_right_to_left_override_in_a_list",
        FULL + POLICY.replace("KIND", '[restore, "back\\u202Eup"]'),
        f"windows.yaml:15:33: kind 'back\\u202eup' contains U+202E RIGHT-TO-LEFT OVERRIDE, {INVISIBLE}",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in ID_BAD], ids=[c[0] for c in ID_BAD])
def test_ids_labels_and_kinds_with_invisible_characters(tmp_path, text, expected):
    assert errors(tmp_path, text) == [expected]


def test_ids_labels_and_kinds_are_normalised(tmp_path):
    text = FULL.replace("- id: acme", "- id: ａｃｍｅ\n    labels: {tier: ｇｏｌｄ}")  # fullwidth letters
    text = text.replace("    duration: 1h\n", "    duration: 1h\n    tenants: [acme]\n")
    text = text.replace(
        "  - id: w\n",
        "  - id: g\n    start: 2027-01-02T00:00\n    duration: 1h\n    tenants: {labels: {tier: gold}}\n  - id: w\n",
    )
    cfg = load(tmp_path, text + POLICY.replace("KIND", "[Backup, ＲＥＳＴＯＲＥ, Straße]"))
    assert list(cfg.tenants) == ["acme"] and cfg.tenants["acme"].labels == {"tier": "gold"}
    assert {w.id: w.tenants for w in cfg.windows} == {"g": {"acme"}, "w": {"acme"}}
    assert cfg.policies["p"].rules[0].kinds == {"backup", "restore", "strasse"}


NORMALISE = [
    ("plain", "backup", "backup"),
    ("upper_case", "Backup", "backup"),
    ("fullwidth", "ＢＡＣＫＵＰ", "backup"),
    ("sharp_s", "Straße", "strasse"),
    ("ligature", "ﬁle-copy", "file-copy"),
    ("zero_width_space", "backup\u200b", "contains U+200B ZERO WIDTH SPACE, " + INVISIBLE),
    ("nul", "back\x00up", "contains U+0000, " + CONTROL),
    ("newline", "backup\n", "contains U+000A, " + CONTROL),
    ("bom", "\ufeffbackup", "contains U+FEFF ZERO WIDTH NO-BREAK SPACE, " + INVISIBLE),
    ("line_separator", "back\u2028up", "contains U+2028 LINE SEPARATOR, " + INVISIBLE),
]


@pytest.mark.parametrize(("raw", "expected"), [c[1:] for c in NORMALISE], ids=[c[0] for c in NORMALISE])
def test_normalise_kind(raw, expected):
    from scheduler.model import normalise_kind

    if expected.startswith("contains"):
        with pytest.raises(ValueError) as info:
            normalise_kind(raw)
        assert str(info.value) == expected
    else:
        assert normalise_kind(raw) == expected
