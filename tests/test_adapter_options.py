"""Adapter options end to end: a bad option is refused with its file and line by
``check-config``, by ``serve`` and by a config reload, and the documented table of options
is the one the adapters declare."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
import msgspec.inspect as mi
import pytest
import yaml

from adapters import VENDORS, adapter_class
from app.store import Store
from tests.admin_support import admin, ok, problem, set_environment
from tests.cli_support import ROOT, clean_env, syncgate

#: The shipped config with two bad options under devhelm.
BAD_OPTION_LINES = [
    "    options:",
    '      sync_drafts: "yes"',
    "      drafts: true",
]


def shipped_with_bad_devhelm_options(tmp_path: Path) -> tuple[Path, int]:
    """A copy of the shipped config whose devhelm system has bad options, and the line of
    the first one."""
    lines = (ROOT / "config.yaml").read_text(encoding="utf-8").splitlines()
    at = lines.index("  devhelm:") + 3  # after base_url and api_key_env
    path = tmp_path / "bad-options.yaml"
    path.write_text("\n".join([*lines[:at], *BAD_OPTION_LINES, *lines[at:]]) + "\n")
    return path, at + 2


def expected_problems(path: Path, line: int) -> list[str]:
    return [
        f"{path}:{line}: systems.devhelm.options.sync_drafts: expected true or false, got 'yes'",
        f"{path}:{line + 1}: systems.devhelm.options.drafts: unknown key 'drafts'; "
        "did you mean 'sync_drafts'? (allowed: org_id, sync_drafts, signature_separator)",
    ]


@pytest.mark.slow
def test_check_config_refuses_a_bad_adapter_option_with_its_line(tmp_path: Path) -> None:
    path, line = shipped_with_bad_devhelm_options(tmp_path)
    result = syncgate("check-config", str(path))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.splitlines() == expected_problems(path, line)


@pytest.mark.slow
def test_serve_refuses_a_bad_adapter_option_before_it_starts(tmp_path: Path) -> None:
    path, line = shipped_with_bad_devhelm_options(tmp_path)
    result = syncgate("serve", "--config", str(path), env=clean_env())
    assert result.returncode == 1, (result.stdout, result.stderr)  # as check-config
    problems = [f"  {p}" for p in expected_problems(path, line)]
    assert result.stderr.splitlines()[1:] == problems, result.stderr


async def test_a_reload_with_a_bad_adapter_option_is_refused_with_422(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with admin(store) as (rig, client):
        before = ok(await client.get("/admin/config"))["config"]
        data = msgspec.to_builtins(rig.gateway.settings)
        data["systems"]["inboxops"]["options"] = {"webhook_scheme": "svix"}
        path = tmp_path / "config.yaml"
        text = yaml.safe_dump(data, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        (line,) = [n for n, row in enumerate(text.splitlines(), 1) if "webhook_scheme" in row]
        set_environment(monkeypatch)
        rig.gateway.config_path = str(path)

        body = problem(
            await client.post("/admin/config/reload"), 422, "running configuration stays"
        )
        assert body["issues"] == [
            {
                "file": str(path),
                "line": line,
                "key": "systems.inboxops.options.webhook_scheme",
                "message": "expected one of hmac-sha256 | standard, got 'svix'",
            }
        ]
        assert ok(await client.get("/admin/config"))["config"] == before


# -- the documented table ----------------------------------------------------------------------


def documented_options() -> set[tuple[str, str, str]]:
    """(system, key, default) of every row of docs/configuration.md's adapter options table."""
    text = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    section = text.split("### Adapter options", 1)[1].split("\n#", 1)[0]
    rows = set()
    for row in section.splitlines():
        cells = [cell.strip() for cell in row.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`\w+`", cells[0]):
            rows.add((cells[0].strip("`"), cells[1].strip("`"), cells[3].strip("`")))
    return rows


def declared_options() -> set[tuple[str, str, str]]:
    rows = set()
    for system in VENDORS:
        info = mi.type_info(adapter_class(system).Options)
        assert isinstance(info, mi.StructType)
        for field in info.fields:
            default = msgspec.json.encode(field.default).decode()
            rows.add((system, field.encode_name, default))
    return rows


def test_the_documented_options_are_the_declared_ones() -> None:
    assert documented_options() == declared_options()


@pytest.mark.parametrize("system", sorted(VENDORS))
def test_options_are_frozen_structs_that_refuse_unknown_keys(system: str) -> None:
    options = adapter_class(system).Options
    assert options.__struct_config__.frozen
    assert options.__struct_config__.forbid_unknown_fields
    with pytest.raises(msgspec.ValidationError):
        msgspec.convert({"no_such_option": True}, options)
