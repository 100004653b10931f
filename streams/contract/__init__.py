"""The event contract and the pure rules on it (funnel, KPI math, money, time): no I/O."""
