"""Both stages as real processes on the real broker and Redis: exact customer KPIs, drills, import.

`storepulse worker` and `storepulse customers-worker` run as child processes; customers have
sessions on every events partition; the reports (`storepulse customers report|cohorts --json`)
must equal tests/reference_customers.py over the events the worker accepted, after kill -9 of
either stage, a rebalance of both, and history imports. Everything is accounted for: every
message of the events topic, every fact of the customer topic, an empty outbox.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from streams.contract.events import EventParser, Rejected
from streams.settings import Settings
from streams.store import customer_keys as ck
from streams.store import keys
from tests import harness
from tests.integration.streams.store.test_customers import rounded
from tests.integration.streams.worker.test_worker import published
from tests.reference import dumps, event
from tests.reference_customers import Reference
from tests.reference_sessions import cart_list, expected_sessions
from tests.reference_sessions import kpis as session_kpis

pytestmark = pytest.mark.slow

HOUR_MS = 3_600_000
USERS = [f"u-{i}" for i in range(14)]
ACCOUNTS = {f"acct-{i}": [f"acct-{i}-user-{j}" for j in range(3)] for i in range(4)}
SKUS = ["A", "B", "C"]


def stage_settings(make_settings: Any, **extra: Any) -> Settings:
    # Three events partitions and two customer partitions: a customer's sessions spread over
    # the first, its facts meet on one of the second. A lateness of 3 days takes 2 days of
    # events in any order.
    values = {
        "partitions": 3,
        "customer_partitions": 2,
        "allowed_lateness_seconds": 3 * 86_400,
        "batch_size": 50,
    }
    return make_settings(**(values | extra))


def make_customer_trace(
    n_sessions: int, now_ms: int, seed: int, prefix: str = "cs"
) -> list[tuple[bytes | None, bytes]]:
    """Sessions of the last 2 days: returning users, B2B accounts with several users, logins
    half-way, orders, re-sent events, a few bad lines; keyed by session."""
    rng = random.Random(seed)
    out: list[tuple[bytes | None, bytes]] = []
    for i in range(n_sessions):
        sid = f"{prefix}-{i}"
        r = rng.random()
        if r < 0.35:
            who: dict[str, str] = {}
        elif r < 0.75:
            who = {"user_id": rng.choice(USERS)}
        else:
            account = rng.choice(sorted(ACCOUNTS))
            who = {"account_id": account, "user_id": rng.choice(ACCOUNTS[account])}
        login_at = rng.choice([0, 0, 1, 2])
        seg = {"channel": rng.choice(["email", "organic", "paid_search"]), "device": "mobile"}
        t = now_ms - rng.randint(HOUR_MS, 47 * HOUR_MS)
        evs = []
        for k in range(rng.randint(1, 3)):
            ident = who if k >= login_at else {}
            evs.append(event("visit", f"{sid}-v{k}", sid, t, **seg, **ident))
            t += rng.randint(1_000, 40 * 60_000)
        if rng.random() < 0.5:  # a cart: adds, now and then a removal (of any sku)
            ident = who if len(evs) >= login_at else {}
            for j in range(rng.randint(1, 2)):
                price = rng.choice(["4.50", "19.99", "120.00"])
                qty = rng.randint(1, 3)
                extra = {"sku": rng.choice(SKUS), "quantity": qty, "unit_price": price}
                evs.append(event("add_to_cart", f"{sid}-a{j}", sid, t, **extra, **seg, **ident))
                t += rng.randint(1_000, 5 * 60_000)
            if rng.random() < 0.3:
                extra = {"sku": rng.choice(SKUS), "quantity": rng.randint(1, 4)}
                evs.append(event("remove_from_cart", f"{sid}-r", sid, t, **extra, **seg, **ident))
                t += rng.randint(1_000, 60_000)
        if rng.random() < 0.4:
            revenue = f"{rng.randint(100, 40_000) / 100:.2f}"
            currency = "EUR" if rng.random() < 0.9 else "USD"
            evs.append(
                event(
                    "purchase", f"{sid}-p", sid, t, revenue=revenue, currency=currency, **seg, **who
                )
            )
        if rng.random() < 0.3:
            rng.shuffle(evs)
        if rng.random() < 0.1:
            evs += rng.sample(evs, k=1)
        out += [(sid.encode(), dumps(e)) for e in evs]
    rng.shuffle(out)
    out.sort(key=lambda kv: kv[0] or b"")
    bad = [
        (b"bad-1", b"{not json"),
        (b"bad-2", dumps(event("visit", "x1", "bad-2", now_ms + 86_400_000, user_id="u-1"))),
        (b"other-key", dumps(event("visit", "x2", "bad-3", now_ms, user_id="u-1"))),
    ]
    for item in bad:
        out.insert(rng.randint(0, len(out)), item)
    return out


def accepted_events(messages: dict[tuple[int, int], bytes], now_ms: int) -> list[dict[str, Any]]:
    """The valid events among the published ones, in partition order (what the worker accepts
    with this trace: no event is late, the future one and the bad lines are refused)."""
    parser = EventParser()
    out = []
    for value in messages.values():
        try:
            ev = parser.parse(value)
        except Rejected:
            continue
        if ev.ts > now_ms + 300_000:
            continue
        body = json.loads(value)
        if body["session_id"] == "bad-3":
            continue  # keyed by another id: rejected "key"
        out.append(body)
    return out


def _sum(client: redis.Redis, topic: str, key: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for p in client.smembers(keys.partitions_key(topic)):
        for k, v in client.hgetall(keys.partition_prefix(topic, int(p)) + key).items():
            totals[k.decode()] = totals.get(k.decode(), 0) + int(v)
    return totals


def customer_accounted(settings: Settings) -> tuple[int, int]:
    """(facts and non-facts the customer stage accounted for, entries left in the outboxes)."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        totals = _sum(client, settings.customer_topic, keys.TOTALS)
        done = sum(v for k, v in totals.items() if k.startswith((ck.TOTAL_FACTS + "|", "rej|")))
        left = sum(
            client.xlen(keys.partition_prefix(settings.topic, p) + keys.OUTBOX)
            for p in range(settings.partitions)
        )
    finally:
        client.close()
    return done, left


