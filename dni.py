"""Decoupled neural interfaces in one process: sgd.py, except layer 1's gradient comes from a model.

Run it (after `python generate.py`):

    python dni.py                                  # synthetic gradients, 60 s of training
    python dni.py --conditioned --hidden 0         # the paper's linear cDNI model
    python dni.py --update backprop                # the controls: true gradients,
    python dni.py --update frozen                  #   layer 1 never moves ("no bprop"),
    python dni.py --update random                  #   random directions of the true size
    python dni.py --examples 200000 --seconds inf --metrics runs/dni.jsonl
    python dni.py --data fashion-mnist --layers 3 --method cdni --steps 1500   # every layer
    python dni.py --help

--data fashion-mnist (or mnist) leaves the toy for deep_dni.py: an image classifier of --layers
layers with a synthetic gradient at every boundary (its docstring says how), one of its
--methods, for --steps minibatches, printing test accuracy, loss and each boundary's cosine.

This is Jaderberg et al. 2016 (arXiv 1608.05343) as the paper describes it, synchronously, in
sgd.py's notation: h = a1 (n, 24) is layer 1's output and g = dL/dh (n, 24) the gradient backprop
hands down to it, one row per example. oracle.py, train_output.py and train_input.py run the
same algorithm in three processes; here it is one loop, and what is left is the idea itself.

A synthetic gradient is a guess g_hat (n, 24) at g, made by a small model M from h (or from h and
the target y: "conditioned", the paper's cDNI): g_hat = M(h), M being oracle.py's model,
Dense(hidden, sigmoid) -> Dense(24, linear). Layer 1 can update as soon as it has h, with g_hat
in place of g, without waiting for the layers above to run forward and back: that decouples it.
M learns by regression from the true gradients when they come: one optimizer step on Keras's
"mse" loss, the mean over rows and the 24 outputs of (g_hat - g)^2.

What M has to learn: for one example, g = (y_hat - y) dy_hat/dh. The direction dy_hat/dh (24,)
depends only on h and on layers 2-3, which change slowly; the error y_hat - y needs y. M(h)
alone must learn the error as a function of h, which is the network's own residual: as hard as
the task, and changing with every step of layers 2-3 (in general M(h) can learn at best the
gradient averaged over the targets that go with h). M(h, y) is handed the error's y part, so
even a linear M(h, y) = A [h, y] + b can follow it. A zero last layer (--zero-init, the
paper's) makes the first g_hat exactly zero: layer 1 waits instead of following noise.

One step on a minibatch x (n, 2), y (n,), in the paper's order (Dni.step):

    h = layer1.feed_forward(x)                   # (n, 24)
    y_hat, g = sgd.backprop(layers23, h, y)      # g: the true dL/dh (n, 24)
    opt23.step()                                 # layers 2-3 learn as in sgd.py
    g_hat = M.predict(h, y)                      # (n, 24), before M learns from g
    layer1.backprop(direction(g_hat, g))         # what --update says
    opt1.step()                                  # (not when frozen)
    M.learn(h, y, g)                             # one step of M's optimizer on (h, g)

--update says which gradient reaches layer 1; all but the first are controls:
- synthetic (default): g_hat, the algorithm.
- backprop: g itself, so this is plain backprop of the whole network (bit for bit, tested):
  what every synthetic gradient stands in for.
- frozen: layer 1 keeps its initial weights and layers 2-3 learn on fixed random features: the
  paper's "no bprop", the floor. A synthetic gradient is worth something only if it beats this.
- random: each row a random direction with the length of that row of g: does g_hat's direction
  matter, or would steps of the right size in any direction do as well?
- random-synthetic-norm: the same with the length of g_hat's row, which is all the three-process
  input trainer could know (it never sees g): separates g_hat's direction from its size.
M learns in every mode, so the cosine between g_hat and g is reported in every mode.

`run(DniConfig(...))` is the same training without the command line (lab/experiments.py calls it).
"""

import argparse
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
from parts import boundary, deep_dni, optimizers, snapshots

HERE = Path(__file__).resolve().parent
IMAGES = deep_dni.DeepConfig()             # --data fashion-mnist's defaults
WIDTH = sgd.SIZES[1]                       # h is (n, 24)
UPDATES = ("synthetic", "backprop", "frozen", "random", "random-synthetic-norm")
COSINE_WINDOW = 5_000                      # examples the reported cosine is averaged over


