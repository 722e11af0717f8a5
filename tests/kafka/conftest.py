"""The real Apache Kafka broker for the ``kafka`` tests: started from Maven Central jars by scripts/local-kafka.

A broker that cannot be started is an error, never a skip. ``CHARTER_TEST_BOOTSTRAP`` points the tests at an
already running broker instead.
"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.kafka.harness import REPO, Deployment

PORT = os.environ.get("CHARTER_TEST_KAFKA_PORT", "19092")


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
