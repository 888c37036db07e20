"""Black-box support: real ``syncgate serve`` processes, the four simulators served over
loopback in the test's own event loop, and an admin client. Tests drive them over HTTP
and wait on conditions with deadlines (``eventually``), never on sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml

from adapters._simkit import SimOptions
from adapters.incidentio.simulator import DEFAULT_INCIDENT_ID
from app.serving import serve_asgi
from app.serving import spare_port as free_port
from tests.contract.kit import WEBHOOK_TIME_SCALE
from tests.contract.kits import KITS
from tests.rig import STATUS_PAGE_ID

POLL_INTERVAL_S = 0.05
ADMIN_KEY = "blackbox-admin-key-0123456789"
WEBHOOK_SYSTEMS = ("inboxops", "incidentio")


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str
) -> None:
    """Wait until ``condition`` holds, checking every POLL_INTERVAL_S, or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(POLL_INTERVAL_S)


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def write_config(
    path: Path,
    database_url: str,
    urls: Mapping[str, str],
    *,
    create_rules: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> None:
    """A config for the systems in ``urls``: webhook-only unless an override sets a poll
    interval; by default a new InboxOps ticket fans out to DevHelm and incident.io."""
    systems: dict[str, Any] = {}
    for name, url in urls.items():
        systems[name] = {
            "base_url": url,
            "api_key_env": f"SG_{name.upper()}_KEY",
            "webhook_secret_envs": [f"SG_{name.upper()}_SECRET"],
            "poll_interval_s": 0,
            "timeout_s": 10,
        }
    if "devhelm" in systems:
        systems["devhelm"]["scopes"] = [STATUS_PAGE_ID]
    if create_rules is None:
        create_rules = [
            {
                "name": "ticket-fans-out",
                "system": "inboxops",
                "create_in": [
                    {"system": "devhelm", "scope": STATUS_PAGE_ID},
                    {"system": "incidentio", "scope": DEFAULT_INCIDENT_ID},
                ],
            }
        ]
    config: dict[str, Any] = {
        "database_url": database_url,
        "dispatcher": {"lease_s": 3, "backoff_base_s": 0.1, "backoff_max_s": 1},
        "systems": systems,
        "create_rules": create_rules,
    }
    path.write_text(yaml.safe_dump(_merge(config, overrides)))


def gateway_env(systems: tuple[str, ...] = tuple(KITS)) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SYNCGATE_DATABASE_URL", None)
    env["SYNCGATE_ADMIN_KEY"] = ADMIN_KEY
    for name in systems:
        env[f"SG_{name.upper()}_KEY"] = KITS[name].api_key
        env[f"SG_{name.upper()}_SECRET"] = KITS[name].webhook_secret
    return env


class GatewayProcess:
    """``syncgate serve`` in a process of its own, its log in ``log``."""

    def __init__(
        self,
        config: Path,
        port: int,
        worker: str,
        log: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.log_path = log
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "app.cli",
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--worker-id",
                worker,
            ],
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=gateway_env() | dict(env or {}),
        )
        self.url = f"http://127.0.0.1:{port}"

    async def ready(self) -> None:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 60)
        if b"serving on" not in line:
            code = await asyncio.to_thread(self.proc.wait, 10) if not line else None
            self.log.flush()
            tail = self.log_path.read_text(errors="replace")[-4000:]
            raise AssertionError(f"gateway not serving ({line!r}, exit {code}); its log:\n{tail}")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def cpu_seconds(self) -> float:
        """User and system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> None:
        """SIGTERM, then wait for the exit without blocking the loop the simulators (which
        the gateway is still talking to) run in."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.proc.wait, 30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def sqlite_gateway(
    tmp_path: Path,
    control: Mapping[str, httpx.AsyncClient],
    port: int,
    worker: str = "gw",
    **config: Any,
) -> GatewayProcess:
    """A ``syncgate serve`` on ``port`` over a new SQLite file in ``tmp_path``, for the
    simulators of ``control`` (``write_config`` with ``config``); ``ready`` waits for it."""
    path = tmp_path / "config.yaml"
    urls = {name: str(client.base_url) for name, client in control.items()}
    write_config(path, f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}", urls, **config)
    return GatewayProcess(path, port, worker, tmp_path / "gateway.log")


