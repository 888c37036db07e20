"""Two revisions of the gateway, taken in turns: what one change costs each.

    python -m bench.ab A B [--rounds 8] [--changes 1500] [--latency-ms 0] [--items 1000]
                           [--db sqlite|postgres] [--db-b sqlite|postgres] [--rate R]

``A`` and ``B`` are git revisions (a commit, a branch, ``HEAD~1``), or ``.`` for this tree
as it is, uncommitted changes included. Each revision gets a worktree of its own (removed
at the end) and an installation of its own, on SQLite or (``--db postgres``, with
``SYNCGATE_TEST_POSTGRES_URL`` set, as ``source scripts/pg.sh`` does) on a fresh
PostgreSQL database of its own beside that one (``--db-b`` puts B on another database
than A: ``python -m bench.ab HEAD HEAD --db-b postgres`` is what PostgreSQL costs
against SQLite, taken in turns): the simulators and the load
generator come from this tree, the gateway from the revision's, run by this Python (the
revisions' dependencies must be what is installed here). The harness takes the first
CPU, the gateways the second, as ``bench.run`` pins them.

After a warm-up the two installations take turns, in alternating order: each turn sends
``--changes`` signed InboxOps changes at c = 32 and waits until every write is made,
then reads the gateway's CPU time and transaction count. It prints each round and, at
the end, the ratio B / A of the CPU per change, per round: its median, its range and how
many rounds were below 1.

This VM's speed drifts (docs/benchmarks.md, "Caveats"), so a ratio from few rounds is
noisy: eight rounds have shown 0.957 x for a change that gave 0.990 x the other way when
run again. Take A against itself (``python -m bench.ab HEAD HEAD``) to see the noise
before believing a few per cent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.db import fresh_pg_database
from bench.install import Installation, create_items, start_gateway
from bench.load import Cursor
from bench.procs import ROOT, pin_harness
from bench.run import pg_url, phase_ingest

CONCURRENCY = 32
WARM_UP = 300


def log(message: str) -> None:
    print(f"[ab {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def worktree(rev: str, where: Path) -> Iterator[Path]:
    """The tree of ``rev`` (``.``: this one, as it is), checked out under ``where``."""
    if rev == ".":
        yield ROOT
        return
    done = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(where), rev],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench.ab: no worktree for {rev!r}: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
            capture_output=True,
            check=False,
        )


def check_revision(rev: str) -> None:
    """Exit with a reason unless ``rev`` is ``.`` or names a commit of this repository."""
    if rev == ".":
        return
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"bench.ab: {rev!r} is not a commit of {ROOT} (nor '.', this tree)")


def summary(cpu: dict[str, list[float]]) -> dict[str, Any]:
    """B / A per round (the rounds in order), with their median and range."""
    ratios = [b / a for a, b in zip(cpu["A"], cpu["B"], strict=True)]
    return {
        "ratios": [round(r, 3) for r in ratios],
        "median": round(statistics.median(ratios), 3),
        "min": round(min(ratios), 3),
        "max": round(max(ratios), 3),
        "below_1": sum(1 for r in ratios if r < 1),
        "a_ms": round(statistics.median(cpu["A"]), 3),
        "b_ms": round(statistics.median(cpu["B"]), 3),
    }


def summary_line(s: dict[str, Any], labels: dict[str, str]) -> str:
    rounds = len(s["ratios"])
    return (
        f"B / A CPU per change: {s['median']:.3f} x ({s['min']:.3f}-{s['max']:.3f}), "
        f"{s['below_1']} of {rounds} rounds below 1; "
        f"A ({labels['A']}) {s['a_ms']:.3f} ms, B ({labels['B']}) {s['b_ms']:.3f} ms, medians"
    )


async def turn(
    inst: Installation, cursor: Cursor, changes: int, rate: float | None = None
) -> tuple[float, float]:
    """One turn, ``bench.run``'s ingest phase (at c = 32, or offered at ``rate`` changes
    a second): CPU milliseconds and transactions per change, every write made."""
    out = await phase_ingest(inst, cursor, CONCURRENCY, changes, rate=rate)
    if out["accepted"] == 0:
        raise RuntimeError("no change was accepted")
    return out["cpu_ms_per_change"], out["transactions_per_change"]


async def database(kind: str, name: str, wd: Path) -> str:
    """The database URL of installation ``name``: a SQLite file in its work directory,
    or a fresh PostgreSQL database of its own (``syncgate_ab_a``, ``syncgate_ab_b``)."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{wd}/gateway.db"
    url = pg_url()
    assert url is not None  # checked before anything started (main)
    return await fresh_pg_database(url, f"syncgate_ab_{name.lower()}")


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    log(pin_harness(True))
    labels = {"A": args.a, "B": args.b}
    databases = {"A": args.db, "B": args.db_b or args.db}
    with contextlib.ExitStack() as trees:
        insts: dict[str, Installation] = {}
        cursors: dict[str, Cursor] = {}
        try:
            for name, rev in labels.items():
                root = trees.enter_context(worktree(rev, work / f"tree-{name}"))
                wd = work / f"run-{name}"
                wd.mkdir()
                inst, _ = await start_gateway(
                    wd,
                    await database(databases[name], name, wd),
                    label=f"gateway-{name}",
                    root=root,
                )
                insts[name] = inst
                await create_items(inst, args.items)
                cursors[name] = Cursor(inst.items)
                await inst.set_latency(args.latency_ms)
                log(f"{name}: {rev} at {root}, {args.items} work items on {databases[name]}")
            for name, inst in insts.items():
                await turn(inst, cursors[name], WARM_UP)
            cpu: dict[str, list[float]] = {"A": [], "B": []}
            tx: dict[str, list[float]] = {"A": [], "B": []}
            for r in range(args.rounds):
                for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
                    ms, per = await turn(insts[name], cursors[name], args.changes, args.rate)
                    cpu[name].append(ms)
                    tx[name].append(per)
                print(
                    f"round {r + 1}  A {cpu['A'][-1]:.3f} ms  B {cpu['B'][-1]:.3f} ms  "
                    f"B/A {cpu['B'][-1] / cpu['A'][-1]:.3f}   transactions per change "
                    f"A {tx['A'][-1]:.3f}  B {tx['B'][-1]:.3f}",
                    flush=True,
                )
        finally:
            for inst in insts.values():
                await inst.stop()
    result = {
        "a": args.a,
        "b": args.b,
        "db": args.db,
        "db_b": databases["B"],
        "latency_ms": args.latency_ms,
        "changes_per_turn": args.changes,
        "rate": args.rate,
        "cpu_ms": cpu,
        "transactions_per_change": tx,
        **summary(cpu),
    }
    print(summary_line(result, labels), flush=True)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n")[0])
    parser.add_argument("a", metavar="A", help="a git revision, or . for this tree as it is")
    parser.add_argument("b", metavar="B", help="the same, for the other")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of turns (default 8)")
    parser.add_argument("--changes", type=int, default=1500, help="changes a turn (1500)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="vendor latency (0)")
    parser.add_argument("--items", type=int, default=1000, help="work items (1000)")
    parser.add_argument(
        "--rate",
        type=float,
        help="offer the changes at this many a second, one at a time, instead of 32 in"
        " flight: what a change costs at a steady rate",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the gateways' database (default sqlite); postgres needs"
        " SYNCGATE_TEST_POSTGRES_URL (source scripts/pg.sh)",
    )
    parser.add_argument(
        "--db-b",
        choices=("sqlite", "postgres"),
        help="B's database, when it is not A's (--db)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.changes < 1 or args.items < 1:
        parser.error("--rounds, --changes and --items must be at least 1")
    if args.rate is not None and not args.rate > 0:
        parser.error("--rate must be above 0")
    for option, db in (("--db", args.db), ("--db-b", args.db_b)):
        if db == "postgres" and not pg_url():
            parser.error(
                f"{option} postgres needs SYNCGATE_TEST_POSTGRES_URL:"
                " run `source scripts/pg.sh` first"
            )
    for rev in (args.a, args.b):
        check_revision(rev)
    work = Path(tempfile.mkdtemp(prefix="syncgate-ab-"))
    try:
        result = asyncio.run(run(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], check=False)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
