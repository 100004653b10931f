"""What a bench run is asked for, the keys its results always have, and its targets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CUSTOMER_KEYS",
    "EXPORTER_KEYS",
    "LATENCY_METHOD",
    "REQUIRED_KEYS",
    "TARGETS",
    "BenchError",
    "BenchOptions",
]

# The keys bench-results.json always has (issue 6), on top of the detail.
REQUIRED_KEYS = (
    "cores",
    "events",
    "trivial_events_per_s",
    "naive_events_per_s",
    "worker_events_per_s",
    "ratio_vs_trivial",
    "ratio_vs_naive",
    "two_workers_events_per_s",
    "p50_latency_s",
    "p99_latency_s",
    "exact",
    # issue 15: against the trivial agent as configured by default (the unchanged reference),
    # the latency at 1x, 2x and 4x the offered load, where the time goes.
    "ratio_vs_trivial_default",
    "latency_curve",
    "profile_summary",
)

# Targets on the 2-core reference machine: (comparison, threshold).
TARGETS: dict[str, tuple[str, float]] = {
    # issue 15 (was >= 0.9 when the worker ran on Faust's per-message path).
    "ratio_vs_trivial_default": (">=", 1.5),
    "ratio_vs_naive": (">=", 2.0),
    "p99_latency_s": ("<", 1.0),
    # The session worker publishing customer facts keeps 90 % of its throughput without them
    # (issue 11), both measured in the same run.
    "worker_facts_ratio": (">=", 0.9),
    # ... and ending sessions in event time keeps 90 % of its throughput without it (issue 13).
    "worker_sessions_ratio": (">=", 0.9),
    # Only where the machine has the cores for two workers, Redis and the broker (>= 4).
    "two_workers_speedup": (">=", 1.8),
    # 50 clients on /metrics and /api/kpis while the worker runs (issue 10): answers within
    # 100 ms, and the worker keeps its latency target meanwhile.
    "exporter_p99_s": ("<", 0.1),
    "exporter_worker_p99_latency_s": ("<", 1.0),
    # `storepulse customers report --period day` over 30 days with 1M customers: the query
    # (what /api/customers runs) well under a second (issue 11).
    "customers_report_day_30d_s": ("<", 0.5),
    # Top-N accounts over 30 days with 100,000 accounts from /api/accounts: well under a
    # second (issue 12).
    "accounts_api_top_30d_s": ("<", 0.5),
}

# The keys of the customer stage's rows, when they ran.
CUSTOMER_KEYS = (
    "worker_no_facts_events_per_s",
    "worker_facts_ratio",
    "customer_facts",
    "customers_facts_per_s",
    "both_stages_events_per_s",
)

# The keys of the exporter run (`exporter_*`), when it ran.
EXPORTER_KEYS = (
    "exporter_clients",
    "exporter_requests_per_s",
    "exporter_errors",
    "exporter_p99_s",
    "exporter_metrics_requests_per_s",
    "exporter_metrics_p50_s",
    "exporter_metrics_p99_s",
    "exporter_metrics_max_s",
    "exporter_kpis_requests_per_s",
    "exporter_kpis_p50_s",
    "exporter_kpis_p99_s",
    "exporter_kpis_max_s",
    "exporter_worker_p99_latency_s",
    "exporter_worker_max_lag_messages",
)

LATENCY_METHOD = (
    "every event of the paced run: acknowledgement time in the worker (the batch path "
    "acknowledges a partition's batch once its handler returned, i.e. after the batch's Lua call "
    "applied it; Faust acks a take_events batch right after the loop body) minus the Kafka "
    "record timestamp (set by the generator's producer when the event is appended, before its "
    "10 ms linger); exact nearest-rank quantiles over all events, 1 ms resolution"
)


class BenchError(RuntimeError):
    """A benchmark step failed; the message names it and shows the process log."""


@dataclass
class BenchOptions:
    events: int = 150_000
    partitions: int | None = None  # None: the settings' (STOREPULSE_PARTITIONS, default 6)
    latency_rate: float = 5_000.0
    latency_seconds: float = 20.0
    # The latency curve: more live runs at these multiples of latency_rate (issue 15: 2x, 4x).
    latency_multiples: tuple[float, ...] = (2.0, 4.0)
    seed: int = 7
    duplicate_share: float = 0.01
    invalid_share: float = 0.001
    output: Path = Path("bench-results.json")
    # py-spy runs of the worker and of the trivial agent (skipped, and said, without py-spy).
    profile: bool = True
    profile_output: Path = Path("bench-profile.txt")
    keep_dir: bool = False
    work_dir: Path | None = None
    trivial_batch: bool = True
    # The worker with and without session figures, alternated this many times: one pair on
    # this 2-core VM ranged 0.83-1.07 (other tenants' load); the ratio is best against best.
    session_pairs: int = 3
    # The customer stage's rows: the worker without facts, the customer stage, both stages.
    customer_stage: bool = True
    latency_baseline: bool = True
    latency_scale_out: bool = True
    # The exporter under load while the worker carries a live feed (exporter_* keys).
    exporter: bool = True
    exporter_only: bool = False  # only that run: a quick check of the exporter
    # Only the customer state measurement (Redis bytes per customer, the report's time).
    customer_state: bool = False
    state_customers: int = 1_000_000
    state_days: int = 30
    # Only the account state measurement (Redis bytes per account, the top-N report's time).
    account_state: bool = False
    # --session-script: the batch script alone, with and without session figures, this many
    # alternated runs each (Redis time per event; no broker, no worker).
    session_script: bool = False
    script_reps: int = 3
    state_accounts: int = 100_000
    exporter_clients: int = 50
    exporter_seconds: float = 15.0
    # Each client's pace: one request every 0.1 s (500 requests/s from 50 clients, far more
    # than Prometheus and a room of boards ask); 0: each as fast as it is answered.
    exporter_interval: float = 0.1
    exporter_feed_rate: float = 2_000.0  # events/s the worker carries meanwhile
    progress: Callable[[str], None] | None = None
