"""What apply_batch.lua writes on a real redis-server is exactly what keys.py reads back."""

from __future__ import annotations

from streams.store import keys
from streams.store import session_keys as sk
from streams.store.client import connect
from streams.store.funnel import FunnelStore
from tests.integration.streams.store.test_funnel import T0, make_processor, records
from tests.reference import dumps, event


async def test_every_key_and_field_the_script_writes_is_in_the_grammar(make_settings) -> None:
    s = make_settings(partitions=1)
    sid = "s-keys"
    old = "s-old"  # an abandoned cart that ends once the main session's events move the watermark
    trace = [
        event("visit", "o0", old, T0 - 7_200_000, country="FR"),
        event("add_to_cart", "o1", old, T0 - 7_199_000, sku="A", quantity=2),
        event("remove_from_cart", "o2", old, T0 - 7_198_000, sku="A", quantity=1),
        event("visit", "e0", sid, T0, channel="email", device="tablet", country="DE"),
        event("add_to_cart", "e1", sid, T0 + 1_000),
        event("checkout_step", "e2", sid, T0 + 2_000, step="shipping"),
        event("checkout_step", "e3", sid, T0 + 3_000, step="payment"),
        event("checkout_step", "e4", sid, T0 + 4_000, step="review"),
        event("purchase", "e5", sid, T0 + 5_000, order_id="o-1", revenue="12.5000"),
        event("visit", "e0", sid, T0),  # a duplicate
    ]
    client = connect(s)
    try:
        await client.flushdb()
        proc = make_processor(client, s)
        await proc.process([*records([dumps(e) for e in trace]), *records([b"{"], start=10)])
        prefix = keys.partition_prefix(s.topic, 0)
        names = sorted(k.decode() for k in await client.keys("*"))
        assert keys.partitions_key(s.topic) in names
        forms = {
            keys.META: "hash",
            keys.TOTALS: "hash",
            keys.BUCKETS: "zset",
            keys.SESSIONS: "zset",
            keys.ORDERS: "hash",
            keys.ORDER_TIMES: "zset",
            sk.ENDED_TOTALS: "hash",
            keys.ANON_DAYS: "zset",
            sk.ENDED: "zset",
            sk.CARTS: "zset",
            sk.CART_DETAILS: "hash",
        }
        seen_buckets = ended_buckets = 0
        for name in names:
            if name == keys.partitions_key(s.topic):
                continue
            assert name.startswith(prefix), name
            rest = name.removeprefix(prefix)
            kind = (await client.type(name)).decode()
            if rest.startswith(keys.BUCKET_PREFIX):
                seen_buckets += 1
                assert kind == "hash"
                for field in await client.hkeys(name):
                    assert field.decode().partition(keys.SEP)[0] in keys.BUCKET_KINDS
            elif rest.startswith(sk.ENDED_BUCKET_PREFIX):
                ended_buckets += 1
                assert kind == "hash"
                for field in await client.hkeys(name):
                    assert field.decode().partition(keys.SEP)[0] in sk.BUCKET_KINDS_STAGE1
            elif rest.startswith(keys.ANON_PREFIX):
                assert kind == "hash"  # hour -> anonymous orders (no user or account here)
                assert await client.hgetall(name) == {str(T0 // 3_600_000 * 3_600).encode(): b"1"}
            elif rest.startswith(keys.SESSION_PREFIX):
                assert rest in {keys.SESSION_PREFIX + sid, keys.SESSION_PREFIX + old}
                assert kind == "hash"
            elif rest.startswith(sk.CART_PREFIX):
                assert rest in {sk.CART_PREFIX + sid, sk.CART_PREFIX + old} and kind == "hash"
            else:
                assert forms.get(rest) == kind, (rest, kind)
        # All six events of the main session within one minute, the old one's; the old one's end.
        assert (seen_buckets, ended_buckets) == (2, 1)
        meta = {k.decode() for k in await client.hkeys(prefix + keys.META)}
        assert meta <= keys.META_FIELDS and keys.META_OFFSET in meta
        raw = await client.hgetall(prefix + keys.TOTALS)
        assert {k.decode().partition(keys.SEP)[0] for k in raw} <= keys.TOTAL_KINDS
        ended = await client.hgetall(prefix + sk.ENDED_TOTALS)
        assert {k.decode().partition(keys.SEP)[0] for k in ended} <= sk.TOTAL_KINDS_STAGE1

        # And read back through the parsers: the meaning of every counter.
        store = FunnelStore(client, s)
        totals = keys.parse_totals(await store.totals([0]))
        assert sum(totals.events.values()) == 9
        assert (totals.duplicates, totals.rejected) == (1, {"malformed": 1})
        assert totals.funnel[("purchase", "email", "tablet")] == 1
        assert totals.orders == {("email", "tablet"): 1}
        assert totals.revenue_units == {"EUR": 125_000}
        sums = await store.bucket_sums(0, 10**11, [0])
        by_country = keys.bucket_counts(sums.fields, "country")["DE"]
        assert by_country.sessions["review"] == 1 and by_country.revenue_units == {"EUR": 125_000}
        ended = sk.session_counts(sums.fields, "country")["FR"]
        assert (ended.ended, ended.abandoned, ended.abandoned_units) == (1, 1, {"EUR": 199_900})
        cursor = await store.load_cursor(0)
        assert (cursor.offset, cursor.watermark_ms) == (10, T0 + 5_000)
    finally:
        await client.aclose()
