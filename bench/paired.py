"""The CPU ratios taken in turns: the gateway, the floor, the floor that reads before
writing and Node-RED all up at once, each taking ``n`` changes at c = 32 in turn, round
after round.

The side by side measures each system in a phase of its own, minutes apart. On a shared
VM the speed of a CPU second drifts by up to 2x over minutes (docs/benchmarks.md,
"Caveats"), so a ratio of two such figures can meet a target in one run and miss it in
the next. Here the systems run one after another within each round (the order turning
from round to round), so a drift falls on all of them alike, and every round gives its
own ratios. The line printed is the median of the rounds' ratios, with the lowest
and highest: the figure to hold against the targets (at most 0.7 x Node-RED and 2 x the
floor).

The gateway (SQLite, reads before writes on) runs on its own simulators; the floors and
Node-RED share a second set, holding copies of the gateway's objects, as in the side by
side. Only the system taking its turn is loaded; the others sit idle, pinned with it.
"""

from __future__ import annotations

import statistics
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.install import (
    Installation,
    create_items,
    start_comparison_sims,
    start_floor,
    start_gateway,
    start_nodered,
)
from bench.load import Cursor

#: The systems taking turns, by their key in the results.
SYSTEMS = ("gateway", "floor", "floor_reads", "nodered")
#: The ratios reported: (numerator, denominator).
RATIOS = (
    ("gateway", "nodered"),
    ("gateway", "floor"),
    ("gateway", "floor_reads"),
    ("floor_reads", "nodered"),
)


def spread(values: list[float]) -> dict[str, float]:
    """Median, lowest and highest of the rounds' figures."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def ratios(rounds: list[dict[str, float]]) -> dict[str, Any]:
    """Each round's ``RATIOS`` of CPU per change, summed up."""
    out: dict[str, Any] = {}
    for one, other in RATIOS:
        per_round = [r[one] / r[other] for r in rounds if r.get(one) and r.get(other)]
        if per_round:
            out[f"{one}_vs_{other}"] = spread(per_round) | {"rounds": per_round}
    for name in SYSTEMS:
        figures = [r[name] for r in rounds if r.get(name)]
        if figures:
            out[f"{name}_cpu_ms"] = spread(figures)
    return out


def tails(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each system's ingest p99 over its turns."""
    out: dict[str, Any] = {}
    for name in SYSTEMS:
        p99 = [run["p99_ms"] for run in runs if run["system"] == name]
        if p99:
            out[f"{name}_p99_ms"] = spread(p99)
    return out


async def paired(
    p: dict[str, Any],
    wd: Path,
    *,
    red_js: Path | None,
    ingest: Callable[[Installation, Cursor, int, int], Awaitable[dict[str, Any]]],
    warm_up: Callable[[Installation, Cursor, dict[str, Any]], Awaitable[None]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """``p["paired_rounds"]`` rounds of ``p["ingest_n"][32]`` changes at c = 32 for each
    system; ``red_js``: Node-RED's entry point (None: Node-RED left out). ``ingest`` and
    ``warm_up`` are the harness's own (``bench/run.py``): the c = 32 phase (CPU per
    change once the system is quiet again) and the warm-up every system gets."""
    rounds_n, n = p["paired_rounds"], p["ingest_n"][32]
    insts: dict[str, Installation] = {}
    sims: Installation | None = None
    try:
        log("in turns: starting the gateway (SQLite)")
        insts["gateway"], _ = await start_gateway(
            wd, f"sqlite+aiosqlite:///{wd}/paired.db", label="paired-gateway"
        )
        await create_items(insts["gateway"], p["items"])
        log("in turns: starting the comparison simulators, the floors and Node-RED")
        sims = await start_comparison_sims(wd, insts["gateway"].items)
        insts["floor"] = await start_floor(wd, sims)
        insts["floor_reads"] = await start_floor(wd, sims, reads=True)
        if red_js is not None:
            insts["nodered"] = await start_nodered(wd, sims, red_js)
        cursors = {name: Cursor(inst.items) for name, inst in insts.items()}
        for name, inst in insts.items():
            await warm_up(inst, cursors[name], p)
        names = list(insts)
        rounds: list[dict[str, float]] = []
        runs: list[dict[str, Any]] = []
        for r in range(rounds_n):
            order = names[r % len(names) :] + names[: r % len(names)]
            log(f"in turns: round {r + 1}/{rounds_n} ({', '.join(order)}), {n} changes each")
            figures: dict[str, float] = {}
            for name in order:
                res = await ingest(insts[name], cursors[name], 32, n)
                figures[name] = res["cpu_ms_per_change"]
                runs.append({"round": r + 1, "system": name, **res})
            rounds.append(figures)
        return {
            "rounds": rounds,
            "runs": runs,
            "changes_per_turn": n,
            **ratios(rounds),
            **tails(runs),
        }
    finally:
        for inst in insts.values():
            await inst.stop()
        if sims is not None:
            await sims.stop()


def paired_line(d: dict[str, Any]) -> str:
    """The lines to hold against the targets: medians of the rounds' ratios, and of the
    gateway's ingest p99."""
    if "skipped" in d:
        return f"gateway CPU per change in turns with the others: skipped ({d['skipped']})"

    def figure(key: str, fmt: str = ".2f", unit: str = "") -> str:
        s = d.get(key)
        return f"{s['median']:{fmt}}{unit} ({s['min']:{fmt}}-{s['max']:{fmt}})" if s else "n/a"

    def verdict(key: str, met: Callable[[float], bool]) -> str:
        s = d.get(key)
        return "n/a" if not s else "met" if met(s["median"]) else "MISSED"

    gw = d.get("gateway_cpu_ms", {}).get("median", float("nan"))
    rounds = len(d.get("rounds", []))
    p99 = "n/a"
    if d.get("gateway_p99_ms"):
        p99 = f"{figure('gateway_p99_ms', '.1f', ' ms')}   target < 25 ms:"
        p99 += f" {verdict('gateway_p99_ms', lambda v: v < 25.0)}"
    return (
        f"gateway CPU per change (sqlite, c=32) in turns with the others, {rounds} rounds"
        f"  {gw:.2f} ms  x Node-RED  {figure('gateway_vs_nodered')}"
        f"  x floor  {figure('gateway_vs_floor')}"
        f"   medians of the rounds' ratios (lowest-highest); targets <= 0.70 x Node-RED:"
        f" {verdict('gateway_vs_nodered', lambda v: v <= 0.7)},"
        f" <= 2.00 x floor: {verdict('gateway_vs_floor', lambda v: v <= 2.0)}\n"
        f"in turns, against the floor that also reads before writing: the gateway x"
        f" {figure('gateway_vs_floor_reads')},"
        f" that floor x Node-RED {figure('floor_reads_vs_nodered')}\n"
        f"gateway ingest p99 (sqlite, c=32) in turns with the others, {rounds} rounds  {p99}"
    )
