"""Helpers for tests against the real Apache Kafka broker: worker processes, output readers, scenarios."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from streams.charter import Charter, load_charter
from streams.child import die_with_parent, fetch, free_port, health
from streams.connection import client_options
from streams.core.timeutil import to_us
from streams.producer import publish
from streams.replay import replay
from streams.settings import settings_from_env
from streams.topics import OUTPUT_TOPICS

REPO = Path(__file__).resolve().parents[2]
SECONDS_CHARTER = str(REPO / "tests" / "charters" / "alice-2007-seconds-test.yaml")


def kafka_options(bootstrap: str, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Client options for ``bootstrap`` with the CHARTER_* security settings of ``env`` (default: this process's
    environment), as the worker processes take them."""
    return client_options(settings_from_env(os.environ if env is None else env, bootstrap_servers=bootstrap))


def failpoint_path() -> str:
    """A worker's PYTHONPATH with tests/kafka/failpoint first (its sitecustomize injects faults), then the caller's."""
    return os.pathsep.join(filter(None, [str(Path(__file__).parent / "failpoint"), os.environ.get("PYTHONPATH")]))


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``cond`` until it is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class Deployment:
    """A namespace (topic prefix, app id) on the broker, with its worker processes."""

    def __init__(self, bootstrap: str, tmp: Path, partitions: int = 4, charter: str = SECONDS_CHARTER,
                 **env: str) -> None:
        self.bootstrap = bootstrap
        self.tmp = tmp
        tag = uuid.uuid4().hex[:8]
        self.prefix = f"t{tag}."
        self.env = {
            **os.environ,
            "CHARTER_BOOTSTRAP_SERVERS": bootstrap,
            "CHARTER_PARTITIONS": str(partitions),
            "CHARTER_CHARTER": charter,
            "CHARTER_APP_ID": f"charter-test-{tag}",
            "CHARTER_TOPIC_PREFIX": self.prefix,
            "CHARTER_SESSION_TIMEOUT": "6",
            "CHARTER_LOG_LEVEL": "info",
            **env,
        }
        self.charter = load_charter(charter)
        self.workers: list[Worker] = []

    def client_options(self) -> dict[str, Any]:
        """Options of a Kafka client of this deployment: its broker, with its workers' security settings."""
        return kafka_options(self.bootstrap, self.env)

    def worker(self, name: str = "w") -> Worker:
        w = Worker(self, f"{name}{len(self.workers)}")
        self.workers.append(w)
        return w

    def close(self) -> None:
        for w in self.workers:
            w.kill()


