"""config.yaml loading: the shipped file, every-problem reports with lines and keys, the
environment, and the admin dump."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec
import msgspec.inspect as mi
import pytest

from adapters import VENDORS, adapter_class
from adapters.base import AdapterSettings
from app.config import (
    ResolvedSecrets,
    SystemCaps,
    check_config,
    database_url,
    dump_effective,
    load_config,
    resolve_environment,
)
from app.config.schema import Direction, FieldRule, Settings
from app.errors import ConfigError, ConfigIssue
from app.model import Fields, Priority, Status

SHIPPED = Path(__file__).resolve().parent.parent / "config.yaml"

KNOWN = {
    "hookstream": SystemCaps(
        readable=frozenset({"title", "description", "status", "snoozed_until"}),
        writable=frozenset({"status", "snoozed_until"}),
        can_create=False,
        options=adapter_class("hookstream").Options,
    ),
    "devhelm": SystemCaps(
        readable=frozenset({"title", "status", "priority"}),
        writable=frozenset({"title", "status", "priority"}),
        can_create=True,
        options=adapter_class("devhelm").Options,
    ),
    "inboxops": SystemCaps(
        readable=frozenset({"title", "status", "priority", "assignee"}),
        writable=frozenset({"title", "status", "priority", "assignee"}),
        can_create=True,
        options=adapter_class("inboxops").Options,
    ),
    "incidentio": SystemCaps(
        readable=frozenset({"title", "description", "status", "assignee"}),
        writable=frozenset({"title", "description", "status", "assignee"}),
        can_create=True,
        options=adapter_class("incidentio").Options,
    ),
}

DEMO_ENV = {
    f"SYNCGATE_{name.upper()}_{kind}": f"value-of-{name}-{kind.lower()}"
    for name in KNOWN
    for kind in ("API_KEY", "WEBHOOK_SECRET")
}


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def issues_of(path: Path) -> list[ConfigIssue]:
    return issues_of_with(path, KNOWN)


def issues_of_with(path: Path, known: dict[str, SystemCaps]) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, known)
    return caught.value.issues


def by_key(issues: list[ConfigIssue]) -> dict[str, ConfigIssue]:
    return {issue.key: issue for issue in issues}


MINIMAL = """
systems:
  hookstream:
    base_url: "http://127.0.0.1:18101"
    api_key_env: HS_KEY
  inboxops:
    base_url: "http://127.0.0.1:18103"
    api_key_env: IO_KEY
    webhook_secret_envs: [IO_SECRET_NEW, IO_SECRET_OLD]
"""


# -- the shipped config ---------------------------------------------------------------------


def test_shipped_config_loads() -> None:
    settings = load_config(SHIPPED, KNOWN)

    assert isinstance(settings, Settings)
    assert set(settings.systems) == set(KNOWN)
    assert {n: s.base_url for n, s in settings.systems.items()} == {
        "hookstream": "http://127.0.0.1:18101",
        "devhelm": "http://127.0.0.1:18102",
        "inboxops": "http://127.0.0.1:18103",
        "incidentio": "http://127.0.0.1:18104",
    }
    for name, system in settings.systems.items():
        assert system.enabled
        assert system.api_key_env == f"SYNCGATE_{name.upper()}_API_KEY"
        assert system.webhook_secret_envs == [f"SYNCGATE_{name.upper()}_WEBHOOK_SECRET"]
    assert {n: s.poll_interval_s for n, s in settings.systems.items()} == {
        "hookstream": 2.0,
        "devhelm": 2.0,
        "inboxops": 10.0,
        "incidentio": 10.0,
    }
    assert settings.systems["devhelm"].scopes == ["5d1e7c52-1f43-4c6e-9a51-7f3f0d2b9a10"]

    [rule] = settings.create_rules
    assert rule.name == "hookstream-issue-fans-out"
    assert rule.system == "hookstream"
    targets = {c.system: c for c in rule.create_in}
    assert list(targets) == ["devhelm", "inboxops", "incidentio"]
    assert targets["devhelm"].scope == "5d1e7c52-1f43-4c6e-9a51-7f3f0d2b9a10"
    assert targets["devhelm"].params == {"notify_subscribers": False}
    assert targets["inboxops"].params == {"inbox_id": "0b6f5f3e-8a4b-4f7e-9d55-2f0c7f1f2a01"}
    assert targets["incidentio"].scope == "01JDEMOINC0000000000000001"

    assert settings.fields["status"].conflict.policy == "last_writer"
    assert settings.fields["status"].owner is None
    assert settings.fields["title"].owner == "hookstream"
    assert settings.fields["description"].owner == "hookstream"
    assert settings.fields["priority"].owner is None
    assert settings.fields["priority"].systems == {}


def test_the_shipped_config_posts_no_error_text_on_the_public_status_page() -> None:
    """hookstream's issue description is a destination's last error (it may name internal
    hosts); a DevHelm incident is public: the shipped rules neither write it there nor
    read it back; incident.io's follow-ups still get it."""
    from app.rules import Rules

    caps = {name: adapter_class(name) for name in VENDORS}
    rules = Rules(load_config(SHIPPED, KNOWN), caps, {})
    item = Fields(title="orders-webhook: http_5xx", description="connect to 10.0.3.7 refused")
    assert rules.create_fields("devhelm", item).as_dict() == {"title": item.title}
    assert "description" not in rules.in_fields("devhelm")
    assert rules.create_fields("incidentio", item).description == item.description


