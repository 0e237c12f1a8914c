"""Tests for datasets/images.py: IDX files written here, byte by byte or with write_idx, read back
to the same numbers; every bad file refused in one line that names it; the search order (data
dir, Debian folder, Keras cache, Keras download) with every root pointed into tmp_path; and, if
the Debian package is installed, the real Fashion-MNIST.

Only test_real_fashion_mnist reads outside tmp_path; no test downloads anything.
"""

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from datasets import images

HERE = Path(__file__).resolve().parent
REAL = Path("/usr/share/datasets/fashion-mnist")


def fake_set(n, first_label=0):
    """n images (n, 28, 28) uint8 whose pixels are known, labels (n,) counting from first_label."""
    x = ((np.arange(n)[:, None] * 37 + np.arange(28 * 28)) % 256).astype(np.uint8)
    return x.reshape(n, 28, 28), ((np.arange(n) + first_label) % 10).astype(np.uint8)


def write_set(folder, n_train=7, n_test=3, gz=True, first_label=0):
    """The four IDX files in folder; returns ((x_train, y_train), (x_test, y_test)) as uint8."""
    folder.mkdir(parents=True, exist_ok=True)
    data = (fake_set(n_train, first_label), fake_set(n_test, first_label))
    for (x, y), (image_name, label_name) in zip(data, images.FILES.values(), strict=True):
        images.write_idx(folder / (image_name + (".gz" if gz else "")), x)
        images.write_idx(folder / (label_name + (".gz" if gz else "")), y)
    return data


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """Debian folder and Keras home inside tmp_path (both empty), and a download that fails."""
    debian, keras_home = tmp_path / "usr-share-datasets", tmp_path / "keras-home"
    monkeypatch.setattr(images, "DEBIAN_DIR", debian)
    monkeypatch.setattr(images, "KERAS_HOME", keras_home)
    downloads = []

    def no_internet(name):
        downloads.append(name)
        raise ConnectionError(f"no internet in tests for {name}")

    monkeypatch.setattr(images, "_download", no_internet)
    return debian, keras_home / "datasets", downloads


