"""Typed, frozen configuration: TOML file, ``MAILSMS_SECTION__KEY`` overrides, embedded defaults.

Every component gets its own frozen settings object from :class:`Settings`. Loading never
reads the environment at import time: :func:`load` takes the environment as an argument, so
tests and ``check-config`` see exactly what ``serve`` would. An unknown key or a bad value
raises :class:`~mailsms.errors.ConfigError` naming the key, the file and, where it can be
found, the line.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import phonenumbers
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from mailsms.carriers.base import CarrierSettings, carrier_class
from mailsms.duration import Duration
from mailsms.errors import ConfigError

ENV_PREFIX = "MAILSMS_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_listen(value: object) -> str:
    """``host:port``, ``[v6]:port`` or ``unix:/path``; checked here so serve never half-starts."""
    if not isinstance(value, str):
        raise ValueError("expected a string 'host:port' or 'unix:/path'")
    if value.startswith("unix:"):
        if len(value) <= len("unix:"):
            raise ValueError("unix: needs a socket path")
        return value
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (e.g. 127.0.0.1:2525) or unix:/path")
    return value


Listen = Annotated[str, BeforeValidator(_check_listen)]


def split_listen(value: str) -> tuple[str, int]:
    """``host:port`` -> (host, port), stripping IPv6 brackets."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


class GatewaySettings(_Section):
    domain: str = "sms.localhost"
    domains: tuple[str, ...] = ()
    default_region: str = "US"
    hostname: str | None = None

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        if v.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{v!r} is not a region code phonenumbers knows (e.g. US, GB, DE)")
        return v.upper()

    @property
    def all_domains(self) -> frozenset[str]:
        """Every domain we answer for, lower-cased: ``domain`` plus ``domains``."""
        return frozenset(d.lower().rstrip(".") for d in (self.domain, *self.domains) if d)


class SmtpSettings(_Section):
    listen: Listen | None = "127.0.0.1:2525"
    lmtp_listen: Listen | None = None
    lmtp_socket_mode: str | None = None  # e.g. "0660", for lmtp_listen = "unix:..."
    lmtp_socket_group: str | None = None  # e.g. "postfix"
    max_message_size: int = Field(default=10 * 1024 * 1024, ge=1024)
    max_recipients: int = Field(default=50, ge=1)
    timeout: Duration = 300.0
    parse_workers: int = Field(default=1, ge=0, le=64)  # 0: parse mail on the event loop

    @field_validator("lmtp_socket_mode")
    @classmethod
    def _mode(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"0?[0-7]{3}", v):
            raise ValueError(f"{v!r} is not an octal file mode such as '0660'")
        return v

    @field_validator("lmtp_socket_group")
    @classmethod
    def _group(cls, v: str | None) -> str | None:
        import grp

        if v is not None:
            try:
                grp.getgrnam(v)
            except KeyError:
                raise ValueError(f"no group named {v!r} on this system") from None
        return v


class HttpSettings(_Section):
    listen: Listen | None = "127.0.0.1:8025"
    api_token: str | None = None


class StoreSettings(_Section):
    url: str = "sqlite:///var/mailsms.db"
    retention: Duration = (
        90 * 86400.0
    )  # finished messages, mail and SMS kept this long; 0 = forever

    @field_validator("url")
    @classmethod
    def _scheme(cls, v: str) -> str:
        if not re.match(r"^(sqlite:///|postgres(ql)?://)", v):
            raise ValueError("expected sqlite:///path or postgresql://user@host/db")
        return v


class DispatchSettings(_Section):
    max_attempts: int = Field(default=12, ge=1)
    max_age: Duration = 2 * 86400.0
    backoff_initial: Duration = 10.0
    backoff_max: Duration = 3600.0
    lease: Duration = 120.0
    poll_interval: Duration = 1.0
    shutdown_grace: Duration = 10.0


class PolicySettings(_Section):
    allowed_senders: tuple[str, ...] | None = None
    allowed_networks: tuple[str, ...] | None = None
    max_segments: int = Field(default=6, ge=1, le=255)
    on_too_long: Literal["reject", "truncate", "split"] = "reject"
    allowed_regions: tuple[str, ...] = ()
    block_premium_rate: bool = True
    block_short_codes: bool = True
    sender_rate_limit: int = Field(default=0, ge=0, description="recipients per sender per hour")
    # A sender let in by allowed_senders (not by its client's network) must also be vouched
    # for by this MTA's Authentication-Results header (docs/mail-to-sms.md).
    authserv_id: str | None = None

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, v: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for net in v or ():
            ipaddress.ip_network(net, strict=False)
        return v

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """Clients trusted whatever their sender: loopback only when nothing is configured."""
        if self.allowed_networks is not None:
            nets = self.allowed_networks
        else:
            nets = ("127.0.0.0/8", "::1/128") if self.allowed_senders is None else ()
        return tuple(ipaddress.ip_network(n, strict=False) for n in nets)


