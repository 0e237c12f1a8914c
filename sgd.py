"""Plain backpropagation and stochastic gradient descent, in numpy, written to be read.

    python generate.py && python sgd.py        # 100 epochs, per-example SGD, a plot per epoch
    python sgd.py --data fashion-mnist         # classify images: 784-256-256-10, 10 epochs

The network is 2 -> 24 -> 12 -> 1, two sigmoid layers and a linear output, on rows: a batch of
n examples is x (n, 2), targets y (n,) (one example is a batch of one). The forward pass is

    a0 = x                                      # (n, 2)
    z1 = a0 . w1 + b1,   a1 = sigmoid(z1)       # (n, 24)
    z2 = a1 . w2 + b2,   a2 = sigmoid(z2)       # (n, 12)
    z3 = a2 . w3 + b3,   y_hat = z3             # (n, 1)

and each example's loss is L = 1/2 (y_hat - y)^2, so its row of dL/dy_hat is y_hat - y.

Backpropagation is the chain rule, layer by layer from the top down: given dL/da (n, n_out), a
row per example, from the layer above, a layer a = sigma(a_in . w + b) computes

    delta    = dL/dz = dL/da * sigma'(z)         # (n, n_out), elementwise
    dL/dw    = a_in^T . delta / n                # (n_in, n_out)
    dL/db    = mean of the rows of delta         # (n_out,)
    dL/da_in = delta . w^T                       # (n, n_in), handed to the layer below

and gradient descent moves every weight a little downhill: w -= eta * dL/dw.

Row k of dL/da_in is the gradient of example k's loss: the "gradients" the decoupled trainers,
which reuse `Layer`, send on the wire. Images change the ends: ReLU, logits, the cross-entropy.
"""

import argparse
import functools
import sys
import time
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

import generate
from datasets import images

HERE = Path(__file__).resolve().parent
SIZES = (2, 24, 12, 1)                   # the toy's layer sizes: input, two hidden, output
IMAGE_SIZES = (784, 256, 256, 10)        # 28 x 28 pixels in, two ReLU layers, 10 logits out


# --- Activations: each knows its value and its derivative, side by side. ----------------------

# f(z) = sigma(z) and derivative(z, a) = sigma'(z), (n, k): a sigmoid's cheapest from a, ReLU's z.
Activation = NamedTuple("Activation", [("f", Callable), ("derivative", Callable)])
# sigma(z) = 1 / (1 + e^-z), with sigma'(z) = sigma(z) (1 - sigma(z)) = a (1 - a).
Sigmoid = Activation(lambda z: 1.0 / (1.0 + np.exp(-z)), lambda z, a: a * (1.0 - a))
# sigma(z) = z, with sigma'(z) = 1: the output layer.
Linear = Activation(lambda z: z, lambda z, a: np.ones_like(z))
# sigma(z) = max(z, 0), with sigma'(z) = 1 where z > 0, else 0 (at the kink a subgradient).
ReLU = Activation(lambda z: np.maximum(z, 0.0), lambda z, a: (z > 0).astype(z.dtype))


# --- A layer (forward, local gradients, a descent step), and a network of them. -------------

