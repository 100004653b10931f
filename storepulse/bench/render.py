"""The human-readable summary of a bench run."""

from __future__ import annotations

from typing import Any

__all__ = ["fmt_rate", "render_table"]


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


_LABELS = {
    "trivial": "trivial agent (async for, json)",
    "trivial_batch": "trivial agent (take_events)",
    "naive": "naive (1 awaited HINCRBY/event)",
    "worker": "worker (exact)",
    "worker_no_facts": "worker without customer facts",
    "worker_no_sessions": "worker without session figures",
    "customers": "customer stage (facts)",
    "both_stages": "both stages (events in, facts out)",
    "two_workers": "2 workers (exact)",
    "latency": "worker at fixed load",
    "latency_trivial": "trivial take_events at fixed load",
    "latency_two_workers": "2 workers at fixed load",
    "latency_x2": "worker at 2x the load",
    "latency_x4": "worker at 4x the load",
    "exporter_load": "worker while clients load exporter",
    "profile": "worker under py-spy",
    "profile_trivial": "trivial agent under py-spy",
}


def _exporter_lines(results: dict[str, Any]) -> list[str]:
    pace = (
        f"one request every {results['exporter_interval_s']:g} s each"
        if results["exporter_interval_s"]
        else "each as fast as answered"
    )
    lines = [
        f"exporter under load: {results['exporter_clients']} keep-alive clients for "
        f"{results['exporter_seconds']:g} s ({pace}) while the worker carried "
        f"{results['exporter_feed_events_per_s'] or 0:,.0f} events/s",
        f"  {'path':<24}{'requests/s':>11}{'p50':>9}{'p99':>9}{'max':>9}",
    ]
    for name, path in (("metrics", "/metrics"), ("kpis", "/api/kpis?window=15m")):
        lines.append(
            f"  {path:<24}{results[f'exporter_{name}_requests_per_s']:>11,.0f}"
            f"{results[f'exporter_{name}_p50_s'] * 1000:>7.1f}ms"
            f"{results[f'exporter_{name}_p99_s'] * 1000:>7.1f}ms"
            f"{results[f'exporter_{name}_max_s'] * 1000:>7.1f}ms"
        )
    lines.append(
        f"  {results['exporter_errors']} errors; exporter CPU "
        f"{results['exporter_cpu_us_per_request'] or 0:,.0f} µs/request "
        f"({results['exporter_cpu_cores'] or 0:.2f} cores); worker meanwhile: p99 latency "
        f"{results['exporter_worker_p99_latency_s'] or 0:.3f} s, consumer lag at most "
        f"{results['exporter_worker_max_lag_messages'] or 0:,} messages (before the clients: "
        f"{results.get('exporter_worker_max_lag_before_messages') or 0:,})"
    )
    return lines


def _target_lines(results: dict[str, Any]) -> list[str]:
    lines = ["", "targets:"]
    for key, t in results["targets"].items():
        status = "met" if t["met"] else "MISSED"
        miss = ""
        if not t["met"] and "missed_by" in t:
            miss = f" by {t['missed_by']:g} ({t['missed_by_pct']:g}%)"
        lines.append(f"  {key:<30} {t['target']:<8} value {t['value']!s:<10} {status}{miss}")
    return lines


def _customer_state_lines(r: dict[str, Any]) -> list[str]:
    return [
        f"storepulse bench --customer-state: {r['customer_state_customers']:,} customers over "
        f"{r['customer_state_days']} days ({r['customer_state_active_customer_days']:,} active "
        f"customer-days, {r['customer_state_orders']:,} orders, "
        f"{r['customer_state_partitions']} customer partitions), {r['cores']} cores "
        f"({r['cpu_model']})",
        "",
        f"Redis bytes per active customer-day   {r['redis_bytes_per_active_customer_day']:,.0f}",
        f"Redis bytes per customer              {r['redis_bytes_per_customer']:,.0f} "
        f"({r['redis_bytes_per_order']:,.0f} per order)",
        f"Redis memory in all                   {r['redis_used_memory_mb']:,.1f} MB "
        f"({r['customer_state_keys']:,} keys)",
        f"written at                            "
        f"{fmt_rate(r['customer_state_activity_facts_per_s'])} activity facts/s, "
        f"{fmt_rate(r['customer_state_order_facts_per_s'])} order facts/s",
        f"customers report --period day, 30 days: {r['customers_report_day_30d_s'] * 1000:.1f} ms "
        f"(max {r['customers_report_day_30d_max_s'] * 1000:.1f} ms of 5; the whole command "
        f"{r['customers_report_cli_s']:.2f} s)",
        "customers cohorts --period day, 30 days: "
        f"{r['customers_cohorts_day_30d_s'] * 1000:.1f} ms; report --period hour, 30 days: "
        f"{r['customers_report_hour_30d_s'] * 1000:.1f} ms",
    ]


