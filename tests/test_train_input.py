"""Tests for train_input.py without its peers: the minibatch step with fake synthetic gradients
and a fake sender (with sgd, and with Adam against optimizers.Adam by hand), the controls
(--update frozen and random), divergence, sporadic updates, checkpoints (Adam's state too) and
the command line (every option reaches the trainer's InputConfig).

(The real three-process runs are in test_end_to_end.py.)
"""

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import sgd
import train_input
from conftest import FakeSender
from parts import optimizers

W = 24


@pytest.fixture
def make_trainer(tmp_path, closed_url):
    """make_trainer(**config) -> a trainer on 50 examples, eta 0.1, peers at a closed port,
    with a FakeSender that never holds anything back."""
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, (50, 2)), rng.uniform(-1, 1, 50)
    made = []

    def make(**config):
        t = train_input.InputTrainer(x, y, train_input.InputConfig(**{
            "oracle_url": closed_url, "output_url": closed_url, "learning_rate": 0.1,
            "optimizer": "sgd", "progress_dir": tmp_path, **config}))
        made.append(t)
        t.sender.close(flush_timeout=0)
        t.sender = FakeSender()
        t.sender.pending = lambda: 0
        return t

    yield make
    for t in made:
        t.stop.set()
        t.oracle.close()
        t.output.close()


@pytest.fixture
def trainer(make_trainer):
    return make_trainer()


def test_step_backprops_each_examples_synthetic_gradient_through_its_own_input(trainer):
    idx = np.array([3, 7, 11])
    g = np.random.default_rng(1).standard_normal((3, W))
    trainer.synthetic_gradients = lambda h, y: g
    w, b = trainer.layers[0].w.copy(), trainer.layers[0].b.copy()
    assert trainer.step(idx) is True
    # By hand: h = sigmoid(x w + b); dL/dz = g * h (1 - h); dL/dw = mean over rows of x^T dL/dz.
    x = trainer.x[idx]
    h = sgd.Sigmoid.f(x @ w + b)
    delta = g * h * (1 - h)
    np.testing.assert_allclose(trainer.layers[0].w, w - 0.1 * x.T @ delta / 3, rtol=1e-12)
    np.testing.assert_allclose(trainer.layers[0].b, b - 0.1 * delta.mean(axis=0), rtol=1e-12)
    i_sent, h_sent, y_sent = trainer.sender.rows()
    np.testing.assert_array_equal(i_sent, idx)
    np.testing.assert_allclose(h_sent, h, rtol=1e-12)          # activations before the update
    np.testing.assert_array_equal(y_sent, trainer.y[idx])


def test_adam_moves_layer_1_as_optimizers_adam_does_by_hand(make_trainer):
    trainer = make_trainer(optimizer="adam")
    g = np.random.default_rng(2).standard_normal((3, W))
    trainer.synthetic_gradients = lambda h, y: g
    layer = copy.deepcopy(trainer.layers[0])
    adam = optimizers.Adam([layer], 0.1)
    for idx in ([3, 7, 11], [0, 1, 2]):                        # two steps: moments carry over
        assert trainer.step(np.array(idx)) is True
        layer.feed_forward(trainer.x[idx])
        layer.backprop(g)
        adam.step()
    assert trainer.layers[0].w.tobytes() == layer.w.tobytes()
    assert trainer.layers[0].b.tobytes() == layer.b.tobytes()
    assert trainer.optimizer.t == 2 and trainer.updates == 2


def test_frozen_never_asks_for_gradients_and_leaves_layer_1_as_it_was(trainer):
    trainer.config.update = "frozen"
    trainer.synthetic_gradients = lambda h, y: pytest.fail("asked for synthetic gradients")
    w, b = trainer.layers[0].w.tobytes(), trainer.layers[0].b.tobytes()
    state = trainer.rng.bit_generator.state
    for k in range(5):
        assert trainer.step(np.array([k, k + 5])) is True
    assert (trainer.layers[0].w.tobytes(), trainer.layers[0].b.tobytes()) == (w, b)
    assert trainer.skipped == 5 and trainer.updates == 0 and trainer.examples == 10
    assert trainer.rng.bit_generator.state == state             # the example order is unchanged
    assert len(trainer.sender.puts) == 5                        # layers 2-3 still get every one


