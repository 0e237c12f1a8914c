"""Tests for lab/experiments.py's bookkeeping and report, on tiny recorded results (no training).

Run: .venv/bin/pytest -q tests/test_experiments.py
"""

import json

import matplotlib.image
import pytest

from lab import experiments
from lab.experiments import ONE, THREE


def run(config, world, seed, final, points=None, cosine=0.2, rate=3000.0):
    points = points or [(0.0, 0, 0.2), (10.0, 30_000, 0.1), (20.0, 60_000, final)]
    return {"config": config, "world": world, "seed": seed, "points": points,
            "final_mse": final, "cosine": cosine, "examples_per_s": rate}


RECORDED = [
    run("frozen (no bprop)", ONE, 0, 0.060, cosine=None),
    run("frozen (no bprop)", ONE, 1, 0.064, cosine=None),
    run("random directions", ONE, 0, 0.040),
    run("random directions", ONE, 1, 0.050),
    run("synthetic, cDNI, 0 hidden", ONE, 0, 0.020, cosine=0.4),
    run("synthetic, cDNI, 0 hidden", ONE, 1, 0.030, cosine=0.2),
    run("synthetic, cDNI, 0 hidden", THREE, 0, 0.045),
    run("synthetic, cDNI, 0 hidden", THREE, 1, 0.035),
]


def test_mse_at_time_and_at_examples_read_the_points():
    points = [(0.0, 0, 0.3), (5.0, 20_000, 0.2), (10.0, 45_000, 0.1)]
    assert experiments.mse_at_time(points, 7.0) == 0.2
    assert experiments.mse_at_time(points, 10.0) == 0.1
    assert experiments.mse_at_examples(points, 25_000) == 0.1      # first point past it
    assert experiments.mse_at_examples(points, 50_000) is None      # never reached


def test_three_process_points_interpolate_the_examples_streamed_by_each_tick():
    lines = [{"time": 100.0, "examples": 0}, {"time": 101.0, "examples": 1000},
             {"time": 103.0, "examples": 5000}]
    points = experiments.three_process_points([(0.5, 0.2), (2.0, 0.1), (9.0, 0.05)], lines, 100.0)
    assert points == [(0.5, 500.0, 0.2), (2.0, 3000.0, 0.1), (9.0, 5000.0, 0.05)]


def test_summarize_gives_mean_min_max_per_configuration_and_world():
    rows = experiments.summarize(RECORDED, 20)
    assert [(r["config"], r["world"]) for r in rows][:3] == [
        ("frozen (no bprop)", ONE), ("random directions", ONE), ("synthetic, cDNI, 0 hidden", ONE)]
    cdni_one = rows[2]
    assert cdni_one["seeds"] == 2
    assert cdni_one["final"] == pytest.approx((0.025, 0.020, 0.030))
    assert cdni_one["cosine"] == pytest.approx((0.3, 0.2, 0.4))
    assert cdni_one["at 20 s"] == pytest.approx((0.025, 0.020, 0.030))
    assert cdni_one["at 6.7 s"] == pytest.approx((0.2, 0.2, 0.2))
    assert cdni_one["at 50,000 examples"] == pytest.approx((0.025, 0.020, 0.030))
    assert cdni_one["at 100,000 examples"] is None
    assert rows[0]["cosine"] is None                      # frozen: no synthetic gradients


def test_checks_state_each_ordering_and_the_ratio_of_the_worlds():
    found = dict(experiments.checks(experiments.summarize(RECORDED, 20), 20))
    assert found["one process: every seed of the best synthetic variant (synthetic, cDNI, "
                 "0 hidden) ends below every seed of random directions"] is True
    assert found["one process: every seed of random directions ends below every seed of "
                 "frozen"] is True
    assert found["synthetic, cDNI, 0 hidden: three processes at 20 s within 1.25x of one "
                 "process (ratio of means 1.60)"] is False


def test_best_variant_averages_the_worlds():
    rows = experiments.summarize(RECORDED, 20)
    variants = [experiments.synthetic(0, True), experiments.synthetic(12, True)]
    assert experiments.best_variant(rows, variants) == variants[0]     # the other never ran
    assert experiments.best_variant(rows, []) is None


