"""Tests for lab/image_race.py (the race on images, run by hand): its network gives every stage
one layer, times to accuracy levels and accuracy at fixed times are read off measured points as
documented, its options are checked, and a tiny real race (both sides, real processes, written
images) writes its table, results and picture. Nothing here times anything or judges learning:
a chain's learning is tests/test_classify.py's."""

import json

import numpy as np
import pytest

import chain
from lab import delay, image_race, race
from tests.helpers import banded_images, write_images


def test_every_stage_holds_one_hidden_layer_and_the_last_the_output():
    for K in (2, 4, 8):
        sizes, splits = image_race.layout(256, K)
        assert sizes == (784, *[256] * K, 10)
        layout = chain.stage_sizes(sizes, splits)
        assert len(layout) == K and layout[0] == (784, 256) and layout[-1] == (256, 256, 10)
        chain.check_layout(sizes, splits, data="fashion-mnist")


def test_times_to_levels_and_accuracy_at_fixed_times():
    points = [(0.0, 0.1), (2.0, 0.76), (4.0, 0.74), (6.0, 0.81), (8.0, 0.85)]
    assert image_race.first_time_at(points, 0.75) == 2.0
    assert image_race.first_time_at(points, 0.80) == 6.0
    assert image_race.first_time_at(points, 0.90) is None
    assert image_race.accuracy_at(points, 5.0) == 0.74
    assert image_race.accuracy_at(points, 7.95) == 0.85          # 1% late is still on time
    assert image_race.accuracy_at(points, -1.0) is None
    assert race.cell_times([2.0, 4.0, None]).startswith("3.0 (2.0-4.0)")      # the one cell


@pytest.mark.parametrize("argv, message", [
    (["--data", "toy"], "invalid choice: 'toy'"),
    (["--stages", "1,2"], "--stages must be at least 2"),
    (["--count", "500"], "--count must be at least 1000"),
    (["--seconds", "0"], "--seconds must be positive"),
    (["--test", "20000"], "--test at most 10,000"),
    (["--max-ahead", "0"], "--max-ahead must be at least 1"),
    (["--learning-rate", "nan"], "--learning-rate must be positive and finite"),
])
def test_bad_options_are_refused_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        image_race.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--delays", ""], "--delays needs at least one delay"),
    (["--scaled", "free"], "--scaled takes numbers of steps"),
    (["--learning-rate", "0"], "--learning-rate must be positive"),
])
def test_the_delay_frontier_refuses_bad_options_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        delay.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_the_delay_frontier_reads_its_delays():
    assert delay.parse_args(["--delays", "0,free"]).delays == [0, "free"]


def test_a_tiny_race_writes_its_table_results_and_picture(tmp_path):
    images = write_images(tmp_path / "images", banded_images(n_train=1000, n_test=100))
    run = tmp_path / "race"
    assert image_race.main(["--stages", "2", "--widths", "16", "--seeds", "1", "--seconds", "3",
                            "--interval", "1", "--count", "1000", "--test", "100",
                            "--image-dir", str(images), "--run-dir", str(run)]) == 0
    table = (run / "image-race.md").read_text()
    assert "| 2, 16 | one process |" in table and "| 2, 16 | chain |" in table
    assert "s to 75%" in table and "accuracy at 3 s" in table
    assert f"the chain at --delay {chain.IMAGE_DELAY}," in table          # the chain's pacing
    assert "thousand examples to 84%" in table
    results = json.loads((run / "image-race.json").read_text())["results"]
    assert [(r["stages"], r["width"]) for r in results] == [(2, 16)]
    (side_runs,) = [r["runs"] for r in results]
    assert len(side_runs) == 1
    one, chained = side_runs[0]["one"], side_runs[0]["chain"]
    for points in (one["points"], chained["points"]):
        seconds, accuracy = np.array(points).T
        assert len(points) >= 2 and seconds[0] == 0.0 and np.all(np.diff(seconds) >= 0)
        assert np.all((0 <= accuracy) & (accuracy <= 1))
    assert one["examples_per_s"] > 0 and one["cpu_per_s"] > 0
    for side in (one, chained):                # the examples trained by each point, rising
        assert len(side["examples"]) == len(side["points"]) and side["examples"][0] == 0
        assert np.all(np.diff(side["examples"]) >= 0) and side["examples"][-1] > 0
    assert set(chained["examples_per_s"]) == {"stage1", "stage2"}
    rates = chained["examples_per_s"]
    # stage 2's rate is None where its metrics file has too few lines for one (a 3 s run)
    assert rates["stage1"] > 0 and (rates["stage2"] is None or rates["stage2"] > 0)
    assert not (run / "chain-w16-k2-s0" / "progress").exists()   # snapshots deleted, not kept
    assert (run / "chain-w16-k2-s0" / "chain.json").exists()
    assert (run / "image-race.png").stat().st_size > 10_000
