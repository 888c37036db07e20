"""The chaos check, a randomized black-box test of the no-lost-edit promise:
``python -m bench.chaos [--seed N] [--seeds K] [--rounds R] [--items I] [--kills]
[--keep DIR] [--db sqlite|postgres] [--processes P]``.

A real ``syncgate serve`` (SQLite, or a fresh PostgreSQL database with ``--db
postgres``) over the DevHelm, InboxOps and incident.io simulators on loopback
(``tests/blackbox.py``); ``--items`` InboxOps tickets fanned out to the other two. Each
round, for a few seconds: "people" edit random fields (status, priority, title, where
the tool has them: docs/field-maps.md) of random objects in random tools at random
moments, each simulator's latency is re-drawn (0-300 ms) every 250 ms, a share of the
vendor calls fail (500, 429 with Retry-After, a hang past the gateway's timeout), and
with ``--kills`` the gateway is killed (-9) at a random moment of every other round and
started again. Then the chaos stops, the gateway settles, and the round is checked:

- converged: every tool's object holds its work item's canonical value of each field
  (through the value maps: ``ValueMap.holds``);
- no edit lost silently: for each item and field, the last person edit by vendor time
  (an edit that changed the object; the simulators share one clock, the machine's) is
  the canonical value, or its loss is explained: its ``conflict_lost`` / ``not_synced``
  entry in the item's history; an edit made inside the documented window between the
  gateway's read of the object and its write landing (docs/architecture.md, "No unseen
  edit overwritten", found in the simulator's request log); an edit that set exactly the
  value the gateway writes there for the item's state at that moment, read as that
  write's echo (docs/architecture.md, "A write's echo is not an edit"); or an edit that
  only put back the value the object held before an edit the gateway never saw (A, B,
  A: nothing changed for a reader that came before and after B); or an earlier edit of
  another tool that the gateway first read together with a later edit of another field
  of the same object (a vendor dates objects, not fields: both carry the later time).
  Each explained loss is printed;
- no duplicate vendor object, no dead letter, and the gateway idle once settled (no
  vendor write in a quiet window).

With ``--processes P`` (above 1 only with ``--db postgres``: refused otherwise, before
anything starts), P ``syncgate serve`` processes share the one database, as production
scales out (docs/deployment.md), each polling every system on its own schedule. The
webhooks are spread over them: every 250 ms, with the latency, InboxOps and incident.io
each pick a process at random for their next deliveries (a delivery keeps its process for
its retries), so both tools' changes arrive at every process, often the same object's at
two. With ``--kills`` each kill round kills (-9) one process drawn at random and starts it
again on its port; the others keep working and take over its claims once they lapse. The
checks are the same as for one process. The processes' draws (which one is killed, where
the webhooks go) come from a generator of their own, so one process plays the people's
choices it always did.

The seed fixes the people's choices, not the timing: a failure prints the seed, the
round, the item's history and the edits, to investigate (docs/reliability.md, "Chaos").
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from adapters import adapter_class
from bench.db import fresh_pg_database
from tests.blackbox import (
    WEBHOOK_SYSTEMS,
    GatewayProcess,
    admin_client,
    free_port,
    seed_fanned_out,
    settled,
    sim_objects,
    simulators,
    write_config,
)

SYSTEMS = ("devhelm", "inboxops", "incidentio")

#: Per tool: canonical field -> (vendor field, the values a person picks from; None: text).
EDITABLE: dict[str, dict[str, tuple[str, list[str] | None]]] = {
    "devhelm": {
        "status": ("status", ["INVESTIGATING", "IDENTIFIED", "MONITORING", "RESOLVED"]),
        "priority": ("impact", ["NONE", "MINOR", "MAJOR", "CRITICAL"]),
        "title": ("title", None),
    },
    "inboxops": {
        "status": ("status", ["open", "in_progress", "waiting", "resolved", "closed"]),
        "priority": ("priority", ["low", "normal", "high", "urgent"]),
        "title": ("subject", None),
    },
    "incidentio": {
        "status": ("status", ["outstanding", "completed", "not_doing"]),
        "title": ("title", None),
    },
}

#: The vendor's change time of an object.
UPDATED = {"devhelm": "updatedAt", "inboxops": "updated_at", "incidentio": "updated_at"}

#: Injected faults, each met by a vendor call with chance FAULT_CHANCE while chaos runs.
FAULT_CHANCE = 0.04
FAULTS = ({"status": 500}, {"status": 429, "retry_after": 1}, {"timeout_s": 3.0})
GATEWAY_TIMEOUT_S = 2.0
NEEDS_POSTGRES = (
    "--processes above 1 needs --db postgres: several gateway processes share one "
    "PostgreSQL database (SQLite serves one process, docs/deployment.md)"
)
MAX_LATENCY_MS = 300.0


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def vendor_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class Edit:
    round: int
    item: int
    system: str
    field: str
    before: Any
    value: Any
    at: float  # the vendor's change time (seconds since the epoch)


@dataclass
class World:
    sims: dict[str, Any]
    control: dict[str, httpx.AsyncClient]
    gateways: list[GatewayProcess]
    admin: httpx.AsyncClient
    config: Path
    workdir: Path
    tickets: list[str]
    objects: list[dict[str, str]] = field(default_factory=list)  # item -> system -> id
    item_ids: list[str] = field(default_factory=list)
    edits: list[Edit] = field(default_factory=list)
    kills: int = 0
    writes_seen: int = 0
    #: per simulator, (since, latency ms) as ``jitter`` set them: a vendor call logged at
    #: ``at`` waits the latency in force then before it is handled
    latency: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: which process a kill round kills and which one each webhook goes to: apart from
    #: ``rng``, so that one process draws the people's choices it always drew
    routing: random.Random = field(default_factory=random.Random)
    processes: int = 1

    def handled_at(self, system: str, at: float) -> float:
        """When a call logged at ``at`` reached the vendor's handler (give or take the
        handler's own few milliseconds)."""
        ms = 0.0
        for since, value in self.latency.get(system, ()):
            if since > at:
                break
            ms = value
        return at + ms / 1000


