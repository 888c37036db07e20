"""The benchmark: ``python -m bench.run [--quick] [--json out.json] [--repeat N]``.

Runs the gateway (``syncgate serve``) and the baseline (``bench/baseline.py``) against the
vendor simulators (``syncgate simulate``), all real processes on loopback, prints a table
(figure, value, target, ratio to baseline) and writes JSON (bench/results/latest.json).
See docs/benchmarks.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import load, paired, scaleout
from bench.db import fresh_pg_database
from bench.install import (
    SECRETS,
    WRITE_SYSTEMS,
    Installation,
    create_items,
    ensure_nodered,
    start_baseline,
    start_comparison_sims,
    start_floor,
    start_gateway,
    start_nodered,
    workdir,
)
from bench.load import Cursor, closed_loop, open_loop, pct
from bench.procs import ROOT, cpu_s, pin_harness, rss_mb, stop_all
from bench.profile import Profiler

PIN_NOTE = [""]

RESULTS = ROOT / "bench" / "results"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- profiles ---------------------------------------------------------------------------

FULL = {
    "items": 1000,
    "ingest_n": {1: 300, 32: 1000, 128: 1000},
    "probe_n": 400,
    "sustain_s": 30.0,
    "prop_n": 150,
    "prop_rate": 10.0,
    "backlog": 100_000,
    "scale_items": 1_000_000,
    "repeat": 3,
    # rounds of the gateway, the two floors and Node-RED taking turns (bench/paired.py)
    "paired_rounds": 9,
    # rounds of one and two PostgreSQL processes taking turns (bench/scaleout.py)
    "scaleout_rounds": 10,
}
QUICK = {
    # as many items as changes in one ingest run: every change flips a different item, so
    # no system can coalesce two changes of one item into fewer writes (which would make
    # its CPU per change look smaller than the comparison systems', who never coalesce)
    "items": 128,
    "ingest_n": {1: 30, 32: 128, 128: 128},
    "probe_n": 64,
    "sustain_s": 3.0,
    "prop_n": 20,
    "prop_rate": 10.0,
    "backlog": 600,
    "scale_items": 20_000,
    "repeat": 1,
    "paired_rounds": 2,
    "scaleout_rounds": 1,
}


# -- waiting ----------------------------------------------------------------------------


async def wait_quiet(inst: Installation, expect_writes: int | None, deadline_s: float) -> float:
    """Wait until the installation has nothing left to do: the gateway's inbox and outbox
    are empty (or, for the baseline, the simulators saw the expected writes / no new
    writes for a second). Returns seconds waited."""
    start = time.monotonic()
    last = -1
    still = 0.0
    while time.monotonic() - start < deadline_s:
        if inst.server is not None and not inst.server.alive():
            raise RuntimeError(f"{inst.kind} died:\n{inst.server.tail()}")
        count = await inst.write_count()
        if inst.db is not None:
            dirty, pending = await inst.db.depth()
            if dirty == 0 and pending == 0 and (count == last):
                return time.monotonic() - start
        else:
            if expect_writes is not None and count >= expect_writes:
                return time.monotonic() - start
            if count == last:
                still += 0.25
                if still >= 1.5:
                    return time.monotonic() - start
            else:
                still = 0.0
        last = count
        await asyncio.sleep(0.25)
    log(f"warning: {inst.kind} not quiet after {deadline_s:.0f}s")
    return time.monotonic() - start


class Sampler:
    """Samples the server's RSS (and, for the gateway, the queue depth) in the background."""

    def __init__(self, inst: Installation, every_s: float = 0.5) -> None:
        self.inst = inst
        self.every = every_s
        self.samples: list[dict[str, float]] = []
        self._task: asyncio.Task[None] | None = None
        self.t0 = time.monotonic()

    async def _run(self) -> None:
        while True:
            row: dict[str, float] = {
                "t": time.monotonic() - self.t0,
                "rss_mb": rss_mb(self.inst.pid),
            }
            if self.inst.db is not None:
                dirty, pending = await self.inst.db.depth()
                row |= {"dirty": dirty, "pending": pending, "depth": dirty + pending}
            self.samples.append(row)
            await asyncio.sleep(self.every)

    def __enter__(self) -> Sampler:
        self.t0 = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._task is not None:
            self._task.cancel()


def slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


# -- phases -----------------------------------------------------------------------------


