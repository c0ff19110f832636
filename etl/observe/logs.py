"""Logging: readable lines on a terminal, JSON lines anywhere else (CI, files).

Every record carries ``run_id``, ``pipeline`` and ``batch`` when set with
:func:`bind`. Messages never hold credentials: URLs are redacted where they
are built.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

_fields: contextvars.ContextVar[dict] = contextvars.ContextVar("etl_log_fields", default={})


def bind(**fields) -> contextvars.Token:
    """Attach fields (``run_id=...``) to every log record of this context."""
    return _fields.set({**_fields.get(), **fields})


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for k, v in _fields.get().items():
            setattr(record, k, v)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        for k in ("run_id", "pipeline", "batch"):
            if hasattr(record, k):
                out[k] = getattr(record, k)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def configure(level: int = logging.INFO, stream=None, json_lines: bool | None = None) -> None:
    """Send ``etl`` logs to ``stream`` (stderr): JSON lines unless it is a terminal."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not (hasattr(stream, "isatty") and stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.addFilter(_ContextFilter())
    handler.setFormatter(JsonFormatter() if json_lines else
                         logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("etl")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.captureWarnings(True)  # Python warnings become log records (JSON lines in CI), not stray stderr
    warnings_logger = logging.getLogger("py.warnings")
    warnings_logger.handlers[:] = [handler]
    warnings_logger.propagate = False
    for noisy in ("distributed", "distributed.shuffle._scheduler_plugin"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
