"""Scale-out on PostgreSQL: one and two ``syncgate serve`` processes sharing one database
under the same load, and a ``kill -9`` of one of the two mid-run.

1. One process: ``n`` changes at c = 32; CPU per change = the process's own CPU; also
   the database transactions it committed per change (``syncgate_db_transactions_total``)
   and how often per change the kernel took the CPU from it while it could still run.
2. A second process (same config, same database, its own port and worker id) started;
   the same ``n`` changes at c = 32 shared out between the two URLs (as a load balancer
   would); CPU per change = both processes' CPU together (and their transactions and
   involuntary context switches together). Target: within 15 % of (1).

   (1) and (2) take turns, ``scaleout_rounds`` rounds of one run each; the figure is
   the median of the rounds' ratios (2) / (1), as for the CPU ratios of
   ``bench/paired.py``. For (1) the second process is paused (SIGSTOP).
3. Vendors slowed (50 ms a request, so writes are in flight), ``n`` changes at c = 32 to
   both processes and, at the same time, ``k`` new hookstream issues (each fanned out
   into three new objects by whichever process claims it). When half the changes are
   acknowledged the second process is killed with SIGKILL and the rest go to the first.
   Then: every acknowledged change must have reached all three of its objects (a write
   logged by the simulators after the change was sent): ``lost`` counts those that did
   not; every new issue must have exactly one DevHelm incident, InboxOps ticket and
   incident.io follow-up (counted in the simulators' ``/_sim/objects``, by title):
   ``duplicate_objects`` counts the extra ones, ``missing_objects`` the absent ones.

Both processes are pinned to the system-under-test CPU (PostgreSQL itself is not pinned).
The installation uses a 6 s lease so the first process takes over the killed one's
claimed work quickly (the shipped default is 60 s).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.install import WRITE_SYSTEMS, Installation, create_items, start_gateway_process
from bench.load import Cursor, closed_loop
from bench.procs import Proc, cpu_split_s, involuntary_switches, rss_mb
from bench.profile import Profiler, parts, py_spy, read_collapsed

LEASE_S = 6.0


async def _quiet(inst: Installation, deadline_s: float, waiter: Any) -> float:
    return float(await waiter(inst, None, deadline_s))


async def ingest_cpu(
    inst: Installation,
    procs: list[Proc],
    urls: list[str],
    cursor: Cursor,
    n: int,
    waiter: Any,
    profile: Path | None = None,
) -> dict[str, Any]:
    """``n`` changes at c = 32 spread over ``urls``; the processes' CPU (user and
    system apart too), database transactions (``syncgate_db_transactions_total``) and
    involuntary context switches (the kernel taking the CPU from a process that could
    still run: time slicing), per change. With ``profile``, py-spy samples each process
    through the run (without pausing it) into ``profile/<process index>/``."""
    await inst.clear_requests()
    bases = [url.split("/webhooks/", 1)[0] for url in urls]
    profilers = [
        Profiler(p.pid, profile / str(i), nonblocking=True) for i, p in enumerate(procs) if profile
    ]
    for profiler in profilers:
        profiler.start()
    tx0 = sum([await transactions(inst, base) for base in bases])
    switches0 = sum(involuntary_switches(p.pid) for p in procs)
    cpu0 = [cpu_split_s(p.pid) for p in procs]
    try:
        res = await closed_loop(inst, cursor, 32, n, deadline_s=120, urls=urls)
        await _quiet(inst, 300, waiter)
    finally:
        cpu1 = [cpu_split_s(p.pid) for p in procs]
        for profiler in profilers:
            profiler.stop()
    switches1 = sum(involuntary_switches(p.pid) for p in procs)
    tx1 = sum([await transactions(inst, base) for base in bases])
    accepted = max(1, res["accepted"])
    res["writes"] = await inst.write_count()
    res["processes"] = len(procs)
    user = sum(b[0] - a[0] for a, b in zip(cpu0, cpu1, strict=True))
    system = sum(b[1] - a[1] for a, b in zip(cpu0, cpu1, strict=True))
    res["cpu_ms_per_change"] = (user + system) * 1000 / accepted
    res["user_ms_per_change"] = user * 1000 / accepted
    res["system_ms_per_change"] = system * 1000 / accepted
    res["cpu_ms_per_change_by_process"] = [
        (sum(b) - sum(a)) * 1000 / accepted for a, b in zip(cpu0, cpu1, strict=True)
    ]
    if profile:
        res["profile"] = str(profile)
    res["transactions_per_change"] = (tx1 - tx0) / accepted
    res["involuntary_switches_per_change"] = (switches1 - switches0) / accepted
    res["rss_mb"] = [rss_mb(p.pid) for p in procs]
    return res


async def transactions(inst: Installation, base_url: str) -> float:
    """A gateway process's ``syncgate_db_transactions_total``."""
    assert inst.control is not None
    for line in (await inst.control.get(f"{base_url}/metrics")).text.splitlines():
        if line.startswith("syncgate_db_transactions_total "):
            return float(line.split()[1])
    raise RuntimeError(f"no syncgate_db_transactions_total at {base_url}/metrics")


