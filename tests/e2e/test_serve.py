"""``mailsms serve`` as an operator runs it: starts, serves, sends, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.request import urlopen

from tests.e2e.process import GatewayProcess


def config(tmp: Path) -> str:
    return f"""
[gateway]
domain = "sms.example.test"
default_region = "GB"
[smtp]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[store]
url = "sqlite:///{tmp}/mailsms.db"
[dispatch]
poll_interval = "100ms"
[[carrier]]
name = "out"
type = "file"
path = "{tmp}/outbox.jsonl"
"""


def outbox(tmp: Path, count: int, timeout: float = 15.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        path = tmp / "outbox.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= count:
            return [json.loads(x) for x in lines]
        time.sleep(0.05)  # polling another process's file, with a deadline
    raise AssertionError(f"outbox never reached {count} lines")


def test_serve_sends_mail_and_cli_queued_messages_then_stops_on_sigterm(
    tmp_path: Path, gateway_process: Callable[[str], GatewayProcess]
) -> None:
    gp = gateway_process(config(tmp_path))
    assert gp.smtp is not None and gp.http is not None
    with urlopen(f"http://{gp.http[0]}:{gp.http[1]}/healthz", timeout=10) as r:
        assert json.load(r)["status"] == "ok"
    with smtplib.SMTP(*gp.smtp, timeout=10) as smtp:
        smtp.sendmail(
            "ops@example.test",
            ["07700 900123@sms.example.test".replace(" ", "")],
            b"Subject: x\r\n\r\nfrom smtp\r\n",
        )
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailsms",
            "send",
            "--config",
            str(gp.config),
            "--to",
            "07700900456",
            "--text",
            "from the cli",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert cli.stdout.startswith("queued ")
    sent = outbox(tmp_path, 2)
    assert sorted((s["to"], s["text"]) for s in sent) == [
        ("+447700900123", "from smtp"),
        ("+447700900456", "from the cli"),
    ]
    assert gp.terminate() == 0
    assert any("gateway stopped" in line for line in gp.stderr)
