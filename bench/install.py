"""One installation under test: the four simulators and either the gateway or the
baseline app, as real processes on loopback, plus the work items the load is sent to.

Every work item links four objects: a hookstream issue (its origin, through the shipped
fan-out rule), a DevHelm incident, an InboxOps ticket and an incident.io follow-up. The
load is a signed InboxOps ``ticket.updated`` webhook that flips the ticket's status
between ``open`` and ``resolved``: that changes the canonical status, which the gateway
writes to the three other systems (hookstream PATCH, DevHelm PUT, incident.io PUT).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from adapters.inboxops.simulator import SUPPORT_INBOX_ID
from adapters.incidentio.simulator import DEFAULT_INCIDENT_ID
from bench.db import DB
from bench.procs import PY, ROOT, Proc, base_env, free_port, wait_http

STATUS_PAGE_ID = "5d1e7c52-1f43-4c6e-9a51-7f3f0d2b9a10"
WRITE_SYSTEMS = ("hookstream", "devhelm", "incidentio")
SYSTEMS = ("hookstream", "devhelm", "inboxops", "incidentio")

KEYS = {
    "hookstream": "hs_bench_" + "0123456789abcdef" * 2,
    "devhelm": "dh_bench_0123456789abcdef0123456789abcdef",
    "inboxops": "ixk_bench_0123456789abcdef0123456789abcdef",
    "incidentio": "inc_bench_0123456789abcdef0123456789abcdef",
}
SECRETS = {
    "hookstream": "hookstream-bench-secret",
    "devhelm": "devhelm-bench-secret-0123456789",
    "inboxops": "whsec_" + base64.b64encode(b"syncgate-bench-inboxops-secret!!").decode(),
    "incidentio": "whsec_" + base64.b64encode(b"syncgate-bench-incidentio-secret").decode(),
}


def gateway_config(
    urls: dict[str, str], db_url: str, *, refresh: bool = True, lease_s: float = 60.0
) -> str:
    """The shipped config.yaml's rules, pointed at the simulators, polling off (the load is
    webhook-driven) and fast retries. ``refresh=False`` sets ``refresh_before_write:
    false`` on every system (no GET before each update), to show what that read costs."""
    systems = []
    for name in SYSTEMS:
        scopes = f'["{STATUS_PAGE_ID}"]' if name == "devhelm" else "[]"
        systems.append(
            f"""  {name}:
    base_url: "{urls[name]}"
    api_key_env: SYNCGATE_{name.upper()}_API_KEY
    webhook_secret_envs: [SYNCGATE_{name.upper()}_WEBHOOK_SECRET]
    poll_interval_s: 0
    scopes: {scopes}
    max_connections: 32
    timeout_s: 10.0
    refresh_before_write: {"true" if refresh else "false"}"""
        )
    systems_yaml = "\n".join(systems)
    return f"""database_url: "{db_url}"
server:
  host: "127.0.0.1"
  port: 0
dispatcher:
  max_attempts: 50
  backoff_base_s: 0.2
  backoff_max_s: 2.0
  concurrency: 64
  lease_s: {lease_s}
systems:
{systems_yaml}
create_rules:
  - name: hookstream-issue-fans-out
    system: hookstream
    match: {{}}
    create_in:
      - system: devhelm
        scope: "{STATUS_PAGE_ID}"
        params: {{notify_subscribers: false}}
      - system: inboxops
        params: {{inbox_id: "{SUPPORT_INBOX_ID}"}}
      - system: incidentio
        scope: "{DEFAULT_INCIDENT_ID}"
fields:
  status:
    conflict: {{policy: last_writer}}
  title:
    owner: hookstream
  priority: {{}}
  description:
    owner: hookstream
