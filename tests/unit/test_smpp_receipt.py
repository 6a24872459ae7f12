"""Receipt parsing: text form, TLVs, stat mapping, and matching ids across renderings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsms.carriers.base import ReportStatus
from mailsms.carriers.smpp import receipt as rc
from mailsms.carriers.smpp.pdu import Tag, tlv_cstr, tlv_u8

TEXT = (
    b"id:1234567890 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
    b"stat:DELIVRD err:000 text:Hello world, stat:fake"
)


def test_text_form() -> None:
    r = rc.parse(TEXT, ())
    assert r is not None
    assert (r.message_id, r.stat, r.err, r.status) == (
        "1234567890",
        "DELIVRD",
        "000",
        ReportStatus.DELIVERED,
    )
    assert r.fields["submit_date"] == "2401011200"
    assert r.fields["text"] == "Hello world, stat:fake"
    assert rc.error_code(r.err) is None


@pytest.mark.parametrize(
    ("stat", "status"),
    [
        ("DELIVRD", ReportStatus.DELIVERED),
        ("EXPIRED", ReportStatus.EXPIRED),
        ("UNDELIV", ReportStatus.FAILED),
        ("REJECTD", ReportStatus.FAILED),
        ("DELETED", ReportStatus.FAILED),
        ("ACCEPTD", ReportStatus.ACCEPTED),
        ("ENROUTE", ReportStatus.ACCEPTED),
        ("UNKNOWN", None),
    ],
)
def test_stat_mapping(stat: str, status: ReportStatus | None) -> None:
    r = rc.parse(f"id:AB12 stat:{stat} err:012".encode(), ())
    assert r is not None and r.status is status and r.err == "012"


def test_tlvs_win_over_text() -> None:
    tlvs = (
        tlv_cstr(Tag.RECEIPTED_MESSAGE_ID, "0A1B"),
        tlv_u8(Tag.MESSAGE_STATE, 5),
        (int(Tag.NETWORK_ERROR_CODE), b"\x03\x00\x22"),
    )
    r = rc.parse(b"id:999 stat:DELIVRD", tlvs)
    assert r is not None
    assert (r.message_id, r.stat, r.status) == ("0A1B", "UNDELIV", ReportStatus.FAILED)
    assert r.fields["network_error_code"] == "030022"


def test_no_id_is_no_receipt() -> None:
    assert rc.parse(b"hello", ()) is None


def test_is_receipt_bits() -> None:
    assert rc.is_receipt(0x04) and rc.is_receipt(0x44) and rc.is_receipt(0x20)
    assert not rc.is_receipt(0x00) and not rc.is_receipt(0x40)


def test_id_index_matches_decimal_to_hex_and_back() -> None:
    index = rc.IdIndex()
    index.add("1A2B0001")
    index.add("123")
    assert index.match("1A2B0001") == "1A2B0001"
    assert index.match("1a2b0001") == "1A2B0001"
    assert index.match(str(0x1A2B0001)) == "1A2B0001"
    assert index.match("0000007B") == "123"  # hex receipt for a decimal id
    assert index.match("zzz") is None
    assert "6699" in rc.candidate_ids("1A2B") and "1a2b" in rc.candidate_ids("6699")


def test_id_index_forgets_old_ids() -> None:
    index = rc.IdIndex(size=2)
    for carrier_id in ("A1", "B2", "C3"):
        index.add(carrier_id)
    assert index.match("A1") is None
    assert index.match("C3") == "C3"


@given(st.lists(st.sampled_from(["A1", "a1", "10", "16", "0A", "FF", "255", "x-1"]), max_size=40))
def test_id_index_keeps_the_last_ids_and_forgets_the_rest(ids: list[str]) -> None:
    index = rc.IdIndex(size=3)
    recent: list[str] = []  # the model: the last 3 distinct ids, most recent last
    for carrier_id in ids:
        index.add(carrier_id)
        if carrier_id in recent:
            recent.remove(carrier_id)
        recent = [*recent, carrier_id][-3:]
        for kept in recent:
            found = index.match(kept)
            assert found is not None and found.lower() == kept.lower()
    kept_keys = {key for kept in recent for key in rc._value_keys(kept)}
    for gone in set(ids) - set(recent):
        if not kept_keys & set(rc._value_keys(gone)):
            assert index.match(gone) is None
