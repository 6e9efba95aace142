"""Prometheus metrics, in a registry owned by the app (two apps never share counters).

Counters are derived from the audit trail as events are recorded (one listener, no
second bookkeeping on the request path); gauges are read when Prometheus scrapes, from
values kept current in memory (key counts are refreshed in the background, never queried
on a scrape).

What the gate counts on every accepted request (accepted key requests, the
authentication latency) goes into ``LocalCounter``/``LocalHistogram`` first: plain
numbers bumped on the event loop without a lock (a Prometheus child takes a lock per
update: 0.7 us for a counter, 1.8 us for a histogram, against 0.1 and 0.5 us here), folded
into the Prometheus metrics before every scrape this process answers and, with several
workers, every second (so a scrape answered by another worker is at most a second
behind).

With several worker processes (``authgate serve --workers N``) prometheus_client's
multiprocess mode is used: ``serve`` gives the workers a fresh directory
(``PROMETHEUS_MULTIPROC_DIR``), each worker writes its counters and histograms to its own
files there, and a scrape, whichever worker answers it, adds them all up. Gauges are then
real ``Gauge`` objects each worker keeps current (``publish_gauges``), aggregated the way
their meaning needs: values every worker reads from the database (key counts) take the
most recent one of a live worker, per-worker quantities (cache entries, buffered records)
are summed over live workers, and ratios are kept per worker (a ``pid`` label). A worker
that stops marks itself dead, so its live gauges leave the sums.
"""

from __future__ import annotations

import bisect
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from authgate.reasons import Reason
from authgate.storage.audit_repository import AuditRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# No ``*_created`` series: one more series per label set for a timestamp Prometheus does
# not need (counter resets are seen from the values), and in multiprocess mode it would
# be one worker's start time. prometheus_client offers only this process-wide switch.
disable_created_metrics()  # type: ignore[no-untyped-call]

MultiprocessMode = Literal["livesum", "liveall", "livemax", "livemostrecent"]
# How each scrape-time source adds up over the workers (default: summed).
_SOURCE_MODES: dict[str, MultiprocessMode] = {
    "cache_hit_ratio_percent": "liveall",
    # Every worker holds the same (shared) block list: summed, 2 workers said 2 for 1.
    "blocked_addresses": "livemax",
}

_LATENCY_BUCKETS = (
    0.000_01,
    0.000_025,
    0.000_05,
    0.000_1,
    0.000_25,
    0.000_5,
    0.001,
    0.002_5,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.5,
)
# The events of a refused request (a login, a key's use) a throttle can be the reason of.
_REFUSED_REQUESTS = frozenset({"AUTH_FAILURE", "API_KEY_ACCESS_FAILURE"})
_HASH_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


@dataclass
class Gauges:
    """Values the collector reports at scrape time, set by whoever knows them."""

    active_api_keys: int = 0
    api_keys_expiring_14d: int = 0
    sources: dict[str, Callable[[], dict[str, int]]] = field(default_factory=dict)


# The files prometheus_client's multiprocess mode writes: ``<type>_<pid>.db``.
_METRICS_FILE = re.compile(r"(?:counter|histogram|summary|gauge_[a-z]+)_\d+\.db")