def maps() -> dict[str, dict[str, Any]]:
    return {s: adapter_class(s).default_value_maps() for s in SYSTEMS}


MAPS = maps()


def to_canonical(system: str, fld: str, value: Any) -> Any:
    if fld == "title":
        return value
    return MAPS[system][fld].to_canonical(value)


def holds(system: str, fld: str, value: Any, canonical: Any) -> bool:
    if fld == "title":
        return bool(value == canonical)
    return bool(MAPS[system][fld].holds(value, canonical))


async def object_of(world: World, system: str, ext: str) -> dict[str, Any]:
    for obj in await sim_objects(world.control[system]):
        if str(obj["id"]) == ext:
            return dict(obj)
    raise AssertionError(f"{system} object {ext} is gone")


async def person_edit(world: World, rng: random.Random, rnd: int, n: int) -> None:
    """One person's edit of a random field of a random object in a random tool."""
    item = rng.randrange(len(world.objects))
    system = rng.choice(SYSTEMS)
    fld = rng.choice(sorted(EDITABLE[system]))
    vendor_field, choices = EDITABLE[system][fld]
    ext = world.objects[item][system]
    before = (await object_of(world, system, ext)).get(vendor_field)
    if choices is None:
        value: Any = f"chaos r{rnd} e{n} {system}"
    else:
        value = rng.choice([c for c in choices if c != before])
    response = await world.control[system].patch(f"/_sim/objects/{ext}", json={vendor_field: value})
    if response.status_code != 200:
        log(f"edit refused: {system} {ext} {vendor_field}={value}: {response.text[:200]}")
        return
    body = response.json()
    obj = body.get("data", body) if system != "incidentio" else body
    if obj.get(vendor_field) != value:
        log(f"edit not taken: {system} {vendor_field}={value}: {obj.get(vendor_field)!r}")
        return
    world.edits.append(
        Edit(rnd, item, system, fld, before, value, vendor_time(obj[UPDATED[system]]))
    )


def route_webhooks(world: World) -> None:
    """Each webhook-sending simulator's next deliveries sent to a process drawn at random
    (with one process, always to it). A delivery keeps its process for its retries."""
    for system in WEBHOOK_SYSTEMS:
        gateway = world.routing.choice(world.gateways)
        world.sims[system].kit.webhook_url = f"{gateway.url}/webhooks/{system}"