async def phase_ingest(
    inst: Installation,
    cursor: Cursor,
    conc: int,
    n: int,
    *,
    settle: Callable[[], Awaitable[None]] | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    """``n`` changes at ``conc`` in flight (or, with ``rate``, offered at that many a
    second, one at a time), drained; ``settle`` runs after the drain and before the CPU
    is read (work the load set off elsewhere, counted in)."""
    await inst.clear_requests()
    gateway = inst.kind == "gateway"
    base = inst.webhook_url().split("/webhooks/", 1)[0]
    tx0 = await scaleout.transactions(inst, base) if gateway else 0.0
    cpu0 = cpu_s(inst.pid)
    if rate is None:
        res = await closed_loop(inst, cursor, conc, n, deadline_s=120)
    else:
        res = await open_loop(inst, cursor, rate, n / rate)
    res["drain_s"] = await wait_quiet(inst, 3 * res["accepted"], 180)
    if settle is not None:
        await settle()
    cpu1 = cpu_s(inst.pid)
    if gateway:  # the database transactions it committed (syncgate_db_transactions_total)
        tx = await scaleout.transactions(inst, base) - tx0
        res["transactions_per_change"] = tx / max(1, res["accepted"])
    writes, reads = await inst.write_and_read_count()
    res["writes"] = writes
    if inst.kind != "gateway":  # the gateway's reads are in its own metrics
        res["reads"] = reads
    res["cpu_ms_per_change"] = (cpu1 - cpu0) * 1000 / max(1, res["accepted"])
    res["rss_mb"] = rss_mb(inst.pid)
    return res


#: The vendors' latency in the slow-vendor phase: a real API answers in tens to hundreds
#: of milliseconds, so the writes in flight finish one by one.
SLOW_VENDOR_MS = 50.0


async def phase_slow(
    inst: Installation, cursor: Cursor, latency_ms: float, n: int
) -> dict[str, Any]:
    """``phase_ingest`` at c = 32 with every vendor answering in ``latency_ms``: what the
    gateway's bookkeeping costs when its writes finish one by one (docs/benchmarks.md,
    "Slow vendors")."""
    await inst.set_latency(latency_ms)
    try:
        res = await phase_ingest(inst, cursor, 32, n)
    finally:
        await inst.set_latency(0)
    return {**res, "latency_ms": latency_ms}


#: The written simulators whose webhooks the echo phase turns on. incident.io sends one for
#: every change to a follow-up, the gateway's own writes included; DevHelm's platform
#: webhooks never cover status-page incidents (on, to show that none come).
ECHO_SYSTEMS = ("devhelm", "incidentio")


async def phase_echo(inst: Installation, cursor: Cursor, n: int) -> dict[str, Any]:
    """``phase_ingest`` at c = 32 with the simulators' webhooks on: each of the gateway's
    writes to incident.io comes back as a signed webhook, as it does from the real
    vendor, and is stored and applied (found unchanged). The CPU and transactions
    per change count those echoes, delivered and drained before the phase ends
    (docs/benchmarks.md, "Echoes of the gateway's own writes")."""
    base = inst.webhook_url().split("/webhooks/", 1)[0]

    async def echoes(on: bool) -> None:
        for s in ECHO_SYSTEMS:
            url = f"{base}/webhooks/{s}" if on else None
            await inst.sim(s, "PUT", "/_sim/webhook", json={"url": url, "secret": SECRETS[s]})

    async def delivered() -> int:  # waits for every pending delivery first
        total = 0
        for s in ECHO_SYSTEMS:
            total += (await inst.sim(s, "POST", "/_sim/webhooks/flush"))["deliveries"]
        return total

    sent = [await delivered()]

    async def echoes_in() -> None:  # every echo delivered, then processed
        sent.append(await delivered())
        await wait_quiet(inst, None, 180)

    await echoes(True)
    try:
        res = await phase_ingest(inst, cursor, 32, n, settle=echoes_in)
    finally:
        await echoes(False)
    res["echoes_per_change"] = (sent[-1] - sent[0]) / max(1, res["accepted"])
    return res


async def phase_sustained(
    inst: Installation, cursor: Cursor, probe_n: int, seconds: float, retry: bool
) -> dict[str, Any]:
    # probe: what the installation delivers end to end when pushed hard (a burst of
    # ``probe_n`` changes, from the first send until the last write is done)
    await inst.clear_requests()
    res = await closed_loop(inst, cursor, 32, probe_n, deadline_s=120)
    await wait_quiet(inst, 3 * res["accepted"], 600)
    capacity = res["accepted"] / (time.perf_counter() - res["started"])
    rate = max(5.0, 0.85 * capacity)
    out: dict[str, Any] = {"probe_capacity": capacity, "probe_accept_rate": res["rate"]}
    for attempt in range(2 if retry else 1):
        run = await _sustain_at(inst, cursor, rate, seconds)
        out |= run
        if run["bounded"] or attempt == 1:
            break
        rate *= 0.7
        log(f"  queue grew at {run['offered_rate']:.0f}/s; retrying at {rate:.0f}/s")
    return out


async def _sustain_at(
    inst: Installation, cursor: Cursor, rate: float, seconds: float
) -> dict[str, Any]:
    await inst.clear_requests()
    cpu0 = cpu_s(inst.pid)
    with Sampler(inst, 0.5) as sampler:
        t0 = time.time()
        res = await open_loop(inst, cursor, rate, seconds)
        t1 = time.time()
        samples = list(sampler.samples)
    cpu1 = cpu_s(inst.pid)
    writes = await inst.writes()
    warm = min(3.0, seconds / 4)
    counts = [sum(1 for w in writes[s] if t0 + warm <= w["at"] <= t1) for s in WRITE_SYSTEMS]
    delivered = min(counts) / max(0.001, t1 - t0 - warm)
    depth_pts = [(s["t"], s["depth"]) for s in samples if "depth" in s and s["t"] >= warm]
    depth_slope = slope(depth_pts)
    depths = [p[1] for p in depth_pts]
    final_depth = depths[-1] if depths else 0
    offered = res["offered"] / res["seconds"]
    if inst.db is not None:
        bounded = depth_slope < 0.02 * offered or final_depth < offered
    else:
        bounded = delivered >= 0.9 * res["accepted"] / res["seconds"]
    drain = await wait_quiet(inst, None, 300)
    return {
        "offered_rate": offered,
        "accepted": res["accepted"],
        "skipped": res["skipped"],
        "errors": res["errors"],
        "delivered_rate": delivered,
        "seconds": res["seconds"],
        "depth_max": max(depths) if depths else None,
        "depth_final": final_depth,
        "depth_slope_per_s": depth_slope,
        "bounded": bounded,
        "drain_after_s": drain,
        "rss_mb_max": max((s["rss_mb"] for s in samples), default=0.0),
        "rss_mb_mean": statistics.fmean([s["rss_mb"] for s in samples]) if samples else 0.0,
        "cpu_ms_per_change": (cpu1 - cpu0) * 1000 / max(1, res["accepted"]),
        "depth_samples": [(round(t, 1), d) for t, d in depth_pts][::2],
    }


def _write_index(writes: dict[str, list[dict[str, Any]]]) -> dict[str, list[float]]:
    index: dict[str, list[float]] = {}
    for recs in writes.values():
        for w in recs:
            index.setdefault(w["path"].rsplit("/", 1)[1], []).append(w["at"])
    for v in index.values():
        v.sort()
    return index


async def refresh_metrics(inst: Installation) -> dict[str, float]:
    """The gateway's reads before writes so far: their count, and the read-to-write
    window (``syncgate_refresh_window_seconds``) as sum, count and cumulative buckets."""
    out: dict[str, float] = {}
    if inst.kind != "gateway" or inst.control is None:
        return out
    text = (await inst.control.get(f"{inst.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith("syncgate_refresh_"):
            continue
        name, _, value = line.rpartition(" ")
        metric, _, labels = name.partition("{")
        key = metric
        if metric.endswith("_bucket"):
            key = "le=" + labels.split('le="', 1)[1].split('"', 1)[0]
        out[key] = out.get(key, 0.0) + float(value)
    return out


def refresh_figures(
    before: dict[str, float], after: dict[str, float], changes: int
) -> dict[str, Any]:
    """Reads per change, and the read-to-write window: mean and the bucket bound that
    holds 99 % of the writes."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    count = delta.get("syncgate_refresh_window_seconds_count", 0.0)
    if not count:
        return {}
    bounds = sorted(
        (float(k[3:]), v) for k, v in delta.items() if k.startswith("le=") and k != "le=+Inf"
    )
    p99 = next((bound for bound, n in bounds if n >= 0.99 * count), float("inf"))
    return {
        "refresh_reads_per_change": delta.get("syncgate_refresh_reads_total", 0.0)
        / max(1, changes),
        "refresh_window_mean_ms": delta["syncgate_refresh_window_seconds_sum"] / count * 1000,
        "refresh_window_p99_le_ms": p99 * 1000,
    }


WRITTEN = ("hookstream", "devhelm", "incidentio")  # the systems each change writes


async def phase_propagation(
    inst: Installation, cursor: Cursor, latency_ms: float, n: int, rate: float
) -> dict[str, Any]:
    await inst.set_latency(latency_ms)
    await inst.clear_requests()
    metrics_before = await refresh_metrics(inst)
    n = min(n, len(inst.items))
    res = await open_loop(inst, cursor, rate, n / rate)
    await wait_quiet(inst, 3 * res["accepted"], 120)
    index = _write_index(await inst.writes())
    lats = []
    by_system: dict[str, list[float]] = {s: [] for s in WRITTEN}
    missing = 0
    for ack, item, sent in res["acks"]:
        done = {}
        for system in WRITTEN:
            ats = [a for a in index.get(getattr(item, system), []) if a >= sent - 0.001]
            if ats:
                done[system] = ats[0] + latency_ms / 1000.0
        if len(done) == 3:
            lats.append(max(done.values()) - ack)
            for system, at in done.items():
                by_system[system].append(at - ack)
        else:
            missing += 1
    await inst.set_latency(0)
    refresh = refresh_figures(metrics_before, await refresh_metrics(inst), len(res["acks"]))
    return {
        **refresh,
        "latency_ms": latency_ms,
        "changes": len(res["acks"]),
        "complete": len(lats),
        "incomplete": missing,
        "p50_ms": pct(lats, 50) * 1000,
        "p99_ms": pct(lats, 99) * 1000,
        "max_ms": max(lats) * 1000 if lats else float("nan"),
        # each system's own write: incident.io's PUT replaces the whole follow-up, so its
        # adapter reads it first whatever refresh_before_write says (two round trips)
        **{f"p50_ms_{system}": pct(v, 50) * 1000 for system, v in by_system.items()},
    }


async def phase_backlog(inst: Installation, cursor: Cursor, n: int) -> dict[str, Any]:
    """Vendors down (every write answered 429, Retry-After 2 s), ``n`` changes queued,
    vendors back: time to drain, gateway RSS through it."""
    assert inst.db is not None
    # every item gets the same odd number of changes, so every item ends flipped and the
    # backlog leaves three writes per item (an even number would cancel out, correctly)
    per_item = max(1, round(n / len(inst.items)))
    per_item += 1 - per_item % 2
    n = per_item * len(inst.items)
    await inst.clear_requests()
    for s in WRITE_SYSTEMS:
        await inst.sim(
            s, "POST", "/_sim/faults", json={"status": 429, "count": 10**9, "retry_after": 2}
        )
    rss_before = rss_mb(inst.pid)
    with Sampler(inst, 0.5) as fill:
        res = await closed_loop(inst, cursor, 32, n, deadline_s=900)
        ingest_s = time.perf_counter() - res["started"]
        t_inbox = time.perf_counter()
        end = time.monotonic() + 3600
        while time.monotonic() < end:
            _, pending = await inst.db.depth()
            if pending == 0:
                break
            await asyncio.sleep(0.5)
        inbox_s = time.perf_counter() - t_inbox
        fill_samples = list(fill.samples)
    dirty, pending = await inst.db.depth()
    rss_queued = rss_mb(inst.pid)
    await inst.clear_requests()
    for s in WRITE_SYSTEMS:
        await inst.sim(s, "DELETE", "/_sim/faults")
    with Sampler(inst, 0.2) as drain:
        t_back = time.perf_counter()
        end = time.monotonic() + 900
        while time.monotonic() < end:
            d, p = await inst.db.depth()
            if d == 0 and p == 0:
                break
            await asyncio.sleep(0.2)
        drain_s = time.perf_counter() - t_back
        samples = list(drain.samples)
    writes = await inst.write_count()
    rss = [s["rss_mb"] for s in samples] or [0.0]
    return {
        "changes_queued": res["accepted"],
        "changes_per_item": per_item,
        "ingest_rate_while_down": res["accepted"] / ingest_s,
        "inbox_after_ingest_s": inbox_s,
        "inbox_rate_while_down": res["accepted"] / (ingest_s + inbox_s),
        "dirty_links_at_return": dirty,
        "pending_events_at_return": pending,
        "drain_s": drain_s,
        "writes_after_return": writes,
        "rss_mb_before": rss_before,
        "rss_mb_peak_while_queueing": max((s["rss_mb"] for s in fill_samples), default=0.0),
        "rss_mb_queued": rss_queued,
        "rss_mb_peak_drain": max(rss),
        "rss_mb_end": rss[-1],
        "rss_drain_slope_mb_per_s": slope([(s["t"], s["rss_mb"]) for s in samples]),
        "dead_links": await inst.db.dead(),
    }


# -- scenarios --------------------------------------------------------------------------


def med(runs: list[dict[str, Any]], key: str) -> float:
    vals = [r[key] for r in runs if isinstance(r.get(key), (int, float)) and not math.isnan(r[key])]
    return statistics.median(vals) if vals else float("nan")


async def warm_up(
    inst: Installation, cursor: Cursor, p: dict[str, Any], urls: list[str] | None = None
) -> int:
    """Not measured: every system starts with the same few changes behind it (imports
    done, connections open, Node-RED's JIT warm), not only the gateway, whose fan-out of
    the work items already exercised it. ``urls``: the webhook URLs to spread them over
    (every process of a scale-out). Returns how many were accepted."""
    warm = min(len(inst.items), p.get("warmup_n", 200))
    log(f"  {inst.kind}: warm-up, {warm} changes at c=8")
    # the logs hold the previous system's writes: counted, they would end the wait at
    # once and the warm-up's late writes would land in the first measured run
    await inst.clear_requests()
    res = await closed_loop(inst, cursor, 8, warm, deadline_s=120, urls=urls)
    await wait_quiet(inst, 3 * res["accepted"], 180)
    return int(res["accepted"])


async def run_suite(
    inst: Installation,
    p: dict[str, Any],
    *,
    concs: tuple[int, ...],
    sustained: bool,
    propagation: tuple[float, ...],
    backlog: bool,
    repeat: int,
    profile: Path | None = None,
    slow: bool = False,
) -> dict[str, Any]:
    cursor = Cursor(inst.items)
    out: dict[str, Any] = {"ingest": {}, "propagation": {}}
    await warm_up(inst, cursor, p)
    for c in concs:
        runs = []
        for r in range(repeat):
            log(f"  {inst.kind}: ingest c={c} run {r + 1}/{repeat}")
            runs.append(await phase_ingest(inst, cursor, c, p["ingest_n"][c]))
        out["ingest"][str(c)] = {
            "runs": runs,
            **{
                k: med(runs, k)
                for k in ("rate", "p50_ms", "p99_ms", "cpu_ms_per_change", "errors", "drain_s")
            },
        }
        if "transactions_per_change" in runs[0]:
            out["ingest"][str(c)]["transactions_per_change"] = med(runs, "transactions_per_change")
    if slow:
        runs = []
        for r in range(repeat):
            log(f"  {inst.kind}: vendors at {SLOW_VENDOR_MS:g} ms, c=32 run {r + 1}/{repeat}")
            runs.append(await phase_slow(inst, cursor, SLOW_VENDOR_MS, p["ingest_n"][32]))
        keys = ("cpu_ms_per_change", "transactions_per_change", "drain_s", "p99_ms", "errors")
        out["slow"] = {
            "runs": runs,
            "latency_ms": SLOW_VENDOR_MS,
            **{k: med(runs, k) for k in keys},
        }
        runs = []
        for r in range(repeat):
            log(f"  {inst.kind}: the vendors' webhooks on, c=32 run {r + 1}/{repeat}")
            runs.append(await phase_echo(inst, cursor, p["ingest_n"][32]))
        keys = ("cpu_ms_per_change", "transactions_per_change", "echoes_per_change", "errors")
        out["echo"] = {"runs": runs, **{k: med(runs, k) for k in keys}}
    for lat in propagation:
        runs = []
        for r in range(repeat):
            log(f"  {inst.kind}: propagation {lat:g} ms run {r + 1}/{repeat}")
            runs.append(await phase_propagation(inst, cursor, lat, p["prop_n"], p["prop_rate"]))
        keys = ["p50_ms", "p99_ms", "incomplete"]
        keys += [k for k in runs[0] if k.startswith(("refresh_", "p50_ms_"))]
        out["propagation"][f"{lat:g}"] = {"runs": runs, **{k: med(runs, k) for k in keys}}
    if sustained:
        runs = []
        profiler = Profiler(inst.pid, profile) if profile is not None else None
        if profiler is not None:
            log(f"  {inst.kind}: py-spy recording pid {inst.pid} through the sustained phase")
            profiler.start()
        try:
            for r in range(repeat):
                log(f"  {inst.kind}: sustained {p['sustain_s']:g} s run {r + 1}/{repeat}")
                runs.append(
                    await phase_sustained(
                        inst, cursor, p["probe_n"], p["sustain_s"], retry=repeat > 1
                    )
                )
        finally:
            if profiler is not None:
                out["profile"] = profiler.stop()
        out["sustained"] = {
            "runs": runs,
            **{
                k: med(runs, k)
                for k in (
                    "delivered_rate",
                    "offered_rate",
                    "rss_mb_max",
                    "depth_max",
                    "depth_slope_per_s",
                    "cpu_ms_per_change",
                )
            },
            "bounded": all(r["bounded"] for r in runs),
        }
    if backlog:
        log(f"  {inst.kind}: backlog of {p['backlog']} changes")
        out["backlog"] = await phase_backlog(inst, cursor, p["backlog"])
    return out


async def gateway_scenario(
    name: str,
    db_url: str,
    p: dict[str, Any],
    wd: Path,
    *,
    filler: int = 0,
    refresh: bool = True,
    **suite: Any,
) -> tuple[dict[str, Any], Installation]:
    log(f"{name}: starting (filler {filler} items)")
    inst, filler_s = await start_gateway(
        wd, db_url, filler_items=filler, label=name, refresh=refresh
    )
    try:
        created = await create_items(inst, p["items"])
        log(f"{name}: {len(inst.items)} work items linked to 4 objects each in {created:.1f}s")
        result = await run_suite(inst, p, **suite)
        result |= {
            "items": len(inst.items),
            "filler_items": filler,
            "filler_load_s": filler_s,
            "setup_s": created,
            "rss_mb_end": rss_mb(inst.pid),
        }
        return result, inst
    except BaseException:
        if inst.server is not None:
            log(f"{name} log tail:\n{inst.server.tail(30)}")
        await inst.stop()
        raise


async def scale_pair(p: dict[str, Any], wd: Path, rep: int) -> dict[str, Any]:
    """Cost per change on an installation of ``scale_items`` work items against one of
    ``items``, both up at once and their c = 32 ingest runs taken in turn (small, big,
    small, big, ...): loading the big one takes minutes, over which this VM's speed
    drifts by more than the 20 % the target allows, so the small installation measured
    at the start of the run is no reference. Propagation (0 ms) on the big one."""
    small, small_inst = await gateway_scenario(
        "gateway-sqlite-reference",
        f"sqlite+aiosqlite:///{wd}/reference.db",
        p,
        wd,
        concs=(),
        sustained=False,
        propagation=(),
        backlog=False,
        repeat=rep,
    )
    try:
        big, big_inst = await gateway_scenario(
            "gateway-sqlite-scale",
            f"sqlite+aiosqlite:///{wd}/scale.db",
            p,
            wd,
            filler=max(0, p["scale_items"] - p["items"]),
            concs=(),
            sustained=False,
            propagation=(0.0,),
            backlog=False,
            repeat=rep,
        )
        try:
            turns = [
                (small, small_inst, Cursor(small_inst.items), []),
                (big, big_inst, Cursor(big_inst.items), []),
            ]
            for r in range(rep):
                for result, inst, cursor, runs in turns:
                    size = result["items"] + result["filler_items"]
                    log(f"  scale: ingest c=32 on {size:,} items, run {r + 1}/{rep}")
                    runs.append(await phase_ingest(inst, cursor, 32, p["ingest_n"][32]))
            keys = ("rate", "p50_ms", "p99_ms", "cpu_ms_per_change", "errors")
            for result, _, _, runs in turns:
                result["ingest"] = {"32": {"runs": runs, **{k: med(runs, k) for k in keys}}}
        finally:
            await big_inst.stop()
    finally:
        await small_inst.stop()
    big["reference"] = small
    return big


def pg_url() -> str | None:
    url = os.environ.get("SYNCGATE_TEST_POSTGRES_URL") or os.environ.get(
        "SYNCGATE_BENCH_POSTGRES_URL"
    )
    return url


async def comparison(name: str, starter: Any, p: dict[str, Any], rep: int) -> dict[str, Any]:
    """One comparison system (floor, Node-RED) on the shared simulators holding copies of
    the gateway's objects: ingest at c = 1, 32, 128 with CPU per change and RSS."""
    log(f"{name}: starting")
    inst = await starter()
    try:
        out = await run_suite(
            inst,
            p,
            concs=(1, 32, 128),
            sustained=False,
            propagation=(),
            backlog=False,
            repeat=rep,
        )
        out["rss_mb_end"] = rss_mb(inst.pid)
        return out
    except BaseException:
        if inst.server is not None:
            log(f"{name} log tail:\n{inst.server.tail(30)}")
        raise
    finally:
        await inst.stop()


async def run_scaleout(args: argparse.Namespace, p: dict[str, Any], wd: Path) -> dict[str, Any]:
    url = pg_url()
    if not url or args.no_postgres or args.no_scaleout:
        why = (
            "no SYNCGATE_TEST_POSTGRES_URL (source scripts/pg.sh)"
            if not url
            else "--no-postgres / --no-scaleout"
        )
        log(f"scale-out skipped: {why}")
        return {"skipped": why}
    db = await fresh_pg_database(url, "syncgate_bench_scaleout")
    log("gateway-postgres scale-out: starting")
    inst, _ = await start_gateway(wd, db, label="gateway-postgres-1", lease_s=scaleout.LEASE_S)
    try:
        profile = wd / "profile-scaleout" if args.profile else None
        return await scaleout.scaleout(inst, p, wait_quiet, log, warm_up, profile)
    except BaseException:
        if inst.server is not None:
            log(f"scale-out log tail:\n{inst.server.tail(30)}")
        raise
    finally:
        await inst.stop()


async def run_paired(args: argparse.Namespace, p: dict[str, Any], wd: Path) -> dict[str, Any]:
    """The gateway, the floor, the floor that reads and Node-RED taking turns at c = 32
    (bench/paired.py)."""
    red_js = None
    if not args.no_nodered:
        red_js, version = nodered()
        if red_js is None:
            log(f"in turns: Node-RED left out: {version}")
    return await paired.paired(p, wd, red_js=red_js, ingest=phase_ingest, warm_up=warm_up, log=log)


@functools.cache
def nodered() -> tuple[Path | None, str]:
    """Node-RED's ``red.js`` and version (installed on first use), or None and why not:
    looked up once per run, for the side by side and the turns alike."""
    return ensure_nodered(log)


async def compare_others(
    args: argparse.Namespace,
    p: dict[str, Any],
    wd: Path,
    sims: Installation,
    results: dict[str, Any],
    lats: tuple[float, ...],
    compare_only: bool,
) -> None:
    """The baseline (every figure but the backlog), then the side by side: the floor, the
    floor that reads, Node-RED; each on the shared simulators ``sims``."""
    rep = p["repeat"]
    log("baseline: starting")
    base = await start_baseline(wd, sims)
    try:
        results["baseline"] = await run_suite(
            base,
            p,
            concs=(1, 32, 128),
            sustained=not compare_only,
            propagation=() if compare_only else lats,
            backlog=False,
            repeat=rep,
        )
    finally:
        await base.stop()

    # side by side: the floor, the floor that reads, Node-RED
    results["floor"] = await comparison("floor", lambda: start_floor(wd, sims), p, rep)
    results["floor_reads"] = await comparison(
        "floor, reads before writes",
        lambda: start_floor(wd, sims, reads=True),
        p,
        rep,
    )
    if args.no_nodered:
        results["nodered"] = {"skipped": "--no-nodered"}
    else:
        red_js, version = nodered()
        if red_js is None:
            log(f"Node-RED skipped: {version}")
            results["nodered"] = {"skipped": version}
        else:
            results["nodered"] = await comparison(
                f"Node-RED {version}",
                lambda: start_nodered(wd, sims, red_js),
                p,
                rep,
            )
            results["nodered"]["version"] = version


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    p = dict(QUICK if args.quick else FULL)
    if args.repeat:
        p["repeat"] = args.repeat
    if args.scale_items is not None:
        p["scale_items"] = args.scale_items
    if args.backlog is not None:
        p["backlog"] = args.backlog
    rep = p["repeat"]
    wd = workdir()
    log(f"work directory {wd}")
    results: dict[str, Any] = {
        "mode": "quick" if args.quick else "full",
        "profile": p,
        "machine": machine(),
        "pinning": PIN_NOTE[0],
    }
    started = time.perf_counter()
    concs = (1, 32, 128)
    lats = (0.0, 20.0)
    keep = args.keep or args.profile
    try:
        if args.only == "scale":
            results["scale_sqlite"] = await scale_pair(p, wd, rep)
            return results
        if args.only == "scaleout":
            results["scaleout_postgres"] = await run_scaleout(args, p, wd)
            return results
        if args.only == "paired":
            results["paired"] = await run_paired(args, p, wd)
            return results
        if args.only == "propagation":
            # the gateway on SQLite with the reads before writes on, then off
            for key, refresh in (("gateway_sqlite", True), ("gateway_sqlite_norefresh", False)):
                results[key], inst = await gateway_scenario(
                    key.replace("_", "-"),
                    f"sqlite+aiosqlite:///{wd}/{key}.db",
                    p,
                    wd,
                    concs=(),
                    sustained=False,
                    propagation=lats,
                    backlog=False,
                    repeat=rep,
                    refresh=refresh,
                )
                await inst.stop()
            return results
        compare_only = args.only == "compare"
        # 1. the gateway on SQLite: every figure (compare: ingest only)
        gw, inst = await gateway_scenario(
            "gateway-sqlite",
            f"sqlite+aiosqlite:///{wd}/gateway.db",
            p,
            wd,
            concs=concs,
            sustained=not compare_only or args.profile,
            propagation=() if compare_only else lats,
            backlog=not (args.no_backlog or compare_only),
            repeat=rep,
            profile=wd / "profile" if args.profile else None,
            slow=not compare_only,
        )
        items = inst.items
        await inst.stop()
        results["gateway_sqlite"] = gw

        # the baseline, the floor and Node-RED, one after another on one set of
        # simulators holding copies of the gateway's objects, with the same load
        log("comparison simulators: starting")
        sims = await start_comparison_sims(wd, items)
        try:
            await compare_others(args, p, wd, sims, results, lats, compare_only)
        finally:
            await sims.stop()
        nr, inst = await gateway_scenario(
            "gateway-sqlite-norefresh",
            f"sqlite+aiosqlite:///{wd}/gateway-norefresh.db",
            p,
            wd,
            concs=concs,
            sustained=False,
            # the propagation target without the read before each write, which alone
            # makes two vendor round trips per write (at 20 ms: 40 ms)
            propagation=() if compare_only else (20.0,),
            backlog=False,
            repeat=rep,
            refresh=False,
        )
        await inst.stop()
        results["gateway_sqlite_norefresh"] = nr

        # 1. ingest on PostgreSQL
        url = pg_url()
        if url and not args.no_postgres:
            db = await fresh_pg_database(url, "syncgate_bench")
            pg, inst = await gateway_scenario(
                "gateway-postgres",
                db,
                p,
                wd,
                concs=(32,) if args.quick or compare_only else concs,
                sustained=not (args.quick or compare_only),
                propagation=() if compare_only else (0.0,),
                backlog=False,
                repeat=rep,
                # its sustained phase, which the full mode runs
                profile=wd / "profile-postgres" if args.profile else None,
                slow=not compare_only,
            )
            await inst.stop()
            results["gateway_postgres"] = pg
        else:
            results["gateway_postgres"] = {
                "skipped": "no SYNCGATE_TEST_POSTGRES_URL (source scripts/pg.sh)"
                if not url
                else "--no-postgres"
            }

        # the CPU ratios again, the gateway, the two floors and Node-RED taking turns
        results["paired"] = (
            {"skipped": "--no-paired"} if args.no_paired else await run_paired(args, p, wd)
        )

        # scale-out: 1 and 2 processes on PostgreSQL, kill -9 of one of 2
        if not compare_only:
            results["scaleout_postgres"] = await run_scaleout(args, p, wd)

        # 5. scale: the same ingest and propagation over a big table
        if not (args.no_scale or compare_only):
            results["scale_sqlite"] = await scale_pair(p, wd, rep)
    finally:
        results["seconds"] = time.perf_counter() - started
        results["workdir"] = str(wd) if keep else None
        if not keep:
            shutil.rmtree(wd, ignore_errors=True)
    return results


def machine() -> dict[str, Any]:
    mem = 0
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) // 1024
    except OSError:
        pass
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "mem_mb": mem,
        "cpu": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit,
        "loadavg": os.getloadavg(),
        "client": "aiohttp" if load.aiohttp else "httpx",
    }


# -- the table ----------------------------------------------------------------------------


def rows(r: dict[str, Any]) -> list[tuple[str, float, str, float | None, str]]:
    """(figure, value, target, ratio to baseline, unit)."""
    out: list[tuple[str, float, str, float | None, str]] = []
    g, b = r.get("gateway_sqlite", {}), r.get("baseline", {})
    pg = r.get("gateway_postgres", {})
    sc = r.get("scale_sqlite", {})

    def ratio(v: float, bv: float | None) -> float | None:
        if bv is None or not bv or math.isnan(bv) or math.isnan(v):
            return None
        return v / bv

    for db, d in (("sqlite", g), ("postgres", pg)):
        for c in ("1", "32", "128"):
            ing = d.get("ingest", {}).get(c)
            if not ing:
                continue
            bi = b.get("ingest", {}).get(c, {})
            out.append(
                (
                    f"ingest {db} c={c} rate",
                    ing["rate"],
                    "",
                    ratio(ing["rate"], bi.get("rate")),
                    "/s",
                )
            )
            out.append(
                (
                    f"ingest {db} c={c} p50",
                    ing["p50_ms"],
                    "",
                    ratio(ing["p50_ms"], bi.get("p50_ms")),
                    "ms",
                )
            )
            out.append(
                (
                    f"ingest {db} c={c} p99",
                    ing["p99_ms"],
                    "< 25 ms" if c == "32" else "",
                    ratio(ing["p99_ms"], bi.get("p99_ms")),
                    "ms",
                )
            )
    for db, d in (("sqlite", g), ("postgres", pg)):
        fast, slow = d.get("ingest", {}).get("32", {}), d.get("slow")
        if "transactions_per_change" in fast:
            tx = fast["transactions_per_change"]
            out.append((f"transactions per change {db} c=32", tx, "", None, ""))
        if slow:
            lat = f"vendors at {slow['latency_ms']:g} ms"
            out.append(
                (
                    f"gateway CPU per change {db} c=32, {lat}",
                    slow["cpu_ms_per_change"],
                    "",
                    None,
                    "ms",
                )
            )
            out.append(
                (
                    f"transactions per change {db} c=32, {lat}",
                    slow["transactions_per_change"],
                    "",
                    None,
                    "",
                )
            )
            out.append((f"drain {db} c=32, {lat}", slow["drain_s"], "", None, "s"))
        echo = d.get("echo")
        if echo:
            on = "the vendors' webhooks on"
            out.append(
                (
                    f"gateway CPU per change {db} c=32, {on}",
                    echo["cpu_ms_per_change"],
                    "",
                    None,
                    "ms",
                )
            )
            out.append(
                (
                    f"transactions per change {db} c=32, {on}",
                    echo["transactions_per_change"],
                    "",
                    None,
                    "",
                )
            )
            out.append((f"echoes per change {db} c=32", echo["echoes_per_change"], "", None, ""))
    for db, d in (("sqlite", g), ("postgres", pg)):
        s = d.get("sustained")
        if s:
            bs = b.get("sustained", {})
            out.append(
                (
                    f"sustained {db} changes/s (3 writes each)",
                    s["delivered_rate"],
                    ">= 1500",
                    ratio(s["delivered_rate"], bs.get("delivered_rate")),
                    "/s",
                )
            )
            out.append(
                (
                    f"sustained {db} queue depth slope",
                    s["depth_slope_per_s"],
                    "bounded" if s["bounded"] else "GROWING",
                    None,
                    "/s",
                )
            )
            out.append((f"sustained {db} gateway RSS max", s["rss_mb_max"], "< 150 MB", None, "MB"))
    big_label = f"sqlite {sc.get('items', 0) + sc.get('filler_items', 0):,} items"
    nr = r.get("gateway_sqlite_norefresh", {})
    for db, d in (
        ("sqlite", g),
        ("sqlite, refresh_before_write off,", nr),
        ("postgres", pg),
        (big_label, sc),
    ):
        for lat, pr in d.get("propagation", {}).items():
            bp = b.get("propagation", {}).get(lat, {})
            tgt = "p50 < 30 ms" if lat == "20" else ""
            out.append(
                (
                    f"propagation {db} vendor {lat} ms p50",
                    pr["p50_ms"],
                    tgt,
                    ratio(pr["p50_ms"], bp.get("p50_ms")),
                    "ms",
                )
            )
            out.append(
                (
                    f"propagation {db} vendor {lat} ms p99",
                    pr["p99_ms"],
                    "",
                    ratio(pr["p99_ms"], bp.get("p99_ms")),
                    "ms",
                )
            )
            if lat != "0":
                for system in WRITTEN:
                    key = f"p50_ms_{system}"
                    if key in pr:
                        label = f"propagation {db} vendor {lat} ms p50 {system} alone"
                        out.append((label, pr[key], "", None, "ms"))
            for key, label, unit in (
                ("refresh_reads_per_change", "reads before writes per change", ""),
                ("refresh_window_mean_ms", "read-to-write window mean", "ms"),
                ("refresh_window_p99_le_ms", "read-to-write window p99 <=", "ms"),
            ):
                if key in pr:
                    out.append(
                        (f"propagation {db} vendor {lat} ms {label}", pr[key], "", None, unit)
                    )
    bl = g.get("backlog")
    if bl:
        out.append((f"backlog {bl['changes_queued']} changes: drain", bl["drain_s"], "", None, "s"))
        out.append(("backlog dirty links at return", bl["dirty_links_at_return"], "", None, ""))
        out.append(
            (
                "backlog gateway RSS peak (drain)",
                bl["rss_mb_peak_drain"],
                "< 150 MB, flat",
                None,
                "MB",
            )
        )
        out.append(
            ("backlog RSS slope during drain", bl["rss_drain_slope_mb_per_s"], "~0", None, "MB/s")
        )
    ref = sc.get("reference") or g  # runs before the reference existed: the 1,000 of the run
    if sc.get("ingest") and ref.get("ingest"):
        small = ref["ingest"]["32"]["cpu_ms_per_change"]
        big = sc["ingest"]["32"]["cpu_ms_per_change"]
        out.append(
            (
                f"cost/change at {sc['items'] + sc['filler_items']:,} items (CPU)",
                big,
                "within 20 %",
                None,
                "ms",
            )
        )
        out.append(
            (
                f"cost/change big vs {ref.get('items', 0):,} items (ratio)",
                big / small,
                "<= 1.20",
                None,
                "x",
            )
        )
        out.append(("scale ingest c=32 rate", sc["ingest"]["32"]["rate"], "", None, "/s"))
        out.append(("scale ingest c=32 p99", sc["ingest"]["32"]["p99_ms"], "< 25 ms", None, "ms"))
    return out


# -- side by side -------------------------------------------------------------------------

SIDE = (
    ("gateway_sqlite", "gateway, SQLite"),
    ("gateway_sqlite_norefresh", "gateway, SQLite, refresh_before_write off"),
    ("gateway_postgres", "gateway, PostgreSQL"),
    ("baseline", "baseline (uvicorn + httpx)"),
    ("nodered", "Node-RED"),
    ("floor", "floor (aiohttp)"),
    ("floor_reads", "floor (aiohttp), reads before writes"),
)


def _ing(r: dict[str, Any], key: str, c: str, fig: str) -> float:
    v = r.get(key, {}).get("ingest", {}).get(c, {}).get(fig)
    return float(v) if isinstance(v, (int, float)) else float("nan")


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else float("nan")


def writes_per_change(d: dict[str, Any]) -> float:
    """Vendor writes per accepted change over the ingest runs (3.00 unless changes to
    one item coalesced, or writes were lost)."""
    runs = [run for c in d.get("ingest", {}).values() for run in c.get("runs", [])]
    acc = sum(run.get("accepted", 0) for run in runs)
    return sum(run.get("writes", 0) for run in runs) / acc if acc else float("nan")


def side_by_side(r: dict[str, Any]) -> dict[str, Any]:
    """The comparison figures and the issue's targets, computed from the results."""
    cpu = {k: _ing(r, k, "32", "cpu_ms_per_change") for k, _ in SIDE}
    g = cpu["gateway_sqlite"]
    return {
        "cpu_ms_per_change_c32": cpu,
        "gateway_vs_nodered": _ratio(g, cpu["nodered"]),
        "gateway_vs_floor": _ratio(g, cpu["floor"]),
        "gateway_vs_floor_reads": _ratio(g, cpu["floor_reads"]),
        "floor_reads_vs_nodered": _ratio(cpu["floor_reads"], cpu["nodered"]),
        "gateway_vs_baseline": _ratio(g, cpu["baseline"]),
        "norefresh_vs_nodered": _ratio(cpu["gateway_sqlite_norefresh"], cpu["nodered"]),
        "norefresh_vs_floor": _ratio(cpu["gateway_sqlite_norefresh"], cpu["floor"]),
        "refresh_cost": _ratio(g, cpu["gateway_sqlite_norefresh"]),
        "postgres_vs_sqlite": _ratio(cpu["gateway_postgres"], g),
        "ingest_p99_c32_ms": _ing(r, "gateway_sqlite", "32", "p99_ms"),
    }


def _f(v: float, fmt: str = ".1f", unit: str = "") -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:{fmt}}{unit}"


def _verdict(v: float, limit: float) -> str:
    if math.isnan(v):
        return "n/a"
    return "met" if v <= limit else "MISSED"


def side_table(r: dict[str, Any]) -> str:
    """Every system on the same simulators and the same signed changes: CPU per change
    (its own process), ingest rate and p99 at c = 1, 32, 128, RSS; then the targets."""
    head = (
        f"{'system':<42} {'CPU/chg':>8} {'rate c=1':>9} {'c=32':>7} {'c=128':>7}"
        f" {'p99 c=1':>8} {'c=32':>7} {'c=128':>7} {'RSS':>7} {'writes':>7}"
    )
    lines = [
        "",
        "side by side: same simulators, same signed changes (CPU per change at c=32, the"
        " process's own user+system; rates /s; p99 ms; RSS MB; vendor writes per change)",
        head,
    ]
    lines.append("-" * len(head))
    for key, label in SIDE:
        d = r.get(key)
        if not isinstance(d, dict):
            continue
        if "skipped" in d:
            lines.append(f"{label:<42} skipped: {d['skipped']}")
            continue
        if key == "nodered" and d.get("version"):
            label = f"Node-RED {d['version']}"
        runs = [run for c in d.get("ingest", {}).values() for run in c.get("runs", [])]
        rss = max((run.get("rss_mb", 0.0) for run in runs), default=float("nan"))
        lines.append(
            f"{label:<42} {_f(_ing(r, key, '32', 'cpu_ms_per_change'), '.2f', ' ms'):>8}"
            f" {_f(_ing(r, key, '1', 'rate'), ',.0f'):>9}"
            f" {_f(_ing(r, key, '32', 'rate'), ',.0f'):>7}"
            f" {_f(_ing(r, key, '128', 'rate'), ',.0f'):>7}"
            f" {_f(_ing(r, key, '1', 'p99_ms')):>8}"
            f" {_f(_ing(r, key, '32', 'p99_ms')):>7}"
            f" {_f(_ing(r, key, '128', 'p99_ms')):>7}"
            f" {_f(rss, '.0f'):>7}"
            f" {_f(writes_per_change(d), '.2f'):>7}"
        )
    sb = side_by_side(r)
    cpu = sb["cpu_ms_per_change_c32"]
    lines.append("")
    lines.append(
        f"gateway CPU per change (sqlite, c=32)  {_f(cpu['gateway_sqlite'], '.2f', ' ms')}"
        f"  x baseline  {_f(sb['gateway_vs_baseline'], '.2f')}"
        f"  x Node-RED  {_f(sb['gateway_vs_nodered'], '.2f')}"
        f"  x floor  {_f(sb['gateway_vs_floor'], '.2f')}"
        f"   targets <= 0.70 x Node-RED: {_verdict(sb['gateway_vs_nodered'], 0.7)},"
        f" <= 2.00 x floor: {_verdict(sb['gateway_vs_floor'], 2.0)}"
    )
    lines.append(
        "gateway CPU per change (sqlite, refresh_before_write off, c=32)"
        f"  {_f(cpu['gateway_sqlite_norefresh'], '.2f', ' ms')}"
        f"  x Node-RED  {_f(sb['norefresh_vs_nodered'], '.2f')}"
        f"  x floor  {_f(sb['norefresh_vs_floor'], '.2f')}"
        f"   (the reads before writes cost x {_f(sb['refresh_cost'], '.2f')})"
    )
    lines.append(
        "gateway CPU per change (sqlite, c=32) against the floor that also reads before"
        f" writing  x {_f(sb['gateway_vs_floor_reads'], '.2f')}"
        f"   (that floor: {_f(cpu['floor_reads'], '.2f', ' ms')},"
        f" x Node-RED {_f(sb['floor_reads_vs_nodered'], '.2f')})"
    )
    lines.append(
        f"gateway CPU per change (postgres, c=32)  {_f(cpu['gateway_postgres'], '.2f', ' ms')}"
        f"  x sqlite  {_f(sb['postgres_vs_sqlite'], '.2f')}"
        f"   target <= 1.30: {_verdict(sb['postgres_vs_sqlite'], 1.3)}"
    )
    lines.append(
        f"gateway ingest p99 (sqlite, c=32)  {_f(sb['ingest_p99_c32_ms'], '.1f', ' ms')}"
        f"   target < 25 ms: {_verdict(sb['ingest_p99_c32_ms'], 25.0 - 1e-9)}"
    )
    if isinstance(r.get("paired"), dict):
        lines.append(paired.paired_line(r["paired"]))
    so = r.get("scaleout_postgres")
    if isinstance(so, dict):
        lines.extend(scaleout_lines(so))
    return "\n".join(lines)


def scaleout_lines(so: dict[str, Any]) -> list[str]:
    if "skipped" in so:
        return [f"scale-out (postgres): skipped ({so['skipped']})"]
    out = []
    one, two = so.get("one", {}), so.get("two", {})
    turns = so.get("in_turns", {})
    ratio = turns.get("median", float("nan"))
    out.append(
        f"scale-out total CPU per change (postgres, c=32)  1 process"
        f" {_f(one.get('cpu_ms_per_change', float('nan')), '.2f', ' ms')}"
        f"  2 processes {_f(two.get('cpu_ms_per_change', float('nan')), '.2f', ' ms')}"
        f"  x {_f(ratio, '.3f')} ({_f((ratio - 1) * 100, '+.1f', ' %')}; rounds"
        f" {_f(turns.get('min', float('nan')), '.3f')}-{_f(turns.get('max', float('nan')), '.3f')})"
        f"   target within 15 %: {_verdict(abs(ratio - 1), 0.15)}"
    )
    out.append(
        f"  (taken in turns: {so.get('rounds', 'n/a')} rounds of one run each, the median"
        " of the rounds' ratios; the CPU figures are medians of the runs)"
    )
    out.append(
        "scale-out database transactions per change  1 process"
        f" {_f(one.get('transactions_per_change', float('nan')), '.2f')}"
        f"  2 processes {_f(two.get('transactions_per_change', float('nan')), '.2f')}"
        "   involuntary context switches per change  1 process"
        f" {_f(one.get('involuntary_switches_per_change', float('nan')), '.2f')}"
        f"  2 processes {_f(two.get('involuntary_switches_per_change', float('nan')), '.2f')}"
    )
    out.append(
        "scale-out user / system CPU per change  1 process"
        f" {_f(one.get('user_ms_per_change', float('nan')), '.2f')}"
        f" / {_f(one.get('system_ms_per_change', float('nan')), '.2f', ' ms')}"
        f"  2 processes {_f(two.get('user_ms_per_change', float('nan')), '.2f')}"
        f" / {_f(two.get('system_ms_per_change', float('nan')), '.2f', ' ms')}"
    )
    prof = so.get("profile")
    if isinstance(prof, dict):
        out.append(
            "scale-out CPU per change by part (each process's CPU split by its py-spy"
            f" samples' shares, {prof['one']['samples']} and {prof['two']['samples']};"
            " the mean of the runs; with --profile every run is sampled, which costs the"
            " processes some CPU of their own)"
        )
        names = list(prof["two"]["parts"])
        names += [n for n in prof["one"]["parts"] if n not in names]
        for name in names:
            a = prof["one"]["parts"].get(name, 0.0)
            b = prof["two"]["parts"].get(name, 0.0)
            out.append(f"  {name:<44} 1 process {a:6.3f} ms  2 processes {b:6.3f} ms  {b - a:+.3f}")
    k = so.get("kill9")
    if isinstance(k, dict):
        ok = k.get("lost", 1) == 0 and k.get("duplicate_objects", 1) == 0
        out.append(
            f"scale-out kill -9 of one of 2 processes mid-run: {k.get('acknowledged', 0)}"
            f" acknowledged, {k.get('lost', 'n/a')} lost, {k.get('duplicate_objects', 'n/a')}"
            f" duplicate objects   target 0 and 0: {'met' if ok else 'MISSED'}"
        )
    return out


def table(r: dict[str, Any]) -> str:
    lines = [f"{'figure':<48} {'value':>12}  {'target':<16} {'x baseline':>10}", "-" * 90]
    for fig, val, tgt, ratio, unit in rows(r):
        v = (
            "n/a"
            if isinstance(val, float) and math.isnan(val)
            else (
                f"{val:,.1f} {unit}".strip()
                if isinstance(val, float)
                else f"{val:,} {unit}".strip()
            )
        )
        lines.append(f"{fig:<48} {v:>12}  {tgt:<16} {'' if ratio is None else f'{ratio:.2f}':>10}")
    if isinstance(r.get("gateway_postgres"), dict) and "skipped" in r["gateway_postgres"]:
        lines.append(f"postgres: skipped ({r['gateway_postgres']['skipped']})")
    if any(isinstance(r.get(key), dict) and r[key].get("ingest") for key, _ in SIDE):
        lines.append(side_table(r))
    else:
        if isinstance(r.get("paired"), dict):
            lines += ["", paired.paired_line(r["paired"])]
        if isinstance(r.get("scaleout_postgres"), dict):  # --only scaleout
            lines += ["", *scaleout_lines(r["scaleout_postgres"])]
    lines.append("")
    lines.append(
        f"total {r.get('seconds', 0):.0f} s, mode {r.get('mode')}, "
        f"{r['machine']['nproc']} cores, Python {r['machine']['python']}, "
        f"commit {r['machine'].get('commit', '')}; {r.get('pinning', '')}"
    )
    for key, db in (("gateway_sqlite", "SQLite"), ("gateway_postgres", "PostgreSQL")):
        prof = r.get(key, {}).get("profile")
        if not isinstance(prof, dict):
            continue
        lines.append("")
        if "top" in prof:
            from bench.profile import format_top

            lines.append(
                f"profile of the gateway ({db}) through the sustained phase,"
                f" {prof['samples']} samples: {prof['svg']}"
            )
            lines.append(format_top(prof["top"], 15))
            lines.append("the project's functions (app/, adapters/) by total:")
            lines.append(format_top(prof.get("project_top", []), 15))
        else:
            lines.append(f"profile ({db}): skipped ({prof.get('skipped')})")
    if r.get("workdir"):
        lines.append(f"work directory kept: {r['workdir']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes (CI smoke, < 90 s)")
    ap.add_argument("--json", default=str(RESULTS / "latest.json"), help="where to write JSON")
    ap.add_argument("--repeat", type=int, default=None, help="runs per figure (median)")
    ap.add_argument("--scale-items", type=int, default=None)
    ap.add_argument("--backlog", type=int, default=None)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--no-scale", action="store_true")
    ap.add_argument("--no-backlog", action="store_true")
    ap.add_argument(
        "--no-nodered", action="store_true", help="leave Node-RED out of the comparison"
    )
    ap.add_argument(
        "--no-scaleout", action="store_true", help="leave out the 1 vs 2 process PostgreSQL run"
    )
    ap.add_argument(
        "--no-paired",
        action="store_true",
        help="leave out the rounds of the gateway, the floors and Node-RED taking turns",
    )
    ap.add_argument(
        "--no-pin",
        action="store_true",
        help="do not pin the load (CPU 0) and the system under test (CPU 1)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="py-spy the gateway through the sustained phase (on SQLite; on PostgreSQL too"
        " in the full mode): flame graph SVG and top functions in the work directory (kept)",
    )
    ap.add_argument(
        "--only",
        choices=("all", "scale", "compare", "scaleout", "propagation", "paired"),
        default="all",
        help="scale: only the big-table installation, its runs in turns with a small one's;"
        " compare: only the side by side (ingest at c = 1, 32, 128 of every system);"
        " scaleout: only the 1 vs 2 PostgreSQL processes and the kill -9; propagation:"
        " only propagation (0 and 20 ms) on SQLite, with the reads before writes on and off;"
        " paired: only the gateway, the floors and Node-RED taking turns at c = 32",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, dbs)")
    args = ap.parse_args(argv)
    PIN_NOTE[0] = pin_harness(not args.no_pin)
    log(PIN_NOTE[0])
    # stop the processes we started even when we are interrupted or timed out
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        results = asyncio.run(main_async(args))
    finally:
        stop_all()
    print(table(results), flush=True)
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
