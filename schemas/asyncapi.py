"""The AsyncAPI 3.0 document of every topic of a deployment, built from the pydantic models (``python -m schemas``).

Channels are the topics the worker reads and writes: the inputs and outputs of the contract (schemas/inputs.py,
schemas/outputs.py) and the internal topics the worker creates (streams/topics.py). Each channel carries its
message (payload schema and key) and a Kafka binding with the partition count and topic configuration of a
deployment with default settings. The payload schemas are the models' JSON Schemas, with their shared definitions
moved to ``components/schemas`` so every reference resolves inside the one document.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.inputs import INPUT_TOPICS, KEY_FIELD
from schemas.outputs import OUTPUT_KEY_FIELD, OUTPUT_MODELS

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
_REF = "#/components/schemas/{model}"
_PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def package_version() -> str:
    """The project's version: pyproject.toml in a source tree, else the installed package's metadata."""
    if _PYPROJECT.is_file():
        return tomllib.loads(_PYPROJECT.read_text(encoding="utf-8"))["project"]["version"]
    from importlib.metadata import version

    return version("charter-streams")


def _asyncapi_schema(node: Any) -> Any:
    """A pydantic JSON Schema as an AsyncAPI Schema Object: pydantic's OpenAPI-style ``discriminator`` object is
    dropped (AsyncAPI's is a property name with another meaning; the ``const`` of each ``oneOf`` branch already
    tells them apart)."""
    if isinstance(node, dict):
        return {k: _asyncapi_schema(v) for k, v in node.items() if not (k == "discriminator" and isinstance(v, dict))}
    if isinstance(node, list):
        return [_asyncapi_schema(v) for v in node]
    return node


class _Schemas:
    """``components/schemas``: one payload schema per topic and the definitions they share."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}

    def add(self, name: str, schema: dict[str, Any]) -> dict[str, str]:
        """Put ``schema`` (its ``$defs`` hoisted) under ``name``; a reference to it."""
        schema = _asyncapi_schema(copy.deepcopy(schema))
        for model, definition in schema.pop("$defs", {}).items():
            if self.schemas.setdefault(model, definition) != definition:
                raise ValueError(f"two different schemas named {model!r}")
        self.schemas[name] = schema
        return {"$ref": _REF.format(model=name)}