def test_shipped_examples_are_valid_when_uncommented(tmp_path: Path) -> None:
    """Lines starting with ``#~`` are examples; removing the marker must give a valid file."""
    text = SHIPPED.read_text(encoding="utf-8")
    assert "#~ " in text
    uncommented = re.sub(r"(?m)^(\s*)#~ ", r"\1", text)
    settings = load_config(write(tmp_path, uncommented), KNOWN)

    example = settings.create_rules[1]
    assert example.system == "devhelm"
    assert example.match.min_priority is Priority.HIGH
    assert [c.system for c in example.create_in] == ["inboxops"]
    assert settings.fields["assignee"] == FieldRule()
    [person] = settings.identities
    assert (person.email, set(person.ids)) == ("ada@example.com", {"inboxops", "incidentio"})
    [link_rule] = settings.link_rules
    assert (link_rule.left.system, link_rule.right.system) == ("hookstream", "inboxops")
    assert link_rule.right.regex == r"\[([a-z0-9-]+)\]"


def test_shipped_config_checks_ok() -> None:
    env = {**DEMO_ENV, "SYNCGATE_ADMIN_KEY": "admin-value"}
    code, text = check_config(SHIPPED, KNOWN, env)
    assert (code, text) == (0, f"{SHIPPED}: OK (4 systems, 1 creation rule)")


def _schema_keys(t: mi.Type) -> set[str]:
    if isinstance(t, mi.UnionType):
        return set().union(*(_schema_keys(x) for x in t.types))
    if isinstance(t, mi.DictType):
        return _schema_keys(t.value_type)
    if isinstance(t, mi.ListType):
        return _schema_keys(t.item_type)
    if isinstance(t, mi.StructType):
        return {f.encode_name for f in t.fields}.union(*(_schema_keys(f.type) for f in t.fields))
    return set()


def test_every_key_is_in_the_shipped_config() -> None:
    """Every key of the schema appears in config.yaml, as a setting or in its comments."""
    text = SHIPPED.read_text(encoding="utf-8")
    keys = _schema_keys(mi.type_info(Settings))
    assert {"poll_overlap_s", "min_priority", "window_s", "retention_days"} <= keys
    assert sorted(k for k in keys if not re.search(rf"\b{k}\b:", text)) == []


# -- every problem, with its line and key ---------------------------------------------------


def test_several_problems_are_all_reported_with_lines_and_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        database_url: "sqlite+aiosqlite:///x.db"
        systems:
          hookstream:
            base_url: "http://127.0.0.1:18101"
            api_key_env: HS_KEY
            poll_intervall_s: 5
            page_size: abc
          inboxops:
            base_url: "http://127.0.0.1:18103"
            api_key_env: IO_KEY
            status_map:
              inbound: {in_progress: started}
              outbound: {acknowledged: [in_progress]}
          inboxops:
            base_url: "http://127.0.0.1:9"
            api_key_env: OTHER
        create_rules:
          - name: fan-out
            system: hookstream
            create_in:
              - system: inboxops
              - system: jira
        fields:
          status: {}
        """,
    )
    issues = issues_of(path)
    found = by_key(issues)

    assert found["systems.hookstream.poll_intervall_s"].line == 6
    assert "unknown key 'poll_intervall_s'" in found["systems.hookstream.poll_intervall_s"].message
    assert "did you mean 'poll_interval_s'" in found["systems.hookstream.poll_intervall_s"].message
    assert "allowed: enabled, base_url" in found["systems.hookstream.poll_intervall_s"].message

    assert found["systems.hookstream.page_size"].line == 7
    assert found["systems.hookstream.page_size"].message == "expected an integer, got 'abc'"

    bad_status = found["systems.inboxops.status_map.inbound.in_progress"]
    assert bad_status.line == 12
    assert "'started' is not a canonical status" in bad_status.message

    assert found["systems.inboxops"].line == 14
    assert found["systems.inboxops"].message == "duplicate key 'inboxops' (first at line 8)"

    unknown_target = found["create_rules[0].create_in[1].system"]
    assert unknown_target.line == 22
    assert "'jira' is not a configured system" in unknown_target.message

    assert len(issues) == 5
    assert all(issue.file == str(path) for issue in issues)
    assert [issue.line for issue in issues] == sorted(issue.line or 0 for issue in issues)


def test_wrong_types_name_what_was_expected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        server: {port: 80.5, host: 12}
        dispatcher: {backoff_base_s: abc, max_attempts: true}
        systems:
          hookstream:
            enabled: "yes"
            base_url: "http://127.0.0.1:18101"
            api_key_env: HS_KEY
            webhook_secret_envs: HS_SECRET
            poll_interval_s: .inf
            options: []
        create_rules: {}
        """,
    )
    found = by_key(issues_of(path))
    assert found["server.port"].message == "expected an integer, got 80.5"
    assert found["server.host"].message == (
        "expected a string, got 12 (quote it to make it a string)"
    )
    assert found["dispatcher.backoff_base_s"].message == "expected a number, got 'abc'"
    assert found["dispatcher.max_attempts"].message == "expected an integer, got true"
    assert found["systems.hookstream.enabled"].message == "expected true or false, got 'yes'"
    assert found["systems.hookstream.webhook_secret_envs"].message == (
        "expected a list, got 'HS_SECRET'"
    )
    assert found["systems.hookstream.poll_interval_s"].message == (
        "expected a finite number, got .inf"
    )
    assert found["systems.hookstream.options"].message == "expected a mapping, got a list"
    assert found["create_rules"].message == "expected a list, got a mapping"
    assert found["create_rules"].line == 11


