"""Loading ``config.yaml``: line-numbered validation, cross-checks, environment, dumps.

The schema is ``app.settings``; this module turns a YAML file into a ``Settings`` or a
``ConfigError`` listing *every* problem, each with file, line and dotted key
(``systems.hookstream.poll_interval_s``, ``create_rules[0].create_in[1].system``).

How it works:

1. PyYAML composes the file into nodes (no construction), so every value keeps its line.
2. ``_Reader`` walks the node tree against the schema (``msgspec.inspect.type_info``),
   reporting unknown keys, wrong types, missing required keys and duplicate keys, and
   builds plain data from what is valid.
3. ``_Checker`` cross-checks that data against itself and against the adapters'
   capabilities (``known``, passed in by the composition root: this module does not
   import ``adapters``).
4. Only when nothing was reported does ``msgspec.convert`` build the frozen structs.

Secrets are never in the file, only the names of environment variables;
``resolve_environment`` reads them, and nothing here ever prints a secret value.
Nothing is read at import time.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import msgspec.inspect as mi
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from app.errors import ConfigError, ConfigIssue
from app.model import FIELD_NAMES, Priority, Status
from app.settings import Direction, Settings

__all__ = [
    "CONFLICT_POLICIES",
    "DATABASE_URL_ENV",
    "SCOPED_CREATE",
    "ResolvedSecrets",
    "SystemCaps",
    "SystemSecrets",
    "check_config",
    "database_url",
    "dump_effective",
    "load_config",
    "resolve_environment",
]

#: Overrides ``database_url`` from the file.
DATABASE_URL_ENV = "SYNCGATE_DATABASE_URL"
#: Systems whose objects live inside a scope, so a ``create_in`` must name one
#: (DevHelm: the status page; incident.io: the incident a follow-up belongs to).
SCOPED_CREATE: Mapping[str, str] = {
    "devhelm": "the status page id to create incidents on",
    "incidentio": "the incident id to create follow-ups in",
}
CONFLICT_POLICIES = ("last_writer", "prefer")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
MASK = "***"
_SECRET_WORDS = ("secret", "token", "password", "key")


class SystemCaps(msgspec.Struct, frozen=True):
    """What the adapter of one system can do; the composition root builds these."""

    readable: frozenset[str]
    writable: frozenset[str]
    can_create: bool


# --------------------------------------------------------------------------------------
# Loading


def load_config(path: str | os.PathLike[str], known: Mapping[str, SystemCaps]) -> Settings:
    """Read, validate and cross-check ``path``; raise ``ConfigError`` with every problem."""
    settings, _ = _load(path, known)
    return settings


def _load(
    path: str | os.PathLike[str], known: Mapping[str, SystemCaps]
) -> tuple[Settings, dict[str, int]]:
    """``Settings`` and the line of every key path (for later messages, e.g. env warnings)."""
    file = os.fspath(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigIssue(file, None, "(file)", f"cannot read: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(file, line, "(file)", "not UTF-8 text")]) from None

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise ConfigError([_syntax_issue(file, text, exc)]) from None

    reader = _Reader(file)
    if root is None:  # empty file, or only comments: every key takes its default
        data: Any = {}
    else:
        data = reader.walk(root, mi.type_info(Settings), "", root.start_mark.line + 1)
    if isinstance(data, dict):
        _Checker(file, reader.lines, known, reader.issues).run(data)
    if reader.issues:
        raise ConfigError(sorted(reader.issues, key=lambda i: i.line or 0))
    try:
        settings = msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:  # pragma: no cover - the walk mirrors the schema
        raise ConfigError([ConfigIssue(file, None, "(schema)", str(exc))]) from None
    return settings, reader.lines


def _syntax_issue(file: str, text: str, exc: yaml.YAMLError) -> ConfigIssue:
    """One issue for a file PyYAML cannot parse, at the line of the problem."""
    line: int | None = None
    what = str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            where = ""
            if (
                exc.context_mark is not None
                and mark is not None
                and exc.context_mark.line != mark.line
            ):
                where = f" started at line {exc.context_mark.line + 1}"
            what = f"{exc.problem} ({exc.context}{where})"
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text[: exc.position].count("\n") + 1
        what = f"{exc.reason}"
    return ConfigIssue(file, line, "(yaml)", f"YAML syntax error: {what}")


# --------------------------------------------------------------------------------------
# Schema walk

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MERGE = _TAG + "merge"
_LIST_TYPES = (mi.ListType, mi.FrozenSetType, mi.SetType, mi.VarTupleType)


class _Invalid:
    """Marks a value that was reported and left out."""


_INVALID = _Invalid()


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _expected(t: mi.Type) -> str:
    """What a value of type ``t`` looks like, for messages."""
    if isinstance(t, mi.UnionType):
        return " or ".join(_expected(x) for x in t.types)
    if isinstance(t, mi.NoneType):
        return "null"
    if isinstance(t, mi.StrType):
        return "a string"
    if isinstance(t, mi.BoolType):
        return "true or false"
    if isinstance(t, mi.IntType):
        return "an integer"
    if isinstance(t, mi.FloatType):
        return "a number"
    if isinstance(t, mi.EnumType):
        return "one of " + " | ".join(str(m.value) for m in t.cls)
    if isinstance(t, mi.ListType):
        return "a list"
    if isinstance(t, mi.StructType | mi.DictType):
        return "a mapping"
    return "a value"


def _describe(node: Node) -> str:
    """A YAML node as it appears in messages: ``'abc'``, ``12``, ``null``, ``a list``."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    value = str(node.value)
    if len(value) > 60:
        value = value[:57] + "..."
    if node.tag == _STR:
        return repr(value)
    if node.tag == _NULL:
        return "null"
    return value


