"""The intake's fast path for MAIL/RCPT paths gives what aiosmtpd's own parser gives."""

from __future__ import annotations

from typing import Any

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given
from hypothesis import strategies as st

from mailsms.intake.smtp import _SIMPLE_PATH, GatewaySMTP


def both(arg: str) -> tuple[Any, Any]:
    """(address, parameter words) from ours and from aiosmtpd's (which then .split()s)."""
    ours = GatewaySMTP.__new__(GatewaySMTP)
    ours.local_part_limit = 0
    theirs = SMTP.__new__(SMTP)
    theirs.local_part_limit = 0
    a, p = GatewaySMTP._getaddr(ours, arg)
    b, q = SMTP._getaddr(theirs, arg)
    return (a, (p or "").split()), (b, (q or "").split())


@pytest.mark.parametrize(
    "arg",
    [
        "<ops@example.test>",
        "<ops@example.test> SIZE=100",
        "<>",
        "<> SIZE=10",
        "<+447700900123@sms.example.test>",
        "<ops@EXAMPLE.test>  BODY=8BITMIME",
        '<"a b"@x.y>',
        "< ops@x.y >",
        "<a.b@c>",
        "<ops@example.test> NOTIFY=SUCCESS,FAILURE",
    ],
)
def test_table(arg: str) -> None:
    ours, theirs = both(arg)
    assert ours == theirs


atext = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=8)


@given(
    local=st.lists(atext, min_size=1, max_size=3).map(".".join),
    domain=st.lists(st.text(alphabet="abc09-", min_size=1, max_size=6), min_size=1, max_size=3).map(
        ".".join
    ),
    params=st.sampled_from(["", " SIZE=5", "  RET=HDRS ENVID=x+2By", " NOTIFY=NEVER"]),
)
def test_fast_path_agrees_with_aiosmtpd(local: str, domain: str, params: str) -> None:
    arg = f"<{local}@{domain}>{params}"
    ours, theirs = both(arg)
    if _SIMPLE_PATH.match(arg):
        assert ours == theirs
