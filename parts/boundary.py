"""A boundary's synthetic-gradient model, and how well its guesses match the true gradients.

Importing it runs nothing. Three places learn a synthetic-gradient model M, all with what is here:

    dni.py          M beside layer 1 in one process, one step per minibatch
    oracle.py       M in a process of its own (Keras), learning from gradients sent to it
    --colocated     M beside the stage *above* a boundary (train_output.py, train_middle.py),
                    learning from the true gradients that stage computes for its own input,
                    its weights fetched by the stage below (GET /weights), so a chain of K
                    stages is K processes and nothing else (chain.py --colocated)

M maps h (n, w), or h and the target y side by side (n, w + 1) when "conditioned" (the paper's
cDNI), to g_hat (n, w), a guess at g = dL/dh: Dense(hidden, sigmoid) -> Dense(w, linear), its
loss Keras's "mse", the mean over rows and outputs of (g_hat - g)^2.

Why the stage above, not the one below: the stage above computes the true gradients, so M learns
from them where they appear, with nothing sent; only M's weights travel down (GET /weights, a
few KB a few times a second), which the stage below fetches exactly as it fetches an oracle's.
The stage below would need the true gradients sent to it, and the first stage, train_input.py,
is a client that serves nothing.

LocalSyntheticGradients is that stage below's side (train_input.py's and train_middle.py's local
mode): M computed on a copy of its weights, refreshed from where it is learned.
"""

import collections
import logging
import math
import threading

import numpy as np

import sgd
import synthgrad
from datasets import images
from parts import classify, optimizers

log = logging.getLogger("boundary")

# --- The model, from sgd.Layer. ----------------------------------------------------------------

def model_forward(weights, inputs):
    """The synthetic-gradient model: g_hat (n, 24) for inputs (n, n_in), from [w1, b1, w2, b2]
    (a hidden sigmoid layer, then linear) or [w, b] (linear). The oracle answers requests with
    it, and the local mode (LocalSyntheticGradients) uses it on weights from GET /weights."""
    if len(weights) == 2:
        w, b = weights
        return inputs @ w + b                        # (n, 24)
    w1, b1, w2, b2 = weights
    a1 = 1.0 / (1.0 + np.exp(-(inputs @ w1 + b1)))   # (n, hidden)
    return a1 @ w2 + b2                              # (n, 24)


def dense(n_in, n_out, activation, rng, zero=False):
    """An sgd.Layer initialised as Keras initialises Dense: w (n_in, n_out) uniform on
    [-limit, limit] with limit = sqrt(6 / (n_in + n_out)) (Glorot uniform), drawn from rng, and
    b (n_out,) zero; with zero, w is zero too (and nothing is drawn)."""
    # sgd.Layer draws standard normals, which Keras does not: a throwaway generator takes that
    # draw, so the run's rng gives only what Keras would have drawn.
    layer = sgd.Layer(n_in, n_out, activation, np.random.default_rng(0))
    limit = math.sqrt(6.0 / (n_in + n_out))
    layer.w = np.zeros((n_in, n_out)) if zero else rng.uniform(-limit, limit, (n_in, n_out))
    layer.b = np.zeros(n_out)
    return layer


