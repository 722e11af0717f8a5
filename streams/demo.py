"""``charter demo``: the whole pipeline on one machine, compensations printed as they are emitted."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer

from streams.child import die_with_parent, free_port, health
from streams.connection import client_options, start_client
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[1]
LOCAL_KAFKA = REPO / "scripts" / "local-kafka"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _start_local_broker() -> str:
    if not LOCAL_KAFKA.exists():
        raise SystemExit("no broker: set CHARTER_BOOTSTRAP_SERVERS, or run from a clone that has scripts/local-kafka")
    _say("starting the local Apache Kafka broker (the first start fetches its jars from Maven Central)...")
    subprocess.run([str(LOCAL_KAFKA), "start"], check=True)
    return f"127.0.0.1:{os.environ.get('KAFKA_PORT', '9092')}"


def _wait_ready(log: Path, proc: subprocess.Popen, port: int, timeout: float = 120) -> None:
    """Until the worker's /ready answers 200 (joined, its partitions' state loaded and caught up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the worker exited; see {log}")
        if health(port)[0] == 200:
            return
        time.sleep(0.2)
    raise SystemExit(f"the worker did not become ready in {timeout:.0f} s; see {log}")


def format_incident(v: dict) -> str:
    """One line for an ``incident`` record: an element failing is the demo's most visible event."""
    if v["status"] == "open":
        due = f", first compensation due {v['next_due']}" if v.get("next_due") else ""
        stake = f"; {v['at_stake_cents'] / 100:,.2f} at stake" if v.get("at_stake_cents") is not None else ""
        return (f"INCIDENT open    element {v['element_id']}: {v['customers']} customers out at "
                f"{v['crossed_at']}{stake}{due}")
    return (f"INCIDENT closed  element {v['element_id']}: back at {v['crossed_at']}, at most {v['customers']} "
            "customers out")


async def _show(settings: Settings, prefix: str) -> None:
    consumer = AIOKafkaConsumer(prefix + "compensation", prefix + "sla-alert", prefix + "incident",
                                **client_options(settings),
                                group_id=None, auto_offset_reset="earliest", isolation_level="read_committed")
    await start_client(consumer, settings)
    total = 0
    try:
        async for m in consumer:
            v = orjson.loads(m.value)
            if m.topic.endswith("incident"):
                print(format_incident(v), flush=True)
                continue
            if m.topic.endswith("sla-alert"):
                print(f"alert         {v['customer_id']:<10} {v['alert']:<18} crossed {v['crossed_at']}", flush=True)
                continue
            total += v["amount_cents"]
            days = f" {v['credit_days']:>2} days" if v.get("credit_days") else ""
            print(f"compensation  {v['customer_id']:<10} {v['rule']:<18} {v['amount_cents'] / 100:>7.2f} "
                  f"{v['currency']}{days:<8} crossed {v['crossed_at']}   total {total / 100:,.2f}", flush=True)
    finally:
        await consumer.stop()


def run_demo(subscribers: int = 2000, partitions: int = 4, settings: Settings | None = None) -> None:
    settings = settings or Settings()
    started_broker = not settings.bootstrap_servers
    bootstrap = _start_local_broker() if started_broker else settings.bootstrap_servers
    prefix = f"demo{int(time.time())}."
    workdir = Path(".charter-demo")
    workdir.mkdir(exist_ok=True)
    port = free_port()
    env = {**os.environ, "CHARTER_BOOTSTRAP_SERVERS": bootstrap, "CHARTER_TOPIC_PREFIX": prefix,
           "CHARTER_APP_ID": f"charter-{prefix.rstrip('.')}", "CHARTER_CHARTER": "alice-2007-seconds",
           "CHARTER_PARTITIONS": str(partitions), "CHARTER_DATA_DIR": str(workdir / "data"),
           "CHARTER_WEB_PORT": str(port)}
    log = workdir / "worker.log"
    procs: list[subprocess.Popen] = []

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # stop the children and the broker we started, as Ctrl-C does

    signal.signal(signal.SIGTERM, on_term)
    try:
        with open(log, "wb") as fh:
            worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], env=env, stdout=fh,
                                      stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent)
        procs.append(worker)
        _say(f"worker starting (log: {log}; metrics: http://127.0.0.1:{port}/metrics); charter alice-2007-seconds: "
             "a day of the charter lasts a second")
        _wait_ready(log, worker, port)
        sim_log = open(workdir / "simulate.log", "wb")  # noqa: SIM115 - owned by the child
        procs.append(subprocess.Popen([sys.executable, "-m", "streams.cli", "simulate", "--no-progress",
                                       "--subscribers", str(subscribers), "--days", "3600"],
                                      env=env, stdout=sim_log, stderr=subprocess.STDOUT, start_new_session=True,
                                      preexec_fn=die_with_parent))
        _say(f"simulator publishing {subscribers} subscribers' traffic; compensations follow (Ctrl-C to stop)")
        asyncio.run(_show(settings.model_copy(update={"bootstrap_servers": bootstrap}), prefix))
    except KeyboardInterrupt:
        pass
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        if started_broker:
            subprocess.run([str(LOCAL_KAFKA), "stop"], check=False)
