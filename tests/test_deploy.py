"""The deployment files are consistent with the code (no Docker here: structure only)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from streams.charter import load_charter
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_compose_runs_kafka_two_workers_of_one_group_and_the_simulator():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka_env = services["kafka"]["environment"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    workers = [s for name, s in services.items() if name.startswith("worker")]
    assert len(workers) == 2
    for w in workers:
        assert w["command"] == ["worker"]
        env = w["environment"]
        settings = Settings(**{k.removeprefix("CHARTER_").lower(): v for k, v in env.items()})
        assert settings.bootstrap_servers == "kafka:9092"
        load_charter(settings.charter)  # the charter named exists
        assert w["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert w["healthcheck"]["test"] == ["CMD", "charter", "health", "/ready"]
        grace = int(w["stop_grace_period"].removesuffix("s"))
        assert grace > settings.session_timeout, "docker would SIGKILL a worker before it could leave its group"
    assert len({w["environment"]["CHARTER_APP_ID"] for w in workers}) == 1  # one consumer group
    assert services["simulator"]["command"][0] == "simulate"
    assert services["simulator"]["depends_on"]["worker-1"]["condition"] == "service_healthy"


def test_dockerfile_installs_the_package_and_runs_the_worker():
    text = (REPO / "Dockerfile").read_text()
    assert "pip install" in text and 'ENTRYPOINT ["charter"]' in text and 'CMD ["worker"]' in text


def test_dockerfile_pins_its_base_runs_as_a_user_and_checks_readiness():
    lines = (REPO / "Dockerfile").read_text().splitlines()
    base = next(line.split()[1] for line in lines if line.startswith("FROM "))
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base), base
    user = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert user and user[-1] not in ("root", "0")
    check = next(line for line in lines if line.startswith("HEALTHCHECK"))
    assert '["charter", "health", "/ready"]' in check
