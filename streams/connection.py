"""The one place that turns Settings into Kafka client options, and a failed connection into one line.

Every client the project builds takes its connection from here: aiokafka producers, consumers and admin clients
through ``client_options``, the faust app through ``faust_options``. ``start_client`` starts a client and, when it
cannot connect, raises ``KafkaConnectionFailed`` with a line that says why (authentication, certificate,
unreachable) instead of aiokafka's "Unable to bootstrap".

Read against aiokafka 0.14 (``aiokafka.conn.create_conn``, the log record of a failed bootstrap in
``aiokafka/client.py``) and faust-streaming 0.15.3 (``credentials_to_aiokafka_auth`` in
``faust.transport.drivers.aiokafka``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import ssl
from collections.abc import Iterator
from typing import Any

from aiokafka import errors as kafka_errors
from aiokafka.helpers import create_ssl_context

from streams.errors import UserFacingError
from streams.settings import SASL_PROTOCOLS, SSL_PROTOCOLS, Settings


class KafkaConnectionFailed(UserFacingError):
    """A Kafka client could not connect; ``str()`` is one line for the user (never the password)."""


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of SSL and SASL_SSL (verifies the broker's certificate and host name), else None."""
    if settings.security_protocol not in SSL_PROTOCOLS:
        return None
    return create_ssl_context(
        cafile=None if settings.ssl_cafile is None else str(settings.ssl_cafile),
        certfile=None if settings.ssl_certfile is None else str(settings.ssl_certfile),
        keyfile=None if settings.ssl_keyfile is None else str(settings.ssl_keyfile),
        # Settings refused an encrypted key; a callback (not None) keeps OpenSSL from prompting on a terminal.
        password=lambda: b"",
    )


def security_options(settings: Settings) -> dict[str, Any]:
    """The security keyword arguments of aiokafka's clients (no bootstrap servers)."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    context = ssl_context(settings)
    if context is not None:
        options["ssl_context"] = context
    if settings.security_protocol in SASL_PROTOCOLS:
        assert settings.sasl_password is not None  # Settings requires it with a SASL protocol
        options.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                       sasl_plain_password=settings.sasl_password.get_secret_value())
    return options


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for AIOKafkaProducer, AIOKafkaConsumer and AIOKafkaAdminClient: the bootstrap servers and
    the security settings. Each call builds a new SSL context (cheap), so clients share nothing."""
    return {"bootstrap_servers": settings.bootstrap, **security_options(settings)}