class SmsSettings(_Section):
    transliterate: bool = True
    shift_tables: tuple[str, ...] = ()
    reference_bits: Literal[8, 16] = 8
    subject: Literal["auto", "ignore", "prepend", "only"] = "auto"
    truncate_marker: str = "..."


class BodySettings(_Section):
    """How a mail body becomes SMS text (docs/mail-to-sms.md)."""

    note_attachments: bool = True
    strip_quotes: bool = True
    strip_signatures: bool = True
    signature_patterns: tuple[str, ...] = ()
    cutoff_markers: tuple[str, ...] = ("--end--",)

    @field_validator("signature_patterns")
    @classmethod
    def _patterns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in v:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return v


class RelaySettings(_Section):
    """Where mail that mailsms writes (SMS turned into mail, bounces) goes, and how."""

    smarthost: Listen = "127.0.0.1:25"
    starttls: bool = False
    tls: bool = False
    validate_certs: bool = True
    username: str | None = None
    password: str | None = None
    helo: str | None = None
    timeout: Duration = 60.0
    max_attempts: int = Field(default=30, ge=1)
    max_age: Duration = 5 * 86400.0
    backoff_initial: Duration = 30.0
    backoff_max: Duration = 3600.0
    concurrency: int = Field(default=4, ge=1)
    # "imap": APPEND every mail into one mailbox of the [[imap]] entry named by ``imap``
    # instead of sending it to the smarthost (docs/imap.md).
    method: Literal["smtp", "imap"] = "smtp"
    imap: str | None = None
    append_mailbox: str = "INBOX"


class InboundRoute(_Section):
    """A static route for SMS no conversation claims: by our number (``to``) or by the
    phone's number (``from``), to a mailbox."""

    to: str | None = None
    from_: str | None = Field(default=None, alias="from")
    mailbox: str


class InboundSettings(_Section):
    catch_all: str | None = None
    conversation_ttl: Duration = 30 * 86400.0
    timezone: str = "UTC"
    quote_last: bool = True
    keywords: bool = True
    help_text: str = "Replies to this number are delivered by email. Text STOP to opt out."
    route: tuple[InboundRoute, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. Europe/London)") from None
        return v


