"""Synthetic gradients in one process: a network cut into groups of layers at boundaries.

Jaderberg et al. 2016 (arXiv 1608.05343), synchronously, in sgd.py's notation; dni.py runs it.
The toy is two groups, [layer 1 | layers 2-3]; an image classifier has a boundary after every
hidden layer. At boundary b a model M_b (boundary.SyntheticGradientModel, first guessing 0)
guesses g_b = dL/dh_b from h_b, or from [h_b, y] when conditioned (cDNI). One step, h_0 = x:

    for k = 1..K:
        h_k = group_k.feed_forward(h_{k-1})
        top = M_k(h_k [, y]), or for the top group the loss's dL/dz
        t_{k-1} = group_k.backprop(top)             # what group k hands down
        opt_k.step()                                # group k is done: it never waits
        M_{k-1}.learn(h_{k-1} [, y], t_{k-1})

Only the top boundary's target is a true gradient; below it, a guess of a guess (bootstrapping).
METHODS: synthetic, and the controls backprop (the ceiling), frozen (only the top group
learns), random (random directions, the true gradient's row lengths) and random-synthetic-norm
(g_hat's lengths); the results are in docs/images.md.
"""

import collections
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

import generate
import sgd
from datasets import images
from parts import boundary, optimizers, snapshots

TOP = Path(__file__).resolve().parents[1]
METHODS = ("synthetic", "backprop", "frozen", "random", "random-synthetic-norm")
# The images' --method names: (method, conditioned). dni and cdni are the paper's.
IMAGE_METHODS = {"backprop": ("backprop", False), "cdni": ("synthetic", True),
                 "dni": ("synthetic", False), "top-only": ("frozen", False),
                 "random": ("random", False)}
AUTO = "auto"                   # a Config field left AUTO takes its data's default
# What depends on the data. Why M_b learns at 3e-3 on images: docs/images.md.
DEFAULTS = {
    "toy": dict(conditioned=False, hidden=12, learning_rate=0.005,
                model_learning_rate=0.001, batch_size=10, seconds=60.0,
                steps=None, eval_every=10_000, dtype="float64"),
    "images": dict(conditioned=True, hidden=0, learning_rate=3e-4,
                   model_learning_rate=3e-3, batch_size=100, seconds=None,
                   steps=1500, eval_every=150, dtype="float32"),
}
COSINE_WINDOW = 5_000           # the toy's cosine: the mean over these last examples
PROBE = 1_000                   # the images' cosines: on these training examples


# A step's arrays per boundary b, bottom first, each (n, width_b) or None: what group b
# learned from (None: nothing), M_b's guess and what M_b learned towards.
Step = collections.namedtuple("Step", "used guesses targets")


