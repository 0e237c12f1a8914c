"""Tests for sgd.py: backprop against central finite differences, the descent step, the MSE,
that evaluating leaves the layers as they were, that per-example SGD learns, and the script's
main(); for classification, ReLU and the softmax cross-entropy against finite differences, the
softmax's stability, He init's variance, accuracy and loss against direct computation, and
main() on small written images (never the real ones).

Run: .venv/bin/pytest -q tests/test_sgd.py
"""

import itertools

import numpy as np
import pytest

import generate
import sgd
from datasets import images
from helpers import banded_images

EPS = 1e-6     # central differences: truncation error ~EPS^2, round-off ~1e-16 / EPS
RTOL = 1e-5
ATOL = 1e-8    # for gradient entries that happen to be ~0


def numerical_gradient(f, arr, eps=EPS):
    """dF/d(arr) by central differences, perturbing arr in place (and restoring it).

    f: a function of no arguments returning a scalar that reads arr.
    """
    grad = np.zeros_like(arr)
    for idx in np.ndindex(arr.shape):
        old = arr[idx]
        arr[idx] = old + eps
        f_plus = f()
        arr[idx] = old - eps
        f_minus = f()
        arr[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


# --- One layer -----------------------------------------------------------------------------

@pytest.mark.parametrize("activation", [sgd.Sigmoid, sgd.Linear])
@pytest.mark.parametrize("batch", [1, 5], ids=["one-example", "batch-of-5"])
def test_layer_backprop_matches_finite_differences(activation, batch):
    rng = np.random.default_rng(1)
    n_in, n_out = 4, 3
    layer = sgd.Layer(n_in, n_out, activation, rng)
    a_in = rng.standard_normal((batch, n_in))                  # one example is a batch of one
    c = rng.standard_normal((batch, n_out))                    # per-example loss L = sum(c * a)

    def per_example_losses():
        return (c * layer.feed_forward(a_in)).sum(axis=-1)     # (n,)

    # The layer's convention: dL/dw, dL/db are of the batch's mean loss (for one example, its
    # loss); each row of dL/da_in is the gradient of that row's own loss.
    def mean_loss():
        return float(np.mean(per_example_losses()))

    def summed_loss():   # rows are independent, so d(sum)/d(a_in row k) = d(L_k)/d(a_in row k)
        return float(np.sum(per_example_losses()))

    layer.feed_forward(a_in)
    dL_da_in = layer.backprop(c)                               # dL/da = c
    nabla_w, nabla_b = layer.nabla_w.copy(), layer.nabla_b.copy()

    assert dL_da_in.shape == a_in.shape
    assert nabla_w.shape == (n_in, n_out) and nabla_b.shape == (n_out,)
    np.testing.assert_allclose(dL_da_in, numerical_gradient(summed_loss, a_in),
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(nabla_w, numerical_gradient(mean_loss, layer.w),
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(nabla_b, numerical_gradient(mean_loss, layer.b),
                               rtol=RTOL, atol=ATOL)


def test_batch_rows_equal_one_example_at_a_time():
    """A batch's dL/da_in rows are the single-example results; its nabla_w is their mean."""
    rng = np.random.default_rng(2)
    layer = sgd.Layer(3, 5, sgd.Sigmoid, rng)
    a_in = rng.standard_normal((4, 3))
    c = rng.standard_normal((4, 5))
    rows, nabla_ws, nabla_bs = [], [], []
    for k in range(4):
        layer.feed_forward(a_in[k:k + 1])                      # (1, 3): a batch of one
        rows.append(layer.backprop(c[k:k + 1])[0])
        nabla_ws.append(layer.nabla_w.copy())
        nabla_bs.append(layer.nabla_b.copy())
    layer.feed_forward(a_in)
    batch_rows = layer.backprop(c)
    np.testing.assert_allclose(batch_rows, np.stack(rows), rtol=1e-12)
    np.testing.assert_allclose(layer.nabla_w, np.mean(nabla_ws, axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.nabla_b, np.mean(nabla_bs, axis=0), rtol=1e-12)


def test_activation_derivatives_match_finite_differences():
    z = np.linspace(-6, 6, 25)
    for act in (sgd.Sigmoid, sgd.Linear):
        fd = (act.f(z + EPS) - act.f(z - EPS)) / (2 * EPS)
        np.testing.assert_allclose(act.derivative(z, act.f(z)), fd, rtol=RTOL, atol=ATOL)


def test_descend_is_exactly_w_minus_eta_nabla():
    rng = np.random.default_rng(3)
    layer = sgd.Layer(4, 3, sgd.Sigmoid, rng)
    layer.feed_forward(rng.standard_normal((6, 4)))
    layer.backprop(rng.standard_normal((6, 3)))
    w0, b0 = layer.w.copy(), layer.b.copy()
    nabla_w, nabla_b = layer.nabla_w.copy(), layer.nabla_b.copy()
    eta = 0.37
    layer.descend(eta)
    np.testing.assert_array_equal(layer.w, w0 - eta * nabla_w)
    np.testing.assert_array_equal(layer.b, b0 - eta * nabla_b)


# --- The whole network ---------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 6], ids=["one-example", "batch-of-6"])
def test_train_step_gradients_match_finite_differences(batch):
    rng = np.random.default_rng(4)
    layers = sgd.make_network(rng)
    assert [layer.w.shape for layer in layers] == [(2, 24), (24, 12), (12, 1)]
    assert [layer.activation for layer in layers] == [sgd.Sigmoid, sgd.Sigmoid, sgd.Linear]
    x, y = rng.uniform(-1, 1, (batch, 2)), rng.uniform(-1, 1, batch)   # (n, 2), (n,)

    def losses():                                              # L = 1/2 (y_hat - y)^2 each
        y_hat = sgd.predict(layers, x)                         # (n,)
        return 0.5 * (y_hat - y) ** 2

    def mean_loss():
        return float(np.mean(losses()))

    def summed_loss():
        return float(np.sum(losses()))

    # Learning rate 0: the step computes and stores the gradients but moves nothing.
    weights = [(layer.w.copy(), layer.b.copy()) for layer in layers]
    expected_y_hat = sgd.predict(layers, x)
    y_hat, dL_dx = sgd.train_step(layers, x, y, learning_rate=0.0)
    for layer, (w, b) in zip(layers, weights, strict=True):
        np.testing.assert_array_equal(layer.w, w)
        np.testing.assert_array_equal(layer.b, b)

    assert y_hat.shape == (batch, 1)
    np.testing.assert_array_equal(y_hat[:, 0], expected_y_hat)
    assert dL_dx.shape == x.shape
    np.testing.assert_allclose(dL_dx, numerical_gradient(summed_loss, x), rtol=RTOL, atol=ATOL)
    for layer in layers:
        np.testing.assert_allclose(layer.nabla_w, numerical_gradient(mean_loss, layer.w),
                                   rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(layer.nabla_b, numerical_gradient(mean_loss, layer.b),
                                   rtol=RTOL, atol=ATOL)


def test_train_step_descends_every_layer():
    rng = np.random.default_rng(5)
    layers = sgd.make_network(rng)
    x, y = rng.uniform(-1, 1, (8, 2)), rng.uniform(-1, 1, 8)
    before = [(layer.w.copy(), layer.b.copy()) for layer in layers]
    prediction_before = sgd.predict(layers, x)
    y_hat, _ = sgd.train_step(layers, x, y, learning_rate=0.1)
    for layer, (w, b) in zip(layers, before, strict=True):
        np.testing.assert_allclose(layer.w, w - 0.1 * layer.nabla_w, rtol=1e-15)
        np.testing.assert_allclose(layer.b, b - 0.1 * layer.nabla_b, rtol=1e-15)
    # y_hat is the prediction the gradients were taken at, before the step moved the weights.
    np.testing.assert_array_equal(y_hat[:, 0], prediction_before)
    assert not np.allclose(sgd.predict(layers, x), prediction_before)


def descent(layers, learning_rate):
    """A step for sgd.train: plain gradient descent, as sgd.main takes it."""
    def step():
        for layer in layers:
            layer.descend(learning_rate)
    return step


def epoch(layers, x, y, learning_rate, rng, batch_size=1, loss=sgd.SquaredError):
    """One pass as sgd.main makes it: a fresh permutation, a slice of rows per step."""
    order = rng.permutation(len(x))
    batches = (slice(k, k + batch_size) for k in range(0, len(x), batch_size))
    return sgd.train(layers, x[order], y[order], batches, descent(layers, learning_rate), loss)


def test_per_example_epoch_is_one_train_step_per_row_in_the_permuted_order():
    x, y = generate.generate(50, seed=1)
    layers = sgd.make_network(np.random.default_rng(3))
    by_hand = sgd.make_network(np.random.default_rng(3))
    assert epoch(layers, x, y, learning_rate=0.05, rng=np.random.default_rng(9)) == 50
    for k in np.random.default_rng(9).permutation(50):
        sgd.train_step(by_hand, x[k:k + 1], y[k:k + 1], learning_rate=0.05)
    for got, want in zip(layers, by_hand, strict=True):
        np.testing.assert_array_equal(got.w, want.w)
        np.testing.assert_array_equal(got.b, want.b)


def test_minibatch_epoch_steps_on_slices_of_rows():
    x, y = generate.generate(50, seed=2)
    layers = sgd.make_network(np.random.default_rng(4))
    by_hand = sgd.make_network(np.random.default_rng(4))
    epoch(layers, x, y, learning_rate=0.1, rng=np.random.default_rng(5), batch_size=16)
    order = np.random.default_rng(5).permutation(50)
    for start in (0, 16, 32, 48):                              # the last batch has 2 rows
        rows = order[start:start + 16]
        sgd.train_step(by_hand, x[rows], y[rows], learning_rate=0.1)
    for got, want in zip(layers, by_hand, strict=True):
        np.testing.assert_array_equal(got.w, want.w)
        np.testing.assert_array_equal(got.b, want.b)


def test_train_on_minibatches_indices_is_the_epoch_on_slices():
    """sgd.minibatches' index arrays and main's slices of a permuted copy train the same bits."""
    x, y = generate.generate(60, seed=3)
    layers = sgd.make_network(np.random.default_rng(6))
    sliced = sgd.make_network(np.random.default_rng(6))
    batches = sgd.minibatches(60, 7, np.random.default_rng(8))
    rng = np.random.default_rng(8)
    for _ in range(2):                                         # two epochs, a short batch each
        assert sgd.train(layers, x, y, itertools.islice(batches, 9), descent(layers, 0.1)) == 60
        epoch(sliced, x, y, 0.1, rng, batch_size=7)
    for got, want in zip(layers, sliced, strict=True):
        np.testing.assert_array_equal(got.w, want.w)
        np.testing.assert_array_equal(got.b, want.b)


def test_predict_and_mse_against_direct_computation():
    rng = np.random.default_rng(6)
    layers = sgd.make_network(rng)
    x, y = rng.uniform(-1, 1, (103, 2)), rng.uniform(-1, 1, 103)
    # predict by hand: the forward pass of the docstring.
    a1 = 1 / (1 + np.exp(-(x @ layers[0].w + layers[0].b)))
    a2 = 1 / (1 + np.exp(-(a1 @ layers[1].w + layers[1].b)))
    y_hat = (a2 @ layers[2].w + layers[2].b)[:, 0]
    np.testing.assert_allclose(sgd.predict(layers, x), y_hat, rtol=1e-12)

    direct = np.mean((y_hat - y) ** 2)
    np.testing.assert_allclose(sgd.mse(layers, x, y), direct, rtol=1e-12)
    np.testing.assert_allclose(sgd.mse(layers, x, y, chunk=10), direct, rtol=1e-12)  # chunks
    # The true MSE: twice the mean of the loss 1/2 (y_hat - y)^2, not equal to it.
    np.testing.assert_allclose(sgd.mse(layers, x, y), 2 * np.mean(0.5 * (y_hat - y) ** 2),
                               rtol=1e-12)


def test_feed_forward_not_remembering_is_the_same_and_remembers_nothing():
    rng = np.random.default_rng(8)
    layer = sgd.Layer(2, 24, sgd.Sigmoid, rng)
    a_in = rng.uniform(-1, 1, (7, 2))
    out = layer.feed_forward(a_in, remember=False)
    assert out.shape == (7, 24)
    assert not any(hasattr(layer, name) for name in ("a_in", "z", "a"))
    np.testing.assert_array_equal(out, layer.feed_forward(a_in))


def test_evaluating_leaves_the_training_state_on_the_layers_alone():
    """predict and mse on many rows store nothing on the layers: what the last feed_forward
    remembered (one row here) is still there for its backprop."""
    rng = np.random.default_rng(9)
    layers = sgd.make_network(rng)
    x_one = rng.uniform(-1, 1, (1, 2))
    sgd.feed_forward(layers, x_one)
    remembered = [(layer.a_in, layer.z, layer.a) for layer in layers]
    x, y = rng.uniform(-1, 1, (5000, 2)), rng.uniform(-1, 1, 5000)
    sgd.predict(layers, x)
    sgd.mse(layers, x, y)
    for layer, (a_in, z, a) in zip(layers, remembered, strict=True):
        assert layer.a_in is a_in and layer.z is z and layer.a is a
        assert len(layer.a_in) == 1


def test_per_example_sgd_learns():
    x, y = generate.generate(2000, seed=0)                  # (2000, 2), (2000,)
    x_test, y_test = generate.heldout(2000)
    rng = np.random.default_rng(0)
    layers = sgd.make_network(rng)
    before = sgd.mse(layers, x_test, y_test)
    for _ in range(8):                                       # ~0.5 s
        epoch(layers, x, y, learning_rate=0.02, rng=rng)
    after = sgd.mse(layers, x_test, y_test)
    assert after < 0.5 * before
    # ... and better than the best constant guess (whose MSE is var(y)), so it learned more
    # than the mean.
    assert after < 0.9 * y_test.var()


# --- Classification: ReLU, the softmax cross-entropy, He init ------------------------------

def test_relu_and_its_derivative_away_from_the_kink():
    z = np.concatenate([np.linspace(-3, -0.01, 12), np.linspace(0.01, 3, 12)])   # not at 0
    a = sgd.ReLU.f(z)
    np.testing.assert_array_equal(a, np.where(z > 0, z, 0.0))
    fd = (sgd.ReLU.f(z + EPS) - sgd.ReLU.f(z - EPS)) / (2 * EPS)
    np.testing.assert_allclose(sgd.ReLU.derivative(z, a), fd, rtol=RTOL, atol=ATOL)


def away_from_the_kink(layers, x, margin=1e-3):
    """True if no hidden unit's z is within margin of ReLU's kink for these inputs, so that
    central differences of step EPS never straddle it."""
    a = x
    for layer in layers:
        z = np.dot(a, layer.w) + layer.b
        if layer.activation is sgd.ReLU and np.abs(z).min() < margin:
            return False
        a = layer.activation.f(z)
    return True


@pytest.mark.parametrize("batch", [1, 6], ids=["one-example", "batch-of-6"])
def test_relu_network_with_softmax_cross_entropy_matches_finite_differences(batch):
    """A 5-7-7-4 network (two ReLU layers of 7, 4 logits): dL/dw, dL/db of every layer for the
    mean cross-entropy -log softmax(z)_label, and dL/dx per example, in float64, at inputs
    where no ReLU sits within 1e-3 of its kink."""
    rng = np.random.default_rng(11)
    layers = sgd.make_network(rng, (5, 7, 7, 4), sgd.ReLU, "he")
    assert [layer.activation for layer in layers] == [sgd.ReLU, sgd.ReLU, sgd.Linear]
    x = rng.standard_normal((batch, 5))
    while not away_from_the_kink(layers, x):
        x = rng.standard_normal((batch, 5))
    labels = rng.integers(0, 4, batch)                          # (n,) in 0..3

    def losses():                                               # by hand, not via sgd's loss
        z = sgd.feed_forward(layers, x, remember=False)            # (n, 4)
        return np.log(np.exp(z).sum(axis=1)) - z[np.arange(batch), labels]

    z, dL_dx = sgd.backprop(layers, x, labels, loss=sgd.SoftmaxCrossEntropy)
    assert z.shape == (batch, 4) and dL_dx.shape == (batch, 5)
    np.testing.assert_allclose(sgd.SoftmaxCrossEntropy.loss(z, labels), losses(), rtol=1e-12)
    np.testing.assert_allclose(dL_dx, numerical_gradient(lambda: float(np.sum(losses())), x),
                               rtol=RTOL, atol=ATOL)
    for layer in layers:
        mean_loss = lambda: float(np.mean(losses()))
        np.testing.assert_allclose(layer.nabla_w, numerical_gradient(mean_loss, layer.w),
                                   rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(layer.nabla_b, numerical_gradient(mean_loss, layer.b),
                                   rtol=RTOL, atol=ATOL)


def test_softmax_cross_entropy_gradient_is_softmax_minus_onehot():
    rng = np.random.default_rng(12)
    z, labels = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    onehot = np.eye(4)[labels]
    e = np.exp(z)
    np.testing.assert_allclose(sgd.SoftmaxCrossEntropy.gradient(z, labels),
                               e / e.sum(axis=1, keepdims=True) - onehot, rtol=1e-12, atol=1e-15)


def test_softmax_rows_sum_to_one_and_large_logits_stay_finite():
    z = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 999.0], [-1000.0, -1001.0, -999.0]])
    with np.errstate(over="raise", divide="raise", invalid="raise"):   # underflow to 0 is fine
        p = sgd.softmax(z)
        losses = sgd.SoftmaxCrossEntropy.loss(z, np.array([2, 0, 1]))
        grad = sgd.SoftmaxCrossEntropy.gradient(z, np.array([2, 0, 1]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0], atol=1e-300)
    # The same logits shifted down by their row's max, where the naive formula is safe.
    shifted = z - z.max(axis=1, keepdims=True)
    naive = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(3), [2, 0, 1]]
    np.testing.assert_allclose(losses, naive, rtol=1e-12)
    assert losses[0] == pytest.approx(2000.0, rel=1e-12)        # -log softmax of the smallest
    assert np.isfinite(grad).all()
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-12)  # softmax - onehot sums to 0


def test_he_init_draws_w_with_variance_2_over_n_in_and_zero_biases():
    layer = sgd.Layer(400, 300, sgd.ReLU, np.random.default_rng(13), init="he")
    assert not layer.b.any()
    # 120,000 draws: the sample variance's relative standard error is sqrt(2 / 120,000) ~ 0.4%.
    assert layer.w.var() == pytest.approx(2 / 400, rel=0.02)
    assert abs(layer.w.mean()) < 4 * np.sqrt(2 / 400 / layer.w.size)
    toy = sgd.Layer(400, 300, sgd.Sigmoid, np.random.default_rng(13))  # the toy's: N(0, 1)
    assert toy.w.var() == pytest.approx(1.0, rel=0.02) and toy.b.any()


def test_the_toy_network_is_drawn_as_before():
    """The default make_network still draws w1, b1, w2, ... as standard normals, in order."""
    rng = np.random.default_rng(14)
    layers = sgd.make_network(np.random.default_rng(14))
    for layer, (n_in, n_out) in zip(layers, [(2, 24), (24, 12), (12, 1)], strict=True):
        np.testing.assert_array_equal(layer.w, rng.standard_normal((n_in, n_out)))
        np.testing.assert_array_equal(layer.b, rng.standard_normal(n_out))


def test_accuracy_and_cross_entropy_against_direct_computation():
    rng = np.random.default_rng(15)
    layers = sgd.make_network(rng, (6, 9, 3), sgd.ReLU, "he")
    x, labels = rng.standard_normal((57, 6)), rng.integers(0, 3, 57)
    z = np.maximum(x @ layers[0].w + layers[0].b, 0) @ layers[1].w + layers[1].b     # (57, 3)
    want_accuracy = np.mean(z.argmax(axis=1) == labels)
    want_loss = np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(57), labels])
    for chunk in (10_000, 10):                                  # one chunk, and six
        got = sgd.classification_scores(layers, x, labels, chunk=chunk)
        assert got[0] == want_accuracy
        assert got[1] == pytest.approx(want_loss, rel=1e-12)