def wait_both_stages(
    settings: Settings, n: int, workers: list[harness.Worker], facts_known: int | None = None
) -> int:
    """Stage 1 accounts for n messages, the outboxes drain, stage 2 applies every fact (all of
    the topic; facts_known: that many, when the test knows how many there are)."""
    harness.wait_accounted(settings, n, timeout=120, worker=workers[0])
    deadline = time.monotonic() + 120
    while customer_accounted(settings)[1] > 0:
        assert time.monotonic() < deadline, "the outbox never drained"
        time.sleep(0.2)
    facts = asyncio.run(
        harness.consume_all(settings.kafka_bootstrap, settings.customer_topic, facts_known)
    )
    while (done := customer_accounted(settings)[0]) < len(facts):
        for w in workers:
            assert w.alive(), w.proc.log_tail(40)
        assert time.monotonic() < deadline, f"stage 2 applied {done} of {len(facts)} facts"
        time.sleep(0.2)
    assert done == len(facts)
    return len(facts)


def reports(settings: Settings, now_ms: int) -> dict[str, Any]:
    from_s = (now_ms - 3 * 86_400_000) // 1000
    to_s = (now_ms + 86_400_000) // 1000
    out = {}
    for what, period in (("report", "day"), ("report", "hour"), ("cohorts", "day")):
        result = harness.run_cli(
            [
                "customers",
                what,
                "--period",
                period,
                "--from",
                str(from_s * 1000),
                "--to",
                str(to_s * 1000),
                "--json",
            ],
            settings,
        )
        out[f"{what}/{period}"] = json.loads(result.stdout)
    return out


def expected(events: list[dict[str, Any]], now_ms: int, history: dict[str, int] | None = None):
    ref = Reference(events, history)
    from_s = (now_ms - 3 * 86_400_000) // 1000
    to_s = (now_ms + 86_400_000) // 1000
    return {
        "report/day": ref.report("day", from_s, to_s),
        "report/hour": ref.report("hour", from_s, to_s),
        "cohorts/day": ref.cohorts("day", from_s, to_s),
    }


def assert_reports(got: dict[str, Any], want: dict[str, Any]) -> None:
    for name in want:
        assert rounded(got[name]) == rounded(want[name]), name
    days = got["report/day"]["rows"]
    assert sum(r["orders"] for r in days) > 0 and sum(r["anonymous_orders"] for r in days) > 0
    assert sum(r["repeat_customers"] for r in days) > 0


def session_range(now_ms: int) -> tuple[int, int]:
    return (now_ms - 3 * 86_400_000) // 1000, (now_ms + 86_400_000) // 1000


