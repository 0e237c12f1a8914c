"""What training writes to disk: weight snapshots and metrics lines; plot.py reads both back.

Imported by the trainers, the oracle and plot.py; it runs nothing.

Metrics are JSON lines, one object per line: {"time": time.time(), "stage": ..., "seconds":
seconds since that process started, ...figures}. Each process appends to its own file.

Each trainer writes its layers into a progress folder as `<part>_<label>.npz`, where part is
"layer1" (the input trainer) or "layers23" (the output trainer). The label is

- "initial": the weights before any training;
- a tick: wall-clock seconds (time.time()) rounded *down* to a multiple of the snapshot interval.
  Both trainers save on the same ticks of the same clock, so layer1_T.npz and layers23_T.npz
  were taken within one training step of each other and compose into the network at moment T;
- "final": the weights when the trainer stopped.

Each file holds w0, b0, w1, b1, ... (layer k's weights (n_in, n_out) and biases (n_out,)) and
`time`, the exact time.time() it was taken. Files are written to a temporary name and renamed,
so a reader never sees half a file.
"""

import json
import os
import re
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

import sgd

LAYER1_SHAPES = [(2, 24)]
LAYERS23_SHAPES = [(24, 12), (12, 1)]
_NAME = re.compile(r"^(layer1|layers23)_(initial|final|\d+)\.npz$")


def write_npz(path, arrays):
    """Atomically write {name: array} to path (.npz): written to a temporary name, then renamed,
    so a reader sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in arrays.items()})
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_npz(path, what):
    """{name: array} from an .npz file, never unpickling; ValueError naming `what` if the file
    is missing, truncated or not an .npz archive."""
    try:
        with open(path, "rb") as raw:
            loaded = np.load(raw, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with loaded as f:
                return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {what} from {path}: {e}") from e


def save_layers(path, layers, taken_at=None):
    """Atomically write the layers' weights and biases to path (.npz)."""
    arrays = {"time": np.float64(time.time() if taken_at is None else taken_at)}
    for k, layer in enumerate(layers):
        arrays[f"w{k}"] = layer.w
        arrays[f"b{k}"] = layer.b
    write_npz(path, arrays)


def load_layers(path, shapes):
    """Layers from a file written by save_layers, checked against shapes [(n_in, n_out), ...].

    Hidden layers are sigmoid and the network's last layer (width 1) is linear. Raises ValueError
    with a clear message for a missing, truncated or wrong-shaped file, or one holding NaN.
    """
    arrays = read_npz(path, "weights")
    layers = []
    for k, (n_in, n_out) in enumerate(shapes):
        w, b = arrays.get(f"w{k}"), arrays.get(f"b{k}")
        if w is None or b is None:
            raise ValueError(f"{path}: layer {k} is missing (expected w{k}, b{k})")
        if w.shape != (n_in, n_out) or b.shape != (n_out,):
            raise ValueError(f"{path}: layer {k} has w {w.shape}, b {b.shape}; "
                             f"expected w {(n_in, n_out)}, b {(n_out,)}")
        if not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError(f"{path}: layer {k} holds NaN or infinity")
        activation = sgd.Linear if n_out == 1 else sgd.Sigmoid
        layer = sgd.Layer(n_in, n_out, activation, np.random.default_rng(0))
        layer.w, layer.b = w.astype(np.float64), b.astype(np.float64)
        layers.append(layer)
    return layers