def test_missing_required_keys_name_the_parent_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        systems:
          hookstream:
            poll_interval_s: 5
        create_rules:
          - create_in:
              - scope: x
        """,
    )
    found = by_key(issues_of(path))
    assert found["systems.hookstream.base_url"].line == 2
    assert found["systems.hookstream.base_url"].message == (
        "required key 'base_url' is missing in systems.hookstream"
    )
    assert found["systems.hookstream.api_key_env"].line == 2
    assert found["create_rules[0].name"].line == 5  # the list item's line
    assert found["create_rules[0].system"].line == 5
    assert found["create_rules[0].create_in[0].system"].line == 6


def test_cross_checks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        systems:
          hookstream:
            base_url: "ftp://127.0.0.1"
            api_key_env: hs-key
            webhook_secret_envs: [OK_NAME, 1BAD]
            poll_interval_s: -1
            page_size: 1001
            timeout_s: 0
          devhelm:
            base_url: "http://127.0.0.1:18102"
            api_key_env: DH_KEY
            priority_map:
              outbound: {high: [MAJOR], severe: [CRITICAL], low: []}
          incidentio:
            base_url: "http://127.0.0.1:18104"
            api_key_env: II_KEY
          jira:
            base_url: "https://jira.example"
            api_key_env: JIRA_KEY
        create_rules:
          - name: a
            system: devhelm
            create_in:
              - system: hookstream
              - system: devhelm
              - system: incidentio
          - name: a
            system: nowhere
            create_in: []
        fields:
          colour: {}
          title:
            owner: devhelm
            systems: {hookstream: out, devhelm: out, nowhere: in}
          status:
            conflict: {policy: prefer}
          priority:
            owner: incidentio
            conflict: {policy: last_writer, prefer: devhelm}
          assignee:
            conflict: {policy: newest}
        """,
    )
    found = by_key(issues_of(path))
    expected = {
        "systems.hookstream.base_url": (3, "expected an http(s):// URL, got 'ftp://127.0.0.1'"),
        "systems.hookstream.api_key_env": (4, "'hs-key' is not an environment variable name"),
        "systems.hookstream.webhook_secret_envs[1]": (5, "'1BAD' is not an environment"),
        "systems.hookstream.poll_interval_s": (6, "must be at least 0, got -1"),
        "systems.hookstream.page_size": (7, "must be between 1 and 1000, got 1001"),
        "systems.hookstream.timeout_s": (8, "must be greater than 0, got 0"),
        "systems.devhelm.priority_map.outbound.severe": (
            13,
            "'severe' is not a canonical priority",
        ),
        "systems.devhelm.priority_map.outbound.low": (13, "must list at least one vendor value"),
        "systems.jira": (17, "unknown system 'jira' (known: devhelm, hookstream, inboxops"),
        "create_rules[0].create_in[0].system": (24, "'hookstream' cannot create objects"),
        "create_rules[0].create_in[1].system": (
            25,
            "a rule cannot create in its own source system",
        ),
        "create_rules[0].create_in[2].scope": (26, "incidentio needs a scope"),
        "create_rules[1].name": (27, "duplicate rule name 'a' (also create_rules[0])"),
        "create_rules[1].system": (28, "'nowhere' is not a configured system"),
        "create_rules[1].create_in": (29, "must name at least one system"),
        "fields.colour": (31, "unknown field 'colour' (canonical fields: title, description"),
        "fields.title.systems.hookstream": (34, "hookstream cannot write title"),
        "fields.title.systems.devhelm": (34, "devhelm owns title (direction in)"),
        "fields.title.systems.nowhere": (34, "'nowhere' is not a configured system"),
        "fields.status.conflict.prefer": (36, "policy 'prefer' needs 'prefer: <system>'"),
        "fields.priority.owner": (38, "incidentio cannot read priority, so it cannot own it"),
        "fields.priority.conflict.prefer": (39, "is only used with policy 'prefer'"),
        "fields.assignee.conflict.policy": (41, "expected one of last_writer | prefer"),
    }
    for key, (line, message) in expected.items():
        assert key in found, key
        assert (found[key].line, found[key].message[: len(message)]) == (line, message), key
    assert set(found) == set(expected)


def test_link_rules_are_checked_with_lines_and_keys(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
link_rules:
  - name: same-side
    left: {system: inboxops, path: subject}
    right: {system: inboxops, path: custom_fields.ref}
  - name: broken
    left: {system: jira, path: key}
    right: {system: inboxops, path: subject, regex: "([a-z+"}
  - name: groups
    left: {system: hookstream, path: destination..name}
    right: {system: inboxops, path: subject, regex: "(a)(b)"}
  - name: groups
    left: {system: hookstream, path: destination_name}
""",
    )
    issues = by_key(issues_of(path))
    assert set(issues) == {
        "link_rules[0].right.system",
        "link_rules[1].left.system",
        "link_rules[1].right.regex",
        "link_rules[2].left.path",
        "link_rules[2].right.regex",
        "link_rules[3].name",
        "link_rules[3].right",
    }, issues
    same = issues["link_rules[0].right.system"]
    assert same.line == 13
    assert "both sides name 'inboxops'" in same.message
    assert issues["link_rules[1].left.system"].line == 15
    assert "'jira' is not a configured system" in issues["link_rules[1].left.system"].message
    regex = issues["link_rules[1].right.regex"]
    assert regex.line == 16 and regex.message.startswith("not a regular expression")
    assert "not a dotted field path" in issues["link_rules[2].left.path"].message
    assert "exactly one group" in issues["link_rules[2].right.regex"].message
    assert "duplicate rule name 'groups'" in issues["link_rules[3].name"].message
    assert issues["link_rules[3].right"].line == 20  # a side is missing: its rule's line
    assert str(same).startswith(f"{path}:13: link_rules[0].right.system: ")


def test_devhelm_create_in_needs_a_scope(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
  devhelm:
    base_url: "http://127.0.0.1:18102"
    api_key_env: DH_KEY
create_rules:
  - name: r
    system: hookstream
    create_in:
      - {system: devhelm, params: {notify_subscribers: false}}
""",
    )
    [issue] = issues_of(path)
    assert (issue.line, issue.key) == (17, "create_rules[0].create_in[0].scope")
    assert issue.message == "devhelm needs a scope: the status page id to create incidents on"


