"""Structured JSON logging. Context (work_item_id, system, event_id, ...) travels in the
``extra`` of each call; secrets are never passed to a logger, and values that look like
credentials are masked anyway as a last line of defence."""

from __future__ import annotations

import functools
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

import msgspec

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
_SECRETISH = re.compile(r"(secret|token|password|api_key|authorization)", re.IGNORECASE)
#: Anything JSON has no type for (an exception, a path, ...) is logged as its ``str``.
_ENCODER = msgspec.json.Encoder(enc_hook=str)


@functools.lru_cache(maxsize=1024)
def _masked(key: str) -> bool:
    """Whether a value logged under ``key`` is masked (the keys are a small fixed set)."""
    return _SECRETISH.search(key) is not None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            entry[key] = "***" if _masked(key) else value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry).decode()


def configure(level: str = "INFO", stream: Any = None) -> None:
    """Send every ``syncgate.*`` log line to ``stream`` (stderr) as one JSON object, and
    uvicorn's own (warnings and errors: startup failures, protocol errors) the same way."""
    # A line holds none of what the logging module would otherwise look up for every
    # record (the calling frame's file, function and line; the thread, process and
    # multiprocessing names): skip those lookups, as the logging HOWTO's "Optimization"
    # section describes.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("syncgate")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        server = logging.getLogger(name)
        server.handlers[:] = [handler]
        server.setLevel(logging.WARNING)
        server.propagate = False
