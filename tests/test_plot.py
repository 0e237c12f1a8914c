"""Tests for plot.py: surfaces on the target's colour scale, figures always closed, and the
progress script's held-out MSE checked against sgd.mse on networks built here."""

import functools
import json
import time

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

import generate
import plot
import sgd
import snapshots


def target(p):
    return generate.target_function(p[:, 0], p[:, 1])


# --- surfaces ---------------------------------------------------------------------------------

def test_target_spans_exactly_zero_to_one():
    xx, yy, z = plot.surface_values(target)
    assert xx.shape == yy.shape == z.shape == (100, 100)
    assert z.min() == pytest.approx(0.0, abs=1e-12) and z.max() == pytest.approx(1.0, abs=1e-12)
    # xx goes right along a row, yy up along a column, both over [-1, 1]
    np.testing.assert_array_equal(xx[0], np.linspace(-1, 1, 100))
    np.testing.assert_array_equal(yy[:, 0], np.linspace(-1, 1, 100))
    k = (37, 81)                                 # row 37 is y, column 81 is x
    lo, hi = plot.target_range()
    expected = (generate.target_function(xx[k], yy[k]) - lo) / (hi - lo)
    assert z[k] == pytest.approx(expected, abs=1e-12)


def test_fits_use_the_targets_scale():
    lo, hi = plot.target_range()
    _, _, z = plot.surface_values(lambda p: np.full(len(p), lo + 2 * (hi - lo)))
    np.testing.assert_allclose(z, 2.0)           # twice the target's span: beyond the scale
    # doubling f: (2 f - lo) / (hi - lo) = 2 z_target + lo / (hi - lo), not rescaled to 0..1
    _, _, z_target = plot.surface_values(target)
    _, _, z = plot.surface_values(lambda p: 2 * target(p))
    np.testing.assert_allclose(z, 2 * z_target + lo / (hi - lo), atol=1e-12)
    assert z.max() > 1.2


def test_surface_refuses_f_of_the_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match=r"values \(10000,\)"):
        plot.save_surface(lambda p: p, tmp_path / "bad.png", title="bad")
    assert not (tmp_path / "bad.png").exists()
    assert plt.get_fignums() == []               # closed even though drawing failed


def test_save_surface_twice_draws_the_same_picture_and_closes_it(tmp_path):
    path = tmp_path / "deep" / "er" / "s.png"    # parent folders created
    net = sgd.make_network(np.random.default_rng(5))
    f = functools.partial(sgd.predict, net)
    plot.save_surface(f, tmp_path / "warm_up.png", title="warm up")   # font cache, imports
    took = []
    for _ in range(2):
        t0 = time.perf_counter()
        plot.save_surface(f, path, title="a network")
        took.append(time.perf_counter() - t0)
        assert plt.get_fignums() == []
        if len(took) == 1:
            first = matplotlib.image.imread(path)
    # Drawing onto a leftover figure would add a second colorbar or contour set.
    np.testing.assert_array_equal(matplotlib.image.imread(path), first)
    assert first.shape[:2] == (440, 540)         # SURFACE_FIGSIZE at DPI 100, every time
    assert took[1] < 3 * took[0] + 0.1, took     # about the same time, not growing


def test_target_and_fit_pictures_are_the_same_size(tmp_path):
    plot.save_surface(target, tmp_path / "t.png", title="target")
    plot.save_surface(lambda p: 2 * target(p), tmp_path / "f.png",
                      title="a much longer title: t = 123456 s, held-out MSE 0.1234")
    shapes = {matplotlib.image.imread(tmp_path / n).shape for n in ("t.png", "f.png")}
    assert len(shapes) == 1


# --- the progress script -----------------------------------------------------------------------

@pytest.fixture
def recorded_run(tmp_path):
    """A progress folder as the two trainers would leave it, with the networks it holds.

    Moments: initial (taken at 995.5 and 996), ticks 1000, 1010, 1020, final (at 1025.5 and
    1026.25), and a tick 1030 that only layer 1's trainer saved.
    """
    folder = tmp_path / "progress"
    rng = np.random.default_rng(11)
    nets = {label: sgd.make_network(rng) for label in ("initial", 1000, 1010, 1020, "final")}
    taken = {"initial": (995.5, 996.0), 1000: (1000.1, 1000.3), 1010: (1010.2, 1010.0),
             1020: (1020.0, 1020.4), "final": (1025.5, 1026.25)}
    for label, net in nets.items():
        snapshots.save_layers(folder / f"layer1_{label}.npz", net[:1], taken_at=taken[label][0])
        snapshots.save_layers(folder / f"layers23_{label}.npz", net[1:], taken_at=taken[label][1])
    snapshots.save_layers(folder / "layer1_1030.npz", sgd.make_network(rng)[:1], taken_at=1030.2)
    return folder, nets


def read_rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_main_draws_each_tick_and_measures_heldout_mse(recorded_run, capsys):
    folder, nets = recorded_run
    assert plot.main(["--progress-dir", str(folder), "--heldout", "3000"]) == 0
    out = capsys.readouterr().out
    assert "1 unpaired tick(s) skipped" in out and "[1030]" in out

    for seconds in (0, 10, 20):                  # out-dir defaults to the progress folder
        png = folder / f"fit_{seconds:06d}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000
    assert sorted(p.name for p in folder.glob("fit_*.png")) == [
        "fit_000000.png", "fit_000010.png", "fit_000020.png"]          # none for tick 1030
    assert (folder / "mse.png").stat().st_size > 5_000
    assert plt.get_fignums() == []

    x_test, y_test = generate.heldout(3000)
    rows = {str(r["label"]): r for r in read_rows(folder / "heldout_mse.jsonl")}
    assert list(rows) == ["initial", "1000", "1010", "1020", "final", plot.SWAP_LABEL]
    for label, seconds in ((1000, 0.0), (1010, 10.0), (1020, 20.0)):
        row = rows[str(label)]
        assert row["seconds"] == seconds and row["layer1"] == row["layers23"] == label
        assert row["mse"] == pytest.approx(sgd.mse(nets[label], x_test, y_test), abs=1e-12)
    # the ends happened when the later of their two files was written
    assert rows["initial"]["seconds"] == pytest.approx(-4.0)
    assert rows["final"]["seconds"] == pytest.approx(26.25)
    assert rows["final"]["mse"] == pytest.approx(sgd.mse(nets["final"], x_test, y_test),
                                                 abs=1e-12)
    swap = rows[plot.SWAP_LABEL]
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