def test_random_rows_have_the_synthetic_rows_norms_and_not_their_directions(trainer):
    trainer.config.update = "random"
    g = np.random.default_rng(3).standard_normal((4, W)) * [[1.0], [1e-3], [0.0], [50.0]]
    asked = []
    trainer.synthetic_gradients = lambda h, y: asked.append(len(h)) or g
    used, backprop = [], trainer.layers[0].backprop
    trainer.layers[0].backprop = lambda dL_dh: used.append(dL_dh.copy()) or backprop(dL_dh)
    assert trainer.step(np.array([1, 2, 3, 4])) is True
    r = used[0]                                                 # (4, 24): what layer 1 got
    assert asked == [4] and r.shape == g.shape                  # the oracle was asked as usual
    np.testing.assert_allclose(np.linalg.norm(r, axis=1), np.linalg.norm(g, axis=1),
                               rtol=1e-12, atol=0)
    assert not r[2].any()                                       # a zero row stays zero
    for k in (0, 1, 3):
        cosine = r[k] @ g[k] / (np.linalg.norm(r[k]) * np.linalg.norm(g[k]))
        assert abs(cosine) < 0.9, k                             # not parallel: a new direction
    trainer.step(np.array([1, 2, 3, 4]))
    assert not np.allclose(used[1], r)                          # a fresh draw every minibatch


def test_synthetic_mode_draws_nothing_from_the_rng(trainer):
    trainer.synthetic_gradients = lambda h, y: np.ones_like(h)
    state = trainer.rng.bit_generator.state
    trainer.step(np.array([1, 2]))
    assert trainer.rng.bit_generator.state == state


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # overflow is the point
def test_divergence_stops_with_the_last_finite_weights(trainer):
    trainer.optimizer.learning_rate = 1e308                    # the optimizer holds eta
    trainer.synthetic_gradients = lambda h, y: np.full_like(h, 1e308)
    w = trainer.layers[0].w.copy()
    assert trainer.step(np.array([0, 1])) is False
    assert trainer.diverged and trainer.stop.is_set()
    np.testing.assert_array_equal(trainer.layers[0].w, w)


def test_update_probability_zero_never_asks_for_gradients(trainer):
    trainer.config.update_probability = 0.0
    trainer.synthetic_gradients = lambda h, y: pytest.fail("asked for synthetic gradients")
    w = trainer.layers[0].w.copy()
    for k in range(5):
        assert trainer.step(np.array([k])) is True
    np.testing.assert_array_equal(trainer.layers[0].w, w)
    assert trainer.skipped == 5 and trainer.updates == 0 and trainer.examples == 5


def test_update_probability_skips_about_the_right_share(trainer):
    trainer.config.update_probability = 0.2
    trainer.synthetic_gradients = lambda h, y: np.zeros_like(h)
    for k in range(1000):
        trainer.step(np.array([k % 50]))
    assert 150 <= trainer.updates <= 250                        # 200 expected, sd ~13


@pytest.mark.parametrize("argv", [["--batch-size", "0"], ["--learning-rate", "0"],
                                  ["--update-probability", "1.5"], ["--duration", "-1"],
                                  ["--until-trained", "0"],
                                  ["--snapshot-interval", "0"], ["--max-unsent", "0"],
                                  ["--optimizer", "rmsprop"], ["--update", "sometimes"],
                                  ["--report-every", "nan"], ["--report-every", "-1"]])
def test_parse_args_refuses_bad_values(argv):
    with pytest.raises(SystemExit):
        train_input.parse_args(argv)


