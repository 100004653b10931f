"""The backtest's timeline as SVG: KPIs and thresholds, incidents and noise, every page."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["svg"]

_WIDTH = 1600
_LEFT, _RIGHT = 190, 20
_CHART_H, _LANE_H, _GAP = 150, 16, 26
_COLORS = {
    "abandonment-spike": "#d9480f",
    "checkout-outage": "#c92a2a",
    "conversion-drop": "#5f3dc4",
    "traffic-surge": "#adb5bd",
    "tracking-loss": "#868e96",
}
_ALERT_COLOR = "#e03131"


def _x(t: float, start: float, span: float) -> float:
    return _LEFT + (t - start) / span * (_WIDTH - _LEFT - _RIGHT)


def _polyline(
    points: Sequence[tuple[float, float]],
    start: float,
    span: float,
    top: float,
    high: float,
    color: str,
    dashed: bool = False,
) -> str:
    """One line; a gap of more than 5 minutes (no data: a ratio below the minimum sample)
    starts a new segment."""
    out, segment, last = [], [], None
    for t, v in points:
        if last is not None and t - last > 300 and segment:
            out.append(segment)
            segment = []
        y = top + _CHART_H - min(v, high) / high * _CHART_H
        segment.append(f"{_x(t, start, span):.1f},{y:.1f}")
        last = t
    if segment:
        out.append(segment)
    dash = ' stroke-dasharray="6 4"' if dashed else ""
    return "".join(
        f'<polyline fill="none" stroke="{color}" stroke-width="1.2"{dash} points="{" ".join(s)}"/>'
        for s in out
    )


def _axis(start: float, span: float, top: float, bottom: float) -> list[str]:
    out = []
    day = 0
    while day * 86_400 <= span:
        x = _x(start + day * 86_400, start, span)
        out.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#dee2e6"/>')
        if day * 86_400 < span:
            out.append(
                f'<text x="{x + 3:.1f}" y="{bottom + 14}" font-size="11">day {day + 1}</text>'
            )
        day += 1
    return out


def svg(
    result: Mapping[str, Any],
    timeline: Mapping[str, Mapping[str, Sequence[Any]]],
    start_s: float,
    pages: Sequence[Any],
) -> str:
    """The picture of one backtest (`storepulse backtest --picture FILE.svg`)."""
    span = result["days"] * 86_400.0
    alerts = list(result["per_alert"])
    charts = list(timeline.items())
    lanes = ["incidents", "noise", *alerts]
    height = 40 + len(charts) * (_CHART_H + _GAP) + len(lanes) * (_LANE_H + 6) + 40
    body: list[str] = [
        f'<text x="10" y="20" font-size="14" font-weight="bold">{escape(_title(result))}</text>'
    ]
    top = 40.0
    for name, lines in charts:
        values = [float(v) for _, v in lines["value"]]
        high = max([*values, *(float(v) for _, v in lines["threshold"]), 0.01]) * 1.05
        high = min(1.0, high) if high <= 1 else high
        body.append(
            f'<rect x="{_LEFT}" y="{top}" width="{_WIDTH - _LEFT - _RIGHT}" '
            f'height="{_CHART_H}" fill="#f8f9fa"/>'
        )
        body.append(f'<text x="10" y="{top + 14}" font-size="12">{escape(name)}</text>')
        body.append(
            f'<text x="10" y="{top + 30}" font-size="11" fill="{_ALERT_COLOR}">'
            "- - alert threshold</text>"
        )
        body.append(f'<text x="{_LEFT + 4}" y="{top + 11}" font-size="10">{high:.0%}</text>')
        body.append(
            f'<text x="{_LEFT - 6}" y="{top + _CHART_H}" font-size="10" text-anchor="end">0%</text>'
        )
        for item in [*result["incident_list"]]:
            x0 = _x(start_s + item["start_offset_s"], start_s, span)
            x1 = _x(start_s + item["start_offset_s"] + item["duration_s"], start_s, span)
            body.append(
                f'<rect x="{x0:.1f}" y="{top}" width="{max(1.0, x1 - x0):.1f}" '
                f'height="{_CHART_H}" fill="{_COLORS[item["kind"]]}" opacity="0.15"/>'
            )
        body.append(
            _polyline(
                [(float(t), float(v)) for t, v in lines["value"]],
                start_s,
                span,
                top,
                high,
                "#1c7ed6",
            )
        )
        body.append(
            _polyline(
                [(float(t), float(v)) for t, v in lines["threshold"]],
                start_s,
                span,
                top,
                high,
                _ALERT_COLOR,
                dashed=True,
            )
        )
        top += _CHART_H + _GAP
    lanes_top = top
    for i, lane in enumerate(lanes):
        y = top + i * (_LANE_H + 6)
        body.append(f'<text x="10" y="{y + 12}" font-size="12">{escape(lane)}</text>')
        body.append(
            f'<rect x="{_LEFT}" y="{y}" width="{_WIDTH - _LEFT - _RIGHT}" '
            f'height="{_LANE_H}" fill="#f1f3f5"/>'
        )
    for item in result["incident_list"]:
        body.append(
            _bar(
                start_s + item["start_offset_s"],
                item["duration_s"],
                start_s,
                span,
                top,
                _COLORS[item["kind"]],
                f"{item['kind']} {item['strength']:g}"
                f"{' at ' + item['step'] if item['step'] else ''}: "
                f"{'detected' if item['detected'] else 'not detected'}",
            )
        )
    for item in result["noise"]:
        body.append(
            _bar(
                start_s + item["start_offset_s"],
                item["duration_s"],
                start_s,
                span,
                top + _LANE_H + 6,
                _COLORS[item["kind"]],
                f"{item['kind']} {item['strength']:g}",
            )
        )
    for page in pages:
        lane = 2 + alerts.index(page.alert)
        labels = ", ".join(f"{k}={v}" for k, v in page.labels)
        body.append(
            _bar(
                page.start,
                max(30.0, page.end - page.start),
                start_s,
                span,
                top + lane * (_LANE_H + 6),
                _ALERT_COLOR,
                f"{page.alert} ({labels})",
            )
        )
    bottom = lanes_top + len(lanes) * (_LANE_H + 6)
    body = _axis(start_s, span, 40, bottom) + body
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_WIDTH}" height="{height:.0f}" '
        f'viewBox="0 0 {_WIDTH} {height:.0f}" font-family="sans-serif">'
        '<rect width="100%" height="100%" fill="white"/>' + "".join(body) + "</svg>\n"
    )


def _bar(
    t: float, duration: float, start: float, span: float, y: float, color: str, title: str
) -> str:
    x0 = _x(t, start, span)
    x1 = _x(t + duration, start, span)
    return (
        f'<rect x="{x0:.1f}" y="{y}" width="{max(1.5, x1 - x0):.1f}" height="{_LANE_H}" '
        f'fill="{color}"><title>{escape(title)}</title></rect>'
    )


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def _title(result: Mapping[str, Any]) -> str:
    return (
        f"storepulse backtest: {result['days']:g} days, seed {result['seed']}: "
        f"{result['strong_detected']}/{result['strong_incidents']} strong incidents detected, "
        f"median time to detect {_minutes(result['median_time_to_detect_s'])}, "
        f"{result['false_pages']} false pages"
    )