def test_enum_values_in_rules_and_directions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
create_rules:
  - name: r
    system: hookstream
    match: {min_priority: huge, status_in: [open, 3, shut]}
    create_in: [{system: inboxops}]
fields:
  status:
    systems: {hookstream: sideways}
""",
    )
    found = by_key(issues_of(path))
    assert found["create_rules[0].match.min_priority"].message == (
        "expected one of low | normal | high | urgent, got 'huge'"
    )
    assert found["create_rules[0].match.status_in[1]"].line == 13
    assert found["create_rules[0].match.status_in[2]"].message.endswith("got 'shut'")
    assert found["fields.status.systems.hookstream"].message == (
        "expected one of both | in | out | none, got 'sideways'"
    )
    assert len(found) == 4


def test_keys_must_be_strings_and_unique_everywhere(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
    status_map:
      inbound: {on: open, "off": closed}
    options:
      webhook_scheme: standard
      webhook_scheme: hmac-sha256
""",
    )
    found = by_key(issues_of(path))
    # YAML 1.1 reads a bare `on` as true: such a key must be quoted.
    assert found["systems.inboxops.status_map.inbound.on"].message == (
        "keys must be strings, got on (quote it)"
    )
    assert found["systems.inboxops.status_map.inbound.on"].line == 11
    assert found["systems.inboxops.options.webhook_scheme"].line == 14
    assert found["systems.inboxops.options.webhook_scheme"].message == (
        "duplicate key 'webhook_scheme' (first at line 13)"
    )


def test_unknown_top_level_key_lists_the_allowed_ones(tmp_path: Path) -> None:
    [issue] = issues_of(write(tmp_path, "databse_url: x\n"))
    assert (issue.line, issue.key) == (1, "databse_url")
    assert issue.message == (
        "unknown key 'databse_url'; did you mean 'database_url'? (allowed: database_url, "
        "sqlite_wal_limit_mb, server, admin, dispatcher, history, systems, create_rules, "
        "link_rules, fields, identities, alerts)"
    )


def test_valid_minimal_file_loads_with_defaults(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, MINIMAL), KNOWN)
    assert settings.systems["hookstream"].poll_interval_s == 30.0
    assert settings.systems["inboxops"].webhook_secret_envs == ["IO_SECRET_NEW", "IO_SECRET_OLD"]
    assert settings.server.port == 8080
    assert settings.create_rules == []


