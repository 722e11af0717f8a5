"""The AsyncAPI 3.0 document (schemas/asyncapi.yaml, ``python -m schemas``): its shape, that it names every topic a
deployment has, and that every message points at a schema that resolves inside the document."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from schemas.__main__ import DEFAULT_ASYNCAPI, main, render_asyncapi, stale_files
from schemas.asyncapi import UNDESCRIBED, build
from schemas.inputs import INPUT_TOPICS, KEY_FIELD
from schemas.outputs import OUTPUT_KEY_FIELD, OUTPUT_MODELS
from streams.settings import Settings
from streams.topics import topic_plan


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_ASYNCAPI.read_text(encoding="utf-8"))


def resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref  # every reference stays inside the document
    node: Any = doc
    for part in ref[2:].split("/"):
        assert part in node, f"{ref}: no {part!r}"
        node = node[part]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def test_the_shipped_document_is_fresh():
    assert DEFAULT_ASYNCAPI.read_text(encoding="utf-8") == render_asyncapi(), "run `python -m schemas`"


def test_required_asyncapi_3_keys(doc):
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["info"]["license"]["name"] == "Apache-2.0"
    for server in doc["servers"].values():
        assert server["protocol"] == "kafka" and server["host"]
    for name, channel in doc["channels"].items():
        assert channel["address"], name
        assert channel["bindings"]["kafka"]["partitions"] >= 1
    for name, op in doc["operations"].items():
        assert op["action"] in ("send", "receive"), name
        channel = resolve(doc, op["channel"]["$ref"])
        for message in op["messages"]:  # an operation's messages are its channel's
            assert message["$ref"].startswith(op["channel"]["$ref"] + "/messages/")
            assert resolve(doc, message["$ref"]) in channel["messages"].values()


def test_every_topic_of_a_deployment_is_a_channel(doc):
    settings = Settings.model_construct()
    addresses = {c["address"].replace("{appId}", settings.app_id): c for c in doc["channels"].values()}
    assert set(addresses) == set(topic_plan(settings))
    for topic in (*INPUT_TOPICS, *OUTPUT_MODELS):
        assert topic in doc["channels"]
    assert doc["channels"]["incident"]["bindings"]["kafka"]["partitions"] == settings.partitions
    assert doc["channels"]["charter-hotline"]["bindings"]["kafka"]["partitions"] == 1
    policy = doc["channels"]["subscribers-changelog"]["bindings"]["kafka"]["topicConfiguration"]["cleanup.policy"]
    assert policy == ["compact"]


def test_every_topic_is_described():
    """A topic added to streams/topics.py gets a channel that says it is undescribed: describe it."""
    undescribed = [name for name, c in build()["channels"].items() if c["description"] == UNDESCRIBED]
    assert undescribed == [], "describe these topics in schemas/asyncapi.py"


def test_every_message_references_a_schema_that_resolves(doc):
    for name, channel in doc["channels"].items():
        [message_ref] = channel["messages"].values()
        message = resolve(doc, message_ref["$ref"])
        assert set(message["payload"]) == {"$ref"}, name
        payload = resolve(doc, message["payload"]["$ref"])
        assert payload, name
        assert "key" in message["bindings"]["kafka"], name
    for ref in refs(doc):  # including the references between schemas
        resolve(doc, ref)


def test_keys_and_fields_follow_the_models(doc):
    schemas = doc["components"]["schemas"]
    messages = doc["components"]["messages"]
    for topic, field in {**KEY_FIELD, **OUTPUT_KEY_FIELD}.items():
        key = messages[topic]["bindings"]["kafka"]["key"]
        if field is None:
            assert key["type"] == ["string", "null"]
        else:
            assert key["type"] == "string" and field in key["description"], topic
    for topic, model in OUTPUT_MODELS.items():
        assert set(schemas[topic]["properties"]) == set(model.model_fields), topic
    assert schemas["sla-alert"]["properties"]["alert"]["enum"] == ["activation_at_risk", "outage_at_risk"]
    incident = schemas["incident"]
    assert set(incident["required"]) == {"incident_id", "element_id", "status", "crossed_at", "customers"}
    assert incident["properties"]["status"]["enum"] == ["open", "closed"]
    assert incident.get("additionalProperties", True) is not False  # the contract allows more fields
    # the union of line-activation names each event type, without pydantic's OpenAPI-style discriminator
    branches = [resolve(doc, b["$ref"]) for b in schemas["line-activation"]["oneOf"]]
    assert {b["properties"]["type"]["const"] for b in branches} == {
        "order_placed", "line_confirmed", "service_active", "order_cancelled"}
    assert "discriminator" not in schemas["line-activation"]


def test_check_notices_a_stale_document(tmp_path, capsys):
    json_dir, asyncapi = tmp_path / "json", tmp_path / "asyncapi.yaml"
    assert main(["--out", str(json_dir), "--asyncapi", str(asyncapi)]) == 0
    assert stale_files(json_dir, asyncapi) == []
    asyncapi.write_text(asyncapi.read_text(encoding="utf-8").replace("partitions: 8", "partitions: 9", 1))
    assert main(["--check", "--out", str(json_dir), "--asyncapi", str(asyncapi)]) == 1
    assert f"{asyncapi} (differs)" in capsys.readouterr().err
