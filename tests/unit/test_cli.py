"""The ``mailsms`` command (mailsms.cli) on embedded defaults: SQLite under ./var, console carrier.

Each test runs in its own tmp_path as the working directory, so ./var is created there.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from mailsms.cli import EXIT_FAIL, EXIT_OK, EXIT_USAGE, main


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("MAILSMS_"):
            monkeypatch.delenv(name)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def queue_one(capsys: pytest.CaptureFixture[str], to: str = "+15551234567") -> str:
    code, out, err = run(capsys, "send", "--to", to, "--text", "Disk full on db1")
    assert code == EXIT_OK, err
    match = re.fullmatch(r"queued ([0-9a-f]+)\n", out)
    assert match, out
    return match.group(1)


# --- check-config ----------------------------------------------------------------------------


def test_check_config_on_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check-config")
    assert code == EXIT_OK
    assert out.splitlines()[0] == "<embedded defaults>: OK"
    assert "domains: sms.localhost (region US)" in out
    assert "smtp: 127.0.0.1:2525" in out and "http: 127.0.0.1:8025" in out
    assert "store: sqlite:///var/mailsms.db" in out
    assert "carrier console: type console" in out
    assert "trusted networks: 127.0.0.0/8, ::1/128" in out
    assert err == ""


def test_check_config_file_redacts_store_password(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    (workdir / "ok.toml").write_text(
        '[gateway]\ndomain = "sms.example.test"\ndomains = ["Other.Test"]\n'
        '[store]\nurl = "postgresql://mailsms:hunter2@db/mailsms"\n'
        '[[carrier]]\nname = "out"\ntype = "file"\n'
    )
    code, out, _ = run(capsys, "check-config", "--config", "ok.toml")
    assert code == EXIT_OK
    assert out.startswith("ok.toml: OK\n")
    assert "domains: other.test, sms.example.test" in out
    assert "postgresql://mailsms:***@db/mailsms" in out and "hunter2" not in out
    assert "carrier out: type file" in out


def test_check_config_reads_mailsms_config(
    capsys: pytest.CaptureFixture[str], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "env.toml").write_text('[gateway]\ndomain = "env.example.test"\n')
    monkeypatch.setenv("MAILSMS_CONFIG", "env.toml")
    code, out, _ = run(capsys, "check-config")
    assert code == EXIT_OK
    assert "domains: env.example.test" in out


def test_check_config_prints_warnings_on_stderr(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILSMS_HTTP__LISTEN", "0.0.0.0:8025")
    code, _, err = run(capsys, "check-config")
    assert code == EXIT_OK
    assert "mailsms: warning: carrier 'console' has no webhook_token" in err


def test_bad_config_exits_2_naming_key_and_line(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    (workdir / "bad.toml").write_text('[gateway]\ndomain = "x.test"\n[smtp]\nlisen = "x"\n')
    code, out, err = run(capsys, "check-config", "--config", "bad.toml")
    assert code == EXIT_USAGE
    assert out == ""
    assert "mailsms: configuration error:" in err
    assert "bad.toml:4: smtp.lisen: unknown key" in err


def test_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "check-config", "-c", "nope.toml")
    assert code == EXIT_USAGE
    assert "nope.toml: no such file" in err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys)
    assert code == EXIT_USAGE
    assert "usage: mailsms" in out


# --- send and messages -----------------------------------------------------------------------


def test_send_then_list_show_cancel_retry(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    message_id = queue_one(capsys)
    assert (workdir / "var" / "mailsms.db").exists()

    code, out, _ = run(capsys, "messages", "list")
    assert code == EXIT_OK
    header, row = out.splitlines()
    assert header.split()[:3] == ["ID", "STATE", "TO"]
    assert row.split()[:4] == [message_id, "queued", "+15551234567", "1"]
    assert row.endswith("Disk full on db1")

    code, out, _ = run(capsys, "messages", "show", message_id)
    assert code == EXIT_OK
    assert f"id:        {message_id}" in out
    assert "state:     queued" in out
    assert "encoding:  gsm7, 1 segment(s)" in out
    events = out.split("events:\n")[1].splitlines()
    assert len(events) == 1 and "queued" in events[0]

    code, out, _ = run(capsys, "messages", "cancel", message_id)
    assert (code, out) == (EXIT_OK, f"{message_id}: cancelled\n")
    code, _, err = run(capsys, "messages", "cancel", message_id)
    assert code == EXIT_FAIL
    assert "no longer queued" in err

    code, out, _ = run(capsys, "messages", "retry", message_id)
    assert (code, out) == (EXIT_OK, f"{message_id}: queued again\n")
    code, _, _ = run(capsys, "messages", "retry", message_id)
    assert code == EXIT_FAIL  # queued again: nothing to retry

    code, out, _ = run(capsys, "messages", "show", message_id)
    events = out.split("events:\n")[1].splitlines()
    assert [e.split()[2] for e in events] == ["queued", "cancelled", "queued"]
    assert "state:     queued" in out


def test_messages_list_json_and_state_filter(capsys: pytest.CaptureFixture[str]) -> None:
    first, second = queue_one(capsys), queue_one(capsys, "+447700900123")
    assert run(capsys, "messages", "cancel", first)[0] == EXIT_OK

    code, out, _ = run(capsys, "messages", "list", "--json")
    assert code == EXIT_OK
    rows = json.loads(out)
    assert [r["id"] for r in rows] == [second, first]  # newest first

    code, out, _ = run(capsys, "messages", "list", "--state", "cancelled", "--json")
    assert [r["id"] for r in json.loads(out)] == [first]

    code, _, err = run(capsys, "messages", "list", "--state", "bogus")
    assert code == EXIT_USAGE
    assert "unknown state 'bogus'" in err


def test_messages_show_json(capsys: pytest.CaptureFixture[str]) -> None:
    message_id = queue_one(capsys)
    code, out, _ = run(capsys, "messages", "show", message_id, "--json")
    assert code == EXIT_OK
    assert json.loads(out)["id"] == message_id


@pytest.mark.parametrize("action", ["show", "cancel", "retry"])
def test_unknown_message_exits_1(capsys: pytest.CaptureFixture[str], action: str) -> None:
    code, out, err = run(capsys, "messages", action, "nope")
    assert code == EXIT_FAIL
    assert out == ""
    assert "nope" in err


@pytest.mark.parametrize("to", ["hello", "+", "12", "555-CALL-NOW"])
def test_send_bad_number_exits_2(capsys: pytest.CaptureFixture[str], to: str) -> None:
    code, out, err = run(capsys, "send", "--to", to, "--text", "x")
    assert code == EXIT_USAGE
    assert out == ""
    assert "not a" in err


def test_send_unknown_carrier_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "send", "--to", "+15551234567", "--text", "x", "--carrier", "nope")
    assert code == EXIT_USAGE
    assert "no carrier named 'nope'" in err


def test_send_refused_by_destination_policy_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "send", "--to", "81025", "--text", "x")
    assert code == EXIT_FAIL
    assert out == ""
    assert "refused: Short codes are not allowed" in err


# --- encode ----------------------------------------------------------------------------------


def test_encode_json(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mailsms.sms.encode", reason="mailsms.sms.encode is not built yet")
    code, out, _ = run(capsys, "encode", "--json", "hello")
    assert code == EXIT_OK
    body = json.loads(out)
    assert set(body) >= {"encoding", "shift_table", "segments", "parts", "transliterated"}
    assert (body["encoding"], body["segments"], body["shift_table"]) == ("gsm7", 1, None)
    assert [p["text"] for p in body["parts"]] == ["hello"]
    assert body["transliterated"] == []


# --- --config placement ----------------------------------------------------------------------


def other_store_config(workdir: Path) -> str:
    (workdir / "other.toml").write_text(f'[store]\nurl = "sqlite:///{workdir}/other.db"\n')
    return "other.toml"


def test_messages_action_config_is_used(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    config = other_store_config(workdir)
    code, out, _ = run(capsys, "send", "--config", config, "--to", "+15551234567", "--text", "x")
    assert code == EXIT_OK
    message_id = out.split()[1]
    code, out, _ = run(capsys, "messages", "list", "--config", config)
    assert message_id in out
    assert not (workdir / "var").exists()


def test_messages_group_config_is_used(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    config = other_store_config(workdir)
    code, out, _ = run(capsys, "send", "--config", config, "--to", "+15551234567", "--text", "x")
    assert code == EXIT_OK
    message_id = out.split()[1]
    code, out, _ = run(capsys, "messages", "--config", config, "list")
    assert message_id in out


def test_receive_needs_a_carrier_with_the_generic_webhook(
    capsys: pytest.CaptureFixture[str], workdir: Path
) -> None:
    # Vonage and Telnyx, like Twilio, only take their vendor's signed calls.
    (workdir / "m.toml").write_text(
        '[[carrier]]\nname = "tx"\ntype = "telnyx"\napi_key = "k"\n'
        'public_key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="\n'
        '[[carrier]]\nname = "vg"\ntype = "vonage"\napi_key = "k"\napi_secret = "s"\n'
    )
    code, _, err = run(
        capsys, "receive", "--config", "m.toml", "--from", "+447700900123", "--text", "hi"
    )
    assert code == EXIT_USAGE
    assert "generic webhook shape" in err