def test_a_full_file_converts_to_the_structs(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
    status_map:
      inbound: {in_progress: monitoring}
      outbound: {monitoring: [in_progress]}
    options: {webhook_scheme: hmac-sha256}
fields:
  status:
    systems: {hookstream: in, inboxops: both}
    conflict: {policy: prefer, prefer: hookstream, window_s: 30}
""",
    )
    settings = load_config(path, KNOWN)
    inboxops = settings.systems["inboxops"]
    assert inboxops.status_map is not None
    assert inboxops.status_map.inbound == {"in_progress": "monitoring"}
    assert inboxops.options == {"webhook_scheme": "hmac-sha256"}
    status = settings.fields["status"]
    assert status.systems == {"hookstream": Direction.IN, "inboxops": Direction.BOTH}
    assert (status.conflict.policy, status.conflict.prefer) == ("prefer", "hookstream")
    assert Status(inboxops.status_map.inbound["in_progress"]) is Status.MONITORING


def test_empty_file_is_all_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing yet\n"), KNOWN) == Settings()


# -- adapter options ------------------------------------------------------------------------


def with_options(system: str, options: str) -> str:
    """A config with one system whose ``options`` are ``options`` (from line 6 on)."""
    return f"""
systems:
  {system}:
    base_url: "http://127.0.0.1:18100"
    api_key_env: KEY
    options:
{textwrap.indent(textwrap.dedent(options).strip(), "      ")}
"""


#: Per adapter: options with bad values and an unknown name, and the problems at their lines.
BAD_OPTIONS = {
    "hookstream": (
        """
        require_timestamp: "yes"
        require_timestamps: true
        """,
        [
            (6, "require_timestamp", "expected true or false, got 'yes'"),
            (
                7,
                "require_timestamps",
                "unknown key 'require_timestamps'; did you mean 'require_timestamp'? "
                "(allowed: require_timestamp)",
            ),
        ],
    ),
    "devhelm": (
        """
        org_id: 42
        sync_drafts: "yes"
        signature_separator: ""
        drafts: true
        """,
        [
            (6, "org_id", "expected a string, got 42 (quote it to make it a string)"),
            (7, "sync_drafts", "expected true or false, got 'yes'"),
            (8, "signature_separator", "must not be empty"),
            (
                9,
                "drafts",
                "unknown key 'drafts'; did you mean 'sync_drafts'? "
                "(allowed: org_id, sync_drafts, signature_separator)",
            ),
        ],
    ),
    "inboxops": (
        """
        webhook_scheme: hmac
        webhook_schema: standard
        marker_field: Bad Key
        """,
        [
            (6, "webhook_scheme", "expected one of hmac-sha256 | standard, got 'hmac'"),
            (
                7,
                "webhook_schema",
                "unknown key 'webhook_schema'; did you mean 'webhook_scheme'? "
                "(allowed: webhook_scheme, marker_field)",
            ),
            (8, "marker_field", "must match '^[a-z][a-z0-9_]{0,63}$', got 'Bad Key'"),
        ],
    ),
    "incidentio": (
        """
        api_version: v1
        incident_mode: drill
        version: v2
        """,
        [
            (6, "api_version", "expected one of v2 | v3, got 'v1'"),
            (
                7,
                "incident_mode",
                "expected one of retrospective | standard | stream | test | tutorial, got 'drill'",
            ),
            (
                8,
                "version",
                "unknown key 'version'; did you mean 'api_version'? "
                "(allowed: api_version, incident_mode)",
            ),
        ],
    ),
}


def test_every_adapter_has_bad_option_cases() -> None:
    assert set(BAD_OPTIONS) == set(VENDORS)


@pytest.mark.parametrize("system", sorted(BAD_OPTIONS))
def test_bad_adapter_options_are_reported_with_file_and_line(tmp_path: Path, system: str) -> None:
    options, expected = BAD_OPTIONS[system]
    path = write(tmp_path, with_options(system, options))
    lines = [
        f"{path}:{line}: systems.{system}.options.{key}: {message}"
        for line, key, message in expected
    ]
    assert check_config(path, KNOWN, {"KEY": "1"}) == (1, "\n".join(lines))
    assert [str(issue) for issue in issues_of(path)] == lines


#: Per adapter: options that pass, and what the adapter then reads.
GOOD_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "hookstream": ("require_timestamp: true", {"require_timestamp": True}),
    "devhelm": (
        """
        org_id: "42"
        sync_drafts: true
        signature_separator: "."
        """,
        {"org_id": "42", "sync_drafts": True, "signature_separator": "."},
    ),
    "inboxops": (
        "{webhook_scheme: hmac-sha256, marker_field: sg_key}",
        {"webhook_scheme": "hmac-sha256", "marker_field": "sg_key"},
    ),
    "incidentio": (
        "{api_version: v2, incident_mode: null}",
        {"api_version": "v2", "incident_mode": None},
    ),
}


@pytest.mark.parametrize("system", sorted(GOOD_OPTIONS))
async def test_options_that_pass_are_what_the_adapter_reads(tmp_path: Path, system: str) -> None:
    options, expected = GOOD_OPTIONS[system]
    settings = load_config(write(tmp_path, with_options(system, options)), KNOWN)
    given = settings.systems[system].options
    async with httpx.AsyncClient() as client:
        adapter = adapter_class(system)(
            AdapterSettings(base_url="http://unused", api_key="k", options=given), client
        )
    assert msgspec.structs.asdict(adapter.options) == expected
    # Unset options take the defaults the adapter declares.
    settings = load_config(write(tmp_path, with_options(system, "{}")), KNOWN)
    assert settings.systems[system].options == {}


def test_an_adapter_given_bad_options_in_code_refuses_them() -> None:
    for system, (options, _) in BAD_OPTIONS.items():
        bad = {"no_such_option": 1}
        with pytest.raises(ConfigError) as caught:
            adapter_class(system)(
                AdapterSettings(base_url="http://unused", api_key="k", options=bad),
                httpx.AsyncClient(),
            )
        [issue] = caught.value.issues
        assert issue.key == f"systems.{system}.options", options
        assert "no_such_option" in issue.message


class Bounded(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Options with ``msgspec.Meta`` bounds, as an adapter may declare them."""

    retries: Annotated[int, msgspec.Meta(ge=1, le=10)] = 3
    delay_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    spare: Annotated[int, msgspec.Meta(ge=0)] = 0
    below: Annotated[float, msgspec.Meta(lt=1)] = 0.5
    upto: Annotated[int, msgspec.Meta(le=5)] = 5
    name: Annotated[str, msgspec.Meta(min_length=2, max_length=4, pattern="^[a-z]+$")] = "ab"


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("retries: 0", "must be between 1 and 10, got 0"),
        ("delay_s: 0", "must be greater than 0, got 0"),
        ("spare: -1", "must be at least 0, got -1"),
        ("below: 1.5", "must be less than 1, got 1.5"),
        ("upto: 6", "must be at most 5, got 6"),
        ("name: a", "must be at least 2 characters long, got 'a'"),
        ("name: abcde", "must be at most 4 characters long, got 5"),
        ("name: AB", "must match '^[a-z]+$', got 'AB'"),
    ],
)
def test_option_bounds_are_checked_with_the_line(tmp_path: Path, option: str, message: str) -> None:
    known = {"inboxops": msgspec.structs.replace(KNOWN["inboxops"], options=Bounded)}
    [issue] = issues_of_with(write(tmp_path, with_options("inboxops", option)), known)
    assert (issue.line, issue.key, issue.message) == (
        6,
        f"systems.inboxops.options.{option.split(':')[0]}",
        message,
    )
    good = "{retries: 10, delay_s: 0.1, spare: 0, below: 0, upto: 5, name: abcd}"
    settings = load_config(write(tmp_path, with_options("inboxops", good)), known)
    assert settings.systems["inboxops"].options["name"] == "abcd"


def test_options_of_an_unknown_system_are_not_read_against_any_adapter(tmp_path: Path) -> None:
    found = by_key(issues_of(write(tmp_path, with_options("jira", "anything: [1, 2]"))))
    assert set(found) == {"systems.jira"}
    assert found["systems.jira"].message.startswith("unknown system 'jira'")


def test_free_form_params_report_duplicates_at_any_depth(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
create_rules:
  - name: r
    system: hookstream
    create_in:
      - system: inboxops
        params:
          nested: {a: 1, a: 2}
""",
    )
    [issue] = issues_of(path)
    assert (issue.line, issue.key) == (16, "create_rules[0].create_in[0].params.nested.a")
    assert issue.message == "duplicate key 'a' (first at line 16)"


# -- YAML and file errors -------------------------------------------------------------------


def test_yaml_syntax_error_reports_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        systems:
          hookstream:
            base_url: "http://127.0.0.1:18101"
             api_key_env: HS_KEY
        """,
    )
    [issue] = issues_of(path)
    assert (issue.file, issue.line, issue.key) == (str(path), 4, "(yaml)")
    assert issue.message.startswith("YAML syntax error: ")


