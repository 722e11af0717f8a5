"""Worker configuration from environment variables (``CHARTER_*``), via pydantic-settings.

``load_settings`` is the entry point of every command: it refuses an unknown ``CHARTER_*`` variable and turns an
invalid setting into a ``SettingsError`` whose message is one line naming the setting. The SASL password is a
``SecretStr``: it shows as ``**********`` in a repr and is never quoted in an error.
"""

from __future__ import annotations

import difflib
import os
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.errors import UserFacingError

ENV_PREFIX = "CHARTER_"
# CHARTER_* variables that are not settings of the worker: the local broker script's jar cache and test hooks.
NOT_SETTINGS = frozenset({"CHARTER_KAFKA_HOME", "CHARTER_CONFORMANCE_DIR", "CHARTER_SOAK_MINUTES"})
NOT_SETTINGS_PREFIXES = ("CHARTER_TEST_",)

SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
SSL_PROTOCOLS = ("SSL", "SASL_SSL")
SECRET_FIELDS = frozenset({"sasl_password"})


class SettingsError(UserFacingError):
    """An invalid or unknown setting; ``str()`` is one line for the user that names it."""


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


class Settings(BaseSettings):
    # env_ignore_empty: an empty variable (a template's unset value) means "not set", not "the empty string".
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", env_ignore_empty=True)

    bootstrap_servers: str | None = Field(
        None, description="Kafka bootstrap servers, e.g. 127.0.0.1:9092. Unset: the local broker is started.")
    partitions: int = Field(8, ge=1, description="partition count of the input, clock and state topics")
    charter: str = Field("alice-2007", description="shipped charter name or path of a charter YAML file")
    app_id: str = Field("charter-streams", description="Faust app id: consumer group and internal topic prefix")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    tick_interval: float = Field(0.1, gt=0, description="seconds between clock ticks per partition")
    data_dir: Path = Field(Path(".charter-data"), description="Faust data directory (state is in Kafka changelogs)")
    replication_factor: int | None = Field(
        None, ge=1, description="replication factor of the topics the worker creates; unset: the broker's "
        "default.replication.factor")
    create_topics: bool = Field(
        True, description="create missing topics at start; false: only check that they exist and are co-partitioned "
        "(topics pre-created by the platform team, ACLs without create rights)")
    output_retention: str = Field(
        "30d", description="retention of the output topics other than compensation (a duration such as 30d, or "
        "'forever')")
    compensation_retention: str = Field(
        "forever", description="retention of the compensation topic: a ledger, kept forever by default")
    auto_offset_reset: Literal["earliest", "latest"] = Field(
        "earliest", description="where the worker starts reading a topic it has no committed offset for")
    session_timeout: float = Field(10.0, gt=0, description="consumer group session timeout, seconds")
    max_row_bytes: int = Field(
        512 * 1024, ge=1024, description="largest state row written to a changelog, in bytes: below the topic's "
        "max.message.bytes (1 MB by default), so a write is never refused. A larger row loses its oldest history "
        "(event ids first) and a warning is logged")
    max_buffered: int = Field(
        10_000, ge=10, description="events a partition's event-time merge holds from one input topic-partition while "
        "it waits on another; past it that topic-partition is paused until half of them are applied, so a skewed "
        "backlog cannot grow the worker's memory without bound")
    max_poll_records: int = Field(
        5000, ge=1, description="most input records one fetch hands to the partition tasks: larger batches cost "
        "less per event, smaller ones hold less memory while a backlog is applied (Kafka's max.poll.records)")
    topic_prefix: str = Field("", description="prefix of every topic name (namespaces a deployment or a test)")
    instance_id: str | None = Field(
        None, description="static group membership (Kafka group.instance.id): a stable, unique name per worker, e.g. "
        "the pod or host name. A restarted worker then takes its partitions back at once instead of after the "
        "session timeout; a worker that stops holds them until the session timeout")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="log level")
    log_format: Literal["text", "json"] = Field("text", description="text lines, or one JSON object a line")
    web_host: str = Field("127.0.0.1", description="address the web server (/metrics, /healthz, /ready) binds")
    web_port: int = Field(6066, ge=1, le=65535, description="port of the web server")
    web_debug_pages: bool = Field(False, description="also serve faust's own table, router and graph pages")

    # Connection security: every Kafka client of the project takes these through streams.connection.
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients talk to the brokers: TLS (SSL), SASL authentication, or both")
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (required with SASL_PLAINTEXT and SASL_SSL)")
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (or CHARTER_SASL_PASSWORD_FILE)")
    sasl_password_file: Path | None = Field(
        None, description="file holding the SASL password (a mounted Kubernetes secret); one trailing newline is "
        "ignored")
    ssl_cafile: Path | None = Field(
        None, description="CA bundle (PEM) that verifies the brokers' certificates; unset: the system's CAs")
    ssl_certfile: Path | None = Field(None, description="client certificate (PEM), for mutual TLS")
    ssl_keyfile: Path | None = Field(
        None, description="client private key (PEM, unencrypted); unset: the key is in CHARTER_SSL_CERTFILE")

    @field_validator("output_retention", "compensation_retention")
    @classmethod
    def _retention(cls, v: str) -> str:
        retention_ms(v)  # raises with the reason
        return v

    @field_validator("log_level", "log_format", "auto_offset_reset", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    @field_validator("security_protocol", mode="before")
    @classmethod
    def _protocol_case(cls, v: Any) -> Any:
        return v.strip().upper().replace("-", "_") if isinstance(v, str) else v

    @field_validator("sasl_mechanism", mode="before")
    @classmethod
    def _mechanism_case(cls, v: Any) -> Any:
        return v.strip().upper().replace("_", "-") if isinstance(v, str) else v

    @model_validator(mode="after")
    def _security(self) -> Settings:
        protocol = self.security_protocol
        if self.sasl_password_file is not None:
            if self.sasl_password is not None:
                raise ValueError("CHARTER_SASL_PASSWORD and CHARTER_SASL_PASSWORD_FILE are both set: give only one")
            self.sasl_password = SecretStr(_read_password(self.sasl_password_file))
        sasl = {"sasl_mechanism": self.sasl_mechanism, "sasl_username": self.sasl_username,
                "sasl_password": self.sasl_password}
        if protocol in SASL_PROTOCOLS:
            for name, value in sasl.items():
                if value is None or value == "":
                    hint = " (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)" if name == "sasl_mechanism" else ""
                    also = " or CHARTER_SASL_PASSWORD_FILE" if name == "sasl_password" else ""
                    raise ValueError(f"{env_name(name)}{also} is required with CHARTER_SECURITY_PROTOCOL={protocol}"
                                     f"{hint}")
        else:
            for name, value in sasl.items():
                if value is not None:
                    raise ValueError(f"{env_name(name)} is set but CHARTER_SECURITY_PROTOCOL={protocol} does not use "
                                     "SASL (SASL_SSL or SASL_PLAINTEXT does)")
        files = {"ssl_cafile": self.ssl_cafile, "ssl_certfile": self.ssl_certfile, "ssl_keyfile": self.ssl_keyfile}
        if protocol not in SSL_PROTOCOLS:
            for name, value in files.items():
                if value is not None:
                    raise ValueError(f"{env_name(name)} is set but CHARTER_SECURITY_PROTOCOL={protocol} does not use "
                                     "TLS (SSL or SASL_SSL does)")
            return self
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("CHARTER_SSL_KEYFILE is set without CHARTER_SSL_CERTFILE (the client certificate)")
        for name, value in files.items():
            if value is not None and not value.is_file():
                raise ValueError(f"{env_name(name)}: no such file: {value}")
        _check_tls_files(self.ssl_cafile, self.ssl_certfile, self.ssl_keyfile)
        return self

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def unprefixed(self, name: str) -> str:
        return name[len(self.topic_prefix):] if self.topic_prefix and name.startswith(self.topic_prefix) else name

    @property
    def bootstrap(self) -> str:
        """The bootstrap servers, the local broker's when unset."""
        return self.bootstrap_servers or "127.0.0.1:9092"

    @property
    def broker_url(self) -> str:
        return ";".join(f"kafka://{s.strip()}" for s in self.bootstrap.split(",") if s.strip())


def retention_ms(text: str) -> int:
    """A retention setting as Kafka's ``retention.ms``: a duration, or 'forever' (-1)."""
    if text.strip().lower() in ("forever", "infinite", "-1"):
        return -1
    from streams.charter import parse_duration

    return parse_duration(text) // 1000


def _read_password(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"CHARTER_SASL_PASSWORD_FILE: no such file: {path}") from None
    except UnicodeDecodeError:  # its message would quote a byte of the secret
        raise ValueError(f"CHARTER_SASL_PASSWORD_FILE: {path} is not UTF-8 text") from None
    except OSError as e:
        raise ValueError(f"CHARTER_SASL_PASSWORD_FILE: cannot read {path} ({e.strerror or e})") from None
    # `echo secret > file` and `kubectl create secret --from-file` differ by a newline; neither is the password.
    password = text[:-1] if text.endswith("\n") else text
    password = password[:-1] if password.endswith("\r") else password
    if not password:
        raise ValueError(f"CHARTER_SASL_PASSWORD_FILE: {path} is empty")
    return password


def _no_key_password() -> bytes:
    raise ValueError("encrypted")


def _check_tls_files(cafile: Path | None, certfile: Path | None, keyfile: Path | None) -> None:
    """Load the files as the clients will, so a wrong file is named now rather than as a failed connection."""
    context = ssl.create_default_context()
    if cafile is not None:
        try:
            context.load_verify_locations(cafile=str(cafile))
        except (ssl.SSLError, OSError, ValueError):
            raise ValueError(f"CHARTER_SSL_CAFILE: {cafile} holds no PEM certificate") from None
    if certfile is not None:
        try:
            # A callback instead of None: with None, OpenSSL would prompt on the terminal for an encrypted key.
            context.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile), _no_key_password)
        except ValueError:
            raise ValueError(f"CHARTER_SSL_KEYFILE: the private key in {keyfile or certfile} is encrypted; give an "
                             "unencrypted key file (readable by this user only)") from None
        except (ssl.SSLError, OSError):
            if keyfile is None:
                raise ValueError(f"CHARTER_SSL_CERTFILE: no certificate and private key in {certfile} (set "
                                 "CHARTER_SSL_KEYFILE if the key is in a file of its own)") from None
            raise ValueError(f"CHARTER_SSL_CERTFILE/CHARTER_SSL_KEYFILE: {certfile} and {keyfile} are not a PEM "
                             "certificate and its private key") from None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """``CHARTER_*`` variables that name no setting (typos), sorted."""
    environ = os.environ if environ is None else environ
    known = {env_name(f) for f in Settings.model_fields}
    out = []
    for name in environ:
        upper = name.upper()  # pydantic-settings reads names case-insensitively
        if (upper.startswith(ENV_PREFIX) and upper not in known and upper not in NOT_SETTINGS
                and not upper.startswith(NOT_SETTINGS_PREFIXES)):
            out.append(name)
    return sorted(out)