class SyntheticGradientModel:
    """M: g_hat (n, w) from h (n, w), or from [h, y] (n, w + context) when conditioned.

    hidden > 0: Dense(hidden, sigmoid) -> Dense(w, linear); hidden = 0: one linear layer. The
    same architecture, initialisation and loss as oracle.build_model's Keras model, and the
    same forward pass as model_forward on weights() (both tested).

    The toy conditions on its target y (n,), one column (context 1); a classifier conditions
    on the one-hot label (n, classes) (context = classes), and may take another hidden
    activation (deep_dni's hidden layer is ReLU).
    """

    def __init__(self, rng, hidden=12, conditioned=False, zero_init=True, optimizer="adam",
                 learning_rate=0.001, width=sgd.SIZES[1], context=1, activation=sgd.Sigmoid):
        self.conditioned = conditioned
        sizes = [width + context * conditioned] + ([hidden] if hidden else []) + [width]
        acts = [activation] * (len(sizes) - 2) + [sgd.Linear]
        last = len(sizes) - 2
        self.layers = [dense(n_in, n_out, act, rng, zero=zero_init and k == last)
                       for k, (n_in, n_out, act) in enumerate(zip(sizes[:-1], sizes[1:], acts))]
        self.optimizer = optimizers.make(optimizer, self.layers, learning_rate)

    def inputs(self, h, y):
        """M's input: h (n, w), or h and y (n,) or (n, context) side by side when conditioned."""
        return np.column_stack([h, y]) if self.conditioned else h

    def weights(self):
        """[w1, b1, w2, b2] (or [w, b]): as model_forward and Keras's set_weights take."""
        return [p for layer in self.layers for p in (layer.w, layer.b)]

    def predict(self, h, y):
        """g_hat (n, w) for h (n, w) and targets y (n,) or (n, context) (used only when
        conditioned)."""
        a = self.inputs(h, y)
        for layer in self.layers:
            a = layer.output(a)
        return a

    def backprop(self, h, y, g):
        """Set every layer's nabla_w, nabla_b to the gradient of Keras's mse loss,
        L = mean over rows and outputs of (g_hat - g)^2, and return L (nothing moves yet).

        Per row dL/dg_hat = 2 (g_hat - g) / w; sgd.Layer.backprop averages over the rows.
        """
        g_hat = sgd.feed_forward(self.layers, self.inputs(h, y))      # (n, w)
        err = g_hat - g                                               # (n, w)
        dL_da = 2.0 * err / err.shape[1]
        for layer in reversed(self.layers):
            dL_da = layer.backprop(dL_da)
        return float(np.mean(err * err))

    def learn(self, h, y, g):
        """One optimizer step of M towards the true gradients g (n, w); returns the loss before."""
        loss = self.backprop(h, y, g)
        self.optimizer.step()
        return loss


def random_rows(rng, norms, width):
    """(n, width) rows in uniformly random directions (normalised Gaussians) with the given
    lengths norms (n,): the "random" controls' stand-in for a boundary's gradient."""
    z = rng.standard_normal((len(norms), width))
    return z * (norms / np.linalg.norm(z, axis=1))[:, None]


# --- How good the guesses are. -----------------------------------------------------------------

def row_cosines(g_hat, g):
    """Per-row cosine similarity of g_hat and g (n, w), rows where either is zero left out
    (they have no direction)."""
    return cosine_and_relative_error(g_hat, g)[0]


def cosine_and_relative_error(g_hat, g):
    """Per-row cosine similarity and relative error |g_hat - g| / |g| of g_hat against g.

    Rows where g (or, for the cosine, g_hat) is all zeros have no direction; they are left out.
    Returns two 1-D arrays (possibly of different lengths).
    """
    norm_g = np.linalg.norm(g, axis=1)
    norm_hat = np.linalg.norm(g_hat, axis=1)
    both = (norm_g > 0) & (norm_hat > 0)
    cos = np.einsum("ij,ij->i", g_hat[both], g[both]) / (norm_hat[both] * norm_g[both])
    nonzero = norm_g > 0
    rel = np.linalg.norm(g_hat[nonzero] - g[nonzero], axis=1) / norm_g[nonzero]
    return cos, rel


def alignment_sums(g_hat, g):
    """(sum of g_hat . g, sum of |g_hat|^2, sum of |g|^2, sum of |g_hat - g|^2) over all rows.

    Summed over a window they give the aggregate cosine sum(g_hat . g) / sqrt(sum |g_hat|^2
    sum |g|^2), which weighs each example by its gradient's size as a weight update does, and
    the fraction of the gradients' energy explained, 1 - sum |g_hat - g|^2 / sum |g|^2.
    """
    return np.array([np.sum(g_hat * g), np.sum(g_hat * g_hat), np.sum(g * g),
                     np.sum((g_hat - g) ** 2)])


