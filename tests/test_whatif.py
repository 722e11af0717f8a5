"""`charter whatif`: the same events under several charters, what each would have cost, and the difference."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from streams.charter import load_charter
from streams.cli import main
from streams.gen import generate, write_jsonl
from streams.replay import replay
from tests.charter_helpers import SCALED_CHARTER_PATH

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def events(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("whatif") / "events.jsonl"
    write_jsonl(path, generate(400, seed=5, days=30))
    return path


def expected_costs(path: Path, ref: str) -> dict[str, dict[str, int]]:
    """Per rule and in total, straight from `charter replay`'s records."""
    comps, customers = defaultdict(lambda: [0, 0]), defaultdict(set)
    with open(path, "rb") as f:
        for topic, key, value in replay(f, load_charter(ref)):
            if topic == "compensation":
                for r in (value["rule"], "total"):
                    comps[r][0] += 1
                    comps[r][1] += value["amount_cents"]
                    customers[r].add(key)
    return {r: {"compensations": n, "customers": len(customers[r]), "amount_cents": a} for r, (n, a) in comps.items()}


def invoke(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, ["whatif", *args], input=input)


def test_json_report_of_both_shipped_charters_matches_their_replays(events: Path):
    res = invoke(str(events), "--charter", "alice-2007", "--charter", "ofcom-2026", "--format", "json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["events"] == len(events.read_bytes().splitlines())
    alice, ofcom = report["charters"]
    assert (alice["charter"], alice["currency"], ofcom["charter"], ofcom["currency"]) == (
        "alice-2007", "EUR", "ofcom-2026", "GBP")
    for got, ref in ((alice, "alice-2007"), (ofcom, "ofcom-2026")):
        want = expected_costs(events, ref)
        assert got["total"] == want["total"]
        for rule in got["rules_enforced"]:
            assert got["rules"][rule] == want[rule], (ref, rule)
            assert want[rule]["compensations"] > 0, (ref, rule)  # the generated file exercises every rule
    assert alice["rules_enforced"] == ["late_activation", "switch_fee_refund", "outage"]
    assert ofcom["rules_enforced"] == ["delayed_repair", "delayed_provision", "missed_appointment"]
    assert ofcom["rules"]["outage"] == {"compensations": 0, "customers": 0, "amount_cents": 0}
    (diff,) = report["differences"]
    assert (diff["charter"], diff["against"], diff["currency"]) == ("ofcom-2026", "alice-2007", None)
    assert diff["total"] == {"compensations": ofcom["total"]["compensations"] - alice["total"]["compensations"],
                             "customers": ofcom["total"]["customers"] - alice["total"]["customers"],
                             "amount_cents": None}  # GBP - EUR is not a number


def test_amounts_in_the_same_currency_are_subtracted(events: Path):
    res = invoke(str(events), "--charter", "alice-2007", "--charter", str(SCALED_CHARTER_PATH), "--format", "json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    a, b = report["charters"]
    (diff,) = report["differences"]
    assert diff["currency"] == "EUR"
    for rule in ("outage", "late_activation"):
        got, base = b["rules"][rule]["amount_cents"], a["rules"][rule]["amount_cents"]
        assert diff["rules"][rule]["amount_cents"] == got - base
    assert diff["total"]["amount_cents"] == b["total"]["amount_cents"] - a["total"]["amount_cents"] != 0


def test_table_and_csv(events: Path):
    res = invoke(str(events), "--charter", "alice-2007", "--charter", "ofcom-2026")
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert "alice-2007 (EUR)" in lines[0] and "ofcom-2026 (GBP)" in lines[0] and "ofcom-2026 - alice-2007" in lines[0]
    rows = {ln.split()[0]: ln for ln in lines[2:] if ln.strip() and not ln[0].isdigit()}
    assert set(rows) == {"late_activation", "switch_fee_refund", "outage", "delayed_repair", "delayed_provision",
                         "missed_appointment", "total"}
    total = expected_costs(events, "alice-2007")["total"]
    assert f"{total['compensations']:,}" in rows["total"]
    assert f"{total['amount_cents'] // 100:,}.{total['amount_cents'] % 100:02d} EUR" in rows["total"]

    res = invoke(str(events), "--charter", "alice-2007", "--charter", "ofcom-2026", "--format", "csv")
    assert res.exit_code == 0, res.output
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    by = {(r["charter"], r["rule"]): r for r in table}
    ofcom = expected_costs(events, "ofcom-2026")
    assert by["ofcom-2026", "total"] == {"charter": "ofcom-2026", "rule": "total", "currency": "GBP",
                                         **{k: str(v) for k, v in ofcom["total"].items()}}
    assert by["ofcom-2026 - alice-2007", "total"]["amount_cents"] == ""
    assert int(by["ofcom-2026 - alice-2007", "delayed_repair"]["compensations"]) == \
        ofcom["delayed_repair"]["compensations"]


def test_reads_stdin_and_counts_invalid_lines_once(events: Path):
    data = events.read_bytes() + b"not json\n"
    res = invoke("-", "--charter", "alice-2007", "--charter", "ofcom-2026", "--format", "json", input=data)
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["dead_letters"] == 1
    assert report["charters"][0]["total"] == expected_costs(events, "alice-2007")["total"]


def test_same_name_twice_is_told_apart_by_the_reference(events: Path, tmp_path: Path):
    copy = tmp_path / "alice-copy.yaml"
    copy.write_text((ROOT / "streams" / "charters" / "alice-2007.yaml").read_text(), encoding="utf-8")
    res = invoke(str(events), "--charter", "alice-2007", "--charter", str(copy), "--format", "json")
    report = json.loads(res.stdout)
    assert [c["charter"] for c in report["charters"]] == ["alice-2007", str(copy)]
    assert report["differences"][0]["total"] == {"compensations": 0, "customers": 0, "amount_cents": 0}


@pytest.mark.parametrize(("args", "says"), [
    (["absent.jsonl", "--charter", "alice-2007"], "no such file"),
    (["EVENTS", "--charter", "alice-1999"], "no shipped charter named 'alice-1999'"),
    (["EVENTS", "--charter", "alice-2007", "--format", "xml"], "'xml' is not one of"),
    (["EVENTS"], "Missing option '--charter'"),
    (["--charter", "alice-2007"], "Missing argument 'FILE'"),
    (["EVENTS", "--charter", "alice-2007", "--until", "soon"], "--until"),
    (["EVENTS", "--charter", "alice-2007", "--colour"], "No such option: --colour"),
    (["EVENTS", "--charter", "BADCHARTER"], "calendar"),
])
def test_a_mistake_is_one_line_and_exit_code_2(args: list[str], says: str, events: Path, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "streams" / "charters" / "ofcom-2026.yaml").read_text().replace("GB-ENG", "ZZ"))
    args = [str(events) if a == "EVENTS" else str(bad) if a == "BADCHARTER" else a for a in args]
    proc = subprocess.run([sys.executable, "-m", "streams.cli", "whatif", *args], capture_output=True, text=True,
                          cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60,
                          check=False)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr


def test_progress_on_stderr_only_when_asked_or_on_a_terminal(events: Path):
    quiet = subprocess.run([sys.executable, "-m", "streams.cli", "whatif", str(events), "--charter", "alice-2007"],
                           capture_output=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=60,
                           check=False)
    assert quiet.returncode == 0 and quiet.stderr == b""
    loud = subprocess.run([sys.executable, "-m", "streams.cli", "whatif", str(events), "--charter", "alice-2007",
                           "--progress"], capture_output=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
                          timeout=60, check=False)
    assert loud.returncode == 0
    assert b"whatif" in loud.stderr and b"100%" in loud.stderr
    assert loud.stdout == quiet.stdout


def test_the_engine_sees_every_line_once_per_charter(events: Path):
    # the report counts the same compensations as the lines replayed one charter at a time (whatif parses once)
    from streams.whatif import whatif

    lines = events.read_bytes().splitlines()
    report = whatif(lines, [load_charter("ofcom-2026"), load_charter("alice-2007")])
    assert report.costs[0].total.as_dict() == expected_costs(events, "ofcom-2026")["total"]
    assert report.costs[1].total.as_dict() == expected_costs(events, "alice-2007")["total"]
    assert sum(1 for line in lines if orjson.loads(line)["topic"] == "appointment") > 0