async def objects(inst: Installation) -> dict[str, list[dict[str, Any]]]:
    hs = (await inst.sim("hookstream", "GET", "/_sim/objects"))["objects"]
    dh = (await inst.sim("devhelm", "GET", "/_sim/objects"))["objects"]
    ib = (await inst.sim("inboxops", "GET", "/_sim/objects"))["objects"]
    io = (await inst.sim("incidentio", "GET", "/_sim/objects"))["objects"]
    return {"hookstream": hs, "devhelm": dh, "inboxops": ib, "incidentio": io}


class _Acks(list[tuple[Any, float]]):
    """The acknowledged changes; sets ``event`` when ``at`` of them are in."""

    def __init__(self, at: int, event: asyncio.Event) -> None:
        super().__init__()
        self.at, self.event = at, event

    def append(self, value: tuple[Any, float]) -> None:
        super().append(value)
        if len(self) >= self.at:
            self.event.set()


def _title(system: str, obj: dict[str, Any]) -> str:
    return str(obj.get("subject") if system == "inboxops" else obj.get("title"))


async def kill9_run(
    inst: Installation,
    second: Proc,
    urls: list[str],
    cursor: Cursor,
    n: int,
    new_issues: int,
    waiter: Any,
) -> dict[str, Any]:
    before = await objects(inst)
    await inst.clear_requests()
    await inst.set_latency(50)
    half = asyncio.Event()
    acked = _Acks(n // 2, half)
    killed_at: list[float] = []

    async def killer() -> None:
        await half.wait()
        second.kill9()
        killed_at.append(time.time())
        del urls[1:]  # the balancer takes the dead process out

    async def seed() -> None:
        for i in range(new_issues):
            await inst.sim(
                "hookstream",
                "POST",
                "/_sim/seed",
                json={
                    "destination_id": f"dst_scaleout_{i}",
                    "destination_name": f"scaleout-{i}",
                    "error_type": "timeout",
                },
            )
            await asyncio.sleep(0.01)

    kill_task = asyncio.get_running_loop().create_task(killer())
    res, _ = await asyncio.gather(
        closed_loop(inst, cursor, 32, n, deadline_s=120, urls=urls, acked=acked), seed()
    )
    if not kill_task.done():  # fewer than half acknowledged: kill now anyway
        kill_task.cancel()
        second.kill9()
        killed_at.append(time.time())
    drain = await _quiet(inst, 300, waiter)
    await inst.set_latency(0)
    writes = await inst.writes()
    index: dict[str, list[float]] = {}
    for recs in writes.values():
        for w in recs:
            index.setdefault(w["path"].rsplit("/", 1)[1], []).append(w["at"])
    lost = 0
    for item, sent in acked:
        for ext in (item.hookstream, item.devhelm, item.incidentio):
            if not any(at >= sent - 0.001 for at in index.get(ext, [])):
                lost += 1
                break
    after = await objects(inst)
    duplicates = 0
    missing = 0
    per_system: dict[str, dict[str, int]] = {}
    for system, objs in after.items():
        titles = Counter(_title(system, o) for o in objs)
        dup = sum(c - 1 for c in titles.values() if c > 1)
        new = len(objs) - len(before[system])
        duplicates += dup
        missing += max(0, new_issues - new)
        per_system[system] = {"before": len(before[system]), "after": len(objs), "dup": dup}
    creates = {s: sum(1 for w in writes[s] if w["method"] == "POST") for s in WRITE_SYSTEMS}
    return {
        "changes": res["sent"],
        "acknowledged": len(acked),
        "refused_or_failed": res["errors"],
        "killed_after_acks": n // 2,
        "lost": lost,
        "new_issues": new_issues,
        "duplicate_objects": duplicates,
        "missing_objects": missing,
        "objects": per_system,
        "successful_creates": creates,
        "drain_s": drain,
        "dead_links": await inst.db.dead() if inst.db else None,
    }


async def open_transactions(inst: Installation) -> int:
    """Sessions of the installation's PostgreSQL database other than this one that are
    inside a statement or a transaction."""
    assert inst.db is not None
    rows = await inst.db.fetch(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND pid <> pg_backend_pid() AND state IS NOT NULL AND state <> 'idle'"
    )
    return int(rows[0][0])


async def paused(inst: Installation, proc: Proc, tries: int = 100) -> None:
    """Pause ``proc`` (SIGSTOP) at a moment it holds no transaction open, so the other
    process never waits for a lock it holds: paused inside one, it is let go on and
    paused again a moment later. Called while the installation is quiet: nothing is
    claimed, and only an idle round's claim can be in flight."""
    for _ in range(tries):
        proc.pause()
        if not await open_transactions(inst):
            return
        proc.resume()
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{proc.name}: never without an open transaction in {tries} tries")


async def scaleout(
    inst: Installation,
    p: dict[str, Any],
    waiter: Any,
    log: Any,
    warm_up: Any,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Runs on a started PostgreSQL gateway installation (``lease_s=LEASE_S``).
    ``waiter`` and ``warm_up`` are the harness's own (``bench/run.py``).

    One and two processes take turns, round after round (``scaleout_rounds``; the order
    within a round alternates), and the figure held against the target is the median of
    the rounds' ratios: this VM's speed drifts by up to 2x within a run, so runs of one
    configuration and then runs of the other measured the drift as much as the second
    process. The second process is started and warmed up once (connections opened,
    statements prepared, caches filled, as the first's are) and paused (SIGSTOP, at a
    moment it holds no transaction) for each one-process run: it takes no part in it
    and spends no CPU.

    With ``profile``, py-spy samples the processes through every measured run, and
    ``out["profile"]`` splits each configuration's CPU per change by part (``by_part``),
    so what a second process adds can be read part by part. py-spy's sampling costs the
    processes some CPU of their own: the ratios of such a run are not the benchmark's
    figure."""
    assert inst.server is not None
    created = await create_items(inst, p["items"])
    log(f"scale-out: {len(inst.items)} work items in {created:.1f}s")
    cursor = Cursor(inst.items)
    n = min(p["ingest_n"][32], len(inst.items))
    rounds = p["scaleout_rounds"]
    out: dict[str, Any] = {
        "items": len(inst.items),
        "changes_per_run": n,
        "lease_s": LEASE_S,
        "rounds": rounds,
    }
    one_url = [inst.webhook_url()]
    out["warmed_up"] = {"one": await warm_up(inst, cursor, p, one_url)}
    second, url2 = await start_gateway_process(inst, "gateway-postgres-2")
    try:
        urls = [*one_url, f"{url2}/webhooks/inboxops"]
        out["warmed_up"]["two"] = await warm_up(inst, cursor, p, urls)
        one_runs: list[dict[str, Any]] = []
        two_runs: list[dict[str, Any]] = []

        def where(name: str, runs: list[dict[str, Any]]) -> Path | None:
            return profile / f"{name}-{len(runs) + 1}" if profile else None

        async def one() -> None:
            await paused(inst, second)
            try:
                one_runs.append(
                    await ingest_cpu(
                        inst, [inst.server], one_url, cursor, n, waiter, where("one", one_runs)
                    )
                )
            finally:
                second.resume()

        async def two() -> None:
            two_runs.append(
                await ingest_cpu(
                    inst, [inst.server, second], urls, cursor, n, waiter, where("two", two_runs)
                )
            )

        for r in range(rounds):
            for configuration in (one, two) if r % 2 == 0 else (two, one):
                log(
                    f"  scale-out: round {r + 1}/{rounds},"
                    f" {'1 process' if configuration is one else '2 processes'}, c=32"
                )
                await configuration()
        out["one"] = _median(one_runs)
        out["two"] = _median(two_runs)
        pairs = zip(one_runs, two_runs, strict=True)
        ratios = [b["cpu_ms_per_change"] / a["cpu_ms_per_change"] for a, b in pairs]
        out["in_turns"] = {
            "ratios": ratios,
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
        }
        if profile and py_spy() is not None:  # without it, a note was printed per run
            out["profile"] = {
                "one": by_part(one_runs),
                "two": by_part(two_runs),
            }
        log(f"  scale-out: kill -9 of one of 2 processes mid-run ({n} changes)")
        out["kill9"] = await kill9_run(inst, second, list(urls), cursor, n, max(10, n // 8), waiter)
    finally:
        second.stop()
    return out


def by_part(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The runs' CPU per change by part: each process's own CPU per change split by the
    shares of its py-spy samples (``bench.profile.parts``), the processes added, the
    mean over the runs.

    py-spy counts a thread as active while it is runnable, so on a shared core a
    process's samples include its waits for the other to give the core up, wherever it
    was when it lost the core; with two processes on one core that weighs the parts a
    process is preempted in a little more than what they cost."""
    total: Counter[str] = Counter()
    samples = 0
    for run in runs:
        for i, cpu_ms in enumerate(run["cpu_ms_per_change_by_process"]):
            counted = parts(read_collapsed(Path(run["profile"]) / str(i) / "gateway.collapsed"))
            n = sum(counted.values())
            samples += n
            for name, k in counted.items():
                total[name] += cpu_ms * k / (n or 1) / len(runs)
    return {"samples": samples, "parts": {name: ms for name, ms in total.most_common()}}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runs": runs,
        "cpu_ms_per_change": statistics.median(r["cpu_ms_per_change"] for r in runs),
        "user_ms_per_change": statistics.median(r["user_ms_per_change"] for r in runs),
        "system_ms_per_change": statistics.median(r["system_ms_per_change"] for r in runs),
        "rate": statistics.median(r["rate"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "transactions_per_change": statistics.median(r["transactions_per_change"] for r in runs),
        "involuntary_switches_per_change": statistics.median(
            r["involuntary_switches_per_change"] for r in runs
        ),
        "errors": sum(r["errors"] for r in runs),
    }
