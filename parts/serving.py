"""What both servers share: the training thread's life and the /status basics (TrainingServer),
the app (JSON errors, the shared token), waitress, the options every server takes, logging, and
the training thread's priority.

Imported by oracle.py and train_output.py (and, for the token option and logging, by
train_input.py); it runs nothing. The wire protocol itself is in synthgrad.py.
"""

import collections
import hmac
import json
import logging
import math
import os
import resource
import signal
import sys
import threading
import time

from flask import Flask, Response, abort, request
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask
from werkzeug.exceptions import HTTPException

import generate
from parts import snapshots, threaded
from synthgrad import (BINARY_TYPE, DEFAULT_HOST, MAX_BODY_BYTES, MAX_EXAMPLES_PER_REQUEST,
                       STATUS, ProtocolError, encode_weights, parse_binary, parse_json)

log = logging.getLogger("synthgrad")


# --- The server's state and its app -----------------------------------------------------------

STATE = "synthgrad_state"     # app.extensions[STATE]: the server's TrainingServer


def make_app(name, state, config_key):
    """A Flask app for a server's state: JSON errors, the body limit and the shared token from
    state.config, and GET /status. The state is app.config[config_key] (and app.extensions[STATE]
    for run_server); the caller adds the server's own routes."""
    app = Flask(name)
    app.config[config_key] = app.extensions[STATE] = state
    install_json_errors(app, state.counts, state.config["max_body_bytes"])
    require_token(app, state.config["token"])
    app.get(STATUS)(state.status)
    return app


class TrainingServer:
    """What both servers share: their counters, the training thread's life (start, a loop of
    passes at a lower priority, stop with a last checkpoint), and the /status basics.

    A server subclasses it and provides:
      role, title           its /status role and metrics stage; the name in "<title> listening"
      train_pass()          one pass over what it holds; False if there is nothing to train on
      examples_held()       distinct example indices held
      status_fields()       the server's own /status fields
      save_checkpoint(path), resume(path)   write a checkpoint; load one (ValueError: nothing loaded)
    and may override on_stopped() (after the thread ended: final snapshots) and close().
    Subclasses set their state up before calling TrainingServer.__init__ last: a resumed
    checkpoint is loaded into it.
    """

    role = title = "server"
    idle_wait = 0.1                  # seconds between looks while there is nothing to train on
    FLATTEN = {}                     # /status field (a dict) -> prefix of its keys in metrics
    NOT_IN_METRICS = ("role", "uptime_s", "requests_served", "requests_refused")

    def __init__(self, config):
        self.config = config
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.last_train_mse = None
        self.staleness = None        # mean age (s) of the rows the last pass trained on
        self.diverged = False
        self.started = time.time()
        self.stop = threading.Event()
        self._thread = None
        self.checkpointer = snapshots.Checkpointer(config["checkpoint"],
                                                   config["checkpoint_interval"],
                                                   self.save_checkpoint)
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
        lower_thread_priority(self.config["nice"])
        while not self.stop.is_set():
            if not self.train_pass():
                self.stop.wait(self.idle_wait)
            self.checkpointer.maybe()

    def stop_training(self, timeout=10.0):
        """Stop the thread; once it has ended, on_stopped() and a last checkpoint; then close()."""
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if not self._thread.is_alive():       # never write while a pass is still running
                self.on_stopped()
                self.checkpointer.now()
        self.close()

    def on_stopped(self):
        pass

    def close(self):
        pass

    # --- what it reports ----------------------------------------------------------------------
    def status(self):
        """The GET /status answer: the fields both servers share, then the server's own.

        "role" ("oracle" or "output_trainer"), "uptime_s" (float), "examples_held" (distinct
        example indices held), "training_passes", "last_train_mse" (float or null: the oracle's
        loss mean((g_hat - g)^2) over its last pass, or the output trainer's mean (y_hat - y)^2
        over its last pass), "staleness_s" (float or null: the mean age, in seconds, of the rows
        its last pass used, i.e. how old the activations or gradients it learns from are),
        "diverged", "peak_rss_mb", "requests_served" and "requests_refused" (ints).
        """
        return {
            "role": self.role,
            "uptime_s": round(time.time() - self.started, 3),
            "examples_held": self.examples_held(),
            "training_passes": self.counts["passes"],
            "last_train_mse": self.last_train_mse,
            "staleness_s": self.staleness,
            "diverged": self.diverged,
            "peak_rss_mb": peak_rss_mb(),
            "requests_served": self.counts["requests_served"],
            "requests_refused": self.counts["requests_refused"],
            **self.status_fields(),
        }

    def metrics(self):
        """The status as one flat line for the metrics file."""
        line = self.status()
        for field, prefix in self.FLATTEN.items():
            line.update({prefix + k: v for k, v in (line.pop(field) or {}).items()})
        for key in self.NOT_IN_METRICS:
            line.pop(key, None)
        return line


