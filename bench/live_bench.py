"""Live benchmark: the faust worker against a real Apache Kafka broker (GitHub issue 5).

    python -m bench [--quick] [--profile] [--keep] [--worker-repo PATH] [--worker-env KEY=VALUE ...]

Starts scripts/local-kafka on a free port (unless ``CHARTER_BOOTSTRAP_SERVERS`` names a broker), measures, stops
what it started, and prints one JSON object with every metric as its last line. ``--quick`` (smaller sizes)
finishes in under three minutes on a 2-core machine; the full run takes about a quarter of an hour.

Phases, in one run (one topic prefix and app id per run; every phase that needs N subscribers' state shares
the deployment that loaded them, since loading a million subscribers is itself minutes of work):

1. input: N subscribers x R rounds of customer events (``line_confirmed`` first, so every subscriber holds two
   armed activation deadlines; then ``order_placed``, ``box-shipment``, ``service_active``, ...), raw JSON
   bytes written straight into producer batches (acks=1, linger), keyed and partitioned like any producer;
2. ceiling: a raw aiokafka consume-then-produce loop (its own consumer group) over those same messages: same
   topics and partitions, faust's consumer and producer batch settings, orjson parse of every value, one small
   output per input. events/s = messages / (last output acked - first batch received). The same work, one cold
   pass each in a group of its own, by a minimal faust agent (bench/faust_ceiling.py) and by a minimal Quix Streams
   application (bench/quix_ceiling.py: what a user would pick instead of us; optional, null when quixstreams is not
   installed, ``pip install -e '.[bench]'``);
3. worker: ``python -m streams.cli worker`` on those messages. events/s from the consumer group's committed
   offsets (polled with an admin client): messages committed between the first commit seen and the commit
   reaching the end offsets, over that time. ``ratio`` = worker / ceiling; ``ratio_to_faust`` and
   ``ratio_to_quix`` = worker / the faust agent and the quix app;
4. memory: the worker's RSS (psutil) once it holds the N subscribers, minus its RSS when it was ready
   (before any state), per subscriber; also after the recovery below (state rebuilt from the changelog);
5. deadline latency: a background load of half the measured worker rate for ``window + 24 h`` (scaled: 10 s),
   10 % of it opening outages on loaded subscribers (repaired 2-20 s later, so about half of them cross the
   24 h tier); for every ``outage`` compensation whose deadline falls due during the load: the record's
   LogAppendTime on the ``compensation`` topic minus (``crossed_at`` + grace). p50 / p99 / max, and how many
   expected compensations never came;
6. mass outage: M customers of one network element go down at the same instant (one burst); time from their
   24 h crossing (scaled) to the last of their M compensations on the topic;
7. recovery: SIGKILL the worker, publish one probe claim per partition, restart the worker (same app id and
   data dir, N subscribers in the changelog): time from the restart to the first probe's output and to the
   last one (every partition processing again).

The charter is bench/charters/bench-seconds.yaml: outage tiers scaled so that a day is 10 s, activation
deadlines unscaled (every loaded subscriber keeps them armed for the whole run). Output topics are created
beforehand with ``message.timestamp.type=LogAppendTime``: a record's timestamp is the instant it reached the
broker.

``--worker-repo PATH`` runs the worker from another checkout (e.g. a scratch copy with a proposed change);
``--worker-env K=V`` adds environment variables to the worker (CHARTER_* settings, or faust settings that
faust reads from the environment, e.g. BROKER_MAX_POLL_RECORDS, STREAM_BUFFER_MAXSIZE, PRODUCER_LINGER).
``--profile`` records the worker with py-spy during the throughput phase (bench/out/live-profile-*.txt: the
hottest functions by own and total samples).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
CHARTER = ROOT / "bench" / "charters" / "bench-seconds.yaml"
LOCAL_KAFKA = ROOT / "scripts" / "local-kafka"
CUSTOMER_TOPICS = ("line-activation", "box-shipment", "service-status", "switch-claim")
CEILING_OUT = "bench-ceiling-out"
OUTPUT_TOPICS = ("compensation", "billing", "claim-decision", "hotline-breach", "hotline-kpi", "sla-alert", "incident",
                 "dead-letter")

CEILING_MIN = 200_000
STALL_S = 600.0  # committed offsets not moving for this long (a restore of 1M rows takes minutes): give up
PROBE_GRACE = 120.0  # seconds allowed after a restarted worker has loaded every partition's state
# The targets of issue 11's table (the full run's sizes: 1,000,000 subscribers, 50,000 in the mass outage)
TARGETS = {"ratio": 0.5, "latency_p99_s": 0.25, "rss_per_subscriber": 900, "recovery_s": 10.0,
           "mass_outage_s": 2.0}

# The consumer and producer settings the worker runs with (faust 0.15 defaults plus streams/live.py's): the
# ceiling uses the same, so the ratio compares the processing, not the batching.
FAUST_CONSUMER = {"max_partition_fetch_bytes": 1024 ** 2, "fetch_max_wait_ms": 1500, "max_poll_records": None}
FAUST_PRODUCER = {"acks": "all", "linger_ms": 0, "max_batch_size": 16384}


@dataclass
class Mode:
    name: str
    subscribers: int  # N: subscribers with state (each with armed deadlines) once everything is loaded
    fed: int  # of which fed to the worker as the throughput input (the rest: changelog rows, see preload)
    rounds: int  # events per subscriber in the throughput input
    window: float  # seconds of deadlines measured under the background load
    mass: int  # customers in the mass outage
    partitions: int = 8
    span: float = 120.0  # event-time span of the throughput input (seconds before the run)


QUICK = Mode("quick", subscribers=10_000, fed=10_000, rounds=3, window=15.0, mass=4_000)
FULL = Mode("full", subscribers=1_000_000, fed=100_000, rounds=2, window=60.0, mass=50_000)


def say(*parts: Any) -> None:
    print(*parts, flush=True)


# ---------------------------------------------------------------------------------------------- input

def iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat()


def customer(i: int) -> str:
    return f"C{i:07d}"


class Partitioner:
    """Kafka's default partitioner (murmur2 of the key), as aiokafka and the worker's producer use it."""

    def __init__(self, partitions: int) -> None:
        from aiokafka.partitioner import murmur2

        self.n = partitions
        self._murmur2 = murmur2
        self._cache: dict[bytes, int] = {}

    def __call__(self, key: bytes) -> int:
        p = self._cache.get(key)
        if p is None:
            p = self._cache[key] = (self._murmur2(key) & 0x7FFFFFFF) % self.n
        return p


# One round of the throughput input per entry: every subscriber gets one event of the round, in order.
ROUNDS = (
    ("line-activation", '{"event_id":"%s","occurred_at":"%s","customer_id":"%s","type":"line_confirmed"}'),
    ("line-activation", '{"event_id":"%s","occurred_at":"%s","customer_id":"%s","type":"service_active"}'),
    ("box-shipment", '{"event_id":"%s","occurred_at":"%s","customer_id":"%s","item":"modem","status":"shipped"}'),
    ("box-shipment", '{"event_id":"%s","occurred_at":"%s","customer_id":"%s","item":"modem","status":"delivered"}'),
    ("line-activation", '{"event_id":"%s","occurred_at":"%s","customer_id":"%s","type":"order_placed",'
                        '"zone":"unbundled","monthly_fee_cents":2995,"tv":false}'),
    ("switch-claim", '{"event_id":"%s","occurred_at":"%s","customer_id":"%s","previous_operator":"Free",'
                     '"termination_fee_cents":4900,"proof_id":"P1"}'),
)


def throughput_input(prefix: str, part: Partitioner, n: int, rounds: int, end_us: int,
                     span_us: int) -> Iterator[tuple[str, int, bytes, bytes]]:
    """(topic, partition, key, value) of N subscribers x ``rounds`` events, time-ordered up to ``end_us``."""
    total = n * rounds
    step = span_us / total
    start = end_us - span_us
    last_ms, last_iso = -1, ""
    for r in range(rounds):
        topic, fmt = ROUNDS[r % len(ROUNDS)]
        topic = prefix + topic
        for i in range(n):
            at = int(start + (r * n + i) * step)
            ms = at // 1000
            if ms != last_ms:  # events are time-ordered: one timestamp text per millisecond
                last_ms, last_iso = ms, iso(ms * 1000)
            key = customer(i)
            kb = key.encode()
            yield topic, part(kb), kb, (fmt % (f"r{r}-{i}", last_iso, key)).encode()


def preload_rows(charter: Any, changelog: str, part: Partitioner, first: int, last: int, rounds: int, end_us: int,
                 span_us: int) -> Iterator[tuple[str, int, bytes, bytes]]:
    """Changelog rows of the subscribers ``first``..``last - 1`` after the same rounds of events as the input.

    The state is made by the core itself (``Engine.apply`` of the validated events) and encoded by the worker's
    own persistence code (``streams.live.changelog.subscriber_rows``), so the rows are those the worker would have
    written.
    """
    from schemas.inputs import parse_input
    from streams.core import Engine
    from streams.live.changelog import subscriber_rows

    engines = [Engine(charter, track_dirty=True) for _ in range(part.n)]
    at = iso(end_us - span_us)
    for i in range(first, last):
        key = customer(i)
        p = part(key.encode())
        engine = engines[p]
        for r in range(rounds):
            topic, fmt = ROUNDS[r % len(ROUNDS)]
            engine.apply(topic, parse_input(topic, orjson.loads(fmt % (f"r{r}-{i}", at, key))))
        if len(engine.dirty_subscribers) >= 5000 or i == last - 1:
            for q, e in enumerate(engines):
                for k, v in subscriber_rows(q, e):
                    yield changelog, q, k, v
                e.subscribers.clear()
                e._heap.clear()


def event_bytes(topic: str, event_id: str, at_us: int, key: str, **fields: Any) -> bytes:
    value = {"event_id": event_id, "occurred_at": iso(at_us), "customer_id": key, **fields}
    if topic == "call-queue":
        value["call_id"] = key
    return orjson.dumps(value)


def kafka_options(bootstrap: str) -> dict[str, Any]:
    """Client options for ``bootstrap`` from streams.connection, with the environment's CHARTER_* security settings
    (the benchmark's child processes and the worker inherit the same environment)."""
    from streams.connection import client_options
    from streams.settings import Settings

    return client_options(Settings(bootstrap_servers=bootstrap))


async def produce_batches(bootstrap: str, records: Iterable[tuple[str, int, bytes, bytes]]) -> int:
    """Write records straight into producer batches (no per-message send): acks=1, linger, large batches."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(**kafka_options(bootstrap), acks=1, linger_ms=20, max_batch_size=512 * 1024,
                                max_request_size=4 * 1024 * 1024)
    await producer.start()
    n = 0
    try:
        builders: dict[tuple[str, int], Any] = {}
        pending: list[asyncio.Future] = []
        for topic, partition, key, value in records:
            b = builders.get((topic, partition))
            if b is None:
                b = builders[(topic, partition)] = producer.create_batch()
            if b.append(timestamp=None, key=key, value=value) is None:
                pending.append(await producer.send_batch(b, topic, partition=partition))
                b = builders[(topic, partition)] = producer.create_batch()
                b.append(timestamp=None, key=key, value=value)
            n += 1
            if len(pending) > 64:
                await asyncio.gather(*pending)
                pending.clear()
        for (topic, partition), b in builders.items():
            if b.record_count():
                pending.append(await producer.send_batch(b, topic, partition=partition))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return n


# ---------------------------------------------------------------------------------------------- broker

def free_port_pair() -> int:
    """A port p with p and p+1 free (local-kafka's controller listens on p+1), away from 9092/19092."""
    for _ in range(200):
        p = random.randint(29100, 39000)
        ok = True
        for q in (p, p + 1):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", q))
                except OSError:
                    ok = False
        if ok:
            return p
    raise RuntimeError("no free port pair found")


class LocalBroker:
    """scripts/local-kafka on a free port with a state dir of its own; stopped and wiped by ``stop``."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port_pair()
        self.state = workdir / "kafka"
        self.env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_STATE_DIR": str(self.state),
                    "KAFKA_FRESH": "1"}
        self.started = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.started = True
        r = subprocess.run([str(LOCAL_KAFKA), "start"], env=self.env, capture_output=True, text=True, timeout=900)
        if r.returncode != 0:
            raise RuntimeError(f"local-kafka start failed:\n{r.stdout}\n{r.stderr}")

    def stop(self) -> None:
        if self.started:
            subprocess.run([str(LOCAL_KAFKA), "stop"], env=self.env, capture_output=True, timeout=120)
            self.started = False
        shutil.rmtree(self.state, ignore_errors=True)


class Kafka:
    """Admin and metadata clients of the benchmark: topics, end offsets, a group's committed offsets."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient

        self.admin = AIOKafkaAdminClient(**kafka_options(self.bootstrap))
        await self.admin.start()
        self.meta = AIOKafkaConsumer(**kafka_options(self.bootstrap), group_id=None, enable_auto_commit=False)
        await self.meta.start()

    async def close(self) -> None:
        await self.meta.stop()
        await self.admin.close()

    async def create_topics(self, prefix: str, partitions: int) -> None:
        """Output topics with LogAppendTime, then everything else the worker needs (streams.topics)."""
        from aiokafka.admin import NewTopic

        from streams.settings import Settings
        from streams.topics import ensure_topics_async

        cfg = {"message.timestamp.type": "LogAppendTime"}
        await self.admin.create_topics([NewTopic(name=prefix + t, num_partitions=partitions, replication_factor=1,
                                                 topic_configs=cfg) for t in (*OUTPUT_TOPICS, CEILING_OUT)])
        settings = Settings(bootstrap_servers=self.bootstrap, partitions=partitions, topic_prefix=prefix)
        await ensure_topics_async(settings)
        await asyncio.sleep(1.0)  # leaders elected: no NotLeaderForPartition retries on the first produce

    async def ensure_topic(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        from aiokafka.admin import NewTopic

        if name not in set(await self.admin.list_topics()):
            await self.admin.create_topics([NewTopic(name=name, num_partitions=partitions, replication_factor=1,
                                                     topic_configs=configs)])
            await asyncio.sleep(1.0)

    def tps(self, topics: Iterable[str], partitions: int) -> list[Any]:
        from aiokafka import TopicPartition

        return [TopicPartition(t, p) for t in topics for p in range(partitions)]

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        return await self.meta.end_offsets(tps)

    async def committed(self, group: str, tps: list[Any]) -> int:
        try:
            got = await self.admin.list_consumer_group_offsets(group, partitions=tps)
        except Exception:  # group not there yet
            return 0
        return sum(max(0, om.offset) for om in got.values() if om is not None)


# ---------------------------------------------------------------------------------------------- worker

class Worker:
    """One ``python -m streams.cli worker`` process, logging to a file, in its own process group."""

    def __init__(self, workdir: Path, env: dict[str, str], repo: Path, name: str = "worker") -> None:
        self.workdir = workdir
        self.env = env
        self.repo = repo
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self._log_offset = 0

    def start(self) -> None:
        env = dict(self.env)
        if self.repo != ROOT:  # a scratch copy: its packages first on the path
            env["PYTHONPATH"] = str(self.repo) + os.pathsep + env.get("PYTHONPATH", "")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.started_at = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=self.workdir)
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_offset)
            return f.read().decode(errors="replace")

    def check(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"the worker exited ({self.proc and self.proc.returncode}):\n{self.log_text()[-3000:]}")

    async def wait_log(self, text: str, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            self.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {text!r} in the worker log")
            await asyncio.sleep(0.05)
        return time.monotonic()

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.pid).memory_info().rss

    def peak_rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        return 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 30) -> None:
        if self.alive():
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


