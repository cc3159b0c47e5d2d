"""The process's logging: readable text lines (the default) or one JSON object per line (README "Metrics and
logs").

A JSON line holds ``timestamp`` (RFC 3339, UTC, milliseconds), ``level``, ``logger`` (the component, e.g.
``fota_server.attempts``), ``message``, and, where the line is about them, ``account``, ``device``,
``campaign`` and ``attempt`` (given at the call site as ``extra=``), and ``exception`` with the traceback.
Library request logs are quiet by default: httpx's line per request always, uvicorn's access log unless
``access_log``.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

__all__ = ["FIELDS", "JsonFormatter", "TEXT_FORMAT", "setup_logging", "context", "endpoint_context"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FIELDS = ("account", "device", "campaign", "attempt")   # the context a line may carry
_QUIET = ("httpx", "httpcore", "hpack")                 # a line per request or frame at INFO/DEBUG


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, timezone.utc)
        line: dict[str, Any] = {
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value:
                line[name] = str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def context(account: str = "", device: str = "", campaign: str = "", attempt: str = "") -> dict[str, str]:
    """The ``extra=`` of a line about these (empty ones left out)."""
    values = {"account": account, "device": device, "campaign": campaign, "attempt": attempt}
    return {k: v for k, v in values.items() if v}


def endpoint_context(endpoint: str) -> dict[str, str]:
    """The ``extra=`` of a line about the LwM2M device of ``endpoint`` (``urn:imei:<id>`` names ``<id>``)."""
    from .protocol.lwm2m.device_data import device_id_for_endpoint

    return context(device=device_id_for_endpoint(endpoint)[1][:128])


def setup_logging(level: str = "INFO", log_format: str = "text", access_log: bool = False,
                  stream: TextIO | None = None) -> None:
    """Configure the root logger once for the process: ``log_format`` text or json."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log format must be text or json, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(logging.WARNING)
    # uvicorn logs through the root handler (its log_config is None): its access lines only when asked
    logging.getLogger("uvicorn.access").setLevel(logging.INFO if access_log else logging.WARNING)
