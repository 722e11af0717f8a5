"""The pure, deterministic core: charter rules, per-subscriber state machines, event-time deadlines and windows.

Nothing here imports Faust or talks to Kafka. Adapters (``streams.replay``, ``streams.worker``) feed it validated
events and clock advances and publish what it returns.
"""

from streams.core.changes import ElementChange
from streams.core.elements import ElementEngine
from streams.core.engine import Engine, Output
from streams.core.timeutil import iso, to_us

__all__ = ["ElementChange", "ElementEngine", "Engine", "Output", "iso", "to_us"]