# ---------------------------------------------------------------------------------------------- ceiling

async def ceiling_loop(bootstrap: str, topics: list[str], group: str, out_topic: str, total: int,
                       passes: int = 1) -> dict[str, Any]:
    """Consume the ``total`` messages ``passes`` times over, parse each with orjson, produce one small output per
    input, commit every second."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(*topics, **kafka_options(bootstrap), group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", **FAUST_CONSUMER)
    producer = AIOKafkaProducer(**kafka_options(bootstrap), **FAUST_PRODUCER)
    await producer.start()
    await consumer.start()
    loads, dumps = orjson.loads, orjson.dumps
    n = first_batch = 0
    t_commit = 0.0
    done_passes = 0
    busy = 0.0  # summed over passes: first batch of the pass received -> its last output acked
    t_pass: float | None = None
    try:
        while n < total * passes:
            batch = await consumer.getmany(timeout_ms=1000)
            got = 0
            futures = []
            for tp, msgs in batch.items():
                for m in msgs:
                    v = loads(m.value)
                    out = dumps({"customer_id": v["customer_id"], "event_id": v["event_id"]})
                    futures.append(await producer.send(out_topic, out, key=m.key, partition=tp.partition))
                got += len(msgs)
            if got and t_pass is None:
                t_pass = time.monotonic()
                if not n:
                    first_batch = got
                    t_commit = t_pass
            n += got
            if futures:
                await asyncio.gather(*futures)
            if n >= total * (done_passes + 1):
                done_passes += 1
                busy += time.monotonic() - t_pass
                t_pass = None
                if done_passes < passes:
                    # re-reading starts with a fetch wait that is an artefact of the repetition: not counted
                    await consumer.seek_to_beginning()
            if time.monotonic() - t_commit >= 1.0:
                await consumer.commit()
                t_commit = time.monotonic()
        await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()
    rate = n / busy if busy > 0 else 0.0
    return {"messages": n, "passes": passes, "seconds": busy, "events_per_s": rate,
            "first_batch": first_batch}


# ---------------------------------------------------------------------------------------------- output reading

async def changelog_row_sizes(bootstrap: str, topic: str, partitions: int) -> list[int]:
    """The size of the latest value of every key of a compacted changelog, read to its end (read_committed)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(**kafka_options(bootstrap), group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    latest: dict[bytes, int] = {}
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        todo = {tp for tp in tps if ends[tp] > 0}
        while todo:
            for msgs in (await consumer.getmany(*todo, timeout_ms=1000)).values():
                for m in msgs:
                    if m.value is None:
                        latest.pop(m.key, None)
                    else:
                        latest[m.key] = len(m.value)
            todo = {tp for tp in todo if await consumer.position(tp) < ends[tp]}
    finally:
        await consumer.stop()
    return list(latest.values())


class TopicTail:
    """Reads one topic from its current end (all partitions), keeping (log append time s, value)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.records: list[tuple[float, dict[str, Any]]] = []
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self.consumer = AIOKafkaConsumer(**kafka_options(self.bootstrap), group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=50)
        await self.consumer.start()
        parts = self.consumer.partitions_for_topic(self.topic) or set()
        if not parts:
            await self.consumer._client.force_metadata_update()
            parts = self.consumer.partitions_for_topic(self.topic) or set()
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self.consumer.assign(tps)
        await self.consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now: records appended from here on are ours
            await self.consumer.position(tp)
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            for msgs in batch.values():
                for m in msgs:
                    self.records.append((m.timestamp / 1000, orjson.loads(m.value)))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self.consumer.stop()


def to_us_text(text: str) -> int:
    from streams.core.timeutil import parse_instant

    return parse_instant(text)


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    v = sorted(values)

    def q(f: float) -> float:
        return v[min(len(v) - 1, int(f * len(v)))]

    return {"p50": q(0.50), "p99": q(0.99), "max": v[-1]}


# ---------------------------------------------------------------------------------------------- the run

class Bench:
    def __init__(self, args: argparse.Namespace, mode: Mode) -> None:
        self.args = args
        self.mode = mode
        self.tag = uuid.uuid4().hex[:8]
        self.prefix = f"bench{self.tag}."
        self.app_id = f"charter-bench-{self.tag}"
        self.m: dict[str, Any] = {"mode": mode.name}
        self.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="charter-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.broker: LocalBroker | None = None
        self.worker: Worker | None = None
        self.part = Partitioner(mode.partitions)
        from streams.charter import load_charter

        self.charter = load_charter(str(CHARTER))
        self.tier1_us = self.charter.outage.tiers[0].after
        self.grace_s = self.charter.grace_us / 1e6

    # ---------------------------------------------------------------- helpers

    def topic(self, name: str) -> str:
        return self.prefix + name

    def worker_env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "CHARTER_BOOTSTRAP_SERVERS": self.bootstrap,
            "CHARTER_PARTITIONS": str(self.mode.partitions),
            "CHARTER_CHARTER": str(CHARTER),
            "CHARTER_APP_ID": self.app_id,
            "CHARTER_TOPIC_PREFIX": self.prefix,
            "CHARTER_DATA_DIR": str(self.workdir / "worker-data"),
            "CHARTER_LOG_LEVEL": "info",
            # static membership, as deployed (docker-compose.yml); --worker-env CHARTER_INSTANCE_ID= turns it off
            "CHARTER_INSTANCE_ID": f"bench-worker-{self.tag}",
        }
        for kv in self.args.worker_env or []:
            k, _, v = kv.partition("=")
            env[k] = v
        return env

    async def committed(self) -> int:
        return await self.kafka.committed(self.app_id, self.customer_tps)

    async def end_total(self) -> int:
        return sum((await self.kafka.end_offsets(self.customer_tps)).values())

    async def wait_committed(self, target: int, timeout: float, samples: list | None = None) -> float:
        deadline = time.monotonic() + timeout
        last, moved = -1, time.monotonic()
        while True:
            c = await self.committed()
            now = time.monotonic()
            if samples is not None:
                samples.append((now, c))
            if c >= target:
                return now
            if c != last:
                last, moved = c, now
            if now > deadline or now - moved > STALL_S:
                raise RuntimeError(f"committed offsets stuck at {c} of {target}")
            self.worker.check()
            await asyncio.sleep(0.1)

    def pick_per_partition(self, fmt: str) -> list[str]:
        """One fresh customer id per partition."""
        keys: dict[int, str] = {}
        i = 0
        while len(keys) < self.mode.partitions:
            k = fmt % i
            keys.setdefault(self.part(k.encode()), k)
            i += 1
        return [keys[p] for p in range(self.mode.partitions)]

    # ---------------------------------------------------------------- phases

    async def run(self) -> dict[str, Any]:
        t_run = time.monotonic()
        self.bootstrap = os.environ.get("CHARTER_BOOTSTRAP_SERVERS") or ""
        if not self.bootstrap:
            self.broker = LocalBroker(self.workdir)
            t0 = time.monotonic()
            self.broker.start()
            self.bootstrap = self.broker.bootstrap
            say(f"broker: local-kafka on {self.bootstrap} ({time.monotonic() - t0:.1f} s)")
        self.kafka = Kafka(self.bootstrap)
        await self.kafka.start()
        try:
            await self.kafka.create_topics(self.prefix, self.mode.partitions)
            self.customer_tps = self.kafka.tps([self.topic(t) for t in CUSTOMER_TOPICS], self.mode.partitions)
            await self.phase_empty_worker()
            await self.phase_input()
            await self.phase_preload()
            await self.phase_ceiling()
            await self.phase_faust_ceiling()
            await self.phase_quix_ceiling()
            await self.phase_throughput()
            self.phase_memory()
            await self.phase_row_sizes()
            await self.phase_latency()
            await self.phase_mass_outage()
            await self.phase_recovery()
            self.worker.stop()
        finally:
            await self.kafka.close()
        self.m["total_s"] = round(time.monotonic() - t_run, 1)
        return self.m

    async def phase_input(self) -> None:
        mode = self.mode
        n = mode.fed * mode.rounds
        self.end_us = end_us = int(time.time() * 1e6)
        t0 = time.monotonic()
        records = throughput_input(self.prefix, self.part, mode.fed, mode.rounds, end_us, int(mode.span * 1e6))
        produced = await produce_batches(self.bootstrap, records)
        dt = time.monotonic() - t0
        assert produced == n
        total = await self.end_total()
        if total != n:
            raise RuntimeError(f"end offsets say {total} messages, {n} produced")
        self.messages = n
        self.m.update(subscribers=mode.subscribers, fed_subscribers=mode.fed, messages=n, partitions=mode.partitions,
                      produce_events_per_s=round(n / dt))
        say(f"input: {n:,} messages ({mode.rounds} per subscriber) for {mode.fed:,} subscribers produced in "
            f"{dt:.1f} s ({n / dt:,.0f}/s)")

    async def phase_ceiling(self) -> None:
        # at least CEILING_MIN messages (several passes over a small input), so the rate is not one fetch's
        passes = max(1, -(-CEILING_MIN // self.messages))
        cmd = [sys.executable, "-m", "bench.live_bench", "ceiling", "--bootstrap", self.bootstrap,
               "--group", f"bench-ceiling-{self.tag}", "--out-topic", self.topic(CEILING_OUT),
               "--total", str(self.messages), "--passes", str(passes),
               "--topics", *[self.topic(t) for t in CUSTOMER_TOPICS]]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"ceiling loop failed:\n{r.stderr[-3000:]}")
        res = json.loads(r.stdout.strip().splitlines()[-1])
        self.m["ceiling_events_per_s"] = round(res["events_per_s"])
        self.m["ceiling_passes"] = passes
        say(f"ceiling: raw aiokafka consume-parse-produce {res['events_per_s']:,.0f} events/s "
            f"({res['messages']:,} in {res['seconds']:.1f} s, {passes} pass(es) over the input)")

    async def phase_faust_ceiling(self) -> None:
        """The same work through a minimal faust agent (bench/faust_ceiling.py): one cold pass, like the worker."""
        cmd = [sys.executable, "-m", "bench.faust_ceiling", "--bootstrap", self.bootstrap,
               "--group", f"bench-faust-{self.tag}", "--out-topic", self.topic(CEILING_OUT),
               "--total", str(self.messages), "--topics", *[self.topic(t) for t in CUSTOMER_TOPICS]]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"faust ceiling failed:\n{r.stdout[-1500:]}\n{r.stderr[-3000:]}")
        # faust's worker writes terminal escapes around it: take the JSON object itself
        found = re.search(r"\{.*\}", r.stdout)
        if found is None:
            raise RuntimeError(f"faust ceiling printed no result:\n{r.stdout[-1500:]!r}\n{r.stderr[-3000:]}")
        res = json.loads(found.group(0))
        self.m["faust_ceiling_events_per_s"] = round(res["events_per_s"])
        say(f"faust ceiling: a minimal faust agent doing the same {res['events_per_s']:,.0f} events/s "
            f"({res['messages']:,} in {res['seconds']:.1f} s, one pass, first message to last output acked)")

    async def phase_quix_ceiling(self) -> None:
        """What a user would pick instead: the same work by a minimal Quix Streams application
        (bench/quix_ceiling.py), one cold pass in its own group. Optional: null, with the reason, when quixstreams is
        not installed or the application fails; the worker's numbers do not depend on it."""
        cmd = [sys.executable, "-m", "bench.quix_ceiling", "--bootstrap", self.bootstrap,
               "--group", f"bench-quix-{self.tag}", "--out-topic", self.topic(CEILING_OUT),
               "--total", str(self.messages), "--topics", *[self.topic(t) for t in CUSTOMER_TOPICS]]
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=1800)
            res, why = quix_result(r.returncode, r.stdout, r.stderr)
        except subprocess.TimeoutExpired:
            res, why = None, "the quix app did not finish within 1800 s"
        self.m["quix_events_per_s"] = None if res is None else round(res["events_per_s"])
        if res is None:
            self.m["quix_error"] = why
            say(f"quix app: not measured: {why}")
            return
        self.m["quixstreams_version"] = res.get("quixstreams_version")
        say(f"quix app: a minimal Quix Streams {res.get('quixstreams_version', '')} application doing the same "
            f"{res['events_per_s']:,.0f} events/s ({res['messages']:,} in {res['seconds']:.1f} s, one pass, first "
            "message to the application stopped, every output acknowledged)")

    async def phase_throughput(self) -> None:
        self.worker = w = Worker(self.workdir, self.worker_env(), Path(self.args.worker_repo or ROOT))
        w.start()
        t_ready = await w.wait_log("Worker]: Ready", 3600)
        self.m["worker_ready_s"] = round(t_ready - w.started_at, 1)
        if self.mode.subscribers > self.mode.fed:
            say(f"worker: ready {self.m['worker_ready_s']} s after start (its "
                f"{self.mode.subscribers - self.mode.fed:,} preloaded subscribers are read from the changelog when "
                "each partition's first message arrives: inside the throughput time)")
        profiler = None
        if self.args.profile:
            profiler = self.start_profile("throughput")
        samples: list[tuple[float, int]] = []
        t_done = await self.wait_committed(self.messages, 3600, samples)
        if profiler is not None:
            self.finish_profile(profiler, "throughput")
        # Primary: every message from the worker's "Ready" (the backlog waits from then on) to the committed
        # offsets reaching the end offsets; commits are 1 s apart, so this errs by up to a second on the slow side.
        rate = self.messages / (t_done - t_ready)
        # Secondary: the slope of the committed offsets, first commit seen to the end (needs several commits).
        first = next((s for s in samples if s[1] > 0), samples[-1])
        commits = len({c for _, c in samples if c > 0})
        slope = (self.messages - first[1]) / (t_done - first[0]) if commits >= 4 and t_done > first[0] else None
        self.m["worker_events_per_s"] = round(rate)
        self.m["worker_events_per_s_commit_slope"] = None if slope is None else round(slope)
        self.m["worker_seconds"] = round(t_done - t_ready, 2)
        self.m["ratio"] = round(rate / self.m["ceiling_events_per_s"], 4)
        self.m["ratio_to_faust"] = ratio_to(rate, self.m["faust_ceiling_events_per_s"])
        self.m["ratio_to_quix"] = ratio_to(rate, self.m.get("quix_events_per_s"))
        say(f"worker: {rate:,.0f} events/s ({self.messages:,} from ready to all committed in {t_done - t_ready:.1f} s; "
            f"commit slope {'n/a' if slope is None else f'{slope:,.0f}/s'}; ready {self.m['worker_ready_s']} s after "
            f"start), ratio {self.m['ratio']:.4f} (to the faust agent: {_f(self.m['ratio_to_faust'], 3)}, to the "
            f"quix app: {_f(self.m['ratio_to_quix'], 3)})")

    async def phase_empty_worker(self) -> None:
        """The worker's RSS with no state: started on the empty deployment, measured when ready, stopped."""
        w = Worker(self.workdir, self.worker_env(), Path(self.args.worker_repo or ROOT), name="worker-empty")
        w.start()
        try:
            await w.wait_log("Worker]: Ready", 180)
            await asyncio.sleep(2.0)
            self.rss_empty = w.rss()
        finally:
            w.stop()
        self.m["rss_empty_bytes"] = self.rss_empty
        say(f"empty worker: RSS {self.rss_empty / 2**20:,.0f} MiB when ready")

    def phase_memory(self) -> None:
        rss = self.worker.rss()
        n = self.mode.subscribers
        self.m.update(rss_bytes=rss, rss_per_subscriber=round((rss - self.rss_empty) / n))
        how = "" if n == self.mode.fed else f" ({self.mode.fed:,} applied as events, the rest restored)"
        say(f"memory: RSS {rss / 2**20:,.0f} MiB with {n:,} subscribers{how} vs {self.rss_empty / 2**20:,.0f} MiB "
            f"empty: {self.m['rss_per_subscriber']:,} B per subscriber")

    async def phase_row_sizes(self) -> None:
        """Bytes per subscriber state row (issue 12): the latest row of every key in the subscribers changelog,
        as the worker wrote it (or the preload, for subscribers not fed as events), after the throughput phase."""
        sizes = sorted(await changelog_row_sizes(self.bootstrap, f"{self.app_id}-subscribers-changelog",
                                                 self.mode.partitions))
        if not sizes:
            return
        self.m.update(row_bytes_p50=sizes[len(sizes) // 2], row_bytes_max=sizes[-1], row_count=len(sizes))
        say(f"state rows: {len(sizes):,} subscriber rows, {sizes[len(sizes) // 2]:,} B median, {sizes[-1]:,} B max")

    async def phase_preload(self) -> None:
        """The subscribers beyond those fed as events: their changelog rows, read back by the restart below."""
        mode = self.mode
        if mode.subscribers <= mode.fed:
            return
        t0 = time.monotonic()
        changelog = f"{self.app_id}-subscribers-changelog"  # faust's name for the table's changelog
        await self.kafka.ensure_topic(changelog, mode.partitions, {"cleanup.policy": "compact"})
        rows = preload_rows(self.charter, changelog, self.part, mode.fed, mode.subscribers, mode.rounds,
                            self.end_us, int(mode.span * 1e6))
        n = await produce_batches(self.bootstrap, rows)
        self.m["preload_subscribers"] = n
        say(f"preload: {n:,} subscribers' changelog rows (the core's state after the same events) written in "
            f"{time.monotonic() - t0:.1f} s")

    async def phase_latency(self) -> None:
        from aiokafka import AIOKafkaProducer

        mode = self.mode
        rate = max(50.0, self.m["worker_events_per_s"] / 2)
        tier1 = self.tier1_us / 1e6
        duration = tier1 + mode.window
        tail = TopicTail(self.bootstrap, self.topic("compensation"))
        await tail.start()
        producer = AIOKafkaProducer(**kafka_options(self.bootstrap), acks=1, linger_ms=5)
        await producer.start()
        rng = random.Random(1)
        n_subs = mode.subscribers
        # outages open on subscribers counted down from the last one (the mass outage takes the first block)
        next_out = n_subs - 1
        ups: list[tuple[int, int, str]] = []  # (due us, seq, customer)
        downs: list[tuple[int, int]] = []  # (down us, up us) per outage
        sent = seq = 0
        ss, bs = self.topic("service-status"), self.topic("box-shipment")
        part = self.part
        start = time.monotonic()
        start_us = int(time.time() * 1e6)
        futures: list[asyncio.Future] = []

        async def send(topic: str, key: str, value: bytes) -> None:
            kb = key.encode()
            futures.append(await producer.send(topic, value, key=kb, partition=part(kb)))

        while True:
            elapsed = time.monotonic() - start
            if elapsed >= duration:
                break
            now_us = start_us + int(elapsed * 1e6)
            budget = int(rate * elapsed) - sent
            for _ in range(budget):
                seq += 1
                if ups and ups[0][0] <= now_us:
                    due, _, key = heapq.heappop(ups)
                    await send(ss, key, event_bytes("service-status", f"u{seq}", due, key, service="internet",
                                                    status="up"))
                elif rng.random() < 0.1 and next_out >= 0:
                    key = customer(next_out)
                    next_out -= 1
                    up = now_us + int(rng.uniform(2.0, 20.0) * 1e6)
                    heapq.heappush(ups, (up, seq, key))
                    downs.append((now_us, up))
                    await send(ss, key, event_bytes("service-status", f"d{seq}", now_us, key, service="internet",
                                                    status="down"))
                else:
                    key = customer(rng.randrange(n_subs))
                    await send(bs, key, event_bytes("box-shipment", f"s{seq}", now_us, key, item="tv_decoder",
                                                    status="shipped"))
                sent += 1
            if len(futures) > 1000:
                await asyncio.gather(*futures)
                futures.clear()
            await asyncio.sleep(0.01)
        end_us = start_us + int(duration * 1e6)
        load_s = time.monotonic() - start
        # close every outage still open: nothing opened during the load reaches the 72 h tier
        now_us = int(time.time() * 1e6)
        while ups:
            _, _, key = heapq.heappop(ups)
            seq += 1
            await send(ss, key, event_bytes("service-status", f"u{seq}", now_us, key, service="internet",
                                            status="up"))
        await asyncio.gather(*futures)
        await producer.stop()
        # compensations owed: outages still open at their 24 h crossing, crossing during the load
        owed = {d + self.tier1_us for d, u in downs if u > d + self.tier1_us and d + self.tier1_us <= end_us}
        deadline = time.monotonic() + 30
        got: dict[int, float] = {}
        while time.monotonic() < deadline:
            for ts, v in tail.records:
                if v.get("rule") == "outage":
                    c = to_us_text(v["crossed_at"])
                    if c in owed and c not in got:
                        got[c] = ts - (c / 1e6 + self.grace_s)
            if len(got) >= len(owed):
                break
            await asyncio.sleep(0.2)
        await tail.stop()
        q = quantiles(list(got.values()))
        self.m.update(load_events_per_s=round(sent / load_s), load_seconds=round(load_s, 1),
                      latency_samples=len(got), latency_missing=len(owed) - len(got),
                      latency_p50_s=_r(q["p50"]), latency_p99_s=_r(q["p99"]), latency_max_s=_r(q["max"]))
        say(f"deadline latency under {sent / load_s:,.0f} events/s for {load_s:.0f} s, {n_subs:,} subscribers "
            f"armed: p50 {_f(q['p50'])} p99 {_f(q['p99'])} max {_f(q['max'])} s over {len(got)} compensations "
            f"({len(owed) - len(got)} missing)")

    async def phase_mass_outage(self) -> None:
        k = min(self.mode.mass, self.mode.subscribers)
        tail = TopicTail(self.bootstrap, self.topic("compensation"))
        await tail.start()
        before = await self.end_total()
        at = int(time.time() * 1e6)
        ss = self.topic("service-status")
        recs = []
        for i in range(k):
            key = customer(i)
            kb = key.encode()
            recs.append((ss, self.part(kb), kb, event_bytes("service-status", f"m{i}", at, key, service="internet",
                                                             status="down")))
        t0 = time.monotonic()
        await produce_batches(self.bootstrap, recs)
        burst_s = time.monotonic() - t0
        crossing = at + self.tier1_us
        t_ingested = None
        deadline = time.monotonic() + 600
        latest: dict[str, float] = {}
        progress = time.monotonic()
        while time.monotonic() < deadline:
            if t_ingested is None and await self.committed() >= before + k:
                t_ingested = time.time()
            for ts, v in tail.records:
                if v.get("rule") == "outage" and v["customer_id"] not in latest and to_us_text(v["crossed_at"]) == \
                        crossing:
                    latest[v["customer_id"]] = ts
                    progress = time.monotonic()
            if len(latest) >= k or (time.time() - crossing / 1e6 > 60 and time.monotonic() - progress > 60):
                break
            self.worker.check()
            await asyncio.sleep(0.2)
        tail.records.clear()
        await tail.stop()
        # repair the element: no 72 h tier
        now = int(time.time() * 1e6)
        await produce_batches(self.bootstrap, [
            (ss, self.part(customer(i).encode()), customer(i).encode(),
             event_bytes("service-status", f"mu{i}", now, customer(i), service="internet", status="up"))
            for i in range(k)])
        last = max(latest.values()) if latest else float("nan")
        first = min(latest.values()) if latest else float("nan")
        # first after the crossing: the worker fires only once it has read every input appended before it;
        # last - first: the burst of firing the k deadlines and producing their compensations
        self.m.update(mass_customers=k, mass_outage_s=_r(last - crossing / 1e6),
                      mass_fire_s=_r(last - first),
                      mass_outage_first_s=_r(first - crossing / 1e6), mass_compensations=len(latest),
                      mass_burst_publish_s=round(burst_s, 2),
                      mass_ingest_s=None if t_ingested is None else _r(t_ingested - at / 1e6))
        say(f"mass outage: {k:,} customers down at once (published in {burst_s:.1f} s, all committed "
            f"{_f(self.m['mass_ingest_s'])} s after): {len(latest):,} compensations, first "
            f"{_f(first - crossing / 1e6)} s and last {_f(last - crossing / 1e6)} s after the 24 h crossing")

    async def phase_recovery(self) -> None:
        w = self.worker
        await self.wait_committed(await self.end_total(), 600)  # everything applied and committed first
        tail = TopicTail(self.bootstrap, self.topic("claim-decision"))
        await tail.start()
        w.kill()
        probes = self.pick_per_partition("probe-%d")
        now = int(time.time() * 1e6)
        sc = self.topic("switch-claim")
        await produce_batches(self.bootstrap, [
            (sc, self.part(k.encode()), k.encode(),
             event_bytes("switch-claim", f"p-{k}", now, k, previous_operator="Free", termination_fee_cents=100,
                         proof_id="P"))
            for k in probes])
        restart = time.time()
        w.start()
        seen: dict[str, float] = {}
        t_loaded = None  # every partition's task loaded (log), then PROBE_GRACE s at most for the probes
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline and len(seen) < len(probes):
            for ts, v in tail.records:
                c = v.get("customer_id")
                if c in probes and c not in seen:
                    seen[c] = ts
            if t_loaded is None and w.log_text().count("subscribers loaded") >= self.mode.partitions:
                t_loaded = time.time()
                deadline = time.monotonic() + PROBE_GRACE
            w.check()
            await asyncio.sleep(0.1)
        await tail.stop()
        self.m.update(recovery_s=_r(max(seen.values()) - restart) if len(seen) == len(probes) else None,
                      recovery_first_s=_r(min(seen.values()) - restart) if seen else None,
                      recovery_partitions=len(seen),
                      recovery_state_loaded_s=None if t_loaded is None else _r(t_loaded - restart),
                      rss_recovered_bytes=w.rss())
        self.m["rss_recovered_per_subscriber"] = round((self.m["rss_recovered_bytes"] - self.rss_empty)
                                                       / self.mode.subscribers)
        say(f"recovery: SIGKILL, restart with {self.mode.subscribers:,} subscribers in the changelog: state loaded "
            f"after {_f(self.m['recovery_state_loaded_s'])} s; first output after {_f(self.m['recovery_first_s'])} "
            f"s, every partition after {_f(self.m['recovery_s'])} s ({len(seen)} of {len(probes)} partitions)")
        if len(seen) < len(probes):
            say(f"recovery: no output from {len(probes) - len(seen)} partitions {PROBE_GRACE:.0f} s after every "
                "partition's state was loaded; worker log tail:\n" + w.log_text()[-1500:])

    # ---------------------------------------------------------------- profiling

    def start_profile(self, name: str) -> subprocess.Popen:
        OUT.mkdir(parents=True, exist_ok=True)
        raw = OUT / f"live-profile-{name}.raw"
        return subprocess.Popen(["py-spy", "record", "--pid", str(self.worker.pid), "--format", "raw", "--rate",
                                 "200", "--nonblocking", "-o", str(raw)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

    def finish_profile(self, proc: subprocess.Popen, name: str) -> None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        raw = OUT / f"live-profile-{name}.raw"
        if raw.exists():
            summary = summarize_collapsed(raw.read_text())
            (OUT / f"live-profile-{name}.txt").write_text(summary)
            say(f"profile: {OUT / f'live-profile-{name}.txt'}")

    def cleanup(self) -> None:
        if self.worker is not None:
            self.worker.kill()
        if self.broker is not None:
            self.broker.stop()
        if not self.args.keep and not self.args.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def summarize_collapsed(text: str, top: int = 40) -> str:
    """Own and total samples per function from py-spy's collapsed stacks."""
    own: Counter = Counter()
    total: Counter = Counter()
    n = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        n += c
        frames = stack.split(";")
        own[frames[-1]] += c
        for f in set(frames):
            total[f] += c
    out = [f"{n} samples", "", "own %   function"]
    out += [f"{100 * c / n:5.1f}  {f}" for f, c in own.most_common(top)]
    out += ["", "total %  function"]
    out += [f"{100 * c / n:5.1f}  {f}" for f, c in total.most_common(top)]
    return "\n".join(out) + "\n"


def _r(x: float | None) -> float | None:
    return None if x is None or x != x else round(x, 3)


def _f(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None or x != x else f"{x:.{digits}f}"


def ratio_to(rate: float, other: float | None) -> float | None:
    """``rate / other`` (4 decimals), or None when the other side was not measured (None or 0 events/s)."""
    return round(rate / other, 4) if other else None


def quix_result(returncode: int, stdout: str, stderr: str) -> tuple[dict[str, Any] | None, str | None]:
    """bench/quix_ceiling.py's measurement from its exit status and output, or None and one line saying why not
    (quixstreams not installed, the application failed): never the child's whole traceback."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit status {returncode}, nothing on stderr"
    if returncode != 0:
        from bench.quix_ceiling import NOT_INSTALLED

        return None, last if returncode == NOT_INSTALLED else f"the quix app failed: {last}"
    for line in reversed(stdout.splitlines()):
        try:
            res = json.loads(line)
        except ValueError:
            continue
        if isinstance(res, dict) and isinstance(res.get("events_per_s"), int | float) and res["events_per_s"] > 0:
            return res, None
    return None, f"the quix app printed no result: {last}"


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_bytes": mem, "python": platform.python_version()}


def worker_code(repo: Path) -> str:
    """The commit the worker runs (``+dirty`` with uncommitted changes to streams/ or schemas/)."""
    marker = repo / ".commit"
    if marker.exists():
        return marker.read_text().strip()
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "streams", "schemas"], cwd=repo,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def targets_met(m: dict[str, Any]) -> dict[str, bool | None]:
    out: dict[str, bool | None] = {}
    for k, goal in TARGETS.items():
        v = m.get(k)
        out[k] = None if v is None else (v >= goal if k == "ratio" else v <= goal)
    return out


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["ceiling"]:
        p = argparse.ArgumentParser(prog="bench.live_bench ceiling")
        p.add_argument("--bootstrap", required=True)
        p.add_argument("--group", required=True)
        p.add_argument("--out-topic", required=True)
        p.add_argument("--total", type=int, required=True)
        p.add_argument("--passes", type=int, default=1)
        p.add_argument("--topics", nargs="+", required=True)
        a = p.parse_args(argv[1:])
        print(json.dumps(asyncio.run(ceiling_loop(a.bootstrap, a.topics, a.group, a.out_topic, a.total,
                                                  a.passes))))
        return
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes: under 3 minutes")
    p.add_argument("--subscribers", type=int, help="N (default 10,000 quick, 1,000,000 full)")
    p.add_argument("--fed", type=int, help="of which fed as input events (default: all quick, 100,000 full)")
    p.add_argument("--rounds", type=int, help="input events per subscriber (default 3 quick, 2 full)")
    p.add_argument("--mass", type=int, help="customers in the mass outage (default 4,000 quick, 50,000 full)")
    p.add_argument("--window", type=float, help="seconds of deadlines measured under load (15 quick, 60 full)")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--profile", action="store_true", help="py-spy the worker during the throughput phase")
    p.add_argument("--worker-repo", help="run the worker from this checkout (a scratch copy)")
    p.add_argument("--worker-env", action="append", metavar="KEY=VALUE", help="extra worker environment")
    p.add_argument("--workdir", help="keep worker logs and data here (default: a temporary dir, removed)")
    p.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    args = p.parse_args(argv)
    base = QUICK if args.quick else FULL
    subscribers = args.subscribers or base.subscribers
    mode = Mode(base.name, subscribers=subscribers, fed=min(subscribers, args.fed or base.fed),
                rounds=args.rounds or base.rounds,
                window=args.window or base.window, mass=args.mass or base.mass, partitions=args.partitions)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    bench = Bench(args, mode)
    say(f"charter-streams live benchmark ({mode.name}): {asdict(mode)}; work dir {bench.workdir}")
    try:
        m = asyncio.run(bench.run())
    finally:
        bench.cleanup()
    m["machine"] = machine()
    m["worker_code"] = worker_code(Path(args.worker_repo or ROOT))
    m["worker_env"] = args.worker_env or []
    m["targets"] = TARGETS
    m["targets_met"] = targets_met(m)
    print(json.dumps(m), flush=True)


if __name__ == "__main__":
    main()
