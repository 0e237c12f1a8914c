"""The input trainer: owns layer 1 and steps it with synthetic gradients from the oracle.

Run it last (or in any order: it waits for the oracle and keeps what it cannot send yet):

    python train_input.py                        # loops over data/ until Ctrl-C
    python train_input.py --duration 180 --data-dir data --progress-dir progress

For each minibatch of examples x (n, 2) with targets y (n,):

    h = sigmoid(x . w1 + b1)                    # (n, 24), layer 1's forward pass
    send (i, h, y) to the output trainer        # fire-and-forget: it trains layers 2-3 on them
    g = the oracle's model applied to (h, y)    # (n, 24): synthetic dL/dh, one row per example
    backprop g through layer 1, step layer 1 (dL/dw1 averaged over the minibatch)

It never waits for the true gradient: that is the point of synthetic gradients. With --delay
it is stage 1 of a chain that counts steps (parts/stepped.py).
"""

import argparse
import collections
import dataclasses
import logging
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

import generate
import sgd
import synthgrad
import train_output
from parts import (boundary, checkpoint, children, classify, optimizers, options, pacing,
                   sender, snapshots, stepped, threaded)

HERE = Path(__file__).resolve().parent
log = logging.getLogger("train_input")
REFUSED_IN_A_ROW = 5_000  # examples the output trainer refuses, none taken between, that end a run
CLOSE_FLUSH_S = 3.0       # what is unsent at the end gets this long to reach the output trainer


@dataclasses.dataclass
class InputConfig:
    """Everything InputTrainer needs besides the data: the command line's defaults."""

    oracle_url: str = synthgrad.DEFAULT_ORACLE_URL
    output_url: str = synthgrad.DEFAULT_OUTPUT_TRAINER_URL
    width: int = synthgrad.HIDDEN_SIZE          # layer 1: 2 -> width (a chain's first stage)
    sizes: tuple | None = None                  # several layers, 2 -> ... -> width (a chain's)
    activation: str = "sigmoid"                 # "relu" (He's init) for images (--data)
    colocated: bool = False                     # the model's weights come from output_url
    learning_rate: float = train_output.DEFAULTS["learning_rate"]   # every stage's (eta)
    optimizer: str = train_output.DEFAULTS["optimizer"]             # "adam" or "sgd"
    update: str = "synthetic"                   # "synthetic", "frozen" or "random" (--update)
    batch_size: int = 10                        # examples per synthetic-gradient request and update
    mode: str = "local"                         # --synthetic-gradients: "local" or "remote"
    refresh_every: float = 0.2                  # local mode: seconds between weight refreshes
    wire: str = "json"                          # "json" or "binary"
    token: str | None = None                    # shared secret for both peers
    update_probability: float = 1.0             # sporadic updates: 1 updates on every minibatch
    max_unsent: int = 5_000                     # back-pressure: unsent examples before waiting
    max_ahead: int | None = None                # flow control: examples beyond the next stage's
    until_url: str | None = None                # whose examples_trained --until-trained counts
    progress_dir: Path | None = None            # snapshots (None: the output trainer's run)
    snapshot_interval: int = train_output.DEFAULTS["snapshot_interval"]   # s, a shared tick
    seed: int = 0                               # layer 1's initial weights and the example order
    checkpoint: str | Path | None = None        # file to checkpoint into
    checkpoint_interval: float = 30.0
    resume: bool = False                        # start from checkpoint
    metrics_path: Path | None = None            # --metrics
    report_every: float = 5.0                   # seconds between progress lines
    delay: int | None = None                    # count steps, bounded by D (parts/stepped.py)
    network: tuple | None = None                # with delay: the whole network, dni.py's draws
    splits: tuple | None = None                 # with delay: where it is cut


DEFAULTS = {f.name: f.default for f in dataclasses.fields(InputConfig)}

# The original project's layer 1 (train_input.py --original): SGD at 0.001.
ORIGINAL = dict(learning_rate=0.001, optimizer="sgd", examples=0, synthetic_gradients="remote")


