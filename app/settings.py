"""The config schema's old address: everything here is ``app.config.schema``."""

from __future__ import annotations

from app.config.schema import (
    AdminSettings,
    Base,
    Conflict,
    CreateIn,
    CreateRule,
    Direction,
    DispatcherSettings,
    FieldRule,
    HistorySettings,
    Match,
    ServerSettings,
    Settings,
    SystemSettings,
    ValueMapSettings,
)

__all__ = [
    "AdminSettings",
    "Base",
    "Conflict",
    "CreateIn",
    "CreateRule",
    "Direction",
    "DispatcherSettings",
    "FieldRule",
    "HistorySettings",
    "Match",
    "ServerSettings",
    "Settings",
    "SystemSettings",
    "ValueMapSettings",
]
