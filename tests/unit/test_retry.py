"""The retry schedule (mailsms.dispatch.retry): a pure function of attempts, deadline, clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailsms.dispatch.retry import GiveUp, Retry, RetryPolicy
from mailsms.model import State

POLICY = RetryPolicy(max_attempts=5, initial=10.0, maximum=100.0)
NOW = 1_000_000.0
FAR = NOW + 10 * 86400


@pytest.mark.parametrize(
    ("attempts", "cap"),
    [(0, 10.0), (1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0), (5, 100.0), (6, 100.0), (60, 100.0)],
)
def test_backoff_grows_then_caps(attempts: int, cap: float) -> None:
    assert POLICY.backoff(attempts, rand=1.0) == cap
    assert POLICY.backoff(attempts, rand=0.0) == cap / 2
    assert POLICY.backoff(attempts, rand=0.5) == cap * 0.75


@given(st.integers(min_value=0, max_value=200), st.floats(min_value=0.0, max_value=1.0))
def test_backoff_stays_within_half_cap_and_cap(attempts: int, rand: float) -> None:
    cap = min(POLICY.maximum, POLICY.initial * 2 ** max(0, attempts - 1))
    assert cap / 2 <= POLICY.backoff(attempts, rand) <= cap


@given(st.integers(min_value=1, max_value=50))
def test_backoff_never_shrinks(attempts: int) -> None:
    for rand in (0.0, 1.0):
        assert POLICY.backoff(attempts + 1, rand) >= POLICY.backoff(attempts, rand)


@pytest.mark.parametrize(
    ("attempts", "rand", "expected"),
    [
        (1, 0.0, Retry(NOW + 5.0)),
        (1, 1.0, Retry(NOW + 10.0)),
        (3, 0.0, Retry(NOW + 20.0)),
        (4, 1.0, Retry(NOW + 80.0)),
    ],
)
def test_decide_retries_with_backoff(attempts: int, rand: float, expected: Retry) -> None:
    assert POLICY.decide(attempts, expires_at=FAR, now=NOW, rand=rand) == expected


@pytest.mark.parametrize("attempts", [5, 6, 100])
def test_decide_gives_up_failed_at_max_attempts(attempts: int) -> None:
    decision = POLICY.decide(attempts, expires_at=FAR, now=NOW, rand=0.0)
    assert isinstance(decision, GiveUp)
    assert decision.state is State.FAILED
    assert str(attempts) in decision.reason


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        (NOW + 10.01, Retry(NOW + 10.0)),  # just fits
        (NOW + 10.0, GiveUp(State.EXPIRED, "no attempt left before the message's maximum age")),
        (NOW + 5.0, GiveUp(State.EXPIRED, "no attempt left before the message's maximum age")),
        (NOW - 1.0, GiveUp(State.EXPIRED, "no attempt left before the message's maximum age")),
    ],
)
def test_decide_expires_when_the_next_attempt_is_past_the_deadline(
    expires_at: float, expected: Retry | GiveUp
) -> None:
    assert POLICY.decide(1, expires_at=expires_at, now=NOW, rand=1.0) == expected


def test_max_attempts_wins_over_expiry() -> None:
    decision = POLICY.decide(5, expires_at=NOW - 1, now=NOW, rand=0.0)
    assert decision == GiveUp(State.FAILED, "gave up after 5 attempts")


def test_decide_draws_its_own_jitter_within_bounds() -> None:
    for _ in range(50):
        decision = POLICY.decide(2, expires_at=FAR, now=NOW)
        assert isinstance(decision, Retry)
        assert NOW + 10.0 <= decision.at <= NOW + 20.0


def test_single_attempt_policy_never_retries() -> None:
    once = RetryPolicy(max_attempts=1, initial=1.0, maximum=1.0)
    assert once.decide(1, expires_at=FAR, now=NOW, rand=0.0) == GiveUp(
        State.FAILED, "gave up after 1 attempts"
    )
