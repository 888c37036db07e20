"""The rig every vendor test module here uses: its vendor (the module's ``SYSTEM``) served
on loopback, from ``tests/vendor_rig.py``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.vendor_rig import VendorRig, serve_vendor


@pytest.fixture
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[VendorRig]:
    async with serve_vendor(request.module.SYSTEM) as rig:
        yield rig