# The synthetic-gradient model M and the cosine live in boundary.py, which oracle.py and the
# co-located stages share.
SyntheticGradientModel, row_cosines = boundary.SyntheticGradientModel, boundary.row_cosines


def random_rows(rng, norms, width=WIDTH):
    """(n, width) rows in uniformly random directions with the given lengths norms (n,)."""
    return boundary.random_rows(rng, norms, width)


# --- The network, its optimizers and M, and one training step. --------------------------------

class Dni:
    """sgd.make_network's three layers, an optimizer for layer 1 and one for layers 2-3, and M.

    rng makes the network first (the same network as sgd.py's with that seed), then M, and is
    kept for the random directions.
    """

    def __init__(self, rng, update="synthetic", optimizer="adam", learning_rate=0.005,
                 model_optimizer="adam", model_learning_rate=0.001, hidden=12, zero_init=True,
                 conditioned=False):
        self.rng, self.update = rng, update
        self.layers = sgd.make_network(rng)
        self.layer1, self.layers23 = self.layers[0], self.layers[1:]
        self.model = SyntheticGradientModel(rng, hidden, conditioned, zero_init,
                                            model_optimizer, model_learning_rate)
        self.opt1 = optimizers.make(optimizer, [self.layer1], learning_rate)
        self.opt23 = optimizers.make(optimizer, self.layers23, learning_rate)

    def direction(self, g_hat, g):
        """The dL/dh (n, 24) layer 1 learns from, per --update (not called when frozen)."""
        if self.update == "synthetic":
            return g_hat
        if self.update == "backprop":
            return g
        lengths = g if self.update == "random" else g_hat     # random-synthetic-norm: g_hat's
        return random_rows(self.rng, np.linalg.norm(lengths, axis=1))

    def step(self, x, y):
        """One minibatch x (n, 2), y (n,): sgd's train_step, except that layer 1 learns from
        `direction` and M learns from the true g. Returns (g_hat, g), each (n, 24)."""
        h = self.layer1.feed_forward(x)                       # (n, 24)
        _, g = sgd.backprop(self.layers23, h, y)              # the true dL/dh (n, 24)
        self.opt23.step()                                     # layers 2-3: as in sgd.py
        g_hat = self.model.predict(h, y)                      # synthetic dL/dh, before M learns
        if self.update != "frozen":
            self.layer1.backprop(self.direction(g_hat, g))    # dL/dw1 (2, 24), dL/db1 (24,)
            self.opt1.step()
        self.model.learn(h, y, g)                             # M regresses g_hat onto g
        return g_hat, g


# --- A run: the loop, measurements, metrics. ---------------------------------------------------

