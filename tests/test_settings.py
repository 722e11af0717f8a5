"""Settings and Kafka connection options without a broker: one-line errors (exit 2), unknown variables, the secret
password, the password file, client and faust options, and how a failed connection is explained."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from click.testing import CliRunner

from streams.cli import main
from streams.connection import (
    KafkaConnectionFailed,
    client_options,
    explain,
    faust_options,
    security_options,
    start_client,
)
from streams.settings import Settings, SettingsError, load_settings, settings_from_env, unknown_variables

PASSWORD = "s3cret-Pa55word"  # a test value that must never be printed
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def no_charter_env(monkeypatch):
    """Each test starts from an environment without CHARTER_* settings (the runner's own are not the test's)."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("CHARTER_") and not name.upper().startswith("CHARTER_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def tls(tmp_path_factory) -> dict[str, Path]:
    """A CA and a client certificate and key signed by it (openssl, as scripts/local-kafka makes them)."""
    d = tmp_path_factory.mktemp("tls")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=client", "-keyout", "client.key",
        "-out", "client.csr")
    run("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "7", "-days", "2",
        "-out", "client.pem")
    run("rsa", "-in", "client.key", "-aes256", "-passout", "pass:x", "-out", "encrypted.key")
    (d / "not-pem.txt").write_text("hello\n")
    return {n: d / f for n, f in [("ca", "ca.pem"), ("cert", "client.pem"), ("key", "client.key"),
                                  ("encrypted_key", "encrypted.key"), ("not_pem", "not-pem.txt")]}


def sasl_ssl(tls: dict[str, Path], **extra: str) -> dict[str, str]:
    return {"CHARTER_SECURITY_PROTOCOL": "SASL_SSL", "CHARTER_SASL_MECHANISM": "SCRAM-SHA-512",
            "CHARTER_SASL_USERNAME": "charter", "CHARTER_SASL_PASSWORD": PASSWORD,
            "CHARTER_SSL_CAFILE": str(tls["ca"]), **extra}


def error_of(monkeypatch, env: dict[str, str]) -> str:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as e:
        load_settings()
    line = str(e.value)
    assert "\n" not in line
    return line


# ------------------------------------------------------------------------------------------------ one line, exit 2

COMMANDS = [["worker"], ["produce", "-"], ["tail", "compensation"], ["simulate"], ["demo"]]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: a[0])
@pytest.mark.parametrize("env, named", [
    ({"CHARTER_PARTITIONS": "0"}, "CHARTER_PARTITIONS"),
    ({"CHARTER_SECURITY_PROTOCOL": "TLS"}, "CHARTER_SECURITY_PROTOCOL"),
    ({"CHARTER_BOOTSTRAP_SERVER": "127.0.0.1:9092"}, "CHARTER_BOOTSTRAP_SERVER"),
    ({"CHARTER_SECURITY_PROTOCOL": "SASL_SSL", "CHARTER_SASL_MECHANISM": "PLAIN", "CHARTER_SASL_USERNAME": "u",
      "CHARTER_SASL_PASSWORD": PASSWORD, "CHARTER_SSL_CAFILE": "/no/such/ca.pem"}, "CHARTER_SSL_CAFILE"),
], ids=["range", "choice", "unknown", "missing-file"])
def test_an_invalid_setting_is_one_line_and_exit_2_in_every_command(args, env, named):
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], result.output
    assert PASSWORD not in result.output