class Quality:
    """The live measure of a model's synthetic gradients: each batch of true gradients g is
    compared with what the model would have answered for the same h just before g arrived,
    over a moving window of `window` examples (sums kept per chunk of `chunk` rows).

    Not locked: the caller holds its own lock around add() and fields()."""

    def __init__(self, window, chunk):
        self.cosines = collections.deque(maxlen=window)
        self.relative_errors = collections.deque(maxlen=window)
        self.sums = collections.deque(maxlen=max(1, window // chunk))
        self.cosine_sum, self.cosine_count = 0.0, 0           # since the start

    def add(self, g_hat, g):
        cos, rel = cosine_and_relative_error(g_hat, g)
        self.sums.append(alignment_sums(g_hat, g))
        self.cosine_sum += float(cos.sum())
        self.cosine_count += len(cos)
        self.cosines.extend(cos.tolist())
        self.relative_errors.extend(rel.tolist())

    def fields(self):
        """{"window": examples in the window, "cosine_similarity": mean over examples of
        cos(g_hat, g), "relative_error": mean of |g_hat - g| / |g|, "aggregate_cosine": cos of
        all the window's gradients as one vector, "explained": 1 - sum |g_hat - g|^2 / sum
        |g|^2, "cosine_similarity_since_start"} (floats, or None before any gradient)."""
        quality = {
            "window": len(self.cosines),
            "cosine_similarity": float(np.mean(self.cosines)) if self.cosines else None,
            "relative_error": (float(np.mean(self.relative_errors))
                               if self.relative_errors else None),
            "cosine_similarity_since_start": (self.cosine_sum / self.cosine_count
                                              if self.cosine_count else None),
        }
        dot, hat2, true2, err2 = np.sum(self.sums, axis=0) if self.sums else np.zeros(4)
        quality["aggregate_cosine"] = (float(dot / np.sqrt(hat2 * true2)) if hat2 * true2 > 0
                                       else None)
        quality["explained"] = float(1 - err2 / true2) if true2 > 0 else None
        return quality


# --- M beside the stage above a boundary (--colocated). -----------------------------------------

# oracle.py's algorithm (its DEFAULTS, which a test checks these against): the paper's cDNI,
# 12 hidden units, a zero last layer, Adam at 0.001 on minibatches of 256, two epochs a pass.
HIDDEN, CONDITIONED, ZERO_INIT, LEARNING_RATE, BATCH_SIZE, EPOCHS_PER_PASS = \
    12, True, True, 0.001, 256, 2
QUALITY_WINDOW = 5_000
# A classifier's boundary (classes > 0): deep_dni.py's model, the paper's for these networks,
# linear and learning at 3e-3 (deep_dni.MODEL_LEARNING_RATE says why; measured there).
CLASSIFIER_HIDDEN, CLASSIFIER_LEARNING_RATE = 0, 3e-3


def classifier_model(classes):
    """ColocatedModel's settings for a boundary of a network with `classes` labels (0: the toy's,
    oracle.py's algorithm as above)."""
    return {"hidden": CLASSIFIER_HIDDEN, "learning_rate": CLASSIFIER_LEARNING_RATE} if classes \
        else {}


class ColocatedModel:
    """M for the boundary below a stage, learning in that stage's own training thread.

    After each chunk the stage trains on (its input h (m, w), targets y (m,)), it hands over
    the true gradients g = dL/dh (m, w) it computed for them: learn() first measures what M
    would have answered for them (Quality, as the oracle measures), then trains M on them as
    oracle.py trains on what it holds: EPOCHS_PER_PASS epochs in shuffled minibatches of
    BATCH_SIZE, one Adam step each. The difference from the oracle: a pass is over the chunk
    just computed, not over every gradient ever received, so M learns from fresh gradients
    only and costs the stage a bounded share of its time (M's step is O(w x hidden), the
    stage's O(w x w) per layer).

    `weights` is the newest finite set, replaced whole after each learn() (GET /weights reads
    it from another thread); `version` counts M's steps. M that turns non-finite stops
    learning and keeps the last finite weights ("diverged").
    """

    def __init__(self, width, seed, hidden=HIDDEN, conditioned=CONDITIONED, zero_init=ZERO_INIT,
                 learning_rate=LEARNING_RATE, batch_size=BATCH_SIZE,
                 epochs_per_pass=EPOCHS_PER_PASS, quality_window=QUALITY_WINDOW, classes=0):
        self.rng = np.random.default_rng(seed)
        # a classifier's model (classes > 0) sees the one-hot label, the toy's its target y;
        # a hidden layer is sigmoid, as model_forward computes it below the boundary
        self.model = SyntheticGradientModel(self.rng, hidden, conditioned, zero_init, "adam",
                                            learning_rate, width, context=classes or 1)
        self.conditioned, self.width, self.classes = conditioned, width, classes
        self.batch_size, self.epochs_per_pass = batch_size, epochs_per_pass
        self.lock = threading.Lock()
        self.quality = Quality(quality_window, synthgrad.MAX_CHUNK)
        self.weights = [w.copy() for w in self.model.weights()]
        self.version = 0
        self.last_loss = None                 # mean over the last pass's steps
        self.diverged = False

    def learn(self, h, y, g):
        """Measure M on (h, y) against the true g, then one pass over them (see the class)."""
        if self.diverged:
            return
        if self.classes and self.conditioned:                     # the label as a one-hot row
            y = images.one_hot(classify.labels_of(y, self.classes), self.classes)
        g_hat = self.model.predict(h, y)                          # (m, w), before it learns
        with self.lock:
            self.quality.add(g_hat, g)
        losses = []
        for _ in range(self.epochs_per_pass):
            order = self.rng.permutation(len(h))
            for k in range(0, len(order), self.batch_size):
                rows = order[k:k + self.batch_size]
                losses.append(self.model.learn(h[rows], y[rows], g[rows]))
        weights = [w.copy() for w in self.model.weights()]
        if not all(np.isfinite(w).all() for w in weights) or not np.isfinite(losses).all():
            self.diverged = True                               # keep the last finite weights
            return
        self.weights, self.version = weights, self.version + len(losses)
        self.last_loss = float(np.mean(losses))

    def predict(self, h, y):
        """g_hat (n, w) from the published weights (what the stage below computes)."""
        return model_forward(self.weights, classify.model_inputs(h, y, self.weights[0].shape[0]))

    def quality_fields(self):
        with self.lock:
            return self.quality.fields()

    # --- checkpoints: M and its Adam state, under a prefix of their own ----------------------
    def checkpoint_arrays(self):
        arrays = {f"boundary_{k}": w.copy() for k, w in enumerate(self.model.weights())}
        arrays.update({f"boundary_{k}": a for k, a in
                       optimizers.checkpoint_arrays(self.model.optimizer).items()})
        arrays["boundary_version"] = np.array(self.version)
        return arrays

    def checkpoint_shapes(self):
        return {f"boundary_{k}": w.shape for k, w in enumerate(self.model.weights())}

    def load(self, path, arrays):
        """Take M's weights and optimizer state from a checkpoint's arrays (ValueError if they
        do not fit; nothing is changed then)."""
        prefix = "boundary_"
        state = optimizers.state_from_checkpoint(
            path, {k[len(prefix):]: a for k, a in arrays.items() if k.startswith(prefix)},
            self.model.optimizer)
        for layer, k in zip(self.model.layers, range(0, 2 * len(self.model.layers), 2)):
            layer.w = arrays[f"{prefix}{k}"].astype(np.float64)
            layer.b = arrays[f"{prefix}{k + 1}"].astype(np.float64)
        self.model.optimizer.load_state(state)
        self.version = int(arrays.get(f"{prefix}version", 0))
        self.weights = [w.copy() for w in self.model.weights()]


# --- The model fetched from where it is learned (train_input.py's and train_middle.py's local
# mode) ----------------------------------------------------------------------------------------

class LocalSyntheticGradients:
    """The local mode: the synthetic-gradient model computed here, on a copy of the oracle's
    weights that a background thread refreshes from GET /weights every `refresh_every` s.

    The oracle still does all the learning; only the model's weights travel, not a request
    per minibatch (as in the paper, where the model sits beside the layer it serves).
    """

    def __init__(self, oracle, refresh_every, stop, width=synthgrad.HIDDEN_SIZE):
        self.oracle, self.refresh_every, self.stop = oracle, refresh_every, stop
        self.width = width                          # of the h whose dL/dh the model predicts
        self.weights = self.conditioned = None
        self.refreshes = self.version = 0
        self._thread = threading.Thread(target=self._refresh_forever, daemon=True,
                                        name="refresh-weights")

    def refresh(self):
        self.weights, self.conditioned, self.version = self.oracle.weights(self.width)
        self.refreshes += 1

    def start(self):
        """Fetch the first weights (waiting for the oracle), then keep refreshing them."""
        while not self.stop.is_set():
            try:
                self.refresh()
                break
            except synthgrad.PeerError as e:
                log.warning("no oracle weights yet (%s); waiting for the oracle", e)
                self.oracle.wait_until_ready(self.stop)
        self._thread.start()

    def _refresh_forever(self):
        while not self.stop.wait(self.refresh_every):
            try:
                self.refresh()
            except synthgrad.PeerError as e:     # keep the weights we have; say so
                log.warning("could not refresh the oracle's weights (%s); using version %d",
                            e, self.version)

    def __call__(self, h, y):
        """g_hat (n, w) for h (n, w); y (n,) goes in as the model's first layer takes it: not
        at all, as one column (the toy's cDNI) or as a one-hot label (a classifier's)."""
        return model_forward(self.weights, classify.model_inputs(h, y, self.weights[0].shape[0]))
