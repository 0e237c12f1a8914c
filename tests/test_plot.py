"""Tests for plot.py: the pictures and numbers it writes for a progress folder and a run folder,
figures always closed, and the held-out MSE checked against sgd.mse on networks built here.
(Drawing one surface is generate.py's, tested in test_generate.py; reading and evaluating
snapshots and metrics is snapshots.py's, tested in test_snapshots.py.)"""

import functools
import json
import os
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

import generate
import plot
import sgd
from parts import snapshots

# --- the progress script -----------------------------------------------------------------------

def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_main_draws_each_tick_and_measures_heldout_mse(recorded_run, capsys):
    folder, nets = recorded_run
    assert plot.main(["--progress-dir", str(folder), "--heldout", "3000"]) == 0
    out = capsys.readouterr().out
    assert "1 unpaired tick(s) skipped" in out and "[1030]" in out

    # seconds since training started: the initial network, whose later half was saved at 996
    for seconds in (4, 14, 24):                  # out-dir defaults to the progress folder
        png = folder / f"fit_{seconds:06d}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert sorted(p.name for p in folder.glob("fit_*.png")) == [
        "fit_000004.png", "fit_000014.png", "fit_000024.png"]          # none for tick 1030
    assert (folder / "mse.png").stat().st_size > 5_000
    assert plt.get_fignums() == []

    x_test, y_test = generate.heldout(3000)
    rows = {str(r["label"]): r for r in read_rows(folder / "heldout_mse.jsonl")}
    assert list(rows) == ["initial", "1000", "1010", "1020", "final", snapshots.SWAP_LABEL]
    for label, seconds in ((1000, 4.0), (1010, 14.0), (1020, 24.0)):
        row = rows[str(label)]
        assert row["seconds"] == seconds and row["layer1"] == row["layers23"] == label
        assert row["mse"] == pytest.approx(sgd.mse(nets[label], x_test, y_test), abs=1e-12)
    # the untrained network is at 0; the final one when the later of its two files was written
    assert rows["initial"]["seconds"] == 0.0
    assert rows["final"]["seconds"] == pytest.approx(30.25)
    assert "untrained (initial)" in out and "1000" not in out.replace("[1030]", "")
    assert rows["final"]["mse"] == pytest.approx(sgd.mse(nets["final"], x_test, y_test),
                                                 abs=1e-12)
    swap = rows[snapshots.SWAP_LABEL]
    assert (swap["layer1"], swap["layers23"], swap["seconds"]) == ("initial", "final", None)
    swapped = nets["initial"][:1] + nets["final"][1:]
    assert swap["mse"] == pytest.approx(sgd.mse(swapped, x_test, y_test), abs=1e-12)
    assert swap["mse"] != pytest.approx(rows["final"]["mse"])   # the swap really swapped


def test_main_uses_the_default_heldout_set_and_out_dir(recorded_run, tmp_path):
    folder, nets = recorded_run
    out_dir = tmp_path / "pictures"
    assert plot.main(["--progress-dir", str(folder), "--out-dir", str(out_dir)]) == 0
    assert not list(folder.glob("*.png"))        # nothing written beside the weights
    rows = read_rows(out_dir / "heldout_mse.jsonl")
    x_test, y_test = generate.heldout()
    ticks = [r for r in rows if isinstance(r["label"], int)]
    assert [r["label"] for r in ticks] == [1000, 1010, 1020]
    for r in ticks:
        assert r["mse"] == pytest.approx(sgd.mse(nets[r["label"]], x_test, y_test), abs=1e-12)
    assert len(list(out_dir.glob("fit_*.png"))) == 3


def test_main_skips_an_unreadable_snapshot(recorded_run, capsys):
    folder, _ = recorded_run
    (folder / "layers23_1010.npz").write_bytes(b"not a zip file")
    assert plot.main(["--progress-dir", str(folder), "--heldout", "100"]) == 0
    out = capsys.readouterr().out
    assert "skipping 1010: cannot read weights" in out and "1 unreadable" in out
    labels = [r["label"] for r in read_rows(folder / "heldout_mse.jsonl")]
    assert 1010 not in labels and 1020 in labels
    assert not (folder / "fit_000010.png").exists()


