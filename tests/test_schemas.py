"""Input and output models (SPEC sections 1-3) and their exported JSON Schema files (``python -m schemas``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from schemas import INPUT_TOPICS, KEY_FIELD, OUTPUT_MODELS, parse_input
from schemas.__main__ import DEFAULT_DIR, expected_files, main, render, stale_files, topic_schemas
from schemas.inputs import CallQueue, OrderPlaced, ServiceStatus, SwitchClaim

AT = "2007-05-01T09:30:00+02:00"

VALID: dict[str, list[dict]] = {
    "line-activation": [
        {"event_id": "1", "customer_id": "A", "type": "order_placed", "zone": "unbundled", "monthly_fee_cents": 2995,
         "tv": False, "occurred_at": AT},
        {"event_id": "2", "customer_id": "A", "type": "line_confirmed", "occurred_at": AT},
        {"event_id": "3", "customer_id": "A", "type": "service_active", "occurred_at": AT},
        {"event_id": "4", "customer_id": "A", "type": "order_cancelled", "occurred_at": AT},
    ],
    "box-shipment": [{"event_id": "5", "customer_id": "A", "item": "tv_decoder", "status": "returned",
                      "occurred_at": AT}],
    "service-status": [{"event_id": "6", "customer_id": "A", "service": "telephony", "status": "down",
                        "occurred_at": AT}],
    "call-queue": [{"event_id": "7", "call_id": "K1", "queue": "technical", "type": "queued", "occurred_at": AT}],
    "switch-claim": [{"event_id": "8", "customer_id": "A", "previous_operator": "Free", "termination_fee_cents": 0,
                      "proof_id": None, "occurred_at": AT}],
}


def errors_of(topic: str, value: dict) -> list[dict]:
    with pytest.raises(ValidationError) as e:
        parse_input(topic, value)
    return e.value.errors()


def names(errors: list[dict]) -> set[str]:
    return {str(p) for e in errors for p in e["loc"]}


# ------------------------------------------------------------------------------------------------ JSON Schema files


def test_schema_files_are_not_stale():
    assert stale_files(DEFAULT_DIR) == [], "run `python -m schemas` and commit schemas/json"


def test_check_command_passes_on_the_shipped_files():
    proc = subprocess.run([sys.executable, "-m", "schemas", "--check"], capture_output=True, text=True, timeout=60,
                          check=False, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr


def test_one_file_per_topic_with_stable_formatting():
    files = expected_files()
    assert set(files) == {f"{t}.schema.json" for t in (*INPUT_TOPICS, *OUTPUT_MODELS)}
    for name, text in files.items():
        assert text.endswith("}\n")
        data = json.loads(text)
        assert text == json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        assert (DEFAULT_DIR / name).read_text(encoding="utf-8") == text


def test_write_then_check(tmp_path: Path, capsys):
    assert main(["--check", "--out", str(tmp_path)]) == 1
    assert "billing.schema.json (missing)" in capsys.readouterr().err
    assert main(["--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected_files())
    assert main(["--check", "--out", str(tmp_path)]) == 0
    # a hand-edited file and a file for no topic are both stale
    (tmp_path / "billing.schema.json").write_text("{}\n")
    (tmp_path / "old-topic.schema.json").write_text("{}\n")
    assert main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "billing.schema.json (differs)" in err
    assert "old-topic.schema.json (no such topic)" in err
    assert "compensation.schema.json" not in err


def test_schemas_describe_the_contract():
    s = topic_schemas()
    status = s["service-status"]
    assert set(status["required"]) == {"event_id", "occurred_at", "customer_id", "service", "status"}
    assert status["properties"]["service"]["enum"] == ["internet", "telephony", "tv"]
    assert status["properties"]["occurred_at"]["format"] == "date-time"
    assert status["properties"]["occurred_at"]["type"] == "string"
    claim = s["switch-claim"]
    assert "proof_id" in claim["required"]
    assert claim["properties"]["termination_fee_cents"]["minimum"] == 0
    la = json.dumps(s["line-activation"])
    for typ in ("order_placed", "line_confirmed", "service_active", "order_cancelled"):
        assert typ in la
    assert s["line-activation"]["$defs"]["OrderPlaced"]["properties"]["monthly_fee_cents"]["exclusiveMinimum"] == 0
    assert "customer_id" not in s["call-queue"]["required"]
    # outputs are closed: consumers can rely on the field list
    assert s["compensation"]["additionalProperties"] is False
    assert {"compensation_id", "charter", "rule", "customer_id", "amount_cents", "currency", "crossed_at", "evidence",
            "emitted_at"} <= set(s["compensation"]["required"])
    assert render(s["billing"]) == (DEFAULT_DIR / "billing.schema.json").read_text(encoding="utf-8")


# ------------------------------------------------------------------------------------------------- input models


@pytest.mark.parametrize(("topic", "value"), [(t, v) for t, vs in VALID.items() for v in vs])
def test_valid_events_parse(topic, value):
    ev = parse_input(topic, value)
    assert getattr(ev, KEY_FIELD[topic]) == value[KEY_FIELD[topic]]
    assert ev.occurred_at.utcoffset() is not None


@pytest.mark.parametrize(("topic", "base", "field", "bad"), [
    # wrong type
    ("line-activation", 0, "monthly_fee_cents", "2995"),
    ("line-activation", 0, "monthly_fee_cents", 29.95),
    ("line-activation", 0, "monthly_fee_cents", True),
    ("line-activation", 0, "tv", "yes"),
    ("line-activation", 0, "customer_id", 42),
    ("switch-claim", 0, "termination_fee_cents", "100"),
    ("switch-claim", 0, "proof_id", 123),
    ("call-queue", 0, "queue", ["technical"]),
    ("service-status", 0, "event_id", 6),
    # unknown enum value
    ("line-activation", 0, "zone", "rural"),
    ("box-shipment", 0, "item", "router"),
    ("box-shipment", 0, "status", "lost"),
    ("service-status", 0, "service", "fax"),
    ("service-status", 0, "status", "flapping"),
    ("call-queue", 0, "type", "transferred"),
    # timestamps: RFC 3339 text with an offset only
    ("service-status", 0, "occurred_at", "2007-05-01T09:30:00"),
    ("service-status", 0, "occurred_at", "2007-05-01"),
    ("service-status", 0, "occurred_at", 1178004600),
    ("service-status", 0, "occurred_at", 1178004600.5),
    ("service-status", 0, "occurred_at", "yesterday"),
    ("service-status", 0, "occurred_at", None),
    # amounts
    ("switch-claim", 0, "termination_fee_cents", -1),
    ("line-activation", 0, "monthly_fee_cents", 0),
    ("line-activation", 0, "monthly_fee_cents", -2995),
])
def test_strictness_names_the_field(topic, base, field, bad):
    value = {**VALID[topic][base], field: bad}
    assert field in names(errors_of(topic, value))


@pytest.mark.parametrize(("topic", "field"), [
    ("line-activation", "event_id"), ("line-activation", "occurred_at"), ("line-activation", "customer_id"),
    ("line-activation", "zone"), ("line-activation", "monthly_fee_cents"),
    ("box-shipment", "item"), ("box-shipment", "status"),
    ("service-status", "service"), ("service-status", "status"), ("service-status", "customer_id"),
    ("call-queue", "call_id"), ("call-queue", "queue"), ("call-queue", "type"), ("call-queue", "event_id"),
    ("switch-claim", "proof_id"), ("switch-claim", "previous_operator"), ("switch-claim", "termination_fee_cents"),
])
def test_missing_field_is_named(topic, field):
    value = dict(VALID[topic][0])
    del value[field]
    assert field in names(errors_of(topic, value))


def test_unknown_line_activation_type_is_named():
    errs = errors_of("line-activation", {**VALID["line-activation"][1], "type": "order_shipped"})
    assert "type" in str(errs) or "order_shipped" in str(errs)
    errs = errors_of("line-activation", {k: v for k, v in VALID["line-activation"][1].items() if k != "type"})
    assert "type" in str(errs)


def test_not_an_object():
    with pytest.raises(ValidationError):
        parse_input("service-status", ["down"])


def test_extra_fields_are_ignored():
    ev = parse_input("service-status", {**VALID["service-status"][0], "region": "IDF", "severity": 3,
                                        "nested": {"a": [1]}})
    assert isinstance(ev, ServiceStatus)
    assert not hasattr(ev, "region")
    assert "region" not in ev.model_dump()


def test_defaults_and_optionals():
    value = {k: v for k, v in VALID["line-activation"][0].items() if k != "tv"}
    ev = parse_input("line-activation", value)
    assert isinstance(ev, OrderPlaced)
    assert ev.tv is True
    call = parse_input("call-queue", VALID["call-queue"][0])
    assert isinstance(call, CallQueue)
    assert call.customer_id is None
    assert parse_input("call-queue", {**VALID["call-queue"][0], "customer_id": "A"}).customer_id == "A"
    claim = parse_input("switch-claim", {**VALID["switch-claim"][0], "proof_id": "LR-1"})
    assert isinstance(claim, SwitchClaim)
    assert claim.proof_id == "LR-1"


@pytest.mark.parametrize("ts", ["2007-05-01T07:30:00Z", "2007-05-01T09:30:00+02:00", "2007-05-01T02:30:00-05:00",
                                "2007-05-01T07:30:00.000000+00:00"])
def test_offsets_are_instants(ts):
    ev = parse_input("service-status", {**VALID["service-status"][0], "occurred_at": ts})
    assert ev.occurred_at.timestamp() == parse_input("service-status", VALID["service-status"][0]).occurred_at \
        .timestamp()


def test_unknown_topic():
    with pytest.raises(KeyError):
        parse_input("line_activation", VALID["line-activation"][0])


# ------------------------------------------------------------------------------------------------ output models


def test_output_models_are_strict():
    ok = {"type": "billing_start", "customer_id": "A", "starts_at": "2007-05-01T00:00:00+00:00",
          "installation_fee_cents": 0}
    OUTPUT_MODELS["billing"].model_validate(ok)
    for bad in ({**ok, "extra": 1}, {**ok, "installation_fee_cents": -1}, {**ok, "type": "billing_stop"},
                {k: v for k, v in ok.items() if k != "starts_at"}, {**ok, "starts_at": "2007-05-01T00:00:00"}):
        with pytest.raises(ValidationError):
            OUTPUT_MODELS["billing"].model_validate(bad)
