"""Tests for boundary.py: the co-located synthetic-gradient model is the oracle's algorithm.

It is checked against oracle.py itself (a real Oracle with its Keras model, given the same
starting weights and the same (h, y, dL/dh)): the same defaults, the same quality measure
before learning, the same weights after a pass, read through model_forward. And its own
mechanics: a pass is epochs_per_pass epochs of minibatches, a non-finite step is refused, a
checkpoint brings back the model and its Adam state.
"""

import copy

import numpy as np
import pytest

import synthgrad
from parts import boundary, checkpoint

W = 24


def batch(n=256, seed=0, width=W):
    """h (n, width) in (0, 1) as sigmoid outputs are, y (n,), true gradients g (n, width)."""
    rng = np.random.default_rng(seed)
    return (rng.uniform(0, 1, (n, width)), rng.uniform(-1, 1, n),
            0.1 * rng.standard_normal((n, width)))


def colocated(width=W, seed=0, **settings):
    return boundary.SyntheticGradientModel.for_boundary(width, seed, **settings)


def test_defaults_are_the_oracles():
    import oracle
    assert oracle.DEFAULTS.items() >= boundary.DEFAULTS.items()   # one definition
    assert oracle.DEFAULTS["optimizer"] == "adam"
    model = colocated()
    shapes = [w.shape for w in model.published]
    assert shapes == [(W + 1, 12), (12,), (12, W), (W,)]           # cDNI: h and y in
    assert not model.published[2].any() and not model.published[3].any()   # zero last layer
    assert np.array_equal(model.predict(*batch(5)[:2]), np.zeros((5, W)))


def test_a_pass_learns_what_the_oracle_learns_from_the_same_gradients():
    """256 examples, one minibatch: the oracle's pass (Keras fit, 2 epochs of one batch) and the
    co-located model's pass (2 epochs of one batch, numpy) are the same two Adam steps."""
    import oracle
    h, y, g = batch()
    ours = colocated(seed=3, zero_init=False)       # nonzero: a real test
    o = oracle.Oracle(width=W, max_examples=256, seed=3)
    try:
        o.model.set_weights([w.astype(np.float32) for w in ours.published])
        o.publish()
        inputs = np.column_stack([h, y])
        before = ours.predict(h, y)
        np.testing.assert_allclose(boundary.model_forward(o.weights, inputs), before,
                                   rtol=1e-6, atol=1e-7)                       # same start
        o.receive(np.arange(256), h, g, y)                      # measured, then held
        assert o.train_pass() is True
        quality = boundary.Quality(boundary.DEFAULTS["quality_window"], synthgrad.MAX_CHUNK)
        quality.add(ours.predict(h, y), g)                      # measured as a stage does
        ours.learn_pass(h, y, g)
        assert ours.version == 2 == o.counts["steps"]            # two steps each
        after = boundary.model_forward(o.weights, inputs)          # the oracle's answers now
        assert np.abs(after - before).max() > 1e-4               # it did learn something
        np.testing.assert_allclose(ours.predict(h, y), after, rtol=2e-4, atol=2e-6)
        for mine, theirs in zip(ours.published, o.weights, strict=True):
            np.testing.assert_allclose(mine, theirs, rtol=2e-4, atol=2e-6)
        q_ours = quality.fields()
        q_oracle = o.status()["synthetic_gradient_quality"]
        assert set(q_ours) == set(q_oracle)
        for key in q_ours:
            assert q_ours[key] == pytest.approx(q_oracle[key], rel=1e-5), key
    finally:
        o.stop_training()


def test_a_pass_is_epochs_of_shuffled_minibatches_of_the_chunk():
    h, y, g = batch(n=600, seed=1)
    model = colocated(batch_size=256, epochs_per_pass=2)
    replica, rng = copy.deepcopy(model), copy.deepcopy(model.rng)
    model.learn_pass(h, y, g)
    assert model.version == 6                                    # 2 epochs x (256, 256, 88)
    for _ in range(2):                                           # the same pass by hand
        order = rng.permutation(600)
        for k in range(0, 600, 256):
            rows = order[k:k + 256]
            replica.learn(h[rows], y[rows], g[rows])
    for mine, hand in zip(model.published, replica.weights(), strict=True):
        assert mine.tobytes() == hand.tobytes()
    assert model.last_loss > 0


def test_published_weights_are_copies_and_a_non_finite_pass_is_refused():
    h, y, g = batch(n=50)
    model = colocated()
    model.learn_pass(h, y, g)
    published = [w.copy() for w in model.published]
    assert all(a is not b for a, b in zip(model.published, model.weights(), strict=True))
    g_bad = g.copy()
    g_bad[3, 4] = np.inf
    with np.errstate(all="ignore"):
        model.learn_pass(h, y, g_bad)
    assert model.diverged
    for kept, before in zip(model.published, published, strict=True):   # the last finite ones stay
        assert kept.tobytes() == before.tobytes()
    model.learn_pass(h, y, g)                                         # and it learns no more
    assert model.published[0].tobytes() == published[0].tobytes()


