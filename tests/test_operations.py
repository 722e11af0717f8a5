"""What an operator sees of a worker, without a broker: metrics, readiness, log lines, topic checks, settings of
issue 9 (the live test tests/kafka/test_operations.py scrapes a real worker)."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from faust.types import TP
from prometheus_client import CollectorRegistry, generate_latest

from streams.charter import load_charter
from streams.live.metrics import Metrics
from streams.logs import JsonFormatter
from streams.settings import Settings, retention_ms
from streams.topics import copartitioned, problems, topic_plan
from tests.live_fakes import PREFIX, Driver

ALICE = load_charter("alice-2007")


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_metrics_count_what_was_written_and_how_late():
    registry = CollectorRegistry()
    m = Metrics(ALICE, registry)
    comp = ("compensation", "C1", {"rule": "outage", "amount_cents": 299, "currency": "EUR",
                                   "crossed_at": "2026-12-01T10:00:00+00:00"})
    kpi = ("hotline-kpi", "q", {"window_start": "2026-12-01T09:45:00+00:00",
                                "window_end": "2026-12-01T10:00:00+00:00"})
    at = 1796119200.0  # 2026-12-01T10:00:00Z
    m.written([comp, comp, kpi], now_s=at + 190)
    assert _value(registry, "charter_outputs_total", topic="compensation") == 2
    assert _value(registry, "charter_compensations_total", charter="alice-2007", rule="outage") == 2
    assert _value(registry, "charter_compensation_cents_total", charter="alice-2007", rule="outage",
                  currency="EUR") == 598
    assert _value(registry, "charter_deadline_lateness_seconds_count") == 3
    # the compensations 190 s late, the KPI window (closing 180 s after its end) 10 s late
    assert _value(registry, "charter_deadline_lateness_seconds_sum") == pytest.approx(190 * 2 + 10)


def test_a_worker_is_ready_only_with_every_assigned_partition_loaded_and_caught_up():
    async def scenario():
        d = Driver()
        live = d.live
        assert "group" in live.readiness(), "ready before joining the group"
        await live._on_assigned(live.app, [])
        d.view.owned = {TP(PREFIX + "charter-clock", 0), TP(PREFIX + "charter-clock", 1)}
        assert live.readiness() == {"0": "state not loaded", "1": "state not loaded"}
        d.quiet(0)
        d.view.hw[TP(PREFIX + "switch-claim", 0)] = 3  # input appended to partition 0 that has not reached us
        d.offsets[TP(PREFIX + "switch-claim", 0)] = 0
        await d.run_main([d.tick(0)])
        first = live.readiness()
        d.quiet(1)
        d.view.hw[TP(PREFIX + "switch-claim", 0)] = 0
        await d.run_main([d.tick(0), d.tick(1)])
        return first, live.readiness(), d

    first, last, d = asyncio.run(scenario())
    assert first == {"0": "catching up", "1": "state not loaded"}
    assert last == {}
    exposed = generate_latest(d.live.registry).decode()
    assert 'charter_catching_up{partition="0"} 0.0' in exposed
    assert 'charter_state_subscribers{partition="0"}' in exposed
    assert "faust_" in exposed, "faust's own sensor metrics are not in the same registry"


def test_json_log_lines_carry_time_level_logger_message_and_partition():
    record = logging.LogRecord("charter.live", logging.WARNING, __file__, 1, "partition %d: %s", (3, "slow"), None)
    record.partition = 3
    line = orjson.loads(JsonFormatter().format(record))
    assert line["level"] == "WARNING" and line["logger"] == "charter.live"
    assert line["message"] == "partition 3: slow" and line["partition"] == 3
    assert line["time"].endswith("+00:00")


def test_topic_plan_keeps_the_ledger_forever_and_outputs_for_the_retention_setting():
    plan = topic_plan(Settings(topic_prefix="x.", output_retention="7d", partitions=3))
    assert plan["x.compensation"] == (3, {"retention.ms": "-1"})
    assert plan["x.billing"][1]["retention.ms"] == str(7 * 86400 * 1000)
    assert plan["charter-streams-subscribers-changelog"] == (3, {"cleanup.policy": "compact"})
    assert plan["x.dead-letter"][1]["max.message.bytes"] == str(16 * 1024 * 1024)


def test_problems_list_what_is_missing_not_copartitioned_or_not_compacted():
    settings = Settings(partitions=4)
    plan = topic_plan(settings)
    ok = {name: parts for name, (parts, _) in plan.items()}
    assert problems(settings, ok, {}) == []
    wrong = dict(ok)
    del wrong["billing"]
    wrong["service-status"] = 6
    found = problems(settings, wrong, {"charter-streams-hotline-changelog": False})
    assert found == ["billing is missing",
                     "service-status has 6 partitions, not CHARTER_PARTITIONS=4 (co-partitioned)",
                     "charter-streams-hotline-changelog is not compacted (cleanup.policy=compact)"]
    assert "call-queue" in copartitioned(settings)


@pytest.mark.parametrize(("text", "ms"), [("forever", -1), ("30d", 30 * 86400 * 1000), ("12h", 12 * 3600 * 1000)])
def test_retention_settings(text, ms):
    assert retention_ms(text) == ms


def test_a_bad_retention_is_refused():
    with pytest.raises(ValueError, match="output_retention"):
        Settings(output_retention="a month")


def test_every_setting_is_documented_in_operations_md():
    from pathlib import Path

    from streams.settings import env_name

    text = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    missing = [env_name(f) for f in Settings.model_fields if env_name(f) not in text]
    assert missing == []