async def jitter(world: World, rng: random.Random, stop: asyncio.Event) -> None:
    """Each simulator's latency re-drawn every 250 ms until ``stop``, and with several
    processes, the process each simulator's webhooks go to."""
    try:
        while not stop.is_set():
            for system in SYSTEMS:
                ms = rng.uniform(0, MAX_LATENCY_MS)
                world.sims[system].kit.latency_ms = ms
                world.latency.setdefault(system, []).append((time.time(), ms))
            if len(world.gateways) > 1:
                route_webhooks(world)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    finally:
        for system in SYSTEMS:
            world.sims[system].kit.latency_ms = 0.0
            world.latency.setdefault(system, []).append((time.time(), 0.0))


async def set_faults(world: World, on: bool) -> None:
    for system in SYSTEMS:
        await world.control[system].delete("/_sim/faults")
        if on:
            p = 1.0 - (1.0 - FAULT_CHANCE) ** (1.0 / len(FAULTS))
            for fault in FAULTS:
                response = await world.control[system].post(
                    "/_sim/faults", json={**fault, "chance": p, "count": 1_000_000}
                )
                assert response.status_code == 201, response.text


def start_gateway(world: World, index: int, port: int) -> GatewayProcess:
    """Process ``index`` on ``port`` (its log ``gateway.log``, or ``gateway-<index>.log``
    with several), named after it and the kills so far."""
    several = world.processes > 1
    log_name = f"gateway-{index}.log" if several else "gateway.log"
    worker = f"chaos-p{index}-{world.kills}" if several else f"chaos-{world.kills}"
    return GatewayProcess(world.config, port, worker, world.workdir / log_name)


async def restart(world: World, rnd: int) -> None:
    """kill -9 of one process (drawn at random among several), started again on its port."""
    index = world.routing.randrange(len(world.gateways)) if len(world.gateways) > 1 else 0
    victim = world.gateways[index]
    log(f"round {rnd}: kill -9 of gateway process {index}")
    port = int(victim.url.rsplit(":", 1)[1])
    victim.kill9()
    victim.log.close()
    world.kills += 1
    world.gateways[index] = start_gateway(world, index, port)
    await world.gateways[index].ready()


async def chaos_round(
    world: World, rng: random.Random, rnd: int, edits: int, seconds: float, kill: bool
) -> None:
    stop = asyncio.Event()
    await set_faults(world, True)
    jitterer = asyncio.create_task(jitter(world, rng, stop))
    moments = sorted(rng.uniform(0, seconds) for _ in range(edits))
    kill_at = rng.uniform(0, seconds) if kill else None
    start = time.monotonic()
    try:
        for n, moment in enumerate(moments):
            if kill_at is not None and moment >= kill_at:
                await asyncio.sleep(max(0.0, kill_at - (time.monotonic() - start)))
                await restart(world, rnd)
                kill_at = None
            await asyncio.sleep(max(0.0, moment - (time.monotonic() - start)))
            await person_edit(world, rng, rnd, n)
        await asyncio.sleep(max(0.0, seconds - (time.monotonic() - start)))
        if kill_at is not None:
            await restart(world, rnd)
    finally:
        stop.set()
        await jitterer
        await set_faults(world, False)


def delivered_to(world: World) -> list[int]:
    """How many webhook deliveries each process acknowledged."""
    counts = [0] * len(world.gateways)
    for system in WEBHOOK_SYSTEMS:
        for d in world.sims[system].kit.deliveries:
            for index, gateway in enumerate(world.gateways):
                if d.delivered and d.url.startswith(f"{gateway.url}/"):
                    counts[index] += 1
    return counts


def vendor_writes(world: World) -> int:
    return sum(
        1
        for system in SYSTEMS
        for r in world.sims[system].kit.requests
        if r.method in ("POST", "PUT", "PATCH", "DELETE")
    )


def polled_since(world: World, since: float) -> bool:
    """Whether every simulator has answered a list call (a poll) that came after
    ``since``: DevHelm tells of no change, and a poll may back off after failures."""
    ids = {ext for objects in world.objects for ext in objects.values()}
    for system in SYSTEMS:
        if not any(
            r.method == "GET"
            and r.status == 200
            and r.at > since
            and not any(ext in r.path for ext in ids)
            for r in world.sims[system].kit.requests
        ):
            return False
    return True


