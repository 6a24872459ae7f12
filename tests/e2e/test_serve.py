"""``mailsms serve`` as an operator runs it: starts, serves, sends, stops cleanly on SIGTERM."""

from __future__ import annotations

import contextlib
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


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def test_sigterm_to_the_whole_process_group_stops_cleanly(tmp_path: Path) -> None:
    """systemd (KillMode=control-group) and a terminal's Ctrl-C signal every process of the
    group: the fsync child and the parse worker leave shutdown to the gateway, which still
    fsyncs its last commits, then closes their stdin."""
    path = tmp_path / "mailsms.toml"
    path.write_text(config(tmp_path))
    gp = GatewayProcess(path, tmp_path, own_group=True).start()
    try:
        assert gp.smtp is not None and gp.proc is not None
        with smtplib.SMTP(*gp.smtp, timeout=10) as smtp:
            smtp.sendmail("ops@example.test", ["07700900123@sms.example.test"], b"\r\nhi\r\n")
        outbox(tmp_path, 1)
        children = children_of(gp.proc.pid)
        assert len(children) == 2  # the fsync child and the parse worker
        assert gp.terminate() == 0
        log = "".join(gp.stderr)
        assert "gateway stopped" in log
        assert "ended abnormally" not in log and "gone" not in log and "failed" not in log
        assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]
    finally:
        gp.kill()
