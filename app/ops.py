"""Operator conveniences on the command line, talking to a running gateway's admin API."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    """Add the operator subcommands to the ``syncgate`` parser."""
    _ = (sub, argparse)
