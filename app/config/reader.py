"""Reading YAML against a msgspec schema, keeping every key's line for the messages.

PyYAML composes the file into nodes (no construction), so every value keeps its line.
``Reader`` walks the node tree against a schema (``msgspec.inspect.type_info``),
reporting unknown keys, wrong types, values out of their ``msgspec.Meta`` bounds, missing
required keys and duplicate keys, and builds plain data from what is valid. It knows no
key of ``config.yaml``: the schema is passed in, and so are the types of free-form keys
that are known only at run time (an adapter's ``options``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec.inspect as mi
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from app.errors import ConfigIssue

__all__ = ["Reader", "join_key", "syntax_issue"]


def syntax_issue(file: str, text: str, exc: yaml.YAMLError) -> ConfigIssue:
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


_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_MERGE = _TAG + "merge"
_LIST_TYPES = (mi.ListType, mi.FrozenSetType, mi.SetType, mi.VarTupleType)


class _Invalid:
    """Marks a value that was reported and left out."""


_INVALID = _Invalid()


def join_key(path: str, key: str) -> str:
    """The dotted path of ``key`` under ``path`` (``systems`` + ``devhelm``)."""
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
    if isinstance(t, mi.LiteralType):
        return "one of " + " | ".join(str(v) for v in t.values)
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


class Reader:
    """Walks YAML nodes against the msgspec schema; collects issues and key lines.

    ``types`` replaces the schema's type at some dotted paths (``systems.devhelm.options``
    is a free-form mapping in the schema, and the adapter's options struct here).
    """

    def __init__(self, file: str, types: Mapping[str, mi.Type] | None = None) -> None:
        self.file = file
        self.types: Mapping[str, mi.Type] = types or {}
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
        t = self.types.get(path, t)
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
                sub = join_key(path, key)
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
            sub = join_key(path, key)
            field = fields.get(key)
            seen.add(key)
            if field is None:
                close = difflib.get_close_matches(key, list(fields), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.issue(
                    _line(key_node),
                    sub,
                    f"unknown key {key!r}{hint} (allowed: {', '.join(fields) or 'none'})",
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
                    join_key(path, field.encode_name),
                    f"required key {field.encode_name!r} is missing"
                    + (f" in {path}" if path else ""),
                )
        return out

    def walk_scalar(self, node: Node, t: mi.Type, path: str) -> Any:
        if not isinstance(node, ScalarNode):
            return self.bad_type(node, path, t)
        value = self.scalar(node, t, path)
        if value is not _INVALID:
            problem = _out_of_bounds(t, value)
            if problem is not None:
                self.issue(_line(node), path, problem)
                return _INVALID
        return value

    def scalar(self, node: ScalarNode, t: mi.Type, path: str) -> Any:
        """The value of a scalar node of type ``t``, or ``_INVALID`` (reported)."""
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
        if isinstance(t, mi.LiteralType):
            value = node.value if tag == _STR else self.construct(node, path)
            if value is _INVALID:
                return value
            if any(type(value) is type(v) and value == v for v in t.values):
                return value
            self.issue(_line(node), path, f"expected {_expected(t)}, got {_describe(node)}")
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
                    join_key(path, str(getattr(key_node, "value", "?"))),
                    f"keys must be strings, got {_describe(key_node)} (quote it)",
                )
                continue
            key = str(key_node.value)
            if key in first:
                self.issue(
                    _line(key_node),
                    join_key(path, key),
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
                sub = join_key(path, str(key))
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


def _out_of_bounds(t: mi.Type, value: Any) -> str | None:
    """What is wrong with ``value`` under the ``msgspec.Meta`` bounds of ``t``, if anything."""
    if isinstance(t, mi.IntType | mi.FloatType) and isinstance(value, int | float):
        got = f", got {_num(value)}"
        if t.gt is not None and not value > t.gt:
            return f"must be greater than {_num(t.gt)}{got}"
        if t.ge is not None and t.le is not None and not t.ge <= value <= t.le:
            return f"must be between {_num(t.ge)} and {_num(t.le)}{got}"
        if t.ge is not None and not value >= t.ge:
            return f"must be at least {_num(t.ge)}{got}"
        if t.lt is not None and not value < t.lt:
            return f"must be less than {_num(t.lt)}{got}"
        if t.le is not None and not value <= t.le:
            return f"must be at most {_num(t.le)}{got}"
    if isinstance(t, mi.StrType) and isinstance(value, str):
        if t.min_length and len(value) < t.min_length:
            if t.min_length == 1:
                return "must not be empty"
            return f"must be at least {t.min_length} characters long, got {value!r}"
        if t.max_length is not None and len(value) > t.max_length:
            return f"must be at most {t.max_length} characters long, got {len(value)}"
        if t.pattern is not None and not re.search(t.pattern, value):
            return f"must match {t.pattern!r}, got {value!r}"
    return None


def _num(value: float) -> str:
    return f"{value:g}"


def _wants_str(t: mi.Type) -> bool:
    if isinstance(t, mi.UnionType):
        return any(_wants_str(x) for x in t.types)
    return isinstance(t, mi.StrType)
