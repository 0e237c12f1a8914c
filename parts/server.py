"""What every server shares: its state's training thread and /status basics (TrainingServer),
its Flask app (make_app), and the main that runs it (run_server).
"""

import collections
import logging
import threading
import time
from pathlib import Path

from flask import Flask

import generate
from parts import checkpoint, children, http, options, snapshots, threaded
from synthgrad import STATUS

log = logging.getLogger("synthgrad")

STATE = "synthgrad_state"     # app.extensions[STATE]: the server's TrainingServer


def make_app(name, state, config_key):
    """A Flask app for a server's state (app.config[config_key]): JSON errors, the body limit,
    the shared token and GET /status; the caller adds the server's own routes."""
    app = Flask(name)
    app.config[config_key] = app.extensions[STATE] = state
    http.install_json_errors(app, state.counts, state.config["max_body_bytes"])
    http.require_token(app, state.config["token"])
    app.get(STATUS)(state.status)
    return app


class TrainingServer:
    """A server's counters, training thread (passes at a lower priority, a last checkpoint) and
    /status basics. A subclass sets role, title, train_pass() (False: nothing to train on),
    status_fields(), HELD, COUNTERS, models() and load_models(weights, counts), and calls
    TrainingServer.__init__ last, so that a resumed checkpoint loads into its state.
    """

    role = title = "server"
    idle_wait = 0.1                  # seconds between looks while there is nothing to train on
    quality = None                   # a boundary.Quality, if it measures synthetic gradients
    FLATTEN = {}                     # /status field (a dict) -> prefix of its keys in metrics
    NOT_IN_METRICS = ("role", "uptime_s", "started", "requests_served", "requests_refused",
                      "live_page", "window")

    def __init__(self, config):
        self.config = config
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.last_train_mse = None
        self.staleness = None        # mean age (s) of the rows the last pass trained on
        self.diverged = False
        self.started = time.time()
        self.stop = threading.Event()
        self.failed = threading.Event()   # a thread of it raised: the server ends, exit 1
        self._thread = None
        self.checkpointer = checkpoint.Checkpointer(config["checkpoint"],
                                                   config["checkpoint_interval"],
                                                   self.save_checkpoint, self)
        if config["resume"]:
            if config["checkpoint"] is None:
                raise ValueError("--resume needs --checkpoint PATH")
            self.resume(config["checkpoint"])

    # --- the training thread ------------------------------------------------------------------
    def start_training(self):
        self._thread = threading.Thread(target=self._train_forever, daemon=True,
                                        name=f"{self.role}-trainer")
        self._thread.start()

    def _train_forever(self):
        options.lower_thread_priority(self.config["nice"])
        try:
            while not self.stop.is_set():
                if not self.train_pass():
                    self.stop.wait(self.idle_wait)
                self.checkpointer.maybe()
        except Exception:            # a bug, a library's failure: a crash a launcher mends, not a
            log.exception("%s: training failed; the server ends (its last checkpoint stands)",
                          self.role)          # server that answers and never trains again
            self.failed.set()

    def stop_training(self, timeout=10.0):
        """Stop the thread; once it has ended, on_stopped() and a last checkpoint; then close()."""
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("%s: its pass did not end within %g s; no final weights or last "
                          "checkpoint (the one before stands)", self.role, timeout)
            elif not self.failed.is_set():                  # never mid-pass
                self.on_stopped()
                self.checkpointer.now()
        self.close()

    def on_stopped(self):
        pass

    # --- checkpoints: the models, every example held, the counters --------------------------
    HELD = ()
    COUNTERS = ()
    SO_FAR = ("passes",)             # the counters its "resumed" line names

    def examples_held(self):
        with self.lock:
            return int(self.held.sum())

    def counters(self):
        return {name: self.counts[name] for name in self.COUNTERS}

    def save_checkpoint(self, path):
        """Write the checkpoint (from the training thread, or once it has stopped)."""
        with self.lock:                           # the counters of the rows it copies
            held = {name: getattr(self, name).copy() for name in self.HELD}
            counts = self.counters()
        checkpoint.save(path, self.models(), counts, held)

    def resume(self, path):
        """Load a checkpoint written by save_checkpoint, or raise ValueError (nothing loaded)."""
        shapes = {name: getattr(self, name).shape for name in self.HELD}
        weights, counts, held = checkpoint.load(path, self.models(), self.counters(), shapes)
        with self.lock:
            for name, a in held.items():
                getattr(self, name)[:] = a
            if self.HELD:                                   # their age restarts with the process
                self.received_at[self.held] = time.time()
        for name in self.COUNTERS:
            self.counts[name] = counts[name]
        self.load_models(weights, counts)
        log.info("resumed from %s: %d examples held, %s so far", path, self.examples_held(),
                 " and ".join(f"{self.counts[k]} {k}" for k in self.SO_FAR))

    def close(self):
        pass

    # --- what it reports ----------------------------------------------------------------------
    def status(self):
        """GET /status: the shared fields, the server's own, "synthetic_gradient_quality" if it
        measures one. "last_train_mse": the loss over its last pass (null before one);
        "staleness_s": the mean age (s) of that pass's rows; "examples_held": distinct indices."""
        fields = {
            "role": self.role,
            "uptime_s": round(time.time() - self.started, 3),
            "started": self.started,     # this process's start: a restart is a new value
            "examples_held": self.examples_held(),
            "training_passes": self.counts["passes"],
            "last_train_mse": self.last_train_mse,
            "staleness_s": self.staleness,
            "diverged": self.diverged,
            "peak_rss_mb": options.peak_rss_mb(),
            "requests_served": self.counts["requests_served"],
            "requests_refused": self.counts["requests_refused"],
            **self.status_fields(),
        }
        if self.quality is not None:
            with self.lock:
                fields["synthetic_gradient_quality"] = self.quality.fields()
        return fields

    def metrics(self):
        """The status as one flat line for the metrics file."""
        line = self.status()
        for field, prefix in {**self.FLATTEN, "synthetic_gradient_quality": ""}.items():
            line.update({prefix + k: v for k, v in (line.pop(field, None) or {}).items()})
        return {k: v for k, v in line.items() if k not in self.NOT_IN_METRICS}


