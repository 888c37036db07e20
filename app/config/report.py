"""What operators see of a config: the ``check-config`` report, the masked admin dump."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from app.config.schema import Settings
from app.config.secrets import MASK, missing_env
from app.errors import ConfigIssue

__all__ = ["dump_effective", "ok_report"]

_SECRET_WORDS = ("secret", "token", "password", "key")


def ok_report(
    file: str, settings: Settings, lines: Mapping[str, int], environ: Mapping[str, str]
) -> str:
    """``"<file>: OK (4 systems, 1 creation rule)"`` and a warning line, at the line of its
    key, per unset environment variable (check-config runs before deploy, where they may
    not be set)."""
    n_systems, n_rules = len(settings.systems), len(settings.create_rules)
    n_links = len(settings.link_rules)
    links = f", {n_links} {_plural(n_links, 'link rule')}" if n_links else ""
    out = [
        f"{file}: OK ({n_systems} {_plural(n_systems, 'system')}, "
        f"{n_rules} {_plural(n_rules, 'creation rule')}{links})"
    ]
    warnings = [
        (m.key, f"environment variable {m.env} is not set") for m in missing_env(settings, environ)
    ]
    if not environ.get(settings.admin.api_key_env):
        warnings.append(
            (
                "admin.api_key_env",
                f"environment variable {settings.admin.api_key_env} is not set; "
                "the admin API will be closed",
            )
        )
    for key, message in warnings:
        out.append(str(ConfigIssue(file, lines.get(key), key, f"warning: {message}")))
    return "\n".join(out)


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def dump_effective(settings: Settings) -> dict[str, Any]:
    """The effective config as plain data, for the admin API.

    Settings hold only environment variable *names*, so little is secret; but in adapter
    ``options`` (declared by each adapter) and the free-form ``create_in`` ``params``, a
    value under a key that mentions secret, token, password or key is replaced by
    ``"***"`` (keys ending in ``_env`` name a variable and are kept). A password in
    ``database_url`` is masked too.
    """
    data: dict[str, Any] = msgspec.to_builtins(settings)
    data["database_url"] = _mask_url(data["database_url"])
    for system in data.get("systems", {}).values():
        system["options"] = _mask(system.get("options", {}), hide=False)
        if system.get("proxy"):
            system["proxy"] = _mask_url(system["proxy"])
    for rule in data.get("create_rules", []):
        for target in rule.get("create_in", []):
            target["params"] = _mask(target.get("params", {}), hide=False)
    return data


def _secretish(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return not lowered.endswith("_env") and any(word in lowered for word in _SECRET_WORDS)


def _mask(value: Any, *, hide: bool) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, hide=hide or _secretish(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, hide=hide) for v in value]
    if hide and value is not None:
        return MASK
    return value


_URL_PASSWORD = re.compile(r"^(?P<head>[^:/?#]+://[^:/@?#]*:)(?P<password>[^@/?#]*)(?P<tail>@.*)$")


def _mask_url(url: str) -> str:
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", url)
