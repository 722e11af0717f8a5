"""Fault injection for the broker tests: malformed inputs (hypothesis strategies), a dedicated broker that a test
stops and starts, a publisher that survives a broker outage, parity checks and worker health.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
import string
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from hypothesis import strategies as st

from streams.charter import Charter
from streams.core.timeutil import parse_instant
from streams.producer import record_key
from tests.kafka.harness import REPO, OutputReader, Worker, diff, kafka_options, normalize, wait_for

INPUT_TOPICS = ("line-activation", "box-shipment", "service-status", "call-queue", "switch-claim")
BIG = 1 << 20  # "1 MB"

# ------------------------------------------------------------------------------------------------ poison messages


class Poison:
    """A malformed input message: the exact bytes published (None: a tombstone), its key, and why it is malformed.

    ``repr`` stays short even for 1 MB values, so hypothesis' report of a failing example is readable.
    """

    __slots__ = ("key", "kind", "raw", "topic")

    def __init__(self, kind: str, topic: str, key: str | None, raw: bytes | None) -> None:
        self.kind, self.topic, self.key, self.raw = kind, topic, key, raw

    def __repr__(self) -> str:
        if self.raw is None:
            shown = "None"
        elif len(self.raw) > 120:
            shown = f"{self.raw[:80]!r}...({len(self.raw)} bytes)"
        else:
            shown = repr(self.raw)
        return f"Poison({self.kind}, {self.topic}, key={self.key!r}, raw={shown})"

    @property
    def key_bytes(self) -> bytes | None:
        return None if self.key is None else self.key.encode()

    def expected_value(self) -> tuple[str | None, str]:
        """What SPEC section 3 puts in ``dead-letter``: the raw text, or base64 when it is not UTF-8."""
        if self.raw is None:
            return None, "utf-8"
        try:
            return self.raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(self.raw).decode("ascii"), "base64"


# Field kinds of the input topics (SPEC section 2), written from the SPEC, not from schemas/: the strategies
# must not inherit a bug of the code under test.
ENUMS = {
    "type": {"line-activation": ("order_placed", "line_confirmed", "service_active", "order_cancelled"),
             "call-queue": ("queued", "answered", "abandoned")},
    "zone": {"line-activation": ("unbundled", "non_unbundled")},
    "item": {"box-shipment": ("modem", "tv_decoder")},
    "status": {"box-shipment": ("shipped", "delivered", "returned"), "service-status": ("down", "up")},
    "service": {"service-status": ("internet", "telephony", "tv")},
}
STR_FIELDS = {"event_id", "customer_id", "call_id", "queue", "previous_operator"}
NULLABLE = {("call-queue", "customer_id"), ("switch-claim", "proof_id")}
INT_FIELDS = {"monthly_fee_cents", "termination_fee_cents"}


def required_fields(topic: str, value: dict[str, Any]) -> list[str]:
    """The fields a valid ``value`` of ``topic`` cannot do without (SPEC section 2)."""
    common = ["event_id", "occurred_at"]
    if topic == "line-activation":
        extra = ["customer_id", "type"] + (["zone", "monthly_fee_cents"] if value.get("type") == "order_placed" else [])
    elif topic == "box-shipment":
        extra = ["customer_id", "item", "status"]
    elif topic == "service-status":
        extra = ["customer_id", "service", "status"]
    elif topic == "call-queue":
        extra = ["call_id", "queue", "type"]
    else:
        extra = ["customer_id", "previous_operator", "termination_fee_cents", "proof_id"]
    return common + extra


def _typed_fields(topic: str, value: dict[str, Any]) -> list[str]:
    fields = [f for f in value if f != "padding"]
    if topic == "line-activation" and value.get("type") == "order_placed" and "tv" not in fields:
        fields.append("tv")
    return fields


_ID = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=8)
_ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_JSON_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53),
                         st.floats(allow_nan=False, allow_infinity=False), _ANY_TEXT)


def instants(start: datetime, span_s: int = 25) -> st.SearchStrategy[datetime]:
    """Aware instants in [start, start + span] seen from various UTC offsets."""
    return st.builds(
        lambda us, minutes: (start + timedelta(microseconds=us)).astimezone(timezone(timedelta(minutes=minutes))),
        st.integers(0, span_s * 1_000_000), st.sampled_from([0, 60, 120, -300, 330, -570]))


def valid_events(topic: str, start: datetime, customers: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Valid values of ``topic`` (SPEC section 2), event ids prefixed ``x-`` so they never collide with a scenario's."""
    cust = st.one_of(st.sampled_from(list(customers)), _ID) if customers else _ID

    @st.composite
    def build(draw: Callable) -> dict[str, Any]:
        v: dict[str, Any] = {"event_id": "x-" + draw(_ID), "occurred_at": draw(instants(start)).isoformat()}
        if topic == "call-queue":
            v.update(call_id="X" + draw(_ID), queue=draw(st.sampled_from(["technical", "billing", "sales"])),
                     type=draw(st.sampled_from(ENUMS["type"]["call-queue"])))
            if draw(st.booleans()):
                v["customer_id"] = draw(st.one_of(st.none(), cust))
            return v
        v["customer_id"] = draw(cust)
        if topic == "line-activation":
            v["type"] = draw(st.sampled_from(ENUMS["type"]["line-activation"]))
            if v["type"] == "order_placed":
                v.update(zone=draw(st.sampled_from(ENUMS["zone"]["line-activation"])),
                         monthly_fee_cents=draw(st.integers(1, 100_000)))
                if draw(st.booleans()):
                    v["tv"] = draw(st.booleans())
        elif topic == "box-shipment":
            v.update(item=draw(st.sampled_from(ENUMS["item"][topic])),
                     status=draw(st.sampled_from(ENUMS["status"][topic])))
        elif topic == "service-status":
            v.update(service=draw(st.sampled_from(ENUMS["service"][topic])),
                     status=draw(st.sampled_from(ENUMS["status"][topic])))
        else:
            v.update(previous_operator=draw(st.sampled_from(["Free", "Orange", "SFR", "Club-Internet"])),
                     termination_fee_cents=draw(st.integers(0, 20_000)), proof_id=draw(st.one_of(st.none(), _ID)))
        return v

    return build()


