"""Tests for generate.py: the target function against hand-computed values, the seeded data,
the script's files, load_dataset's refusals, and surfaces drawn on the target's colour scale
with every figure closed."""

import argparse
import functools
import importlib
import math
import subprocess
import sys

import matplotlib.image
import matplotlib.pyplot as plt
import numpy as np
import pytest

import generate
import sgd

# f at three points, worked out by hand from the module docstring's formula (r, theta exact):
#  (0.5, 0):   r = 0.5, theta = 0, so a = sin(4/4 - 1/8), b = 0, c = cos(0.6), k = 0.3.
#  (0, 0.5):   theta = pi/2, so b = sin(pi) = 0, c = cos(3 pi + 0.6) = -cos(0.6), k = 0.6.
#  (-0.3, -0.4): r = 0.5, cos theta = -0.6, sin theta = -0.8, so k = 0.06,
#     sin 2theta = 0.96, cos 2theta = -0.28, b = 0.96 * -0.8 = -0.768, and by the triple-angle
#     formulas on 2theta: cos 6theta = 4(-0.28)^3 + 0.84 = 0.752192,
#     sin 6theta = 3(0.96) - 4(0.96)^3 = -0.658944, c = cos(6 theta + 0.6).
A = math.sin(0.875)
BY_HAND = [
    (0.5, 0.0, 0.3 * A + 0.35 * math.cos(0.6)),
    (0.0, 0.5, 0.6 * A - 0.2 * math.cos(0.6)),
    (-0.3, -0.4, 0.06 * A + 0.47 * -0.768
     + 0.47 * (0.752192 * math.cos(0.6) + 0.658944 * math.sin(0.6))),
    (0.0, 0.0, 0.35 * math.cos(0.6)),       # atan2(0, 0) = 0, a = sin(0) = 0
]


@pytest.mark.parametrize("x, y, expected", BY_HAND)
def test_target_function_matches_hand_computed_values(x, y, expected):
    assert generate.target_function(np.float64(x), np.float64(y)) == pytest.approx(expected,
                                                                                  abs=1e-12)


def test_target_function_works_elementwise_on_arrays():
    xs = np.array([[p[0] for p in BY_HAND]] * 2)           # (2, 4)
    ys = np.array([[p[1] for p in BY_HAND]] * 2)
    out = generate.target_function(xs, ys)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out, [[p[2] for p in BY_HAND]] * 2, atol=1e-12)


def test_generate_is_seeded_shaped_and_in_range():
    x, y = generate.generate(1000, seed=3)
    assert x.shape == (1000, 2) and y.shape == (1000,)
    assert x.dtype == np.float64 and y.dtype == np.float64
    assert x.min() >= -1.0 and x.max() < 1.0
    assert x.min() < -0.99 and x.max() > 0.99               # covers the whole square
    # |f| <= k |a| + (1 - k) (|b| + |c|) / 2 <= 1
    assert np.abs(y).max() <= 1.0
    np.testing.assert_array_equal(y, generate.target_function(x[:, 0], x[:, 1]))

    x_again, y_again = generate.generate(1000, seed=3)
    np.testing.assert_array_equal(x, x_again)
    np.testing.assert_array_equal(y, y_again)
    x_other, _ = generate.generate(1000, seed=4)
    assert not np.allclose(x, x_other)


def test_heldout_is_fixed_and_not_the_training_stream():
    x_test, y_test = generate.heldout(500)
    x_again, _ = generate.heldout(500)
    np.testing.assert_array_equal(x_test, x_again)
    assert y_test.shape == (500,)
    x_train, _ = generate.generate(500, seed=0)               # generate.py's default seed
    assert not np.isclose(x_test[:, None, :], x_train[None, :, :]).all(axis=2).any()
    assert generate.heldout()[0].shape == (20_000, 2)


