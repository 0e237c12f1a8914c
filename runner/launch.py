"""The launcher library: start the three processes, watch them, stop them; plain backprop
in-process for comparison. demo.py, lab/bench.py, lab/experiments.py and the end-to-end tests use it.

Use it from Python (importing it runs nothing):

    from runner import launch
    env = launch.child_env()
    config = launch.DecoupledConfig(run_dir=launch.new_run_dir(), duration=30)
    launch.generate_data(config.run_dir / "data", config.count, config.seed, env)
    final = launch.run_decoupled(config, env)        # the servers' last GET /status
    layers, measurements = launch.train_backprop(
        launch.BackpropConfig(config.run_dir / "data", seconds=30,
                              metrics=config.run_dir / "metrics" / "backprop.jsonl"))

A run folder, as run_decoupled and train_backprop fill it:

    data/x.npy, y.npy                  generate.py's examples (target.png too, if drawn)
    oracle.log, train_output.log, train_input.log    each process's output
    metrics/<process>.jsonl            JSON lines, see snapshots.py (backprop.jsonl: train_backprop)
    progress/layer1_*.npz, layers23_*.npz            weight snapshots on shared ticks
    backprop/final.npz                 train_backprop's final network, if asked for

Configuration is data: a DecoupledConfig or BackpropConfig, changed with dataclasses.replace.
Their defaults are the demo's settings (DecoupledConfig; demo.py --help says why each is what
it is) and the tutorial's (BackpropConfig: sgd.py's per-example SGD at learning rate 0.002).
"""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import generate
import sgd
import synthgrad
from generate import fmt
from parts import children, optimizers, snapshots

TOP = Path(__file__).resolve().parents[1]        # the repository's top level

# The oracle's settings in the demo (why: demo.py --help, --oracle-args): Adam at 0.01 on
# batches of 256, and the paper's zero-initialised last layer.


# --- Configuration. ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """What a launcher does when a process of its run dies, as an Erlang/OTP supervisor or
    systemd's Restart=on-failure: say so in one line, then start it again after `backoff`
    seconds (doubled for each restart still in the window) from its own checkpoint, at most
    `max_restarts` times in `window` seconds; one more death in the window, or any death with
    restart False, ends the run (cut short, evaluated from what is on disk)."""

    restart: bool = True
    max_restarts: int = 3
    window: float = 120.0
    backoff: float = 1.0


@dataclasses.dataclass(frozen=True)
class DecoupledConfig:
    """One run of oracle.py, train_output.py and train_input.py; the defaults are the demo's,
    which are the scripts' own (chosen by measurement, see the README) on 20,000 examples.

    The data is read from data_dir (None: run_dir/data, where generate_data writes it);
    everything else the run writes goes into run_dir. `optimizer` is the whole decoupled network's (layer 1 at
    input_learning_rate, layers 2-3 at output_learning_rate; the oracle's model has its own, in
    `oracle`); `update` is train_input.py's --update: synthetic, or a control, frozen or random.
    `oracle` and `input` are further options of oracle.py and train_input.py by name (see
    option_argv), e.g. {"hidden": 0, "zero_init": True} or {"synthetic_gradients": "local"};
    `oracle_args` and `input_args` are more options as they would be typed on those scripts'
    command lines, appended last.
    """

    run_dir: Path
    count: int = 20_000                 # examples in the data; the servers hold this many
    duration: float = 75.0              # seconds the input trainer trains
    seed: int = 0                       # every process's seed
    snapshot_interval: int = 3          # seconds between weight snapshots
    status_every: float = 5.0           # seconds between status lines while training
    wire: str = "binary"                # how bulk transfers travel: "json" or "binary"
    optimizer: str = "adam"             # both trainers' --optimizer: "adam" or "sgd"
    update: str = "synthetic"           # train_input.py's --update: or "frozen", "random"
    input_learning_rate: float = 0.005
    output_learning_rate: float = 0.005
    output_batch_size: int = 10
    data_dir: Path | None = None        # None: run_dir/data
    oracle: dict = dataclasses.field(default_factory=dict)   # {}: oracle.py's defaults
    oracle_args: tuple = ()
    input: dict = dataclasses.field(default_factory=lambda: {"report_every": 1})
    input_args: tuple = ()
    restart: RestartPolicy = RestartPolicy()   # what a process that dies leads to
    checkpoint_interval: float = 5.0    # seconds between each process's checkpoints


@dataclasses.dataclass(frozen=True)
class BackpropConfig:
    """Plain backprop of the whole network (train_backprop); the defaults are sgd.py's."""

    data_dir: Path                      # x.npy and y.npy, as generate.py writes them
    seconds: float                      # of training; measuring held-out MSE is not counted
    eval_every: int = 10_000            # examples between held-out measurements
    metrics: Path | None = None         # a JSON line per measurement goes here (None: nowhere)
    weights_out: Path | None = None     # the final network goes here (.npz; None: nowhere)
    learning_rate: float = 0.002        # eta at the start (sgd.py's and the original's)
    optimizer: str = "sgd"              # how every layer steps: "sgd" (sgd.py's) or "adam"
    batch_size: int = 1                 # examples per update (1: per-example SGD)
    decay: float = 0.997                # eta is multiplied by this after each epoch
    seed: int = 0                       # the initial weights and the order of the examples
    heldout: int = 20_000               # fresh points held-out MSE is measured on
    epochs: int | None = None           # stop after this many passes too (None: no limit)
    sizes: tuple = sgd.SIZES            # the network's widths (2-24-12-1)


