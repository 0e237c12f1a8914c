"""Tests for lab/race.py (lab/bench.py --race and --distribution-cost): the race's network gives
every stage one W x W layer, times to levels and MSE at fixed times are read off measured points as
documented, the one-process side trains and measures, the tables and the picture are made from
results, and the options are checked. Nothing here times anything: the race is run by hand."""

import json

import numpy as np
import pytest

import chain
from lab import bench, race, report


def test_every_stage_of_the_race_holds_one_square_layer():
    for K in (2, 4, 8):
        sizes, splits = race.race_layout(256, K)
        layout = chain.stage_sizes(sizes, splits)
        assert len(layout) == K and sizes[0] == 2 and sizes[-1] == 1
        square = [sum(1 for a, b in zip(s, s[1:], strict=False) if a == b == 256) for s in layout]
        assert square == [1] * K                      # equal work: one W x W layer each
        chain.check_layout(sizes, splits)
    assert race.race_layout(32, 2) == ((2, 32, 32, 32, 1), (2,))


def test_times_to_levels_and_mse_at_fixed_times():
    points = [(0.0, 0.3), (1.0, 0.06), (2.0, 0.04), (3.0, 0.05), (4.0, 0.009)]
    assert race.first_time_below(points, 0.05) == 2.0
    assert race.first_time_below(points, 0.01) == 4.0
    assert race.first_time_below(points, 0.001) is None
    assert race.mse_at(points, 2.5) == 0.04 and race.mse_at(points, -1) is None
    # the one process's last interval ends a step late (4.02 s for "4 s"): its point counts,
    late = [*points[:-1], (4.02, 0.009)]     # as the chain's (put at exactly 4 s) always did
    assert race.mse_at(late, 4.0) == 0.009 and race.mse_at(late, 3.9) == 0.05


def fake_runs(one_times, chain_times):
    """Runs whose MSE falls to 0.001 at the given seconds (None: stays at 0.1)."""
    def side(t, rates):
        points = [(0.0, 0.3)] + ([(t, 0.001)] if t is not None else [(5.0, 0.1)])
        return {"points": points, "examples_per_s": rates, "cpu_per_s": (
            0.9 if not isinstance(rates, dict) else {k: 0.8 for k in rates})}
    return [{"one": side(a, 1000.0), "chain": side(b, {"stage1": 900.0, "stage2": 600.0})}
            for a, b in zip(one_times, chain_times, strict=True)]


def test_summary_table_and_picture_from_results(tmp_path):
    runs = fake_runs([1.0, 2.0, 3.0], [4.0, None, 5.0])
    summary = race.summarise(runs, 8.0)
    assert summary["one"]["to_level"]["0.01"] == [1.0, 2.0, 3.0]
    assert summary["chain"]["to_level"]["0.01"] == [4.0, None, 5.0]
    assert summary["chain"]["examples_per_s"] == {"stage1": 900.0, "stage2": 600.0}
    assert race.cell_times([1.0, 2.0, 3.0]) == "2.0 (1.0-3.0)"
    assert race.cell_times([4.0, None, 5.0]) == "4.5 (4.0-5.0), 2/3 seeds"
    assert race.cell_times([None, None]) == "not in 2/2"
    results = [{"stages": 2, "width": w, "batch_size": 10, "seconds": 8.0, "runs": runs,
                "summary": summary} for w in (32, 256)]
    table = race.markdown(results, "a test machine")
    assert "a test machine" in table and "| 2, 256, 10 |" in table
    assert "2.0 (1.0-3.0) / 4.5 (4.0-5.0), 2/3 seeds" in table
    assert "0.60x" in table                                       # slowest stage / one process
    race.draw(results, tmp_path / "race.png")
    assert (tmp_path / "race.png").stat().st_size > 20_000


def test_the_one_process_side_trains_and_measures(tmp_path):
    import generate
    x, y = generate.generate(2_000, 0)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    result = race.train_one_process(tmp_path, (2, 8, 8, 1), 10, seconds=0.6, interval=0.2,
                                    seed=0, learning_rate=0.01, heldout=500)
    seconds = [s for s, _ in result["points"]]
    assert seconds[0] == 0.0 and seconds == sorted(seconds) and len(seconds) >= 4
    assert seconds[-1] >= 0.6
    assert result["points"][-1][1] < result["points"][0][1]         # it learned
    assert result["examples_per_s"] > 0 and result["cpu_per_s"] > 0
    json.dumps(result)                                             # what the child writes


def test_blas_info_names_the_kernel_where_numpy_uses_openblas():
    info = report.blas_info()
    assert info == {} or (info["core"] and "OpenBLAS" in info["config"])


def test_bench_takes_one_mode_and_the_races_defaults():
    args = bench.parse_args(["--race"])
    assert (args.seeds, args.seconds, args.widths, args.batch_sizes) == (3, 30.0, [32, 256, 1024],
                                                                         [10, 100])
    args = bench.parse_args(["--distribution-cost"])
    assert (args.seeds, args.seconds) == (5, 40.0)
    args = bench.parse_args(["--race", "--stages", "2,4,8", "--widths", "256"])
    assert args.stages == [2, 4, 8] and args.widths == [256]
    for argv in (["--race", "--chain"], ["--race", "--seeds", "0"], ["--race", "--widths", "0"],
                 ["--race", "--stages", "two"], ["--race", "--seconds", "-1"]):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)


@pytest.mark.parametrize("module", ["bench", "race", "image_race", "chain_speed", "wire_cost"])
def test_running_a_lab_file_says_in_one_line_to_run_it_as_a_module(module):
    """`python lab/X.py` cannot import the project (lab/ is on the path, not the top folder):
    it says, in one line and before importing anything, how to run it instead."""
    import subprocess
    import sys
    from pathlib import Path
    top = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, f"lab/{module}.py", "--race", "--seeds", "2"],
                          cwd=top, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"run it as: python -m lab.{module} --race --seeds 2\n"
