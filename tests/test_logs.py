"""Log setup: the text format as before, JSON lines with the documented fields, library request logs quiet."""

from __future__ import annotations

import io
import json
import logging
from typing import Iterator

import pytest

from fota_server.logs import JsonFormatter, context, setup_logging


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "uvicorn.access")}
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name, old in levels.items():
        logging.getLogger(name).setLevel(old)


def test_json_lines_carry_the_fields_and_the_context() -> None:
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out)
    log = logging.getLogger("fota_server.attempts")
    log.info("attempt %s of device %s started", "a1", "d1", extra=context(account="acc", device="d1",
                                                                           campaign="c1", attempt="a1"))
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("fota_server").exception("step failed")
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "attempt a1 of device d1 started" and first["level"] == "INFO"
    assert first["logger"] == "fota_server.attempts" and first["timestamp"].endswith("Z")
    assert (first["account"], first["device"], first["campaign"], first["attempt"]) == ("acc", "d1", "c1", "a1")
    assert "device" not in second and "RuntimeError: boom" in second["exception"]


def test_text_format_stays_and_library_request_logs_are_quiet() -> None:
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out)
    logging.getLogger("fota_server").info("listening")
    logging.getLogger("httpx").info("HTTP Request: GET http://127.0.0.1/ 200")
    logging.getLogger("uvicorn.access").info("127.0.0.1 - GET / 200")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith(" INFO fota_server: listening")
    setup_logging("INFO", "text", access_log=True, stream=out)
    assert logging.getLogger("uvicorn.access").isEnabledFor(logging.INFO)


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError):
        setup_logging("INFO", "xml")
    assert JsonFormatter().format(logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None))
