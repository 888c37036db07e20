"""The benchmark harness keeps working: ``python -m bench.run --quick`` runs the gateway,
the baseline and the simulators as real processes, prints its table and writes valid
JSON. A smoke check only: no figure is asserted (timings on shared CI machines are noise).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_quick_benchmark_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-5000:]}"

    # the table
    assert "figure" in proc.stdout and "x baseline" in proc.stdout
    for figure in (
        "ingest sqlite c=32 p99",
        "sustained sqlite changes/s",
        "propagation sqlite vendor 20 ms p50",
        "backlog",
        "cost/change",
    ):
        assert figure in proc.stdout, figure

    # the JSON
    results = json.loads(out.read_text())
    assert results["mode"] == "quick"
    for section in ("gateway_sqlite", "baseline", "scale_sqlite", "gateway_postgres"):
        assert section in results, section
    gw = results["gateway_sqlite"]
    assert set(gw["ingest"]) == {"1", "32", "128"}
    assert set(gw["propagation"]) == {"0", "20"}
    assert {"delivered_rate", "bounded"} <= set(gw["sustained"])
    assert {"drain_s", "rss_mb_peak_drain"} <= set(gw["backlog"])
    # every change sent was accepted and written (two changes to one item in flight at
    # once may rightly coalesce into one write per system, so this is an upper bound)
    for run in gw["ingest"]["32"]["runs"]:
        assert run["errors"] == 0
        assert 0 < run["writes"] <= 3 * run["accepted"]
    for lat in ("0", "20"):  # one change per item: each reaches all three systems
        assert gw["propagation"][lat]["incomplete"] == 0
    assert gw["backlog"]["writes_after_return"] == 3 * gw["items"]
    assert results["machine"]["nproc"] >= 1
