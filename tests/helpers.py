"""Waiting on the gateway's own progress instead of sleeping."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from mailsms.app import Gateway
from mailsms.model import Message, State


async def until(gw: Gateway, check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Re-check after every message the dispatcher finishes handling, up to ``timeout``."""
    async with asyncio.timeout(timeout):
        while not await check():
            # State may also change outside the dispatcher (reports, operator): re-check
            # at least every poll interval.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gw.dispatcher.progress(), gw.settings.dispatch.poll_interval)


async def settled(gw: Gateway, id: str, timeout: float = 10.0) -> Message:
    """Wait until message ``id`` is in a terminal state and return it."""
    result: list[Message] = []

    async def done() -> bool:
        m = await gw.store.get(id)
        if m is not None and m.state.terminal:
            result.append(m)
            return True
        return False

    await until(gw, done, timeout)
    return result[0]


async def in_state(gw: Gateway, id: str, state: State, timeout: float = 10.0) -> Message:
    result: list[Message] = []

    async def check() -> bool:
        m = await gw.store.get(id)
        if m is not None and m.state is state:
            result.append(m)
            return True
        return False

    await until(gw, check, timeout)
    return result[0]