def assert_sessions_and_carts(
    settings: Settings, messages: dict[tuple[int, int], bytes], now_ms: int
) -> None:
    """`storepulse kpis` (ended sessions, carts, recoveries) and `storepulse carts` (every
    page) equal tests/reference_sessions.py over what each partition accepted."""
    values = [
        (p, v)
        for (p, _), v in sorted(messages.items())
        if b'"session_id": "bad-3"' not in v  # keyed by another id: rejected "key"
    ]
    exp = expected_sessions(values, now_ms, lateness_ms=3 * 86_400_000)
    from_s, to_s = session_range(now_ms)
    span = ["--from", str(from_s * 1000), "--to", str(to_s * 1000), "--json"]
    for by in (None, "channel"):
        got = json.loads(
            harness.run_cli(["kpis", *span, *(["--by", by] if by else [])], settings).stdout
        )
        want = session_kpis(exp, from_s, to_s, by=by)
        groups = got["groups"] if by else {"all": got}
        for name, figures in want.items():
            assert {k: groups[name][k] for k in figures} == figures, (by, name)
    pages, cursor = [], None
    while True:
        more = ["--cursor", cursor] if cursor else []
        page = json.loads(
            harness.run_cli(
                ["carts", "--abandoned", *span, "--limit", "40", *more], settings
            ).stdout
        )
        pages += page["carts"]
        cursor = page["next"]
        if cursor is None:
            break
    assert pages == cart_list(exp, from_s, to_s)
    everything = session_kpis(exp, from_s, to_s)["all"]
    assert everything["abandoned_carts"] > 20 and everything["recovered_carts"] > 3
    assert any(c["recovered_at"] for c in pages) and any(c["customer"] is None for c in pages)


def stages(settings: Settings, run_dir: Path, suffix: str = "") -> list[harness.Worker]:
    return [
        harness.Worker(settings, run_dir, f"worker{suffix}").start(),
        harness.Worker(settings, run_dir, f"customers{suffix}", "customers-worker").start(),
    ]


