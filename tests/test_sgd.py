"""Tests for sgd.py: backprop against central finite differences, the descent step, the MSE,
that evaluating leaves the layers as they were, that per-example SGD learns, and the script's
main().

Run: .venv/bin/pytest -q tests/test_sgd.py
"""

import numpy as np
import pytest

import generate
import sgd

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
    assert [layer.shape for layer in layers] == [(2, 24), (24, 12), (12, 1)]
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
    for layer, (w, b) in zip(layers, weights):
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
    for layer, (w, b) in zip(layers, before):
        np.testing.assert_allclose(layer.w, w - 0.1 * layer.nabla_w, rtol=1e-15)
        np.testing.assert_allclose(layer.b, b - 0.1 * layer.nabla_b, rtol=1e-15)
    # y_hat is the prediction the gradients were taken at, before the step moved the weights.
    np.testing.assert_array_equal(y_hat[:, 0], prediction_before)
    assert not np.allclose(sgd.predict(layers, x), prediction_before)


def test_per_example_train_epoch_is_one_train_step_per_row_in_the_permuted_order():
    x, y = generate.generate(50, seed=1)
    layers = sgd.make_network(np.random.default_rng(3))
    by_hand = sgd.make_network(np.random.default_rng(3))
    sgd.train_epoch(layers, x, y, learning_rate=0.05, rng=np.random.default_rng(9))
    for k in np.random.default_rng(9).permutation(50):
        sgd.train_step(by_hand, x[k:k + 1], y[k:k + 1], learning_rate=0.05)
    for got, want in zip(layers, by_hand):
        np.testing.assert_array_equal(got.w, want.w)
        np.testing.assert_array_equal(got.b, want.b)


def test_minibatch_train_epoch_steps_on_slices_of_rows():
    x, y = generate.generate(50, seed=2)
    layers = sgd.make_network(np.random.default_rng(4))
    by_hand = sgd.make_network(np.random.default_rng(4))
    sgd.train_epoch(layers, x, y, learning_rate=0.1, rng=np.random.default_rng(5), batch_size=16)
    order = np.random.default_rng(5).permutation(50)
    for start in (0, 16, 32, 48):                              # the last batch has 2 rows
        rows = order[start:start + 16]
        sgd.train_step(by_hand, x[rows], y[rows], learning_rate=0.1)
    for got, want in zip(layers, by_hand):
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


def test_output_equals_feed_forward_and_remembers_nothing():
    rng = np.random.default_rng(8)
    layer = sgd.Layer(2, 24, sgd.Sigmoid, rng)
    a_in = rng.uniform(-1, 1, (7, 2))
    out = layer.output(a_in)
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
    for layer, (a_in, z, a) in zip(layers, remembered):
        assert layer.a_in is a_in and layer.z is z and layer.a is a
        assert len(layer.a_in) == 1


def test_per_example_sgd_learns():
    x, y = generate.generate(2000, seed=0)                  # (2000, 2), (2000,)
    x_test, y_test = generate.heldout(2000)
    rng = np.random.default_rng(0)
    layers = sgd.make_network(rng)
    before = sgd.mse(layers, x_test, y_test)
    for _ in range(8):                                       # ~0.5 s
        sgd.train_epoch(layers, x, y, learning_rate=0.02, rng=rng)
    after = sgd.mse(layers, x_test, y_test)
    assert after < 0.5 * before
    # ... and better than the best constant guess (whose MSE is var(y)), so it learned more
    # than the mean.
    assert after < 0.9 * y_test.var()


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
                                  ["--learning-rate", "-1"]])
def test_main_refuses_bad_options(argv, capsys):
    with pytest.raises(SystemExit) as e:
        sgd.main(argv + ["--no-plots"])
    assert e.value.code == 2
    assert "must be" in capsys.readouterr().err
