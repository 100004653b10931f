"""A stall is data waiting on an assigned partition with no batch applied; idle is never one."""

from __future__ import annotations

from streams.store.client import connect
from streams.worker.progress import Progress
from tests.integration.streams.store.test_funnel import T0, make_processor, records
from tests.reference import dumps, event


class Marks:
    """The consumer as the processor sees it: high-water marks per assigned partition."""

    def __init__(self) -> None:
        self.hw: dict[int, int] = {}
        self.sought: list[tuple[int, int]] = []

    def highwater(self, partition: int) -> int | None:
        return self.hw.get(partition)

    async def seek_to_earliest(self, partition: int) -> int:
        self.sought.append((partition, 0))
        return 0

    async def seek(self, partition: int, offset: int) -> None:
        self.sought.append((partition, offset))


async def test_stalled_only_while_data_waits_and_nothing_is_applied(make_settings) -> None:
    s = make_settings(partitions=1)
    clock = [0.0]
    client = connect(s)
    try:
        await client.flushdb()
        marks = Marks()
        proc = make_processor(client, s)
        proc.consumer = marks
        proc.progress = Progress(lambda: clock[0])
        values = [dumps(event("visit", f"e{i}", f"s{i}", T0 + i)) for i in range(3)]
        marks.hw[0] = 3
        await proc.process(records(values))  # offsets 0..2 applied: nothing waits
        clock[0] = 20.0
        assert proc.stalled_for() == 0.0
        marks.hw[0] = 10  # 7 records fetched and waiting, none applied
        clock[0] = 25.0
        assert proc.stalled_for() == 5.0  # counted from the last look that found it idle
        clock[0] = 56.0
        assert proc.stalled_for() == 36.0
        more = [dumps(event("visit", f"f{i}", f"t{i}", T0 + i)) for i in range(7)]
        await proc.process(records(more, start=3))
        marks.hw[0] = 12  # more data came meanwhile
        clock[0] = 57.0
        assert proc.stalled_for() == 1.0  # progress: counted from the apply
        marks.hw.clear()  # partition revoked: it has no mark here and never counts
        clock[0] = 500.0
        assert proc.stalled_for() == 0.0
    finally:
        await client.aclose()


async def test_a_fallen_high_water_mark_sends_the_partition_back_to_its_last_record(
    make_settings,
) -> None:
    s = make_settings(partitions=1)
    client = connect(s)
    try:
        await client.flushdb()
        marks = Marks()
        proc = make_processor(client, s)
        proc.consumer = marks
        values = [dumps(event("visit", f"e{i}", f"s{i}", T0 + i)) for i in range(5)]
        marks.hw[0] = 5
        await proc.process(records(values))
        assert await proc.watch_highwaters() == []
        marks.hw[0] = 2  # a new, shorter log under the same partition
        assert await proc.watch_highwaters() == [0]
        assert marks.sought == [(0, 4)]
        # Records past the target are dropped until offset 4 itself comes: then its
        # fingerprint decides (here the same record: the same log, nothing is re-counted).
        await proc.process(records(values[4:], start=4))
        totals = {
            k.decode(): int(v) for k, v in (await client.hgetall(f"sp:{{{s.topic}/0}}:tot")).items()
        }
        assert totals["ev|visit"] == 5
    finally:
        await client.aclose()