class Layer:
    """a = sigma(a_in . w + b) on rows a_in (n, n_in), w (n_in, n_out), b (n_out,). init "normal"
    (the toy's) draws both from N(0, 1); "he" w from N(0, 2/n_in), b = 0, for ReLU layers, which
    zero half their inputs. np.dot and sum / n, not @ and mean: cheaper (docs/speed.md)."""

    def __init__(self, n_in, n_out, activation, rng, init="normal"):
        assert init in ("normal", "he"), f"init must be 'normal' or 'he', got {init!r}"
        self.w = rng.standard_normal((n_in, n_out)) * (np.sqrt(2 / n_in) if init == "he" else 1)
        self.b = np.zeros(n_out) if init == "he" else rng.standard_normal(n_out)     # (n_out,)
        self.activation = activation
        self.nabla_w = np.zeros_like(self.w)         # dL/dw from the last backprop
        self.nabla_b = np.zeros_like(self.b)         # dL/db from the last backprop

    def feed_forward(self, a_in, remember=True):
        """a = sigma(a_in . w + b) (n, n_out), keeping a_in, z and a for backprop if remember."""
        assert a_in.ndim == 2, f"a_in must be rows (n, n_in), got shape {a_in.shape}"
        z = np.dot(a_in, self.w) + self.b                       # (n, n_out)
        a = self.activation.f(z)
        if remember:
            self.a_in, self.z, self.a = a_in, z, a
        return a

    def backprop(self, dL_da):
        """Given dL/da (n, n_out) for the last feed_forward, store dL/dw and dL/db (of the
        batch's mean loss) and return dL/da_in (n, n_in), a row per example."""
        n = len(dL_da)
        delta = dL_da * self.activation.derivative(self.z, self.a)  # dL/dz (n, n_out)
        self.nabla_w = np.dot(self.a_in.T, delta) / n               # (n_in, n_out)
        self.nabla_b = delta.sum(axis=0) / n                        # (n_out,), mean of the rows
        return np.dot(delta, self.w.T)                              # dL/da_in (n, n_in)

    def descend(self, learning_rate):
        """One gradient-descent step on the last backprop: w -= eta * dL/dw, b -= eta * dL/db."""
        self.w -= learning_rate * self.nabla_w
        self.b -= learning_rate * self.nabla_b


def make_network(rng, sizes=SIZES, activation=Sigmoid, init="normal"):
    """Layers of these sizes drawn in order from rng, `activation` hidden, the output linear: the
    toy's by default; make_network(rng, IMAGE_SIZES, ReLU, "he") gives an image's logits."""
    acts = [activation] * (len(sizes) - 2) + [Linear]
    return [Layer(n_in, n_out, act, rng, init)
            for n_in, n_out, act in zip(sizes[:-1], sizes[1:], acts, strict=True)]


def feed_forward(layers, a, remember=True):
    """The output (n, n_out) for a (n, n_in), every layer keeping what backprop needs if asked."""
    for layer in layers:
        a = layer.feed_forward(a, remember)
    return a


def predict(layers, x):
    """The toy network's output for inputs x (n, 2), as a vector (n,)."""
    return feed_forward(layers, x, remember=False)[:, 0]


# --- Losses: each example's loss and its row of dL/dy_hat; and how well a network does. -------

def log_softmax(z):
    """log softmax(z) per row of z (n, k), less each row's max first: the same, e^z finite."""
    shifted = z - z.max(axis=1, keepdims=True)                  # (n, k), every row's max 0
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(z):
    """The probabilities softmax(z)_j = e^z_j / sum_i e^z_i, per row of z (n, k)."""
    return np.exp(log_softmax(z))


# loss(y_hat, y): each example's loss (n,); gradient(y_hat, y): dL/dy_hat (n, n_out).
Loss = NamedTuple("Loss", [("loss", Callable), ("gradient", Callable)])
# L = 1/2 (y_hat - y)^2 for y_hat (n, 1) and targets y (n,): dL/dy_hat = y_hat - y.
SquaredError = Loss(lambda y_hat, y: 0.5 * (y_hat[:, 0] - y) ** 2,
                    lambda y_hat, y: y_hat - y.reshape(y_hat.shape))
# L = -log softmax(z)_c for logits z (n, k), labels c (n,): dL/dz = softmax(z) - onehot(c).
SoftmaxCrossEntropy = Loss(lambda z, c: -log_softmax(z)[np.arange(len(z)), c],
                           lambda z, c: softmax(z) - np.eye(z.shape[1])[c])


def chunks(layers, x, chunk):
    """(rows, the output for x[rows]) for slices of `chunk` rows, to bound the memory."""
    for start in range(0, len(x), chunk):
        rows = slice(start, start + chunk)
        yield rows, feed_forward(layers, x[rows], remember=False)


