"""Generate the training data: a lumpy function f: R^2 -> R sampled on [-1, 1]^2.

    python generate.py                         # 200,000 samples into data/, plus data/target.png
    python generate.py --count 20000 --out-dir /tmp/small --seed 1
    python generate.py --help

With r = sqrt(x^2 + y^2) and theta = atan2(y, x):

    a = sin(4 r^2 - 0.25 r)
    b = sin(2 theta) sin(theta)
    c = cos(6 (theta + 0.1))
    k = 0.3 (sin(theta) + 1)
    f = k a + (1 - k)/2 b + (1 - k)/2 c

f has no meaning; it is just lumpy enough to need both hidden layers. Writes x.npy (n, 2)
float64, y.npy (n,) float64 and target.png. Every surface picture is drawn here (draw_surface),
on the *target's* colour scale, so the same colour is the same height in every picture.
"""

import argparse
import contextlib
import functools
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


# --- The target function and the data. ---------------------------------------------------------

def target_function(x, y):
    """f(x, y) for arrays x, y of the same shape (see the module docstring)."""
    r = np.sqrt(x ** 2 + y ** 2)
    theta = np.arctan2(y, x)
    a = np.sin(4 * r ** 2 - 0.25 * r)
    b = np.sin(2 * theta) * np.sin(theta)
    c = np.cos(6 * (theta + 0.1))
    k = 0.3 * (np.sin(theta) + 1)
    return k * a + (1 - k) / 2 * b + (1 - k) / 2 * c


def generate(count, seed):
    """Return x (count, 2) uniform on [-1, 1]^2 and y = f(x) (count,)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(count, 2))
    return x, target_function(x[:, 0], x[:, 1])


# Held-out points are fresh samples drawn with their own seed, never the training seed's stream;
# every script measures on the same 20,000 by default (~1% sampling error), so numbers compare.
HELDOUT_SEED = 2016
HELDOUT_COUNT = 20_000


def seed(text):
    """Every --seed's argparse type: an integer of 0 or more, as numpy's generators take."""
    if not text.strip().isdecimal():            # (isdigit() takes "²", which int() does not)
        raise argparse.ArgumentTypeError(f"expected an integer of 0 or more, got {text!r}")
    return int(text)


def out_path(text):
    """Every output path's argparse type (a Path): refused at once, not when written after the
    run, if the nearest folder it would go under is a file or cannot be written."""
    near = next((folder for folder in Path(text).absolute().parents if folder.exists()), Path("/"))
    if not (near.is_dir() and os.access(near, os.W_OK | os.X_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {near} is "
                                         f"{'not writable' if near.is_dir() else 'a file'}")
    return Path(text)


def out_text(text):
    """out_path's check for an option kept as text (--checkpoint, a server's --metrics)."""
    out_path(text)
    return text


def refuse_heldout_seed(p, seed):
    """p.error if `seed` would draw the training data from the held-out points' stream."""
    if seed == HELDOUT_SEED:
        p.error(f"--seed {HELDOUT_SEED} is reserved for the held-out points; pick another")


def heldout(count=HELDOUT_COUNT, seed=HELDOUT_SEED):
    """Fresh (x (count, 2), y (count,)) for measuring held-out MSE."""
    return generate(count, seed)


def fmt(value, spec=".3g"):
    """A number for a table or a status line; "-" for None (not measured)."""
    return "-" if value is None else format(value, spec)


def settings_line(options):
    """{name: value} (e.g. vars(args)) as "name value, ..." for a script's start-up line, with
    names as typed on the command line and paths as plain text."""
    return ", ".join(f"{name.replace('_', '-')} {value}" for name, value in options.items())


def load_dataset(data_dir):
    """Load x.npy and y.npy from data_dir, checking their shapes; clear errors if absent."""
    data_dir = Path(data_dir)
    try:
        x = np.load(data_dir / "x.npy", allow_pickle=False)
        y = np.load(data_dir / "y.npy", allow_pickle=False)
    except FileNotFoundError as e:
        raise SystemExit(f"no data at {data_dir}: run `python generate.py --out-dir {data_dir}` "
                         f"first ({e.strerror}: {e.filename})") from None
    except (OSError, ValueError, EOFError) as e:
        raise SystemExit(f"cannot read the data in {data_dir}: {e}; regenerate it with "
                         f"`python generate.py --out-dir {data_dir}`") from None
    if x.ndim != 2 or x.shape[1] != 2 or y.shape != (x.shape[0],):
        raise SystemExit(f"data in {data_dir} has the wrong shapes: x {x.shape}, y {y.shape}; "
                         "expected x (n, 2) and y (n,)")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise SystemExit(f"data in {data_dir} holds NaN or inf")
    return x.astype(np.float64), y.astype(np.float64)


# --- Drawing one surface. ----------------------------------------------------------------------

