"""The backtest's figures as a readable table, and the targets it is held to."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storepulse.backtest.score import MIN_EXPOSED

__all__ = ["MAX_MEDIAN_TTD_S", "failures", "misses", "table"]

MAX_MEDIAN_TTD_S = 300.0  # issue 14: median time to detect at most 5 minutes


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _offset(seconds: float) -> str:
    """An offset from the start as day and time: "day 2 07:51"."""
    day, rest = divmod(int(seconds), 86_400)
    return f"day {day + 1} {rest // 3_600:02d}:{rest % 3_600 // 60:02d}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def failures(result: Mapping[str, Any]) -> list[str]:
    """What `--check` (CI) fails on: a missed strong incident, a false page. Empty if none."""
    out = []
    if result["strong_detected"] < result["strong_incidents"]:
        out.append(
            f"{result['strong_incidents'] - result['strong_detected']} strong incident(s) missed"
        )
    if result["false_pages"]:
        out.append(f"{result['false_pages']} false page(s)")
    return out


def misses(result: Mapping[str, Any]) -> list[str]:
    """The targets a result falls short of: every strong incident detected, no false page,
    median time to detect at most 5 minutes. Empty when it meets them all."""
    out = failures(result)
    median = result["median_time_to_detect_s"]
    if median is not None and median > MAX_MEDIAN_TTD_S:
        out.append(
            f"median time to detect {_duration(median)} (target {_duration(MAX_MEDIAN_TTD_S)})"
        )
    return out


def table(result: Mapping[str, Any]) -> str:
    """The figures of `storepulse backtest --json`, as text."""
    noise: dict[str, int] = {}
    for item in result["noise"]:
        noise[item["kind"]] = noise.get(item["kind"], 0) + 1
    lines = [
        f"storepulse backtest: {result['days']:g} days at {result['rate']:g} events/s, seed "
        f"{result['seed']}, evaluated every {result['step_s']}s; {result['incidents']} incidents "
        f"({result['strong_incidents']} strong), noise: "
        + (", ".join(f"{n} {k}" for k, n in sorted(noise.items())) or "none"),
        "",
    ]
    head = (
        "alert",
        "incidents",
        "detected",
        "strong",
        "median TTD",
        "max TTD",
        "false/day",
        "pages",
        "precision",
        "recall",
    )
    rows = [head]
    named = [*result["per_alert"].items(), ("all KPI alerts", result)]
    for name, f in named:
        rows.append(
            (
                name,
                str(f["incidents"]),
                str(f["detected"]),
                f"{f['strong_detected']}/{f['strong_incidents']}",
                _duration(f["median_time_to_detect_s"]),
                _duration(f["max_time_to_detect_s"]),
                f"{f['false_pages_per_day']:g}",
                str(f["pages"]),
                _share(f["precision"]),
                _share(f["recall"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for row in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    lines += ["", "incidents (day and time from the start):"]
    for item in result["incident_list"]:
        where = f" at {item['step']}" if item["step"] else ""
        found = ", ".join(
            f"{a} {_duration(s)}"
            for a, s in sorted(item["detected_by"].items(), key=lambda kv: kv[1])
        )
        verdict = (
            f"detected in {_duration(item['time_to_detect_s'])} ({found})"
            if item["detected"]
            else "not detected"
        )
        if not item["strong"]:
            size = "weak"
        elif item["exposed_sessions"] < MIN_EXPOSED:
            size = "strong but too small to tell"
        else:
            size = "strong"
        lines.append(
            f"  {_offset(item['start_offset_s'])} {item['kind']}{where}, strength "
            f"{item['strength']:g} ({size}), {_duration(item['duration_s'])}, "
            f"{item['exposed_sessions']:,} sessions exposed: {verdict}"
        )
    lines.append("")
    if result["false_page_list"]:
        lines.append("false pages:")
        for page in result["false_page_list"]:
            labels = ", ".join(f"{k}={v}" for k, v in page["labels"].items())
            lines.append(f"  {_offset(page['start_offset_s'])} {page['alert']} ({labels})")
    else:
        lines.append("false pages: none")
    missed = misses(result)
    lines.append("targets: " + ("met" if not missed else "missed: " + "; ".join(missed)))
    return "\n".join(lines) + "\n"
