"""Pictures of what the trainers learned: fitted surfaces and held-out MSE over time.

Run it, after a decoupled run has written weight snapshots into a progress folder:

    python plot.py --progress-dir progress                     # pictures go beside the weights
    python plot.py --progress-dir progress --out-dir plots/run1
    python plot.py --help

For every tick T at which both trainers saved their layers (layer1_T.npz and layers23_T.npz, see
snapshots.py) it puts the 2-24-12-1 network back together and writes

    fit_<seconds>.png      the network's surface at T, seconds = T - first tick (zero padded)
    heldout_mse.jsonl      one JSON object per moment: {"label", "layer1", "layers23",
                           "seconds", "mse"}; also "initial", "final" and the swap below
    mse.png                held-out MSE against seconds, log y axis

The swap is layer 1 as it was before training under layers 2-3 as they were at the end: if its
MSE is as low as the final network's, layers 2-3 did the work and layer 1's training (driven by
synthetic gradients) did not matter.

generate.py and sgd.py import save_surface from here to draw target.png and one surface per
epoch. Every surface is f on a 100 x 100 grid over [-1, 1]^2, rescaled by the *target's* min and
max on that grid, so the target spans exactly 0..1 and every fit is drawn on the same colours.
This file only reads what the trainers wrote; it never trains.
"""

import argparse
import contextlib
import functools
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: draw into files, never open a window
import matplotlib.pyplot as plt  # noqa: E402  (must come after choosing the backend)
import numpy as np  # noqa: E402

import generate  # noqa: E402
import sgd  # noqa: E402
import snapshots  # noqa: E402

GRID_POINTS = 100                      # per axis: 10,000 evaluations, ~0.1 s a picture in all
LEVELS = np.linspace(0.0, 1.0, 21)     # contour levels on the 0..1 scale of the target
AXIS_TICKS = [-1.0, -0.5, 0.0, 0.5, 1.0]
# A fixed size and fixed margins (not a layout engine, which costs ~0.05 s and moves the axes
# when a title changes), so every surface picture has its axes in the same pixels: GIF frames.
SURFACE_FIGSIZE = (5.4, 4.4)           # inches
SURFACE_MARGINS = dict(left=0.08, right=0.98, bottom=0.11, top=0.92)
CURVE_FIGSIZE = (6.4, 4.4)
DPI = 100
SWAP_LABEL = "initial layer 1 + final layers 2-3"


# --- Drawing blocks: each takes an ax, so pictures can be put side by side. -------------------

@contextlib.contextmanager
def saved_figure(path, nrows=1, ncols=1, **subplots_kw):
    """`with saved_figure(path) as (fig, ax):` draw, and on leaving it is saved and closed.

    The parent folder is created if missing. The figure is closed even if drawing fails (then
    nothing is saved), so repeated calls never draw on top of an old figure or pile up memory.
    """
    path = Path(path)
    fig, ax = plt.subplots(nrows, ncols, **subplots_kw)
    try:
        yield fig, ax
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI)
    finally:
        plt.close(fig)


def grid(points=GRID_POINTS):
    """The picture grid over [-1, 1]^2: xx, yy (points, points) and p (points^2, 2).

    p[k] = (xx.flat[k], yy.flat[k]); rows of xx and yy go up in y, columns go right in x.
    """
    axis = np.linspace(-1.0, 1.0, points)
    xx, yy = np.meshgrid(axis, axis)                     # (points, points) each
    return xx, yy, np.column_stack([xx.ravel(), yy.ravel()])


@functools.lru_cache(maxsize=None)
def target_range(points=GRID_POINTS):
    """(min, max) of generate.target_function on the grid: the two ends of every colour scale."""
    _, _, p = grid(points)
    y = generate.target_function(p[:, 0], p[:, 1])
    return float(y.min()), float(y.max())


def surface_values(f, points=GRID_POINTS):
    """xx, yy and z = (f - min) / (max - min) on the grid, min and max being the target's.

    f maps points p (n, 2) to values (n,). z is (points, points); it is exactly 0..1 for the
    target and may leave that range for a fit that overshoots.
    """
    xx, yy, p = grid(points)
    values = np.asarray(f(p), dtype=np.float64)
    if values.shape != (len(p),):
        raise ValueError(f"f must map points ({len(p)}, 2) to values ({len(p)},); "
                         f"it returned shape {values.shape}")
    lo, hi = target_range(points)
    return xx, yy, ((values - lo) / (hi - lo)).reshape(xx.shape)


