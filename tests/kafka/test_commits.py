"""The group's committed offset never passes input that was not applied (GitHub issue 13).

A valid message is acked only once it is applied and its partition task's flush has landed; it may first wait in
the task's merge buffers (while the merge waits on another source). An invalid message after it on the same
topic-partition goes to ``dead-letter`` at once. Acking that dead letter at once let faust commit past the held
message (its ``_new_offset`` treats the committed offset as the last processed one), so a worker that died before
applying it never read the valid message again. Here the merge holds the valid message (tests/kafka/failpoint:
``CHARTER_TEST_HOLD_ON``), so it is held for certain while the committed offset is watched; the restarted worker
runs without the failpoint.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.kafka.harness import OutputReader, failpoint_path, wait_for

WATCH = 4.0  # seconds the committed offset is watched: four of the worker's 1 s commit intervals


def committed(dep, topic: str, partition: int = 0) -> int | None:
    """The consumer group's committed offset of one input topic-partition, read from the broker (None: none)."""

    async def run() -> int | None:
        admin = AIOKafkaAdminClient(bootstrap_servers=dep.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(dep.env["CHARTER_APP_ID"])
        finally:
            await admin.close()
        meta = offsets.get(TopicPartition(dep.prefix + topic, partition))
        return None if meta is None or meta.offset < 0 else meta.offset

    return asyncio.run(run())


def send(dep, topic: str, values: list[bytes], key: bytes) -> list[int]:
    """Append ``values`` to partition 0 of ``topic``, in order; their offsets."""

    async def run() -> list[int]:
        producer = AIOKafkaProducer(bootstrap_servers=dep.bootstrap, acks="all")
        await producer.start()
        try:
            return [(await producer.send_and_wait(dep.prefix + topic, v, key=key, partition=0)).offset
                    for v in values]
        finally:
            await producer.stop()

    return asyncio.run(run())


def claim(event_id: str) -> bytes:
    return orjson.dumps({"event_id": event_id, "customer_id": "C1", "occurred_at": datetime.now(UTC).isoformat(),
                         "previous_operator": "Free", "termination_fee_cents": 4900, "proof_id": "P1"})


def watch_committed(dep, topic: str, at_most: int | None, seconds: float) -> list[int | None]:
    """Read the committed offset for ``seconds``; fail as soon as it passes ``at_most``."""
    seen = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        offset = committed(dep, topic)
        seen.append(offset)
        assert offset is None or (at_most is not None and offset <= at_most), (
            f"the group committed {offset} on {topic} although offsets from {at_most or 0} on are not applied "
            f"(read so far: {seen})")
        time.sleep(0.25)
    return seen


def test_a_dead_letter_does_not_commit_past_held_input(deployment):
    dep = deployment(partitions=1, PYTHONPATH=failpoint_path(), CHARTER_TEST_HOLD_ON="held-1")
    worker = dep.worker().start()
    decisions = OutputReader(dep, ["claim-decision", "dead-letter"])
    try:
        offsets = send(dep, "switch-claim", [claim("held-1"), b"not json"], key=b"C1")
        assert offsets == [0, 1]
        wait_for(lambda: decisions.snapshot("dead-letter"), 20, "the invalid message's dead letter")
        assert not decisions.snapshot("claim-decision"), "the held claim was applied"
        watch_committed(dep, "switch-claim", at_most=None, seconds=WATCH)
        worker.kill()

        # a second round on a partition that has committed before: committed 2, held claim at 2, invalid at 3
        del dep.env["CHARTER_TEST_HOLD_ON"]
        worker.start()
        wait_for(lambda: [v for _, _, v in decisions.snapshot("claim-decision") if v["claim_event_id"] == "held-1"],
                 60, "the held claim's decision after the restart")
        wait_for(lambda: committed(dep, "switch-claim") == 2, 30, "the restarted worker to commit both messages")
        worker.kill()
        dep.env["CHARTER_TEST_HOLD_ON"] = "held-2"
        worker.start()
        assert send(dep, "switch-claim", [claim("held-2"), b"still not json"], key=b"C1") == [2, 3]
        wait_for(lambda: len(decisions.snapshot("dead-letter")) >= 3, 20, "the second invalid message's dead letter")
        watch_committed(dep, "switch-claim", at_most=2, seconds=WATCH)
        assert not [v for _, _, v in decisions.snapshot("claim-decision") if v["claim_event_id"] == "held-2"]
        worker.kill()
        del dep.env["CHARTER_TEST_HOLD_ON"]
        worker.start()
        wait_for(lambda: [v for _, _, v in decisions.snapshot("claim-decision") if v["claim_event_id"] == "held-2"],
                 60, "the second held claim's decision after the restart")
        wait_for(lambda: committed(dep, "switch-claim") == 4, 30, "the worker to commit everything at last")
    finally:
        decisions.close()
