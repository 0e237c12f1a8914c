"""The demo's three processes as a list for processes.run, plain backprop in this process,
and what a launching script does first (session). The demo by hand:

    from runner import launch
    env = launch.child_env()
    config = launch.DecoupledConfig(run_dir=launch.new_run_dir(), duration=30)
    launch.generate_data(config.run_dir / "data", config.count, config.seed, env)
    final = launch.run_decoupled(config, env)        # the servers' last GET /status
    layers, measurements = launch.train_backprop(
        launch.BackpropConfig(config.run_dir / "data", seconds=30,
                              metrics=config.run_dir / "metrics" / "backprop.jsonl"))

A run folder holds data/, each process's log, metrics/<process>.jsonl and progress/ (weight
snapshots on shared ticks). Configuration is data, changed with dataclasses.replace.
"""

import contextlib
import dataclasses
import functools
import itertools
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np

import generate
import sgd
from parts import children, optimizers, snapshots
from parts.children import TOP
from runner import processes
from runner.processes import Proc, Url


@dataclasses.dataclass(frozen=True)
class DecoupledConfig:
    """One run of the three scripts, on the demo's defaults. `oracle`, `input`: more options of
    oracle.py, train_input.py by name, e.g. {"hidden": 0}; `oracle_args`, `input_args`: more
    as typed on their command lines, appended last."""

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
    restart: processes.RestartPolicy = processes.RestartPolicy()   # what a death leads to
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
    """BackpropConfig settings "the same" as a decoupled run's: layers 2-3's minibatch and
    learning rate, its optimizer and seed, no decay."""
    return dict(batch_size=config.output_batch_size, learning_rate=config.output_learning_rate,
                optimizer=config.optimizer, decay=1.0, seed=config.seed)


def config_from(cls, args, **given):
    """A config dataclass cls from `given` and the command line's values of its other fields."""
    names = {f.name for f in dataclasses.fields(cls)} - set(given)
    return cls(**given, **{name: getattr(args, name) for name in names if hasattr(args, name)})


def child_env():
    """The environment for the processes a launcher starts: TensorFlow quiet, output unbuffered."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def new_run_dir(given=None, prefix=""):
    """`given`, or a new runs/<prefix><date-time> next to this file, made by this call alone (a
    run started in the same second gets <date-time>-2, -3, ...); created, made absolute."""
    if given is not None:
        Path(given).mkdir(parents=True, exist_ok=True)
        return Path(given).resolve()
    stamp = TOP / "runs" / time.strftime(f"{prefix}%Y%m%d-%H%M%S")
    for n in itertools.count(1):
        run_dir = Path(f"{stamp}-{n}" if n > 1 else stamp).resolve()
        try:
            run_dir.mkdir(parents=True)               # no exist_ok: another run's is not taken
            return run_dir
        except FileExistsError:
            continue


def generate_data(out_dir, count, seed, env, plot=True):
    """generate.py: `count` examples with `seed` into out_dir (its target.png too if plot)."""
    subprocess.run(children.script_argv("generate.py", "--count", count, "--seed", seed,
                                         "--out-dir", out_dir, *([] if plot else ["--no-plot"])),
                   check=True, cwd=TOP, env=env, stdout=subprocess.DEVNULL)


def run_arguments(p, ends, prefix="", shown="every process"):
    """Every launching script's --run-dir, --seed, --no-restart and the live page's options.
    `ends`: what a death ends; prefix: the run folder's."""
    p.add_argument("--run-dir", type=generate.out_path, default=None,
                   help=f"folder for everything (default: a new runs/{prefix}<date-time>)")
    p.add_argument("--seed", type=generate.seed, default=0,
                   help="seeds the data and every process (default %(default)s)")
    p.add_argument("--no-restart", dest="restart", action="store_false",
                   help=f"a process that dies ends {ends} instead of restarting from its "
                        "checkpoint (default: restart)")
    children.live_arguments(p, default_port=0, who=f"it shows {shown}")


@contextlib.contextmanager
def session(args, who, prefix=""):
    """What a launching script does first: Ctrl-C and SIGTERM stop every process it starts, a
    new run folder, its settings printed, the live page if args.live. Yields (run folder, env)."""
    if args.run_dir is not None and Path(args.run_dir).is_dir() and any(
            Path(args.run_dir).iterdir()):       # its logs, weights and results would be mixed
        raise SystemExit(f"{who}.py: --run-dir {args.run_dir} is not empty (an earlier run's?): "
                         "give a new or empty folder; nothing in it was touched")
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    processes.stop_on_signals()
    run = new_run_dir(args.run_dir, prefix)
    print(f"{who}.py: settings:", generate.settings_line({**vars(args), "run_dir": run}),
          flush=True)
    stop_page = start_live_page(run, args, who)
    try:
        yield run, child_env()
    except KeyboardInterrupt:                        # before (or after) it ran its processes
        print(f"{who}: interrupted ({run})", flush=True)
        raise SystemExit(130) from None
    finally:
        stop_page()
        for s, handler in before.items():          # the caller's again, for what comes after
            signal.signal(s, handler)


def start_live_page(run_dir, args, who):
    """The live page for run_dir if args.live, its address printed; a function that stops it.
    If it cannot start, `who` says so and the run goes on."""
    if not args.live:
        return lambda: None
    try:
        url, stop = children.start_live_page(run_dir, port=args.live_port)
    except SystemExit as e:
        print(f"{who}: {e}; going on without it (--live-port 0 picks a free port)", flush=True)
        return lambda: None
    print(f"{who}: watch it learn, live: {url}", flush=True)
    return stop