def test_a_real_process_prints_one_line_without_traceback():
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "CHARTER_SASL_MECHANISM": "MD5",
           "CHARTER_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CHARTER_SASL_PASSWORD": PASSWORD}
    r = subprocess.run([sys.executable, "-m", "streams.cli", "tail", "compensation"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and "CHARTER_SASL_MECHANISM" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and PASSWORD not in r.stderr


def test_an_unreachable_broker_is_one_line_and_exit_2():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "CHARTER_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}
    r = subprocess.run([sys.executable, "-m", "streams.cli", "produce", "-"], input="", env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "broker unreachable" in r.stderr, r.stderr


# ------------------------------------------------------------------------------------------------ unknown variables

def test_an_unknown_charter_variable_is_named_with_the_closest_setting(monkeypatch):
    line = error_of(monkeypatch, {"CHARTER_BOOTSTRAP_SERVER": "127.0.0.1:9092"})
    assert line == "unknown setting CHARTER_BOOTSTRAP_SERVER (did you mean CHARTER_BOOTSTRAP_SERVERS?)"


def test_every_unknown_variable_is_named_once(monkeypatch):
    line = error_of(monkeypatch, {"CHARTER_SASL_PASWORD": "x", "CHARTER_NONSENSE_THING": "1"})
    assert "CHARTER_SASL_PASWORD (did you mean CHARTER_SASL_PASSWORD?)" in line
    assert "CHARTER_NONSENSE_THING" in line and line.startswith("unknown settings ")


def test_variables_that_are_not_settings_are_allowed():
    env = {"CHARTER_TEST_BOOTSTRAP": "x", "CHARTER_TEST_SLOW_CALLS": "1", "CHARTER_KAFKA_HOME": "/x",
           "CHARTER_CONFORMANCE_DIR": "/y", "CHARTER_SOAK_MINUTES": "2", "charter_partitions": "4"}
    assert unknown_variables(env) == []


# ------------------------------------------------------------------------------------------------ the password

def test_the_password_is_not_in_repr_str_or_json(tls):
    s = Settings(**{k[8:].lower(): v for k, v in sasl_ssl(tls).items()})
    assert s.sasl_password.get_secret_value() == PASSWORD
    for text in (repr(s), str(s), s.model_dump_json(), repr(faust_options(s)["broker_credentials"])):
        assert PASSWORD not in text


@pytest.mark.parametrize("env", [
    {"CHARTER_SASL_PASSWORD": PASSWORD},  # with PLAINTEXT
    {"CHARTER_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CHARTER_SASL_PASSWORD": PASSWORD, "CHARTER_PARTITIONS": "x"},
    {"CHARTER_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CHARTER_SASL_PASSWORD": PASSWORD},  # no mechanism, no user
])
def test_no_error_quotes_the_password(monkeypatch, env):
    assert PASSWORD not in error_of(monkeypatch, env)


def test_the_password_file_is_read_without_its_trailing_newline(tmp_path, tls, monkeypatch):
    f = tmp_path / "password"
    f.write_text(PASSWORD + "\n")
    env = sasl_ssl(tls, CHARTER_SASL_PASSWORD_FILE=str(f))
    del env["CHARTER_SASL_PASSWORD"]
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = load_settings()
    assert s.sasl_password.get_secret_value() == PASSWORD
    assert client_options(s)["sasl_plain_password"] == PASSWORD
    assert PASSWORD not in repr(s)


@pytest.mark.parametrize("content, expected", [
    (None, "CHARTER_SASL_PASSWORD_FILE: no such file"),
    ("\n", "CHARTER_SASL_PASSWORD_FILE: "),
])
def test_a_missing_or_empty_password_file_is_named(tmp_path, monkeypatch, content, expected):
    f = tmp_path / "password"
    if content is not None:
        f.write_text(content)
    line = error_of(monkeypatch, {"CHARTER_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CHARTER_SASL_MECHANISM": "PLAIN",
                                  "CHARTER_SASL_USERNAME": "u", "CHARTER_SASL_PASSWORD_FILE": str(f)})
    assert line.startswith(expected)


def test_a_password_and_a_password_file_together_are_refused(tmp_path, monkeypatch):
    f = tmp_path / "password"
    f.write_text("other")
    line = error_of(monkeypatch, {"CHARTER_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CHARTER_SASL_PASSWORD": PASSWORD,
                                  "CHARTER_SASL_PASSWORD_FILE": str(f)})
    assert "CHARTER_SASL_PASSWORD and CHARTER_SASL_PASSWORD_FILE" in line


# ------------------------------------------------------------------------------------------------ cross-field checks

@pytest.mark.parametrize("missing", ["CHARTER_SASL_MECHANISM", "CHARTER_SASL_USERNAME", "CHARTER_SASL_PASSWORD"])
def test_sasl_needs_mechanism_user_and_password(tls, monkeypatch, missing):
    env = sasl_ssl(tls)
    del env[missing]
    line = error_of(monkeypatch, env)
    assert line.startswith(missing) and "CHARTER_SECURITY_PROTOCOL=SASL_SSL" in line


@pytest.mark.parametrize("env, named", [
    ({"CHARTER_SASL_USERNAME": "u"}, "CHARTER_SASL_USERNAME is set but CHARTER_SECURITY_PROTOCOL=PLAINTEXT"),
    ({"CHARTER_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "CHARTER_SASL_MECHANISM": "PLAIN", "CHARTER_SASL_USERNAME": "u",
      "CHARTER_SASL_PASSWORD": "p", "CHARTER_SSL_CAFILE": "CA"},
     "CHARTER_SSL_CAFILE is set but CHARTER_SECURITY_PROTOCOL=SASL_PLAINTEXT"),
    ({"CHARTER_SECURITY_PROTOCOL": "SSL", "CHARTER_SSL_KEYFILE": "KEY"}, "CHARTER_SSL_KEYFILE is set without"),
    ({"CHARTER_SECURITY_PROTOCOL": "SSL", "CHARTER_SSL_CAFILE": "NOT_PEM"}, "CHARTER_SSL_CAFILE: "),
    ({"CHARTER_SECURITY_PROTOCOL": "SSL", "CHARTER_SSL_CERTFILE": "CERT"}, "CHARTER_SSL_CERTFILE: no certificate"),
    ({"CHARTER_SECURITY_PROTOCOL": "SSL", "CHARTER_SSL_CERTFILE": "CERT", "CHARTER_SSL_KEYFILE": "ENCRYPTED_KEY"},
     "CHARTER_SSL_KEYFILE: the private key"),
    ({"CHARTER_SECURITY_PROTOCOL": "SASL_SSL", "CHARTER_SASL_MECHANISM": "GSSAPI"}, "CHARTER_SASL_MECHANISM: "),
])
def test_inconsistent_security_settings_name_the_setting(tls, monkeypatch, env, named):
    files = {"CA": tls["ca"], "KEY": tls["key"], "NOT_PEM": tls["not_pem"], "CERT": tls["cert"],
             "ENCRYPTED_KEY": tls["encrypted_key"]}
    env = {k: str(files.get(v, v)) for k, v in env.items()}
    assert error_of(monkeypatch, env).startswith(named)


def test_protocol_and_mechanism_are_case_insensitive():
    s = Settings(security_protocol="sasl_plaintext", sasl_mechanism="scram_sha_256", sasl_username="u",
                 sasl_password="p")
    assert (s.security_protocol, s.sasl_mechanism) == ("SASL_PLAINTEXT", "SCRAM-SHA-256")


def test_an_option_is_named_as_the_user_typed_it(monkeypatch):
    result = CliRunner().invoke(main, ["worker", "--partitions", "0"])
    assert result.exit_code == 2
    assert "--partitions: " in result.output


# ------------------------------------------------------------------------------------------------ client options

def test_plaintext_options_are_the_bootstrap_servers_only():
    assert client_options(Settings(bootstrap_servers="k1:9092,k2:9092")) == {
        "bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "PLAINTEXT"}
    assert client_options(Settings())["bootstrap_servers"] == "127.0.0.1:9092"


def test_sasl_ssl_options_carry_the_credentials_and_a_verifying_context(tls):
    s = settings_from_env(sasl_ssl(tls, CHARTER_BOOTSTRAP_SERVERS="kafka:9093"))
    opts = client_options(s)
    ctx = opts.pop("ssl_context")
    assert opts == {"bootstrap_servers": "kafka:9093", "security_protocol": "SASL_SSL",
                    "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": "charter",
                    "sasl_plain_password": PASSWORD}
    assert isinstance(ctx, ssl.SSLContext)
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "test CA"),),)]

    async def make() -> None:  # aiokafka accepts every option
        await AIOKafkaProducer(**opts, ssl_context=ctx).stop()

    asyncio.run(make())


