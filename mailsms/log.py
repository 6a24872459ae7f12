"""Structured, discreet logging: ``logfmt`` or JSON lines, one ``event`` field per record.

Callers pass fields through ``extra=``; this module renders them. It never formats message
bodies, and numbers are masked by the callers (:func:`mailsms.address.mask`) before they
get here. Secret-looking fields are redacted as a second line of defence.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sys
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_SECRET = ("password", "passwd", "token", "secret", "api_key", "apikey", "authorization")


# A line per submitted message is logged at info: these keep a record's cost to a few µs.
_PLAIN = re.compile(r"[\w.:/+@*-]+")


@functools.lru_cache(maxsize=512)
def _secret(key: str) -> bool:
    return any(s in key.lower() for s in _SECRET)


@functools.lru_cache(maxsize=4)
def _timestamp(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {
        key: "[redacted]" if _secret(key) else value
        for key, value in vars(record).items()
        if key not in _STANDARD
    }


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        head = {
            "ts": _timestamp(int(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        parts = [f"{k}={_quote(v)}" for k, v in {**head, **_fields(record)}.items()]
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        body = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return json.dumps(body, default=str)


def _quote(value: object) -> str:
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text, ensure_ascii=False)


def setup(level: str = "info", fmt: str = "logfmt") -> None:
    """Configure the root logger once, on stderr (stdout belongs to the console carrier)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiosmtpd logs every command with the peer at INFO, addresses included: keep it quiet.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
