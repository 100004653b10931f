"""The directory's topic feed on a real broker and redis-server: latest wins, bad records go to
the dead-letter topic with a reason and a count, and a re-read or a second feed changes nothing."""

from __future__ import annotations

import asyncio
import json

from streams.kafka import ensure_topics
from streams.settings import Settings
from streams.store.client import connect
from streams.store.directory import DirectoryStore
from streams.worker.deadletters import DeadLetterProducer
from streams.worker.directory_feed import DirectoryFeed
from tests import harness


def record(account: str, **fields: str | None) -> bytes:
    return json.dumps({"account_id": account, **fields}).encode()


MESSAGES: list[tuple[bytes | None, bytes]] = [
    (b"a1", record("a1", tier="silver", name="First")),
    (b"a1", b"{not json"),  # malformed
    (b"a2", record("a2", name="No tier")),  # schema: tier is required
    (b"zz", record("a3", tier="gold")),  # key: not the record's account_id
    (b"a2", record("a2", tier="bronze", sales_rep="sam")),
    (b"a1", record("a1", tier="gold", name="Second", sales_rep="rita")),  # the latest wins
]


async def run(s: Settings) -> None:
    await ensure_topics(s)
    await harness.produce(s.kafka_bootstrap, s.accounts_topic, MESSAGES)
    client = connect(s)
    dlq = DeadLetterProducer(s, s.accounts_topic)
    await dlq.start()
    try:
        store = DirectoryStore(client, s)
        await store.replace([])
        first = DirectoryFeed(s, store, dlq)
        stopping = asyncio.Event()
        task = asyncio.create_task(first.run(stopping))
        for _ in range(200):
            if first.offsets.get(0) == len(MESSAGES) - 1:
                break
            await asyncio.sleep(0.1)
        stopping.set()
        await task
        got = await DirectoryStore(client, s).read()
        assert {a: (r.tier, r.name, r.sales_rep) for a, r in got.rows.items()} == {
            "a1": ("gold", "Second", "rita"),
            "a2": ("bronze", None, "sam"),
        }
        totals = await store.feed_totals()
        assert totals.applied == 3
        assert dict(totals.rejected) == {"malformed": 1, "schema": 1, "key": 1}
        letters = await harness.consume_all(s.kafka_bootstrap, s.dlq_topic, 3)
        bodies = [json.loads(v) for _, _, _, v in letters]
        assert [(b["reason"], b["offset"], b["topic"]) for b in bodies] == [
            ("malformed", 1, s.accounts_topic),
            ("schema", 2, s.accounts_topic),
            ("key", 3, s.accounts_topic),
        ]
        assert "tier is missing" in bodies[1]["detail"]
        # A second feed (another customers-worker, or this one restarted) resumes from Redis:
        # nothing is applied or dead-lettered again.
        again = DirectoryFeed(s, store, dlq)
        stopping = asyncio.Event()
        task = asyncio.create_task(again.run(stopping))
        await asyncio.sleep(1.5)
        stopping.set()
        await task
        assert again.applied == 0 and (await store.feed_totals()).applied == 3
        assert len(await harness.consume_all(s.kafka_bootstrap, s.dlq_topic, wait=3)) == 3
        # A feed that missed the stored offset (it read before another applied) is refused
        # by the offset check and goes on from the stored one.
        ok, stored = await store.apply_feed(0, -1, 5, [], {})
        assert (ok, stored) == (False, 5)
    finally:
        await dlq.stop()
        await client.aclose()


def test_the_accounts_topic_feeds_the_directory_exactly(make_settings) -> None:
    asyncio.run(run(make_settings(accounts_topic=harness.unique("accounts"))))
