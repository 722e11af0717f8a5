"""Commit points: a message is acked only once it and everything before it on its topic-partition is done."""

from __future__ import annotations

from collections import deque
from typing import Any


class Held:
    """A received message until its ack is released: the token a partition task carries with the event."""

    __slots__ = ("done", "event", "message", "tp")

    def __init__(self, tp: Any, event: Any, message: Any = None) -> None:
        # event: what is acked (a faust stream's event, or the message itself on the batched path)
        self.tp, self.event, self.done = tp, event, False
        self.message = event if message is None else message


class InOrderAcks:
    """Releases the acks of each topic-partition in offset order.

    faust commits a topic-partition up to the first gap in what was acked, except at the head: with committed
    offset c and acked [c + 1] it commits c + 2 (its ``Consumer._new_offset`` takes c as the last processed offset,
    while it is the next to read; faust-streaming issue #606, unfixed in 0.15.3), and with nothing committed yet
    it takes no gap at the head into account at all. So a message acked ahead of an earlier one still held in a
    task's buffers (a dead letter, a watermark) would let the commit pass the held one, which a crash then loses.
    Here a message is acked only once it and every message received before it on its topic-partition are done.
    """

    __slots__ = ("_pending",)

    def __init__(self) -> None:
        self._pending: dict[Any, deque[Held]] = {}  # tp -> its messages not acked yet, in the order received

    def received(self, tp: Any, event: Any, message: Any = None) -> Held:
        """Note a message of ``tp`` as received (messages of a topic-partition arrive in offset order); ``event``
        is what will be acked, ``message`` the message (by default the event itself)."""
        held = Held(tp, event, message)
        queue = self._pending.get(tp)
        if queue is None:
            queue = self._pending[tp] = deque()
        queue.append(held)
        return held

    def hold(self, held: Any) -> Any:
        """Note a message that is its own token (``tp``, ``event``, ``message`` and ``done`` like a ``Held``)."""
        queue = self._pending.get(held.tp)
        if queue is None:
            queue = self._pending[held.tp] = deque()
        queue.append(held)
        return held

    def done(self, held: Held) -> list[Any]:
        """Mark a received message applied (or dead-lettered); returns the events that may be acked now."""
        held.done = True
        queue = self._pending[held.tp]
        out = []
        while queue and queue[0].done:
            out.append(queue.popleft().event)
        return out
