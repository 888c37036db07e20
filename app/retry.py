"""When to try a failed call again: pure functions, tested as such."""

from __future__ import annotations

import math
import random
from collections.abc import Callable


def backoff_delay(
    attempt: int,
    *,
    base_s: float,
    max_s: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based).

    Exponential (``base_s * 2**(attempt-1)``, capped at ``max_s``) with "equal jitter":
    half the delay is kept, half is random, so retries from many links spread out but
    never come back sooner than half the nominal delay.
    """
    if attempt < 1:
        raise ValueError("attempt is 1-based")
    nominal = min(max_s, base_s * 2.0 ** (attempt - 1))
    return nominal / 2 + rand() * nominal / 2


def capped_delay(seconds: float, cap: float) -> float:
    """A vendor-given delay made safe to wait for: at most ``cap``, at least 0, and 0 for
    something that is not a number."""
    if math.isnan(seconds):
        return 0.0
    return min(max(seconds, 0.0), cap)