def test_back_pressure_pauses_below_the_examples_it_streams(make_trainer, caplog):
    """The sender holds one row per example, so with 50 examples at most 50 wait to be sent:
    --max-unsent 5,000 could never pause layer 1 while its peer is down. It pauses at half."""
    with caplog.at_level("INFO", logger="train_input"):
        capped = make_trainer()
    assert capped.max_unsent == 25
    assert "pausing at 25 unsent examples, not --max-unsent's 5000" in caplog.text
    assert make_trainer(max_unsent=10).max_unsent == 10             # below half: as given
    waiting = iter([26, 26, 25])                                     # then room: it goes on
    capped.sender.pending = lambda: next(waiting)
    capped.wait_for_room()
    assert next(waiting, None) is None                              # it asked until room


def test_checkpoint_round_trip_and_refusal(trainer, tmp_path, closed_url):
    path = tmp_path / "input.npz"
    trainer.synthetic_gradients = lambda h, y: np.ones_like(h)
    trainer.step(np.array([1, 2]))
    trainer.save_checkpoint(path)
    other = train_input.InputTrainer(trainer.x, trainer.y, dataclasses.replace(
        trainer.config, seed=5, checkpoint=path, resume=True))
    try:
        np.testing.assert_array_equal(other.layers[0].w, trainer.layers[0].w)
        assert (other.examples, other.updates) == (2, 1)
    finally:
        other.sender.close(flush_timeout=0)
    with pytest.raises(ValueError, match="written with --optimizer sgd; this run uses adam"):
        train_input.InputTrainer(trainer.x, trainer.y, dataclasses.replace(
            trainer.config, optimizer="adam", checkpoint=path, resume=True))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        train_input.InputTrainer(trainer.x, trainer.y, dataclasses.replace(
            trainer.config, checkpoint=path, resume=True))


def test_checkpoint_keeps_adams_state(make_trainer, tmp_path):
    path = tmp_path / "adam.npz"
    trainer = make_trainer(optimizer="adam")
    trainer.synthetic_gradients = lambda h, y: np.ones_like(h)
    for k in range(3):
        trainer.step(np.array([k, k + 1]))
    trainer.save_checkpoint(path)
    resumed = make_trainer(optimizer="adam", seed=5, checkpoint=path, resume=True)
    resumed.synthetic_gradients = trainer.synthetic_gradients
    assert resumed.optimizer.t == trainer.optimizer.t == 3
    for t in (trainer, resumed):                                # as if it had never stopped
        t.step(np.array([7, 8]))
    assert resumed.layers[0].w.tobytes() == trainer.layers[0].w.tobytes()
    assert resumed.layers[0].b.tobytes() == trainer.layers[0].b.tobytes()
    with pytest.raises(ValueError, match="written with --optimizer adam; this run uses sgd"):
        make_trainer(checkpoint=path, resume=True)


