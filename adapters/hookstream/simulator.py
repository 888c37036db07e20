"""A strict in-memory hookstream: the issues API, issue grouping and auto-resolve, and the
signed ``issue_opened`` notification.

Vendor routes (``X-API-Key: <key>``; errors are ``{"error", "status", "request_id"}``,
validation is 400; ``RateLimit-Limit``/``-Remaining``/``-Reset`` headers on every
authenticated response (the docs' example allowance of 1000 a minute unless a limit is
set), and a 429 from the limiter carries ``Retry-After`` unless behaviour ``retry_after``
is ``absent``):

    GET   /v1/issues            ?status=open|acknowledged|resolved|all (default open)
                                &destination_id=&limit=1..100 (default 50)&offset=>=0
                                -> {"issues": [...], "pagination": {total, limit, offset,
                                   has_more}}, oldest issue first; other parameters: 400
    GET   /v1/issues/summary    -> {"open": n, "acknowledged": n, "resolved": n}
    GET   /v1/issues/{id}       -> {"issue": {...}} with ``recent_attempt_ids`` (behaviour
                                ``issue_detail: guide``: the guide's bare object instead)
    PATCH /v1/issues/{id}       {status?, snoozed_until?} (null unsnoozes) -> {"issue": {...}}

Control routes (no auth), besides SimKit's common ``/_sim/`` surface:

    POST  /_sim/seed            {destination_id, destination_name, error_type, title?,
                                 status?, last_error?, last_status_code?, last_attempt_id?,
                                 last_event_id?}: hookstream records a failure; 201
                                 {"issue"} when it opened a new issue, 200 when it grouped
                                 into (or reopened) the existing one; ``status`` is then
                                 set on the issue as a person would
    POST  /_sim/failures        {destination_id, error_type, destination_name?, last_error?,
                                 last_status_code?, last_attempt_id?, last_event_id?}: a
                                 delivery failed after all retries; same grouping and answers
    PATCH /_sim/objects/{id}    {status?, snoozed_until?}: a person's change in the
                                 dashboard (hookstream sends no webhook for it)
    GET   /_sim/objects         {"objects": [...]}: every issue, any status, oldest first

Behaviour: failures group by fingerprint (destination + error type). A failure matching
an open or acknowledged issue bumps ``occurrence_count`` and ``last_seen_at``; one matching
a resolved issue reopens it (status open, ``resolved_at`` null) rather than opening a
second issue, the answer chosen for the docs' open question (behaviour ``regroup:
new_issue`` plays the other answer). An open or acknowledged
issue with no failure for 30 minutes resolves itself, checked on every request and after
every ``POST /_sim/clock``. A newly opened issue sends the ``issue_opened`` notification
(immediately; the 5-minute rule cron and the cooldown are not simulated) signed
``X-hookstream-Signature: sha256=<hex>`` over ``{ts}.{body}`` with
``X-hookstream-Timestamp``; with no secret configured it goes unsigned, as a notification
channel without a secret does. Failed notifications are retried on the Svix schedule
(hookstream documents none for notification channels; an assumption).

Behaviour options (``SimOptions.behaviour`` / ``PUT /_sim/behaviour``), for what the
documents leave open:

    auto_resolve_updated_at   moves (default) | stays: whether an auto-resolve moves
                              ``updated_at`` or only ``status`` and ``resolved_at``
    notification_signature    timestamped (default) | body: the destination scheme with
                              ``include_timestamp`` (``{ts}.{body}``), or over the body alone
    regroup                   reopen (default) | new_issue: a failure matching a resolved
                              issue reopens it, or opens a new issue (new id, a new
                              ``issue_opened``) and leaves the resolved one alone
    retry_after               sent (default) | absent: whether a 429 (the limiter's or an
                              injected one) carries ``Retry-After`` (unconfirmed), or only
                              ``RateLimit-Reset`` (seconds until the window resets)
    issue_detail              reference (default) | guide: ``GET /v1/issues/{id}`` answers
                              the API reference's ``{"issue": {...}}``, or the guide's bare
                              object with only its fields (``id``, ``destination_id``,
                              ``destination_name``, ``error_type``, ``message``, ``status``,
                              ``occurrence_count``, ``first_seen_at``, ``last_seen_at``,
                              ``recent_attempt_ids``): no change time at all. The list and
                              PATCH keep the reference's shape

``SimOptions.seed_config`` is read (a bad file fails at start) but creates nothing: a
Syncgate config names no hookstream container.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from litestar import Request, Response, get, patch, post
from litestar.params import FromPath

from adapters import signing
from adapters._simbase import Simulator, json_response
from adapters._simgate import ASGIApp
from adapters._simkit import Behaviour, SimKit

STATUSES = ("open", "acknowledged", "resolved")
#: The allowance the docs' example shows (per-plan numbers are not documented).
DEFAULT_RPM = 1000
#: Readings of what the documents leave open (see the module docstring).
BEHAVIOURS = {
    "auto_resolve_updated_at": Behaviour(
        choices=("moves", "stays"),
        doc="whether an auto-resolve moves updated_at, or only status and resolved_at",
    ),
    "notification_signature": Behaviour(
        choices=("timestamped", "body"),
        doc="sha256= over {ts}.{body} with X-hookstream-Timestamp, or over the body alone",
    ),
    "regroup": Behaviour(
        choices=("reopen", "new_issue"),
        doc="whether a failure matching a resolved issue reopens it or opens a new issue",
    ),
    "retry_after": Behaviour(
        choices=("sent", "absent"),
        doc="whether a 429 carries Retry-After (unconfirmed), or only RateLimit-Reset",
    ),
    "issue_detail": Behaviour(
        choices=("reference", "guide"),
        doc="GET /v1/issues/{id} answers the reference's wrapped object, or the guide's "
        "bare one (no title, updated_at, created_at or resolved_at)",
    ),
}
#: The fields of the guide's (bare) issue detail.
GUIDE_FIELDS = (
    "id",
    "destination_id",
    "destination_name",
    "error_type",
    "message",
    "status",
    "occurrence_count",
    "first_seen_at",
    "last_seen_at",
    "recent_attempt_ids",
)
LIST_STATUSES = (*STATUSES, "all")
AUTO_RESOLVE_AFTER = timedelta(minutes=30)
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
#: How many attempt ids the issue detail keeps.
RECENT_ATTEMPTS = 10

_STR = (str,)
_OPT_STR = (str, type(None))
_OPT_INT = (int, type(None))

#: Allowed body fields of one route: name -> (accepted JSON types, required).
FieldSpec = dict[str, tuple[tuple[type, ...], bool]]

PATCH_FIELDS: FieldSpec = {
    "status": (_STR, False),
    "snoozed_until": (_OPT_STR, False),
}
FAILURE_FIELDS: FieldSpec = {
    "destination_id": (_STR, True),
    "error_type": (_STR, True),
    "destination_name": (_OPT_STR, False),
    "last_error": (_OPT_STR, False),
    "last_status_code": (_OPT_INT, False),
    "last_attempt_id": (_OPT_STR, False),
    "last_event_id": (_OPT_STR, False),
}
SEED_FIELDS: FieldSpec = {
    **FAILURE_FIELDS,
    "destination_name": (_OPT_STR, True),
    "title": (_STR, False),
    "status": (_STR, False),
}


def iso(value: datetime | None) -> str | None:
    """hookstream's timestamp form: ISO 8601 in UTC with a ``Z``; microseconds are kept so
    that two changes never read as simultaneous."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Invalid(Exception):
    """A request body or query that hookstream refuses with 400."""


