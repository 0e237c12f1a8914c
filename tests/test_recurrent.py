"""Tests for parts/recurrent.py, datasets/copy_tasks.py and dni.py --task: one LSTM step and a
whole segment's backward against finite differences, the tasks' batches, the cuts, cDNI's
context, M learning from the bootstrapped target, and a short real run in which a synthetic
gradient climbs the curriculum past where truncated BPTT stops in the same steps (cDNI, T = 3).

Run: .venv/bin/python -m pytest -q tests/test_recurrent.py
"""

import json

import numpy as np
import pytest

import dni
from datasets import copy_tasks
from parts import recurrent, snapshots
from test_sgd import numerical_gradient as numeric

def lstm_and_state(seed=0, n=3, n_in=4, hidden=5, n_out=3):
    rng = np.random.default_rng(seed)
    lstm = recurrent.LSTM(n_in, hidden, n_out, rng)
    lstm.gates.b += 0.3 * rng.standard_normal(lstm.gates.b.shape)    # every gate in play
    return lstm, rng, rng.standard_normal((n, hidden)), rng.standard_normal((n, hidden))


def test_one_step_of_the_cell_is_its_finite_differences():
    lstm, rng, h, c = lstm_and_state()
    x = rng.standard_normal((3, 4))
    gh, gc = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))     # dL/dh_t, dL/dc_t

    def loss():                                          # L = gh . h_t + gc . c_t
        h_t, c_t, _ = lstm.step(x, h, c)
        return float(np.sum(gh * h_t) + np.sum(gc * c_t))

    _, _, cache = lstm.step(x, h, c)
    dw, db, dx, dh, dc = lstm.step_back(gh, gc, cache)
    for analytic, p in ((dw, lstm.gates.w), (db, lstm.gates.b), (dx, x), (dh, h), (dc, c)):
        np.testing.assert_allclose(analytic, numeric(loss, p), rtol=1e-6, atol=1e-8)


