"""Prometheus metrics of the engine, in a registry of its own (no module-level globals)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from callcenter.agi.session import AgiSession

if TYPE_CHECKING:
    from callcenter.live import LiveService


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
        self.agi_answer = Histogram(
            "callcenter_agi_answer_seconds",
            "Time from a FastAGI connection to the session's first command: how long a call waits for the engine",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        # Read at scrape time, from the /metrics handler in the engine's loop: a count that only grows is a leak.
        Gauge(
            "callcenter_asyncio_tasks", "asyncio tasks of the engine's event loop not done yet", registry=self.registry
        ).set_function(_running_tasks)
        self.logins = Counter("callcenter_logins", "Login attempts, by result", ["result"], registry=self.registry)
        self.login_locks = Counter(
            "callcenter_login_locks",
            "Lockouts after repeated failed logins, by scope: address (one username from one address) or username"
            " (one username from every address its user has not logged in from)",
            ["scope"],
            registry=self.registry,
        )

    def watch_ami(self, live: LiveService) -> None:
        """AMI health read at scrape time from the live service's connection."""
        connection = live.connection
        gauges = {
            "callcenter_ami_connected": ("1 while the AMI connection is logged in", lambda: int(connection.connected)),
            "callcenter_ami_reconnects": ("AMI logins after the first", lambda: connection.stats.reconnects),
            "callcenter_ami_events": ("AMI events received", lambda: connection.stats.events),
            "callcenter_ami_events_dropped": ("AMI events lost to a full queue", lambda: connection.stats.dropped),
            "callcenter_ami_events_before_login": (
                "AMI events dropped because they came before the Login was answered",
                lambda: connection.stats.events_before_login,
            ),
            "callcenter_live_channels_refused": (
                "New channels not folded because the live model was at ami.max_channels",
                lambda: live.channels_refused,
            ),
            "callcenter_ami_resyncs": ("Live model rebuilds from Asterisk's listings", lambda: live.resyncs),
            "callcenter_live_calls": ("Calls in the live model", lambda: len(live.model.calls)),
        }
        for name, (documentation, read) in gauges.items():
            Gauge(name, documentation, registry=self.registry).set_function(read)

    # FastAGI SessionObserver
    def session_started(self, session: AgiSession) -> None:
        self.agi_active.inc()

    def session_ended(self, session: AgiSession, outcome: str, seconds: float) -> None:
        self.agi_active.dec()
        self.agi_sessions.labels(outcome=outcome).inc()
        self.agi_duration.observe(seconds)
        answer = session.stats.answer_seconds
        if answer is not None:
            self.agi_answer.observe(answer)

    def session_rejected(self, reason: str) -> None:
        self.agi_rejected.labels(reason=reason).inc()


def _running_tasks() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # scraped outside the loop (a test's registry dump): no loop, no tasks
        return 0