def _wrong_type(topic: str, field: str) -> st.SearchStrategy[Any]:
    """A JSON value of the wrong type for ``field`` (null only where the field is not nullable)."""
    nonnull = st.one_of(st.lists(_JSON_SCALAR, max_size=2), st.dictionaries(_ID, _JSON_SCALAR, max_size=2))
    if field == "occurred_at":  # a Unix time as a number, or not a string at all
        return st.one_of(st.integers(0, 2**40), st.floats(0, 2e9), st.none(), st.booleans(), nonnull)
    if field in INT_FIELDS:
        return st.one_of(st.integers(1, 10**6).map(str), st.floats(0.5, 1e6).filter(lambda x: x != int(x)),
                         st.integers(1, 10**6).map(float), st.booleans(), st.none(), nonnull)
    if field == "tv":
        return st.one_of(st.sampled_from(["true", "false", "yes", 0, 1]), st.none(), nonnull)
    others = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(), nonnull)
    if field in STR_FIELDS or field == "proof_id":
        return others if (topic, field) in NULLABLE else st.one_of(others, st.none())
    return st.one_of(others, st.none())  # enums


def _unknown_enum(allowed: Sequence[str]) -> st.SearchStrategy[str]:
    variants = [a.upper() for a in allowed] + [a.capitalize() for a in allowed] + [a + " " for a in allowed]
    return st.one_of(st.sampled_from(variants), _ANY_TEXT).filter(lambda s: s not in allowed)


def _not_json_text(ev: dict[str, Any]) -> st.SearchStrategy[str]:
    text = orjson.dumps(ev).decode()

    def unparsable(s: str) -> bool:
        for loads in (json.loads, orjson.loads):
            try:
                loads(s)
            except ValueError:
                continue
            return False
        return True

    return st.one_of(
        st.integers(1, len(text) - 1).map(lambda n: text[:n]),  # truncated: a prefix of an object never parses
        st.just(repr(ev)),  # a Python dict, single quotes
        _ANY_TEXT.map(lambda s: text + " " + s + "}"),  # trailing garbage
        st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    ).filter(unparsable)


