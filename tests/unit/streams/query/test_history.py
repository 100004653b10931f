"""The board's history over buckets: window sums, lines, thresholds and the segment table, against
sums written out here (issue 14: a 15-minute KPI at each point, the threshold from the baseline
of the same hour yesterday else the 6 h before the window, orders per minute over 5 minutes)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.query.history import Grid, history_step, kpi_charts, segment_rows
from streams.settings import Settings

SETTINGS = Settings(channels=("web", "app"), devices=("desktop", "mobile"), min_sample=20)
STAGES = SETTINGS.stages  # visit, cart, shipping, payment, review, purchase
B = 60
END = 1_800_000_000 // 3_600 * 3_600  # a whole hour


def put(grid: Grid, start: int, stage: str, channel: str, device: str, n: int) -> None:
    grid.add(("s", stage), start, n)
    grid.add(("s", stage, channel, device), start, n)


@given(
    st.lists(st.tuples(st.integers(0, 59), st.integers(0, 9)), max_size=40),
    st.integers(-5, 65),
    st.integers(-5, 65),
)
def test_a_grid_sums_the_buckets_of_a_range(cells: list[tuple[int, int]], a: int, b: int) -> None:
    grid = Grid(END - 3_600, END, B)
    for i, n in cells:
        grid.add(("o",), END - 3_600 + i * B, n)
    lo, hi = END - 3_600 + a * B, END - 3_600 + b * B
    want = sum(n for i, n in cells if lo <= END - 3_600 + i * B < hi)
    assert grid.sum(("o",), lo, hi) == want
    # A range not aligned to buckets takes the buckets starting inside it.
    assert grid.sum(("o",), lo - 30, hi - 30) == sum(
        n for i, n in cells if lo - 30 <= END - 3_600 + i * B < hi - 30
    )


def test_points_are_whole_buckets_and_at_most_360_a_line() -> None:
    assert history_step(3_600, 60) == 60
    assert history_step(21_600, 60) == 60
    assert history_step(86_400, 60) == 240
    assert history_step(3_600, 5) == 10
    assert 86_400 // history_step(86_400, 60) <= 360


def funnel(grid: Grid, start: int, seg: tuple[str, str], counts: dict[str, int]) -> None:
    for stage, n in counts.items():
        put(grid, start, stage, *seg, n)


NORMAL = {"visit": 100, "cart": 40, "shipping": 30, "payment": 24, "review": 20, "purchase": 10}
BROKEN = {"visit": 100, "cart": 40, "shipping": 30, "payment": 3, "review": 2, "purchase": 1}


def test_the_newest_point_is_the_windows_ratio_and_the_threshold_its_baselines() -> None:
    grid = Grid(END - 2 * 86_400, END, B)
    seg = ("web", "desktop")
    # Yesterday's hour around the window: abandonment 1 - 10/40 = 75 %. The 6 h before the
    # window: nothing. The window itself: payment broken for its last 5 minutes.
    for m in range(-50, 50):
        funnel(grid, END - 86_400 + m * 60, seg, NORMAL)
    for m in range(1, 16):
        funnel(grid, END - m * 60, seg, BROKEN if m <= 5 else NORMAL)
    charts = kpi_charts(grid, SETTINGS, [END])
    purchases = 10 * 10 + 5 * 1
    assert charts["cart_abandonment"]["points"] == [[END, 1 - purchases / (15 * 40)]]
    assert charts["conversion"]["points"] == [[END, purchases / (15 * 100)]]
    # Yesterday's hour: [END - 1 d - 37.5 min, END - 1 d + 22.5 min), whole buckets of it.
    assert charts["cart_abandonment"]["threshold"] == [[END, pytest.approx(1 - 10 / 40 + 0.10)]]
    assert charts["conversion"]["threshold"] == [[END, pytest.approx(0.7 * 10 / 100)]]
    payment = charts["dropoff"]["payment"]
    assert payment["points"] == [[END, 1 - (10 * 20 + 5 * 2) / (10 * 24 + 5 * 3)]]
    assert payment["threshold"] == [[END, pytest.approx(1 - 0.625 * (20 / 24))]]
    # Orders per minute: the purchases of the last 5 minutes / 5 (orders are not sessions:
    # none were added, so 0).
    assert charts["orders_per_minute"]["points"] == [[END, 0.0]]


def test_without_yesterday_the_6_hours_before_the_window_else_the_floor() -> None:
    grid = Grid(END - 2 * 86_400, END, B)
    seg = ("app", "mobile")
    for m in range(16, 60):  # 15 to 60 minutes ago: before the window
        funnel(grid, END - m * 60, seg, {**NORMAL, "purchase": 8})
    for m in range(1, 16):
        funnel(grid, END - m * 60, seg, NORMAL)
    charts = kpi_charts(grid, SETTINGS, [END, END - 4 * 3_600])
    assert charts["cart_abandonment"]["threshold"][0] == [END, pytest.approx(1 - 8 / 40 + 0.10)]
    # Four hours earlier: no data at all, no KPI, no threshold to draw.
    assert charts["cart_abandonment"]["threshold"][1] == [END - 4 * 3_600, None]
    only_now = Grid(END - 2 * 86_400, END, B)
    for m in range(1, 16):
        funnel(only_now, END - m * 60, seg, NORMAL)
    floors = kpi_charts(only_now, SETTINGS, [END])
    assert floors["cart_abandonment"]["threshold"] == [[END, 0.95]]
    assert floors["dropoff"]["cart"]["threshold"] == [[END, 0.80]]
    assert floors["conversion"]["threshold"] == [[END, 0.003]]


def test_segments_worst_first_by_the_way_to_their_thresholds() -> None:
    grid = Grid(END - 2 * 86_400, END, B)
    rng = random.Random(3)
    shares = {("web", "desktop"): 10, ("web", "mobile"): 6, ("app", "desktop"): 4}
    for seg, purchases in shares.items():
        for m in range(16, 120):
            funnel(grid, END - m * 60, seg, NORMAL)
        for m in range(1, 16):
            funnel(grid, END - m * 60, seg, {**NORMAL, "purchase": purchases})
    put(grid, END - 60, "visit", "app", "mobile", rng.randint(1, 5))  # too few to tell
    rows = segment_rows(grid, SETTINGS, END, [*shares, ("app", "mobile")])
    assert [(r["channel"], r["device"]) for r in rows] == [
        ("app", "desktop"),
        ("web", "mobile"),
        ("web", "desktop"),
        ("app", "mobile"),
    ]
    worst = rows[0]
    assert worst["abandonment"] == 1 - 4 / 40 and worst["abandonment_baseline"] == 0.75
    # Abandonment 15 points over its baseline (margin 10): 1.5; conversion 60 % down (margin
    # 30 % of the baseline): 2.0, the worse of the two.
    assert worst["score"] == round((0.10 - 0.04) / (0.10 * 0.3), 3)
    assert rows[2]["score"] == 0.0
    assert rows[3]["score"] is None and rows[3]["conversion"] is None
