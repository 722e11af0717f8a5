"""The other charters live: ``ofcom-2026`` fed with a backlog from the past (its deadlines are local midnights, so the
worker must apply the backlog under event time, midnight by midnight), and engineer appointments with two workers.
Both against a real broker, compared with what ``charter replay`` gives for the same events."""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest

from streams.core.timeutil import to_us
from streams.gen import Flapping, generate
from streams.settings import settings_from_env
from streams.topics import SUBSCRIBERS_TABLE, changelog_name, ensure_topics
from tests.kafka.harness import (
    HORIZON,
    REPO,
    OutputReader,
    diff,
    expected_outputs,
    iso,
    lines_of,
    no_repeats,
    normalize,
    publish_records,
    run_scenario,
    wait_for,
)

APPOINTMENTS_CHARTER = str(REPO / "tests" / "charters" / "appointments-seconds-test.yaml")


def test_ofcom_backlog_from_the_past_is_applied_under_event_time(deployment):
    """Three weeks around Christmas 2025 and new year (bank holidays of England, so working days matter), published
    before any worker runs: every per-day compensation of that backlog, and every day since for what is still open,
    must be what replay gives up to now (a worker that moved to the wall clock first would pay the days of a repair
    that the backlog says ended, or skip the holidays)."""
    dep = deployment(partitions=4, charter="ofcom-2026")
    ensure_topics(settings_from_env(dep.env, create_topics=True))
    records = list(generate(300, seed=5, start=datetime(2025, 12, 15, tzinfo=UTC), days=20))
    publish_records(dep, records, realtime=False)
    lines = lines_of(records)
    reader = OutputReader(dep)
    try:
        dep.worker().start()

        def expected():
            # the per-day rules keep paying for outages and orders still open at the end of the file: up to now
            return expected_outputs(lines, dep.charter, to_us(datetime.now(UTC)))

        def matches():
            return normalize(reader.snapshot()) == expected()

        try:
            wait_for(matches, 180, "live outputs to equal replay's")
        except AssertionError:
            raise AssertionError(diff(expected(), normalize(reader.snapshot()))) from None
        out = reader.snapshot()
        rules = {v["rule"] for t, _, v in out if t == "compensation"}
        assert {"delayed_repair", "delayed_provision", "missed_appointment"} <= rules
        no_repeats(out)
    finally:
        reader.close()


def appointments(t0: datetime, customers: int, seed: int) -> list[dict]:
    """Each customer books an engineer a few seconds ahead; the visit is attended, a no-show, cancelled in time
    (before the 4 s notice), cancelled late, or attended after a late cancellation. Times avoid the instants of
    a threshold by far more than a publisher's lag."""
    rng = random.Random(seed)
    ev: list[tuple[float, str, dict]] = []

    def add(at: float, **value) -> None:
        value["event_id"] = f"a{len(ev)}"
        value["occurred_at"] = iso(t0 + timedelta(seconds=at))
        ev.append((at, "appointment", value))

    for i in range(customers):
        c, a = f"C{i:04d}", f"AP{i:04d}"
        booked = rng.uniform(0, 4)
        start = booked + rng.uniform(7, 12)
        end = start + 3
        add(booked, customer_id=c, appointment_id=a, type="booked", slot_start=iso(t0 + timedelta(seconds=start)),
            slot_end=iso(t0 + timedelta(seconds=end)))
        fate = i % 5
        if fate == 0:
            add(start + 1, customer_id=c, appointment_id=a, type="attended")
        elif fate == 2:
            add(start - 6, customer_id=c, appointment_id=a, type="cancelled")  # with the notice: nothing owed
        elif fate == 3:
            add(start - 1.5, customer_id=c, appointment_id=a, type="cancelled")  # too late: owed at once
        elif fate == 4:
            add(start - 1.5, customer_id=c, appointment_id=a, type="cancelled")
            add(start + 1, customer_id=c, appointment_id=a, type="attended")  # after the cancellation: still owed
        # fate 1: nobody came; owed at slot_end
    ev.sort(key=lambda e: e[0])
    return [{"topic": topic, "value": value} for _, topic, value in ev]


