"""The gate: compiled policy evaluation and decide() over active and upcoming occurrences."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.errors import MaintdError
from scheduler.model import DENY_ALL, Decision, Occurrence, Policy, Provider, Rule, Tenant, Window
from scheduler.policy import Gating, Request, compile_policies, compile_policy, decide

UTC = UTC
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def allow(kinds=None, resources=None, labels=None, message=None) -> Rule:
    return Rule(
        effect="allow",
        kinds=frozenset(kinds) if kinds else None,
        resources=frozenset(resources) if resources else None,
        labels=labels or {},
        message=message,
    )


def deny(kinds=None, resources=None, labels=None, message=None) -> Rule:
    return Rule(
        effect="deny",
        kinds=frozenset(kinds) if kinds else None,
        resources=frozenset(resources) if resources else None,
        labels=labels or {},
        message=message,
    )


BACKUPS_PAUSED = "Backups are paused until {end}; they resume automatically."

# The policy of SPEC section 1.
STANDARD = Policy(
    name="standard",
    default="deny",
    rules=(
        allow(["restore", "replication", "failover", "vcd-backup"]),
        deny(["backup", "backup-copy", "agent-backup"], message=BACKUPS_PAUSED),
    ),
)
GOLD_FIRST = Policy(
    name="gold-first",
    default="deny",
    rules=(
        allow(["backup"], labels={"tier": "gold"}),
        deny(["backup"]),
        allow(),
    ),
)
LENIENT = Policy(name="lenient", default="allow", rules=(deny(["backup"]),))
TWO_LABELS = Policy(name="two-labels", default="deny", rules=(allow(labels={"tier": "gold", "region": "eu"}),))
BY_RESOURCE = Policy(name="by-resource", default="deny", rules=(allow(["backup"], resources=["repo-us-1"]),))
ANY_KIND_FIRST = Policy(
    name="any-kind-first",
    default="allow",
    rules=(
        deny(labels={"frozen": "yes"}),
        allow(["backup"]),
        deny(resources=["repo-eu-1"]),
    ),
)

GOLD_EU = Tenant(id="acme", name="ACME Corp", zone=NEW_YORK, labels={"tier": "gold", "region": "eu"})
GOLD_US = Tenant(id="gamma", name="Gamma Inc", zone=NEW_YORK, labels={"tier": "gold", "region": "us"})
SILVER = Tenant(id="beta", name="Beta GmbH", zone=BERLIN, labels={"tier": "silver", "region": "eu"})
FROZEN = Tenant(id="delta", name="Delta", zone=BERLIN, labels={"frozen": "yes"})
UNLABELLED = Tenant(id="omega", name="Omega", zone=BERLIN)


EVALUATE_CASES = [
    # (policy, tenant, kind, resource, allowed, index of the matching rule or None)
    (STANDARD, SILVER, "restore", None, True, 0),
    (STANDARD, SILVER, "failover", "repo-eu-1", True, 0),
    (STANDARD, SILVER, "backup", None, False, 1),
    (STANDARD, SILVER, "agent-backup", None, False, 1),
    (STANDARD, SILVER, "tape-export", None, False, None),
    (DENY_ALL, SILVER, "restore", None, False, None),
    (DENY_ALL, SILVER, "backup", "repo-eu-1", False, None),
    (LENIENT, SILVER, "restore", None, True, None),
    (LENIENT, SILVER, "backup", None, False, 0),
    (GOLD_FIRST, GOLD_EU, "backup", None, True, 0),
    (GOLD_FIRST, SILVER, "backup", None, False, 1),
    (GOLD_FIRST, UNLABELLED, "backup", None, False, 1),
    (GOLD_FIRST, SILVER, "restore", None, True, 2),
    (TWO_LABELS, GOLD_EU, "backup", None, True, 0),
    (TWO_LABELS, GOLD_US, "backup", None, False, None),
    (TWO_LABELS, UNLABELLED, "backup", None, False, None),
    (BY_RESOURCE, SILVER, "backup", "repo-us-1", True, 0),
    (BY_RESOURCE, SILVER, "backup", "repo-eu-1", False, None),
    (BY_RESOURCE, SILVER, "backup", None, False, None),
    (ANY_KIND_FIRST, FROZEN, "backup", None, False, 0),
    (ANY_KIND_FIRST, SILVER, "backup", "repo-eu-1", True, 1),
    (ANY_KIND_FIRST, SILVER, "restore", "repo-eu-1", False, 2),
    (ANY_KIND_FIRST, SILVER, "restore", "repo-us-1", True, None),
    (STANDARD, SILVER, "", None, False, None),
]


@pytest.mark.parametrize(
    "policy, tenant, kind, resource, allowed, index",
    EVALUATE_CASES,
    ids=[
        "standard_restore_allowed",
        "standard_failover_with_resource",
        "standard_backup_denied",
        "standard_kind_list_member",
        "standard_unlisted_kind_default_deny",
        "deny_all_restore",
        "deny_all_backup",
        "default_allow_unlisted_kind",
        "default_allow_listed_deny",
        "first_match_gold_allowed",
        "first_match_silver_denied",
        "first_match_no_labels_denied",
        "first_match_any_kind_fallthrough",
        "labels_all_match",
        "labels_one_differs",
        "labels_missing_on_tenant",
        "rule_resource_match",
        "rule_resource_other",
        "rule_resource_request_without_resource",
        "any_kind_rule_before_kind_rule",
        "kind_rule_before_later_any_kind_rule",
        "unindexed_kind_uses_any_kind_rules",
        "unindexed_kind_falls_to_default",
        "empty_kind",
    ],
)
def test_evaluate(policy, tenant, kind, resource, allowed, index):
    got_allowed, got_rule = compile_policy(policy).evaluate(tenant, kind, resource)
    assert got_allowed is allowed
    assert got_rule is (None if index is None else policy.rules[index])


@pytest.mark.parametrize(
    "policy, error",
    [
        (Policy(name="p", default="permit"), 'policy "p": default must be "allow" or "deny", not "permit"'),
        (
            Policy(name="p", rules=(allow(), Rule(effect="block"))),
            'policy "p": rule 2 effect must be "allow" or "deny", not "block"',
        ),
    ],
    ids=["bad_default", "bad_rule_effect"],
)
def test_compile_refuses_unknown_effects(policy, error):
    with pytest.raises(MaintdError) as info:
        compile_policy(policy)
    assert str(info.value) == error


# --- decide ----------------------------------------------------------------------------

PROVIDER = Provider(name="Example Cloud", zone=BERLIN)

START = utc("2026-12-05T21:00")  # 22:00 CET, 16:00 EST
END = utc("2026-12-06T01:00")  # 02:00 CET, 20:00 EST
LATER_END = utc("2026-12-06T03:00")  # a touching window extends the period: 04:00 CET, 22:00 EST

FIRMWARE = Window(
    id="storage-firmware",
    title="Storage firmware update",
    zone=BERLIN,
    tenants=frozenset({"acme", "beta"}),
    start=START,
    end=END,
    resources=frozenset({"repo-eu-1"}),
    policy="standard",
)
PATCHING = Window(
    id="patch-tuesday",
    title="Monthly host patching",
    zone=BERLIN,
    tenants=frozenset({"acme", "beta"}),
    cron="0 22 * * 6",
    duration=timedelta(hours=4),
    policy="standard",
    message="{title} for {tenant} until {end}.",
)
NETWORK = Window(
    id="core-network", title="Core network", zone=BERLIN, tenants=frozenset({"acme", "beta"}), start=END, end=LATER_END
)


def occ(window: Window, start: datetime, end: datetime) -> Occurrence:
    return Occurrence(start=start, end=end, window=window.id, key=start)


def gating(
    window: Window,
    policy: Policy = STANDARD,
    start: datetime = START,
    end: datetime = END,
    period_end: datetime | None = None,
) -> Gating:
    return Gating(window=window, occurrence=occ(window, start, end), policy=policy, period_end=period_end or end)


def refused(reason: str, message: str, retry_after: datetime, window: Window, key: datetime = START) -> Decision:
    return Decision(
        admitted=False, reason=reason, message=message, retry_after=retry_after, window=window.id, occurrence=key
    )


ADMITTED = Decision(admitted=True)
DURING = utc("2026-12-05T23:00")
BEFORE = utc("2026-12-05T19:00")  # two hours before START

DECIDE_CASES = [
    # (request, active, upcoming, now, expected)
    (Request(tenant=SILVER, kind="backup"), [], [], DURING, ADMITTED),
    (Request(tenant=SILVER, kind="restore", resource="repo-eu-1"), [gating(FIRMWARE)], [], DURING, ADMITTED),
    (Request(tenant=SILVER, kind="replication"), [gating(PATCHING)], [], DURING, ADMITTED),
    (
        Request(tenant=SILVER, kind="backup", resource="repo-eu-1"),
        [gating(FIRMWARE)],
        [],
        DURING,
        refused(
            "maintenance",
            "Backups are paused until Sun 6 Dec 2026 02:00 CET; they resume automatically.",
            END,
            FIRMWARE,
        ),
    ),
    (
        Request(tenant=GOLD_EU, kind="backup", resource="repo-eu-1"),
        [gating(FIRMWARE)],
        [],
        DURING,
        refused(
            "maintenance",
            "Backups are paused until Sat 5 Dec 2026 20:00 EST; they resume automatically.",
            END,
            FIRMWARE,
        ),
    ),
    (
        Request(tenant=SILVER, kind="tape-export", resource="repo-eu-1"),
        [gating(FIRMWARE)],
        [],
        DURING,
        refused(
            "maintenance", "Example Cloud is under scheduled maintenance until Sun 6 Dec 2026 02:00 CET.", END, FIRMWARE
        ),
    ),
    (
        Request(tenant=SILVER, kind="tape-export"),
        [gating(PATCHING)],
        [],
        DURING,
        refused("maintenance", "Monthly host patching for Beta GmbH until Sun 6 Dec 2026 02:00 CET.", END, PATCHING),
    ),
    (
        Request(tenant=SILVER, kind="restore"),
        [gating(PATCHING, DENY_ALL)],
        [],
        DURING,
        refused("maintenance", "Monthly host patching for Beta GmbH until Sun 6 Dec 2026 02:00 CET.", END, PATCHING),
    ),
    # Resource-scoped window: only jobs on its resources are gated.
    (Request(tenant=SILVER, kind="backup", resource="repo-us-1"), [gating(FIRMWARE)], [], DURING, ADMITTED),
    (Request(tenant=SILVER, kind="backup"), [gating(FIRMWARE)], [], DURING, ADMITTED),
    # The merged period outlasts this window: retry_after and {end} say when it really resumes.
    (
        Request(tenant=SILVER, kind="tape-export"),
        [gating(PATCHING, period_end=LATER_END)],
        [],
        DURING,
        refused(
            "maintenance", "Monthly host patching for Beta GmbH until Sun 6 Dec 2026 04:00 CET.", LATER_END, PATCHING
        ),
    ),
    # [start, end): denied at start, admitted at end.
    (
        Request(tenant=SILVER, kind="tape-export"),
        [gating(PATCHING)],
        [],
        START,
        refused("maintenance", "Monthly host patching for Beta GmbH until Sun 6 Dec 2026 02:00 CET.", END, PATCHING),
    ),
    (Request(tenant=SILVER, kind="backup"), [gating(PATCHING)], [], END, ADMITTED),
    (
        Request(tenant=SILVER, kind="tape-export"),
        [gating(PATCHING)],
        [],
        END - timedelta(seconds=1),
        refused("maintenance", "Monthly host patching for Beta GmbH until Sun 6 Dec 2026 02:00 CET.", END, PATCHING),
    ),
    # Several active occurrences: the denying one whose period ends last.
    (
        Request(tenant=SILVER, kind="tape-export"),
        [gating(PATCHING), gating(NETWORK, DENY_ALL, start=START, end=LATER_END)],
        [],
        DURING,
        refused(
            "maintenance",
            "Example Cloud is under scheduled maintenance until Sun 6 Dec 2026 04:00 CET.",
            LATER_END,
            NETWORK,
        ),
    ),
    (
        Request(tenant=SILVER, kind="restore"),
        [gating(PATCHING, DENY_ALL), gating(NETWORK, STANDARD, start=START, end=LATER_END)],
        [],
        DURING,
        refused("maintenance", "Monthly host patching for Beta GmbH until Sun 6 Dec 2026 02:00 CET.", END, PATCHING),
    ),
    (
        Request(tenant=SILVER, kind="restore"),
        [gating(PATCHING), gating(NETWORK, start=START, end=LATER_END)],
        [],
        DURING,
        ADMITTED,
    ),
    # would-overlap: [now, now + expected) against the upcoming [start, end).
    (
        Request(tenant=SILVER, kind="tape-export", expected_duration=timedelta(hours=2)),
        [],
        [gating(PATCHING)],
        BEFORE,
        ADMITTED,
    ),
    (
        Request(tenant=SILVER, kind="tape-export", expected_duration=timedelta(hours=2, seconds=1)),
        [],
        [gating(PATCHING)],
        BEFORE,
        refused("would-overlap", "Monthly host patching for Beta GmbH until Sun 6 Dec 2026 02:00 CET.", END, PATCHING),
    ),
    (
        Request(tenant=GOLD_EU, kind="backup", expected_duration=timedelta(hours=3)),
        [],
        [gating(PATCHING, DENY_ALL, period_end=LATER_END)],
        BEFORE,
        refused(
            "would-overlap", "Monthly host patching for ACME Corp until Sat 5 Dec 2026 22:00 EST.", LATER_END, PATCHING
        ),
    ),
    (
        Request(tenant=SILVER, kind="restore", expected_duration=timedelta(hours=3)),
        [],
        [gating(PATCHING)],
        BEFORE,
        ADMITTED,
    ),
    (Request(tenant=SILVER, kind="backup"), [], [gating(PATCHING)], BEFORE, ADMITTED),
    (
        Request(tenant=SILVER, kind="backup", resource="repo-us-1", expected_duration=timedelta(hours=3)),
        [],
        [gating(FIRMWARE)],
        BEFORE,
        ADMITTED,
    ),
    (
        Request(tenant=SILVER, kind="backup", resource="repo-eu-1", expected_duration=timedelta(hours=3)),
        [],
        [gating(FIRMWARE)],
        BEFORE,
        refused(
            "would-overlap",
            "Backups are paused until Sun 6 Dec 2026 02:00 CET; they resume automatically.",
            END,
            FIRMWARE,
        ),
    ),
    (
        Request(tenant=SILVER, kind="tape-export", expected_duration=timedelta(hours=9)),
        [],
        [gating(NETWORK, DENY_ALL, start=END, end=LATER_END), gating(PATCHING)],
        BEFORE,
        refused("would-overlap", "Monthly host patching for Beta GmbH until Sun 6 Dec 2026 02:00 CET.", END, PATCHING),
    ),
    # Active allows restore, the touching window after it does not.
    (
        Request(tenant=SILVER, kind="restore", expected_duration=timedelta(hours=3)),
        [gating(PATCHING)],
        [gating(NETWORK, DENY_ALL, start=END, end=LATER_END, period_end=LATER_END)],
        DURING,
        refused(
            "would-overlap",
            "Example Cloud is under scheduled maintenance until Sun 6 Dec 2026 04:00 CET.",
            LATER_END,
            NETWORK,
            key=END,
        ),
    ),
    # An occurrence that is over is ignored, whichever list holds it.
    (Request(tenant=SILVER, kind="backup"), [gating(PATCHING)], [], utc("2026-12-06T05:00"), ADMITTED),
]


@pytest.mark.parametrize(
    "request_, active, upcoming, now, expected",
    DECIDE_CASES,
    ids=[
        "no_active_admitted",
        "restore_allowed_on_scoped_window",
        "replication_allowed",
        "rule_message_berlin_tenant",
        "rule_message_new_york_tenant",
        "default_deny_provider_message",
        "default_deny_window_message",
        "deny_all_policy",
        "window_resources_other_resource_admitted",
        "window_resources_request_without_resource_admitted",
        "retry_after_is_period_end",
        "start_boundary_denied",
        "end_boundary_admitted",
        "last_second_denied",
        "several_active_latest_period_end",
        "several_active_only_one_denies",
        "several_active_all_allow",
        "overlap_ends_exactly_at_start_admitted",
        "overlap_one_second_later_denied",
        "overlap_retry_after_is_period_end_ny",
        "overlap_allowed_kind_admitted",
        "overlap_needs_expected_duration",
        "overlap_scoped_window_other_resource",
        "overlap_scoped_window_same_resource",
        "overlap_first_to_start_wins",
        "active_allows_upcoming_denies",
        "ended_occurrence_ignored",
    ],
)
def test_decide(request_, active, upcoming, now, expected):
    assert decide(request_, active, upcoming, now, provider=PROVIDER) == expected


RULE_MSG = "Rule: {window} until {end}."
WINDOW_MSG = "Window: {title} until {end}."


@pytest.mark.parametrize(
    "rule_message, window_message, expected",
    [
        (RULE_MSG, WINDOW_MSG, "Rule: patch-tuesday until Sat 5 Dec 2026 20:00 EST."),
        (None, WINDOW_MSG, "Window: Monthly host patching until Sat 5 Dec 2026 20:00 EST."),
        ("", WINDOW_MSG, "Window: Monthly host patching until Sat 5 Dec 2026 20:00 EST."),
        (None, None, "Example Cloud is under scheduled maintenance until Sat 5 Dec 2026 20:00 EST."),
    ],
    ids=["rule_over_window", "window_over_provider", "empty_rule_message_falls_back", "provider_last"],
)
def test_message_precedence(rule_message, window_message, expected):
    policy = Policy(name="p", rules=(deny(["backup"], message=rule_message),))
    window = Window(
        id="patch-tuesday",
        title="Monthly host patching",
        zone=BERLIN,
        tenants=frozenset({"acme"}),
        cron="0 22 * * 6",
        duration=timedelta(hours=4),
        policy="p",
        message=window_message,
    )
    got = decide(Request(tenant=GOLD_EU, kind="backup"), [gating(window, policy)], [], DURING, provider=PROVIDER)
    assert got.message == expected


def test_same_instant_reads_differently_per_tenant_zone():
    active = [gating(PATCHING, period_end=LATER_END)]
    berlin = decide(Request(tenant=SILVER, kind="tape-export"), active, [], DURING, provider=PROVIDER)
    new_york = decide(Request(tenant=GOLD_EU, kind="tape-export"), active, [], DURING, provider=PROVIDER)
    assert berlin.message == "Monthly host patching for Beta GmbH until Sun 6 Dec 2026 04:00 CET."
    assert new_york.message == "Monthly host patching for ACME Corp until Sat 5 Dec 2026 22:00 EST."
    assert berlin.retry_after == new_york.retry_after == LATER_END


def test_compiled_map_is_used_and_a_stale_entry_is_not():
    request = Request(tenant=SILVER, kind="backup")
    compiled = compile_policies({"standard": STANDARD})
    assert set(compiled) == {"standard", "deny-all"}
    assert not decide(request, [gating(PATCHING)], [], DURING, provider=PROVIDER, compiled=compiled).admitted
    # After a reload "standard" allows backups; a map compiled before it must not decide.
    reloaded = Policy(name="standard", default="allow")
    got = decide(request, [gating(PATCHING, reloaded)], [], DURING, provider=PROVIDER, compiled=compiled)
    assert got == ADMITTED


def test_bad_message_template_does_not_break_the_gate():
    policy = Policy(name="p", rules=(deny(message="until {ende"),))
    got = decide(Request(tenant=SILVER, kind="backup"), [gating(PATCHING, policy)], [], DURING, provider=PROVIDER)
    assert got == refused("maintenance", "until {ende", END, PATCHING)


POLICIES = [STANDARD, GOLD_FIRST, LENIENT, TWO_LABELS, BY_RESOURCE, ANY_KIND_FIRST, DENY_ALL]


@given(
    kind=st.text(),
    resource=st.none() | st.text(),
    minutes=st.none() | st.integers(min_value=-(10**6), max_value=10**6),
    now_offset=st.integers(min_value=-600, max_value=600),
    policy=st.sampled_from(POLICIES),
    tenant=st.sampled_from([GOLD_EU, SILVER, FROZEN, UNLABELLED]),
)
def test_decide_never_raises(kind, resource, minutes, now_offset, policy, tenant):
    request = Request(
        tenant=tenant,
        kind=kind,
        resource=resource,
        expected_duration=None if minutes is None else timedelta(minutes=minutes),
    )
    now = START + timedelta(minutes=now_offset)
    gatings = [
        gating(FIRMWARE, policy),
        gating(PATCHING, policy, period_end=LATER_END),
        gating(NETWORK, policy, start=END, end=LATER_END),
    ]
    got = decide(
        request,
        [g for g in gatings if now in g.occurrence],
        [g for g in gatings if g.occurrence.start > now],
        now,
        provider=PROVIDER,
    )
    if got.admitted:
        assert got == ADMITTED
    else:
        assert got.reason in ("maintenance", "would-overlap")
        assert got.retry_after > now and isinstance(got.message, str)
