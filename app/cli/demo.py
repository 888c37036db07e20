"""``syncgate demo``: a whole installation in one process, playing one story and telling it.

On a fresh clone: the four vendor simulators and the gateway are served on loopback in one
asyncio loop, with a throwaway SQLite database and the shipped ``config.yaml``. API keys
and webhook secrets are generated for the run (each in its vendor's format) and exported
under the environment variable names the config names; they are never printed. Then:

1. hookstream opens an issue (a delivery to ``orders-webhook`` keeps failing); its
   ``issue_opened`` notification reaches the gateway, which creates a work item and, by the
   config's creation rule, a DevHelm incident, an InboxOps ticket and an incident.io
   follow-up, all linked to it;
2. DevHelm is made to answer writes with 429 (Retry-After) once and 500 twice; a support
   agent moves the ticket to in progress; the gateway brings hookstream along at once,
   leaves incident.io alone (``outstanding`` already means it) and keeps retrying DevHelm
   until it catches up;
3. an engineer resolves the hookstream issue; the gateway polls it and resolves
   everything else.

Each step waits on a condition (vendor state read through the simulators' ``/_sim/``
routes, the gateway's store), never on a fixed sleep, and everything is narrated as it
happens: people's changes, every write the gateway makes (from the simulators' request
logs), webhooks delivered, canonical changes (the item's history) and failed writes with
their retry plan. It ends with a table of the work item and its four linked objects and
exits 0 only if all four mean the same canonical state (resolved).

``run_demo`` is the async entry point (ports, database, deadline and extra faults are
parameters, for the tests); ``command`` is what ``syncgate demo`` calls.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import http
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

SYSTEMS = ("hookstream", "devhelm", "inboxops", "incidentio")
NOUN = {
    "hookstream": "issue",
    "devhelm": "incident",
    "inboxops": "ticket",
    "incidentio": "follow-up",
}
#: The vendor whose writes fail for a while in step 2.
FAULTY = "devhelm"
RETRY_AFTER_S = 2
SERVER_ERRORS = 2
POLL_S = 0.1
PROGRESS_S = 1.0
DEFAULT_DEADLINE_S = 60.0
REPO_CONFIG = Path(__file__).resolve().parents[2] / "config.yaml"


def default_config() -> Path:
    """The repository's config.yaml, or, in an installed package, the copy shipped with it."""
    if REPO_CONFIG.is_file():
        return REPO_CONFIG
    return Path(str(resources.files("app") / "defaults" / "config.yaml"))


class DemoError(Exception):
    """The demo cannot start (config missing a system, a port in use, ...)."""


# -- credentials --------------------------------------------------------------------------


def _whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def generate_credentials() -> dict[str, tuple[str, str]]:
    """A fresh (API key, webhook secret) per system, in each vendor's format."""
    return {
        "hookstream": ("hs_test_" + secrets.token_hex(32), secrets.token_hex(24)),
        "devhelm": ("dh_live_" + secrets.token_hex(16), secrets.token_hex(16)),
        "inboxops": ("ixk_live_" + secrets.token_hex(16), _whsec()),
        "incidentio": ("inc_live_" + secrets.token_hex(24), _whsec()),
    }


