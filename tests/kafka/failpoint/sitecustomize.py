"""Put on a worker's PYTHONPATH by a test: faults a test needs, injected into unchanged production code.

Python imports ``sitecustomize`` at start-up, so the worker under test runs the package as shipped with one method
wrapped; nothing of this is in the package.

- ``CHARTER_TEST_CORE_FAILS_ON=<event_id>``: ``Engine.apply`` raises on that event, as a bug in a rule would.
- ``CHARTER_TEST_SLOW_CALLS=<seconds>``: the delivery of forwarded calls takes that long more per call event, so a
  forward is in flight (awaiting) whenever a rebalance comes.
- ``CHARTER_TEST_HOLD_ON=<event_id>``: once that event is at the head of its merge buffer, its partition's merge
  applies nothing more, as while it waits on a source that is behind (the event stays held, unacked, until the
  process dies).
- ``CHARTER_TEST_TXN_FAILS_ON=<event_id>``: the first exactly-once transaction whose flush covers that event fails
  (aborted, nobody fenced), as one does when the broker goes away mid-flush.
- ``CHARTER_TEST_SLOW_RESUME=<seconds>``: after an assignment faust resumes its flow that much later, so the consumer
  hands out the new assignment's first messages while the flow is still stopped (a window of milliseconds when
  nothing is slow).
"""

import asyncio
import os

FAIL_ON = os.environ.get("CHARTER_TEST_CORE_FAILS_ON")
SLOW_CALLS = float(os.environ.get("CHARTER_TEST_SLOW_CALLS") or 0)
TXN_FAILS_ON = os.environ.get("CHARTER_TEST_TXN_FAILS_ON")
HOLD_ON = os.environ.get("CHARTER_TEST_HOLD_ON")
SLOW_RESUME = float(os.environ.get("CHARTER_TEST_SLOW_RESUME") or 0)

if FAIL_ON:
    from streams.core import engine

    _apply = engine.Engine.apply

    def _failing_apply(self, topic, ev, at=None):
        if getattr(ev, "event_id", None) == FAIL_ON:
            raise RuntimeError(f"injected core failure on {FAIL_ON}")
        return _apply(self, topic, ev, at)

    engine.Engine.apply = _failing_apply

if SLOW_CALLS:
    from streams.live import app

    _forwarded = app.Live._forwarded

    async def _slow_forwarded(self, tp, messages, *args):
        await asyncio.sleep(SLOW_CALLS * len(messages))
        return await _forwarded(self, tp, messages, *args)

    app.Live._forwarded = _slow_forwarded

if HOLD_ON:
    from streams.core import task

    _pop_ready = task.Merger.pop_ready

    def _pop_ready_holding(self, read_until, now=None, slack=1_000_000):
        # the held event at the head of its buffer: the merge applies nothing, as while it waits on a source
        if any(buf and getattr(buf[0][1][1], "event_id", None) == HOLD_ON for buf in self._buffers.values()):
            return []
        return _pop_ready(self, read_until, now, slack)

    task.Merger.pop_ready = _pop_ready_holding

if TXN_FAILS_ON:
    from aiokafka.errors import KafkaError

    from streams.live import sink

    _transaction = sink.Sink._transaction
    _failed = []

    async def _failing_transaction(self, batch, changelog, txn):
        if not _failed and any(TXN_FAILS_ON.encode() in held.message.value for held in batch.acks):
            _failed.append(TXN_FAILS_ON)
            try:
                async with txn.transaction():
                    raise KafkaError(f"injected transaction failure on {TXN_FAILS_ON}")
            except KafkaError as e:
                sink.log.warning("%s: transaction failed (%s); the partition's task is dropped", changelog, e)
                return False
        return await _transaction(self, batch, changelog, txn)

    sink.Sink._transaction = _failing_transaction

if SLOW_RESUME:
    from faust.transport import consumer as faust_consumer

    _resume, _stop = faust_consumer.Consumer.resume_flow, faust_consumer.Consumer.stop_flow
    _stops = [0]

    def _counted_stop(self):
        _stops[0] += 1
        return _stop(self)

    def _slow_resume(self):
        stops = _stops[0]

        def resume():
            if _stops[0] == stops:  # not if a later rebalance stopped the flow again meanwhile
                _resume(self)

        asyncio.get_running_loop().call_later(SLOW_RESUME, resume)

    faust_consumer.Consumer.stop_flow = _counted_stop
    faust_consumer.Consumer.resume_flow = _slow_resume
