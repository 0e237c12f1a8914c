"""Tests for train_input.py without its peers: the minibatch step with fake synthetic gradients
and a fake sender, divergence, sporadic updates, checkpoints and the command line (every option
reaches the trainer's InputConfig).

(The real three-process runs are in test_end_to_end.py.)
"""

import dataclasses
from pathlib import Path

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
    t = train_input.InputTrainer(x, y, train_input.InputConfig(
        oracle_url=closed_url, output_url=closed_url, learning_rate=0.1, progress_dir=tmp_path))
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
    trainer.config.learning_rate = 1e308
    trainer.synthetic_gradients = lambda h, y: np.full_like(h, 1e308)
    w = trainer.layer.w.copy()
    assert trainer.step(np.array([0, 1])) is False
    assert trainer.diverged and trainer.stop.is_set()
    np.testing.assert_array_equal(trainer.layer.w, w)


def test_update_probability_zero_never_asks_for_gradients(trainer):
    trainer.config.update_probability = 0.0
    trainer.synthetic_gradients = lambda h, y: pytest.fail("asked for synthetic gradients")
    w = trainer.layer.w.copy()
    for k in range(5):
        assert trainer.step(np.array([k])) is True
    np.testing.assert_array_equal(trainer.layer.w, w)
    assert trainer.skipped == 5 and trainer.updates == 0 and trainer.examples == 5


def test_update_probability_skips_about_the_right_share(trainer):
    trainer.config.update_probability = 0.2
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
    other = train_input.InputTrainer(trainer.x, trainer.y, dataclasses.replace(
        trainer.config, seed=5, checkpoint=path, resume=True))
    try:
        np.testing.assert_array_equal(other.layer.w, trainer.layer.w)
        assert (other.examples, other.updates) == (2, 1)
    finally:
        other.sender.close(flush_timeout=0)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        train_input.InputTrainer(trainer.x, trainer.y, dataclasses.replace(
            trainer.config, checkpoint=path, resume=True))


# Every option that configures the trainer, with a value that is not its default:
# flag -> (argument on the command line, InputConfig field, the field's value).
# (--data-dir is main's, --epochs and --duration are run's; they are not trainer settings.)
OPTIONS = {
    "--oracle-url": ("http://127.0.0.1:1", "oracle_url", "http://127.0.0.1:1"),
    "--output-url": ("http://127.0.0.1:2", "output_url", "http://127.0.0.1:2"),
    "--learning-rate": ("0.5", "learning_rate", 0.5),
    "--batch-size": ("7", "batch_size", 7),
    "--synthetic-gradients": ("local", "mode", "local"),
    "--refresh-every": ("0.7", "refresh_every", 0.7),
    "--wire": ("binary", "wire", "binary"),
    "--token": ("s3cret", "token", "s3cret"),
    "--update-probability": ("0.25", "update_probability", 0.25),
    "--max-unsent": ("123", "max_unsent", 123),
    "--progress-dir": ("elsewhere/progress", "progress_dir", Path("elsewhere/progress")),
    "--snapshot-interval": ("3", "snapshot_interval", 3),
    "--seed": ("42", "seed", 42),
    "--checkpoint": ("ck.npz", "checkpoint", "ck.npz"),
    "--checkpoint-interval": ("4.5", "checkpoint_interval", 4.5),
    "--resume": (None, "resume", True),                 # a switch: no argument
    "--metrics": ("m.jsonl", "metrics_path", Path("m.jsonl")),
    "--report-every": ("9.5", "report_every", 9.5),
}
NOT_TRAINER_OPTIONS = {"data_dir", "epochs", "duration"}


def test_config_from_args_carries_every_option_into_its_field():
    argv = [word for flag, (value, _, _) in OPTIONS.items()
            for word in ([flag] if value is None else [flag, value])]
    args = train_input.parse_args(argv)
    config = train_input.config_from_args(args)
    default = train_input.InputConfig()
    for flag, (_, field, value) in OPTIONS.items():
        assert getattr(config, field) == value, flag
        assert getattr(default, field) != value, f"{flag}: pick a value that is not the default"
    # nothing left out: every field comes from an option, every trainer option reaches a field
    assert {f.name for f in dataclasses.fields(config)} == {f for _, f, _ in OPTIONS.values()}
    assert set(vars(args)) - NOT_TRAINER_OPTIONS == {flag[2:].replace("-", "_")
                                                    for flag in OPTIONS}


def test_config_defaults_are_the_command_lines(monkeypatch):
    monkeypatch.delenv("SYNTHGRAD_TOKEN", raising=False)
    assert train_input.config_from_args(train_input.parse_args([])) == train_input.InputConfig()
