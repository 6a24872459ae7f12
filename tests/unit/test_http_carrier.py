"""The http carrier's pure parts: templates, the request built from them, reading answers
(ids, errors, how each maps to retry or bounce) and config errors that name the key."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsms.carriers.base import OutboundSms, Submitted
from mailsms.carriers.http import (
    HttpCarrierSettings,
    Template,
    TemplateError,
    build_request,
    lookup,
    outcome,
    parse_path,
    parse_statuses,
    redact,
    values,
)
from mailsms.config import from_dict
from mailsms.errors import ConfigError, PermanentFailure, TemporaryFailure
from mailsms.model import PartSpec

URL = "https://api.example.com/send"


def settings(**keys: Any) -> HttpCarrierSettings:
    got = HttpCarrierSettings.model_validate({"name": "h", "type": "http", "url": URL, **keys})
    return got


def sms(text: str = "hi", parts: int = 1, source: str | None = "+15550001") -> OutboundSms:
    specs = tuple(PartSpec(i + 1, text) for i in range(parts))
    return OutboundSms("m1", "+447700900123", source, text, "ucs2", specs, 0.0)


def config_error(**keys: Any) -> str:
    carrier = {"name": "h", "type": "http", "url": URL, **keys}
    with pytest.raises(ConfigError) as caught:
        from_dict({"gateway": {"domain": "x.test"}, "carrier": [carrier]})
    return str(caught.value)


# --- templates --------------------------------------------------------------------------------


def test_placeholders_render_with_format_specs_and_literal_braces() -> None:
    t = Template.parse("{{x}} {to} {text:.3}")
    assert t.names == {"to", "text"}
    assert t.render({"to": "+1", "text": "abcdef"}) == "{x} +1 abc"


def test_url_placeholders_are_percent_encoded() -> None:
    s = settings(url="https://api.example.com/{to}/send?m={text}", body="none", method="GET")
    req = build_request(s, values(s, sms("a b&c=d/é")))
    parts = urlsplit(req.url)
    assert parts.path == "/%2B447700900123/send"
    assert parse_qs(parts.query) == {"m": ["a b&c=d/é"]}


@pytest.mark.parametrize(
    "source", ["{text.__class__}", "{text[0]}", "{text!r}", "{0}", "{}", "{text", "}", "{a:{b}}"]
)
def test_only_plain_placeholders_parse(source: str) -> None:
    with pytest.raises(TemplateError):
        Template.parse(source)


def test_json_body_query_and_form_shapes() -> None:
    fields = {"to": "{to_digits}", "text": "{text}", "n": 1, "flag": True, "list": ["{parts}"]}
    s = settings(fields=fields)
    req = build_request(s, values(s, sms('x"y', parts=2)))
    assert req.data is not None and req.headers["Content-Type"].startswith("application/json")
    assert json.loads(req.data) == {
        "to": "447700900123",
        "text": 'x"y',
        "n": 1,
        "flag": True,
        "list": ["2"],
    }
    form = settings(body="form", fields={"to": "{to}", "flag": True, "tag": ["a", "b"]})
    req = build_request(form, values(form, sms()))
    assert req.data == b"to=%2B447700900123&flag=true&tag=a&tag=b"
    query = settings(method="GET", body="none", url=URL + "?v=1", fields={"to": "{to}"})
    req = build_request(query, values(query, sms()))
    assert req.data is None and req.url == URL + "?v=1&to=%2B447700900123"


def test_auth_headers() -> None:
    bearer = settings(auth="bearer", token="T0KEN")
    assert build_request(bearer, values(bearer, sms())).headers["Authorization"] == "Bearer T0KEN"
    basic = settings(auth="basic", username="ü", password="p:w")
    got = build_request(basic, values(basic, sms())).headers["Authorization"]
    assert got == "Basic w7w6cDp3"  # base64("ü:p:w" in UTF-8)


TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=300) | st.sampled_from(
    ['"', "\\", "\n", "{", "}", "{to}", "}}{{", "😀", "\u2028", '","x":"', "\x00"]
)


@given(TEXT)
def test_rendering_arbitrary_text_is_valid_json_or_the_documented_error(text: str) -> None:
    s = settings(
        fields={"text": "{text}", "nested": {"a": ["{text}:{to}", 3]}, "len": "{text:.5}"},
        headers={"X-Id": "{message_id}"},
    )
    try:
        req = build_request(s, values(s, sms(text)))
    except TemplateError:
        return
    assert req.data is not None
    data = json.loads(req.data)
    assert data["text"] == text and data["nested"]["a"][0] == f"{text}:+447700900123"


@given(st.text(max_size=200))
def test_form_and_header_rendering_raise_only_template_errors(text: str) -> None:
    s = settings(body="form", fields={"msg": "{text}"}, headers={"X-Ref": "{to}"})
    try:
        req = build_request(s, values(s, sms(text)))
    except TemplateError:
        return
    assert req.data is not None
    assert parse_qs(req.data.decode("ascii"), keep_blank_values=True)["msg"] == [text]


def test_a_lone_surrogate_is_a_template_error() -> None:
    s = settings(fields={"text": "{text}"})
    with pytest.raises(TemplateError):
        build_request(s, values(s, sms("a\udc80b")))


# --- reading answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "segments"),
    [
        ("messages.0.id", ("messages", "0", "id")),
        ("/messages/0/id", ("messages", "0", "id")),
        ("/a~1b/c~0d", ("a/b", "c~d")),
        ("messages.*.id", ("messages", "*", "id")),
    ],
)
def test_paths(path: str, segments: tuple[str, ...]) -> None:
    assert parse_path(path) == segments


@pytest.mark.parametrize("path", ["", "a..b", "a.", ".a", "/a/~2", "*.*"])
def test_malformed_paths(path: str) -> None:
    with pytest.raises(ValueError):
        parse_path(path)


def test_lookup() -> None:
    doc = {"messages": [{"id": "a"}, {"id": 7}, {}], "x": None}
    assert lookup(doc, ("messages", "1", "id")) == 7
    assert lookup(doc, ("messages", "*", "id")) == ["a", 7]
    assert lookup(doc, ("messages", "9", "id")) is lookup(doc, ("nope",))


def test_statuses() -> None:
    assert parse_statuses(["2xx"]) == frozenset(range(200, 300))
    assert parse_statuses([200, "201-202"]) == {200, 201, 202}
    for bad in ["20", "299-200", "700", "6xx"]:
        with pytest.raises(ValueError):
            parse_statuses([bad])


def json_api(**extra: Any) -> HttpCarrierSettings:
    return settings(
        id_path="messages.*.id",
        error_code_path="error.code",
        error_path="error.message",
        permanent_codes=[21],
        temporary_codes=["BUSY"],
        **extra,
    )


def test_ids_per_part_only_when_the_count_matches() -> None:
    s = json_api()
    body = json.dumps({"messages": [{"id": "a"}, {"id": "b"}]})
    assert outcome(s, 200, body, 2, "m1") == Submitted(("a", "b"))
    assert outcome(s, 200, body, 3, "m1") == Submitted(("a",), whole=True)
    assert outcome(s, 201, json.dumps({"messages": [{"id": 5}]}), 1, "m1") == Submitted(
        ("5",), whole=True
    )


def test_text_answers_and_no_id_expected() -> None:
    s = settings(body="form", id_regex=r"OK: (?P<id>\w+)")
    assert outcome(s, 200, "OK: abc\n", 1, "m1") == Submitted(("abc",), whole=True)
    plain = settings()
    assert outcome(plain, 200, "", 2, "m1") == Submitted((None,), whole=True)
    ours = settings(fields={"ref": "{message_id}"})
    assert outcome(ours, 200, "", 2, "m1") == Submitted(("m1",), whole=True)


def error(code: object, message: str = "words") -> str:
    return json.dumps({"error": {"code": code, "message": message}})


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (400, error(21), PermanentFailure, "21"),  # permanent_codes, numbers as text
        (400, error("BUSY"), TemporaryFailure, "BUSY"),  # temporary_codes beat the status
        (503, error(21), PermanentFailure, "21"),  # and permanent ones too
        (422, error("X"), PermanentFailure, "X"),
        (404, "not found", PermanentFailure, "404"),
        (429, "", TemporaryFailure, "429"),
        (500, "<html>", TemporaryFailure, "500"),
        (408, "", TemporaryFailure, "408"),
        (401, error("AUTH"), TemporaryFailure, "AUTH"),
        (403, "", TemporaryFailure, "403"),
        (302, "", TemporaryFailure, "302"),
        (200, error("X"), PermanentFailure, "X"),  # an error in a 2xx answer
        (200, "{}", TemporaryFailure, None),  # 2xx without id or error: taken or not?
        (200, "not json", TemporaryFailure, None),
    ],
)
def test_error_mapping(status: int, body: str, kind: type[Exception], code: str | None) -> None:
    with pytest.raises(kind) as caught:
        outcome(json_api(), status, body, 1, "m1")
    assert getattr(caught.value, "code", None) == code


def test_error_text_is_redacted() -> None:
    s = json_api(auth="bearer", token="s3cr3t/key", secrets={"sig": "0ther"}, fields={"s": "{sig}"})
    body = error("X", "bad key s3cr3t/key or s3cr3t%2Fkey, 0ther")
    with pytest.raises(PermanentFailure) as caught:
        outcome(s, 400, body, 1, "m1")
    assert str(caught.value) == "h: HTTP 400: bad key *** or ***, *** (code X)"
    assert redact("ab", ["ab"]) == "ab"  # too short to redact safely


def test_repr_hides_secrets() -> None:
    s = settings(
        auth="basic",
        username="user1",
        password="pw-123",
        secrets={"k": "v-123"},
        fields={"k": "{k}"},
    )
    assert not {"user1", "pw-123", "v-123"} & set(repr(s).replace("'", " ").split())
    assert "pw-123" not in repr(s) and "v-123" not in repr(s)


# --- config errors name the key -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        (
            {"fields": {"to": "{tu}"}},
            "carrier.0.fields: Value error, fields.to: unknown placeholder {tu}",
        ),
        ({"fields": {"a": {"b": ["{x}"]}}}, "fields.a.b.0: unknown placeholder {x}"),
        (
            {"headers": {"Authorization": "Bearer {token}"}},
            "headers.Authorization: uses {token} but token is not set",
        ),
        ({"headers": {"X-T": "{text}"}}, "headers.X-T: {text} cannot go in a header"),
        ({"headers": {"Bad Name": "x"}}, "carrier.0.headers"),
        ({"url": "https://x/{to"}, "carrier.0.url"),
        ({"url": "ftp://x/"}, "carrier.0.url"),
        ({"fields": {"t": "{text:d}"}}, "fields.t: {text:d}"),
        (
            {"fields": {"cb": "{callback_url}"}},
            "fields.cb: uses {callback_url} but public_url is not set",
        ),
        ({"method": "GET"}, "with method = 'GET', which sends no body"),
        ({"body": "form", "fields": {"a": {"b": "c"}}}, "fields.a: a form or query field"),
        ({"id_path": "a..b"}, "carrier.0.id_path"),
        ({"error_code_path": "/a/~x"}, "carrier.0.error_code_path"),
        ({"id_regex": "OK"}, "carrier.0.id_regex: Value error, needs one group"),
        ({"id_regex": "("}, "carrier.0.id_regex: Value error, not a regular expression"),
        ({"id_path": "a", "id_regex": "(a)"}, "id_path and id_regex"),
        ({"auth": "bearer"}, "auth = 'bearer' needs token"),
        ({"auth": "basic", "username": "u"}, "auth = 'basic' needs username and password"),
        ({"token": "t"}, "token is set but neither auth nor any template uses {token}"),
        ({"secrets": {"to": "x"}}, "carrier.0.secrets"),
        ({"password": "a\nb", "auth": "basic", "username": "u"}, "password contains a line break"),
        ({"success_statuses": ["2xx", "700"]}, "carrier.0.success_statuses"),
        ({"method": "DELETE"}, "carrier.0.method"),
        ({"bogus": 1}, "carrier.0.bogus: unknown key"),
    ],
)
def test_config_errors_name_the_key(keys: dict[str, Any], words: str) -> None:
    message = config_error(**keys)
    assert words in message
    assert "a\nb" not in message  # a secret's value is never echoed


def test_a_secrets_table_and_lower_case_method_load() -> None:
    s = settings(
        method="put",
        secrets={"api_key": "K"},
        headers={"X-Api-Key": "{api_key}"},
        success_statuses=[200, "202"],
        permanent_codes=[1, "2"],
    )
    assert s.method == "PUT" and s.success_statuses == {200, 202}
    assert s.permanent_codes == {"1", "2"}
    assert build_request(s, values(s, sms())).headers["X-Api-Key"] == "K"
