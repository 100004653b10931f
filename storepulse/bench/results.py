"""bench-results.json: every variant's figures, the ratios and the targets met or missed."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from storepulse.bench.measure import Variant
from storepulse.bench.options import LATENCY_METHOD, TARGETS
from storepulse.bench.runner import Bench
from storepulse.bench.serving import EXPORTER_PATHS
from storepulse.bench.sysinfo import cpu_model

__all__ = [
    "bench_results",
    "customer_state_only",
    "exporter_figures",
    "exporter_only_results",
    "latency_curve",
    "state_only",
]


def _target(key: str, value: float) -> dict[str, Any]:
    op, threshold = TARGETS[key]
    met = value >= threshold if op == ">=" else value < threshold
    out: dict[str, Any] = {"target": f"{op} {threshold:g}", "value": round(value, 4), "met": met}
    if not met:
        gap = threshold - value if op == ">=" else value - threshold
        out["missed_by"] = round(gap, 4)
        out["missed_by_pct"] = round(100 * gap / threshold, 1)
    return out


def exporter_figures(bench: Bench, variant: Variant) -> dict[str, Any]:
    """The exporter_* keys: the clients' figures per path, the exporter's cost, the worker."""
    load = bench.exporter_reports.get(variant.name, {})
    paths = load.get("paths", {})
    out: dict[str, Any] = {
        "exporter_clients": load.get("clients"),
        "exporter_seconds": load.get("seconds"),
        "exporter_interval_s": load.get("interval_s"),
        "exporter_requests_per_s": load.get("requests_per_s"),
        "exporter_errors": load.get("errors"),
    }
    p99s = []
    for name, path in EXPORTER_PATHS.items():
        figures = paths.get(path, {})
        p99s.append(float(figures.get("p99_s") or 0.0))
        for key in ("requests_per_s", "p50_s", "p99_s", "max_s"):
            out[f"exporter_{name}_{key}"] = figures.get(key)
    q = variant.latency or {}
    out |= {
        "exporter_p99_s": max(p99s),
        "exporter_cpu_us_per_request": load.get("exporter_cpu_us_per_request"),
        "exporter_cpu_cores": load.get("exporter_cpu_cores"),
        "exporter_feed_events_per_s": bench.live_reports.get(variant.name, {}).get("rate"),
        "exporter_worker_p50_latency_s": q.get("p50"),
        "exporter_worker_p99_latency_s": q.get("p99"),
        "exporter_worker_max_lag_messages": load.get("worker_lag_messages", {}).get("max"),
        # The same in the seconds before the clients started: what the machine alone costs.
        "exporter_worker_max_lag_before_messages": load.get("worker_lag_messages", {}).get(
            "before_max"
        ),
        "exporter_load": load,
    }
    return out


def _exporter_targets(figures: dict[str, Any]) -> dict[str, Any]:
    errors = int(figures["exporter_errors"] or 0)
    return {
        "exporter_p99_s": _target("exporter_p99_s", float(figures["exporter_p99_s"])),
        "exporter_errors": {"target": "0", "value": errors, "met": errors == 0},
        "exporter_worker_p99_latency_s": _target(
            "exporter_worker_p99_latency_s", float(figures["exporter_worker_p99_latency_s"] or 0)
        ),
    }


def exporter_only_results(bench: Bench, variant: Variant) -> dict[str, Any]:
    """`storepulse bench --exporter-only`: the exporter run alone, with the machine's keys."""
    assert bench.base is not None
    figures = exporter_figures(bench, variant)
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "partitions": bench.base.partitions,
        "event_loop": bench.base.event_loop,
        **figures,
        "exact": variant.exact,
        "other_load_cores_max": round(variant.other_load_cores, 2),
        "bench_seconds": round(time.monotonic() - bench.started, 1),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "targets": {
            **_exporter_targets(figures),
            "exact": {"target": "true", "value": variant.exact, "met": variant.exact},
        },
        "variants": {variant.name: variant.as_dict()},
    }