def _account_state_lines(r: dict[str, Any]) -> list[str]:
    ms = {k: r[k] * 1000 for k in r if k.startswith("accounts_") and k.endswith("_s")}
    return [
        f"storepulse bench --account-state: {r['account_state_accounts']:,} accounts, the last "
        f"{r['account_state_days']} days of {r['account_state_days_written']} "
        f"({r['account_state_facts']:,} facts; in the range {r['account_state_sessions']:,} "
        f"sessions, {r['account_state_orders']:,} orders, {r['account_state_at_risk']:,} at "
        f"risk), {r['account_state_partitions']} customer partitions, {r['cores']} cores "
        f"({r['cpu_model']}), load {r['load_average']}",
        "",
        f"Redis bytes per account               {r['redis_bytes_per_account']:,.0f} "
        f"({r['redis_bytes_per_account_fact']:,.0f} per fact; customer stage included)",
        f"written at                            {fmt_rate(r['account_state_facts_per_s'])} facts/s",
        f"top 20 by revenue, 30 days: /api/accounts {ms['accounts_api_top_30d_s']:.0f} ms "
        f"(max {ms['accounts_api_top_30d_max_s']:.0f} ms of 5), the query "
        f"{ms['accounts_report_top_30d_s']:.0f} ms, the whole command "
        f"{r['accounts_report_cli_s']:.2f} s",
        f"by sessions {ms['accounts_report_sessions_30d_s']:.0f} ms, at risk "
        f"{ms['accounts_report_at_risk_30d_s']:.0f} ms, one tier "
        f"{ms['accounts_report_tier_30d_s']:.0f} ms, reps {ms['accounts_reps_30d_s']:.0f} ms",
    ]


