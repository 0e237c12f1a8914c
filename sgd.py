"""Plain backpropagation and stochastic gradient descent, in numpy, written to be read.

Run it (after `python generate.py`):

    python sgd.py                      # 100 epochs, per-example SGD, a plot per epoch
    python sgd.py --epochs 5 --plots-dir plots/sgd
    python sgd.py --help

The network is 2 -> 24 -> 12 -> 1: two sigmoid layers and a linear output. For one example
x (shape (2,)) with target y, the forward pass is

    a0 = x
    z1 = a0 . w1 + b1,   a1 = sigmoid(z1)       # (24,)
    z2 = a1 . w2 + b2,   a2 = sigmoid(z2)       # (12,)
    z3 = a2 . w3 + b3,   y_hat = z3             # (1,)

and the loss is L = 1/2 (y_hat - y)^2, so dL/dy_hat = y_hat - y.

Backpropagation is the chain rule applied layer by layer, from the top down. A layer with input
a_in, weights w and activation sigma computes z = a_in . w + b and a = sigma(z). Given dL/da
(what the layer above hands down), it computes

    delta  = dL/dz   = dL/da * sigma'(z)         # elementwise
    dL/dw  = a_in^T . delta                      # (n_in, n_out)
    dL/db  = delta                               # (n_out,)
    dL/da_in = delta . w^T                       # handed to the layer below

and gradient descent moves every weight a little downhill: w -= eta * dL/dw.

The same code handles a batch: rows are examples, a_in has shape (n, n_in). Each row of dL/da is
the gradient of *that example's* loss, so each row of dL/da_in is too. The batch's loss is the
mean of the examples' losses, so dL/dw and dL/db are averaged over the rows. That is all the
decoupled trainers need: `train_output.py` and `train_input.py` reuse `Layer` on minibatches, and
the per-example rows of dL/da_in are exactly the "gradients" that travel on the wire.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import generate

HERE = Path(__file__).resolve().parent

# The network's layer sizes: input, two hidden layers, output.
SIZES = (2, 24, 12, 1)


# --- Activations: each knows its value and its derivative, side by side. ----------------------

class Sigmoid:
    """sigma(z) = 1 / (1 + e^-z), with sigma'(z) = sigma(z) (1 - sigma(z)) = a (1 - a).

    derivative takes both z and a = sigma(z): the sigmoid's derivative is cheapest from a.
    """

    name = "sigmoid"

    @staticmethod
    def f(z):
        return 1.0 / (1.0 + np.exp(-z))

    @staticmethod
    def derivative(z, a):
        return a * (1.0 - a)


class Linear:
    """sigma(z) = z, with sigma'(z) = 1: the output layer of a regression network."""

    name = "linear"

    @staticmethod
    def f(z):
        return z

    @staticmethod
    def derivative(z, a):
        return np.ones_like(z)


ACTIVATIONS = {cls.name: cls for cls in (Sigmoid, Linear)}


# --- A layer: forward value, local gradients, and a descent step. -----------------------------

class Layer:
    """One fully connected layer, a = sigma(a_in . w + b).

    w has shape (n_in, n_out) and b shape (n_out,), both drawn from a standard normal.
    Inputs are one example (shape (n_in,)) or a batch (shape (n, n_in), rows are examples).
    """

    def __init__(self, n_in, n_out, activation, rng):
        self.w = rng.standard_normal((n_in, n_out))  # (n_in, n_out)
        self.b = rng.standard_normal(n_out)          # (n_out,)
        self.activation = activation
        self.nabla_w = np.zeros_like(self.w)         # dL/dw from the last backprop
        self.nabla_b = np.zeros_like(self.b)         # dL/db from the last backprop

    @property
    def shape(self):
        return self.w.shape

    def feed_forward(self, a_in):
        """Return a = sigma(a_in . w + b); remember a_in and z for backprop.

        a_in: (n_in,) or (n, n_in). Returns (n_out,) or (n, n_out).
        """
        self.a_in = a_in
        self.z = a_in @ self.w + self.b
        self.a = self.activation.f(self.z)
        return self.a

    def backprop(self, dL_da):
        """Given dL/da for the last feed_forward, store dL/dw, dL/db and return dL/da_in.

        dL_da: same shape as the output, one row per example. The stored dL/dw and dL/db are
        averaged over the rows (the batch's loss is the mean of its examples' losses); the
        returned dL/da_in keeps one row per example.
        """
        delta = dL_da * self.activation.derivative(self.z, self.a)  # dL/dz, shape of z
        if delta.ndim == 1:                                  # one example
            self.nabla_w = np.outer(self.a_in, delta)
            self.nabla_b = delta
        else:                                                # a batch of n examples
            n = delta.shape[0]
            self.nabla_w = self.a_in.T @ delta / n           # (n_in, n_out)
            self.nabla_b = delta.mean(axis=0)                # (n_out,)
        return delta @ self.w.T                              # dL/da_in, shape of a_in

    def descend(self, learning_rate):
        """One gradient-descent step on the last backprop: w -= eta * dL/dw, b -= eta * dL/db."""
        self.w -= learning_rate * self.nabla_w
        self.b -= learning_rate * self.nabla_b


