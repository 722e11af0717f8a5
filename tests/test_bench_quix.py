"""The live benchmark's Quix Streams comparison without a broker: quixstreams is optional, so a missing install is
a null number and one line, never a traceback or a failed benchmark; the Quix app connects with the same CHARTER_*
settings as every other client. quixstreams itself is only imported where it is installed."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bench import quix_ceiling
from bench.live_bench import Bench, quix_result, ratio_to
from streams.settings import Settings
from tests.test_settings import PASSWORD, no_charter_env, tls  # noqa: F401 - fixtures: no CHARTER_* env, a CA

REPO = Path(__file__).resolve().parents[1]


def test_ratios_to_an_unmeasured_competitor_are_null():
    assert ratio_to(3000.0, 2000) == 1.5
    assert ratio_to(1000.0, 3000) == 0.3333
    assert ratio_to(3000.0, None) is None  # quixstreams not installed
    assert ratio_to(3000.0, 0) is None


def test_a_missing_quixstreams_exits_with_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "quixstreams", None)  # `import quixstreams` raises ImportError
    with pytest.raises(SystemExit) as e:
        quix_ceiling.main(["--bootstrap", "127.0.0.1:1", "--group", "g", "--out-topic", "o", "--total", "10",
                           "--topics", "a", "b"])
    assert e.value.code == quix_ceiling.NOT_INSTALLED
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "quixstreams is not installed" in err and ".[bench]" in err
    res, why = quix_result(e.value.code, "", err)
    assert res is None and why == err.strip()


def test_the_quix_app_result_or_the_last_line_of_its_failure():
    ok = '{"messages": 30000, "seconds": 1.5, "events_per_s": 20000.0, "quixstreams_version": "3.28.1"}\n'
    assert quix_result(0, "some log line\n" + ok, "a warning\n") == (
        {"messages": 30000, "seconds": 1.5, "events_per_s": 20000.0, "quixstreams_version": "3.28.1"}, None)
    trace = ('Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
             "RuntimeError: stopped after 12 of 30000 messages: none came for 60 s\n")
    assert quix_result(1, "", trace) == (
        None, "the quix app failed: RuntimeError: stopped after 12 of 30000 messages: none came for 60 s")
    assert quix_result(-9, "", "") == (None, "the quix app failed: exit status -9, nothing on stderr")
    assert quix_result(0, "not json\n", "") == (None, "the quix app printed no result: exit status 0, nothing on "
                                                      "stderr")


def test_the_benchmark_goes_on_without_quixstreams(tmp_path, monkeypatch, capsys):
    """The phase as the benchmark runs it (a child process) with quixstreams hidden from the child: null, the reason
    in the JSON and on one summary line."""
    (tmp_path / "quixstreams.py").write_text("raise ImportError(\"No module named 'quixstreams'\")\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(REPO)]))
    bench = Bench.__new__(Bench)  # only what the phase reads: no broker, no charter
    bench.bootstrap, bench.tag, bench.prefix, bench.messages, bench.m = "127.0.0.1:1", "t", "benchT.", 10, {}
    asyncio.run(bench.phase_quix_ceiling())
    assert bench.m["quix_events_per_s"] is None
    assert bench.m["quix_error"].startswith("quixstreams is not installed")
    out = capsys.readouterr().out
    assert out == f"quix app: not measured: {bench.m['quix_error']}\n" and "Traceback" not in out


def test_the_quix_app_connects_with_the_charter_security_settings(tls, tmp_path):  # noqa: F811
    plain = quix_ceiling.connection_config(Settings(bootstrap_servers="k1:9092,k2:9092"))
    assert plain == {"bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "plaintext"}
    both = tmp_path / "client-and-key.pem"  # no CHARTER_SSL_KEYFILE: the key is in the certificate's file
    both.write_text(tls["cert"].read_text() + tls["key"].read_text())
    s = Settings(bootstrap_servers="kafka:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                 sasl_username="charter", sasl_password=PASSWORD, ssl_cafile=tls["ca"], ssl_certfile=both)
    cfg = quix_ceiling.connection_config(s)
    assert cfg == {"bootstrap_servers": "kafka:9093", "security_protocol": "sasl_ssl",
                   "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": "charter", "sasl_password": PASSWORD,
                   "ssl_endpoint_identification_algorithm": "https", "ssl_ca_location": str(tls["ca"]),
                   "ssl_certificate_location": str(both), "ssl_key_location": str(both)}
    mtls = quix_ceiling.connection_config(Settings(security_protocol="SSL", ssl_cafile=tls["ca"],
                                                   ssl_certfile=tls["cert"], ssl_keyfile=tls["key"]))
    assert mtls["ssl_key_location"] == str(tls["key"]) and not any(k.startswith("sasl") for k in mtls)


def test_quixstreams_accepts_the_connection_settings(tls):  # noqa: F811
    """Where quixstreams is installed: its ConnectionConfig takes every option and gives librdkafka the same."""
    config = pytest.importorskip("quixstreams.kafka.configuration")
    s = Settings(bootstrap_servers="kafka:9093", security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                 sasl_username="charter", sasl_password=PASSWORD, ssl_cafile=tls["ca"])
    rd = config.ConnectionConfig(**quix_ceiling.connection_config(s)).as_librdkafka_dict()
    assert rd == {"bootstrap.servers": "kafka:9093", "security.protocol": "sasl_ssl", "sasl.mechanism": "PLAIN",
                  "sasl.username": "charter", "sasl.password": PASSWORD,
                  "ssl.endpoint.identification.algorithm": "https", "ssl.ca.location": str(tls["ca"])}