class Network:
    """sgd.make_network's layers cut into groups, an optimizer per group and a model M_b per
    boundary where used (the toy's always, so that every method draws the same numbers from a
    seed; only `guessing` methods call them: the controls spend no time on models)."""

    def __init__(self, rng, sizes, config, cuts=None):
        toy = config.data == "toy"
        self.rng, self.method, self.dtype = rng, config.method, np.dtype(config.dtype)
        self.directions = np.random.default_rng([config.seed, 1])   # random rows: not the order
        self.classes = 0 if toy else sizes[-1]
        self.loss = sgd.SquaredError if toy else sgd.SoftmaxCrossEntropy
        act = sgd.Sigmoid if toy else sgd.ReLU
        self.layers = sgd.make_network(rng, sizes, act, "normal" if toy else "he")
        if cuts is None:                # the toy: [layer 1 | 2-3]; images: every layer
            cuts = [1] if toy else list(range(1, len(sizes) - 1))
        cuts = [0, *cuts, len(sizes) - 1]
        self.groups = [self.layers[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
        guessing = toy or self.method in ("synthetic", "random-synthetic-norm")
        self.models = [boundary.SyntheticGradientModel(
            rng, config.hidden, config.conditioned, config.zero_init,
            config.model_optimizer, config.model_learning_rate,
            width=group[-1].w.shape[1], context=self.classes or 1, activation=act)
            for group in self.groups[:-1]] if guessing else []
        # The weights in dtype: float32 halves the time of every product (numpy hands it
        # to BLAS's sgemm); float64 is sgd.py's, bit for bit. Optimizers after: moments too.
        for layer in self.layers + [la for m in self.models for la in m.layers]:
            layer.w, layer.b = layer.w.astype(self.dtype), layer.b.astype(self.dtype)
        for m in self.models:
            m.optimizer = optimizers.make(config.model_optimizer, m.layers,
                                          config.model_learning_rate)
        self.optimizers = [optimizers.make(config.optimizer, group, config.learning_rate)
                           for group in self.groups]

    @property
    def guessing(self):
        """Whether the models are used: their guesses move a group, or give random rows' sizes."""
        return self.method in ("synthetic", "random-synthetic-norm")

    def context(self, y):
        """M's extra input: the toy's targets y (n,), or labels (n,) one-hot (n, classes)."""
        if not self.classes:
            return y
        return images.one_hot(y, self.classes).astype(self.dtype, copy=False)

    def direction(self, g_hat, g):
        """What a group below the top learns from, per method: nothing (frozen), g_hat, the
        true g, or random rows with the lengths of g's rows (random) or of g_hat's."""
        if self.method in ("frozen", "synthetic", "backprop"):
            return {"synthetic": g_hat, "backprop": g}.get(self.method)
        lengths = g if self.method == "random" else g_hat
        return boundary.random_directions(lengths, self.directions).astype(self.dtype,
                                                                           copy=False)

    def true_gradients(self, x, y):
        """[g_1, ..., g_{K-1}], g_b = dL/dh_b (n, width_b); sets every nabla, moves nothing."""
        dL_da = self.loss.gradient(sgd.feed_forward(self.layers, x), y)   # dL/dz
        found = []
        for group in reversed(self.groups):
            found.append(dL_da)
            dL_da = sgd.backward(group, dL_da)
        return found[:0:-1]

    def step(self, x, y):
        """The module docstring's step on x (n, n_in), y (n,); returns a Step."""
        x = x.astype(self.dtype, copy=False)
        context = self.context(y) if self.guessing else None
        top = len(self.groups) - 1
        used, guesses, targets = [None] * (top + 1), [None] * top, [None] * top
        if self.method in ("backprop", "random"):
            g = self.true_gradients(x, y)                 # every nabla set
            used = [self.direction(None, g_b) for g_b in g]
            if self.method == "random":                   # nabla from the random rows
                for group, d in zip(self.groups[:top], used, strict=True):
                    sgd.backward(group, d)
            for opt in self.optimizers:
                opt.step()
            return Step(used, guesses, targets)
        h_below = x                                       # the others: bottom up, no waiting
        for k in range(top + 1):
            h, g_hat, used[k], t = self.group_step(k, h_below, y, context)
            if k < top:
                guesses[k] = g_hat
            if k and self.guessing and t is not None:
                self.models[k - 1].learn(h_below, context, t)
                targets[k - 1] = t
            h_below = h
        return Step(used[:top], guesses, targets)

    def group_step(self, k, h_below, y, context):
        """Group k's share of a step, in one process or as a chain's stage: h = group_k(h_below),
        g = the loss's dL/dz at the top, else the direction from M_k's guess g_hat (g None: it
        does not learn); backprop g, step. Returns (h, g_hat, g, t = dL/dh_below)."""
        h = sgd.feed_forward(self.groups[k], h_below)
        g_hat = None
        if k == len(self.groups) - 1:
            g = self.loss.gradient(h, y)
        else:
            if self.guessing:
                g_hat = self.models[k].predict(h, context)    # before M_k learns
            g = self.direction(g_hat, None)
        if g is None:
            return h, g_hat, None, None
        t = sgd.backward(self.groups[k], g)
        self.optimizers[k].step()
        return h, g_hat, g, t

    def cosines(self, x, y):
        """Per boundary, the mean cos(g_hat_b, g_b) over the rows of (x, y) (None: no M_b or no
        row with a direction). Moves nothing."""
        if not self.guessing:
            return [None] * (len(self.groups) - 1)
        g = self.true_gradients(x.astype(self.dtype, copy=False), y)
        out = []
        for group, m, g_b in zip(self.groups[:-1], self.models, g, strict=True):
            cos = boundary.row_cosines(m.predict(group[-1].a, self.context(y)), g_b)
            out.append(float(cos.mean()) if len(cos) else None)
        return out


class Stage:
    """Group k of the Network run(config) draws (rng goes on as run's), as a chain's stage holds
    it: its layers, M_k above (a replica of the stage above's) and M_{k-1} below, which it
    learns. Frozen stages hold the models too, unused: their versions pace the chain."""

    def __init__(self, config, sizes, k, cuts=None):
        self.rng = np.random.default_rng(config.seed)
        modelled = dataclasses.replace(config, method="synthetic") \
            if config.method == "frozen" else config
        self.net = net = Network(self.rng, sizes, modelled, cuts)
        net.method = config.method
        self.k, self.top = k, k == len(net.groups) - 1
        self.group, self.optimizer = net.groups[k], net.optimizers[k]
        models = net.models or [None] * (len(net.groups) - 1)
        self.above = None if self.top else models[k]
        self.below = models[k - 1] if k else None

    def step(self, h_below, y):
        """Network.step's work for this group on h_below (n, n_in), y (n,). Returns h (n, n_out),
        M_{k-1}'s guess before it learned and its target (None, None at stage 1)."""
        net = self.net
        h_below = h_below.astype(net.dtype, copy=False)
        if net.classes:                                 # labels, as the wire's floats
            y = np.asarray(y).astype(np.int64)
        context = net.context(y) if net.models else None
        h, _, _, t = net.group_step(self.k, h_below, y, context)
        if self.below is None or t is None:
            return h, None, None
        g_hat = self.below.predict(h_below, context)
        self.below.learn(h_below, context, t)
        return h, g_hat, t


# --- A run: its config, what it measures (the toy's or the images'), the loop. ---------------

@dataclasses.dataclass
class Config:
    """Everything run() needs: a field left AUTO takes its data's DEFAULTS; None, no limit."""

    data: str = "toy"                       # "toy" (generate.py's) or images.NAMES
    method: str = "synthetic"               # METHODS
    conditioned: bool = AUTO                # M_b sees [h_b, y] (the paper's cDNI)
    hidden: int = AUTO                      # M_b's hidden units (0: linear)
    zero_init: bool = True                  # M_b's last layer starts at zero
    optimizer: str = "adam"                 # every group's
    learning_rate: float = AUTO
    model_optimizer: str = "adam"           # every M_b's
    model_learning_rate: float = AUTO
    batch_size: int = AUTO
    seconds: float | None = AUTO            # of training (measuring is not counted)
    examples: int | None = None             # stop after this many examples
    steps: int | None = AUTO                # stop after this many minibatches
    eval_every: int = AUTO                  # examples (toy) or steps (images) per measurement
    seed: int = 0                           # layers, models, probe, order; random rows apart
    metrics: Path | None = None             # a JSON line per measurement
    weights_out: Path | None = None         # the final layers (snapshots.save_layers)
    data_dir: Path = TOP / "data"           # toy: x.npy and y.npy, as generate.py writes
    heldout: int = 20_000                   # toy: fresh points held-out MSE is measured on
    image_dir: Path | None = None           # images: the IDX folder (None: images.load's)
    layers: int = 3                         # images: weight layers, layers - 1 boundaries
    width: int = 256                        # images: units per hidden layer
    train_examples: int | None = None       # images: the first n training images only
    eval_examples: int | None = None        # images: the first n test images only
    dtype: str = AUTO                       # weights and activations (Network says why)

    def __post_init__(self):
        for name, value in DEFAULTS["toy" if self.data == "toy" else "images"].items():
            if getattr(self, name) == AUTO:
                setattr(self, name, value)

    def check(self):
        """Raise ValueError naming the field (and its flag) that cannot run."""
        def refuse(name, why):
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{name} ({flag}) {why}, got {getattr(self, name)!r}")

        kinds = tuple(optimizers.OPTIMIZERS)
        for name, allowed in (("data", ("toy",) + images.NAMES), ("method", METHODS),
                              ("optimizer", kinds), ("model_optimizer", kinds),
                              ("dtype", ("float32", "float64"))):
            if getattr(self, name) not in allowed:
                refuse(name, f"must be one of {', '.join(allowed)}")
        if self.seconds is None and self.examples is None and self.steps is None:
            raise ValueError("nothing would stop the run: give seconds (--seconds, not "
                             "inf), examples (--examples) or steps (--steps)")
        for name in ("seconds", "learning_rate", "model_learning_rate"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                refuse(name, "must be positive")
            if name != "seconds" and getattr(self, name) == math.inf:
                refuse(name, "must be finite")
        for name in ("examples", "steps", "eval_every", "batch_size", "heldout", "width",
                     "train_examples", "eval_examples"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                refuse(name, "must be at least 1")
        if self.hidden < 0:
            refuse("hidden", "must be 0 (a linear model) or more")
        if self.layers < 2:
            refuse("layers", "must be at least 2 (one hidden layer, one boundary)")


def label(config):
    """The method as its data's command line spells it: --update (toy) or --method (images)."""
    if config.data == "toy":
        return config.method
    return next(name for name, (method, conditioned) in IMAGE_METHODS.items()
                if method == config.method
                and (method != "synthetic" or conditioned == config.conditioned))


def network_sizes(layers, width=256, n_in=784, classes=10):
    """(n_in, width, ..., width, classes): `layers` weight layers, layers - 1 of them hidden."""
    return (n_in,) + (width,) * (layers - 1) + (classes,)


class Toy:
    """generate.py's data; held-out MSE on fresh points, and the mean cos(g_hat, g) of M's
    guesses in training over the last COSINE_WINDOW examples, every eval_every examples."""

    unit, score = "examples", "heldout_mse"

    def __init__(self, config, data=None):
        if data is None:
            data = generate.load_dataset(config.data_dir), generate.heldout(config.heldout)
        (self.x, self.y), (self.x_test, self.y_test) = data
        self.sizes = sgd.SIZES
        self.cosines = collections.deque(maxlen=COSINE_WINDOW)     # per example

    def start(self, net, rng):
        self.net = net

    def watch(self, step):
        if step.guesses[0] is not None:                   # a control guesses nothing
            self.cosines.extend(boundary.row_cosines(step.guesses[0], step.targets[0]).tolist())

    def measure(self):
        return dict(heldout_mse=sgd.mse(self.net.layers, self.x_test, self.y_test),
                    cosine=float(np.mean(self.cosines)) if self.cosines else None)

    def text(self, row):
        return f"held-out MSE {row['heldout_mse']:.4f}, cosine {generate.fmt(row['cosine'], '.2f')}"


class Images:
    """images.load's (or data); every eval_every steps the test accuracy and cross-entropy, and
    each boundary's cosine of g_hat_b with the true gradient on PROBE fixed training examples."""

    unit, score = "steps", "loss"

    def __init__(self, config, data=None):
        if data is None:
            data = images.load(config.data, config.image_dir)
        (x, y), (x_test, y_test) = data
        dtype, n, m = np.dtype(config.dtype), config.train_examples, config.eval_examples
        self.x, self.y = x[:n].astype(dtype, copy=False), y[:n]              # (N, 784)
        self.x_test, self.y_test = x_test[:m].astype(dtype, copy=False), y_test[:m]
        classes = int(max(self.y.max(), self.y_test.max())) + 1             # 10
        self.sizes = network_sizes(config.layers, config.width, x.shape[1], classes)

    def start(self, net, rng):
        self.net, self.probe = net, rng.permutation(len(self.x))[:PROBE]

    def watch(self, step):
        pass

    def measure(self):
        accuracy, loss = sgd.classification_scores(self.net.layers, self.x_test, self.y_test)
        cosines = self.net.cosines(self.x[self.probe], self.y[self.probe])
        return dict(accuracy=accuracy, loss=loss, cosines=cosines)

    def text(self, row):
        return (f"test accuracy {row['accuracy']:.4f}, loss {row['loss']:.4f}, cosine per "
                f"boundary [{', '.join(generate.fmt(c, '.2f') for c in row['cosines'])}]")


def run(config, data=None, out=None, stop=None):
    """Train as config says on data ((x, y), (x_test, y_test); None: loaded), measuring as Toy
    or Images does, until stop (an Event) is set if not before. Returns the last row with
    "config", "curve" (every row), "seconds" (of training), "steps", "examples",
    "examples_per_s" and "diverged"."""
    config.check()
    task = (Toy if config.data == "toy" else Images)(config, data)
    rng = np.random.default_rng(config.seed)     # layers, models, probe, order
    net = Network(rng, task.sizes, config)
    task.start(net, rng)
    batches = sgd.minibatches(len(task.x), config.batch_size, rng)
    metrics = snapshots.MetricsLog(config.metrics, "dni")
    limit = math.inf if config.seconds is None else config.seconds
    budget = dict(examples=config.examples or sys.maxsize, steps=config.steps or sys.maxsize)
    done, seconds, curve = dict(examples=0, steps=0), 0.0, []
    name = label(config) + ("" if config.data == "toy" else f", {config.layers} layers")

    def say(line):
        if out is not None:
            print(f"dni.py: {line}", file=out, flush=True)

    def measure():
        count = "examples" if task.unit == "examples" else "step"
        row = {count: done[task.unit], "seconds": round(seconds, 3), **task.measure()}
        metrics.write(**row)
        curve.append(row)
        say(f"{label(config)}, step {done['steps']}, {seconds:.1f} s, "
            f"{done['examples']:,} examples, {task.text(row)}")
        return math.isfinite(row[task.score])

    def more():                                 # within budget, and not stopped (Ctrl-C)
        return all(done[k] < budget[k] for k in done) and not (stop and stop.is_set())

    say(f"{dataclasses.asdict(config)}, network {'-'.join(map(str, task.sizes))}")
    finite = measure()
    while finite and seconds < limit and more():
        # Phase 1: train up to the next measurement. Only this counts as time.
        t0, since = time.perf_counter(), done[task.unit]
        while more() and done[task.unit] - since < config.eval_every:
            idx = next(batches)[:budget["examples"] - done["examples"]]  # the last may be cut
            task.watch(net.step(task.x[idx], task.y[idx]))
            done["steps"], done["examples"] = done["steps"] + 1, done["examples"] + len(idx)
            if seconds + time.perf_counter() - t0 >= limit:
                break
        seconds += time.perf_counter() - t0
        # Phase 2: measure on what it never trained on.
        finite = measure()
        if not finite:
            say(f"diverged ({task.score} is not finite); stopped. Lower the learning rates.")
    if config.weights_out is not None:
        snapshots.save_layers(config.weights_out, net.layers)
    result = {**curve[-1], "config": {k: str(v) if isinstance(v, Path) else v for k, v in
                                      dataclasses.asdict(config).items()},
              "curve": curve, "seconds": seconds, **done, "diverged": not finite,
              "examples_per_s": done["examples"] / max(seconds, 1e-9)}
    say(f"done ({name}): {done[task.unit]:,} {task.unit} in {seconds:.1f} s of training "
        f"({result['examples_per_s']:,.0f} examples/s), {task.text(result)}")
    return result