@contextlib.asynccontextmanager
async def simulators(
    webhook_url: str,
    systems: tuple[str, ...] = ("devhelm", "inboxops", "incidentio"),
    webhooks: tuple[str, ...] = WEBHOOK_SYSTEMS,
) -> AsyncIterator[tuple[dict[str, Any], dict[str, httpx.AsyncClient]]]:
    """The simulators of ``systems`` on loopback, each with a control client (its base
    URL is the simulator's); those in ``webhooks`` (by default InboxOps and incident.io)
    send webhooks to the gateway."""
    sims: dict[str, Any] = {}
    control: dict[str, httpx.AsyncClient] = {}
    async with contextlib.AsyncExitStack() as stack:
        for name in systems:
            kit = KITS[name]
            sims[name] = kit.simulator(
                options=SimOptions(
                    webhook_time_scale=WEBHOOK_TIME_SCALE,
                    api_key=kit.api_key,
                    webhook_url=(f"{webhook_url}/webhooks/{name}" if name in webhooks else None),
                    webhook_secret=kit.webhook_secret,
                )
            )
            url = await stack.enter_async_context(serve_asgi(sims[name].app))
            control[name] = await stack.enter_async_context(
                httpx.AsyncClient(base_url=url, timeout=30)
            )
        if "devhelm" in sims:
            sims["devhelm"].add_status_page(STATUS_PAGE_ID, "Acme status", "MANUAL")
        yield sims, control


def admin_client(gateway_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=f"{gateway_url}/admin", headers={"X-Admin-Key": ADMIN_KEY}, timeout=30
    )


async def sim_objects(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every object a simulator holds (its ``/_sim/objects`` listing)."""
    response = await control.get("/_sim/objects")
    response.raise_for_status()
    return list(response.json()["objects"])


async def settled(admin: httpx.AsyncClient) -> bool:
    """Nothing left to do: no event waiting in the inbox and no write waiting."""
    overview = (await admin.get("/systems")).json()
    return bool(overview["queue_depth"] == 0 and overview["pending_events"] == 0)


async def measure_idle_cpu(gateway: GatewayProcess, seconds: float) -> float:
    """CPU seconds the gateway uses over ``seconds`` of wall time (a measurement, not a
    synchronisation: the caller has already waited for the state it wants)."""
    before = gateway.cpu_seconds()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    return (gateway.cpu_seconds() - before) * seconds / (time.monotonic() - started)


async def seed_fanned_out(
    control: dict[str, httpx.AsyncClient], admin: httpx.AsyncClient, subjects: list[str]
) -> list[str]:
    """One InboxOps ticket per subject, each fanned out by the gateway to a DevHelm
    incident and an incident.io follow-up (waited for, with the gateway settled);
    returns the tickets' ids."""
    tickets = []
    for subject in subjects:
        response = await control["inboxops"].post("/_sim/seed", json={"subject": subject})
        assert response.status_code == 201, response.text
        tickets.append(str(response.json()["data"]["id"]))

    async def created() -> bool:
        if not await settled(admin):
            return False
        for name in ("devhelm", "incidentio"):
            if len(await sim_objects(control[name])) < len(subjects):
                return False
        return True

    await eventually(created, timeout_s=90, what="every ticket fanned out")
    return tickets


async def retitle(
    control: dict[str, httpx.AsyncClient], tickets: list[str], subjects: list[str]
) -> None:
    """Each ticket's subject edited in InboxOps (its webhook goes out on its own), eight
    edits at a time: the simulator's own server is not under test."""
    edits = asyncio.Semaphore(8)

    async def edit(ticket: str, subject: str) -> None:
        async with edits:
            response = await control["inboxops"].patch(
                f"/_sim/objects/{ticket}", json={"subject": subject}
            )
        assert response.status_code == 200, response.text

    await asyncio.gather(*(edit(t, s) for t, s in zip(tickets, subjects, strict=True)))


@contextlib.asynccontextmanager
async def gateway_on_postgres(
    tmp_path: Path, worker: str, **config: Any
) -> AsyncIterator[
    tuple[dict[str, Any], dict[str, httpx.AsyncClient], GatewayProcess, httpx.AsyncClient]
]:
    """A real ``syncgate serve`` on the test PostgreSQL database (migrated and emptied)
    with the simulators, ``config`` in its config file; yields the simulators, their
    control clients, the gateway and an admin client."""
    from tests.conftest import open_store, postgres_url

    await (await open_store("postgres", tmp_path)).close()
    port = free_port()
    async with simulators(f"http://127.0.0.1:{port}") as (sims, control):
        path = tmp_path / "config.yaml"
        urls = {n: str(c.base_url) for n, c in control.items()}
        write_config(path, postgres_url(), urls, **config)
        gateway = GatewayProcess(path, port, worker, tmp_path / "gateway.log")
        admin = admin_client(gateway.url)
        try:
            await gateway.ready()
            yield sims, control, gateway, admin
        finally:
            await admin.aclose()
            await gateway.stop()


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sample ``name{labels}`` of a Prometheus text page (labels in any order)."""
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if match is None or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match[3])
    raise AssertionError(f"no sample {name}{labels} in /metrics")
