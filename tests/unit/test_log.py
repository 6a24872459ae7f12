"""Structured, discreet logs (mailsms.log): logfmt and JSON lines, secrets redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mailsms import log
from mailsms.log import JsonFormatter, LogfmtFormatter


def record(
    msg: str = "submitted",
    *args: Any,
    level: int = logging.INFO,
    exc_info: Any = None,
    **extra: Any,
) -> logging.LogRecord:
    logger = logging.getLogger("mailsms.test")
    return logger.makeRecord("mailsms.test", level, __file__, 1, msg, args, exc_info, extra=extra)


# --- logfmt ----------------------------------------------------------------------------------


def test_logfmt_head_and_extra_fields() -> None:
    line = LogfmtFormatter().format(record("submitted", event="submit", id="01abc", parts=2))
    assert re.fullmatch(
        r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d level=info logger=mailsms\.test msg=submitted "
        r"event=submit id=01abc parts=2",
        line,
    )


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        ("plain", "plain"),
        ("+15*******67", "+15*******67"),
        ("a@b.test", "a@b.test"),
        ("two words", '"two words"'),
        ("k=v", '"k=v"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("line\ninjected=1", '"line\\ninjected=1"'),  # no log-line injection
        ("é", "é"),
        (None, "None"),
        (3.5, "3.5"),
    ],
)
def test_logfmt_quotes_values_that_need_it(value: object, rendered: str) -> None:
    line = LogfmtFormatter().format(record(field=value))
    assert line.endswith(f" field={rendered}")


def test_logfmt_message_arguments_are_applied_and_quoted() -> None:
    line = LogfmtFormatter().format(record("queued %s for %d", "01abc", 3))
    assert ' msg="queued 01abc for 3"' in line


def test_logfmt_renders_the_exception_on_the_same_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        line = LogfmtFormatter().format(record("failed", exc_info=sys.exc_info()))
    assert "\n" not in line
    assert re.search(r' exc="Traceback .*RuntimeError: boom"$', line)


# --- JSON ------------------------------------------------------------------------------------


def test_json_is_one_object_per_line_with_extra_fields() -> None:
    line = JsonFormatter().format(record("queued %s", "01abc", event="queue", count=2, ok=True))
    assert "\n" not in line
    body = json.loads(line)
    assert body["level"] == "info"
    assert body["logger"] == "mailsms.test"
    assert body["msg"] == "queued 01abc"
    assert isinstance(body["ts"], float)
    assert (body["event"], body["count"], body["ok"]) == ("queue", 2, True)


def test_json_renders_unserialisable_values_as_text() -> None:
    body = json.loads(JsonFormatter().format(record(where=("127.0.0.1", 25), obj=object())))
    assert body["where"] == ["127.0.0.1", 25]
    assert body["obj"].startswith("<object object")


def test_json_includes_the_exception() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        body = json.loads(JsonFormatter().format(record("x", exc_info=sys.exc_info())))
    assert body["exc"].endswith("ValueError: bad")


# --- redaction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "smtp_password",
        "Password",
        "token",
        "api_token",
        "webhook_token",
        "secret",
        "client_secret",
        "api_key",
        "authorization",
        "auth_token",
    ],
)
@pytest.mark.parametrize("formatter", [LogfmtFormatter(), JsonFormatter()], ids=["logfmt", "json"])
def test_secret_looking_fields_are_redacted(formatter: logging.Formatter, key: str) -> None:
    fields: dict[str, Any] = {key: "hunter2", "event": "bind"}
    line = formatter.format(record(**fields))
    assert "hunter2" not in line
    assert "[redacted]" in line
    assert "bind" in line


def test_other_fields_are_not_redacted() -> None:
    line = LogfmtFormatter().format(record(carrier="smsc1", to="+15*******67", attempt=2))
    assert "carrier=smsc1 to=+15*******67 attempt=2" in line
    assert "[redacted]" not in line


# --- setup -----------------------------------------------------------------------------------


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    quiet = {name: logging.getLogger(name).level for name in ("mail.log", "aiohttp.access")}
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, lvl in quiet.items():
            logging.getLogger(name).setLevel(lvl)


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("level", "fmt", "cls"),
    [("info", "logfmt", LogfmtFormatter), ("debug", "json", JsonFormatter)],
)
def test_setup_installs_one_stderr_handler(level: str, fmt: str, cls: type) -> None:
    log.setup(level, fmt)
    root = logging.getLogger()
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    assert handler.stream is sys.stderr
    assert isinstance(handler.formatter, cls)
    assert root.level == logging.getLevelName(level.upper())
    assert logging.getLogger("mail.log").level == logging.WARNING
    assert logging.getLogger("aiohttp.access").level == logging.WARNING