# --- Serving: waitress, JSON errors, the token ------------------------------------------------

def run_server(args, create_app, script, beside=None, stop=None):
    """A server script's main after parse_args: take the port, make the app, start its training
    thread, its metrics lines and a status line every --report-every seconds, serve until
    Ctrl-C or SIGTERM, then stop training (checkpointing) and log the final status. script
    ("oracle.py") names the process in its logs. beside(args, url, state), if given, starts
    what runs beside the server once it trains (train_output.py's live page) and returns a
    function that stops it, or None. stop: a threading.Event that stops it as SIGTERM does.

    The port is taken first: if it is not free the script stops with one line naming --port,
    before it has built anything or written a file.
    """
    name = script.removesuffix(".py")
    setup_logging(name)
    log.info("settings: %s", printable(args))
    server, hand_over = listen(args.host, args.port, script, args.max_body_bytes)
    config = {k: v for k, v in vars(args).items() if k not in SERVER_ONLY}
    try:
        app = create_app(config)
    except ValueError as e:                       # a checkpoint that cannot be resumed from
        server.close()
        raise SystemExit(f"{script}: {e}") from None
    hand_over(app)
    state = app.extensions[STATE]
    state.start_training()
    url = f"http://{server.effective_host}:{server.effective_port}"
    stop_beside = beside(args, url, state) if beside is not None else None
    metrics = snapshots.MetricsLog(args.metrics, state.role)
    metrics.every(args.metrics_interval, state.metrics, state.stop)
    if args.report_every > 0:
        snapshots.every(args.report_every, lambda: log.info("%s", status_line(state.status())),
                        state.stop, "status-lines")

    def on_stop():
        state.stop_training()
        metrics.write(**state.metrics())          # the last line is the end, not a second before
        log.info("final status: %s", status_line(state.status()))
        if stop_beside is not None:
            stop_beside()

    serve(server, app.extensions[STATE].title, on_stop=on_stop, stop=stop)
    return 0


def status_line(status):
    """A server's GET /status as one short line: what it holds and has done, and for the oracle
    how good its synthetic gradients are."""
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


def listen(host, port, script, max_body_bytes, threads=4):
    """Take host:port with a waitress server whose app is handed over later; returns the server
    and hand_over(app). SystemExit with one line naming --port if the port cannot be taken.

    waitress is a production WSGI server: a fixed pool of `threads` worker threads and HTTP/1.1
    keep-alive, so a client's requests reuse one connection (Flask's development server closes
    the connection after every request, which costs ~1 ms a request here). Bodies over
    max_body_bytes are refused by waitress itself, answered as JSON like every other refusal.
    """
    apps = []

    def wsgi(environ, start_response):
        return apps[0](environ, start_response)

    try:
        server = create_server(wsgi, host=host, port=port, threads=threads,
                               max_request_body_size=max_body_bytes,
                               ident=script.removesuffix(".py"))
    except OSError as e:
        raise SystemExit(f"{script}: cannot listen on {host}:{port}: {e.strerror or e}. Is "
                         f"another server using it? Pick another with --port (0: any free "
                         f"port)") from None
    server.channel_class = JsonErrorChannel
    return server, apps.append


