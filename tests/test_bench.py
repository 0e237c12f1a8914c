"""Tests for lab/bench.py's bookkeeping (no timing: the benchmark itself is run by hand).

Run: .venv/bin/pytest -q tests/test_bench.py
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import generate
from lab import bench, race
from runner import launch

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


def parts_row(width, batch_size, speed_up):
    return {"width": width, "batch_size": batch_size, "speed_up": speed_up,
            "one_process_us": 10.0 * speed_up, "slowest_stage_us": 10.0, "message_us": 2.0,
            "stage_us": {"stage1": 3.0, "stage2": 10.0, "stage3": 10.0, "stage4": 8.0}}


def test_the_crossover_is_the_smallest_width_from_which_the_chain_stays_ahead():
    rows = [parts_row(32, 10, 1.1), parts_row(64, 10, 0.9), parts_row(128, 10, 1.5),
            parts_row(256, 10, 2.0), parts_row(32, 100, 0.5), parts_row(64, 100, 0.8)]
    # 32 is ahead but 64 falls back: the chain stays ahead only from 128 on
    assert bench.crossover(rows) == {10: 128, 100: None}


def test_the_parts_table_has_a_row_per_width_and_minibatch():
    rows = [parts_row(32, 10, 0.5), parts_row(512, 100, 2.5)]
    table = bench.chain_parts_markdown(rows, {(512, 100): 12.5}, "2 cores")
    assert "| 32, 10 | 5.0 | - | 3.0 | 10.0 | 8.0 | 2.0 | 10.0 | 0.50x |" in table
    assert "| 512, 100 | 25.0 | 12.5 | 3.0 | 10.0 | 8.0 | 2.0 | 10.0 | 2.50x |" in table
    assert "2 cores" in table.splitlines()[0]


def test_pin_to_puts_every_thread_of_a_process_on_the_cpus_given(tmp_path):
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no sched_setaffinity on this system")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        names = []
        bench.pin_to(lambda name: names.append(name) or {0})("stage 2", child.pid)
        assert names and set(names) == {"stage 2"}
        assert os.sched_getaffinity(child.pid) == {0}
    finally:
        child.kill()
        child.wait()


def test_a_stage_trains_at_the_slope_of_its_later_metrics_lines(tmp_path):
    path = tmp_path / "stage2.jsonl"
    rows = [{"time": 100.0 + t, "examples_trained": n} for t, n in
            [(0, 0), (2, 100), (4, 5_000), (6, 9_000), (8, 13_000)]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert race.trained_per_s(path) == (13_000 - 5_000) / 4      # the second half only


def test_the_pinned_table_sets_the_measured_stage_beside_the_model_and_one_process():
    rows = [parts_row(512, 100, 2.0)]                 # one process 20 µs, stage 2 10 µs
    table = bench.pinned_markdown({(512, 100): 80_000.0}, rows)
    assert "| 512, 100 | 80,000 | 100,000 | 50,000 | 1.60x |" in table


def test_a_stage_that_ran_out_of_work_is_measured_while_it_trained(tmp_path):
    path = tmp_path / "stage2.jsonl"
    rows = [{"time": 100.0 + t, "examples_trained": n} for t, n in
            [(0, 0), (2, 100), (4, 5_000), (6, 9_000), (8, 13_000), (10, 13_000), (12, 13_000)]]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert race.trained_per_s(path) == (13_000 - 5_000) / 4      # the idle tail left out