def test_a_checkpoint_brings_back_the_model_and_its_adam_state(tmp_path):
    h, y, g = batch(n=300)
    model = colocated()
    model.learn_pass(h, y, g)
    path = tmp_path / "x.npz"
    checkpoint.save(path, {"boundary_": (model.weights(), model.optimizer)}, {})
    other = colocated(seed=9)
    weights, _, _ = checkpoint.load(path, {"boundary_": (other.weights(), other.optimizer)}, ())
    other.load(weights["boundary_"], model.version)
    assert other.version == model.version
    for a, b in zip(other.weights(), model.weights(), strict=True):
        assert a.tobytes() == b.tobytes()
    assert other.optimizer.t == model.optimizer.t
    other.rng = copy.deepcopy(model.rng)
    model.learn_pass(h, y, g)
    other.learn_pass(h, y, g)                                         # the moments carried over
    for a, b in zip(other.published, model.published, strict=True):
        assert a.tobytes() == b.tobytes()


def test_the_weights_answer_decodes_as_an_oracles():
    model = colocated(32)
    body = synthgrad.encode_weights(model.published, model.conditioned, 7)
    weights, conditioned, version = synthgrad.decode_weights(body, 32)
    assert conditioned is True and version == 7
    for a, b in zip(weights, model.published, strict=True):
        assert a.tobytes() == b.tobytes()


class FlakyOracle:
    """GET /weights: version 1, then a PeerError (the oracle down) while `down` is set."""

    def __init__(self):
        import threading
        self.down, self.calls = threading.Event(), 0

    def weights(self, width):
        self.calls += 1
        if self.down.is_set():
            raise synthgrad.PeerError("oracle at http://127.0.0.1:9/weights: refused")
        return [np.zeros((1, 1))], True, self.calls


def test_an_oracle_that_is_down_is_said_once_in_10_s_and_its_return_once(caplog):
    import logging
    import threading
    import time
    oracle, stop = FlakyOracle(), threading.Event()
    local = boundary.LocalSyntheticGradients(oracle, 0.005, stop)
    caplog.set_level(logging.INFO, logger=boundary.log.name)
    local.start()
    try:
        def refreshes(n):                    # bound the work waited for, not the seconds
            target = oracle.calls + n
            for _ in range(6000):
                if oracle.calls >= target:
                    return
                time.sleep(0.005)
            raise AssertionError(f"{n} refreshes did not happen")
        refreshes(3)
        oracle.down.set()
        refreshes(40)                        # 40 failed refreshes, well within 10 s
        oracle.down.clear()
        refreshes(3)
    finally:
        stop.set()
        local._thread.join(5)
    said = [r.getMessage() for r in caplog.records]
    down = [m for m in said if m.startswith("could not refresh the oracle's weights")]
    assert len(down) == 1 and "http://127.0.0.1:9/weights" in down[0], said
    assert sum(m.startswith("the oracle answers again: its weights are version") for m in said) \
        == 1, said
    assert local.version > 3


def test_an_oracle_whose_model_is_for_another_width_ends_it_in_one_line(caplog):
    import threading
    oracle = FlakyOracle()
    oracle.weights = lambda width: synthgrad.decode_weights(
        {"weights": [np.zeros((25, 12)), np.zeros(12), np.zeros((12, 24)), np.zeros(24)]}, width)

    class Client:                                    # a decode error, as a client raises it
        def weights(self, width):
            try:
                return oracle.weights(width)
            except synthgrad.ProtocolError as e:
                raise synthgrad.PeerError(f"oracle at U sent a bad answer: {e}") from e

    local = boundary.LocalSyntheticGradients(Client(), 0.01, threading.Event(), width=16)
    assert local.start() is False and not local._thread.is_alive()
    assert [r.getMessage() for r in caplog.records] == [
        "oracle at U sent a bad answer: weights: shapes [(25, 12), (12,), (12, 24), (24,)] are "
        "not a model of h of width 16: are the two started for the same h (--width)?"]


def test_an_oracle_that_refuses_the_weights_ends_it_in_one_line(caplog):
    import threading

    class Client:                                    # e.g. --oracle-url at the output trainer
        def weights(self, width):
            raise synthgrad.PeerError("oracle at U/weights answered 404: Not Found", 404)

    local = boundary.LocalSyntheticGradients(Client(), 0.01, threading.Event())
    assert local.start() is False
    assert [r.getMessage() for r in caplog.records] == [
        "oracle at U/weights answered 404: Not Found"]