def mse(layers, x, y, chunk=50_000):
    """mean((y_hat - y)^2) on x (n, 2), y (n,): the true MSE, twice the mean loss."""
    total = 0.0
    for rows, y_hat in chunks(layers, x, chunk):
        err = y_hat[:, 0] - y[rows]                             # (m,)
        total += float(err @ err)
    return total / len(x)


def classification_scores(layers, x, labels, chunk=10_000):
    """(accuracy, mean -log softmax(z)_label) of the logits z for x (n, n_in), labels (n,)."""
    correct, total = 0, 0.0
    for rows, z in chunks(layers, x, chunk):                    # logits (m, classes)
        correct += int(np.count_nonzero(z.argmax(axis=1) == labels[rows]))
        total += float(SoftmaxCrossEntropy.loss(z, labels[rows]).sum())
    return correct / len(x), total / len(x)


# --- Backprop and the training loop. -----------------------------------------------------------

def backward(layers, dL_da):
    """dL/da (n, n_out) at the top down through the layers (each sets nabla): dL/da_in (n, n_in)."""
    for layer in reversed(layers):
        dL_da = layer.backprop(dL_da)
    return dL_da


def backprop(layers, x, y, loss=SquaredError):
    """Forward and backward on x (n, n_in), targets (or labels) y (n,), setting every nabla; nothing
    moves. Returns y_hat (n, n_out) and dL_dx (n, n_in), row k example k's dL_k/dx_k."""
    y_hat = feed_forward(layers, x)                # (n, n_out)
    return y_hat, backward(layers, loss.gradient(y_hat, y))   # dL/dy_hat: y_hat - y, squares


def descend(layers, learning_rate):
    """Plain gradient descent, every layer: the step train takes where no optimizer is given."""
    for layer in layers:
        layer.descend(learning_rate)


def train_step(layers, x, y, learning_rate, loss=SquaredError):
    """backprop, then w -= eta * dL/dw in every layer; returns backprop's (y_hat, dL_dx)."""
    y_hat, dL_dx = backprop(layers, x, y, loss)
    descend(layers, learning_rate)
    return y_hat, dL_dx


def minibatches(n, batch_size, rng):
    """Index arrays (<= batch_size,) forever, each epoch a fresh permutation of range(n) by rng."""
    while True:
        order = rng.permutation(n)                            # (n,)
        for k in range(0, n, batch_size):
            yield order[k:k + batch_size]


def train(layers, x, y, batches, step, loss=SquaredError):
    """For idx in batches: backprop on x[idx], y[idx], then step(). Returns the examples trained."""
    examples = 0
    for idx in batches:
        y_batch = y[idx]                                      # (m,)
        backprop(layers, x[idx], y_batch, loss)
        step()
        examples += len(y_batch)
    return examples


# --- The script: one loop; the data, network, loss and measure differ. -------------------------

# Options whose good values depend on the data: (what, the toy's (the original's), the images').
BY_DATA = {"epochs": ("passes over the data", 100, 10), "learning-rate": ("eta", 0.002, 0.1),
           "decay": ("eta is multiplied by this after each epoch", 0.997, 1.0),
           "batch-size": ("examples per update, dL/dw averaged over them", 1, 100)}


