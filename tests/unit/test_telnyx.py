"""The Telnyx driver's pure parts: webhook signatures (held against the telnyx SDK's own
verification), the submit error decision (held against dsn_codes.TELNYX_ERROR), and
reading events, which must refuse anything malformed with WebhookRefused and nothing else.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import telnyx
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey
from telnyx.lib.webhook_verification import WebhookVerificationError, verify_webhook_signature

from mailsms.carriers.base import ReportStatus, WebhookCall, WebhookRefused
from mailsms.carriers.telnyx import (
    PERMANENT,
    TEMPORARY,
    TelnyxCarrier,
    TelnyxSettings,
    TelnyxWebhooks,
    failure,
    verify_signature,
)
from mailsms.config import from_dict
from mailsms.errors import ConfigError, PermanentFailure, TemporaryFailure
from mailsms.mail.dsn_codes import TELNYX_ERROR
from tests.telnyx_api import FakeTelnyx

KEY = SigningKey.generate()
PUBLIC = base64.b64encode(bytes(KEY.verify_key)).decode()
BODY = json.dumps(
    {"data": {"event_type": "message.received", "id": "e1", "payload": {"text": "héllo ✓"}}}
).encode()


def signed(body: bytes, stamp: str | None = None, key: SigningKey = KEY) -> dict[str, str]:
    stamp = stamp or str(int(time.time()))
    signature = key.sign(stamp.encode() + b"|" + body).signature
    return {
        "telnyx-signature-ed25519": base64.b64encode(signature).decode(),
        "telnyx-timestamp": stamp,
    }


def sdk_accepts(body: bytes, headers: dict[str, str], public: str = PUBLIC) -> bool:
    """The vendor's two ways to check a webhook: the lib function and client.webhooks.unwrap."""
    try:
        verify_webhook_signature(body, headers, public)
        lib = True
    except WebhookVerificationError:
        lib = False
    client = telnyx.Telnyx(api_key="KEY-unused", public_key=public)
    try:
        client.webhooks.unwrap(body.decode(), headers=headers)
        unwrap = True
    except (ValueError, WebhookVerificationError):
        unwrap = False
    assert lib == unwrap, "the SDK's two checks disagree"
    return lib


def ours_accepts(body: bytes, headers: dict[str, str], public: str = PUBLIC) -> bool:
    try:
        verify_signature(public, body, headers, time.time(), 300)
    except WebhookRefused as exc:
        assert exc.status == 403
        return False
    return True