def make_network(rng, sizes=SIZES):
    """The 2-24-12-1 network: sigmoid hidden layers, a linear output layer."""
    acts = [Sigmoid] * (len(sizes) - 2) + [Linear]
    return [Layer(n_in, n_out, act, rng)
            for n_in, n_out, act in zip(sizes[:-1], sizes[1:], acts)]


def feed_forward(layers, a):
    """Push a through the layers in turn; returns the last layer's output."""
    for layer in layers:
        a = layer.feed_forward(a)
    return a


def predict(layers, x):
    """The network's output for inputs x (n, 2), as a vector (n,)."""
    return feed_forward(layers, x).reshape(-1)


def mse(layers, x, y, chunk=50_000):
    """Mean squared error, mean((y_hat - y)^2), of the network on x (n, 2), y (n,).

    This is the true MSE, twice the mean of the loss 1/2 (y_hat - y)^2.
    """
    total = 0.0
    for start in range(0, len(x), chunk):
        err = predict(layers, x[start:start + chunk]) - y[start:start + chunk]
        total += float(err @ err)
    return total / len(x)


def train_step(layers, x, y, learning_rate):
    """Forward, backprop and descend on one example (x (2,), y scalar) or a batch.

    Returns dL/da_in of the first layer (the gradient with respect to the input).
    """
    y_hat = feed_forward(layers, x)                # (1,) or (n, 1)
    dL_da = y_hat - np.reshape(y, y_hat.shape)     # dL/dy_hat for L = 1/2 (y_hat - y)^2
    for layer in reversed(layers):
        dL_da = layer.backprop(dL_da)
    for layer in layers:
        layer.descend(learning_rate)
    return dL_da


def train_examples(layers, x, y, learning_rate, batch_size=1):
    """SGD over (x, y) in the given order: one update per example, or per minibatch of rows."""
    if batch_size == 1:
        for k in range(len(x)):
            train_step(layers, x[k], y[k], learning_rate)
    else:
        for k in range(0, len(x), batch_size):
            train_step(layers, x[k:k + batch_size], y[k:k + batch_size], learning_rate)


def train_epoch(layers, x, y, learning_rate, rng, batch_size=1):
    """One pass of SGD over (x, y), in a random order."""
    order = rng.permutation(len(x))
    train_examples(layers, x[order], y[order], learning_rate, batch_size)