@pytest.mark.parametrize(
    "text",
    [
        "".join(f"{'  ' * n}k{n}:\n" for n in range(1000)),
        "fields: " + "[" * 1000 + "]" * 1000 + "\n",
        "fields: {a: " + "{a: " * 1000 + "1" + "}" * 1001 + "\n",
    ],
    ids=["block", "flow sequence", "flow mapping"],
)
def test_yaml_nested_too_deeply_is_a_config_error(tmp_path: Path, text: str) -> None:
    """PyYAML's parser recurses once per level: 1000 levels ended in a RecursionError
    traceback (300 are reported as unknown keys)."""
    path = tmp_path / "deep.yaml"
    path.write_text(text, encoding="utf-8")
    [issue] = issues_of(path)
    assert (issue.file, issue.key) == (str(path), "(yaml)")
    assert issue.line is not None and 1 <= issue.line <= text.count("\n")
    assert issue.message.startswith("nested too deeply to read"), issue.message
    code, report = check_config(path, KNOWN, {})
    assert code == 1 and report.startswith(f"{path}:") and "nested too deeply" in report


def test_unclosed_bracket_names_where_it_started(tmp_path: Path) -> None:
    path = write(tmp_path, "a: [1, 2\nb: 3\n")
    [issue] = issues_of(path)
    assert issue.line == 2
    assert "started at line 1" in issue.message


def test_root_must_be_a_mapping(tmp_path: Path) -> None:
    [issue] = issues_of(write(tmp_path, "- systems\n"))
    assert str(issue) == f"{tmp_path / 'config.yaml'}:1: (root): expected a mapping, got a list"


def test_missing_file(tmp_path: Path) -> None:
    [issue] = issues_of(tmp_path / "absent.yaml")
    assert (issue.line, issue.key) == (None, "(file)")
    assert issue.message == (
        f"cannot read: No such file or directory (syncgate init {tmp_path / 'absent.yaml'}"
        " writes a commented one to start from)"
    )
    [issue] = issues_of(tmp_path)  # a directory: no hint to write it
    assert issue.message.startswith("cannot read: ") and "init" not in issue.message


# -- environment ----------------------------------------------------------------------------


def test_resolve_environment_reads_enabled_systems() -> None:
    settings = load_config(SHIPPED, KNOWN)
    env = {**DEMO_ENV, "SYNCGATE_ADMIN_KEY": "admin-value"}
    secrets = resolve_environment(settings, env)
    assert isinstance(secrets, ResolvedSecrets)
    assert secrets.systems["inboxops"].api_key == "value-of-inboxops-api_key"
    assert secrets.systems["inboxops"].webhook_secrets == ("value-of-inboxops-webhook_secret",)
    assert secrets.admin_key == "admin-value"
    shown = repr(secrets) + str(secrets.systems["devhelm"])
    assert "value-of" not in shown
    assert "admin-value" not in shown