GRID_POINTS = 100                      # per axis: 10,000 evaluations, ~0.1 s a picture in all
LEVELS = np.linspace(0.0, 1.0, 21)     # contour levels on the 0..1 scale of the target
AXIS_TICKS = [-1.0, -0.5, 0.0, 0.5, 1.0]
# A fixed size and margins, not a layout engine (which moves the axes when a title changes), so
# every surface picture has its axes in the same pixels: GIF frames.
SURFACE_FIGSIZE = (5.4, 4.4)           # inches
SURFACE_MARGINS = dict(left=0.08, right=0.98, bottom=0.11, top=0.92)
COLORBAR_LABEL = "height, scaled so the target spans 0 to 1"
DPI = 100


@functools.cache
def pyplot():
    """matplotlib.pyplot on the Agg backend (headless), imported on the first drawing: the
    servers import this module and never draw."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


@contextlib.contextmanager
def saved_figure(path, nrows=1, ncols=1, dpi=DPI, **subplots_kw):
    """`with saved_figure(path) as (fig, ax):` draw; on leaving, the figure is saved as PNG (into
    a path, its folder made, or a file object) and closed, even if drawing fails (unsaved)."""
    plt = pyplot()
    fig, ax = plt.subplots(nrows, ncols, **subplots_kw)
    try:
        yield fig, ax
        if isinstance(path, (str, Path)):
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)


def grid(points=GRID_POINTS):
    """The picture grid over [-1, 1]^2: xx, yy (points, points) and p (points^2, 2), p[k] =
    (xx.flat[k], yy.flat[k]); rows of xx and yy go up in y, columns go right in x."""
    axis = np.linspace(-1.0, 1.0, points)
    xx, yy = np.meshgrid(axis, axis)                     # (points, points) each
    return xx, yy, np.column_stack([xx.ravel(), yy.ravel()])


@functools.lru_cache(maxsize=None)
def target_range(points=GRID_POINTS):
    """(min, max) of target_function on the grid: the two ends of every colour scale."""
    _, _, p = grid(points)
    y = target_function(p[:, 0], p[:, 1])
    return float(y.min()), float(y.max())


def surface_values(f, points=GRID_POINTS):
    """xx, yy and z = (f - min) / (max - min) (points, points) on the grid, min and max the
    target's: exactly 0..1 for the target; f maps points p (n, 2) to values (n,)."""
    xx, yy, p = grid(points)
    values = np.asarray(f(p), dtype=np.float64)
    if values.shape != (len(p),):
        raise ValueError(f"f must map points ({len(p)}, 2) to values ({len(p)},); "
                         f"it returned shape {values.shape}")
    lo, hi = target_range(points)
    return xx, yy, ((values - lo) / (hi - lo)).reshape(xx.shape)


def draw_surface(ax, f, title=None):
    """Filled contours of f on ax, on the target's 0..1 colour scale (beyond it, the end
    colours); returns them for a colorbar."""
    xx, yy, z = surface_values(f)
    filled = ax.contourf(xx, yy, z, levels=LEVELS, cmap="viridis", extend="both")
    ax.set(xlabel="input x₁", ylabel="input x₂", xticks=AXIS_TICKS, yticks=AXIS_TICKS,
           aspect="equal")
    if title:
        ax.set_title(title)
    return filled


def save_surface(f, path, title, dpi=DPI):
    """Draw f (points (n, 2) -> values (n,)) over [-1, 1]^2 with a colorbar into path (.png)."""
    with saved_figure(path, figsize=SURFACE_FIGSIZE, gridspec_kw=SURFACE_MARGINS,
                      dpi=dpi) as (fig, ax):
        fig.colorbar(draw_surface(ax, f, title), ax=ax, ticks=LEVELS[::5], label=COLORBAR_LABEL)


# --- The script. -------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="Sample the target function into x.npy, y.npy "
                                            "and draw it into target.png.")
    p.add_argument("--count", type=int, default=200_000,
                   help="number of samples (default 200,000, the original's: far more than the "
                        "network's ~400 weights need)")
    p.add_argument("--seed", type=seed, default=0,
                   help="seed for the sample positions (default 0), so runs are repeatable")
    p.add_argument("--out-dir", type=out_path, default=HERE / "data",
                   help="folder to write into (default data/ next to this file, where the other "
                        "scripts look)")
    p.add_argument("--no-plot", action="store_true",
                   help="skip target.png (default: drawn, the picture every fit is compared with)")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error("--count must be at least 1")
    refuse_heldout_seed(p, args.seed)
    return args


def main(argv=None):
    args = parse_args(argv)
    print("generate.py: settings:", settings_line(vars(args)), flush=True)
    t0 = time.perf_counter()
    x, y = generate(args.count, args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    np.save(args.out_dir / "x.npy", x)
    np.save(args.out_dir / "y.npy", y)
    if not args.no_plot:
        save_surface(lambda p: target_function(p[:, 0], p[:, 1]),
                     args.out_dir / "target.png", title="target function f")
    print(f"wrote {args.count} samples to {args.out_dir} in {time.perf_counter() - t0:.2f} s "
          f"(var(y) = {y.var():.3f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
