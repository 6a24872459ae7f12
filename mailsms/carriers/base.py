"""The carrier driver contract, and the registry that finds drivers by ``type``.

A driver connects mailsms to one way of sending SMS (an SMPP bind, an HTTP API, a file).
The contract, in the spirit of Kannel's ``smscconn_p.h``:

* ``start(hooks)`` MUST return once the driver can take submits, or raise; it MAY keep
  connecting in the background (an SMPP bind) and report that through ``health()``.
* ``submit(sms)`` MUST NOT block the event loop. It MUST either return a :class:`Submitted`
  with one carrier id per part (``None`` where the carrier gives none), or raise
  :class:`~mailsms.errors.TemporaryFailure` (the dispatcher retries with backoff) or
  :class:`~mailsms.errors.PermanentFailure` (the message fails and bounces). Any other
  exception is treated as temporary and logged as a driver bug.
* ``submit`` SHOULD be idempotent per ``sms.message_id`` where the carrier supports it: a
  message whose lease expired in a crash is submitted again.
* Inbound SMS and delivery reports MUST be handed to ``hooks.inbound`` and
  ``hooks.delivery_report``; the driver acknowledges them to the carrier only after the
  awaited hook returns, because that is when the store has committed them.
* A driver that receives the parts of a long SMS one by one and must acknowledge each
  before the next arrives (SMPP) MUST hand each part to ``hooks.inbound_part`` and
  acknowledge it only after the hook returns: the part is then committed, and the part that
  completes its set has become one inbound SMS. If the hook raises, the part is not stored:
  the driver MUST answer so that the carrier sends it again (SMPP ``ESME_RX_T_APPN``). The
  driver MUST NOT keep parts itself. A ``ValueError`` means the part can never be stored
  (numbered outside its set): answer with a permanent error.
* ``stop()`` MUST release every connection and task; submits in flight SHOULD finish.

Drivers register in the ``mailsms.carriers`` entry-point group (``name = "module:Class"``),
so a third party adds one by installing a package. Each driver class names its settings
model in ``Settings`` (a pydantic model with ``extra="forbid"``) so config errors name the key.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from mailsms.errors import ConfigError
from mailsms.model import PartSpec
from mailsms.sms.reassemble import Fragment


class CarrierSettings(BaseModel):
    """The keys every ``[[carrier]]`` entry shares; drivers subclass it for their own."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    type: str
    from_: str | None = Field(default=None, alias="from")
    max_rate: float = Field(default=0, ge=0, description="submits per second; 0 = unlimited")
    concurrency: int = Field(default=4, ge=1)
    prefixes: tuple[str, ...] = ()
    webhook_token: str | None = None


@dataclass(frozen=True, slots=True)
class OutboundSms:
    """One message to submit, already encoded into parts by :mod:`mailsms.sms.encode`."""

    message_id: str
    to: str
    source_addr: str | None
    text: str
    encoding: str
    parts: tuple[PartSpec, ...]
    expires_at: float
    attempt: int = 1
    shift_table: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    """The carrier took the message: one carrier id per part, in part order.

    ``delivered`` is for drivers that are the end of the line (console, file): the message
    is final on submit and no delivery report will follow.
    """

    carrier_ids: tuple[str | None, ...]
    delivered: bool = False
    whole: bool = False  # one id covers every part (HTTP APIs that segment themselves)


class ReportStatus(enum.StrEnum):
    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """A delivery report for one part, identified by the carrier's id for it."""

    carrier: str
    carrier_id: str
    status: ReportStatus
    error_code: str | None = None
    error_text: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundSms:
    """An SMS from a phone, reassembled, as a driver hands it to the gateway."""

    carrier: str
    carrier_id: str
    from_: str
    to: str
    text: str
    received_at: float | None = None
    segments: int = 1
    incomplete: bool = False
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebhookCall:
    """One HTTP call of a carrier to ``/webhooks/{name}/inbound`` or ``/status``.

    ``url`` is the URL of the request as received; a driver with a ``public_url`` setting
    joins it with ``path_qs`` to get the URL the carrier called and signed (behind a proxy
    they differ). ``form`` holds the form's or the JSON object's top-level fields as strings
    (nested JSON as JSON text); ``params`` the query string's fields updated with ``form``;
    ``json`` is the parsed JSON body (nested objects kept), else None.
    """

    method: str
    url: str
    path_qs: str
    headers: Mapping[str, str]
    body: bytes
    params: Mapping[str, str]
    form: Mapping[str, str]
    json: Any = None


