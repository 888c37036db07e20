"""One installation (gateway and four simulators) and one browser for the module. The
screenshots go to a temporary folder, or to docs/console/ with
SYNCGATE_UPDATE_SCREENSHOTS=1 (to refresh the committed ones)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.console.support import Console, Installation, chromium, screenshot_folder


@pytest.fixture(scope="module")
def installation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installation]:
    inst = Installation(tmp_path_factory.mktemp("console"))
    inst.start()
    try:
        yield inst
    finally:
        inst.stop()


@pytest.fixture(scope="module")
def browser(
    installation: Installation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    folder = screenshot_folder(tmp_path_factory.mktemp("screenshots"))
    with chromium() as driver:
        yield Console(driver, installation.url, folder)


@pytest.fixture
def tmp_log(installation: Installation) -> Path:
    return installation.tmp / "gateway.log"