def _customer_figures(variants: dict[str, Variant]) -> dict[str, Any]:
    """The customer stage's keys: the facts' cost to the worker, facts/s, both stages."""
    w, bare = variants["worker"], variants["worker_no_facts"]
    c, both = variants["customers"], variants["both_stages"]
    return {
        "worker_no_facts_events_per_s": round(bare.events_per_s, 1),
        "worker_facts_ratio": round(w.events_per_s / bare.events_per_s, 4),
        "worker_no_facts_cpu_us_per_event": round(1e6 * bare.cpu_s / bare.events, 1),
        "customer_facts": c.events,
        "customer_facts_per_event": round(c.events / w.events, 4),
        "customers_facts_per_s": round(c.events_per_s, 1),
        "customers_cpu_us_per_fact": round(1e6 * c.cpu_s / max(c.events, 1), 1),
        "customers_redis_us_per_fact": round(c.redis_us / max(c.events, 1), 2),
        "customers_peak_rss_mb": round(c.peak_rss_bytes / 2**20, 1),
        "both_stages_events_per_s": round(both.events_per_s, 1),
        "both_stages_vs_worker": round(both.events_per_s / w.events_per_s, 4),
    }


def _session_figures(variants: dict[str, Variant]) -> dict[str, Any]:
    """Session end detection's cost: the worker with and without it, in the same run,
    alternated (worker_s2, worker_no_sessions_s2, ...); the best run of each is compared."""
    pairs = [(variants["worker"], variants["worker_no_sessions"])]
    k = 2
    while f"worker_s{k}" in variants:
        pairs.append((variants[f"worker_s{k}"], variants[f"worker_no_sessions_s{k}"]))
        k += 1
    w = max((pair[0] for pair in pairs), key=lambda v: v.events_per_s)
    bare = max((pair[1] for pair in pairs), key=lambda v: v.events_per_s)
    ended = w.check.get("ended", {}).get("stored", {}).get("ended", 0)
    return {
        "ended_sessions": ended,
        "worker_no_sessions_events_per_s": round(bare.events_per_s, 1),
        "worker_sessions_ratio": round(w.events_per_s / bare.events_per_s, 4),
        "worker_sessions_pairs": [
            {
                "events_per_s": round(a.events_per_s, 1),
                "no_sessions_events_per_s": round(b.events_per_s, 1),
                "ratio": round(a.events_per_s / b.events_per_s, 4),
                "redis_us_per_event": round(a.redis_us / a.events, 2),
                "no_sessions_redis_us_per_event": round(b.redis_us / b.events, 2),
            }
            for a, b in pairs
        ],
        "session_end_redis_us_per_event": round(
            w.redis_us / w.events - bare.redis_us / bare.events, 2
        ),
        "session_end_cpu_us_per_event": round(
            1e6 * (w.cpu_s / w.events - bare.cpu_s / bare.events), 1
        ),
        "worker_no_sessions_redis_us_per_event": round(bare.redis_us / bare.events, 2),
    }


def state_only(bench: Bench, figures: dict[str, Any], target: str | None) -> dict[str, Any]:
    """A state measurement's run (--customer-state, --account-state): its figures, its target
    and the machine's."""
    assert bench.base is not None
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "load_average": round(os.getloadavg()[0], 2),
        "redis_version": figures.pop("redis_version", None),
        **figures,
        "bench_seconds": round(time.monotonic() - bench.started, 1),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "targets": {} if target is None else {target: _target(target, figures[target])},
    }


def session_script_only(bench: Bench, figures: dict[str, Any]) -> dict[str, Any]:
    """`storepulse bench --session-script`: the script's Redis time per event with and without
    session figures, and the machine's. No target of its own: issue 13's is the worker's
    throughput (worker_sessions_ratio); this is where its cost is read steadily."""
    return state_only(bench, figures, None)


