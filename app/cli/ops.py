"""Operator conveniences on the command line, talking to a running gateway's admin API.

    syncgate status                                   systems, queue depth, dead letters
    syncgate dead-letters [--retry-all|--discard-all] list (and retry or drop) dead letters
    syncgate link WORK_ITEM SYSTEM EXTERNAL_ID [--scope S]
    syncgate item ID | SYSTEM:EXTERNAL_ID             an item, its links, recent history
    syncgate pause SYSTEM | syncgate resume SYSTEM     hold a system's polls and writes, or
                                                      let them go (resume lifts a deferral)
    syncgate retry LINK_ID                            retry one write now (dead or failed)

``-o json`` prints the admin API's answer as JSON instead of a table, for scripts.

The gateway is ``--url`` (default ``$SYNCGATE_URL`` or http://127.0.0.1:8080); the admin key
is read from ``$SYNCGATE_ADMIN_KEY`` only (never from the command line, where ``ps`` would
show it). Errors go to stderr with exit status 1; a command line the command refuses (an
empty reference) with exit status 2. Every argument is sent as one segment of a path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from app.cli.args import SECONDS

DEFAULT_URL = "http://127.0.0.1:8080"
URL_ENV = "SYNCGATE_URL"
KEY_ENV = "SYNCGATE_ADMIN_KEY"


class OpsError(Exception):
    """A failure to report to the operator in one line."""


class AdminClient:
    """A thin client of the /admin API that turns every failure into an ``OpsError``."""

    def __init__(self, url: str, key: str | None, timeout: float) -> None:
        self.url = url.rstrip("/")
        headers = {"X-Admin-Key": key} if key else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.has_key = bool(key)

    def close(self) -> None:
        self.http.close()

    def call(self, method: str, path: str, *, expect: Sequence[str] = (), **kwargs: Any) -> Any:
        """The answer to ``method path``, decoded; ``expect``: the keys it must have (an
        answer without them is not from a Syncgate gateway of this version)."""
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise OpsError(f"the gateway at {self.url} did not answer in time") from None
        except httpx.TransportError as exc:
            raise OpsError(
                f"cannot reach the gateway at {self.url} ({exc or type(exc).__name__});"
                f" is it running? (set --url or ${URL_ENV})"
            ) from None
        if response.status_code == 401:
            hint = "" if self.has_key else f" (${KEY_ENV} is not set)"
            raise OpsError(f"the gateway refused the admin key{hint}: {_detail(response)}")
        if response.status_code >= 400:
            raise OpsError(f"{method} {path} failed ({response.status_code}): {_detail(response)}")
        if response.status_code == 204 or not response.content:
            body = None
        else:
            try:
                body = response.json()
            except ValueError:
                body = None
        missing = [key for key in expect if not isinstance(body, dict) or key not in body]
        if missing:
            raise OpsError(
                f"the gateway at {self.url} answered {method} {path} without {missing[0]!r};"
                f" is --url a Syncgate gateway of this version?"
            )
        return body


def segment(value: object) -> str:
    """``value`` as one segment of a URL's path: every character that could end it or
    climb out of it (``/``, ``?``, ``#``, ``%``, a ``.`` or ``..``) is escaped."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in (".", "..") else text


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return str(body["detail"])
    return str(body)[:300]


# -- output -----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Rows as aligned columns, with a header line; ``None`` prints as ``-``."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.1f}"
    text = str(value).replace("\n", " ")
    return text if len(text) <= 60 else text[:57] + "..."


def _when(value: str | None) -> str | None:
    """An ISO timestamp shortened to the second."""
    if value is None:
        return None
    return value.replace("T", " ")[:19]


# -- commands ---------------------------------------------------------------------------------


def _json(args: argparse.Namespace, data: Any) -> bool:
    """With ``-o json``, print ``data`` as JSON and say so."""
    if getattr(args, "output", "table") != "json":
        return False
    print(json.dumps(data, indent=2, sort_keys=True))
    return True


def cmd_status(client: AdminClient, args: argparse.Namespace) -> int:
    data = client.call(
        "GET", "/admin/systems", expect=("systems", "queue_depth", "dead_letters", "pending_events")
    )
    if _json(args, data):
        return 0
    rows = [
        (
            s["name"],
            "enabled" if s["enabled"] else "disabled",
            s["paused"],
            _when(s["last_poll_at"]),
            None if s["lag_s"] is None else f"{s['lag_s']:.0f}s",
            s["queue_depth"],
            s["dead_letters"],
            _when(s["deferred_until"]),
            s["last_write_error"] or s["last_poll_error"],
        )
        for s in data["systems"]
    ]
    print(
        table(
            (
                "SYSTEM",
                "STATE",
                "PAUSED",
                "LAST POLL",
                "LAG",
                "QUEUE",
                "DEAD",
                "DEFERRED UNTIL",
                "LAST ERROR",
            ),
            rows,
        )
    )
    print()
    print(
        f"queue depth: {data['queue_depth']}   dead letters: {data['dead_letters']}"
        f"   pending events: {data['pending_events']}"
    )
    return 0


def _all_dead(client: AdminClient) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = client.call(
            "GET",
            "/admin/outbox",
            params={"state": "dead", "limit": 500, "offset": offset},
            expect=("entries",),
        )
        entries.extend(page["entries"])
        if len(page["entries"]) < 500:
            return entries
        offset += 500


def cmd_dead_letters(client: AdminClient, args: argparse.Namespace) -> int:
    dead = _all_dead(client)
    if not (args.retry_all or args.discard_all) and _json(args, dead):
        return 0
    if not dead:
        print("no dead letters")
        return 0
    if not (args.retry_all or args.discard_all):
        print(
            table(
                ("LINK", "WORK ITEM", "SYSTEM", "EXTERNAL ID", "ACTION", "ATTEMPTS", "REASON"),
                [
                    (
                        e["link_id"],
                        e["work_item_id"],
                        e["system"],
                        e["external_id"],
                        e["action"],
                        e["attempts"],
                        e["dead_reason"],
                    )
                    for e in dead
                ],
            )
        )
        print()
        print(f"{len(dead)} dead letter(s); --retry-all or --discard-all to act on them")
        return 0
    verb, path = ("retried", "retry") if args.retry_all else ("discarded", "discard")
    done = skipped = 0
    total = len(dead)
    for n, entry in enumerate(dead, 1):
        what = f"link {entry['link_id']} ({entry['system']} {entry['external_id'] or 'create'})"
        try:
            client.call("POST", f"/admin/outbox/{segment(entry['link_id'])}/{path}")
        except OpsError as exc:
            if "(409)" not in str(exc) and "(404)" not in str(exc):
                raise
            skipped += 1
            print(f"[{n}/{total}] skipped {what}: no longer dead", flush=True)
            continue
        done += 1
        print(f"[{n}/{total}] {verb} {what}", flush=True)
    print(f"{done} {verb}" + (f", {skipped} skipped" if skipped else ""))
    return 0


def cmd_link(client: AdminClient, args: argparse.Namespace) -> int:
    body = {"system": args.system, "external_id": args.external_id, "scope": args.scope}
    link = client.call(
        "POST",
        f"/admin/work-items/{segment(args.work_item_id)}/links",
        json=body,
        expect=("system", "external_id", "work_item_id", "id", "state"),
    )
    if _json(args, link):
        return 0
    print(
        f"linked {link['system']} {link['external_id']} to work item {link['work_item_id']}"
        f" (link {link['id']}, write {link['state']})"
    )
    return 0


#: What an answer about one work item holds (``syncgate item``).
ITEM_KEYS = ("item", "links", "history")


def cmd_item(client: AdminClient, args: argparse.Namespace) -> int:
    ref: str = args.ref
    system, sep, external_id = ref.partition(":")
    if sep and system and external_id:
        params = {"system": system, "external_id": external_id}
        if args.scope:
            params["scope"] = args.scope
        detail = client.call("GET", "/admin/lookup", params=params, expect=ITEM_KEYS)
    else:
        detail = client.call(
            "GET",
            f"/admin/work-items/{segment(ref)}",
            params={"history": args.history},
            expect=ITEM_KEYS,
        )
    if _json(args, detail):
        return 0
    item = detail["item"]
    print(f"work item {item['id']}  (version {item['version']})")
    for name in ("title", "status", "priority", "assignee", "snoozed_until"):
        print(f"  {name + ':':<15}{_cell(item[name])}")
    print(f"  {'updated:':<15}{_when(item['updated_at'])}")
    print()
    print(
        table(
            ("LINK", "SYSTEM", "SCOPE", "EXTERNAL ID", "WRITE", "ATTEMPTS", "LAST ERROR"),
            [
                (
                    link["id"],
                    link["system"],
                    link["scope"] or None,
                    link["external_id"],
                    link["state"],
                    link["attempts"],
                    link["last_error"],
                )
                for link in detail["links"]
            ],
        )
    )
    history = detail["history"][-args.history :]
    if history:
        print()
        rows = [
            (_when(h["at"]), h["kind"], h["system"], h.get("external_id"), h["field"], _change(h))
            for h in history
        ]
        print(table(("AT", "KIND", "SYSTEM", "OBJECT", "FIELD", "CHANGE"), rows))
    return 0


def cmd_pause(client: AdminClient, args: argparse.Namespace) -> int:
    verb = "pause" if args.command == "pause" else "resume"
    status = client.call(
        "POST",
        f"/admin/systems/{segment(args.system)}/{verb}",
        expect=("name", "paused", "queue_depth"),
    )
    if _json(args, status):
        return 0
    what = "paused: no polls, its writes wait" if status["paused"] else "resumed"
    print(f"{status['name']} {what} (queue {status['queue_depth']})")
    return 0


def cmd_retry(client: AdminClient, args: argparse.Namespace) -> int:
    entry = client.call(
        "POST",
        f"/admin/outbox/{segment(args.link_id)}/retry",
        expect=("external_id", "link_id", "system"),
    )
    if _json(args, entry):
        return 0
    target = entry["external_id"] or "(to be created)"
    print(f"retrying link {entry['link_id']}: {entry['system']} {target}, due now")
    return 0


def _change(entry: dict[str, Any]) -> str | None:
    if entry["field"] is not None and entry["kind"] in ("change", "conflict_lost"):
        return f"{entry['old_value']} -> {entry['new_value']}"
    return None if entry["detail"] is None else str(entry["detail"])


# -- wiring -----------------------------------------------------------------------------------


def _run(
    func: Callable[[AdminClient, argparse.Namespace], int],
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        client = AdminClient(args.url, os.environ.get(KEY_ENV) or None, args.timeout)
        try:
            return func(client, args)
        except OpsError as exc:
            print(f"syncgate: {exc}", file=sys.stderr)
            return 1
        finally:
            client.close()

    return run


def _reference(value: str) -> str:
    """An argument that names something on the gateway: not empty (an empty one would
    name the collection instead)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def register(sub: Any) -> None:
    """Add the operator subcommands to the ``syncgate`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"the gateway (default: ${URL_ENV} or {DEFAULT_URL}); key from ${KEY_ENV}",
    )
    common.add_argument("--timeout", type=SECONDS, default=30.0, help="seconds per request")
    common.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="table for people (default), json for scripts",
    )

    p = sub.add_parser("status", parents=[common], help="systems, queue depth and dead letters")
    p.set_defaults(func=_run(cmd_status))

    p = sub.add_parser("dead-letters", parents=[common], help="list, retry or discard dead letters")
    action = p.add_mutually_exclusive_group()
    action.add_argument("--retry-all", action="store_true", help="retry every dead letter now")
    action.add_argument("--discard-all", action="store_true", help="give up on every dead letter")
    p.set_defaults(func=_run(cmd_dead_letters))

    p = sub.add_parser(
        "link", parents=[common], help="link an existing vendor object to a work item"
    )
    p.add_argument("work_item_id", type=_reference)
    p.add_argument("system", type=_reference)
    p.add_argument("external_id", type=_reference)
    p.add_argument("--scope", default="", help="DevHelm status page id / incident.io incident id")
    p.set_defaults(func=_run(cmd_link))

    p = sub.add_parser("item", parents=[common], help="show a work item, its links and history")
    p.add_argument("ref", metavar="ID|SYSTEM:EXTERNAL_ID", type=_reference)
    p.add_argument("--scope", default="", help="scope of SYSTEM:EXTERNAL_ID (optional)")
    p.add_argument("--history", type=int, default=20, help="history entries to show")
    p.set_defaults(func=_run(cmd_item))

    for verb, text in (
        ("pause", "pause a system: no polls, its writes wait"),
        ("resume", "resume a paused system"),
    ):
        p = sub.add_parser(verb, parents=[common], help=text)
        p.add_argument("system", type=_reference)
        p.set_defaults(func=_run(cmd_pause))

    p = sub.add_parser("retry", parents=[common], help="retry one write now (dead or failed)")
    p.add_argument("link_id", type=_reference)
    p.set_defaults(func=_run(cmd_retry))
