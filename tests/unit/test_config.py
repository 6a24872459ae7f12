"""Configuration: embedded defaults, TOML, ``MAILSMS_*`` overrides, and errors that name the
file, the line and the key (DESIGN.md "Config")."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
from pathlib import Path
from typing import Any

import pydantic
import pytest

from mailsms.carriers.file import FileSettings
from mailsms.config import Loaded, from_dict, load, split_listen
from mailsms.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "f.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_text(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Loaded:
    return load(write(tmp_path, text), env or {})


# --- defaults ------------------------------------------------------------------------------


def test_embedded_defaults() -> None:
    loaded = load(None, {})
    s = loaded.settings
    assert loaded.source == "<embedded defaults>"
    assert s.gateway.domain == "sms.localhost"
    assert s.gateway.all_domains == frozenset({"sms.localhost"})
    assert s.gateway.default_region == "US"
    assert s.smtp.listen == "127.0.0.1:2525"
    assert s.smtp.lmtp_listen is None
    assert s.http.listen == "127.0.0.1:8025"
    assert s.store.url == "sqlite:///var/mailsms.db"
    assert [(c.name, c.type) for c in s.carriers] == [("console", "console")]
    assert loaded.warnings == ()


def test_empty_file_gets_the_same_defaults_as_no_file(tmp_path: Path) -> None:
    assert load_text(tmp_path, "").settings == load(None, {}).settings


def test_from_dict_defaults_to_console_carrier_and_ignores_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILSMS_GATEWAY__DOMAIN", "from-env.test")
    s = from_dict({})
    assert s.gateway.domain == "sms.localhost"
    assert [c.type for c in s.carriers] == ["console"]


def test_configured_carriers_replace_the_console_default(tmp_path: Path) -> None:
    s = load_text(
        tmp_path,
        """
[[carrier]]
name = "out"
type = "file"
path = "outbox.jsonl"
from = "+15550001111"
""",
    ).settings
    (carrier,) = s.carriers
    assert isinstance(carrier, FileSettings)
    assert (carrier.name, carrier.path, carrier.from_) == ("out", "outbox.jsonl", "+15550001111")


def test_values_from_the_file(tmp_path: Path) -> None:
    s = load_text(
        tmp_path,
        """