def parse_args(argv):
    p = argparse.ArgumentParser(description="Per-example SGD on generate.py's points, or images.")
    p.add_argument("--data", choices=("toy",) + images.NAMES, default="toy", help="default toy")
    p.add_argument("--image-dir", type=Path, help="images: their folder (default images.py's)")
    p.add_argument("--data-dir", type=Path, default=HERE / "data", help="toy: x.npy, y.npy "
                   "(default data/, where generate.py writes)")
    p.add_argument("--heldout", type=int, default=generate.HELDOUT_COUNT,
                   help="toy: fresh points for the held-out MSE (default 20,000: ~1%% noise)")
    p.add_argument("--plots-dir", type=generate.out_path, default=HERE / "plots" / "sgd",
                   help="toy: where the surface is drawn after each epoch (default plots/sgd)")
    p.add_argument("--no-plots", action="store_true", help="toy: draw no surface (default: draw)")
    p.add_argument("--seed", type=generate.seed, default=0,
                   help="the weights and the order (default 0)")
    for name, (what, toy_default, image_default) in BY_DATA.items():
        p.add_argument(f"--{name}", type=type(toy_default), help=f"{what} (default "
                       f"{toy_default} for the toy, the original's; {image_default} for images)")
    images_data = p.parse_args(argv).data != "toy"
    p.set_defaults(**{k.replace("-", "_"): v[1 + images_data] for k, v in BY_DATA.items()})
    args = p.parse_args(argv)
    for name in ("data_dir", "heldout", "plots_dir", "no_plots") if images_data else ("image_dir",):
        if getattr(args, name) != p.get_default(name):
            p.error(f"--{name.replace('_', '-')} is for --data "
                    f"{'toy' if images_data else 'fashion-mnist or mnist'} only")
    for name, ok, must in (("epochs", args.epochs >= 1, "at least 1"),
                           ("batch-size", args.batch_size >= 1, "at least 1"),
                           ("learning-rate", 0 < args.learning_rate < np.inf, "positive, finite"),
                           ("decay", 0 < args.decay <= 1, "in (0, 1]"),
                           ("heldout", args.heldout >= 1, "at least 1")):
        if not ok:
            p.error(f"--{name} must be {must}")
    return args


def main(argv=None):
    args = parse_args(argv)
    print("sgd.py: settings:", generate.settings_line(vars(args)), flush=True)
    rng = np.random.default_rng(args.seed)       # the weights first, then each epoch's order
    toy = args.data == "toy"
    try:        # generate.py's points (n, 2) and fresh ones, or images (n, 784) and their test set
        (x, y), (x_test, y_test) = ((generate.load_dataset(args.data_dir),
                                     generate.heldout(args.heldout)) if toy
                                    else images.load(args.data, args.image_dir))
    except images.DataError as e:
        print(f"sgd.py: {e}", file=sys.stderr)
        return 2
    layers = make_network(rng) if toy else make_network(rng, IMAGE_SIZES, ReLU, "he")
    loss = SquaredError if toy else SoftmaxCrossEntropy

    def measure(epoch):                          # the toy's MSE, or the test set's accuracy
        if not toy:
            return "test accuracy {:.4f}, test loss {:.4f}".format(
                *classification_scores(layers, x_test, y_test))
        train_mse = f"train MSE {mse(layers, x, y):.4f}, " if epoch else ""
        return f"{train_mse}held-out MSE {mse(layers, x_test, y_test):.4f}"

    print(f"epoch 0: {measure(0)}", flush=True)
    eta, examples, seconds, size = args.learning_rate, 0, 0.0, args.batch_size
    for epoch in range(1, args.epochs + 1):
        # Phase 1, timed: a pass in a fresh order, a slice of rows a step (docs/speed.md: cheaper).
        t0 = time.perf_counter()
        order = rng.permutation(len(x))                                # (n,)
        batches = (slice(k, k + size) for k in range(0, len(x), size))
        step = functools.partial(descend, layers, eta)                 # w -= eta * dL/dw
        examples += train(layers, x[order], y[order], batches, step, loss)
        seconds += time.perf_counter() - t0
        # Phase 2: how well it does, the picture, and a smaller step for the next epoch.
        print(f"epoch {epoch}: {measure(epoch)}, eta {eta:.5f}, {time.perf_counter() - t0:.2f} s, "
              f"{seconds:.1f} s of training in all ({1e6 * seconds / examples:.1f} us/example)",
              flush=True)
        if toy and not args.no_plots:
            generate.save_surface(lambda p: predict(layers, p),
                                  args.plots_dir / f"epoch_{epoch:03d}.png",
                                  title=f"sgd.py after epoch {epoch}")
        eta *= args.decay
    return 0


if __name__ == "__main__":
    sys.exit(main())
