"""Tests for train_input.py without its peers: the minibatch step with fake synthetic gradients
and a fake sender, divergence, sporadic updates and the command line.

(The real three-process runs are in test_end_to_end.py.)
"""

import numpy as np
import pytest

import sgd
import train_input
from conftest import FakeSender

W = 24


@pytest.fixture
def trainer(tmp_path, closed_url):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (50, 2)), rng.uniform(-1, 1, 50)
    t = train_input.InputTrainer(x, y, closed_url, closed_url, learning_rate=0.1,
                                 progress_dir=tmp_path)
    t.sender.close(flush_timeout=0)
    t.sender = FakeSender()
    t.sender.pending = lambda: 0
    yield t
    t.stop.set()
    t.oracle.close()
    t.output.close()


def test_step_backprops_each_examples_synthetic_gradient_through_its_own_input(trainer):
    idx = np.array([3, 7, 11])
    g = np.random.default_rng(1).standard_normal((3, W))
    trainer.synthetic_gradients = lambda h, y: g
    w, b = trainer.layer.w.copy(), trainer.layer.b.copy()
    assert trainer.step(idx) is True
    # By hand: h = sigmoid(x w + b); dL/dz = g * h (1 - h); dL/dw = mean over rows of x^T dL/dz.
    x = trainer.x[idx]
    h = sgd.Sigmoid.f(x @ w + b)
    delta = g * h * (1 - h)
    np.testing.assert_allclose(trainer.layer.w, w - 0.1 * x.T @ delta / 3, rtol=1e-12)
    np.testing.assert_allclose(trainer.layer.b, b - 0.1 * delta.mean(axis=0), rtol=1e-12)
    i_sent, h_sent, y_sent = trainer.sender.rows()
    np.testing.assert_array_equal(i_sent, idx)
    np.testing.assert_allclose(h_sent, h, rtol=1e-12)          # activations before the update
    np.testing.assert_array_equal(y_sent, trainer.y[idx])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # overflow is the point
def test_divergence_stops_with_the_last_finite_weights(trainer):
    trainer.learning_rate = 1e308
    trainer.synthetic_gradients = lambda h, y: np.full_like(h, 1e308)
    w = trainer.layer.w.copy()
    assert trainer.step(np.array([0, 1])) is False
    assert trainer.diverged and trainer.stop.is_set()
    np.testing.assert_array_equal(trainer.layer.w, w)


def test_update_probability_zero_never_asks_for_gradients(trainer):
    trainer.update_probability = 0.0
    trainer.synthetic_gradients = lambda h, y: pytest.fail("asked for synthetic gradients")
    w = trainer.layer.w.copy()
    for k in range(5):
        assert trainer.step(np.array([k])) is True
    np.testing.assert_array_equal(trainer.layer.w, w)
    assert trainer.skipped == 5 and trainer.updates == 0 and trainer.examples == 5


def test_update_probability_skips_about_the_right_share(trainer):
    trainer.update_probability = 0.2
    trainer.synthetic_gradients = lambda h, y: np.zeros_like(h)
    for k in range(1000):
        trainer.step(np.array([k % 50]))
    assert 150 <= trainer.updates <= 250                        # 200 expected, sd ~13


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--learning-rate", "0"],
                                  ["--update-probability", "1.5"], ["--duration", "-1"],
                                  ["--snapshot-interval", "0"], ["--max-unsent", "0"]])
def test_parse_args_refuses_bad_values(argv):
    with pytest.raises(SystemExit):
        train_input.parse_args(argv)


def test_checkpoint_round_trip_and_refusal(trainer, tmp_path, closed_url):
    path = tmp_path / "input.npz"
    trainer.synthetic_gradients = lambda h, y: np.ones_like(h)
    trainer.step(np.array([1, 2]))
    trainer.save_checkpoint(path)
    other = train_input.InputTrainer(trainer.x, trainer.y, closed_url, closed_url,
                                     progress_dir=tmp_path, seed=5, checkpoint=path,
                                     resume=True)
    try:
        np.testing.assert_array_equal(other.layer.w, trainer.layer.w)
        assert (other.examples, other.updates) == (2, 1)
    finally:
        other.sender.close(flush_timeout=0)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        train_input.InputTrainer(trainer.x, trainer.y, closed_url, closed_url,
                                 progress_dir=tmp_path, checkpoint=path, resume=True)
