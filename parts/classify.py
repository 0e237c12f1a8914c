"""What the three-process scripts need to classify images instead of fitting the toy (the
default): the data options, the layers, and the label a boundary model is conditioned on. The
label travels where the toy's target y does, a float per example (0.0 .. 9.0), so the protocol
does not change; a conditioned model (cDNI) sees it one-hot, as in the paper.
"""

from pathlib import Path

import numpy as np

import generate
import sgd
from datasets import images

DATA_NAMES = ("toy",) + images.NAMES


def data_arguments(p, what="stream", images_only=False,
                   toy="the toy's x.npy and y.npy in --data-dir (default), or "):
    """--data and --image-dir, as sgd.py and dni.py name them (images_only: no toy, and
    fashion-mnist by default; toy: what --data toy reads)."""
    names = images.NAMES if images_only else DATA_NAMES
    toy = "" if images_only else toy
    p.add_argument("--data", choices=names, default=names[0],
                   help=f"what to {what}: {toy}fashion-mnist{' (default)' if images_only else ''}"
                        " or mnist (see `make data`)")
    p.add_argument("--image-dir", type=Path, default=None,
                   help="with --data fashion-mnist or mnist: the IDX files' folder (default: "
                        "where datasets/images.py looks)")


def load_training(data, data_dir, image_dir):
    """(x, y) for a stage 1: the toy's (N, 2), (N,) from data_dir, or an image set's training
    images (60000, 784) float32 and labels (60000,) as floats; images.DataError if missing."""
    if data == "toy":
        return generate.load_dataset(data_dir)
    (x, labels), _ = images.load(data, image_dir, download=False)
    return x, labels.astype(np.float64)


def load_test(data, image_dir, count=None):
    """An image set's test images (n, 784) and integer labels (n,), the first count of them."""
    _, (x, labels) = images.load(data, image_dir, download=False)
    return x[:count], labels[:count]


def make_layers(sizes, activation, rng, last_linear):
    """sgd.make_network's layers, "sigmoid" (normal init) or "relu" (He's), the last linear only
    if last_linear (the logits, or the toy's y)."""
    act, init = (sgd.ReLU, "he") if activation == "relu" else (sgd.Sigmoid, "normal")
    layers = sgd.make_network(rng, sizes, act, init)
    layers[-1].activation = sgd.Linear if last_linear else act
    return layers


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