[gateway]
domain = "sms.example.test"
default_region = "gb"
[smtp]
listen = "[::1]:2526"
lmtp_listen = "unix:/run/mailsms/lmtp.sock"
timeout = "1m30s"
[store]
url = "postgresql://mailsms@db/mailsms"
[dispatch]
max_age = "30d"
""",
    ).settings
    assert s.gateway.default_region == "GB"  # normalised
    assert s.smtp.listen == "[::1]:2526"
    assert s.smtp.lmtp_listen == "unix:/run/mailsms/lmtp.sock"
    assert s.smtp.timeout == 90.0
    assert s.store.url.startswith("postgresql://")
    assert s.dispatch.max_age == 30 * 86400.0


def test_several_domains_lower_cased() -> None:
    g = from_dict({"gateway": {"domain": "SMS.Example.Test.", "domains": ["Other.TEST"]}}).gateway
    assert g.all_domains == frozenset({"sms.example.test", "other.test"})


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:2525", ("127.0.0.1", 2525)),
        ("[::1]:25", ("::1", 25)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_split_listen(listen: str, expected: tuple[str, int]) -> None:
    assert split_listen(listen) == expected


# --- frozen ----------------------------------------------------------------------------------


def test_settings_are_frozen() -> None:
    s = from_dict({})
    with pytest.raises(pydantic.ValidationError):
        s.smtp.listen = "0.0.0.0:25"
    with pytest.raises(pydantic.ValidationError):
        s.gateway = s.gateway
    with pytest.raises(pydantic.ValidationError):
        s.carriers[0].name = "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        load(None, {}).source = "x"  # type: ignore[misc]


# --- environment overrides -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw", "get", "expected"),
    [
        ("MAILSMS_GATEWAY__DOMAIN", "sms.env.test", lambda s: s.gateway.domain, "sms.env.test"),
        (
            "MAILSMS_GATEWAY__DOMAINS",
            '["a.test", "B.test"]',
            lambda s: s.gateway.domains,
            ("a.test", "B.test"),
        ),
        ("MAILSMS_SMTP__MAX_MESSAGE_SIZE", "2048", lambda s: s.smtp.max_message_size, 2048),
        ("MAILSMS_SMTP__LISTEN", "0.0.0.0:25", lambda s: s.smtp.listen, "0.0.0.0:25"),
        ("MAILSMS_SMTP__TIMEOUT", "5m", lambda s: s.smtp.timeout, 300.0),
        (
            "MAILSMS_POLICY__BLOCK_PREMIUM_RATE",
            "false",
            lambda s: s.policy.block_premium_rate,
            False,
        ),
        (
            "MAILSMS_POLICY__ALLOWED_SENDERS",
            '["*@example.com"]',
            lambda s: s.policy.allowed_senders,
            ("*@example.com",),
        ),
        (
            "mailsms_store__url",
            "sqlite:///tmp/x.db",
            lambda s: s.store.url,
            "sqlite:///var/mailsms.db",
        ),
        ("MAILSMS_STORE__URL", "sqlite:///tmp/x.db", lambda s: s.store.url, "sqlite:///tmp/x.db"),
        ("MAILSMS_LOG__FORMAT", '"json"', lambda s: s.log.format, "json"),
    ],
    ids=lambda v: v if isinstance(v, str) and v.lower().startswith("mailsms_") else "",
)
def test_env_overrides(name: str, raw: str, get: Any, expected: Any) -> None:
    assert get(load(None, {name: raw}).settings) == expected


def test_env_overrides_win_over_the_file(tmp_path: Path) -> None:
    s = load_text(
        tmp_path,
        '[smtp]\nlisten = "127.0.0.1:2525"\nmax_recipients = 5\n',
        {"MAILSMS_SMTP__MAX_RECIPIENTS": "7"},
    ).settings
    assert (s.smtp.listen, s.smtp.max_recipients) == ("127.0.0.1:2525", 7)


def test_env_without_double_underscore_is_ignored() -> None:
    assert load(None, {"MAILSMS_CONFIG": "/etc/x.toml", "OTHER__X": "1"}).settings == from_dict({})


def test_env_overrides_a_carrier_by_name(tmp_path: Path) -> None:
    s = load_text(
        tmp_path,
        '[[carrier]]\nname = "Primary"\ntype = "fake"\n',
        {
            "MAILSMS_CARRIER__PRIMARY__WEBHOOK_TOKEN": "s3cret",
            "MAILSMS_CARRIER__PRIMARY__CONCURRENCY": "9",
        },
    ).settings
    assert (s.carriers[0].webhook_token, s.carriers[0].concurrency) == ("s3cret", 9)


def test_env_for_an_unknown_carrier_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"MAILSMS_CARRIER__NOPE__FROM.*'nope'"):
        load_text(
            tmp_path,
            '[[carrier]]\nname = "primary"\ntype = "fake"\n',
            {"MAILSMS_CARRIER__NOPE__FROM": "x"},
        )


def test_env_unknown_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"smtp\.lisen: unknown key"):
        load_text(tmp_path, "", {"MAILSMS_SMTP__LISEN": "127.0.0.1:25"})


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("MAILSMS_CARRIER__PRIMARY__FROM", "+15551234567"),
        ("MAILSMS_CARRIER__PRIMARY__WEBHOOK_TOKEN", "123456"),
        ("MAILSMS_HTTP__API_TOKEN", "20240611"),
    ],
)
def test_env_numeric_looking_strings_stay_strings(tmp_path: Path, name: str, raw: str) -> None:
    text = '[[carrier]]\nname = "primary"\ntype = "console"\n'
    s = load_text(tmp_path, text, {name: raw}).settings
    assert raw in (s.carriers[0].from_, s.carriers[0].webhook_token, s.http.api_token)


def test_env_overrides_the_default_console_carrier() -> None:
    s = load(None, {"MAILSMS_CARRIER__CONSOLE__WEBHOOK_TOKEN": "tok"}).settings
    assert s.carriers[0].webhook_token == "tok"


# --- errors name the file, the line and the key --------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[gateway]\ndomain = "x.test"\n\n[smtp]\nlisen = "127.0.0.1:25"\n',
            "f.toml:5: smtp.lisen: unknown key",
        ),
        ('[smtp]\nlisten = "nonsense"\n', "f.toml:2: smtp.listen: "),
        ('[smtp]\nlisten = "host:99999"\n', "f.toml:2: smtp.listen: "),
        ('[smtp]\nlmtp_listen = "unix:"\n', "f.toml:2: smtp.lmtp_listen: "),
        ('[http]\nlisten = "8025"\n', "f.toml:2: http.listen: "),
        ('[gateway]\ndefault_region = "XX"\n', "f.toml:2: gateway.default_region: "),
        ('[smtp]\ntimeout = "5 minutes"\n', "f.toml:2: smtp.timeout: "),
        ('[dispatch]\nmax_age = "-1s"\n', "f.toml:2: dispatch.max_age: "),
        ("[dispatch]\nbackoff_max = true\n", "f.toml:2: dispatch.backoff_max: "),
        ('[store]\nurl = "mysql://db/x"\n', "f.toml:2: store.url: "),
        ("[smtp]\nmax_message_size = 10\n", "f.toml:2: smtp.max_message_size: "),
        (
            '[policy]\nallowed_networks = ["10.0.0.0/8", "nope"]\n',
            "f.toml:2: policy.allowed_networks: ",
        ),
        ('[policy]\non_too_long = "explode"\n', "f.toml:2: policy.on_too_long: "),
        ("[sms]\nreference_bits = 12\n", "f.toml:2: sms.reference_bits: "),
        ('[log]\nlevel = "loud"\n', "f.toml:2: log.level: "),
        ("[nosuch]\nkey = 1\n", "f.toml: nosuch: unknown key"),
    ],
)
def test_bad_values_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    assert expected in str(info.value)


def test_every_problem_is_reported_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, '[smtp]\nlisen = "x"\n[http]\nlistne = "y"\n')
    assert str(info.value).splitlines() == [
        f"{tmp_path / 'f.toml'}:2: smtp.lisen: unknown key",
        f"{tmp_path / 'f.toml'}:4: http.listne: unknown key",
    ]


def test_unknown_key_in_a_file_carrier_names_its_line(tmp_path: Path) -> None:
    text = """\