def test_mutual_tls_and_sasl_plaintext_options(tls):
    mtls = client_options(Settings(security_protocol="SSL", ssl_cafile=tls["ca"], ssl_certfile=tls["cert"],
                                   ssl_keyfile=tls["key"]))
    assert mtls["security_protocol"] == "SSL" and isinstance(mtls["ssl_context"], ssl.SSLContext)
    assert not any(k.startswith("sasl") for k in mtls)
    plain = client_options(Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                                    sasl_password="p"))
    assert "ssl_context" not in plain and plain["sasl_mechanism"] == "PLAIN"


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"])
def test_faust_gives_aiokafka_the_same_security_options(tls, protocol):
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    kw: dict = {"security_protocol": protocol, "bootstrap_servers": "a:1,b:2"}
    if "SASL" in protocol:
        kw.update(sasl_mechanism="SCRAM-SHA-256", sasl_username="charter", sasl_password=PASSWORD)
    if "SSL" in protocol:
        kw.update(ssl_cafile=tls["ca"])
    s = Settings(**kw)
    fo = faust_options(s)
    assert fo["broker"] == "kafka://a:1;kafka://b:2"
    via_faust = dict(credentials_to_aiokafka_auth(fo["broker_credentials"]))
    ours = security_options(s)
    assert isinstance(via_faust.pop("ssl_context", None), ssl.SSLContext) == ("ssl_context" in ours)
    ours.pop("ssl_context", None)
    assert via_faust == ours


