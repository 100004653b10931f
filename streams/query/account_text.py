"""Readable tables of the account reports: `storepulse accounts report|show|reps` without --json."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_account", "render_accounts", "render_reps"]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value * 100:.1f}%"
    return str(value)


def _money(row: Mapping[str, Any], key: str) -> str:
    if row.get(key) is not None:
        return str(row[key])
    by_currency = row.get(f"{key}_by_currency") or {}
    return " ".join(f"{v} {c}" for c, v in by_currency.items() if v is not None) or "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = [list(header), *[list(r) for r in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return ["  ".join(c.rjust(w) for c, w in zip(line, widths, strict=True)) for line in lines]


_ACCOUNT_COLUMNS = (
    ("sessions", "sessions"),
    ("conv.", "conversion_rate"),
    ("users", "active_users"),
    ("ordering", "ordering_users"),
    ("usage", "usage_rate"),
    ("orders", "orders"),
    ("revenue", "revenue"),
    ("aov", "average_order_value"),
    ("last order", "last_order_at"),
    ("at risk", "at_risk"),
)


def _account_cells(row: Mapping[str, Any]) -> list[str]:
    cells = [row["account_id"], row["name"] or "-", row["tier"], row["sales_rep"] or "-"]
    for _, key in _ACCOUNT_COLUMNS:
        if key in {"revenue", "average_order_value"}:
            cells.append(_money(row, key))
        elif key == "last_order_at":
            cells.append((row[key] or "-")[:16])
        else:
            cells.append(_cell(row[key]))
    return cells


def render_accounts(report: Mapping[str, Any]) -> str:
    """Totals, then one line per listed account."""
    t = report["totals"]
    lines = [
        f"Accounts, {report['from']} .. {report['to']}",
        f"active {t['active_accounts']}, ordering {t['ordering_accounts']}, new "
        f"{t['new_accounts']}, at risk {t['at_risk_accounts']}, in the directory "
        f"{t['accounts_in_directory']}; users {t['active_users']} active, "
        f"{t['ordering_users']} ordering; sessions {t['sessions']}, orders {t['orders']}, "
        f"revenue {_money(t, 'revenue')}",
    ]
    header = ["account", "name", "tier", "rep", *(name for name, _ in _ACCOUNT_COLUMNS)]
    if report["accounts"]:
        lines += _table(header, [_account_cells(r) for r in report["accounts"]])
    else:
        lines.append("no account to list in this range")
    return "\n".join(lines)


def render_account(detail: Mapping[str, Any]) -> str:
    """One account: its row, its users, its orders per day."""
    row = detail["account"]
    header = ["account", "name", "tier", "rep", *(name for name, _ in _ACCOUNT_COLUMNS)]
    lines = [f"Account {row['account_id']}, {detail['from']} .. {detail['to']}"]
    lines += _table(header, [_account_cells(row)])
    first = row["first_order_at"] or "-"
    lines.append(f"first order {first}, region {detail['region'] or '-'}")
    users = [
        [
            u["user_id"],
            str(u["sessions"]),
            str(u["orders"]),
            _money(u, "revenue"),
            u["last_seen_at"],
        ]
        for u in detail["users"]
    ]
    lines.append("")
    lines += _table(["user", "sessions", "orders", "revenue", "last seen"], users or [["-"] * 5])
    days = [
        [d["day"][:10], str(d["orders"]), _money(d, "revenue")] for d in detail["orders_per_day"]
    ]
    lines.append("")
    lines += _table(["day", "orders", "revenue"], days or [["-"] * 3])
    return "\n".join(lines)


def render_reps(report: Mapping[str, Any]) -> str:
    """One line per sales rep, the accounts without one last."""
    rows = [
        [
            r["sales_rep"] or "(none)",
            str(r["accounts"]),
            str(r["active_accounts"]),
            str(r["ordering_accounts"]),
            str(r["new_accounts"]),
            str(r["at_risk_accounts"]),
            str(r["orders"]),
            _money(r, "revenue"),
            _cell(r["revenue_growth"]),
        ]
        for r in report["reps"]
    ]
    header = ["sales rep", "accounts", "active", "ordering", "new", "at risk", "orders"]
    title = f"Sales reps, {report['from']} .. {report['to']}"
    return "\n".join([title, *_table([*header, "revenue", "growth"], rows)])
