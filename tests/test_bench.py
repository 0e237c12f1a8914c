"""Tests for bench.py's bookkeeping (no timing: the benchmark itself is run by hand).

Run: .venv/bin/pytest -q tests/test_bench.py
"""

import numpy as np

import bench
import generate
import launch

CURVE = [(0.0, 0.20), (4.0, 0.07), (9.0, 0.05), (15.0, 0.029), (24.0, 0.02)]


def test_time_to_levels_is_the_first_time_at_or_below_each_level():
    assert bench.time_to_levels(CURVE) == {"0.06": 9.0, "0.03": 15.0, "0.01": None}


def test_mse_at_takes_the_last_point_not_after_the_time():
    assert bench.mse_at(CURVE, 10) == 0.05
    assert bench.mse_at(CURVE, 15) == 0.029
    assert bench.mse_at([(1.0, 0.3)], 0.5) is None


def fake(curve, **extra):
    return {"curve": curve, "time_to": bench.time_to_levels(curve),
            "final_mse": curve[-1][1], **extra}


def test_markdown_has_a_column_per_method_and_the_ratios():
    backprop = fake([(0.0, 0.2), (3.0, 0.03), (10.0, 0.009)], examples_per_s=250_000.0)
    results = {
        "codec": {"batched_us_per_example": 31.0, "original_us_per_example": 44.0,
                  "binary_us_per_example": 0.2, "estimate_json_us_per_request": 280.0,
                  "estimate_binary_us_per_request": 17.0},
        "sgd_py": fake([(0.0, 0.3), (20.0, 0.08)], examples_per_s=40_000.0),
        "backprop": backprop,
    }
    for name in bench.DECOUPLED:
        results[name] = fake(CURVE, input_examples_per_s=9_000.0, output_examples_per_s=70_000.0,
                             oracle_examples_per_s=45_000.0,
                             oracle_latency_ms={"p50": 0.7, "p95": 2.5},
                             peak_rss_mb={"input": 60, "output": 80, "oracle": 650},
                             cosine_similarity=0.25)
    table = bench.markdown(results, "quick", "test machine")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:]
            for line in table.splitlines() if line.startswith("| ")}
    assert len(rows["seconds to held-out MSE 0.03"]) == 2 + len(bench.DECOUPLED)
    assert rows["seconds to held-out MSE 0.03"][:3] == ["-", "3.0", "15.0"]
    assert rows["time to 0.03 over backprop's"][:3] == ["-", "1.0", "5.0"]
    assert rows["held-out MSE after 10 s"][2] == "0.0500"
    assert rows["input examples/s (backprop: all layers)"][:3] == ["40,000", "250,000", "9,000"]
    assert rows["oracle request p50 / p95 (ms)"][2] == "0.70 / 2.50"
    assert "binary 17 µs" in table


def test_run_backprop_gives_the_figures_of_a_short_in_process_run(tmp_path):
    (tmp_path / "data").mkdir()
    x, y = generate.generate(1_000, 0)
    np.save(tmp_path / "data" / "x.npy", x)
    np.save(tmp_path / "data" / "y.npy", y)
    config = launch.BackpropConfig(tmp_path / "data", seconds=0.2, eval_every=500, heldout=200,
                                   metrics=tmp_path / "sgd_py.jsonl")
    r = bench.run_backprop(config)
    assert r["curve"][0][0] == 0.0 and r["seconds"] >= 0.2 and r["final_mse"] == r["curve"][-1][1]
    assert r["examples_per_s"] > 0 and r["wall_s"] >= r["seconds"]
    assert r["time_to"] == bench.time_to_levels(r["curve"])
    assert (tmp_path / "sgd_py.jsonl").is_file()


def test_first_time_below_finds_the_first_point_at_or_under_a_level():
    points = [(0.0, 0.5), (2.0, 0.2), (4.0, 0.09), (6.0, 0.12), (8.0, 0.04)]
    assert bench.first_time_below(points, 0.1) == 4.0
    assert bench.first_time_below(points, 0.04) == 8.0
    assert bench.first_time_below(points, 0.01) is None


def test_the_chain_table_compares_the_slowest_stage_with_one_process():
    results = [{"width": 32, "batch_size": 10,
                "one_process": {"examples_per_s": 100_000.0, "final_mse": 0.002,
                                "times": {"0.1": 1.5, "0.05": 3.0, "0.03": None}},
                "chain": {"examples_per_s": {"stage1": 60_000.0, "stage2": 50_000.0,
                                             "stage3": 40_000.0, "stage4": 45_000.0},
                          "slowest_stage": 40_000.0,
                          "cpu_cores": {"stage1": 0.5, "stage2": 0.25, "boundary1": None},
                          "final_mse": 0.04, "times": {"0.1": 30.0, "0.05": None,
                                                       "0.03": None}}}]
    table = bench.chain_markdown(results, "2 cores")
    assert ("| 32, 10 | 100,000 | 60,000, 50,000, 40,000, 45,000 | 0.40x | 0.75 | "
            "0.0020 / 0.0400 | 2 / 30 |") in table
    assert "2 cores" in table.splitlines()[0]