# ------------------------------------------------------------------------------------------------ explaining failures

def test_connection_failures_are_explained_in_one_line():
    s = Settings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="bob",
                 sasl_password=PASSWORD)
    auth = kafka_errors.SaslAuthenticationFailed("Authentication failed due to invalid credentials")
    assert explain(auth, s).startswith("authentication failed at 127.0.0.1:9092 for user 'bob' with SCRAM-SHA-512")
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    assert explain(verify, s).startswith("the broker's certificate could not be verified at 127.0.0.1:9092: "
                                         "unable to get local issuer certificate")
    refused = ConnectionRefusedError(111, "Connect call failed")
    assert explain(refused, s, "k:9092").startswith("broker unreachable at k:9092")
    wrapped = kafka_errors.KafkaConnectionError("Unable to bootstrap")
    wrapped.__cause__ = auth
    assert explain(wrapped, s).startswith("authentication failed")
    assert explain(kafka_errors.KafkaConnectionError("Connection at k:9092 closed"), s).startswith(
        "the broker at 127.0.0.1:9092 closed the connection during the handshake")
    assert explain(ValueError("something else"), s) is None
    assert explain(kafka_errors.KafkaConnectionError("Unable to bootstrap"), s) is None


def test_start_client_says_why_in_one_line_and_logs_nothing(capfd):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = Settings(bootstrap_servers=f"127.0.0.1:{port}")

    async def run() -> None:
        await start_client(AIOKafkaProducer(**client_options(s)), s)

    with pytest.raises(KafkaConnectionFailed) as e:
        asyncio.run(run())
    assert str(e.value).startswith(f"broker unreachable at 127.0.0.1:{port}")
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # aiokafka's own "Unable connect" error was kept off the terminal