def test_write_report_writes_the_table_the_checks_the_runs_and_a_figure(tmp_path):
    table = experiments.write_report(RECORDED, tmp_path, "a tiny recorded result", 20)
    md = (tmp_path / "report.md").read_text()
    assert md.strip() == table.strip()
    assert ("| synthetic, cDNI, 0 hidden | one process | 2 | 0.2000 | 0.1000 | "
            "0.0250 (0.0200-0.0300) | 0.1000 | 0.0250 (0.0200-0.0300) | - | "
            "0.30 (0.20-0.40) | 3,000 |") in md
    assert "- yes: one process: every seed of random directions ends below" in md
    assert "- no: synthetic, cDNI, 0 hidden: three processes at 20 s" in md
    saved = json.loads((tmp_path / "report.json").read_text())
    assert len(saved["runs"]) == len(RECORDED) and len(saved["summary"]) == 4
    picture = matplotlib.image.imread(tmp_path / "report.png")
    assert picture.shape[0] > 100 and picture.shape[1] > 100


def test_decoupled_config_uses_the_shared_settings(tmp_path):
    config = experiments.decoupled_config(experiments.synthetic(64, True), 3, 20, tmp_path, 5000)
    assert (config.optimizer, config.input_learning_rate, config.output_learning_rate) == \
        ("adam", 0.005, 0.005)
    assert config.oracle["hidden"] == 64 and config.oracle["conditioned"] is True
    assert config.oracle["learning_rate"] == experiments.SETTINGS["model_learning_rate"]
    assert (config.update, config.seed, config.duration, config.count) == \
        ("synthetic", 3, 20, 5000)
    assert config.input["synthetic_gradients"] == "local"


def test_slug_makes_folder_names():
    assert experiments.slug("synthetic, cDNI, 0 hidden") == "synthetic--cdni--0-hidden"


# --- the depth experiment's report -----------------------------------------------------------

def test_the_depth_report_tabulates_every_variant_at_every_depth(tmp_path):
    results = [{"config": experiments.DEPTH_BACKPROP, "points": 0, "seed": s,
                "final_mse": 0.001 * (s + 1), "cosine": []} for s in range(3)]
    for name, _, _ in experiments.DEPTH_VARIANTS:
        for points in experiments.DEPTH_SPLITS:
            for s in range(3):
                results.append({"config": name, "points": points, "seed": s,
                                "final_mse": 0.01 * points + 0.001 * s,
                                "cosine": [0.5] * points})
    table = experiments.write_depth_report(results, tmp_path, "a test")
    lines = table.splitlines()
    assert lines[0].startswith("| layer(s) below the last trained by | 1 decoupling point |")
    assert lines[2] == ("| backprop (true gradients, one process) | 0.0020 (0.0010-0.0030) [3] "
                        "| (no decoupling) | (no decoupling) |")
    cdni = next(line for line in lines if line.startswith("| synthetic, cDNI |"))
    assert "0.0110 (0.0100-0.0120) [3], cos 0.50" in cdni
    assert "0.0310 (0.0300-0.0320) [3], cos 0.50" in cdni
    frozen = next(line for line in lines if line.startswith("| frozen (no bprop) |"))
    assert "cos" not in frozen
    assert (tmp_path / "depth.png").stat().st_size > 10_000
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert table in (tmp_path / "report.md").read_text()


def test_the_depth_learning_rate_defaults_to_the_measured_one_and_needs_depth(capsys):
    assert experiments.parse_args(["--depth"]).learning_rate == experiments.DEPTH_LEARNING_RATE
    assert experiments.parse_args(["--depth", "--learning-rate", "0.005"]).learning_rate == 0.005
    for argv, message in [(["--learning-rate", "0.002"], "--learning-rate is for --depth only"),
                          (["--depth", "--learning-rate", "0"], "must be positive (got 0)")]:
        with pytest.raises(SystemExit):
            experiments.parse_args(argv)
        assert message in capsys.readouterr().err
