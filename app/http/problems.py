"""Errors as RFC 7807 problems: one table from exceptions to responses, for the whole HTTP
layer, and the OpenAPI descriptions of the problems a route may give.

Every request has an id (``request_id_of``: the caller's ``X-Request-Id`` when it is a
sane token, else a new one). Every response carries it in ``X-Request-Id``; a 5xx also
has it in the problem's ``request_id``, and every 5xx is logged with it: an unexpected
exception by the handler that answers it (with the traceback), any other 5xx by
``log_server_errors`` as it is sent."""

from __future__ import annotations

import logging
import os
import random
import re
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Example
from litestar.types import Message, Scope
from msgspec import UNSET, Meta, UnsetType

from app.errors import (
    AlreadyLinked,
    ConfigError,
    Invalid,
    Missing,
    NotFound,
    RequestError,
    StateConflict,
    SyncgateError,
    VendorError,
    WebhookError,
)

log = logging.getLogger("syncgate.http")


PROBLEM_MEDIA_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "x-request-id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
#: Request ids need to be unique, not secret: the Mersenne Twister (seeded from the OS's
#: randomness) makes one without a system call, as ``secrets.token_hex`` makes for each.
#: A process forked from this one (a pre-forking server) seeds its own again, as the
#: ``random`` module does for its shared generator: otherwise both would make the same ids.
_IDS = random.Random()
os.register_at_fork(after_in_child=_IDS.seed)


class ConfigIssueOut(msgspec.Struct):
    """One problem in a config file."""

    file: Annotated[str, Meta(description="The config file", examples=["config.yaml"])]
    line: Annotated[int | None, Meta(description="Line of the key, when known", examples=[12])]
    key: Annotated[
        str, Meta(description="Dotted path of the key", examples=["systems.devhelm.base_url"])
    ]
    message: Annotated[str, Meta(description="What is wrong", examples=["required"])]


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 7807 problem: every error the gateway answers has this shape."""

    type: Annotated[str, Meta(description="Always about:blank", examples=["about:blank"])]
    title: Annotated[str, Meta(description="The kind of problem", examples=["Not found"])]
    status: Annotated[int, Meta(description="The HTTP status", examples=[404])]
    detail: Annotated[
        str,
        Meta(
            description="What was wrong with this request",
            examples=["no work item 'b7c9f1d2e3a44f5b8c6d7e8f9a0b1c2d'"],
        ),
    ]
    issues: Annotated[
        list[ConfigIssueOut] | UnsetType,
        Meta(
            description="Only on a refused config reload: every problem found",
            examples=[
                [{"file": "config.yaml", "line": 12, "key": "systems.x", "message": "unknown"}]
            ],
        ),
    ] = UNSET
    request_id: Annotated[
        str | UnsetType,
        Meta(
            description="Only on a 5xx: the id the gateway's log line carries",
            examples=["3f9c2a7d1e5b8c04"],
        ),
    ] = UNSET


def request_id_of(scope: Scope) -> str:
    """This request's id, made on first use and kept in the scope's state."""
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        rid = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                text = value.decode("latin-1")
                rid = text if _SANE_REQUEST_ID.fullmatch(text) else None
                break
        rid = rid or f"{_IDS.getrandbits(64):016x}"
        state["request_id"] = rid
    return str(rid)


async def log_server_errors(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook: every answer carries the request id, and every 5xx that no
    exception handler logged already is logged with it."""
    if message["type"] != "http.response.start":
        return
    rid = request_id_of(scope)
    message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER.encode(), rid.encode())]
    status = message["status"]
    if status >= 500 and not scope["state"].get("error_logged"):
        log.error(
            "server error answered",
            extra={
                "status": status,
                "request_id": rid,
                "method": scope.get("method"),
                "path": scope.get("path"),
            },
        )


class AdminError(Exception):
    """Input the HTTP layer itself refuses before calling a service (a malformed id, an
    unknown system in a query); answered as a problem with its own status."""

    def __init__(
        self, status: int, title: str, detail: str, *, issues: list[ConfigIssueOut] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.issues = issues


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    issues: list[ConfigIssueOut] | None = None,
    headers: dict[str, str] | None = None,
    request_id: str | None = None,
) -> Response[Problem]:
    body = Problem(
        type="about:blank",
        title=title,
        status=status,
        detail=detail,
        issues=UNSET if issues is None else issues,
        request_id=UNSET if request_id is None else request_id,
    )
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def internal_error(request: Request[Any, Any, Any], exc: BaseException) -> Response[Problem]:
    """An error nothing expected: logged once with its traceback and the request id, and
    answered 500 with that id and no internals."""
    rid = request_id_of(request.scope)
    request.scope["state"]["error_logged"] = True
    log.error(
        "unexpected error",
        exc_info=exc,
        extra={
            "request_id": rid,
            "method": request.method,
            "path": request.scope.get("path"),
            "error": type(exc).__name__,
        },
    )
    return problem_response(
        500,
        "Internal error",
        f"an internal error occurred; quote request id {rid}",
        request_id=rid,
    )


def on_unexpected_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Problem]:
    """The app's last resort: litestar's own errors as problems, anything else a 500."""
    if isinstance(exc, HTTPException):
        return on_http_exception(request, exc)
    return internal_error(request, exc)


def on_admin_error(_: Request[Any, Any, Any], exc: AdminError) -> Response[Problem]:
    return problem_response(exc.status, exc.title, exc.detail, issues=exc.issues)