def outcome(who, run_dir, work):
    """(why work() was cut short, or None; the exit code: 0, 1 if cut short, a process did not
    start or answer, 130 if Ctrl-C or SIGTERM stopped it)."""
    try:
        cut_short = work()
    except KeyboardInterrupt:
        print(f"{who}: interrupted; every process it started is stopped ({run_dir})", flush=True)
        return "interrupted (Ctrl-C or SIGTERM)", 130
    except SystemExit as e:            # a process did not start or answer: a run cut short
        if not isinstance(e.code, str):
            raise
        print(f"{who}: {e.code}", flush=True)
        return e.code, 1
    return cut_short, int(cut_short is not None)


# --- The decoupled run: three processes. ------------------------------------------------------

def decoupled_procs(config):
    """The run's processes in start order: the oracle, the output trainer (both on free
    ports), the input trainer (it trains for config.duration s and ends the run)."""
    run = config.run_dir
    data_dir = run / "data" if config.data_dir is None else config.data_dir

    def proc(name, script, key, *options):
        checkpoint = processes.checkpoint_path(run, script[:-3])
        return Proc(name, script, (*options, "--checkpoint", checkpoint, "--checkpoint-interval",
                                   config.checkpoint_interval, *tail[script]),
                    key, run / f"{script[:-3]}.log", checkpoint)
    common = ("--snapshot-interval", config.snapshot_interval, "--seed", config.seed,
              "--wire", config.wire, "--optimizer", config.optimizer)
    tail = {"oracle.py": ("--metrics", run / "metrics" / "oracle.jsonl",
                          *processes.as_options(config.oracle), *config.oracle_args),
            "train_output.py": common,
            "train_input.py": (*common, *processes.as_options(config.input), *config.input_args)}
    return [
        proc("oracle", "oracle.py", "oracle", "--port", 0, "--max-examples", config.count,
             "--seed", config.seed),
        proc("output trainer", "train_output.py", "output_trainer", "--port", 0,
             "--max-examples", config.count, "--oracle-url", Url("oracle"),
             "--progress-dir", run / "progress",
             "--metrics", run / "metrics" / "train_output.jsonl",
             "--learning-rate", config.output_learning_rate,
             "--batch-size", config.output_batch_size, "--no-live"),   # demo.py has the page
        proc("input trainer", "train_input.py", "input_trainer", "--data-dir", data_dir,
             "--oracle-url", Url("oracle"), "--output-url", Url("output trainer"),
             "--progress-dir", run / "progress",
             "--metrics", run / "metrics" / "train_input.jsonl",
             "--learning-rate", config.input_learning_rate, "--update", config.update,
             "--duration", config.duration)]


def run_decoupled(config, env=None, on_start=None):
    """decoupled_procs run here, supervised as config.restart says; processes.run's result (the
    servers' last GET /status under "oracle", "output_trainer"). on_start(name, pid): as run's."""
    env = child_env() if env is None else env
    run = config.run_dir
    supervisor = processes.Supervisor(config.restart, "launch", env, on_start,
                                      env.get("SYNTHGRAD_TOKEN") or None)

    def banner(urls):
        return (f"oracle at {urls['oracle']}, output trainer at {urls['output trainer']}; the "
                f"input trainer trains for {config.duration:.0f} s (logs in {run})")
    return processes.run(decoupled_procs(config), supervisor, config.duration,
                         config.status_every, run / "metrics" / "train_input.jsonl", banner)


# --- Plain backprop, in this process. ----------------------------------------------------------

def train_backprop(config, out=None, status_every=None):
    """Backprop by sgd.train for config.seconds of training (measuring not counted, so the curve
    compares with a decoupled run's), held-out MSE every config.eval_every examples, eta times
    config.decay per epoch. Progress lines to `out`, status to stdout every status_every s.
    Returns (layers, the measurements)."""
    say = (lambda line: None) if out is None else functools.partial(print, file=out, flush=True)
    say(f"backprop: {config}")
    x, y = generate.load_dataset(config.data_dir)                  # (n, 2), (n,)
    x_test, y_test = generate.heldout(config.heldout)              # (h, 2), (h,)
    rng = np.random.default_rng(config.seed)
    layers = sgd.make_network(rng, config.sizes)
    optimizer = optimizers.make(config.optimizer, layers, config.learning_rate)
    metrics = snapshots.MetricsLog(config.metrics, "backprop")
    measurements, next_status = [], 0.0

    def measure(seconds, epoch, examples):
        nonlocal next_status
        row = dict(seconds=round(seconds, 3), epoch=epoch, examples=examples,
                   heldout_mse=sgd.mse(layers, x_test, y_test))
        metrics.write(**row)
        measurements.append(row)
        if status_every is not None and row["seconds"] >= next_status:
            print(f"[{seconds:4.0f} s] backprop: {examples:>7} examples, epoch {epoch}, "
                  f"held-out MSE {row['heldout_mse']:.4f}", flush=True)
            next_status = row["seconds"] + status_every
        return row["heldout_mse"]

    examples, seconds, epoch, out_of_time = 0, 0.0, 0, False
    say(f"epoch 0: held-out MSE {measure(0.0, 0, 0):.4f}")
    while not out_of_time and (config.epochs is None or epoch < config.epochs):
        epoch += 1
        order = rng.permutation(len(x))                            # (n,)
        t0 = time.perf_counter()
        for start in range(0, len(x), config.eval_every):
            t1 = time.perf_counter()            # only training counts as time, not measuring
            rows = order[start:start + config.eval_every]
            examples += sgd.train(layers, x, y, (rows[k:k + config.batch_size] for k in
                                                 range(0, len(rows), config.batch_size)),
                                  optimizer.step)
            seconds += time.perf_counter() - t1
            heldout_mse = measure(seconds, epoch, examples)
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
