"""Prometheus metrics, in a registry owned by the app (two apps never share counters).

Counters are derived from the audit trail as events are recorded (one listener, no
second bookkeeping on the request path); the authentication latency histograms are
observed by the HTTP layer; gauges are read when Prometheus scrapes, from values kept
current in memory (key counts are refreshed in the background, never queried on a
scrape).

With several worker processes each worker has its own registry: a scrape sees the
worker that answered it (see the README for aggregating per worker).

What moves on every request (the API-key request counter, the authentication latency
histogram) is a :class:`LoopCounter` / :class:`LoopHistogram`: plain numbers updated
without a lock, since only the event loop's thread updates them (one per worker
process), turned into Prometheus families when scraped. ``prometheus_client``'s own
types take a mutex per update, for threads authgate does not have on that path.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from authgate.storage.audit_repository import AuditRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

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
_HASH_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


class _Count:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class LoopCounter:
    """A labelled counter for one thread (the event loop's): no lock per update."""

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._children: dict[tuple[str, ...], _Count] = {}

    def labels(self, *values: str) -> _Count:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _Count()
        return child

    def collect(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            family.add_metric(list(values), child.value)
        return family


class _Buckets:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, the last one +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class LoopHistogram:
    """A labelled histogram for one thread (the event loop's): no lock per update."""

    def __init__(
        self, name: str, documentation: str, labelnames: tuple[str, ...], buckets: tuple[float, ...]
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, labelnames
        self._bounds = tuple(sorted(buckets))
        self._children: dict[tuple[str, ...], _Buckets] = {}

    def labels(self, *values: str) -> _Buckets:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = _Buckets(self._bounds)
        return child

    def collect(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for values, child in list(self._children.items()):
            cumulative, buckets = 0, []
            for bound, count in zip((*self._bounds, float("inf")), child.counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
            family.add_metric(list(values), buckets, child.sum)
        return family


class _LoopCollector(Collector):
    def __init__(self, *metrics: LoopCounter | LoopHistogram) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        for metric in self._metrics:
            yield metric.collect()

    def describe(self) -> Iterator[CounterMetricFamily]:
        return iter(())


@dataclass
class Gauges:
    """Values the collector reports at scrape time, set by whoever knows them."""

    active_api_keys: int = 0
    api_keys_expiring_14d: int = 0
    sources: dict[str, Callable[[], dict[str, int]]] = field(default_factory=dict)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.logins = Counter(
            "authgate_logins", "Login attempts.", ["outcome", "reason"], registry=registry
        )
        self.api_key_requests = LoopCounter(
            "authgate_api_key_requests",
            "Requests authenticated (or refused) by API key.",
            ("outcome", "reason"),
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
        self.authentication_seconds = LoopHistogram(
            "authgate_authentication_seconds",
            "Time to authenticate a request, by credential.",
            ("method",),
            _LATENCY_BUCKETS,
        )
        registry.register(_LoopCollector(self.api_key_requests, self.authentication_seconds))
        self.password_hash_seconds = Histogram(
            "authgate_password_hash_seconds",
            "Time of one Argon2 hash or verification (in its thread).",
            buckets=_HASH_BUCKETS,
            registry=registry,
        )
        self.gauges = Gauges()
        registry.register(_GaugeCollector(self.gauges))

    def on_audit(self, row: AuditRow) -> None:
        """Count an audit event (an ``AuditLog`` listener)."""
        event, reason = row.event_type, row.reason or "none"
        if event in ("AUTH_SUCCESS", "AUTH_FAILURE"):
            self.logins.labels(row.outcome, reason).inc()
        elif event == "API_KEY_ACCESS_FAILURE":
            # Accepted key requests are counted by the gate: most are not audited.
            self.api_key_requests.labels(row.outcome, reason).inc()
            if reason in ("rate_limited", "ip_blocked_for_keys"):
                self.throttled.labels(reason).inc()
        elif event == "TOKEN_REJECTED":
            self.token_rejections.labels(reason).inc()
        elif event in ("AUTH_LOCKOUT", "IP_BLOCKED"):
            self.lockouts.labels(reason).inc()
        elif event == "ALERT_FIRED":
            self.alerts_fired.labels(reason, _alert_severity(row.details)).inc()
        if event == "AUTH_FAILURE" and reason in (
            "ip_blocked",
            "account_ip_blocked",
            "account_slowdown",
        ):
            self.throttled.labels(reason).inc()

    def add_source(self, name: str, read: Callable[[], dict[str, int]]) -> None:
        """Report ``read()`` (label -> value) as gauge ``authgate_<name>`` at each scrape."""
        self.gauges.sources[name] = read

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


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
