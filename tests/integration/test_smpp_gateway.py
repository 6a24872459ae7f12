"""The whole gateway with an smpp carrier (found through its entry point) and smpp34's server.

Queued through the intake -> submit_sm at the SMSC -> receipt -> message ``delivered`` in
the store; and an MO deliver_sm -> an inbound row in the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from mailsms.carriers.smpp import SmppCarrier
from mailsms.model import State
from tests.conftest import GatewayFactory
from tests.helpers import in_state, until
from tests.peers import missing_peer, smpp_carrier
from tests.peers.smsc_smpp34 import Smpp34Smsc

pytestmark = pytest.mark.peers


@pytest.fixture
async def smsc() -> AsyncIterator[Smpp34Smsc]:
    if not Smpp34Smsc.available():
        missing_peer("smpp34 is not installed (pip install smpp34==1.5.0)")
    peer = Smpp34Smsc(password="secret")
    await peer.start()
    yield peer
    await peer.stop()


async def test_queued_message_is_submitted_delivered_and_mo_is_stored(
    smsc: Smpp34Smsc, gateway_factory: GatewayFactory
) -> None:
    # smsc first: it is torn down after the gateway, so the gateway unbinds cleanly.
    gw = await gateway_factory(carrier=[smpp_carrier(smsc.port)])
    carrier = gw.carriers["smsc"]
    assert isinstance(carrier, SmppCarrier)  # resolved through the mailsms.carriers entry point
    await smsc.wait_for(lambda e: e["event"] == "bound")

    rcpt = await gw.intake.check_recipient("+447700900123@sms.example.test", "ops@x.test", 0)
    assert not hasattr(rcpt, "code"), rcpt
    (message_id,) = (
        await gw.intake.accept_text("Disk full on db1", "ops@x.test", [rcpt], "api")
    ).ids

    submit = await smsc.wait_for(lambda e: e["event"] == "submit")
    assert submit["destination_addr"] == "447700900123"
    assert submit["source_addr"] == "ACME"
    assert bytes.fromhex(submit["short_message"]) == b"Disk full on db1"  # GSM-7 unpacked
    submitted = await in_state(gw, message_id, State.SUBMITTED)
    assert submitted.parts[0].carrier_id == submit["message_id"]

    # The receipt gives the id in decimal; submit_sm_resp gave it in hex.
    receipt = (
        f"id:{int(submit['message_id'], 16)} sub:001 dlvrd:001 submit date:2401011200 "
        "done date:2401011201 stat:DELIVRD err:000 text:Disk full on db1"
    )
    resp = await smsc.deliver(
        source_addr="447700900123",
        source_addr_ton=1,
        destination_addr="ACME",
        esm_class=0x04,
        short_message=receipt.encode().hex(),
    )
    assert resp["status"] == 0  # answered after the store commit
    delivered = await in_state(gw, message_id, State.DELIVERED)
    assert delivered.state is State.DELIVERED

    resp = await smsc.deliver(
        source_addr="447700900123",
        source_addr_ton=1,
        destination_addr="ACME",
        short_message=b"ACK thanks".hex(),
    )
    assert resp["status"] == 0

    async def stored() -> bool:
        return bool(await gw.store.list_inbound())

    await until(gw, stored)
    (row,) = await gw.store.list_inbound()
    assert (row["carrier"], row["sender"], row["recipient"], row["text"]) == (
        "smsc",
        "+447700900123",
        "ACME",
        "ACK thanks",
    )
    assert row["carrier_id"].startswith("mo-")
    assert not row["incomplete"]