def test_minibatch_sgd_learns_separable_classes():
    rng = np.random.default_rng(16)
    centres = 3 * rng.standard_normal((3, 20))                  # 3 classes in 20 dimensions
    labels = rng.integers(0, 3, 600)
    x = centres[labels] + rng.standard_normal((600, 20))
    layers = sgd.make_network(rng, (20, 16, 3), sgd.ReLU, "he")
    for _ in range(5):
        epoch(layers, x[:400], labels[:400], 0.05, rng, batch_size=20,
              loss=sgd.SoftmaxCrossEntropy)
    accuracy, loss = sgd.classification_scores(layers, x[400:], labels[400:])
    assert accuracy > 0.95 and loss < 0.2, (accuracy, loss)


# --- The script ----------------------------------------------------------------------------

def test_main_runs_one_epoch(tmp_path, capsys):
    data = tmp_path / "data"
    assert generate.main(["--count", "2000", "--out-dir", str(data), "--no-plot"]) == 0
    assert (data / "x.npy").exists() and (data / "y.npy").exists()
    capsys.readouterr()
    assert sgd.main(["--epochs", "1", "--no-plots", "--data-dir", str(data),
                     "--heldout", "2000"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("sgd.py:")                     # the effective configuration
    assert any(line.startswith("epoch 0: held-out MSE") for line in lines)
    epoch1 = [line for line in lines if line.startswith("epoch 1:")]
    assert len(epoch1) == 1
    assert "train MSE" in epoch1[0] and "held-out MSE" in epoch1[0]
    assert not any(line.startswith("epoch 2:") for line in lines)


def test_main_draws_a_picture_per_epoch(tmp_path, capsys):
    data, plots = tmp_path / "data", tmp_path / "deep" / "plots"     # plots' parents made too
    generate.main(["--count", "300", "--out-dir", str(data), "--no-plot"])
    assert sgd.main(["--epochs", "2", "--data-dir", str(data), "--plots-dir", str(plots),
                     "--heldout", "300"]) == 0
    assert sorted(p.name for p in plots.iterdir()) == ["epoch_001.png", "epoch_002.png"]
    png = (plots / "epoch_002.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "epoch 2: train MSE" in capsys.readouterr().out


def test_main_without_data_exits_with_a_clear_message(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SystemExit) as e:
        sgd.main(["--epochs", "1", "--no-plots", "--data-dir", str(missing)])
    message = str(e.value.code)
    assert str(missing) in message
    assert "generate.py" in message


@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--learning-rate", "0"],
                                  ["--learning-rate", "-1"], ["--learning-rate", "inf"]])
def test_main_refuses_bad_options(argv, capsys):
    with pytest.raises(SystemExit) as e:
        sgd.main(argv + ["--no-plots"])
    assert e.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_main_trains_on_images_and_prints_test_accuracy_per_epoch(monkeypatch, capsys):
    asked = []
    monkeypatch.setattr(sgd.images, "load",
                        lambda name, data_dir: asked.append((name, data_dir)) or banded_images())
    assert sgd.main(["--data", "fashion-mnist", "--epochs", "2", "--image-dir", "/idx"]) == 0
    assert asked == [("fashion-mnist", sgd.Path("/idx"))]
    lines = capsys.readouterr().out.splitlines()
    assert "batch-size 100" in lines[0] and "learning-rate 0.1" in lines[0]   # images' defaults
    assert lines[1].startswith("epoch 0: test accuracy")
    assert [line.split(":")[0] for line in lines[2:]] == ["epoch 1", "epoch 2"]
    assert float(lines[-1].split("test accuracy ")[1].split(",")[0]) > 0.9    # easy classes


def test_main_says_in_one_line_why_the_images_cannot_be_read(monkeypatch, capsys):
    def refuse(name, data_dir):
        raise images.DataError(f"{data_dir}/train-images-idx3-ubyte.gz: no such file")
    monkeypatch.setattr(sgd.images, "load", refuse)
    assert sgd.main(["--data", "mnist", "--image-dir", "/nowhere"]) == 2
    err = capsys.readouterr().err
    assert err == "sgd.py: /nowhere/train-images-idx3-ubyte.gz: no such file\n"


@pytest.mark.parametrize("argv", [["--data", "fashion-mnist", "--heldout", "5"],
                                  ["--data", "mnist", "--no-plots"],
                                  ["--image-dir", "/idx"]])
def test_options_of_the_other_data_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        sgd.parse_args(argv)
    assert e.value.code == 2 and "only" in capsys.readouterr().err


def test_the_toys_defaults_are_unchanged():
    args = sgd.parse_args([])
    assert (args.data, args.epochs, args.learning_rate, args.decay, args.batch_size) == (
        "toy", 100, 0.002, 0.997, 1)
