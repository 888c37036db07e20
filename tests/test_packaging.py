"""What ``pip install syncgate`` gets: the wheel carries the migrations, the default config
and the license; the packaged config is the shipped one; no dependency is listed that
nothing uses."""

from __future__ import annotations

import email.parser
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: sha256 of https://www.apache.org/licenses/LICENSE-2.0.txt, the canonical text.
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_license_is_the_canonical_apache_2_text() -> None:
    assert hashlib.sha256((ROOT / "LICENSE").read_bytes()).hexdigest() == APACHE_2_SHA256


def test_packaged_default_config_is_the_shipped_config_yaml() -> None:
    """``app/defaults/config.yaml`` is what ``syncgate init`` and the demo use from an
    installed package: it must not drift from the repository's config.yaml."""
    packaged = (ROOT / "app" / "defaults" / "config.yaml").read_bytes()
    assert packaged == (ROOT / "config.yaml").read_bytes(), (
        "app/defaults/config.yaml differs from config.yaml: copy config.yaml over it"
    )


def test_sqlite_urls_need_no_aiosqlite(tmp_path: Path) -> None:
    """aiosqlite is not a dependency: ``sqlite+aiosqlite:///`` is accepted as a spelling
    of ``sqlite:///`` and served by the standard sqlite3 module (app/store.py)."""
    script = (
        "import asyncio, sys\n"
        "sys.modules['aiosqlite'] = None  # importing it now fails\n"
        "from app.store import Store\n"
        "async def main():\n"
        f"    store = Store.connect('sqlite+aiosqlite:///{tmp_path}/x.db')\n"
        "    await store.migrate()\n"
        "    async with store.tx():\n"
        "        pass\n"
        "    await store.close()\n"
        "    print(store.engine.url.drivername)\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "sqlite+pysqlite"


@pytest.mark.slow  # runs pip, which builds in an isolated environment
def test_wheel_carries_migrations_default_config_and_license(tmp_path: Path) -> None:
    # Build from a copy, so that the build leaves nothing in the working tree.
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    for name in ("app", "adapters"):
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    out = tmp_path / "dist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "--disable-pip-version-check",
            "-w",
            str(out),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = out.glob("syncgate-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        migrations = sorted(
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / "app" / "migrations").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        )
        assert migrations, "no migrations found in the source tree"
        for name in migrations:
            assert name in names, f"{name} missing from the wheel"
            assert archive.read(name) == (ROOT / name).read_bytes()
        assert archive.read("app/defaults/config.yaml") == (ROOT / "config.yaml").read_bytes()
        console = sorted(
            p.relative_to(ROOT).as_posix()
            for folder in ("templates", "static")
            for p in (ROOT / "app" / "http" / "ui" / folder).iterdir()
        )
        assert "app/http/ui/static/htmx.min.js" in console
        for name in console:  # the console's templates, htmx and CSS
            assert name in names, f"{name} missing from the wheel"
        (dist_info,) = {n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA")}
        assert archive.read(f"{dist_info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
        metadata = email.parser.Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
    assert metadata["License-Expression"] == "Apache-2.0"
    assert metadata["License-File"] == "LICENSE"
    requires = " ".join(metadata.get_all("Requires-Dist") or [])
    assert "alembic" in requires
    assert "aiosqlite" not in requires
    demo_runs_from_the_installed_wheel(wheel, tmp_path)


def demo_runs_from_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    """``syncgate demo`` from the wheel installed in a fresh virtualenv, run in a folder
    with no config.yaml and no checkout: it finds the packaged config and converges.
    The dependencies come from this environment's site-packages (no network), through
    a path entry; the syncgate code comes from the wheel alone."""
    fresh = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(fresh)], check=True)
    (site,) = fresh.glob("lib/python*/site-packages")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    deps = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    python = str(fresh / "bin" / "python")
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    where = subprocess.run(
        [python, "-c", "import app; print(app.__file__)"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    assert where.stdout.startswith(str(site)), where.stdout
    demo = subprocess.run(
        [python, "-m", "app.cli", "demo", "--port", "0", "--deadline", "60"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "defaults/config.yaml" in demo.stdout, demo.stdout[:2000]