# Every option that configures the trainer, with a value that is not its default:
# flag -> (argument on the command line, InputConfig field, the field's value).
# (--data-dir and --examples are main's, --epochs, --duration and --until-trained are run's; they are not trainer
# settings, and --original only changes the defaults.)
OPTIONS = {
    "--oracle-url": ("http://127.0.0.1:1", "oracle_url", "http://127.0.0.1:1"),
    "--output-url": ("http://127.0.0.1:2", "output_url", "http://127.0.0.1:2"),
    "--width": ("32", "width", 32),
    "--sizes": ("2-8-32", "sizes", (2, 8, 32)),         # its last width is --width's here
    "--learning-rate": ("0.5", "learning_rate", 0.5),
    "--optimizer": ("sgd", "optimizer", "sgd"),
    "--update": ("random", "update", "random"),
    "--batch-size": ("7", "batch_size", 7),
    "--synthetic-gradients": ("remote", "mode", "remote"),
    "--refresh-every": ("0.7", "refresh_every", 0.7),
    "--wire": ("binary", "wire", "binary"),
    "--token": ("s3cret", "token", "s3cret"),
    "--update-probability": ("0.25", "update_probability", 0.25),
    "--max-unsent": ("123", "max_unsent", 123),
    "--max-ahead": ("250", "max_ahead", 250),
    "--until-url": ("http://127.0.0.1:9", "until_url", "http://127.0.0.1:9"),
    "--progress-dir": ("elsewhere/progress", "progress_dir", Path("elsewhere/progress")),
    "--snapshot-interval": ("3", "snapshot_interval", 3),
    "--seed": ("42", "seed", 42),
    "--checkpoint": ("ck.npz", "checkpoint", "ck.npz"),
    "--checkpoint-interval": ("4.5", "checkpoint_interval", 4.5),
    "--resume": (None, "resume", True),                 # a switch: no argument
    "--metrics": ("m.jsonl", "metrics_path", Path("m.jsonl")),
    "--report-every": ("9.5", "report_every", 9.5),
}
NOT_TRAINER_OPTIONS = {"data_dir", "examples", "epochs", "duration", "until_trained",
                       "original", "data", "image_dir"}


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
    # (--colocated, which needs the local mode, has a test of its own below; the activation
    # follows --data: tests/test_classify.py)
    # (--delay, --network and --splits, which need the local mode, are tested below)
    assert {f.name for f in dataclasses.fields(config)} == \
        {f for _, f, _ in OPTIONS.values()} | {"colocated", "activation"} | COUNTED
    assert set(vars(args)) - NOT_TRAINER_OPTIONS == {flag[2:].replace("-", "_")
                                                    for flag in OPTIONS} | {"colocated"} | COUNTED


COUNTED = {"delay", "network", "splits"}


def test_counting_steps_takes_the_delay_and_the_place_in_the_network():
    args = train_input.parse_args(["--delay", "2", "--network", "2-8-32-1", "--splits", "2",
                                   "--sizes", "2-8-32", "--colocated"])
    config = train_input.config_from_args(args)
    assert (config.delay, config.network, config.splits) == (2, (2, 8, 32, 1), (2,))
    for wrong in (["--splits", "1", "--colocated"],
                  ["--synthetic-gradients", "remote", "--splits", "2", "--colocated"],
                  ["--splits", "2"]):                     # an oracle.py counts no steps
        with pytest.raises(SystemExit):
            train_input.parse_args(["--delay", "2", "--network", "2-8-32-1",
                                    "--sizes", "2-8-32", *wrong])


def test_colocated_takes_the_model_from_the_output_trainer_in_the_local_mode():
    config = train_input.config_from_args(train_input.parse_args(
        ["--colocated", "--output-url", "http://127.0.0.1:7", "--oracle-url",
         "http://127.0.0.1:8"]))
    assert config.colocated is True and train_input.InputConfig().colocated is False
    t = train_input.InputTrainer(np.zeros((4, 2)), np.zeros(4), config)
    try:
        assert t.oracle.base_url == "http://127.0.0.1:7"          # GET /weights goes there
        assert t.local is not None and t.local.oracle is t.oracle
    finally:
        t.sender.close(flush_timeout=0)
    with pytest.raises(SystemExit):
        train_input.parse_args(["--colocated", "--synthetic-gradients", "remote"])
    with pytest.raises(SystemExit):
        train_input.parse_args(["--sizes", "3-8-8"])                # must start at the inputs


