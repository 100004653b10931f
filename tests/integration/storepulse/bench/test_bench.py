"""`storepulse bench` end to end at tiny sizes: complete, exact, consistent results (no speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from storepulse.bench.options import CUSTOMER_KEYS, EXPORTER_KEYS, REQUIRED_KEYS
from tests.harness import PROJECT_DIR

BENCH = [sys.executable, "-m", "storepulse.cli", "bench"]


def run_mode(tmp_path: Path, output: Path, args: list[str], timeout: int) -> dict[str, Any]:
    """One bench mode run into output (exit 0 required): its stdout and results."""
    result = subprocess.run(
        [*BENCH, *args, "--output", str(output), "--work-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=PROJECT_DIR,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return {"stdout": result.stdout, "results": json.loads(output.read_text())}


def test_bench_help_lists_the_options() -> None:
    result = subprocess.run(
        [*BENCH, "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    for option in (
        "--events",
        "--latency-rate",
        "--latency-seconds",
        "--output",
        "--no-profile",
        "--latency-multiples",
        "--exporter-clients",
        "--exporter-seconds",
        "--exporter-only",
        "--session-pairs",
    ):
        assert option in result.stdout


@pytest.mark.slow
def test_bench_tiny_run_is_exact_and_consistent(tmp_path: Path) -> None:
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [
            *BENCH,
            "--events",
            "3000",
            "--latency-seconds",
            "3",
            "--latency-rate",
            "1000",
            "--no-trivial-batch",
            "--no-latency-baseline",
            "--session-pairs",  # one pair: the alternation is tests/unit/storepulse/bench's
            "1",
            "--latency-multiples",
            "2",
            "--exporter-clients",
            "10",
            "--exporter-seconds",
            "3",
            "--exporter-feed-rate",
            "500",
            "--output",
            str(output),
            "--profile-output",
            str(tmp_path / "profile.txt"),
            "--work-dir",
            str(tmp_path),
            "--keep-dir",
        ],
        capture_output=True,
        text=True,
        # ~2 min on an idle 2-core box; the other helpers' load can double it.
        timeout=420,
        cwd=PROJECT_DIR,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "worker / trivial" in result.stdout
    assert "targets:" in result.stdout

    results = json.loads(output.read_text())
    missing = [
        key for key in (*REQUIRED_KEYS, *EXPORTER_KEYS, *CUSTOMER_KEYS) if key not in results
    ]
    assert not missing, missing
    assert results["cores"] == os.cpu_count()
    assert results["events"] == 3000
    assert results["exact"] is True
    for name, variant in results["variants"].items():
        assert variant["exact"] is True, (name, variant["check"])
        assert variant["events_per_s"] > 0, name
        assert variant["cpu_s"] > 0, name
        assert variant["peak_rss_bytes"] > 0, name
    for key in (
        "trivial_events_per_s",
        "naive_events_per_s",
        "worker_events_per_s",
        "two_workers_events_per_s",
    ):
        assert results[key] > 0, key

    # Ratios are the quotients of the rates (both rounded in the JSON).
    worker = results["worker_events_per_s"]
    assert results["ratio_vs_trivial"] == pytest.approx(
        worker / results["trivial_events_per_s"], rel=1e-3
    )
    # The reference is Faust's trivial agent as configured by default: the same quotient.
    assert results["ratio_vs_trivial_default"] == results["ratio_vs_trivial"]
    assert results["ratio_vs_naive"] == pytest.approx(
        worker / results["naive_events_per_s"], rel=1e-3
    )
    assert results["two_workers_speedup"] == pytest.approx(
        results["two_workers_events_per_s"] / worker, rel=1e-3
    )

    # Latency: every event of the paced run measured, quantiles ordered.
    assert results["latency_events"] > 0
    assert 0 < results["p50_latency_s"] <= results["p99_latency_s"] <= results["max_latency_s"]
    assert results["variants"]["latency"]["latency"]["n"] == results["latency_events"]
    # ... and on two worker processes sharing the partitions, merged from both (a rebalance
    # could make one event count twice, never zero times).
    two_live = results["variants"]["latency_two_workers"]
    assert two_live["exact"] is True
    assert len(two_live["per_process"]) == 2
    assert two_live["latency"]["n"] >= two_live["events"] > 0
    assert sum(row[1] for row in two_live["latency_by_second"]) == two_live["latency"]["n"]
    assert 0 < results["two_workers_p50_latency_s"] <= results["two_workers_p99_latency_s"]
    assert results["two_workers_p99_latency_s"] == two_live["latency"]["p99"]

    # The latency curve: the run at the rate and one at twice it, each exact, quantiles ordered.
    curve = results["latency_curve"]
    assert [point["asked_events_per_s"] for point in curve] == [1000, 2000]
    assert curve[0]["p99_s"] == results["p99_latency_s"]
    assert results["variants"]["latency_x2"]["latency"]["p99"] == curve[1]["p99_s"]
    for point in curve:
        assert point["exact"] is True
        assert point["carried_events_per_s"] > 0 and point["events"] > 0
        assert 0 < point["p50_s"] <= point["p99_s"] <= point["max_s"]

    # Where the time goes: py-spy ran on the worker and on the trivial agent (whole shares).
    summary = results["profile_summary"]
    assert set(summary) == {"worker", "trivial"}
    for mode, profile in summary.items():
        assert profile["samples"] > 0, mode
        assert 99 <= sum(profile["self_time_by_area_pct"].values()) <= 101, mode
    assert "storepulse worker (streams/)" in summary["worker"]["self_time_by_area_pct"]
    assert Path(results["profile_trivial"]["raw_stacks"]).exists()

    # Cores: what each part used while two workers ran, and what saturates.
    used = results["two_workers_cores_used"]
    assert used["agents"] > 0 and used["total"] >= used["agents"]
    assert results["two_workers_saturation"]

    # The worker's cost figures are there; Redis ran the worker's script.
    assert results["worker_cpu_s"] > 0
    assert results["worker_peak_rss_bytes"] > 0
    assert results["redis_us_per_event"] > 0
    assert set(results["targets"]) == {
        "ratio_vs_trivial_default",
        "ratio_vs_naive",
        "p99_latency_s",
        "exact",
        "exporter_p99_s",
        "exporter_errors",
        "exporter_worker_p99_latency_s",
        "worker_facts_ratio",
        "worker_sessions_ratio",
        # two workers >= 1.8 x one only where the machine has the cores (4 or more)
        *(["two_workers_speedup"] if (os.cpu_count() or 1) >= 4 else []),
    }
    # Session end detection's row: the worker without it, in the same run; the worker's check
    # compared the ended sessions and carts of the minutes the watermarks passed with the
    # generator's (the 3,000 events span 55 minutes of event time: the first 25 end).
    assert results["worker_sessions_ratio"] == pytest.approx(
        worker / results["worker_no_sessions_events_per_s"], rel=1e-3
    )
    ended = results["variants"]["worker"]["check"]["ended"]
    assert ended["expected"] == ended["stored"] and ended["stored"]["ended"] > 100
    assert ended["stored"]["abandoned"] > 0
    assert results["ended_sessions"] == ended["stored"]["ended"]
    assert "session end detection" in result.stdout
    assert "ended" not in results["variants"]["worker_no_sessions"]["check"]

    # The customer stage's rows: the worker's facts all applied by the customer stage, whose
    # daily report equals the generator's customer days; both stages at once, exact too.
    variants = results["variants"]
    assert results["customer_facts"] == variants["customers"]["events"] > 0
    assert variants["customers"]["check"]["applied"] == results["customer_facts"]
    assert variants["customers"]["check"]["days"] >= 1
    assert variants["both_stages"]["check"]["customers"]["applied"] == results["customer_facts"]
    assert results["worker_facts_ratio"] == pytest.approx(
        worker / results["worker_no_facts_events_per_s"], rel=1e-3
    )
    assert [len(p) for p in (variants["both_stages"]["per_process"],)] == [2]
    assert "customer stage" in result.stdout and "facts/s" in result.stdout

    # The exporter under load: 10 clients on both paths, every request answered 200, while
    # the worker carried the feed exactly.
    assert "exporter under load: 10 keep-alive clients" in result.stdout
    assert results["exporter_clients"] == 10
    assert results["exporter_errors"] == 0
    for name in ("metrics", "kpis"):
        assert results[f"exporter_{name}_requests_per_s"] > 0, name
        assert (
            0
            < results[f"exporter_{name}_p50_s"]
            <= results[f"exporter_{name}_p99_s"]
            <= results[f"exporter_{name}_max_s"]
        ), name
    load = results["exporter_load"]
    assert load["paths"]["/metrics"]["statuses"] == {"200": load["paths"]["/metrics"]["requests"]}
    assert results["exporter_p99_s"] == max(
        results["exporter_metrics_p99_s"], results["exporter_kpis_p99_s"]
    )
    assert results["exporter_requests_per_s"] == pytest.approx(
        results["exporter_metrics_requests_per_s"] + results["exporter_kpis_requests_per_s"],
        abs=0.2,
    )
    assert results["exporter_cpu_us_per_request"] > 0
    exporter_run = results["variants"]["exporter_load"]
    assert exporter_run["exact"] is True
    assert results["exporter_worker_p99_latency_s"] == exporter_run["latency"]["p99"] > 0
    assert results["exporter_worker_max_lag_messages"] >= 0
    assert results["exporter_feed_events_per_s"] > 0

    # Two worker processes ran, and between them saw every message at least once.
    two = results["variants"]["two_workers"]["per_process"]
    assert len(two) == 2
    assert sum(p["count"] for p in two) >= 3000

    # The private stack and every variant were stopped: no pid file is left behind.
    (kept,) = tmp_path.glob("storepulse-bench-*")
    assert not list(kept.rglob("*.pid"))


@pytest.mark.slow
def test_customer_state_tiny_run_measures_memory_and_the_report(tmp_path: Path) -> None:
    run = run_mode(
        tmp_path,
        tmp_path / "state.json",
        ["--customer-state", "--state-customers", "600", "--state-days", "4"],
        timeout=180,
    )
    assert "Redis bytes per customer" in run["stdout"]
    results = run["results"]
    assert results["customer_state_customers"] == 600
    # Every customer is active on 1 to 3 of the days and orders on the first of them; the
    # daily report (read back from Redis) counts each one new exactly once.
    assert 600 <= results["customer_state_active_customer_days"] <= 1_800
    assert 600 <= results["customer_state_orders"] <= 1_200
    assert results["customer_state_new_customers"] == 600
    assert results["customer_state_report_rows"] == 4
    for key in ("redis_bytes_per_active_customer_day", "redis_bytes_per_customer"):
        assert 10 < results[key] < 100_000, key
    assert 0 < results["customers_report_day_30d_s"] <= results["customers_report_day_30d_max_s"]
    assert set(results["targets"]) == {"customers_report_day_30d_s"}
    assert not list(tmp_path.glob("storepulse-bench-*"))  # the private stack's dir is gone


@pytest.mark.slow
def test_account_state_tiny_run_measures_memory_and_the_reports(tmp_path: Path) -> None:
    run = run_mode(
        tmp_path,
        tmp_path / "accounts.json",
        ["--account-state", "--state-accounts", "300", "--state-days", "3"],
        timeout=240,
    )
    assert "Redis bytes per account" in run["stdout"]
    results = run["results"]
    # The bench checks the report's active accounts, orders and sessions against what it
    # wrote (it fails otherwise); here: that it measured them.
    assert results["account_state_accounts"] == 300
    assert results["account_state_days_written"] == 33
    assert results["account_state_orders"] > 0 and results["account_state_sessions"] > 0
    assert 100 < results["redis_bytes_per_account"] < 1_000_000
    assert 0 < results["accounts_api_top_30d_s"] <= results["accounts_api_top_30d_max_s"]
    assert set(results["targets"]) == {"accounts_api_top_30d_s"}
    assert not list(tmp_path.glob("storepulse-bench-*"))


@pytest.mark.slow
def test_session_script_tiny_run_is_exact_and_alternated(tmp_path: Path) -> None:
    run = run_mode(
        tmp_path,
        tmp_path / "script.json",
        ["--session-script", "--events", "3000", "--script-reps", "2"],
        timeout=240,
    )
    assert "session end detection" in run["stdout"]
    results = run["results"]
    # Each run was checked against the generator's totals and ended sessions (the bench fails
    # otherwise); here: alternated, one script call per partition batch in each, the lowest.
    runs = results["session_script_runs"]
    assert [r["session_figures"] for r in runs] == [True, False, True, False]
    assert len({r["calls"] for r in runs}) == 1 and runs[0]["calls"] >= 6
    with_ = min(r["us_per_event"] for r in runs if r["session_figures"])
    without = min(r["us_per_event"] for r in runs if not r["session_figures"])
    assert results["session_script_us_per_event"] == with_ > 0
    assert results["session_end_script_us_per_event"] == round(with_ - without, 2)
    assert results["events"] == 3000 and results["targets"] == {}
    assert results["redis_version"].split(".")[0].isdigit()
    assert not list(tmp_path.glob("storepulse-bench-*"))
