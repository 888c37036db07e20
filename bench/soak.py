"""The soak run, not part of CI: ``python -m bench.soak [--minutes M] [--db sqlite|postgres|both]``.

One installation per database (``bench/install.py``: the four simulators and ``syncgate
serve`` as real processes): work items made by the shipped fan-out rule, then signed
InboxOps changes offered at half the sustainable rate measured first (``--rate`` sets
it), new hookstream issues opened throughout (so creates run under faults and restarts),
``--fail`` (10 %) of the vendor calls failing (500, 429 with Retry-After, and calls that
hang past the gateway's timeout, injected through ``/_sim/faults`` and met by each call
with that chance), and ``--kills`` (2)
kill -9 restarts of the gateway spread over the run. At the end: the faults stop, every
work item gets one last change (re-sent until acknowledged), the gateway drains, and the
run prints and writes (``bench/results/soak-<db>.json``):

- changes offered and acknowledged;
- acknowledged changes missing: acknowledged deliveries not in the inbox, and vendor
  objects that do not hold their item's last acknowledged status (must be 0);
- duplicate vendor objects and creates missing (each must be 0);
- events of any system not done at the end (failed: given up; must be none), events
  tried more than once (per system, and the most tries one took), dead
  letters; the share of vendor write attempts that failed;
- RSS and open file descriptors at the start and end of each gateway process, and the
  most RSS in a window (must stay under ``RSS_MAX_MB``, the benchmark's target);
- SQLite's write-ahead log at each window (must stay under ``WAL_MAX_MB``);
- the p99 acknowledgement latency per window over time.

PostgreSQL needs ``SYNCGATE_TEST_POSTGRES_URL`` (``source scripts/pg.sh``); a fresh
database is made beside it. docs/reliability.md has the latest figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from adapters import adapter_class
from bench.db import fresh_pg_database
from bench.install import WRITE_SYSTEMS, Installation, create_items, start_gateway, workdir
from bench.install import start_gateway_process as restart_gateway
from bench.load import Cursor, Sender, build_change, closed_loop, open_loop, pct
from bench.procs import ROOT, rss_mb, stop_all
from bench.run import RESULTS, pg_url, wait_quiet
from bench.scaleout import _title, objects

#: The kinds of fault injected, each as likely as the others.
FAULTS = (
    {"status": 500},
    {"status": 429, "retry_after": 1},
    {"timeout_s": 12.0},  # longer than the gateway's timeout_s (10 s): the call times out
)


def log(msg: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


#: The write-ahead log may pass the gateway's limit (``sqlite_wal_limit_mb``, 64 MiB by
#: default) by what a second of writes adds before it is emptied; a soak that sees it
#: over this fails.
WAL_MAX_MB = 256.0

#: The gateway's memory target (docs/benchmarks.md: RSS < 150 MB), held through the soak
#: too: a process over it in any window fails the run. Vendor calls that hang past the
#: timeout once grew it without bound (docs/reliability.md, point 9).
RSS_MAX_MB = 150.0


def wal_mb(db_url: str) -> float | None:
    """The size of SQLite's write-ahead log now (None on PostgreSQL; 0 when there is
    none, as after a clean stop)."""
    if not db_url.startswith("sqlite"):
        return None
    wal = Path(f"{db_url.split(':///', 1)[1]}-wal")
    return round(wal.stat().st_size / 1e6, 1) if wal.exists() else 0.0


async def drained(inst: Installation, deadline_s: float) -> float:
    """Seconds until the gateway's inbox and outbox stay empty for 1.5 s."""
    assert inst.db is not None
    start = time.monotonic()
    quiet_since: float | None = None
    while time.monotonic() - start < deadline_s:
        dirty, pending = await inst.db.depth()
        if dirty == 0 and pending == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 1.5:
                return time.monotonic() - start
        else:
            quiet_since = None
        await asyncio.sleep(0.25)
    raise RuntimeError(f"the gateway did not drain within {deadline_s:.0f} s")


class FetchTally:
    """How the reads of the issues ``open_issues`` opened (the notifications' fetches)
    fared against hookstream's other calls, from the request logs ``fault_pump`` reads:
    the faults meet every call with the same chance, so a share of failed fetches well
    above the other calls' would be the gateway's doing. A call counts as failed when
    answered 429 or 5xx, or still hanging when the log is read (an injected hang)."""

    def __init__(self) -> None:
        self.opened: set[str] = set()
        self.fetches = [0, 0]  # calls, failed
        self.others = [0, 0]

    def add(self, calls: list[dict[str, Any]]) -> None:
        for call in calls:
            issue = call["path"].removeprefix("/v1/issues/")
            kind = self.fetches if call["method"] == "GET" and issue in self.opened else self.others
            kind[0] += 1
            kind[1] += _met_fault(call)

    def summary(self) -> dict[str, Any]:
        return {"notification_fetches": self.fetches, "other_calls": self.others}