def refused(call, *fragments):
    """call() raises DataError whose message is one line holding every fragment; returns it."""
    with pytest.raises(images.DataError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert str(fragment) in message
    return message


# --- Reading and writing one IDX file. ----------------------------------------------------------

def test_read_idx_reads_a_file_written_byte_by_byte(tmp_path):
    labels = tmp_path / "labels-idx1-ubyte"
    labels.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 2, 0, 9]))     # magic 0x801, n = 3, data
    pixels = bytes(range(256)) * 6 + bytes(range(32))                  # 2 * 28 * 28 = 1568 bytes
    picture = tmp_path / "images-idx3-ubyte.gz"
    with gzip.open(picture, "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28]) + pixels)
    assert images.read_idx(labels).tolist() == [2, 0, 9]
    x = images.read_idx(picture)
    assert x.dtype == np.uint8 and x.shape == (2, 28, 28)
    assert x[0, 0, :3].tolist() == [0, 1, 2] and x[1, 27, 27] == 1567 % 256


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_idx_then_read_idx_gives_the_same_array(tmp_path, suffix):
    x, y = fake_set(7)
    images.write_idx(tmp_path / ("x" + suffix), x)
    images.write_idx(tmp_path / ("y" + suffix), y)
    assert np.array_equal(images.read_idx(tmp_path / ("x" + suffix)), x)
    assert np.array_equal(images.read_idx(tmp_path / ("y" + suffix)), y)
    assert (tmp_path / ("x" + suffix)).read_bytes()[:2] == (b"\x1f\x8b" if suffix else b"\0\0")


def test_write_idx_refuses_what_is_not_uint8_images_or_labels(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        images.write_idx(tmp_path / "x", np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 784\)"):
        images.write_idx(tmp_path / "x", np.zeros((2, 784), np.uint8))


# --- Loading a data set from a folder. ----------------------------------------------------------

@pytest.mark.parametrize("gz", [True, False])
def test_load_gives_floats_in_0_1_and_int64_labels(tmp_path, roots, gz):
    (x_train, y_train), (x_test, y_test) = write_set(tmp_path / "data", gz=gz)
    (a_train, b_train), (a_test, b_test) = images.load("fashion-mnist", tmp_path / "data")
    assert a_train.shape == (7, 784) and a_test.shape == (3, 784)
    assert a_train.dtype == np.float32 and b_train.dtype == np.int64
    assert np.array_equal(a_train, x_train.reshape(7, 784) / np.float32(255))
    assert np.array_equal(a_test, x_test.reshape(3, 784) / np.float32(255))
    assert b_train.tolist() == y_train.tolist() and b_test.tolist() == y_test.tolist()
    assert a_train.min() == 0.0 and a_train.max() == 1.0     # pixels 0 and 255 are both there


def test_load_reads_gzipped_and_plain_files_side_by_side(tmp_path, roots):
    write_set(tmp_path / "data", gz=True)
    plain = tmp_path / "data" / "t10k-labels-idx1-ubyte"
    plain.write_bytes(gzip.decompress((tmp_path / "data" / (plain.name + ".gz")).read_bytes()))
    (tmp_path / "data" / (plain.name + ".gz")).unlink()
    assert images.load(data_dir=tmp_path / "data")[1][1].tolist() == [0, 1, 2]


def test_load_reads_keras_mnist_npz(roots):
    _, keras_cache, _ = roots
    (x_train, y_train), (x_test, y_test) = fake_set(5), fake_set(2, first_label=4)
    keras_cache.mkdir(parents=True)
    np.savez(keras_cache / "mnist.npz", x_train=x_train, y_train=y_train, x_test=x_test,
             y_test=y_test)
    assert images.find("mnist", download=False) == keras_cache / "mnist.npz"
    (a_train, b_train), (a_test, b_test) = images.load("mnist", download=False)
    assert np.array_equal(a_train, x_train.reshape(5, 784) / np.float32(255))
    assert b_train.tolist() == [0, 1, 2, 3, 4] and b_test.tolist() == [4, 5]
    assert images.find("mnist", keras_cache) == keras_cache / "mnist.npz"    # as a data dir too


def test_write_subset_writes_the_first_examples(tmp_path, roots):
    (x_train, y_train), (x_test, y_test) = write_set(tmp_path / "data")
    out = images.write_subset(tmp_path / "small", "fashion-mnist", 4, 2, tmp_path / "data")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        name + ".gz" for name in sum(images.FILES.values(), ()))
    (a_train, b_train), (a_test, b_test) = images.load_uint8(data_dir=out)
    assert np.array_equal(a_train, x_train[:4]) and np.array_equal(b_test, y_test[:2])


def test_one_hot_puts_a_single_one_in_each_row():
    assert images.one_hot(np.array([2, 0, 9])).tolist() == np.eye(10)[[2, 0, 9]].tolist()
    assert images.one_hot([1], classes=3).dtype == np.float32
    with pytest.raises(ValueError, match="0..9"):
        images.one_hot([3, 10])
    with pytest.raises(ValueError, match="0..9"):
        images.one_hot([[1]])


# --- Bad files: one line, naming the file. ------------------------------------------------------

def cut(path, n_bytes):
    """Drop the last n_bytes of a plain file."""
    path.write_bytes(path.read_bytes()[:-n_bytes])


def test_truncated_image_file_is_refused(tmp_path, roots):
    write_set(tmp_path, gz=False)
    cut(tmp_path / "train-images-idx3-ubyte", 100)
    refused(lambda: images.load(data_dir=tmp_path), tmp_path / "train-images-idx3-ubyte",
            f"holds {16 + 7 * 784 - 100} bytes, its header promises {16 + 7 * 784}")


def test_truncated_label_file_is_refused(tmp_path, roots):
    write_set(tmp_path, gz=True)
    with gzip.open(tmp_path / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 0, 1]))            # 3 labels promised, 2 there
    refused(lambda: images.load(data_dir=tmp_path), tmp_path / "t10k-labels-idx1-ubyte.gz",
            "holds 10 bytes, its header promises 11")


def test_file_longer_than_its_header_says_is_refused(tmp_path, roots):
    write_set(tmp_path, gz=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes() + b"\0")
    refused(lambda: images.load(data_dir=tmp_path), path, "holds 16 bytes, its header promises 15")


def test_cut_gzip_stream_is_refused(tmp_path, roots):
    write_set(tmp_path, gz=True)
    cut(tmp_path / "train-images-idx3-ubyte.gz", 20)
    refused(lambda: images.load(data_dir=tmp_path), tmp_path / "train-images-idx3-ubyte.gz",
            "cannot be read")


