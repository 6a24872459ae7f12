"""Run ``mailsms serve`` as a real process, find its ports, stop or kill it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

READY = re.compile(r"smtp (\S+); lmtp (\S+); http (\S+);")


@dataclass
class GatewayProcess:
    config: Path
    cwd: Path
    proc: subprocess.Popen[str] | None = None
    smtp: tuple[str, int] | None = None
    http: tuple[str, int] | None = None
    stderr: list[str] = field(default_factory=list)
    own_group: bool = False  # its own process group, as under systemd or a shell's job
    _reader: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailsms", "serve", "--config", str(self.config)],
            cwd=self.cwd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=self.own_group,
        )
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        if not ready.wait(timeout) or self.smtp is None:
            self.kill()
            raise RuntimeError("gateway did not start:\n" + "".join(self.stderr))
        return self

    def _read(self, ready: threading.Event) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)
            match = READY.search(line)
            if match:
                self.smtp = _addr(match.group(1))
                self.http = _addr(match.group(3))
                ready.set()
        ready.set()  # the process ended

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM to the gateway; with ``own_group``, to its whole group (children too)."""
        assert self.proc is not None
        if self.own_group:
            os.killpg(self.proc.pid, signal.SIGTERM)
        else:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._close()
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.join(10)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()


def _addr(text: str) -> tuple[str, int] | None:
    if text == "off":
        return None
    host, _, port = text.rpartition(":")
    return host, int(port)
