"""What operators see of a config: the ``check-config`` report, the masked admin dump."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec
import msgspec.inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.config.checks import SystemCaps
from app.config.schema import Settings
from app.config.secrets import MASK, missing_env
from app.errors import ConfigIssue

__all__ = ["dump_effective", "mask_database_url", "mask_userinfo", "ok_report"]


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
        out.append(str(ConfigIssue(file, line_of(lines, key), key, f"warning: {message}")))
    return "\n".join(out)


def line_of(lines: Mapping[str, int], key: str) -> int | None:
    """The line of ``key`` (``systems.x.webhook_secret_envs[1]``), or of the nearest
    section above it that the file has (a key left at its default is not in the file)."""
    while key:
        if key in lines:
            return lines[key]
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return None


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def dump_effective(
    settings: Settings, known: Mapping[str, SystemCaps] | None = None
) -> dict[str, Any]:
    """The effective config as plain data, for the admin API, secrets masked by parsing.

    Settings hold only environment variable *names*, so little is secret, but:

    - ``database_url`` is parsed as SQLAlchemy does (``make_url``): its password (even
      one holding ``/``, ``?`` or ``#``) and query parameters such as ``?password=``;
    - URLs with userinfo (``base_url``, ``proxy``, and any URL among option and
      ``create_in`` ``params`` values) lose the user and the password;
    - in adapter ``options`` (``options``: each system's ``Options`` struct), a field
      declared secret (``msgspec.Meta(extra={"secret": True})``) is masked, and there
      and in the free-form ``params`` a value under a key that names a secret (secret,
      token, password, key, credential, authorization, ...; keys ending in ``_env`` name a
      variable and are kept).
    """
    data: dict[str, Any] = msgspec.to_builtins(settings)
    data["database_url"] = mask_database_url(data["database_url"])
    for name, system in data.get("systems", {}).items():
        caps = (known or {}).get(name)
        declared = _declared_secrets(caps.options if caps else None)
        system["base_url"] = mask_userinfo(system["base_url"])
        system["options"] = {
            key: MASK if key in declared and value is not None else _mask(value, hide=False)
            for key, value in _mask(system.get("options", {}), hide=False).items()
        }
        if system.get("proxy"):
            system["proxy"] = mask_userinfo(system["proxy"])
    for rule in data.get("create_rules", []):
        for target in rule.get("create_in", []):
            target["params"] = _mask(target.get("params", {}), hide=False)
    return data


_SECRET_WORDS = (
    "secret",
    "token",
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "key",
    "credential",
    "authorization",
    "cookie",
    "session",
    "signature",
    "private",
    "dsn",
)


def _secretish(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    lowered = key.lower()
    return not lowered.endswith("_env") and any(word in lowered for word in _SECRET_WORDS)


def _declared_secrets(options: type[msgspec.Struct] | None) -> set[str]:
    if options is None:
        return set()
    info = msgspec.inspect.type_info(options)
    assert isinstance(info, msgspec.inspect.StructType)
    found = set()
    for field in info.fields:
        extra = getattr(field.type, "extra", None) or {}
        if extra.get("secret"):
            found.add(field.encode_name)
    return found


def _mask(value: Any, *, hide: bool) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, hide=hide or _secretish(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, hide=hide) for v in value]
    if hide and value is not None:
        return MASK
    if isinstance(value, str):
        return mask_userinfo(value)
    return value


_PLACEHOLDER = "SYNCGATEMASKED"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def mask_database_url(url: str) -> str:
    """``url`` parsed as SQLAlchemy parses it, with its password and secret query
    parameters masked; a URL it cannot parse is masked whole."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return MASK
    changes: dict[str, Any] = {}
    if parsed.host and "@" in parsed.host:  # an unencoded "@" in the password
        changes["host"] = parsed.host.rpartition("@")[2]
        changes["password"] = _PLACEHOLDER
    elif parsed.password is not None:
        changes["password"] = _PLACEHOLDER
    if any(_secretish(k) for k in parsed.query):
        changes["query"] = {
            k: _PLACEHOLDER if _secretish(k) else v for k, v in parsed.query.items()
        }
    rendered = parsed.set(**changes).render_as_string(hide_password=False)
    return rendered.replace(_PLACEHOLDER, MASK)


def mask_userinfo(value: str) -> str:
    """A URL's userinfo (``user:password@``, or a token as the user) masked; any other
    string unchanged. The userinfo runs to the last ``@`` (a password may hold an
    unencoded ``/``, ``?``, ``#`` or ``@``) unless that ``@`` is in the path."""
    scheme = _SCHEME.match(value)
    if scheme is None or "@" not in value[scheme.end() :]:
        return value
    rest = value[scheme.end() :]
    userinfo, _, host = rest.rpartition("@")
    first_colon, first_slash = userinfo.find(":"), userinfo.find("/")
    if first_slash != -1 and (
        not -1 < first_colon < first_slash or userinfo[first_colon + 1 : first_slash].isdigit()
    ):
        return value  # "https://host[:port]/path/@name": the "@" is in the path
    masked = f"{MASK}:{MASK}" if ":" in userinfo else MASK
    return f"{value[: scheme.end()]}{masked}@{host}"
