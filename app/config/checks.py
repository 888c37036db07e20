"""Cross-checks of ``config.yaml``: references, adapter capabilities, ranges."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import msgspec

from app.config.reader import join_key
from app.config.schema import Direction
from app.config.secrets import database_url_problem
from app.errors import ConfigIssue
from app.model import FIELD_NAMES, Priority, Status

__all__ = ["CONFLICT_POLICIES", "SCOPED_CREATE", "Checker", "SystemCaps", "identity_email_problem"]

#: Systems whose objects live inside a scope, so a ``create_in`` must name one
#: (DevHelm: the status page; incident.io: the incident a follow-up belongs to).
SCOPED_CREATE: Mapping[str, str] = {
    "devhelm": "the status page id to create incidents on",
    "incidentio": "the incident id to create follow-ups in",
}
CONFLICT_POLICIES = ("last_writer", "prefer")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class SystemCaps(msgspec.Struct, frozen=True):
    """What the adapter of one system can do; the composition root builds these."""

    readable: frozenset[str]
    writable: frozenset[str]
    can_create: bool
    #: The struct ``systems.<name>.options`` must fit (the adapter's ``Options``).
    options: type[msgspec.Struct]


class Checker:
    """Checks that need more than one value, or values against ``known``.

    Works on the plain data the reader built, in which values that failed the schema are
    absent (or ``None`` in lists), so every problem of the file lands in one report.
    """

    def __init__(
        self,
        file: str,
        lines: Mapping[str, int],
        known: Mapping[str, SystemCaps],
        issues: list[ConfigIssue],
    ) -> None:
        self.file = file
        self.lines = lines
        self.known = known
        self.issues = issues
        self.configured: set[str] = set()

    def line_of(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None

    def issue(self, path: str, message: str, *, line_path: str | None = None) -> None:
        self.issues.append(ConfigIssue(self.file, self.line_of(line_path or path), path, message))

    def run(self, data: dict[str, Any]) -> None:
        systems = _mapping(data.get("systems"))
        self.configured = set(systems)
        for name, system in systems.items():
            self.check_system(name, _mapping(system))
        self.check_rules(data.get("create_rules"))
        self.check_link_rules(data.get("link_rules"))
        for name, rule in _mapping(data.get("fields")).items():
            self.check_field(name, _mapping(rule))
        self.check_identities(data.get("identities"))
        self.check_sections(data)

    # -- helpers ---------------------------------------------------------------------------

    def system_ref(self, name: str, path: str) -> bool:
        """Whether ``name`` is a configured system; reports it otherwise."""
        if name in self.configured:
            return True
        listing = ", ".join(sorted(self.configured)) or "none"
        self.issue(path, f"{name!r} is not a configured system (configured: {listing})")
        return False

    def number(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        *,
        ge: float | None = None,
        gt: float | None = None,
        le: float | None = None,
    ) -> None:
        value = data.get(key)
        if not isinstance(value, int | float):
            return
        sub = join_key(path, key)
        if gt is not None and not value > gt:
            self.issue(sub, f"must be greater than {_num(gt)}, got {_num(value)}")
        elif ge is not None and le is not None and not ge <= value <= le:
            self.issue(sub, f"must be between {_num(ge)} and {_num(le)}, got {_num(value)}")
        elif ge is not None and not value >= ge:
            self.issue(sub, f"must be at least {_num(ge)}, got {_num(value)}")

    def env_name(self, value: Any, path: str) -> None:
        if isinstance(value, str) and not ENV_NAME.match(value):
            self.issue(
                path,
                f"{value!r} is not an environment variable name "
                "(upper-case letters, digits and _, not starting with a digit); "
                "put the secret in the environment and its name here",
            )

    # -- systems ---------------------------------------------------------------------------

    def check_ui_url(self, value: Any, path: str) -> None:
        """A link template: an http(s) URL naming ``{external_id}`` (and at most
        ``{scope}``)."""
        if not isinstance(value, str):
            return
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.issue(path, f"expected an http(s):// URL, got {value!r}")
            return
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        except ValueError as exc:
            self.issue(path, f"not a URL template: {exc}")
            return
        unknown = names - {"external_id", "scope"}
        if unknown:
            self.issue(
                path,
                f"unknown placeholder(s) {', '.join(sorted(unknown))}: "
                "use {external_id} and {scope}",
            )
        elif "external_id" not in names:
            self.issue(path, "must name {external_id}, the object's id in the vendor")

    def check_system(self, name: str, system: Mapping[str, Any]) -> None:
        path = f"systems.{name}"
        if name not in self.known:
            self.issue(
                path, f"unknown system {name!r} (known: {', '.join(sorted(self.known)) or 'none'})"
            )
        base_url = system.get("base_url")
        if isinstance(base_url, str):
            parts = urlsplit(base_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.issue(f"{path}.base_url", f"expected an http(s):// URL, got {base_url!r}")
        self.check_ui_url(system.get("ui_url"), f"{path}.ui_url")
        proxy = system.get("proxy")
        if isinstance(proxy, str) and proxy:
            parts = urlsplit(proxy)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.issue(f"{path}.proxy", "expected an http(s)://host:port URL")
        self.env_name(system.get("api_key_env"), f"{path}.api_key_env")
        for index, env in enumerate(system.get("webhook_secret_envs") or []):
            self.env_name(env, f"{path}.webhook_secret_envs[{index}]")
        self.number(system, "poll_interval_s", path, ge=0)
        self.number(system, "poll_overlap_s", path, ge=0)
        self.number(system, "webhook_tolerance_s", path, gt=0)
        self.number(system, "page_size", path, ge=1, le=1000)
        self.number(system, "max_connections", path, ge=1)
        self.number(system, "timeout_s", path, gt=0)
        self.number(system, "max_clock_skew_s", path, ge=0)
        for index, scope in enumerate(system.get("scopes") or []):
            if scope == "":
                self.issue(f"{path}.scopes[{index}]", "must not be empty")
        self.check_value_map(system.get("status_map"), f"{path}.status_map", Status, "status")
        self.check_value_map(
            system.get("priority_map"), f"{path}.priority_map", Priority, "priority"
        )

    def check_value_map(
        self, value_map: Any, path: str, enum: type[Status | Priority], what: str
    ) -> None:
        if not isinstance(value_map, dict):
            return
        allowed = [str(m.value) for m in enum]
        wrong = f"is not a canonical {what} (one of {' | '.join(allowed)})"
        for vendor, canonical in _mapping(value_map.get("inbound")).items():
            if isinstance(canonical, str) and canonical not in allowed:
                self.issue(f"{path}.inbound.{vendor}", f"{canonical!r} {wrong}")
        for canonical, vendor_values in _mapping(value_map.get("outbound")).items():
            sub = f"{path}.outbound.{canonical}"
            if canonical not in allowed:
                self.issue(sub, f"{canonical!r} {wrong}")
            if vendor_values == []:
                self.issue(sub, "must list at least one vendor value (the preferred one first)")

    # -- creation rules --------------------------------------------------------------------

    def rule_name(self, name: Any, path: str, names: dict[str, str]) -> None:
        """A rule's name: not empty, and unique among ``names`` (name -> where it is)."""
        if not isinstance(name, str):
            return
        if not name.strip():
            self.issue(f"{path}.name", "must not be empty")
        elif name in names:
            self.issue(f"{path}.name", f"duplicate rule name {name!r} (also {names[name]})")
        else:
            names[name] = path

    def check_rules(self, rules: Any) -> None:
        names: dict[str, str] = {}
        for index, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict):
                continue
            path = f"create_rules[{index}]"
            self.rule_name(rule.get("name"), path, names)
            source = rule.get("system")
            if isinstance(source, str):
                self.system_ref(source, f"{path}.system")
            targets = rule.get("create_in")
            if targets == []:
                self.issue(f"{path}.create_in", "must name at least one system to create in")
            seen: set[str] = set()
            for j, target in enumerate(targets if isinstance(targets, list) else []):
                if isinstance(target, dict):
                    self.check_create_in(target, f"{path}.create_in[{j}]", source, seen)

    def check_link_rules(self, rules: Any) -> None:
        names: dict[str, str] = {}
        for index, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict):
                continue
            path = f"link_rules[{index}]"
            self.rule_name(rule.get("name"), path, names)
            sides = {}
            for side in ("left", "right"):
                key = rule.get(side)
                if isinstance(key, dict):
                    sides[side] = key.get("system")
                    self.check_link_key(key, f"{path}.{side}")
            left, right = sides.get("left"), sides.get("right")
            if isinstance(left, str) and left == right:
                self.issue(
                    f"{path}.right.system",
                    f"both sides name {left!r}: a link rule matches objects of two systems",
                )

    def check_link_key(self, key: Mapping[str, Any], path: str) -> None:
        system = key.get("system")
        if isinstance(system, str):
            self.system_ref(system, f"{path}.system")
        field_path = key.get("path")
        if isinstance(field_path, str) and not all(field_path.split(".")):
            self.issue(f"{path}.path", f"{field_path!r} is not a dotted field path (a.b.c)")
        regex = key.get("regex")
        if isinstance(regex, str):
            try:
                groups = re.compile(regex).groups
            except re.error as exc:
                self.issue(f"{path}.regex", f"not a regular expression: {exc}")
                return
            if groups != 1:
                self.issue(
                    f"{path}.regex", f"must have exactly one group (the key), it has {groups}"
                )

    def check_create_in(
        self, target: Mapping[str, Any], path: str, source: Any, seen: set[str]
    ) -> None:
        system = target.get("system")
        if not isinstance(system, str) or not self.system_ref(system, f"{path}.system"):
            return
        # One problem per entry: a scope is only worth asking for once the system is right.
        caps = self.known.get(system)
        problem = None
        if caps is not None and not caps.can_create:
            can = ", ".join(
                sorted(n for n in self.configured if n in self.known and self.known[n].can_create)
            )
            problem = f"{system!r} cannot create objects (systems that can: {can or 'none'})"
        elif system == source:
            problem = f"a rule cannot create in its own source system {system!r}"
        elif system in seen:
            problem = f"{system!r} is listed twice in this rule"
        seen.add(system)
        if problem is not None:
            self.issue(f"{path}.system", problem)
            return
        if system in SCOPED_CREATE and not target.get("scope"):
            self.issue(
                f"{path}.scope",
                f"{system} needs a scope: {SCOPED_CREATE[system]}",
                line_path=path,
            )

    # -- fields ----------------------------------------------------------------------------

    def check_field(self, name: str, rule: Mapping[str, Any]) -> None:
        path = f"fields.{name}"
        known_field = name in FIELD_NAMES
        if not known_field:
            self.issue(path, f"unknown field {name!r} (canonical fields: {', '.join(FIELD_NAMES)})")
        owner = rule.get("owner")
        if isinstance(owner, str) and self.system_ref(owner, f"{path}.owner"):
            caps = self.known.get(owner)
            if known_field and caps is not None and name not in caps.readable:
                self.issue(f"{path}.owner", f"{owner} cannot read {name}, so it cannot own it")
        for system, direction in _mapping(rule.get("systems")).items():
            sub = f"{path}.systems.{system}"
            if not self.system_ref(system, sub):
                continue
            if system == owner and direction != Direction.IN:
                self.issue(sub, f"{system} owns {name} (direction in); remove one of the two")
                continue
            caps = self.known.get(system)
            if caps is None or not known_field:
                continue
            if direction in (Direction.IN, Direction.BOTH) and name not in caps.readable:
                self.issue(sub, f"{system} cannot read {name} (direction {direction} needs it)")
            if direction in (Direction.OUT, Direction.BOTH) and name not in caps.writable:
                self.issue(sub, f"{system} cannot write {name} (direction {direction} needs it)")
        conflict = rule.get("conflict")
        if isinstance(conflict, dict):
            self.check_conflict(conflict, f"{path}.conflict")

    def check_conflict(self, conflict: Mapping[str, Any], path: str) -> None:
        policy = conflict.get("policy", "last_writer")
        prefer = conflict.get("prefer")
        if policy not in CONFLICT_POLICIES:
            self.issue(
                f"{path}.policy", f"expected one of {' | '.join(CONFLICT_POLICIES)}, got {policy!r}"
            )
        elif policy == "prefer" and prefer is None:
            self.issue(f"{path}.prefer", "policy 'prefer' needs 'prefer: <system>'", line_path=path)
        elif policy != "prefer" and prefer is not None:
            self.issue(
                f"{path}.prefer", f"is only used with policy 'prefer' (policy is {policy!r})"
            )
        if isinstance(prefer, str):
            self.system_ref(prefer, f"{path}.prefer")
        self.number(conflict, "window_s", path, ge=0)

    # -- identities ------------------------------------------------------------------------

    def check_identities(self, people: Any) -> None:
        """Each person once (by email), each user id of a system owned by one person,
        and only systems whose adapter has assignees."""
        emails: dict[str, str] = {}
        owners: dict[tuple[str, str], str] = {}
        for index, person in enumerate(people if isinstance(people, list) else []):
            if not isinstance(person, dict):
                continue
            path = f"identities[{index}]"
            email = person.get("email")
            if isinstance(email, str):
                problem = identity_email_problem(email)
                if problem is not None:
                    self.issue(f"{path}.email", problem)
                elif email.lower() in emails:
                    self.issue(
                        f"{path}.email", f"{email!r} is listed twice (also {emails[email.lower()]})"
                    )
                else:
                    emails[email.lower()] = path
            ids = _mapping(person.get("ids"))
            if not ids:
                self.issue(f"{path}.ids", "must give at least one system's user id", line_path=path)
            for system, user_id in ids.items():
                sub = f"{path}.ids.{system}"
                if not self.system_ref(system, sub) or not isinstance(user_id, str):
                    continue
                caps = self.known.get(system)
                if caps is not None and "assignee" not in caps.readable | caps.writable:
                    with_assignees = ", ".join(
                        sorted(
                            n
                            for n in self.configured
                            if n in self.known and "assignee" in self.known[n].readable
                        )
                    )
                    self.issue(
                        sub,
                        f"{system} has no assignees (systems that do: {with_assignees or 'none'})",
                    )
                elif not user_id.strip():
                    self.issue(sub, "must not be empty")
                elif (system, user_id) in owners:
                    self.issue(
                        sub,
                        f"{system} user {user_id!r} already belongs to"
                        f" {owners[(system, user_id)]}; a user id belongs to one person",
                    )
                else:
                    owners[(system, user_id)] = f"{email} ({path})"

    # -- the rest --------------------------------------------------------------------------

    def check_sections(self, data: Mapping[str, Any]) -> None:
        url = data.get("database_url")
        if isinstance(url, str) and (problem := database_url_problem(url)):
            self.issue("database_url", problem)
        self.number(data, "sqlite_wal_limit_mb", "", ge=1)
        server = _mapping(data.get("server"))
        if server.get("host") == "":
            self.issue("server.host", "must not be empty")
        self.number(server, "port", "server", ge=0, le=65535)
        self.number(server, "max_body_bytes", "server", ge=1)
        self.number(server, "max_header_bytes", "server", ge=1024)
        for key in ("header_timeout_s", "body_timeout_s", "keep_alive_s"):
            self.number(server, key, "server", gt=0)
        self.number(server, "max_connections", "server", ge=1)
        self.env_name(_mapping(data.get("admin")).get("api_key_env"), "admin.api_key_env")
        dispatcher = _mapping(data.get("dispatcher"))
        self.number(dispatcher, "max_attempts", "dispatcher", ge=1)
        self.number(dispatcher, "backoff_base_s", "dispatcher", gt=0)
        self.number(dispatcher, "backoff_max_s", "dispatcher", gt=0)
        self.number(dispatcher, "concurrency", "dispatcher", ge=1)
        self.number(dispatcher, "system_concurrency", "dispatcher", ge=1)
        self.number(dispatcher, "lease_s", "dispatcher", gt=0)
        self.number(dispatcher, "max_defer_s", "dispatcher", gt=0)
        base, top = dispatcher.get("backoff_base_s"), dispatcher.get("backoff_max_s")
        if isinstance(base, float) and isinstance(top, float) and 0 < top < base:
            self.issue(
                "dispatcher.backoff_max_s", f"must be at least backoff_base_s ({_num(base)})"
            )
        self.number(_mapping(data.get("history")), "retention_days", "history", ge=0)
        alerts = _mapping(data.get("alerts"))
        self.env_name(alerts.get("url_env"), "alerts.url_env")
        self.number(alerts, "min_interval_s", "alerts", ge=0)
        self.number(alerts, "poll_failures", "alerts", ge=1)
        self.number(alerts, "deferral_s", "alerts", ge=0)


def identity_email_problem(email: str) -> str | None:
    """Why ``email`` cannot name a person (None: it can). A colon would read as a
    ``<system>:<id>`` assignee, so it is refused."""
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or any(c in email for c in " :\t\n"):
        return f"{email!r} is not an email address (a person is named by their email)"
    return None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: float) -> str:
    return f"{value:g}"