class InputTrainer:
    """Layer 1, its two peers, and the loop that streams examples x (N, 2), y (N,) to them.
    Counts examples handed off, updates, skipped minibatches, full epochs, seconds waited."""

    COUNTERS = ("examples", "updates", "epochs", "skipped", "steps")   # a checkpoint keeps

    def __init__(self, x, y, config=None):
        self.config = c = config if config is not None else InputConfig()
        self.x, self.y = x, y                                   # (N, 2), (N,)
        sizes = c.sizes or (x.shape[1], c.width)                # layer 1: 2 -> 24 (or more)
        self.stop = threading.Event()
        # the two peers: the oracle (synthetic gradients) and the output trainer (layers 2-3)
        binary = c.wire == "binary"
        # --colocated: the stage above learns the model beside its layers and serves it
        self.oracle = synthgrad.OracleClient(c.output_url if c.colocated else c.oracle_url,
                                             binary=binary, token=c.token)
        self.output = synthgrad.OutputTrainerClient(c.output_url, binary=binary, token=c.token)
        self.counting = self.local = self.until_trained = None
        if c.delay is not None:               # parts/stepped.py: decoupled.Stage 0, its sender
            self.counting = stepped.FirstStage(c, len(x), sizes, self.oracle,
                                               self.output.send_examples, self.stop)
            stage, self.sender = self.counting.stage, self.counting.sender
            self.layers, self.optimizer, self.rng = stage.group, stage.optimizer, stage.rng
        else:
            self.rng = np.random.default_rng(c.seed)            # first the layer, then the order
            self.layers = classify.make_layers(sizes, c.activation, self.rng, last_linear=False)
            self.optimizer = optimizers.make(c.optimizer, self.layers, c.learning_rate)
            self.sender = sender.Sender(self.output.send_examples, "examples to output trainer",
                                        max_pending=max(len(x), 1), linger=sender.SENDER_LINGER)
            if c.mode == "local" and c.update != "frozen":
                self.local = boundary.LocalSyntheticGradients(self.oracle, c.refresh_every,
                                                              self.stop, sizes[-1])
        # the sender holds one row per example, so at most len(x) wait: a --max-unsent at or
        # above that would never pause layer 1, which then runs on alone while its peer is down
        self.max_unsent = min(c.max_unsent, len(x) // 2)
        if self.max_unsent < c.max_unsent and c.delay is None:
            log.info("pausing at %d unsent examples, not --max-unsent's %d: half the %d "
                     "streamed (the sender holds one row of each)", self.max_unsent,
                     c.max_unsent, len(x))
        self.latencies = collections.deque(maxlen=10_000)      # seconds per oracle request
        # what goes to disk: snapshots on the shared tick, checkpoints on their own clock
        self.snapshotter = snapshots.Snapshotter(c.progress_dir, "layer1", c.snapshot_interval)
        self.checkpointer = checkpoint.Checkpointer(c.checkpoint, c.checkpoint_interval,
                                                   self.save_checkpoint, self)
        self.examples = self.updates = self.epochs = self.skipped = self.steps = 0
        self.waited = 0.0
        self.diverged = False
        self.next_stage = None                                  # parts/pacing.py, in run()
        if c.resume:
            self.resume(c.checkpoint)

    def counted_step(self, idx):
        """--delay: the next step; past --until-trained, wait for the end. False: stop."""
        if self.until_trained is not None:
            idx = idx[:max(0, self.until_trained - self.examples)]
        if len(idx) == 0:
            self.stop.wait()
            return False
        if not self.counting.step(self, self.steps + 1, self.x[idx], self.y[idx], idx):
            return False
        self.steps += 1
        self.examples += len(idx)
        self.updates += 1
        self.snapshotter.maybe_save(self.layers)
        self.checkpointer.maybe()
        return True

    def save_checkpoint(self, path):
        """The layers, the optimizer's state and the counters (a resumed run starts a new pass)."""
        checkpoint.save(path, {"": (checkpoint.layer_weights(self.layers), self.optimizer)},
                        {name: getattr(self, name) for name in self.COUNTERS})

    def resume(self, path):
        """Load a checkpoint written by save_checkpoint, or raise ValueError (nothing loaded)."""
        weights, counts, _ = checkpoint.load(
            path, {"": (checkpoint.layer_weights(self.layers), self.optimizer)}, self.COUNTERS)
        checkpoint.set_layers(self.layers, weights[""])
        for name, value in counts.items():
            setattr(self, name, value)
        log.info("resumed from %s after %d examples, %d updates", path, self.examples,
                 self.updates)

    def step(self, idx):
        """One minibatch of example indices idx (n,): sgd's step, with a synthetic gradient in
        place of backprop from the layers above. False means stop."""
        if self.counting is not None:
            return self.counted_step(idx)
        h = sgd.feed_forward(self.layers, self.x[idx])          # (n, 24) forward
        self.hand_off(idx, h)                                   # to layers 2-3, fire-and-forget
        if self.skip_update():                                  # sporadic updates: not this one
            return True
        g = self.synthetic_gradients(h, self.y[idx])            # (n, 24) synthetic dL/dh
        if g is None:                                           # stopped while waiting
            return False
        if self.config.update == "random":                      # the control: g's size only
            g = boundary.random_directions(g, self.rng)
        sgd.backward(self.layers, g)                            # dL/dw1 (2, 24), dL/db1 (24,)
        return self.descend()                                   # w1 -= eta dL/dw1 (sgd), or stop

    def hand_off(self, idx, h):
        """Queue (i, h, y) for layers 2-3; wait only for room (--max-ahead, --max-unsent)."""
        if self.next_stage is not None:                          # --max-ahead
            self.next_stage.wait_for_room(self.examples)
        self.sender.put(idx, h, self.y[idx])
        refused, taken = self.sender.refused_in_a_row, self.sender.counts["sent"]
        if refused and not taken or refused >= REFUSED_IN_A_ROW:    # e.g. restarted, another width
            since = f"since it last took any ({refused:,} in a row)" if taken else "sent"
            raise SystemExit(f"train_input.py: the output trainer took none of the examples "
                             f"{since} and refuses them ({self.sender.refusal})")
        if self.sender.pending() > self.max_unsent:
            self.wait_for_room()
        self.examples += len(idx)

    def wait_for_room(self, note_every=10.0):
        """Back-pressure: wait while more than --max-unsent examples are unsent, or until stop."""
        t0 = time.monotonic()
        next_note = t0 + note_every
        while self.sender.pending() > self.max_unsent and not self.stop.wait(0.001):
            if time.monotonic() >= next_note:
                log.warning("waiting %.0f s so far for the output trainer to take %d unsent "
                            "examples (is it down? its sender retries)", time.monotonic() - t0,
                            self.sender.pending())
                next_note += note_every
        waited = time.monotonic() - t0
        self.waited += waited
        if self.stop.is_set() and waited >= 1.0:
            log.warning("stopped after waiting %.1f s for the output trainer to take %d unsent "
                        "examples", waited, self.sender.pending())

    def skip_update(self):
        """True to leave layer 1 alone this minibatch (--update frozen, --update-probability)."""
        p = self.config.update_probability
        if self.config.update != "frozen" and (p >= 1 or self.rng.random() < p):
            return False
        self.skipped += 1
        self.snapshotter.maybe_save(self.layers)               # the snapshot tick goes on
        return True

    def synthetic_gradients(self, h, y):
        """The oracle's dL/dh for (h, y), waiting while the oracle is unreachable."""
        if self.local is not None:
            return self.local(h, y)
        while True:
            try:
                t0 = time.perf_counter()
                g = self.oracle.estimate_gradients(h, y)
                self.latencies.append(time.perf_counter() - t0)
                return g
            except synthgrad.PeerError as e:
                if e.refused or isinstance(e.__cause__, synthgrad.ProtocolError):  # no wait helps
                    raise SystemExit(f"train_input.py: the oracle refuses its requests "
                                     f"({e})") from None
                log.warning("no synthetic gradients (%s); waiting for the oracle", e)
                if not self.oracle.wait_until_ready(self.stop):
                    return None

    def descend(self):
        """One --optimizer step, then snapshot and checkpoint on their clocks; False if diverged."""
        if checkpoint.guard(self, "layer 1", self.layers, self.optimizer.step) is None:
            return False                                        # never send NaN activations
        self.updates += 1
        self.snapshotter.maybe_save(self.layers)
        self.checkpointer.maybe()
        return True

    def run(self, epochs=None, duration=None, until_trained=None):
        """Stream minibatches until `epochs` passes, `duration` seconds after the oracle
        first answered, the output trainer has trained on `until_trained` examples, or stop."""
        if not self.oracle.wait_until_ready(self.stop):
            return
        if duration is not None:
            timer = threading.Timer(duration, self.stop.set)
            timer.daemon = True
            timer.start()
        self.until_trained = until_trained
        if self.counting is not None and until_trained is not None:   # the last stage's last step
            steps = -(-until_trained // self.config.batch_size)
            self.next_stage = pacing.watch(self.config, self.stop, steps, "steps_trained")
        elif until_trained is not None or self.config.max_ahead is not None:
            self.next_stage = pacing.watch(self.config, self.stop, until_trained)
        # then the run's folder and the model's weights; then time zero on disk (unless resumed)
        if not self.find_progress_dir():
            return
        if self.local is not None and not self.local.start():
            raise SystemExit(1)                         # why: logged (parts/boundary.py)
        if self.counting is not None:
            self.counting.start()
        if self.examples == 0:
            self.snapshotter.save_initial(self.layers)
        metrics = snapshots.MetricsLog(self.config.metrics_path, "input_trainer")  # clock starts
        metrics.write(examples=self.examples, updates=self.updates, epoch=self.epochs,
                      examples_per_s=0.0)
        self.started = self.reported_at = time.monotonic()
        self.reported = self.examples                        # resumed: its own count
        batch_size = self.config.batch_size
        while not self.stop.is_set() and (epochs is None or self.epochs < epochs):
            # one epoch: a fresh order of the examples, then its minibatches in turn
            order = self.rng.permutation(len(self.x))           # (N,)
            for k in range(0, len(order), batch_size):
                if self.stop.is_set() or not self.step(order[k:k + batch_size]):
                    break
                self.report(metrics)
            else:
                self.epochs += 1                                # only a complete pass counts
        self.report(metrics, last=True)             # so the last line counts every example

    def find_progress_dir(self):
        """Without --progress-dir, snapshot into the output trainer's run (parts/pacing.py);
        False if stopped first."""
        return self.config.progress_dir is not None or pacing.join_run(
            self.output, self.stop, self.snapshotter, self.config.output_url)

    def report(self, metrics, last=False):
        """Every --report-every seconds (and at the end): a metrics line and a progress line."""
        now = time.monotonic()
        if not last and now - self.reported_at < self.config.report_every:
            return
        rate = (self.examples - self.reported) / max(now - self.reported_at, 1e-9)
        self.reported_at, self.reported = now, self.examples
        delays = None if self.counting is None else self.counting.delays.fields()
        counted = {} if delays is None else {
            "steps": self.steps, **{f"delay_{k}": v for k, v in delays.items()}}
        metrics.write(examples=self.examples, updates=self.updates, skipped=self.skipped,
                      epoch=self.epochs, examples_per_s=round(rate, 1),
                      **self.latency_ms(), peak_rss_mb=options.peak_rss_mb(), **counted)
        log.info("%7.1f s, epoch %d, %d examples (%.0f/s), %d updates, %d waiting to be sent%s",
                 now - self.started, self.epochs, self.examples, rate, self.updates,
                 self.sender.pending(), "" if delays is None else
                 f", step {self.steps}, delay {stepped.delay_text(delays)}")

    def latency_ms(self):
        """p50 and p95 of the recent oracle requests, in ms (None in the local mode)."""
        if not self.latencies:
            return {"oracle_p50_ms": None, "oracle_p95_ms": None}
        p50, p95 = np.percentile(self.latencies, [50, 95]) * 1e3
        return {"oracle_p50_ms": round(float(p50), 3), "oracle_p95_ms": round(float(p95), 3)}

    def close(self):
        """Save the final weights (if it streamed any) and a checkpoint; deliver what waits."""
        if self.examples and self.snapshotter.folder is not None:
            self.snapshotter.save_final(self.layers)
        if not self.diverged:
            self.checkpointer.now()
        counts = self.sender.close(flush_timeout=CLOSE_FLUSH_S)
        self.oracle.close()
        self.output.close()
        return counts


def synthetic_arguments(p, layers):
    """--update and --refresh-every: every stage whose layers learn from the model above."""
    p.add_argument("--update", choices=("synthetic", "frozen", "random"), default="synthetic",
                   help=f"what moves {layers} (default synthetic; frozen and random, along a "
                        "random direction of the synthetic gradient's norm, are the controls)")
    p.add_argument("--refresh-every", type=float, default=DEFAULTS["refresh_every"],
                   help="seconds between fetches of the model's weights (default %(default)s)")


def parse_args(argv):
    p = argparse.ArgumentParser(description="Train layer 1 with synthetic gradients from the "
                                            "oracle; stream its activations to the output trainer.")
    p.add_argument("--data-dir", type=Path, default=HERE / "data",
                   help="folder holding x.npy and y.npy (default data/, generate.py's)")
    classify.data_arguments(p)
    p.add_argument("--examples", type=int, default=20_000,
                   help="train on the first N examples, 0 for all (default %(default)s: what "
                        "the peers hold stays seconds old)")
    p.add_argument("--oracle-url", default=synthgrad.DEFAULT_ORACLE_URL,
                   help="where the oracle listens (default %(default)s)")
    p.add_argument("--output-url", default=synthgrad.DEFAULT_OUTPUT_TRAINER_URL,
                   help="where the output trainer listens (default %(default)s)")
    p.add_argument("--width", type=int, default=DEFAULTS["width"],
                   help="layer 1's outputs, the width of h (default %(default)s)")
    p.add_argument("--sizes", type=train_output.parse_sizes, default=None,
                   help="instead of --width: several layers from the inputs to h, e.g. "
                        "2-256-256 (default: 2-WIDTH)")
    p.add_argument("--colocated", action="store_true",
                   help="fetch the model's weights from --output-url, a stage started with "
                        "--colocated, instead of from an oracle (default: off)")
    train_output.layer_arguments(p, DEFAULTS, "layer 1")
    synthetic_arguments(p, "layer 1")
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"],
                   help="examples per request and update (default %(default)s, the original's)")
    p.add_argument("--synthetic-gradients", choices=("local", "remote"),
                   default=DEFAULTS["mode"],
                   help="local (default, the paper's layout): computed here with a copy of the "
                        "oracle's model; remote (the original's): a request per minibatch")
    p.add_argument("--wire", choices=("json", "binary"), default=None,
                   help="how activations and gradients travel (default json; with --data "
                        "binary, far cheaper at width 256)")
    options.token_argument(p)
    p.add_argument("--update-probability", type=float, default=DEFAULTS["update_probability"],
                   help="update layer 1 on a minibatch with this probability, the paper's "
                        "sporadic updates (default 1: every minibatch)")
    p.add_argument("--max-unsent", type=int, default=DEFAULTS["max_unsent"],
                   help="pause while more examples than this wait to be sent, at most half "
                        "those streamed (default 5,000: layer 1 stays near layers 2-3)")
    p.add_argument("--max-ahead", type=int, default=None, metavar="N",
                   help="hand off no more than N examples beyond what the next stage has "
                        "trained on (default: off)")
    p.add_argument("--epochs", type=int, default=None,
                   help="stop after this many passes over the data (default: no limit)")
    p.add_argument("--duration", type=float, default=None,
                   help="stop this many seconds after the oracle first answers (default: none)")
    p.add_argument("--until-trained", type=int, default=None, metavar="N",
                   help="stop once the output trainer has trained on N examples (default: none)")
    p.add_argument("--until-url", default=None, metavar="URL",
                   help="whose examples_trained --until-trained counts (default --output-url)")
    p.add_argument("--progress-dir", type=generate.out_path, default=None,
                   help="where weight snapshots go (default: the output trainer's progress/<run>)")
    train_output.stepped_arguments(p, first=True)
    checkpoint.add_arguments(p, "layer 1 and its counters")
    p.add_argument("--metrics", type=generate.out_path, default=None,
                   help="append a JSON line of figures to this file every --report-every "
                        "seconds (default: none)")
    p.add_argument("--report-every", type=float, default=DEFAULTS["report_every"],
                   help="seconds between progress lines (default %(default)s)")
    args = options.parse_with_original(p, argv, ORIGINAL,
                                       "SGD at learning rate 0.001 on every example")
    inputs = 2 if args.data == "toy" else classify.images.SIDE ** 2
    if args.sizes is not None and args.sizes[0] != inputs:
        p.error(f"--sizes must start at the {inputs} inputs (got "
                f"{train_output.format_sizes(args.sizes)})")
    if args.colocated and args.synthetic_gradients != "local":
        p.error("--colocated needs --synthetic-gradients local: the stage above serves its "
                "model's weights, not synthetic gradients per request")
    if not 0 <= args.update_probability <= 1:
        p.error("--update-probability must be between 0 and 1")
    checkpoint.check_arguments(p, args)
    train_output.check_stepped(p, args)
    options.check_at_least(p, args, 0, "examples")
    options.check_at_least(p, args, 1, "batch_size", "width", "max_ahead", "max_unsent",
                           "snapshot_interval", "epochs", "until_trained")
    options.check_positive(p, args, "refresh_every", "learning_rate", "duration", "report_every")
    return args


# InputConfig's fields whose option has another name (the rest share theirs)
OPTION_OF = {"mode": "synthetic_gradients", "metrics_path": "metrics"}


def config_from_args(args):
    """The trainer's settings from parse_args's options, by name (OPTION_OF where they differ)."""
    images = args.data != "toy"
    derived = dict(width=args.width if args.sizes is None else args.sizes[-1],
                   activation="relu" if images else "sigmoid",
                   wire=args.wire or ("binary" if images else "json"))
    return InputConfig(**{f.name: derived[f.name] if f.name in derived
                          else getattr(args, OPTION_OF.get(f.name, f.name))
                          for f in dataclasses.fields(InputConfig)})


def main(argv=None, stop=None):
    """stop: a threading.Event that stops it as SIGTERM does (run in a thread: a Ray actor)."""
    args = parse_args(argv)
    options.setup_logging("train_input")
    log.info("settings: %s", options.printable(args))
    try:                            # data that cannot be read, a checkpoint that cannot be resumed
        x, y = classify.load_training(args.data, args.data_dir, args.image_dir)
        if 0 < args.examples < len(x):
            x, y = x[:args.examples], y[:args.examples]
            log.info("training on the first %s examples of %s (--examples 0 for all)",
                     f"{args.examples:,}", args.image_dir or args.data_dir)
        trainer = InputTrainer(x, y, config_from_args(args))
    except ValueError as e:
        raise SystemExit(f"train_input.py: {e}") from None

    failed = threading.Event()                      # a thread of its own raised: exit 1
    if stop is None:                                # Ctrl-C, SIGTERM: stop after this minibatch
        for signum in threaded.stop_signals():
            signal.signal(signum, lambda signum, frame: trainer.stop.set())
        children.stop_with_parent()                 # SIGTERM too if its launcher is killed
        threaded.fail_on_thread_errors(failed, trainer.stop)
    else:
        threaded.set_when_set(stop, trainer.stop)
    t0 = time.monotonic()
    trainer.run(args.epochs, args.duration, args.until_trained)
    took = time.monotonic() - t0
    counts = trainer.close()
    if trainer.diverged or failed.is_set():
        return 1
    waited = trainer.waited + getattr(trainer.next_stage, "waited", 0.0)
    log.info("done: %d examples in %.1f s (%.0f/s), %d updates, %d full epochs; %.1f s "
             "waiting for the output trainer to catch up; oracle requests %s; sent to the "
             "output trainer: %s", trainer.examples, took, trainer.examples / max(took, 1e-9),
             trainer.updates, trainer.epochs, waited, trainer.latency_ms(), counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