"""


@dataclass
class Item:
    """One benchmark work item and the ids of its four objects."""

    ticket: dict[str, Any]
    hookstream: str
    devhelm: str
    incidentio: str
    title: str
    status: str = "open"


def control_client() -> httpx.AsyncClient:
    """The harness's client to the gateways and simulators. It drops an idle connection
    after 1 s: the servers close theirs after 5 s (``server.keep_alive_s``), and a
    request sent on a connection in the instant the server closes it fails with
    "Server disconnected" (httpx's own default is also 5 s)."""
    return httpx.AsyncClient(timeout=60.0, limits=httpx.Limits(keepalive_expiry=1.0))


@dataclass
class Installation:
    kind: str  # gateway | baseline | floor | nodered
    db_url: str
    workdir: Path
    sims: dict[str, Proc] = field(default_factory=dict)
    sim_urls: dict[str, str] = field(default_factory=dict)
    server: Proc | None = None
    url: str = ""
    items: list[Item] = field(default_factory=list)
    db: DB | None = None
    control: httpx.AsyncClient | None = None
    env: dict[str, str] = field(default_factory=dict)
    config: Path | None = None
    log_level: str = "info"
    owns_sims: bool = True  # False: the simulators are shared (see start_comparison_sims)
    #: the tree whose gateway code runs (this one, or a revision's worktree: bench/ab.py)
    root: Path = ROOT

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.pid

    def webhook_url(self) -> str:
        return f"{self.url}/webhooks/inboxops"

    async def sim(self, system: str, method: str, path: str, **kw: Any) -> Any:
        assert self.control is not None
        r = await self.control.request(method, self.sim_urls[system] + path, **kw)
        if r.status_code >= 300:
            raise RuntimeError(f"{system} {method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    async def set_latency(self, ms: float) -> None:
        for s in WRITE_SYSTEMS:
            await self.sim(s, "PUT", "/_sim/latency", json={"ms": ms})

    async def clear_requests(self) -> None:
        for s in WRITE_SYSTEMS:
            await self.sim(s, "DELETE", "/_sim/requests")

    async def requests(self) -> dict[str, list[dict[str, Any]]]:
        """The requests each written simulator logged."""
        return {s: (await self.sim(s, "GET", "/_sim/requests"))["requests"] for s in WRITE_SYSTEMS}

    async def writes(self) -> dict[str, list[dict[str, Any]]]:
        """Successful write requests logged by each written simulator."""
        return {s: [r for r in reqs if is_write(r)] for s, reqs in (await self.requests()).items()}

    async def write_count(self) -> int:
        return sum(len(v) for v in (await self.writes()).values())

    async def write_and_read_count(self) -> tuple[int, int]:
        """Successful writes, and successful reads of one object (GET), logged by the
        written simulators (one fetch of their logs)."""
        logged = [r for reqs in (await self.requests()).values() for r in reqs]
        reads = sum(1 for r in logged if r["method"] == "GET" and 200 <= r["status"] < 300)
        return sum(1 for r in logged if is_write(r)), reads

    async def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        for p in self.sims.values() if self.owns_sims else ():
            p.stop()
        if self.control is not None:
            await self.control.aclose()
        if self.db is not None:
            await self.db.close()


def is_write(request: dict[str, Any]) -> bool:
    """A successful write in a simulator's request log."""
    return request["method"] in ("PUT", "PATCH", "POST") and 200 <= request["status"] < 300


async def start_sims(inst: Installation, gateway_port: int) -> None:
    env = base_env()
    for name in SYSTEMS:
        port = free_port()
        argv = [
            PY,
            "-m",
            "app.cli",
            "simulate",
            name,
            "--port",
            str(port),
            "--api-key",
            KEYS[name],
            "--webhook-secret",
            SECRETS[name],
        ]
        if name == "hookstream" and inst.kind == "gateway":
            # issue_opened notifications start the fan-out; the others send no webhooks
            argv += ["--webhook-url", f"http://127.0.0.1:{gateway_port}/webhooks/hookstream"]
        inst.sims[name] = Proc(f"{inst.kind}-sim-{name}", argv, env, inst.workdir)
        inst.sim_urls[name] = f"http://127.0.0.1:{port}"
    for name, proc in inst.sims.items():
        await wait_http(inst.sim_urls[name] + "/_sim/requests", proc)
    await inst.sim(
        "devhelm",
        "POST",
        "/_sim/status-pages",
        json={"id": STATUS_PAGE_ID, "name": "Bench status", "incidentMode": "MANUAL"},
    )


async def start_gateway(
    workdir: Path,
    db_url: str,
    *,
    filler_items: int = 0,
    log_level: str = "info",
    label: str = "gateway",
    refresh: bool = True,
    lease_s: float = 60.0,
    root: Path = ROOT,
) -> tuple[Installation, float]:
    """Simulators + ``syncgate serve``, which migrates the database (with filler rows,
    ``syncgate migrate`` first, then the rows). Returns the installation and the seconds
    spent loading filler rows. ``root``: the tree the gateway's code comes from (the
    simulators always come from this one)."""
    inst = Installation(kind="gateway", db_url=db_url, workdir=workdir, root=root)
    inst.control = control_client()
    port = free_port()
    await start_sims(inst, port)
    env = base_env(root)
    env["SYNCGATE_DATABASE_URL"] = db_url
    env["SYNCGATE_ADMIN_KEY"] = "bench-admin-key"
    for name in SYSTEMS:
        env[f"SYNCGATE_{name.upper()}_API_KEY"] = KEYS[name]
        env[f"SYNCGATE_{name.upper()}_WEBHOOK_SECRET"] = SECRETS[name]
    cfg = workdir / f"{label}.yaml"
    cfg.write_text(gateway_config(inst.sim_urls, db_url, refresh=refresh, lease_s=lease_s))
    inst.db = DB(db_url)
    filler_s = 0.0
    if filler_items:  # they need the schema first; else `syncgate serve` migrates at start
        await _migrate(cfg, env, root)
        filler_s = await inst.db.load_filler(filler_items)
    inst.env, inst.config, inst.log_level = env, cfg, log_level
    inst.server, inst.url = await start_gateway_process(inst, label, port)
    return inst, filler_s


async def _migrate(cfg: Path, env: dict[str, str], root: Path) -> None:
    """``syncgate migrate``: the schema, for filler rows loaded before the gateway starts."""
    migrate = await asyncio.create_subprocess_exec(
        PY,
        "-m",
        "app.cli",
        "migrate",
        "--config",
        str(cfg),
        env=env,
        cwd=root,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await migrate.communicate()
    if migrate.returncode != 0:
        raise RuntimeError(f"migrate failed: {err.decode()[-2000:]}")


async def start_gateway_process(
    inst: Installation, label: str, port: int | None = None
) -> tuple[Proc, str]:
    """One more ``syncgate serve`` process of this installation (same config and
    database), pinned with the system under test. Returns it and its base URL."""
    assert inst.config is not None
    port = port or free_port()
    proc = Proc(
        label,
        [
            PY,
            "-m",
            "app.cli",
            "serve",
            "--config",
            str(inst.config),
            "--port",
            str(port),
            "--worker-id",
            f"bench-{label}",
            "--log-level",
            inst.log_level,
        ],
        inst.env,
        inst.workdir,
        role="sut",
        cwd=inst.root,
    )
    url = f"http://127.0.0.1:{port}"
    await wait_http(url + "/healthz", proc, 60)
    return proc, url


async def create_items(inst: Installation, n: int, deadline_s: float = 300.0) -> float:
    """Open ``n`` hookstream issues; the gateway's fan-out rule links each to a new DevHelm
    incident, InboxOps ticket and incident.io follow-up. Returns seconds taken."""
    assert inst.db is not None and inst.control is not None
    start = time.perf_counter()
    sem = asyncio.Semaphore(16)

    async def seed(i: int) -> None:
        async with sem:
            await inst.sim(
                "hookstream",
                "POST",
                "/_sim/seed",
                json={
                    "destination_id": f"dst_bench_{i}",
                    "destination_name": f"bench-{i}",
                    "error_type": "timeout",
                },
            )

    await asyncio.gather(*(seed(i) for i in range(n)))
    end = time.monotonic() + deadline_s
    while True:
        rows = await inst.db.bench_links()
        made = sum(1 for r in rows if r[2] is not None)
        dirty, pending = await inst.db.depth()
        if made >= 4 * n and dirty == 0 and pending == 0:
            break
        if await inst.db.dead():
            raise RuntimeError(
                f"fan-out dead-lettered writes; see {inst.server.log if inst.server else ''}"
            )
        if time.monotonic() > end:
            raise RuntimeError(f"fan-out incomplete: {made}/{4 * n} objects, {dirty} dirty")
        if inst.server is not None and not inst.server.alive():
            raise RuntimeError(f"gateway died:\n{inst.server.tail()}")
        await asyncio.sleep(0.5)
    took = time.perf_counter() - start
    await load_items(inst, rows)
    return took


async def load_items(inst: Installation, rows: list[tuple[str, str, str | None]]) -> None:
    by_item: dict[str, dict[str, str]] = {}
    for item_id, system, ext in rows:
        assert ext is not None
        by_item.setdefault(item_id, {})[system] = ext
    tickets = {t["id"]: t for t in (await inst.sim("inboxops", "GET", "/_sim/objects"))["objects"]}
    follow_ups = {
        f["id"]: f for f in (await inst.sim("incidentio", "GET", "/_sim/objects"))["objects"]
    }
    inst.items = []
    for ids in sorted(by_item.values(), key=lambda d: d["inboxops"]):
        inst.items.append(
            Item(
                ticket=tickets[ids["inboxops"]],
                hookstream=ids["hookstream"],
                devhelm=ids["devhelm"],
                incidentio=ids["incidentio"],
                title=follow_ups[ids["incidentio"]]["title"],
                status=tickets[ids["inboxops"]]["status"],
            )
        )


async def start_comparison_sims(workdir: Path, items: list[Item]) -> Installation:
    """Four fresh simulators holding copies of ``items``' objects, shared by the comparison
    systems in turn (``start_plain(kind, workdir, sims)``): each system finds the objects as the
    one before left them, as it would find them in the vendors. Stop it last."""
    inst = Installation(kind="comparison", db_url="", workdir=workdir)
    inst.control = control_client()
    await start_sims(inst, 0)
    inst.items = await clone_items(inst, items)
    return inst


async def start_baseline(workdir: Path, sims: Installation) -> Installation:
    """The plain-httpx baseline (bench/baseline.py) on the shared simulators."""
    return await start_plain("baseline", workdir, sims)


async def start_floor(workdir: Path, sims: Installation, *, reads: bool = False) -> Installation:
    """The floor (bench/floor.py) on the shared simulators; ``reads``: the floor that reads
    each object before writing it."""
    if reads:
        return await start_plain("floor", workdir, sims, name="floor-reads", args=["--reads"])
    return await start_plain("floor", workdir, sims)


async def start_nodered(workdir: Path, sims: Installation, red_js: Path) -> Installation:
    """Node-RED running bench/nodered/flows.json on the shared simulators."""
    return await start_plain("nodered", workdir, sims, red_js=red_js)


async def clone_items(inst: Installation, items: list[Item]) -> list[Item]:
    """The same work items in this installation's own simulators: for each item a new
    hookstream issue, DevHelm incident and incident.io follow-up (same title); the
    InboxOps ticket (the webhook's payload) is the gateway installation's."""
    sem = asyncio.Semaphore(16)

    async def clone(item: Item) -> Item:
        async with sem:
            issue = (
                await inst.sim(
                    "hookstream",
                    "POST",
                    "/_sim/seed",
                    json={
                        "destination_id": f"dst_{item.hookstream}",
                        "destination_name": "b",
                        "error_type": "timeout",
                    },
                )
            )["issue"]
            inc = (
                await inst.sim(
                    "devhelm",
                    "POST",
                    "/_sim/seed",
                    json={"statusPageId": STATUS_PAGE_ID, "title": item.title, "impact": "MINOR"},
                )
            )["data"]
            fu = await inst.sim(
                "incidentio",
                "POST",
                "/_sim/seed",
                json={"incident_id": DEFAULT_INCIDENT_ID, "title": item.title},
            )
            fu = fu.get("follow_up", fu)
            return Item(
                ticket=item.ticket,
                hookstream=issue["id"],
                devhelm=inc["id"],
                incidentio=fu["id"],
                title=item.title,
                status=item.status,
            )

    return list(await asyncio.gather(*(clone(i) for i in items)))


async def start_plain(
    kind: str,
    workdir: Path,
    sims: Installation,
    *,
    red_js: Path | None = None,
    name: str | None = None,
    args: Sequence[str] = (),
) -> Installation:
    """One of the comparison systems (``baseline``, ``floor``, ``nodered``) on the shared
    simulators ``sims``, given the id mapping (InboxOps ticket id -> the three objects) in
    a JSON file. ``name`` (default: the kind) names its files; ``args`` go to a Python
    system's command line. Stopping it leaves the simulators running."""
    name = name or kind
    inst = Installation(kind=name, db_url="", workdir=workdir, owns_sims=False)
    inst.control = control_client()
    inst.sims, inst.sim_urls, inst.items = sims.sims, sims.sim_urls, sims.items
    mapping = {
        it.ticket["id"]: {
            "hookstream": it.hookstream,
            "devhelm": it.devhelm,
            "incidentio": it.incidentio,
            "title": it.title,
        }
        for it in inst.items
    }
    map_file = workdir / f"{name}-map.json"
    map_file.write_text(json.dumps(mapping))
    port = free_port()
    env = base_env()
    if kind == "nodered":
        assert red_js is not None
        user_dir = workdir / "nodered"
        user_dir.mkdir(exist_ok=True)
        (user_dir / "flows.json").write_text((NODERED_DIR / "flows.json").read_text())
        conf = workdir / "nodered-bench.json"
        conf.write_text(
            json.dumps(
                {
                    "secret": SECRETS["inboxops"],
                    "urls": {s: inst.sim_urls[s] for s in WRITE_SYSTEMS},
                    "keys": {s: KEYS[s] for s in WRITE_SYSTEMS},
                    "page": STATUS_PAGE_ID,
                    "map": mapping,
                }
            )
        )
        env["BENCH_NODERED_CONFIG"] = str(conf)
        env["BENCH_NODERED_PORT"] = str(port)
        argv = [
            "node",
            str(red_js),
            "--settings",
            str(NODERED_DIR / "settings.js"),
            "--userDir",
            str(user_dir),
        ]
    else:
        env["BASELINE_SECRET"] = SECRETS["inboxops"]
        for s in WRITE_SYSTEMS:
            env[f"BASELINE_{s.upper()}_URL"] = inst.sim_urls[s]
            env[f"BASELINE_{s.upper()}_KEY"] = KEYS[s]
        env["BASELINE_STATUS_PAGE"] = STATUS_PAGE_ID
        argv = [
            PY,
            "-m",
            f"bench.{kind}",
            "--port",
            str(port),
            "--db",
            str(workdir / f"{name}.db"),
            "--map",
            str(map_file),
            *args,
        ]
    inst.server = Proc(name, argv, env, workdir, role="sut")
    inst.url = f"http://127.0.0.1:{port}"
    await wait_http(inst.url + "/healthz", inst.server, 60)
    return inst


# -- Node-RED, installed on first use ---------------------------------------------------

NODERED_DIR = Path(__file__).resolve().parent / "nodered"
NODE_PREFIX = Path(__file__).resolve().parent / ".node"  # git-ignored (bench/.gitignore)
NODERED_SPEC = "node-red@4"


def nodered_version() -> str | None:
    pkg = NODE_PREFIX / "node_modules" / "node-red" / "package.json"
    try:
        return str(json.loads(pkg.read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def ensure_nodered(log: Any = print) -> tuple[Path | None, str]:
    """Node-RED 4.x's ``red.js``, installed with npm into bench/.node on first use.
    Returns (path, version) or (None, why not)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, "node and npm not found (Debian: apt-get install nodejs npm)"
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
        major = int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.SubprocessError):
        return None, "node --version failed"
    if major < 18:
        return None, f"Node-RED 4 needs Node.js 18 or later, found {out.stdout.strip()}"
    version = nodered_version()
    if version is None or not version.startswith("4."):
        log(f"installing {NODERED_SPEC} with npm into {NODE_PREFIX} (first use, ~15-60 s)")
        NODE_PREFIX.mkdir(exist_ok=True)
        try:
            proc = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(NODE_PREFIX),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    NODERED_SPEC,
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return None, f"npm install {NODERED_SPEC} failed: {exc}"
        version = nodered_version()
        if proc.returncode != 0 or version is None:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return None, f"npm install {NODERED_SPEC} failed: {' / '.join(tail)}"
        log(f"installed Node-RED {version}")
    return NODE_PREFIX / "node_modules" / "node-red" / "red.js", version


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="syncgate-bench-"))


_ = os
