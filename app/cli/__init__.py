"""The command line: ``syncgate serve | demo | simulate | check-config | migrate | ...``
(``main``), the operator commands that talk to a running gateway's admin API (``ops``),
and the narrated demo (``demo``). With the wiring, the only part of ``app/`` that knows
the vendor registry."""

from app.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
