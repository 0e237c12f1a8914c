"""Fashion-MNIST and MNIST, read from their IDX files into numpy arrays.

    from datasets import images
    (x_train, y_train), (x_test, y_test) = images.load("fashion-mnist")   # or "mnist"
    # x_train (60000, 784) float32 in [0, 1], y_train (60000,) int64 in 0..9
    # x_test  (10000, 784),                   y_test  (10000,)

    python -m datasets.images                    # where the data is, its shapes and classes
    python -m datasets.images --fetch            # the same, downloading with Keras if need be

A data set is four IDX files (FILES), gzipped or not: a big-endian header (magic number IMAGES
or LABELS, then each dimension's size, 4 bytes each), then one uint8 array's bytes in C order,
checked against the header before any is trusted. find() says where it looks.
"""

import argparse
import gzip
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

NAMES = ("fashion-mnist", "mnist")
CLASSES = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "mnist": tuple(str(digit) for digit in range(10)),
}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IMAGES, LABELS = 0x00000803, 0x00000801     # magic numbers: 0x08 = uint8, then the number of dims
SIDE = 28                                   # every image is SIDE x SIDE pixels

# Where find() looks after data_dir (tests point these at tmp_path); KERAS_HOME None: Keras's own.
DEBIAN_DIR = Path("/usr/share/datasets")
KERAS_HOME = None
KERAS_CACHE = {"fashion-mnist": "datasets/fashion-mnist", "mnist": "datasets/mnist.npz"}
KERAS_MODULE = {"fashion-mnist": "fashion_mnist", "mnist": "mnist"}


class DataError(ValueError):
    """A data file that is missing or not what it claims to be; the message is one line."""


# --- One IDX file. ------------------------------------------------------------------------------

def read_idx(path, magic=None):
    """The uint8 array in the IDX file `path` (gzipped if its name ends in .gz): images (n, 28,
    28), labels (n,); `magic` (IMAGES or LABELS) insists on one. DataError, naming the file,
    unless its magic number is one of ours and it holds exactly the bytes its header promises."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError) as e:     # gzip.BadGzipFile is an OSError; a cut gzip, EOFError
        raise DataError(f"{path}: cannot be read ({e})") from e
    expected = (magic,) if magic else (IMAGES, LABELS)
    wanted = " or ".join(f"0x{m:08x}" for m in expected)
    if len(data) < 4:
        raise DataError(f"{path}: holds {len(data)} bytes, too few for an IDX magic number "
                        f"({wanted})")
    found = int.from_bytes(data[:4], "big")
    if found not in expected:
        raise DataError(f"{path}: magic number 0x{found:08x}, expected {wanted} "
                        f"(0x00000803 images, 0x00000801 labels)")
    ndim = found & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: holds {len(data)} bytes, too few for its {header}-byte header")
    dims = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    promised = header + int(np.prod(dims))
    if len(data) != promised:
        raise DataError(f"{path}: holds {len(data)} bytes, its header promises {promised} "
                        f"(dims {dims})")
    if ndim == 3 and dims[1:] != (SIDE, SIDE):
        raise DataError(f"{path}: images of {dims[1]}x{dims[2]} pixels, expected {SIDE}x{SIDE}")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims).copy()


def write_idx(path, array):
    """Write a uint8 array, (n, 28, 28) images or (n,) labels, as an IDX file (gzip if .gz)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim not in (1, 3):
        raise ValueError(f"write_idx wants uint8 (n,) or (n, 28, 28), got {array.dtype} "
                         f"{array.shape}")
    header = (0x800 + array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path = Path(path)
    with (gzip.open(path, "wb") if path.suffix == ".gz" else open(path, "wb")) as f:
        f.write(header + np.ascontiguousarray(array).tobytes())


# --- Finding a data set. ------------------------------------------------------------------------

def _idx_files(folder):
    """{"train": (images path, labels path), "test": ...}, None where missing; what is missing."""
    def one(name):
        return next((p for p in (folder / name, folder / (name + ".gz")) if p.is_file()), None)
    found = {split: (one(images), one(labels)) for split, (images, labels) in FILES.items()}
    missing = [name + "[.gz]" for name in sum(FILES.values(), ()) if one(name) is None]
    return found, missing


def _keras_caches(name):
    """Where Keras caches `name`: under KERAS_HOME if set here, else where Keras itself would."""
    if KERAS_HOME is not None:
        homes = [Path(KERAS_HOME)]
    elif "KERAS_HOME" in os.environ:
        homes = [Path(os.environ["KERAS_HOME"]), Path("/tmp/.keras")]
    else:
        homes = [Path.home() / ".keras", Path("/tmp/.keras")]  # /tmp if ~ is not writable
    return [home / KERAS_CACHE[name] for home in homes]


def _download(name):
    """Let Keras download `name` into its cache (needs the internet); raises what Keras raises."""
    import keras                        # only here: importing Keras is slow and loads a backend
    getattr(keras.datasets, KERAS_MODULE[name]).load_data()


def find(name="fashion-mnist", data_dir=None, download=True):
    """The folder holding `name`'s four IDX files, or Keras's mnist.npz (for "mnist"): in
    data_dir if given (and nowhere else), else in DEBIAN_DIR/<name> (`apt-get install
    dataset-fashion-mnist`), then in Keras's cache, then (if download) where Keras downloads it."""
    if name not in NAMES:
        raise DataError(f"unknown data set {name!r}; known: {', '.join(NAMES)}")
    if data_dir is not None:
        data_dir = Path(data_dir)
        if not data_dir.is_dir():
            raise DataError(f"data dir {data_dir}: not a folder")
        if (data_dir / "mnist.npz").is_file() and name == "mnist":
            return data_dir / "mnist.npz"
        missing = _idx_files(data_dir)[1]
        if missing:
            raise DataError(f"data dir {data_dir}: no {', '.join(missing)} (a data dir holds the "
                            f"four IDX files, gzipped or not)")
        return data_dir

    places = [DEBIAN_DIR / name] + _keras_caches(name)

    def search():
        for place in places:
            if place.suffix == ".npz" and place.is_file():
                return place
            if place.is_dir() and not _idx_files(place)[1]:
                return place
        return None

    place = search()
    reason = "not asked for"
    if place is None and download:
        try:
            _download(name)
            place, reason = search(), "Keras downloaded nothing this module can find"
        except Exception as e:          # ImportError, or whatever Keras's get_file raises offline
            reason = " ".join(f"{type(e).__name__}: {e}".split())
    if place is not None:
        return place
    raise DataError(
        f"no {name} data in {', '.join(map(str, places))} (Keras download: {reason}); "
        f"get it one of three ways: "
        f"`make data` (installs the Debian package dataset-fashion-mnist as root, else downloads "
        f"with Keras), `--data-dir DIR` holding the four IDX files "
        f"{', '.join(sum(FILES.values(), ()))} (gzipped or not), or `python -c \"import keras; "
        f"keras.datasets.{KERAS_MODULE[name]}.load_data()\"` on a machine with internet (then "
        f"copy ~/.keras here)")


# --- Loading a data set. ------------------------------------------------------------------------

def _read_splits(place):
    """[(x, y, what) for train, test] from a folder of IDX files or from Keras's mnist.npz."""
    if place.is_dir():
        return [(read_idx(images, IMAGES), read_idx(labels, LABELS), f"{images} and {labels}")
                for images, labels in _idx_files(place)[0].values()]
    try:
        with np.load(place, allow_pickle=False) as f:
            return [(f[f"x_{split}"], f[f"y_{split}"], f"{place}'s x_{split} and y_{split}")
                    for split in FILES]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"{place}: cannot be read as Keras's mnist.npz ({e})") from e


