"""Structured logs: one JSON object per line on stderr, through the standard `logging` module.

Usage::

    import logging
    from rlmig.node.logs import event, setup_logging

    setup_logging("info")
    event(logging.getLogger("rlmig.node"), "round", interval=3, result="applied")
    # {"ts": "2025-01-01T12:00:00.000Z", "level": "info", "logger": "rlmig.node", "event": "round",
    #  "interval": 3, "result": "applied"}

`event` puts its keyword fields into the record; `JsonFormatter` writes them beside the time, level,
logger and event name (the log message), plus ``error`` with the exception's one line when there is one.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any

_FIELDS = "rlmig_fields"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        document: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        document.update(getattr(record, _FIELDS, {}))
        if record.exc_info and record.exc_info[1] is not None:
            text = str(record.exc_info[1]).strip()
            document.setdefault("error", text.splitlines()[0] if text else type(record.exc_info[1]).__name__)
        return json.dumps(document, default=_default, separators=(",", ":"))


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def event(logger: logging.Logger, name: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log event `name` with structured `fields`."""
    if logger.isEnabledFor(level):
        logger.log(level, name, extra={_FIELDS: fields})


def setup_logging(level: str = "info", stream: IO[str] | None = None) -> logging.Handler:
    """Send the ``rlmig`` loggers to `stream` (stderr) as JSON lines; returns the handler."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("rlmig")
    for old in [h for h in logger.handlers if isinstance(h.formatter, JsonFormatter)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return handler
