"""Tests for optimizers.py: SGD is sgd.Layer.descend; Adam matches a step computed by hand and
Keras 3's Adam (the oracle's) on the same gradients; state round-trips.

Run: .venv/bin/pytest -q tests/test_optimizers.py
"""

import math

import numpy as np
import pytest

import sgd
from parts import optimizers


def layer_with_gradients(seed):
    rng = np.random.default_rng(seed)
    layer = sgd.Layer(3, 2, sgd.Sigmoid, rng)
    layer.nabla_w, layer.nabla_b = rng.standard_normal((3, 2)), rng.standard_normal(2)
    return layer


def test_sgd_is_w_minus_eta_nabla():
    layer = layer_with_gradients(0)
    w, b = layer.w.copy(), layer.b.copy()
    optimizers.make("sgd", [layer], 0.3).step()
    np.testing.assert_array_equal(layer.w, w - 0.3 * layer.nabla_w)
    np.testing.assert_array_equal(layer.b, b - 0.3 * layer.nabla_b)


def test_adam_two_steps_by_hand():
    layer = layer_with_gradients(1)
    w0 = layer.w.copy()
    g1 = layer.nabla_w.copy()
    opt = optimizers.make("adam", [layer], 0.01)
    opt.step()
    # Step 1: m = 0.1 g, v = 0.001 g^2, alpha = 0.01 sqrt(0.001) / 0.1.
    m, v = 0.1 * g1, 0.001 * g1 ** 2
    w1 = w0 - 0.01 * math.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(layer.w, w1, rtol=1e-12)
    # Its first step moves every weight by about the learning rate, whatever the gradient's size.
    np.testing.assert_allclose(np.abs(layer.w - w0), 0.01, rtol=1e-3)
    g2 = np.full((3, 2), 0.5)
    layer.nabla_w = g2
    opt.step()
    m, v = m + 0.1 * (g2 - m), v + 0.001 * (g2 ** 2 - v)
    w2 = w1 - 0.01 * math.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2) * m / (np.sqrt(v) + 1e-7)
    np.testing.assert_allclose(layer.w, w2, rtol=1e-12)
    assert opt.t == 2


def test_adam_matches_keras_adam_on_the_same_gradients():
    import keras
    layer = layer_with_gradients(2)
    variable = keras.Variable(layer.w.copy())
    keras_adam = keras.optimizers.Adam(learning_rate=0.005)
    opt = optimizers.make("adam", [layer], 0.005)
    rng = np.random.default_rng(3)
    for _ in range(5):
        g = rng.standard_normal((3, 2))
        layer.nabla_w, layer.nabla_b = g, np.zeros(2)
        opt.step()
        keras_adam.apply_gradients([(keras.ops.convert_to_tensor(g, "float32"), variable)])
    np.testing.assert_allclose(layer.w, np.asarray(variable), rtol=1e-5, atol=1e-6)


def test_adam_state_round_trips_and_the_next_step_is_the_same():
    a, b = layer_with_gradients(4), layer_with_gradients(4)
    opt_a, opt_b = optimizers.make("adam", [a], 0.01), optimizers.make("adam", [b], 0.01)
    opt_a.step()
    opt_b.step()
    saved = {k: v.copy() for k, v in opt_a.state().items()}
    assert set(saved) == {"t", "m0", "v0", "m1", "v1"}
    fresh = optimizers.make("adam", [b], 0.01)
    fresh.load_state(saved)
    opt_a.step()
    fresh.step()
    np.testing.assert_array_equal(a.w, b.w)
    np.testing.assert_array_equal(a.b, b.b)


def test_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="choose from sgd, adam"):
        optimizers.make("rmsprop", [], 0.1)
