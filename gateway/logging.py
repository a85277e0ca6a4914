"""Logging setup and the one line logged per request.

The request line holds the method, the path (without the query string: a GET request
carries variables there), the status, the duration and the operation name. Never
variables, tokens, SNILS, phones or birth dates.
"""

from __future__ import annotations

import logging
import re
import sys

ACCESS_LOGGER = "gateway.access"
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_NAME_RE = re.compile(r"^[_A-Za-z][_0-9A-Za-z]{0,99}$")

access_log = logging.getLogger(ACCESS_LOGGER)


def configure_logging(level: str) -> None:
    """Log to stderr at `level`; uvicorn's loggers go through ours, its access log is off."""
    root = logging.getLogger()
    if not any(getattr(h, "_school_gateway", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(_FORMAT))
        handler._school_gateway = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # uvicorn's access line would include the query string (GET variables).
    logging.getLogger("uvicorn.access").disabled = True


def log_request(
    method: str, path: str, status: int, duration_ms: float, operation_name: str | None
) -> None:
    """The request line: `POST /graphql 200 12.3ms op=MyChildren`."""
    operation = operation_name if operation_name and _NAME_RE.match(operation_name) else "-"
    access_log.info("%s %s %d %.1fms op=%s", method, path, status, duration_ms, operation)
