"""Money: exact integer ten-thousandths when stored, 2-decimal half-even strings in reports."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

__all__ = ["MONEY_SCALE", "money_text", "money_units", "units_to_money"]

# Money is stored as integer ten-thousandths: the contract allows at most 4 decimals.
MONEY_SCALE = 10_000
_CENT = Decimal("0.01")


def money_units(amount: Decimal) -> int:
    """Exact integer ten-thousandths of an amount with at most 4 decimals."""
    units = amount * MONEY_SCALE
    if units != units.to_integral_value():
        raise ValueError(f"{amount} has more than 4 decimals")
    return int(units)


def units_to_money(units: int) -> Decimal:
    return Decimal(units) / MONEY_SCALE


def money_text(amount: Decimal) -> str:
    """The reported form of an amount: 2 decimals, rounded half to even."""
    return str(amount.quantize(_CENT, rounding=ROUND_HALF_EVEN))
