"""Command-line values checked as argparse reads them: a bad one is a usage error (exit 2)
with the reason, never a traceback from deeper down."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T", int, float)
INF = float("inf")


def checked(
    convert: Callable[[str], T], ok: Callable[[T], bool], expected: str, must: str
) -> Callable[[str], T]:
    """An argparse ``type``: the text through ``convert`` (else "expected ``expected``"),
    then held to ``ok`` (else "must be ``must``")."""

    def parse(value: str) -> T:
        try:
            out = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
        if not ok(out):
            raise argparse.ArgumentTypeError(f"must be {must}, got {value!r}")
        return out

    return parse


#: ``--port``: 0 binds any free port (the port bound is printed)
PORT = checked(int, lambda p: 0 <= p <= 65535, "a port number", "0-65535 (0: any free port)")
#: ``simulate --rpm``: 0 or less would answer every call 429
RPM = checked(int, lambda n: n >= 1, "a whole number", "1 or more requests a minute")
#: ``simulate --latency-ms``
LATENCY_MS = checked(float, lambda ms: 0 <= ms < INF, "a number", "0 or more milliseconds")
#: the operator commands' ``--timeout``
SECONDS = checked(
    float, lambda s: 0 < s < INF, "a number of seconds", "a positive number of seconds"
)
