"""What a user would pick instead of us: the raw ceiling loop's work (consume, orjson parse, one small output per
input, sent and acknowledged) done by a minimal Quix Streams application (PyPI ``quixstreams``, optional: the
``bench`` extra).

    python -m bench.quix_ceiling --bootstrap HOST:PORT --group G --out-topic T --total N --topics A B ...

Prints one JSON line (messages, seconds from the first message to the application stopped, events/s, the
quixstreams version) and exits; exit status 3 with one line on stderr when quixstreams is not installed. The live
benchmark runs it beside the faust agent (bench/faust_ceiling.py), one cold pass over the same input in a consumer
group of its own, for ``ratio_to_quix``.

The application is what the Quix Streams documentation shows, nothing tuned: ``Application`` with the consumer
group and ``auto_offset_reset="earliest"``, one ``app.dataframe`` per input topic, ``sdf.apply`` building the small
output and ``sdf.to_topic`` producing it (keyed by the input's key), and ``app.run(count=N)`` to stop after N
outputs. Its own defaults otherwise: librdkafka's consumer and producer (acks=all, idempotent), a checkpoint every
5 s (producer flushed, then offsets committed), and on stop a last checkpoint, so once ``run`` returns every output
has been acknowledged and every offset committed. ``seconds`` also holds leaving the group (librdkafka's close),
which this cannot separate from the last acknowledgement.

The values are read and written as bytes and parsed with ``orjson`` explicitly (quixstreams' own "json" serde is
orjson too in 3.x; explicit keeps the work identical to the other ceilings whatever a release changes).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any

import orjson

from bench.ceiling_args import ceiling_parser

NOT_INSTALLED = 3  # exit status: quixstreams cannot be imported (the optional `bench` extra is not installed)


def connection_config(settings: Any) -> dict[str, Any]:
    """Keyword arguments for quixstreams' ``ConnectionConfig`` (librdkafka names) from our Settings: the bootstrap
    servers and the CHARTER_* security settings, meaning the same as streams.connection gives aiokafka (TLS verifies
    the broker's certificate and host name; a client key left unset is in the certificate file)."""
    protocol = settings.security_protocol
    out: dict[str, Any] = {"bootstrap_servers": settings.bootstrap, "security_protocol": protocol.lower()}
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        out.update(sasl_mechanism=settings.sasl_mechanism, sasl_username=settings.sasl_username,
                   sasl_password=settings.sasl_password.get_secret_value())
    if protocol in ("SSL", "SASL_SSL"):
        # aiokafka's context checks the host name; librdkafka does too only with "https" (its default since 2.0,
        # said here so an older librdkafka does not quietly skip it)
        out["ssl_endpoint_identification_algorithm"] = "https"
        if settings.ssl_cafile is not None:
            out["ssl_ca_location"] = str(settings.ssl_cafile)
        if settings.ssl_certfile is not None:
            out["ssl_certificate_location"] = str(settings.ssl_certfile)
            out["ssl_key_location"] = str(settings.ssl_keyfile or settings.ssl_certfile)
    return out


def run(bootstrap: str, group: str, out_topic: str, total: int, topics: list[str],
        idle_timeout: float = 60.0) -> dict[str, Any]:
    """Process ``total`` messages of ``topics`` into ``out_topic``; the measurement as a dict."""
    import quixstreams
    from quixstreams import Application
    from quixstreams.kafka.configuration import ConnectionConfig

    from streams.settings import Settings

    # the environment's CHARTER_* security settings, as the worker takes them
    broker = ConnectionConfig(**connection_config(Settings(bootstrap_servers=bootstrap)))
    state: dict[str, Any] = {"n": 0, "t0": None}
    loads, dumps = orjson.loads, orjson.dumps

    def forward(value: bytes) -> bytes:
        if state["t0"] is None:
            state["t0"] = time.monotonic()
        state["n"] += 1
        v = loads(value)
        return dumps({"customer_id": v["customer_id"], "event_id": v["event_id"]})

    with tempfile.TemporaryDirectory(prefix="quix-ceiling-") as state_dir:  # stateless: nothing is written there
        app = Application(broker_address=broker, consumer_group=group, auto_offset_reset="earliest",
                          state_dir=state_dir, loglevel="WARNING")
        sink = app.topic(out_topic, key_serializer="bytes", value_serializer="bytes")
        for name in topics:
            sdf = app.dataframe(app.topic(name, key_deserializer="bytes", value_deserializer="bytes"))
            sdf = sdf.apply(forward)
            sdf.to_topic(sink)  # keyed by the input's key
        # count: stop after N outputs (one per input); timeout: give up after this long without a message (counted
        # from the first assignment) instead of hanging when fewer than N messages are there
        app.run(count=total, timeout=idle_timeout, collect=False)
        end = time.monotonic()
    if state["n"] < total:
        raise RuntimeError(f"stopped after {state['n']} of {total} messages: none came for {idle_timeout:.0f} s")
    seconds = end - state["t0"]
    return {"messages": state["n"], "seconds": seconds, "events_per_s": state["n"] / seconds,
            "quixstreams_version": quixstreams.__version__}


def main(argv: list[str] | None = None) -> None:
    p = ceiling_parser("python -m bench.quix_ceiling")
    p.add_argument("--idle-timeout", type=float, default=60.0, help="seconds without a message before giving up")
    a = p.parse_args(argv)
    try:
        import quixstreams  # noqa: F401
    except ImportError as e:
        print(f"quixstreams is not installed ({e}): pip install -e '.[bench]'", file=sys.stderr)
        sys.exit(NOT_INSTALLED)
    print(json.dumps(run(a.bootstrap, a.group, a.out_topic, a.total, a.topics, a.idle_timeout)), flush=True)


if __name__ == "__main__":
    main()
