"""The gate: may this tenant start this job now?

Pure: no clock, no disk, no network; ``now`` is a parameter. Occurrences are half-open,
``[start, end)``: a job asked for at ``end`` is past the occurrence, and a job that
ends exactly at an occurrence's ``start`` does not overlap it.

Policies are compiled once per reload (:func:`compile_policy`) because the gate is the
hot path: every tenant job start asks it, and most answers are "yes, no window".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from scheduler import messages
from scheduler.errors import MaintdError
from scheduler.model import DENY_ALL, Decision, Occurrence, Policy, Provider, Rule, Tenant, Window

_EFFECTS = {"allow": True, "deny": False}


@dataclass(frozen=True, kw_only=True)
class Request:
    """A tenant asking to start a job of ``kind`` (on ``resource``, for about ``expected_duration``)."""

    tenant: Tenant
    kind: str
    resource: str | None = None
    expected_duration: timedelta | None = None


@dataclass(frozen=True, kw_only=True)
class Gating:
    """One occurrence affecting the tenant, with the policy in force during it.

    ``period_end`` is the end of the tenant's merged maintenance period that contains
    the occurrence (overlapping or touching windows are one period), so it is what a
    denied tenant is told to wait for, not this window's own end.
    """

    window: Window
    occurrence: Occurrence
    policy: Policy
    period_end: datetime


class _Rule:
    # A rule reduced to what the hot path reads; ``result`` is the answer tuple,
    # built once so a match returns it without allocating.
    __slots__ = ("resources", "labels", "result")

    def __init__(self, rule: Rule, allow: bool) -> None:
        self.resources = rule.resources
        self.labels = tuple(rule.labels.items())
        self.result = (allow, rule)


class CompiledPolicy:
    """A :class:`~scheduler.model.Policy` indexed by kind for fast evaluation."""

    __slots__ = ("policy", "_by_kind", "_any_kind", "_default")

    def __init__(
        self, policy: Policy, by_kind: dict[str, tuple[_Rule, ...]], any_kind: tuple[_Rule, ...], default: bool
    ) -> None:
        self.policy = policy
        self._by_kind = by_kind
        self._any_kind = any_kind
        self._default = (default, None)

    @property
    def name(self) -> str:
        return self.policy.name

    def evaluate(self, tenant: Tenant, kind: str, resource: str | None) -> tuple[bool, Rule | None]:
        """``(allowed, rule)``: the first matching rule wins; no match gives the default and None.

        A rule matches when ``kind`` is in its kinds (None: any), ``resource`` is in its
        resources (None: any; a request without a resource does not match a rule that
        names resources) and every one of its labels equals the tenant's.
        """
        # Only rules that can match this kind are walked, in declaration order.
        for r in self._by_kind.get(kind, self._any_kind):
            resources = r.resources
            if resources is not None and resource not in resources:
                continue
            labels = r.labels
            if labels:
                have = tenant.labels
                for key, value in labels:
                    if have.get(key) != value:
                        break
                else:
                    return r.result
                continue
            return r.result
        return self._default

    def __repr__(self) -> str:
        return f"CompiledPolicy({self.policy.name!r})"


def _effect(value: str, policy: Policy, what: str) -> bool:
    try:
        return _EFFECTS[value]
    except (KeyError, TypeError):
        raise MaintdError(f'policy "{policy.name}": {what} must be "allow" or "deny", not "{value}"') from None


def compile_policy(policy: Policy) -> CompiledPolicy:
    """Index ``policy``'s rules by kind; call once per reload, not per request."""
    default = _effect(policy.default, policy, "default")
    rules = [
        (rule, _Rule(rule, _effect(rule.effect, policy, f"rule {i + 1} effect"))) for i, rule in enumerate(policy.rules)
    ]
    kinds: set[str] = set()
    for rule, _ in rules:
        if rule.kinds is not None:
            kinds.update(rule.kinds)
    by_kind = {kind: tuple(c for rule, c in rules if rule.kinds is None or kind in rule.kinds) for kind in kinds}
    any_kind = tuple(c for rule, c in rules if rule.kinds is None)
    return CompiledPolicy(policy, by_kind, any_kind, default)


def compile_policies(policies: Mapping[str, Policy]) -> dict[str, CompiledPolicy]:
    """Compile every policy of a config, plus DENY_ALL, keyed by name (the ``compiled`` of decide)."""
    out = {DENY_ALL.name: _DENY_ALL}
    out.update((name, compile_policy(p)) for name, p in policies.items())
    return out


_DENY_ALL = compile_policy(DENY_ALL)