def _unknown_line(names: list[str]) -> str:
    known = sorted(env_name(f) for f in Settings.model_fields)
    parts = []
    for name in names:
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    what = "unknown setting" if len(names) == 1 else "unknown settings"
    return f"{what} {', '.join(parts)}"


def _field_line(err: Any, overrides: Mapping[str, str]) -> str:
    loc = err.get("loc") or ()
    msg = err.get("msg", "invalid")
    if not loc:  # a cross-field check: its message already names the settings
        ctx_error = (err.get("ctx") or {}).get("error")
        return str(ctx_error) if ctx_error is not None else msg
    field = str(loc[0])
    name = overrides.get(field) or env_name(field)
    if field in SECRET_FIELDS:
        return f"{name}: {msg}"
    shown = repr(err.get("input"))
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return f"{name}: {msg} (got {shown})"


def load_settings(options: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from the environment (``overrides`` win; None values are ignored).

    ``options`` maps a field to the command-line option that set it, so an error names ``--partitions`` rather than
    ``CHARTER_PARTITIONS``. Raises ``SettingsError`` (one line) for an unknown variable or an invalid setting.
    """
    unknown = unknown_variables()
    if unknown:
        raise SettingsError(_unknown_line(unknown))
    given = {k: v for k, v in overrides.items() if v is not None}
    named = {k: v for k, v in (options or {}).items() if k in given}
    try:
        return Settings(**given)
    except ValidationError as e:
        lines = [_field_line(err, named) for err in e.errors(include_url=False)]
        raise SettingsError("; ".join(dict.fromkeys(lines))) from None


def settings_from_env(env: Mapping[str, str], **overrides: Any) -> Settings:
    """Settings from a mapping of ``CHARTER_*`` variables (a child process's environment), not ``os.environ``."""
    values: dict[str, Any] = {}
    for name, value in env.items():
        field = name[len(ENV_PREFIX):].lower() if name.upper().startswith(ENV_PREFIX) else None
        if field in Settings.model_fields and value != "":
            values[field] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)