class WebhookRefused(Exception):
    """A webhook call that is refused: ``status`` 400 (malformed), 401/403 (not from the
    carrier). The message is sent back in the JSON error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class WebhookReply:
    """The 2xx a carrier expects once its call is handled (Twilio: empty TwiML)."""

    body: bytes = b'{"ok": true}'
    content_type: str = "application/json"
    status: int = 200


class CarrierWebhooks(Protocol):
    """A carrier's own webhook shape (Twilio's, Vonage's, Telnyx's...). A driver without
    one gets the generic shape (DESIGN.md). Every method may raise :class:`WebhookRefused`;
    ``verify`` runs before anything is read or stored.

    ``inbound`` returns the SMS, or one part of a long one (a :class:`Fragment`, for APIs
    that deliver parts one by one), or None for a call that carries nothing to store (an
    event type the gateway does not use): it is acknowledged all the same. ``status``
    returns the report, or None likewise.
    """

    methods: tuple[str, ...]  # HTTP methods the carrier uses, e.g. ("POST",) or ("GET", "POST")

    def verify(self, call: WebhookCall) -> None: ...

    def inbound(self, call: WebhookCall) -> InboundSms | Fragment | None: ...

    def status(self, call: WebhookCall) -> DeliveryReport | None: ...

    def reply(self, kind: str) -> WebhookReply: ...


class CarrierHooks(Protocol):
    """What the gateway offers a driver. Each call returns after the store commit."""

    async def inbound(self, sms: InboundSms) -> None: ...

    async def inbound_part(self, fragment: Fragment) -> None:
        """One part of a multi-part SMS; see the contract in the module docstring."""
        ...

    async def delivery_report(self, report: DeliveryReport) -> None: ...


@dataclass(frozen=True, slots=True)
class CarrierHealth:
    ok: bool
    detail: str = ""


class Carrier(abc.ABC):
    """Base class of every driver; see the module docstring for the contract."""

    Settings: ClassVar[type[CarrierSettings]] = CarrierSettings

    def __init__(self, settings: CarrierSettings) -> None:
        self.settings = settings
        self.name = settings.name

    @abc.abstractmethod
    async def start(self, hooks: CarrierHooks) -> None:
        """Connect and get ready to submit."""

    @abc.abstractmethod
    async def submit(self, sms: OutboundSms) -> Submitted:
        """Hand one message to the carrier; see the contract above."""

    async def stop(self) -> None:
        """Release connections and tasks. The default has nothing to release."""
        return None

    def health(self) -> CarrierHealth:
        """Whether the driver can submit now, with a reason when it cannot."""
        return CarrierHealth(ok=True)

    def webhooks(self) -> CarrierWebhooks | None:
        """The carrier's own webhook shape; None (the default) for the generic one."""
        return None


def carrier_types() -> dict[str, type[Carrier]]:
    """Every driver installed in the ``mailsms.carriers`` entry-point group, by type name."""
    found: dict[str, type[Carrier]] = {}
    for ep in entry_points(group="mailsms.carriers"):
        cls = ep.load()
        if isinstance(cls, type) and issubclass(cls, Carrier):
            found[ep.name] = cls
    return found


def carrier_class(type_name: str) -> type[Carrier]:
    """The driver class for ``type``, or a :class:`ConfigError` listing the known types."""
    types = carrier_types()
    try:
        return types[type_name]
    except KeyError:
        known = ", ".join(sorted(types))
        raise ConfigError(f"unknown carrier type {type_name!r} (known: {known})") from None