def _answered_failure(call: dict[str, Any]) -> bool:
    """Whether a logged call was answered 429 or 5xx."""
    return call["status"] == 429 or call["status"] >= 500


def _met_fault(call: dict[str, Any]) -> bool:
    """Whether a logged call failed: answered 429 or 5xx, or still hanging (status 0)."""
    return call["status"] == 0 or _answered_failure(call)


def armed_faults(share: float) -> list[dict[str, Any]]:
    """The faults ``fault_pump`` queues on each written simulator: the kinds of
    ``FAULTS``, each met by a call with the same chance, so that a call meets one of them
    with the chance ``share`` whenever it comes (the faults are tried in turn and a call
    meets at most one: 1 - (1 - p) ** kinds = share)."""
    p = 1.0 - (1.0 - share) ** (1.0 / len(FAULTS))
    return [{**fault, "chance": p, "count": 1_000_000_000} for fault in FAULTS]


async def fault_pump(
    inst: Installation, share: float, stop: asyncio.Event, tally: FetchTally | None = None
) -> dict[str, Any]:
    """Makes ``share`` of the vendor calls fail until ``stop``: each written simulator
    gets ``armed_faults``, met by chance call by call, so a gateway held back (429s,
    hanging calls, a restart) and making few calls meets the same share as a busy one,
    and a call made just after a quiet spell no more than any other. (Faults queued each
    second for a share of the second before were met by the first calls after: the
    notifications' fetches, often first after a quiet spell, failed two times in three.)
    Every second it reads and clears each simulator's request log. Returns the calls
    made while it ran and those answered 5xx or 429 (a call that hangs is logged before
    it is answered: timeouts are counted from the gateway's write attempts), and the
    calls that met a fault; with ``tally``, hookstream's calls go to it."""
    out: dict[str, Any] = {"faults_met": 0, "vendor_calls": 0, "vendor_calls_failed": 0}
    for system in WRITE_SYSTEMS:
        for fault in armed_faults(share):
            await inst.sim(system, "POST", "/_sim/faults", json=fault)
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            for system in WRITE_SYSTEMS:
                try:
                    await _count_calls(inst, system, out, tally)
                except httpx.TransportError as exc:  # the harness's own call: next second
                    log(f"fault pump: {system}: {type(exc).__name__}; skipped a second")
    finally:
        for system in WRITE_SYSTEMS:
            await inst.sim(system, "DELETE", "/_sim/faults")
    if tally is not None:
        out["hookstream_calls"] = tally.summary()
    return out


async def _count_calls(
    inst: Installation, system: str, out: dict[str, Any], tally: FetchTally | None = None
) -> None:
    """One second of ``fault_pump`` for one simulator: its calls counted, its log cleared."""
    calls = (await inst.sim(system, "GET", "/_sim/requests"))["requests"]
    await inst.sim(system, "DELETE", "/_sim/requests")
    out["vendor_calls"] += len(calls)
    out["vendor_calls_failed"] += sum(_answered_failure(c) for c in calls)
    out["faults_met"] += sum(_met_fault(c) for c in calls)
    if tally is not None and system == "hookstream":
        tally.add(calls)


async def open_issues(
    inst: Installation, every_s: float, stop: asyncio.Event, tally: FetchTally | None = None
) -> int:
    """A new hookstream issue every ``every_s`` (each fans out to three creates)."""
    n = 0
    while not stop.is_set():
        opened = await inst.sim(
            "hookstream",
            "POST",
            "/_sim/seed",
            json={
                "destination_id": f"dst_soak_{n}",
                "destination_name": f"soak-{n}",
                "error_type": "timeout",
            },
        )
        if tally is not None:
            tally.opened.add(opened["issue"]["id"])
        n += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
    return n


