"""``syncgate backfill``: plan, and unless ``--dry-run`` carry out, a backfill of the
objects that existed before the gateway was connected (``app/backfill.py``).

A dry run prints one line per object and a summary, and writes nothing: no migration,
no database row, no vendor call but reads. A real run migrates the database if needed,
connects the systems (as ``serve`` does), then carries the plan out with a progress bar
on a terminal, or one plain line per object otherwise. It works on the database of a
gateway that is serving; that gateway's dispatcher makes the vendor objects a create
needs.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:  # the engine is imported when the command runs, not by every command
    from app.backfill import Plan, PlanLine

EXIT_FAILED = 1
EXIT_USAGE = 2


class Bar:
    """A one-line progress bar redrawn in place (a terminal), or plain lines (a file or a
    pipe: one per object, as it is carried out)."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total = total
        self.done = 0
        self.out = out
        self.tty = out.isatty()

    def step(self, line: PlanLine, outcome: str) -> None:
        self.done += 1
        if not self.tty:
            print(f"{line.text()} -> {outcome}", file=self.out, flush=True)
            return
        width = max(10, min(40, shutil.get_terminal_size().columns - 60))
        filled = width * self.done // max(1, self.total)
        label = f"{line.action} {line.system} {line.external_id}"[:40]
        bar = "#" * filled + "-" * (width - filled)
        self.out.write(f"\r[{bar}] {self.done}/{self.total} {label:<40}")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self.done:
            self.out.write("\n")
            self.out.flush()


def run(settings: Any, secrets: Any, url: str, args: Any) -> int:
    """The command, once the config is loaded; returns the exit status."""
    from app.backfill import parse_since
    from app.errors import Invalid
    from app.model import utcnow

    try:
        since = None if args.since is None else parse_since(args.since, utcnow())
    except Invalid as exc:
        print(f"syncgate backfill: --{exc.message}", file=sys.stderr)
        return EXIT_USAGE
    unknown = [s for s in args.system if s not in settings.systems]
    if unknown:
        known = ", ".join(sorted(settings.systems)) or "none"
        print(
            f"syncgate backfill: --system {unknown[0]!r} is not a configured system"
            f" (configured: {known})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return asyncio.run(_run(settings, secrets, url, args.system, since, args.dry_run))


async def _run(
    settings: Any, secrets: Any, url: str, systems: list[str], since: Any, dry_run: bool
) -> int:
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from app.cli.database import DatabaseUnusable, usable_store
    from app.errors import Invalid, VendorError
    from app.gateway import Gateway

    try:  # a dry run writes nothing, not even a schema: it must be there already
        store = await usable_store(
            "backfill", url, migrate=not dry_run, wal_limit_mb=settings.sqlite_wal_limit_mb
        )
    except DatabaseUnusable as exc:
        print(exc, file=sys.stderr)
        return EXIT_FAILED
    gateway = None
    try:
        if dry_run:
            async with store.tx() as tx:
                await tx.system_state("-")
        gateway = Gateway(settings, secrets, store, run_pollers=False)
        service = gateway.backfill
        if dry_run:
            plan = await service.plan(systems, since)
            for line in plan.lines:
                print(line.text())
            print(plan.summary())
            print("dry run: nothing was changed")
            return 0
        await gateway.sync_clock()  # stamps on the clock the serving processes use
        await gateway.connect()
        bar = Bar(0, sys.stdout)

        def planned(plan: Plan) -> None:
            bar.total = len(plan.lines)

        try:
            plan = await service.run(systems, since, bar.step, planned=planned)
        finally:
            bar.close()
        print(f"done: {plan.summary()}")
        if plan.counts()["create"]:
            print("the vendor objects of each create are made by the serving gateway's dispatcher")
        return 0
    except Invalid as exc:
        print(f"syncgate backfill: {exc.message}", file=sys.stderr)
        return EXIT_USAGE
    except VendorError as exc:
        after = (
            "nothing was changed"
            if dry_run
            else "what was done before stays done: run it again to resume"
        )
        print(f"syncgate backfill: {exc}; {after}", file=sys.stderr)
        return EXIT_FAILED
    except (OperationalError, ProgrammingError) as exc:
        hint = "run `syncgate migrate` (or serve once) first" if dry_run else "check the database"
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else str(exc)
        print(f"syncgate backfill: database: {reason} ({hint})", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if gateway is not None:
            await gateway.stop()
        await store.close()


def add_parser(sub: Any) -> Any:
    p = sub.add_parser(
        "backfill",
        help="plan (--dry-run) or carry out a backfill: link, create or skip existing objects",
    )
    p.add_argument("--config", help="config file (default: $SYNCGATE_CONFIG or config.yaml)")
    p.add_argument(
        "--system",
        action="append",
        default=[],
        metavar="S",
        help="a system to walk (repeatable; default: every enabled system)",
    )
    p.add_argument(
        "--since",
        default=None,
        metavar="WHEN",
        help="objects changed since WHEN: ISO 8601 or a duration (30d, 12h); default: all",
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    return p
