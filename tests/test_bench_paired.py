"""The CPU ratios taken in turns (bench/paired.py): each round gives its own ratios,
the line reports their median with the lowest and highest, and the verdicts are the
medians', not one lucky round's."""

from __future__ import annotations

from bench.paired import paired_line, ratios, tails

ROUNDS = [
    {"gateway": 4.0, "floor": 1.0, "floor_reads": 2.0, "nodered": 2.0},
    {"gateway": 6.0, "floor": 2.0, "floor_reads": 3.0, "nodered": 12.0},
    {"gateway": 5.0, "floor": 2.5, "floor_reads": 2.5, "nodered": 5.0},
]
RUNS = [
    {"system": "gateway", "p99_ms": p99, "round": i}
    for i, p99 in enumerate((20.0, 30.0, 24.0), start=1)
]


def test_each_rounds_ratio_is_taken_then_summed_up() -> None:
    out = ratios(ROUNDS)
    # gateway / Node-RED per round: 2.0, 0.5, 1.0
    assert out["gateway_vs_nodered"] == {
        "median": 1.0,
        "min": 0.5,
        "max": 2.0,
        "rounds": [2.0, 0.5, 1.0],
    }
    # gateway / floor: 4.0, 3.0, 2.0; the floor that reads / Node-RED: 1.0, 0.25, 0.5
    assert out["gateway_vs_floor"]["median"] == 3.0
    assert out["floor_reads_vs_nodered"]["rounds"] == [1.0, 0.25, 0.5]
    assert out["gateway_cpu_ms"] == {"median": 5.0, "min": 4.0, "max": 6.0}
    assert tails(RUNS)["gateway_p99_ms"] == {"median": 24.0, "min": 20.0, "max": 30.0}


def test_the_verdicts_are_the_medians() -> None:
    line = paired_line({"rounds": ROUNDS, **ratios(ROUNDS), **tails(RUNS)})
    first, against_reads, p99 = line.splitlines()
    # one round at 0.5 x Node-RED does not meet the 0.7 target: the median (1.0) decides
    assert "x Node-RED  1.00 (0.50-2.00)" in first
    assert "<= 0.70 x Node-RED: MISSED" in first and "<= 2.00 x floor: MISSED" in first
    assert "the gateway x 2.00 (2.00-2.00)" in against_reads
    assert "that floor x Node-RED 0.50 (0.25-1.00)" in against_reads
    assert "24.0 ms (20.0-30.0)   target < 25 ms: met" in p99
    cheap = [dict(r, gateway=r["floor"] * 1.5) for r in ROUNDS]
    assert "<= 2.00 x floor: met" in paired_line({"rounds": cheap, **ratios(cheap)})


def test_node_red_left_out_is_not_a_verdict() -> None:
    rounds = [{k: v for k, v in r.items() if k != "nodered"} for r in ROUNDS]
    line = paired_line({"rounds": rounds, **ratios(rounds)})
    assert "x Node-RED  n/a" in line and "<= 0.70 x Node-RED: n/a" in line
    assert "skipped (--no-paired)" in paired_line({"skipped": "--no-paired"})