def test_wrong_magic_number_is_refused_saying_what_was_found_and_expected(tmp_path, roots):
    write_set(tmp_path, gz=False)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"\0\0\x08\x03" + path.read_bytes()[4:])       # images' magic in labels
    refused(lambda: images.load(data_dir=tmp_path), path, "0x00000803", "expected 0x00000801")
    junk = tmp_path / "junk"
    junk.write_bytes(b"PK\x03\x04" + bytes(100))
    refused(lambda: images.read_idx(junk), junk, "0x504b0304",
            "expected 0x00000803 or 0x00000801")


def test_empty_file_is_refused(tmp_path, roots):
    write_set(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(b"")
    refused(lambda: images.load(data_dir=tmp_path), tmp_path / "t10k-images-idx3-ubyte",
            "holds 0 bytes")


def test_images_of_another_size_are_refused(tmp_path):
    path = tmp_path / "x"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2]) + bytes(4))
    refused(lambda: images.read_idx(path), path, "2x2 pixels, expected 28x28")


def test_a_folder_is_not_a_file(tmp_path):
    refused(lambda: images.read_idx(tmp_path), tmp_path, "not a file")


def test_image_and_label_counts_that_disagree_are_refused(tmp_path, roots):
    write_set(tmp_path, gz=True)
    images.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", fake_set(6)[1])
    refused(lambda: images.load(data_dir=tmp_path), tmp_path / "train-images-idx3-ubyte.gz",
            tmp_path / "train-labels-idx1-ubyte.gz", "7 images but 6 labels")


def test_labels_outside_0_9_are_refused(tmp_path, roots):
    write_set(tmp_path, gz=True)
    images.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 12, 3], np.uint8))
    refused(lambda: images.load(data_dir=tmp_path), tmp_path / "t10k-labels-idx1-ubyte.gz",
            "label 12 is outside 0..9")


def test_npz_that_is_not_keras_mnist_is_refused(roots):
    _, keras_cache, _ = roots
    keras_cache.mkdir(parents=True)
    np.savez(keras_cache / "mnist.npz", x=np.zeros(3))
    refused(lambda: images.load("mnist", download=False), keras_cache / "mnist.npz",
            "cannot be read as Keras's mnist.npz")


# --- Where the data is found. -------------------------------------------------------------------

def test_search_order_data_dir_then_debian_then_keras_cache(tmp_path, roots):
    debian, keras_cache, downloads = roots
    write_set(tmp_path / "mine", first_label=1)
    write_set(debian / "fashion-mnist", first_label=2)
    write_set(keras_cache / "fashion-mnist", first_label=3)

    def first_label(**where):
        return images.load("fashion-mnist", **where)[0][1][0]

    assert images.find("fashion-mnist", tmp_path / "mine") == tmp_path / "mine"
    assert first_label(data_dir=tmp_path / "mine") == 1
    assert images.find("fashion-mnist") == debian / "fashion-mnist"
    assert first_label() == 2
    (debian / "fashion-mnist" / "t10k-images-idx3-ubyte.gz").unlink()   # three files: not there
    assert images.find("fashion-mnist") == keras_cache / "fashion-mnist"
    assert first_label() == 3
    assert downloads == []


def test_debian_folder_is_per_data_set(roots):
    debian, _, _ = roots
    write_set(debian / "mnist")
    assert images.find("mnist", download=False) == debian / "mnist"
    refused(lambda: images.find("fashion-mnist", download=False), "no fashion-mnist data")


def test_given_data_dir_without_the_files_is_an_error_not_a_fallback(tmp_path, roots):
    debian, _, _ = roots
    write_set(debian / "fashion-mnist")
    (tmp_path / "empty").mkdir()
    refused(lambda: images.load(data_dir=tmp_path / "empty"), tmp_path / "empty",
            "no train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
            "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]")
    write_set(tmp_path / "three")
    (tmp_path / "three" / "train-labels-idx1-ubyte.gz").unlink()
    message = refused(lambda: images.find(data_dir=tmp_path / "three"),
                      "no train-labels-idx1-ubyte[.gz] (")
    assert "t10k" not in message


