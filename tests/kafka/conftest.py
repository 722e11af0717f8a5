"""The real Apache Kafka broker for the ``kafka`` tests: started from Maven Central jars by scripts/local-kafka.

A broker that cannot be started is an error, never a skip. ``CHARTER_TEST_BOOTSTRAP`` points the tests at an
already running broker instead.

``secured_kafka`` is a second broker, started only by the tests that ask for it: scripts/local-kafka in secured
mode (TLS and SASL) on ``CHARTER_TEST_SECURED_KAFKA_PORT`` (default 29092) to +3, its own state dir.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.kafka.harness import REPO, Deployment

PORT = os.environ.get("CHARTER_TEST_KAFKA_PORT", "19092")
SECURED_PORT = int(os.environ.get("CHARTER_TEST_SECURED_KAFKA_PORT", "29092"))


def _env() -> dict[str, str]:
    return {**os.environ, "KAFKA_PORT": PORT, "KAFKA_FRESH": "1"}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/kafka/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka() -> str:
    given = os.environ.get("CHARTER_TEST_BOOTSTRAP")
    if given:
        yield given
        return
    script = str(REPO / "scripts" / "local-kafka")
    result = subprocess.run([script, "start"], env=_env(), capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"could not start the local Kafka broker:\n{result.stdout}\n{result.stderr}", pytrace=False)
    try:
        yield f"127.0.0.1:{PORT}"
    finally:
        subprocess.run([script, "stop"], env=_env(), capture_output=True, timeout=120)


@pytest.fixture
def deployment(kafka, tmp_path):
    deps: list[Deployment] = []

    def make(**kwargs) -> Deployment:
        dep = Deployment(kafka, tmp_path, **kwargs)
        deps.append(dep)
        return dep

    yield make
    for dep in deps:
        dep.close()


def broker_port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class SecuredBroker:
    """A running broker that requires TLS and SASL (see scripts/local-kafka's header for its listeners)."""

    port: int
    secrets: Path  # the state dir's secured/: ca.pem, client.pem/.key, untrusted-ca.pem, username, password
    env: dict[str, str]  # the CHARTER_* settings of a SASL_SSL + SCRAM-SHA-512 client (password by file)

    @property
    def bootstrap(self) -> str:
        """The SASL_SSL listener."""
        return f"127.0.0.1:{self.port}"

    @property
    def ssl_bootstrap(self) -> str:
        """The mutual-TLS listener (client certificate required)."""
        return f"127.0.0.1:{self.port + 2}"

    @property
    def sasl_plaintext_bootstrap(self) -> str:
        return f"127.0.0.1:{self.port + 3}"

    @property
    def username(self) -> str:
        return (self.secrets / "username").read_text().strip()

    @property
    def password(self) -> str:
        return (self.secrets / "password").read_text().strip()


@pytest.fixture(scope="session")
def secured_kafka() -> SecuredBroker:
    """scripts/local-kafka in secured mode beside the plain broker, fresh data, stopped at the end of the session."""
    state = Path(tempfile.gettempdir()) / f"charter-test-kafka-secured-{SECURED_PORT}"
    env = {**os.environ, "KAFKA_SECURITY": "secured", "KAFKA_PORT": str(SECURED_PORT), "KAFKA_STATE_DIR": str(state),
           "KAFKA_FRESH": "1"}
    script = str(REPO / "scripts" / "local-kafka")
    try:
        result = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            pytest.fail(f"could not start the secured Kafka broker:\n{result.stdout}\n{result.stderr}", pytrace=False)
        out = subprocess.run([script, "client-env"], env=env, capture_output=True, text=True, timeout=60, check=True)
        settings = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
        yield SecuredBroker(SECURED_PORT, state / "secured", settings)
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def secured_deployment(secured_kafka, tmp_path):
    """Like ``deployment``, on the secured broker: workers and the harness's clients use SASL_SSL + SCRAM."""
    deps: list[Deployment] = []

    def make(**kwargs) -> Deployment:
        dep = Deployment(secured_kafka.bootstrap, tmp_path, **{**secured_kafka.env, **kwargs})
        deps.append(dep)
        return dep

    yield make
    for dep in deps:
        dep.close()