# --- The script. -------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Learn the target of generate.py with per-example SGD and plain backprop.")
    p.add_argument("--data-dir", type=Path, default=HERE / "data",
                   help="folder holding x.npy and y.npy (default: data/ next to this file, "
                        "where generate.py writes)")
    p.add_argument("--epochs", type=int, default=100,
                   help="passes over the data (default 100, the original's)")
    p.add_argument("--learning-rate", type=float, default=0.002,
                   help="eta for per-example SGD (default 0.002, the original's)")
    p.add_argument("--decay", type=float, default=0.997,
                   help="eta is multiplied by this after each epoch (default 0.997, the original's)")
    p.add_argument("--heldout", type=int, default=20_000,
                   help="fresh points (not in the training data) to measure held-out MSE on "
                        "(default 20,000: the estimate's noise is then ~1%%)")
    p.add_argument("--plots-dir", type=Path, default=HERE / "plots" / "sgd",
                   help="where the fitted surface is drawn after each epoch "
                        "(default plots/sgd next to this file)")
    p.add_argument("--no-plots", action="store_true",
                   help="do not draw the surface each epoch (plotting costs ~0.1 s an epoch)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the initial weights and the example order (default 0)")
    p.add_argument("--batch-size", type=int, default=1,
                   help="examples per update (default 1: per-example SGD, the original's); "
                        "dL/dw is averaged over the minibatch")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds of training, even mid-epoch (default: "
                        "no limit), e.g. to compare with a decoupled run of the same length")
    p.add_argument("--eval-every", type=int, default=None,
                   help="also measure held-out MSE every this many examples (default: once "
                        "an epoch)")
    p.add_argument("--metrics", type=Path, default=None,
                   help="append a JSON line per measurement (seconds, examples, held-out MSE) "
                        "to this file (default: none)")
    p.add_argument("--weights-out", type=Path, default=None,
                   help="save the final network here (.npz, see snapshots.py; default: none)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1:
        p.error("--epochs and --batch-size must be at least 1")
    if args.duration is not None and not args.duration > 0:
        p.error("--duration must be positive")
    if args.eval_every is not None and args.eval_every < 1:
        p.error("--eval-every must be at least 1")
    if not args.learning_rate > 0:
        p.error("--learning-rate must be positive")
    if not 0 < args.decay <= 1:
        p.error("--decay must be in (0, 1]")
    if args.heldout < 1:
        p.error("--heldout must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    print("sgd.py:", vars(args), flush=True)
    x, y = generate.load_dataset(args.data_dir)        # (n, 2), (n,)
    x_test, y_test = generate.heldout(args.heldout)
    rng = np.random.default_rng(args.seed)
    layers = make_network(rng)
    if not args.no_plots:
        import plot  # matplotlib is only needed when drawing
        args.plots_dir.mkdir(parents=True, exist_ok=True)

    import snapshots  # imports this module, so not at the top
    metrics = snapshots.MetricsLog(args.metrics, "backprop")
    eta, examples, seconds = args.learning_rate, 0, 0.0
    heldout_mse = mse(layers, x_test, y_test)
    metrics.write(seconds=0.0, epoch=0, examples=0, heldout_mse=heldout_mse)
    print(f"epoch 0: held-out MSE {heldout_mse:.4f}", flush=True)
    # Train in segments so that held-out MSE is measured (and --duration checked) between
    # them: every --eval-every examples, or every 10,000 under a time limit, else once an epoch.
    segment = args.eval_every or (10_000 if args.duration is not None else len(x))
    out_of_time = False
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x))
        t0 = time.perf_counter()
        for start in range(0, len(x), segment):
            # Only training counts as time; measuring and plotting are paused out of it.
            t1 = time.perf_counter()
            rows = order[start:start + segment]
            train_examples(layers, x[rows], y[rows], eta, args.batch_size)
            seconds += time.perf_counter() - t1
            examples += len(rows)
            heldout_mse = mse(layers, x_test, y_test)
            metrics.write(seconds=round(seconds, 3), epoch=epoch, examples=examples,
                          heldout_mse=heldout_mse)
            out_of_time = args.duration is not None and seconds >= args.duration
            if out_of_time:
                break
        took = time.perf_counter() - t0
        print(f"epoch {epoch}{' (cut short)' if out_of_time else ''}: "
              f"train MSE {mse(layers, x, y):.4f}, held-out MSE {heldout_mse:.4f}, "
              f"eta {eta:.5f}, {took:.2f} s, {seconds:.1f} s of training in all "
              f"({1e6 * seconds / examples:.1f} us/example)", flush=True)
        if not args.no_plots:
            plot.save_surface(lambda p: predict(layers, p),
                              args.plots_dir / f"epoch_{epoch:03d}.png",
                              title=f"sgd.py after epoch {epoch}")
        if out_of_time:
            break
        eta *= args.decay
    if args.weights_out is not None:
        snapshots.save_layers(args.weights_out, layers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