def _compiled_for(policy: Policy, compiled: Mapping[str, CompiledPolicy] | None) -> CompiledPolicy:
    if compiled is not None:
        c = compiled.get(policy.name)
        # A stale map (from before a reload) must not judge with the old rules.
        if c is not None and (c.policy is policy or c.policy == policy):
            return c
    if policy is DENY_ALL:
        return _DENY_ALL
    return compile_policy(policy)


def _applies(window: Window, resource: str | None) -> bool:
    # A resource-scoped window gates only jobs on its resources; a job that names no
    # resource is not on any of them.
    scope = window.resources
    return scope is None or (resource is not None and resource in scope)


def _evaluate(
    request: Request, gating: Gating, compiled: Mapping[str, CompiledPolicy] | None
) -> tuple[bool, Rule | None]:
    return _compiled_for(gating.policy, compiled).evaluate(request.tenant, request.kind, request.resource)


def _refuse(
    request: Request,
    gating: Gating,
    rule: Rule | None,
    reason: str,
    provider: Provider,
    format_time: messages.FormatTime | None = None,
) -> Decision:
    window = gating.window
    text = (rule.message if rule is not None else None) or window.message or provider.message
    tenant = request.tenant
    message = messages.render(
        messages.localized(text, tenant),
        provider=provider.name,
        title=window.title,
        start=gating.occurrence.start,
        # {end} is when the tenant can really go again: the merged period's end.
        end=gating.period_end,
        window=window.id,
        tenant=tenant,
        zone=tenant.zone,
        format_time=format_time,
    )
    return Decision(
        admitted=False,
        reason=reason,
        message=message,
        retry_after=gating.period_end,
        window=window.id,
        occurrence=gating.occurrence.key,
    )


_ADMITTED = Decision(admitted=True)


def decide(
    request: Request,
    active: Sequence[Gating],
    upcoming: Sequence[Gating],
    now: datetime,
    *,
    provider: Provider,
    compiled: Mapping[str, CompiledPolicy] | None = None,
    format_time: messages.FormatTime | None = None,
) -> Decision:
    """Admit or refuse ``request`` at ``now``.

    ``active`` are the occurrences affecting the tenant at ``now`` (``start <= now <
    end``), ``upcoming`` those starting after ``now``; both already filtered to the
    tenant. Each gating is still classified by its own ``[start, end)`` against
    ``now``, so an occurrence that has ended is ignored whichever list holds it.
    A window with ``resources`` gates only requests whose ``resource`` is one of them.

    - An active occurrence whose policy denies the kind refuses with reason
      ``maintenance``; of several, the one whose period ends last (the tenant cannot
      go before that), ``retry_after`` being that period's end.
    - Otherwise, with ``expected_duration``, a job still running when an upcoming
      occurrence starts (``now + expected_duration > start``; ending exactly at
      ``start`` is fine) is refused with ``would-overlap`` if that occurrence's
      policy denies the kind; of several, the one that starts first (the job would
      hit it first), ``retry_after`` being its period's end.
    - Otherwise the job is admitted.

    The message is the denying rule's, else the window's, else the provider's,
    rendered in the tenant's zone with ``{end}`` = the period's end (``format_time(ts, zone)``
    writes it in the tenant's language; maintd's default message is translated). ``compiled``
    maps policy names to their compiled form; a policy missing from it (or changed
    since) is compiled on the spot.
    """
    resource = request.resource
    denied: Gating | None = None
    denied_by: Rule | None = None
    for group in (active, upcoming):  # one in `upcoming` that has in fact begun is active too
        for g in group:
            occ = g.occurrence
            if not (occ.start <= now < occ.end) or not _applies(g.window, resource):
                continue
            if denied is not None and g.period_end <= denied.period_end:
                continue  # cannot change the answer: it would not resume later
            allowed, rule = _evaluate(request, g, compiled)
            if not allowed:
                denied, denied_by = g, rule
    if denied is not None:
        return _refuse(request, denied, denied_by, "maintenance", provider, format_time)

    duration = request.expected_duration
    if duration is None:
        return _ADMITTED
    horizon = now + duration
    for group in (active, upcoming):
        for g in group:
            occ = g.occurrence
            if not (now < occ.start < horizon) or not _applies(g.window, resource):
                continue
            if denied is not None and occ.start >= denied.occurrence.start:
                continue  # the job would hit the one already found first
            allowed, rule = _evaluate(request, g, compiled)
            if not allowed:
                denied, denied_by = g, rule
    if denied is not None:
        return _refuse(request, denied, denied_by, "would-overlap", provider, format_time)
    return _ADMITTED
