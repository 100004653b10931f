"""The KPI alerts' thresholds: margins over the baseline and floors, for the rules and the board."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "ABANDONMENT",
    "CONVERSION",
    "DROPOFF",
    "RULE_PLACEHOLDERS",
    "THRESHOLD_CAP",
    "VISIT_GROWTH",
    "Threshold",
]

# A threshold above the baseline never passes this (a ratio is at most 1): a shop whose usual
# abandonment is 90 % or more still pages.
THRESHOLD_CAP = 0.98


@dataclass(frozen=True)
class Threshold:
    """How one KPI's alert threshold follows its baseline (docs/metrics.md, "Thresholds").

    Rising KPIs page above min(1 - keep x (1 - baseline) + margin, THRESHOLD_CAP): abandonment
    10 points above its baseline (keep 1), a step's drop-off when fewer than 62.5 % of the
    usual share of its sessions go on (keep 0.625, margin 0). Conversion, which falls, pages
    below factor x baseline. Without any baseline: the floor.
    """

    rises: bool
    margin: float  # points added (rises)
    keep: float  # share of the usual survival 1 - baseline kept (rises)
    factor: float  # share of the baseline kept (falls)
    floor: float  # the threshold without any baseline

    def of(self, baseline: float | None) -> float:
        """The threshold for a baseline ratio (None: no history at all, the floor)."""
        if baseline is None:
            return self.floor
        if self.rises:
            return min(1 - self.keep * (1 - baseline) + self.margin, THRESHOLD_CAP)
        return self.factor * baseline

    def beyond(self, value: float, threshold: float) -> bool:
        """Whether a value is on the paging side of a threshold."""
        return value > threshold if self.rises else value < threshold


# The margins are what tracking noise does not reach: losing 30 % of the events adds about 9
# points of abandonment (70 % -> 79 %), keeps 77 % of the last step's usual survival (82 % ->
# 63 %) and takes about 18 % of conversion; an incident of strength 0.5 at a step halves that
# step's survival and, with the usual 70 % abandonment, adds 15 points to abandonment.
ABANDONMENT = Threshold(rises=True, margin=0.10, keep=1.0, factor=1.0, floor=0.95)
DROPOFF = Threshold(rises=True, margin=0.0, keep=0.625, factor=1.0, floor=0.80)
CONVERSION = Threshold(rises=False, margin=0.0, keep=1.0, factor=0.7, floor=0.003)
# Usual visits without a day's history: the lowest 15-minute window of the last 6 hours,
# grown by this factor per 15 minutes since (a daily traffic shape of amplitude 0.5 moves at
# most 3.3 % per 15 minutes; a surge multiplies the traffic at once).
VISIT_GROWTH = 1.05

# The rules template's placeholders for these numbers (storepulse.monitoring.rules fills them).
RULE_PLACEHOLDERS = {
    "@THRESHOLD_CAP@": repr(THRESHOLD_CAP),
    "@ABANDONMENT_MARGIN@": f"{ABANDONMENT.margin:.2f}",
    "@ABANDONMENT_FLOOR@": repr(ABANDONMENT.floor),
    "@DROPOFF_KEEP@": repr(DROPOFF.keep),
    "@DROPOFF_FLOOR@": f"{DROPOFF.floor:.2f}",
    "@CONVERSION_FACTOR@": repr(CONVERSION.factor),
    "@CONVERSION_FLOOR@": repr(CONVERSION.floor),
    "@VISIT_GROWTH_PERCENT@": f"{(VISIT_GROWTH - 1) * 100:g}",
    "@VISIT_GROWTH_PER_S@": repr(math.log(VISIT_GROWTH) / 900),
}
