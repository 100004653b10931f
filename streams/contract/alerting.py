"""The KPI alerts' thresholds: margins over the baseline and floors, for the rules and the board."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ABANDONMENT",
    "CONVERSION",
    "DROPOFF",
    "RULE_PLACEHOLDERS",
    "THRESHOLD_CAP",
    "Threshold",
]

# A threshold above the baseline never passes this (a ratio is at most 1): a shop whose usual
# abandonment is 90 % or more still pages.
THRESHOLD_CAP = 0.98


@dataclass(frozen=True)
class Threshold:
    """How one KPI's alert threshold follows its baseline (docs/metrics.md, "Thresholds").

    Rising KPIs (abandonment, drop-off) page above min(baseline + margin, THRESHOLD_CAP);
    conversion, which falls, pages below factor x baseline. Without any baseline: the floor.
    """

    rises: bool
    margin: float  # points added to the baseline (rises)
    factor: float  # share of the baseline kept (falls)
    floor: float  # the threshold without any baseline

    def of(self, baseline: float | None) -> float:
        """The threshold for a baseline ratio (None: no history at all, the floor)."""
        if baseline is None:
            return self.floor
        if self.rises:
            return min(baseline + self.margin, THRESHOLD_CAP)
        return self.factor * baseline

    def beyond(self, value: float, threshold: float) -> bool:
        """Whether a value is on the paging side of a threshold."""
        return value > threshold if self.rises else value < threshold


# The margins are what tracking noise does not reach: losing 30 % of the events adds about 9
# points of abandonment and 19 of drop-off at the last step, and takes about 18 % of conversion.
ABANDONMENT = Threshold(rises=True, margin=0.10, factor=1.0, floor=0.95)
DROPOFF = Threshold(rises=True, margin=0.25, factor=1.0, floor=0.80)
CONVERSION = Threshold(rises=False, margin=0.0, factor=0.7, floor=0.003)

# The rules template's placeholders for these numbers (storepulse.monitoring.rules fills them).
RULE_PLACEHOLDERS = {
    "@THRESHOLD_CAP@": repr(THRESHOLD_CAP),
    "@ABANDONMENT_MARGIN@": f"{ABANDONMENT.margin:.2f}",
    "@ABANDONMENT_FLOOR@": repr(ABANDONMENT.floor),
    "@DROPOFF_MARGIN@": repr(DROPOFF.margin),
    "@DROPOFF_FLOOR@": f"{DROPOFF.floor:.2f}",
    "@CONVERSION_FACTOR@": repr(CONVERSION.factor),
    "@CONVERSION_FLOOR@": repr(CONVERSION.floor),
}