class StageServer(TrainingServer):
    """A server holding a stage's layers (train_output.py's, a counted chain's): its progress
    folder and snapshots, the model of the boundary below if it learns one here (boundary), and
    the /status fields they share. A subclass sets layers, optimizer and boundary first."""

    live_page = None                 # its address, when main started one

    def __init__(self, config):
        progress = config["progress_dir"] or snapshots.PROGRESS / snapshots.new_run_name()
        self.run_name = Path(progress).name          # train_input.py asks for it (/status)
        self.snapshotter = snapshots.Snapshotter(progress, "layers23",
                                                 config["snapshot_interval"])
        super().__init__(config)                     # resumes if asked

    def models(self):
        models = {"": (checkpoint.layer_weights(self.layers), self.optimizer)}
        if self.boundary is not None:
            models["boundary_"] = (self.boundary.weights(), self.boundary.optimizer)
        return models

    def on_stopped(self):
        """The final snapshot, only if it trained at all."""
        if self.counts["examples_trained"]:
            self.snapshotter.save_final(self.layers)

    def status_fields(self):
        """"run" names its progress folder (train_input.py's too), its live page."""
        return {"run": self.run_name, "examples_received": self.counts["examples_received"],
                "examples_trained": self.counts["examples_trained"],
                "snapshots_saved": self.snapshotter.saved, "live_page": self.live_page}


def run_server(args, create_app, script, beside=None, stop=None):
    """A server script's main after parse_args: take the port first (a taken one stops it before
    it writes anything), then serve and train until Ctrl-C, SIGTERM or the Event `stop`.
    beside(args, url, state) starts what runs beside it (the live page) and returns its stop.
    """
    name = script.removesuffix(".py")
    options.setup_logging(name)
    log.info("settings: %s", options.printable(args))
    server, hand_over = http.listen(args.host, args.port, script, args.max_body_bytes)
    if stop is None:                              # a process of its own: if a launcher's, not
        children.stop_with_parent()               # orphaned when it is killed
    config = {k: v for k, v in vars(args).items() if k not in options.SERVER_ONLY}
    try:
        app = create_app(config)
    except ValueError as e:                       # a checkpoint that cannot be resumed from
        server.close()
        raise SystemExit(f"{script}: {e}") from None
    hand_over(app)
    state = app.extensions[STATE]
    if stop is None:                              # any thread's error ends it, exit 1
        threaded.fail_on_thread_errors(state.failed)
    state.start_training()
    url = http.url_of(server)
    stop_beside = beside(args, url, state) if beside is not None else None
    metrics = snapshots.MetricsLog(args.metrics, state.role)
    if args.metrics:
        snapshots.every(args.metrics_interval, lambda: metrics.write(**state.metrics()),
                        state.stop, f"metrics-{state.role}")
    if args.report_every > 0:
        snapshots.every(args.report_every, lambda: log.info("%s", status_line(state.status())),
                        state.stop, "status-lines")

    def on_stop():
        state.stop_training()
        metrics.write(**state.metrics())          # the last line is the end, not a second before
        log.info("final status: %s", status_line(state.status()))
        if stop_beside is not None:
            stop_beside()

    ended = threading.Event()                     # by `stop`, or by a thread that failed
    for event in (stop, state.failed):
        if event is not None:
            threaded.set_when_set(event, ended)
    http.serve(server, state.title, on_stop=on_stop, stop=ended)
    return 1 if state.failed.is_set() else 0


def status_line(status):
    """A server's GET /status as one short line (with the quality of its synthetic gradients)."""
    parts = [f"{status.get('examples_held', 0):,} examples held",
             f"{status.get('training_passes', 0):,} training passes",
             f"training MSE {generate.fmt(status.get('last_train_mse'), '.4f')}"]
    quality = status.get("synthetic_gradient_quality")
    if quality is not None:
        parts.append("cosine(synthetic, true) "
                     f"{generate.fmt(quality.get('cosine_similarity'), '.2f')}")
    if status.get("diverged"):
        parts.append("DIVERGED: training stopped")
    return ", ".join(parts)
