"""The live adapter: a faust-streaming worker around the same core as ``charter replay``.

Modules, each depending only on those below it:

- ``app``: the faust app, its topics and agents, the clock, the worker command (wiring only);
- ``tasks``: partition tasks' lifecycle (load from the changelog, step, flush in the background, forget);
- ``sink``: writes a flush (outputs, then state rows; exactly-once: one transaction) and says if it landed;
- ``acks``: commit points (a message is acked once it and everything before it on its partition is done);
- ``changelog``: the state row formats and the changelog reader;
- ``progress``: read progress and partition ownership; the only module touching faust's or aiokafka's privates.
"""

from streams.live.app import Live, run_worker

__all__ = ["Live", "run_worker"]