class DkimSettings(_Section):
    """DKIM for mail made from SMS. Signing with both algorithms needs one selector per
    algorithm (``selector = { rsa-sha256 = "rsa1", ed25519-sha256 = "ed1" }``): each key is
    a TXT record of its own at SELECTOR._domainkey.DOMAIN."""

    domain: str
    selector: str | dict[str, str] = "mailsms"
    key_file: str
    algorithm: str | tuple[str, ...] = "rsa-sha256"

    @property
    def algorithms(self) -> tuple[str, ...]:
        return (self.algorithm,) if isinstance(self.algorithm, str) else self.algorithm

    @field_validator("algorithm")
    @classmethod
    def _alg(cls, v: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for a in (v,) if isinstance(v, str) else v:
            if a not in ("rsa-sha256", "ed25519-sha256"):
                raise ValueError(f"{a!r}: expected rsa-sha256 or ed25519-sha256")
        return v


class TemplatesSettings(_Section):
    dir: str | None = None


class DsnSettings(_Section):
    delay_after: Duration = 4 * 3600.0
    reporting_mta: str | None = None


class DlrSettings(_Section):
    timeout: Duration = 2 * 86400.0
    unknown_keep: Duration = 600.0


class ImapSettings(_Section):
    """One ``[[imap]]`` mailbox polled for mail to send as SMS (mailsms/intake/imap.py)."""

    name: str = "imap"
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)  # 993 with tls, else 143
    tls: bool = True  # implicit TLS (IMAPS); false only for a loopback or trusted link
    validate_certs: bool = True
    username: str
    password: str = Field(repr=False)
    mailbox: str = "INBOX"
    idle: bool = True  # IDLE between polls when the server offers it
    poll_interval: Duration = 60.0
    after: Literal["seen", "move", "delete"] = "seen"
    move_to: str | None = None
    rejected_to: str | None = None  # refused mail is moved here; else flagged and \Seen
    allowed_senders: tuple[str, ...] | None = None  # default: policy.allowed_senders
    authserv_id: str | None = None  # trust only senders our MTA authenticated (see docs)
    timeout: Duration = 30.0

    @field_validator("move_to")
    @classmethod
    def _move_to(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("a mailbox name, e.g. 'Sent as SMS'")
        return value

    @property
    def effective_port(self) -> int:
        return self.port or (993 if self.tls else 143)


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["logfmt", "json"] = "logfmt"


class Settings(_Section):
    """The whole configuration. ``carriers`` holds each ``[[carrier]]`` in its driver's model."""

    gateway: GatewaySettings = GatewaySettings()
    smtp: SmtpSettings = SmtpSettings()
    http: HttpSettings = HttpSettings()
    store: StoreSettings = StoreSettings()
    dispatch: DispatchSettings = DispatchSettings()
    policy: PolicySettings = PolicySettings()
    sms: SmsSettings = SmsSettings()
    body: BodySettings = BodySettings()
    relay: RelaySettings = RelaySettings()
    inbound: InboundSettings = InboundSettings()
    dkim: DkimSettings | None = None
    templates: TemplatesSettings = TemplatesSettings()
    dsn: DsnSettings = DsnSettings()
    dlr: DlrSettings = DlrSettings()
    log: LogSettings = LogSettings()
    imap: tuple[ImapSettings, ...] = ()
    carriers: tuple[CarrierSettings, ...] = ()


DEFAULT_CARRIER: dict[str, Any] = {"name": "console", "type": "console"}


@dataclass(frozen=True)
class Loaded:
    """Settings plus where they came from and what the operator should know."""

    settings: Settings
    source: str
    warnings: tuple[str, ...] = ()


def load(
    path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Loaded:
    """Read ``path`` (or the embedded defaults), apply the environment, validate everything."""
    env = os.environ if env is None else env
    source = str(path) if path is not None else "<embedded defaults>"
    text = ""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
            data = tomllib.loads(text)
        except FileNotFoundError:
            raise ConfigError(f"{source}: no such file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    if "carrier" not in data:
        data["carrier"] = [dict(DEFAULT_CARRIER)]
    from_env = _apply_env(data, env)
    settings = _validate(data, source, text, from_env)
    return Loaded(settings, source, tuple(_warnings(settings)))


def from_dict(data: Mapping[str, Any], source: str = "<dict>") -> Settings:
    """Settings from an already-parsed mapping (tests, embedding); no environment applied."""
    return _validate(copy.deepcopy(dict(data)), source, "")


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[tuple[Any, ...], str]:
    """``MAILSMS_SECTION__KEY=value``; carriers by name: ``MAILSMS_CARRIER__NAME__KEY``.

    Returns which config locations came from which variable, so errors can name it.
    """
    origin: dict[tuple[Any, ...], str] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        value = _env_value(raw)
        if path[0] in ("carrier", "imap") and len(path) == 3:
            entries = data.setdefault(path[0], [])
            entry = next((c for c in entries if str(c.get("name", "")).lower() == path[1]), None)
            if entry is None:
                raise ConfigError(f"{name}: no [[{path[0]}]] named {path[1]!r} to override")
            entry[path[2]] = value
            origin[(path[0], entries.index(entry), path[2])] = name
        elif len(path) == 2:
            section = data.setdefault(path[0], {})
            if not isinstance(section, dict):
                raise ConfigError(f"{name}: [{path[0]}] is not a table")
            section[path[1]] = value
            origin[(path[0], path[1])] = name
        else:
            raise ConfigError(
                f"{name}: expected MAILSMS_SECTION__KEY, MAILSMS_CARRIER__NAME__KEY or "
                "MAILSMS_IMAP__NAME__KEY"
            )
    return origin


def _env_value(raw: str) -> Any:
    """Arrays, inline tables and quoted strings are read as TOML (``["a", "b"]``); anything
    else stays the string it is, and the typed settings convert it (``"10"`` to an int for an
    int key), so a numeric-looking token or ``+15551234567`` sender stays a string."""
    if raw.strip()[:1] in ("[", "{", '"', "'"):
        try:
            return tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            return raw
    return raw


def _validate(
    data: dict[str, Any],
    source: str,
    text: str,
    from_env: Mapping[tuple[Any, ...], str] | None = None,
) -> Settings:
    env = from_env or {}
    carriers_raw = data.pop("carrier", None)
    if carriers_raw is None:
        carriers_raw = [dict(DEFAULT_CARRIER)]
    if not isinstance(carriers_raw, list):
        raise ConfigError(f"{source}: 'carrier' must be an array of tables ([[carrier]])")
    try:
        base = Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source, text, env=env)) from None
    carriers = tuple(_carrier(i, c, source, text, env) for i, c in enumerate(carriers_raw))
    names = [c.name for c in carriers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: carrier names must be unique: {', '.join(dupes)}")
    _check_imap(base, source)
    return base.model_copy(update={"carriers": carriers})


def _check_imap(settings: Settings, source: str) -> None:
    names = [m.name for m in settings.imap]
    relay = settings.relay
    if relay.method == "imap" and relay.imap not in names:
        known = ", ".join(names) or "none"
        raise ConfigError(
            f"{source}: relay.method = 'imap' needs relay.imap, the name of an [[imap]] entry "
            f"(known: {known})"
        )
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{source}: imap names must be unique: {', '.join(dupes)}")
    for i, m in enumerate(settings.imap):
        if m.after == "move" and not m.move_to:
            raise ConfigError(f"{source}: imap[{i}] ({m.name}): after = 'move' needs move_to")
        if m.after != "move" and m.move_to:
            raise ConfigError(
                f"{source}: imap[{i}] ({m.name}): move_to is set but after = {m.after!r}"
            )


def _carrier(
    index: int, raw: Any, source: str, text: str, env: Mapping[tuple[Any, ...], str]
) -> CarrierSettings:
    if not isinstance(raw, dict) or "type" not in raw or "name" not in raw:
        raise ConfigError(f"{source}: carrier[{index}] needs at least 'name' and 'type'")
    cls = carrier_class(str(raw["type"]))
    try:
        return cls.Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, source, text, ("carrier", index), env)) from None


