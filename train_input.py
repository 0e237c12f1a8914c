"""The input trainer: owns layer 1 and updates it with synthetic gradients from the oracle.

Run it last (or in any order: it waits for the oracle, and its sender keeps what the output
trainer cannot take yet):

    python train_input.py                        # loops over data/ until Ctrl-C
    python train_input.py --duration 180 --data-dir data --progress-dir progress
    python train_input.py --help

For each minibatch of examples x (n, 2) with targets y (n,):

    h = sigmoid(x . w1 + b1)                    # (n, 24), layer 1's forward pass
    send (i, h, y) to the output trainer        # fire-and-forget: it trains layers 2-3 on them
    g = oracle.estimate_gradients(h)            # (n, 24): synthetic dL/dh, one row per example
    backprop g through layer 1, w1 -= eta * dL/dw1 (averaged over the minibatch)

It never waits for the true gradient: that is the point of synthetic gradients. With
`--synthetic-gradients local` it does not even wait for the oracle: it computes g with a copy of
the oracle's model, whose weights it fetches (GET /weights) every --refresh-every seconds, as in
the paper, where the synthetic-gradient model sits beside the layer it serves. (The original
averaged the n synthetic gradients and pushed the average back through only the last example's
input; here each example's gradient goes back through its own input, as backprop requires.)
Layer-1 weights are snapshotted into --progress-dir on a wall-clock tick shared with the output
trainer, so plot.py can compose the whole network at the same moments.
"""

import argparse
import collections
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

import generate
import sender
import serving
import sgd
import snapshots
import synthgrad

HERE = Path(__file__).resolve().parent
log = logging.getLogger("train_input")


class LocalSyntheticGradients:
    """The local mode: the synthetic-gradient model computed here, on a copy of the oracle's
    weights that a background thread refreshes from GET /weights every `refresh_every` s.

    The oracle still does all the learning; only the model's weights travel, not a request
    per minibatch (as in the paper, where the model sits beside the layer it serves).
    """

    def __init__(self, oracle, refresh_every, stop):
        self.oracle, self.refresh_every, self.stop = oracle, refresh_every, stop
        self.weights = self.conditioned = None
        self.refreshes = self.version = 0
        self._thread = threading.Thread(target=self._refresh_forever, daemon=True,
                                        name="refresh-weights")

    def refresh(self):
        self.weights, self.conditioned, self.version = self.oracle.weights()
        self.refreshes += 1

    def start(self):
        """Fetch the first weights (waiting for the oracle), then keep refreshing them."""
        while not self.stop.is_set():
            try:
                self.refresh()
                break
            except synthgrad.PeerError as e:
                log.warning("no oracle weights yet (%s); waiting for the oracle", e)
                self.oracle.wait_until_ready(self.stop)
        self._thread.start()

    def _refresh_forever(self):
        while not self.stop.wait(self.refresh_every):
            try:
                self.refresh()
            except synthgrad.PeerError as e:     # keep the weights we have; say so
                log.warning("could not refresh the oracle's weights (%s); using version %d",
                            e, self.version)

    def __call__(self, h, y):
        inputs = np.column_stack([h, y]) if self.conditioned else h
        return synthgrad.model_forward(self.weights, inputs)


