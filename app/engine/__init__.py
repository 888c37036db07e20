"""The engine: the only writer of canonical state and of links (``Engine``)."""

from app.engine.batch import Outcome
from app.engine.core import Engine, created_since, origin_item_id, vendor_changed
from app.engine.operator import ResyncOutcome

__all__ = [
    "Engine",
    "Outcome",
    "ResyncOutcome",
    "created_since",
    "origin_item_id",
    "vendor_changed",
]
