"""Put on a worker's PYTHONPATH by a test: the core raises on one event id, as a bug in a rule would.

Python imports ``sitecustomize`` at start-up, so the worker under test runs unchanged production code with
``Engine.apply`` wrapped; nothing of this is in the package.
"""

import os

FAIL_ON = os.environ.get("CHARTER_TEST_CORE_FAILS_ON")

if FAIL_ON:
    from streams.core import engine

    _apply = engine.Engine.apply

    def _failing_apply(self, topic, ev, at=None):
        if getattr(ev, "event_id", None) == FAIL_ON:
            raise RuntimeError(f"injected core failure on {FAIL_ON}")
        return _apply(self, topic, ev, at)

    engine.Engine.apply = _failing_apply