async def settle(world: World, timeout_s: float) -> None:
    """Every system polled since the chaos stopped, then nothing queued and no vendor
    write for two seconds."""
    since = time.time()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    quiet_since: float | None = None
    writes = vendor_writes(world)
    while True:
        now = loop.time()
        current = vendor_writes(world)
        if current != writes or not polled_since(world, since) or not await settled(world.admin):
            quiet_since = None
            writes = current
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= 2.0:
            return
        if now > deadline:
            raise AssertionError(f"the gateway did not settle within {timeout_s:.0f} s")
        await asyncio.sleep(0.1)


def explained_by_window(world: World, edit: Edit, ext: str) -> bool:
    """Whether ``edit`` fell between a gateway read of its object and a write of it that
    landed after the edit: the documented window of ``refresh_before_write``."""
    requests = [r for r in world.sims[edit.system].kit.requests if ext in r.path]
    read: float | None = None
    for r in requests:
        handled = world.handled_at(edit.system, r.at)
        if r.method == "GET":
            read = handled
        elif (
            r.method in ("PUT", "PATCH")
            and 200 <= r.status < 300
            and read is not None
            and read - 0.01 <= edit.at <= handled + 0.01  # the handler's own milliseconds
        ):
            return True
    return False


def explained_by_revert(detail: dict[str, Any], edits: list[Edit], edit: Edit) -> bool:
    """Whether ``edit`` put back the value its object held before an edit the gateway
    never recorded (A, B, A): no history entry of that system has B after B's time."""
    earlier = [
        e
        for e in edits
        if e.item == edit.item and e.system == edit.system and e.field == edit.field
        if e.at < edit.at
    ]
    if not earlier:
        return False
    previous = max(earlier, key=lambda e: e.at)
    if to_canonical(edit.system, edit.field, previous.before) != to_canonical(
        edit.system, edit.field, edit.value
    ):
        return False
    seen = to_canonical(previous.system, previous.field, previous.value)
    for h in detail["history"]:
        if (
            h["system"] == edit.system
            and h["field"] == edit.field
            and h["new_value"] == seen
            and vendor_time(h["at"]) >= previous.at
        ):
            return False
    return True


def canonical_at(detail: dict[str, Any], fld: str, at: float) -> Any:
    """The item's ``fld`` as its history had it at ``at`` (the machine's clock)."""
    value = None
    for h in detail["history"]:
        if vendor_time(h["at"]) > at:
            break
        if h["kind"] == "created":
            value = h["new_value"].get(fld)
        elif h["kind"] == "change" and h["field"] == fld:
            value = h["new_value"]
    return value


def explained_by_echo(detail: dict[str, Any], edit: Edit) -> bool:
    """Whether ``edit`` set exactly the value the gateway writes there for the item's
    state at that moment: while that write is claimed and not answered, the edit is read
    as its echo (docs/architecture.md, "A write's echo is not an edit")."""
    if edit.field == "title":
        return edit.value == canonical_at(detail, edit.field, edit.at)
    wanted = canonical_at(detail, edit.field, edit.at)
    return bool(
        wanted is not None and MAPS[edit.system][edit.field].to_vendor(wanted) == edit.value
    )


def explained_by_object_time(
    detail: dict[str, Any], edits: list[Edit], edit: Edit, canonical: Any
) -> bool:
    """Whether the canonical value is an earlier edit's, of another object, that the
    gateway first read together with a later edit of another field of that object: a
    vendor dates an object, not its fields, so both changes carry the later time and
    the earlier one fairly beats ``edit``."""
    for won in edits:
        if won.item != edit.item or won.field != edit.field or won.at >= edit.at:
            continue
        if to_canonical(won.system, won.field, won.value) != canonical:
            continue
        later = [
            e.at
            for e in edits
            if e.item == won.item and e.system == won.system and e.field != won.field
            if e.at > edit.at
        ]
        applied = [
            vendor_time(h["at"])
            for h in detail["history"]
            if h["kind"] == "change" and h["system"] == won.system and h["field"] == won.field
            if h["new_value"] == canonical
        ]
        if later and applied and max(applied) >= min(later):
            return True
    return False


