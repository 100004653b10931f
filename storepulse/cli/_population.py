"""`storepulse generate`'s population options: returning users, B2B accounts, repurchases,
shoppers who bounce, take items out or leave a full cart and come back."""

from __future__ import annotations

import argparse

from storepulse.cli.argtypes import count, positive_seconds, share

__all__ = ["add_population_arguments"]


def add_population_arguments(gen: argparse.ArgumentParser) -> None:
    """Who the shoppers are: users who return, B2B accounts with their reps and cadences; how
    they leave: bounces, removals, full carts left behind and recovered."""
    model = gen.add_argument_group("customers and B2B accounts")
    model.add_argument(
        "--returning-share",
        type=share(),
        default=0.30,
        help="share of non-B2B sessions by a returning user, with a user_id (default 0.30)",
    )
    model.add_argument(
        "--users",
        type=count,
        default=50_000,
        help="population of returning users (default 50,000)",
    )
    model.add_argument(
        "--b2b-share",
        type=share(),
        default=0.05,
        help="share of sessions by a B2B buyer, with user_id and account_id (default 0.05)",
    )
    model.add_argument(
        "--accounts",
        type=count,
        default=200,
        help="B2B accounts in the population (default 200), each with a tier (platinum, gold, "
        "silver, bronze), a sales rep and its own order cadence; with --manifest the account "
        "directory is written beside it (NAME.accounts.csv)",
    )
    model.add_argument(
        "--users-per-account",
        type=count,
        default=5,
        help="buyers per B2B account (default 5)",
    )
    model.add_argument(
        "--sales-reps",
        type=count,
        default=8,
        help="sales reps the accounts are spread over (default 8; one in ten accounts has none)",
    )
    model.add_argument(
        "--slowing-share",
        type=share(),
        default=0.1,
        help="share of accounts that stop coming half to one and a half --slowing-after into "
        "the run, so that accounts at risk exist (default 0.1)",
    )
    model.add_argument(
        "--slowing-after",
        type=positive_seconds,
        default=86_400.0,
        metavar="DURATION",
        help="when slowing accounts stop, on average, event time from the start (default 1d)",
    )
    model.add_argument(
        "--repurchase-probability",
        type=share(),
        default=0.3,
        metavar="P",
        help="after an order of a known customer (user or account), the chance that it comes "
        "back and orders again (default 0.3; each repeat order may bring it back again)",
    )
    model.add_argument(
        "--repurchase-interval",
        type=positive_seconds,
        default=7 * 86_400.0,
        metavar="DURATION",
        help="mean time (event time, exponential) from an order to the customer's next visit "
        "that orders: 90s, 5m, 12h, 7d (default 7d); a B2B account comes back as any of its "
        "buyers",
    )
    model.add_argument(
        "--login-at-cart",
        type=share(),
        default=0.0,
        metavar="SHARE",
        help="share of known shoppers who browse anonymously and log in at their first add to "
        "cart (default 0: identified from the first event)",
    )
    carts = gen.add_argument_group("sessions and carts left behind")
    carts.add_argument(
        "--bounce-share",
        type=share(),
        default=0.35,
        metavar="SHARE",
        help="share of browsing sessions (no cart) that see one page and leave (default 0.35)",
    )
    carts.add_argument(
        "--removal-share",
        type=share(),
        default=0.15,
        metavar="SHARE",
        help="share of carting sessions that take an item out again (default 0.15)",
    )
    carts.add_argument(
        "--cart-return-share",
        type=share(),
        default=0.2,
        metavar="SHARE",
        help="share of known shoppers leaving with a full cart who come back and order it "
        "(default 0.2): their carts count as recovered within STOREPULSE_RECOVERY_WINDOW_SECONDS",
    )
    carts.add_argument(
        "--cart-return-delay",
        type=positive_seconds,
        default=2 * 86_400.0,
        metavar="DURATION",
        help="mean time (event time, exponential) from a full cart left behind to the shopper's "
        "return: 90s, 5m, 12h, 2d (default 2d)",
    )
