"""The session rows of bench-results.json: alternated pairs, the best run of each compared."""

from __future__ import annotations

import pytest

from storepulse.bench.measure import Variant
from storepulse.bench.results import _session_figures


def run(name: str, seconds: float, redis_us: int, cpu_s: float) -> Variant:
    return Variant(
        name=name, mode="worker", processes=1, events=1_000, first_in=0.0, last_out=seconds,
        cpu_s=cpu_s, process_cpu_s=cpu_s, peak_rss_bytes=0, redis_us=redis_us,
        redis_commands=0, redis_cpu_s=0.0, broker_cpu_s=0.0, other_load_cores=0.0, exact=True,
        check={"ended": {"stored": {"ended": 7}}},
    )  # fmt: skip


def test_the_best_run_of_each_is_compared_and_every_pair_is_listed() -> None:
    variants = {
        # Pair 1: the baseline slowed by other load (a ratio above 1 on its own).
        "worker": run("worker", 0.125, 50_000, 0.05),
        "worker_no_sessions": run("worker_no_sessions", 0.25, 40_000, 0.045),
        "worker_s2": run("worker_s2", 0.1, 45_000, 0.046),
        "worker_no_sessions_s2": run("worker_no_sessions_s2", 0.0625, 35_000, 0.04),
    }
    got = _session_figures(variants)
    # Best with: 10,000 events/s (s2); best without: 16,000 (s2).
    assert got["worker_sessions_ratio"] == 0.625
    assert got["worker_no_sessions_events_per_s"] == 16_000.0
    assert got["session_end_redis_us_per_event"] == 10.0  # 45 - 35
    assert got["session_end_cpu_us_per_event"] == pytest.approx(6.0)
    assert [p["ratio"] for p in got["worker_sessions_pairs"]] == [2.0, 0.625]
    assert got["ended_sessions"] == 7


def test_one_pair_is_the_ratio_of_its_two_runs() -> None:
    variants = {
        "worker": run("worker", 0.125, 50_000, 0.05),
        "worker_no_sessions": run("worker_no_sessions", 0.1, 40_000, 0.045),
    }
    got = _session_figures(variants)
    assert got["worker_sessions_ratio"] == 0.8
    assert len(got["worker_sessions_pairs"]) == 1
