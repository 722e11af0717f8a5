"""Put on a worker's PYTHONPATH by a test: faults a test needs, injected into unchanged production code.

Python imports ``sitecustomize`` at start-up, so the worker under test runs the package as shipped with one method
wrapped; nothing of this is in the package.

- ``CHARTER_TEST_CORE_FAILS_ON=<event_id>``: ``Engine.apply`` raises on that event, as a bug in a rule would.
- ``CHARTER_TEST_SLOW_CALLS=<seconds>``: the call forwarder takes that long per call event, so it is in the middle
  of a batch (awaiting) whenever a rebalance comes.
"""

import asyncio
import os

FAIL_ON = os.environ.get("CHARTER_TEST_CORE_FAILS_ON")
SLOW_CALLS = float(os.environ.get("CHARTER_TEST_SLOW_CALLS") or 0)

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
    from streams.topics import CALL_TOPIC

    _decode = app.Live._decode

    async def _slow_decode(self, message, topic):
        if topic == CALL_TOPIC:
            await asyncio.sleep(SLOW_CALLS)
        return await _decode(self, message, topic)

    app.Live._decode = _slow_decode
