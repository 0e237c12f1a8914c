"""Plain backpropagation and stochastic gradient descent, in numpy, written to be read.

Run it (after `python generate.py`):

    python sgd.py                      # 100 epochs, per-example SGD, a plot per epoch
    python sgd.py --epochs 5 --plots-dir plots/sgd
    python sgd.py --help

The network is 2 -> 24 -> 12 -> 1: two sigmoid layers and a linear output. Examples are rows:
a batch of n examples is x (n, 2) with targets y (n,), and one example is a batch of one,
x (1, 2). The forward pass is

    a0 = x                                      # (n, 2)
    z1 = a0 . w1 + b1,   a1 = sigmoid(z1)       # (n, 24)
    z2 = a1 . w2 + b2,   a2 = sigmoid(z2)       # (n, 12)
    z3 = a2 . w3 + b3,   y_hat = z3             # (n, 1)

and each example's loss is L = 1/2 (y_hat - y)^2, so its row of dL/dy_hat is y_hat - y.

Backpropagation is the chain rule applied layer by layer, from the top down. A layer with input
a_in (n, n_in), weights w (n_in, n_out) and activation sigma computes z = a_in . w + b and
a = sigma(z). Given dL/da (what the layer above hands down, one row per example), it computes

    delta    = dL/dz = dL/da * sigma'(z)         # (n, n_out), elementwise
    dL/dw    = a_in^T . delta / n                # (n_in, n_out)
    dL/db    = mean of the rows of delta         # (n_out,)
    dL/da_in = delta . w^T                       # (n, n_in), handed to the layer below

and gradient descent moves every weight a little downhill: w -= eta * dL/dw.

Each row of dL/da is the gradient of *that example's* loss, so each row of dL/da_in is too. The
batch's loss is the mean of its examples' losses, so dL/dw and dL/db are averaged over the rows
(for one example, n = 1, they are that example's). That is all the decoupled trainers need:
`train_output.py` and `train_input.py` reuse `Layer` on minibatches, and the per-example rows
of dL/da_in are exactly the "gradients" that travel on the wire.
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
    """One fully connected layer, a = sigma(a_in . w + b), on rows of examples.

    w has shape (n_in, n_out) and b shape (n_out,), both drawn from a standard normal.
    Inputs are 2-D, a_in (n, n_in), rows are examples; one example is a_in (1, n_in).

    Why np.dot rather than @, and sum(axis=0) / n rather than mean(axis=0): per-example SGD
    works on arrays of one row, where numpy's fixed cost per call is most of the time, and these
    cost ~0.3-1 us less a call for the same bits. A step takes a fifth less time (measured).
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

    def output(self, a_in):
        """a = sigma(a_in . w + b) for a_in (n, n_in): (n, n_out). Remembers nothing, so
        evaluating on many rows leaves no (n, ...) arrays behind on the layer."""
        assert a_in.ndim == 2, f"a_in must be rows (n, n_in), got shape {a_in.shape}"
        return self.activation.f(np.dot(a_in, self.w) + self.b)

    def feed_forward(self, a_in):
        """As output, and remember a_in (n, n_in), z and a (n, n_out) for backprop."""
        assert a_in.ndim == 2, f"a_in must be rows (n, n_in), got shape {a_in.shape}"
        self.a_in = a_in
        self.z = np.dot(a_in, self.w) + self.b
        self.a = self.activation.f(self.z)
        return self.a

    def backprop(self, dL_da):
        """Given dL/da (n, n_out) for the last feed_forward, store dL/dw, dL/db and return
        dL/da_in (n, n_in).

        dL/dw and dL/db are of the batch's mean loss (averaged over the rows); dL/da_in keeps
        one row per example, the gradient of that example's own loss.
        """
        n = len(dL_da)
        delta = dL_da * self.activation.derivative(self.z, self.a)  # dL/dz (n, n_out)
        self.nabla_w = np.dot(self.a_in.T, delta) / n               # (n_in, n_out)
        self.nabla_b = delta.sum(axis=0) / n                        # (n_out,), mean of the rows
        return np.dot(delta, self.w.T)                              # dL/da_in (n, n_in)

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
    """Push rows a (n, n_in) through the layers in turn, each remembering what backprop needs;
    returns the last layer's output (n, n_out)."""
    for layer in layers:
        a = layer.feed_forward(a)
    return a


def predict(layers, x):
    """The network's output for inputs x (n, 2), as a vector (n,). Stores nothing on the layers
    (Layer.output), so it is safe on any number of rows and between training steps."""
    a = x
    for layer in layers:
        a = layer.output(a)
    return a[:, 0]                                   # (n, 1) -> (n,)