def _explain(
    exc: ValidationError,
    source: str,
    text: str,
    prefix: tuple[Any, ...] = (),
    env: Mapping[tuple[Any, ...], str] | None = None,
) -> str:
    """One line per problem: ``file:line: key: what is wrong`` (or the variable that set it)."""
    lines = []
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        key = ".".join(str(p) for p in loc)
        line = _locate(text, loc)
        if env and tuple(loc[:3]) in env:
            where = f"environment {env[tuple(loc[:3])]}"
        else:
            where = f"{source}:{line}" if line else source
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"{where}: {key}: {msg}")
    return "\n".join(lines)


def _locate(text: str, loc: tuple[Any, ...]) -> int | None:
    """The line of ``loc`` in the TOML text, found by walking the table headers."""
    if not text or not loc:
        return None
    key = str(loc[-1])
    section = str(loc[0]) if len(loc) > 1 else ""
    index = loc[1] if len(loc) > 2 and isinstance(loc[1], int) else None
    current, seen = "", -1
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\[?\s*([\w.-]+)\s*\]\]?", stripped)
        if header:
            current = header.group(1)
            if current == section and stripped.startswith("[["):
                seen += 1
            continue
        in_section = current == section and (index is None or seen == index)
        if (in_section or (not section and not current)) and re.match(
            rf"^{re.escape(key)}\s*=", stripped
        ):
            return number
    return None


def _warnings(settings: Settings) -> list[str]:
    out = []
    http = settings.http.listen
    exposed = (
        http is not None
        and not http.startswith("unix:")
        and not split_listen(http)[0].startswith(("127.", "localhost", "::1"))
    )
    for carrier in settings.carriers:
        unprotected = not carrier.webhook_token and (
            carrier.type in {"console", "file", "fake", "http"}
            or (carrier.type == "vonage" and not getattr(carrier, "signature_secret", None))
        )
        if exposed and unprotected:
            out.append(
                f"carrier {carrier.name!r} has no webhook_token but http.listen {http} is not "
                "loopback: anyone who can reach it can inject SMS and delivery reports"
            )
    for m in settings.imap:
        if not m.tls and not m.host.startswith(("127.", "localhost", "::1")):
            out.append(
                f"imap {m.name!r}: tls = false to {m.host}: the password and the mail cross "
                "the network in clear"
            )
        if m.authserv_id is None and settings.policy.authserv_id is None:
            out.append(
                f"imap {m.name!r}: no authserv_id, so senders are taken from the mail's "
                "headers as written: anyone who can mail this mailbox can claim an allowed "
                "sender (see docs/imap.md)"
            )
    if exposed and not settings.http.api_token:
        out.append("http.api_token is unset: POST /v1/messages is disabled")
    return out
