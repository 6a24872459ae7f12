"""The vonage driver's pure parts: the signature (against the vendor SDK), the submit answer
and receipt mappings, and webhook parsing that refuses cleanly whatever it is sent."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from vonage_http_client.auth import Auth

from mailsms.carriers.base import (
    CarrierWebhooks,
    ReportStatus,
    Submitted,
    WebhookCall,
    WebhookRefused,
)
from mailsms.carriers.vonage import (
    _SUBMIT_STATUS,
    SIGNATURE_TOLERANCE,
    VonageCarrier,
    VonageSettings,
    VonageWebhooks,
    outcome,
    signature,
)
from mailsms.errors import PermanentFailure, TemporaryFailure
from mailsms.sms.reassemble import Fragment

NOW = 1_767_268_800.0
HMACS = ("md5", "sha1", "sha256", "sha512")


def settings_for(**kw: Any) -> VonageSettings:
    return VonageSettings(name="vg", type="vonage", api_key="key1", **{"api_secret": "s", **kw})


def hooks(**kw: Any) -> VonageWebhooks:
    return VonageWebhooks(VonageCarrier(settings_for(**kw)), clock=lambda: NOW)


def get(params: dict[str, str], headers: dict[str, str] | None = None) -> WebhookCall:
    return WebhookCall("GET", "http://x/", "/", headers or {}, b"", params, {})


def post_json(body: dict[str, Any]) -> WebhookCall:
    fields = {k: v if isinstance(v, str) else str(v) for k, v in body.items()}  # as the web layer
    raw = json.dumps(body).encode()
    return WebhookCall("POST", "http://x/", "/", {}, raw, fields, fields, body)


# --- signature --------------------------------------------------------------------------------

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
params_st = st.dictionaries(st.text("abcdefghij-_", min_size=1, max_size=8), texts, max_size=8)


@settings(max_examples=200, deadline=None)
@given(params=params_st, secret=st.text(min_size=1, max_size=30), method=st.sampled_from(HMACS))
def test_hmac_signatures_match_the_vendor_sdk(
    params: dict[str, str], secret: str, method: str
) -> None:
    params = {**params, "timestamp": "1461605396"}
    params.pop("sig", None)
    auth = Auth(api_key="k", signature_secret=secret, signature_method=method)  # type: ignore[arg-type]
    ours = signature(params, secret, method)  # type: ignore[arg-type]
    assert ours == auth.sign_params(dict(params))
    assert auth.check_signature({**params, "sig": ours})


def test_md5_hash_matches_the_vendor_test_vector() -> None:
    # The SDK 4.x signs with HMACs only; this vector is the one the vendor's Python SDK tested
    # its MD5-hash signatures with (vonage-python-sdk tests: test_signature).
    params = {"a": "1", "b": "2", "timestamp": "1461605396"}
    assert signature(params, "secret", "md5hash") == "6af838ef94998832dbfc29020b564830"
    assert signature({**params, "sig": "ignored"}, "secret", "md5hash") == (
        "6af838ef94998832dbfc29020b564830"
    )


def test_ampersands_and_equals_signs_in_values_are_signed_as_underscores() -> None:
    a = signature({"text": "You & Me = Love", "timestamp": "1"}, "s", "sha256")
    assert a == signature({"text": "You _ Me _ Love", "timestamp": "1"}, "s", "sha256")


@pytest.mark.parametrize("method", ["md5hash", *HMACS])
def test_a_signed_call_verifies_and_any_change_is_refused(method: str) -> None:
    wh = hooks(signature_secret="sec", signature_method=method)
    fields = {"messageId": "M1", "status": "delivered", "timestamp": str(int(NOW))}
    fields["sig"] = signature(fields, "sec", method)  # type: ignore[arg-type]
    wh.verify(get(fields))
    wh.verify(get({**fields, "sig": fields["sig"].upper()}))
    for bad in (
        {**fields, "status": "failed"},
        {**fields, "extra": "1"},
        {k: v for k, v in fields.items() if k != "sig"},
        {**fields, "sig": signature(fields, "other", method)},  # type: ignore[arg-type]
    ):
        with pytest.raises(WebhookRefused) as exc:
            wh.verify(get(bad))
        assert exc.value.status == 403


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(0, True), (SIGNATURE_TOLERANCE, True), (SIGNATURE_TOLERANCE + 1, False), (-3600, False)],
)
def test_signed_timestamps_beyond_the_tolerance_are_refused(offset: float, ok: bool) -> None:
    wh = hooks(signature_secret="sec", signature_method="sha256")
    fields = {"messageId": "M1", "status": "delivered", "timestamp": str(int(NOW + offset))}
    fields["sig"] = signature(fields, "sec", "sha256")
    if ok:
        wh.verify(get(fields))
    else:
        with pytest.raises(WebhookRefused):
            wh.verify(get(fields))


def test_json_scalars_are_signed_in_their_json_spelling() -> None:
    wh = hooks(signature_secret="sec", signature_method="sha1")
    body: dict[str, Any] = {
        "msisdn": "447700900123",
        "to": "447700900999",
        "messageId": "M2",
        "text": "hi",
        "concat": True,
        "concat-total": 2,
        "timestamp": int(NOW),
    }
    spelled = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in body.items()}
    body["sig"] = signature(spelled, "sec", "sha1")
    wh.verify(post_json(body))


def test_without_a_signature_secret_the_webhook_token_is_required_if_set() -> None:
    wh = hooks(webhook_token="tok")
    with pytest.raises(WebhookRefused) as exc:
        wh.verify(get({}))
    assert exc.value.status == 401
    wh.verify(get({}, {"Authorization": "Bearer tok"}))
    hooks().verify(get({}))  # neither: open, as documented


def test_settings_need_a_secret_and_a_short_enough_callback() -> None:
    with pytest.raises(ValidationError, match="api_secret"):
        VonageSettings(name="vg", type="vonage", api_key="k")
    VonageSettings(name="vg", type="vonage", api_key="k", signature_secret="s")
    with pytest.raises(ValidationError, match="100 characters"):
        settings_for(public_url="https://" + "a" * 90 + ".example")
    assert "secret" not in repr(settings_for(signature_secret="very-secret"))


# --- the submit answer ------------------------------------------------------------------------


def answer(*statuses: str) -> str:
    messages = [
        {"message-id": f"ID{i}", "status": s} if s == "0" else {"status": s, "error-text": "x"}
        for i, s in enumerate(statuses)
    ]
    return json.dumps({"message-count": str(len(messages)), "messages": messages})


@pytest.mark.parametrize(("code", "meaning_permanent"), sorted(_SUBMIT_STATUS.items()))
def test_every_documented_status_maps_to_its_decision(
    code: int, meaning_permanent: tuple[str, bool]
) -> None:
    meaning, permanent = meaning_permanent
    with pytest.raises(PermanentFailure if permanent else TemporaryFailure) as exc:
        outcome(200, answer(str(code)), 1)
    assert meaning in str(exc.value) and f"(code status {code})" in str(exc.value)
    if not permanent:
        assert not isinstance(exc.value, PermanentFailure)


@pytest.mark.parametrize(
    ("code", "permanent"),
    [(1, False), (5, False), (4, False), (9, False), (14, False), (3, True), (6, True),
     (7, True), (15, True), (29, True), (33, True), (99, False)],
)  # fmt: skip
def test_status_table_decisions(code: int, permanent: bool) -> None:
    with pytest.raises(PermanentFailure if permanent else TemporaryFailure) as exc:
        outcome(200, answer(str(code)), 1)
    assert isinstance(exc.value, PermanentFailure) is permanent


@pytest.mark.parametrize(
    ("http", "permanent"), [(429, False), (500, False), (503, False), (401, False), (400, True)]
)
def test_http_errors(http: int, permanent: bool) -> None:
    with pytest.raises(PermanentFailure if permanent else TemporaryFailure) as exc:
        outcome(http, "", 1)
    assert isinstance(exc.value, PermanentFailure) is permanent


@pytest.mark.parametrize("body", ["", "<html>", "[]", '{"messages": []}', '{"x": 1}'])
def test_unreadable_answers_are_temporary(body: str) -> None:
    with pytest.raises(TemporaryFailure):
        outcome(200, body, 1)


def test_parts_map_one_to_one_when_the_counts_agree_else_the_first_id_stands_for_all() -> None:
    assert outcome(200, answer("0", "0", "0"), 3) == Submitted(("ID0", "ID1", "ID2"))
    assert outcome(200, answer("0", "0", "0"), 2) == Submitted(("ID0",), whole=True)
    assert outcome(200, answer("0"), 2) == Submitted(("ID0",), whole=True)


def test_a_partial_refusal_says_what_was_sent_and_the_worst_code_decides() -> None:
    with pytest.raises(TemporaryFailure) as temp:
        outcome(200, answer("0", "1"), 2)
    assert "1 of 2 parts were accepted" in str(temp.value)
    with pytest.raises(PermanentFailure):
        outcome(200, answer("0", "1", "6"), 3)


def test_the_request_signs_instead_of_sending_the_secret() -> None:
    from mailsms.carriers.base import OutboundSms
    from mailsms.model import PartSpec

    sms = OutboundSms("m1", "+447700900123", "+447700900999", "Ş", "gsm7", (PartSpec(1, "Ş"),), 0)
    plain = VonageCarrier(settings_for()).request(sms, NOW)
    assert plain["api_secret"] == "s" and "sig" not in plain and plain["type"] == "text"
    signed = VonageCarrier(
        VonageSettings(name="vg", type="vonage", api_key="key1", signature_secret="z")
    ).request(sms, NOW)
    assert "api_secret" not in signed and signed["timestamp"] == str(int(NOW))
    assert signed["sig"] == signature(signed, "z", "md5hash")  # the dashboard's default method
    national = OutboundSms("m2", "+905551234567", "ACME", "ş", "gsm7", (), 0, shift_table="tr")
    assert VonageCarrier(settings_for()).request(national, NOW)["type"] == "unicode"


# --- receipts and inbound ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "status"),
    [
        ("delivered", ReportStatus.DELIVERED),
        ("expired", ReportStatus.EXPIRED),
        ("failed", ReportStatus.FAILED),
        ("rejected", ReportStatus.FAILED),
        ("accepted", ReportStatus.ACCEPTED),
        ("buffered", ReportStatus.ACCEPTED),
        ("unknown", ReportStatus.ACCEPTED),
        ("something new", ReportStatus.ACCEPTED),
    ],
)
def test_receipt_status_words(word: str, status: ReportStatus) -> None:
    report = hooks().status(get({"messageId": "M1", "status": word, "err-code": "0"}))
    assert (report.carrier_id, report.status, report.error_code) == ("M1", status, None)
    assert report.raw["kind"] == "vonage"


def test_a_receipt_error_code_is_kept_and_explained() -> None:
    report = hooks().status(get({"messageId": "M1", "status": "failed", "err-code": "3"}))
    assert report.error_code == "3"
    assert report.error_text == "failed: the number is no longer in service"


def test_inbound_single_and_parts() -> None:
    base = {"msisdn": "447700900123", "to": "447700900999", "messageId": "A", "text": "hi"}
    sms = hooks().inbound(get({**base, "message-timestamp": "2026-01-01 12:00:00"}))
    assert not isinstance(sms, Fragment)
    assert (sms.from_, sms.to, sms.carrier_id, sms.text, sms.received_at) == (
        "447700900123",
        "447700900999",
        "A",
        "hi",
        NOW,
    )
    concat = {"concat": "true", "concat-ref": "9", "concat-total": "2", "concat-part": "2"}
    part = hooks().inbound(get({**base, **concat}))
    assert part == Fragment("447700900123", "447700900999", 9, 2, 2, "hi", "A", NOW)
    alone = hooks().inbound(get({**base, **concat, "concat-total": "1", "concat-part": "1"}))
    assert not isinstance(alone, Fragment)


# --- anything at all --------------------------------------------------------------------------

NAMES = [
    "msisdn", "to", "messageId", "text", "type", "status", "err-code", "message-timestamp",
    "concat", "concat-ref", "concat-total", "concat-part", "timestamp", "sig", "data",
]  # fmt: skip
values = st.one_of(
    texts,
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["true", "0", "1", "255", "256", "binary", "9" * 5000, "1e9", " 1"]),
)
fields_st = st.dictionaries(st.one_of(st.sampled_from(NAMES), texts), values, max_size=12)


@settings(max_examples=400, deadline=None)
@given(fields=fields_st, signed=st.booleans(), as_json=st.booleans())
def test_webhook_parsing_only_ever_refuses(
    fields: dict[str, str], signed: bool, as_json: bool
) -> None:
    wh: CarrierWebhooks = hooks(signature_secret="sec") if signed else hooks()
    call = post_json(dict(fields)) if as_json else get(fields)
    for step in (wh.verify, wh.inbound, wh.status):
        try:
            step(call)
        except WebhookRefused as exc:
            assert exc.status in (400, 401, 403)


def test_a_binary_sms_is_stored_as_a_placeholder() -> None:
    fields = {"msisdn": "447700900123", "to": "447700900999", "messageId": "B", "type": "binary"}
    sms = hooks().inbound(get({**fields, "data": "0a0b0c", "udh": "050003"}))
    assert not isinstance(sms, Fragment)
    assert sms.text == "[binary SMS not shown: 3 bytes]"