async def settle(inst: Installation) -> dict[str, datetime]:
    """One last change per work item, each re-sent (the same delivery) until it is
    acknowledged: afterwards every item's expected status is known for certain. Returns
    each ticket's last change's vendor time."""
    sent: dict[str, datetime] = {}
    async with Sender(inst.webhook_url(), 16) as sender:

        async def last(item: Any) -> None:
            body, headers = build_change(item)
            sent[item.ticket["id"]] = _vendor_time(json.loads(body)["data"]["updated_at"])
            for _ in range(60):
                status, _, _ = await sender.post(body, headers)
                if status == 202:
                    return
                await asyncio.sleep(1)
            raise RuntimeError(f"the last change of {item.ticket['id']} was never acknowledged")

        await asyncio.gather(*(last(item) for item in inst.items))
    return sent


def _vendor_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def soak(kind: str, db_url: str, args: argparse.Namespace, wd: Path) -> dict[str, Any]:
    log(f"{kind}: starting the simulators and the gateway")
    inst, _ = await start_gateway(wd, db_url, label=f"soak-{kind}")
    assert inst.db is not None and inst.server is not None
    port = int(inst.url.rsplit(":", 1)[1])
    try:
        made_s = await create_items(inst, args.items)
        log(f"{kind}: {args.items} work items made in {made_s:.1f} s")
        cursor = Cursor(inst.items)
        rate = args.rate
        if rate is None:
            probe = await closed_loop(inst, cursor, 32, args.probe, deadline_s=120)
            await wait_quiet(inst, 3 * probe["accepted"], 600)
            took = time.perf_counter() - probe["started"]
            capacity = probe["accepted"] / took
            rate = capacity / 2
            log(
                f"{kind}: {probe['accepted']} changes acknowledged at {probe['rate']:.0f}/s, "
                f"all written after {took:.1f} s: sustainable about "
                f"{capacity:.0f} changes/s; soaking at {rate:.0f}/s"
            )
        await inst.clear_requests()
        await drained(inst, 300)

        seconds = args.minutes * 60
        window = max(10.0, seconds / 15)
        kill_at = [seconds * (k + 1) / (args.kills + 1) for k in range(args.kills)]
        lives: list[dict[str, Any]] = [
            {"pid": inst.pid, "rss_mb_start": rss_mb(inst.pid), "fds_start": open_fds(inst.pid)}
        ]
        windows: list[dict[str, Any]] = []
        offered = acknowledged = 0
        stop = asyncio.Event()
        tally = FetchTally()
        pump = asyncio.create_task(fault_pump(inst, args.fail, stop, tally))
        issues = asyncio.create_task(open_issues(inst, args.issue_every, stop, tally))
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds - 0.5:
            span = min(window, seconds - elapsed)
            killer = None
            if kill_at and kill_at[0] < elapsed + span:
                killer = asyncio.create_task(
                    _kill_and_restart(inst, port, kill_at.pop(0) - elapsed, lives)
                )
            res = await open_loop(inst, cursor, rate, span)
            if killer is not None:
                await killer
            offered += res["offered"]
            acknowledged += res["accepted"]
            latencies = [ack - sent for ack, _item, sent in res["acks"]]
            dirty, pending = await inst.db.depth()
            row = {
                "t_s": round(time.monotonic() - start),
                "offered": res["offered"],
                "acknowledged": res["accepted"],
                "p99_ms": round(pct(latencies, 99) * 1000, 1),
                "rss_mb": round(rss_mb(inst.pid), 1),
                "fds": open_fds(inst.pid),
                "backlog": dirty + pending,
                "wal_mb": wal_mb(db_url),
            }
            windows.append(row)
            log(f"{kind}: {row}")
        stop.set()
        calls = await pump
        new_issues = await issues
        log(f"{kind}: load over; faults off; one last change per item")
        last_sent = await settle(inst)
        drain_s = await drained(inst, 900)
        lives[-1] |= {"rss_mb_end": rss_mb(inst.pid), "fds_end": open_fds(inst.pid)}
        checks = await _check(inst, new_issues, last_sent)
        return {
            "database": kind,
            "minutes": args.minutes,
            "rate_per_s": round(rate, 1),
            "offered": offered,
            "acknowledged": acknowledged,
            "kills": args.kills,
            "new_issues": new_issues,
            "drain_s": round(drain_s, 1),
            **calls,
            **checks,
            "processes": lives,
            "windows": windows,
        }
    finally:
        await inst.stop()


