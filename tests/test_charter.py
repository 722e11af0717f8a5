"""Charter files (SPEC section 7): the shipped charter, validation naming the setting, durations, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from streams.charter import Charter, CharterError, load_charter, parse_charter, parse_duration
from streams.cli import main
from tests.charter_helpers import SCALED_CHARTER_PATH, SHIPPED_CHARTER_TEXT, confirmed, order, ts

US = 1_000_000


def shipped() -> dict:
    return yaml.safe_load(SHIPPED_CHARTER_TEXT)


def test_shipped_charter_has_the_spec_values():
    c = load_charter()
    assert c == load_charter("alice-2007")
    assert c.name == "alice-2007"
    assert c.currency == "EUR"
    assert c.grace_seconds == 0
    assert c.grace_us == 0
    assert c.default_monthly_fee_cents == 2995
    assert c.late_activation.deadline == 14 * 86400 * US
    assert c.late_activation.alert_after == 10 * 86400 * US
    assert c.switch_fee_refund.cap_cents == 9900
    assert (c.installation.unbundled_fee_cents, c.installation.other_fee_cents) == (0, 9000)
    assert [(t.after, t.credit_days) for t in c.outage.tiers] == [(24 * 3600 * US, 3), (72 * 3600 * US, 7),
                                                                 (168 * 3600 * US, 30)]
    assert c.outage.first_month == 30 * 86400 * US
    assert c.outage.days_per_month == 30
    assert c.hotline.answer_within == 180 * US
    assert c.hotline.window == 15 * 60 * US


def test_shipped_file_is_the_conformance_charter():
    """SPEC section 7: with section 10 implemented, the shipped charter is the whole file of the conformance set."""
    whole = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "v2" / "alice-2007.yaml"
    if not whole.is_file():
        pytest.skip("conformance/v2/alice-2007.yaml not beside the repository")
    assert yaml.safe_load(whole.read_text(encoding="utf-8")) == shipped()


def test_shipped_charter_has_the_prevention_settings():
    c = load_charter()
    assert c.outage.alert_after == 20 * 3600 * US
    assert c.incident.min_customers == 50


def test_prevention_settings_are_optional_and_checked():
    data = shipped()
    del data["outage"]["alert_after"]
    del data["incident"]
    c = parse_charter(yaml.safe_dump(data))
    assert c.outage.alert_after is None and c.incident is None
    with pytest.raises(CharterError, match=r"incident\.min_customers"):
        parse_charter(_with(("incident", "min_customers"), 0))
    with pytest.raises(CharterError, match=r"outage\.alert_after"):
        parse_charter(_with(("outage", "alert_after"), "20"))


@pytest.mark.parametrize(("text", "us"), [
    ("180s", 180 * US), ("15m", 900 * US), ("24h", 86400 * US), ("14d", 14 * 86400 * US), ("1w", 7 * 86400 * US),
    ("500ms", 500_000), ("1.5h", 5400 * US), (" 3s ", 3 * US), ("0.5s", 500_000),
])
def test_durations_parse(text, us):
    assert parse_duration(text) == us


@pytest.mark.parametrize("bad", ["180", 180, 1.5, None, "", "s", "-5s", "0s", "1y", "3 seconds", "10 m s", "1e3s"])
def test_bad_durations_are_refused(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def _with(path: tuple, value) -> str:
    data = shipped()
    node = data
    for p in path[:-1]:
        node = node[p]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return yaml.safe_dump(data)


_DELETE = object()


@pytest.mark.parametrize(("path", "value", "named"), [
    (("currency",), _DELETE, "currency"),
    (("outage", "tiers", 0, "after"), "24 hours", "outage.tiers.0.after"),
    (("outage", "tiers", 0, "after"), 24, "outage.tiers.0.after"),
    (("outage", "tiers", 1, "credit_days"), 0, "outage.tiers.1.credit_days"),
    (("outage", "tiers", 2, "after"), "48h", "outage.tiers"),  # tiers must grow
    (("outage", "tiers"), [], "outage.tiers"),
    (("outage", "first_month"), _DELETE, "outage.first_month"),
    (("late_activation", "deadline"), "fortnight", "late_activation.deadline"),
    (("late_activation", "alert_after"), _DELETE, "late_activation.alert_after"),
    (("hotline", "window"), "0m", "hotline.window"),
    (("switch_fee_refund", "cap_cents"), -1, "switch_fee_refund.cap_cents"),
    (("switch_fee_refund", "cap_cents"), "99 EUR", "switch_fee_refund.cap_cents"),
    (("installation", "other_fee_cents"), 90.0, "installation.other_fee_cents"),
    (("default_monthly_fee_cents",), 0, "default_monthly_fee_cents"),
    (("currency",), "EURO", "currency"),
    (("name",), "", "name"),
    (("grace_seconds",), -1, "grace_seconds"),
    (("grace_seconds",), "1s", "grace_seconds"),
    (("late_activation", "dedline"), "14d", "late_activation.dedline"),  # a typo is not silently ignored
    (("bonus",), 1, "bonus"),
])
def test_wrong_or_missing_setting_is_named(path, value, named):
    with pytest.raises(CharterError) as e:
        parse_charter(_with(path, value), "bad.yaml")
    msg = str(e.value)
    assert f"{named}:" in msg or f"{named} " in msg or msg.rstrip().endswith(named), msg
    assert "bad.yaml" in msg


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "name: [unclosed\n", "just text"])
def test_not_a_charter(text):
    with pytest.raises(CharterError):
        parse_charter(text)


def test_grace_seconds_accepts_integers_and_fractions():
    assert parse_charter(_with(("grace_seconds",), 5)).grace_us == 5 * US
    assert parse_charter(_with(("grace_seconds",), 0.25)).grace_us == 250_000


def test_load_by_path(tmp_path: Path):
    p = tmp_path / "mine.yaml"
    p.write_text(_with(("name",), "mine"), encoding="utf-8")
    c = load_charter(p)
    assert isinstance(c, Charter)
    assert c.name == "mine"
    assert load_charter(str(p)) == c
    assert load_charter(SCALED_CHARTER_PATH).late_activation.deadline == 14 * US


def test_load_errors(tmp_path: Path):
    with pytest.raises(CharterError, match="not found"):
        load_charter(tmp_path / "absent.yaml")
    with pytest.raises(CharterError, match="no shipped charter"):
        load_charter("alice-1999")


def test_charter_is_immutable():
    c = load_charter()
    with pytest.raises(ValueError):
        c.currency = "USD"  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------------- CLI


def _events(tmp_path: Path) -> Path:
    f = tmp_path / "events.jsonl"
    f.write_text(order("A", ts(0)) + "\n" + confirmed("A", ts(0)) + "\n", encoding="utf-8")
    return f


def test_cli_refuses_a_bad_charter_naming_the_setting(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(_with(("outage", "tiers", 0, "after"), "one day"), encoding="utf-8")
    res = CliRunner().invoke(main, ["replay", "--charter", str(bad), str(_events(tmp_path))])
    assert res.exit_code != 0
    assert "outage.tiers.0.after" in res.output
    assert "bad.yaml" in res.output
    assert "Traceback" not in res.output

    missing = tmp_path / "missing.yaml"
    missing.write_text(_with(("currency",), _DELETE), encoding="utf-8")
    res = CliRunner().invoke(main, ["replay", "--charter", str(missing), str(_events(tmp_path))])
    assert res.exit_code != 0
    assert "currency" in res.output


def test_cli_uses_the_charter_file(tmp_path: Path):
    res = CliRunner().invoke(main, ["replay", "--charter", str(SCALED_CHARTER_PATH), "--until",
                                    ts(14 * US), str(_events(tmp_path))])
    assert res.exit_code == 0, res.output
    assert '"late_activation"' in res.output
    assert '"alice-2007-scaled"' in res.output
