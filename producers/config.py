"""What the synthetic storefront looks like: segment shares, conversion factors, funnel rates."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_ACCOUNT_TIERS",
    "DEFAULT_CHANNEL_WEIGHTS",
    "DEFAULT_COUNTRY_WEIGHTS",
    "DEFAULT_CVR_FACTORS",
    "DEFAULT_DEVICE_WEIGHTS",
    "TrafficConfig",
    "weights_for",
]

# Shares of sessions by acquisition channel, device and country: round figures in line with
# published retail traffic mixes (organic and direct lead; mobile is just over half of sessions).
DEFAULT_CHANNEL_WEIGHTS: dict[str, float] = {
    "direct": 0.20,
    "organic": 0.30,
    "paid_search": 0.20,
    "social": 0.12,
    "email": 0.08,
    "referral": 0.06,
    "affiliate": 0.04,
}
DEFAULT_DEVICE_WEIGHTS: dict[str, float] = {"desktop": 0.40, "mobile": 0.52, "tablet": 0.08}
DEFAULT_COUNTRY_WEIGHTS: dict[str, float] = {
    "US": 0.40,
    "GB": 0.12,
    "DE": 0.10,
    "FR": 0.08,
    "CA": 0.06,
    "NL": 0.04,
    "ES": 0.04,
    "IT": 0.04,
    "AU": 0.04,
    "SE": 0.03,
    "JP": 0.03,
    "BR": 0.02,
}
# Relative conversion by segment, normalised so the overall CVR stays the configured one:
# desktop converts about twice as well as mobile, email and direct traffic best, social worst.
DEFAULT_CVR_FACTORS: dict[str, dict[str, float]] = {
    "device": {"desktop": 1.45, "mobile": 0.70, "tablet": 1.10},
    "channel": {
        "direct": 1.30,
        "organic": 1.00,
        "paid_search": 1.10,
        "social": 0.50,
        "email": 1.80,
        "referral": 1.00,
        "affiliate": 1.20,
    },
}


# The tiers of generated accounts and their shares (KeyAccountsQuiet watches the first two).
DEFAULT_ACCOUNT_TIERS = (("platinum", 0.05), ("gold", 0.15), ("silver", 0.3), ("bronze", 0.5))


def weights_for(
    names: Sequence[str], defaults: Mapping[str, float], overrides: Mapping[str, float]
) -> tuple[tuple[str, float], ...]:
    """Normalised weights for names: overrides, else defaults, else an equal share."""
    equal = 1.0 / len(names)
    raw = [overrides.get(n, defaults.get(n, equal)) for n in names]
    total = sum(raw)
    if total <= 0:
        raise ValueError(f"weights for {', '.join(names)} sum to zero")
    return tuple((n, w / total) for n, w in zip(names, raw, strict=True))


@dataclass(frozen=True)
class TrafficConfig:
    """Everything the traffic model needs; `rate` is baseline lines per second of event time."""

    checkout_steps: tuple[str, ...]
    channels: tuple[tuple[str, float], ...]
    devices: tuple[tuple[str, float], ...]
    countries: tuple[tuple[str, float], ...]
    rate: float = 200.0
    cvr: float = 0.025
    abandonment: float = 0.70
    cvr_factors: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: DEFAULT_CVR_FACTORS
    )
    first_step_weight: float = 0.5
    returning_share: float = 0.30
    users: int = 50_000
    b2b_share: float = 0.05
    accounts: int = 200
    users_per_account: int = 5
    currency: str = "USD"
    # After an order of a known customer (a user or an account), the customer comes back with
    # this probability and orders again after an exponential delay of this mean (event time).
    repurchase_probability: float = 0.3
    repurchase_interval_s: float = 7 * 86_400.0
    # Share of known shoppers who log in at their first add to cart (anonymous before it).
    login_at_cart_share: float = 0.0
    # Browsing sessions (no cart) that see one page only and leave: bounces.
    bounce_share: float = 0.35
    # Carting sessions that take an item out again (one remove_from_cart, at most what was put).
    removal_share: float = 0.15
    # Known shoppers who leave with a full cart come back with this probability after an
    # exponential delay of this mean (event time) and order: their cart is recovered when they
    # order within STOREPULSE_RECOVERY_WINDOW_SECONDS of its end.
    cart_return_share: float = 0.2
    cart_return_delay_s: float = 2 * 86_400.0
    # B2B accounts (producers/accounts.py): tiers and their shares, sales reps, and the share
    # of accounts that stop coming somewhere in [0.5, 1.5) x slowing_after_s into the run.
    account_tiers: tuple[tuple[str, float], ...] = DEFAULT_ACCOUNT_TIERS
    sales_reps: int = 8
    slowing_share: float = 0.1
    slowing_after_s: float = 86_400.0
    catalog_size: int = 5_000
    daily_amplitude: float = 0.0
    daily_peak_hour: float = 20.0
    # Conversion following the day: the cart rate x (1 + cvr_daily_amplitude cos), peaking at
    # daily_peak_hour like the traffic (evening shoppers buy more); its mean stays `cvr`.
    cvr_daily_amplitude: float = 0.0
    weekend_dip: float = 0.0  # arrivals on Saturdays and Sundays (UTC) x (1 - weekend_dip)
    late_share: float = 0.0
    max_delay_s: float = 30.0
    duplicate_share: float = 0.0
    loss_share: float = 0.0
    invalid_share: float = 0.0
    warmup_s: float = 0.0
    think_scale: float = 1.0  # multiplies every think time (page, checkout step, order gaps)

    def check(self) -> None:
        """Raise ValueError naming the first impossible value."""
        shares = {
            "late_share": self.late_share,
            "duplicate_share": self.duplicate_share,
            "loss_share": self.loss_share,
            "invalid_share": self.invalid_share,
            "returning_share": self.returning_share,
            "b2b_share": self.b2b_share,
            "daily_amplitude": self.daily_amplitude,
            "repurchase_probability": self.repurchase_probability,
            "login_at_cart_share": self.login_at_cart_share,
            "bounce_share": self.bounce_share,
            "removal_share": self.removal_share,
            "cart_return_share": self.cart_return_share,
            "slowing_share": self.slowing_share,
            "cvr_daily_amplitude": self.cvr_daily_amplitude,
            "weekend_dip": self.weekend_dip,
        }
        for name, value in shares.items():
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.weekend_dip >= 1:
            raise ValueError("weekend_dip must be below 1 (no weekend traffic at all)")
        if self.loss_share >= 1:
            raise ValueError("loss_share must be below 1 (nothing would be sent)")
        if not 0 < self.cvr < 1 or not 0 <= self.abandonment < 1:
            raise ValueError("cvr must be in (0, 1) and abandonment in [0, 1)")
        if self.rate <= 0 or not math.isfinite(self.rate):
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.max_delay_s <= 0 and self.late_share > 0:
            raise ValueError("max_delay must be positive when late_share is set")
        if min(self.users, self.accounts, self.users_per_account, self.catalog_size) < 1:
            raise ValueError("users, accounts, users_per_account and catalog_size must be >= 1")
        if self.repurchase_probability >= 1:
            raise ValueError("repurchase_probability must be below 1 (every order would repeat)")
        if not 0 < self.repurchase_interval_s < math.inf:
            raise ValueError(
                f"repurchase_interval must be positive, got {self.repurchase_interval_s}"
            )
        if not 0 < self.cart_return_delay_s < math.inf:
            raise ValueError(f"cart_return_delay must be positive, got {self.cart_return_delay_s}")
        if self.warmup_s < 0:
            raise ValueError("warmup must be >= 0")
        if self.sales_reps < 1 or not self.account_tiers:
            raise ValueError("sales_reps must be >= 1 and account_tiers not empty")
        if not 0 < self.slowing_after_s < math.inf:
            raise ValueError(f"slowing_after must be positive, got {self.slowing_after_s}")
        if not 0 < self.think_scale <= 100 or not math.isfinite(self.think_scale):
            raise ValueError(f"think_scale must be in (0, 100], got {self.think_scale}")
        for dim, factors in self.cvr_factors.items():
            if dim not in {"channel", "device", "country"}:
                raise ValueError(f"conversion factors for unknown dimension {dim!r}")
            if any(f < 0 for f in factors.values()):
                raise ValueError(f"conversion factors for {dim} must be >= 0")
        self.segment_cart_rates()  # raises when a segment would need a cart rate above 1

    def segment_cart_rates(self) -> dict[tuple[str, str, str], float]:
        """Cart rate per (channel, device, country): the factors, normalised to cart_rate."""
        cfg = self
        dims = {"channel": cfg.channels, "device": cfg.devices, "country": cfg.countries}

        def factor(dim: str, name: str) -> float:
            return cfg.cvr_factors.get(dim, {}).get(name, 1.0)

        means = {d: sum(w * factor(d, n) for n, w in pairs) for d, pairs in dims.items()}
        if any(m <= 0 for m in means.values()):
            raise ValueError("conversion factors give every segment zero conversion")
        out: dict[tuple[str, str, str], float] = {}
        peak = 1.0 + cfg.cvr_daily_amplitude  # the daily conversion shape at its highest
        for ch, _ in cfg.channels:
            for dev, _ in cfg.devices:
                for co, _ in cfg.countries:
                    f = factor("channel", ch) * factor("device", dev) * factor("country", co)
                    rate = (
                        cfg.cart_rate * f / (means["channel"] * means["device"] * means["country"])
                    )
                    if rate * peak > 1:
                        raise ValueError(
                            f"cvr {cfg.cvr} with abandonment {cfg.abandonment} and the segment "
                            f"factors needs a cart rate of {rate * peak:.2f} for {ch}/{dev}/{co}; "
                            "lower --cvr, --abandonment, --cvr-daily-shape or the factors"
                        )
                    out[(ch, dev, co)] = rate
        return out

    @property
    def cart_rate(self) -> float:
        """Share of sessions that cart: cvr / (1 - abandonment)."""
        return self.cvr / (1.0 - self.abandonment)

    def pass_rates(self) -> tuple[float, ...]:
        """Pass rates cart -> step 1 -> ... -> step n -> purchase; their product = 1 - abandonment.

        The first transition takes `first_step_weight` of the drop-off (in log terms), the rest
        share the remainder equally: most carts are abandoned before checkout starts.
        """
        n = len(self.checkout_steps)
        overall = 1.0 - self.abandonment
        weights = [self.first_step_weight] + [(1.0 - self.first_step_weight) / n] * n
        return tuple(overall**w for w in weights)
