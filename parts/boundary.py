"""A boundary's synthetic-gradient model M, and how well its guesses match the true gradients.

M maps h (n, w), or h and the target y side by side when "conditioned" (the paper's cDNI), to
g_hat (n, w), a guess at g = dL/dh: Dense(hidden, sigmoid) -> Dense(w, linear), its loss Keras's
"mse". It learns in one process (parts/decoupled.py), in oracle.py (Keras, the same DEFAULTS)
or beside a chain's stage (--colocated); model_forward is its one forward pass, from weights.
"""

import collections
import logging
import math
import threading
import time

import numpy as np

import sgd
import synthgrad
from parts import checkpoint, classify, optimizers

log = logging.getLogger("boundary")

# How M learns wherever it is learned (oracle.py's DEFAULTS too; docs/settings.md says why).
DEFAULTS = dict(hidden=12, conditioned=True, zero_init=True, optimizer="adam",
                learning_rate=0.001, batch_size=256, epochs_per_pass=2, quality_window=5_000)
# A classifier's boundary (classes > 0): linear, learning at 3e-3, as parts/decoupled.py's.
CLASSIFIER = dict(hidden=0, learning_rate=3e-3)


def model_forward(weights, inputs, activation=sgd.Sigmoid):
    """M: g_hat (n, w) for inputs (n, n_in), from [w1, b1, w2, b2] (a hidden layer, then
    linear) or [w, b] (linear)."""
    if len(weights) == 2:
        w, b = weights
        return inputs @ w + b                        # (n, w)
    w1, b1, w2, b2 = weights
    a1 = activation.f(inputs @ w1 + b1)              # (n, hidden)
    return a1 @ w2 + b2                              # (n, w)


def dense(n_in, n_out, activation, rng, zero=False):
    """An sgd.Layer as Keras initialises Dense: w (n_in, n_out) Glorot uniform, limit
    sqrt(6 / (n_in + n_out)), from rng (nothing drawn if zero: w = 0), and b (n_out,) zero."""
    # A throwaway generator takes sgd.Layer's normal draws, which Keras does not make.
    layer = sgd.Layer(n_in, n_out, activation, np.random.default_rng(0))
    limit = math.sqrt(6.0 / (n_in + n_out))
    layer.w = np.zeros((n_in, n_out)) if zero else rng.uniform(-limit, limit, (n_in, n_out))
    layer.b = np.zeros(n_out)
    return layer


