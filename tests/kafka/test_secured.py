"""Against a broker that requires TLS and SASL (scripts/local-kafka in secured mode): ``charter produce`` and
``charter tail`` over SASL_SSL with SCRAM-SHA-512 and over the other listeners, topic creation, faust's own clients,
and the one line (exit 2, no traceback) that a wrong password or an unknown CA gives. No output ever holds the
password."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
import uuid

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from streams.child import free_port
from streams.connection import client_options
from streams.settings import settings_from_env
from streams.topics import ensure_topics, topic_plan
from tests.kafka.harness import REPO

EVENTS = [
    {"topic": "line-activation", "value": {"event_id": "s1", "customer_id": "C1", "type": "order_placed", "tv": False,
                                           "zone": "unbundled", "monthly_fee_cents": 2995,
                                           "occurred_at": "2026-01-05T10:00:00Z"}},
    {"topic": "line-activation", "value": {"event_id": "s2", "customer_id": "C1", "type": "line_confirmed",
                                           "occurred_at": "2026-01-05T10:01:00Z"}},
    {"topic": "box-shipment", "value": {"event_id": "s3", "customer_id": "C2", "item": "modem",
                                        "status": "delivered", "occurred_at": "2026-01-05T10:02:00Z"}},
]


def cli(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple[subprocess.CompletedProcess, float]:
    """``charter ARGS`` in a child process with only these CHARTER_* settings; (result, seconds it took)."""
    base = {k: v for k, v in os.environ.items()
            if not k.upper().startswith("CHARTER_") or k.upper().startswith("CHARTER_TEST_")}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "streams.cli", *args], env={**base, **env}, capture_output=True,
                       text=True, timeout=timeout, cwd=REPO)
    return r, time.monotonic() - t0


@pytest.fixture
def prefix() -> str:
    return f"sec{uuid.uuid4().hex[:8]}."


@pytest.fixture
def events_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in EVENTS))
    return path


def password_env(secured) -> dict[str, str]:
    """The broker's client settings with the password itself in the environment (not its file)."""
    env = {k: v for k, v in secured.env.items() if k != "CHARTER_SASL_PASSWORD_FILE"}
    return {**env, "CHARTER_SASL_PASSWORD": secured.password}


def expected_tail() -> list[dict]:
    return sorted(({"topic": e["topic"], "key": e["value"]["customer_id"], "value": e["value"]} for e in EVENTS),
                  key=lambda r: r["value"]["event_id"])


def tailed(stdout: str) -> list[dict]:
    return sorted((orjson.loads(line) for line in stdout.splitlines() if line.strip()),
                  key=lambda r: r["value"]["event_id"])


def assert_secret_kept(secured, *outputs: str) -> None:
    for out in outputs:
        assert secured.password not in out


def test_produce_and_tail_over_sasl_ssl_with_scram_sha_512(secured_kafka, prefix, events_file):
    env = {**password_env(secured_kafka), "CHARTER_TOPIC_PREFIX": prefix}
    assert env["CHARTER_SECURITY_PROTOCOL"] == "SASL_SSL" and env["CHARTER_SASL_MECHANISM"] == "SCRAM-SHA-512"
    produced, _ = cli(["produce", str(events_file)], env)
    assert produced.returncode == 0, produced.stderr
    assert "published 3 events" in produced.stderr
    tail, _ = cli(["tail", "line-activation", "box-shipment", "--idle-exit", "3"], env)
    assert tail.returncode == 0, tail.stderr
    assert tailed(tail.stdout) == expected_tail()
    assert_secret_kept(secured_kafka, produced.stdout, produced.stderr, tail.stdout, tail.stderr)


@pytest.mark.parametrize("listener", ["sasl_ssl-scram-sha-256-password-file", "sasl_ssl-plain",
                                      "sasl_plaintext-scram-sha-512", "ssl-client-certificate"])
def test_every_listener_and_mechanism(secured_kafka, prefix, events_file, listener):
    s = secured_kafka
    env = {**s.env, "CHARTER_TOPIC_PREFIX": prefix}
    if listener == "sasl_ssl-scram-sha-256-password-file":
        env["CHARTER_SASL_MECHANISM"] = "SCRAM-SHA-256"
    elif listener == "sasl_ssl-plain":
        env["CHARTER_SASL_MECHANISM"] = "PLAIN"
    elif listener == "sasl_plaintext-scram-sha-512":
        del env["CHARTER_SSL_CAFILE"]
        env.update(CHARTER_BOOTSTRAP_SERVERS=s.sasl_plaintext_bootstrap, CHARTER_SECURITY_PROTOCOL="SASL_PLAINTEXT")
    else:
        env = {"CHARTER_TOPIC_PREFIX": prefix, "CHARTER_BOOTSTRAP_SERVERS": s.ssl_bootstrap,
               "CHARTER_SECURITY_PROTOCOL": "SSL", "CHARTER_SSL_CAFILE": str(s.secrets / "ca.pem"),
               "CHARTER_SSL_CERTFILE": str(s.secrets / "client.pem"),
               "CHARTER_SSL_KEYFILE": str(s.secrets / "client.key")}
    produced, _ = cli(["produce", str(events_file)], env)
    assert produced.returncode == 0, produced.stderr
    tail, _ = cli(["tail", "line-activation", "box-shipment", "--idle-exit", "3"], env)
    assert tail.returncode == 0, tail.stderr
    assert tailed(tail.stdout) == expected_tail()
    assert_secret_kept(s, produced.stderr, tail.stderr)


