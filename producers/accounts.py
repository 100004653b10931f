"""The generator's B2B accounts: tier, sales rep, order cadence, who slows down; their directory.

Every account's profile is drawn from the run's seed and its index alone, so a run, its
directory file and its manifest agree whatever the traffic does. One in twenty accounts is left
out of the directory (seen in events: `unassigned`), one in ten has no rep.
A slowing account stops coming at its slow-down instant: its new sessions go to another account
and its buyers' returns too (the traffic's rate stays what the model expects), so that by the
end of a long enough run it is quiet for longer than its cadence: the accounts at risk.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass

__all__ = ["AccountBook", "AccountProfile", "account_id"]

# Order cadences: the account's buyers come back after the model's repurchase interval times
# this factor (mean 1, so the model's expected rate holds on average).
_CADENCE_FACTORS = (0.5, 0.75, 1.0, 1.25, 1.5)
_REGIONS = ("EMEA", "AMER", "APAC")
_NOT_IN_DIRECTORY = 20  # every 20th account is not in the directory
_NO_REP = 10  # every 10th account has no sales rep (never one left out: 4 vs 19 mod 20)
_REPICKS = 8  # random tries to find an account that is not quiet, then a scan


def account_id(index: int) -> str:
    return f"acct-{index:05d}"


@dataclass(frozen=True)
class AccountProfile:
    index: int
    tier: str
    sales_rep: str | None
    name: str
    region: str
    cadence: float  # factor on the repurchase interval
    slows_at_ms: int | None  # when it stops coming (None: never)
    in_directory: bool

    @property
    def account_id(self) -> str:
        return account_id(self.index)


class AccountBook:
    """The accounts of a run, by index."""

    def __init__(
        self,
        accounts: int,
        tiers: tuple[tuple[str, float], ...],
        sales_reps: int,
        slowing_share: float,
        slowing_after_s: float,
        seed: int,
        start_ms: int,
    ) -> None:
        self.profiles: list[AccountProfile] = []
        names = [t for t, _ in tiers]
        weights = [w for _, w in tiers]
        for i in range(accounts):
            rng = random.Random(f"{seed}-account-{i}")
            slows = rng.random() < slowing_share
            listed = i % _NOT_IN_DIRECTORY != _NOT_IN_DIRECTORY - 1
            rep = None if i % _NO_REP == 4 else f"rep-{rng.randrange(sales_reps):02d}"
            self.profiles.append(
                AccountProfile(
                    index=i,
                    tier=rng.choices(names, weights)[0],
                    sales_rep=rep,
                    name=f"Account {i:05d} Ltd",
                    region=rng.choice(_REGIONS),
                    cadence=rng.choice(_CADENCE_FACTORS),
                    # Somewhere in [0.5, 1.5) times slowing_after after the start.
                    slows_at_ms=start_ms + round(slowing_after_s * 1_000 * (0.5 + rng.random()))
                    if slows
                    else None,
                    in_directory=listed,
                )
            )

    def quiet(self, index: int, ts_ms: float) -> bool:
        """Whether the account has stopped coming by ts_ms."""
        slows = self.profiles[index].slows_at_ms
        return slows is not None and ts_ms >= slows

    def pick(self, rng: random.Random, ts_ms: float, index: int | None = None) -> int:
        """An account for a session at ts_ms: index (or a random one), another if it is quiet."""
        n = len(self.profiles)
        account = rng.randrange(n) if index is None else index
        for _ in range(_REPICKS):
            if not self.quiet(account, ts_ms):
                return account
            account = rng.randrange(n)
        # Rare (0.4 ** 8 with 40 % quiet): the next account that still comes, if any does.
        for step in range(n):
            if not self.quiet((account + step) % n, ts_ms):
                return (account + step) % n
        return account

    def directory_csv(self) -> str:
        """The directory file of `storepulse accounts load`: the listed accounts."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["account_id", "name", "tier", "sales_rep", "region"])
        for p in self.profiles:
            if p.in_directory:
                writer.writerow([p.account_id, p.name, p.tier, p.sales_rep or "", p.region])
        return out.getvalue()
