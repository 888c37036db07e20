"""Onboarding: a backfill from the console. The form (systems, ``since`` as the CLI takes
it) runs a dry-run plan (a GET: it only reads), shown line by line; a second, explicit
confirmation (a POST with the CSRF token) carries it out and shows each line's outcome.
Both are the ``Backfill`` service's calls, the admin route's and the CLI's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Request, post
from litestar.response import Template

from app.backfill import Plan, PlanLine, parse_since
from app.errors import SyncgateError
from app.http.admin.common import audit
from app.http.context import gateway_of
from app.http.problems import problem_of
from app.http.ui.common import form_of, page, render
from app.model import ObjectRef


def _form(systems: list[str], chosen: list[str], since: str) -> dict[str, Any]:
    return {"systems": systems, "chosen": chosen, "since": since, "title": "Onboarding"}


def _rows(
    plan: Plan,
    outcomes: dict[tuple[str, str, str], str] | None = None,
    items: dict[ObjectRef, str] | None = None,
) -> list[dict[str, Any]]:
    """A row per line: the line, its outcome after a run, and the work item it names or
    (after a run) the one its object is linked to now."""
    rows = []
    for line in plan.lines:
        key = (line.system, line.scope, line.external_id)
        item = line.work_item_id or (items or {}).get(ObjectRef(*key))
        outcome = None if outcomes is None else outcomes.get(key, "")
        rows.append({"line": line, "outcome": outcome, "item": item})
    return rows


def _refused(exc: SyncgateError) -> tuple[int, str]:
    status, title, detail = problem_of(exc)
    return status, f"{title} ({status}): {detail}"


def _since(raw: str, now: datetime) -> datetime | None:
    return None if not raw else parse_since(raw, now)


@page("/onboarding")
async def onboarding_page(request: Request[Any, Any, Any]) -> Template:
    """The form; with ``plan=1`` also the dry-run plan of what it names (nothing changes)."""
    gateway = gateway_of(request)
    systems = sorted(gateway.backfill.adapters)
    params = request.query_params
    chosen = [s for s in params.getall("systems", []) if s]
    since_text = (params.get("since") or "").strip()
    context = _form(systems, chosen, since_text)
    if params.get("plan") != "1":
        return render(request, "onboarding.html", context)
    try:
        since = _since(since_text, gateway.clock())
        plan = await gateway.backfill.plan(chosen, since)
    except SyncgateError as exc:
        status, context["error"] = _refused(exc)
        return render(request, "onboarding.html", context, status_code=status)
    context |= {
        "plan": plan,
        "rows": _rows(plan),
        # the run walks the same window: a duration is fixed to the moment it meant here
        "since_at": "" if plan.since is None else plan.since.isoformat(),
    }
    return render(request, "onboarding.html", context)


@post("/onboarding/run", include_in_schema=False, status_code=200)
async def onboarding_run(request: Request[Any, Any, Any]) -> Template:
    """Carry the plan out (the service plans afresh first: what is linked by now is
    skipped) and show what each line came to."""
    gateway = gateway_of(request)
    systems = sorted(gateway.backfill.adapters)
    form = await request.form()
    chosen = [str(s) for s in form.getall("systems", []) if s]
    fields = await form_of(request)
    since_text = fields.get("since", "")
    context = _form(systems, chosen, fields.get("since_shown", since_text))
    if fields.get("confirm") != "yes":
        context["error"] = "Not carried out: confirm the plan with its button."
        return render(request, "onboarding.html", context, status_code=400)
    outcomes: dict[tuple[str, str, str], str] = {}

    def done(line: PlanLine, outcome: str) -> None:
        outcomes[(line.system, line.scope, line.external_id)] = outcome

    try:
        since = _since(since_text, gateway.clock())
        plan = await gateway.backfill.run(chosen, since, done)
    except SyncgateError as exc:
        status, context["error"] = _refused(exc)
        return render(request, "onboarding.html", context, status_code=status)
    audit("backfill", via="console", systems=plan.systems, plan=plan.summary())
    async with gateway.store.tx() as tx:
        links = await tx.links_for(ObjectRef(x.system, x.scope, x.external_id) for x in plan.lines)
    items = {ref: link.work_item_id for ref, link in links.items()}
    context |= {"plan": plan, "rows": _rows(plan, outcomes, items), "carried_out": True}
    return render(request, "onboarding.html", context)
