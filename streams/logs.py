"""Log lines of the worker: text (default) or one JSON object a line (``CHARTER_LOG_FORMAT=json``), set up once
before the worker's first line and handed to faust, so both formats carry every line from "starting" to "stopped".
"""

from __future__ import annotations

import logging
import logging.config
from datetime import UTC, datetime
from typing import Any

import orjson

TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and partition where the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        partition = getattr(record, "partition", None)
        if partition is not None:
            line["partition"] = partition
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class Repeats(logging.Filter):
    """Lets an aiokafka warning or error (the same template from the same logger) through at most once per ``every``
    seconds.

    aiokafka logs an error per failed connection attempt of each of its clients: while the broker is gone that is
    a line every few seconds per client, which buries everything else (the worker says how long the broker has been
    unreachable itself, streams/live/progress.py)."""

    def __init__(self, every: float = 60.0) -> None:
        super().__init__()
        self.every = every
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith("aiokafka"):
            return True
        key = (record.name, str(record.msg))
        last = self._last.get(key)
        if last is not None and record.created - last < self.every:
            return False
        self._last[key] = record.created
        return True


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` of the worker's logs, on stderr."""
    formatter: dict[str, Any] = ({"()": JsonFormatter} if fmt == "json" else {"format": TEXT_FORMAT})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"charter": formatter},
        "filters": {"repeats": {"()": Repeats}},
        "handlers": {"charter": {"class": "logging.StreamHandler", "formatter": "charter", "filters": ["repeats"],
                                 "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["charter"]},
    }


def setup_logging(level: str, fmt: str) -> None:
    """Configure the root logger (faust's worker is given a fresh ``logging_config`` to apply when it starts:
    dictConfig consumes parts of the dict it is given)."""
    logging.config.dictConfig(logging_config(level, fmt))