def backprop_like(config):
    """BackpropConfig settings of backprop "with the same settings" as a decoupled run: layers
    2-3's minibatch and learning rate, the same optimizer, no decay, the same seed."""
    return dict(batch_size=config.output_batch_size, learning_rate=config.output_learning_rate,
                optimizer=config.optimizer, decay=1.0, seed=config.seed)


def option_argv(options):
    """{name: value} as command-line options: {"batch_size": 256, "zero_init": False} ->
    ["--batch-size", "256", "--no-zero-init"]. True is a bare flag, False its --no- form (the
    on/off options, such as oracle.py's --conditioned, take both); None leaves it out."""
    argv = []
    for name, value in options.items():
        flag = name.replace("_", "-")
        if value is True or value is False:
            argv.append(f"--{'' if value else 'no-'}{flag}")
        elif value is not None:
            argv += [f"--{flag}", str(value)]
    return argv


# --- Child processes. --------------------------------------------------------------------------

def script_argv(script, *options):
    """The command line that runs one of this project's scripts with this Python."""
    return [sys.executable, str(TOP / script), *map(str, options)]


def module_argv(module, *options):
    """The command line that runs one of the project's modules in a folder ("lab.race") with
    this Python; run it with cwd=TOP, where its package is found."""
    return [sys.executable, "-m", module, *map(str, options)]


def child_env():
    """The environment for the processes a launcher starts: TensorFlow quiet, output unbuffered."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


Process = children.Process      # a child process that announces its URL (parts/children.py)


# --- Supervising the processes of a run: a death is named, the process restarted. --------------

def exit_description(code):
    """A Popen returncode in words: "exit code 1", "killed by SIGKILL"."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def log_tail(path, lines=2, width=120):
    """The last `lines` non-empty lines of a log, each cut to `width` characters (its start:
    the time and the process's name), joined with " / "."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e.strerror})"
    return text_tail(text, lines, width)


def text_tail(text, lines=2, width=120):
    """log_tail of a log's text."""
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " / ".join(line if len(line) <= width else line[:width - 3] + "..."
                      for line in tail) or "(empty)"


def resume_argv(argv, port, checkpoint):
    """argv for starting a process again: on `port` (its --port value replaced; the first
    start asked for 0, any free one), with --resume if its checkpoint file exists."""
    argv = list(argv)
    if port is not None and "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    if checkpoint is not None and Path(checkpoint).exists() and "--resume" not in argv:
        argv.append("--resume")
    return argv


