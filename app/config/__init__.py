"""Loading ``config.yaml`` into ``Settings``, or a ``ConfigError`` listing every problem.

Each problem names file, line and dotted key (``systems.hookstream.poll_interval_s``,
``create_rules[0].create_in[1].system``). The package:

- ``schema``: the shape of the file, frozen msgspec structs (``Settings``);
- ``reader``: walks the YAML nodes against a schema, keeping every key's line;
- ``checks``: cross-checks of the data against itself and against what each system's
  adapter can do (``SystemCaps``, passed in by the composition root: this package does not
  import ``adapters``); each system's ``options`` are read against its adapter's
  ``Options`` struct (``SystemCaps.options``) like any other key;
- ``secrets``: the environment variables the file names, never printed;
- ``report``: ``check-config``'s output and the masked dump for the admin API.

Only when nothing was reported does ``msgspec.convert`` build the frozen structs.
Nothing is read at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import msgspec.inspect as mi
import yaml

from app.config.checks import CONFLICT_POLICIES, SCOPED_CREATE, Checker, SystemCaps
from app.config.reader import Reader, syntax_issue
from app.config.report import dump_effective, line_of, ok_report
from app.config.schema import Settings
from app.config.secrets import (
    DATABASE_URL_ENV,
    ENVIRONMENT,
    ResolvedSecrets,
    SystemSecrets,
    database_url,
    database_url_problem,
    env_database_url,
    resolve_environment,
)
from app.errors import ConfigError, ConfigIssue

__all__ = [
    "CONFLICT_POLICIES",
    "DATABASE_URL_ENV",
    "SCOPED_CREATE",
    "ResolvedSecrets",
    "SystemCaps",
    "SystemSecrets",
    "check_config",
    "database_url",
    "database_url_problem",
    "dump_effective",
    "env_database_url",
    "load_config",
    "load_to_serve",
    "resolve_environment",
]


def load_config(
    path: str | os.PathLike[str], known: Mapping[str, SystemCaps], *, to_serve: bool = False
) -> Settings:
    """Read, validate and cross-check ``path``; raise ``ConfigError`` with every problem.
    ``to_serve``: a config to serve (or backfill) from, which must enable a system (one
    that enables none is still read, by ``migrate`` for its ``database_url``)."""
    settings, _ = _load(path, known, to_serve=to_serve)
    return settings


def load_to_serve(
    path: str | os.PathLike[str],
    known: Mapping[str, SystemCaps],
    environ: Mapping[str, str],
    *,
    admin_key_needed: bool = False,
) -> tuple[Settings, ResolvedSecrets]:
    """``load_config(to_serve=True)`` and ``resolve_environment``: what serve and a reload
    start from. A variable the environment lacks is reported at the file and line of the
    key that names it (or of its section, when the key is left at its default). With
    ``admin_key_needed`` (a reload through the admin API), an unset admin key is one of
    them: applied, it would close the API the reload came through."""
    file = os.fspath(path)
    settings, lines = _load(path, known, to_serve=True)
    try:
        secrets = resolve_environment(settings, environ)
        if admin_key_needed and secrets.admin_key is None:
            env = settings.admin.api_key_env
            raise ConfigError(
                [
                    ConfigIssue(
                        ENVIRONMENT,
                        None,
                        "admin.api_key_env",
                        f"environment variable {env} is not set: this reload would close the"
                        " admin API it came through (set it, or restart to close the API)",
                    )
                ]
            )
        return settings, secrets
    except ConfigError as exc:
        raise ConfigError(
            [
                ConfigIssue(file, line_of(lines, i.key), i.key, i.message)
                if i.file == ENVIRONMENT
                else i
                for i in exc.issues
            ]
        ) from None


def check_config(
    path: str | os.PathLike[str], known: Mapping[str, SystemCaps], environ: Mapping[str, str]
) -> tuple[int, str]:
    """What ``syncgate check-config`` prints and its exit code.

    0 and ``"<file>: OK (4 systems, 1 creation rule)"`` plus a warning line per unset
    environment variable (check-config runs before deploy, where they may not be set);
    1 and one ``file:line: key: message`` line per problem. The file is checked as
    ``serve`` reads it: it must enable a system.
    """
    try:
        settings, lines = _load(path, known, to_serve=True)
    except ConfigError as exc:
        return 1, "\n".join(str(issue) for issue in exc.issues)
    return 0, ok_report(os.fspath(path), settings, lines, environ)


def _load(
    path: str | os.PathLike[str], known: Mapping[str, SystemCaps], *, to_serve: bool = False
) -> tuple[Settings, dict[str, int]]:
    """``Settings`` and the line of every key path (for later messages, e.g. env warnings)."""
    file = os.fspath(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        hint = (
            f" (syncgate init {file} writes a commented one to start from)"
            if isinstance(exc, FileNotFoundError)
            else ""
        )
        raise ConfigError(
            [ConfigIssue(file, None, "(file)", f"cannot read: {exc.strerror or exc}{hint}")]
        ) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(file, line, "(file)", "not UTF-8 text")]) from None

    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()  # what yaml.compose does, keeping the loader
    except yaml.YAMLError as exc:
        raise ConfigError([syntax_issue(file, text, exc)]) from None
    except RecursionError:  # PyYAML's parser recurses once per level (a few hundred)
        raise ConfigError([_too_deep(file, loader.line + 1)]) from None
    finally:
        loader.dispose()

    # An adapter's options are free-form in the schema; each known system's must fit its
    # adapter's ``Options`` struct, checked by the same walk so problems carry their line.
    options = {
        f"systems.{name}.options": mi.type_info(caps.options) for name, caps in known.items()
    }
    reader = Reader(file, types=options)
    try:
        if root is None:  # empty file, or only comments: every key takes its default
            data: Any = {}
        else:
            data = reader.walk(root, mi.type_info(Settings), "", root.start_mark.line + 1)
        if isinstance(data, dict):
            Checker(file, reader.lines, known, reader.issues).run(data)
            if to_serve:
                reader.issues.extend(_nothing_to_serve(file, reader.lines, known, data))
    except RecursionError:  # pragma: no cover - the parser above gives up first
        raise ConfigError([_too_deep(file, None)]) from None
    if reader.issues:
        raise ConfigError(sorted(reader.issues, key=lambda i: i.line or 0))
    try:
        settings = msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:  # pragma: no cover - the walk mirrors the schema
        raise ConfigError([ConfigIssue(file, None, "(schema)", str(exc))]) from None
    return settings, reader.lines


def _too_deep(file: str, line: int | None) -> ConfigIssue:
    return ConfigIssue(
        file,
        line,
        "(yaml)",
        "nested too deeply to read (hundreds of levels); no setting nests more than a few",
    )


def _nothing_to_serve(
    file: str, lines: Mapping[str, int], known: Mapping[str, SystemCaps], data: dict[str, Any]
) -> list[ConfigIssue]:
    """The issue of a config that enables no system (a gateway that syncs nothing and is
    never ready), or none."""
    systems = data.get("systems", {})  # an empty file has no key at all
    if not isinstance(systems, dict):
        return []  # reported by the walk
    line = lines.get("systems")
    if not systems:
        names = ", ".join(known) or "none known"
        return [
            ConfigIssue(
                file,
                line,
                "systems",
                f"no system is configured: add at least one ({names});"
                " syncgate init writes a commented example",
            )
        ]
    if all(isinstance(s, dict) and s.get("enabled") is False for s in systems.values()):
        return [
            ConfigIssue(
                file,
                line,
                "systems",
                "every system is disabled (enabled: false): enable at least one",
            )
        ]
    return []