def test_appointments_with_two_workers_over_eight_partitions(deployment):
    dep = deployment(partitions=8, charter=APPOINTMENTS_CHARTER,
                     CHARTER_PROCESSING_GUARANTEE="exactly_once")
    a = dep.worker().start()
    b = dep.worker().start()
    wait_for(lambda: "partition" in b.log_text() and "loaded" in b.log_text(), 60, "the second worker's share")
    records = appointments(datetime.now(UTC) + timedelta(seconds=2), customers=60, seed=4)
    out = run_scenario(dep, records, isolation_level="read_committed")
    ids = no_repeats(out)
    # 12 no-shows, 12 late cancellations, 12 attended after a late cancellation
    assert len(ids) == 36
    assert {v["rule"] for t, _, v in out if t == "compensation"} == {"missed_appointment"}
    assert a.alive() and b.alive()


def test_a_skewed_backlog_pauses_the_source_that_floods_the_merge(deployment):
    """Eight days of alice-2007 traffic published before the worker starts, all on one partition: a fetch of a sparse
    topic (line-activation) brings days of it at once, while the merge applies the dense service-status day by day.
    With CHARTER_MAX_BUFFERED=300 the sparse topic-partition is paused instead of held whole, resumed as the merge
    reaches it, and the outputs are still replay's."""
    dep = deployment(partitions=1, charter="alice-2007", CHARTER_MAX_BUFFERED="300")
    ensure_topics(settings_from_env(dep.env, create_topics=True))
    start = (datetime.now(UTC) - timedelta(days=9)).replace(microsecond=0)
    records = list(generate(1500, seed=7, start=start, days=8))
    publish_records(dep, records, realtime=False)
    lines = lines_of(records)
    reader = OutputReader(dep)
    try:
        worker = dep.worker().start()

        def expected():
            return expected_outputs(lines, dep.charter, to_us(datetime.now(UTC)))

        try:
            wait_for(lambda: normalize(reader.snapshot()) == expected(), 180, "live outputs to equal replay's")
        except AssertionError:
            raise AssertionError(diff(expected(), normalize(reader.snapshot()))) from None
        no_repeats(reader.snapshot())
        log = worker.log_text()
        assert "paused: 300 events wait in its merge buffer" in log, "no source was paused: the test proves nothing"
        assert "resumed: its merge buffer is down to half" in log
    finally:
        reader.close()


def element_failure(t0: datetime, customers: int, element: str, down_at: float, up_at: float) -> list[dict]:
    """``customers`` customers on one network element (spread over every partition by their ids): each has its line
    active, then all go down within a second (the element fails) and come back together."""
    rng = random.Random(17)
    ev: list[tuple[float, str, dict]] = []

    def add(at: float, topic: str, **value) -> None:
        value["event_id"] = f"x{len(ev)}"
        value["occurred_at"] = iso(t0 + timedelta(seconds=at))
        ev.append((at, topic, value))

    for i in range(customers):
        c = f"E{i:04d}"
        add(rng.uniform(0, 1), "service-status", customer_id=c, service="internet", status="down",
            element_id=element)
        add(down_at + rng.uniform(0, 1), "service-status", customer_id=c, service="tv", status="down",
            element_id=element)
        add(up_at + rng.uniform(0, 1), "service-status", customer_id=c, service="internet", status="up")
        add(up_at + 1.5 + rng.uniform(0, 1), "service-status", customer_id=c, service="tv", status="up")
    ev.sort(key=lambda e: e[0])
    return [{"topic": topic, "value": value} for _, topic, value in ev]


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_an_incident_across_every_partition_survives_a_sigkill(deployment, guarantee):
    """SPEC 10 live: 48 customers of one element, spread over 8 partitions and two workers, go down; the incident
    opens at the 30th (the test charter's min_customers), the worker that counts it is SIGKILLed while it is open
    and restarted, then everybody comes back: exactly one `open` and one `closed` record, with the same id, and every
    output equals replay's."""
    dep = deployment(partitions=8, CHARTER_PROCESSING_GUARANTEE=guarantee)
    workers = [dep.worker().start(), dep.worker().start()]
    wait_for(lambda: all("partition" in w.log_text() and "loaded" in w.log_text() for w in workers), 60,
             "both workers' shares")
    records = element_failure(datetime.now(UTC) + timedelta(seconds=2), 48, "OLT-7", down_at=0.2, up_at=16)
    lines = lines_of(records)
    reader = OutputReader(dep, isolation_level="read_committed" if guarantee == "exactly_once" else
                          "read_uncommitted")
    try:
        publisher = threading.Thread(target=publish_records, args=(dep, records), daemon=True)
        publisher.start()
        wait_for(lambda: any(t == "incident" for t, _, _ in reader.snapshot()), 40, "the incident to open")
        # the element task's owner: the worker that loaded it last (log lines start with their time)
        owner = max(workers, key=lambda w: max((line for line in w.log_text().splitlines() if "elements:" in line),
                                               default=""))
        owner.kill()
        owner.start()
        publisher.join()
        last = max(datetime.fromisoformat(r["value"]["occurred_at"]) for r in records)
        until = last + timedelta(seconds=HORIZON)
        expected = expected_outputs(lines, dep.charter, to_us(until))
        wait_for(lambda: datetime.now(UTC) > until, HORIZON + 40, "the scenario's horizon")

        def same() -> bool:
            actual = normalize(reader.snapshot())
            return set(actual) == set(expected) and all(actual[k] >= n for k, n in expected.items())

        try:
            wait_for(same, 60, "live outputs to equal replay's")
        except AssertionError:
            raise AssertionError(diff(expected, normalize(reader.snapshot()))) from None
        out = reader.snapshot()
        incidents = [v for t, _, v in out if t == "incident"]
        statuses = sorted({(v["status"], v["incident_id"]) for v in incidents})
        assert [s for s, _ in statuses] == ["closed", "open"] and statuses[0][1] == statuses[1][1], incidents
        if guarantee == "exactly_once":
            no_repeats(out)
            assert len(incidents) == 2
        assert owner.starts == 2
    finally:
        reader.close()