class Child:
    """One process of a run under a Supervisor: its name, command line, log and checkpoint.
    A server started on port 0 is restarted on the port it got, so its peers' senders find it
    again; next_argv(child), if given, makes the restart's command line instead (train_input.py:
    the time left)."""

    def __init__(self, name, argv, log_path, env, checkpoint=None, finishes=False,
                 next_argv=None):
        self.name, self.argv, self.log_path, self.env = name, list(argv), log_path, env
        self.checkpoint, self.finishes, self.next_argv = checkpoint, finishes, next_argv
        self.port = None
        self.restarts = []                    # time.monotonic() of each restart in the window
        self.restarted = 0                    # restarts in all
        self.restart_at = None                # when the dead process is due to start again
        self.stopping = False                 # stopped on purpose: its end is no death
        self.proc = Process(name, self.argv, log_path, env)

    @property
    def popen(self):
        return self.proc.popen

    def wait_url(self, timeout):
        """The URL it announced (SystemExit if it did not); remembers the port."""
        url = self.proc.wait_url(timeout)
        self.port = int(url.rsplit(":", 1)[1])
        return url

    def finished(self):
        """True once a process that ends by itself (train_input.py at --duration) ended well."""
        return self.finishes and self.popen.poll() == 0

    def restart(self):
        argv = (self.next_argv(self) if self.next_argv is not None else
                resume_argv(self.argv, self.port, self.checkpoint))
        self.proc = Process(self.name, argv, self.log_path, self.env, append=True)
        self.restart_at = None
        self.restarted += 1
        return argv

    def stop(self, timeout=20.0):
        self.stopping = True
        return self.proc.stop(timeout)