def test_a_segments_backward_is_the_finite_differences_of_its_loss():
    lstm, rng, h, c = lstm_and_state(seed=1, n_in=10, n_out=8)
    x, y, mask = copy_tasks.batch("copy", rng, 3, 2)                      # 5 steps
    gh, gc = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))     # from beyond the cut

    def loss():          # the batch's mean of each sequence's loss plus gh . h_T + gc . c_T
        p, (h_T, c_T), _ = lstm.forward(x, h, c)
        per_sequence = recurrent.cross_entropy(p, y, mask) + np.sum(gh * h_T + gc * c_T, 1)
        return float(per_sequence.mean())

    p, _, stash = lstm.forward(x, h, c)
    dh, dc = lstm.backward(p, y, mask, stash, gh, gc)
    for layer in lstm.layers:
        for p_, grad in ((layer.w, layer.nabla_w), (layer.b, layer.nabla_b)):
            np.testing.assert_allclose(grad, numeric(loss, p_), rtol=1e-5, atol=1e-8)
    # rows per sequence: the first state's gradient is n times the mean loss's
    np.testing.assert_allclose(dh / 3, numeric(loss, h), rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(dc / 3, numeric(loss, c), rtol=1e-5, atol=1e-8)


# --- The tasks -------------------------------------------------------------------------------

def test_copy_is_the_pattern_a_delimiter_and_the_pattern_again():
    x, y, mask = copy_tasks.batch("copy", np.random.default_rng(0), 4, 3)
    assert x.shape == (7, 4, 10) and y.shape == (7, 4, 8) and mask.shape == (7, 4)
    pattern = x[:3, :, :8]
    assert set(np.unique(pattern)) == {0.0, 1.0}
    assert (x[3, :, 8] == 1).all() and not x[4:].any() and not x[:3, :, 8:].any()
    np.testing.assert_array_equal(y[4:], pattern)
    assert not y[:4].any()
    np.testing.assert_array_equal(mask[:, 0], [0, 0, 0, 0, 1, 1, 1])


def test_repeat_copy_repeats_the_pattern_as_its_count_says_then_ends():
    x, y, mask = copy_tasks.batch("repeat-copy", np.random.default_rng(1), 32, 2)
    assert x.shape[2] == 10 and y.shape[2] == 9
    repeats = np.rint(x[2, :, 9] * copy_tasks.MAX_REPEATS).astype(int)       # (32,)
    assert set(repeats) == {1, 2, 3}
    assert len(x) == 2 * (3 + 1) + 2
    for k, r in enumerate(repeats):
        answer = y[3:3 + 2 * r, k, :8]
        np.testing.assert_array_equal(answer, np.tile(x[:2, k, :8], (r, 1)))
        assert y[3 + 2 * r, k, 8] == 1 and y[:, k, 8].sum() == 1         # the end marker
        assert mask[:, k].sum() == 2 * r + 1 and mask[3:4 + 2 * r, k].all()


def test_bits_wrong_counts_the_wrong_bits_where_the_mask_is_one():
    y = np.zeros((2, 2, 3))
    p = np.array([[[0.9, 0.1, 0.6], [0.2, 0.2, 0.2]], [[0.7, 0.4, 0.1], [0.9, 0.9, 0.9]]])
    mask = np.array([[1, 1], [0, 1]])
    np.testing.assert_array_equal(copy_tasks.bits_wrong(p, y, mask), [2, 3])


@pytest.mark.parametrize("task, length", [("sort", 2), ("copy", 0)])
def test_bad_tasks_and_lengths_are_refused(task, length):
    with pytest.raises(ValueError):
        copy_tasks.batch(task, np.random.default_rng(0), 2, length)


# --- Truncation and the synthetic gradient -------------------------------------------------

def test_segments_cover_the_sequence_the_first_1_to_T_long_then_T_each():
    rng = np.random.default_rng(0)
    firsts = set()
    for _ in range(50):
        cuts = recurrent.segments(11, 4, rng)
        assert cuts[0].start == 0 and cuts[-1].stop == 11
        assert all(a.stop == b.start for a, b in zip(cuts[:-1], cuts[1:], strict=True))
        assert all(s.stop - s.start == 4 for s in cuts[1:-1])
        firsts.add(cuts[0].stop)
    assert firsts == {1, 2, 3, 4}


def test_cdni_sees_the_next_T_targets_and_mask_zero_past_the_end():
    x, y, mask = copy_tasks.batch("copy", np.random.default_rng(0), 2, 2)      # 5 steps
    ctx = recurrent.context(y, mask, 3, 3)                         # steps 3, 4 and past it
    assert ctx.shape == (2, 3 * 9)
    rows = ctx.reshape(2, 3, 9)
    np.testing.assert_array_equal(rows[:, :2, :8], y[3:5].transpose(1, 0, 2))
    np.testing.assert_array_equal(rows[:, :2, 8], mask[3:5].T)
    assert not rows[:, 2].any()


def test_m_learns_at_each_cut_from_the_gradient_the_next_segment_backpropagates():
    config = recurrent.Config(method="dni", truncation=2, hidden=6)
    learner = recurrent.Learner(config)
    learner.model.layers[-1].w += 0.1                  # a model that says something
    x, y, mask = copy_tasks.batch("copy", np.random.default_rng(0), 3, 3)     # 7 steps
    seen = []
    learner.model.learn = lambda s, ctx, g: seen.append((s.copy(), g.copy()))
    learner.optimizer.step = lambda: None              # the weights stay as they are
    rng = np.random.default_rng(5)
    learner.train(x, y, mask, rng)
    cuts = recurrent.segments(7, 2, np.random.default_rng(5))
    assert len(seen) == len(cuts) - 1
    lstm = learner.lstm
    h, c = lstm.zero_state(3)
    _, (h, c), _ = lstm.forward(x[:cuts[0].stop], h, c)
    seg = cuts[1]
    p, (h2, c2), stash = lstm.forward(x[seg], h, c)
    dh, dc = learner.guess(h2, c2, None)                           # M at the next cut
    target = np.hstack(lstm.backward(p, y[seg], mask[seg], stash, dh, dc))
    np.testing.assert_allclose(seen[0][0], np.hstack([h, c]))      # the state at the cut
    np.testing.assert_allclose(seen[0][1], target)                  # the bootstrapped target
    assert np.abs(dh).max() > 0                                     # which holds M's guess


def test_a_short_run_with_a_synthetic_gradient_climbs_past_where_truncation_alone_stops():
    # T = 3: a pattern of 2 puts its inputs 3 steps before their answers, beyond BPTT's reach
    def longest(method, steps=2500):
        return recurrent.run(recurrent.Config(method=method, truncation=3, steps=steps))
    bptt, synthetic = longest("bptt"), longest("cdni")
    assert bptt["length"] == 1 and synthetic["length"] >= 2, (bptt, synthetic)
    once, again = longest("dni", 150), longest("dni", 150)
    assert (once["length"], once["climbs"]) == (again["length"], again["climbs"])   # seeded


# --- dni.py --task ---------------------------------------------------------------------------

def test_dni_py_trains_an_lstm_through_time_and_prints_the_curriculum(capsys):
    assert dni.main(["--task", "copy", "--truncation", "2", "--method", "backprop",
                     "--steps", "150", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("dni.py: {'task': 'copy', 'method': 'bptt', 'truncation': 2")
    assert lines[1].startswith("step ") and "length 1 learned" in lines[1]
    assert lines[-1].startswith("dni.py: done (bptt, T = 2): longest length learned 1 in 150")


@pytest.mark.parametrize("argv, message", [
    (["--task", "copy", "--hidden", "3"], "--hidden is not for --task copy"),
    (["--task", "copy", "--data", "mnist"], "--data is not for --task copy"),
    (["--task", "repeat-copy", "--method", "random"], "--method for --task repeat-copy is"),
    (["--task", "copy", "--truncation", "0"], "truncation must be at least 1"),
    (["--truncation", "3"], "--truncation is for --task copy or repeat-copy"),
])
def test_dni_py_refuses_options_that_are_not_for_the_task(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        dni.parse_args(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err


# --- lab/through_time.py ---------------------------------------------------------------------

def test_the_lab_table_runs_every_method_and_keeps_what_a_run_folder_holds(tmp_path, capsys):
    from lab import through_time
    argv = ["--truncations", "2,3", "--seeds", "1", "--steps", "30", "--run-dir",
            str(tmp_path), "--picture", str(tmp_path / "picture.png")]
    assert through_time.main(argv) == 0
    assert len(snapshots.read_metrics(tmp_path / "runs.jsonl")) == 6
    text = (tmp_path / "through-time.md").read_text()
    assert "| method | T = 2 | T = 3 |" in text and text.count("\n| ") == 4
    assert (tmp_path / "through-time.png").stat().st_size > 0
    assert (tmp_path / "picture.png").stat().st_size > 0
    capsys.readouterr()
    assert through_time.main(argv) == 0                      # the runs it holds are kept
    assert "seed 0: length" not in capsys.readouterr().out
    argv += ["--learning-rate", "0.003"]                     # another rate: its own runs
    assert through_time.main(argv) == 0
    assert capsys.readouterr().out.count("seed 0: length") == 6
    rates = [r["learning_rate"] for r in snapshots.read_metrics(tmp_path / "runs.jsonl")]
    assert sorted(rates) == [0.003] * 6 + [through_time.LEARNING_RATE] * 6
    tabled = json.loads((tmp_path / "through-time.json").read_text())
    assert [r["learning_rate"] for r in tabled] == [0.003] * 6           # only its own
    assert "minibatches at 0.003" in (tmp_path / "through-time.md").read_text()
    # only the seeds and truncations asked for are tabled (and titled): T = 2 alone here
    assert through_time.main([*argv[:1], "2", *argv[2:]]) == 0
    assert len(json.loads((tmp_path / "through-time.json").read_text())) == 3
    assert through_time.parse_args([]).picture == "none"       # docs/ only when asked
