"""What an operator relies on, against the real broker (issue 9): /metrics equals what the output topics hold,
/ready goes 503 -> 200 after a restart with state to load, SIGTERM is a clean stop (exit 0 within the session
timeout, nothing repeated after the restart), JSON log lines from "starting" to "stopped", pre-created topics."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson

from streams.settings import settings_from_env
from streams.topics import ensure_topics
from tests.kafka.harness import REPO, no_repeats, run_scenario, scenario, wait_for


def test_metrics_equal_what_the_output_topics_hold(deployment):
    dep = deployment(partitions=4)
    worker = dep.worker().start()
    records = scenario(datetime.now(UTC) + timedelta(seconds=2), customers=30, calls=20, seed=41)
    bad = [{"topic": "service-status", "key": "Z", "value": b"not json"},
           {"topic": "call-queue", "key": "K", "value": orjson.dumps({"event_id": "x", "call_id": "K"})}]
    out = run_scenario(dep, [*bad, *records])
    metrics = worker.metrics()

    def metric(name: str, **labels: str) -> float:
        return metrics.get((name, tuple(sorted(labels.items()))), 0.0)

    by_topic = Counter(t for t, _, _ in out)
    for topic, n in by_topic.items():
        if topic == "dead-letter":
            assert sum(v for (name, _), v in metrics.items() if name == "charter_dead_letters_total") == n
        else:
            assert metric("charter_outputs_total", topic=topic) == n, topic
    comps = [v for t, _, v in out if t == "compensation"]
    for rule in {c["rule"] for c in comps}:
        mine = [c for c in comps if c["rule"] == rule]
        assert metric("charter_compensations_total", charter=dep.charter.name, rule=rule) == len(mine)
        assert metric("charter_compensation_cents_total", charter=dep.charter.name, rule=rule,
                      currency="EUR") == sum(c["amount_cents"] for c in mine)
    events = Counter(r["topic"] for r in records)
    for topic, n in events.items():
        assert metric("charter_events_total", topic=topic) == n, topic
    assert metric("charter_deadline_lateness_seconds_count") == sum(
        n for t, n in by_topic.items() if t in ("compensation", "sla-alert", "hotline-breach", "hotline-kpi"))
    assert any(name.startswith("faust_") for name, _ in metrics), "faust's own sensor metrics are missing"
    assert worker.health("/healthz") == (200, {"status": "ok"})


def test_sigterm_is_a_clean_stop_and_ready_waits_for_the_restarted_state(deployment):
    dep = deployment(partitions=4, CHARTER_LOG_FORMAT="json")
    w = dep.worker().start()
    seen: list = []

    def during():
        time.sleep(8)  # mid-scenario, with state and pending deadlines
        t0 = time.monotonic()
        w.stop()
        took = time.monotonic() - t0
        assert w.proc.returncode == 0, w.log_text()[-3000:]
        assert took < float(dep.env["CHARTER_SESSION_TIMEOUT"]) + 5, f"SIGTERM took {took:.1f} s"
        time.sleep(3)  # events arrive and deadlines fall due while it is down: a backlog to apply
        w.start(wait=False)

        def ready() -> bool:
            if not w.alive():
                raise AssertionError(w.log_text()[-3000:])
            status, body = w.health()
            if status is not None:
                seen.append((status, body))
            return status == 200

        wait_for(ready, 90, "/ready after the restart", interval=0.05)

    records = scenario(datetime.now(UTC) + timedelta(seconds=2), seed=43)
    out = run_scenario(dep, records, during)  # exact parity: nothing repeated after the SIGTERM-restart
    no_repeats(out)
    assert seen[0][0] == 503 and seen[-1][0] == 200, seen[:3]
    assert any(isinstance(body, dict) and ("partitions" in body) for status, body in seen if status == 503), seen
    w.stop()
    lines = [line for line in w.log_text().splitlines() if line.strip()]
    parsed = [orjson.loads(line) for line in lines]  # every line is one JSON object
    assert {"time", "level", "logger", "message"} <= set(parsed[0])
    starts = [i for i, p in enumerate(parsed) if p["message"].startswith("worker starting")]
    stops = [i for i, p in enumerate(parsed) if p["message"].startswith("worker stopped")]
    assert starts[0] == 0 and len(starts) == 2 and len(stops) == 2 and stops[-1] == len(parsed) - 1


def test_pre_created_topics_are_checked_not_created(deployment):
    dep = deployment(partitions=2, CHARTER_CREATE_TOPICS="false")
    r = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], env=dep.env, capture_output=True,
                       text=True, timeout=60, cwd=REPO)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"{dep.prefix}compensation is missing" in errors[0] and "CHARTER_CREATE_TOPICS=false" in errors[0]
    ensure_topics(settings_from_env(dep.env, create_topics=True))  # the platform team creates them
    w = dep.worker().start()
    records = scenario(datetime.now(UTC) + timedelta(seconds=2), customers=6, calls=4, seed=47)
    run_scenario(dep, records)
    assert w.alive()
