"""Helpers for the processes that start workers (the demo, the benchmark, the tests): children that die with
their parent, free ports, and the worker's health endpoints."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import signal
import socket
import sys
import urllib.error
import urllib.request
from typing import Any

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """A ``preexec_fn``: the kernel SIGKILLs the child when the process that started it dies, even by SIGKILL
    (Linux ``prctl(PR_SET_PDEATHSIG)``; elsewhere nothing), so an interrupted run leaves no worker behind."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def fetch(port: int, path: str, host: str = "127.0.0.1", timeout: float = 2.0) -> tuple[int | None, bytes]:
    """GET a path of a worker's web server: (HTTP status, body), or (None, the reason) when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return None, str(e).encode()


def health(port: int, path: str = "/ready", host: str = "127.0.0.1", timeout: float = 2.0
           ) -> tuple[int | None, Any]:
    """GET a worker's health endpoint: (HTTP status, JSON body), or (None, reason) when nothing answers."""
    status, body = fetch(port, path, host, timeout)
    if status is None:
        return None, body.decode(errors="replace")
    try:
        return status, json.loads(body or b"null")
    except ValueError:
        return status, body.decode(errors="replace")
