"""Secrets named in ``config.yaml``, read from the environment, never printed."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgspec
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.config.schema import Settings
from app.errors import ConfigError, ConfigIssue

__all__ = [
    "DATABASE_URL_ENV",
    "MASK",
    "POSTGRESQL_DRIVERS",
    "SQLITE_DRIVERS",
    "Missing",
    "ResolvedSecrets",
    "SystemSecrets",
    "database_url",
    "database_url_problem",
    "env_database_url",
    "missing_env",
    "resolve_environment",
]

#: Overrides ``database_url`` from the file.
DATABASE_URL_ENV = "SYNCGATE_DATABASE_URL"
#: What is shown in place of a secret.
MASK = "***"

#: The spellings of a database URL's dialect Syncgate runs on: SQLite (in process, on the
#: sqlite3 module) and PostgreSQL (on asyncpg); ``Store.connect`` picks the driver.
SQLITE_DRIVERS = ("sqlite", "sqlite+pysqlite", "sqlite+aiosqlite")
POSTGRESQL_DRIVERS = ("postgresql", "postgres", "postgresql+asyncpg", "postgresql+psycopg2")
_EXAMPLES = "sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB"


class SystemSecrets(msgspec.Struct, frozen=True):
    """The secrets of one enabled system. ``repr`` never shows them."""

    api_key: str
    webhook_secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"SystemSecrets(api_key={MASK}, webhook_secrets=<{len(self.webhook_secrets)}>)"

    __str__ = __repr__


class ResolvedSecrets(msgspec.Struct, frozen=True):
    """Secrets read from the environment: per enabled system, and the admin API key
    (``None`` when its variable is unset: the admin API is then closed)."""

    systems: dict[str, SystemSecrets]
    admin_key: str | None = None
    #: Where alert notices go (``alerts.url_env``), None without an ``alerts`` section.
    alert_url: str | None = None

    def __repr__(self) -> str:
        admin = MASK if self.admin_key is not None else "None"
        alerts = MASK if self.alert_url is not None else "None"
        return f"ResolvedSecrets(systems={self.systems!r}, admin_key={admin}, alert_url={alerts})"

    __str__ = __repr__


#: The file of a problem found in the environment rather than in the config file
#: (``load_to_serve`` puts it at the line of the key that names the variable).
ENVIRONMENT = "<environment>"


@dataclass(frozen=True, slots=True)
class Missing:
    """An environment variable that the config names and the environment lacks."""

    key: str  # config key that names the variable
    env: str  # the variable


def missing_env(settings: Settings, environ: Mapping[str, str]) -> Iterator[Missing]:
    """The variables of enabled systems that are unset or empty."""
    for name, system in settings.systems.items():
        if not system.enabled:
            continue
        if not environ.get(system.api_key_env):
            yield Missing(f"systems.{name}.api_key_env", system.api_key_env)
        for index, env in enumerate(system.webhook_secret_envs):
            if not environ.get(env):
                yield Missing(f"systems.{name}.webhook_secret_envs[{index}]", env)
    if settings.alerts is not None and not environ.get(settings.alerts.url_env):
        yield Missing("alerts.url_env", settings.alerts.url_env)


def resolve_environment(settings: Settings, environ: Mapping[str, str]) -> ResolvedSecrets:
    """Read every enabled system's secrets from ``environ``.

    Raises ``ConfigError`` naming the config key and the variable for each one that is
    unset or empty. Disabled systems are skipped; the admin key is optional.
    """
    issues = [
        ConfigIssue(ENVIRONMENT, None, m.key, f"environment variable {m.env} is not set")
        for m in missing_env(settings, environ)
    ]
    if settings.alerts is not None and environ.get(settings.alerts.url_env):
        alert_url = urlsplit(environ[settings.alerts.url_env])
        if alert_url.scheme not in ("http", "https") or not alert_url.hostname:
            issues.append(
                ConfigIssue(
                    ENVIRONMENT,
                    None,
                    "alerts.url_env",
                    f"environment variable {settings.alerts.url_env} is not an http(s) URL"
                    " (alerts are posted to it)",
                )
            )
    if issues:
        raise ConfigError(issues)
    systems = {
        name: SystemSecrets(
            api_key=environ[system.api_key_env],
            webhook_secrets=tuple(environ[env] for env in system.webhook_secret_envs),
        )
        for name, system in settings.systems.items()
        if system.enabled
    }
    return ResolvedSecrets(
        systems=systems,
        admin_key=environ.get(settings.admin.api_key_env) or None,
        alert_url=environ[settings.alerts.url_env] if settings.alerts is not None else None,
    )


def env_database_url(environ: Mapping[str, str]) -> str | None:
    """``SYNCGATE_DATABASE_URL``, or None when it is unset or empty (an empty value is
    ignored: the config's ``database_url`` applies)."""
    return environ.get(DATABASE_URL_ENV) or None


def database_url(settings: Settings, environ: Mapping[str, str]) -> str:
    """``SYNCGATE_DATABASE_URL`` if set (and not empty), else the file's ``database_url``."""
    return env_database_url(environ) or settings.database_url


def database_url_problem(url: str) -> str | None:
    """Why ``url`` names no database Syncgate can keep its state in (None: it can). The
    URL is not repeated: it may hold a password."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return f"not a database URL (expected {_EXAMPLES})"
    driver = parsed.drivername
    if driver not in SQLITE_DRIVERS + POSTGRESQL_DRIVERS:
        return f"{driver!r} is not supported: Syncgate runs on SQLite or PostgreSQL ({_EXAMPLES})"
    if driver in SQLITE_DRIVERS and (
        parsed.database in (None, "", ":memory:")
        or parsed.database.startswith("file::memory:")
        or parsed.query.get("mode") == "memory"
    ):
        return (
            "an in-memory SQLite database is lost when the process ends, and no other"
            " process sees it: give a file, such as sqlite:///var/syncgate.db"
        )
    return None
