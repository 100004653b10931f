"""Firing periods from Prometheus' ALERTS points: runs of points at most a step apart."""

from __future__ import annotations

from streams.exporter.history import firing_periods


def test_points_a_step_apart_are_one_period_and_a_gap_starts_another() -> None:
    points = [[t, 1.0] for t in (100, 115, 130, 145, 190, 205, 400)]
    assert firing_periods(points, 15) == [[100, 145], [190, 205], [400, 400]]
    assert firing_periods([], 15) == []