class Supervisor:
    """The processes of a run, watched: check() is called from the launcher's loop; a death is
    said in one line (which process, its exit code or signal, its log's last lines) and the
    process restarted, or the run ended, as `policy` says. `who` prefixes every line;
    on_start(name, pid) is told of every start and restart."""

    def __init__(self, policy=None, who="launch", on_start=None):
        self.policy = policy or RestartPolicy()
        self.who, self.on_start = who, on_start or (lambda name, pid: None)
        self.children = []

    def start(self, name, argv, log_path, env, **options):
        child = Child(name, argv, log_path, env, **options)
        self.children.append(child)
        self.on_start(name, child.popen.pid)
        return child

    def say(self, line):
        print(f"{self.who}: {line}", flush=True)

    def check(self):
        """One look at every process: restart what is due; say each new death and decide.
        Returns why the run must end (a death not to be mended), or None."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    argv = child.restart()
                    self.on_start(child.name, child.popen.pid)
                    how = ("from its checkpoint" if "--resume" in argv else
                           "from scratch (no checkpoint yet)")
                    where = f", on port {child.port}" if child.port else ""
                    self.say(f"{child.name} restarted {how}{where}")
                continue
            code = child.popen.poll()
            if code is None or child.stopping or child.finished():
                continue
            reason = self.died(child, code, now)
            if reason is not None:
                return reason
        return None

    def died(self, child, code, now):
        """Say the death of `child` in one line and schedule its restart; the reason to end
        the run instead, if the policy says so."""
        p = self.policy
        lived = now - child.proc.started
        line = (f"{child.name} died ({exit_description(code)}) after {lived:.0f} s; its log "
                f"{child.log_path.name} ends: {log_tail(child.log_path)}")
        child.restarts = [t for t in child.restarts if now - t < p.window]
        if not p.restart:
            child.stopping = True
            self.say(f"{line}. Not restarting it (--no-restart): ending the run")
            return f"{child.name} died ({exit_description(code)})"
        if len(child.restarts) >= p.max_restarts:
            child.stopping = True
            self.say(f"{line}. It was restarted {len(child.restarts)} times in "
                     f"{p.window:.0f} s: giving up, ending the run")
            return (f"{child.name} died {len(child.restarts) + 1} times in {p.window:.0f} s "
                    f"({exit_description(code)})")
        delay = p.backoff * 2 ** len(child.restarts)
        child.restarts.append(now)
        child.restart_at = now + delay
        self.say(f"{line}. Restarting it in {delay:g} s (restart {len(child.restarts)} of at "
                 f"most {p.max_restarts} in {p.window:.0f} s)")
        return None

    def restarts(self):
        """{name: restarts so far} of every process."""
        return {child.name: child.restarted for child in self.children}

    def stop_all(self):
        """Stop every process, the last started first (SIGTERM: each saves what it holds)."""
        for child in reversed(self.children):
            child.stop()


def start_live_page(run_dir, args, who):
    """The live page for run_dir if args.live (children.start_live_page on args.live_port), its
    address printed; returns a function that stops it. If it cannot start, `who` says so and
    the run goes on without it."""
    if not args.live:
        return lambda: None
    try:
        url, stop = children.start_live_page(run_dir, port=args.live_port)
    except SystemExit as e:
        print(f"{who}: {e}; going on without it (--live-port 0 picks a free port)", flush=True)
        return lambda: None
    print(f"{who}: watch it learn, live: {url}", flush=True)
    return stop


def new_run_dir(given=None, prefix=""):
    """`given`, or a new runs/<prefix><date-time> next to this file; created, made absolute."""
    run_dir = (given or TOP / "runs" / time.strftime(f"{prefix}%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def generate_data(out_dir, count, seed, env, plot=True):
    """generate.py: `count` examples with `seed` into out_dir (its target.png too if plot)."""
    subprocess.run(script_argv("generate.py", "--count", count, "--seed", seed,
                               "--out-dir", out_dir, *([] if plot else ["--no-plot"])),
                   check=True, cwd=TOP, env=env, stdout=subprocess.DEVNULL)


# --- Watching a run. ---------------------------------------------------------------------------

def status_line(elapsed, oracle, output, inp):
    """One line: what each process holds and has done (servers' GET /status, the input
    trainer's latest metrics line)."""
    q = oracle.get("synthetic_gradient_quality", {})
    return (f"[{elapsed:4.0f} s] input: {inp.get('examples', 0):>7} examples "
            f"({fmt(inp.get('examples_per_s'), '.0f')}/s) | output: "
            f"{output.get('examples_held', 0):>6} held, {output.get('training_passes', 0):>3} "
            f"passes, train MSE {fmt(output.get('last_train_mse'))} | oracle: "
            f"{oracle.get('training_passes', 0):>3} passes, "
            f"loss {fmt(oracle.get('last_train_mse'))}, "
            f"cosine(synthetic, true) {fmt(q.get('cosine_similarity'), '.2f')}")


# Seconds past --duration after which a launcher stops the input trainer itself: it stops on
# its own clock whatever its peers do, then flushes for at most 3 s and saves; this is the
# backstop.
GRACE_S = 15.0


def watch(supervisor, inp, oracle_client, output_client, metrics_path, duration, every):
    """Until the input trainer (inp, a Child of supervisor) has ended: the supervisor's look at
    every process several times a second (a death is said, and mended or not), and a status
    line every `every` seconds. If the input trainer overruns `duration` by GRACE_S it is
    stopped here. Returns why the run was cut short (a death the supervisor would not mend),
    or None."""
    start = time.monotonic()
    next_status = start + every
    while not inp.finished():
        cut_short = supervisor.check()
        if cut_short is not None:                   # the input trainer saves what it has
            inp.stop(30)
            return cut_short
        if time.monotonic() > start + duration + GRACE_S:
            print(f"launch: the input trainer is still running {GRACE_S:.0f} s after its "
                  f"--duration; stopping it", flush=True)
            inp.stop(30)
            return None
        if time.monotonic() >= next_status:
            next_status += every
            latest = (snapshots.read_metrics(metrics_path) or [{}])[-1]
            try:
                print(status_line(time.monotonic() - start, oracle_client.status(),
                                  output_client.status(), latest), flush=True)
            except synthgrad.PeerError as e:
                print(f"launch: status unavailable: {e}", flush=True)
        time.sleep(0.05)
    return None


def last_status(client):
    """A server's GET /status, or None if it is down."""
    try:
        return client.status()
    except synthgrad.PeerError:
        return None


# --- The decoupled run. ------------------------------------------------------------------------

def checkpoint_argv(config, name):
    """--checkpoint into run_dir/checkpoints/<name>.npz, every config.checkpoint_interval s:
    what a restarted process resumes from."""
    return ["--checkpoint", config.run_dir / "checkpoints" / f"{name}.npz",
            "--checkpoint-interval", config.checkpoint_interval]


def oracle_argv(config):
    """oracle.py's command line for config, on a free port (0)."""
    return script_argv("oracle.py", "--port", 0, "--max-examples", config.count,
                       "--seed", config.seed, *checkpoint_argv(config, "oracle"),
                       "--metrics", config.run_dir / "metrics" / "oracle.jsonl",
                       *option_argv(config.oracle), *config.oracle_args)


def common_argv(config):
    """The options both trainers take alike: snapshot ticks, seed, wire form, optimizer."""
    return ["--snapshot-interval", str(config.snapshot_interval), "--seed", str(config.seed),
            "--wire", config.wire, "--optimizer", config.optimizer]


def output_argv(config, oracle_url):
    """train_output.py's command line for config, on a free port (0); no live page of its own
    (demo.py starts one for the whole run)."""
    run_dir = config.run_dir
    return script_argv("train_output.py", "--port", 0, "--max-examples", config.count,
                       "--oracle-url", oracle_url, "--progress-dir", run_dir / "progress",
                       "--metrics", run_dir / "metrics" / "train_output.jsonl",
                       "--learning-rate", config.output_learning_rate,
                       "--batch-size", config.output_batch_size, "--no-live",
                       *checkpoint_argv(config, "train_output"), *common_argv(config))


def input_argv(config, oracle_url, output_url):
    """train_input.py's command line for config: it trains for config.duration seconds."""
    run_dir = config.run_dir
    data_dir = run_dir / "data" if config.data_dir is None else config.data_dir
    return script_argv("train_input.py", "--data-dir", data_dir,
                       "--oracle-url", oracle_url, "--output-url", output_url,
                       "--progress-dir", run_dir / "progress",
                       "--metrics", run_dir / "metrics" / "train_input.jsonl",
                       "--learning-rate", config.input_learning_rate, "--update", config.update,
                       "--duration", config.duration, *checkpoint_argv(config, "train_input"),
                       *common_argv(config), *option_argv(config.input), *config.input_args)


def run_decoupled(config, env=None, on_start=None):
    """Start the oracle, then the output trainer, wait until both answer, then train the input
    trainer for config.duration seconds while printing status lines; stop all three with
    SIGTERM (each saves its final weights). Every process checkpoints and is supervised: one
    that dies is named in one line and started again from its checkpoint (the servers on
    their ports), as config.restart says. Returns the servers' last GET /status (None for one
    that is down), {"oracle": ..., "output_trainer": ..., "restarts": {name: count},
    "cut_short": why the run ended early, or None}. SystemExit with the log to read if a server
    does not start. on_start(name, pid), if given, is told of every start and restart
    ("oracle", "output trainer", "input trainer")."""
    env = child_env() if env is None else env
    run_dir = config.run_dir
    supervisor = Supervisor(config.restart, who="launch", on_start=on_start)
    checkpoints = run_dir / "checkpoints"
    try:
        # start: the two servers on free ports, each announcing its URL in its log
        oracle = supervisor.start("oracle", oracle_argv(config), run_dir / "oracle.log", env,
                                  checkpoint=checkpoints / "oracle.npz")
        oracle_url = oracle.wait_url(120)
        output = supervisor.start("output trainer", output_argv(config, oracle_url),
                                  run_dir / "train_output.log", env,
                                  checkpoint=checkpoints / "train_output.npz")
        output_url = output.wait_url(120)
        token = env.get("SYNTHGRAD_TOKEN") or None      # the children take it from there too
        oracle_client = synthgrad.OracleClient(oracle_url, token=token)
        output_client = synthgrad.OutputTrainerClient(output_url, token=token)
        for client in (oracle_client, output_client):
            client.wait_until_ready()
        print(f"launch: oracle at {oracle_url}, output trainer at {output_url}; the input "
              f"trainer trains for {config.duration:.0f} s (logs in {run_dir})", flush=True)
        # train: the input trainer runs to its --duration (restarted: the time left); we watch
        end_at = time.monotonic() + config.duration

        def input_again(child):
            left = round(max(1.0, end_at - time.monotonic()), 1)
            return resume_argv(input_argv(dataclasses.replace(config, duration=left),
                                          oracle_url, output_url), None, child.checkpoint)

        inp = supervisor.start("input trainer", input_argv(config, oracle_url, output_url),
                               run_dir / "train_input.log", env,
                               checkpoint=checkpoints / "train_input.npz", finishes=True,
                               next_argv=input_again)
        cut_short = watch(supervisor, inp, oracle_client, output_client,
                          run_dir / "metrics" / "train_input.jsonl", config.duration,
                          config.status_every)
        # the servers' last word, before they are stopped
        return {"oracle": last_status(oracle_client),
                "output_trainer": last_status(output_client),
                "restarts": supervisor.restarts(), "cut_short": cut_short}
    finally:
        supervisor.stop_all()
        shutil.rmtree(checkpoints, ignore_errors=True)  # a finished run is never resumed


# --- Plain backprop, in this process. ----------------------------------------------------------

def train_backprop(config, out=None, status_every=None):
    """Train sgd.make_network with plain backprop for config.seconds seconds of training.

    Segments of config.eval_every examples in a fresh random order each epoch; after each
    segment held-out MSE is measured and a metrics line {seconds, epoch, examples, heldout_mse}
    written (stage "backprop"), starting with the untrained network at 0 s. Only training
    counts as time, so the curve is comparable with a decoupled run of the same length. Each
    minibatch is sgd.backprop and one step of config.optimizer (sgd: exactly sgd.train_step),
    whose eta starts at config.learning_rate and is multiplied by config.decay after each
    epoch. Progress lines go to `out` (a text file) if given, and with status_every a status
    line "[  10 s] backprop: ..." to stdout at the first measurement after every status_every
    seconds of training. Returns (layers, the measurements as written).
    """
    def say(line):
        if out is not None:
            print(line, file=out, flush=True)

    say(f"backprop: {config}")
    x, y = generate.load_dataset(config.data_dir)                  # (n, 2), (n,)
    x_test, y_test = generate.heldout(config.heldout)              # (h, 2), (h,)
    rng = np.random.default_rng(config.seed)
    layers = sgd.make_network(rng, config.sizes)
    optimizer = optimizers.make(config.optimizer, layers, config.learning_rate)
    metrics = snapshots.MetricsLog(config.metrics, "backprop")
    measurements = []

    next_status = [0.0]

    def measure(seconds, epoch, examples):
        row = dict(seconds=seconds, epoch=epoch, examples=examples,
                   heldout_mse=sgd.mse(layers, x_test, y_test))
        metrics.write(**row)
        measurements.append(row)
        if status_every is not None and seconds >= next_status[0]:
            print(f"[{seconds:4.0f} s] backprop: {examples:>7} examples, epoch {epoch}, "
                  f"held-out MSE {row['heldout_mse']:.4f}", flush=True)
            next_status[0] = seconds + status_every
        return row["heldout_mse"]

    examples, seconds, epoch = 0, 0.0, 0
    heldout_mse = measure(0.0, 0, 0)
    say(f"epoch 0: held-out MSE {heldout_mse:.4f}")
    out_of_time = False
    while not out_of_time and (config.epochs is None or epoch < config.epochs):
        epoch += 1
        order = rng.permutation(len(x))                            # (n,)
        t0 = time.perf_counter()
        for start in range(0, len(x), config.eval_every):
            # Only training counts as time; measuring is paused out of it.
            t1 = time.perf_counter()
            rows = order[start:start + config.eval_every]
            train_examples(layers, optimizer, x[rows], y[rows], config.batch_size)
            seconds += time.perf_counter() - t1
            examples += len(rows)
            heldout_mse = measure(round(seconds, 3), epoch, examples)
            out_of_time = seconds >= config.seconds
            if out_of_time:
                break
        say(f"epoch {epoch}{' (cut short)' if out_of_time else ''}: "
            f"train MSE {sgd.mse(layers, x, y):.4f}, held-out MSE {heldout_mse:.4f}, "
            f"eta {optimizer.learning_rate:.5f}, {time.perf_counter() - t0:.2f} s, "
            f"{seconds:.1f} s of training in all ({1e6 * seconds / examples:.1f} us/example)")
        optimizer.learning_rate *= config.decay
    if config.weights_out is not None:
        snapshots.save_layers(config.weights_out, layers)
    return layers, measurements


def train_examples(layers, optimizer, x, y, batch_size):
    """sgd.train_examples with any optimizer: over x (n, 2), y (n,) in the order given,
    sgd.backprop on each slice of batch_size rows, then one optimizer.step()."""
    for k in range(0, len(x), batch_size):
        sgd.backprop(layers, x[k:k + batch_size], y[k:k + batch_size])
        optimizer.step()