class _Reader:
    """Walks YAML nodes against the msgspec schema; collects issues and key lines."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.issues: list[ConfigIssue] = []
        #: dotted key path -> 1-based line of the key (or list item)
        self.lines: dict[str, int] = {}
        self._constructor = yaml.SafeLoader("")

    def issue(self, line: int | None, key: str, message: str) -> None:
        self.issues.append(ConfigIssue(self.file, line, key, message))

    def bad_type(self, node: Node, path: str, t: mi.Type) -> _Invalid:
        hint = ""
        if isinstance(node, ScalarNode) and node.tag != _STR and _wants_str(t):
            hint = " (quote it to make it a string)"
        self.issue(
            _line(node), path or "(root)", f"expected {_expected(t)}, got {_describe(node)}{hint}"
        )
        return _INVALID

    def walk(self, node: Node, t: mi.Type, path: str, line: int) -> Any:
        """The plain value of ``node`` if it matches ``t``; otherwise report and return
        ``_INVALID``. ``line`` is the line of the key that holds ``node``."""
        if isinstance(t, mi.UnionType):
            if _is_null(node) and any(isinstance(x, mi.NoneType) for x in t.types):
                return None
            rest = [x for x in t.types if not isinstance(x, mi.NoneType)]
            if len(rest) == 1 and _shape_ok(node, rest[0]):
                return self.walk(node, rest[0], path, line)
            if len(rest) == 1:
                return self.bad_type(node, path, t)
            return self.construct(node, path)  # pragma: no cover - no such union in the schema
        if _is_null(node) and isinstance(t, mi.StructType | mi.DictType):
            # `server:` with every line under it commented out: an empty mapping.
            node = MappingNode(_TAG + "map", [], node.start_mark, node.end_mark)
        elif _is_null(node) and isinstance(t, _LIST_TYPES):
            node = SequenceNode(_TAG + "seq", [], node.start_mark, node.end_mark)
        if isinstance(t, mi.StructType):
            return self.walk_struct(node, t, path, line)
        if isinstance(t, mi.DictType):
            if not isinstance(node, MappingNode):
                return self.bad_type(node, path, t)
            out: dict[str, Any] = {}
            for key, key_node, value_node in self.pairs(node, path):
                sub = _join(path, key)
                self.lines[sub] = _line(key_node)
                value = self.walk(value_node, t.value_type, sub, _line(key_node))
                if value is not _INVALID:
                    out[key] = value
            return out
        if isinstance(t, _LIST_TYPES):
            if not isinstance(node, SequenceNode):
                return self.bad_type(node, path, t)
            items: list[Any] = []
            for index, item in enumerate(node.value):
                sub = f"{path}[{index}]"
                self.lines[sub] = _line(item)
                value = self.walk(item, t.item_type, sub, _line(item))
                items.append(None if value is _INVALID else value)
            return items
        if isinstance(t, mi.AnyType):
            return self.construct(node, path)
        return self.walk_scalar(node, t, path)

    def walk_struct(self, node: Node, t: mi.StructType, path: str, line: int) -> Any:
        if not isinstance(node, MappingNode):
            return self.bad_type(node, path, t)
        fields = {f.encode_name: f for f in t.fields}
        out: dict[str, Any] = {}
        seen: set[str] = set()
        for key, key_node, value_node in self.pairs(node, path):
            sub = _join(path, key)
            field = fields.get(key)
            seen.add(key)
            if field is None:
                close = difflib.get_close_matches(key, list(fields), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.issue(
                    _line(key_node),
                    sub,
                    f"unknown key {key!r}{hint} (allowed: {', '.join(fields)})",
                )
                continue
            self.lines[sub] = _line(key_node)
            value = self.walk(value_node, field.type, sub, _line(key_node))
            if value is not _INVALID:
                out[key] = value
        for field in t.fields:
            if field.required and field.encode_name not in seen:
                self.issue(
                    line,
                    _join(path, field.encode_name),
                    f"required key {field.encode_name!r} is missing"
                    + (f" in {path}" if path else ""),
                )
        return out

    def walk_scalar(self, node: Node, t: mi.Type, path: str) -> Any:
        if not isinstance(node, ScalarNode):
            return self.bad_type(node, path, t)
        tag = node.tag
        if isinstance(t, mi.StrType) and tag == _STR:
            return node.value
        if isinstance(t, mi.BoolType) and tag == _BOOL:
            return self.construct(node, path)
        if isinstance(t, mi.IntType) and tag == _INT:
            return self.construct(node, path)
        if isinstance(t, mi.FloatType) and tag in (_INT, _FLOAT):
            value = self.construct(node, path)
            if isinstance(value, int | float) and not math.isfinite(value):
                self.issue(_line(node), path, f"expected a finite number, got {node.value}")
                return _INVALID
            return value if value is _INVALID else float(value)
        if isinstance(t, mi.EnumType) and tag == _STR:
            allowed = [str(m.value) for m in t.cls]
            if node.value in allowed:
                return node.value
            self.issue(_line(node), path, f"expected {_expected(t)}, got {node.value!r}")
            return _INVALID
        if isinstance(t, mi.StrType | mi.BoolType | mi.IntType | mi.FloatType | mi.EnumType):
            return self.bad_type(node, path, t)
        return self.construct(node, path)  # pragma: no cover - no other scalar in the schema

    def pairs(self, node: MappingNode, path: str) -> Iterator[tuple[str, Node, Node]]:
        """The (key, key node, value node) pairs of a mapping with string keys, reporting
        non-string keys, merge keys and duplicates (the first occurrence is kept)."""
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                self.issue(_line(key_node), path or "(root)", "merge keys (<<) are not supported")
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                self.issue(
                    _line(key_node),
                    _join(path, str(getattr(key_node, "value", "?"))),
                    f"keys must be strings, got {_describe(key_node)} (quote it)",
                )
                continue
            key = str(key_node.value)
            if key in first:
                self.issue(
                    _line(key_node),
                    _join(path, key),
                    f"duplicate key {key!r} (first at line {first[key]})",
                )
                continue
            first[key] = _line(key_node)
            yield key, key_node, value_node

    def construct(self, node: Node, path: str) -> Any:
        """Free-form data (adapter options, filter values) as plain Python."""
        if isinstance(node, MappingNode):
            out: dict[Any, Any] = {}
            first: dict[Any, int] = {}
            for key_node, value_node in node.value:
                key = self.construct(key_node, path)
                if key is _INVALID:
                    continue
                if not isinstance(key, str | int | float | bool) and key is not None:
                    self.issue(
                        _line(key_node), path, f"keys must be scalars, got {_describe(key_node)}"
                    )
                    continue
                sub = _join(path, str(key))
                if key in first:
                    self.issue(
                        _line(key_node), sub, f"duplicate key {key!r} (first at line {first[key]})"
                    )
                    continue
                first[key] = _line(key_node)
                self.lines[sub] = _line(key_node)
                value = self.construct(value_node, sub)
                if value is not _INVALID:
                    out[key] = value
            return out
        if isinstance(node, SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                value = self.construct(item, f"{path}[{index}]")
                items.append(None if value is _INVALID else value)
            return items
        try:
            return self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError) as exc:
            self.issue(_line(node), path, f"cannot read {_describe(node)}: {exc}")
            return _INVALID


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def _shape_ok(node: Node, t: mi.Type) -> bool:
    """Whether ``node`` has the right container kind for ``t`` (details are checked later)."""
    if isinstance(t, mi.StructType | mi.DictType):
        return isinstance(node, MappingNode)
    if isinstance(t, _LIST_TYPES):
        return isinstance(node, SequenceNode)
    if isinstance(t, mi.AnyType):
        return True
    return isinstance(node, ScalarNode)


def _wants_str(t: mi.Type) -> bool:
    if isinstance(t, mi.UnionType):
        return any(_wants_str(x) for x in t.types)
    return isinstance(t, mi.StrType)


# --------------------------------------------------------------------------------------
# Cross-checks


class _Checker:
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
        for name, rule in _mapping(data.get("fields")).items():
            self.check_field(name, _mapping(rule))
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
        sub = _join(path, key)
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

    def check_rules(self, rules: Any) -> None:
        names: dict[str, str] = {}
        for index, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict):
                continue
            path = f"create_rules[{index}]"
            name = rule.get("name")
            if isinstance(name, str):
                if not name.strip():
                    self.issue(f"{path}.name", "must not be empty")
                elif name in names:
                    self.issue(f"{path}.name", f"duplicate rule name {name!r} (also {names[name]})")
                else:
                    names[name] = path
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

    # -- the rest --------------------------------------------------------------------------

    def check_sections(self, data: Mapping[str, Any]) -> None:
        url = data.get("database_url")
        if isinstance(url, str) and "://" not in url:
            self.issue("database_url", f"expected a SQLAlchemy URL (dialect://...), got {url!r}")
        server = _mapping(data.get("server"))
        if server.get("host") == "":
            self.issue("server.host", "must not be empty")
        self.number(server, "port", "server", ge=0, le=65535)
        self.number(server, "max_body_bytes", "server", ge=1)
        self.env_name(_mapping(data.get("admin")).get("api_key_env"), "admin.api_key_env")
        dispatcher = _mapping(data.get("dispatcher"))
        self.number(dispatcher, "max_attempts", "dispatcher", ge=1)
        self.number(dispatcher, "backoff_base_s", "dispatcher", gt=0)
        self.number(dispatcher, "backoff_max_s", "dispatcher", gt=0)
        self.number(dispatcher, "concurrency", "dispatcher", ge=1)
        self.number(dispatcher, "lease_s", "dispatcher", gt=0)
        self.number(dispatcher, "max_defer_s", "dispatcher", gt=0)
        base, top = dispatcher.get("backoff_base_s"), dispatcher.get("backoff_max_s")
        if isinstance(base, float) and isinstance(top, float) and 0 < top < base:
            self.issue(
                "dispatcher.backoff_max_s", f"must be at least backoff_base_s ({_num(base)})"
            )
        self.number(_mapping(data.get("history")), "retention_days", "history", ge=0)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _num(value: float) -> str:
    return f"{value:g}"


# --------------------------------------------------------------------------------------
# Environment


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

    def __repr__(self) -> str:
        admin = MASK if self.admin_key is not None else "None"
        return f"ResolvedSecrets(systems={self.systems!r}, admin_key={admin})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class _Missing:
    key: str  # config key that names the variable
    env: str  # the variable


def _missing_env(settings: Settings, environ: Mapping[str, str]) -> Iterator[_Missing]:
    for name, system in settings.systems.items():
        if not system.enabled:
            continue
        if not environ.get(system.api_key_env):
            yield _Missing(f"systems.{name}.api_key_env", system.api_key_env)
        for index, env in enumerate(system.webhook_secret_envs):
            if not environ.get(env):
                yield _Missing(f"systems.{name}.webhook_secret_envs[{index}]", env)


def resolve_environment(settings: Settings, environ: Mapping[str, str]) -> ResolvedSecrets:
    """Read every enabled system's secrets from ``environ``.

    Raises ``ConfigError`` naming the config key and the variable for each one that is
    unset or empty. Disabled systems are skipped; the admin key is optional.
    """
    missing = list(_missing_env(settings, environ))
    if missing:
        raise ConfigError(
            [
                ConfigIssue(
                    "<environment>", None, m.key, f"environment variable {m.env} is not set"
                )
                for m in missing
            ]
        )
    systems = {
        name: SystemSecrets(
            api_key=environ[system.api_key_env],
            webhook_secrets=tuple(environ[env] for env in system.webhook_secret_envs),
        )
        for name, system in settings.systems.items()
        if system.enabled
    }
    return ResolvedSecrets(
        systems=systems, admin_key=environ.get(settings.admin.api_key_env) or None
    )


def database_url(settings: Settings, environ: Mapping[str, str]) -> str:
    """``SYNCGATE_DATABASE_URL`` if set (and not empty), else the file's ``database_url``."""
    return environ.get(DATABASE_URL_ENV) or settings.database_url