@contextlib.contextmanager
def _exported(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the run; restore what was there before."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, old in before.items():
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


@contextlib.contextmanager
def _gateway_log(path: Path) -> Iterator[None]:
    """The gateway's own log lines (JSON) go to ``path``, not into the narration."""
    from app.logs import JsonFormatter

    logger = logging.getLogger("syncgate")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        handler.close()
        handlers, level, propagate = saved
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


# -- narration ----------------------------------------------------------------------------


class Narrator:
    """Timestamped lines, relative to the start of the demo."""

    def __init__(self, out: TextIO, started: float) -> None:
        self.out = out
        self.started = started
        self.last_line = started
        self.last_shown = 0.0

    def elapsed(self, at: float | None = None) -> float:
        return (time.time() if at is None else at) - self.started

    def say(self, text: str, at: float | None = None) -> None:
        # never print a time before one already printed (events are seen a little late)
        shown = max(self.last_shown, self.elapsed(at))
        self.last_shown = shown
        self.out.write(f"[{shown:5.1f}s] {text}\n")
        self.out.flush()
        self.last_line = time.time()

    def plain(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _short(segment: str) -> str:
    return segment if len(segment) <= 14 else segment[:8] + ".."


def _short_path(path: str) -> str:
    return "/".join(_short(part) for part in path.split("/"))


def _phrase(status: int) -> str:
    try:
        return f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _what_was_written(body: Any) -> str:
    if not isinstance(body, dict):
        return ""
    shown = [f"{k}={body[k]!r}" for k in ("status", "title", "subject") if k in body]
    return ("  " + ", ".join(shown)) if shown else ""


# -- the running installation -------------------------------------------------------------


@dataclass
class Linked:
    """What the demo knows of the work item and its objects."""

    item_id: str | None = None
    ids: dict[str, str] = field(default_factory=dict)  # system -> external id


class Demo:
    def __init__(
        self,
        *,
        settings: Any,
        gateway: Any,
        sims: dict[str, Any],
        control: dict[str, Any],
        narrator: Narrator,
        deadline: float,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.sims = sims
        self.control = control
        self.say = narrator.say
        self.narrator = narrator
        self.deadline = deadline
        self.linked = Linked()
        self.problem: str | None = None
        # watcher cursors
        self._requests = dict.fromkeys(SYSTEMS, 0)
        self._deliveries = dict.fromkeys(SYSTEMS, 0)
        self._history = 0
        self._link_errors: dict[str, tuple[Any, ...]] = {}

    # -- reading state ---------------------------------------------------------------------

    async def objects(self, system: str) -> list[dict[str, Any]]:
        response = await self.control[system].get("/_sim/objects")
        response.raise_for_status()
        return list(response.json()["objects"])

    async def object(self, system: str, external_id: str) -> dict[str, Any] | None:
        for obj in await self.objects(system):
            if obj.get("id") == external_id:
                return obj
        return None

    async def vendor_status(self, system: str) -> str | None:
        external_id = self.linked.ids.get(system)
        if external_id is None:
            return None
        obj = await self.object(system, external_id)
        return None if obj is None else str(obj.get("status"))

    def meaning(self, system: str, vendor_status: str | None) -> str | None:
        if vendor_status is None:
            return None
        status_map = self.gateway.adapters[system].value_maps["status"]
        meaning: str | None = status_map.to_canonical(vendor_status)
        return meaning

    def holds(self, system: str, vendor_status: str | None, canonical: str) -> bool:
        status_map = self.gateway.adapters[system].value_maps["status"]
        return bool(status_map.holds(vendor_status, canonical))

    async def item(self) -> Any:
        if self.linked.item_id is None:
            return None
        async with self.gateway.store.tx() as tx:
            return await tx.get_item(self.linked.item_id)

    async def links(self) -> dict[str, Any]:
        if self.linked.item_id is None:
            return {}
        async with self.gateway.store.tx() as tx:
            return {link.system: link for link in await tx.links_of(self.linked.item_id)}

    # -- the watcher: narrates what happened since the last look ---------------------------

    async def watch(self) -> None:
        events: list[tuple[float, str]] = []
        for system in SYSTEMS:
            events.extend(self._new_requests(system))
            events.extend(self._new_deliveries(system))
        events.extend(await self._new_history())
        events.extend(await self._link_changes())
        for at, text in sorted(events, key=lambda e: e[0]):
            self.say(text, at)

    def _new_requests(self, system: str) -> list[tuple[float, str]]:
        """Writes the gateway made (the vendor routes are only called by the gateway; people
        act through ``/_sim/``) and any call that failed, e.g. a poll."""
        records = self.sims[system].kit.requests
        events = []
        start = self._requests[system]
        for index in range(start, len(records)):
            record = records[index]
            if record.status == 0:  # still in flight: look again next time
                break
            self._requests[system] = index + 1
            write = record.method in ("POST", "PUT", "PATCH", "DELETE")
            if not write and record.status < 400:
                continue
            extra = _what_was_written(record.body) if write and record.status < 300 else ""
            if record.status == 429 and system == FAULTY:
                extra = f"  (Retry-After: {RETRY_AFTER_S})"
            events.append(
                (
                    record.at,
                    f"syncgate -> {system}: {record.method} {_short_path(record.path)}"
                    f" -> {_phrase(record.status)}{extra}",
                )
            )
        return events

    def _new_deliveries(self, system: str) -> list[tuple[float, str]]:
        kit = self.sims[system].kit
        events = []
        for index in range(self._deliveries[system], len(kit.deliveries)):
            delivery = kit.deliveries[index]
            finished = delivery.delivered or delivery.attempts >= kit.webhook_attempts
            if not finished:
                break
            self._deliveries[system] = index + 1
            if delivery.delivered:
                outcome = f"{delivery.status}"
            else:
                outcome = f"not delivered ({delivery.error or delivery.status})"
            events.append(
                (time.time(), f"{system} -> syncgate: webhook {delivery.event_type} -> {outcome}")
            )
        return events

    async def _new_history(self) -> list[tuple[float, str]]:
        if self.linked.item_id is None:
            return []
        async with self.gateway.store.tx() as tx:
            history = await tx.history_of(self.linked.item_id, limit=10_000)
        events = []
        for entry in history[self._history :]:
            text = _history_line(entry)
            if text:
                events.append((entry.at.timestamp(), text))
        self._history = len(history)
        return events

    async def _link_changes(self) -> list[tuple[float, str]]:
        events = []
        for system, link in (await self.links()).items():
            if link.external_id and system not in self.linked.ids:
                self.linked.ids[system] = link.external_id
                if system != "hookstream":
                    obj = await self.object(system, link.external_id) or {}
                    label = f" (#{obj['ticket_number']})" if "ticket_number" in obj else ""
                    events.append(
                        (
                            time.time(),
                            f"{system}: {NOUN[system]} {link.external_id}{label} created "
                            f"({obj.get('status', '?')}) and linked to work item",
                        )
                    )
            state = (link.attempts, link.last_error, link.next_attempt_at, link.dead)
            if link.last_error and self._link_errors.get(system) != state:
                events.append((time.time(), _retry_line(system, link)))
            self._link_errors[system] = state if link.last_error else ()
        return events

    # -- waiting on conditions -------------------------------------------------------------

    async def wait_for(
        self, what: str, condition: Callable[[], Awaitable[tuple[bool, str]]]
    ) -> bool:
        """Poll ``condition`` until it holds or the demo's deadline passes; narrate what
        happens meanwhile and show progress about once a second."""
        started = time.time()
        while True:
            await self.watch()
            done, detail = await condition()
            if done:
                await self.watch()
                return True
            now = time.time()
            if now >= self.deadline:
                self.problem = f"timed out waiting for {what} ({detail})"
                self.say(f"!! {self.problem}")
                return False
            if now - self.narrator.last_line >= PROGRESS_S:
                self.say(f"   ... waiting for {what} ({now - started:.1f}s): {detail}")
            await asyncio.sleep(POLL_S)

    def all_hold(self, canonical: str) -> Callable[[], Awaitable[tuple[bool, str]]]:
        async def check() -> tuple[bool, str]:
            pending = []
            for system in SYSTEMS:
                status = await self.vendor_status(system)
                if not self.holds(system, status, canonical):
                    pending.append(f"{system} {status}")
            return not pending, "still " + ", ".join(pending) if pending else ""

        return check

    def system_holds(
        self, system: str, canonical: str
    ) -> Callable[[], Awaitable[tuple[bool, str]]]:
        async def check() -> tuple[bool, str]:
            status = await self.vendor_status(system)
            return self.holds(system, status, canonical), f"{system} is {status}"

        return check

    def item_is(self, canonical: str) -> Callable[[], Awaitable[tuple[bool, str]]]:
        async def check() -> tuple[bool, str]:
            item = await self.item()
            status = None if item is None else str(item.status)
            return status == canonical, f"work item is {status}"

        return check

    # -- the story -------------------------------------------------------------------------

    async def scenario(self) -> None:
        for step in (self.step_open, self.step_in_progress, self.step_resolve):
            if not await step():
                return

    async def step_open(self) -> bool:
        self.narrator.plain("\n== 1. hookstream opens an issue; the others are created and linked")
        response = await self.control["hookstream"].post(
            "/_sim/failures",
            json={
                "destination_id": "dst_orders_webhook",
                "destination_name": "orders-webhook",
                "error_type": "http_5xx",
                "last_error": "HTTP 503 from https://orders.example.com/hooks",
                "last_status_code": 503,
            },
        )
        response.raise_for_status()
        issue = response.json()["issue"]
        self.linked.ids["hookstream"] = issue["id"]
        self.say(
            f"hookstream opens issue {issue['id']} {issue['title']!r} "
            f"(deliveries to orders-webhook keep failing)"
        )

        async def item_exists() -> tuple[bool, str]:
            from app.model import ObjectRef

            async with self.gateway.store.tx() as tx:
                link = await tx.link_for(ObjectRef("hookstream", "", issue["id"]))
            if link is not None:
                self.linked.item_id = link.work_item_id
            return link is not None, "no work item yet"

        if not await self.wait_for("the gateway to see the new issue", item_exists):
            return False

        async def all_linked() -> tuple[bool, str]:
            missing = [s for s in SYSTEMS if s not in self.linked.ids]
            return not missing, "not yet created in " + ", ".join(missing)

        return await self.wait_for("the linked objects to be created", all_linked)

    async def step_in_progress(self) -> bool:
        self.narrator.plain(
            f"\n== 2. the ticket moves to in progress while {FAULTY} answers 429, then 500"
        )
        faults = [
            {"status": 429, "retry_after": RETRY_AFTER_S, "count": 1, "methods": ["PUT"]},
            {"status": 500, "count": SERVER_ERRORS, "methods": ["PUT"]},
        ]
        for fault in faults:
            (await self.control[FAULTY].post("/_sim/faults", json=fault)).raise_for_status()
        self.say(
            f"{FAULTY} will answer the next write with 429 (Retry-After: {RETRY_AFTER_S}), "
            f"then {SERVER_ERRORS} writes with 500"
        )
        ticket_id = self.linked.ids["inboxops"]
        response = await self.control["inboxops"].patch(
            f"/_sim/objects/{ticket_id}", json={"status": "in_progress"}
        )
        response.raise_for_status()
        number = response.json()["data"].get("ticket_number")
        self.say(f"a support agent moves InboxOps ticket #{number} to in_progress (InboxOps UI)")
        writes_before = {s: len(self.sims[s].kit.writes()) for s in SYSTEMS}
        seen_before = len(self.sims[FAULTY].kit.requests)
        if not await self.wait_for(
            "the work item to become acknowledged", self.item_is("acknowledged")
        ):
            return False

        async def refused() -> tuple[bool, str]:
            records = self.sims[FAULTY].kit.requests[seen_before:]
            return any(r.method != "GET" and r.status >= 400 for r in records), "no write yet"

        if not await self.wait_for(f"{FAULTY} to refuse the write", refused):
            return False
        others = [s for s in SYSTEMS if s not in (FAULTY, "inboxops")]
        for system in others:
            if not await self.wait_for(
                f"{system} to follow", self.system_holds(system, "acknowledged")
            ):
                return False
        faulty_now = await self.vendor_status(FAULTY)
        if not self.holds(FAULTY, faulty_now, "acknowledged"):
            done = []
            for system in others:
                status = await self.vendor_status(system)
                written = len(self.sims[system].kit.writes()) > writes_before[system]
                done.append(
                    f"{system} {status}"
                    + ("" if written else " (already meant acknowledged: nothing to write)")
                )
            self.say(
                f"the others synced meanwhile: {', '.join(done)}; "
                f"{FAULTY} is still {faulty_now}, its writes wait"
            )
        if not await self.wait_for(
            f"{FAULTY} to catch up", self.system_holds(FAULTY, "acknowledged")
        ):
            return False
        self.say(f"{FAULTY} caught up: incident is {await self.vendor_status(FAULTY)}")
        return True

    async def step_resolve(self) -> bool:
        self.narrator.plain("\n== 3. the hookstream issue resolves; everything follows")
        issue_id = self.linked.ids["hookstream"]
        response = await self.control["hookstream"].patch(
            f"/_sim/objects/{issue_id}", json={"status": "resolved"}
        )
        response.raise_for_status()
        self.say(
            f"an engineer fixes orders-webhook and resolves hookstream issue {issue_id} "
            "(hookstream sends no webhook for this: the gateway's poll finds it)"
        )
        if not await self.wait_for("the work item to become resolved", self.item_is("resolved")):
            return False
        return await self.wait_for("all four objects to be resolved", self.all_hold("resolved"))

    # -- the end ---------------------------------------------------------------------------

    async def report(self) -> bool:
        await self.watch()
        item = await self.item()
        links = await self.links()
        self.narrator.plain("")
        if item is None:
            self.narrator.plain("No work item was created.")
        else:
            self.narrator.plain(
                f"Work item {item.id}  {item.title!r}  "
                f"(canonical status {item.status}, version {item.version})"
            )
        rows = [("system", "object", "vendor status", "canonical meaning")]
        problems = []
        for system in SYSTEMS:
            external_id = self.linked.ids.get(system)
            obj = None if external_id is None else await self.object(system, external_id)
            status = None if obj is None else str(obj.get("status"))
            meaning = self.meaning(system, status)
            label = external_id or "-"
            if obj is not None and "ticket_number" in obj:
                label += f" (#{obj['ticket_number']})"
            rows.append((system, label, status or "-", meaning or "-"))
            if meaning != "resolved":
                why = f"{system}: {NOUN[system]} {external_id or '(not created)'} is " + (
                    f"{status} ({meaning})" if status else "missing"
                )
                link = links.get(system)
                if link is not None and link.last_error:
                    why += f"; last write error: {link.last_error}"
                problems.append(why)
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for index, row in enumerate(rows):
            self.narrator.plain(
                "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )
            if index == 0:
                self.narrator.plain("  " + "  ".join("-" * w for w in widths))
        self.narrator.plain("")
        elapsed = self.narrator.elapsed()
        if problems:
            self.narrator.plain(f"NOT converged after {elapsed:.1f}s:")
            if self.problem:
                self.narrator.plain(f"  {self.problem}")
            for problem in problems:
                self.narrator.plain(f"  {problem}")
            return False
        self.narrator.plain(
            f"converged: all four objects mean 'resolved' ({elapsed:.1f}s). "
            + _write_summary(self.sims)
        )
        return True


def _history_line(entry: Any) -> str | None:
    if entry.kind == "created":
        return f"syncgate: work item {entry.work_item_id} created from {entry.detail}"
    if entry.kind == "change" and entry.field == "status":
        return (
            f"syncgate: work item status {entry.old_value} -> {entry.new_value} "
            f"(changed in {entry.system})"
        )
    if entry.kind == "conflict_lost":
        return f"syncgate: {entry.system} lost a conflict on {entry.field}: {entry.detail}"
    if entry.kind == "unmapped":
        return f"syncgate: {entry.detail}"
    if entry.kind == "dead_letter":
        return f"syncgate: gave up writing to {entry.system}: {entry.detail}"
    return None


def _retry_line(system: str, link: Any) -> str:
    if link.dead:
        return f"syncgate: {system} write dead-lettered: {link.dead_reason or link.last_error}"
    when = ""
    if isinstance(link.next_attempt_at, datetime):
        delay = link.next_attempt_at.timestamp() - time.time()
        when = f"; next try in {max(0.0, delay):.1f}s"
    return f"syncgate: {system} write failed ({link.last_error}){when}, other systems unaffected"


def _write_summary(sims: Mapping[str, Any]) -> str:
    parts = []
    for system in SYSTEMS:
        records = [
            r for r in sims[system].kit.requests if r.method in ("POST", "PUT", "PATCH", "DELETE")
        ]
        failed = [r for r in records if r.status >= 400]
        text = f"{system} {len(records) - len(failed)}"
        if failed:
            text += f" (+{len(failed)} refused: " + ", ".join(str(r.status) for r in failed) + ")"
        parts.append(text)
    return "Writes by syncgate: " + ", ".join(parts) + "."


# -- setting up ---------------------------------------------------------------------------


def _port(url: str) -> int:
    from urllib.parse import urlsplit

    port = urlsplit(url).port
    if port is None:
        raise DemoError(f"base_url {url!r} names no port")
    return port


async def _fixtures(settings: Any, sims: dict[str, Any], control: dict[str, Any]) -> None:
    """What the config's creation rules and scopes refer to: DevHelm status pages, InboxOps
    inboxes, incident.io incidents."""
    pages = set(settings.systems["devhelm"].scopes)
    inboxes: set[str] = set()
    incidents: set[str] = set()
    for rule in settings.create_rules:
        for target in rule.create_in:
            if target.system == "devhelm" and target.scope:
                pages.add(target.scope)
            if target.system == "inboxops" and target.params.get("inbox_id"):
                inboxes.add(str(target.params["inbox_id"]))
            if target.system == "incidentio" and target.scope:
                incidents.add(target.scope)
    for page in sorted(pages):
        if page not in sims["devhelm"].pages:
            sims["devhelm"].add_status_page(page, "Acme status")
    for inbox in sorted(inboxes):
        response = await control["inboxops"].post(
            "/_sim/inboxes", json={"id": inbox, "name": "Webhook incidents"}
        )
        if response.status_code not in (201, 409):
            raise DemoError(f"cannot create InboxOps inbox {inbox}: {response.text}")
    for incident in sorted(incidents):
        response = await control["incidentio"].post(
            "/_sim/incidents", json={"id": incident, "name": "Orders webhooks failing"}
        )
        if response.status_code not in (201, 409):
            raise DemoError(f"cannot create incident.io incident {incident}: {response.text}")


def _workspace(
    database: str | os.PathLike[str] | None, *, fresh: bool
) -> tuple[Path | None, Path, Path]:
    """(temporary directory or None, database file, gateway log file). Without ``database``
    both live in a new temporary directory; with it, the log is kept beside it."""
    if database is None:
        workdir = Path(tempfile.mkdtemp(prefix="syncgate-demo-"))
        return workdir, workdir / "syncgate.db", workdir / "gateway.log"
    db_path = Path(database).resolve()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    if fresh:
        db_path.unlink(missing_ok=True)
    return None, db_path, db_path.with_name(db_path.name + ".log")


async def run_demo(
    config_path: str | os.PathLike[str] = REPO_CONFIG,
    *,
    gateway_port: int | None = None,
    sim_ports: Mapping[str, int] | None = None,
    database: str | os.PathLike[str] | None = None,
    fresh: bool = False,
    deadline_s: float = DEFAULT_DEADLINE_S,
    faults: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the demo; 0 when the four objects converged, 1 when not, 2 when it cannot start.

    ``gateway_port`` and ``sim_ports`` (system -> port, 0 = any free port) override the
    config's ports; ``database`` keeps the SQLite file (``fresh`` empties it first),
    otherwise a temporary one is used; ``faults`` (system -> ``/_sim/faults`` bodies) are
    injected right after start, e.g. to rehearse a vendor that keeps failing.
    """
    import httpx
    import msgspec

    from adapters import simulator_class
    from adapters._simkit import SimOptions
    from app.config import load_config, resolve_environment
    from app.errors import ConfigError
    from app.gateway import Gateway, known_systems
    from app.http.app import create_app
    from app.serving import serve_asgi
    from app.store import Store

    out = out or sys.stdout
    started = time.time()
    narrator = Narrator(out, started)
    try:
        settings = load_config(config_path, known_systems())
    except ConfigError as exc:
        out.write(f"syncgate demo: invalid configuration {os.fspath(config_path)}:\n")
        for issue in exc.issues:
            out.write(f"  {issue}\n")
        return 2
    missing = [s for s in SYSTEMS if s not in settings.systems or not settings.systems[s].enabled]
    if missing:
        out.write(f"syncgate demo: the config must enable every system; missing: {missing}\n")
        return 2

    workdir, db_path, log_path = _workspace(database, fresh=fresh)
    credentials = generate_credentials()
    environment = {}
    for system, (api_key, secret) in credentials.items():
        environment[settings.systems[system].api_key_env] = api_key
        for env in settings.systems[system].webhook_secret_envs:
            environment[env] = secret
    converged = keep = False
    try:
        with _exported(environment), _gateway_log(log_path):
            async with contextlib.AsyncExitStack() as stack:
                sims: dict[str, Any] = {}
                urls: dict[str, str] = {}
                control: dict[str, httpx.AsyncClient] = {}
                for system in SYSTEMS:
                    conf = settings.systems[system]
                    api_key, secret = credentials[system]
                    sims[system] = simulator_class(system)(
                        SimOptions(api_key=api_key, webhook_secret=secret)
                    )
                    port = (sim_ports or {}).get(system, _port(conf.base_url))
                    try:
                        urls[system] = await stack.enter_async_context(
                            serve_asgi(sims[system].app, port=port)
                        )
                    except OSError as exc:
                        raise DemoError(
                            f"cannot serve the {system} simulator on port {port}: {exc}"
                        ) from exc
                    control[system] = await stack.enter_async_context(
                        httpx.AsyncClient(base_url=urls[system], timeout=10.0)
                    )
                settings = msgspec.structs.replace(
                    settings,
                    systems={
                        name: msgspec.structs.replace(conf, base_url=urls.get(name, conf.base_url))
                        for name, conf in settings.systems.items()
                    },
                )
                await _fixtures(settings, sims, control)
                secrets_ = resolve_environment(settings, os.environ)

                store = Store.connect(f"sqlite:///{db_path}")
                stack.push_async_callback(store.close)
                await store.migrate()
                gateway = Gateway(settings, secrets_, store, worker_id="demo")
                gateway.config_path = os.fspath(config_path)
                host = settings.server.host
                port = settings.server.port if gateway_port is None else gateway_port
                try:
                    gateway_url = await stack.enter_async_context(
                        serve_asgi(
                            create_app(gateway, manage_lifecycle=False), host=host, port=port
                        )
                    )
                except OSError as exc:
                    raise DemoError(f"cannot serve the gateway on {host}:{port}: {exc}") from exc

                async def flush_webhooks() -> None:
                    for sim in sims.values():
                        sim.kit.webhook_url = None
                        await sim.kit.flush()

                stack.push_async_callback(flush_webhooks)
                for system in SYSTEMS:
                    target = {
                        "url": f"{gateway_url}/webhooks/{system}",
                        "secret": credentials[system][1],
                    }
                    (await control[system].put("/_sim/webhook", json=target)).raise_for_status()
                await gateway.start()
                stack.push_async_callback(gateway.stop)
                for system, bodies in (faults or {}).items():
                    for body in bodies:
                        (
                            await control[system].post("/_sim/faults", json=dict(body))
                        ).raise_for_status()

                narrator.plain("Syncgate demo: four vendor simulators and the gateway, on loopback")
                for system in SYSTEMS:
                    interval = settings.systems[system].poll_interval_s
                    narrator.plain(
                        f"  {system:<11} simulator {urls[system]}  (polled every {interval:g}s)"
                    )
                narrator.plain(f"  gateway     {gateway_url}  (webhooks at /webhooks/<system>)")
                narrator.plain(
                    f"  config      {os.fspath(config_path)}; database "
                    f"{db_path}{' (temporary)' if database is None else ''}"
                )
                narrator.plain("  credentials generated for this run and exported; not shown")
                narrator.plain(f"  gateway log {log_path}")

                demo = Demo(
                    settings=settings,
                    gateway=gateway,
                    sims=sims,
                    control=control,
                    narrator=narrator,
                    deadline=started + deadline_s,
                )
                try:
                    await demo.scenario()
                    converged = await demo.report()
                except httpx.TransportError as exc:
                    # the servers stop on Ctrl-C (uvicorn handles the signal)
                    out.write(f"\nsyncgate demo: stopped: a server went away ({exc})\n")
                    return 1
                keep = not converged
    except DemoError as exc:
        out.write(f"syncgate demo: {exc}\n")
        return 2
    finally:
        if workdir is not None:
            if not keep:
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                out.write(f"(kept {workdir} for a look: gateway.log and the database)\n")
    return 0 if converged else 1


def command(args: argparse.Namespace) -> int:
    """``syncgate demo``."""
    from app.serving import run as run_loop

    config = args.config
    if config is None:
        config = "config.yaml" if Path("config.yaml").is_file() else os.fspath(default_config())
    try:
        return run_loop(
            run_demo(
                config,
                gateway_port=args.port,
                database=args.database,
                fresh=args.fresh,
                deadline_s=args.deadline,
            )
        )
    except KeyboardInterrupt:
        print("syncgate demo: interrupted", file=sys.stderr)
        return 130
