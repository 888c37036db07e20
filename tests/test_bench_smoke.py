"""The benchmark harness keeps working: ``python -m bench.run --quick`` runs the gateway,
the baseline, the floor, Node-RED (installed on first use; skipped with a note when node
and npm cannot be had) and the simulators as real processes, prints its tables and writes
valid JSON. A smoke check only: no timing is asserted (timings on shared CI machines are
noise); what is asserted is that every system under comparison accepted every change and
made all three vendor writes with credentials the simulators accept.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_benchmark_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
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
        "side by side",
        "floor (aiohttp)",
        "floor (aiohttp), reads before writes",
        "against the floor that also reads before writing",
    ):
        assert figure in proc.stdout, figure
    cpu_line = next(
        ln
        for ln in proc.stdout.splitlines()
        if ln.startswith("gateway CPU per change (sqlite, c=32)")
    )
    assert "x Node-RED" in cpu_line and "x floor" in cpu_line, cpu_line
    assert "refresh_before_write off" in proc.stdout

    # the JSON
    results = json.loads(out.read_text())
    assert results["mode"] == "quick"
    for section in (
        "gateway_sqlite",
        "gateway_sqlite_norefresh",
        "baseline",
        "floor",
        "floor_reads",
        "nodered",
        "scale_sqlite",
        "gateway_postgres",
        "scaleout_postgres",
    ):
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
    # with every vendor slow, each change is written all the same, and the database
    # transactions per change are counted there and at full speed
    assert gw["slow"]["latency_ms"] > 0
    for run in gw["slow"]["runs"]:
        assert run["errors"] == 0 and 0 < run["writes"] <= 3 * run["accepted"], run
        assert run["transactions_per_change"] > 0, run
    assert gw["ingest"]["32"]["transactions_per_change"] > 0
    assert "transactions per change sqlite c=32, vendors at 50 ms" in proc.stdout
    # with the simulators' webhooks on, the gateway's own writes come back to it, are
    # counted, and every change is still written
    for run in gw["echo"]["runs"]:
        assert run["errors"] == 0 and 0 < run["writes"] <= 3 * run["accepted"], run
        assert run["echoes_per_change"] > 0 and run["transactions_per_change"] > 0, run
    assert "echoes per change sqlite c=32" in proc.stdout
    # propagation without the reads before writes (the target's setting), every change
    # complete; the scale figure is taken in turns with a small installation's runs
    assert results["gateway_sqlite_norefresh"]["propagation"]["20"]["incomplete"] == 0
    assert "propagation sqlite, refresh_before_write off, vendor 20 ms p50" in proc.stdout
    sc = results["scale_sqlite"]
    assert sc["filler_items"] > 0 and sc["reference"]["filler_items"] == 0
    for installation in (sc, sc["reference"]):
        (run,) = installation["ingest"]["32"]["runs"]
        assert run["errors"] == 0 and 0 < run["writes"] <= 3 * run["accepted"]
    assert sc["propagation"]["0"]["incomplete"] == 0

    # the side by side: every system took every change and made its three writes (each
    # change flips a different item in quick mode, so nothing may coalesce)
    # (the comparison systems neither retry nor coalesce: exactly three each)
    compared = ["baseline", "floor", "floor_reads"]
    if "skipped" in results["nodered"]:
        assert "Node-RED" in proc.stdout and "skipped" in proc.stdout
    else:
        compared.append("nodered")
    for name in ["gateway_sqlite", "gateway_sqlite_norefresh", *compared]:
        for c in ("1", "32", "128"):
            for run in results[name]["ingest"][c]["runs"]:
                assert run["errors"] == 0, (name, c)
                assert run["cpu_ms_per_change"] > 0, (name, c)
                if name in compared:
                    assert run["writes"] == 3 * run["accepted"], (name, c, run)
                    # one read before each write for the floor that reads, none otherwise
                    reads = 3 * run["accepted"] if name == "floor_reads" else 0
                    assert run["reads"] == reads, (name, c, run)
                else:
                    assert 0 < run["writes"] <= 3 * run["accepted"], (name, c, run)

    # the CPU ratios taken in turns: every round measured every system up, each turn's
    # changes all accepted and written three times, and the line reports both ratios
    turns = results["paired"]
    expected = {"gateway", "floor", "floor_reads"}
    expected |= {"nodered"} if "nodered" in compared else set()
    assert len(turns["rounds"]) == 2
    for figures in turns["rounds"]:
        assert set(figures) == expected and all(v > 0 for v in figures.values()), figures
    assert {run["system"] for run in turns["runs"]} == expected
    for run in turns["runs"]:
        assert run["errors"] == 0 and run["accepted"] == turns["changes_per_turn"], run
        if run["system"] == "gateway":
            assert 0 < run["writes"] <= 3 * run["accepted"], run
        else:
            assert run["writes"] == 3 * run["accepted"], run
            reads = 3 * run["accepted"] if run["system"] == "floor_reads" else 0
            assert run["reads"] == reads, run
    turns_line = next(ln for ln in proc.stdout.splitlines() if "in turns with the others" in ln)
    assert "x floor" in turns_line and "medians of the rounds' ratios" in turns_line
    assert "against the floor that also reads before writing: the gateway x" in proc.stdout
    assert turns["gateway_p99_ms"]["min"] > 0
    assert "gateway ingest p99 (sqlite, c=32) in turns with the others" in proc.stdout
    if "nodered" in expected:
        assert turns["gateway_vs_nodered"]["min"] > 0
        assert "x Node-RED  n/a" not in turns_line

    # scale-out, when PostgreSQL is there: the kill -9 lost nothing acknowledged and
    # made no object twice
    so = results["scaleout_postgres"]
    if "skipped" not in so:
        # the database work per change is counted in each process (its own metric)
        for phase in ("one", "two"):
            assert so[phase]["transactions_per_change"] > 0, so[phase]
            # neither configuration is measured cold: the second process started just
            # before its runs and took part in a warm-up of its own first
            assert so["warmed_up"][phase] > 0, so["warmed_up"]
        assert "scale-out database transactions per change" in proc.stdout
        # one and two processes took turns, a ratio per round (the second process
        # paused, not stopped, for the one-process runs)
        so_turns = so["in_turns"]
        assert len(so_turns["ratios"]) == so["rounds"] >= 1
        assert so_turns["min"] <= so_turns["median"] <= so_turns["max"]
        assert so_turns["min"] > 0
        assert [r["processes"] for r in so["one"]["runs"]] == [1] * so["rounds"]
        assert [r["processes"] for r in so["two"]["runs"]] == [2] * so["rounds"]
        assert "taken in turns:" in proc.stdout
        assert so["kill9"]["lost"] == 0
        assert so["kill9"]["duplicate_objects"] == 0
        assert so["kill9"]["missing_objects"] == 0
