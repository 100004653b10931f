"""The shape of the generator's sessions: think times, pages and items, one definition for the
model (producers/model.py) and the backtest's aggregate twin of it (storepulse.backtest.simulate),
which must draw the same distributions."""

from __future__ import annotations

import math

__all__ = [
    "BROWSE_EXTRA_PAGES",
    "EXTRA_ITEMS",
    "GEOMETRIC_CAP",
    "MAX_GAP_S",
    "ORDER_GAP",
    "PAGE_GAP",
    "PRE_CART_EXTRA_PAGES",
    "STEP_GAP",
    "SURGE_CART_FACTOR",
    "SURGE_EXTRA_PAGES",
]

# Think times in seconds, log-normal (log of the median, sigma), capped at MAX_GAP_S: about half
# a minute per page, a little less per checkout step, a few seconds from review to the order.
PAGE_GAP = (math.log(20.0), 0.8)
STEP_GAP = (math.log(25.0), 0.6)
ORDER_GAP = (math.log(8.0), 0.5)
MAX_GAP_S = 600.0
BROWSE_EXTRA_PAGES = 2.5  # mean extra pages of a session that never carts (1 + 2.5 = 3.5)
PRE_CART_EXTRA_PAGES = 2.0  # mean pages before the first add to cart, beyond the landing page
EXTRA_ITEMS = 0.6  # mean items beyond the first in a basket
SURGE_EXTRA_PAGES = 0.5  # surge sessions mostly bounce
SURGE_CART_FACTOR = 0.1  # and cart a tenth as often
GEOMETRIC_CAP = 50