@dataclasses.dataclass
class DniConfig:
    """Everything run() needs; the defaults are the command line's (see parse_args for why)."""

    data_dir: Path = HERE / "data"          # x.npy and y.npy, as generate.py writes them
    seconds: float | None = 60.0            # of training (measuring is not counted); None: no limit
    examples: int | None = None             # stop after this many examples (None: no limit)
    eval_every: int = 10_000                # examples between held-out measurements
    batch_size: int = 10
    optimizer: str = "adam"                 # layers 1-3
    learning_rate: float = 0.005            # layers 1-3
    model_optimizer: str = "adam"           # M
    model_learning_rate: float = 0.001      # M
    hidden: int = 12                        # M's hidden units (0: linear)
    zero_init: bool = True                  # M's last layer starts at zero
    conditioned: bool = False               # M sees [h, y]
    update: str = "synthetic"               # what layer 1 learns from (UPDATES)
    seed: int = 0                           # the network, M, the example order, random directions
    heldout: int = 20_000                   # fresh points held-out MSE is measured on
    metrics: Path | None = None             # a JSON line per measurement (None: nowhere)
    weights_out: Path | None = None         # the final 3 layers, snapshots.save_layers (.npz)

    def check(self):
        """Raise ValueError naming the field (and its command-line flag) that cannot run."""
        def refuse(name, why):
            flag = "--" + name.replace("_", "-")
            raise ValueError(f"{name} ({flag}) {why}, got {getattr(self, name)!r}")

        if self.seconds is None and self.examples is None:
            raise ValueError("nothing would stop the run: give seconds (--seconds, not inf), "
                             "examples (--examples) or both")
        if self.seconds is not None and not self.seconds > 0:
            refuse("seconds", "must be positive")
        for name in ("examples", "eval_every", "batch_size", "heldout"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                refuse(name, "must be at least 1")
        for name in ("learning_rate", "model_learning_rate"):
            if not getattr(self, name) > 0:
                refuse(name, "must be positive")
        if self.hidden < 0:
            refuse("hidden", "must be 0 (a linear model) or more")
        if self.update not in UPDATES:
            refuse("update", f"must be one of {', '.join(UPDATES)}")
        for name in ("optimizer", "model_optimizer"):
            if getattr(self, name) not in optimizers.OPTIMIZERS:
                refuse(name, f"must be one of {', '.join(optimizers.OPTIMIZERS)}")


# Index arrays (<= batch_size,) forever, each epoch a fresh permutation: one home for both loops.
minibatches = deep_dni.minibatches


def run(config, out=None):
    """Train as config says; progress lines go to `out` (a text file) if given.

    Returns {"curve": [{seconds, examples, heldout_mse, cosine}, ...] from 0 examples on,
    "heldout_mse": the final one, "examples", "seconds" (of training), "examples_per_s",
    "cosine": mean per-row cos(g_hat, g) over the last ~5,000 examples (None if none had both
    nonzero), "diverged": True if held-out MSE stopped being finite (the run stops there)}.
    """
    config.check()

    def say(line):
        if out is not None:
            print(line, file=out, flush=True)

    say(f"dni.py: {dataclasses.asdict(config)}")
    x, y = generate.load_dataset(config.data_dir)             # (N, 2), (N,)
    x_test, y_test = generate.heldout(config.heldout)         # (heldout, 2), (heldout,)
    rng = np.random.default_rng(config.seed)                  # network, M, orders, directions
    net = Dni(rng, update=config.update, optimizer=config.optimizer,
              learning_rate=config.learning_rate, model_optimizer=config.model_optimizer,
              model_learning_rate=config.model_learning_rate, hidden=config.hidden,
              zero_init=config.zero_init, conditioned=config.conditioned)
    batches = minibatches(len(x), config.batch_size, rng)
    cosines = collections.deque(maxlen=COSINE_WINDOW)         # per example, the latest ones
    metrics = snapshots.MetricsLog(config.metrics, "dni")
    curve = []

    def measure(seconds, examples):
        cosine = float(np.mean(cosines)) if cosines else None
        row = dict(seconds=round(seconds, 3), examples=examples,
                   heldout_mse=sgd.mse(net.layers, x_test, y_test), cosine=cosine)
        metrics.write(**row)
        curve.append(row)
        say(f"dni.py: {seconds:.1f} s, {examples:,} examples, held-out MSE "
            f"{row['heldout_mse']:.4f}, cosine {'n/a' if cosine is None else f'{cosine:.2f}'}")
        return row

    seconds, examples, diverged = 0.0, 0, False
    time_limit = math.inf if config.seconds is None else config.seconds
    budget = sys.maxsize if config.examples is None else config.examples
    measure(0.0, 0)
    while seconds < time_limit and examples < budget and not diverged:
        # Phase 1: train up to the next measurement. Only this counts as time.
        t0 = time.perf_counter()
        next_measurement = examples + config.eval_every
        while examples < min(next_measurement, budget):
            idx = next(batches)[:budget - examples]           # the last one may be cut short
            g_hat, g = net.step(x[idx], y[idx])
            cosines.extend(row_cosines(g_hat, g).tolist())
            examples += len(idx)
            if seconds + time.perf_counter() - t0 >= time_limit:
                break
        seconds += time.perf_counter() - t0
        # Phase 2: how well the network fits points it never trained on.
        row = measure(seconds, examples)
        if not math.isfinite(row["heldout_mse"]):
            diverged = True
            say("dni.py: diverged (held-out MSE is not finite); stopped. Lower the learning rates.")
    if config.weights_out is not None:
        snapshots.save_layers(config.weights_out, net.layers)
    result = {"curve": curve, "heldout_mse": curve[-1]["heldout_mse"], "examples": examples,
              "seconds": seconds, "examples_per_s": examples / max(seconds, 1e-9),
              "cosine": curve[-1]["cosine"], "diverged": diverged}
    cosine = result["cosine"]
    say(f"dni.py: done ({config.update}): {examples:,} examples in {seconds:.1f} s of training "
        f"({result['examples_per_s']:,.0f}/s), held-out MSE {result['heldout_mse']:.4f}, "
        f"cosine(g_hat, g) {'n/a' if cosine is None else f'{cosine:.2f}'} over the last "
        f"{min(examples, COSINE_WINDOW):,} examples")
    return result


# --- The script. -------------------------------------------------------------------------------

def make_parser():
    p = argparse.ArgumentParser(
        description="Synthetic gradients in one process: sgd.py's network, with layer 1 "
                    "learning from a model's guess at its gradient (or from a control).")
    p.add_argument("--data-dir", type=Path, default=HERE / "data",
                   help="folder holding x.npy and y.npy (default data/ next to this file, where "
                        "generate.py writes)")
    p.add_argument("--update", choices=UPDATES, default="synthetic",
                   help="what layer 1 learns from (default synthetic, the algorithm; the others "
                        "are controls: backprop the true gradient, frozen never updated, random "
                        "random directions of the true gradient's size, random-synthetic-norm "
                        "of the synthetic one's)")
    p.add_argument("--optimizer", choices=tuple(optimizers.OPTIMIZERS), default="adam",
                   help="optimizer of layers 1-3 (default adam: in 15 s of --update backprop "
                        "it reached held-out MSE 0.0045, plain sgd 0.045 at eta 0.1 and 0.014 "
                        "at 0.5)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="learning rate of layers 1-3 (default 0.005 for the toy: with Adam, the "
                        "best of 0.001, 0.005 and 0.02 in 15 s of --update backprop: 0.012, "
                        f"0.0045, 0.0069; {IMAGES.learning_rate:g} for images, every layer, the "
                        "issue 24's sketch)")
    p.add_argument("--model-optimizer", choices=tuple(optimizers.OPTIMIZERS), default="adam",
                   help="optimizer of the synthetic-gradient model (default adam, as demo.py's "
                        "oracle uses)")
    p.add_argument("--model-learning-rate", type=float, default=None,
                   help="learning rate of the synthetic-gradient model (default 0.001 for the "
                        "toy, Keras's Adam default: it takes one step per minibatch, every "
                        f"minibatch; {IMAGES.model_learning_rate:g} for images, "
                        f"{deep_dni.MODEL_LEARNING_RATE_WHY})")
    p.add_argument("--hidden", type=int, default=None,
                   help="hidden units of the synthetic-gradient model, 0 for a linear model "
                        "(default 12 sigmoid units for the toy, the original oracle's; 0 for "
                        "images, the linear model of the paper's feed-forward networks; there, "
                        "hidden units are ReLU)")
    p.add_argument("--zero-init", action=argparse.BooleanOptionalAction, default=True,
                   help="start the model's last layer at zero, so the first synthetic gradients "
                        "are zero rather than noise (default on, the paper's)")
    p.add_argument("--conditioned", action="store_true",
                   help="the model also sees the target y (the paper's cDNI) (default off: "
                        "h alone, as the original oracle)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="examples per step of every layer and of the model (default 10 for the "
                        f"toy, the three-process trainers'; {IMAGES.batch_size} for images, the "
                        "issue 24's sketch)")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="seconds of training, measuring not counted (default 60: long enough "
                        "for the controls to separate; inf for no limit with --examples)")
    p.add_argument("--examples", type=int, default=None,
                   help="stop after this many examples too (default: no limit, --seconds stops "
                        "the run); a budget in examples compares modes of different speeds fairly")
    p.add_argument("--eval-every", type=int, default=10_000,
                   help="examples between held-out measurements (default 10,000: a point every "
                        "~0.2 s of training; each costs ~30 ms on 20,000 points, not counted)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the network (the same as sgd.py's with this seed), the model, "
                        "the example order and the random directions (default 0)")
    images_group = p.add_argument_group("images (--data fashion-mnist or mnist: deep_dni.py)")
    images_group.add_argument(
        "--data", choices=("toy",) + images.NAMES, default="toy",
        help="what to learn (default toy: generate.py's target, layer 1 decoupled; the images "
             "decouple every layer of a classifier)")
    images_group.add_argument(
        "--image-dir", type=Path, default=None,
        help="the folder of the four gzipped IDX files (default: where datasets/images.py looks)")
    images_group.add_argument(
        "--layers", type=int, default=IMAGES.layers,
        help=f"weight layers, counted as the paper counts them: layers - 1 hidden ReLU layers "
             f"and as many boundaries (default {IMAGES.layers}: 784-256-256-10, the paper's "
             "smallest)")
    images_group.add_argument(
        "--width", type=int, default=IMAGES.width,
        help=f"units per hidden layer (default {IMAGES.width}, the paper's)")
    images_group.add_argument(
        "--method", choices=deep_dni.METHODS, default=IMAGES.method,
        help=f"what each layer learns from (default {IMAGES.method}, the paper's cDNI: h and the "
             "label; dni h alone; the controls: backprop true gradients, top-only only the last "
             "layer learns, random random directions of the true gradients' lengths)")
    images_group.add_argument(
        "--steps", type=int, default=IMAGES.steps,
        help=f"minibatches of training (default {IMAGES.steps}, issue 24's sketch: 2.5 epochs)")
    images_group.add_argument(
        "--measure-every", type=int, default=IMAGES.eval_every,
        help=f"steps between measurements of test accuracy and cosines (default "
             f"{IMAGES.eval_every}: ten a run, each ~0.3 s, not counted as training)")
    p.add_argument("--heldout", type=int, default=20_000,
                   help="fresh points held-out MSE is measured on (default 20,000: the "
                        "estimate's noise is then ~1%%)")
    p.add_argument("--metrics", type=Path, default=None,
                   help="append a JSON line per measurement (seconds, examples, heldout_mse, "
                        "cosine) to this file (default: none)")
    p.add_argument("--weights-out", type=Path, default=None,
                   help="save the final three layers here (.npz, as snapshots.save_layers; "
                        "default: not saved)")
    return p


# The options whose defaults depend on --data: the toy's (DniConfig's) or the images'.
SHARED = ("batch_size", "learning_rate", "model_learning_rate", "hidden")
TOY_ONLY = ("data_dir", "update", "optimizer", "model_optimizer", "zero_init", "conditioned",
            "seconds", "examples", "eval_every", "heldout", "metrics", "weights_out")
IMAGES_ONLY = ("image_dir", "layers", "width", "method", "steps", "measure_every")


def parse_args(argv):
    p = make_parser()
    args = p.parse_args(argv)
    toy = args.data == "toy"
    for name in SHARED:
        if getattr(args, name) is None:
            setattr(args, name, getattr(DniConfig if toy else IMAGES, name))
    for name in IMAGES_ONLY if toy else TOY_ONLY:
        if getattr(args, name) != p.get_default(name):
            p.error(f"--{name.replace('_', '-')} is for "
                    f"{'--data fashion-mnist or mnist' if toy else 'the toy (--data toy)'} only")
    try:
        (config_from_args(args) if toy else deep_config_from_args(args)).check()
    except ValueError as e:
        p.error(str(e).replace("eval_every (--eval-every)", "measure_every (--measure-every)"))
    return args


def config_from_args(args):
    """The DniConfig of parse_args's options (the same names; --seconds inf is no limit)."""
    fields = {f.name for f in dataclasses.fields(DniConfig)}
    config = DniConfig(**{k: v for k, v in vars(args).items() if k in fields})
    if config.seconds == math.inf:
        config.seconds = None
    return config


def deep_config_from_args(args):
    """The deep_dni.DeepConfig of parse_args's options for --data fashion-mnist or mnist."""
    return dataclasses.replace(
        IMAGES, data=args.data, image_dir=args.image_dir, layers=args.layers, width=args.width,
        method=args.method, steps=args.steps, eval_every=args.measure_every, seed=args.seed,
        **{name: getattr(args, name) for name in SHARED})


def main_images(args):
    """deep_dni.run with the options, progress on stdout; 2 with one line if the images cannot
    be read, 1 if the run diverged."""
    try:
        result = deep_dni.run(deep_config_from_args(args), out=sys.stdout)
    except images.DataError as e:
        print(f"dni.py: {e}", file=sys.stderr)
        return 2
    shown = ", ".join("-" if c is None else f"{c:.2f}" for c in result["cosines"])
    print(f"dni.py: done ({args.method}, {args.layers} layers): {result['steps']} steps in "
          f"{result['seconds']:.1f} s of training, test accuracy {result['accuracy']:.4f}, "
          f"loss {result['loss']:.4f}, cosine per boundary [{shown}]", flush=True)
    return 1 if result["diverged"] else 0


def main(argv=None):
    args = parse_args(argv)
    if args.data != "toy":
        return main_images(args)
    result = run(config_from_args(args), out=sys.stdout)
    return 1 if result["diverged"] else 0


if __name__ == "__main__":
    sys.exit(main())