class InputTrainer:
    """Layer 1, its two peers, and the loop that streams examples through them."""

    def __init__(self, x, y, oracle_url, output_url, learning_rate=0.001, batch_size=10,
                 progress_dir=HERE / "progress", snapshot_interval=10, seed=0,
                 report_every=5.0, metrics_path=None, mode="remote", refresh_every=0.2,
                 max_unsent=5_000, wire="json", update_probability=1.0, token=None,
                 checkpoint=None, checkpoint_interval=30.0, resume=False):
        self.x, self.y = x, y                                   # (N, 2), (N,)
        self.learning_rate, self.batch_size = learning_rate, batch_size
        self.rng = np.random.default_rng(seed)
        self.layer = sgd.Layer(2, synthgrad.HIDDEN_SIZE, sgd.Sigmoid, self.rng)  # layer 1
        self.oracle = synthgrad.OracleClient(oracle_url, binary=wire == "binary", token=token)
        self.output = synthgrad.OutputTrainerClient(output_url, binary=wire == "binary",
                                                    token=token)
        self.sender = sender.Sender(self.output.send_examples, "examples to output trainer",
                                       max_pending=max(len(x), 1),
                                       linger=sender.SENDER_LINGER)
        self.snapshotter = snapshots.Snapshotter(progress_dir, "layer1", snapshot_interval)
        self.report_every = report_every
        self.metrics_path = metrics_path
        self.stop = threading.Event()
        self.local = (LocalSyntheticGradients(self.oracle, refresh_every, self.stop)
                      if mode == "local" else None)
        self.latencies = collections.deque(maxlen=10_000)      # seconds per oracle request
        self.max_unsent = max_unsent
        self.update_probability = update_probability
        self.skipped = 0                                        # minibatches not used to update
        self.diverged = False
        self.checkpointer = snapshots.Checkpointer(checkpoint, checkpoint_interval,
                                                   self.save_checkpoint)
        self.waited = 0.0                                       # seconds spent at max_unsent
        self.examples = 0
        self.updates = 0
        self.epochs = 0
        if resume:
            self.resume(checkpoint)

    COUNTERS = ("examples", "updates", "epochs", "skipped")

    def save_checkpoint(self, path):
        """Layer 1 and the counters (a resumed run starts a new pass over the data)."""
        snapshots.save_checkpoint(path, {
            "w": self.layer.w, "b": self.layer.b,
            "counters": np.array([getattr(self, name) for name in self.COUNTERS])})

    def resume(self, path):
        """Load a checkpoint written by save_checkpoint, or raise ValueError (nothing loaded)."""
        a = snapshots.load_checkpoint(path, {"w": self.layer.w.shape, "b": self.layer.b.shape,
                                             "counters": (len(self.COUNTERS),)})
        self.layer.w, self.layer.b = a["w"].astype(np.float64), a["b"].astype(np.float64)
        for name, value in zip(self.COUNTERS, a["counters"].tolist()):
            setattr(self, name, int(value))
        log.info("resumed from %s after %d examples, %d updates", path, self.examples,
                 self.updates)

    def synthetic_gradients(self, h, y):
        """The oracle's dL/dh for h (y goes along for an oracle conditioned on targets),
        waiting and saying so while the oracle is unreachable."""
        if self.local is not None:
            return self.local(h, y)
        while True:
            try:
                t0 = time.perf_counter()
                g = self.oracle.estimate_gradients(h, y)
                self.latencies.append(time.perf_counter() - t0)
                return g
            except synthgrad.PeerError as e:
                log.warning("no synthetic gradients (%s); waiting for the oracle", e)
                if not self.oracle.wait_until_ready(self.stop):
                    return None

    def step(self, idx):
        """Forward, hand off, fetch synthetic gradients, update: one minibatch of indices."""
        h = self.layer.feed_forward(self.x[idx])                # (n, 24)
        self.sender.put(idx, h, self.y[idx])                    # fire-and-forget to layers 2-3
        if self.sender.pending() > self.max_unsent:             # bounded: wait, never drop
            t0 = time.perf_counter()
            while self.sender.pending() > self.max_unsent and not self.stop.wait(0.001):
                pass
            self.waited += time.perf_counter() - t0
        self.examples += len(idx)
        if self.update_probability < 1 and self.rng.random() >= self.update_probability:
            self.skipped += 1                                   # a sporadic update: not now
            self.snapshotter.maybe_save([self.layer])
            return True
        g = self.synthetic_gradients(h, self.y[idx])            # (n, 24) synthetic dL/dh
        if g is None:                                           # stopped while waiting
            return False
        last_good = self.layer.w.copy(), self.layer.b.copy()
        self.layer.backprop(g)                                  # stores dL/dw1, dL/db1
        self.layer.descend(self.learning_rate)
        if not (np.isfinite(self.layer.w).all() and np.isfinite(self.layer.b).all()):
            self.layer.w, self.layer.b = last_good              # never send NaN activations
            self.diverged = True
            log.error("layer 1 diverged (NaN or infinity after update %d); stopped with the "
                      "last finite weights. Lower --learning-rate and restart.", self.updates)
            self.stop.set()
            return False
        self.updates += 1
        self.snapshotter.maybe_save([self.layer])
        self.checkpointer.maybe()
        return True

    def run(self, epochs=None, duration=None):
        """Stream minibatches until `epochs` passes, `duration` seconds, or stop is set."""
        self.oracle.wait_until_ready(self.stop)
        if self.local is not None:
            self.local.start()
        self.snapshotter.save_initial([self.layer])
        metrics = snapshots.MetricsLog(self.metrics_path, "input_trainer")  # its clock starts now
        metrics.write(examples=0, updates=0, epoch=0, examples_per_s=0.0)
        start = last_report = time.monotonic()
        reported = 0
        while not self.stop.is_set() and (epochs is None or self.epochs < epochs):
            order = self.rng.permutation(len(self.x))
            for k in range(0, len(order), self.batch_size):
                if self.stop.is_set() or not self.step(order[k:k + self.batch_size]):
                    break
                now = time.monotonic()
                if duration is not None and now - start >= duration:
                    self.stop.set()
                if now - last_report >= self.report_every:
                    rate = (self.examples - reported) / (now - last_report)
                    metrics.write(examples=self.examples, updates=self.updates,
                                  skipped=self.skipped,
                                  epoch=self.epochs, examples_per_s=round(rate, 1),
                                  **self.latency_ms(), peak_rss_mb=serving.peak_rss_mb())
                    print(f"train_input: {now - start:7.1f} s, epoch {self.epochs}, "
                          f"{self.examples} examples ({rate:.0f}/s), {self.updates} updates, "
                          f"{self.sender.pending()} waiting to be sent", flush=True)
                    last_report, reported = now, self.examples
            else:
                self.epochs += 1

    def latency_ms(self):
        """p50 and p95 of the recent oracle requests, in ms (None in the local mode)."""
        if not self.latencies:
            return {"oracle_p50_ms": None, "oracle_p95_ms": None}
        p50, p95 = np.percentile(self.latencies, [50, 95]) * 1e3
        return {"oracle_p50_ms": round(float(p50), 3), "oracle_p95_ms": round(float(p95), 3)}

    def close(self):
        """Save layer 1's final weights (and checkpoint) and deliver what is still waiting."""
        self.snapshotter.save_final([self.layer])
        if not self.diverged:
            self.checkpointer.now()
        counts = self.sender.close()
        self.oracle.close()
        self.output.close()
        return counts