def _filler(seed: str, size: int) -> str:
    return (seed * (size // len(seed) + 1))[:size]


KINDS = ("not_json", "not_utf8", "wrong_type", "unknown_enum", "missing_field", "huge", "naive_timestamp",
         "epoch_text_timestamp", "negative_amount", "other_topic", "not_object", "empty")


def _topics_for(kind: str) -> list[str]:
    if kind == "negative_amount":
        return ["line-activation", "switch-claim"]
    if kind == "unknown_enum":  # switch-claim has no enum field
        return [t for t in INPUT_TOPICS if t != "switch-claim"]
    return list(INPUT_TOPICS)


def poisons(kind: str, start: datetime, customers: Sequence[str], rotate: int = 0) -> st.SearchStrategy[Poison]:
    """Malformed messages of one ``kind``, malformed by construction (SPEC sections 1 and 2).

    ``rotate`` picks the topic hypothesis starts from (its simplest choice), so that even the simplest batch
    spreads its poisons over every input topic.
    """

    @st.composite
    def build(draw: Callable) -> Poison:
        topics = _topics_for(kind)
        r = rotate % len(topics)
        topic = draw(st.sampled_from(topics[r:] + topics[:r]))
        ev = draw(valid_events(topic, start, customers))
        raw: bytes | None
        if kind == "not_json":
            raw = draw(_not_json_text(ev)).encode()
        elif kind == "not_utf8":
            ev["customer_id" if "customer_id" in ev else "queue"] = "Zoé-" + draw(_ID)
            latin1 = orjson.dumps(ev).decode().encode("latin-1")
            before, after = draw(st.binary(max_size=30)), draw(st.binary(max_size=30))
            raw = draw(st.sampled_from([latin1, orjson.dumps(ev).decode().encode("utf-16"),
                                        before + b"\xff" + after]))  # 0xff never occurs in UTF-8
        elif kind == "wrong_type":
            field = draw(st.sampled_from(_typed_fields(topic, ev)))
            ev[field] = draw(_wrong_type(topic, field))
            raw = orjson.dumps(ev)
        elif kind == "unknown_enum":
            fields = [f for f in ev if f in ENUMS and topic in ENUMS[f]]
            field = draw(st.sampled_from(fields))
            ev[field] = draw(_unknown_enum(ENUMS[field][topic]))
            raw = orjson.dumps(ev)
        elif kind == "missing_field":
            del ev[draw(st.sampled_from(required_fields(topic, ev)))]
            raw = orjson.dumps(ev)
        elif kind == "huge":
            size = draw(st.integers(BIG, BIG + 65_536))
            seed = draw(st.text(string.ascii_letters + string.digits + " ", min_size=1, max_size=16))
            variant = draw(st.sampled_from(["object", "text", "binary"]))
            if variant == "object":  # a JSON object with a 1 MB field (allowed) that lacks a required field
                del ev[draw(st.sampled_from(required_fields(topic, ev)))]
                ev["padding"] = _filler(seed, size)
                raw = orjson.dumps(ev)
            elif variant == "text":
                raw = ("<" + _filler(seed, size)).encode()
            else:
                raw = b"\xff" + _filler(seed, size).encode()
        elif kind == "naive_timestamp":  # no UTC offset (or no time at all)
            at = draw(instants(start)).replace(tzinfo=None)
            ev["occurred_at"] = draw(st.sampled_from([at.isoformat(), at.isoformat(timespec="seconds"),
                                                      at.date().isoformat(), at.strftime("%Y-%m-%d %H:%M:%S")]))
            raw = orjson.dumps(ev)
        elif kind == "epoch_text_timestamp":  # a Unix time written as text: not RFC 3339, no offset
            at = draw(instants(start))
            ev["occurred_at"] = draw(st.sampled_from([str(int(at.timestamp())), f"{at.timestamp():.3f}"]))
            raw = orjson.dumps(ev)
        elif kind == "negative_amount":
            if topic == "line-activation":
                ev.update(type="order_placed", zone="unbundled", monthly_fee_cents=draw(st.integers(-100_000, 0)))
            else:
                ev["termination_fee_cents"] = draw(st.integers(-100_000, -1))
            raw = orjson.dumps(ev)
        elif kind == "other_topic":  # a valid event of another input topic
            other = draw(st.sampled_from([t for t in INPUT_TOPICS if t != topic]))
            raw = orjson.dumps(draw(valid_events(other, start, customers)))
        elif kind == "not_object":
            raw = orjson.dumps(draw(st.one_of(_JSON_SCALAR, st.lists(_JSON_SCALAR, max_size=4), st.just([ev]))))
        elif kind == "empty":
            raw = draw(st.sampled_from([b"", None]))  # an empty value, and a tombstone (null value)
        else:
            raise ValueError(kind)
        derived = record_key(topic, ev)  # the key upstream would give it, taken from the event
        key = draw(st.one_of(st.just(None if derived is None else derived.decode()), st.none(),
                             st.sampled_from(list(customers)), _ANY_TEXT))
        if raw is None and key is None:  # a tombstone is keyed (a Kafka record needs a key or a value)
            key = derived.decode() if derived is not None else "tombstone"
        return Poison(kind, topic, key, raw)

    return build()


def poison_batches(start: datetime, customers: Sequence[str], slots: int,
                   extra: int = 16) -> st.SearchStrategy[list[tuple[int, Poison]]]:
    """One poison of every kind plus up to ``extra`` more (not huge), each with a slot in [0, slots]: the
    poison is published right after the slot-th valid event (0: before the first)."""

    @st.composite
    def build(draw: Callable) -> list[tuple[int, Poison]]:
        batch = [draw(poisons(k, start, customers, rotate=i)) for i, k in enumerate(KINDS)]
        # the one-of-every-kind poisons are spread over the whole run (the simplest batch too)
        step = max(1, slots // len(KINDS))
        where = [min(slots, i * step + draw(st.integers(0, step))) for i in range(len(KINDS))]
        small = [k for k in KINDS if k != "huge"]
        more = draw(st.lists(st.sampled_from(small).flatmap(lambda k: poisons(k, start, customers)),
                             max_size=extra))
        batch += more
        where += draw(st.lists(st.integers(0, slots), min_size=len(more), max_size=len(more)))
        return sorted(zip(where, batch, strict=True), key=lambda x: x[0])

    return build()


def interleave(valid: list[dict[str, Any]], placed: list[tuple[int, Poison]]) -> list[dict[str, Any] | Poison]:
    out: list[dict[str, Any] | Poison] = []
    placed = list(placed)
    for i in range(len(valid) + 1):
        while placed and placed[0][0] == i:
            out.append(placed.pop(0)[1])
        if i < len(valid):
            out.append(valid[i])
    return out


# ------------------------------------------------------------------------------------------------ publishing


def _occurred_s(rec: dict[str, Any]) -> float | None:
    value = rec["value"]
    if isinstance(value, dict) and isinstance(value.get("occurred_at"), str):
        return parse_instant(value["occurred_at"]) / 1e6
    return None


def publish_tracked(bootstrap: str, prefix: str, items: Iterable[dict[str, Any] | Poison], realtime: bool = True,
                    max_request_size: int = 8 << 20, env: Mapping[str, str] | None = None) -> list[Any]:
    """Publish replay records (each when the wall clock reaches its occurred_at) and poisons (right after the
    record before them); return the RecordMetadata (partition, offset) of every item, in order.

    ``max_request_size`` above 1 MB: poisons carry ~1 MB values (the test broker accepts 8 MB). ``env``: the
    CHARTER_* security settings (default: this process's environment), e.g. a Deployment's ``env``.
    """

    async def run() -> list[Any]:
        producer = AIOKafkaProducer(**kafka_options(bootstrap, env), acks="all", linger_ms=2,
                                    max_request_size=max_request_size)
        await producer.start()
        try:
            futures = []
            for item in items:
                if isinstance(item, Poison):
                    futures.append(await producer.send(prefix + item.topic, item.raw, key=item.key_bytes))
                    continue
                at = _occurred_s(item) if realtime else None
                if at is not None and at > time.time():
                    await asyncio.sleep(at - time.time())
                topic, value = item["topic"], item["value"]
                futures.append(await producer.send(prefix + topic, orjson.dumps(value),
                                                   key=record_key(topic, value, item.get("key"))))
            return list(await asyncio.gather(*futures))
        finally:
            await producer.stop()

    return asyncio.run(run())


class ResilientPublisher(threading.Thread):
    """Upstream that keeps going through a broker outage.

    Records are published in real time (absolute occurred_at) one at a time, each ack (acks=all) awaited before
    the next. When a send fails or times out (the broker is down), the producer is dropped; a new one is started
    as soon as the broker answers again and publishing resumes from the first record not acknowledged. Order is
    kept; a record whose ack was lost may be appended twice (the same event_id: a duplicate changes nothing,
    SPEC section 1). ``lateness`` is the largest (ack wall clock - occurred_at), the append delay the outage caused.
    """

    def __init__(self, bootstrap: str, prefix: str, records: list[dict[str, Any]], send_timeout: float = 3.0,
                 reconnect_timeout: float = 180.0, env: Mapping[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.prefix, self.records = bootstrap, prefix, records
        self.options = kafka_options(bootstrap, env)
        self.send_timeout, self.reconnect_timeout = send_timeout, reconnect_timeout
        self.acked = 0
        self.failures: list[str] = []  # one line per failed send
        self.resent: list[int] = []  # indexes of records sent again after a failure
        self.producers_started = 0
        self.lateness = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as e:  # reported by the test
            self.error = e

    async def _connect(self) -> AIOKafkaProducer:
        deadline = time.monotonic() + self.reconnect_timeout
        while True:
            producer = AIOKafkaProducer(**self.options, acks="all", linger_ms=0,
                                        request_timeout_ms=int(self.send_timeout * 1000), retry_backoff_ms=100)
            try:
                await producer.start()
                self.producers_started += 1
                return producer
            except (KafkaError, OSError):
                await producer.stop()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    async def _run(self) -> None:
        producer: AIOKafkaProducer | None = None
        i = 0
        failed_at: int | None = None
        try:
            while i < len(self.records):
                rec = self.records[i]
                at = _occurred_s(rec)
                if at is not None and at > time.time():
                    await asyncio.sleep(at - time.time())
                if producer is None:
                    producer = await self._connect()
                topic, value = rec["topic"], rec["value"]
                try:
                    fut = await asyncio.wait_for(
                        producer.send(self.prefix + topic, orjson.dumps(value),
                                      key=record_key(topic, value, rec.get("key"))), self.send_timeout)
                    await asyncio.wait_for(fut, self.send_timeout + 1)
                except (TimeoutError, KafkaError, OSError) as e:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} record {i}: {type(e).__name__}: {e}")
                    failed_at = i
                    with contextlib.suppress(TimeoutError, KafkaError, OSError):
                        await asyncio.wait_for(producer.stop(), 10)
                    producer = None
                    continue
                if failed_at == i:
                    self.resent.append(i)
                if at is not None:
                    self.lateness = max(self.lateness, time.time() - at)
                self.acked = i = i + 1
        finally:
            if producer is not None:
                await producer.stop()


# ------------------------------------------------------------------------------------------------ a broker of its own


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_port_pair(first: int, tries: int = 20) -> tuple[int, int]:
    """Two consecutive free ports (broker, controller) from ``first`` on, stepping by 2."""
    for port in range(first, first + 2 * tries, 2):
        if not port_in_use(port) and not port_in_use(port + 1):
            return port, port + 1
    raise AssertionError(f"no two free consecutive ports in {first}..{first + 2 * tries}")


def session_broker_port() -> int:
    """The port of the broker the other kafka tests use (CHARTER_TEST_BOOTSTRAP or CHARTER_TEST_KAFKA_PORT)."""
    given = os.environ.get("CHARTER_TEST_BOOTSTRAP")
    if given:
        return int(given.split(",")[0].rsplit(":", 1)[1])
    return int(os.environ.get("CHARTER_TEST_KAFKA_PORT", "19092"))


class LocalBroker:
    """A dedicated Apache Kafka broker run by scripts/local-kafka, with its own port and state dir (data kept
    across stop/start)."""

    def __init__(self, state_dir: Path, port: int, controller_port: int) -> None:
        self.state_dir, self.port, self.controller_port = state_dir, port, controller_port
        self.script = str(REPO / "scripts" / "local-kafka")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, cmd: str, fresh: bool = False, timeout: float = 300) -> str:
        env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_CONTROLLER_PORT": str(self.controller_port),
               "KAFKA_STATE_DIR": str(self.state_dir), "KAFKA_FRESH": "1" if fresh else "0"}
        r = subprocess.run([self.script, cmd], env=env, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise AssertionError(f"local-kafka {cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r.stdout + r.stderr

    def start(self, fresh: bool = False) -> str:
        return self._run("start", fresh=fresh)

    def stop(self) -> str:
        return self._run("stop")

    def kill(self) -> str:
        return self._run("kill")

    def running(self) -> bool:
        env = {**os.environ, "KAFKA_PORT": str(self.port), "KAFKA_CONTROLLER_PORT": str(self.controller_port),
               "KAFKA_STATE_DIR": str(self.state_dir)}
        return subprocess.run([self.script, "status"], env=env, capture_output=True, timeout=30).returncode == 0


def seconds_charter_with_grace(path: Path, grace_seconds: float) -> Path:
    """The shipped alice-2007-seconds charter with another ``grace_seconds`` (and name), written to ``path``."""
    text = (REPO / "streams" / "charters" / "alice-2007-seconds.yaml").read_text(encoding="utf-8")
    lines = []
    for line in text.splitlines():
        if line.startswith("grace_seconds:"):
            line = f"grace_seconds: {float(grace_seconds)}"
        elif line.startswith("name:"):
            line = f"name: alice-2007-seconds-grace{int(grace_seconds)}"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ checks


def last_due(expected: Counter, charter: Charter) -> datetime:
    """The latest instant at which some expected output falls due (a KPI window closes answer_within after
    its end), so a test waits for exactly as long as the outputs need."""
    latest = datetime.min.replace(tzinfo=UTC)
    for k in expected:
        topic, _, value = orjson.loads(k)
        stamp = value.get("crossed_at") or value.get("starts_at")
        if topic == "hotline-kpi":
            stamp = value["window_end"]
        if not stamp:
            continue
        at = datetime.fromisoformat(stamp)
        if topic == "hotline-kpi":
            at += timedelta(microseconds=charter.hotline.answer_within)
        latest = max(latest, at)
    return latest + timedelta(seconds=charter.grace_seconds)


def await_parity(reader: OutputReader, expected: Counter, not_before: datetime, timeout: float = 60,
                 hold: float = 2.0, exact: bool = True) -> Counter:
    """Wait until the wall clock passes ``not_before``, then until the outputs equal ``expected`` (as a
    multiset, or as a set when ``exact`` is False: repeats allowed), and check they stay so for ``hold`` s."""
    wait_for(lambda: datetime.now(UTC) > not_before, (not_before - datetime.now(UTC)).total_seconds() + 30,
             "the outputs' due time")

    def actual() -> Counter:
        return normalize(reader.snapshot())

    def same(a: Counter) -> bool:
        return a == expected if exact else set(a) == set(expected)

    try:
        wait_for(lambda: same(actual()), timeout, "live outputs to equal replay's", interval=0.5)
    except AssertionError:
        raise AssertionError("outputs differ from replay's: " + diff(expected, actual())) from None
    until = time.monotonic() + hold
    wait_for(lambda: time.monotonic() >= until or not same(actual()), hold + 5, "the outputs to hold")
    got = actual()
    assert same(got), "outputs changed after matching replay's: " + diff(expected, got)
    return got


def compensation_repeats(records: Iterable[tuple[str, Any, dict[str, Any]]]) -> dict[str, int]:
    ids = Counter(v["compensation_id"] for t, _, v in records if t == "compensation")
    return {cid: n for cid, n in ids.items() if n > 1}


def worker_problems(worker: Worker, starts: int = 1) -> list[str]:
    """What says a worker crashed or restarted: not running, restarted, or a traceback/crash in its log."""
    problems = []
    if not worker.alive():
        problems.append(f"worker {worker.name} is not running (exit code {worker.proc and worker.proc.poll()})")
    if worker.starts != starts:
        problems.append(f"worker {worker.name} was started {worker.starts} times")
    bad = [line for line in worker.log_text().splitlines()
           if "Traceback" in line or "crashed" in line.lower()]
    if bad:
        problems.append(f"worker {worker.name} log has {len(bad)} Traceback/crashed lines, first: {bad[:3]}")
    return problems


def log_excerpt(worker: Worker, words: Sequence[str] = ("Traceback", "Error", "ERROR", "crash", "WARNING"),
                limit: int = 40) -> str:
    lines = [line for line in worker.log_text().splitlines() if any(w in line for w in words)]
    return "\n".join(lines[:limit])
