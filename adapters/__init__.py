"""The vendor registry: system name -> adapter class and simulator class.

Adding a vendor means adding one folder under ``adapters/`` and one line here. Entries are
import paths so that loading the registry imports no vendor code until it is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adapters.base import Adapter

#: system -> (adapter class path, simulator class path)
VENDORS: dict[str, tuple[str, str]] = {
    "hookstream": (
        "adapters.hookstream.adapter:HookstreamAdapter",
        "adapters.hookstream.simulator:HookstreamSimulator",
    ),
    "devhelm": (
        "adapters.devhelm.adapter:DevHelmAdapter",
        "adapters.devhelm.simulator:DevHelmSimulator",
    ),
    "inboxops": (
        "adapters.inboxops.adapter:InboxOpsAdapter",
        "adapters.inboxops.simulator:InboxOpsSimulator",
    ),
    "incidentio": (
        "adapters.incidentio.adapter:IncidentIoAdapter",
        "adapters.incidentio.simulator:IncidentIoSimulator",
    ),
}


def _load(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def adapter_class(system: str) -> type[Adapter]:
    """The adapter class for ``system``; KeyError names the known systems."""
    if system not in VENDORS:
        raise KeyError(f"unknown system {system!r}; known: {', '.join(sorted(VENDORS))}")
    return _load(VENDORS[system][0])  # type: ignore[no-any-return]


def simulator_class(system: str) -> Any:
    """The simulator class for ``system`` (see ``adapters/_simkit.py``)."""
    if system not in VENDORS:
        raise KeyError(f"unknown system {system!r}; known: {', '.join(sorted(VENDORS))}")
    return _load(VENDORS[system][1])
