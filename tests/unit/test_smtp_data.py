"""read_data against a line-by-line model of aiosmtpd 1.4's own DATA loop."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsms.intake.data import TOO_LONG, TOO_MUCH, read_data

LINE_LIMIT = 1001  # aiosmtpd's line_length_limit, also its StreamReader limit


def aiosmtpd_model(stream: bytes, size_limit: int | None) -> tuple[bytes | str, bytes]:
    """What aiosmtpd's loop answers for ``stream`` (content or error) and what it leaves
    unread: lines split on CRLF, a lone dot ends, 552 past the size, 500 for a long line,
    whichever happened first (a line longer than the reader's limit overruns it before its
    bytes are counted), then the leading dot of every line removed."""
    lines: list[bytes] = []
    size, state, pos = 0, "ok", 0
    while True:
        end = stream.index(b"\r\n", pos) + 2
        line, pos = stream[pos:end], end
        if line == b".\r\n":
            break
        if state == "ok" and len(line) > LINE_LIMIT:  # aiosmtpd's reader overruns first
            state = "long"
        size += len(line)
        if state == "ok" and size_limit and size > size_limit:
            state = "much"
        if state == "ok":
            lines.append(line[1:] if line.startswith(b".") else line)
    if state != "ok":
        return (TOO_MUCH if state == "much" else TOO_LONG), stream[pos:]
    return b"".join(lines), stream[pos:]


async def feed_and_read(stream: bytes, chunks: list[int], size_limit: int | None) -> tuple:
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    pos = 0
    for n in chunks:
        reader.feed_data(stream[pos : pos + n])
        pos += n
    reader.feed_data(stream[pos:])
    reader.feed_eof()
    result = await read_data(reader, size_limit, LINE_LIMIT)
    return result, await reader.read()


_lines = st.lists(
    st.one_of(
        st.sampled_from([b"", b".", b"..", b"...x", b"end.", b"a.b.", b".\r", b"x\r", b"\n."]),
        st.binary(max_size=40).map(lambda b: b.replace(b"\r\n", b"")),
        st.integers(990, 1010).map(lambda n: b"y" * n),  # around the line limit
    ),
    max_size=30,
)


@settings(max_examples=400, deadline=None)
@given(
    lines=_lines,
    chunks=st.lists(st.integers(1, 300), max_size=20),
    size_limit=st.sampled_from([None, 0, 10, 100, 1500, 5000]),
)
def test_read_data_matches_aiosmtpd_line_by_line(
    lines: list[bytes], chunks: list[int], size_limit: int | None
) -> None:
    # Lines may hold a lone CR or LF; none holds CRLF, so the model's split is the truth.
    lines = [ln for ln in lines if not (ln + b"\r\n").endswith(b"\r\r\n")]
    stream = b"".join(ln + b"\r\n" for ln in lines) + b".\r\nQUIT\r\n"
    expected, left = aiosmtpd_model(stream, size_limit)
    got, rest = asyncio.run(feed_and_read(stream, chunks, size_limit))
    assert got == expected
    assert rest == left  # never reads past the terminating line


@pytest.mark.parametrize(
    ("stream", "content"),
    [
        (b".\r\n", b""),
        (b"hello\r\n.\r\n", b"hello\r\n"),
        (b"full stop.\r\nnext\r\n.\r\n", b"full stop.\r\nnext\r\n"),
        (b"..leading\r\n.\r\n", b".leading\r\n"),
        (b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n"),
    ],
)
def test_read_data_examples(stream: bytes, content: bytes) -> None:
    got, rest = asyncio.run(feed_and_read(stream, [1] * len(stream), None))
    assert got == content and rest == b""