def _kafka_channel(partitions: int, configs: dict[str, str]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in sorted(configs.items()):
        if key == "cleanup.policy":
            config[key] = value.split(",")
        else:
            config[key] = int(value) if value.lstrip("-").isdigit() else value
    binding: dict[str, Any] = {"partitions": partitions}
    if config:
        binding["topicConfiguration"] = config
    return {"kafka": {**binding, "bindingVersion": KAFKA_BINDING}}


def _key(description: str, types: str | list[str] = "string") -> dict[str, Any]:
    return {"kafka": {"key": {"type": types, "description": description}, "bindingVersion": KAFKA_BINDING}}


# one line per topic of the contract, the message's summary (the whole contract: docs/contract.md)
SUMMARY = {
    "line-activation": "An order's life: placed, line confirmed by the incumbent, service working, cancelled.",
    "box-shipment": "A modem or TV decoder shipped, delivered or returned.",
    "service-status": "One service (internet, telephony, tv) of a customer going down or coming back up.",
    "call-queue": "A hotline call queued, answered or abandoned.",
    "switch-claim": "A new customer asking for the previous operator's termination fee back.",
    "appointment": "An engineer's visit booked, attended, or cancelled by the provider.",
    "compensation": "Money owed to a customer because a promise was broken.",
    "billing": "Start billing a customer whose service works, with the installation fee owed.",
    "claim-decision": "The outcome of a switch-claim: granted, or rejected with the reason.",
    "hotline-breach": "A call that waited past the answer promise.",
    "hotline-kpi": "One queue's figures for one closed window of queued calls.",
    "sla-alert": "An early warning: a promise is about to be broken.",
    "incident": "A network element with many of its customers out at once: opened, then closed.",
    "dead-letter": "A message the worker could not use, with its coordinates and the reason.",
}

_COPARTITIONING = ("Co-partitioning: the customer-keyed inputs, call-queue, charter-clock and the subscribers "
                   "changelog all have CHARTER_PARTITIONS partitions (8 by default), and partition p of each belongs "
                   "to one task of the worker. Producers must use Kafka's default partitioner (murmur2 of the key) "
                   "so that a customer's events of every topic reach the same partition number.")
_COPARTITIONED = "Co-partitioned (CHARTER_PARTITIONS partitions, see the document's description)."


UNDESCRIBED = "An internal topic of the worker, not described yet (schemas/asyncapi.py)."


def _internal_topics(schemas: _Schemas, settings: Any) -> list[dict[str, Any]]:
    """The worker's own topics (streams/topics.py): not for producers or consumers outside the worker."""
    from streams.topics import (
        CALL_TOPIC,
        CLOCK_TOPIC,
        ELEMENTS_TABLE,
        ELEMENTS_TOPIC,
        HOTLINE_TABLE,
        HOTLINE_TOPIC,
        SUBSCRIBERS_TABLE,
        changelog_name,
    )

    call = {"$ref": _REF.format(model=CALL_TOPIC)}
    return [
        {"name": CLOCK_TOPIC, "plan": CLOCK_TOPIC, "title": "Clock ticks",
         "description": "Every worker sends an empty record to each partition of this topic it owns every "
                        f"CHARTER_TICK_INTERVAL; the task of that partition fires its due deadlines. {_COPARTITIONED}",
         "content": "application/octet-stream",
         "payload": schemas.add("clock-tick", {"type": "string", "maxLength": 0,
                                               "description": "empty: the tick carries nothing but its partition"}),
         "key": _key("none", "null")},
        {"name": HOTLINE_TOPIC, "plan": HOTLINE_TOPIC, "title": "Calls repartitioned to the hotline",
         "description": "One partition. Every valid call-queue event, tagged with the call-queue partition it "
                        "came from, and, per fully forwarded call-queue partition, a watermark (the time of the "
                        "last fetch) that the hotline task takes as its wall clock.",
         "payload": schemas.add("hotline-record", _repartitioned(
             "ForwardedCall", "v", {**call, "description": "the call-queue value as read"}, "call-queue partition",
             "everything of partition s appended before it has been forwarded")),
         "key": _key("the call's queue; none for a watermark", ["string", "null"])},
        {"name": ELEMENTS_TOPIC, "plan": ELEMENTS_TOPIC, "title": "Element changes repartitioned to the element task",
         "description": "One partition. Each partition task sends, in the flush (and the transaction) that stores "
                        "the customer's state, a record when an outage opened on a network element begins or ends, "
                        "and a watermark at least once a second; the element task merges them by event time and "
                        "writes incident records (docs/design.md 'Prevention').",
         "payload": schemas.add("element-record", _repartitioned(
             "ElementChange", "c", {"type": "object", "description": "the change: element_id, customer_id, opened, "
                                    "at (µs), stake_cents, due (µs or null)",
                                    "required": ["element_id", "customer_id", "opened", "at"]},
             "input partition", "every change of partition s before it has been sent")),
         "key": _key("the element id; none for a watermark", ["string", "null"])},
        {"name": "subscribers-changelog", "plan": changelog_name(settings, SUBSCRIBERS_TABLE),
         "address": "{appId}-subscribers-changelog",
         "title": "State of the subscribers",
         "description": "Compacted. One row per subscriber, written after the outputs it led to; a worker taking "
                        f"a partition reads it to the end first. {_COPARTITIONED} Not prefixed by "
                        "CHARTER_TOPIC_PREFIX.",
         "payload": schemas.add("subscriber-row", _state_row("the state of one subscriber")),
         "key": _key("'<partition>' 0x1F '<customer_id>'")},
        {"name": "hotline-changelog", "plan": changelog_name(settings, HOTLINE_TABLE),
         "address": "{appId}-hotline-changelog",
         "title": "State of the hotline",
         "description": "Compacted, one partition: one row per call and per open KPI window. Not prefixed by "
                        "CHARTER_TOPIC_PREFIX.",
         "payload": schemas.add("hotline-row", _state_row("the state of one call or one KPI window")),
         "key": _key("'c' 0x1F '<call_id>' for a call, 'w' 0x1F '<queue>' 0x1F '<window start, µs>' for a window")},
        {"name": "elements-changelog", "plan": changelog_name(settings, ELEMENTS_TABLE),
         "address": "{appId}-elements-changelog",
         "title": "State of the element task",
         "description": "Compacted, one partition: one row per network element with customers out (and the "
                        "changes held at the latest instant under the empty element id); a tombstone when an "
                        "element has none left. Not prefixed by CHARTER_TOPIC_PREFIX.",
         "payload": schemas.add("element-row", _state_row("the customers out on one element and its open incident")),
         "key": _key("'e' 0x1F '<element_id>'")},
    ]


def _repartitioned(title: str, field: str, item: dict[str, Any], source: str, watermark: str) -> dict[str, Any]:
    """A record of a one-partition repartition topic: an item tagged with its source partition, or a watermark."""
    s = {"type": "integer", "minimum": 0, "description": source}
    return {"oneOf": [
        {"type": "object", "title": title, "required": ["s", field], "properties": {"s": s, field: item}},
        {"type": "object", "title": "Watermark", "required": ["s", "wm"],
         "properties": {"s": s,
                        "wm": {"type": "integer", "description": f"microseconds since the epoch: {watermark}"}}},
    ]}


def _state_row(what: str) -> dict[str, Any]:
    return {"description": f"JSON: {what}, a versioned row of the core (docs/design.md, 'Stored state'): an "
                           "object whose 'v' is its format (format 1, before versions, was a list). Private to the "
                           "worker: its fields change between releases.",
            "type": ["object", "array"]}


def build() -> dict[str, Any]:
    """The AsyncAPI document (plain data, in a stable order)."""
    from streams.settings import Settings
    from streams.topics import topic_plan

    # Defaults only, never the environment: the document is the same wherever it is generated.
    settings = Settings.model_construct()
    plan = topic_plan(settings)
    schemas = _Schemas()
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    covered: set[str] = set()

    def channel(name: str, planned: str, title: str, description: str, payload: dict[str, str],
                key: dict[str, Any], actions: tuple[str, ...], address: str | None = None,
                content: str = "application/json") -> None:
        partitions, configs = plan[planned]
        covered.add(planned)
        messages[name] = {"name": name, "title": title, "summary": SUMMARY.get(name, description.split(". ")[0]),
                          "contentType": content, "payload": payload, "bindings": key}
        entry: dict[str, Any] = {"address": address or name, "title": title, "description": description,
                                 "messages": {name: {"$ref": f"#/components/messages/{name}"}}}
        if address and "{appId}" in address:
            entry["parameters"] = {"appId": {"description": "CHARTER_APP_ID", "default": settings.app_id}}
        entry["bindings"] = _kafka_channel(partitions, configs)
        channels[name] = entry
        for action in actions:
            operations[f"{action}-{name}"] = {
                "action": action, "channel": {"$ref": f"#/channels/{name}"},
                "summary": f"The worker {'reads' if action == 'receive' else 'writes'} {name}.",
                "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}]}

    for topic, value_type in INPUT_TOPICS.items():
        schema = TypeAdapter(value_type).json_schema(ref_template=_REF)
        key = KEY_FIELD[topic]
        part = _COPARTITIONED if topic != "call-queue" else (
            "The worker forwards each valid event to charter-hotline, where every partition is merged, so the KPI "
            "does not depend on partitioning. " + _COPARTITIONED)
        channel(topic, topic, f"Input: {topic}",
                f"Published by upstream systems, read by the worker. Key: the value's {key}. {part}",
                schemas.add(topic, schema), _key(f"the value's {key} (UTF-8)"), ("receive",))
    for topic, model in OUTPUT_MODELS.items():
        schema = model.model_json_schema(ref_template=_REF)
        key_field = OUTPUT_KEY_FIELD[topic]
        if key_field is None:
            key = _key("the key of the message that could not be used, unchanged", ["string", "null"])
            keyed = "Key: the original message's key"
        else:
            key = _key(f"the value's {key_field} (UTF-8)")
            keyed = f"Key: the value's {key_field}"
        channel(topic, topic, f"Output: {topic}",
                f"Written by the worker. {keyed}; the partition is Kafka's default partitioner's choice.",
                schemas.add(topic, schema), key, ("send",))
    for internal in _internal_topics(schemas, settings):
        channel(internal["name"], internal["plan"], f"Internal: {internal['title']}", internal["description"],
                internal["payload"], internal["key"], ("send", "receive"), address=internal.get("address"),
                content=internal.get("content", "application/json"))
    for planned in sorted(set(plan) - covered):  # a topic added to streams/topics.py and not described here yet
        channel(planned, planned, f"Internal: {planned}", UNDESCRIBED,
                schemas.add(planned, {"description": UNDESCRIBED}), _key("not described", ["string", "null"]),
                ("send", "receive"))

    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "charter-streams",
            "version": package_version(),
            "description": "The topics of a charter-streams deployment: what upstream systems publish, what the "
                           "worker writes, and the internal topics it creates. Every value is a UTF-8 JSON object "
                           "and every key a UTF-8 string. Topic names carry CHARTER_TOPIC_PREFIX (empty by "
                           "default), except the state changelogs, which are named after CHARTER_APP_ID. "
                           f"{_COPARTITIONING} The meaning of every field and rule: docs/contract.md.",
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {"host": "127.0.0.1:9092", "protocol": "kafka",
                      "description": "CHARTER_BOOTSTRAP_SERVERS; the local broker of scripts/local-kafka by default"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.schemas.items()))},
    }
