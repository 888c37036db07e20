"""``backoff_delay``: exponential growth, the cap, equal-jitter bounds, 1-based attempts."""

from __future__ import annotations

import pytest

from app.retry import backoff_delay


def delays(
    rand: float, attempts: range, *, base_s: float = 0.5, max_s: float = 300.0
) -> list[float]:
    return [backoff_delay(n, base_s=base_s, max_s=max_s, rand=lambda: rand) for n in attempts]


def test_the_delay_doubles_with_each_attempt() -> None:
    # with rand() == 1.0 the delay is the nominal one: base * 2**(attempt-1)
    assert delays(1.0, range(1, 7)) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    # and the jittered floor doubles too
    assert delays(0.0, range(1, 7)) == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0]


def test_the_delay_is_capped_at_max_s() -> None:
    assert delays(1.0, range(1, 8), base_s=1.0, max_s=10.0) == [1, 2, 4, 8, 10, 10, 10]
    # far past the cap: still the cap
    assert backoff_delay(1000, base_s=1.0, max_s=10.0, rand=lambda: 1.0) == 10.0
    assert backoff_delay(1000, base_s=1.0, max_s=10.0, rand=lambda: 0.0) == 5.0


@pytest.mark.parametrize("attempt", [1, 3, 12])
def test_jitter_keeps_half_the_nominal_delay_and_randomises_the_rest(attempt: int) -> None:
    nominal = min(60.0, 0.5 * 2 ** (attempt - 1))
    low = backoff_delay(attempt, base_s=0.5, max_s=60.0, rand=lambda: 0.0)
    mid = backoff_delay(attempt, base_s=0.5, max_s=60.0, rand=lambda: 0.5)
    high = backoff_delay(attempt, base_s=0.5, max_s=60.0, rand=lambda: 0.999999)
    assert low == pytest.approx(nominal / 2)
    assert mid == pytest.approx(nominal * 0.75)
    assert nominal / 2 <= high < nominal
    # the default source of randomness stays within the same bounds
    for _ in range(200):
        assert nominal / 2 <= backoff_delay(attempt, base_s=0.5, max_s=60.0) <= nominal


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match="1-based"):
        backoff_delay(attempt, base_s=0.5, max_s=300.0)