def draw_surface(ax, f, title=None, points=GRID_POINTS):
    """Filled contours of f on ax, on the target's 0..1 colour scale; returns them for a colorbar.

    Values beyond 0..1 get the end colours (extend="both"), and every picture has the same
    levels, so colours mean the same height in every picture.
    """
    xx, yy, z = surface_values(f, points)
    filled = ax.contourf(xx, yy, z, levels=LEVELS, cmap="viridis", extend="both")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_xticks(AXIS_TICKS)
    ax.set_yticks(AXIS_TICKS)
    ax.set_aspect("equal")
    if title:
        ax.set_title(title)
    return filled


def save_surface(f, path, title, points=GRID_POINTS):
    """Draw f (points (n, 2) -> values (n,)) over [-1, 1]^2 with a colorbar into path (.png)."""
    with saved_figure(path, figsize=SURFACE_FIGSIZE, gridspec_kw=SURFACE_MARGINS) as (fig, ax):
        filled = draw_surface(ax, f, title, points)
        fig.colorbar(filled, ax=ax, ticks=LEVELS[::5],
                     label="height, scaled so the target spans 0 to 1")


def draw_mse_curve(ax, rows, baseline=None):
    """Held-out MSE against seconds on ax (log y) from the rows main() computes.

    Ticks are joined by a line; "initial" and "final" are single markers; the swap and the
    baseline (the MSE of always predicting the mean, i.e. var(y)) are horizontal lines.
    """
    ticks = [r for r in rows if isinstance(r["label"], int)]
    if ticks:
        ax.plot([r["seconds"] for r in ticks], [r["mse"] for r in ticks], "o-", markersize=3,
                label="network at each snapshot tick")
    markers = {"initial": ("s", "before training (initial)"),
               "final": ("*", "when the trainers stopped (final)")}
    for r in rows:
        if r["label"] in markers:
            marker, text = markers[r["label"]]
            ax.plot([r["seconds"]], [r["mse"]], marker, markersize=9, label=text)
        elif r["label"] == SWAP_LABEL:
            ax.axhline(r["mse"], linestyle="--", color="tab:red",
                       label="final layers 2-3 on the untrained layer 1")
    if baseline is not None:
        ax.axhline(baseline, linestyle=":", color="black",
                   label="always predicting the mean of y")
    ax.set_yscale("log")
    ax.set_xlabel("seconds since the first snapshot tick")
    ax.set_ylabel("held-out mean squared error (log scale)")
    ax.set_title("How well the network fits points it never trained on")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")


# --- Reading a progress folder. ----------------------------------------------------------------

