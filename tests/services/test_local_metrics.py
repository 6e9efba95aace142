"""The request path's lock-free counts read, once folded, exactly as the same updates made
on the Prometheus metrics one by one (the fold uses prometheus_client's per-bucket values:
this catches a release that stores them differently)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from authgate.services.metrics import _LATENCY_BUCKETS, Metrics, prepare_multiprocess_directory

amounts = st.lists(
    st.one_of(
        st.sampled_from(_LATENCY_BUCKETS),  # exactly on a bound: that bucket, as observe()
        st.floats(min_value=0.0, max_value=2.0, allow_nan=False),  # beyond the last: +Inf
    ),
    max_size=60,
)


@given(amounts)
def test_a_folded_histogram_reads_as_the_same_observations(values: list[float]) -> None:
    local, direct = Metrics(), Metrics()
    histogram = local.local_authentication_seconds("api_key")
    child = direct.authentication_seconds.labels("api_key")
    for value in values:
        histogram.observe(value)
        child.observe(value)
    assert generate_latest(local.registry) != generate_latest(direct.registry) or not values
    local.fold()
    assert generate_latest(local.registry) == generate_latest(direct.registry)
    local.fold()  # nothing new: folding again adds nothing
    assert generate_latest(local.registry) == generate_latest(direct.registry)


def test_a_folded_counter_counts_every_increment_once() -> None:
    metrics = Metrics()
    child = metrics.api_key_requests.labels("success", "none")
    counter = metrics.local_counter(child)
    for _ in range(5):
        counter.inc()
    assert child._value.get() == 0  # nothing reaches Prometheus before a fold
    text = metrics.exposition().decode()  # a scrape folds first
    assert 'authgate_api_key_requests_total{outcome="success",reason="none"} 5.0' in text
    counter.inc()
    metrics.process_exiting()  # the last counts are not lost when the process stops
    assert child._value.get() == 6


def test_preparing_the_metrics_directory_removes_only_metrics_files(tmp_path: Path) -> None:
    """An earlier run's files go (their counts would add to this run's), nothing else:
    pointed at the data dir, preparing it once deleted the SQLite database."""
    leftovers = ["counter_123.db", "histogram_4.db", "gauge_livesum_77.db", "summary_9.db"]
    kept = ["authgate.db", "counter.db", "counter_12.db.bak", "notes.txt"]
    for name in leftovers + kept:
        (tmp_path / name).write_bytes(b"x")
    prepare_multiprocess_directory(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)