def test_a_customer_flapping_for_two_years_keeps_a_small_row_live(deployment, tmp_path):
    """Issue 12 live: two years of a box flapping every 5 minutes (streams.gen.Flapping, with long outages, copies
    within the retention and late copies beyond it), published before the worker starts, under alice-2007 with a
    dedup_retention of 1 h. The worker applies it under event time; every output is what replay gives (and the
    compensations what tests/test_bounded_state.py computes from the scenario alone), and no row the worker wrote
    for the customer reached 2 KB."""
    from tests.test_bounded_state import expected_outage_compensations

    text = (REPO / "streams" / "charters" / "alice-2007.yaml").read_text(encoding="utf-8")
    path = tmp_path / "alice-2007-1h.yaml"
    path.write_text(text.replace("name: alice-2007", "name: alice-2007-1h") + "\ndedup_retention: 1h\n",
                    encoding="utf-8")
    dep = deployment(partitions=2, charter=str(path))
    ensure_topics(settings_from_env(dep.env, create_topics=True))
    flapping = Flapping("FLAP-L", start=(datetime.now(UTC) - timedelta(days=732)).replace(microsecond=0), days=730)
    publish_records(dep, flapping.records, realtime=False)
    reader = OutputReader(dep)
    try:
        dep.worker().start(wait=False)
        now = to_us(datetime.now(UTC))
        expected = expected_outputs(lines_of(flapping.records), dep.charter, now)
        try:
            wait_for(lambda: normalize(reader.snapshot()) == expected, 300, "live outputs to equal replay's")
        except AssertionError:
            raise AssertionError(diff(expected, normalize(reader.snapshot()))) from None
        comps = [dict(v) for t, _, v in reader.snapshot() if t == "compensation"]
        for c in comps:
            c.pop("emitted_at", None)
        assert comps == expected_outage_compensations(dep.charter, "FLAP-L", flapping.outages, ["internet"])
    finally:
        reader.close()
    sizes = changelog_value_sizes(dep, changelog_name(settings_from_env(dep.env), SUBSCRIBERS_TABLE), 2)
    assert len(sizes) > 10, "the worker wrote few rows of the customer: the test proves little"
    assert max(sizes) < 2048, max(sizes)


def changelog_value_sizes(dep, topic: str, partitions: int) -> list[int]:
    """The size of every value in every partition of a changelog topic, read from the beginning."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    async def read() -> list[int]:
        consumer = AIOKafkaConsumer(**dep.client_options(), enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            sizes: list[int] = []
            async def behind() -> bool:
                return any([await consumer.position(tp) < ends[tp] for tp in tps])

            while await behind():
                for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                    sizes += [len(m.value) for m in msgs if m.value is not None]
            return sizes
        finally:
            await consumer.stop()

    return asyncio.run(read())