def snapshot_time(path):
    """The time.time() at which a snapshot file was taken (its `time` entry)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return float(f["time"])
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise ValueError(f"cannot read the time of {path}: {e}") from e


def unpaired_ticks(found):
    """Ticks (from snapshots.list_snapshots) saved by only one of the two trainers."""
    layer1, layers23 = ({t for t in found[part] if isinstance(t, int)}
                        for part in ("layer1", "layers23"))
    return sorted(layer1 ^ layers23)


def find_moments(folder):
    """[(label, layer1 label, layers23 label)] to evaluate, in time order, and the unpaired ticks.

    Only moments whose two files both exist are listed: "initial", each paired tick, "final",
    and the swap (layer1_initial under layers23_final).
    """
    found = snapshots.list_snapshots(folder)
    both = [label for label in ("initial", "final")
            if label in found["layer1"] and label in found["layers23"]]
    moments = [("initial", "initial", "initial")] if "initial" in both else []
    moments += [(t, t, t) for t in snapshots.paired_ticks(folder)]
    if "final" in both:
        moments.append(("final", "final", "final"))
    if "initial" in found["layer1"] and "final" in found["layers23"]:
        moments.append((SWAP_LABEL, "initial", "final"))
    return moments, unpaired_ticks(found)


def moment_time(folder, label, layer1_label, layers23_label):
    """When a moment's network existed: its tick, or the later of its two files' times.

    None for the swap, which mixes two moments and so never existed during training.
    """
    if isinstance(label, int):
        return float(label)
    if layer1_label != layers23_label:
        return None
    folder = Path(folder)
    return max(snapshot_time(folder / f"layer1_{layer1_label}.npz"),
               snapshot_time(folder / f"layers23_{layers23_label}.npz"))


def fit_path(out_dir, seconds):
    """fit_<seconds>.png, zero padded to 6 digits so the files sort in time order."""
    return Path(out_dir) / f"fit_{int(round(seconds)):06d}.png"


def write_jsonl(rows, path):
    """One JSON object per row, one per line."""
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def print_table(rows):
    print(f"{'moment':>34} {'seconds':>10} {'held-out MSE':>13}")
    for r in rows:
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.1f}"
        print(f"{str(r['label']):>34} {seconds:>10} {r['mse']:>13.6f}")


# --- The script. -------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Draw the fitted surface at each weight snapshot of a decoupled run, and "
                    "its held-out MSE over time.")
    p.add_argument("--progress-dir", type=Path, required=True,
                   help="folder the trainers wrote layer1_*.npz and layers23_*.npz into "
                        "(required: there is no single run to default to)")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where to write fit_*.png, mse.png and heldout_mse.jsonl, created if "
                        "missing (default: the progress folder, so pictures sit beside the "
                        "weights they show)")
    p.add_argument("--heldout", type=int, default=20_000,
                   help="fresh points to measure held-out MSE on (default 20,000, as sgd.py, "
                        "so the numbers compare; the estimate's noise is then ~1%%)")
    args = p.parse_args(argv)
    if args.heldout < 1:
        p.error("--heldout must be at least 1")
    if args.out_dir is None:
        args.out_dir = args.progress_dir
    return args


def main(argv=None):
    args = parse_args(argv)
    print("plot.py:", vars(args), flush=True)
    folder, out_dir = args.progress_dir, args.out_dir
    if not folder.is_dir():
        raise SystemExit(f"no progress folder at {folder}: pass the --progress-dir the "
                         "trainers wrote their snapshots into")
    moments, unpaired = find_moments(folder)
    if not moments:
        raise SystemExit(f"no complete weight snapshots in {folder}: expected pairs "
                         "layer1_<label>.npz and layers23_<label>.npz (label initial, final or "
                         "a tick), written by train_input.py and train_output.py")
    if unpaired:
        print(f"{len(unpaired)} unpaired tick(s) skipped (saved by only one trainer): "
              f"{unpaired[:5]}{' ...' if len(unpaired) > 5 else ''}", flush=True)

    # Phase 1: held-out MSE of each composed network, and when that network existed.
    x_test, y_test = generate.heldout(args.heldout)      # (n, 2), (n,)
    rows, networks, skipped = [], {}, 0
    for label, l1, l23 in moments:
        try:
            layers = snapshots.load_composed(folder, l1, l23)
            taken = moment_time(folder, label, l1, l23)
        except ValueError as e:
            print(f"skipping {label}: {e}", flush=True)
            skipped += 1
            continue
        networks[label] = layers
        rows.append({"label": label, "layer1": l1, "layers23": l23, "seconds": taken,
                     "mse": sgd.mse(layers, x_test, y_test)})
    if not rows:
        raise SystemExit(f"none of the {len(moments)} snapshot pairs in {folder} could be read")

    # Phase 2: times become seconds since the first tick (or since the earliest moment, in a
    # run that stopped before its first tick), and each tick's surface is drawn.
    ticks = [r for r in rows if isinstance(r["label"], int)]
    origin = ticks[0]["seconds"] if ticks else min(
        (r["seconds"] for r in rows if r["seconds"] is not None), default=0.0)
    for r in rows:
        if r["seconds"] is not None:
            r["seconds"] = round(r["seconds"] - origin, 3)   # ms: time.time()'s noise
    for r in ticks:
        save_surface(functools.partial(sgd.predict, networks[r["label"]]),
                     fit_path(out_dir, r["seconds"]),
                     title=f"t = {r['seconds']:.0f} s: held-out MSE {r['mse']:.4f}")

    # Phase 3: the numbers as JSON lines and a table, and the curve.
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(rows, out_dir / "heldout_mse.jsonl")
    print_table(rows)
    curve = dict(figsize=CURVE_FIGSIZE, layout="constrained")
    with saved_figure(out_dir / "mse.png", **curve) as (fig, ax):
        draw_mse_curve(ax, rows, baseline=float(y_test.var()))
    print(f"wrote {len(ticks)} fit_*.png, mse.png and heldout_mse.jsonl to {out_dir}"
          f"{f'; {skipped} unreadable moment(s) skipped' if skipped else ''}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