async def check(world: World, rnd: int) -> list[str]:
    problems: list[str] = []
    objs = {s: {str(o["id"]): o for o in await sim_objects(world.control[s])} for s in SYSTEMS}
    for system in SYSTEMS:
        if len(objs[system]) != len(world.objects):
            problems.append(f"{system}: {len(objs[system])} objects for {len(world.objects)} items")
    explained = {
        "conflict_lost": 0,
        "window": 0,
        "revert": 0,
        "echo": 0,
        "object_time": 0,
        "won": 0,
    }
    for item, ids in enumerate(world.objects):
        response = await world.admin.get(
            f"/work-items/{world.item_ids[item]}", params={"history": 1000}
        )
        assert response.status_code == 200, response.text
        detail = response.json()
        canonical = detail["item"]
        for h in detail["history"]:
            if h["kind"] == "dead_letter":
                problems.append(f"item {item}: dead letter: {h['detail']}")
        for link in detail["links"]:
            if link["state"] != "synced":
                problems.append(f"item {item}: {link['system']} link {link['state']}")
        for system in SYSTEMS:
            obj = objs[system].get(ids[system], {})
            for fld, (vendor_field, _) in EDITABLE[system].items():
                if not holds(system, fld, obj.get(vendor_field), canonical[fld]):
                    problems.append(
                        f"item {item}: {system} {vendor_field}={obj.get(vendor_field)!r} "
                        f"does not hold canonical {fld}={canonical[fld]!r}"
                    )
        for fld in ("status", "priority", "title"):
            edits = [e for e in world.edits if e.item == item and e.field == fld]
            if not edits:
                continue
            last = max(edits, key=lambda e: e.at)
            wanted = to_canonical(last.system, fld, last.value)
            if canonical[fld] == wanted:
                explained["won"] += 1
                continue
            lost = [
                h
                for h in detail["history"]
                if h["kind"] in ("conflict_lost", "not_synced")
                and h["system"] == last.system
                and h["field"] == fld
                and h["new_value"] == wanted
            ]
            why = ""
            if lost:
                explained["conflict_lost"] += 1
                why = f"conflict_lost: {lost[-1]['detail']}"
            elif explained_by_window(world, last, ids[last.system]):
                explained["window"] += 1
                why = "window"
            elif explained_by_revert(detail, world.edits, last):
                explained["revert"] += 1
                why = "revert"
            elif explained_by_echo(detail, last):
                explained["echo"] += 1
                why = "echo"
            elif explained_by_object_time(detail, world.edits, last, canonical[fld]):
                explained["object_time"] += 1
                why = "object_time"
            if why:
                log(f"round {rnd}: item {item}: the last {fld} edit {last} lost: {why}")
                continue
            problems.append(
                f"item {item} ({world.item_ids[item]}): the last {fld} edit, "
                f"{last.system} {last.value!r} at {last.at:.3f}, is not canonical "
                f"({canonical[fld]!r}) and its loss is nowhere in the history"
            )
            for e in sorted(edits, key=lambda e: e.at):
                problems.append(f"    edit {e}")
            for h in detail["history"]:
                if h["field"] in (fld, None):
                    problems.append(f"    history {h}")
            for r in world.sims[last.system].kit.requests:  # the gateway's calls on it
                if ids[last.system] in r.path and r.at >= min(e.at for e in edits) - 5:
                    handled = world.handled_at(last.system, r.at)
                    problems.append(
                        f"    {last.system} {r.method} {r.path} logged {r.at:.3f} handled "
                        f"{handled:.3f} -> {r.status} {r.body}"
                    )
    before = vendor_writes(world)
    await asyncio.sleep(2.0)  # a measurement: the gateway is settled already
    if vendor_writes(world) != before:
        problems.append(f"round {rnd}: {vendor_writes(world) - before} vendor writes while idle")
    log(f"round {rnd}: last edits {explained}; problems: {len(problems)}")
    return problems


async def run(
    seed: int,
    rounds: int,
    items: int = 4,
    edits: int = 12,
    seconds: float = 4.0,
    kills: bool = False,
    workdir: Path | None = None,
    database_url: str | None = None,
    processes: int = 1,
) -> list[str]:
    """The chaos check; returns the problems found (empty: every check held). Without
    ``database_url``, a new SQLite file in ``workdir``. ``processes`` above 1 needs a
    PostgreSQL ``database_url`` (SQLite serves one process)."""
    if processes < 1:
        raise ValueError("processes: at least 1")
    if processes > 1 and (database_url is None or database_url.startswith("sqlite")):
        raise ValueError(NEEDS_POSTGRES)
    rng = random.Random(seed)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        url = database_url or f"sqlite:///{workdir / 'gateway.db'}"
        return await _run(rng, seed, rounds, items, edits, seconds, kills, workdir, url, processes)


