"""``scripts/bootstrap.sh`` is safe to source: the shell's options are left as they were,
a failure returns non-zero instead of ending the shell, and a current venv is not
reinstalled. Each test points ``SYNCGATE_VENV`` at a stand-in venv whose ``python``
records every call, so nothing is installed and a reinstall would show."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"


def fake_venv(tmp_path: Path, *, current: bool, python_exit: int = 0) -> Path:
    """A venv directory with a ``bin/python`` that logs its arguments to ``calls`` and
    exits ``python_exit``; with ``current`` its stamp matches pyproject.toml."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/calls"\nexit {python_exit}\n')
    python.chmod(0o755)
    if current:
        digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
        (venv / ".syncgate-installed").write_text(digest + "\n")
    return venv


def bash(script: str, venv: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCGATE_")}
    env.pop("BASH_ENV", None)
    env["SYNCGATE_VENV"] = str(venv)
    return subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def options(stdout: str) -> dict[str, str]:
    """``set -o`` output lines as option -> on|off."""
    found = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in ("on", "off"):
            found[parts[0]] = parts[1]
    return found


def test_sourcing_keeps_options_off_and_a_later_failure_does_not_end_the_shell(
    tmp_path: Path,
) -> None:
    venv = fake_venv(tmp_path, current=True)
    result = bash(
        "source scripts/bootstrap.sh; echo rc=$?; set -o; false; echo still-here; "
        'echo "PATH=$PATH"',
        venv,
    )
    assert result.returncode == 0, result.stderr
    assert "rc=0" in result.stdout
    opts = options(result.stdout)
    assert (opts["errexit"], opts["nounset"], opts["pipefail"]) == ("off", "off", "off")
    assert "still-here" in result.stdout
    assert f"PATH={venv}/bin:" in result.stdout
    assert not (tmp_path / "calls").exists(), "a current venv was reinstalled"


def test_sourcing_keeps_options_that_were_on(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, current=True)
    result = bash("set -eu; set +o pipefail; source scripts/bootstrap.sh; set -o", venv)
    assert result.returncode == 0, result.stderr
    opts = options(result.stdout)
    assert (opts["errexit"], opts["nounset"], opts["pipefail"]) == ("on", "on", "off")


def test_sourcing_twice_puts_the_venv_on_path_once(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, current=True)
    result = bash('source scripts/bootstrap.sh; source scripts/bootstrap.sh; echo "$PATH"', venv)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(":").count(f"{venv}/bin") == 1


def test_a_failed_install_returns_non_zero_and_the_shell_goes_on(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, current=False, python_exit=3)
    result = bash(
        'source scripts/bootstrap.sh; echo rc=$?; set -o; false; echo still-here; echo "$PATH"',
        venv,
    )
    assert result.returncode == 0, result.stderr
    assert "rc=3" in result.stdout
    opts = options(result.stdout)
    assert (opts["errexit"], opts["nounset"], opts["pipefail"]) == ("off", "off", "off")
    assert "still-here" in result.stdout
    assert f"{venv}/bin" not in result.stdout.splitlines()[-1]
    assert "-m pip install" in (tmp_path / "calls").read_text()


def test_a_stale_stamp_reinstalls(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, current=False)
    (venv / ".syncgate-installed").write_text("an older pyproject.toml\n")
    result = bash("source scripts/bootstrap.sh && echo ok", venv)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout
    calls = (tmp_path / "calls").read_text()
    assert f"-e {ROOT}[test]" in calls
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    assert (venv / ".syncgate-installed").read_text().strip() == digest


@pytest.mark.parametrize("script", ["scripts/test", "scripts/demo"])
def test_scripts_that_source_it_stop_when_it_fails(tmp_path: Path, script: str) -> None:
    """scripts/test and scripts/demo run under ``set -euo pipefail``: a failed bootstrap
    stops them before they go on (no PostgreSQL started, no demo run)."""
    venv = fake_venv(tmp_path, current=False, python_exit=3)
    result = bash(f"{script} --version; echo rc=$?", venv)
    assert "rc=3" in result.stdout
    assert "PostgreSQL" not in result.stderr


def test_a_script_that_sources_it_keeps_its_own_errexit(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, current=True)
    result = bash(
        "set -euo pipefail; source scripts/bootstrap.sh; set -o; false; echo not-reached",
        venv,
    )
    assert result.returncode == 1
    assert options(result.stdout)["errexit"] == "on"
    assert "not-reached" not in result.stdout


def test_running_it_installs_without_changing_the_caller(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path, current=False)
    result = bash('bash scripts/bootstrap.sh; echo rc=$?; echo "$PATH"', venv)
    assert "rc=0" in result.stdout
    assert f"{venv}/bin" not in result.stdout
    assert (venv / ".syncgate-installed").exists()