class JsonErrorTask(ErrorTask):
    """waitress's own refusals (a body over the limit: 413; a malformed request: 400) as
    {"error": ...} JSON, the form every other refusal takes, instead of waitress's plain text."""

    def execute(self):
        e = self.request.error
        body = json.dumps({"error": f"{e.reason}: {e.body}"}).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def serve(server, name, on_stop=None, stop=None):
    """Run a server listen() made until Ctrl-C or SIGTERM (or, in a thread, until the
    threading.Event `stop` is set: parts/threaded.py), then call on_stop.

    Logs "<name> listening on http://HOST:PORT" first (port 0 picks a free one; the line is how
    a launcher or a test learns it).
    """
    log.info("%s listening on http://%s:%s", name, server.effective_host, server.effective_port)

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    release = threaded.end_when_set(server, stop) if stop is not None else lambda: None
    if stop is None:    # both, explicitly: started in the background, SIGINT comes ignored
        signal.signal(signal.SIGTERM, _terminate)
        signal.signal(signal.SIGINT, _terminate)
    try:
        server.run()                      # returns on Ctrl-C or SIGTERM (waitress catches it)
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping")
        server.close()
        release()
        if on_stop is not None:
            on_stop()


def install_json_errors(app, counts, max_body_bytes=MAX_BODY_BYTES):
    """Make a Flask app answer every error as {"error": ...} JSON and cap the body size.

    counts (a collections.Counter owned by the server) gets requests_served and
    requests_refused (any 4xx or 5xx answer) incremented.
    """
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    @app.after_request
    def _count(response):
        counts["requests_refused" if response.status_code >= 400 else "requests_served"] += 1
        return response

    @app.errorhandler(HTTPException)
    def _http_error(e):
        response = e.get_response()                     # keeps headers such as Allow on 405
        response.set_data(json.dumps({"error": f"{e.name}: {e.description}"}))
        response.content_type = "application/json"
        return response

    @app.errorhandler(ProtocolError)
    def _protocol_error(e):
        return {"error": str(e)}, 400


def read_body():
    """The current Flask request's body: JSON, or the binary form if its Content-Type says so.

    ProtocolError (a 400) says why a body cannot be read.
    """
    data = request.get_data(cache=False)
    if request.mimetype == BINARY_TYPE:
        return parse_binary(data)
    return parse_json(data)


def weights_answer(weights, conditioned, version):
    """GET /weights's answer (synthgrad.encode_weights): the binary form if the request's Accept
    header names it (synthgrad's clients with --wire binary: 256-wide weights cost ~0.1 ms to
    write and read, not ~47 in JSON), else JSON."""
    if any(kind == BINARY_TYPE and q > 0 for kind, q in request.accept_mimetypes):
        return Response(encode_weights(weights, conditioned, version, binary=True),
                        content_type=BINARY_TYPE)
    return encode_weights(weights, conditioned, version)


def require_token(app, token):
    """Answer 401 to any request without "Authorization: Bearer <token>" (no-op if no token).

    The comparison takes the same time however much of the header matches (hmac.compare_digest).
    """
    if not token:
        return
    expected = f"Bearer {token}".encode()

    @app.before_request
    def _check_token():
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            abort(401, "this server requires the shared token: send "
                       "\"Authorization: Bearer <token>\"")


# --- The process: thread priority, memory -----------------------------------------------------

# On 2 cores the three processes' training loops would otherwise keep every core busy, and each
# synthetic-gradient request would wait for the scheduler: measured in the full system with
# lab/bench.py's settings, the oracle's p50 went from 1.0 to 0.7 ms and the input trainer from
# 6,200 to 9,300 examples/s with the training threads at nice 10.
DEFAULT_TRAINING_NICE = 10


def lower_thread_priority(nice):
    """Make the calling thread `nice` steps nicer than it is (at most 19); True if done.

    Linux schedules threads on their own, so this leaves the process's other threads (the ones
    that answer requests) where they are. Elsewhere, or if the system refuses, it does nothing.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        return True
    except OSError as e:
        log.warning("could not lower the training thread's priority (%s); training at the "
                    "same priority as requests", e)
        return False


def peak_rss_mb():
    """This process's peak resident memory so far, in MB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KB on Linux


# --- The options every server takes, and the start-up line ------------------------------------