async def _run(
    rng: random.Random,
    seed: int,
    rounds: int,
    items: int,
    edits: int,
    seconds: float,
    kills: bool,
    workdir: Path,
    database_url: str,
    processes: int,
) -> list[str]:
    ports = [free_port() for _ in range(processes)]
    async with simulators(f"http://127.0.0.1:{ports[0]}") as (sims, control):
        config = workdir / "config.yaml"
        urls = {name: str(client.base_url) for name, client in control.items()}
        polled = {
            s: {"poll_interval_s": 1, "timeout_s": GATEWAY_TIMEOUT_S, "poll_overlap_s": 30}
            for s in SYSTEMS
        }
        write_config(config, database_url, urls, systems=polled)
        async with admin_client(f"http://127.0.0.1:{ports[0]}") as admin:
            world = World(sims, control, [], admin, config, workdir, [])
            world.routing = random.Random(f"{seed} processes")
            world.processes = processes
            try:
                if processes == 1:
                    world.gateways.append(
                        GatewayProcess(config, ports[0], "chaos", workdir / "gateway.log")
                    )
                    await world.gateways[0].ready()
                else:
                    # one at a time: the first migrates the new database
                    for index, port in enumerate(ports):
                        world.gateways.append(start_gateway(world, index, port))
                        await world.gateways[index].ready()
                    route_webhooks(world)
                subjects = [f"chaos {seed} item {i}" for i in range(items)]
                world.tickets = await seed_fanned_out(control, admin, subjects)
                for ticket in world.tickets:
                    found = await admin.get(
                        "/lookup", params={"system": "inboxops", "external_id": ticket}
                    )
                    detail = found.json()
                    world.item_ids.append(detail["item"]["id"])
                    world.objects.append(
                        {link["system"]: link["external_id"] for link in detail["links"]}
                    )
                problems: list[str] = []
                for rnd in range(rounds):
                    kill = kills and rnd % 2 == 1
                    await chaos_round(world, rng, rnd, edits, seconds, kill)
                    await settle(world, 120)
                    found_now = await check(world, rnd)
                    problems += [f"seed {seed} round {rnd}: {p}" for p in found_now]
                    if found_now:
                        break
                log(
                    f"seed {seed}: {rounds} rounds, {len(world.edits)} edits, "
                    f"{world.kills} kills, {vendor_writes(world)} vendor writes"
                )
                if processes > 1:
                    log(f"seed {seed}: webhooks delivered per process {delivered_to(world)}")
                return problems
            finally:
                for gateway in world.gateways:
                    await gateway.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="run this many seeds from --seed")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--items", type=int, default=4)
    parser.add_argument("--edits", type=int, default=12, help="person edits per round")
    parser.add_argument("--seconds", type=float, default=4.0, help="chaos per round")
    parser.add_argument("--kills", action="store_true", help="kill -9 + restart, odd rounds")
    parser.add_argument("--keep", type=Path, default=None, help="work directory to keep")
    parser.add_argument(
        "--db",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="postgres: a fresh database beside SYNCGATE_TEST_POSTGRES_URL (scripts/pg.sh)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="syncgate serve processes on the one database (above 1: --db postgres)",
    )
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes: at least 1")
    if args.processes > 1 and args.db != "postgres":
        parser.error(NEEDS_POSTGRES)
    failed = 0
    for seed in range(args.seed, args.seed + args.seeds):
        workdir = None
        if args.keep is not None:
            workdir = args.keep / f"seed-{seed}"
            workdir.mkdir(parents=True, exist_ok=True)
        url = None
        if args.db == "postgres":
            base = os.environ["SYNCGATE_TEST_POSTGRES_URL"]
            url = asyncio.run(fresh_pg_database(base, f"chaos_{seed}"))
        problems = asyncio.run(
            run(
                seed,
                args.rounds,
                args.items,
                args.edits,
                args.seconds,
                args.kills,
                workdir,
                url,
                args.processes,
            )
        )
        for p in problems:
            print(f"FAIL {p}")
        print(f"seed {seed}: {'FAILED' if problems else 'ok'}", flush=True)
        failed += bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