class SyntheticGradientModel:
    """M, initialised and trained as oracle.build_model's Keras model (tested); hidden 0: one
    linear layer; context: y's width (1, or the classes of a one-hot label). learn() is one
    optimizer step; learn_pass() a pass as the oracle makes one, publishing (GET /weights) the
    new weights if finite, else leaving M `diverged`. `version` counts its steps."""

    def __init__(self, rng, hidden=12, conditioned=False, zero_init=True, optimizer="adam",
                 learning_rate=0.001, width=sgd.SIZES[1], context=1, activation=sgd.Sigmoid,
                 batch_size=DEFAULTS["batch_size"], epochs_per_pass=DEFAULTS["epochs_per_pass"]):
        self.rng, self.conditioned, self.activation = rng, conditioned, activation
        sizes = [width + context * conditioned] + ([hidden] if hidden else []) + [width]
        acts = [activation] * (len(sizes) - 2) + [sgd.Linear]
        last = len(sizes) - 2
        self.layers = [dense(n_in, n_out, act, rng, zero=zero_init and k == last)
                       for k, (n_in, n_out, act) in enumerate(zip(sizes[:-1], sizes[1:], acts,
                                                               strict=True))]
        self.optimizer = optimizers.make(optimizer, self.layers, learning_rate)
        self.batch_size, self.epochs_per_pass = batch_size, epochs_per_pass
        self.published = [w.copy() for w in self.weights()]
        self.version, self.last_loss, self.diverged = 0, None, False

    @classmethod
    def for_boundary(cls, width, seed, classes=0, **settings):
        """M with DEFAULTS (a classifier's CLASSIFIER), as a co-located stage learns it."""
        s = {**DEFAULTS, **(CLASSIFIER if classes else {}), **settings}
        return cls(np.random.default_rng(seed), s["hidden"], s["conditioned"], s["zero_init"],
                   s["optimizer"], s["learning_rate"], width, context=classes or 1,
                   batch_size=s["batch_size"], epochs_per_pass=s["epochs_per_pass"])

    def inputs(self, h, y):
        """M's input: h (n, w), or h and y (n,) or (n, context) side by side when conditioned."""
        return np.column_stack([h, y]) if self.conditioned else h

    def weights(self):
        """[w1, b1, w2, b2] (or [w, b]): as model_forward and Keras's set_weights take."""
        return [p for layer in self.layers for p in (layer.w, layer.b)]

    def predict(self, h, y):
        """g_hat (n, w) for h (n, w) and y (n,) or (n, context) (used only when conditioned)."""
        return model_forward(self.weights(), self.inputs(h, y), self.activation)

    def backprop(self, h, y, g):
        """Set every nabla for Keras's mse, L = mean over rows and outputs of (g_hat - g)^2, and
        return L: per row dL/dg_hat = 2 (g_hat - g) / w (sgd.Layer averages over rows)."""
        g_hat = sgd.feed_forward(self.layers, self.inputs(h, y))      # (n, w)
        err = g_hat - g                                               # (n, w)
        sgd.backward(self.layers, 2.0 * err / err.shape[1])
        return float(np.mean(err * err))

    def learn(self, h, y, g):
        """One optimizer step of M towards the true gradients g (n, w); returns the loss before."""
        loss = self.backprop(h, y, g)
        self.optimizer.step()
        return loss

    def learn_pass(self, h, y, g):
        """epochs_per_pass epochs over a chunk (h, y, g) just computed, in shuffled minibatches,
        then publish: fresh gradients, at a bounded share of the stage's time."""
        if self.diverged:
            return
        losses = []
        for _ in range(self.epochs_per_pass):
            order = self.rng.permutation(len(h))
            for k in range(0, len(order), self.batch_size):
                rows = order[k:k + self.batch_size]
                losses.append(self.learn(h[rows], y[rows], g[rows]))
        weights = [w.copy() for w in self.weights()]
        if not checkpoint.finite(*weights, losses):
            checkpoint.diverge(self, "the boundary model")   # the published weights stay
            return
        self.published, self.version = weights, self.version + len(losses)
        self.last_loss = float(np.mean(losses))

    def load(self, weights, version):
        """Take weights [w1, b1, ...] (a checkpoint's) and the step count."""
        checkpoint.set_layers(self.layers, weights)
        self.published, self.version = [w.copy() for w in self.weights()], version


def random_rows(rng, norms, width):
    """(n, width) rows in uniformly random directions (normalised Gaussians) with the given
    lengths norms (n,): the "random" controls' stand-in for a boundary's gradient."""
    z = rng.standard_normal((len(norms), width))
    return z * (norms / np.linalg.norm(z, axis=1))[:, None]


def random_directions(g, rng):
    """Each row of g (n, w) as a random direction of its norm: the random controls' update."""
    return random_rows(rng, np.linalg.norm(g, axis=1), g.shape[1])


# --- How good the guesses are. -----------------------------------------------------------------

def row_cosines(g_hat, g):
    """Per-row cosine similarity of g_hat and g (n, w), rows where either is zero left out."""
    return cosine_and_relative_error(g_hat, g)[0]


def cosine_and_relative_error(g_hat, g):
    """Per-row cosine similarity and relative error |g_hat - g| / |g| of g_hat against g, two
    1-D arrays: rows where g (or, for the cosine, g_hat) is zero have no direction, left out."""
    norm_g = np.linalg.norm(g, axis=1)
    norm_hat = np.linalg.norm(g_hat, axis=1)
    both = (norm_g > 0) & (norm_hat > 0)
    cos = np.einsum("ij,ij->i", g_hat[both], g[both]) / (norm_hat[both] * norm_g[both])
    nonzero = norm_g > 0
    rel = np.linalg.norm(g_hat[nonzero] - g[nonzero], axis=1) / norm_g[nonzero]
    return cos, rel


