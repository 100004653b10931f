"""The generator's traffic model drawn fast: funnel reaches per segment and scrape interval."""

from __future__ import annotations

import bisect
import math
import random
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from statistics import NormalDist

from producers.config import TrafficConfig
from producers.model import TrafficModel
from producers.scenarios import Timeline
from producers.shape import (
    BROWSE_EXTRA_PAGES,
    EXTRA_ITEMS,
    GEOMETRIC_CAP,
    MAX_GAP_S,
    ORDER_GAP,
    PAGE_GAP,
    PRE_CART_EXTRA_PAGES,
    STEP_GAP,
    SURGE_CART_FACTOR,
    SURGE_EXTRA_PAGES,
)
from streams.contract.funnel import funnel_stages

__all__ = ["WARMUP_S", "Simulation", "simulate"]

# Sessions begin before the first counted second, so the funnel is full from the start; their
# events before it are not counted (a tracker switched on mid-session), as in a paced generate.
WARMUP_S = 600
# Poisson counts above this mean are drawn from the normal approximation (error < 1 % of sd).
_NORMAL_ABOVE = 30.0
# Think times and prices are drawn from 4,096 quantiles of their log-normal distributions: an
# index instead of a gauss() (10x faster), within 0.03 % of the distribution in probability.
_TABLE = 4_096


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    if mean > _NORMAL_ABOVE:
        return max(0, round(rng.gauss(mean, math.sqrt(mean))))
    limit, n, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        n += 1
        product *= rng.random()
    return n


def _kept_share(loss: float, extra_pages: float, bounce: float) -> float:
    """Share of browsing sessions with at least one page sent: 1 - E[loss^pages], pages being
    1 (a bounce, with probability `bounce`) or else 1 + Geometric(extra_pages), as in the
    model."""
    if loss <= 0:
        return 1.0
    stay = extra_pages / (1.0 + extra_pages)
    browsing = loss * (1.0 - stay) / (1.0 - stay * loss)
    return 1.0 - bounce * loss - (1.0 - bounce) * browsing


@dataclass
class Simulation:
    """Counts per (stage, segment) and step: `reached[stage][segment][i]` sessions reached the
    stage in [start_s + i*step_s, start_s + (i+1)*step_s) (event time = the counters' time:
    the pipeline's second of latency is below a scrape interval)."""

    start_s: int
    step_s: int
    steps: int
    stages: tuple[str, ...]
    segments: tuple[tuple[str, str], ...]  # (channel, device), the exporter's cross product
    currency: str
    reached: list[list[array[int]]]
    revenue_cents: array[int]  # per step, all segments
    sessions: int = 0  # sessions simulated one by one (the carting ones)
    notes: dict[str, float] = field(default_factory=dict)

    def total(self, stage: str, first: int = 0, last: int | None = None) -> int:
        """Sessions reaching `stage` (any segment) in steps [first, last)."""
        k = self.stages.index(stage)
        end = self.steps if last is None else last
        return sum(sum(row[first:end]) for row in self.reached[k])


def _segment_shares(
    config: TrafficConfig,
) -> tuple[list[tuple[str, str]], list[float], list[float]]:
    """Segments, their arrival shares and their mean cart rate over the countries."""
    carts = config.segment_cart_rates()
    segments, shares, cart = [], [], []
    for ch, w_ch in config.channels:
        for dev, w_dev in config.devices:
            segments.append((ch, dev))
            shares.append(w_ch * w_dev)
            cart.append(sum(w_co * carts[(ch, dev, co)] for co, w_co in config.countries))
    return segments, shares, cart


def simulate(
    config: TrafficConfig,
    timeline: Timeline,
    seed: int,
    start_s: int,
    duration_s: int,
    step_s: int,
) -> Simulation:
    """Draw `duration_s` seconds of the model's traffic from start_s (epoch seconds).

    Sessions that cart are drawn one by one with the model's think times, pass rates and
    scenario effects; sessions that only browse are drawn as Poisson counts per segment and
    step (they reach the visit stage and no other). Deterministic for the same arguments.
    """
    config.check()
    if duration_s % step_s or duration_s <= 0:
        raise ValueError("the duration must be a positive multiple of the step")
    rng = random.Random(seed)
    model = TrafficModel(config, timeline, seed, start_s * 1_000)
    stages = funnel_stages(config.checkout_steps)
    n_steps = duration_s // step_s
    segments, shares, cart_rates = _segment_shares(config)
    reached = [[array("l", bytes(8 * n_steps)) for _ in segments] for _ in stages]
    revenue = array("l", bytes(8 * n_steps))
    sim = Simulation(
        start_s, step_s, n_steps, stages, tuple(segments), config.currency, reached, revenue
    )
    first = start_s - WARMUP_S
    seconds = duration_s + WARMUP_S
    effects = _Effects(model, timeline, first, seconds, config.checkout_steps)
    _browsing(sim, rng, model, effects, shares, cart_rates)
    sim.sessions = _carting(sim, rng, model, effects, shares, cart_rates, config)
    return sim


