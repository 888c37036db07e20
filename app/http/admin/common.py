"""What every admin handler shares: the admin key check, path and query parameters, the
check of a system name, the audit log."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.openapi.spec import Example
from litestar.params import BodyKwarg, ParameterKwarg, PathParameter, QueryParameter

from app.gateway import Gateway, vendor_names
from app.http.context import gateway_of
from app.http.problems import AdminError, Problem, problem_response

log = logging.getLogger("syncgate.admin")

ADMIN_PREFIX = "/admin"


def _presented_key(request: Request[Any, Any, Any]) -> str | None:
    key = request.headers.get("x-admin-key")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def refusal(request: Request[Any, Any, Any]) -> Response[Problem] | None:
    """The 401 a request under /admin gets without the right key (None: let it through).
    Checked before anything else looks at the request: its method, path or input."""
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


def is_admin_path(path: str) -> bool:
    return path == ADMIN_PREFIX or path.startswith(ADMIN_PREFIX + "/")


def options_answer(request: Request[Any, Any, Any]) -> Response[None] | None:
    """OPTIONS on an admin path: 204 with every method the path has in ``Allow``.
    (Litestar's own OPTIONS handler lists only the methods of the first handler group
    registered for the path, e.g. GET but not POST on /admin/work-items.)"""
    if request.method != "OPTIONS":
        return None
    template = request.scope.get("path_template")
    methods = {m for route in request.app.routes if route.path == template for m in route.methods}
    return Response(None, status_code=204, headers={"Allow": ", ".join(sorted(methods))})


def repeated_query(request: Request[Any, Any, Any]) -> Response[Problem] | None:
    """No admin query parameter is a list: one given twice is refused, not half read."""
    names = [name for name, _ in request.query_params.multi_items()]
    twice = sorted({name for name in names if names.count(name) > 1})
    if not twice:
        return None
    return problem_response(
        400, "Bad request", f"query parameter given more than once: {', '.join(twice)}"
    )


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(v) for v in value)
    return False


async def nul_input(
    request: Request[Any, Any, Any], *, query: bool = True
) -> Response[Problem] | None:
    """A 400 for a NUL character anywhere in the path, the query (unless ``query`` is
    false: the console's pages name a filter they cannot use in a notice) or a JSON or
    form body: no PostgreSQL text takes one, so it would end in a database error (a 500)
    wherever it reached a statement. Vendors' texts are read without theirs
    (``VendorObject``)."""
    where = None
    if "\x00" in request.url.path:
        where = "the path"
    elif query and any(
        _holds_nul(k) or _holds_nul(v) for k, v in request.query_params.multi_items()
    ):
        where = "the query"
    elif request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()
        form = request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        )
        if form and b"%00" in body:
            where = "the body"
        elif not form and b"\\u0000" in body.lower():
            try:
                where = "the body" if _holds_nul(msgspec.json.decode(body)) else None
            except msgspec.DecodeError:
                where = None  # not JSON: the handler says so
    if where is None:
        return None
    return problem_response(
        400,
        "Bad request",
        f"{where} holds a NUL character (\\u0000 or %00), which cannot be stored: leave it out",
    )


#: Handler parameters that are never read from the query.
_NOT_QUERY = frozenset(
    {"request", "data", "state", "headers", "cookies", "query", "scope", "body", "socket"}
)
_QUERY_NAMES: dict[int, frozenset[str]] = {}


def _query_names(handler: Any) -> frozenset[str]:
    """The query parameters ``handler`` declares, by the names they are given as."""
    names = _QUERY_NAMES.get(id(handler))
    if names is None:
        found = set()
        for name, field in handler.parsed_fn_signature.parameters.items():
            kwarg = field.kwarg_definition
            if name in _NOT_QUERY or isinstance(kwarg, PathParameter | BodyKwarg):
                continue
            if isinstance(kwarg, ParameterKwarg):
                if kwarg.header or kwarg.cookie:
                    continue
                name = kwarg.query or kwarg.name or name
            found.add(name)
        names = _QUERY_NAMES[id(handler)] = frozenset(found)
    return names


def unknown_query(request: Request[Any, Any, Any]) -> Response[Problem] | None:
    """A query parameter the route does not take is refused, not ignored: a misspelt
    filter (``discard-dead?sytem=devhelm``) would otherwise act on everything."""
    names = _query_names(request.route_handler) - set(request.path_params)
    unknown = sorted({k for k in request.query_params if k not in names})
    if not unknown:
        return None
    takes = ", ".join(sorted(names)) or "none"
    return problem_response(
        400,
        "Bad request",
        f"unknown query parameter: {', '.join(unknown)} (this route takes: {takes})",
    )


async def authorize(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """Runs before every /admin handler (and before its input is parsed): the key first,
    then OPTIONS, repeated or unknown query parameters and NUL characters. Unknown admin paths and
    methods are refused the same way first (``app/http/app.py``)."""
    return (
        refusal(request)
        or options_answer(request)
        or repeated_query(request)
        or unknown_query(request)
        or await nul_input(request)
    )


# -- helpers ----------------------------------------------------------------------------------


def check_system(
    gateway: Gateway, system: str | None, *, status: int = 422, removed: bool = False
) -> None:
    """A system named in a query or a body must be configured: else 422 (the request is
    well-formed, it names nothing), or ``status``. With ``removed``, a filter of what the
    database keeps (outbox, events), any system Syncgate has an adapter for will do: one
    removed from the config leaves its dead letters and events behind."""
    if system is None or system in gateway.settings.systems:
        return
    if removed and system in vendor_names():
        return
    known = ", ".join(sorted(gateway.settings.systems)) or "none"
    raise AdminError(status, "Unknown system", f"no system named {system!r} (configured: {known})")


def parse_link_id(raw: str) -> int:
    # ASCII digits only: str.isdigit() also accepts "¹" or "①", which int() refuses
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise AdminError(400, "Bad link id", f"a link id is a positive integer, got {raw!r}")
    return int(raw)


def audit(message: str, **extra: Any) -> None:
    log.info(message, extra={"action": message, **extra})


Limit = Annotated[
    int, QueryParameter(ge=1, le=500, description="Page size (1-500)", examples=[Example(value=50)])
]
Offset = Annotated[
    int,
    QueryParameter(ge=0, le=1_000_000_000, description="Rows to skip", examples=[Example(value=0)]),
]
SystemFilter = Annotated[
    str | None,
    QueryParameter(description="A configured system name", examples=[Example(value="inboxops")]),
]
#: Ids in paths are ASCII (a Unicode digit such as "¹" or "①" is refused with a reason).
ItemId = Annotated[
    str,
    PathParameter(
        description="Work item id (32 hex digits as the gateway makes them)",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        examples=[Example(value="b7c9f1d2e3a44f5b8c6d7e8f9a0b1c2d")],
    ),
]
LinkId = Annotated[
    str,
    PathParameter(
        description="Link id: a row of the mapping table (ASCII digits)",
        pattern=r"^[0-9]{1,18}$",
        examples=[Example(value="42")],
    ),
]
EventId = Annotated[
    str,
    PathParameter(
        description="Event id: a row of the event log (ASCII digits)",
        pattern=r"^[0-9]{1,18}$",
        examples=[Example(value="7")],
    ),
]
SystemName = Annotated[
    str,
    PathParameter(
        description="A configured system name",
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        examples=[Example(value="inboxops")],
    ),
]