def parse_args(argv):
    p = argparse.ArgumentParser(description="Train layer 1 with synthetic gradients from the "
                                            "oracle; stream its activations to the output trainer.")
    p.add_argument("--data-dir", type=Path, default=HERE / "data",
                   help="folder holding x.npy and y.npy (default data/ next to this file, where "
                        "generate.py writes)")
    p.add_argument("--oracle-url", default=synthgrad.DEFAULT_ORACLE_URL,
                   help="where the oracle listens (default %(default)s, its default address)")
    p.add_argument("--output-url", default=synthgrad.DEFAULT_OUTPUT_TRAINER_URL,
                   help="where the output trainer listens (default %(default)s, its default)")
    p.add_argument("--learning-rate", type=float, default=0.001,
                   help="eta for layer 1 (default 0.001, the original's)")
    p.add_argument("--batch-size", type=int, default=10,
                   help="examples per oracle request and per update (default 10, the original's)")
    p.add_argument("--synthetic-gradients", choices=("remote", "local"), default="remote",
                   help="remote (default, the original's): ask the oracle over HTTP for every "
                        "minibatch; local: compute them here with a copy of the oracle's "
                        "weights, refreshed every --refresh-every seconds (the paper's layout)")
    p.add_argument("--refresh-every", type=float, default=0.2,
                   help="local mode: seconds between weight refreshes (default 0.2: a GET of "
                        "~12 KB five times a second; in our runs the local gradients' aggregate "
                        "cosine with the true ones was 0.5-0.6 with it and ~0.36 with 1 s)")
    p.add_argument("--wire", choices=("json", "binary"), default="json",
                   help="how activations travel to the output trainer and synthetic "
                        "gradients from the oracle (default json, the documented form; binary "
                        "sends raw float64 arrays, ~100x cheaper to encode)")
    serving.token_argument(p)
    p.add_argument("--update-probability", type=float, default=1.0,
                   help="update layer 1 on a minibatch only with this probability, as in the "
                        "paper's sporadic updates (default 1: every minibatch; 0 freezes layer "
                        "1, the paper's no-backprop control)")
    p.add_argument("--max-unsent", type=int, default=5_000,
                   help="when more examples than this wait to be sent to the output trainer, "
                        "pause until they are down to it (default 5,000, ten chunks): nothing is "
                        "dropped, and layer 1 cannot run more than a few thousand examples "
                        "ahead of what layers 2-3 have seen (it matters in the local mode, "
                        "which is otherwise ~15x faster than the output trainer can take)")
    p.add_argument("--epochs", type=int, default=None,
                   help="stop after this many passes over the data (default: no limit)")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds (default: no limit; Ctrl-C stops too)")
    p.add_argument("--progress-dir", type=Path, default=HERE / "progress",
                   help="where weight snapshots go (default progress/ next to this file, where "
                        "train_output.py writes layers 2-3 and plot.py looks)")
    p.add_argument("--snapshot-interval", type=int, default=10,
                   help="seconds between snapshots; must match train_output.py's so the two "
                        "halves pair up (default 10, the same as its default)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds layer 1's initial weights and the example order (default 0)")
    snapshots.checkpoint_arguments(p, "layer 1 and its counters")
    p.add_argument("--metrics", type=Path, default=None,
                   help="append a JSON line of figures (examples, updates, examples/s) to this "
                        "file every --report-every seconds (default: none)")
    p.add_argument("--report-every", type=float, default=5.0,
                   help="seconds between progress lines (default 5: readable in a terminal)")
    args = p.parse_args(argv)
    if args.batch_size < 1:
        p.error("--batch-size must be at least 1")
    snapshots.check_checkpoint_arguments(p, args)
    if not 0 <= args.update_probability <= 1:
        p.error("--update-probability must be between 0 and 1")
    if not args.refresh_every > 0 or args.max_unsent < 1:
        p.error("--refresh-every must be positive and --max-unsent at least 1")
    if not args.learning_rate > 0 or args.snapshot_interval < 1:
        p.error("--learning-rate must be positive and --snapshot-interval at least 1")
    if (args.epochs is not None and args.epochs < 1) or (args.duration is not None
                                                         and not args.duration > 0):
        p.error("--epochs and --duration must be positive")
    return args


