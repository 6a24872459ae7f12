from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.process import GatewayProcess


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[Callable[[str], GatewayProcess]]:
    """Start ``mailsms serve`` processes from a config text; all are killed at teardown."""
    started: list[GatewayProcess] = []

    def start(config: str) -> GatewayProcess:
        path = tmp_path / "mailsms.toml"
        path.write_text(config)
        gp = GatewayProcess(path, tmp_path).start()
        started.append(gp)
        return gp

    yield start
    for gp in started:
        gp.kill()
