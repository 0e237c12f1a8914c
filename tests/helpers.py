"""Helpers the test files share: driving an app through Flask's test client, and waiting for a
condition; small images for the classifiers."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import synthgrad
import train_input
import train_output


def post(app, path, body):
    """POST body (JSON-encoded unless already text or bytes); returns the response."""
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return app.test_client().post(path, data=data, content_type="application/json")


def status(app):
    """The app's GET /status, which must answer 200."""
    r = app.test_client().get(synthgrad.STATUS)
    assert r.status_code == 200
    return r.get_json()


def arr(a):
    return synthgrad.encode_array(a)


def wait_for(predicate, timeout=30.0):
    """Poll predicate until it is true; fail the test after timeout seconds (a guard against a
    hang, not a measure: it returns as soon as the predicate holds, and what takes ~0.1 s on an
    idle machine may take seconds on a busy one)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.002)


def escapes_interrupt(work, press):
    """work() on this (the main) thread while press() runs on another, sending signals to this
    process; every stop signal's handler is put back after. True if KeyboardInterrupt escaped."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    presser = threading.Thread(target=press)
    presser.start()
    try:
        work()
        return False
    except KeyboardInterrupt:
        return True
    finally:
        presser.join()
        for s, handler in before.items():
            signal.signal(s, handler)


def trained_checkpoint(path, counter="passes"):
    """True once `path` is a checkpoint whose process had done work when it wrote it: its
    `counter` (a server's training passes; stage 1's "examples" sent) above 0. A fast
    machine's first checkpoint can come before any work, and a fault injected then restarts
    from nothing: CI saw "resumed ... 0 passes so far"."""
    names = (train_input.InputTrainer if counter == "examples" else
             train_output.OutputTrainer).COUNTERS
    try:
        with np.load(path) as arrays:
            return bool(arrays["counters"][names.index(counter)] > 0)
    except (OSError, KeyError, ValueError):         # none yet (written atomically: never half)
        return False


def banded_images(n_train=300, n_test=100, seed=0):
    """((x, labels), (x_test, labels_test)) shaped like datasets.images.load's, small and easy:
    x float32 (n, 784) in [0, 1], labels int64 (n,) in 0..9, each class a bright band of its
    own pixels."""
    rng = np.random.default_rng(seed)

    def split(n):
        labels = rng.integers(0, 10, n)
        x = rng.uniform(0, 0.3, (n, 784)).astype(np.float32)
        for k, c in enumerate(labels):
            x[k, 78 * c:78 * c + 78] += 0.7
        return x, labels.astype(np.int64)

    return split(n_train), split(n_test)


def write_images(folder, data):
    """Write ((x, labels), (x_test, labels_test)) as banded_images gives them as the four
    gzipped IDX files datasets/images.py reads (pixels rounded to 0..255); returns folder."""
    from datasets import images
    folder.mkdir(parents=True, exist_ok=True)
    for (x, labels), (images_name, labels_name) in zip(data, images.FILES.values(), strict=True):
        pixels = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8).reshape(-1, 28, 28)
        images.write_idx(folder / (images_name + ".gz"), pixels)
        images.write_idx(folder / (labels_name + ".gz"), labels.astype(np.uint8))
    return folder


def decoupled_argvs(config, oracle_url="http://o", output_url="http://t"):
    """The command lines of launch.decoupled_procs(config): (oracle, output, input), with
    these addresses for the two servers."""
    from runner import launch, processes
    urls = {"oracle": oracle_url, "output trainer": output_url}
    return [processes.command_line(p, urls) for p in launch.decoupled_procs(config)]


def chain_argvs(config):
    """{name: command line} of chain.chain_procs(config), boundary b's oracle at http://o<b>
    and stage k at http://s<k>."""
    import chain
    from runner import processes
    procs = chain.chain_procs(config)
    urls = {p.name: f"http://{p.name[0].replace('b', 'o')}{p.name.split()[1]}" for p in procs}
    return {p.name: [str(a) for a in processes.command_line(p, urls)] for p in procs}


def read_layers(path):
    """[w0, b0, w1, b1, ...] of a snapshot or weights file (snapshots.save_layers' names)."""
    arrays = np.load(path)
    return [arrays[f"{p}{k}"] for k in range(sum(n.startswith("w") for n in arrays.files))
            for p in "wb"]


def assert_stages_are_dnis(run, tmp_path, layers, width, seed, steps, train_examples=2000,
                           method="cdni"):
    """Every stage's final layers in the chain run folder `run` equal, bit for bit, those of
    dni.py --data fashion-mnist with the same network, seed, images and steps, run with one
    BLAS thread as the chain's stages are (with several, numpy's products may sum in another
    order: ~1e-6 apart after 30 steps, measured)."""
    top = Path(__file__).resolve().parents[1]
    weights = tmp_path / "dni.npz"
    subprocess.run([sys.executable, str(top / "dni.py"), "--data", "fashion-mnist",
                    "--layers", str(layers), "--width", str(width), "--train-examples",
                    str(train_examples), "--steps", str(steps), "--measure-every", str(steps),
                    "--seed", str(seed), "--method", method, "--weights-out", str(weights)],
                   check=True,
                   capture_output=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
                   timeout=600)
    one_process = read_layers(weights)
    for k in range(1, layers + 1):
        name = "layer1" if k == 1 else "layers23"
        stage = read_layers(run / "progress" / f"stage{k}" / f"{name}_final.npz")
        assert [a.dtype for a in stage] == [np.float32, np.float32]
        for mine, theirs in zip(stage, one_process[2 * k - 2:2 * k], strict=True):
            assert np.array_equal(mine, theirs), f"stage {k}: {np.abs(mine - theirs).max()}"