class SimIssue(msgspec.Struct, kw_only=True):
    """One issue as the simulator keeps it."""

    id: str
    destination_id: str
    destination_name: str | None
    error_type: str
    fingerprint: str
    title: str
    status: str
    created_at: datetime
    updated_at: datetime
    first_seen_at: datetime
    last_seen_at: datetime
    occurrence_count: int = 1
    snoozed_until: datetime | None = None
    resolved_at: datetime | None = None
    last_attempt_id: str | None = None
    last_event_id: str | None = None
    last_error: str | None = None
    last_status_code: int | None = None
    recent_attempt_ids: list[str] = msgspec.field(default_factory=list)


class HookstreamSimulator(Simulator):
    """The hookstream simulator: ``.app`` to serve, ``.kit`` for the shared machinery."""

    vendor = "hookstream"
    auth_header = "X-API-Key"
    auth_prefix = ""
    default_rpm = DEFAULT_RPM
    behaviours = BEHAVIOURS

    def setup(self, seeded: list[str]) -> None:
        # A config names nothing to make in hookstream (issues open on failures).
        self.org_id = uuid.uuid4().hex
        self.env_id = uuid.uuid4().hex
        self.issues: dict[str, SimIssue] = {}
        self.kit.on_timer(self.auto_resolve)

    # -- vendor shapes ---------------------------------------------------------------------

    def render_error(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        """hookstream's error body. It has no code field: the HTTP status is the code, so
        SimKit's generic codes are carried by ``status`` and only the message is kept."""
        body = {"error": message, "status": status, "request_id": SimKit.request_id()}
        return msgspec.json.encode(body), "application/json"

    def rate_limit_headers(self, limit: int, remaining: int, reset_s: float) -> dict[str, str]:
        """IETF-draft headers; ``RateLimit-Reset`` is seconds until the window resets."""
        return {
            "RateLimit-Limit": str(limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": f"{reset_s:.0f}",
        }

    def to_json(self, issue: SimIssue, *, detail: bool = False) -> dict[str, Any]:
        """The issue object of the API reference (plus ``error_type``, from the guide);
        the detail view adds ``recent_attempt_ids``."""
        out: dict[str, Any] = {
            "id": issue.id,
            "org_id": self.org_id,
            "env_id": self.env_id,
            "destination_id": issue.destination_id,
            "fingerprint": issue.fingerprint,
            "title": issue.title,
            "status": issue.status,
            "snoozed_until": iso(issue.snoozed_until),
            "occurrence_count": issue.occurrence_count,
            "first_seen_at": iso(issue.first_seen_at),
            "last_seen_at": iso(issue.last_seen_at),
            "resolved_at": iso(issue.resolved_at),
            "last_attempt_id": issue.last_attempt_id,
            "last_event_id": issue.last_event_id,
            "last_error": issue.last_error,
            "last_status_code": issue.last_status_code,
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "destination_name": issue.destination_name,
            "error_type": issue.error_type,
        }
        if detail:
            out["recent_attempt_ids"] = list(issue.recent_attempt_ids)
        return out

    def guide_json(self, issue: SimIssue) -> dict[str, Any]:
        """The issue detail as the guide shows it (behaviour ``issue_detail: guide``):
        bare, with ``message`` for the last error, and no ``title``, ``updated_at``,
        ``created_at``, ``resolved_at`` or ``snoozed_until``."""
        full = self.to_json(issue, detail=True)
        full["message"] = issue.last_error
        return {name: full[name] for name in GUIDE_FIELDS}

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """Under behaviour ``retry_after: absent`` a 429 loses its ``Retry-After``: the
        client has only ``RateLimit-Reset`` (seconds) to go on."""
        kit = self.kit

        async def outer(scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] != "http" or kit.behaviour["retry_after"] == "sent":
                await app(scope, receive, send)
                return

            async def without_retry_after(message: Any) -> None:
                if message["type"] == "http.response.start" and message["status"] == 429:
                    headers = [h for h in message.get("headers", []) if h[0] != b"retry-after"]
                    message = {**message, "headers": headers}
                await send(message)

            await app(scope, receive, without_retry_after)

        return outer

    def _not_found(self) -> Response[bytes]:
        return self.kit.error(404, "not_found", "Issue not found")

    # -- validation ------------------------------------------------------------------------

    @staticmethod
    def _body(raw: bytes, allowed: FieldSpec) -> dict[str, Any]:
        """The JSON object of a request, checked against ``allowed`` (unknown fields,
        missing required fields and wrong JSON types are refused)."""
        try:
            body = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            raise Invalid("Request body must be valid JSON") from None
        if not isinstance(body, dict):
            raise Invalid("Request body must be a JSON object")
        unknown = sorted(set(body) - set(allowed))
        if unknown:
            raise Invalid(f"Unknown field(s): {', '.join(unknown)}")
        for name, (types, required) in allowed.items():
            if name not in body:
                if required:
                    raise Invalid(f"{name} is required")
                continue
            value = body[name]
            # bool is an int in Python, never in JSON.
            if not isinstance(value, types) or isinstance(value, bool):
                raise Invalid(f"{name} has the wrong type")
            if isinstance(value, str) and types == _STR and not value:
                raise Invalid(f"{name} must not be empty")
        if "status" in body and body["status"] not in STATUSES:
            raise Invalid(f"status must be one of: {', '.join(STATUSES)}")
        return body

    @staticmethod
    def _timestamp(name: str, value: str | None) -> datetime | None:
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise Invalid(f"{name} must be an ISO 8601 timestamp") from None
        if parsed.tzinfo is None:
            raise Invalid(f"{name} must carry a UTC offset")
        return parsed.astimezone(UTC)

    # -- behaviour -------------------------------------------------------------------------

    def auto_resolve(self) -> None:
        """Resolve every open or acknowledged issue with no failure for 30 minutes.

        ``resolved_at`` is stamped now (when the resolve becomes visible), not at
        last_seen + 30 min. Whether ``updated_at`` moves too is the behaviour
        ``auto_resolve_updated_at``: "moves" (default) or "stays"."""
        now = self.kit.now()
        moves = self.kit.behaviour["auto_resolve_updated_at"] == "moves"
        for issue in self.issues.values():
            if issue.status != "resolved" and now - issue.last_seen_at >= AUTO_RESOLVE_AFTER:
                stamp = self.kit.now()
                issue.status = "resolved"
                issue.resolved_at = stamp
                if moves:
                    issue.updated_at = stamp

    def record_failure(self, body: dict[str, Any]) -> tuple[SimIssue, bool]:
        """Group one failure into its issue; returns the issue and whether it is new."""
        destination_id: str = body["destination_id"]
        error_type: str = body["error_type"]
        fingerprint = hashlib.sha256(f"{destination_id}\n{error_type}".encode()).hexdigest()[:32]
        now = self.kit.now()
        attempt_id = body.get("last_attempt_id") or uuid.uuid4().hex
        reopen = self.kit.behaviour["regroup"] == "reopen"
        existing = next(
            (
                i
                for i in self.issues.values()
                if i.fingerprint == fingerprint and (reopen or i.status != "resolved")
            ),
            None,
        )
        if existing is None:
            name = body.get("destination_name")
            issue = SimIssue(
                id="iss_" + uuid.uuid4().hex,
                destination_id=destination_id,
                destination_name=name,
                error_type=error_type,
                fingerprint=fingerprint,
                title=body.get("title") or f"{name or destination_id}: {error_type}",
                status="open",
                created_at=now,
                updated_at=now,
                first_seen_at=now,
                last_seen_at=now,
            )
            self.issues[issue.id] = issue
            is_new = True
        else:
            issue = existing
            issue.occurrence_count += 1
            issue.last_seen_at = now
            issue.updated_at = now
            if "destination_name" in body:
                issue.destination_name = body["destination_name"]
            if issue.status == "resolved":
                issue.status = "open"
                issue.resolved_at = None
            is_new = False
        issue.last_attempt_id = attempt_id
        issue.last_event_id = body.get("last_event_id") or uuid.uuid4().hex
        issue.last_error = body.get("last_error", issue.last_error)
        issue.last_status_code = body.get("last_status_code", issue.last_status_code)
        issue.recent_attempt_ids = [attempt_id, *issue.recent_attempt_ids][:RECENT_ATTEMPTS]
        return issue, is_new

    def apply_change(self, issue: SimIssue, body: dict[str, Any]) -> None:
        """Apply a PATCH body; ``updated_at`` moves only when a value changed."""
        # Parse before touching the issue, so a refused body changes nothing.
        snoozed = self._timestamp("snoozed_until", body.get("snoozed_until"))
        changed = False
        if "status" in body and body["status"] != issue.status:
            issue.status = body["status"]
            changed = True
        if "snoozed_until" in body and snoozed != issue.snoozed_until:
            issue.snoozed_until = snoozed
            changed = True
        if changed:
            now = self.kit.now()
            issue.updated_at = now
            issue.resolved_at = (issue.resolved_at or now) if issue.status == "resolved" else None

    def notify_opened(self, issue: SimIssue) -> None:
        """Send the ``issue_opened`` alert to the configured notification channel."""
        body = msgspec.json.encode(
            {
                "event": "issue_opened",
                "rule_type": "issue_opened",
                "triggered_at": iso(self.kit.now()),
                "issue": {
                    "id": issue.id,
                    "title": issue.title,
                    "destination_id": issue.destination_id,
                    "destination_name": issue.destination_name,
                    "status": issue.status,
                    "error_type": issue.error_type,
                },
            }
        )

        def sign(payload: bytes, ts: int) -> dict[str, str]:
            secret = self.kit.webhook_secret  # read per attempt: it can change at runtime
            if secret is None:
                return {}
            timestamped = self.kit.behaviour["notification_signature"] == "timestamped"
            return signing.hookstream_sign(secret, payload, timestamp=ts if timestamped else None)

        self.kit.emit("issue_opened", body, sign, "hs-" + hashlib.sha256(body).hexdigest())

    def _failure(self, raw: bytes, allowed: FieldSpec) -> Response[bytes]:
        self.auto_resolve()
        body = self._body(raw, allowed)
        issue, is_new = self.record_failure(body)
        if "status" in body:
            self.apply_change(issue, {"status": body["status"]})
        if is_new:
            self.notify_opened(issue)
        return json_response({"issue": self.to_json(issue, detail=True)}, 201 if is_new else 200)

    # -- routes ----------------------------------------------------------------------------

    def _guarded(self, handler: Callable[[], Response[bytes]]) -> Response[bytes]:
        try:
            return handler()
        except Invalid as exc:
            return self.kit.error(400, "validation_error", str(exc))

    def routes(self) -> list[Any]:
        sim = self
        guarded = self._guarded

        @get("/v1/issues", sync_to_thread=False)
        def list_issues(request: Request[Any, Any, Any]) -> Response[bytes]:
            return guarded(lambda: sim._list(request))

        @get("/v1/issues/summary", sync_to_thread=False)
        def summary() -> Response[bytes]:
            sim.auto_resolve()
            counts = {s: 0 for s in STATUSES}
            for issue in sim.issues.values():
                counts[issue.status] += 1
            return json_response(counts)

        @get("/v1/issues/{issue_id:str}", sync_to_thread=False)
        def get_issue(issue_id: FromPath[str]) -> Response[bytes]:
            sim.auto_resolve()
            issue = sim.issues.get(issue_id)
            if issue is None:
                return sim._not_found()
            if sim.kit.behaviour["issue_detail"] == "guide":
                return json_response(sim.guide_json(issue))
            return json_response({"issue": sim.to_json(issue, detail=True)})

        @patch("/v1/issues/{issue_id:str}")
        async def patch_issue(
            issue_id: FromPath[str], request: Request[Any, Any, Any]
        ) -> Response[bytes]:
            raw = await request.body()
            return guarded(lambda: sim._patch(issue_id, raw))

        return [list_issues, summary, get_issue, patch_issue]

    def control_routes(self) -> list[Any]:
        sim = self
        guarded = self._guarded

        @post("/_sim/seed")
        async def seed(request: Request[Any, Any, Any]) -> Response[bytes]:
            raw = await request.body()
            return guarded(lambda: sim._failure(raw, SEED_FIELDS))

        @post("/_sim/failures")
        async def failures(request: Request[Any, Any, Any]) -> Response[bytes]:
            raw = await request.body()
            return guarded(lambda: sim._failure(raw, FAILURE_FIELDS))

        @patch("/_sim/objects/{issue_id:str}")
        async def human_change(
            issue_id: FromPath[str], request: Request[Any, Any, Any]
        ) -> Response[bytes]:
            raw = await request.body()
            return guarded(lambda: sim._patch(issue_id, raw))

        return [seed, failures, human_change]

    def objects(self) -> list[dict[str, Any]]:
        self.auto_resolve()
        return [self.to_json(i) for i in self._ordered()]

    def _ordered(self) -> list[SimIssue]:
        # Oldest first: issues opened during a walk land on later pages, so an offset walk
        # never skips one.
        return sorted(self.issues.values(), key=lambda i: (i.created_at, i.id))

    def _list(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        self.auto_resolve()
        query = request.query_params
        unknown = sorted(set(query) - {"status", "destination_id", "limit", "offset"})
        if unknown:
            raise Invalid(f"Unknown query parameter(s): {', '.join(unknown)}")
        status = query.get("status", "open")
        if status not in LIST_STATUSES:
            raise Invalid(f"status must be one of: {', '.join(LIST_STATUSES)}")
        limit = self._int_param(query.get("limit"), "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = self._int_param(query.get("offset"), "offset", 0, 0, None)
        destination_id = query.get("destination_id")
        matching = [
            i
            for i in self._ordered()
            if (status == "all" or i.status == status)
            and (destination_id is None or i.destination_id == destination_id)
        ]
        page = matching[offset : offset + limit]
        return json_response(
            {
                "issues": [self.to_json(i) for i in page],
                "pagination": {
                    "total": len(matching),
                    "limit": limit,
                    "offset": offset,
                    "has_more": offset + len(page) < len(matching),
                },
            }
        )

    @staticmethod
    def _int_param(raw: str | None, name: str, default: int, low: int, high: int | None) -> int:
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise Invalid(f"{name} must be an integer") from None
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise Invalid(f"{name} must be {bounds}")
        return value

    def _patch(self, issue_id: str, raw: bytes) -> Response[bytes]:
        self.auto_resolve()
        issue = self.issues.get(issue_id)
        if issue is None:
            return self._not_found()
        self.apply_change(issue, self._body(raw, PATCH_FIELDS))
        return json_response({"issue": self.to_json(issue)})