def _flip(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _cases() -> list[tuple[str, bytes, dict[str, str]]]:
    good = signed(BODY)
    now = int(time.time())
    return [
        ("valid", BODY, good),
        ("header names in another case", BODY, {k.title(): v for k, v in good.items()}),
        ("tampered body", BODY.replace(b"hello", b"HELLO").replace(b"e1", b"e2"), good),
        (
            "flipped signature bit",
            BODY,
            {**good, "telnyx-signature-ed25519": _flip(good["telnyx-signature-ed25519"])},
        ),
        ("signed by another key", BODY, signed(BODY, key=SigningKey.generate())),
        ("timestamp changed after signing", BODY, {**good, "telnyx-timestamp": str(now + 1)}),
        ("stale", BODY, signed(BODY, str(now - 301 - 5))),
        ("from the future", BODY, signed(BODY, str(now + 301 + 5))),
        ("just inside the window", BODY, signed(BODY, str(now - 290))),
        ("no signature", BODY, {"telnyx-timestamp": good["telnyx-timestamp"]}),
        ("no timestamp", BODY, {"telnyx-signature-ed25519": good["telnyx-signature-ed25519"]}),
        ("signature not base64", BODY, {**good, "telnyx-signature-ed25519": "not base64!"}),
        ("short signature", BODY, {**good, "telnyx-signature-ed25519": "AAAA"}),
        ("timestamp not a number", BODY, {**good, "telnyx-timestamp": "soon"}),
    ]


@pytest.mark.parametrize("case", [c[0] for c in _cases()])
def test_signature_check_agrees_with_the_telnyx_sdk(case: str) -> None:
    # Built now, not at collection: the SDK reads the real clock when it checks.
    body, headers = next((b, h) for name, b, h in _cases() if name == case)
    expected = case in ("valid", "header names in another case", "just inside the window")
    assert sdk_accepts(body, headers) is expected
    assert ours_accepts(body, headers) is expected


@given(st.text(max_size=300), st.integers(min_value=0))
def test_any_body_signed_is_accepted_and_any_change_refused(text: str, at: int) -> None:
    doc = json.dumps({"data": {"payload": {"text": text}}}, ensure_ascii=False)
    body = doc.encode()
    headers = signed(body)
    assert sdk_accepts(body, headers) and ours_accepts(body, headers)
    # Changed as text: the SDK decodes the body as UTF-8 and cannot take broken bytes.
    changed = (doc[: at % len(doc)] + "~" + doc[at % len(doc) :]).encode()
    assert not sdk_accepts(changed, headers) and not ours_accepts(changed, headers)


def test_the_fake_api_signs_like_telnyx() -> None:
    fake = FakeTelnyx("k")
    body = fake.received("m1", "+447700900123", "+447700900999", "hi")
    headers = fake.sign(body)
    assert sdk_accepts(body, headers, fake.public_key)
    assert ours_accepts(body, headers, fake.public_key)


def test_the_injected_clock_decides_staleness() -> None:
    headers = signed(BODY, "1000000000")
    verify_signature(PUBLIC, BODY, headers, 1000000000 + 299, 300)
    with pytest.raises(WebhookRefused):
        verify_signature(PUBLIC, BODY, headers, 1000000000 + 301, 300)


@pytest.mark.parametrize("key", ["not base64!", base64.b64encode(b"short").decode(), ""])
def test_a_bad_public_key_is_a_config_error_naming_the_key(key: str) -> None:
    data = {
        "carrier": [{"name": "tx", "type": "telnyx", "api_key": "KEY", "public_key": key}],
    }
    with pytest.raises(ConfigError, match="public_key"):
        from_dict(data, "<test>")


def test_the_api_key_is_not_in_the_settings_repr() -> None:
    settings = TelnyxSettings(name="tx", type="telnyx", api_key="KEY-secret", public_key=PUBLIC)
    assert "KEY-secret" not in repr(settings)


# --- submit errors -------------------------------------------------------------------------


def body(code: str) -> dict[str, Any]:
    return {"errors": [{"code": code, "title": "t", "detail": "d"}]}


def test_the_driver_tables_cover_the_dsn_table_and_do_not_overlap() -> None:
    assert not PERMANENT & TEMPORARY
    assert {str(code) for code in TELNYX_ERROR} == PERMANENT | TEMPORARY


@pytest.mark.parametrize("code", sorted(TELNYX_ERROR))
def test_submit_decision_agrees_with_the_dsn_table(code: int) -> None:
    got = failure(422, body(str(code)))
    assert isinstance(got, PermanentFailure) is TELNYX_ERROR[code].permanent
    assert got.code == str(code)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (429, "10011", TemporaryFailure),
        (429, None, TemporaryFailure),
        (500, "10007", TemporaryFailure),
        (503, None, TemporaryFailure),
        (401, "10009", TemporaryFailure),  # our key: the operator fixes it, messages wait
        (403, None, TemporaryFailure),
        (403, "40300", PermanentFailure),  # a STOP block is final whatever the HTTP status
        (409, "40300", PermanentFailure),
        (422, "40310", PermanentFailure),
        (400, "40305", PermanentFailure),
        (400, "12345", PermanentFailure),  # an unknown refusal of this request
        (404, None, PermanentFailure),
        (402, "20100", TemporaryFailure),
        (302, None, TemporaryFailure),
    ],
)
def test_submit_failures(status: int, code: str | None, kind: type[Exception]) -> None:
    got = failure(status, body(code) if code else {"unexpected": True})
    assert type(got) is kind
    assert got.code == (code or str(status))
    assert f"HTTP {status}" in got.text


def test_error_words_are_bounded() -> None:
    got = failure(422, {"errors": [{"code": "40310", "title": "x" * 1000}]})
    assert len(got.text) < 260


# --- reading events -------------------------------------------------------------------------


def hooks() -> TelnyxWebhooks:
    settings = TelnyxSettings(name="tx", type="telnyx", api_key="KEY", public_key=PUBLIC)
    return TelnyxCarrier(settings).webhooks()


def call(value: Any) -> WebhookCall:
    raw = json.dumps(value).encode()
    form = {str(k): json.dumps(v) for k, v in value.items()} if isinstance(value, dict) else {}
    return WebhookCall("POST", "http://gw/webhooks/tx/x", "/x", {}, raw, form, form, value)


def event(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"event_type": kind, "id": "e1", "occurred_at": "x", "payload": payload}}


def test_message_received_becomes_an_inbound_sms() -> None:
    fake = FakeTelnyx("k")
    value = json.loads(
        fake.received("m1", "+447700900123", "+447700900999", "hi", 2, ("https://m/1.jpg",))
    )
    sms = hooks().inbound(call(value))
    assert sms is not None
    assert (sms.carrier, sms.carrier_id, sms.from_, sms.to) == (
        "tx",
        "m1",
        "+447700900123",
        "+447700900999",
    )
    assert sms.text == "hi\n[media: https://m/1.jpg]" and sms.segments == 2
    assert sms.received_at == 1714557598.0
    assert "text" not in sms.raw and sms.raw["event_id"] == value["data"]["id"]


