"""Tests for experiments.py's report writer, on a tiny recorded result (no training)."""

import json

import matplotlib.image
import pytest

import experiments
import launch


def result(config, seed, mse, cosine=0.1, rate=3000.0, stale=(1.0, 2.0)):
    return {"config": config, "seed": seed, "mse": mse, "cosine": cosine,
            "examples_per_s": rate, "output_staleness_s": stale[0],
            "oracle_staleness_s": stale[1]}


RECORDED = [
    result("no backprop (layer 1 frozen)", 0, 0.060, cosine=None),
    result("no backprop (layer 1 frozen)", 1, 0.064, cosine=None),
    result("linear cDNI, zero-init", 0, 0.030, cosine=0.4, stale=(2.0, 4.0)),
    result("linear cDNI, zero-init", 1, 0.040, cosine=0.2, stale=(4.0, 6.0)),
    {"config": "plain backprop (one process)", "seed": 0, "mse": 0.005, "cosine": None,
     "examples_per_s": 250000.0, "output_staleness_s": None, "oracle_staleness_s": None},
]


def test_summarize_gives_mean_and_spread_per_configuration_in_order():
    rows = experiments.summarize(RECORDED)
    assert [r["config"] for r in rows] == ["no backprop (layer 1 frozen)",
                                           "linear cDNI, zero-init",
                                           "plain backprop (one process)"]
    cdni = rows[1]
    assert cdni["seeds"] == 2
    assert cdni["mse_mean"] == pytest.approx(0.035)
    assert (cdni["mse_min"], cdni["mse_max"]) == (0.030, 0.040)
    assert cdni["mse_sd"] == pytest.approx(0.00707106781, rel=1e-6)   # stdev of 0.03, 0.04
    assert cdni["cosine"] == pytest.approx(0.3)
    assert (cdni["output_staleness_s"], cdni["oracle_staleness_s"]) == (3.0, 5.0)
    assert rows[0]["cosine"] is None and rows[2]["mse_sd"] is None      # one seed: no spread


def test_write_report_writes_the_table_the_runs_and_a_figure(tmp_path):
    table = experiments.write_report(RECORDED, tmp_path, "a tiny recorded result")
    md = (tmp_path / "report.md").read_text()
    assert md.strip() == table.strip()
    assert "| linear cDNI, zero-init | 2 | 0.0350 | 0.0300 - 0.0400 | 0.30 | 3,000 | 3.0 / 5.0 |" \
        in md
    assert "| no backprop (layer 1 frozen) | 2 | 0.0620 | 0.0600 - 0.0640 | - |" in md
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["runs"] == RECORDED and len(saved["summary"]) == 3
    picture = matplotlib.image.imread(tmp_path / "report.png")
    assert picture.shape[0] > 100 and picture.shape[1] > 100


def test_slug_makes_folder_names():
    assert experiments.slug("linear cDNI, zero-init") == "linear-cdni--zero-init"


def test_configurations_give_the_oracle_and_input_trainer_the_documented_options():
    configs = dict(experiments.CONFIGS)
    oracle = "--optimizer adam --learning-rate 0.01 --batch-size 256"    # the demo's, no zero-init
    want = {"no backprop (layer 1 frozen)": (oracle, "--update-probability 0"),
            "original (12 hidden, random init)": (oracle, ""),
            "zero-init": (f"{oracle} --zero-init", ""),
            "linear, zero-init": (f"{oracle} --hidden 0 --zero-init", ""),
            "linear cDNI, zero-init": (f"{oracle} --hidden 0 --zero-init --conditioned", "")}
    assert list(configs) == list(want)
    for name, (oracle_args, input_args) in want.items():
        config = launch.DecoupledConfig(run_dir=None, **configs[name])
        assert launch.option_argv(config.oracle) == oracle_args.split(), name
        assert launch.option_argv(config.input) == input_args.split(), name
    assert set(experiments.MODELS) == set(want) - {"no backprop (layer 1 frozen)"}
