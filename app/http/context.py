"""The gateway a request is served by (kept in the app's state by ``create_app``), and
the app's request class."""

from __future__ import annotations

from typing import Any

from litestar import Request

from app.errors import RequestError
from app.gateway import Gateway
from app.model import MAX_JSON_DEPTH, json_too_deep


def gateway_of(request: Request[Any, Any, Any]) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


class SyncgateRequest(Request[Any, Any, Any]):
    """Litestar's request, refusing a JSON body nested deeper than ``MAX_JSON_DEPTH``
    (400) before it is decoded: every JSON request body the app reads (the admin API's)
    goes through ``json``."""

    async def json(self) -> Any:
        if json_too_deep(await self.body()):
            raise RequestError(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels")
        return await super().json()
