"""What the scripts need to classify images instead of fitting the toy: the data option, the
layers, the loss and the label a boundary model is conditioned on.

Importing it runs nothing. The toy is every script's default and nothing here changes it:

    train_input.py --data fashion-mnist      stage 1 streams images (784 pixels) and labels
    train_middle.py --classes 10             ReLU layers; its boundary model sees the one-hot label
    train_output.py --loss cross-entropy     ReLU layers, logits out, softmax cross-entropy

The label travels where the toy's target y travels: a float per example (0.0 .. 9.0), so the
protocol does not change. A conditioned boundary model (cDNI) sees it as a one-hot row, as in
the paper (deep_dni.py does the same in one process).
"""

from pathlib import Path

import numpy as np

import generate
import sgd
from datasets import images

DATA_NAMES = ("toy",) + images.NAMES


def data_arguments(p, what="stream", images_only=False):
    """--data and --image-dir, as sgd.py and dni.py name them (images_only: no toy, and
    fashion-mnist by default)."""
    names = images.NAMES if images_only else DATA_NAMES
    toy = "" if images_only else "the toy's x.npy and y.npy in --data-dir (default), or "
    p.add_argument("--data", choices=names, default=names[0],
                   help=f"what to {what}: {toy}the training images of fashion-mnist"
                        f"{' (default)' if images_only else ''} or mnist (784 pixels in [0, 1], "
                        "the label as y; see `make data`)")
    p.add_argument("--image-dir", type=Path, default=None,
                   help="with --data fashion-mnist or mnist: the folder of the four IDX files "
                        "(default: where datasets/images.py looks: the Debian package's "
                        "folder, then Keras's cache)")


def load_training(data, data_dir, image_dir):
    """(x, y) for a stage 1: the toy's (N, 2), (N,) from data_dir, or an image set's training
    images (60000, 784) float32 and labels (60000,) as floats. images.DataError (one line) if
    the images are not there."""
    if data == "toy":
        return generate.load_dataset(data_dir)
    (x, labels), _ = images.load(data, image_dir, download=False)
    return x, labels.astype(np.float64)


def load_test(data, image_dir, count=None):
    """An image set's test images (n, 784) and integer labels (n,), the first count of them."""
    _, (x, labels) = images.load(data, image_dir, download=False)
    return x[:count], labels[:count]


def make_layers(sizes, activation, rng, last_linear):
    """sgd.Layers between sizes, each `activation` ("sigmoid" or "relu"), the last linear if
    last_linear (it gives the logits, or the toy's y): the toy's sigmoid with sgd.py's standard
    normals, or ReLU with He's init (what suits it; sgd.py says why)."""
    act, init = (sgd.ReLU, "he") if activation == "relu" else (sgd.Sigmoid, "normal")
    n = len(sizes) - 1
    return [sgd.Layer(a, b, sgd.Linear if last_linear and k == n - 1 else act, rng, init)
            for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True))]


def labels_of(y, classes):
    """Float labels y (n,) as ints, ValueError if any is not a whole number in 0..classes-1."""
    y = np.asarray(y)
    if not np.all(np.isfinite(y)) or np.any((y < 0) | (y >= classes) | (y != np.round(y))):
        raise ValueError(f"labels must be whole numbers in 0..{classes - 1}")
    return y.astype(np.int64)


def model_inputs(h, y, n_in):
    """A boundary model's input for h (n, w) and the targets y (n,), given its first layer's
    input width n_in: h alone (n_in = w), h and y side by side (n_in = w + 1, the toy's
    conditioned model), or h and the one-hot label (n_in = w + classes, a classifier's)."""
    extra = n_in - h.shape[1]
    if extra == 0:
        return h
    if extra == 1:
        return np.column_stack([h, y])
    return np.column_stack([h, images.one_hot(np.asarray(y).astype(np.int64), extra)])
