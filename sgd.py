"""Plain backpropagation and stochastic gradient descent, in numpy, written to be read.

Run it (after `python generate.py`):

    python sgd.py                      # 100 epochs, per-example SGD, a plot per epoch
    python sgd.py --epochs 5 --plots-dir plots/sgd
    python sgd.py --data fashion-mnist         # classify images: 784-256-256-10, 10 epochs
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

Classifying (--data fashion-mnist) changes the ends, not backprop: hidden layers are ReLU,
a = max(z, 0) with sigma'(z) = 1 where z > 0 else 0, w drawn from N(0, 2/n_in) ("he"); the last
layer is linear and its z (n, 10) are logits, softmax(z)_j = e^z_j / sum_i e^z_i the predicted
probabilities. An example with label c has loss L = -log softmax(z)_c, and its row of dL/dz is
softmax(z) - onehot(c): prediction minus target again. backprop takes that first row from a loss
object, SquaredError (the default) or SoftmaxCrossEntropy.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import generate
from datasets import images

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


class ReLU:
    """sigma(z) = max(z, 0), with sigma'(z) = 1 where z > 0, else 0 (at the kink, 0: any value
    in [0, 1] is a subgradient, and z is almost never exactly 0)."""

    name = "relu"

    @staticmethod
    def f(z):
        return np.maximum(z, 0.0)

    @staticmethod
    def derivative(z, a):
        return (z > 0).astype(z.dtype)


ACTIVATIONS = {cls.name: cls for cls in (Sigmoid, Linear, ReLU)}


# --- Losses: each knows the loss of every example and its row of dL/dy_hat. ---------------------

class SquaredError:
    """L = 1/2 (y_hat - y)^2 for y_hat (n, 1) and targets y (n,): dL/dy_hat = y_hat - y."""

    @staticmethod
    def loss(y_hat, y):
        return 0.5 * (y_hat[:, 0] - y) ** 2                     # (n,)

    @staticmethod
    def gradient(y_hat, y):
        return y_hat - y.reshape(y_hat.shape)                   # (n, 1)


def log_softmax(z):
    """log softmax(z) per row of z (n, k). Subtracting each row's max first changes nothing
    (softmax(z) = softmax(z - m)) but keeps e^z finite: logits of 1000 give no overflow."""
    shifted = z - z.max(axis=1, keepdims=True)                  # (n, k), every row's max 0
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(z):
    """The probabilities softmax(z)_j = e^z_j / sum_i e^z_i, per row of z (n, k)."""
    return np.exp(log_softmax(z))


class SoftmaxCrossEntropy:
    """L = -log softmax(z)_c for logits z (n, k) and labels c (n,) in 0..k-1:
    dL/dz = softmax(z) - onehot(c), per row."""

    @staticmethod
    def loss(z, labels):
        return -log_softmax(z)[np.arange(len(z)), labels]       # (n,)

    @staticmethod
    def gradient(z, labels):
        delta = softmax(z)                                      # (n, k)
        delta[np.arange(len(z)), labels] -= 1.0                 # - onehot(c)
        return delta


# --- A layer: forward value, local gradients, and a descent step. -----------------------------

class Layer:
    """One fully connected layer, a = sigma(a_in . w + b), on rows of examples.

    w has shape (n_in, n_out) and b shape (n_out,). init "normal" (the toy's) draws both from a
    standard normal; "he" draws w from N(0, 2/n_in) and sets b = 0, which suits ReLU layers:
    half of a ReLU's inputs come out as 0, and the 2 makes up for it. Inputs are 2-D,
    a_in (n, n_in), rows are examples; one example is a_in (1, n_in).

    Why np.dot rather than @, and sum(axis=0) / n rather than mean(axis=0): per-example SGD
    works on arrays of one row, where numpy's fixed cost per call is most of the time, and these
    cost ~0.3-1 us less a call for the same bits. A step takes a fifth less time (measured).
    """

    def __init__(self, n_in, n_out, activation, rng, init="normal"):
        if init == "he":
            self.w = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
            self.b = np.zeros(n_out)
        else:
            assert init == "normal", f"init must be 'normal' or 'he', got {init!r}"
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


def make_network(rng, sizes=SIZES, activation=Sigmoid, init="normal"):
    """Layers of the given sizes: `activation` in the hidden layers, a linear output layer,
    drawn in order from rng. The defaults are the toy's 2-24-12-1; a classifier of images is
    make_network(rng, (784, 256, 256, 10), ReLU, "he"), its output the logits."""
    acts = [activation] * (len(sizes) - 2) + [Linear]
    return [Layer(n_in, n_out, act, rng, init)
            for n_in, n_out, act in zip(sizes[:-1], sizes[1:], acts)]


def feed_forward(layers, a):
    """Push rows a (n, n_in) through the layers in turn, each remembering what backprop needs;
    returns the last layer's output (n, n_out)."""
    for layer in layers:
        a = layer.feed_forward(a)
    return a


def outputs(layers, x):
    """The last layer's output (n, n_out) for inputs x (n, n_in). Stores nothing on the layers
    (Layer.output), so it is safe on any number of rows and between training steps."""
    a = x
    for layer in layers:
        a = layer.output(a)
    return a


def predict(layers, x):
    """The toy network's output for inputs x (n, 2), as a vector (n,) (see outputs)."""
    return outputs(layers, x)[:, 0]                  # (n, 1) -> (n,)


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


def classification_scores(layers, x, labels, chunk=10_000):
    """(accuracy, mean cross-entropy) of the logits outputs(layers, x) on x (n, n_in) with labels
    (n,): the fraction of rows whose largest logit is their label's, and the mean over rows of
    -log softmax(z)_label. Rows go through `chunk` at a time, as in mse."""
    correct, total = 0, 0.0
    for start in range(0, len(x), chunk):
        z = outputs(layers, x[start:start + chunk])             # logits (m, classes)
        c = labels[start:start + chunk]                          # (m,)
        correct += int(np.count_nonzero(z.argmax(axis=1) == c))
        total += float(SoftmaxCrossEntropy.loss(z, c).sum())
    return correct / len(x), total / len(x)


def accuracy(layers, x, labels, chunk=10_000):
    """The fraction of rows of x (n, n_in) the network classifies as their labels (n,)."""
    return classification_scores(layers, x, labels, chunk)[0]


def backprop(layers, x, y, loss=SquaredError):
    """Forward and backward on the examples x (n, n_in) with targets y (n,): every layer's
    nabla_w, nabla_b are set (dL/dw, dL/db of the batch's mean loss); nothing moves yet.

    Returns (y_hat, dL_dx): y_hat (n, n_out), the network's output, and dL_dx (n, n_in), row k
    the gradient of example k's loss (1/2 (y_hat_k - y_k)^2 by default; with
    loss=SoftmaxCrossEntropy, y holds labels and y_hat logits) with respect to x[k].
    """
    y_hat = feed_forward(layers, x)                # (n, n_out)
    dL_da = loss.gradient(y_hat, y)                # dL/dy_hat (n, n_out): y_hat - y for squares
    for layer in reversed(layers):
        dL_da = layer.backprop(dL_da)
    return y_hat, dL_da                            # dL_da is now dL/dx (n, n_in)


def train_step(layers, x, y, learning_rate, loss=SquaredError):
    """backprop, then one gradient-descent step of every layer: w -= eta * dL/dw.

    Returns backprop's (y_hat, dL_dx), y_hat from before the step.
    """
    y_hat, dL_dx = backprop(layers, x, y, loss)
    for layer in layers:
        layer.descend(learning_rate)
    return y_hat, dL_dx


def minibatches(n, batch_size, rng):
    """Index arrays (<= batch_size,) forever: each epoch a fresh permutation of range(n),
    drawn from rng when the epoch starts (its last minibatch may be short)."""
    while True:
        order = rng.permutation(n)                            # (n,)
        for k in range(0, n, batch_size):
            yield order[k:k + batch_size]


def train(layers, x, y, batches, step, loss=SquaredError):
    """The training loop: for each idx in batches (index arrays or slices), backprop on
    x[idx] (m, n_in), y[idx] (m,), then step() moves the layers (an optimizer's step, or
    plain descent). Returns the number of examples trained."""
    examples = 0
    for idx in batches:
        backprop(layers, x[idx], y[idx], loss)
        step()
        examples += len(y[idx])
    return examples


def train_examples(layers, x, y, learning_rate, batch_size=1, loss=SquaredError):
    """SGD over x (n, n_in), y (n,) in the order given: one train_step per slice of batch_size
    rows (batch_size 1: per-example SGD, each example a batch of one; the last may be short)."""
    for k in range(0, len(x), batch_size):
        train_step(layers, x[k:k + batch_size], y[k:k + batch_size], learning_rate, loss)


def train_epoch(layers, x, y, learning_rate, rng, batch_size=1, loss=SquaredError):
    """One pass of SGD over x (n, n_in), y (n,) in a random order."""
    order = rng.permutation(len(x))
    train_examples(layers, x[order], y[order], learning_rate, batch_size, loss)


# --- The script. -------------------------------------------------------------------------------

IMAGE_SIZES = (784, 256, 256, 10)        # 28 x 28 pixels in, two ReLU layers, 10 logits out
# The options whose good values depend on the data: (the toy's, the images'). The toy's are the
# original's; for images, minibatches of 100 at eta 0.1 (no decay) reached 85.6% test accuracy on
# Fashion-MNIST after 3 epochs and 87.6% after 10 (seed 0; 14-114 s an epoch on 2 shared cores).
DEFAULTS = {"epochs": (100, 10), "learning_rate": (0.002, 0.1), "decay": (0.997, 1.0),
            "batch_size": (1, 100)}
TOY_ONLY = ("data_dir", "heldout", "plots_dir", "no_plots")


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Learn the target of generate.py with per-example SGD and plain backprop, "
                    "or (--data) classify images with minibatch SGD.")
    p.add_argument("--data", choices=("toy",) + images.NAMES, default="toy",
                   help="what to learn (default toy: generate.py's target, the tutorial's; "
                        f"the images train {'-'.join(map(str, IMAGE_SIZES))} with ReLU and a "
                        "softmax output)")
    p.add_argument("--image-dir", type=Path, default=None,
                   help="with --data fashion-mnist or mnist: the folder of the four gzipped "
                        "IDX files (default: where datasets/images.py looks)")
    p.add_argument("--data-dir", type=Path, default=HERE / "data",
                   help="the toy's folder holding x.npy and y.npy (default: data/ next to this "
                        "file, where generate.py writes)")
    p.add_argument("--epochs", type=int, default=None,
                   help="passes over the data (default 100 for the toy, the original's; 10 for "
                        "images: 87.6%% test accuracy on Fashion-MNIST, 14 s an epoch on 2 cores "
                        "at best)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="eta (default 0.002 for the toy, the original's; 0.1 for images, where "
                        "0.05 learned more slowly in 3 epochs)")
    p.add_argument("--decay", type=float, default=None,
                   help="eta is multiplied by this after each epoch (default 0.997 for the toy, "
                        "the original's; 1 for images: 10 epochs need none)")
    p.add_argument("--heldout", type=int, default=20_000,
                   help="toy: fresh points (not in the training data) to measure held-out MSE "
                        "on (default 20,000: the estimate's noise is then ~1%%)")
    p.add_argument("--plots-dir", type=Path, default=HERE / "plots" / "sgd",
                   help="toy: where the fitted surface is drawn after each epoch "
                        "(default plots/sgd next to this file)")
    p.add_argument("--no-plots", action="store_true",
                   help="toy: do not draw the surface each epoch (plotting costs ~0.1 s an "
                        "epoch; default: draw)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the initial weights and the example order (default 0)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="examples per update (default 1 for the toy: per-example SGD, the "
                        "original's; 100 for images, the usual size and deep_dni's); dL/dw is "
                        "averaged over the minibatch")
    args = p.parse_args(argv)
    images_data = args.data != "toy"
    for name, defaults in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, defaults[images_data])
    for name in TOY_ONLY if images_data else ("image_dir",):
        if getattr(args, name) != p.get_default(name):
            p.error(f"--{name.replace('_', '-')} is for --data "
                    f"{'toy' if images_data else 'fashion-mnist or mnist'} only")
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
    if args.data != "toy":
        return main_images(args)
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


def main_images(args):
    """main for --data fashion-mnist or mnist: minibatch SGD on the softmax cross-entropy, the
    test set's accuracy and mean loss after each epoch. Returns 2, saying why in one line, if
    the images cannot be read."""
    try:
        (x, labels), (x_test, labels_test) = images.load(args.data, args.image_dir)
    except images.DataError as e:
        print(f"sgd.py: {e}", file=sys.stderr)
        return 2
    rng = np.random.default_rng(args.seed)             # the weights first, then each epoch's order
    layers = make_network(rng, IMAGE_SIZES, ReLU, "he")
    accuracy_, loss = classification_scores(layers, x_test, labels_test)      # (10,000, 784)
    print(f"epoch 0: test accuracy {accuracy_:.4f}, test loss {loss:.4f}", flush=True)
    eta, seconds = args.learning_rate, 0.0
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        train_epoch(layers, x, labels, eta, rng, args.batch_size, SoftmaxCrossEntropy)
        seconds += time.perf_counter() - t0
        accuracy_, loss = classification_scores(layers, x_test, labels_test)
        print(f"epoch {epoch}: test accuracy {accuracy_:.4f}, test loss {loss:.4f}, eta "
              f"{eta:.5f}, {time.perf_counter() - t0:.1f} s, {seconds:.1f} s of training in all",
              flush=True)
        eta *= args.decay
    return 0


if __name__ == "__main__":
    sys.exit(main())
