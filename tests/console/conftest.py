"""One installation (gateway and four simulators) and one browser for the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.support import Console, Installation, chromium


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    inst = Installation(tmp_path_factory.mktemp("console"))
    inst.start()
    try:
        yield inst
    finally:
        inst.stop()


@pytest.fixture(scope="module")
def browser(installation: Installation) -> Iterator[Console]:
    with chromium() as driver:
        yield Console(driver, installation.url)


@pytest.fixture
def tmp_log(installation: Installation) -> Path:
    return installation.tmp / "gateway.log"
