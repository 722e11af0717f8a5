"""Every command, given a user's mistake (a missing file, a bad option or argument, a broker nobody listens on),
ends with exactly one ``Error: ...`` line on stderr and exit code 2, and no traceback. Also ``charter --version``
and ``charter produce`` stopping at a bad line."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from streams.child import free_port
from streams.cli import main
from streams.errors import UserFacingError, one_line
from streams.producer import publish, replay_records
from tests.charter_helpers import confirmed, order, ts

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["replay", "whatif", "report", "worker", "health", "produce", "tail", "simulate", "demo"]


@pytest.fixture(autouse=True)
def no_charter_env(monkeypatch):
    """The runner's own CHARTER_* settings are not the test's."""
    for name in list(os.environ):
        if name.upper().startswith("CHARTER_") and not name.upper().startswith("CHARTER_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def events(tmp_path: Path) -> Path:
    f = tmp_path / "events.jsonl"
    f.write_text(order("A", ts(0)) + "\n" + confirmed("A", ts(0)) + "\n", encoding="utf-8")
    return f


def _args(args: list[str], tmp_path: Path, events: Path) -> list[str]:
    """EVENTS: an event file; MISSING: a file that does not exist; OUT: an output file in tmp_path."""
    names = {"EVENTS": str(events), "MISSING": str(tmp_path / "absent.jsonl"),
             "MISSING.yaml": str(tmp_path / "absent.yaml"), "OUT": str(tmp_path / "out.html")}
    return [names.get(a, a) for a in args]


def _assert_one_error_line(code: int, stdout: str, stderr: str, says: str) -> None:
    assert code == 2, (code, stdout, stderr)
    assert "Traceback" not in stdout + stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    assert says in lines[0], lines[0]
    assert stdout == "", stdout


# ------------------------------------------------------------------------------------------------ the table

MISSING_FILE = [
    (["replay", "MISSING"], "no such file"),
    (["whatif", "MISSING", "--charter", "alice-2007"], "no such file"),
    (["report", "MISSING", "-o", "OUT"], "no such file"),
    (["produce", "MISSING"], "no such file"),
    (["replay", "--charter", "MISSING.yaml", "EVENTS"], "charter file not found"),
    (["whatif", "EVENTS", "--charter", "alice-2007", "--charter", "MISSING.yaml"], "charter file not found"),
    (["report", "--charter", "MISSING.yaml", "EVENTS", "-o", "OUT"], "charter file not found"),
    (["worker", "--charter", "MISSING.yaml"], "charter file not found"),
    (["report", "EVENTS", "-o", "MISSING/report.html"], "cannot write"),
]
# every command, and the group itself, refuses an option it does not have
BAD_OPTION = [([*([c] if c else []), "--no-such-option"], "No such option: --no-such-option")
              for c in ["", *COMMANDS]]
BAD_ARGUMENT = [
    (["no-such-command"], "No such command"),
    (["replay"], "Missing argument 'FILE'"),
    (["replay", "--until", "soon", "EVENTS"], "--until"),
    (["replay", "--charter", "no-such-charter", "EVENTS"], "no shipped charter named 'no-such-charter'"),
    (["whatif", "EVENTS"], "Missing option '--charter'"),
    (["whatif", "EVENTS", "--charter", "alice-2007", "--format", "xml"], "'xml' is not one of"),
    (["report"], "give an event FILE"),
    (["report", "EVENTS", "--from-topics", "-o", "OUT"], "not both"),
    (["worker", "--partitions", "x"], "'x' is not a valid integer"),
    (["worker", "--partitions", "0"], "--partitions"),
    (["health", "/nope"], "'/nope' is not one of"),
    (["produce", "EVENTS", "--speed", "0"], "--speed"),
    (["tail"], "Missing argument"),
    (["tail", "no-such-topic"], "no such topic: 'no-such-topic'"),
    (["tail", "compensation", "--idle-exit", "-1"], "--idle-exit"),
    (["simulate", "--subscribers", "0"], "--subscribers"),
    (["simulate", "--rate", "fast"], "--rate"),
    (["demo", "--partitions", "0"], "--partitions"),
]


@pytest.mark.parametrize(("args", "says"), MISSING_FILE + BAD_OPTION + BAD_ARGUMENT,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_a_mistake_is_one_error_line_and_exit_code_2(args: list[str], says: str, tmp_path: Path, events: Path):
    res = CliRunner().invoke(main, _args(args, tmp_path, events))
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    _assert_one_error_line(res.exit_code, res.stdout, res.stderr, says)
    assert not (tmp_path / "out.html").exists()


def test_the_table_has_every_command():
    table = MISSING_FILE + BAD_OPTION + BAD_ARGUMENT
    assert {args[0] for args, _ in table} >= set(COMMANDS)
    assert set(COMMANDS) == set(main.commands)


# A real process: nothing else (a warning about an unclosed client, a log line) reaches stderr.
UNREACHABLE = [
    ["worker"],
    ["produce", "EVENTS"],
    ["tail", "compensation", "--idle-exit", "1"],
    ["simulate", "--subscribers", "2", "--rate", "100"],
    ["demo"],
    ["report", "--from-topics", "-o", "OUT"],
]


@pytest.mark.parametrize("args", UNREACHABLE, ids=lambda a: a[0])
def test_an_unreachable_broker_is_one_error_line_and_exit_code_2(args: list[str], tmp_path: Path, events: Path):
    port = free_port()  # nothing listens there: the connection is refused at once
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "CHARTER_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    proc = subprocess.run([sys.executable, "-m", "streams.cli", *_args(args, tmp_path, events)], env=env,
                          cwd=tmp_path, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    _assert_one_error_line(proc.returncode, proc.stdout, proc.stderr, f"127.0.0.1:{port}")
    assert "unreachable" in proc.stderr
    assert not (tmp_path / ".charter-demo").exists()  # demo started nothing


ENTRY_POINTS = [
    (["schemas", "--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["schemas", "--out", "EVENTS"], "cannot write"),
    (["streams.gen"], "--subscribers"),
    (["streams.gen", "--subscribers", "many"], "'many' is not an integer"),
    (["streams.gen", "--subscribers", "2", "--start", "2007-05-01T00:00"], "has no UTC offset"),
    (["streams.gen", "--subscribers", "2", "-o", "MISSING/events.jsonl"], "cannot write"),
]


@pytest.mark.parametrize(("args", "says"), ENTRY_POINTS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_python_m_entry_points_give_the_same_line(args: list[str], says: str, tmp_path: Path, events: Path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", *_args(args, tmp_path, events)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    _assert_one_error_line(proc.returncode, proc.stdout, proc.stderr, says)


def test_a_multi_line_message_is_shown_on_one_line():
    assert one_line("invalid charter x.yaml:\n  outage.tiers.0.after: bad\n  currency: Field required\n") == (
        "invalid charter x.yaml: outage.tiers.0.after: bad; currency: Field required")
    res = CliRunner().invoke(main, ["tail", "compensation"], env={"CHARTER_PARTITIONS": "0",
                                                                  "CHARTER_SECURITY_PROTOCOL": "TLS"})
    assert res.exit_code == 2 and len(res.stderr.splitlines()) == 1, res.stderr


# ------------------------------------------------------------------------------------------------ --version


def test_version_is_the_installed_package_version():
    try:
        expected = version("charter-streams")
    except PackageNotFoundError:  # a source tree run without `pip install -e .`
        expected = "unknown"
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0
    assert res.stdout.startswith(f"charter (charter-streams) {expected}"), res.stdout


# ------------------------------------------------------------------------------------------------ produce


class FakeProducer:
    """What ``publish`` needs of an AIOKafkaProducer: ``send`` returns a delivery future."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.delivered = 0

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> Any:
        import asyncio

        self.sent.append((topic, value, key))
        future = asyncio.get_running_loop().create_future()

        def deliver() -> None:
            self.delivered += 1
            future.set_result(None)

        asyncio.get_running_loop().call_later(0.01, deliver)
        return future


