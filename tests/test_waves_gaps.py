"""Waves (SPEC 8) in the tick: the reason a halt's ``cancelled`` carries, a reload that moves
a one-off window with waves (``rescheduled`` by wave number), and the gate's long look
ahead seeing the same halts and deferrals as the tick. Pure: config + journal + ``now``."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from notifiers.base import Renderer
from scheduler import config, plan
from scheduler.notices import compose_notice, reason_text
from scheduler.runtime.gatings import gatings_until

HEAD = """\
version: 1
provider: {name: P, timezone: UTC}
tenants:
  - {id: acme}
  - {id: beta, locale: de}
  - {id: gamma, locale: fr}
windows:
"""
START = datetime(2027, 2, 2, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def load(start: datetime = START, extra: str = "", notify: str = "3d") -> config.Config:
    window = f"""\
    - id: roll
      start: {start.strftime("%Y-%m-%dT%H:%M")}
      duration: 2h
      notify: [{notify}]
      end_check: {{run: ["true"], every: 1m, max: 1h}}
      waves: {{size: 1, every: 1d, halt_on: end_check}}
      {extra}
    """
    return config.parse(HEAD + textwrap.indent(textwrap.dedent(window), "  "), "windows.yaml", env={})


def apply(journal: plan.Journal, ev: plan.Evaluation) -> plan.Journal:
    """The journal after the daemon applied ``ev`` (announcements, leads, starts and ends)."""
    announced = dict(journal.announced)
    announced.update({(a.window, a.anchor): a.announcement for a in ev.announces})
    leads = {(n.window, n.occurrence, n.lead) for n in ev.notices if n.kind == "scheduled"}
    events = {(t.window, t.occurrence, t.event) for t in ev.transitions}
    return plan.Journal(
        last_tick=ev.now,
        events=journal.events | events,
        announced=announced,
        sent_leads=journal.sent_leads | leads,
        wave_members=journal.wave_members,
        wave_halts=journal.wave_halts,
        deferrals=journal.deferrals,
    )


def told(cfg: config.Config, journal: plan.Journal, *ticks: datetime) -> tuple[list, plan.Journal]:
    """The notices of ticks at ``ticks`` in turn, and the journal after them."""
    out = []
    for now in ticks:
        ev = plan.evaluate(cfg, journal, now)
        out += [(n.kind, n.occurrence, sorted(n.tenants), n.previous) for n in ev.notices]
        journal = apply(journal, ev)
    return out, journal


LEADS = (START - 3 * DAY, START - 2 * DAY, START - DAY)  # every wave's 3d lead has passed


MEMBERS = {"roll": {"acme": 1, "beta": 2, "gamma": 3}}


# ---------------------------------------------------------------- the halt's reason


def test_cancelled_after_a_halt_carries_the_reason_in_every_language() -> None:
    cfg = load()
    _, journal = told(cfg, plan.Journal(wave_members=MEMBERS), *LEADS)
    halt = plan.WaveHalt(after=1, reason="end check of wave 1 still failing at max (exit 1)", at=START)
    journal = plan.Journal(**{**journal.__dict__, "wave_halts": {("roll", START): halt}})
    ev = plan.evaluate(cfg, journal, START + timedelta(hours=3))
    cancelled = [n for n in ev.notices if n.kind == "cancelled"]
    assert sorted((n.occurrence, sorted(n.tenants)) for n in cancelled) == [
        (START + DAY, ["beta"]),
        (START + 2 * DAY, ["gamma"]),
    ]
    # the tenant is told which wave's check failed, not the check's own output
    assert {n.reason for n in cancelled} == {"halted: end check of wave 1 still failing"}
    by = {n.occurrence: n for n in cancelled}
    beta = compose_notice(cfg, by[START + DAY], cfg.tenants["beta"], window=cfg.window("roll"))
    assert beta.reason == "angehalten: die Abschlussprüfung von Welle 1 schlägt weiterhin fehl"
    assert beta.message.endswith("Grund: angehalten: die Abschlussprüfung von Welle 1 schlägt weiterhin fehl.")
    assert beta.payload()["reason"] == beta.reason and beta.payload()["message"] == beta.message
    gamma = compose_notice(cfg, by[START + 2 * DAY], cfg.tenants["gamma"], window=cfg.window("roll"))
    assert "Motif : interrompue : le contrôle de fin de la vague 1 échoue toujours" in gamma.message
    acme = compose_notice(cfg, by[START + DAY], cfg.tenants["acme"], window=cfg.window("roll"))
    assert acme.message.endswith("Reason: halted: end check of wave 1 still failing.")
    assert "exit 1" not in acme.message


def test_a_cancelled_without_a_reason_has_no_reason_key() -> None:
    cfg = load()
    _, journal = told(cfg, plan.Journal(wave_members=MEMBERS), *LEADS)
    gone = load(extra="cancelled: true")
    ev = plan.evaluate(gone, journal, START - DAY + timedelta(hours=1))
    cancelled = [n for n in ev.notices if n.kind == "cancelled"]
    assert cancelled and {n.reason for n in cancelled} == {None}
    n = compose_notice(gone, cancelled[0], gone.tenants["acme"], window=gone.window("roll"))
    assert n.reason is None and "reason" not in n.payload() and "Reason" not in n.message


@pytest.mark.parametrize(
    ("tenant", "label", "reason"),
    [
        ("acme", "Reason", "halted: end check of wave 1 still failing"),
        ("beta", "Grund", "angehalten: die Abschlussprüfung von Welle 1 schlägt weiterhin fehl"),
        ("gamma", "Motif", "interrompue : le contrôle de fin de la vague 1 échoue toujours"),
    ],
    ids=["en", "de", "fr"],
)
def test_the_reason_is_in_the_mail_and_the_chat_body(tenant: str, label: str, reason: str) -> None:
    cfg = load()
    action = plan.NoticeAction(
        kind="cancelled",
        window="roll",
        occurrence=START + DAY,
        tenants=frozenset({tenant}),
        start=START + DAY,
        end=START + DAY + timedelta(hours=2),
        title="Roll",
        sequence=1,
        recurring=True,
        reason="halted: end check of wave 1 still failing",
    )
    notice = compose_notice(cfg, action, cfg.tenants[tenant], window=cfg.window("roll"))
    renderer = Renderer("P")
    mail = renderer.render(notice, cfg.tenants[tenant])
    colon = "\u00a0:" if tenant == "gamma" else ":"  # French: a no-break space before the colon
    assert f"{label}{colon}" in mail.text and reason in mail.text
    assert f">{label}</td><td>{reason}</td>" in mail.html.replace("&#39;", "'")
    _title, body = renderer.render_chat(notice, cfg.tenants[tenant])
    assert f"**{label}{colon}** {reason}" in body.replace("\\", "")
    assert mail.payload["reason"] == reason and reason in mail.payload["message"]


@pytest.mark.parametrize(
    ("reason", "locale", "expected"),
    [
        ("halted: end check of wave 3 still failing", "en", "halted: end check of wave 3 still failing"),
        (
            "halted: end check of wave 3 still failing",
            "de-CH",
            "angehalten: die Abschlussprüfung von Welle 3 schlägt weiterhin fehl",
        ),
        ("halted: end check of wave 3 still failing", "es", "halted: end check of wave 3 still failing"),
        ("something else", "fr", "something else"),
    ],
    ids=["english", "german_region", "unshipped_falls_back", "unknown_reason_unchanged"],
)
def test_reason_text(reason: str, locale: str, expected: str) -> None:
    assert reason_text(reason, locale) == expected


# ---------------------------------------------------------------- the gate's long look ahead


def test_gatings_until_sees_the_halt_the_tick_saw() -> None:
    cfg = load(notify="1h")
    halt = plan.WaveHalt(after=1, reason="x", at=START)
    journal = plan.Journal(wave_members=MEMBERS, wave_halts={("roll", START): halt})
    now = START - timedelta(hours=1)
    ev = plan.evaluate(cfg, journal, now)
    # gamma's wave 3 starts beyond the tick's horizon: only the long look ahead finds it
    assert not any("gamma" in a.tenants for a in ev.upcoming)
    assert gatings_until(cfg.tenants["gamma"], ev, cfg, now + 10 * DAY) == ()
    assert [g.occurrence.start for g in gatings_until(cfg.tenants["acme"], ev, cfg, now + 10 * DAY)] == [START]


# ---------------------------------------------------------------- the form key (SPEC 9)


def test_the_form_key_is_drawn_once_per_store_and_shared(tmp_path) -> None:
    from scheduler.store import Store, database_url

    url = database_url(str(tmp_path / "maintd.db"), str(tmp_path))
    first, second = Store(url), Store(url)  # two instances on one database
    try:
        with first.transaction() as tx:
            key = tx.secrets.form_key()
        with second.transaction() as tx:
            assert tx.secrets.store_key("form_key", key_factory=lambda: "00" * 32) == key
        assert len(key) == 32 and key != bytes(32)
    finally:
        first.close()
        second.close()


# ---------------------------------------------------------------- a reload moves the window


@pytest.mark.parametrize(
    "shift",
    [timedelta(hours=2), timedelta(hours=-2), timedelta(days=30)],
    ids=["later_same_day", "earlier", "beyond_the_horizon"],
)
def test_moving_a_one_off_window_with_waves_reschedules_each_wave(shift: timedelta) -> None:
    cfg = load()
    _, journal = told(cfg, plan.Journal(wave_members=MEMBERS), *LEADS)
    moved = load(start=START + shift)
    now = LEADS[-1] + timedelta(hours=1)
    got, journal = told(moved, journal, now)
    two_hours = timedelta(hours=2)
    assert sorted(got) == [
        ("rescheduled", START + shift + n * DAY, [t], (START + n * DAY, START + n * DAY + two_hours))
        for n, t in enumerate(["acme", "beta", "gamma"])
    ]
    # told once: the next tick has nothing to add
    assert told(moved, journal, now + timedelta(minutes=1))[0] == []


def test_a_wave_left_empty_by_a_reload_is_cancelled_and_the_others_rescheduled() -> None:
    cfg = load()
    _, journal = told(cfg, plan.Journal(wave_members=MEMBERS), *LEADS)
    members = {"roll": {"acme": 1, "beta": 2}}  # gamma left the window
    moved = config.parse(
        HEAD.replace("  - {id: gamma, locale: fr}\n", "")
        + textwrap.indent(
            textwrap.dedent(f"""\
            - id: roll
              start: {(START + DAY).strftime("%Y-%m-%dT%H:%M")}
              duration: 2h
              notify: [3d]
              end_check: {{run: ["true"], every: 1m, max: 1h}}
              waves: {{size: 1, every: 1d, halt_on: end_check}}
            """),
            "  ",
        ),
        "windows.yaml",
        env={},
    )
    journal = plan.Journal(**{**journal.__dict__, "wave_members": members})
    got, _ = told(moved, journal, LEADS[-1] + timedelta(hours=1))
    assert sorted((k, o, t) for k, o, t, _p in got) == [
        ("cancelled", START + 2 * DAY, ["gamma"]),
        ("rescheduled", START + DAY, ["acme"]),
        ("rescheduled", START + 2 * DAY, ["beta"]),
    ]


def test_a_resumed_wave_is_announced_again_after_its_cancelled() -> None:
    cfg = load()
    _, journal = told(cfg, plan.Journal(wave_members=MEMBERS), *LEADS)
    halt = plan.WaveHalt(after=1, reason="x", at=START)
    journal = plan.Journal(**{**journal.__dict__, "wave_halts": {("roll", START): halt}})
    got, journal = told(cfg, journal, START + timedelta(hours=3))
    assert sorted(k for k, *_ in got if k != "completed") == ["cancelled", "cancelled"]
    at = START + 2 * DAY + timedelta(hours=5)
    resumed = plan.WaveHalt(after=1, reason="x", at=START, resume_at=at)
    journal = plan.Journal(**{**journal.__dict__, "wave_halts": {("roll", START): resumed}})
    got, _ = told(cfg, journal, START + timedelta(hours=6))  # both leads (3d) passed
    assert sorted(got) == [("scheduled", at, ["beta"], None), ("scheduled", at + DAY, ["gamma"], None)]