[[carrier]]
name = "a"
type = "fake"

[[carrier]]
name = "out"
type = "file"
path = "outbox.jsonl"
host = "smpp.example.net"
"""
    with pytest.raises(ConfigError, match=r"f\.toml:9: carrier\.1\.host: unknown key"):
        load_text(tmp_path, text)


def test_bad_carrier_value_names_its_line(tmp_path: Path) -> None:
    text = '[[carrier]]\nname = "a"\ntype = "console"\nconcurrency = 0\n'
    with pytest.raises(ConfigError, match=r"f\.toml:4: carrier\.0\.concurrency: "):
        load_text(tmp_path, text)


def test_unknown_carrier_type_lists_the_known_ones(tmp_path: Path) -> None:
    known = r"unknown carrier type 'pigeon' \(known: .*console.*file"
    with pytest.raises(ConfigError, match=known):
        load_text(tmp_path, '[[carrier]]\nname = "a"\ntype = "pigeon"\n')


@pytest.mark.parametrize(
    "text",
    ['[[carrier]]\ntype = "console"\n', '[[carrier]]\nname = "a"\n', 'carrier = "console"\n'],
    ids=["no name", "no type", "not an array of tables"],
)
def test_malformed_carrier_entries(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match=r"f\.toml: .*carrier"):
        load_text(tmp_path, text)


def test_duplicate_carrier_names(tmp_path: Path) -> None:
    text = (
        '[[carrier]]\nname = "a"\ntype = "console"\n'
        '[[carrier]]\nname = "a"\ntype = "fake"\n'
        '[[carrier]]\nname = "b"\ntype = "fake"\n'
    )
    with pytest.raises(ConfigError, match=r"f\.toml: carrier names must be unique: a$"):
        load_text(tmp_path, text)


def test_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"f\.toml: not valid TOML: .*line 2"):
        load_text(tmp_path, "[smtp]\nlisten = \n")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.toml: no such file"):
        load(tmp_path / "missing.toml", {})


def test_from_dict_errors_name_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^<test>: smtp\.listen: "):
        from_dict({"smtp": {"listen": "nope"}}, "<test>")


def test_non_string_listen_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"f\.toml:2: smtp\.listen"):
        load_text(tmp_path, "[smtp]\nlisten = 2525\n")


@pytest.mark.parametrize("value", ["[30]", "2024-01-01", "{ s = 30 }"])
def test_non_string_duration_is_a_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"f\.toml:2: smtp\.timeout"):
        load_text(tmp_path, f"[smtp]\ntimeout = {value}\n")


def test_nan_duration_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"dispatch\.max_age"):
        from_dict({"dispatch": {"max_age": math.nan}})


# --- trusted networks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ({}, ["127.0.0.0/8", "::1/128"]),
        ({"allowed_senders": ["*@example.com"]}, []),
        ({"allowed_senders": [], "allowed_networks": None}, []),
        (
            {
                "allowed_senders": ["*@example.com"],
                "allowed_networks": ["10.1.2.0/24", "2001:db8::/32"],
            },
            ["10.1.2.0/24", "2001:db8::/32"],
        ),
        ({"allowed_networks": ["192.0.2.7"]}, ["192.0.2.7/32"]),
        ({"allowed_networks": ["10.1.2.3/24"]}, ["10.1.2.0/24"]),  # host bits tolerated
        ({"allowed_networks": []}, []),
    ],
)
def test_trusted_networks(policy: dict[str, Any], expected: list[str]) -> None:
    nets = from_dict({"policy": policy}).policy.trusted_networks
    assert nets == tuple(ipaddress.ip_network(n) for n in expected)


# --- warnings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "listen", ["127.0.0.1:8025", "127.1.2.3:80", "localhost:8025", "[::1]:8025"]
)
def test_no_warnings_on_loopback(listen: str) -> None:
    assert load(None, {"MAILSMS_HTTP__LISTEN": listen}).warnings == ()


@pytest.mark.parametrize("listen", ["0.0.0.0:8025", "[::]:8025", "192.0.2.10:80"])
def test_warnings_when_exposed_without_tokens(listen: str) -> None:
    warnings = load(None, {"MAILSMS_HTTP__LISTEN": listen}).warnings
    assert len(warnings) == 2
    assert "carrier 'console' has no webhook_token" in warnings[0]
    assert listen in warnings[0]
    assert "http.api_token is unset" in warnings[1]


def test_no_warnings_when_exposed_with_tokens(tmp_path: Path) -> None:
    text = """