def test_missing_data_dir_is_refused(tmp_path, roots):
    debian, _, _ = roots
    write_set(debian / "fashion-mnist")
    refused(lambda: images.load(data_dir=tmp_path / "nowhere"), tmp_path / "nowhere",
            "not a folder")


def test_keras_download_is_tried_last_and_then_found_in_keras_cache(roots, monkeypatch):
    _, keras_cache, _ = roots
    calls = []

    def fake_download(name):
        calls.append(name)
        write_set(keras_cache / name)

    monkeypatch.setattr(images, "_download", fake_download)
    refused(lambda: images.find("fashion-mnist", download=False), "Keras download: not asked for")
    assert calls == []
    assert images.find("fashion-mnist") == keras_cache / "fashion-mnist"
    assert calls == ["fashion-mnist"]


def test_nothing_found_names_the_three_ways_to_get_the_data(roots):
    debian, keras_cache, downloads = roots
    message = refused(lambda: images.load("fashion-mnist"),
                      "no fashion-mnist data in", debian / "fashion-mnist",
                      keras_cache / "fashion-mnist",
                      "ConnectionError: no internet in tests for fashion-mnist",
                      "`make data`", "--data-dir DIR",
                      'import keras; keras.datasets.fashion_mnist.load_data()')
    assert downloads == ["fashion-mnist"]
    assert "keras.datasets.mnist.load_data()" in refused(lambda: images.load("mnist"))
    assert message.count("`") == 6                      # the three ways, each in backticks


def test_keras_cache_follows_keras_home_like_keras(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "KERAS_HOME", None)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert images._keras_caches("fashion-mnist")[0] == tmp_path / "datasets" / "fashion-mnist"
    assert images._keras_caches("mnist")[0] == tmp_path / "datasets" / "mnist.npz"
    monkeypatch.delenv("KERAS_HOME")
    assert images._keras_caches("mnist")[0] == Path.home() / ".keras" / "datasets" / "mnist.npz"


def test_unknown_name_is_refused(roots):
    refused(lambda: images.load("cifar10"), "unknown data set 'cifar10'", "fashion-mnist, mnist")


# --- The command line and the layer. ------------------------------------------------------------

def test_main_describes_the_data_and_writes_a_subset(tmp_path, roots, capsys):
    write_set(tmp_path / "data")
    assert images.main(["--data-dir", str(tmp_path / "data"), "--subset", str(tmp_path / "s"),
                        "--n-train", "2", "--n-test", "1"]) == 0
    out = capsys.readouterr().out
    assert f"found in {tmp_path / 'data'}" in out
    assert "train: x (7, 784) float32 in [0.0, 1.0], y (7,) int64" in out
    assert "per class [1, 1, 1, 1, 1, 1, 1, 0, 0, 0]" in out
    assert images.load_uint8(data_dir=tmp_path / "s")[0][0].shape == (2, 28, 28)


def test_main_says_in_one_line_when_there_is_no_data(roots, capsys):
    assert images.main(["--name", "mnist"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Keras download: not asked for" in err


def test_importing_it_imports_no_keras_and_nothing_of_the_project():
    code = ("import sys; from datasets import images; root = sys.argv[1]; "
            "print('keras' in sys.modules, sorted(n for n, m in sys.modules.items() "
            "if (getattr(m, '__file__', None) or '').startswith(root) "
            "and '/.venv/' not in m.__file__))")
    root = str(HERE.parent)
    out = subprocess.run([sys.executable, "-c", code, root + "/"], cwd=HERE.parent,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False ['datasets', 'datasets.images']"


# --- The real data, where the Debian package put it. --------------------------------------------

@pytest.mark.skipif(not REAL.is_dir(), reason=f"{REAL} is not there (apt-get install "
                    "dataset-fashion-mnist, or make data, puts it there)")
def test_real_fashion_mnist():
    (x_train, y_train), (x_test, y_test) = images.load("fashion-mnist", REAL)
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == x_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0 and 0 <= x_test.min() <= x_test.max() <= 1
    assert np.bincount(y_train).tolist() == [6000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    # Keras's own recipe (keras/src/datasets/fashion_mnist.py): skip the header, reshape.
    with gzip.open(REAL / "t10k-images-idx3-ubyte.gz") as f:
        keras_x_test = np.frombuffer(f.read(), np.uint8, offset=16).reshape(10000, 784)
    assert np.array_equal(x_test, keras_x_test.astype(np.float32) / 255)