def test_kill_9_of_both_stages_mid_stream_then_restart_is_exact(
    make_settings, tmp_path: Path
) -> None:
    settings = stage_settings(make_settings, batch_size=20)
    now_ms = int(time.time() * 1000)
    trace = make_customer_trace(400, now_ms, seed=5)
    size = len(trace) // 3
    parts = [trace[:size], trace[size : 2 * size], trace[2 * size :]]
    rng = random.Random(5)
    kills = 0
    done = 0
    for round_, part in enumerate(parts[:2]):
        asyncio.run(harness.produce(settings.kafka_bootstrap, settings.topic, part))
        workers = stages(settings, tmp_path, f"-{round_}")
        point = done + rng.randint(1, len(part) // 2)
        # Stage 1 mid-stream; stage 2 a moment later, mid-stream too (its facts are flowing).
        deadline = time.monotonic() + 60
        while harness.accounted(settings)["accounted"] < point:
            assert time.monotonic() < deadline and workers[0].alive(), workers[0].proc.log_tail(30)
            time.sleep(0.01)
        workers[0].kill()
        while customer_accounted(settings)[0] == 0:
            assert time.monotonic() < deadline, workers[1].proc.log_tail(30)
            time.sleep(0.01)
        time.sleep(rng.random() * 0.5)
        workers[1].kill()
        kills += 2
        done += len(part)
    asyncio.run(harness.produce(settings.kafka_bootstrap, settings.topic, parts[2]))
    messages = asyncio.run(published(settings, len(trace)))
    workers = stages(settings, tmp_path, "-last")
    try:
        wait_both_stages(settings, len(trace), workers)
    finally:
        for w in workers:
            w.stop()
    assert kills == 4
    assert_reports(reports(settings, now_ms), expected(accepted_events(messages, now_ms), now_ms))
    assert_sessions_and_carts(settings, messages, now_ms)


def test_a_second_worker_of_each_stage_joins_and_leaves(make_settings, tmp_path: Path) -> None:
    settings = stage_settings(make_settings)
    now_ms = int(time.time() * 1000)
    trace = make_customer_trace(800, now_ms, seed=8)
    feeder = harness.Feeder(settings.kafka_bootstrap, settings.topic, trace, rate=80)
    feeder.start()
    first = stages(settings, tmp_path, "-a")
    other = settings.model_copy(
        update={
            "worker_web_port": harness.free_port(),
            "customer_worker_web_port": harness.free_port(),
        }
    )
    second = [
        harness.Worker(other, tmp_path, "worker-b"),
        harness.Worker(other, tmp_path, "customers-b", "customers-worker"),
    ]
    try:
        deadline = time.monotonic() + 60
        while customer_accounted(settings)[0] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        for w in second:
            w.start()
        for w in second:
            # Each took partitions over mid-stream, from the offsets in Redis.
            wait_log(w, "resuming from offset")
        assert feeder.is_alive(), "the feed ended before the rebalance: slow it down"
        for w in second:
            w.stop()
        assert feeder.finish() == len(trace)
        wait_both_stages(settings, len(trace), first)
    finally:
        for w in second + first:
            w.stop()
    messages = asyncio.run(published(settings, len(trace)))
    assert_reports(reports(settings, now_ms), expected(accepted_events(messages, now_ms), now_ms))
    # Sessions ended, carts listed and recovered exactly across both hand-overs too.
    assert_sessions_and_carts(settings, messages, now_ms)


def wait_log(worker: harness.Worker, text: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker.proc.log_file.exists() and text in worker.proc.log_file.read_text():
            return
        assert worker.alive(), (
            f"{worker.proc.spec.name} exited ({worker.proc.returncode()}):\n"
            f"{worker.proc.log_tail(30)}"
        )
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the log of {worker.proc.spec.name}")


def test_customers_across_partitions_then_the_history_import(make_settings, tmp_path: Path) -> None:
    """A clean run of both stages is exact; then imports (bad, good, again, changed) on it."""
    settings = stage_settings(make_settings)
    now_ms = int(time.time() * 1000)
    trace = make_customer_trace(300, now_ms, seed=3)
    asyncio.run(harness.produce(settings.kafka_bootstrap, settings.topic, trace))
    messages = asyncio.run(published(settings, len(trace)))
    events = accepted_events(messages, now_ms)
    workers = stages(settings, tmp_path)
    head = "customer_id,first_order_at,orders,last_order_at\n"
    try:
        facts = wait_both_stages(settings, len(trace), workers)
        # Some customer had sessions on more than one events partition.
        where: dict[str, set[int]] = {}
        sessions = {e["session_id"] for e in events}
        for (p, _), value in messages.items():
            body = json.loads(value) if value.startswith(b'{"event_id') else {}
            who = body.get("account_id") or body.get("user_id")
            if who and body["session_id"] in sessions:
                where.setdefault(who, set()).add(p)
        assert max(len(parts) for parts in where.values()) >= 3
        assert facts == sum(
            v for k, v in harness.accounted(settings).items() if k.startswith("fx|")
        )  # a clean run publishes each fact once
        before = reports(settings, now_ms)
        assert_reports(before, expected(events, now_ms))
        assert_sessions_and_carts(settings, messages, now_ms)

        bad = tmp_path / "bad.csv"
        bad.write_text(
            head + "u-1,2024-01-01T00:00:00Z,2,2025-01-01T00:00:00Z\n"
            "u-2,2024-01-01T00:00:00Z,0,2025-01-01T00:00:00Z\n"
        )
        result = harness.run_cli(["customers", "import", str(bad)], settings, check=False)
        assert result.returncode == 2
        assert "line 3: orders must be a whole number >= 1" in result.stderr
        assert "nothing was imported" in result.stderr and "Traceback" not in result.stderr

        good = tmp_path / "history.csv"
        rows = {"u-1": 1, "u-2": 2, "acct-0": 3}
        good.write_text(
            head
            + "".join(
                f"{c},2024-01-01T00:00:00Z,{n},2025-06-01T12:00:00+02:00\n" for c, n in rows.items()
            )
        )
        out = harness.run_cli(["customers", "import", str(good), "--json"], settings)
        assert json.loads(out.stdout)["rows"] == 3
        # The whole topic: the 3 rows, and nothing of the bad file.
        assert wait_both_stages(settings, len(trace), workers) == facts + 3
        imported = reports(settings, now_ms)
        assert_reports(imported, expected(events, now_ms, rows))
        assert imported != before  # the history moved new, repeat and cohort figures

        harness.run_cli(["customers", "import", str(good)], settings)  # again: no change
        wait_both_stages(settings, len(trace), workers, facts + 6)
        assert reports(settings, now_ms) == imported

        rows["u-2"] = 1  # a changed row replaces the earlier one
        good.write_text(head + "u-2,2024-01-01T00:00:00Z,1,2025-01-01T00:00:00Z\n")
        harness.run_cli(["customers", "import", str(good)], settings)
        wait_both_stages(settings, len(trace), workers, facts + 7)
        assert_reports(reports(settings, now_ms), expected(events, now_ms, rows))
    finally:
        for w in workers:
            w.stop()