#: Every error the services raise on purpose, the status it is answered with, and its
#: title (None: the error's own). The first entry that matches wins.
STATUS_OF: tuple[tuple[type[SyncgateError], int, str | None], ...] = (
    (Missing, 404, None),
    (AlreadyLinked, 409, None),
    (StateConflict, 409, None),
    (Invalid, 422, None),
    (RequestError, 400, None),
    (NotFound, 404, "Vendor object not found"),
    (VendorError, 502, "Vendor error"),
    (ConfigError, 422, "Invalid configuration"),
)

_WEBHOOK_TITLES = {401: "Invalid signature", 400: "Malformed payload", 422: "Unreadable payload"}


def on_syncgate_error(request: Request[Any, Any, Any], exc: SyncgateError) -> Response[Problem]:
    """The one translation of domain errors into problem+json responses."""
    if isinstance(exc, WebhookError):
        title = _WEBHOOK_TITLES.get(exc.http_status, "Bad webhook")
        return problem_response(exc.http_status, title, exc.reason)
    if isinstance(exc, ConfigError):
        return problem_response(
            422,
            "Invalid configuration",
            f"{len(exc.issues)} problem(s) in {exc.issues[0].file if exc.issues else 'the config'};"
            " the running configuration stays",
            issues=[ConfigIssueOut(i.file, i.line, i.key, i.message) for i in exc.issues],
        )
    known = _known(exc)
    if known is None:
        return internal_error(request, exc)
    status, title, detail = known
    rid = request_id_of(request.scope) if status >= 500 else None
    return problem_response(status, title, detail, request_id=rid)


def _known(exc: SyncgateError) -> tuple[int, str, str] | None:
    for kind, status, named in STATUS_OF:
        if isinstance(exc, kind):
            if named is None:
                named = exc.title if isinstance(exc, RequestError) else "Error"
            return status, named, str(exc)
    return None


def problem_of(exc: SyncgateError) -> tuple[int, str, str]:
    """The status, title and detail a domain error is answered with (the console shows
    the same reason as the admin API)."""
    known = _known(exc)
    if known is None:
        log.error("unexpected error", exc_info=exc)
        return 500, "Internal error", "an internal error occurred"
    return known


def on_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    """Litestar's own errors (body and parameter validation, 405, ...) as problems, with
    the reason the validator gave."""
    if exc.status_code >= 500:
        return internal_error(request, exc)
    detail = exc.detail
    extra = exc.extra
    if isinstance(extra, list) and extra:
        reasons = []
        for entry in extra:
            if isinstance(entry, dict):
                source = entry.get("source")
                source = getattr(source, "value", source)
                where = ".".join(str(p) for p in (source, entry.get("key")) if p)
                reasons.append(
                    f"{where}: {entry.get('message')}" if where else str(entry.get("message"))
                )
            else:
                reasons.append(str(entry))
        detail = f"{detail}: " + "; ".join(reasons)
    elif isinstance(extra, dict) and extra:
        detail = f"{detail}: {extra}"
    titles = {
        400: "Bad request",
        404: "Not found",
        405: "Method not allowed",
        413: "Payload too large",
    }
    return problem_response(
        exc.status_code, titles.get(exc.status_code, "Error"), detail, headers=exc.headers
    )


#: What each problem status means on an admin route, with an example title and detail.
ADMIN_PROBLEMS: dict[int, tuple[str, str, str]] = {
    400: (
        "Bad input: a malformed id, an unknown value in the query, a malformed body",
        "Bad request",
        "Validation failed for GET /admin/outbox: query.state: Invalid enum value 'gone'",
    ),
    401: (
        "Missing or wrong admin key, or the admin API is closed (checked before anything"
        " else, unknown paths and methods included)",
        "Unauthorized",
        "admin key required: send X-Admin-Key: <key> or Authorization: Bearer <key>",
    ),
    404: (
        "Unknown id or system (or the vendor does not have the object)",
        "Not found",
        "no work item 'b7c9f1d2e3a44f5b8c6d7e8f9a0b1c2d'",
    ),
    409: (
        "Conflict with the current state",
        "Conflict",
        "link 42 has no pending write",
    ),
    422: (
        "A well-formed but meaningless request (nothing to change, a system not enabled)",
        "Invalid request",
        "nothing to change: the body names no field",
    ),
    502: (
        "The vendor failed to answer (the response carries a request_id)",
        "Vendor error",
        "inboxops: connection refused",
    ),
}


def problem_spec(
    status: int, description: str, title: str, detail: str | None = None
) -> ResponseSpec:
    """The OpenAPI description of one problem response, with an example body."""
    example = Problem(
        type="about:blank",
        title=title,
        status=status,
        detail=detail or description,
        request_id="3f9c2a7d1e5b8c04" if status >= 500 else UNSET,
    )
    return ResponseSpec(
        data_container=Problem,
        description=description,
        media_type=PROBLEM_MEDIA_TYPE,
        generate_examples=False,
        examples=[Example(summary=title, value=msgspec.to_builtins(example))],
    )


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """The problem responses an admin route documents: 401 always, and ``codes``. Every
    route with a path or query parameter or a body lists 400 (litestar's validation),
    and each status a service it calls may raise (the table STATUS_OF above);
    tests/test_openapi.py holds every admin route to that."""
    return {code: problem_spec(code, *ADMIN_PROBLEMS[code]) for code in sorted({401, *codes})}