def main(argv=None):
    args = parse_args(argv)
    serving.setup_logging("train_input")
    print("train_input.py:", serving.printable(args), flush=True)
    x, y = generate.load_dataset(args.data_dir)
    try:
        trainer = InputTrainer(
            x, y, args.oracle_url, args.output_url, args.learning_rate, args.batch_size,
            args.progress_dir, args.snapshot_interval, args.seed, args.report_every, args.metrics,
            args.synthetic_gradients, args.refresh_every, args.max_unsent, args.wire,
            args.update_probability, args.token, args.checkpoint, args.checkpoint_interval,
            args.resume)
    except ValueError as e:                         # a checkpoint that cannot be resumed from
        raise SystemExit(f"train_input.py: {e}") from None

    def _stop(signum, frame):
        trainer.stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    t0 = time.monotonic()
    trainer.run(args.epochs, args.duration)
    if trainer.diverged:
        trainer.close()
        return 1
    took = time.monotonic() - t0
    counts = trainer.close()
    print(f"train_input.py: done: {trainer.examples} examples in {took:.1f} s "
          f"({trainer.examples / max(took, 1e-9):.0f}/s), {trainer.updates} updates, "
          f"{trainer.epochs} full epochs; {trainer.waited:.1f} s waiting for the output "
          f"trainer to catch up; oracle requests {trainer.latency_ms()}; sent to "
          f"output trainer: {counts}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