class Snapshotter:
    """Saves `part`'s layers into folder on every tick of a shared wall clock.

    Call maybe_save(layers) as often as you like (it is a clock comparison unless a tick has
    passed); save_initial and save_final write the two labelled ends.
    """

    def __init__(self, folder, part, interval):
        assert part in ("layer1", "layers23")
        if int(interval) != interval or interval < 1:
            raise ValueError(f"snapshot interval must be a whole number of seconds, got {interval}")
        self.folder, self.part, self.interval = Path(folder), part, int(interval)
        self.next_tick = self._tick(time.time()) + self.interval
        self.saved = 0

    def _tick(self, t):
        return int(t // self.interval) * self.interval

    def path(self, label):
        return self.folder / f"{self.part}_{label}.npz"

    def maybe_save(self, layers):
        now = time.time()
        if now < self.next_tick:
            return False
        tick = self._tick(now)
        save_layers(self.path(tick), layers, taken_at=now)
        self.next_tick = tick + self.interval
        self.saved += 1
        return True

    def save_initial(self, layers):
        save_layers(self.path("initial"), layers)

    def save_final(self, layers):
        save_layers(self.path("final"), layers)


def list_snapshots(folder):
    """{part: {label: path}} for every snapshot file in folder; ticks are ints."""
    found = {"layer1": {}, "layers23": {}}
    for path in Path(folder).glob("*.npz"):
        m = _NAME.match(path.name)
        if m:
            part, label = m.groups()
            found[part][int(label) if label.isdigit() else label] = path
    return found


def paired_ticks(folder):
    """Sorted ticks for which both layer1_T.npz and layers23_T.npz exist."""
    found = list_snapshots(folder)
    return sorted(t for t in found["layer1"] if isinstance(t, int) and t in found["layers23"])


def load_composed(folder, layer1_label, layers23_label=None):
    """The full 2-24-12-1 network from layer1_<label> under layers23_<label> (same label unless
    layers23_label is given, e.g. to put the initial layer 1 under the final layers 2-3)."""
    folder = Path(folder)
    layers23_label = layer1_label if layers23_label is None else layers23_label
    return (load_layers(folder / f"layer1_{layer1_label}.npz", LAYER1_SHAPES) +
            load_layers(folder / f"layers23_{layers23_label}.npz", LAYERS23_SHAPES))


class MetricsLog:
    """Appends {"time", "stage", "seconds", **figures} lines to path (nothing if path is None)."""

    def __init__(self, path, stage):
        self.path, self.stage = (Path(path) if path else None), stage
        self.started = time.time()
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, **figures):
        if self.path is None:
            return
        now = time.time()
        line = json.dumps({"time": now, "stage": self.stage,
                           "seconds": round(now - self.started, 3), **figures})
        with self._lock, open(self.path, "a") as f:
            f.write(line + "\n")

    def every(self, interval, figures, stop):
        """Write figures() every `interval` seconds from a daemon thread until stop is set."""
        def loop():
            while not stop.wait(interval):
                self.write(**figures())
        if self.path is not None:
            threading.Thread(target=loop, name=f"metrics-{self.stage}", daemon=True).start()


# --- Checkpoints: everything a process needs to resume after a restart. ------------------------

save_checkpoint = write_npz     # a checkpoint is {name: array}, written atomically


def load_checkpoint(path, shapes):
    """{name: array} from a checkpoint, checked against shapes {name: shape}.

    Every named array must be present with exactly that shape and finite values; anything else
    (missing, truncated, not an .npz, wrong shape, NaN) raises ValueError with a clear message,
    and nothing is loaded.
    """
    arrays = read_npz(path, "the checkpoint")
    for name, shape in shapes.items():
        if name not in arrays:
            raise ValueError(f"checkpoint {path} has no {name!r}; was it written by another "
                             "script or another configuration?")
        if arrays[name].shape != tuple(shape):
            raise ValueError(f"checkpoint {path}: {name} has shape {arrays[name].shape}, "
                             f"expected {tuple(shape)} (same options as when it was written?)")
        if arrays[name].dtype.kind == "f" and not np.isfinite(arrays[name]).all():
            raise ValueError(f"checkpoint {path}: {name} holds NaN or infinity")
    return arrays


class Checkpointer:
    """Calls save() (which writes a checkpoint) when `interval` seconds have passed."""

    def __init__(self, path, interval, save):
        self.path, self.interval, self.save = path, interval, save
        self.next = time.monotonic() + interval
        self.saved = 0

    def maybe(self):
        if self.path is None or time.monotonic() < self.next:
            return False
        self.now()
        return True

    def now(self):
        if self.path is not None:
            self.save(self.path)
            self.saved += 1
            self.next = time.monotonic() + self.interval


def checkpoint_arguments(p, what):
    """--checkpoint, --checkpoint-interval and --resume, the same for every process."""
    p.add_argument("--checkpoint", default=None,
                   help=f"file to checkpoint {what} into, atomically, every "
                        "--checkpoint-interval seconds and when stopped (default: none)")
    p.add_argument("--checkpoint-interval", type=float, default=30.0,
                   help="seconds between checkpoints (default 30: little lost after a crash, "
                        "and writing even 200,000 examples takes well under a second)")
    p.add_argument("--resume", action="store_true",
                   help="start from --checkpoint instead of from scratch; a missing, truncated "
                        "or wrong-shaped checkpoint is refused with a message")


def check_checkpoint_arguments(p, args):
    if args.resume and not args.checkpoint:
        p.error("--resume needs --checkpoint PATH")
    if not args.checkpoint_interval > 0:
        p.error("--checkpoint-interval must be positive")
