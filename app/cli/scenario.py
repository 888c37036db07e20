"""The demo's scripted scenario: what it does to the simulators, step by step, and how it
narrates what the gateway does in return."""

from __future__ import annotations

import asyncio
import http
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TextIO

import msgspec

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


class DemoError(Exception):
    """The demo cannot start (config missing a system, a port in use, ...)."""


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
        self._history: set[bytes] = set()  # the history entries shown
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
        for entry in history:
            # by content, not position: a write is placed among the rows by its time,
            # so an entry may come in before the last one shown
            key = msgspec.json.encode(entry)
            if key in self._history:
                continue
            self._history.add(key)
            text = _history_line(entry)
            if text:
                events.append((entry.at.timestamp(), text))
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