def load_uint8(name="fashion-mnist", data_dir=None, download=True):
    """((x_train, y_train), (x_test, y_test)) as stored: x uint8 (n, 28, 28), y uint8 (n,)."""
    splits = _read_splits(find(name, data_dir, download))
    for x, y, what in splits:
        if x.shape[1:] != (SIDE, SIDE) or y.ndim != 1:
            raise DataError(f"{what}: shapes {x.shape} and {y.shape}, expected (n, 28, 28), (n,)")
        if len(x) != len(y):
            raise DataError(f"{what} disagree: {len(x)} images but {len(y)} labels")
        if len(y) and y.max() >= len(CLASSES[name]):
            raise DataError(f"{what}: label {y.max()} is outside 0..{len(CLASSES[name]) - 1}")
    return tuple((x.astype(np.uint8), y.astype(np.uint8)) for x, y, _ in splits)


def load(name="fashion-mnist", data_dir=None, download=True):
    """((x_train, y_train), (x_test, y_test)): x float32 (n, 784) in [0, 1], y int64 (n,)."""
    return tuple((x.reshape(len(x), SIDE * SIDE).astype(np.float32) / np.float32(255),
                  y.astype(np.int64)) for x, y in load_uint8(name, data_dir, download))


def one_hot(labels, classes=10):
    """labels (n,) ints in 0..classes-1 -> float32 (n, classes), a single 1 in each row."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.all((labels >= 0) & (labels < classes)):
        raise ValueError(f"one_hot wants (n,) labels in 0..{classes - 1}, got {labels!r:.80}")
    return np.eye(classes, dtype=np.float32)[labels]


def write_subset(out_dir, name="fashion-mnist", n_train=1000, n_test=200, data_dir=None,
                 download=True):
    """Write the first n_train/n_test examples of `name` as four .gz IDX files in out_dir."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = load_uint8(name, data_dir, download)
    for (x, y), n, (images, labels) in zip(data, (n_train, n_test), FILES.values(), strict=True):
        write_idx(out_dir / (images + ".gz"), x[:n])
        write_idx(out_dir / (labels + ".gz"), y[:n])
    return out_dir


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m datasets.images",
        description="Find an image data set, say where it is, its shapes and its classes.")
    parser.add_argument("--name", choices=NAMES, default="fashion-mnist",
                        help="which data set (default fashion-mnist, the harder of the two)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="a folder holding the four IDX files (default: search, see --fetch)")
    parser.add_argument("--fetch", action="store_true",
                        help="if the data is nowhere on this machine, download it with Keras "
                             "(default off: only look in the Debian folder and Keras's cache)")
    parser.add_argument("--subset", type=Path, default=None, metavar="OUT",
                        help="also write the first --n-train/--n-test examples to OUT as IDX")
    parser.add_argument("--n-train", type=int, default=1000, help="for --subset (default 1000)")
    parser.add_argument("--n-test", type=int, default=200, help="for --subset (default 200)")
    args = parser.parse_args(argv)
    if args.n_train < 0 or args.n_test < 0:
        parser.error(f"--n-train and --n-test count examples, got {args.n_train}, {args.n_test}")
    try:
        where = (args.name, args.data_dir, args.fetch)
        print(f"{args.name}: found in {find(*where)}")
        for split, (x, y) in zip(FILES, load(*where), strict=True):
            print(f"  {split}: x {x.shape} {x.dtype} in [{x.min()}, {x.max()}], y {y.shape} "
                  f"{y.dtype}, per class {np.bincount(y, minlength=10).tolist()}")
        if args.subset:
            out = write_subset(args.subset, args.name, args.n_train, args.n_test, *where[1:])
            print(f"the first {args.n_train} and {args.n_test} written to {out}")
    except DataError as e:
        print(f"datasets.images: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
