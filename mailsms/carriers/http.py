"""A carrier described in config instead of Python: ``type = "http"``.

In the spirit of Kannel's generic HTTP SMSC (``smsc = http``, ``system-type = generic``):
most small SMS APIs take one HTTP request per message and answer with an id or an error, so
the operator writes the request as templates (``url``, ``headers``, ``fields``) and says where
the answer keeps the id (``id_path`` / ``id_regex``) and the error (``error_path``,
``error_code_path``, ``error_regex``). docs/carriers/http.md lists every key.

Templates are ``str.format`` syntax restricted to plain ``{name}`` placeholders (a format
spec such as ``{text:.160}`` is allowed; attribute or index access and ``!r`` are not), and
they are rendered by this module's own loop over ``string.Formatter.parse``, never by
``format_map`` on a live object, so a template cannot reach anything but the string values
offered. The JSON body is built as data (a dict of rendered strings) and serialised by
``json.dumps``, so no message text can break out of its string. URL placeholders are
percent-encoded; header values may not contain line breaks. Every template is rendered with
a sample message when the config is loaded, so a mistake shows in ``mailsms check-config``
naming the key, not at the first submit.

Outcome of a submit:

* an HTTP status in ``success_statuses`` with an id found: submitted. One id covers the
  whole message (``Submitted.whole``: the API segments itself), except when ``id_path``
  finds a list (``message_ids`` or ``messages.*.id``) whose length equals our part count:
  then the ids are per part, in order. A list of another length keeps its first id, whole.
* a success status without an id, where the body has an error (``error_*``): a failure
  classified like an error status; without an error either: temporary (we cannot tell
  whether the API took it; send an idempotency key such as ``{message_id}`` if it has one).
  With neither ``id_path`` nor ``id_regex`` configured no id is expected: the carrier id is
  our ``message_id`` when a template sends it (the API's callbacks then name it), else none.
* a failure: the carrier's code in ``temporary_codes`` / ``permanent_codes`` decides;
  otherwise the HTTP status: 408, 429, 5xx, 3xx, 401 and 403 (the operator fixes the
  credentials), timeouts and connection errors are temporary; other 4xx and an error in a
  success answer are permanent. A template that cannot render for this message (a header
  made from text with a line break, text that is not valid Unicode) is permanent; a missing
  sender is temporary (the operator sets ``from``).

Secrets (``token``, ``username``, ``password`` and the ``secrets`` table) are ``repr=False``,
can be set from the environment (``MAILSMS_CARRIER__NAME__TOKEN``), and are replaced by
``***`` in every error text this module builds, since APIs echo requests in their errors.

Webhooks: the generic shape (mailsms/web/webhooks.py) with ``webhook_token``; the operator
points the API's callbacks at ``/webhooks/{name}/inbound`` and ``/webhooks/{name}/status``.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from pydantic import Field, ValidationInfo, field_validator, model_validator

from mailsms.carriers.base import (
    CarrierSettings,
    OutboundSms,
    Submitted,
)
from mailsms.carriers.http_api import HttpApiCarrier
from mailsms.duration import Duration
from mailsms.errors import CarrierError, PermanentFailure, TemporaryFailure

log = logging.getLogger(__name__)

# What a template may name about the message (see values()).
MESSAGE_PLACEHOLDERS = (
    "to",
    "to_digits",
    "from",
    "from_digits",
    "text",
    "message_id",
    "encoding",
    "parts",
    "callback_url",
)
SECRET_KEYS = ("token", "username", "password")


class TemplateError(ValueError):
    """A template that is malformed, names an unknown placeholder, or cannot be rendered
    for one message. The only error rendering raises."""


# --- templates ------------------------------------------------------------------------------

_FORMATTER = string.Formatter()


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text and ``(name, format_spec)`` placeholders in turn."""

    pieces: tuple[tuple[str, str | None, str], ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        try:
            parsed = list(_FORMATTER.parse(source))
        except ValueError as exc:  # "{" without "}", a lone "}"
            raise TemplateError(f"{exc} (write {{{{ and }}}} for literal braces)") from None
        pieces = []
        for literal, name, spec, conversion in parsed:
            if name is not None:
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                    raise TemplateError(f"{{{name}}}: only plain {{name}} placeholders")
                if conversion:
                    raise TemplateError(f"{{{name}!{conversion}}}: conversions are not allowed")
                if spec and ("{" in spec or "}" in spec):
                    raise TemplateError(f"{{{name}:{spec}}}: nested placeholders")
            pieces.append((literal, name, spec or ""))
        return cls(tuple(pieces))

    @property
    def names(self) -> frozenset[str]:
        return frozenset(name for _, name, _ in self.pieces if name is not None)

    def render(self, values: Mapping[str, str], escape: bool = False) -> str:
        """The text, each placeholder formatted (and percent-encoded when ``escape``)."""
        out = []
        for literal, name, spec in self.pieces:
            out.append(literal)
            if name is None:
                continue
            if name not in values:
                raise TemplateError(f"unknown placeholder {{{name}}}")
            try:
                value = format(values[name], spec)
            except ValueError as exc:
                raise TemplateError(f"{{{name}:{spec}}}: {exc}") from None
            out.append(quote(value, safe="") if escape else value)
        return "".join(out)


@functools.lru_cache(maxsize=512)
def _parsed(source: str) -> Template:
    """Templates are parsed once: a submit renders the same few sources every time."""
    return Template.parse(source)


def _walk(value: object, key: str) -> Iterable[tuple[str, str]]:
    """Every template string inside a ``fields`` value, with its dotted key."""
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _walk(v, f"{key}.{i}")


def render_data(value: Any, values: Mapping[str, str]) -> Any:
    """``fields`` as data with every string rendered; numbers and booleans stay as they are."""
    if isinstance(value, str):
        return _parsed(value).render(values)
    if isinstance(value, Mapping):
        return {str(k): render_data(v, values) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_data(v, values) for v in value]
    return value


def render_json(fields: Mapping[str, Any], values: Mapping[str, str]) -> bytes:
    """The JSON body: built as data, serialised by json (never by concatenating text)."""
    data = render_data(fields, values)
    try:
        return json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate in the text: not sendable as UTF-8
        raise TemplateError("the message is not valid Unicode") from None


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_pairs(fields: Mapping[str, Any], values: Mapping[str, str]) -> list[tuple[str, str]]:
    """Form or query fields as pairs; an array repeats its key (``to=a&to=b``)."""
    pairs = []
    for key, value in render_data(fields, values).items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((key, _scalar(item)))
    return pairs


def render_form(fields: Mapping[str, Any], values: Mapping[str, str]) -> bytes:
    try:
        return urlencode(render_pairs(fields, values)).encode("ascii")
    except UnicodeEncodeError:
        raise TemplateError("the message is not valid Unicode") from None


def render_header(template: str, values: Mapping[str, str]) -> str:
    rendered = _parsed(template).render(values)
    if any(c in rendered for c in "\r\n\0"):
        raise TemplateError("renders a line break, which a header cannot hold")
    return rendered


# --- where the answer keeps the id and the error -----------------------------------------


def parse_path(path: str) -> tuple[str, ...]:
    """``messages.0.id`` or the JSON pointer ``/messages/0/id`` as segments; ``*`` maps over
    a list (``messages.*.id``). Raises ValueError naming what is malformed."""
    if path.startswith("/"):
        segments = []
        for raw in path[1:].split("/"):
            if re.search(r"~(?![01])", raw):
                raise ValueError(f"{path!r}: '~' must be '~0' or '~1' in a JSON pointer")
            segments.append(raw.replace("~1", "/").replace("~0", "~"))
        found = tuple(segments)
    else:
        found = tuple(path.split("."))
        if not path or "" in found:
            raise ValueError(f"{path!r}: an empty segment (write a.b.0 or /a/b/0)")
    if found.count("*") > 1:
        raise ValueError(f"{path!r}: at most one '*'")
    return found


_MISSING = object()


def lookup(doc: object, segments: tuple[str, ...]) -> object:
    """The value at ``segments`` in parsed JSON, or ``_MISSING``."""
    for i, seg in enumerate(segments):
        if seg == "*":
            if not isinstance(doc, list):
                return _MISSING
            found = [lookup(item, segments[i + 1 :]) for item in doc]
            return [v for v in found if v is not _MISSING]
        if isinstance(doc, dict):
            doc = doc.get(seg, _MISSING)
        elif isinstance(doc, list) and seg.isdigit() and int(seg) < len(doc):
            doc = doc[int(seg)]
        else:
            return _MISSING
        if doc is _MISSING:
            return _MISSING
    return doc


def _scalar_text(value: object) -> str | None:
    """A non-empty string or number as text; anything else (null, bool, object) is none."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float | str):
        return str(value) or None
    return None


def parse_statuses(values: Iterable[int | str]) -> frozenset[int]:
    """``[200, "201-204", "2xx"]`` as a set of HTTP statuses."""
    out: set[int] = set()
    for value in values:
        text = str(value).strip().lower()
        if m := re.fullmatch(r"([1-5])xx", text):
            low, high = int(m.group(1)) * 100, int(m.group(1)) * 100 + 99
        elif m := re.fullmatch(r"(\d{3})\s*-\s*(\d{3})", text):
            low, high = int(m.group(1)), int(m.group(2))
        elif re.fullmatch(r"\d{3}", text):
            low = high = int(text)
        else:
            raise ValueError(f"{value!r}: expected a status (200), a range ('200-299') or '2xx'")
        if not 100 <= low <= high <= 599:
            raise ValueError(f"{value!r}: statuses run from 100 to 599, low to high")
        out.update(range(low, high + 1))
    return frozenset(out)


# --- settings -------------------------------------------------------------------------------

SAMPLE: dict[str, str] = {
    "to": "+15005550006",
    "to_digits": "15005550006",
    "from": "+15005550001",
    "from_digits": "15005550001",
    "text": 'Sample "text" with {braces}, a \\ backslash,\na new line and ✓ 😀',
    "message_id": "0123456789abcdef",
    "encoding": "ucs2",
    "parts": "2",
    "callback_url": "",
}


class HttpCarrierSettings(CarrierSettings):
    """The keys of ``type = "http"``; docs/carriers/http.md explains each with examples.

    Field order matters: the template validators read the secrets and ``public_url``
    validated before them to know which placeholders exist.
    """

    token: str | None = Field(default=None, repr=False)
    username: str | None = Field(default=None, repr=False)
    password: str | None = Field(default=None, repr=False)
    secrets: dict[str, str] = Field(default_factory=dict, repr=False)
    auth: Literal["none", "basic", "bearer"] = "none"
    public_url: str | None = None
    method: Literal["POST", "GET", "PUT"] = "POST"
    body: Literal["json", "form", "none"] = "json"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    fields: dict[str, Any] = Field(default_factory=dict)
    timeout: Duration = Field(default=30.0, gt=0)
    success_statuses: frozenset[int] = Field(default=frozenset(range(200, 300)), repr=False)
    id_path: str | None = None
    id_regex: str | None = None
    error_path: str | None = None
    error_code_path: str | None = None
    error_regex: str | None = None
    permanent_codes: frozenset[str] = frozenset()
    temporary_codes: frozenset[str] = frozenset()

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("secrets")
    @classmethod
    def _secret_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, secret in value.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"{name!r}: a secret's name must be a placeholder name")
            if name in MESSAGE_PLACEHOLDERS or name in SECRET_KEYS:
                raise ValueError(f"{name!r} is already a placeholder; choose another name")
            _no_line_breaks(name, secret)
        return value

    @field_validator("token", "username", "password")
    @classmethod
    def _one_line(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            _no_line_breaks(str(info.field_name), value)
        return value

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None:
            _http_url(value)
            return value.rstrip("/")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str, info: ValidationInfo) -> str:
        template = _checked("url", value, info.data)
        _http_url(template.render(_sample(info.data), escape=True))
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        for name, source in value.items():
            if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
                raise ValueError(f"{name!r} is not a header name")
            key = f"headers.{name}"
            if "text" in _checked(key, source, info.data).names:
                raise ValueError(f"{key}: {{text}} cannot go in a header (line breaks)")
            try:
                render_header(source, _sample(info.data))
            except TemplateError as exc:
                raise ValueError(f"{key}: {exc}") from None
        return value

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        flat = info.data.get("body") in ("form", "none")
        for key, item in value.items():
            if flat and not _flat(item):
                raise ValueError(
                    f"fields.{key}: a form or query field is a string, number, boolean or an "
                    "array of them (nested tables need body = 'json')"
                )
        for key, source in _walk(value, "fields"):
            _checked(key, source, info.data)
        sample = _sample(info.data)
        for key, item in value.items():
            try:  # also proves every value is JSON data
                json.loads(render_json({key: item}, sample))
            except (TypeError, ValueError) as exc:
                raise ValueError(f"fields.{key}: {exc}") from None
        return value

    @field_validator("success_statuses", mode="before")
    @classmethod
    def _statuses(cls, value: object) -> object:
        if isinstance(value, int | str):
            value = [value]
        if isinstance(value, list | tuple | set | frozenset):
            return parse_statuses(value)
        return value

    @field_validator("permanent_codes", "temporary_codes", mode="before")
    @classmethod
    def _codes(cls, value: object) -> object:
        """TOML gives numbers for numeric codes; the body may too: compare as text."""
        if isinstance(value, list | tuple):
            return frozenset(_scalar(v) for v in value)
        return value

    @field_validator("id_path", "error_path", "error_code_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        if value is not None:
            parse_path(value)
        return value

    @field_validator("id_regex", "error_regex")
    @classmethod
    def _regex(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if info.field_name == "id_regex" and pattern.groups != 1 and "id" not in pattern.groupindex:
            raise ValueError("needs one group, or a group named 'id', around the id")
        return value

    @model_validator(mode="after")
    def _together(self) -> HttpCarrierSettings:
        """Rules across keys; each message names the keys it is about."""
        if self.method == "GET" and self.body != "none":
            raise ValueError(
                f"body = {self.body!r} with method = 'GET', which sends no body: set "
                "body = 'none' (the fields then go into the query string)"
            )
        if self.id_path and self.id_regex:
            raise ValueError("id_path and id_regex: set one (JSON answer or text answer)")
        if self.auth == "basic" and not (self.username and self.password is not None):
            raise ValueError("auth = 'basic' needs username and password")
        if self.auth == "basic" and ":" in (self.username or ""):
            raise ValueError("username: a ':' cannot go in Basic auth (RFC 7617)")
        if self.auth == "bearer" and not self.token:
            raise ValueError("auth = 'bearer' needs token")
        if self.auth != "none" and "authorization" in {h.lower() for h in self.headers}:
            raise ValueError(f"auth = {self.auth!r} and headers.Authorization: set one")
        used = self.placeholders()
        by_auth = {"bearer": {"token"}, "basic": {"username", "password"}}.get(self.auth, set())
        given = [k for k in SECRET_KEYS if getattr(self, k) is not None] + list(self.secrets)
        for key in given:
            if key not in used and key not in by_auth:
                raise ValueError(f"{key} is set but neither auth nor any template uses {{{key}}}")
        return self

    def placeholders(self) -> frozenset[str]:
        """Every placeholder the url, headers and fields name."""
        sources = [self.url, *self.headers.values(), *(s for _, s in _walk(self.fields, ""))]
        return frozenset().union(*(_parsed(s).names for s in sources))

    def secret_values(self) -> tuple[str, ...]:
        values = (self.token, self.username, self.password, *self.secrets.values())
        return tuple(v for v in values if v)


def _no_line_breaks(name: str, value: str) -> None:
    if any(c in value for c in "\r\n\0"):
        raise ValueError(f"{name} contains a line break")  # the value is never echoed


def _http_url(value: str) -> None:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL")


def _flat(value: object) -> bool:
    if isinstance(value, list | tuple):
        return all(isinstance(v, str | int | float | bool) for v in value)
    return isinstance(value, str | int | float | bool)


def _available(data: Mapping[str, Any]) -> set[str]:
    names = set(MESSAGE_PLACEHOLDERS)
    names.update(k for k in SECRET_KEYS if data.get(k) is not None)
    names.update(data.get("secrets") or {})
    return names


def _checked(key: str, source: str, data: Mapping[str, Any]) -> Template:
    """The parsed template, or a ValueError naming the key and what is wrong."""
    try:
        template = Template.parse(source)
    except TemplateError as exc:
        raise ValueError(f"{key}: {exc}") from None
    available = _available(data)
    for name in sorted(template.names - available):
        if name in SECRET_KEYS:
            raise ValueError(f"{key}: uses {{{name}}} but {name} is not set")
        known = ", ".join(sorted(available))
        raise ValueError(f"{key}: unknown placeholder {{{name}}} (known: {known})")
    if "callback_url" in template.names and not data.get("public_url"):
        raise ValueError(f"{key}: uses {{callback_url}} but public_url is not set")
    return template


def _sample(data: Mapping[str, Any]) -> dict[str, str]:
    """Values for rendering at config time: a hostile sample text, secrets as stand-ins
    (real secrets never reach an error message)."""
    values = dict(SAMPLE)
    if data.get("public_url"):
        values["callback_url"] = f"{data['public_url']}/webhooks/{data.get('name')}/status"
    values.update({k: "secret" for k in SECRET_KEYS if data.get(k) is not None})
    values.update({k: "secret" for k in data.get("secrets") or {}})
    return values


# --- the request and the answer -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    data: bytes | None


def build_request(settings: HttpCarrierSettings, values: Mapping[str, str]) -> Request:
    """The HTTP request for one message; raises TemplateError only."""
    url = _parsed(settings.url).render(values, escape=True)
    headers = {k: render_header(v, values) for k, v in settings.headers.items()}
    data: bytes | None = None
    if settings.body == "json":
        data = render_json(settings.fields, values)
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
    elif settings.body == "form":
        data = render_form(settings.fields, values)
        headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    elif settings.fields:
        try:
            query = urlencode(render_pairs(settings.fields, values))
        except UnicodeEncodeError:
            raise TemplateError("the message is not valid Unicode") from None
        url = f"{url}{'&' if urlsplit(url).query else '?'}{query}"
    if settings.auth == "bearer":
        headers["Authorization"] = f"Bearer {settings.token}"
    elif settings.auth == "basic":  # RFC 7617, credentials in UTF-8
        pair = f"{settings.username}:{settings.password}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    return Request(settings.method, url, headers, data)


def _digits(number: str) -> str:
    return number[1:] if number.startswith("+") else number


def values(settings: HttpCarrierSettings, sms: OutboundSms) -> dict[str, str]:
    """What the templates may name for ``sms`` (MESSAGE_PLACEHOLDERS and the secrets)."""
    sender = sms.source_addr or ""
    callback = (
        f"{settings.public_url}/webhooks/{settings.name}/status" if settings.public_url else ""
    )
    out = {
        "to": sms.to,
        "to_digits": _digits(sms.to),
        "from": sender,
        "from_digits": _digits(sender),
        "text": sms.text,
        "message_id": sms.message_id,
        "encoding": sms.encoding,
        "parts": str(len(sms.parts)),
        "callback_url": callback,
    }
    out.update({k: v for k in SECRET_KEYS if (v := getattr(settings, k)) is not None})
    out.update(settings.secrets)
    return out


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (as is and percent-encoded) replaced by ``***``."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
    return text


def _json(body: str) -> object:
    try:
        return json.loads(body)
    except ValueError:
        return _MISSING


def _first_line(body: str) -> str:
    return " ".join(body.split())[:200]


def read_error(settings: HttpCarrierSettings, body: str) -> tuple[str | None, str | None]:
    """The carrier's error code and text in an answer, where the settings say they are."""
    doc = _json(body)
    code = text = None
    if settings.error_code_path and doc is not _MISSING:
        code = _scalar_text(lookup(doc, parse_path(settings.error_code_path)))
    if settings.error_path and doc is not _MISSING:
        text = _scalar_text(lookup(doc, parse_path(settings.error_path)))
    if settings.error_regex and (m := re.search(settings.error_regex, body)):
        groups = m.groupdict()
        code = code or groups.get("code")
        text = text or groups.get("text") or m.group(0)
    return code, text


def read_ids(settings: HttpCarrierSettings, body: str) -> list[str] | None:
    """The ids in a success answer: a list (per part when the count fits), or None."""
    if settings.id_regex:
        m = re.search(settings.id_regex, body)
        if not m:
            return None
        found = m.group("id") if "id" in m.re.groupindex else m.group(1)
        return [found] if found else None
    assert settings.id_path is not None
    value = lookup(_json(body), parse_path(settings.id_path))
    if isinstance(value, list):
        ids = [t for v in value if (t := _scalar_text(v))]
        return ids or None
    one = _scalar_text(value)
    return [one] if one else None


def outcome(
    settings: HttpCarrierSettings, status: int, body: str, parts: int, message_id: str
) -> Submitted:
    """What an answer means: the ids (module docstring), or the failure to raise."""
    if status in settings.success_statuses:
        if not (settings.id_path or settings.id_regex):
            ours = "message_id" in settings.placeholders()
            return Submitted((message_id if ours else None,), whole=True)
        ids = read_ids(settings, body)
        if ids:
            if len(ids) > 1 and len(ids) == parts:
                return Submitted(tuple(ids))
            if len(ids) > 1:
                log.warning(
                    "the API answered %d ids for %d parts: the first stands for the whole message",
                    len(ids),
                    parts,
                    extra={"event": "parts_differ", "id": message_id, "carrier": settings.name},
                )
            return Submitted((ids[0],), whole=True)
    code, text = read_error(settings, body)
    raise failure(settings, status, code, text, body)


def failure(
    settings: HttpCarrierSettings, status: int, code: str | None, text: str | None, body: str
) -> CarrierError:
    """Temporary or permanent: the operator's code lists first, then the HTTP status."""
    success = status in settings.success_statuses
    if success and code is None and text is None:
        where = settings.id_path or settings.id_regex
        return TemporaryFailure(f"{settings.name}: HTTP {status} without an id ({where})")
    words = redact(text or _first_line(body) or "no error detail", settings.secret_values())
    message = f"{settings.name}: HTTP {status}: {words[:200]}"
    tag = code or str(status)
    if code is not None and code in settings.temporary_codes:
        return TemporaryFailure(message, tag)
    if code is not None and code in settings.permanent_codes:
        return PermanentFailure(message, tag)
    if success:
        return PermanentFailure(message, tag)  # the API refused it in a 2xx answer
    if status in (401, 403, 408, 429) or status >= 500 or status < 400:
        return TemporaryFailure(message, tag)
    return PermanentFailure(message, tag)


# --- the driver -----------------------------------------------------------------------------


class HttpCarrier(HttpApiCarrier):
    Settings = HttpCarrierSettings

    def __init__(self, settings: CarrierSettings) -> None:
        super().__init__(settings)
        assert isinstance(settings, HttpCarrierSettings)
        self.http_settings = settings
        self._needs_sender = bool({"from", "from_digits"} & settings.placeholders())

    async def submit(self, sms: OutboundSms) -> Submitted:
        s = self.http_settings
        http = self.session()
        if self._needs_sender and not sms.source_addr:
            raise TemporaryFailure(f"{self.name}: the templates use {{from}}: set `from`")
        try:
            req = build_request(s, values(s, sms))
        except TemplateError as exc:
            raise PermanentFailure(f"{self.name}: cannot build the request: {exc}") from None
        try:
            async with http.request(
                req.method, req.url, headers=req.headers, data=req.data
            ) as resp:
                status = resp.status
                body = (await resp.read()).decode(resp.charset or "utf-8", errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            # aiohttp's texts can hold the URL, and the URL can hold a key: say the kind only.
            raise TemporaryFailure(f"{self.name}: {_kind(exc)}") from None
        result = outcome(s, status, body, len(sms.parts), sms.message_id)
        return result


def _kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({type(exc).__name__})"
    return type(exc).__name__