def test_main_refuses_an_empty_or_missing_folder(tmp_path):
    with pytest.raises(SystemExit, match="no complete weight snapshots in .*layer1_<label>"):
        plot.main(["--progress-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="no progress folder at"):
        plot.main(["--progress-dir", str(tmp_path / "missing")])


def test_main_refuses_a_folder_with_only_one_trainers_files(tmp_path):
    snapshots.save_layers(tmp_path / "layer1_1000.npz",
                          sgd.make_network(np.random.default_rng(0))[:1])
    with pytest.raises(SystemExit, match="no complete weight snapshots"):
        plot.main(["--progress-dir", str(tmp_path)])


def test_help_and_option_checks(capsys):
    with pytest.raises(SystemExit) as e:
        plot.main(["--help"])
    assert e.value.code == 0 and "--progress-dir" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        plot.main(["--progress-dir", ".", "--heldout", "0"])
    assert e.value.code == 2 and "--heldout must be at least 1" in capsys.readouterr().err


# --- a whole run folder ------------------------------------------------------------------------

STREAMING_START = 997.25        # time.time() of train_input.jsonl's first line in recorded_run_dir


def write_lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def recorded_run_dir(recorded_run):
    """A run folder as demo.py leaves it: recorded_run's progress/, the baseline's network in
    backprop/final.npz, and a few lines of each process's metrics (the oracle's last one torn,
    as when a process is killed mid-write). Returns (run folder, decoupled nets, backprop net)."""
    progress, nets = recorded_run
    run = progress.parent
    # Small output weights keep each network's surface inside the target's colour range, so
    # their pictures differ (untrained ones are mostly beyond it, all one colour).
    for label, net in nets.items():
        path = progress / f"layers23_{label}.npz"
        net[2].w *= 0.05
        net[2].b[:] = 0.0
        snapshots.save_layers(path, net[1:], taken_at=snapshots.snapshot_time(path))
    backprop = sgd.make_network(np.random.default_rng(12))
    snapshots.save_layers(run / "backprop" / "final.npz", backprop)
    metrics = run / "metrics"
    write_lines(metrics / "backprop.jsonl", [
        {"time": 2000.0 + s, "stage": "backprop", "seconds": s, "epoch": s // 10,
         "examples": 100 * s, "heldout_mse": 0.5 / (1 + s)} for s in (0, 10, 20, 30)])
    write_lines(metrics / "train_input.jsonl", [
        {"time": STREAMING_START + s, "stage": "input_trainer", "seconds": s, "examples": 50 * s,
         "updates": 5 * s, "epoch": 0, "examples_per_s": 50.0} for s in (0, 10, 20)])
    write_lines(metrics / "oracle.jsonl", [
        {"time": 995.0 + s, "stage": "oracle", "seconds": s, "examples_held": 10 * s,
         "training_passes": s, "last_train_mse": None if s == 0 else 0.1 / s,
         "cosine_similarity": None if s == 0 else cos, "aggregate_cosine": None if s == 0 else
         cos + 0.05, "relative_error": None, "explained": None}
        for s, cos in ((0, None), (10, 0.25), (20, 0.5), (30, 0.75))])
    with open(metrics / "oracle.jsonl", "a") as f:
        f.write('{"time": 1031.0, "stage": "ora')
    write_lines(metrics / "train_output.jsonl", [
        {"time": 996.0 + s, "stage": "output_trainer", "seconds": s, "examples_held": 10 * s,
         "examples_trained": 30 * s, "training_passes": s, "last_train_mse": None}
        for s in (0, 10)])
    return run, nets, backprop


def summary_row(out, method):
    """The summary table's (held-out MSE, seconds, examples) for method, as printed."""
    lines = [line for line in out.splitlines() if line.strip().startswith(method)]
    assert len(lines) == 1, lines
    return lines[0].split()[-3:]


def image(path, fmt):
    """The picture at path opened with PIL, checked to be a `fmt` file."""
    im = Image.open(path)
    assert im.format == fmt
    return im


def test_run_dir_draws_every_picture(recorded_run_dir, capsys):
    run, nets, backprop = recorded_run_dir
    assert plot.main(["--run-dir", str(run), "--heldout", "500"]) == 0
    out = capsys.readouterr().out
    plots = run / "plots"                                # the default --out-dir
    assert image(plots / "comparison.png", "PNG").size == (1200, 460)   # COMPARISON_FIGSIZE
    assert image(plots / "curves.png", "PNG").size == (800, 1000)
    assert len(list(plots.glob("fit_*.png"))) == 3 and (plots / "mse.png").exists()
    assert plt.get_fignums() == []

    # Seconds count from train_input.jsonl's first line, 997.25 s: tick 1000 is 2.75 s later,
    # the final network's later file was written at 1026.25, the initial one's at 996.
    rows = {str(r["label"]): r for r in read_rows(plots / "heldout_mse.jsonl")}
    assert [rows[t]["seconds"] for t in ("1000", "1010", "1020")] == [2.75, 12.75, 22.75]
    assert rows["final"]["seconds"] == pytest.approx(29.0)
    assert rows["initial"]["seconds"] == 0.0              # the untrained network, always
    assert sorted(p.name for p in plots.glob("fit_*.png")) == [
        "fit_000003.png", "fit_000013.png", "fit_000023.png"]

    # The summary: backprop's MSE measured on the same held-out points; the oracle's last
    # complete line (the torn one is skipped and reported).
    x_test, y_test = generate.heldout(500)
    mse, seconds, examples = summary_row(out, "backprop (true gradients)")
    assert (seconds, examples) == ("30", "3,000")        # backprop.jsonl's last line
    assert float(mse) == pytest.approx(sgd.mse(backprop, x_test, y_test), abs=1e-6)
    mse, seconds, examples = summary_row(out, "synthetic gradients")
    assert (seconds, examples) == ("29", "1,000")        # final; train_input.jsonl's last line
    assert float(mse) == pytest.approx(sgd.mse(nets["final"], x_test, y_test), abs=1e-6)
    assert "cosine(synthetic, true) at the end: 0.75 (the mean" in out
    assert "0.80 with all of them as one vector" in out
    assert "oracle.jsonl: skipped 1 line(s) that are not JSON objects" in out
    assert "skipped" not in out.replace("skipped 1 line(s)", "").replace(
        "unpaired tick(s) skipped", "")               # nothing else was left out


def test_run_dir_draws_the_controls_beside_synthetic_gradients(recorded_run_dir, capsys):
    """demo.py's controls (RUN/controls/frozen and random, each a run folder of its own) join
    the comparison, the curves and the summary, with their own MSE and time origin."""
    run, nets, _ = recorded_run_dir
    for name, start in (("frozen", 990.0), ("random", 996.0)):
        control = run / "controls" / name
        shutil.copytree(run / "progress", control / "progress")
        write_lines(control / "metrics" / "train_input.jsonl", [
            {"time": start + s, "stage": "input_trainer", "seconds": s, "examples": 70 * s}
            for s in (0, 10, 20)])
    (run / "controls" / "random" / "progress" / "layer1_final.npz").unlink()   # ends at 1020
    assert plot.main(["--run-dir", str(run), "--heldout", "300"]) == 0
    out = capsys.readouterr().out
    assert image(run / "plots" / "comparison.png", "PNG").size == (1920, 460)   # five panels
    x_test, y_test = generate.heldout(300)
    mse, seconds, examples = summary_row(out, "frozen layer 1 (control)")
    assert float(mse) == pytest.approx(sgd.mse(nets["final"], x_test, y_test), abs=1e-6)
    assert (seconds, examples) == ("36", "1,400")         # final at 1026.25, from 990
    mse, seconds, examples = summary_row(out, "random directions (control)")
    assert float(mse) == pytest.approx(sgd.mse(nets[1020], x_test, y_test), abs=1e-6)
    assert (seconds, examples) == ("24", "1,400")         # its last tick, 1020.4, from 996


def test_a_control_without_its_metrics_counts_from_its_first_snapshot_not_1970(recorded_run_dir):
    """Its rows kept time.time() as seconds: curves.png ran from 0 to 1.8e9 s, every curve
    squashed against the axis."""
    run, _, _ = recorded_run_dir
    control = run / "controls" / "frozen"
    shutil.copytree(run / "progress", control / "progress")        # no metrics/train_input.jsonl
    rows, (_, seconds, _), _ = snapshots.measure_run(control, *generate.heldout(100))
    ticks = {str(r["label"]): r["seconds"] for r in rows}
    assert [ticks[t] for t in ("1000", "1010", "1020")] == [4.0, 14.0, 24.0] and seconds is None


def test_run_dir_animation_has_one_frame_per_tick_in_time_order(recorded_run_dir):
    run, nets, _ = recorded_run_dir
    assert plot.main(["--run-dir", str(run), "--heldout", "200"]) == 0
    gif = image(run / "plots" / "evolution.gif", "GIF")
    assert gif.n_frames == 3 and gif.size == (432, 352)            # SURFACE_FIGSIZE at 80 dpi
    assert gif.info["duration"] == 250 and gif.info["loop"] == 0   # 4 frames a second, forever
    frames = []
    for k in range(gif.n_frames):
        gif.seek(k)
        frames.append(np.asarray(gif.convert("RGB"), dtype=np.float64))
    # Frame k is tick k's surface: closer to it than to any other tick's (titles aside, the
    # surfaces differ: every tick's network is a different random one, tamed by the fixture).
    drawn = [plot.surface_image(functools.partial(sgd.predict, nets[t]), "")
             for t in (1000, 1010, 1020)]
    for k, frame in enumerate(frames):
        distances = [np.abs(frame - d).mean() for d in drawn]
        assert int(np.argmin(distances)) == k, distances


def test_run_dir_without_backprop_or_metrics_draws_the_rest(recorded_run_dir, capsys):
    run, nets, _ = recorded_run_dir
    for folder in ("backprop", "metrics"):
        for path in (run / folder).iterdir():
            path.unlink()
        (run / folder).rmdir()
    out_dir = run / "elsewhere"
    assert plot.main(["--run-dir", str(run), "--out-dir", str(out_dir), "--heldout", "200"]) == 0
    out = capsys.readouterr().out
    for name in ("comparison.png", "curves.png", "evolution.gif", "mse.png"):
        assert (out_dir / name).stat().st_size > 5_000, name
    assert "skipped backprop (true gradients) in comparison.png and the summary: no " in out
    assert "backprop/final.npz" in out
    assert "skipped the oracle's quality in curves.png: no metrics/oracle.jsonl" in out
    assert "skipped the input trainer's start as time origin" in out
    # without train_input.jsonl, seconds count from the initial network, as with --progress-dir
    rows = {str(r["label"]): r for r in read_rows(out_dir / "heldout_mse.jsonl")}
    assert [rows[t]["seconds"] for t in ("1000", "1010", "1020")] == [4.0, 14.0, 24.0]
    assert summary_row(out, "backprop (true gradients)") == ["-", "-", "-"]


def test_run_dir_with_only_metrics_draws_the_curves(recorded_run_dir, capsys):
    run, _, _ = recorded_run_dir
    for folder in ("backprop", "progress"):
        for path in (run / folder).iterdir():
            path.unlink()
    assert plot.main(["--run-dir", str(run), "--heldout", "100"]) == 0
    out = capsys.readouterr().out
    assert image(run / "plots" / "curves.png", "PNG").size == (800, 1000)
    assert not (run / "plots" / "comparison.png").exists()
    assert not (run / "plots" / "evolution.gif").exists()
    assert "skipped fit_*.png, mse.png, heldout_mse.jsonl and evolution.gif: no complete" in out
    assert "skipped comparison.png: no method's final network is there" in out


def test_run_dir_refuses_a_missing_or_empty_folder(tmp_path):
    with pytest.raises(SystemExit, match="no run folder at"):
        plot.main(["--run-dir", str(tmp_path / "missing")])
    with pytest.raises(SystemExit, match="nothing to draw in"):
        plot.main(["--run-dir", str(tmp_path), "--heldout", "100"])
    assert not (tmp_path / "plots").exists() or not any((tmp_path / "plots").iterdir())


@pytest.mark.parametrize("frames", [1, 60])
def test_save_gif_keeps_every_frame(tmp_path, frames):
    # Small frames that all differ (a moving bar), so none is merged into its neighbour.
    images = []
    for k in range(frames):
        im = np.full((30, 80, 3), 255, dtype=np.uint8)
        im[:, k:k + 5] = (68, 1, 84)                   # viridis' darkest colour
        images.append(im)
    plot.save_gif(images, tmp_path / "deep" / "a.gif")
    gif = image(tmp_path / "deep" / "a.gif", "GIF")
    assert gif.n_frames == frames and gif.size == (80, 30)
    gif.seek(frames - 1)
    np.testing.assert_array_equal(np.asarray(gif.convert("RGB")), images[-1])


def test_run_dir_and_progress_dir_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as e:
        plot.main(["--run-dir", ".", "--progress-dir", "."])
    assert e.value.code == 2 and "not allowed with argument" in capsys.readouterr().err



def test_without_a_folder_it_draws_the_newest_run(recorded_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(plot, "HERE", tmp_path / "repo")
    monkeypatch.setattr(snapshots, "PROGRESS", tmp_path / "repo" / "progress")
    with pytest.raises(SystemExit) as e:
        plot.main([])
    assert e.value.code == 2 and "nothing to draw yet" in capsys.readouterr().err
    folder, _ = recorded_run
    older = tmp_path / "repo" / "progress" / "20260101-000000"
    older.mkdir(parents=True)
    newest = folder.rename(tmp_path / "repo" / "progress" / "20260102-000000")
    os.utime(older, (1, 1))
    assert plot.main(["--heldout", "100"]) == 0
    assert f"drawing the newest run, {newest}" in capsys.readouterr().out
    assert (newest / "mse.png").exists() and not (older / "mse.png").exists()
    chain = tmp_path / "repo" / "runs" / "chain-20260103-000000"    # newer, made by chain.py:
    (chain / "progress" / "stage1").mkdir(parents=True)             # it said "nothing to draw"
    assert plot.main(["--heldout", "100"]) == 0
    assert f"drawing the newest run, {newest} (chain-20260103-000000, newer, is a chain's" in \
        capsys.readouterr().out
