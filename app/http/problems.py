"""Errors as RFC 7807 problems: one table from exceptions to responses, for the whole HTTP
layer, and the OpenAPI descriptions of the problems a route may give."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.openapi.datastructures import ResponseSpec
from msgspec import UNSET, UnsetType

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


class ConfigIssueOut(msgspec.Struct):
    file: str
    line: int | None
    key: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 7807 problem; ``issues`` only on a refused config reload."""

    type: str
    title: str
    status: int
    detail: str
    issues: list[ConfigIssueOut] | UnsetType = UNSET


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
) -> Response[Problem]:
    body = Problem(
        type="about:blank",
        title=title,
        status=status,
        detail=detail,
        issues=UNSET if issues is None else issues,
    )
    return Response(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


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


def on_syncgate_error(_: Request[Any, Any, Any], exc: SyncgateError) -> Response[Problem]:
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
    status, title, detail = problem_of(exc)
    return problem_response(status, title, detail)


def problem_of(exc: SyncgateError) -> tuple[int, str, str]:
    """The status, title and detail a domain error is answered with (the console shows
    the same reason as the admin API)."""
    for kind, status, named in STATUS_OF:
        if isinstance(exc, kind):
            if named is None:
                named = exc.title if isinstance(exc, RequestError) else "Error"
            return status, named, str(exc)
    log.error("unexpected error", exc_info=exc)
    return 500, "Internal error", "an internal error occurred"


def on_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Problem]:
    """Litestar's own errors (body and parameter validation, 405, ...) as problems, with
    the reason the validator gave."""
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
    return problem_response(exc.status_code, titles.get(exc.status_code, "Error"), detail)


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI descriptions of the problem responses a route may give."""
    meaning = {
        400: "Bad input (unknown enum value, bad paging, malformed body)",
        401: "Missing or wrong admin key, or the admin API is closed",
        404: "Unknown id (or vendor object not found)",
        409: "Conflict with the current state",
        422: "A well-formed but semantically invalid body",
        502: "The vendor failed to answer",
    }
    return {
        code: ResponseSpec(
            data_container=Problem,
            description=meaning[code],
            media_type=PROBLEM_MEDIA_TYPE,
            generate_examples=False,
        )
        for code in (401, *codes)
    }
