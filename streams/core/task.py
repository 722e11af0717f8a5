"""A stream task: the engine of one partition fed by several ordered sources, merged by event time.

This is the part of SPEC section 5 that makes lag harmless, kept pure so it is tested without a broker:

- every source (a topic-partition, or an upstream partition behind a repartition topic) delivers records in
  order into its own buffer;
- the task applies the buffered record with the smallest ``occurred_at`` next, but only while every source
  with an empty buffer is known to be read up to that instant (everything appended to it before then has
  reached us, so it cannot still deliver an older record); otherwise the task waits. This is Kafka Streams'
  task merging (``max.task.idle.ms``) and Quix Streams' ``buffering.py``, with the "idle" test made an instant
  so that a stale "caught up" (a source that has since fallen behind) cannot let a later record through;
- each record is applied under the event-time clock of replay (``Engine.advance`` then ``Engine.apply``);
- once every source is idle and every buffer is empty the task is caught up, and the wall-clock watermark (the
  instant up to which everything appended to the sources has been read) drives the clock instead.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Hashable, Mapping
from typing import Any

from streams.core.engine import Engine, Output


class Merger:
    """Per-source FIFO buffers, popped in ``occurred_at`` order across sources."""

    def __init__(self) -> None:
        self._buffers: dict[Hashable, deque[tuple[int, Any]]] = {}
        self._seq = 0

    def push(self, source: Hashable, at: int, item: Any) -> None:
        buf = self._buffers.get(source)
        if buf is None:
            buf = self._buffers[source] = deque()
        buf.append((at, item))

    def __len__(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    def buffered(self, source: Hashable) -> int:
        """Records of ``source`` waiting in its buffer."""
        buf = self._buffers.get(source)
        return len(buf) if buf is not None else 0

    def pop_ready(self, read_until: Mapping[Hashable, int | None], now: int | None = None,
                  slack: int = 1_000_000) -> list[tuple[int, Any]]:
        """Pop, in merged order, every record that may be applied now.

        ``read_until[source]``: the instant up to which everything appended to the source has reached its
        buffer, or None while it is behind. A record at t may go when every source with an empty buffer is read
        up to t; for a record stamped in the future (t > ``now``) it is enough that they are read up to
        ``now - slack``, so a wrong upstream clock cannot stall a partition.
        """
        out: list[tuple[int, Any]] = []
        buffers = self._buffers
        # heads: (at, order, source); order keeps ties stable in the order sources were first seen
        order = {s: i for i, s in enumerate(buffers)}
        heads = [(buf[0][0], order[s], s) for s, buf in buffers.items() if buf]
        heapq.heapify(heads)
        while heads:
            at = heads[0][0]
            bound = at if now is None else min(at, now - slack)
            if any(r is None or r < bound for s, r in read_until.items() if not buffers.get(s)):
                break  # an empty source may still deliver an older record
            _, o, s = heapq.heappop(heads)
            buf = buffers[s]
            out.append(buf.popleft())
            if buf:
                heapq.heappush(heads, (buf[0][0], o, s))
        return out



class Task:
    """One partition's engine and merger. Items are ``(topic, event, token)``; tokens come back once applied."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.merger = Merger()

    def push(self, source: Hashable, at: int, topic: str, event: Any, token: Any = None) -> None:
        self.merger.push(source, at, (topic, event, token))

    def step(self, read_until: Mapping[Hashable, int | None], now: int | None = None) -> Step:
        """Apply what may be applied; fire wall-clock deadlines when caught up.

        ``read_until`` as in ``Merger.pop_ready``. Once every buffer is empty and every source is read up to
        some instant, the smallest of them is the wall-clock watermark: the clock moves up to it.
        """
        engine = self.engine
        step = Step()
        for at, (topic, event, token) in self.merger.pop_ready(read_until, now):
            step.out += engine.advance(at)
            try:
                step.out += engine.apply(topic, event, at)
            except Exception as exc:  # a bug on one event must not stop the partition: dead-letter it
                step.failed.append((token, exc))
            step.applied.append(token)
        marks = list(read_until.values())
        if marks and None not in marks and not len(self.merger):
            step.out += engine.advance(min(marks))
        return step


class Step:
    """What one ``Task.step`` did: outputs, the tokens it applied (to ack), and the items the core failed on."""

    __slots__ = ("applied", "failed", "out")

    def __init__(self) -> None:
        self.out: list[Output] = []
        self.applied: list[Any] = []
        self.failed: list[tuple[Any, Exception]] = []
