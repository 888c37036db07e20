"""The deployment files in ``deploy/``: the systemd unit is valid and hardened, and the
environment example names every secret the shipped config reads, with no value in it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "syncgate.service"
ENV_EXAMPLE = ROOT / "deploy" / "syncgate.env.example"
INSTALLED_BINARY = "/opt/syncgate/bin/syncgate"


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A unit file as section -> [(key, value)] in order (keys may repeat in systemd)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, sep, value = line.partition("=")
        assert sep and current is not None, f"line {number} is neither a section nor key=value"
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", key), f"line {number}: bad key {key!r}"
        current.append((key, value))
    return sections


def values(section: list[tuple[str, str]], key: str) -> list[str]:
    return [v for k, v in section if k == key]


def test_the_unit_is_valid_and_hardened(tmp_path: Path) -> None:
    text = UNIT.read_text()
    sections = unit_sections(text)
    assert set(sections) == {"Unit", "Service", "Install"}
    unit, service, install = sections["Unit"], sections["Service"], sections["Install"]
    assert values(unit, "Description")
    assert values(install, "WantedBy") == ["multi-user.target"]

    (exec_start,) = values(service, "ExecStart")
    assert exec_start.split()[:2] == [INSTALLED_BINARY, "serve"]
    assert "--config /etc/syncgate/config.yaml" in exec_start
    expected = {
        "DynamicUser": "yes",
        "ProtectSystem": "strict",
        "StateDirectory": "syncgate",
        "ConfigurationDirectory": "syncgate",
        "EnvironmentFile": "/etc/syncgate/syncgate.env",
        "Restart": "on-failure",
        "NoNewPrivileges": "yes",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert values(service, key) == [value], key
    # The database is written where the service may write: its state directory.
    assert values(service, "Environment") == [
        "SYNCGATE_DATABASE_URL=sqlite:////var/lib/syncgate/syncgate.db"
    ]
    assert values(service, "WorkingDirectory") == ["/var/lib/syncgate"]
    # Longer than uvicorn's 10 s graceful shutdown, so SIGTERM drains before SIGKILL.
    (stop,) = values(service, "TimeoutStopSec")
    assert int(stop) > 10

    analyze = shutil.which("systemd-analyze")
    if analyze is not None:
        # Verified as installed, with ExecStart pointing at this checkout's syncgate
        # (verify insists that the binary exists).
        binary = shutil.which("syncgate") or str(Path(sys.executable).parent / "syncgate")
        installed = tmp_path / "syncgate.service"
        installed.write_text(text.replace(INSTALLED_BINARY, binary))
        result = subprocess.run(
            [analyze, "verify", str(installed)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "syncgate.service" not in result.stderr, result.stderr


def test_the_environment_example_names_every_secret_and_holds_none() -> None:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    wanted = {config["admin"]["api_key_env"]}
    for system in config["systems"].values():
        wanted.add(system["api_key_env"])
        wanted.update(system.get("webhook_secret_envs") or [])

    named = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"not NAME=value: {line!r}"
        named[name] = value
    assert set(named) == wanted
    assert all(value == "" for value in named.values()), "the example must hold no values"
