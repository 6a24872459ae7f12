"""examples/mailsms.toml is the reference config: it must load, and so must every commented
carrier block in it once uncommented (so the documented keys cannot drift from the code)."""

from __future__ import annotations

import re
from pathlib import Path

from mailsms.config import load

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mailsms.toml"


def test_example_config_loads() -> None:
    loaded = load(EXAMPLE, env={})
    assert [c.name for c in loaded.settings.carriers] == ["console", "outbox"]


def test_commented_carrier_blocks_load_when_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    blocks = re.findall(r"^# \[\[carrier\]\]\n(?:^# .*\n)+", text, flags=re.MULTILINE)
    assert len(blocks) >= 2
    uncommented = "\n".join(re.sub(r"^# ", "", b, flags=re.MULTILINE) for b in blocks)
    path = tmp_path / "carriers.toml"
    path.write_text(uncommented)
    loaded = load(path, env={})
    types = {c.type for c in loaded.settings.carriers}
    assert {"fake", "smpp"} <= types


def test_commented_imap_block_loads_when_uncommented(tmp_path: Path) -> None:
    text = EXAMPLE.read_text()
    (block,) = re.findall(r"^# \[\[imap\]\]\n(?:^# .*\n)+", text, flags=re.MULTILINE)
    path = tmp_path / "imap.toml"
    path.write_text(re.sub(r"^# ", "", block, flags=re.MULTILINE).replace('"seen"', '"move"'))
    (imap,) = load(path, env={}).settings.imap
    assert (imap.name, imap.after, imap.move_to, imap.effective_port) == (
        "alerts",
        "move",
        "Sent as SMS",
        993,
    )