def _lines(*records: Any) -> list[bytes]:
    return [r if isinstance(r, bytes) else orjson.dumps(r) + b"\n" for r in records]


GOOD = {"topic": "service-status", "value": {"event_id": "e1", "customer_id": "A"}}


@pytest.mark.parametrize(("bad", "why"), [
    (b"{not json\n", "not valid JSON"),
    (b"[1, 2]\n", "not a replay record"),
    (orjson.dumps({"value": {}}) + b"\n", "not a replay record"),
    (orjson.dumps({"topic": "compensation", "value": {}}) + b"\n", "'compensation' is not an input topic"),
])
def test_produce_stops_at_a_bad_line_after_delivering_what_came_before(bad: bytes, why: str):
    import asyncio

    producer = FakeProducer()
    lines = _lines(GOOD, b"\n", GOOD, bad, GOOD)
    with pytest.raises(UserFacingError) as e:
        asyncio.run(publish(producer, replay_records(lines, "events.jsonl")))  # type: ignore[arg-type]
    assert str(e.value).startswith(f"events.jsonl line 4: {why}")
    assert str(e.value).endswith("published the 2 events before it, none after")
    assert len(producer.sent) == 2 and producer.delivered == 2  # delivered before the error, nothing after it
    assert producer.sent[0] == ("service-status", orjson.dumps(GOOD["value"]), b"A")


def test_produce_command_names_the_line_and_the_count(monkeypatch, tmp_path: Path):
    import streams.producer as producer_module

    producer = FakeProducer()
    producer.stop = _noop  # type: ignore[attr-defined]
    monkeypatch.setattr(producer_module, "AIOKafkaProducer", lambda **_: producer)
    monkeypatch.setattr(producer_module, "start_client", lambda client, settings: _noop())
    f = tmp_path / "events.jsonl"
    f.write_bytes(b"".join(_lines(GOOD, GOOD, GOOD, b'{"topic": "service-status"}\n', GOOD)))
    res = CliRunner().invoke(main, ["produce", str(f)])
    _assert_one_error_line(res.exit_code, res.stdout, res.stderr, f"{f} line 4: not a replay record")
    assert "published the 3 events before it, none after" in res.stderr
    assert len(producer.sent) == 3

    f.write_bytes(b"".join(_lines(GOOD, GOOD)))
    res = CliRunner().invoke(main, ["produce", str(f)])
    assert res.exit_code == 0 and res.stderr == "published 2 events\n"


async def _noop(*_: Any) -> None:
    return None