class _Effects:
    """The model's shapes and the scenarios' effects per second of [first, first + seconds)."""

    def __init__(
        self,
        model: TrafficModel,
        timeline: Timeline,
        first: int,
        seconds: int,
        steps: Sequence[str],
    ) -> None:
        self.first = first
        start = model.start_ms / 1_000
        self.shape = array("d", (model.daily_shape((first + s) * 1_000) for s in range(seconds)))
        cart = array("d", (model.cart_shape((first + s) * 1_000) for s in range(seconds)))
        if timeline.has_drops:
            for s in range(seconds):
                cart[s] *= 1.0 - timeline.conversion_drop(first + s - start)
        self.cart = cart
        zeros = bytes(8 * seconds)
        self.surge = array("d", zeros)
        if timeline.has_surges:
            self.surge = array("d", (timeline.surge(first + s - start) for s in range(seconds)))
        self.loss = array("d", zeros)
        if timeline.has_losses:
            self.loss = array("d", (timeline.loss(first + s - start) for s in range(seconds)))
        # Before the counted start nothing is sent: the warm-up's events are lost.
        for s in range(min(seconds, round(start) - first)):
            self.loss[s] = 1.0
        self.failing: list[array[float] | None] = []
        for step in steps:
            if not timeline.has_failures:
                self.failing.append(None)
                continue
            row = array(
                "d", (timeline.step_failure(step, first + s - start) for s in range(seconds))
            )
            self.failing.append(row if any(row) else None)


def _browsing(
    sim: Simulation,
    rng: random.Random,
    model: TrafficModel,
    fx: _Effects,
    shares: Sequence[float],
    cart_rates: Sequence[float],
) -> None:
    """Visits of the sessions that never cart: Poisson counts per segment and step."""
    rate = model.session_rate
    bounce = model.config.bounce_share
    visits = sim.reached[0]
    offset = sim.start_s - fx.first
    for i in range(sim.steps):
        # Per-step sums of the per-second intensities: normal and surge arrivals, the cart
        # factor, and the share of sessions with a page sent under tracking loss.
        a = ac = s = sc = 0.0
        for sec in range(offset + i * sim.step_s, offset + (i + 1) * sim.step_s):
            loss = fx.loss[sec]
            kept = _kept_share(loss, BROWSE_EXTRA_PAGES, bounce)
            kept_surge = _kept_share(loss, SURGE_EXTRA_PAGES, bounce)
            a += fx.shape[sec] * kept
            ac += fx.shape[sec] * fx.cart[sec] * kept
            s += fx.surge[sec] * kept_surge
            sc += fx.surge[sec] * fx.cart[sec] * kept_surge
        for j, (share, cart) in enumerate(zip(shares, cart_rates, strict=True)):
            mean = rate * share * (a - cart * ac + s - SURGE_CART_FACTOR * cart * sc)
            visits[j][i] += _poisson(rng, mean)


def _quantiles(mu: float, sigma: float, cap: float, scale: float) -> list[float]:
    """_TABLE quantiles of min(cap, lognormal(mu, sigma)) x scale: drawing one is an index."""
    normal = NormalDist(mu, sigma)
    return [min(cap, math.exp(normal.inv_cdf((j + 0.5) / _TABLE))) * scale for j in range(_TABLE)]


def _near_loss(fx: _Effects) -> bytearray:
    """1 for the arrival seconds whose session may meet lost events (a loss within 30 min)."""
    horizon = len(fx.loss)
    lossy = [s for s in range(horizon) if fx.loss[s]]
    out = bytearray(horizon)
    reach = 1_800  # sessions last minutes; a 10-minute think time caps every gap
    marked = -1  # out[: marked + 1] is done (lossy is ascending)
    for s in lossy:
        lo = max(0, s - reach, marked + 1)
        out[lo : s + 1] = b"\x01" * (s + 1 - lo)
        marked = s
    return out