def faust_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``faust.App``: ``broker`` and ``broker_credentials``.

    faust hands the credentials to every aiokafka client it builds (its consumer, producer and the client that
    creates topics) as ``security_protocol``, ``sasl_*`` and ``ssl_context``.
    """
    import faust

    protocol = settings.security_protocol
    credentials: Any = None
    if protocol == "SSL":
        credentials = faust.SSLCredentials(ssl_context(settings))
    elif protocol in SASL_PROTOCOLS:
        assert settings.sasl_password is not None
        # With an ssl_context, SASLCredentials is SASL_SSL; without, SASL_PLAINTEXT.
        credentials = faust.SASLCredentials(username=settings.sasl_username,
                                            password=settings.sasl_password.get_secret_value(),
                                            mechanism=settings.sasl_mechanism, ssl_context=ssl_context(settings))
    return {"broker": settings.broker_url, "broker_credentials": credentials}


# ------------------------------------------------------------------------------------------------ explaining failures

_AUTH_ERRORS = (kafka_errors.SaslAuthenticationFailed, kafka_errors.AuthenticationFailedError,
                kafka_errors.IllegalSaslStateError, kafka_errors.AuthenticationMethodNotSupported)
_AUTHZ_ERRORS = (kafka_errors.TopicAuthorizationFailedError, kafka_errors.GroupAuthorizationFailedError,
                 kafka_errors.ClusterAuthorizationFailedError, kafka_errors.TransactionalIdAuthorizationFailed)
_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT,
                       errno.EADDRNOTAVAIL}


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes and contexts, and the members of exception groups, each once."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        if isinstance(e, BaseExceptionGroup):
            todo.extend(e.exceptions)
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)


def explain(exc: BaseException, settings: Settings | None = None, server: str | None = None) -> str | None:
    """One line saying why a Kafka connection failed, or None when ``exc`` is not a connection failure this knows.

    Covers: authentication failed (user, password or mechanism), the broker's certificate could not be verified
    (unknown CA, wrong host name), a TLS error, the broker hanging up during the handshake (the protocol does not
    match the listener), the broker unreachable, and an ACL refusing the user.
    """
    where = f" at {server}" if server else (f" at {settings.bootstrap}" if settings is not None else "")
    mechanism = settings.sasl_mechanism if settings is not None else None
    user = settings.sasl_username if settings is not None else None
    for e in _chain(exc):
        if isinstance(e, _AUTH_ERRORS):
            who = f" for user {user!r} with {mechanism}" if user and mechanism else ""
            return (f"authentication failed{where}{who}: wrong user name, password or mechanism (check "
                    "CHARTER_SASL_USERNAME, CHARTER_SASL_PASSWORD and CHARTER_SASL_MECHANISM)")
        if isinstance(e, kafka_errors.UnsupportedSaslMechanismError):
            detail = str(e.args[0]) if e.args else "the broker does not accept this SASL mechanism"
            return f"authentication failed{where}: {detail} (check CHARTER_SASL_MECHANISM)"
        if isinstance(e, ssl.SSLCertVerificationError):
            reason = e.verify_message or e.reason or "verification failed"
            return (f"the broker's certificate could not be verified{where}: {reason} (is CHARTER_SSL_CAFILE the CA "
                    "that signed it?)")
        if isinstance(e, ssl.SSLError):
            return (f"TLS with the broker failed{where}: {e.reason or e} (does the listener speak TLS? check "
                    "CHARTER_SECURITY_PROTOCOL)")
        if isinstance(e, _AUTHZ_ERRORS):
            return f"not authorized{where}: {e.description} (ACLs of user {user!r})"
        if isinstance(e, ConnectionResetError) or (
                isinstance(e, kafka_errors.KafkaConnectionError) and "closed" in str(e)):
            return _mismatch(where, settings)
        if isinstance(e, socket.gaierror):
            return f"broker unreachable{where}: unknown host (check CHARTER_BOOTSTRAP_SERVERS)"
        if isinstance(e, TimeoutError):  # asyncio.TimeoutError is TimeoutError since 3.11
            return f"broker unreachable{where}: timed out (check CHARTER_BOOTSTRAP_SERVERS)"
        if isinstance(e, OSError) and e.errno in _UNREACHABLE_ERRNOS:
            reason = (e.strerror or errno.errorcode.get(e.errno or 0, "error")).lower()
            return f"broker unreachable{where}: {reason} (check CHARTER_BOOTSTRAP_SERVERS)"
    return None


def _mismatch(where: str, settings: Settings | None) -> str:
    """A listener that hangs up during the handshake: TLS against plain or plain against TLS, or TLS without the
    client certificate a mutual-TLS listener requires."""
    line = f"the broker{where} closed the connection during the handshake: "
    if settings is None:
        return line + "does CHARTER_SECURITY_PROTOCOL match its listener?"
    line += f"does CHARTER_SECURITY_PROTOCOL={settings.security_protocol} match its listener"
    if settings.security_protocol in SSL_PROTOCOLS and settings.ssl_certfile is None:
        line += ", or does it require a client certificate (CHARTER_SSL_CERTFILE)"
    return line + "?"


def _scrub(line: str, settings: Settings) -> str:
    """Belt and braces: no line leaves this module with the password in it."""
    if settings.sasl_password is not None:
        secret = settings.sasl_password.get_secret_value()
        if secret:
            line = line.replace(secret, "**********")
    return line


def _servers(settings: Settings) -> list[tuple[str, int]]:
    out = []
    for s in settings.bootstrap.split(","):
        host, _, port = s.strip().rpartition(":")
        if s.strip():
            out.append((host.strip("[]") or s.strip(), int(port) if port.isdigit() else 9092))
    return out


async def diagnose(settings: Settings, timeout: float = 10.0) -> str | None:
    """Connect to each bootstrap server once (TLS handshake and SASL included); None when one of them accepts,
    else the line explaining the first server's failure."""
    from aiokafka.conn import create_conn

    first: str | None = None
    for host, port in _servers(settings):
        security = security_options(settings)
        try:
            conn = await asyncio.wait_for(create_conn(host, port, request_timeout_ms=int(timeout * 1000),
                                                      **security), timeout)
        except Exception as e:
            line = explain(e, settings, f"{host}:{port}") or f"cannot connect to Kafka at {host}:{port}: {e}"
            first = first or _scrub(line, settings)
            continue
        conn.close()
        return None
    return first


class _BootstrapFailures(logging.Filter):
    """Keeps aiokafka's per-server "Unable connect" errors of a bootstrap off the terminal and keeps their
    exceptions: ``start_client`` explains them in one line instead."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[tuple[str, BaseException]] = []

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        if record.levelno >= logging.WARNING and args and isinstance(args[-1], BaseException):
            server = f"{args[0]}:{args[1]}" if len(args) >= 3 else None
            self.errors.append((server or "", args[-1]))
            return False
        return True


@contextlib.contextmanager
def _bootstrap_failures() -> Iterator[_BootstrapFailures]:
    # aiokafka 0.14's client.py logs as "aiokafka"; other versions used the module's name.
    loggers = [logging.getLogger("aiokafka"), logging.getLogger("aiokafka.client")]
    flt = _BootstrapFailures()
    for logger in loggers:
        logger.addFilter(flt)
    try:
        yield flt
    finally:
        for logger in loggers:
            logger.removeFilter(flt)


async def start_client(client: Any, settings: Settings) -> None:
    """``await client.start()`` for an aiokafka producer, consumer or admin client; when it cannot connect, the
    client is stopped and ``KafkaConnectionFailed`` says why in one line."""
    with _bootstrap_failures() as failures:
        try:
            await client.start()
            return
        except (kafka_errors.KafkaError, OSError) as e:
            error: BaseException = e
    # Stopped here, or aiokafka warns about an unclosed client when it is collected. The admin client has close().
    with contextlib.suppress(Exception):
        await (getattr(client, "stop", None) or client.close)()
    line = None
    for server, e in failures.errors:
        line = explain(e, settings, server or None)
        if line:
            break
    line = line or explain(error, settings)
    if line is None and isinstance(error, kafka_errors.KafkaConnectionError):
        line = await diagnose(settings)  # the bootstrap's own errors were not recorded: look again
    raise KafkaConnectionFailed(_scrub(line or f"cannot connect to Kafka at {settings.bootstrap}: {error}",
                                       settings)) from error


async def check_connection(settings: Settings, timeout: float = 10.0) -> None:
    """Raise ``KafkaConnectionFailed`` unless a bootstrap server accepts a connection with these settings (a start
    check for clients that are not started through ``start_client``, such as faust's)."""
    line = await diagnose(settings, timeout)
    if line is not None:
        raise KafkaConnectionFailed(line)