def add_server_arguments(p, default_port, what, checkpointed, held):
    """The options both servers share: which example indices they hold (`held`: what that
    costs), where to listen, the token, limits, the training thread's priority, where to write
    metrics lines (`what` they hold), and checkpoints (of `checkpointed`)."""
    p.add_argument("--max-examples", type=int, default=DEFAULT_MAX_EXAMPLES,
                   help=f"example indices accepted are 0..N-1 (default {DEFAULT_MAX_EXAMPLES:,}, "
                        f"the size of the default data set); {held}")
    snapshots.checkpoint_arguments(p, checkpointed)
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default 127.0.0.1: only this machine can connect)")
    p.add_argument("--port", type=int, default=default_port,
                   help=f"port to listen on (default {default_port}, the original's; 0 picks a "
                        "free one)")
    token_argument(p)
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES,
                   help=f"refuse request bodies larger than this with a 413 (default "
                        f"{MAX_BODY_BYTES:,}: twice the largest legitimate request, "
                        f"{MAX_EXAMPLES_PER_REQUEST:,} examples in JSON)")
    p.add_argument("--nice", type=int, default=DEFAULT_TRAINING_NICE,
                   help=f"run the training thread this many steps nicer (lower CPU priority) "
                        f"than the threads that answer requests, so that a request gets a core at "
                        f"once and training takes the rest (default {DEFAULT_TRAINING_NICE}; 0: "
                        f"the same priority; Linux only, ignored elsewhere)")
    p.add_argument("--metrics", default=None,
                   help=f"append a JSON line of figures ({what}) to this file every "
                        "--metrics-interval seconds (default: none)")
    p.add_argument("--metrics-interval", type=float, default=2.0,
                   help="seconds between metrics lines (default 2: smooth curves, tiny files)")
    p.add_argument("--report-every", type=float, default=10.0,
                   help=f"seconds between status lines on the terminal ({what}; default "
                        "%(default)g; 0: none)")


def check_server_arguments(p, args):
    """Refuse impossible values of the shared options and of --learning-rate."""
    snapshots.check_checkpoint_arguments(p, args)
    if args.max_examples < 1:
        p.error("--max-examples must be at least 1")
    if not 0 <= args.port <= 65535:
        p.error("--port must be between 0 and 65535")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        p.error("--learning-rate must be positive and finite")
    if not args.metrics_interval > 0:
        p.error("--metrics-interval must be positive")
    if not args.report_every >= 0:
        p.error("--report-every must be 0 (no status lines) or more")
    if args.max_body_bytes < 1024:
        p.error("--max-body-bytes must be at least 1024")
    if not 0 <= args.nice <= 19:
        p.error("--nice must be between 0 and 19")


DEFAULT_MAX_EXAMPLES = 200_000      # indices 0..N-1: the default data set's size

# options of the process, not of a server's state
SERVER_ONLY = ("host", "port", "metrics", "metrics_interval", "report_every", "original",
               "live", "live_port")


def token_argument(p):
    """--token, defaulting to $SYNTHGRAD_TOKEN: every script takes the same shared secret."""
    p.add_argument("--token", default=os.environ.get("SYNTHGRAD_TOKEN") or None,
                   help="shared secret every request must carry (Authorization: Bearer ...); "
                        "default: the SYNTHGRAD_TOKEN environment variable, else none (fine on "
                        "127.0.0.1; set one before binding to another address)")


def parse_with_original(p, argv, original, what):
    """p.parse_args(argv) with an --original option added: it makes the original project's
    settings (`original`, {dest: value}; `what` says them in words for --help) the defaults, so
    the original is one flag away from the measured defaults; options given as well still win."""
    p.add_argument("--original", action="store_true",
                   help=f"start from the original project's settings ({what}) instead of the "
                        "defaults above, which were chosen by measurement (see the README); "
                        "options given as well still win")
    known, _ = p.parse_known_args(argv)
    if known.original:
        p.set_defaults(**original)
    return p.parse_args(argv)


def printable(args):
    """The parsed options as "name value, ..." for the start-up line, paths as typed, the token
    masked."""
    shown = vars(args).copy()
    if shown.get("token"):
        shown["token"] = "***"
    return generate.settings_line(shown)


class _Formatter(logging.Formatter):
    """ "HH:MM:SS name: message", with the level after the name unless it is INFO."""

    def __init__(self, name):
        super().__init__(datefmt="%H:%M:%S")
        self.name = name

    def format(self, record):
        level = "" if record.levelno == logging.INFO else f" {record.levelname}"
        return f"{self.formatTime(record, self.datefmt)} {self.name}{level}: {record.getMessage()}"


def setup_logging(name):
    """Every line a process writes in one form, "HH:MM:SS name: message" (warnings and errors
    say so after the name), on stdout; one line per request would drown them, so waitress
    only warns."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_Formatter(name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("waitress").setLevel(logging.WARNING)
