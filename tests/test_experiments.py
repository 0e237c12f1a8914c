"""Tests for lab/experiments.py's bookkeeping and report, on tiny recorded results (no training).

Run: .venv/bin/pytest -q tests/test_experiments.py
"""

import json
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

from lab import experiments, image_table
from lab.experiments import ONE, THREE
from lab.report import percent
from parts import decoupled


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


def test_a_report_can_be_written_after_every_run(tmp_path):
    for n in range(1, len(RECORDED) + 1):                  # the runs done so far, in order
        experiments.write_report(RECORDED[:n], tmp_path, f"{n} so far", 20)
        saved = json.loads((tmp_path / "report.json").read_text())["runs"]
        assert [r["final_mse"] for r in saved] == [r["final_mse"] for r in RECORDED[:n]]


def interrupted_after(n, result):
    """A fake run that returns result n times, then is stopped as Ctrl-C stops it."""
    calls = []

    def fake(*args, **kwargs):
        calls.append(args)
        if len(calls) > n:
            raise KeyboardInterrupt
        return result
    return fake


def test_ctrl_c_keeps_the_report_of_the_runs_done(monkeypatch, tmp_path, capsys):
    done = {k: RECORDED[2][k] for k in ("points", "final_mse", "cosine", "examples_per_s")}
    monkeypatch.setattr(experiments.processes, "stop_on_signals", lambda: None)
    monkeypatch.setattr(experiments.race, "toy_data", lambda folder, count, seed: folder)
    monkeypatch.setattr(experiments, "run_one_process", interrupted_after(2, done))
    monkeypatch.setattr(experiments, "run_three_processes", lambda *a: done)
    assert experiments.main(["--quick", "--run-dir", str(tmp_path)]) == 130
    # backprop (one process), frozen in one and in three; random's first run stopped
    assert [(r["config"], r["world"]) for r in json.loads(
        (tmp_path / "report.json").read_text())["runs"]] == [
        ("backprop (true gradients)", ONE), ("frozen (no bprop)", ONE),
        ("frozen (no bprop)", THREE)]
    assert "(3 runs so far)" in (tmp_path / "report.md").read_text().splitlines()[0]
    assert (tmp_path / "report.png").is_file()
    assert f"stopped; the report of the 3 run(s) done is in {tmp_path / 'report.md'}" in \
        capsys.readouterr().out


