"""The mail corpus (tests/corpus) through the real SMTP intake to the file carrier.

The unit tests check ``extract()`` on each message; this checks the same expectations end
to end: SMTP DATA, parsing, encoding, the durable store, the dispatcher and the file
carrier's JSON line. Transliteration is off so the text arrives exactly as extracted.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiosmtplib
import pytest

from mailsms.app import Gateway
from mailsms.mail.parse import extract
from tests.conftest import GatewayFactory
from tests.helpers import settled

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
CASES = sorted(p.stem for p in CORPUS.glob("*.eml"))
RCPT = "+447700900123@sms.example.test"


@pytest.fixture
async def gw(gateway_factory: GatewayFactory, tmp_path: Path) -> Gateway:
    return await gateway_factory(
        carrier=[{"name": "out", "type": "file", "path": str(tmp_path / "outbox.jsonl")}],
        sms={"transliterate": False},
        policy={"max_segments": 40},
    )


def sent(tmp_path: Path) -> dict[str, dict[str, object]]:
    lines = (tmp_path / "outbox.jsonl").read_text().splitlines()
    return {str(r["id"]): r for r in map(json.loads, lines)}


@pytest.mark.parametrize("case", CASES)
async def test_corpus_message_arrives_as_expected_sms(
    gw: Gateway, tmp_path: Path, case: str
) -> None:
    raw = (CORPUS / f"{case}.eml").read_bytes()
    expected = (CORPUS / f"{case}.expected.txt").read_text(encoding="utf-8").strip()
    assert gw.listening.smtp is not None
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.listening.smtp[1]) as client:
        await client.mail("ops@example.test")
        await client.rcpt(RCPT)
        try:
            code, text = await client.data(raw)
        except aiosmtplib.SMTPDataError as exc:
            code, text = exc.code, exc.message
    if extract(raw).auto_generated:  # bounces and auto-replies never become SMS (loops)
        assert (code, text[:5]) == (550, "5.7.1"), text
        return
    assert code == 250, text
    message = await settled(gw, text.split()[-1])
    assert sent(tmp_path)[message.id]["text"] == expected
