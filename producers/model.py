"""The synthetic storefront: a pure, seeded model of sessions and the event lines they emit."""

from __future__ import annotations

import bisect
import heapq
import math
import random
from collections.abc import Iterator, Sequence
from itertools import accumulate

from producers.accounts import AccountBook
from producers.config import TrafficConfig
from producers.entries import (
    DUP,
    INVALID,
    LATE,
    LOST,
    VALID,
    Entry,
    SessionMark,
    invalid_line,
    money,
)
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
from streams.contract.encode import event_line
from streams.contract.funnel import NO_STAGE, funnel_stages
from streams.contract.times import format_ts

__all__ = ["TrafficModel"]

_DUP_DELAY_MS = 2_000  # a re-sent copy follows its original within 2 s


def _cumulative(pairs: Sequence[tuple[str, float]]) -> tuple[list[str], list[float]]:
    names = [n for n, _ in pairs]
    cum = list(accumulate(w for _, w in pairs))
    cum[-1] = 1.0  # rounding must never leave a gap at the top
    return names, cum


class TrafficModel:
    """Yields entries in emission order; deterministic given config, timeline, seed and start."""

    def __init__(self, config: TrafficConfig, timeline: Timeline, seed: int, start_ms: int) -> None:
        config.check()
        self.config = config
        self.timeline = timeline
        self.seed = seed
        self.start_ms = start_ms
        self.stages = funnel_stages(config.checkout_steps)
        self._rng = random.Random(seed)
        self._heap: list[Entry] = []
        self._seq = 0
        # Customers coming back to order again: (event time ms, seq, user_id, account index).
        self._returns: list[tuple[int, int, str, int]] = []
        rng = self._rng
        self.accounts = AccountBook(
            config.accounts,
            config.account_tiers,
            config.sales_reps,
            config.slowing_share,
            config.slowing_after_s,
            seed,
            start_ms,
        )
        self._channels = _cumulative(config.channels)
        self._devices = _cumulative(config.devices)
        self._countries = _cumulative(config.countries)
        self._pass = config.pass_rates()
        self._cart_by_segment = config.segment_cart_rates()
        self._catalog = [
            (f"SKU-{i:05d}", min(99_999, max(199, round(rng.lognormvariate(math.log(2_500), 0.9)))))
            for i in range(config.catalog_size)
        ]
        events_normal = self.expected_events_per_session(surge=False)
        self.events_per_session = events_normal
        self.events_per_surge_session = self.expected_events_per_session(surge=True)
        line_factor = (1.0 - config.loss_share) * (
            1.0 + config.duplicate_share + config.invalid_share
        )
        self.session_rate = config.rate / (events_normal * line_factor)
        self.events_per_return_session = self._carting_events(len(self._pass))
        self._gap_ms = 1_000.0 * config.think_scale  # a think time's milliseconds per second

    # Expectations -------------------------------------------------------------------------

    def expected_events_per_session(self, surge: bool = False, cart_factor: float = 1.0) -> float:
        """Mean valid events per session (before loss, duplicates and scenarios); cart_factor
        multiplies the cart rate (the daily conversion shape, a conversion drop)."""
        cart = self.config.cart_rate * (SURGE_CART_FACTOR if surge else 1.0) * cart_factor
        bounce = self.config.bounce_share
        browse = 1.0 + (1.0 - bounce) * (SURGE_EXTRA_PAGES if surge else BROWSE_EXTRA_PAGES)
        reach, steps = 1.0, 0.0
        for p in self._pass:
            reach *= p
            steps += reach  # one event per checkout step passed, and the purchase
        return (1.0 - cart) * browse + cart * self._carting_events(steps)

    def _carting_events(self, steps: float) -> float:
        # landing + pre-cart pages, one add_to_cart per item, one page per extra item, a
        # removal now and then, steps
        pages = 1.0 + PRE_CART_EXTRA_PAGES + (1.0 + EXTRA_ITEMS) + EXTRA_ITEMS
        return pages + self.config.removal_share + steps

    def returns_per_session(self, elapsed_s: float) -> float:
        """Expected sessions of customers coming back, per new session, elapsed_s into the run.

        A known customer's order (share known x cvr of new sessions) brings the customer back
        with probability q after Exp(interval); that session orders and may bring it back
        again. The k-th return is due after an Erlang(k) time: sum of q^k P(Erlang(k) <= t).
        Approximate (scenarios and the minutes from arrival to order are left out); the pacer's
        nudge takes up the rest.
        """
        cfg = self.config
        q = cfg.repurchase_probability
        if elapsed_s <= 0:
            return 0.0
        known = cfg.b2b_share + (1.0 - cfg.b2b_share) * cfg.returning_share
        x = elapsed_s / cfg.repurchase_interval_s
        term = math.exp(-x)  # e^-x x^i / i!, i = k - 1
        below = 0.0  # P(Poisson(x) < k)
        total, weight = 0.0, 1.0
        for k in range(1, 500):
            below += term
            term *= x / k
            weight *= q
            total += weight * max(0.0, 1.0 - below)
            if weight < 1e-9:
                break
        # Shoppers who left a full cart and come back to order (once), after Exp(delay).
        abandoned = cfg.cart_rate - cfg.cvr
        back = cfg.cart_return_share * (1.0 - math.exp(-elapsed_s / cfg.cart_return_delay_s))
        return known * (cfg.cvr * total + abandoned * back)

    def daily_shape(self, ms: int) -> float:
        """Arrival multiplier at ms: the daily shape (mean 1, peaking at daily_peak_hour UTC)
        times 1 - weekend_dip on Saturdays and Sundays (UTC)."""
        cfg = self.config
        shape = 1.0
        if cfg.daily_amplitude:
            hours = (ms / 3_600_000.0) % 24.0
            shape += cfg.daily_amplitude * math.cos(
                2.0 * math.pi * (hours - cfg.daily_peak_hour) / 24.0
            )
        # The epoch began on a Thursday: day 2 of a week counted from it is Saturday.
        if cfg.weekend_dip and (ms // 86_400_000) % 7 in (2, 3):
            shape *= 1.0 - cfg.weekend_dip
        return shape

    def cart_shape(self, ms: int) -> float:
        """Cart-rate multiplier of the daily conversion shape at ms (mean 1)."""
        cfg = self.config
        if not cfg.cvr_daily_amplitude:
            return 1.0
        hours = (ms / 3_600_000.0) % 24.0
        return 1.0 + cfg.cvr_daily_amplitude * math.cos(
            2.0 * math.pi * (hours - cfg.daily_peak_hour) / 24.0
        )

    def expected_rate(self, ms: int) -> float:
        """Expected lines per second at event time ms (daily and weekly shapes, conversion shape,
        surges, drops and losses included)."""
        cfg = self.config
        offset = (ms - self.start_ms) / 1_000.0
        surge = self.timeline.surge(offset) if self.timeline.has_surges else 0.0
        factor = self.cart_shape(ms)
        if self.timeline.has_drops:
            factor *= 1.0 - self.timeline.conversion_drop(offset)
        if factor == 1.0:
            normal, extra = self.events_per_session, self.events_per_surge_session
        else:
            normal = self.expected_events_per_session(False, factor)
            extra = self.expected_events_per_session(True, factor)
        events = self.daily_shape(ms) * normal + surge * extra
        elapsed_s = offset + cfg.warmup_s
        events += self.returns_per_session(elapsed_s) * self.events_per_return_session
        kept = (1.0 - cfg.loss_share) * (1.0 - self.timeline.loss(offset))
        return self.session_rate * events * kept * (1.0 + cfg.duplicate_share + cfg.invalid_share)

    # Generation ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Entry]:
        heap = self._heap
        rng = self._rng
        pop = heapq.heappop
        # Arrival times stay fractional: rounding each gap to whole milliseconds would bias the
        # session rate (by ~10% at 2,000 events/s, where sessions arrive every ~2 ms).
        arrival = self.start_ms - self.config.warmup_s * 1_000.0
        timeline = self.timeline
        base = self.session_rate / 1_000.0  # sessions per millisecond
        returns = self._returns
        while True:
            while not heap or min(arrival, returns[0][0] if returns else arrival) <= heap[0][0]:
                if returns and returns[0][0] <= arrival:
                    at, _, user, account = pop(returns)
                    if account >= 0 and self.accounts.quiet(account, at):
                        # A slowing account stopped coming: the visit is another account's.
                        account = self.accounts.pick(rng, at)
                    self._session(at, False, (user, account))
                    continue
                at = math.floor(arrival)
                shape = self.daily_shape(at)
                surge = timeline.surge((at - self.start_ms) / 1e3) if timeline.has_surges else 0.0
                is_surge = surge > 0 and rng.random() * (shape + surge) >= shape
                self._session(at, is_surge)
                arrival += rng.expovariate(base * (shape + surge))
            yield pop(heap)

    def _gap(self, rng: random.Random, params: tuple[float, float]) -> int:
        seconds = math.exp(rng.gauss(params[0], params[1]))
        return round(min(MAX_GAP_S, seconds) * self._gap_ms)

    @staticmethod
    def _geometric(rng: random.Random, mean: float) -> int:
        stay = mean / (1.0 + mean)
        n = 0
        while n < GEOMETRIC_CAP and rng.random() < stay:
            n += 1
        return n

    def _session(self, arrival: int, surge: bool, buyer: tuple[str, int] | None = None) -> None:
        """One session; a buyer (user_id, account index or -1) comes back and orders."""
        cfg = self.config
        rng = self._rng
        rand = rng.random
        sid = f"s-{rng.getrandbits(64):016x}"
        channel = self._channels[0][bisect.bisect(self._channels[1], rand())]
        device = self._devices[0][bisect.bisect(self._devices[1], rand())]
        country = self._countries[0][bisect.bisect(self._countries[1], rand())]
        who: dict[str, object] = {}  # the identity fields, from the login on
        b2b = False
        account = -1
        if buyer is not None:
            user, account = buyer
            b2b = account >= 0
            if b2b:  # another buyer of the account, often: several users order for it
                user = f"b2b-{account:05d}-{rng.randrange(cfg.users_per_account):02d}"
            who["user_id"] = user
        elif rand() < cfg.b2b_share:
            b2b = True
            account = self.accounts.pick(rng, arrival)
            who["user_id"] = f"b2b-{account:05d}-{rng.randrange(cfg.users_per_account):02d}"
        elif rand() < cfg.returning_share:
            who["user_id"] = f"u-{rng.randrange(cfg.users):07d}"
        if b2b:
            who["account_id"] = f"acct-{account:05d}"
        # Shoppers who log in at the cart browse anonymously before it (and, never carting,
        # stay anonymous): the worker attributes each event on its own.
        login_at_cart = bool(who) and cfg.login_at_cart_share > 0
        login_at_cart = login_at_cart and rand() < cfg.login_at_cart_share
        segment: dict[str, object] = {"channel": channel, "device": device, "country": country}
        currency = cfg.currency
        cart_rate = (
            1.0
            if buyer
            else self._cart_by_segment[(channel, device, country)] * self.cart_shape(arrival)
        )
        if surge:
            cart_rate *= SURGE_CART_FACTOR
        if self.timeline.has_drops:
            # A broken search or product page: some shoppers who would cart leave instead.
            cart_rate *= 1.0 - self.timeline.conversion_drop((arrival - self.start_ms) / 1_000.0)
        catalog = self._catalog
        size = len(catalog)
        gap = self._gap
        t = arrival
        # (ts, stage, type, type-specific fields) of the session's events, in time order
        events: list[tuple[int, int, str, dict[str, object]]] = []
        add = events.append
        if rand() >= cart_rate:
            pages = 1
            if rand() >= cfg.bounce_share:  # else a bounce: one page, gone
                pages += self._geometric(rng, SURGE_EXTRA_PAGES if surge else BROWSE_EXTRA_PAGES)
            for i in range(pages):
                if i:
                    t += gap(rng, PAGE_GAP)
                # Popular products are viewed more: index density falls off like a square law.
                add((t, 0, "visit", {"page": f"/p/{catalog[int(size * rand() ** 2)][0]}"}))
            self._push_session(sid, segment, events, 0, {} if login_at_cart else who, 0)
            return
        add((t, 0, "visit", {"page": "/"}))
        for _ in range(self._geometric(rng, PRE_CART_EXTRA_PAGES)):
            t += gap(rng, PAGE_GAP)
            add((t, 0, "visit", {"page": f"/p/{catalog[int(size * rand() ** 2)][0]}"}))
        basket = 0
        login_ts = 0
        items: list[tuple[str, int, int]] = []
        for i in range(1 + self._geometric(rng, EXTRA_ITEMS)):
            sku, price = catalog[int(size * rand() ** 2)]
            if i:
                t += gap(rng, PAGE_GAP)
                add((t, 0, "visit", {"page": f"/p/{sku}"}))
            t += gap(rng, PAGE_GAP) // 4  # the button is near: a few seconds
            if login_at_cart and not i:
                login_ts = t
            r = rand()
            qty = (1 + rng.randrange(20)) if b2b else (1 if r < 0.8 else 2 if r < 0.94 else 3)
            basket += qty * price
            items.append((sku, qty, price))
            unit_price = money(price)
            fields: dict[str, object] = {
                "sku": sku,
                "quantity": qty,
                "unit_price": unit_price,
                "currency": currency,
            }
            add((t, 1, "add_to_cart", fields))
        if rand() < cfg.removal_share:  # one item goes back: part or all of its quantity
            sku, qty, price = items[rng.randrange(len(items))]
            out = 1 + rng.randrange(qty)
            if len(items) == 1:  # something stays in the cart
                out = min(out, qty - 1)
            t += gap(rng, PAGE_GAP) // 4
            if out:
                basket -= out * price
                add((t, NO_STAGE, "remove_from_cart", {"sku": sku, "quantity": out}))
        steps = cfg.checkout_steps
        timeline = self.timeline
        revenue_cents = 0
        for k, p in enumerate(self._pass):
            t += gap(rng, STEP_GAP if k < len(steps) else ORDER_GAP)
            if buyer is None and rand() >= p:
                break
            if k == len(steps):
                revenue_cents = basket
                revenue = money(basket)
                order: dict[str, object] = {
                    "order_id": f"o-{sid[2:]}",
                    "revenue": revenue,
                    "currency": currency,
                }
                add((t, k + 2, "purchase", order))
                user_id = who.get("user_id")
                q = cfg.repurchase_probability
                if isinstance(user_id, str) and q and rand() < q:
                    # The customer comes back (the interval is event time, not think time),
                    # an account at its own cadence.
                    self._seq += 1
                    mean = cfg.repurchase_interval_s
                    if account >= 0:
                        mean *= self.accounts.profiles[account].cadence
                    back = t + round(rng.expovariate(1.0 / mean) * 1_000)
                    heapq.heappush(self._returns, (back, self._seq, user_id, account))
                break
            step = steps[k]
            if timeline.has_failures:
                share = timeline.step_failure(step, (t - self.start_ms) / 1_000.0)
                if share and rand() < share:
                    # The step errors out: the shopper sees an error page and leaves.
                    add((t, 0, "visit", {"page": f"/checkout/{step}?error=1"}))
                    break
            add((t, k + 2, "checkout_step", {"step": step}))
        # Gone with a full cart: a known shopper may come back days later and order.
        user_id = who.get("user_id")
        left = events[-1][2] != "purchase" and basket > 0 and isinstance(user_id, str)
        if left and cfg.cart_return_share and rand() < cfg.cart_return_share:
            assert isinstance(user_id, str)
            self._seq += 1
            back = events[-1][0] + round(rng.expovariate(1.0 / cfg.cart_return_delay_s) * 1_000)
            heapq.heappush(self._returns, (back, self._seq, user_id, account))
        self._push_session(sid, segment, events, revenue_cents, who, login_ts)

    def _push_session(
        self,
        sid: str,
        segment: dict[str, object],
        events: list[tuple[int, int, str, dict[str, object]]],
        revenue: int,
        who: dict[str, object],
        login_ts: int,
    ) -> None:
        """Serialise a session's events; schedule them with late, lost, duplicate and bad lines."""
        cfg = self.config
        rng = self._rng
        rand = rng.random
        heap = self._heap
        push = heapq.heappush
        start = self.start_ms
        timeline = self.timeline
        late_share, dup_share, bad_share = cfg.late_share, cfg.duplicate_share, cfg.invalid_share
        max_delay = max(1, round(cfg.max_delay_s * 1_000))
        if events[-1][0] + (max_delay if late_share else 0) < start:
            return  # a warm-up session over before the run starts: nothing of it is sent
        mark = SessionMark()
        mark.revenue_cents = revenue
        customer = who.get("account_id") or who.get("user_id")
        mark.customer = customer if isinstance(customer, str) else None
        account, user = who.get("account_id"), who.get("user_id")
        mark.account = account if isinstance(account, str) else None
        mark.user = user if isinstance(user, str) else None
        mark.session_id = sid
        mark.login_ts = login_ts
        mark.order_id = f"o-{sid[2:]}"
        seq = self._seq
        for n, (ts, stage, type_, fields) in enumerate(events):
            emit = ts
            kind = VALID
            if late_share and rand() < late_share:
                emit += rng.randint(1, max_delay)
                kind = LATE
            if emit < start:
                continue  # warm-up: before the tracker started
            seq += 1
            lost = cfg.loss_share
            if timeline.has_losses:
                lost = 1.0 - (1.0 - lost) * (1.0 - timeline.loss((emit - start) / 1_000.0))
            if lost and rand() < lost:
                push(heap, (emit, seq, LOST, None, None, None, stage, ts))
                continue
            ident = who if ts >= login_ts else {}
            line = event_line(
                {
                    "event_id": f"{sid}-{n}",
                    "type": type_,
                    "ts": format_ts(ts),
                    "session_id": sid,
                    **ident,
                    **segment,
                    **fields,
                }
            )
            push(heap, (emit, seq, kind, line, sid, mark, stage, ts))
            mark.pending += 1
            if dup_share and rand() < dup_share:
                seq += 1
                again = emit + rng.randint(0, _DUP_DELAY_MS)
                push(heap, (again, seq, DUP, line, sid, mark, stage, ts))
                mark.pending += 1
            if bad_share and rand() < bad_share:
                seq += 1
                bad, key, which = invalid_line(rng, line)
                push(heap, (emit, seq, INVALID, bad, key, None, which, ts))
        self._seq = seq
