"""Shared fixtures: for the server tests, oracle and output-trainer apps made with create_app and
driven through Flask's test client (no sockets, no processes), and a fake gradient sender; for
plot.py's and snapshots.py's, a recorded progress folder.

Every app a fixture makes is stopped at the end of the test, even if the test fails.
"""

import collections
import logging
import os
import socket

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest

import sgd
from parts import sender, snapshots

MAX_EXAMPLES = 100      # indices 0..99: small arrays, so state checks are cheap


@pytest.fixture(autouse=True)
def root_logging_kept():
    """A script's main run in a test (options.setup_logging) sets the root logger's handler on
    the test's captured stdout, closed after it ("Logging error ... I/O operation on closed
    file" in every later test that logs): the handlers and level before the test come back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class FakeSender:
    """Stands in for sender.Sender: records every put(i, h, dL_dh) as copies, sends nothing."""

    def __init__(self):
        self.puts = []                  # [(i (m,), h (m, 24), dL/dh (m, 24)), ...] in order
        self.counts = collections.Counter(sent=0, superseded=0, dropped=0, failed_requests=0,
                                          unsent=0)
        self.closed = False
        self.refused_in_a_row = 0

    def put(self, i, *arrays):
        self.puts.append((np.array(i), *(np.array(a) for a in arrays)))

    def close(self, flush_timeout=5.0):
        self.closed = True
        return dict(self.counts)

    def rows(self):
        """Everything put so far, concatenated: i (n,), h (n, 24), dL/dh (n, 24)."""
        return tuple(np.concatenate(col) for col in zip(*self.puts, strict=True))


@pytest.fixture
def closed_url():
    """A URL on 127.0.0.1 that nothing listens on (its port was bound, noted and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def make_oracle_app():
    """make_oracle_app(**config) -> a fresh oracle app (max_examples 100 and oracle.ORIGINAL's
    settings unless given).

    Building the Keras model costs ~2 s the first time in a process (TensorFlow starts up) and
    ~20 ms after that, so each test can afford its own app.
    """
    import oracle
    apps = []

    def make(**config):
        # the original's settings (an h-only model, random start, Adadelta) unless given: most
        # tests are about the mechanics, and send h alone
        app = oracle.create_app({"max_examples": MAX_EXAMPLES, **oracle.ORIGINAL, **config})
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.config["ORACLE"].stop_training()


@pytest.fixture
def oracle_app(make_oracle_app):
    return make_oracle_app()


@pytest.fixture
def make_output_app(tmp_path, closed_url):
    """make_output_app(**config) -> a fresh output-trainer app with a FakeSender.

    Defaults: max_examples 100, snapshots into tmp_path, the oracle at a closed port, the
    original's per-example SGD (train_output.ORIGINAL). The real
    Sender the constructor starts is closed at once (its thread ends) and replaced by a
    FakeSender, trainer.sender, that records what train_pass would send. Pass
    keep_real_sender=True to keep the real one (it then fails to reach the closed port).
    """
    import train_output
    trainers = []

    def make(keep_real_sender=False, **config):
        config = {"max_examples": MAX_EXAMPLES, "progress_dir": tmp_path,
                  "oracle_url": closed_url, **train_output.ORIGINAL, **config}
        app = train_output.create_app(config)
        trainer = app.config["TRAINER"]
        trainers.append(trainer)
        if not keep_real_sender and trainer.boundary is None:   # --colocated sends nothing
            if trainer.sender is not None:
                trainer.sender.close(flush_timeout=0)
            trainer.sender = FakeSender()
        return app

    yield make
    for trainer in trainers:
        if isinstance(trainer.sender, sender.Sender):
            trainer.sender.close(flush_timeout=0)     # before stop_training's 5 s flush
        trainer.stop_training()
        if trainer.oracle is not None:                # none with --colocated
            trainer.oracle.close()


@pytest.fixture
def output_app(make_output_app):
    return make_output_app()


# --- A progress folder, for plot.py's and snapshots.py's tests ---------------------------------

@pytest.fixture
def recorded_run(tmp_path):
    """A progress folder as the two trainers would leave it, with the networks it holds.

    Moments: initial (taken at 995.5 and 996), ticks 1000, 1010, 1020, final (at 1025.5 and
    1026.25), and a tick 1030 that only layer 1's trainer saved.
    """
    folder = tmp_path / "progress"
    rng = np.random.default_rng(11)
    nets = {label: sgd.make_network(rng) for label in ("initial", 1000, 1010, 1020, "final")}
    taken = {"initial": (995.5, 996.0), 1000: (1000.1, 1000.3), 1010: (1010.2, 1010.0),
             1020: (1020.0, 1020.4), "final": (1025.5, 1026.25)}
    for label, net in nets.items():
        snapshots.save_layers(folder / f"layer1_{label}.npz", net[:1], taken_at=taken[label][0])
        snapshots.save_layers(folder / f"layers23_{label}.npz", net[1:], taken_at=taken[label][1])
    snapshots.save_layers(folder / "layer1_1030.npz", sgd.make_network(rng)[:1], taken_at=1030.2)
    return folder, nets


# --- A real browser, for live.py's page ----------------------------------------------------------


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium driven by selenium, logging every network request (the performance
    log); skipped, saying why, where selenium, Chromium or its driver is missing or will not
    start (`.ci/run` installs them with apt-get where it can)."""
    import live
    try:
        driver = live.headless_chromium(tmp_path / "chromium-profile", log_requests=True)
    except live.NoBrowser as e:
        pytest.skip(str(e))
    try:
        yield driver
    finally:
        driver.quit()