def render_table(results: dict[str, Any]) -> str:
    """The human-readable summary printed by `storepulse bench`."""
    if "account_state_accounts" in results:  # --account-state
        lines = [*_account_state_lines(results), *_target_lines(results)]
        return "\n".join([*lines, f"\nbench took {results['bench_seconds']:.0f} s"])
    if "session_script_runs" in results:  # --session-script
        lines = [
            f"storepulse bench --session-script: {results['events']:,} events, "
            f"{results['cores']} cores ({results['cpu_model']}), load {results['load_average']}",
            "",
            *(
                f"{r['name']:<24} {r['us_per_event']:>6.2f} µs per event "
                f"({r['script_seconds']:.2f} s, {r['calls']:,} calls)"
                for r in results["session_script_runs"]
            ),
            "",
            f"session end detection     {results['session_end_script_us_per_event']:.2f} µs of "
            f"Redis per event (lowest with {results['session_script_us_per_event']:.2f}, "
            f"without {results['no_sessions_script_us_per_event']:.2f})",
        ]
        return "\n".join([*lines, f"\nbench took {results['bench_seconds']:.0f} s"])
    if "customer_state_customers" in results:  # --customer-state
        lines = [*_customer_state_lines(results), *_target_lines(results)]
        return "\n".join([*lines, f"\nbench took {results['bench_seconds']:.0f} s"])
    if "worker_events_per_s" not in results:  # --exporter-only
        lines = [
            f"storepulse bench --exporter-only: {results['partitions']} partitions, "
            f"{results['cores']} cores ({results['cpu_model']}), "
            f"{results.get('event_loop', 'asyncio')} event loop",
            "",
            *_exporter_lines(results),
            *_target_lines(results),
            f"\nbench took {results['bench_seconds']:.0f} s",
        ]
        return "\n".join(lines)
    lines = [
        f"storepulse bench: {results['events']:,} preloaded events, {results['partitions']} "
        f"partitions, {results['cores']} cores ({results['cpu_model']}), batch "
        f"{results['batch_size']:,} / {results['batch_seconds'] * 1000:g} ms, "
        f"{results.get('event_loop', 'asyncio')} event loop",
        "",
        f"{'variant':<34}{'events/s':>10}{'seconds':>9}{'CPU µs/ev':>11}"
        f"{'peak RSS':>10}{'Redis µs/ev':>13}{'exact':>7}",
    ]
    for name, v in results["variants"].items():
        rss = f"{v['peak_rss_bytes'] / 2**20:.0f} MB"
        redis_us = f"{v['redis_us_per_event']:.1f}" if v["redis_us_per_event"] else "-"
        lines.append(
            f"{_LABELS.get(name, name):<34}{fmt_rate(v['events_per_s']):>10}"
            f"{v['seconds']:>9.2f}{v['cpu_us_per_event']:>11.1f}{rss:>10}{redis_us:>13}"
            f"{'yes' if v['exact'] else 'NO':>7}"
        )
    lines.append("")
    line = f"worker / trivial (Faust as configured by default)  {results['ratio_vs_trivial']:.2f}"
    if "ratio_vs_trivial_batch" in results:
        line += f"   (worker / trivial take_events {results['ratio_vs_trivial_batch']:.2f})"
    lines.append(line)
    lines.append(f"worker / naive            {results['ratio_vs_naive']:.2f}")
    lines.append(
        f"2 workers / 1 worker      {results['two_workers_speedup']:.2f}   (saturates: "
        f"{results['two_workers_saturation']})"
    )
    if "worker_sessions_ratio" in results:
        lines.append(
            f"worker / without sessions {results['worker_sessions_ratio']:.2f}   (session end "
            f"detection: {results['session_end_redis_us_per_event']:.1f} µs Redis, "
            f"{results['session_end_cpu_us_per_event']:.1f} µs worker CPU per event; "
            f"{results['ended_sessions']:,} sessions ended)"
        )
    if "worker_facts_ratio" in results:
        lines.append(
            f"worker / without facts   {results['worker_facts_ratio']:.2f}   "
            f"({results['customer_facts']:,} customer facts, "
            f"{results['customer_facts_per_event']:.3f} per event)"
        )
        lines.append(
            f"customer stage            {fmt_rate(results['customers_facts_per_s'])} facts/s "
            f"({results['customers_cpu_us_per_fact']:.0f} µs CPU, "
            f"{results['customers_redis_us_per_fact']:.1f} µs Redis per fact); both stages "
            f"at once {fmt_rate(results['both_stages_events_per_s'])} events/s end to end"
        )
    lines.append(
        f"latency at {results['latency_offered_events_per_s'] or 0:,.0f} events/s offered "
        f"({results['latency_events']:,} events): p50 {results['p50_latency_s'] or 0:.3f} s, "
        f"p99 {results['p99_latency_s'] or 0:.3f} s, p99.9 {results['p999_latency_s'] or 0:.3f} s, "
        f"max {results['max_latency_s'] or 0:.3f} s"
    )
    if len(results.get("latency_curve") or []) > 1:
        lines.append("  latency curve (offered -> carried events/s, p50, p99):")
        for point in results["latency_curve"]:
            kept = "" if point["generator_kept_up"] else "  (the generator fell behind)"
            lines.append(
                f"    {point['offered_events_per_s'] or 0:>8,.0f} -> "
                f"{point['carried_events_per_s']:>8,.0f}   p50 {point['p50_s'] or 0:.3f} s, "
                f"p99 {point['p99_s'] or 0:.3f} s{kept}"
            )
    if results.get("two_workers_p99_latency_s") is not None:
        lines.append(
            "  two worker processes at the same load: "
            f"p50 {results['two_workers_p50_latency_s']:.3f} s, "
            f"p99 {results['two_workers_p99_latency_s']:.3f} s"
        )
    if results.get("trivial_p99_latency_s") is not None:
        lines.append(
            "  floor set by Faust and the broker (trivial take_events agent, same load): "
            f"p50 {results['trivial_p50_latency_s']:.3f} s, "
            f"p99 {results['trivial_p99_latency_s']:.3f} s"
        )
    lines.append(
        f"worker cost: {results['worker_cpu_s']:.1f} CPU s for {results['events']:,} events "
        f"({results['worker_cpu_us_per_event']:.0f} µs/event; trivial agent "
        f"{results['trivial_cpu_us_per_event']:.0f}), peak RSS {results['worker_peak_rss_mb']:.0f} "
        f"MB, Redis script time {results['redis_us_per_event']:.1f} µs/event "
        f"({results['redis_commands_per_event']:.1f} commands/event; redis-server CPU "
        f"{results['redis_cpu_us_per_event']:.1f} µs/event)"
    )
    if "exporter_clients" in results:
        lines += _exporter_lines(results)
    if results["other_load_cores_max"] >= 0.2:
        lines.append(
            f"warning: other processes used up to {results['other_load_cores_max']:.1f} cores "
            "during the run; rates are lower than on an idle machine"
        )
    lines += _target_lines(results)
    for key in ("profile", "profile_trivial"):
        if results.get(key):
            lines.append("")
            lines.append(results[key]["text"])
    lines.append(f"\nbench took {results['bench_seconds']:.0f} s")
    return "\n".join(lines)
