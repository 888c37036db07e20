"""The gateway a request is served by (kept in the app's state by ``create_app``)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from app.gateway import Gateway


def gateway_of(request: Request[Any, Any, Any]) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]