COMMANDS = {"produce": ["produce", "EVENTS"], "tail": ["tail", "line-activation", "--idle-exit", "5"],
            "worker": ["worker"]}


def one_line(r: subprocess.CompletedProcess) -> str:
    """The one line of a failed command; a worker's log lines before it (its "worker starting") aside."""
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if "] [INFO] " not in line]
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_password_is_one_line_saying_authentication_failed(secured_kafka, prefix, events_file, tmp_path,
                                                                    command):
    wrong = "not-the-password-" + uuid.uuid4().hex[:6]
    env = {**password_env(secured_kafka), "CHARTER_SASL_PASSWORD": wrong, "CHARTER_TOPIC_PREFIX": prefix,
           "CHARTER_DATA_DIR": str(tmp_path / "data"), "CHARTER_WEB_PORT": str(free_port())}
    args = [str(events_file) if a == "EVENTS" else a for a in COMMANDS[command]]
    r, took = cli(args, env)
    assert r.returncode == 2
    assert took < 30
    assert "authentication failed" in one_line(r)
    assert r.stdout == ""
    assert_secret_kept(secured_kafka, r.stderr)
    assert wrong not in r.stderr


@pytest.mark.parametrize("command", ["produce", "tail", "worker"])
def test_an_unknown_ca_is_one_line_saying_the_certificate_could_not_be_verified(secured_kafka, prefix, events_file,
                                                                                command):
    env = {**secured_kafka.env, "CHARTER_SSL_CAFILE": str(secured_kafka.secrets / "untrusted-ca.pem"),
           "CHARTER_TOPIC_PREFIX": prefix, "CHARTER_WEB_PORT": str(free_port())}
    args = [str(events_file) if a == "EVENTS" else a for a in COMMANDS[command]]
    r, took = cli(args, env)
    assert r.returncode == 2
    assert took < 30
    assert "certificate could not be verified" in one_line(r)


def test_topics_are_created_over_sasl_ssl(secured_kafka, prefix):
    settings = settings_from_env(secured_kafka.env, partitions=2, topic_prefix=prefix, app_id=f"app-{prefix}")
    ensure_topics(settings)

    async def listed() -> set[str]:
        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    wanted = set(topic_plan(settings))  # names as created: prefixed, changelogs named after the app id
    assert wanted <= asyncio.run(listed())


FAUST_APP = textwrap.dedent('''
    import asyncio, os, tempfile

    import faust
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from streams.connection import client_options, faust_options
    from streams.settings import load_settings

    settings = load_settings()
    topic_name = settings.topic("faust-probe")

    async def create() -> None:
        admin = AIOKafkaAdminClient(**client_options(settings))
        await admin.start()
        await admin.create_topics([NewTopic(topic_name, 1, 1)])
        await admin.close()

    asyncio.run(create())
    app = faust.App(settings.app_id, **faust_options(settings), datadir=tempfile.mkdtemp(), web_enabled=False)
    topic = app.topic(topic_name, value_serializer="raw")

    @app.agent(topic)
    async def consume(stream):
        async for value in stream:
            with open("consumed", "wb") as f:  # faust takes over stdout: a file says it plainly
                f.write(value)
            os._exit(0)

    @app.timer(0.5)
    async def produce():
        await topic.send(value=b"over-sasl-ssl")

    faust.Worker(app, loglevel="info", quiet=True).execute_from_commandline()
''')


def test_faust_consumes_and_produces_with_the_credentials(secured_kafka, prefix, tmp_path):
    """faust_options: faust's consumer, producer and topic client all connect over SASL_SSL with SCRAM."""
    script = tmp_path / "faust_probe.py"
    script.write_text(FAUST_APP)
    base = {k: v for k, v in os.environ.items()
            if not k.upper().startswith("CHARTER_") or k.upper().startswith("CHARTER_TEST_")}
    env = {**base, **password_env(secured_kafka), "CHARTER_TOPIC_PREFIX": prefix, "CHARTER_APP_ID": f"app-{prefix}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    r = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    consumed = tmp_path / "consumed"
    assert r.returncode == 0 and consumed.exists(), (r.stdout + r.stderr)[-3000:]
    assert consumed.read_bytes() == b"over-sasl-ssl"
    assert_secret_kept(secured_kafka, r.stdout, r.stderr)


def test_the_worker_over_sasl_ssl_with_scram_gives_what_replay_gives(secured_kafka, secured_deployment):
    """The worker end to end on the secured broker: its faust app, transactional producers and changelog reader all
    connect with SASL_SSL + SCRAM-SHA-512; outputs equal replay's; the password is in no log line."""
    from datetime import UTC, datetime, timedelta

    from tests.kafka.harness import no_repeats, run_scenario, scenario

    dep = secured_deployment(partitions=4, CHARTER_PROCESSING_GUARANTEE="exactly_once")
    worker = dep.worker().start()
    records = scenario(datetime.now(UTC) + timedelta(seconds=2), customers=24, calls=12, seed=29)
    out = run_scenario(dep, records, isolation_level="read_committed")
    assert len(no_repeats(out)) > 3
    assert secured_kafka.password not in worker.log_text()
    assert worker.metrics()[("charter_outputs_total", (("topic", "compensation"),))] >= 1