async def _kill_and_restart(
    inst: Installation, port: int, after_s: float, lives: list[dict[str, Any]]
) -> None:
    await asyncio.sleep(max(0.0, after_s))
    assert inst.server is not None
    lives[-1] |= {"rss_mb_end": rss_mb(inst.pid), "fds_end": open_fds(inst.pid)}
    log(f"kill -9 of the gateway (pid {inst.pid})")
    inst.server.kill9()
    inst.server, inst.url = await restart_gateway(inst, f"soak-restart-{len(lives)}", port)
    lives.append(
        {"pid": inst.pid, "rss_mb_start": rss_mb(inst.pid), "fds_start": open_fds(inst.pid)}
    )


async def _check(
    inst: Installation, new_issues: int, last_sent: dict[str, datetime]
) -> dict[str, Any]:
    """What the end state says (see the module docstring).

    An item's expected status is its last change's, unless hookstream auto-resolved its
    issue after that change was sent (30 minutes after the issue's last failure, as the
    real vendor does; the 40 items' issues are made when the soak starts): that later
    change in hookstream wins by ``last_writer`` once the gateway sees it, which it does
    only when it reads the issue again (before a write, or by polling: off here), so such
    an item is counted apart and not checked."""
    assert inst.db is not None
    stored = (
        await inst.db.fetch(
            "SELECT count(*), sum(CASE WHEN state = 'done' THEN 1 ELSE 0 END) FROM events "
            "WHERE system = 'inboxops' AND source = 'webhook'"
        )
    )[0]
    objs = await objects(inst)
    maps = {s: adapter_class(s).default_value_maps()["status"] for s in WRITE_SYSTEMS}
    by_id = {s: {str(o["id"]): o for o in objs[s]} for s in objs}
    not_held = auto_resolved = 0
    for item in inst.items:
        wanted = item.status
        issue = by_id["hookstream"].get(item.hookstream, {})
        resolved_at = issue.get("resolved_at")
        if (
            wanted == "open"
            and issue.get("status") == "resolved"
            and resolved_at
            and _vendor_time(resolved_at) > last_sent[item.ticket["id"]]
        ):
            # a later change in hookstream, which the gateway sees only if it reads the
            # issue again (before a write, or by polling: off here): either end is right
            auto_resolved += 1
            continue
        # the changes come as InboxOps webhooks: the three others are written
        for system, ext in (
            ("hookstream", item.hookstream),
            ("devhelm", item.devhelm),
            ("incidentio", item.incidentio),
        ):
            held = by_id[system].get(ext, {}).get("status")
            if not maps[system].holds(held, wanted):
                not_held += 1
    duplicates = 0
    missing_creates = 0
    for system in ("devhelm", "inboxops", "incidentio"):
        titles = Counter(_title(system, o) for o in objs[system])
        duplicates += sum(c - 1 for c in titles.values() if c > 1)
    # an issue whose notification met a killed gateway is re-sent by hookstream on its
    # retry schedule (hours) and found by polling (off in the bench): not expected yet
    deliveries = (await inst.sim("hookstream", "GET", "/_sim/webhooks"))["deliveries"]
    unheard = sum(1 for d in deliveries if not d["delivered"])
    expected = 3 * (len(objs["hookstream"]) - unheard)
    made = sum(len(objs[s]) for s in ("devhelm", "inboxops", "incidentio"))
    missing_creates = max(0, expected - (made - duplicates))
    unfinished = await _unfinished_fan_outs(inst, objs, deliveries)
    attempts = await inst.db.fetch(
        "SELECT count(*), sum(CASE WHEN outcome IN ('retry', 'rate_limited', 'dead') "
        "THEN 1 ELSE 0 END) FROM write_attempts"
    )
    total, failed = int(attempts[0][0]), int(attempts[0][1] or 0)
    # a call cut off by the gateway's timeout is logged by the simulator before it
    # answers (so the pump sees no status); the gateway records it as a failed attempt
    timed_out = await inst.db.fetch(
        "SELECT count(*) FROM write_attempts WHERE error LIKE '%timeout: %'"
    )
    # every acknowledged event of any system ends done: a failed one is a change given up
    undone = await inst.db.fetch(
        "SELECT system, state, count(*) FROM events WHERE state != 'done' "
        "GROUP BY system, state ORDER BY system, state"
    )
    # events tried more than once (a hinted fetch that failed): how many, and the most
    # tries one took (each failure lengthens its backoff, and so the drain)
    retried = await inst.db.fetch(
        "SELECT system, count(*), max(attempts) FROM events WHERE attempts > 1 "
        "GROUP BY system ORDER BY system"
    )
    return {
        "events_not_done": {f"{r[0]} {r[1]}": int(r[2]) for r in undone},
        "events_retried": {r[0]: {"events": int(r[1]), "most_tries": int(r[2])} for r in retried},
        "inbox_events": int(stored[0]),
        "inbox_events_done": int(stored[1] or 0),
        "objects_not_holding_last_change": not_held,
        "auto_resolved_after_last_change": auto_resolved,
        "duplicate_vendor_objects": duplicates,
        "missing_creates": missing_creates,
        "unfinished_fan_outs": unfinished,
        "issue_notifications_not_acknowledged": unheard,
        "dead_letters": await inst.db.dead(),
        "write_attempts": total,
        "write_attempts_failed_share": round(failed / total, 3) if total else 0.0,
        "vendor_calls_timed_out": int(timed_out[0][0]),
    }


