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

log = logging.getLogger("syncgate.admin")


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
    """Raised by a handler; answered as a problem (one place builds every error response)."""

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


def not_found(what: str) -> AdminError:
    return AdminError(404, "Not found", what)


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