[http]
listen = "0.0.0.0:8025"
api_token = "t"
[[carrier]]
name = "gw"
type = "fake"
webhook_token = "w"
"""
    assert load_text(tmp_path, text).warnings == ()


def test_warning_names_only_the_carrier_without_a_token(tmp_path: Path) -> None:
    text = """
[http]
listen = "0.0.0.0:8025"
api_token = "t"
[[carrier]]
name = "safe"
type = "fake"
webhook_token = "w"
[[carrier]]
name = "open"
type = "file"
"""
    (warning,) = load_text(tmp_path, text).warnings
    assert "carrier 'open'" in warning


def test_unix_socket_http_listen_loads() -> None:
    loaded = load(None, {"MAILSMS_HTTP__LISTEN": "unix:/run/mailsms/http.sock"})
    assert loaded.settings.http.listen == "unix:/run/mailsms/http.sock"


# --- [[imap]] ------------------------------------------------------------------------------

IMAP = """
[[imap]]
name = "alerts"
host = "imap.example.com"
username = "gw@example.com"
password = "file-secret"
"""


def test_imap_password_from_the_environment_and_never_in_repr(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, IMAP, {"MAILSMS_IMAP__ALERTS__PASSWORD": "env-secret"})
    (imap,) = loaded.settings.imap
    assert imap.password == "env-secret" and imap.effective_port == 993
    assert "secret" not in repr(loaded.settings)
    assert any("authserv_id" in w for w in loaded.warnings)


def test_imap_move_needs_move_to_and_names_are_unique(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"imap\[0\] \(alerts\): after = 'move' needs move_to"):
        load_text(tmp_path, IMAP + 'after = "move"\n')
    with pytest.raises(ConfigError, match="imap names must be unique: alerts"):
        load_text(tmp_path, IMAP * 2)
    with pytest.raises(ConfigError, match="no \\[\\[imap\\]\\] named 'other'"):
        load_text(tmp_path, IMAP, {"MAILSMS_IMAP__OTHER__PASSWORD": "x"})


def test_imap_bad_value_names_the_key_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_text(tmp_path, IMAP + 'after = "archive"\n')
    assert "f.toml:7: imap.0.after: Input should be 'seen', 'move' or 'delete'" in str(err.value)


def test_plain_imap_off_loopback_is_warned_about(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, IMAP + "tls = false\n")
    assert any("in clear" in w for w in loaded.warnings)


def test_relay_by_imap_needs_an_imap_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"relay.method = 'imap' needs relay.imap.*known: alerts"):
        load_text(tmp_path, IMAP + '[relay]\nmethod = "imap"\n')
    loaded = load_text(tmp_path, IMAP + '[relay]\nmethod = "imap"\nimap = "alerts"\n')
    assert (loaded.settings.relay.imap, loaded.settings.relay.append_mailbox) == ("alerts", "INBOX")


def test_policy_authserv_id_covers_imap(tmp_path: Path) -> None:
    loaded = load_text(tmp_path, '[policy]\nauthserv_id = "mx.example.com"\n' + IMAP)
    assert not any("authserv_id" in w for w in loaded.warnings)