def customer_state_only(bench: Bench, figures: dict[str, Any]) -> dict[str, Any]:
    """`storepulse bench --customer-state`: the customer state's figures and the machine's."""
    return state_only(bench, figures, "customers_report_day_30d_s")


def latency_curve(bench: Bench, variants: dict[str, Variant]) -> list[dict[str, Any]]:
    """The worker's latency at 1x, 2x, 4x... the offered load: carried rate, p50, p99."""
    names = ["latency", *(f"latency_x{m:g}" for m in bench.opts.latency_multiples)]
    multiples = [1.0, *bench.opts.latency_multiples]
    curve = []
    for name, multiple in zip(names, multiples, strict=True):
        if name not in variants:
            continue
        v, report = variants[name], bench.live_reports.get(name, {})
        q = v.latency or {}
        curve.append(
            {
                "asked_events_per_s": bench.opts.latency_rate * multiple,
                "offered_events_per_s": report.get("rate"),
                "generator_kept_up": report.get("kept_up"),
                "carried_events_per_s": round(v.events_per_s, 1),
                "events": v.events,
                "p50_s": q.get("p50"),
                "p99_s": q.get("p99"),
                "max_s": q.get("max"),
                "cores_used": v.cores_used(),
                "exact": v.exact,
            }
        )
    return curve


def _saturation(cores: int, used: dict[str, float]) -> str:
    """What limits two workers on this machine, from the cores each part used."""
    parts = ", ".join(f"{k} {v:.2f}" for k, v in used.items() if k != "total")
    if used["total"] >= 0.85 * cores:
        return (
            f"the machine: {used['total']:.2f} of {cores} cores busy ({parts}); a second worker "
            "only shares the same cores"
        )
    return f"not the cores: {used['total']:.2f} of {cores} busy ({parts})"