# --------------------------------------------------------------------------------------
# check-config and the admin view


def check_config(
    path: str | os.PathLike[str], known: Mapping[str, SystemCaps], environ: Mapping[str, str]
) -> tuple[int, str]:
    """What ``syncgate check-config`` prints and its exit code.

    0 and ``"<file>: OK (4 systems, 1 creation rule)"`` plus a warning line per unset
    environment variable (check-config runs before deploy, where they may not be set);
    1 and one ``file:line: key: message`` line per problem.
    """
    file = os.fspath(path)
    try:
        settings, lines = _load(path, known)
    except ConfigError as exc:
        return 1, "\n".join(str(issue) for issue in exc.issues)
    n_systems, n_rules = len(settings.systems), len(settings.create_rules)
    out = [
        f"{file}: OK ({n_systems} {_plural(n_systems, 'system')}, "
        f"{n_rules} {_plural(n_rules, 'creation rule')})"
    ]
    warnings = [
        (m.key, f"environment variable {m.env} is not set") for m in _missing_env(settings, environ)
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
    return 0, "\n".join(out)


def _plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def dump_effective(settings: Settings) -> dict[str, Any]:
    """The effective config as plain data, for the admin API.

    Settings hold only environment variable *names*, so little is secret; but adapter
    ``options`` and ``create_in`` ``params`` are free-form, so a value under a key that
    mentions secret, token, password or key is replaced by ``"***"`` (keys ending in
    ``_env`` name a variable and are kept). A password in ``database_url`` is masked too.
    """
    data: dict[str, Any] = msgspec.to_builtins(settings)
    data["database_url"] = _mask_url(data["database_url"])
    for system in data.get("systems", {}).values():
        system["options"] = _mask(system.get("options", {}), hide=False)
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
