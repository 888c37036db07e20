"""Shared fixtures: simulators served on loopback, HTTP clients into them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.serving import serve_asgi


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An outbound client like the gateway's: short timeouts, no redirects."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as client:
        yield client


async def served(app: object) -> AsyncIterator[str]:
    async with serve_asgi(app) as url:
        yield url