def test_several_layers_step_by_backprop_of_the_synthetic_gradient_through_all(make_trainer,
                                                                              tmp_path):
    """--sizes 2-5-4: h is the second layer's output; g goes back through both, by hand."""
    trainer = make_trainer(sizes=(2, 5, 4), width=4)
    idx = np.array([3, 7, 11])
    g = np.random.default_rng(1).standard_normal((3, 4))
    trainer.synthetic_gradients = lambda h, y: g
    (w1, b1), (w2, b2) = [(layer.w.copy(), layer.b.copy()) for layer in trainer.layers]
    assert trainer.step(idx) is True
    x = trainer.x[idx]
    a1 = sgd.Sigmoid.f(x @ w1 + b1)                             # (3, 5)
    h = sgd.Sigmoid.f(a1 @ w2 + b2)                             # (3, 4)
    delta2 = g * h * (1 - h)
    delta1 = (delta2 @ w2.T) * a1 * (1 - a1)
    np.testing.assert_allclose(trainer.layers[1].w, w2 - 0.1 * a1.T @ delta2 / 3, rtol=1e-12)
    np.testing.assert_allclose(trainer.layers[1].b, b2 - 0.1 * delta2.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(trainer.layers[0].w, w1 - 0.1 * x.T @ delta1 / 3, rtol=1e-12)
    np.testing.assert_allclose(trainer.layers[0].b, b1 - 0.1 * delta1.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(trainer.sender.rows()[1], h, rtol=1e-12)    # h goes up
    path = tmp_path / "two.npz"                                 # and a checkpoint keeps both
    trainer.save_checkpoint(path)
    resumed = make_trainer(sizes=(2, 5, 4), width=4, seed=9, checkpoint=path, resume=True)
    for a, b in zip(resumed.layers, trainer.layers, strict=True):
        assert (a.w.tobytes(), a.b.tobytes()) == (b.w.tobytes(), b.b.tobytes())


def test_config_defaults_are_the_command_lines(monkeypatch):
    monkeypatch.delenv("SYNTHGRAD_TOKEN", raising=False)
    assert train_input.config_from_args(train_input.parse_args([])) == train_input.InputConfig()
    original = train_input.config_from_args(train_input.parse_args(["--original"]))
    assert (original.optimizer, original.learning_rate) == ("sgd", 0.001)


# --- a peer that never answers ---------------------------------------------------------------

class SilentOutputTrainer:
    """A fake --colocated output trainer on 127.0.0.1, port 0: it answers GET /status and GET
    /weights (a linear conditioned model of width w), then accepts POST /training_example and
    never answers it, as a stalled peer would."""

    def __init__(self, width):
        import http.server
        import json
        import threading

        import synthgrad
        weights = [np.zeros((width + 1, width)), np.zeros(width)]
        answers = {synthgrad.STATUS: {"role": "output_trainer", "run": "silent"},
                   synthgrad.WEIGHTS: synthgrad.encode_weights(weights, True, 1)}
        self.release = release = threading.Event()
        self.posts = posts = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                body = json.dumps(answers[self.path]).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                posts.append(self.path)
                release.wait(60)                        # never answers while the test runs

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_peer_that_never_answers_cannot_hold_it_past_its_duration(tmp_path):
    import subprocess
    import sys
    import time

    import generate
    generate.main(["--count", "2000", "--out-dir", str(tmp_path / "data"), "--no-plot"])
    peer = SilentOutputTrainer(width=4)
    duration = 3.0
    argv = [sys.executable, str(Path(train_input.__file__)), "--data-dir", str(tmp_path / "data"),
            "--colocated", "--width", "4", "--output-url", peer.url, "--max-unsent", "50",
            "--progress-dir", str(tmp_path / "progress"), "--duration", str(duration),
            "--report-every", "1"]
    try:
        t0 = time.monotonic()
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        took = time.monotonic() - t0
    finally:
        peer.close()
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert peer.posts                                       # it did try to hand examples off
    assert "stopped after waiting" in log, log              # says how long the peer held it
    # start-up (~1-2 s of imports idle) + the duration + at most CLOSE_FLUSH_S for the last
    # flush; without the clock it waited for the peer for ever. The 10 s for start-up holds
    # on a machine at a quarter of idle speed, and is far from "for ever".
    assert took < duration + train_input.CLOSE_FLUSH_S + 10, (took, log)
    assert (tmp_path / "progress" / "layer1_final.npz").exists()   # its work is still saved


class FakeOutputStatus:
    """An output trainer's client whose /status says `run` and the next of `received` (the
    last one again once they are used up)."""

    def __init__(self, *received, run="r"):
        self.received, self.run, self.calls, self.closed = list(received), run, 0, False

    def wait_until_ready(self, stop=None):
        return True

    def status(self):
        self.calls += 1
        count = self.received.pop(0) if len(self.received) > 1 else self.received[0]
        return {"run": self.run, "examples_received": count}

    def close(self):
        self.closed = True


@pytest.mark.parametrize("received, alone", [((500, 500), True), ((500, 1_500), False)])
def test_by_hand_it_refuses_to_share_an_output_trainer_another_streams_to(make_trainer, received,
                                                                          alone):
    trainer = make_trainer(progress_dir=None, output_url="http://127.0.0.1:9/")
    trainer.output.close()
    trainer.output = FakeOutputStatus(*received)
    if alone:                                  # a restart after the last sender stopped: fine
        assert trainer.find_progress_dir() is True
        assert trainer.snapshotter.folder.name == "r"
    else:                                      # two runs' h mixed, one's layer 1 overwritten
        with pytest.raises(SystemExit, match=r"another input trainer is streaming to the output "
                           r"trainer at http://127.0.0.1:9/ \(1,000 examples in 1 s before"):
            trainer.find_progress_dir()
    assert trainer.output.calls >= 2           # it asked twice, a second apart


def test_by_hand_it_follows_an_output_trainer_restarted_from_scratch_to_its_new_run(
        make_trainer, caplog):
    import logging
    import time
    trainer = make_trainer(progress_dir=None)
    trainer.output.close()
    trainer.output = FakeOutputStatus(0, run="20261207-100000")
    caplog.set_level(logging.INFO, logger="train_input")
    assert train_input.pacing.join_run(trainer.output, trainer.stop, trainer.snapshotter,
                                       "http://127.0.0.1:9/", wait=0.01, follow_every=0.01)
    assert trainer.snapshotter.folder == train_input.snapshots.PROGRESS / "20261207-100000"
    trainer.output.run = "20261207-100007"     # Ctrl-C'd and started again: a new run
    for _ in range(3000):                      # bound the polls waited for, not the seconds
        if "restarted as run 20261207-100007" in caplog.text:     # said after the folder moved
            break
        time.sleep(0.01)
    assert trainer.snapshotter.folder == train_input.snapshots.PROGRESS / "20261207-100007"
    assert "the output trainer restarted as run 20261207-100007" in caplog.text
    calls = trainer.output.calls
    trainer.output.run = "../elsewhere"        # not a folder's name: not followed
    for _ in range(3000):
        if trainer.output.calls > calls + 3:
            break
        time.sleep(0.01)
    assert trainer.snapshotter.folder.name == "20261207-100007"


@pytest.mark.parametrize("run", [None, "", ".", "..", "../x", "a/b", 7])
def test_by_hand_a_run_that_is_not_a_folder_name_is_refused_in_one_line(make_trainer, run):
    trainer = make_trainer(progress_dir=None)
    trainer.output.close()
    trainer.output = FakeOutputStatus(0, run=run)
    with pytest.raises(SystemExit, match="names no run folder in its /status"):
        trainer.find_progress_dir()


class Refusing:
    """An oracle client whose estimate_gradients raises PeerError e (after counting the call)."""

    def __init__(self, e):
        self.e, self.calls = e, 0

    def estimate_gradients(self, h, y):
        self.calls += 1
        raise self.e

    def wait_until_ready(self, stop=None):
        return self.calls < 100 and not stop.is_set()      # bounded: never asks for ever

    def close(self):
        pass


def protocol_error():
    """The PeerError a client raises for an answer it cannot decode (its cause kept)."""
    try:
        raise train_input.synthgrad.PeerError("oracle at U sent a bad answer: shapes") from \
            train_input.synthgrad.ProtocolError("shapes")
    except train_input.synthgrad.PeerError as e:
        return e


@pytest.mark.parametrize("error", [
    train_input.synthgrad.PeerError("oracle at U answered 400: expected shape (n, 24)", 400),
    protocol_error()], ids=["refused", "bad answer"])
def test_remote_mode_an_oracle_that_refuses_or_answers_what_it_cannot_use_ends_it(make_trainer,
                                                                                 error):
    trainer = make_trainer(mode="remote")
    trainer.oracle.close()
    trainer.oracle = Refusing(error)
    with pytest.raises(SystemExit, match=r"train_input.py: the oracle refuses its requests \("
                                         r"oracle at U"):
        trainer.step(np.array([0, 1, 2]))
    assert trainer.oracle.calls == 1                 # asked once, not for ever


def test_remote_mode_an_oracle_that_is_down_is_waited_for(make_trainer):
    trainer = make_trainer(mode="remote")
    trainer.oracle.close()
    trainer.oracle = Refusing(train_input.synthgrad.PeerError("oracle at U: refused"))
    trainer.stop.set()                               # then stopped while it waits
    assert trainer.step(np.array([0, 1, 2])) is False


def test_an_output_trainer_that_took_none_of_the_examples_and_refuses_them_ends_it(trainer):
    trainer.sender.counts["refused"] = trainer.sender.refused_in_a_row = 500
    trainer.sender.refusal = "output trainer at U answered 400: x: expected shape (500, 24)"
    with pytest.raises(SystemExit, match=r"took none of the examples sent and refuses them "
                                         r"\(output trainer at U answered 400"):
        trainer.hand_off(np.array([0, 1]), np.zeros((2, W)))
    trainer.sender.counts["sent"] = 1000             # it took some: a refusal is not the end
    trainer.hand_off(np.array([0, 1]), np.zeros((2, W)))


def test_an_output_trainer_that_refuses_every_example_since_it_took_some_ends_it(trainer):
    """Restarted by hand with another --width mid-run, it refuses all that follows."""
    trainer.sender.counts["sent"] = 1000
    trainer.sender.refused_in_a_row = train_input.REFUSED_IN_A_ROW - 1
    trainer.sender.refusal = "output trainer at U answered 400: x: expected shape (10, 16)"
    trainer.hand_off(np.array([0, 1]), np.zeros((2, W)))          # not yet
    trainer.sender.refused_in_a_row += 1
    with pytest.raises(SystemExit, match=r"took none of the examples since it last took any "
                                         r"\(5,000 in a row\) and refuses them \(output trainer "
                                         r"at U answered 400: x: expected shape \(10, 16\)\)"):
        trainer.hand_off(np.array([0, 1]), np.zeros((2, W)))


def test_a_resumed_trainer_reports_the_rate_of_what_it_streamed_not_of_its_whole_run(
        make_trainer, tmp_path):
    """The first report after a restart divided every example of the run (restored from the
    checkpoint) by one report's interval: "1,037,000 examples (1,036,887/s)"."""
    from parts import snapshots
    t = make_trainer(update="frozen", metrics_path=tmp_path / "m.jsonl")
    t.oracle.wait_until_ready = lambda stop: True
    t.examples = 1_000_000                                  # as resume() restores it
    t.run(epochs=20)
    first, last = snapshots.read_metrics(tmp_path / "m.jsonl")
    assert last["examples"] == 1_001_000                    # 1,000 streamed here: the rate
    rate_times_time = last["examples_per_s"] * (last["time"] - first["time"])
    assert rate_times_time < 500_000                        # near 1,000, not 1,001,000