class Worker:
    """One ``charter worker`` process, logging to a file."""

    def __init__(self, dep: Deployment, name: str) -> None:
        self.dep = dep
        self.name = name
        self.log_path = dep.tmp / f"{name}.log"
        self.data_dir = dep.tmp / f"{name}-data"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.web_port = free_port()  # kept across restarts, as a pod keeps its port

    def start(self, wait: bool = True) -> Worker:
        env = {**self.dep.env, "CHARTER_DATA_DIR": str(self.data_dir), "CHARTER_WEB_PORT": str(self.web_port)}
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        # its own process group (killpg stops the worker and nothing else), and it dies with this process
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True, cwd=self.dep.tmp,
                                     preexec_fn=die_with_parent)
        log.close()
        self.starts += 1
        if wait:
            self.wait_ready()
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def health(self, path: str = "/ready") -> tuple[int | None, Any]:
        return health(self.web_port, path)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The worker's /metrics: (sample name, sorted labels) -> value."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = fetch(self.web_port, "/metrics")
        assert status == 200, (status, body[:300])
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(body.decode()) for s in family.samples}

    def wait_ready(self, timeout: float = 90) -> None:
        """Until ``/ready`` answers 200: joined, every assigned partition's state loaded and caught up."""
        last: list[Any] = [None]

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited ({self.proc.returncode}):\n{self.log_text()[-3000:]}")
            status, body = self.health()
            last[0] = (status, body)
            return status == 200

        try:
            wait_for(ready, timeout, f"worker {self.name} to be ready")
        except AssertionError as e:
            raise AssertionError(f"{e}; last /ready: {last[0]}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 60) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()


class OutputReader:
    """Reads every output topic of a deployment from the beginning, in a background thread."""

    def __init__(self, dep: Deployment, topics: Iterable[str] = OUTPUT_TOPICS,
                 isolation_level: str = "read_uncommitted") -> None:
        self.dep = dep
        self.topics = [dep.prefix + t for t in topics]
        self.isolation_level = isolation_level
        self.records: list[tuple[str, str | None, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        consumer = AIOKafkaConsumer(*self.topics, **self.dep.client_options(), group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False,
                                    isolation_level=self.isolation_level, metadata_max_age_ms=1000)
        await consumer.start()
        try:
            while not self._stop.is_set():
                batch = await consumer.getmany(timeout_ms=200)
                with self._lock:
                    for msgs in batch.values():
                        for m in msgs:
                            topic = m.topic[len(self.dep.prefix):]
                            key = None if m.key is None else m.key.decode()
                            self.records.append((topic, key, orjson.loads(m.value)))
        finally:
            await consumer.stop()

    def snapshot(self, topic: str | None = None) -> list[tuple[str, str | None, dict[str, Any]]]:
        with self._lock:
            return [r for r in self.records if topic is None or r[0] == topic]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


def normalize(records: Iterable[tuple[str, Any, dict[str, Any]]]) -> Counter:
    """Records as a multiset, ``emitted_at`` aside (the one field live and replay may not share)."""
    out: Counter = Counter()
    for topic, key, value in records:
        if topic == "dead-letter":
            continue
        v = {k: x for k, x in value.items() if k != "emitted_at"}
        out[orjson.dumps([topic, key, v], option=orjson.OPT_SORT_KEYS)] += 1
    return out


def diff(expected: Counter, actual: Counter) -> str:
    missing, extra = expected - actual, actual - expected
    lines = [f"missing {sum(missing.values())}, extra {sum(extra.values())}"]
    lines += ["missing: " + k.decode() for k in list(missing)[:10]]
    lines += ["extra:   " + k.decode() for k in list(extra)[:10]]
    return "\n".join(lines)


def expected_outputs(lines: list[bytes], charter: Charter | str, until_us: int) -> Counter:
    """What ``charter replay --until`` gives for these lines (a Charter, a shipped name or a file path)."""
    return normalize(replay(lines, charter if isinstance(charter, Charter) else load_charter(charter), until_us))


def publish_records(dep: Deployment, records: list[dict[str, Any]], realtime: bool = True,
                    sent_at: list[float] | None = None) -> None:
    """Publish records (at their occurred_at when ``realtime``); ``sent_at`` receives each one's send time."""
    on_sent = None if sent_at is None else (lambda: sent_at.append(time.time()))

    async def run() -> None:
        producer = AIOKafkaProducer(**dep.client_options(), acks="all", linger_ms=2)
        await producer.start()
        try:
            await publish(producer, records, realtime=realtime, prefix=dep.prefix, absolute=True, on_sent=on_sent)
        finally:
            await producer.stop()

    asyncio.run(run())


def publish_lateness(records: list[dict], sent_at: list[float], customers: set[str]) -> str:
    """How late the publisher sent each event of ``customers`` (and the worst overall): an event sent after its
    occurred_at + grace may rightly miss a deadline live (SPEC 5), which no worker can help."""
    lines, worst = [], 0.0
    for rec, sent in zip(records, sent_at, strict=False):
        value = rec["value"]
        if not isinstance(value, dict) or not value.get("occurred_at"):
            continue
        late = sent - datetime.fromisoformat(value["occurred_at"]).timestamp()
        worst = max(worst, late)
        if value.get("customer_id") in customers:
            lines.append(f"  {rec['topic']} {value.get('event_id')} at {value['occurred_at']}: sent {late:+.2f} s")
    head = f"publisher: worst lateness {worst:.2f} s"
    return "\n".join([f"{head}; events of the differing customers:" if customers else head, *lines])


def iso(t: datetime) -> str:
    return t.isoformat()


def scenario(t0: datetime, customers: int = 40, calls: int = 30, seed: int = 7) -> list[dict[str, Any]]:
    """A seconds-scale scenario (alice-2007-seconds: a day is a second) touching every rule, time-ordered.

    Event times avoid the last half second before each threshold, so publish latency (< grace) cannot
    reorder an event and a deadline.
    """
    rng = random.Random(seed)
    ev: list[tuple[float, str, dict[str, Any]]] = []
    n = 0

    def add(at: float, topic: str, **value: Any) -> None:
        nonlocal n
        n += 1
        value["event_id"] = f"e{n}"
        off = rng.choice([0, 2, -5])
        when = (t0 + timedelta(seconds=at)).astimezone(UTC).astimezone(
            __import__("datetime").timezone(timedelta(hours=off)))
        value["occurred_at"] = when.isoformat()
        ev.append((at, topic, value))

    for i in range(customers):
        c = f"C{i:04d}"
        kind = i % 6
        base = rng.uniform(0, 6)
        if kind in (0, 1, 2):  # new orders
            tv = rng.random() < 0.5
            add(base, "line-activation", customer_id=c, type="order_placed", tv=tv,
                zone=rng.choice(["unbundled", "non_unbundled"]), monthly_fee_cents=rng.choice([2995, 3490, 4499]))
            add(base + 0.2, "line-activation", customer_id=c, type="line_confirmed")
            late = kind == 2
            d = rng.uniform(15.7, 18) if late else rng.uniform(1, 9)
            add(base + 0.2 + d, "box-shipment", customer_id=c, item="modem", status="delivered")
            if tv:
                add(base + 0.2 + rng.uniform(1, 9), "box-shipment", customer_id=c, item="tv_decoder",
                    status="delivered")
            act = base + 0.2 + (rng.uniform(1, 9) if not late else 9.5)
            add(act, "line-activation", customer_id=c, type="service_active")
            if kind == 1:  # an outage in the first month
                down = act + rng.uniform(1, 3)
                add(down, "service-status", customer_id=c, service="internet", status="down")
                add(down + rng.choice([0.3, 2.2, 5.0]), "service-status", customer_id=c, service="internet",
                    status="up")
        elif kind == 3:  # legacy customers with outages across the tiers
            down = base
            add(down, "service-status", customer_id=c, service="tv", status="down")
            add(down + 0.3, "service-status", customer_id=c, service="internet", status="down")
            add(down + 0.4, "service-status", customer_id=c, service="tv", status="up")
            add(down + rng.choice([0.4, 1.5, 3.6, 8.0]), "service-status", customer_id=c, service="internet",
                status="up")
        elif kind == 4:  # switch claims
            add(base, "switch-claim", customer_id=c, previous_operator="Free",
                termination_fee_cents=rng.choice([0, 4900, 15000]), proof_id=rng.choice([None, "", "P1"]))
            add(base + 1, "switch-claim", customer_id=c, previous_operator="Free", termination_fee_cents=8000,
                proof_id="P2")
        else:  # cancelled order
            add(base, "line-activation", customer_id=c, type="order_placed", tv=False, zone="unbundled",
                monthly_fee_cents=2995)
            add(base + 0.1, "line-activation", customer_id=c, type="line_confirmed")
            add(base + 2, "line-activation", customer_id=c, type="order_cancelled")
    for i in range(calls):
        k = f"K{i:04d}"
        q = rng.choice(["technical", "billing", "sales"])
        at = rng.uniform(0, 20)
        add(at, "call-queue", call_id=k, queue=q, type="queued", customer_id=f"C{i:04d}")
        fate = rng.random()
        if fate < 0.5:
            add(at + rng.choice([0.5, 1.5, 2.2, 4.0]), "call-queue", call_id=k, queue=q, type="answered")
        elif fate < 0.75:
            add(at + rng.uniform(0.5, 5), "call-queue", call_id=k, queue=q, type="abandoned")
    ev.sort(key=lambda e: e[0])
    return [{"topic": topic, "value": value} for _, topic, value in ev]


def lines_of(records: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(r) for r in records]


HORIZON = 20.0  # seconds after the last event by which every deadline of the seconds charter has fired


def run_scenario(dep, records, during=None, without=frozenset(), repeats_ok=False,
                 isolation_level: str = "read_uncommitted"):
    """Publish in real time, then wait for parity with the replay of the valid events (minus ``without``, event ids).

    ``repeats_ok``: at-least-once after a SIGKILL, exact repeats of a record are allowed (nothing else is).

    ``during()`` runs in the test's thread while a background thread keeps publishing (upstream does not stop
    when our worker does): what it does to the workers happens while events and deadlines keep coming.
    """
    reader = OutputReader(dep, isolation_level=isolation_level)
    try:
        publisher = threading.Thread(target=publish_records, args=(dep, records), daemon=True)
        publisher.start()
        if during is not None:
            during()
        publisher.join()
        valid = [r for r in records if isinstance(r["value"], dict) and "occurred_at" in r["value"]
                 and r["value"]["event_id"] not in without]
        last = max(datetime.fromisoformat(r["value"]["occurred_at"]) for r in valid)
        until = last + timedelta(seconds=HORIZON)
        # the replay of the valid events alone (malformed ones must change nothing)
        expected = expected_outputs(lines_of(valid), dep.charter, to_us(until))
        wait_for(lambda: datetime.now(UTC) > until, HORIZON + 30, "the scenario's horizon")

        def same(actual):
            if repeats_ok:
                return set(actual) == set(expected) and all(actual[k] >= n for k, n in expected.items())
            return actual == expected

        def matches():
            return same(normalize(reader.snapshot()))

        try:
            wait_for(matches, 60, "live outputs to equal replay's")
        except AssertionError:
            raise AssertionError(diff(expected, normalize(reader.snapshot()))) from None
        # nothing more may arrive: the horizon is past, every deadline has fired
        time.sleep(2)
        assert same(normalize(reader.snapshot())), diff(expected, normalize(reader.snapshot()))
        return reader.snapshot()
    finally:
        reader.close()


def no_repeats(records):
    ids = [v["compensation_id"] for t, _, v in records if t == "compensation"]
    assert len(ids) == len(set(ids)), "a compensation was repeated"
    return ids