def _carting(
    sim: Simulation,
    rng: random.Random,
    model: TrafficModel,
    fx: _Effects,
    shares: Sequence[float],
    cart_rates: Sequence[float],
    config: TrafficConfig,
) -> int:
    """The sessions that add to cart, one by one, drawn as TrafficModel._session draws them:
    pages, items, checkout steps with their pass rates, step failures and lost events."""
    weights = [s * c for s, c in zip(shares, cart_rates, strict=True)]
    mean_cart = sum(weights)
    cum = list(accumulate(w / mean_cart for w in weights))
    cum[-1] = 1.0
    rand, randrange = rng.random, rng.randrange
    scale = config.think_scale
    page = _quantiles(*PAGE_GAP, MAX_GAP_S, scale)
    button = [g / 4 for g in page]  # the add-to-cart button is near: a quarter of a page's
    step_gap = _quantiles(*STEP_GAP, MAX_GAP_S, scale)
    order_gap = _quantiles(*ORDER_GAP, MAX_GAP_S, scale)
    price = [min(99_999, max(199, round(p))) for p in _quantiles(math.log(2_500), 0.9, 1e9, 1)]
    gaps = [*([step_gap] * len(config.checkout_steps)), order_gap]
    pass_rates = config.pass_rates()
    n_steps = len(config.checkout_steps)
    purchase_stage = n_steps + 2
    pre_stay = PRE_CART_EXTRA_PAGES / (1.0 + PRE_CART_EXTRA_PAGES)
    item_stay = EXTRA_ITEMS / (1.0 + EXTRA_ITEMS)
    b2b = config.b2b_share
    first, step_s, counted = fx.first, sim.step_s, sim.start_s
    end = sim.start_s + sim.steps * step_s
    horizon = len(fx.shape)
    reached, revenue = sim.reached, sim.revenue_cents
    shape, cart, surge, loss, failing = fx.shape, fx.cart, fx.surge, fx.loss, fx.failing
    near_loss = _near_loss(fx)
    base = model.session_rate * mean_cart
    made = 0
    for sec in range(horizon):
        mean = base * cart[sec] * (shape[sec] + SURGE_CART_FACTOR * surge[sec])
        for _ in range(_poisson(rng, mean)):
            made += 1
            seg = bisect.bisect(cum, rand())
            t = first + sec + rand()
            # (time, stage) of the session's events that can reach a stage: the landing page,
            # each add to cart, each checkout step passed, the purchase.
            events = [(t, 0)]
            n = 0
            while n < GEOMETRIC_CAP and rand() < pre_stay:
                n += 1
                t += page[int(rand() * _TABLE)]
                events.append((t, 0))
            items = 1
            while items <= GEOMETRIC_CAP and rand() < item_stay:
                items += 1
            basket = 0
            is_b2b = rand() < b2b
            for i in range(items):
                if i:
                    t += page[int(rand() * _TABLE)]
                    events.append((t, 0))
                t += button[int(rand() * _TABLE)]
                r = rand()
                qty = 1 + randrange(20) if is_b2b else (1 if r < 0.8 else 2 if r < 0.94 else 3)
                basket += qty * price[int(rand() * _TABLE)]
                events.append((t, 1))
            for k, p in enumerate(pass_rates):
                t += gaps[k][int(rand() * _TABLE)]
                if rand() >= p:
                    break
                if k == n_steps:
                    events.append((t, purchase_stage))
                    break
                fail = failing[k]
                if fail is not None:
                    idx = int(t) - first
                    if idx < horizon and fail[idx] and rand() < fail[idx]:
                        break  # the step errors out; the error page adds no stage
                events.append((t, k + 2))
            # Closed funnel: a stage is reached at the first sent event at or beyond it.
            hi = -1
            check = near_loss[sec]
            for ts, stage in events:
                if stage <= hi or ts >= end:
                    continue
                if check:
                    idx = int(ts) - first
                    lost = loss[idx] if idx < horizon else 0.0
                    if lost and (lost >= 1.0 or rand() < lost):
                        continue
                i = int((ts - counted) // step_s)
                for k in range(hi + 1, stage + 1):
                    reached[k][seg][i] += 1
                if stage == purchase_stage:
                    revenue[i] += basket
                hi = stage
    return made