class Quality:
    """The live measure of a model's guesses: each batch of true gradients g against what it would
    have answered just before g arrived, over the last `window` examples (sums per `chunk`
    rows). Not locked: the caller holds its own lock around add() and fields()."""

    def __init__(self, window, chunk):
        self.cosines = collections.deque(maxlen=window)
        self.relative_errors = collections.deque(maxlen=window)
        self.sums = collections.deque(maxlen=max(1, window // chunk))
        self.cosine_sum, self.cosine_count = 0.0, 0           # since the start

    def add(self, g_hat, g):
        cos, rel = cosine_and_relative_error(g_hat, g)
        # sum g_hat . g, |g_hat|^2, |g|^2 and |g_hat - g|^2: over the window the aggregate cosine
        # (each example weighed by its gradient's size, as in an update) and the energy explained.
        self.sums.append(np.array([np.sum(g_hat * g), np.sum(g_hat * g_hat), np.sum(g * g),
                                   np.sum((g_hat - g) ** 2)]))
        self.cosine_sum += float(cos.sum())
        self.cosine_count += len(cos)
        self.cosines.extend(cos.tolist())
        self.relative_errors.extend(rel.tolist())

    def fields(self):
        """Over the window: the mean cosine and relative error |g_hat - g| / |g| per example,
        "aggregate_cosine" (its gradients as one vector), "explained" (1 - sum |g_hat - g|^2 /
        sum |g|^2); and the mean cosine since the start. None before any gradient."""
        dot, hat2, true2, err2 = np.sum(self.sums, axis=0) if self.sums else np.zeros(4)
        return {
            "window": len(self.cosines),
            "cosine_similarity": float(np.mean(self.cosines)) if self.cosines else None,
            "relative_error": (float(np.mean(self.relative_errors))
                               if self.relative_errors else None),
            "cosine_similarity_since_start": (self.cosine_sum / self.cosine_count
                                              if self.cosine_count else None),
            "aggregate_cosine": float(dot / np.sqrt(hat2 * true2)) if hat2 * true2 > 0 else None,
            "explained": float(1 - err2 / true2) if true2 > 0 else None,
        }


# --- The model fetched from where it is learned (the stage below's local mode). -------------

class LocalSyntheticGradients:
    """M computed here, on a copy of the oracle's weights that a thread refreshes from GET
    /weights every `refresh_every` s: the weights travel, not a request per minibatch."""

    def __init__(self, oracle, refresh_every, stop, width=synthgrad.HIDDEN_SIZE):
        self.oracle, self.refresh_every, self.stop = oracle, refresh_every, stop
        self.width = width                          # of the h whose dL/dh the model predicts
        self.weights = self.conditioned = None
        self.version = 0
        self._thread = threading.Thread(target=self._refresh_forever, daemon=True,
                                        name="refresh-weights")

    def refresh(self):
        self.weights, self.conditioned, self.version = self.oracle.weights(self.width)

    def start(self):
        """Fetch the first weights (waiting for the oracle), then keep refreshing them. False,
        the reason logged, if it answers what no wait mends: a refusal (no /weights there, the
        wrong token), or a model for another width."""
        while not self.stop.is_set():
            try:
                self.refresh()
                break
            except synthgrad.PeerError as e:
                if e.refused or isinstance(e.__cause__, synthgrad.ProtocolError):
                    log.error("%s%s", e, "" if e.refused else
                              ": are the two started for the same h (--width)?")
                    return False
                log.warning("no oracle weights yet (%s); waiting for the oracle", e)
                self.oracle.wait_until_ready(self.stop)
        self._thread.start()
        return True

    def _refresh_forever(self):
        failing_since, said = None, -math.inf
        while not self.stop.wait(self.refresh_every):
            try:
                self.refresh()
            except synthgrad.PeerError as e:     # keep the weights we have; say so every 10 s
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if now - said >= 10.0:
                    log.warning("could not refresh the oracle's weights%s (%s); using version %d",
                                f" for {now - failing_since:.0f} s" if now > failing_since else "",
                                e, self.version)
                    said = now
                continue
            if failing_since is not None:
                log.info("the oracle answers again: its weights are version %d", self.version)
                failing_since, said = None, -math.inf

    def __call__(self, h, y):
        """g_hat (n, w) for h (n, w); y (n,) goes in as the model's first layer takes it: not
        at all, as one column (the toy's cDNI) or as a one-hot label (a classifier's)."""
        return model_forward(self.weights, classify.model_inputs(h, y, self.weights[0].shape[0]))