def test_main_writes_data_and_picture(tmp_path, capsys):
    out = tmp_path / "new" / "data"                           # created if missing
    assert generate.main(["--count", "500", "--out-dir", str(out), "--seed", "7"]) == 0
    x, y = np.load(out / "x.npy"), np.load(out / "y.npy")
    assert x.shape == (500, 2) and y.shape == (500,)
    x_ref, y_ref = generate.generate(500, seed=7)
    np.testing.assert_array_equal(x, x_ref)
    np.testing.assert_array_equal(y, y_ref)
    png = out / "target.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "wrote 500 samples" in capsys.readouterr().out

    loaded = generate.load_dataset(out)
    np.testing.assert_array_equal(loaded[0], x_ref)


def test_main_no_plot_skips_the_picture(tmp_path):
    generate.main(["--count", "10", "--out-dir", str(tmp_path), "--no-plot"])
    assert (tmp_path / "x.npy").exists() and not (tmp_path / "target.png").exists()


def test_main_refuses_a_count_below_one(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        generate.main(["--count", "0", "--out-dir", str(tmp_path)])
    assert e.value.code == 2 and "--count must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["generate", "demo", "chain"])
def test_every_script_that_draws_the_toys_data_refuses_the_held_out_seed(name, capsys):
    script = importlib.import_module(name)
    with pytest.raises(SystemExit) as e:
        script.parse_args(["--seed", str(generate.HELDOUT_SEED)])
    assert e.value.code == 2
    assert f"--seed {generate.HELDOUT_SEED} is reserved for the held-out points" in \
        capsys.readouterr().err
    script.parse_args(["--seed", str(generate.HELDOUT_SEED + 1)])       # its neighbour is fine


@pytest.mark.parametrize("name, option", [
    ("generate", "--out-dir"), ("sgd", "--plots-dir"), ("dni", "--weights-out"),
    ("dni", "--metrics"), ("train_input", "--progress-dir"), ("train_input", "--metrics"),
    ("train_input", "--checkpoint"), ("train_output", "--progress-dir"),
    ("train_output", "--metrics"), ("oracle", "--checkpoint"), ("plot", "--out-dir"),
    ("demo", "--run-dir"), ("chain", "--run-dir"), ("lab.experiments", "--run-dir"),
    ("lab.through_time", "--run-dir"), ("lab.delay", "--run-dir"), ("lab.image_race", "--run-dir"),
])
def test_every_output_path_that_cannot_be_written_is_refused_before_the_run(name, option,
                                                                            tmp_path, capsys):
    """A file where a folder should be: a traceback once written, for dni.py --weights-out
    after the whole run (its result lost)."""
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as e:
        importlib.import_module(name).parse_args([option, str(tmp_path / "a-file" / "x")])
    assert e.value.code == 2
    assert f"argument {option}: cannot write" in capsys.readouterr().err


def test_out_path_takes_folders_still_to_be_made_and_refuses_one_under_a_file(tmp_path):
    (tmp_path / "a-file").write_text("")
    assert generate.out_path(str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"
    assert str(generate.out_path("/")) == "/"                    # no folder above it: no error
    with pytest.raises(argparse.ArgumentTypeError, match="is a file"):
        generate.out_path(str(tmp_path / "a-file" / "x"))


@pytest.mark.parametrize("name", ["generate", "sgd", "dni", "train_input", "train_output",
                                  "train_middle", "oracle", "demo", "chain"])
def test_every_script_refuses_a_negative_seed_in_one_line(name, capsys):
    """numpy's generators take no negative seed: it was a traceback once the run began."""
    with pytest.raises(SystemExit) as e:
        importlib.import_module(name).parse_args(["--seed", "-1"])
    assert e.value.code == 2
    assert "argument --seed: expected an integer of 0 or more, got '-1'" in \
        capsys.readouterr().err


def test_load_dataset_refuses_a_missing_folder(tmp_path):
    with pytest.raises(SystemExit, match="no data at .*run `python generate.py"):
        generate.load_dataset(tmp_path / "nowhere")


@pytest.mark.parametrize("x_shape, y_shape", [((10, 3), (10,)),     # three coordinates
                                              ((10, 2), (9,)),      # one target short
                                              ((10, 2), (10, 1)),   # y a column
                                              ((20,), (10,))])      # x flat
def test_load_dataset_refuses_wrong_shapes(tmp_path, x_shape, y_shape):
    np.save(tmp_path / "x.npy", np.zeros(x_shape))
    np.save(tmp_path / "y.npy", np.zeros(y_shape))
    with pytest.raises(SystemExit, match="wrong shapes"):
        generate.load_dataset(tmp_path)


def test_load_dataset_refuses_nan(tmp_path):
    x = np.zeros((4, 2))
    x[2, 1] = np.nan
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", np.zeros(4))
    with pytest.raises(SystemExit, match="NaN"):
        generate.load_dataset(tmp_path)


def test_importing_generate_loads_neither_matplotlib_nor_another_module_of_the_project():
    code = ("import sys, generate; "
            "print(sorted(m for m in ('matplotlib', 'plot', 'sgd', 'snapshots') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=generate.HERE).stdout
    assert out.strip() == "[]"


# --- surfaces ---------------------------------------------------------------------------------

def target(p):
    return generate.target_function(p[:, 0], p[:, 1])


def test_target_spans_exactly_zero_to_one():
    xx, yy, z = generate.surface_values(target)
    assert xx.shape == yy.shape == z.shape == (100, 100)
    assert z.min() == pytest.approx(0.0, abs=1e-12) and z.max() == pytest.approx(1.0, abs=1e-12)
    # xx goes right along a row, yy up along a column, both over [-1, 1]
    np.testing.assert_array_equal(xx[0], np.linspace(-1, 1, 100))
    np.testing.assert_array_equal(yy[:, 0], np.linspace(-1, 1, 100))
    k = (37, 81)                                 # row 37 is y, column 81 is x
    lo, hi = generate.target_range()
    expected = (generate.target_function(xx[k], yy[k]) - lo) / (hi - lo)
    assert z[k] == pytest.approx(expected, abs=1e-12)


def test_fits_use_the_targets_scale():
    lo, hi = generate.target_range()
    _, _, z = generate.surface_values(lambda p: np.full(len(p), lo + 2 * (hi - lo)))
    np.testing.assert_allclose(z, 2.0)           # twice the target's span: beyond the scale
    # doubling f: (2 f - lo) / (hi - lo) = 2 z_target + lo / (hi - lo), not rescaled to 0..1
    _, _, z_target = generate.surface_values(target)
    _, _, z = generate.surface_values(lambda p: 2 * target(p))
    np.testing.assert_allclose(z, 2 * z_target + lo / (hi - lo), atol=1e-12)
    assert z.max() > 1.2


def test_surface_refuses_f_of_the_wrong_shape(tmp_path):
    with pytest.raises(ValueError, match=r"values \(10000,\)"):
        generate.save_surface(lambda p: p, tmp_path / "bad.png", title="bad")
    assert not (tmp_path / "bad.png").exists()
    assert plt.get_fignums() == []               # closed even though drawing failed


def test_save_surface_twice_draws_the_same_picture_and_closes_it(tmp_path):
    path = tmp_path / "deep" / "er" / "s.png"    # parent folders created
    net = sgd.make_network(np.random.default_rng(5))
    f = functools.partial(sgd.predict, net)
    generate.save_surface(f, tmp_path / "warm_up.png", title="warm up")   # font cache, imports
    for k in range(2):
        generate.save_surface(f, path, title="a network")
        assert plt.get_fignums() == []
        if k == 0:
            first = matplotlib.image.imread(path)
    # Drawing onto a leftover figure would add a second colorbar or contour set.
    np.testing.assert_array_equal(matplotlib.image.imread(path), first)
    assert first.shape[:2] == (440, 540)         # SURFACE_FIGSIZE at DPI 100, every time


def test_target_and_fit_pictures_are_the_same_size(tmp_path):
    generate.save_surface(target, tmp_path / "t.png", title="target")
    generate.save_surface(lambda p: 2 * target(p), tmp_path / "f.png",
                          title="a much longer title: t = 123456 s, held-out MSE 0.1234")
    shapes = {matplotlib.image.imread(tmp_path / n).shape for n in ("t.png", "f.png")}
    assert len(shapes) == 1
