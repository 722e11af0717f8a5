"""The framework's own ceiling: the raw ceiling loop's work (consume, orjson parse, one small output per input)
done by a minimal faust-streaming agent with the worker's faust settings and nothing of ours.

    python -m bench.faust_ceiling --bootstrap HOST:PORT --group G --out-topic T --total N --topics A B ...

Prints one JSON line (messages, seconds from the first message to the last output acknowledged, events/s) and
exits. The live benchmark runs it beside the raw aiokafka ceiling, so that a missed ``ratio`` can be split into
what faust's per-message path costs and what our adapter adds on top of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from typing import Any

import faust
import orjson

from bench.ceiling_args import ceiling_parser


def run(bootstrap: str, group: str, out_topic: str, total: int, topics: list[str]) -> None:
    from streams.connection import faust_options
    from streams.settings import Settings

    # the environment's CHARTER_* security settings, as the worker takes them
    app = faust.App(group, **faust_options(Settings(bootstrap_servers=bootstrap)),
                    datadir=tempfile.mkdtemp(prefix="faust-ceiling-"), consumer_auto_offset_reset="earliest",
                    producer_acks=-1, producer_linger=0.005,
                    producer_max_batch_size=256 * 1024, stream_wait_empty=False, web_enabled=False,
                    table_standby_replicas=1, topic_disable_leader=True)
    source = app.topic(*topics, key_serializer="raw", value_serializer="raw")
    sink = app.topic(out_topic, key_serializer="raw", value_serializer="raw")
    state: dict[str, Any] = {"n": 0, "t0": None, "futures": []}

    @app.agent(source)
    async def ceiling(stream: Any) -> None:
        loads, dumps = orjson.loads, orjson.dumps
        async for event in stream.events():
            if state["t0"] is None:
                state["t0"] = time.monotonic()
            v = loads(event.message.value)
            out = dumps({"customer_id": v["customer_id"], "event_id": v["event_id"]})
            state["futures"].append(await sink.send(key=event.message.key, value=out,
                                                    partition=event.message.partition))
            state["n"] += 1
            if len(state["futures"]) >= 1000:
                await asyncio.gather(*state["futures"])
                state["futures"] = []
            if state["n"] >= total:
                await asyncio.gather(*state["futures"])
                seconds = time.monotonic() - state["t0"]
                # straight to fd 1: faust's worker redirects sys.stdout to its logger
                os.write(1, json.dumps({"messages": state["n"], "seconds": seconds,
                                        "events_per_s": state["n"] / seconds}).encode() + b"\n")
                os._exit(0)  # measured; nothing to clean up in a throwaway consumer group

    logging.disable(logging.WARNING)
    faust.Worker(app, loglevel="error", quiet=True).execute_from_commandline()
    sys.exit(1)  # the worker stopped before the total was reached


def main() -> None:
    a = ceiling_parser("python -m bench.faust_ceiling").parse_args()
    sys.argv = sys.argv[:1]  # faust's Worker parses the command line itself
    run(a.bootstrap, a.group, a.out_topic, a.total, a.topics)


if __name__ == "__main__":
    main()
