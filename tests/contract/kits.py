"""Every vendor's kit for the tests, by system name."""

from __future__ import annotations

import importlib

from adapters import VENDORS
from tests.contract.kit import VendorKit

KITS: dict[str, VendorKit] = {
    system: importlib.import_module(f"tests.contract.kit_{system}").KIT for system in VENDORS
}
