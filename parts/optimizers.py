"""How a layer's weights move, given its gradients: plain SGD (the original's) and Adam.

An optimizer is made for layers (anything with w, b and the nabla_w, nabla_b of the last
backprop, as sgd.Layer) and its step() moves all of them once:

    opt = optimizers.make("adam", layers, learning_rate=0.005)
    ... backprop, which sets each layer's nabla_w and nabla_b ...
    opt.step()

SGD is sgd.py's w -= eta * dL/dw. Adam (Kingma and Ba 2015) steps every weight by the ratio of
running means of its gradient and of its square, so each moves at about the learning rate
whatever its gradient's scale; written as Keras 3 computes it (the oracle trains with Keras),
with Keras's beta_1 0.9, beta_2 0.999 and epsilon 1e-7:

    t += 1
    alpha = eta * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    m += (1 - beta_1) (g - m)
    v += (1 - beta_2) (g^2 - v)
    w -= alpha m / (sqrt(v) + epsilon)
"""

import math

import numpy as np

import sgd
from parts import checkpoint


class SGD:
    """w -= eta * dL/dw for every layer: sgd.Layer.descend, the tutorial's rule."""

    name = "sgd"

    def __init__(self, layers, learning_rate):
        self.layers, self.learning_rate = list(layers), learning_rate

    def step(self):
        sgd.descend(self.layers, self.learning_rate)

    def state(self):
        """The optimizer's state as {name: array}, for a checkpoint (SGD has none)."""
        return {}

    def load_state(self, arrays):
        """Put back what state() returned."""


class Adam:
    """Adam on every layer's w and b, as Keras 3 computes it (see the module docstring)."""

    name = "adam"
    beta_1, beta_2, epsilon = 0.9, 0.999, 1e-7               # Keras's

    def __init__(self, layers, learning_rate):
        self.layers, self.learning_rate = list(layers), learning_rate
        self.t = 0                                           # steps taken
        self.m = [np.zeros_like(p) for p in checkpoint.layer_weights(self.layers)]  # mean of g
        self.v = [np.zeros_like(m) for m in self.m]                          # mean of g^2

    def step(self):
        self.t += 1
        alpha = (self.learning_rate * math.sqrt(1 - self.beta_2 ** self.t)
                 / (1 - self.beta_1 ** self.t))
        params = checkpoint.layer_weights(self.layers)           # [w0, b0, w1, b1, ...]
        grads = [g for layer in self.layers for g in (layer.nabla_w, layer.nabla_b)]
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            m += (1 - self.beta_1) * (g - m)
            v += (1 - self.beta_2) * (g * g - v)
            p -= alpha * m / (np.sqrt(v) + self.epsilon)    # in place: the layer's own array

    def state(self):
        """{"t", "m0", "v0", "m1", ...}: everything step() depends on, for a checkpoint."""
        arrays = {"t": np.array(self.t)}
        for k, (m, v) in enumerate(zip(self.m, self.v, strict=True)):
            arrays[f"m{k}"], arrays[f"v{k}"] = m, v
        return arrays

    def load_state(self, arrays):
        self.t = int(arrays["t"])
        for k in range(len(self.m)):
            self.m[k][...], self.v[k][...] = arrays[f"m{k}"], arrays[f"v{k}"]


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam)}


def make(name, layers, learning_rate):
    """The optimizer called `name` ("sgd" or "adam") for layers at learning_rate."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
    return OPTIMIZERS[name](layers, learning_rate)