def test_resolve_environment_names_key_and_variable_never_a_value(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
  devhelm:
    enabled: false
    base_url: "http://127.0.0.1:18102"
    api_key_env: DH_KEY
""",
    )
    settings = load_config(path, KNOWN)
    env = {"HS_KEY": "hs-secret-value", "IO_SECRET_NEW": "io-secret-value", "IO_KEY": ""}
    with pytest.raises(ConfigError) as caught:
        resolve_environment(settings, env)
    assert [(i.key, i.message) for i in caught.value.issues] == [
        ("systems.inboxops.api_key_env", "environment variable IO_KEY is not set"),
        (
            "systems.inboxops.webhook_secret_envs[1]",
            "environment variable IO_SECRET_OLD is not set",
        ),
    ]
    assert "secret-value" not in str(caught.value)
    # The disabled system needs nothing; no admin key just means no admin API.
    env.update(IO_KEY="io-key-value", IO_SECRET_OLD="io-old-value")
    secrets = resolve_environment(settings, env)
    assert set(secrets.systems) == {"hookstream", "inboxops"}
    assert secrets.systems["inboxops"].webhook_secrets == ("io-secret-value", "io-old-value")
    assert secrets.admin_key is None


def test_an_alert_url_that_is_not_http_is_refused_without_showing_it(tmp_path: Path) -> None:
    """Alerts are posted to the URL: one that is not http(s) would fail at the first
    alert, long after the start, so the start refuses it."""
    path = write(tmp_path, MINIMAL + "alerts:\n  url_env: SG_ALERT_URL\n")
    settings = load_config(path, KNOWN)
    env = {"HS_KEY": "k", "IO_KEY": "k", "IO_SECRET_NEW": "s", "IO_SECRET_OLD": "s"}
    for wrong in ("not-a-url", "ftp://alerts.example/hook", "https://"):
        with pytest.raises(ConfigError) as caught:
            resolve_environment(settings, {**env, "SG_ALERT_URL": wrong})
        assert [(i.key, i.message) for i in caught.value.issues] == [
            (
                "alerts.url_env",
                "environment variable SG_ALERT_URL is not an http(s) URL (alerts are posted to it)",
            )
        ]
        assert wrong not in str(caught.value)
    url = "https://alerts.example/hook?token=t0ken"
    assert resolve_environment(settings, {**env, "SG_ALERT_URL": url}).alert_url == url


def test_an_unset_variable_whose_key_is_left_at_its_default_is_warned_at_its_section(
    tmp_path: Path,
) -> None:
    """``alerts: {min_interval_s: 60}`` reads SYNCGATE_ALERT_URL, the default of
    ``alerts.url_env``, which is not in the file: its warning had no line."""
    path = write(tmp_path, MINIMAL + "alerts:\n  min_interval_s: 60\n")
    env = {"HS_KEY": "k", "IO_KEY": "k", "IO_SECRET_NEW": "s", "IO_SECRET_OLD": "s"}
    code, report = check_config(path, KNOWN, env)
    assert code == 0, report
    alerts_line = path.read_text().splitlines().index("alerts:") + 1
    assert (
        f"{path}:{alerts_line}: alerts.url_env: warning: environment variable"
        " SYNCGATE_ALERT_URL is not set" in report.splitlines()
    ), report


def test_database_url_precedence(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, 'database_url: "sqlite+aiosqlite:///file.db"\n'), KNOWN)
    assert database_url(settings, {}) == "sqlite+aiosqlite:///file.db"
    assert database_url(settings, {"SYNCGATE_DATABASE_URL": ""}) == "sqlite+aiosqlite:///file.db"
    env = {"SYNCGATE_DATABASE_URL": "postgresql+asyncpg://db/syncgate"}
    assert database_url(settings, env) == "postgresql+asyncpg://db/syncgate"
    assert database_url(Settings(), {}) == "sqlite:///var/syncgate.db"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://sg:Sup3r@db/sg", "'mysql' is not supported: Syncgate runs on SQLite or"),
        ("oracle+cx_oracle://db", "'oracle+cx_oracle' is not supported"),
        ("not a url", "not a database URL (expected sqlite:///PATH or postgresql://"),
        ("sqlite://", "an in-memory SQLite database is lost when the process ends"),
        ("sqlite:///:memory:", "an in-memory SQLite database"),
        ("sqlite:///file:x?mode=memory&uri=true", "an in-memory SQLite database"),
    ],
)
def test_database_url_must_name_a_sqlite_file_or_postgresql(
    tmp_path: Path, url: str, problem: str
) -> None:
    """Only the ``dialect://`` shape was checked: a MySQL URL passed check-config, and
    serve then ended in a ModuleNotFoundError; an in-memory SQLite database passed too."""
    path = write(tmp_path, f"# the state\ndatabase_url: {url!r}\n")
    [issue] = issues_of(path)
    assert (issue.line, issue.key) == (2, "database_url"), issue
    assert issue.message.startswith(problem), issue.message
    assert "Sup3r" not in issue.message


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///var/syncgate.db",
        "sqlite+aiosqlite:///x.db",
        "sqlite+pysqlite:////var/lib/syncgate/syncgate.db",
        "postgresql://sg:pw@db/sg",
        "postgres://db/sg",
        "postgresql+asyncpg://db/sg",
        "postgresql+psycopg2://db/sg",
    ],
)
def test_every_spelling_of_sqlite_and_postgresql_is_accepted(tmp_path: Path, url: str) -> None:
    assert load_config(write(tmp_path, f"database_url: {url!r}\n"), KNOWN).database_url == url


# -- check-config ---------------------------------------------------------------------------


def test_check_config_warns_about_unset_variables() -> None:
    env = {k: v for k, v in DEMO_ENV.items() if k != "SYNCGATE_INBOXOPS_API_KEY"}
    code, text = check_config(SHIPPED, KNOWN, env)
    assert code == 0
    first, *warnings = text.splitlines()
    assert first == f"{SHIPPED}: OK (4 systems, 1 creation rule)"
    lines = list(enumerate(SHIPPED.read_text().splitlines(), 1))
    line = next(n for n, content in lines if "api_key_env: SYNCGATE_INBOXOPS_API_KEY" in content)
    admin_line = next(n for n, content in lines if content == "  api_key_env: SYNCGATE_ADMIN_KEY")
    assert warnings == [
        f"{SHIPPED}:{line}: systems.inboxops.api_key_env: warning: "
        "environment variable SYNCGATE_INBOXOPS_API_KEY is not set",
        f"{SHIPPED}:{admin_line}: admin.api_key_env: warning: environment variable "
        "SYNCGATE_ADMIN_KEY "
        "is not set; the admin API will be closed",
    ]


def test_check_config_lists_every_issue(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        systems:
          hookstream: {base_url: "http://x", api_key_env: K, page_size: 0}
        colour: red
        """,
    )
    code, text = check_config(path, KNOWN, {})
    assert code == 1
    assert text.splitlines() == [
        f"{path}:2: systems.hookstream.page_size: must be between 1 and 1000, got 0",
        f"{path}:3: colour: unknown key 'colour' (allowed: database_url, sqlite_wal_limit_mb, "
        "server, admin, dispatcher, history, systems, create_rules, link_rules, fields, "
        "identities, alerts)",
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", None, "no system is configured: add at least one (hookstream, devhelm,"),
        ("# nothing yet\n", None, "no system is configured"),
        ("systems: null\n", 1, "no system is configured"),
        ("history:\n  retention_days: 3\nsystems: {}\n", 3, "no system is configured"),
        (
            "systems:\n  hookstream:\n    enabled: false\n    base_url: http://h\n"
            "    api_key_env: HS_KEY\n",
            1,
            "every system is disabled (enabled: false): enable at least one",
        ),
    ],
    ids=["empty", "comments", "null", "empty mapping", "all disabled"],
)
def test_a_config_that_enables_no_system_is_refused_to_serve(
    tmp_path: Path, text: str, line: int | None, message: str
) -> None:
    """An empty config passed check-config ('OK (0 systems, 0 creation rules)') and serve
    then never became ready. It is still read where no system is needed (migrate)."""
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    code, report = check_config(path, KNOWN, {})
    assert code == 1, report
    where = f"{path}:{line}" if line is not None else str(path)
    assert report.startswith(f"{where}: systems: {message}"), report
    with pytest.raises(ConfigError) as exc:
        load_config(path, KNOWN, to_serve=True)
    assert [i.key for i in exc.value.issues] == ["systems"]
    load_config(path, KNOWN)