def test_ctrl_c_keeps_the_depth_report_of_the_runs_done(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(experiments.processes, "stop_on_signals", lambda: None)
    monkeypatch.setattr(experiments.race, "toy_data", lambda folder, count, seed: folder)
    monkeypatch.setattr(experiments.bench, "run_backprop", lambda config: {"final_mse": 0.01})
    monkeypatch.setattr(experiments.race, "run_chain",
                        interrupted_after(2, (None, {"final_mse": 0.02, "ticks": []})))
    assert experiments.main(["--depth", "--run-dir", str(tmp_path)]) == 130
    runs = json.loads((tmp_path / "results.json").read_text())
    assert [(r["config"], r["points"]) for r in runs] == [
        (experiments.DEPTH_BACKPROP, 0), ("synthetic, cDNI", 1), ("synthetic, DNI", 1)]
    assert "(3 runs so far)" in (tmp_path / "report.md").read_text().splitlines()[0]
    assert (tmp_path / "depth.png").is_file()
    assert "stopped; the report of the 3 run(s) done" in capsys.readouterr().out


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


# --- the images table (--images): its report on hand-made results ---------------------------

def image_run(method, layers, seed, accuracy, cosines=None):
    """One run as run_images records it, its curve rising to `accuracy` in 3 measurements."""
    curve = [{"step": s, "seconds": s / 100, "accuracy": a, "loss": 2.3 - 2 * a,
              "cosines": cosines or [None] * (layers - 1)}
             for s, a in ((0, 0.1), (50, (0.1 + accuracy) / 2), (100, accuracy))]
    return {"method": method, "layers": layers, "seed": seed, "accuracy": accuracy,
            "loss": 2.3 - 2 * accuracy, "cosines": cosines or [None] * (layers - 1),
            "seconds": 1.0, "curve": curve}


IMAGE_RUNS = [image_run("backprop", 3, s, 0.85 + 0.01 * s) for s in range(3)] + \
             [image_run("cdni", 3, s, 0.80 + 0.02 * s, [0.5 + 0.1 * s, 0.7]) for s in range(3)] + \
             [image_run("backprop", 4, s, 0.86) for s in range(3)] + \
             [image_run("cdni", 4, 0, 0.78, [0.4, None, 0.6])] + \
             [image_run("top-only", 3, 0, 0.72)]


def test_images_summary_gives_the_spread_over_seeds_and_the_cosines_per_boundary():
    summary = image_table.images_summary(IMAGE_RUNS)
    assert summary["backprop", 3]["accuracy"] == pytest.approx((0.86, 0.85, 0.87))
    assert summary["backprop", 3]["seeds"] == 3 and summary["backprop", 3]["cosines"] == [None,
                                                                                          None]
    assert summary["cdni", 3]["cosines"] == pytest.approx([0.6, 0.7])
    assert summary["cdni", 4]["cosines"][1] is None                     # never measured
    assert ("dni", 3) not in summary


def test_images_tables_have_a_row_per_method_and_a_column_per_depth():
    accuracy, cosines = image_table.images_tables(IMAGE_RUNS)
    lines = accuracy.splitlines()
    assert lines[0] == "| method | 3 layers | 4 layers |"
    assert lines[2] == "| backprop (true gradients) | 86.0 (85.0-87.0) | 86.0 |"
    assert lines[3] == "| cDNI (h and the label) | 82.0 (80.0-84.0) | 78.0 |"
    assert lines[4] == "| top-only (the paper's No Bprop) | 72.0 | - |"
    assert len(lines) == 5                                              # no dni, no random
    assert cosines.splitlines()[2] == "| cDNI (h and the label) | 0.60, 0.70 | 0.40, -, 0.60 |"
    assert len(cosines.splitlines()) == 3                               # synthetic methods only


def test_percent_cell_reads_a_spread():
    assert percent((0.8234, 0.81, 0.84)) == "82.3 (81.0-84.0)"
    assert percent((0.5, 0.5, 0.5)) == "50.0"
    assert percent(None) == "-"


def test_write_images_report_writes_the_tables_the_runs_and_a_figure_from_them(tmp_path):
    report = {"title": "a test", "setting": "784-256-...-10, the setting.", "runs": IMAGE_RUNS,
              "seconds": 125.0}
    text = image_table.write_images_report(report, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert md == text and md.startswith("# a test\n\n784-256-...-10, the setting. The run took "
                                        "2 minutes.")
    assert "| backprop (true gradients) | 86.0 (85.0-87.0) | 86.0 |" in md
    assert "![accuracy over steps](images.png)" in md
    assert json.loads((tmp_path / "report.json").read_text()) == report
    picture = matplotlib.image.imread(tmp_path / "images.png")
    assert picture.shape[1] > 2 * picture.shape[0]                      # two panels side by side
    # The picture is drawn from report.json alone: another file, another picture.
    image_table.draw_images(tmp_path / "report.json", tmp_path / "again.png")
    assert (tmp_path / "again.png").stat().st_size > 10_000


def test_a_cut_short_run_draws_the_common_part_of_its_curves(tmp_path):
    short = image_run("dni", 3, 1, 0.7)
    short["curve"] = short["curve"][:2]
    image_table.write_images_report({"title": "t", "setting": "s", "runs": IMAGE_RUNS + [
        image_run("dni", 3, 0, 0.7), short]}, tmp_path)
    assert "The run took" not in (tmp_path / "report.md").read_text()
    assert (tmp_path / "images.png").stat().st_size > 10_000


@pytest.mark.parametrize("argv, message", [
    (["--images", "--depth"], "separate experiments"),
    (["--images", "--learning-rate", "0.01"], "--learning-rate is not for --images"),
    (["--images", "--count", "5000"], "--count is not for --images"),
    (["--data", "mnist"], "for --images only"),
    (["--image-dir", "/idx"], "for --images only"),
])
def test_images_options_are_checked(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        experiments.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_images_quick_and_full_presets():
    args = experiments.parse_args(["--images", "--quick", "--data", "mnist"])
    assert args.images and args.quick and args.data == "mnist"
    quick, full = image_table.IMAGE_PRESETS["quick"], image_table.IMAGE_PRESETS["full"]
    assert full == dict(depths=(3, 4, 5, 6), seeds=3, steps=1500)
    assert quick["steps"] < full["steps"] and quick["seeds"] == 1


def test_main_images_says_in_one_line_why_the_images_cannot_be_read(monkeypatch, tmp_path,
                                                                    capsys):
    def refuse(name, data_dir):
        raise image_table.images.DataError(f"{data_dir}: no t10k-labels-idx1-ubyte.gz")
    monkeypatch.setattr(image_table.images, "load", refuse)
    assert experiments.main(["--images", "--image-dir", "/nowhere",
                             "--run-dir", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == "lab/experiments.py: /nowhere: no t10k-labels-idx1-ubyte.gz\n"
    assert not (tmp_path / "r").exists()                                 # nothing started


def test_run_images_runs_every_method_at_every_depth_and_seed(monkeypatch):
    calls = []

    def fake_run(config, data):
        calls.append((config.seed, config.layers, decoupled.label(config), config.steps,
                      config.eval_every, config.data))
        return {"accuracy": 0.5, "loss": 1.0, "cosines": [None] * (config.layers - 1),
                "seconds": 0.1, "curve": []}
    monkeypatch.setattr(image_table.decoupled, "run", fake_run)
    saved = []
    results = image_table.run_images("data", (3, 5), range(2), 40, name="mnist",
                                     on_result=lambda r: saved.append(len(r)), say=lambda s: None)
    assert len(results) == len(calls) == 2 * 2 * 5 and saved == list(range(1, 21))
    assert calls[:5] == [(0, 3, m, 40, 4, "mnist") for m in image_table.IMAGE_METHODS]
    assert {(r["method"], r["layers"], r["seed"]) for r in results} == {
        (m, d, s) for m in image_table.IMAGE_METHODS for d in (3, 5) for s in range(2)}


@pytest.mark.parametrize("script, command", [
    ("experiments.py", "python -m lab.experiments --quick"),
    ("image_table.py", "python -m lab.experiments --images --quick"),
])
def test_run_as_a_file_it_says_in_one_line_how_to_run_it(script, command):
    top = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, f"lab/{script}", "--quick"], cwd=top,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"run it as: {command}\n"
