"""What every admin handler shares: the admin key check, path and query parameters, the
check of a system name, the audit log."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from litestar import Request, Response
from litestar.params import PathParameter, QueryParameter

from app.gateway import Gateway
from app.http.context import gateway_of
from app.http.problems import AdminError, Problem, problem_response

log = logging.getLogger("syncgate.admin")


def _presented_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get("x-admin-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def authorize(request: Request[Any, Any, Any]) -> Response[Problem] | None:
    """Runs before every /admin handler (and before its input is parsed)."""
    gateway = gateway_of(request)
    expected = gateway.secrets.admin_key
    challenge = {"WWW-Authenticate": 'Bearer realm="syncgate-admin"'}
    if not expected:
        return problem_response(
            401,
            "Unauthorized",
            f"admin API is closed: set {gateway.settings.admin.api_key_env}",
            headers=challenge,
        )
    presented = _presented_key(request)
    if presented is None:
        return problem_response(
            401,
            "Unauthorized",
            "admin key required: send X-Admin-Key: <key> or Authorization: Bearer <key>",
            headers=challenge,
        )
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        return problem_response(401, "Unauthorized", "wrong admin key", headers=challenge)
    return None


# -- helpers ----------------------------------------------------------------------------------


def check_system(gateway: Gateway, system: str | None, *, status: int = 400) -> None:
    if system is not None and system not in gateway.settings.systems:
        known = ", ".join(sorted(gateway.settings.systems)) or "none"
        raise AdminError(
            status, "Unknown system", f"no system named {system!r} (configured: {known})"
        )


def parse_link_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise AdminError(400, "Bad link id", f"a link id is a positive integer, got {raw!r}")
    return int(raw)


def audit(message: str, **extra: Any) -> None:
    log.info(message, extra={"action": message, **extra})


Limit = Annotated[int, QueryParameter(ge=1, le=500, description="Page size (1-500)")]
Offset = Annotated[int, QueryParameter(ge=0, description="Rows to skip")]
SystemFilter = Annotated[str | None, QueryParameter(description="A configured system name")]
ItemId = Annotated[str, PathParameter(description="Work item id")]
LinkId = Annotated[
    str, PathParameter(description="Link id (an integer: a row of the mapping table)")
]
SystemName = Annotated[str, PathParameter(description="A configured system name")]