def test_check_config_counts(tmp_path: Path) -> None:
    code, text = check_config(write(tmp_path, MINIMAL), KNOWN, {"HS_KEY": "1", "IO_KEY": "1"})
    assert code == 0
    assert text.splitlines()[0] == f"{tmp_path / 'config.yaml'}: OK (2 systems, 0 creation rules)"


# -- admin dump -----------------------------------------------------------------------------


class Secretish(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Options named like secrets, as an adapter might declare them: the dump masks them."""

    webhook_scheme: str = "standard"
    api_token: str = ""
    client_secret_env: str = ""
    auth: dict[str, Any] = msgspec.field(default_factory=dict)
    timeout_s: int = 0


def test_dump_effective_masks_literal_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
    options:
      webhook_scheme: standard
      api_token: tok-123
      client_secret_env: IO_CLIENT_SECRET
      auth: {password: pw-456, keys: [k1, k2], user: ops}
      timeout_s: 3
database_url: "postgresql+asyncpg://syncgate:db-pass@db:5432/syncgate"
create_rules:
  - name: r
    system: hookstream
    create_in: [{system: inboxops, params: {inbox_id: abc, signing_key: sk-789}}]
""",
    )
    known = {**KNOWN, "inboxops": msgspec.structs.replace(KNOWN["inboxops"], options=Secretish)}
    dumped = dump_effective(load_config(path, known))
    assert dumped["systems"]["inboxops"]["options"] == {
        "webhook_scheme": "standard",
        "api_token": "***",
        "client_secret_env": "IO_CLIENT_SECRET",
        "auth": {"password": "***", "keys": ["***", "***"], "user": "ops"},
        "timeout_s": 3,
    }
    assert dumped["create_rules"][0]["create_in"][0]["params"] == {
        "inbox_id": "abc",
        "signing_key": "***",
    }
    assert dumped["database_url"] == "postgresql+asyncpg://syncgate:***@db:5432/syncgate"
    assert dumped["systems"]["inboxops"]["api_key_env"] == "IO_KEY"
    assert dumped["server"] == {
        "host": "127.0.0.1",
        "port": 8080,
        "max_body_bytes": 1048576,
        "max_header_bytes": 65536,
        "header_timeout_s": 10.0,
        "body_timeout_s": 30.0,
        "keep_alive_s": 5.0,
        "max_connections": 512,
    }
    for secret in ("tok-123", "pw-456", "sk-789", "db-pass"):
        assert secret not in repr(dumped)


def test_a_systems_share_of_writes_is_half_by_default_and_checked(tmp_path: Path) -> None:
    settings = load_config(write(tmp_path, MINIMAL + "dispatcher: {concurrency: 9}\n"), KNOWN)
    assert settings.dispatcher.per_system == 4
    one = load_config(write(tmp_path, MINIMAL + "dispatcher: {concurrency: 1}\n"), KNOWN)
    assert one.dispatcher.per_system == 1
    more = "dispatcher: {concurrency: 8, system_concurrency: 20}\n"
    assert load_config(write(tmp_path, MINIMAL + more), KNOWN).dispatcher.per_system == 8
    (issue,) = issues_of(write(tmp_path, MINIMAL + "dispatcher:\n  system_concurrency: 0\n"))
    assert (issue.line, issue.key) == (10, "dispatcher.system_concurrency")
    assert "must be at least 1, got 0" in issue.message


def test_the_sqlite_log_limit_is_64_mb_by_default_and_checked(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, MINIMAL), KNOWN).sqlite_wal_limit_mb == 64
    two = load_config(write(tmp_path, MINIMAL + "sqlite_wal_limit_mb: 2\n"), KNOWN)
    assert two.sqlite_wal_limit_mb == 2
    (issue,) = issues_of(write(tmp_path, MINIMAL + "sqlite_wal_limit_mb: 0.5\n"))
    assert (issue.line, issue.key) == (9, "sqlite_wal_limit_mb")
    assert "must be at least 1, got 0.5" in issue.message


def test_an_empty_section_means_its_defaults(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
    options:
      # none set
dispatcher:
  # everything commented out
create_rules:
fields:
  status:
""",
    )
    settings = load_config(path, KNOWN)
    assert settings.dispatcher == Settings().dispatcher
    assert settings.create_rules == []
    assert settings.fields["status"].conflict.policy == "last_writer"
    assert settings.systems["inboxops"].options == {}
    # An empty system still needs its required keys, reported at its own line.
    issues = issues_of(write(tmp_path, "systems:\n  hookstream:\n"))
    assert [(i.line, i.key) for i in issues] == [
        (2, "systems.hookstream.base_url"),
        (2, "systems.hookstream.api_key_env"),
    ]


def test_ui_url_is_a_link_template_naming_the_object(tmp_path: Path) -> None:
    good = MINIMAL.replace(
        "    api_key_env: HS_KEY\n",
        '    api_key_env: HS_KEY\n    ui_url: "https://app.example/issues/{external_id}"\n',
    )
    settings = load_config(write(tmp_path, good), KNOWN)
    assert settings.systems["hookstream"].ui_url == "https://app.example/issues/{external_id}"
    assert settings.systems["inboxops"].ui_url is None
    for value, message in (
        ("ftp://x/{external_id}", "expected an http(s):// URL"),
        ("https://x/{id}", "unknown placeholder(s) id"),
        ("https://x/issues", "must name {external_id}"),
        ("https://x/{external_id", "not a URL template"),
    ):
        bad = MINIMAL.replace(
            "    api_key_env: HS_KEY\n", f'    api_key_env: HS_KEY\n    ui_url: "{value}"\n'
        )
        issue = by_key(issues_of(write(tmp_path, bad)))["systems.hookstream.ui_url"]
        assert message in issue.message, (value, issue)
        assert issue.line == 5  # the ui_url line
