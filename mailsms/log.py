"""Structured, discreet logging: ``logfmt`` or JSON lines, one ``event`` field per record.

Callers pass fields through ``extra=``; this module renders them. It never formats message
bodies, and numbers are masked by the callers (:func:`mailsms.address.mask`) before they
get here. Secret-looking fields are redacted as a second line of defence.
"""

from __future__ import annotations

import json
import logging
import sys
import time

_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}
_SECRET = ("password", "passwd", "token", "secret", "api_key", "apikey", "authorization")


def _fields(record: logging.LogRecord) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in vars(record).items():
        if key in _STANDARD:
            continue
        out[key] = "[redacted]" if any(s in key.lower() for s in _SECRET) else value
    return out


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        head = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
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
    if text and all(c.isalnum() or c in "-_.:/+@*" for c in text):
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