async def _unfinished_fan_outs(
    inst: Installation, objs: dict[str, list[dict[str, Any]]], deliveries: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Each hookstream issue whose notification was delivered but that lacks an object (by
    title) in DevHelm, InboxOps or incident.io: which ones, and what the gateway's database
    holds for it (its links, their state and last error), to tell a lost create from one
    still under way."""
    assert inst.db is not None
    delivered: dict[str, list[str]] = {}
    for d in deliveries:
        if d["delivered"]:
            delivered.setdefault(d["body"]["issue"]["id"], []).append(d["id"])
    titles = {s: {_title(s, o) for o in objs[s]} for s in ("devhelm", "inboxops", "incidentio")}
    out = []
    for issue in objs["hookstream"]:
        title = _title("hookstream", issue)
        lacking = [s for s, have in titles.items() if title not in have]
        if not lacking or issue["id"] not in delivered:
            continue
        rows = await inst.db.fetch(
            "SELECT l.system, l.external_id, l.dirty, l.dead, l.attempts, l.last_error, "
            "l.next_attempt_at FROM links l WHERE l.work_item_id IN (SELECT work_item_id "
            f"FROM links WHERE system = 'hookstream' AND external_id = '{issue['id']}')"
        )
        ids = ", ".join(f"'{d}'" for d in delivered[issue["id"]])
        events = await inst.db.fetch(
            "SELECT delivery_id, state, attempts, outcome FROM events "
            f"WHERE system = 'hookstream' AND delivery_id IN ({ids})"
        )
        out.append(
            {
                "issue": issue["id"],
                "title": title,
                "lacking": lacking,
                "links": [[str(v) for v in row] for row in rows],
                "events": [[str(v) for v in row] for row in events],
            }
        )
    return out


def missing_changes(r: dict[str, Any]) -> int:
    """Acknowledged changes missing at the end: not in the inbox, or not held by a vendor."""
    return max(0, r["acknowledged"] - r["inbox_events"]) + r["objects_not_holding_last_change"]


def problems(r: dict[str, Any]) -> int:
    """What fails the run: changes missing, duplicate objects, creates missing, events
    not done (each must be 0), SQLite's write-ahead log over ``WAL_MAX_MB`` in a window
    (its disk must stay bounded), and the gateway over ``RSS_MAX_MB`` in a window."""
    windows = r.get("windows", [])
    wal = [w["wal_mb"] for w in windows if w.get("wal_mb") is not None]
    return (
        missing_changes(r)
        + r["duplicate_vendor_objects"]
        + r["missing_creates"]
        + sum(r["events_not_done"].values())
        + sum(mb > WAL_MAX_MB for mb in wal)
        + sum(w["rss_mb"] > RSS_MAX_MB for w in windows if "rss_mb" in w)
    )


def _hookstream_lines(calls: dict[str, Any] | None) -> list[str]:
    """``FetchTally``'s figures: the notifications' fetches against hookstream's other
    calls."""
    if not calls:
        return []

    def share(pair: list[int]) -> str:
        return f"{pair[1]} of {pair[0]} failed ({pair[1] / max(1, pair[0]):.1%})"

    return [
        f"  hookstream: notification fetches {share(calls['notification_fetches'])}; "
        f"its other calls {share(calls['other_calls'])}"
    ]


def report(r: dict[str, Any]) -> str:
    missing = missing_changes(r)
    met = r.get("faults_met", r["vendor_calls_failed"] + r["vendor_calls_timed_out"])
    lines = [
        f"soak on {r['database']}: {r['minutes']:g} min at {r['rate_per_s']:g} changes/s, "
        f"{r['kills']} kill -9, {r['new_issues']} new issues (fan-out creates)",
        f"  offered {r['offered']}, acknowledged {r['acknowledged']}",
        f"  acknowledged changes missing at the end: {missing} (must be 0); items whose"
        f" hookstream issue auto-resolved after their last change (not checked):"
        f" {r.get('auto_resolved_after_last_change', 0)}",
        f"  duplicate vendor objects: {r['duplicate_vendor_objects']} (must be 0); "
        f"creates missing: {r['missing_creates']} (issue notifications not acknowledged, "
        f"so not expected yet: {r['issue_notifications_not_acknowledged']})",
        *(
            f"    {u['issue']} {u['title']!r} lacks {', '.join(u['lacking'])}; links: "
            f"{u['links']}; its notification's events: {u['events']}"
            for u in r.get("unfinished_fan_outs", [])
        ),
        f"  events not done at the end (must be none): {r.get('events_not_done') or 'none'}",
        "  events tried more than once: "
        + (
            ", ".join(
                f"{system} {v['events']} (at most {v['most_tries']} tries)"
                for system, v in r.get("events_retried", {}).items()
            )
            or "none"
        ),
        f"  dead letters: {r['dead_letters']}; vendor calls under load {r['vendor_calls']}, "
        f"{met / max(1, r['vendor_calls']):.1%} failed ({r['vendor_calls_failed']} answered "
        f"5xx or 429, {met - r['vendor_calls_failed']} hung); write attempts "
        f"{r['write_attempts']}, {r['write_attempts_failed_share']:.1%} failed "
        f"({r['vendor_calls_timed_out']} timed out)",
        *_hookstream_lines(r.get("hookstream_calls")),
        f"  drained {r['drain_s']} s after the load",
    ]
    for n, p in enumerate(r["processes"], 1):
        lines.append(
            f"  gateway process {n}: RSS {p['rss_mb_start']:.0f} -> "
            f"{p.get('rss_mb_end', 0):.0f} MB, fds {p['fds_start']} -> {p.get('fds_end')}"
        )
    if r["windows"]:
        lines.append(
            f"  gateway RSS: at most {max(w['rss_mb'] for w in r['windows'])} MB in a window"
            f" (must stay under {RSS_MAX_MB:g})"
        )
    wal = [w["wal_mb"] for w in r["windows"] if w.get("wal_mb") is not None]
    if wal:
        lines.append(
            f"  write-ahead log: at most {max(wal)} MB in a window (must stay under {WAL_MAX_MB:g})"
        )
    lines.append("  t_s  offered  acked  p99_ms  rss_mb  fds  backlog  wal_mb")
    for w in r["windows"]:
        log_mb = "-" if w.get("wal_mb") is None else w["wal_mb"]
        lines.append(
            f"  {w['t_s']:>4} {w['offered']:>8} {w['acknowledged']:>6} {w['p99_ms']:>7} "
            f"{w['rss_mb']:>7} {w['fds']:>4} {w['backlog']:>8} {log_mb:>7}"
        )
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> int:
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    failed = False
    for kind in kinds:
        wd = workdir()
        if kind == "sqlite":
            url = f"sqlite:///{wd / 'soak.db'}"
        else:
            base = pg_url()
            if not base:
                log("postgres: no SYNCGATE_TEST_POSTGRES_URL (source scripts/pg.sh): skipped")
                failed = True
                continue
            url = await fresh_pg_database(base, "syncgate_soak")
        result = await soak(kind, url, args, wd)
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"soak-{kind}.json"
        out.write_text(json.dumps(result, indent=2))
        print(report(result), flush=True)
        print(f"  (written to {out.relative_to(ROOT)})", flush=True)
        failed = failed or problems(result) > 0
    return 1 if failed else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0, help="length of the load (default 30)")
    p.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    p.add_argument(
        "--rate", type=float, default=None, help="changes/s (default: half the probed capacity)"
    )
    p.add_argument("--fail", type=float, default=0.10, help="share of vendor calls failing (0.10)")
    p.add_argument("--kills", type=int, default=2, help="kill -9 restarts of the gateway (2)")
    p.add_argument("--items", type=int, default=40, help="work items the changes go to (40)")
    p.add_argument("--probe", type=int, default=300, help="changes in the capacity probe (300)")
    p.add_argument("--issue-every", type=float, default=3.0, help="seconds between new issues (3)")
    return p.parse_args(argv)


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse())))
    finally:
        stop_all()