def mse(layers, x, y, chunk=50_000):
    """Mean squared error, mean((y_hat - y)^2), of the network on x (n, 2), y (n,).

    This is the true MSE, twice the mean of the loss 1/2 (y_hat - y)^2. Rows go through `chunk`
    at a time, so no activation in flight is larger than (chunk, 24): ~10 MB at the default.
    """
    total = 0.0
    for start in range(0, len(x), chunk):
        err = predict(layers, x[start:start + chunk]) - y[start:start + chunk]
        total += float(err @ err)
    return total / len(x)


def backprop(layers, x, y):
    """Forward and backward on the examples x (n, n_in) with targets y (n,): every layer's
    nabla_w, nabla_b are set (dL/dw, dL/db of the batch's mean loss); nothing moves yet.

    Returns (y_hat, dL_dx): y_hat (n, 1), the network's output, and dL_dx (n, n_in), row k the
    gradient of example k's loss 1/2 (y_hat_k - y_k)^2 with respect to x[k].
    """
    y_hat = feed_forward(layers, x)                # (n, 1)
    dL_da = y_hat - y.reshape(y_hat.shape)         # dL/dy_hat (n, 1) for L = 1/2 (y_hat - y)^2
    for layer in reversed(layers):
        dL_da = layer.backprop(dL_da)
    return y_hat, dL_da                            # dL_da is now dL/dx (n, n_in)


def train_step(layers, x, y, learning_rate):
    """backprop, then one gradient-descent step of every layer: w -= eta * dL/dw.

    Returns backprop's (y_hat, dL_dx), y_hat from before the step.
    """
    y_hat, dL_dx = backprop(layers, x, y)
    for layer in layers:
        layer.descend(learning_rate)
    return y_hat, dL_dx


def train_examples(layers, x, y, learning_rate, batch_size=1):
    """SGD over x (n, 2), y (n,) in the order given: one train_step per slice of batch_size
    rows (batch_size 1: per-example SGD, each example a batch of one; the last may be short)."""
    for k in range(0, len(x), batch_size):
        train_step(layers, x[k:k + batch_size], y[k:k + batch_size], learning_rate)


def train_epoch(layers, x, y, learning_rate, rng, batch_size=1):
    """One pass of SGD over x (n, 2), y (n,) in a random order."""
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
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be at least 1 (got {args.epochs})")
    if args.batch_size < 1:
        p.error(f"--batch-size must be at least 1 (got {args.batch_size})")
    if not args.learning_rate > 0:
        p.error("--learning-rate must be positive")
    if not 0 < args.decay <= 1:
        p.error("--decay must be in (0, 1]")
    if args.heldout < 1:
        p.error("--heldout must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    print("sgd.py: settings:", generate.settings_line(vars(args)), flush=True)
    x, y = generate.load_dataset(args.data_dir)        # (n, 2), (n,)
    x_test, y_test = generate.heldout(args.heldout)    # (20,000, 2), (20,000,)
    rng = np.random.default_rng(args.seed)             # the weights first, then each epoch's order
    layers = make_network(rng)
    print(f"epoch 0: held-out MSE {mse(layers, x_test, y_test):.4f}", flush=True)

    eta, examples, seconds = args.learning_rate, 0, 0.0
    for epoch in range(1, args.epochs + 1):
        # Phase 1: one pass of SGD. Only this counts as training time.
        t0 = time.perf_counter()
        train_epoch(layers, x, y, eta, rng, args.batch_size)
        seconds += time.perf_counter() - t0
        examples += len(x)

        # Phase 2: how well it fits points it never trained on.
        heldout_mse = mse(layers, x_test, y_test)
        took = time.perf_counter() - t0
        print(f"epoch {epoch}: train MSE {mse(layers, x, y):.4f}, held-out MSE "
              f"{heldout_mse:.4f}, eta {eta:.5f}, {took:.2f} s, {seconds:.1f} s of training in "
              f"all ({1e6 * seconds / examples:.1f} us/example)", flush=True)

        # Phase 3: the picture, and a smaller step for the next epoch.
        if not args.no_plots:
            generate.save_surface(lambda p: predict(layers, p),
                                  args.plots_dir / f"epoch_{epoch:03d}.png",
                                  title=f"sgd.py after epoch {epoch}")
        eta *= args.decay
    return 0


if __name__ == "__main__":
    sys.exit(main())
