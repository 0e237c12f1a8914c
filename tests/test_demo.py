"""Tests for the launcher pieces demo.py shares with bench.py and experiments.py.

Run: .venv/bin/pytest -q tests/test_demo.py
"""

import numpy as np

import demo
import generate


def test_new_run_dir_uses_the_given_folder_or_makes_a_dated_one(tmp_path, monkeypatch):
    given = tmp_path / "a" / "b"
    assert demo.new_run_dir(given) == given.resolve() and given.is_dir()
    monkeypatch.setattr(demo, "HERE", tmp_path)
    made = demo.new_run_dir(None, "bench-")
    assert made.is_dir() and made.parent == (tmp_path / "runs").resolve()
    assert made.name.startswith("bench-") and made.name[len("bench-"):].replace("-", "").isdigit()


def test_generate_data_writes_the_seeded_data_set(tmp_path):
    env = demo.child_env()
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "2" and env["PYTHONUNBUFFERED"] == "1"
    demo.generate_data(tmp_path / "d", 50, 3, env, plot=False)
    x, y = generate.load_dataset(tmp_path / "d")
    want_x, want_y = generate.generate(50, 3)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)
    assert not list((tmp_path / "d").glob("*.png"))
