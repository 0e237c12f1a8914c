"""Generate the training data: a lumpy function f: R^2 -> R sampled on [-1, 1]^2.

Run it:

    python generate.py                         # 200,000 samples into data/, plus data/target.png
    python generate.py --count 20000 --out-dir /tmp/small --seed 1
    python generate.py --help

With r = sqrt(x^2 + y^2) and theta = atan2(y, x):

    a = sin(4 r^2 - 0.25 r)
    b = sin(2 theta) sin(theta)
    c = cos(6 (theta + 0.1))
    k = 0.3 (sin(theta) + 1)
    f = k a + (1 - k)/2 b + (1 - k)/2 c

The function has no meaning; it is just lumpy enough to need both hidden layers.
Writes x.npy (n, 2) float64, y.npy (n,) float64 and target.png.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


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


# Held-out points are fresh samples drawn with their own seed, never the training seed's stream.
HELDOUT_SEED = 2016


def heldout(count=20_000, seed=HELDOUT_SEED):
    """Fresh (x (count, 2), y (count,)) for measuring held-out MSE; 20,000 by default, enough
    that the MSE estimate's sampling error (~1%) is below any difference worth reporting."""
    return generate(count, seed)


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


def parse_args(argv):
    p = argparse.ArgumentParser(description="Sample the target function into x.npy, y.npy "
                                            "and draw it into target.png.")
    p.add_argument("--count", type=int, default=200_000,
                   help="number of samples (default 200,000, the original's: many more than "
                        "the network's ~400 weights need, so overfitting is not a concern)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for the sample positions (default 0), so runs are repeatable")
    p.add_argument("--out-dir", type=Path, default=HERE / "data",
                   help="folder to write into, created if missing (default: data/ next to "
                        "this file, where the other scripts look)")
    p.add_argument("--no-plot", action="store_true",
                   help="skip target.png (drawn by default: it is the picture every fit is "
                        "compared with)")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error("--count must be at least 1")
    if args.seed == HELDOUT_SEED:
        p.error(f"--seed {HELDOUT_SEED} is reserved for the held-out points; pick another")
    return args


def main(argv=None):
    args = parse_args(argv)
    print("generate.py:", vars(args), flush=True)
    t0 = time.perf_counter()
    x, y = generate(args.count, args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    np.save(args.out_dir / "x.npy", x)
    np.save(args.out_dir / "y.npy", y)
    if not args.no_plot:
        import plot  # matplotlib is only needed when drawing
        plot.save_surface(lambda p: target_function(p[:, 0], p[:, 1]),
                          args.out_dir / "target.png", title="target function f")
    print(f"wrote {args.count} samples to {args.out_dir} in {time.perf_counter() - t0:.2f} s "
          f"(var(y) = {y.var():.3f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
