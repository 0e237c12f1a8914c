"""What every process keeps to resume after a restart, and its guard against divergence.

A checkpoint is one .npz file, written atomically, in one scheme: w0, b0, w1, b1, ... (its
weights), optimizer and opt_<k> (its optimizer's name and state), counters (in the order of
its COUNTERS), a second model's under a prefix (boundary_w0, ...), and what a server holds (h,
g, y, held, ...). load() refuses a missing, wrong-shaped or non-finite array with a ValueError
naming the file and the array, before it changes anything.
"""

import logging
import time

import numpy as np

import generate
from parts import snapshots

log = logging.getLogger("checkpoint")
DEFAULT_INTERVAL = 30.0     # seconds between checkpoints


def weight_names(weights, prefix=""):
    """[prefix + "w0", prefix + "b0", ...] for weights [w0, b0, w1, b1, ...]."""
    return [f"{prefix}{'wb'[k % 2]}{k // 2}" for k in range(len(weights))]


def save(path, models, counters, held=None):
    """Write models {prefix: (weights, optimizer)}, counters {name: int} and held {name:
    array}. An optimizer has .name and .state() {name: array}."""
    arrays = {"counters": np.array(list(counters.values())), **(held or {})}
    for prefix, (weights, optimizer) in models.items():
        arrays.update(zip(weight_names(weights, prefix), weights, strict=True))
        arrays[prefix + "optimizer"] = np.array(optimizer.name)
        arrays.update({f"{prefix}opt_{k}": a for k, a in optimizer.state().items()})
    snapshots.write_npz(path, arrays)


def load(path, models, counters, held=None):
    """Read what save() wrote for the same models, counters and held shapes {name: shape}; load
    each optimizer's state; return ({prefix: weights}, {counter: int}, {name: held array})."""
    arrays = snapshots.read_npz(path, "the checkpoint")

    def take(name, shape):
        a = arrays.get(name)
        if a is None:
            raise ValueError(f"checkpoint {path} has no {name!r}; was it written by another "
                             "script or another configuration?")
        if a.shape != tuple(shape):
            raise ValueError(f"checkpoint {path}: {name} has shape {a.shape}, expected "
                             f"{tuple(shape)} (same options as when it was written?)")
        if a.dtype.kind == "f" and not np.isfinite(a).all():
            raise ValueError(f"checkpoint {path}: {name} holds NaN or infinity")
        return a

    weights, states = {}, {}
    for prefix, (current, optimizer) in models.items():
        names = weight_names(current, prefix)
        weights[prefix] = [take(n, np.shape(w)).astype(np.float64)
                           for n, w in zip(names, current, strict=True)]
        written = str(arrays.get(prefix + "optimizer", "none"))
        if written != optimizer.name:
            raise ValueError(f"checkpoint {path} was written with --optimizer {written}; this "
                             f"run uses {optimizer.name}: resume with the optimizer it was "
                             "written with")
        states[prefix] = {k: take(f"{prefix}opt_{k}", np.shape(a))
                          for k, a in optimizer.state().items()}
    count = take("counters", (len(counters),)).tolist()
    held = {name: take(name, shape) for name, shape in (held or {}).items()}
    for prefix, (_, optimizer) in models.items():       # all checked: now change something
        optimizer.load_state(states[prefix])
    return weights, dict(zip(counters, map(int, count), strict=True)), held


def layer_weights(layers):
    """[w0, b0, w1, b1, ...] of sgd.Layers, as save() takes them."""
    return [p for layer in layers for p in (layer.w, layer.b)]


def set_layers(layers, weights):
    """Put [w0, b0, ...] back into the layers."""
    for k, layer in enumerate(layers):
        layer.w, layer.b = weights[2 * k], weights[2 * k + 1]


class Checkpointer:
    """Calls save(path) when `interval` seconds have passed (maybe), or at once (now); never once
    `owner` has diverged: its NaN optimizer state would replace the last checkpoint it can
    resume from."""

    def __init__(self, path, interval, save, owner=None):
        self.path, self.interval, self.save, self.owner = path, interval, save, owner
        self.next = time.monotonic() + interval

    def maybe(self):
        if time.monotonic() >= self.next:
            self.now()

    def now(self):
        """A write that fails (a full disk) is said, not raised; the last checkpoint stays whole."""
        if self.path is not None and not getattr(self.owner, "diverged", False):
            snapshots.written(f"the checkpoint {self.path}", self.save, self.path)
            self.next = time.monotonic() + self.interval


def add_arguments(p, what):
    """--checkpoint, --checkpoint-interval and --resume, the same for every process."""
    p.add_argument("--checkpoint", type=generate.out_text, default=None,
                   help=f"file to checkpoint {what} into, atomically, every "
                        "--checkpoint-interval seconds and when stopped (default: none)")
    p.add_argument("--checkpoint-interval", type=float, default=DEFAULT_INTERVAL,
                   help="seconds between checkpoints (default %(default)g: little lost on a crash)")
    p.add_argument("--resume", action="store_true",
                   help="start from --checkpoint instead of from scratch (default: off)")


def check_arguments(p, args):
    if args.resume and not args.checkpoint:
        p.error("--resume needs --checkpoint PATH")
    if not args.checkpoint_interval > 0:
        p.error("--checkpoint-interval must be positive")


# --- The divergence guard ------------------------------------------------------------------

def finite(*arrays):
    """True if every array (None: none) holds only finite numbers."""
    return all(a is None or np.isfinite(a).all() for a in arrays)


def guard(process, what, layers, step, *args):
    """step(*args) moves the layers and returns arrays (or None); if they or the layers are not
    finite, put the layers back and diverge. Returns step's result (or ()), None if diverged."""
    last_good = [w.copy() for w in layer_weights(layers)]
    result = step(*args) or ()
    if finite(*layer_weights(layers), *result):
        return result
    set_layers(layers, last_good)
    diverge(process, what)
    return None


def diverge(process, what, detail=""):
    """NaN or infinity appeared in `what`: mark process diverged, set its stop event (if any)
    and say so once. The caller keeps its last finite weights."""
    if not process.diverged:
        log.error("%s diverged (NaN or infinity%s); training stopped with the last finite "
                  "weights. Lower --learning-rate and restart.", what, detail)
    process.diverged = True
    if getattr(process, "stop", None) is not None:
        process.stop.set()