def prepare_multiprocess_directory(directory: Path) -> None:
    """Remove (or create the directory for) the metrics files an earlier run left: they
    would add its counts to this run's. Only prometheus_client's own files: an operator
    may point the variable at a directory that holds other files, the data dir with its
    SQLite database (``authgate.db``) among them."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    for leftover in directory.glob("*.db"):
        if _METRICS_FILE.fullmatch(leftover.name):
            leftover.unlink()


class LocalCounter:
    """A counter for the request path: ``value += 1`` on the event loop thread, no lock;
    ``fold`` moves what it counted into its Prometheus child."""

    __slots__ = ("_child", "value")

    def __init__(self, child: Counter) -> None:
        self._child = child
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def fold(self) -> None:
        counted, self.value = self.value, 0
        if counted:
            self._child.inc(counted)


class LocalHistogram:
    """A histogram for the request path (event loop thread only): bucket counts and the
    sum in plain numbers, folded into its Prometheus child in one update per bucket."""

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Histogram, buckets: tuple[float, ...]) -> None:
        self._child = child
        self._bounds = buckets  # the child's finite upper bounds; +Inf is the last count
        self._counts = [0] * (len(buckets) + 1)
        self._sum = 0.0

    def observe(self, amount: float) -> None:
        # The first bucket whose bound is >= amount, as prometheus_client's observe().
        self._counts[bisect.bisect_left(self._bounds, amount)] += 1
        self._sum += amount

    def fold(self) -> None:
        counts, total = self._counts, self._sum
        if not any(counts):
            return
        self._counts, self._sum = [0] * len(counts), 0.0
        # prometheus_client has no bulk observe: its child keeps one value per bucket
        # (not cumulative) and the sum; tests/services/test_local_metrics.py checks that a fold
        # reads exactly as the same observations made one by one.
        buckets = self._child._buckets
        for index, counted in enumerate(counts):
            if counted:
                buckets[index].inc(counted)
        self._child._sum.inc(total)


class Metrics:
    def __init__(self, *, multiprocess_dir: Path | None = None) -> None:
        """``multiprocess_dir``: the workers' shared directory (see the module's doc);
        None for a single process, whose own registry is scraped."""
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.logins = Counter(
            "authgate_logins", "Login attempts.", ["outcome", "reason"], registry=registry
        )
        # A login's success above is its password's; its second step is counted here
        # (the metrics review: guessed second-factor codes showed in no metric).
        self.second_factor = Counter(
            "authgate_second_factor",
            "Second-factor checks (codes at a login's second step, enrolment, recovery).",
            ["outcome", "reason"],
            registry=registry,
        )
        self.api_key_requests = Counter(
            "authgate_api_key_requests",
            "Requests authenticated (or refused) by API key.",
            ["outcome", "reason"],
            registry=registry,
        )
        self.token_rejections = Counter(
            "authgate_token_rejections", "Refused bearer tokens.", ["reason"], registry=registry
        )
        self.lockouts = Counter(
            "authgate_lockouts",
            "Accounts and addresses locked or blocked.",
            ["reason"],
            registry=registry,
        )
        self.throttled = Counter(
            "authgate_throttled_requests",
            "Requests refused by rate limits or brute-force protection.",
            ["reason"],
            registry=registry,
        )
        self.alerts_fired = Counter(
            "authgate_alerts_fired", "Alerts fired.", ["kind", "severity"], registry=registry
        )
        self.authentication_seconds = Histogram(
            "authgate_authentication_seconds",
            "Time to authenticate a request, by credential.",
            ["method"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.password_hash_seconds = Histogram(
            "authgate_password_hash_seconds",
            "Time of one Argon2 hash or verification (in its thread).",
            buckets=_HASH_BUCKETS,
            registry=registry,
        )
        self._locals: list[LocalCounter | LocalHistogram] = []
        self.gauges = Gauges()
        self._published: dict[str, Gauge] = {}
        if multiprocess_dir is None:
            registry.register(_GaugeCollector(self.gauges))
        else:
            self._published = {
                "active_api_keys": Gauge(
                    "authgate_active_api_keys",
                    "API keys neither revoked nor expired.",
                    registry=None,
                    multiprocess_mode="livemostrecent",
                ),
                "api_keys_expiring_14d": Gauge(
                    "authgate_api_keys_expiring_14d",
                    "Active API keys expiring within 14 days.",
                    registry=None,
                    multiprocess_mode="livemostrecent",
                ),
            }

    def local_counter(self, child: Counter) -> LocalCounter:
        """A lock-free stand-in for ``child`` on the request path (see the module doc)."""
        local = LocalCounter(child)
        self._locals.append(local)
        return local

    def local_histogram(self, child: Histogram, buckets: tuple[float, ...]) -> LocalHistogram:
        local = LocalHistogram(child, buckets)
        self._locals.append(local)
        return local

    def local_authentication_seconds(self, method: str) -> LocalHistogram:
        return self.local_histogram(self.authentication_seconds.labels(method), _LATENCY_BUCKETS)

    def fold(self) -> None:
        """Move the request path's local counts into the Prometheus metrics."""
        for local in self._locals:
            local.fold()

    def on_audit(self, row: AuditRow) -> None:
        """Count an audit event (an ``AuditLog`` listener).

        The ``reason`` label is the stored code as is (``none`` without one), a code
        this version does not know included; which counters a refusal also lands in is
        the ``Reason``'s to say (``Reason.throttled``)."""
        event, label = row.event_type, row.reason or "none"
        if event in ("AUTH_SUCCESS", "AUTH_FAILURE"):
            self.logins.labels(row.outcome, label).inc()
        elif event in ("TFA_SUCCESS", "TFA_FAILURE"):
            self.second_factor.labels(row.outcome, label).inc()
        elif event == "API_KEY_ACCESS_FAILURE":
            # Accepted key requests are counted by the gate: most are not audited.
            self.api_key_requests.labels(row.outcome, label).inc()
        elif event == "TOKEN_REJECTED":
            self.token_rejections.labels(label).inc()
        elif event in ("AUTH_LOCKOUT", "IP_BLOCKED"):
            self.lockouts.labels(label).inc()
        elif event == "ALERT_FIRED":
            self.alerts_fired.labels(label, _alert_severity(row.details)).inc()
        if event in _REFUSED_REQUESTS:
            reason = Reason.lookup(row.reason)
            if reason is not None and reason.throttled:
                self.throttled.labels(reason.label).inc()

    def add_source(self, name: str, read: Callable[[], dict[str, int]]) -> None:
        """Report ``read()`` (label -> value) as gauge ``authgate_<name>`` at each scrape."""
        self.gauges.sources[name] = read
        if self.multiprocess_dir is not None:
            self._published[name] = Gauge(
                f"authgate_{name}",
                f"authgate {name}.",
                ["name"],
                registry=None,
                multiprocess_mode=_SOURCE_MODES.get(name, "livesum"),
            )

    def publish_gauges(self) -> None:
        """Fold the local counts in and, in multiprocess mode, write this worker's gauge
        values to its files, where a scrape answered by any worker reads them (called
        every second, and before this worker answers a scrape)."""
        self.fold()
        if self.multiprocess_dir is None:
            return
        gauges, published = self.gauges, self._published
        published["active_api_keys"].set(gauges.active_api_keys)
        published["api_keys_expiring_14d"].set(gauges.api_keys_expiring_14d)
        for name, read in gauges.sources.items():
            for label, value in read().items():
                published[name].labels(label).set(value)

    def exposition(self) -> bytes:
        self.publish_gauges()
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        # Every worker's files, added up (a registry of its own each time, as
        # prometheus_client's multiprocess documentation does).
        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        return generate_latest(combined)

    def process_exiting(self) -> None:
        """This process stops: its last local counts are folded in and, in
        multiprocess mode, its live gauges leave the aggregates."""
        self.fold()
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.multiprocess_dir))  # type: ignore[no-untyped-call]


def _alert_severity(details: str | None) -> str:
    """The severity the alert engine puts in an ALERT_FIRED record's details (rare
    events, so parsing the JSON here costs nothing on the request path)."""
    severity = json.loads(details).get("severity") if details else None
    return severity if isinstance(severity, str) else "unknown"


class _GaugeCollector(Collector):
    def __init__(self, gauges: Gauges) -> None:
        self._gauges = gauges

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        gauges = self._gauges
        yield GaugeMetricFamily(
            "authgate_active_api_keys", "API keys neither revoked nor expired.",
            value=gauges.active_api_keys,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "authgate_api_keys_expiring_14d", "Active API keys expiring within 14 days.",
            value=gauges.api_keys_expiring_14d,
        )  # fmt: skip
        for name, read in gauges.sources.items():
            family = GaugeMetricFamily(f"authgate_{name}", f"authgate {name}.", labels=["name"])
            for label, value in read().items():
                family.add_metric([label], value)
            yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
