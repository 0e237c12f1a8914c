"""Weights and metrics on disk: writing them while training, reading and evaluating them after.

Metrics are JSON lines, {"time", "stage", "seconds" since the process started, ...figures}, a
file per process. Each trainer writes its layers atomically as `<part>_<label>.npz` (w0, b0,
..., time), part layer1 or layers23, label initial, final or a tick: time.time() rounded down
to a multiple of the snapshot interval. Both trainers tick on the same clock, so layer1_T and
layers23_T compose into the network at moment T. A run folder (demo.py's) adds
metrics/<process>.jsonl and the plain-backprop baseline's backprop/final.npz.
"""

import json
import logging
import math
import os
import re
import threading
import time
import zipfile
from pathlib import Path

import numpy as np

import sgd

log = logging.getLogger("synthgrad")

# by hand, each run's snapshots go into PROGRESS/<run>, at the repository's top level
PROGRESS = Path(__file__).resolve().parents[1] / "progress"

LAYER1_SHAPES = [(2, 24)]
LAYERS23_SHAPES = [(24, 12), (12, 1)]
BACKPROP_SHAPES = [(2, 24), (24, 12), (12, 1)]     # sgd.make_network's three layers
_NAME = re.compile(r"^(layer1|layers23)_(initial|final|\d+)\.npz$")
# The moment "layer 1 before training under layers 2-3 at the end": if its MSE is as low as the
# final network's, layer 1's training (driven by synthetic gradients) did not matter.
SWAP_LABEL = "initial layer 1 + final layers 2-3"


class NothingToRead(Exception):
    """A file or folder the caller needs is missing or unreadable: the message says which."""


