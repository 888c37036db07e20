"""bench/ab.py takes two revisions of the gateway in turns: each round's ratio, their
median and range, and the worktrees it made are gone at the end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ab import summary, summary_line

ROOT = Path(__file__).resolve().parent.parent


def test_the_ratio_is_taken_per_round_then_summed_up() -> None:
    cpu = {"A": [2.0, 1.0, 4.0], "B": [1.0, 1.5, 4.4]}
    s = summary(cpu)
    assert s["ratios"] == [0.5, 1.5, 1.1]  # per round, in order: not median(B) / median(A)
    assert (s["median"], s["min"], s["max"], s["below_1"]) == (1.1, 0.5, 1.5, 1)
    assert (s["a_ms"], s["b_ms"]) == (2.0, 1.5)
    line = summary_line(s, {"A": "HEAD~1", "B": "."})
    assert line.startswith("B / A CPU per change: 1.100 x (0.500-1.500), 1 of 3 rounds below 1")
    assert "A (HEAD~1) 2.000 ms, B (.) 1.500 ms" in line


def worktrees() -> list[str]:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [line for line in out.splitlines() if line.startswith("worktree ")]


def bench_ab(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m bench.ab ARGS`` from the repository, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "bench.ab", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_name_that_is_no_commit_is_refused_before_anything_starts() -> None:
    before = worktrees()
    done = bench_ab("HEAD", "no-such-revision-here")
    assert done.returncode != 0
    assert "'no-such-revision-here' is not a commit" in done.stderr
    assert "CPU pinning" not in done.stderr, "an installation was started"
    assert worktrees() == before


def test_postgres_without_a_server_is_refused_before_anything_starts() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SYNCGATE_TEST_POSTGRES_URL", "SYNCGATE_BENCH_POSTGRES_URL")
    }
    done = bench_ab("HEAD", ".", "--db", "postgres", env=env)
    assert done.returncode == 2
    assert "--db postgres needs SYNCGATE_TEST_POSTGRES_URL" in done.stderr
    assert "CPU pinning" not in done.stderr, "an installation was started"
    done = bench_ab("HEAD", "HEAD", "--db-b", "postgres", env=env)
    assert done.returncode == 2
    assert "--db-b postgres needs SYNCGATE_TEST_POSTGRES_URL" in done.stderr


def test_a_rate_that_is_not_above_zero_is_refused() -> None:
    done = bench_ab("HEAD", ".", "--rate", "0")
    assert done.returncode == 2
    assert "--rate must be above 0" in done.stderr


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("db", "db_b", "rate"),
    [("sqlite", "sqlite", None), ("postgres", "postgres", None), ("sqlite", "postgres", 40.0)],
)
def test_two_revisions_take_turns_and_leave_no_worktree(
    tmp_path: Path, db: str, db_b: str, rate: float | None
) -> None:
    """Also one revision on two databases (``--db-b``): what PostgreSQL costs against
    SQLite, in turns; and changes offered at a steady rate (``--rate``)."""
    if "postgres" in (db, db_b):
        assert os.environ.get("SYNCGATE_TEST_POSTGRES_URL"), "run the suite with scripts/test"
    before = worktrees()
    out = tmp_path / "ab.json"
    done = bench_ab(
        "HEAD",
        ".",
        "--rounds",
        "2",
        "--changes",
        "60",
        "--items",
        "20",
        "--json",
        str(out),
        "--db",
        db,
        "--db-b",
        db_b,
        *(("--rate", str(rate)) if rate else ()),
        timeout=280,
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr[-4000:]}"
    lines = done.stdout.splitlines()
    assert [ln.split()[:2] for ln in lines[:2]] == [["round", "1"], ["round", "2"]]
    assert lines[-1].startswith("B / A CPU per change:")
    result = json.loads(out.read_text())
    assert len(result["cpu_ms"]["A"]) == len(result["cpu_ms"]["B"]) == 2
    assert all(ms > 0 for ms in result["cpu_ms"]["A"] + result["cpu_ms"]["B"])
    assert "A: HEAD at " in done.stderr and "/tree-A" in done.stderr
    on = dict(re.findall(r"([AB]): \S+ at .*, 20 work items on (\w+)", done.stderr))
    assert on == {"A": db, "B": db_b}, done.stderr[-2000:]
    assert (result["db"], result["db_b"], result["rate"]) == (db, db_b, rate)
    assert worktrees() == before, "a worktree was left behind"
