"""The daemon's Prometheus metrics, on a registry of its own (one per daemon, so tests
can build several in one process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.mode = Gauge("maintd_mode", "1 for the current mode", ["mode"], registry=r)
        self.active = Gauge("maintd_active_windows", "Occurrences active now", registry=r)
        self.transitions = Counter("maintd_transitions_total", "Recorded starts and ends", ["event"], registry=r)
        self.reloads = Counter("maintd_reloads_total", "Config reloads", ["result"], registry=r)
        self.reload_error = Gauge("maintd_config_error", "1 while the last reload failed", registry=r)
        self.tick_seconds = Gauge("maintd_last_tick_seconds", "Duration of the last loop iteration", registry=r)
        self.ticks = Counter("maintd_ticks_total", "Loop iterations", registry=r)
        self.store_errors = Counter("maintd_store_errors_total", "Failed store operations", registry=r)
        self.store_fault = Gauge("maintd_store_fault", "1 while the store cannot be written", registry=r)
        self.notices = Counter("maintd_notices_total", "Notice deliveries by result", ["channel", "result"], registry=r)
        self.notices_pending = Gauge("maintd_notices_pending", "Deliveries waiting", registry=r)
        self.notices_failed = Gauge("maintd_notices_failed", "Deliveries failed for good", registry=r)
        self.notices_superseded = Gauge(
            "maintd_notices_superseded",
            "Deliveries never sent: the window started or later news replaced them",
            registry=r,
        )
        self.endpoints_disabled = Gauge(
            "maintd_endpoints_disabled", "Tenant endpoints disabled after 410 Gone", registry=r
        )
        self.delivery_seconds = Histogram(
            "maintd_delivery_seconds",
            "Time from enqueue to delivery",
            ["channel"],
            registry=r,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 21600),
        )
        self.hooks = Counter("maintd_hook_runs_total", "Hook runs by result", ["event", "result"], registry=r)
        self.hooks_failed = Gauge("maintd_hooks_failed", "Hook runs failed for good", registry=r)
        self.admissions = Counter("maintd_admissions_total", "Gate decisions", ["result"], registry=r)
        self.leases = Gauge("maintd_leases", "Leases by state", ["state"], registry=r)
        self.drain_overrun = Gauge("maintd_drain_overruns", "Drained leases still running after deadline", registry=r)
        self.end_checks = Counter("maintd_end_checks_total", "End checks by result", ["result"], registry=r)
        self.integration_failures = Counter(
            "maintd_integration_failures", "Failed integration actions (SPEC 6)", ["integration"], registry=r
        )
        self.integrations_failed = Gauge(
            "maintd_integrations_failed", "Integration runs whose last try failed", registry=r
        )
        self.leader = Gauge(
            "maintd_leader", "1 while this instance leads (runs transitions, drains, hooks)", registry=r
        )