def bench_results(
    bench: Bench,
    variants: dict[str, Variant],
    preload_s: float,
    profiles: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    assert bench.base is not None
    w, t, nv, two = (variants[k] for k in ("worker", "trivial", "naive", "two_workers"))
    lat = variants["latency"]
    q = lat.latency or {}
    report = bench.live_reports.get("latency", {})
    ratio_t = w.events_per_s / t.events_per_s
    ratio_n = w.events_per_s / nv.events_per_s
    cores = os.cpu_count() or 1
    results: dict[str, Any] = {
        "cores": cores,
        "cpu_model": cpu_model(),
        "events": bench.opts.events,
        "partitions": bench.base.partitions,
        "batch_size": bench.base.batch_size,
        "batch_seconds": bench.base.batch_seconds,
        "event_loop": bench.base.event_loop,
        "trivial_events_per_s": round(t.events_per_s, 1),
        "naive_events_per_s": round(nv.events_per_s, 1),
        "worker_events_per_s": round(w.events_per_s, 1),
        "ratio_vs_trivial": round(ratio_t, 4),
        # The same quotient, named for what the trivial agent is: Faust as configured by
        # default (decode only, default sensors and settings), the unchanged reference.
        "ratio_vs_trivial_default": round(ratio_t, 4),
        "ratio_vs_naive": round(ratio_n, 4),
        "two_workers_events_per_s": round(two.events_per_s, 1),
        "two_workers_speedup": round(two.events_per_s / w.events_per_s, 4),
        "worker_cores_used": w.cores_used(),
        "two_workers_cores_used": two.cores_used(),
        "two_workers_saturation": _saturation(cores, two.cores_used()),
        "p50_latency_s": q.get("p50"),
        "p99_latency_s": q.get("p99"),
        "p999_latency_s": q.get("p999"),
        "max_latency_s": q.get("max"),
        "latency_events": lat.events,
        "latency_offered_events_per_s": report.get("rate"),
        "latency_target_events_per_s": bench.opts.latency_rate,
        "latency_generator_kept_up": report.get("kept_up"),
        "latency_method": LATENCY_METHOD,
        "latency_by_second": lat.latency_by_second,
        "latency_curve": latency_curve(bench, variants),
        "worker_cpu_s": round(w.cpu_s, 3),
        "worker_cpu_us_per_event": round(1e6 * w.cpu_s / w.events, 1),
        "trivial_cpu_us_per_event": round(1e6 * t.cpu_s / t.events, 1),
        "worker_process_cpu_s": round(w.process_cpu_s, 2),
        "worker_peak_rss_bytes": w.peak_rss_bytes,
        "worker_peak_rss_mb": round(w.peak_rss_bytes / 2**20, 1),
        "redis_us_per_event": round(w.redis_us / w.events, 2),
        "redis_commands_per_event": round(w.redis_commands / w.events, 2),
        "redis_cpu_us_per_event": round(1e6 * w.redis_cpu_s / w.events, 2),
        "redis_cpu_s": round(w.redis_cpu_s, 2),
        "exact": all(v.exact for v in variants.values())
        and all(p["exact"] for p in profiles.values()),
        "other_load_cores_max": round(max(v.other_load_cores for v in variants.values()), 2),
        "preload_seconds": round(preload_s, 1),
        "bench_seconds": round(time.monotonic() - bench.started, 1),
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    if "latency_trivial" in variants:
        base_q = variants["latency_trivial"].latency or {}
        results["trivial_p50_latency_s"] = base_q.get("p50")
        results["trivial_p99_latency_s"] = base_q.get("p99")
    if "latency_two_workers" in variants:
        two_q = variants["latency_two_workers"].latency or {}
        results["two_workers_p50_latency_s"] = two_q.get("p50")
        results["two_workers_p99_latency_s"] = two_q.get("p99")
    if "customers" in variants:
        results |= _customer_figures(variants)
    if "worker_no_sessions" in variants:
        results |= _session_figures(variants)
    if "trivial_batch" in variants:
        tb = variants["trivial_batch"]
        results["trivial_batch_events_per_s"] = round(tb.events_per_s, 1)
        results["ratio_vs_trivial_batch"] = round(w.events_per_s / tb.events_per_s, 4)
    exporter = (
        exporter_figures(bench, variants["exporter_load"]) if "exporter_load" in variants else None
    )
    if exporter is not None:
        results |= exporter
    results["targets"] = {
        "ratio_vs_trivial_default": _target("ratio_vs_trivial_default", ratio_t),
        "ratio_vs_naive": _target("ratio_vs_naive", ratio_n),
        "p99_latency_s": _target("p99_latency_s", float(q.get("p99") or 0.0)),
        "exact": {"target": "true", "value": results["exact"], "met": results["exact"]},
    }
    if "customers" in variants:
        results["targets"]["worker_facts_ratio"] = _target(
            "worker_facts_ratio", results["worker_facts_ratio"]
        )
    if "worker_no_sessions" in variants:
        results["targets"]["worker_sessions_ratio"] = _target(
            "worker_sessions_ratio", results["worker_sessions_ratio"]
        )
    if cores >= 4:  # two workers, Redis and the broker each get a core
        results["targets"]["two_workers_speedup"] = _target(
            "two_workers_speedup", results["two_workers_speedup"]
        )
    if exporter is not None:
        results["targets"] |= _exporter_targets(exporter)
    results["variants"] = {k: v.as_dict() for k, v in variants.items()}
    results["profile"] = profiles.get("worker")
    results["profile_trivial"] = profiles.get("trivial")
    results["profile_summary"] = (
        {mode: _short(p) for mode, p in profiles.items()} if profiles else None
    )
    return results


def _short(profile: dict[str, Any]) -> dict[str, Any]:
    top = dict(list(profile["top_self_pct"].items())[:5])
    return {
        "samples": profile["samples"],
        "self_time_by_area_pct": profile["self_time_by_area_pct"],
        "top_self_pct": top,
        "events_per_s_under_profiler": profile["events_per_s_under_profiler"],
    }
