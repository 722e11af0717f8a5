"""Soak (GitHub issue 4): ten minutes of steady real-time input with a rebalance every minute, then exact parity
with replay (no compensation missing or repeated) and flat memory.

Input: copies of the harness ``scenario`` (40 customers, 30 calls, ~220 events over ~25 s), a new copy every
``COPY_EVERY`` seconds with fresh customer, call and event ids and its own time origin: ~20 events/s, steady.
Rebalances: a second worker joins at minute 1, 3, 5, ... and leaves (SIGTERM) at minute 2, 4, 6, ...
Memory: the first worker's RSS is sampled at every minute mark; the minute-``SOAK_MINUTES`` sample must be under
1.5x the minute-2 sample (the first minutes include imports, connections and table warm-up).

``CHARTER_SOAK_MINUTES`` shortens the run while working on this test (default and CI: 10).
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psutil
import pytest

from streams.core.timeutil import parse_instant, to_us
from tests.kafka.faults import await_parity, compensation_repeats, last_due, log_excerpt, worker_problems
from tests.kafka.harness import (
    OutputReader,
    expected_outputs,
    lines_of,
    normalize,
    publish_lateness,
    publish_records,
    scenario,
    wait_for,
)

SOAK_MINUTES = int(os.environ.get("CHARTER_SOAK_MINUTES", "10"))
COPY_EVERY = 10.0  # seconds between two scenario copies
COPY_SPAN = 25.0  # a copy's events lie within this many seconds of its origin
HORIZON = 20.0


def soak_records(start: datetime, minutes: int) -> list[dict[str, Any]]:
    """Scenario copies with fresh ids, one every COPY_EVERY s, all events within ``minutes`` of ``start``,
    merged in occurred_at order."""
    records: list[dict[str, Any]] = []
    k = 0
    while k * COPY_EVERY + COPY_SPAN <= minutes * 60:
        tag = f"S{k:03d}-"
        for rec in scenario(start + timedelta(seconds=k * COPY_EVERY), customers=40, calls=30, seed=1000 + k):
            value = rec["value"]
            for field in ("customer_id", "call_id", "event_id"):
                if value.get(field) is not None:
                    value[field] = tag + value[field]
            records.append(rec)
        k += 1
    records.sort(key=lambda r: parse_instant(r["value"]["occurred_at"]))
    return records


def _rss_mb(worker) -> float:
    return round(psutil.Process(worker.proc.pid).memory_info().rss / 2**20, 1)


@pytest.mark.slow
def test_soak_ten_minutes_with_a_rebalance_every_minute(deployment):
    assert SOAK_MINUTES >= 3, "the memory check compares the last minute with minute 2"
    dep = deployment(partitions=4)
    first = dep.worker("a").start()
    second = dep.worker("b")
    start = datetime.now(UTC) + timedelta(seconds=2)
    records = soak_records(start, SOAK_MINUTES)
    reader = OutputReader(dep)
    sent_at: list[float] = []
    publisher = threading.Thread(target=publish_records, args=(dep, records), kwargs={"sent_at": sent_at},
                                 daemon=True)
    rss: list[float] = []
    exits: list[int | None] = []
    try:
        publisher.start()
        wait_for(lambda: datetime.now(UTC) >= start, 10, "the soak to start")
        t0 = time.monotonic()
        rss.append(_rss_mb(first))
        for minute in range(1, SOAK_MINUTES + 1):
            wait_for(lambda m=minute: time.monotonic() >= t0 + 60 * m, 60 * minute + 30, f"minute {minute}")
            assert first.alive(), f"the first worker died:\n{log_excerpt(first)}"
            rss.append(_rss_mb(first))
            if minute % 2:
                second.start()  # joins: the group rebalances
            else:
                second.stop()  # SIGTERM: leaves, the group rebalances
                exits.append(second.proc.returncode)
        publisher.join(120)
        assert not publisher.is_alive(), "the publisher did not finish"

        last = max(datetime.fromisoformat(r["value"]["occurred_at"]) for r in records)
        expected = expected_outputs(lines_of(records), dep.charter, to_us(last + timedelta(seconds=HORIZON)))
        try:
            await_parity(reader, expected, max(last, last_due(expected, dep.charter)) + timedelta(seconds=1),
                         timeout=120, hold=3.0)
        except AssertionError as e:
            got = reader.snapshot()
            want_ids = _compensation_ids(expected)
            have_ids = {v["compensation_id"] for t, _, v in got if t == "compensation"}
            raise AssertionError(
                f"{e}\ncompensations missing: {len(want_ids - have_ids)}, repeated: {compensation_repeats(got)}"
                f"\nrss MB by minute: {rss}\nsecond worker exit codes: {exits}"
                f"\n{publish_lateness(records, sent_at, set())}"
                f"\n--- first worker log (excerpt):\n{log_excerpt(first)}"
                f"\n--- second worker log (excerpt):\n{log_excerpt(second)}") from None
        rss_after = _rss_mb(first)
        seconds = (last - start).total_seconds()
        print(f"\nsoak: {len(records)} events in {seconds:.0f} s ({len(records) / seconds:.1f}/s), "
              f"{sum(expected.values())} outputs ({len(_compensation_ids(expected))} compensations), "
              f"{SOAK_MINUTES} rebalances, second worker exit codes {exits}, rss MB by minute {rss}, "
              f"after settling {rss_after}; log problems: first {worker_problems(first)}, "
              f"second {worker_problems(second, second.starts)}")
        assert normalize(reader.snapshot()) == expected
        assert first.alive() and first.starts == 1
        assert rss[SOAK_MINUTES] < 1.5 * rss[2], f"memory grew: rss MB by minute {rss}"
    finally:
        reader.close()


def _compensation_ids(expected) -> set[str]:
    ids = set()
    for k in expected:
        topic, _, value = orjson.loads(k)
        if topic == "compensation":
            ids.add(value["compensation_id"])
    return ids
