"""Poison input (GitHub issue 4): malformed messages interleaved with a real-time scenario go to ``dead-letter``
exactly once each, change nothing else, and never stop or restart the worker (SPEC sections 1 and 3).

Hypothesis generates the malformed batch (tests/kafka/faults.py ``poison_batches``: one message of every kind
-- not JSON, not UTF-8, wrong types, unknown enum values, missing fields, ~1 MB values, timestamps without an
offset or written as Unix time, negative amounts, another topic's events, JSON that is not an object, empty values
and tombstones -- plus random extras). Each example is a live run of ~45 s on its own deployment, so the search is
kept to two examples, with no shrinking; a failure names every poison by kind, topic, partition and offset.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from streams.core.timeutil import to_us
from tests.kafka.faults import (
    KINDS,
    Poison,
    await_parity,
    interleave,
    last_due,
    log_excerpt,
    poison_batches,
    publish_tracked,
    worker_problems,
)
from tests.kafka.harness import Deployment, OutputReader, expected_outputs, lines_of, scenario, wait_for

PARTITIONS = 3
HORIZON = 20.0  # deadlines of the seconds charter up to this long after the last event are expected


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else f"{text[:120]}...({len(text)} chars)"


def _check_dead_letters(items: list[Any], metas: list[Any], letters: list[tuple[str, Any, dict]]) -> list[str]:
    """Every poison in dead-letter exactly once, with its source topic/partition/offset, key, raw value and an
    error; nothing else in dead-letter."""
    problems = []
    want: dict[tuple[str, int, int], Poison] = {}
    for item, meta in zip(items, metas, strict=True):
        if isinstance(item, Poison):
            want[(item.topic, meta.partition, meta.offset)] = item
    got: dict[tuple[Any, Any, Any], list[tuple[Any, dict]]] = defaultdict(list)
    for _, key, value in letters:
        got[(value.get("source_topic"), value.get("partition"), value.get("offset"))].append((key, value))
    for where, poison in want.items():
        found = got.get(where, [])
        if len(found) != 1:
            problems.append(f"{poison!r} at partition {where[1]} offset {where[2]}: in dead-letter {len(found)} times")
            continue
        key, letter = found[0]
        text, encoding = poison.expected_value()
        if letter.get("value") != text or letter.get("value_encoding") != encoding:
            problems.append(f"{poison!r}: dead-letter value {_short(letter.get('value'))} "
                            f"({letter.get('value_encoding')}), expected {_short(text)} ({encoding})")
        if key != poison.key:
            problems.append(f"{poison!r}: dead-letter key {key!r}, expected the original key {poison.key!r}")
        if not isinstance(letter.get("error"), str) or not letter["error"].strip():
            problems.append(f"{poison!r}: dead-letter without an error: {_short(letter.get('error'))}")
    for where, found in got.items():
        if where not in want:
            problems.append(f"unexpected dead letter(s) at {where} (a valid event?): "
                            f"{[_short(v) for _, v in found]}")
    return problems


def run_poison_example(bootstrap: str, tmp: Path, data: st.DataObject, kinds: tuple[str, ...] = KINDS) -> None:
    dep = Deployment(bootstrap, tmp, partitions=PARTITIONS)
    reader = None
    try:
        worker = dep.worker().start()
        seed = data.draw(st.integers(0, 10_000), label="scenario seed")
        shape = scenario(datetime.now(UTC), customers=18, calls=10, seed=seed)
        customers = sorted({r["value"]["customer_id"] for r in shape if r["value"].get("customer_id")})
        placed = data.draw(poison_batches(datetime.now(UTC), customers, len(shape)), label="poisons")
        placed = [(i, p) for i, p in placed if p.kind in kinds]
        # the scenario starts once the batch is drawn: every valid event is appended when it occurs
        valid = scenario(datetime.now(UTC) + timedelta(seconds=2), customers=18, calls=10, seed=seed)
        items = interleave(valid, placed)
        note(f"{len(valid)} valid events, {len(placed)} poisons: {[p for _, p in placed]}")

        reader = OutputReader(dep)
        metas = publish_tracked(bootstrap, dep.prefix, items)
        last = max(datetime.fromisoformat(r["value"]["occurred_at"]) for r in valid)
        expected = expected_outputs(lines_of(valid), dep.charter, to_us(last + timedelta(seconds=HORIZON)))
        problems: list[str] = []
        try:  # the outputs are the replay of the valid events alone
            await_parity(reader, expected, max(last, last_due(expected, dep.charter)) + timedelta(seconds=1),
                         timeout=45)
        except AssertionError as e:
            problems.append(str(e))
        try:
            wait_for(lambda: len(reader.snapshot("dead-letter")) >= len(placed), 20, "a dead letter per poison")
        except AssertionError as e:
            problems.append(str(e))
        problems += _check_dead_letters(items, metas, reader.snapshot("dead-letter"))
        problems += worker_problems(worker)
        if problems:
            raise AssertionError("\n".join(problems) + f"\n--- worker log (excerpt):\n{log_excerpt(worker)}"
                                 f"\n--- worker log: {worker.log_path}")
    finally:
        if reader is not None:
            reader.close()
        dep.close()


@pytest.mark.slow
@settings(max_examples=2, deadline=None, phases=[Phase.generate], database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.data())
def test_poison_messages_go_to_dead_letter_once_and_change_nothing(kafka, tmp_path, data):
    run_poison_example(kafka, Path(tempfile.mkdtemp(dir=tmp_path)), data)
