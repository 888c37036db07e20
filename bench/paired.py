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

import math
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
from bench.load import Cursor, closed_loop

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
    waiter: Callable[[Installation, int | None, float], Awaitable[float]],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """``p["paired_rounds"]`` rounds of ``p["ingest_n"][32]`` changes at c = 32 for each
    system; ``red_js``: Node-RED's entry point (None: Node-RED left out). ``ingest`` is
    the harness's c = 32 phase (CPU per change once the system is quiet again)."""
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
        warm = min(p["items"], p.get("warmup_n", 200))
        for name, inst in insts.items():
            res = await closed_loop(inst, cursors[name], 8, warm, deadline_s=120)
            await waiter(inst, 3 * res["accepted"], 180)
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

    def ratio(key: str, target: float) -> tuple[str, str]:
        s = d.get(key)
        if not s:
            return "n/a", "n/a"
        text = f"{s['median']:.2f} ({s['min']:.2f}-{s['max']:.2f})"
        return text, "met" if s["median"] <= target else "MISSED"

    nr, nr_verdict = ratio("gateway_vs_nodered", 0.7)
    fl, fl_verdict = ratio("gateway_vs_floor", 2.0)
    fr, _ = ratio("gateway_vs_floor_reads", math.inf)
    fr_nr, _ = ratio("floor_reads_vs_nodered", math.inf)
    gw = d.get("gateway_cpu_ms", {}).get("median", float("nan"))
    rounds = len(d.get("rounds", []))
    p99 = d.get("gateway_p99_ms", {})
    p99_text = (
        f"{p99['median']:.1f} ms ({p99['min']:.1f}-{p99['max']:.1f})   target < 25 ms:"
        f" {'met' if p99['median'] < 25.0 else 'MISSED'}"
        if p99
        else "n/a"
    )
    return (
        f"gateway CPU per change (sqlite, c=32) in turns with the others, {rounds} rounds"
        f"  {gw:.2f} ms  x Node-RED  {nr}  x floor  {fl}"
        f"   medians of the rounds' ratios (lowest-highest); targets <= 0.70 x Node-RED:"
        f" {nr_verdict}, <= 2.00 x floor: {fl_verdict}\n"
        f"in turns, against the floor that also reads before writing: the gateway x {fr},"
        f" that floor x Node-RED {fr_nr}\n"
        f"gateway ingest p99 (sqlite, c=32) in turns with the others, {rounds} rounds"
        f"  {p99_text}"
    )
