"""Prometheus metrics of the engine, in a registry of its own (no module-level globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from callcenter.agi.session import AgiSession


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.agi_active = Gauge(
            "callcenter_agi_sessions_active", "FastAGI sessions running now", registry=self.registry
        )
        self.agi_sessions = Counter(
            "callcenter_agi_sessions",
            "FastAGI sessions served, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.agi_rejected = Counter(
            "callcenter_agi_rejected",
            "FastAGI connections refused, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.agi_duration = Histogram(
            "callcenter_agi_session_seconds",
            "Length of FastAGI sessions",
            buckets=(0.1, 0.5, 1, 5, 15, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.logins = Counter("callcenter_logins", "Login attempts, by result", ["result"], registry=self.registry)

    # FastAGI SessionObserver
    def session_started(self, session: AgiSession) -> None:
        self.agi_active.inc()

    def session_ended(self, session: AgiSession, outcome: str, seconds: float) -> None:
        self.agi_active.dec()
        self.agi_sessions.labels(outcome=outcome).inc()
        self.agi_duration.observe(seconds)

    def session_rejected(self, reason: str) -> None:
        self.agi_rejected.labels(reason=reason).inc()