# --- Weight snapshots: writing and reading one file, and the Snapshotter. -------------------

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
            if raw.read(2) != b"PK":        # (numpy would say "pickled data ... load it unsafely")
                raise ValueError("not an .npz archive")
            raw.seek(0)
            with np.load(raw, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ValueError(f"cannot read {what} from {path}: {e}") from e


_unwritten = {}                                    # what: when a failed write of it was said


def written(what, write, *args):
    """write(*args), True; False if it raised OSError (a full disk, a folder removed), said in one
    line every 30 s per `what`: not raised, so a trainer trains on and its next write tries again.
    """
    try:
        write(*args)
    except OSError as e:
        if time.monotonic() - _unwritten.get(what, -math.inf) >= 30:
            log.error("could not write %s (%s); training goes on, and each write tries again",
                      what, e)
            _unwritten[what] = time.monotonic()
        return False
    return True


def save_layers(path, layers, taken_at=None):
    """Atomically write the layers' weights and biases to path (.npz)."""
    write_npz(path, {"time": np.float64(time.time() if taken_at is None else taken_at),
                     **{f"w{k}": layer.w for k, layer in enumerate(layers)},
                     **{f"b{k}": layer.b for k, layer in enumerate(layers)}})


def load_layers(path, shapes):
    """The toy's layers (sigmoid, the width-1 last linear) from save_layers' file, checked against
    shapes [(n_in, n_out), ...]; ValueError if missing, truncated, misshapen or not finite."""
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


def new_run_name():
    """A run's name, its start: YYYYmmdd-HHMMSS (the output trainer's, which the input asks)."""
    return time.strftime("%Y%m%d-%H%M%S")


def folder_kind(folder):
    """"chain" (chain.py's), "progress" (snapshots straight inside: a run by hand), "run"
    (demo.py's or launch.py's, or empty so far), or None if there is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if (folder / "progress" / "stage1").is_dir() or folder.name.startswith("chain-"):
        return "chain"
    if any(folder.glob("layer*_*.npz")):
        return "progress"
    return "run"


def latest_run(*parents, keep=lambda folder: True):
    """The most recently changed folder directly inside any of `parents` that keep(folder)
    accepts, or None."""
    found = [p for parent in parents if Path(parent).is_dir() for p in Path(parent).iterdir()
             if p.is_dir() and keep(p)]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


class Snapshotter:
    """Saves `part`'s layers into folder on every tick of a shared wall clock: maybe_save(layers)
    is a clock comparison unless a tick has passed; save_initial and save_final, the two ends."""

    def __init__(self, folder, part, interval):
        assert part in ("layer1", "layers23")
        if int(interval) != interval or interval < 1:
            raise ValueError(f"snapshot interval must be a whole number of seconds, got {interval}")
        self.folder = None if folder is None else Path(folder)   # None: set before saving
        self.part, self.interval = part, int(interval)
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
        self.next_tick = tick + self.interval
        saved = self._save(tick, layers, now)
        self.saved += saved
        return saved

    def save_initial(self, layers):
        return self._save("initial", layers)

    def save_final(self, layers):
        return self._save("final", layers)

    def _save(self, label, layers, taken_at=None):
        """save_layers, or a line saying why not (written): never raised mid-training."""
        what = "the final weights" if label == "final" else "snapshots"    # the last, always said
        return written(f"{what} into {self.folder}", save_layers, self.path(label), layers,
                       taken_at)


def list_snapshots(folder):
    """{part: {label: path}} for every snapshot file in folder; ticks are ints."""
    found = {"layer1": {}, "layers23": {}}
    for path in Path(folder).glob("*.npz"):
        m = _NAME.match(path.name)
        if m:
            part, label = m.groups()
            found[part][int(label) if label.isdigit() else label] = path
    return found


def common_ticks(*parts):
    """Sorted ticks at which every part ({label: path} of list_snapshots) saved its layers."""
    return sorted(set.intersection(*({t for t in part if isinstance(t, int)} for part in parts)))


def paired_ticks(folder):
    """Sorted ticks for which both layer1_T.npz and layers23_T.npz exist."""
    return common_ticks(*list_snapshots(folder).values())


def load_composed(folder, layer1_label, layers23_label=None):
    """The full 2-24-12-1 network from layer1_<label> under layers23_<label> (same label unless
    layers23_label is given, e.g. to put the initial layer 1 under the final layers 2-3)."""
    folder = Path(folder)
    layers23_label = layer1_label if layers23_label is None else layers23_label
    return (load_layers(folder / f"layer1_{layer1_label}.npz", LAYER1_SHAPES) +
            load_layers(folder / f"layers23_{layers23_label}.npz", LAYERS23_SHAPES))


def snapshot_time(path):
    """The time.time() at which a snapshot file was taken (its `time` entry)."""
    arrays = read_npz(path, "the time of the snapshot")
    if "time" not in arrays:
        raise ValueError(f"cannot read the time of the snapshot from {path}: it has no 'time'")
    return float(arrays["time"])


# --- Evaluating a progress folder: the composed network at each moment. -----------------------

def composed_mse(folder, x, y, layer1_label="final", layers23_label=None):
    """sgd.mse on x (n, 2), y (n,) of load_composed's network (ValueError naming a bad file)."""
    return sgd.mse(load_composed(folder, layer1_label, layers23_label), x, y)


def composed_curve(folder, x, y, origin=0.0):
    """[(T - origin, composed_mse at T)] for each paired tick T in time order (origin a
    time.time(), 0: raw ticks); ValueError naming a paired snapshot that cannot be read."""
    return [(t - origin, composed_mse(folder, x, y, t)) for t in paired_ticks(folder)]


def find_moments(folder):
    """[(label, layer1 label, layers23 label)] whose two files exist, in time order ("initial",
    each paired tick, "final", the swap), and the ticks saved by only one trainer."""
    layer1, layers23 = list_snapshots(folder).values()
    moments = [(label, label, label) for label in ("initial", *paired_ticks(folder), "final")
               if label in layer1 and label in layers23]
    if "initial" in layer1 and "final" in layers23:
        moments.append((SWAP_LABEL, "initial", "final"))
    ticks1, ticks23 = ({t for t in part if isinstance(t, int)} for part in (layer1, layers23))
    return moments, sorted(ticks1 ^ ticks23)


def moment_time(folder, label, layer1_label, layers23_label):
    """When a moment's network existed: its tick, or the later of its two files' times; None for
    the swap, which mixes two moments and so never existed during training."""
    if isinstance(label, int):
        return float(label)
    if layer1_label != layers23_label:
        return None
    folder = Path(folder)
    return max(snapshot_time(folder / f"layer1_{layer1_label}.npz"),
               snapshot_time(folder / f"layers23_{layers23_label}.npz"))


def measure_progress(folder, x_test, y_test):
    """Held-out MSE of each of find_moments' networks in a progress folder: rows [{"label",
    "layer1", "layers23", "seconds" (moment_time), "mse"}], networks {label: layers} and how many
    moments could not be read (each reported and skipped). NothingToRead if none can be."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NothingToRead(f"no progress folder at {folder}: it should be the folder the "
                            "trainers wrote their snapshots into (their --progress-dir)")
    moments, unpaired = find_moments(folder)
    if not moments:
        raise NothingToRead(f"no complete weight snapshots in {folder}: expected pairs "
                            "layer1_<label>.npz and layers23_<label>.npz (label initial, final "
                            "or a tick), written by train_input.py and train_output.py")
    if unpaired:
        print(f"{len(unpaired)} unpaired tick(s) skipped (saved by only one trainer): "
              f"{unpaired[:5]}{' ...' if len(unpaired) > 5 else ''}", flush=True)
    rows, networks, skipped = [], {}, 0
    for label, l1, l23 in moments:
        try:
            layers = load_composed(folder, l1, l23)
            taken = moment_time(folder, label, l1, l23)
        except ValueError as e:
            print(f"skipping {label}: {e}", flush=True)
            skipped += 1
            continue
        networks[label] = layers
        rows.append({"label": label, "layer1": l1, "layers23": l23, "seconds": taken,
                     "mse": sgd.mse(layers, x_test, y_test)})
    if not rows:
        raise NothingToRead(f"none of the {len(moments)} snapshot pairs in {folder} "
                            "could be read")
    return rows, networks, skipped


def decoupled_final(rows, networks):
    """(row, layers) of measure_progress's network at the end: "final", else the last tick."""
    ends = [r for r in rows if r["label"] == "final"] or \
           [r for r in rows if isinstance(r["label"], int)][-1:]
    return (ends[0], networks[ends[0]["label"]]) if ends else None


def measure_run(folder, x_test, y_test):
    """A decoupled run folder at its end: measure_progress's rows (seconds since streaming
    began), (held-out MSE, seconds or None, examples or None) of its final network, and that
    network. NothingToRead if it holds no readable snapshots."""
    folder = Path(folder)
    rows, networks, _ = measure_progress(folder / "progress", x_test, y_test)
    start = streaming_start(folder)
    origin = start if start is not None else min(            # no metrics: its first snapshot,
        (r["seconds"] for r in rows if r["seconds"] is not None), default=0.0)   # not 1970
    for r in rows:
        if r["seconds"] is not None:
            r["seconds"] = round(r["seconds"] - origin, 3)
    row, layers = decoupled_final(rows, networks) or (None, None)
    if row is None:
        raise NothingToRead(f"no final network or snapshot tick in {folder / 'progress'}")
    examples = last_finite(read_metrics(folder / "metrics" / "train_input.jsonl"), "examples")
    return rows, (row["mse"], row["seconds"] if start is not None else None, examples), layers


def load_backprop(run_dir):
    """The plain-backprop baseline's final network from RUN/backprop/final.npz, or NothingToRead."""
    path = Path(run_dir) / "backprop" / "final.npz"
    if not path.is_file():
        raise NothingToRead(f"no {path} (the plain-backprop baseline writes it when it stops)")
    try:
        return load_layers(path, BACKPROP_SHAPES)
    except ValueError as e:
        raise NothingToRead(str(e)) from e


# --- Metrics: JSON lines, written by MetricsLog, read by read_metrics. ------------------------

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
        with self._lock:
            written(f"metrics to {self.path}", _append, self.path, line + "\n")


def _append(path, text):
    with open(path, "a") as f:
        f.write(text)


def every(interval, call, stop, name="every"):
    """call() every `interval` seconds on a daemon thread until the event `stop` is set."""
    def loop():
        while not stop.wait(interval):
            call()
    threading.Thread(target=loop, name=name, daemon=True).start()


_skipped = {}                                      # path: the bad lines read_metrics last said


def read_metrics(path):
    """The JSON objects of a metrics file in file order ([] if there is none); a line that is not
    one (a process killed mid-line) is skipped and counted, not the whole curve lost; the count is
    printed when it changes."""
    path = Path(path)
    if not path.is_file():
        return []
    rows, bad = [], 0
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append(row)
        elif line.strip():
            bad += 1
    if bad and _skipped.get(path) != bad:       # said once, not at every poll of a live run
        print(f"{path}: skipped {bad} line(s) that are not JSON objects", flush=True)
    _skipped[path] = bad
    return rows


def column(rows, key):
    """rows[k][key] as floats (len(rows),), NaN where missing, null or not a number: a gap in a
    matplotlib line, as a figure not yet measured should be."""
    values = [row.get(key) for row in rows]
    return np.array([v if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan
                     for v in values], dtype=np.float64)


def last_finite(rows, key):
    """The last finite rows[k][key], or None if there is none."""
    values = column(rows, key)
    finite = values[np.isfinite(values)]
    return float(finite[-1]) if len(finite) else None


def streaming_start(run_dir, name="train_input"):
    """When the input trainer (a chain's: stage1) began streaming, or None."""
    rows = read_metrics(Path(run_dir) / "metrics" / f"{name}.jsonl")
    return last_finite(rows[:1], "time")