@pytest.mark.parametrize(
    ("state", "code", "expected"),
    [
        ("delivered", None, ReportStatus.DELIVERED),
        ("delivery_failed", "40300", ReportStatus.FAILED),
        ("sending_failed", "40008", ReportStatus.FAILED),
        ("expired", None, ReportStatus.EXPIRED),
        ("delivery_unconfirmed", None, ReportStatus.ACCEPTED),
        ("sent", None, ReportStatus.ACCEPTED),
        ("queued", None, ReportStatus.ACCEPTED),
        ("something new", None, ReportStatus.ACCEPTED),
    ],
)
def test_message_finalized_becomes_a_report(
    state: str, code: str | None, expected: ReportStatus
) -> None:
    payload: dict[str, Any] = {"id": "m1", "to": [{"phone_number": "+1", "status": state}]}
    if code:
        payload["errors"] = [{"code": code, "title": "Blocked due to STOP message"}]
    report = hooks().status(call(event("message.finalized", payload)))
    assert report is not None
    assert (report.carrier_id, report.status, report.error_code) == ("m1", expected, code)
    assert report.error_text == ("Blocked due to STOP message" if code else state)


def test_other_event_types_are_acknowledged_with_nothing_to_store() -> None:
    value = event("number_order.complete", {"id": "x"})
    assert hooks().inbound(call(value)) is None
    assert hooks().status(call(value)) is None


def test_an_event_on_the_wrong_endpoint_is_refused_not_dropped() -> None:
    received = event("message.received", {"id": "m", "from": {"phone_number": "+1"}})
    finalized = event("message.finalized", {"id": "m", "to": [{"status": "delivered"}]})
    with pytest.raises(WebhookRefused) as err:
        hooks().status(call(received))
    assert err.value.status == 400 and "/inbound" in err.value.message
    with pytest.raises(WebhookRefused) as err:
        hooks().inbound(call(finalized))
    assert err.value.status == 400 and "/status" in err.value.message


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"data": None},
        {"data": {"event_type": "message.received"}},
        {"data": {"event_type": "message.received", "payload": []}},
        event("message.received", {"id": "m", "to": [{"phone_number": "+1"}]}),
        event("message.received", {"from": {"phone_number": "+2"}, "to": "+1", "id": "m"}),
        event("message.finalized", {"id": "m", "to": []}),
        event("message.finalized", {"to": [{"status": "delivered"}]}),
    ],
)
def test_malformed_events_are_400(value: dict[str, Any]) -> None:
    kind = value.get("data", {}) and value["data"].get("event_type")
    read = hooks().inbound if kind != "message.finalized" else hooks().status
    with pytest.raises(WebhookRefused) as err:
        read(call(value))
    assert err.value.status == 400


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "id": JSON | st.text(min_size=1),
        "from": JSON | st.fixed_dictionaries({"phone_number": JSON}),
        "to": JSON | st.lists(st.fixed_dictionaries({"phone_number": JSON, "status": JSON})),
        "text": JSON,
        "media": JSON | st.lists(st.fixed_dictionaries({"url": JSON})),
        "parts": JSON,
        "received_at": JSON | st.sampled_from(["2024-01-01T00:00:00Z", "9999-99-99", ""]),
        "errors": JSON | st.lists(st.fixed_dictionaries({"code": JSON, "title": JSON})),
    },
)
EVENTS = st.fixed_dictionaries(
    {
        "data": st.fixed_dictionaries(
            {
                "event_type": st.sampled_from(
                    ["message.received", "message.sent", "message.finalized", "x"]
                )
                | JSON,
                "payload": FIELDS | JSON,
            },
            optional={"id": JSON, "occurred_at": JSON},
        )
    }
)


@given(JSON | EVENTS)
def test_reading_any_json_raises_nothing_but_webhook_refused(value: Any) -> None:
    shape = hooks()
    for read in (shape.inbound, shape.status):
        try:
            read(call(value))
        except WebhookRefused as exc:
            assert exc.status == 400


@given(
    st.binary(max_size=200),
    st.dictionaries(
        st.sampled_from(["telnyx-signature-ed25519", "telnyx-timestamp", "Telnyx-Timestamp", "x"]),
        st.text(max_size=100),
    ),
)
def test_verifying_anything_raises_nothing_but_403(raw: bytes, headers: dict[str, str]) -> None:
    with pytest.raises(WebhookRefused) as err:
        verify_signature(PUBLIC, raw, headers, time.time(), 300)
    assert err.value.status == 403
