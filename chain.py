"""A chain of K stages, each its own process, a synthetic-gradient model at every boundary.

Run it (the README's "Deeper decoupling" says more):

    python chain.py                                           # 2-24-12-1 in 2 stages: the demo's
    python chain.py --sizes 2-32-32-32-32-1 --splits 1,2,3   # 4 stages, 3 boundaries, 60 s
    python chain.py --sizes 2-32-32-32-32-1 --splits 1,2,3 --update frozen   # a control

The network's layers are sizes[j] -> sizes[j+1] (sigmoid, the last linear). --splits cuts it
after those layers: 1,2,3 on 2-32-32-32-32-1 gives the stages 2-32 | 32-32 | 32-32 | 32-32-1
and boundaries of width 32 after layers 1, 2 and 3. Every stage is one of the project's
scripts, speaking the same protocol:

    stage 1         train_input.py --width W1         streams the data, one layer
    stages 2..K-1   train_middle.py --sizes ...       synthetic gradients from above, true
                                                      gradients of its input sent below
    stage K         train_output.py --sizes ...-1     owns the loss
    boundary b      oracle.py --width Wb              learns dL/dh_b from what stage b+1 sends

so K = 2 is exactly the three-process system. With --colocated there are no oracles: each
boundary's model is learned inside the stage above it (train_output.py/train_middle.py
--colocated, from the true gradients it computes; boundary.py) and fetched by the stage below
from there, so K stages are K processes:

    python chain.py --colocated                                # 2 processes
    python chain.py --sizes 2-32-32-32-32-1 --splits 1,2,3 --colocated   # 4 processes
    python chain.py --colocated --ray HEAD:6379 --place host_a,host_b     # on a Ray cluster

All start on free loopback ports with the scripts' own defaults (one optimizer everywhere;
from 4 stages on every stage's Adam at 0.001, see --learning-rate), the first stage trains
for --duration seconds, then all stop (with --examples N, sooner: once stage 2 has trained on
N examples, a budget of work that a busy machine meets later, not less). Into the
run folder (default runs/chain-<date-time>) go each process's log and metrics, each stage's
snapshots (progress/stage<k>/), each boundary model's weights at every snapshot tick
(progress/boundary<b>/), and

    chain.json   held-out MSE of the composed network at each tick; per boundary, the cosine
                 between the synthetic gradient (the boundary model at that tick) and the true
                 one (full backprop through the composed network at that tick, on 2,000
                 held-out points), and the staleness of what the stage above trained on
    chain.png    those three against seconds since the first stage began streaming

On images (the paper's setting; `make data` gets Fashion-MNIST) every layer is its own stage
by default, each ReLU with He's init and training on each activation once as it arrives, the
last one's loss softmax cross-entropy, the label travelling where the toy's y does and every
boundary model cDNI, conditioned on its one-hot:

    python chain.py --data fashion-mnist --colocated          # 784-256-256-256-10, 4 processes
    python chain.py --data fashion-mnist --colocated --update frozen     # only the top learns

and chain.json gives test accuracy and loss (all 10,000 test images) where the toy has MSE.

chain.py only launches, supervises and evaluates; the stages learn exactly as they do alone.
Every process checkpoints into checkpoints/ every few seconds. One that dies is named in one
line (its exit code or signal, its log's last lines) and started again on its port from its
checkpoint, its peers' senders resending what they held (--max-restarts in 120 s, then the run
ends); with --no-restart the first death ends the run. Stage 1 ends on its own clock whatever
its peers do (chain.py stops it itself if it overruns by 15 s), and however the run ends (its
time, a death, Ctrl-C, SIGTERM) chain.json and chain.png are written from the snapshots on
disk, with "cut_short" saying why if it ended early (--no-restart: the first death ends it).
With --ray every process is a Ray actor instead, placed, restarted and collected by Ray
(runner/raychain.py; docs/several-machines.md).
"""

import argparse
import dataclasses
import json
import shutil
import signal
import sys
import time
from pathlib import Path

import generate
import train_output
from parts import children, classify
from runner import chain_eval, chain_watch, launch, raychain

# The command line's learning rate from DEEP_FROM stages on. Measured (docs/chain.md): at the
# scripts' 0.005 a 4-stage chain of 2-32-32-32-32-1 stayed at the mean predictor (3 seeds of
# the depth experiment, and 60 s by hand); at 0.001 it learned. With 2 or 3 stages 0.005 did.
DEEP_FROM, DEEP_LEARNING_RATE = 4, 0.001


@dataclasses.dataclass(frozen=True)
class ChainConfig:
    """One chain run; the defaults are the three-process system's network."""

    run_dir: Path
    sizes: tuple = (2, 24, 12, 1)          # the network's widths
    splits: tuple = (1,)                   # cut after these layers (the first must be 1)
    count: int = 20_000                    # examples in the data
    duration: float = 60.0                 # seconds the first stage streams
    seed: int = 0
    snapshot_interval: int = 2
    status_every: float = 5.0
    wire: str = "binary"
    update: str = "synthetic"              # every stage below the last: or "frozen", "random"
    conditioned: bool = True               # every boundary model sees the target too (cDNI)
    data_dir: Path | None = None           # x.npy, y.npy (None: run_dir/data)
    batch_size: int = 10                   # every stage's minibatch
    learning_rate: float = 0.005           # every stage's (Adam), the scripts' default
    colocated: bool = False                # boundary models beside the stages: K processes
    restart: launch.RestartPolicy = launch.RestartPolicy()   # what a death leads to
    checkpoint_interval: float | None = None   # seconds (None: by size, checkpoint_every)
    examples: int | None = None            # the budget of work, --examples (None: duration)
    max_ahead: int | None = None           # stage 1 hands off at most this many examples
                                           # beyond what stage 2 has trained on (None: off)
    data: str = "toy"                      # or an image set (classify.DATA_NAMES): classify
    image_dir: Path | None = None          # its IDX files (None: where datasets/ looks)
    train_on: str = "held"                 # what the stages above 1 train on (train_output.py)
    refresh_every: float = 0.2             # s between fetches of the model above a stage
    ray: str | None = None                 # run on Ray: "local" or a cluster's address
    place: tuple | None = None             # with ray: stage k on the machine declaring place[k-1]


# chain.py --data fashion-mnist (or mnist): the paper's network, every layer decoupled, each
# stage ReLU with He's init, the last one's loss softmax cross-entropy, minibatches of 100,
# every boundary model cDNI, linear, learned beside the stage above it (--colocated: oracle.py
# is the toy's Keras model). Adam at 1e-4, stage 1 paced to stage 2, each stage training on each
# activation once as it arrives, models fetched every 0.05 s: each measured (docs/chain.md).
IMAGES = dict(sizes=(784, 256, 256, 256, 10), splits=(1, 2, 3), count=60_000, batch_size=100,
              learning_rate=1e-4, max_ahead=200, train_on="arrivals", refresh_every=0.05)


def stage_sizes(sizes, splits):
    """[(widths of stage k's layers)]: the network cut after each layer count in splits."""
    cuts = [0, *splits, len(sizes) - 1]
    return [tuple(sizes[a:b + 1]) for a, b in zip(cuts, cuts[1:])]


def check_layout(sizes, splits, data="toy"):
    """ValueError saying what is wrong with a network and its splits, or None."""
    layers = len(sizes) - 1
    ends, example = ((2, 1), "2-24-12-1") if data == "toy" else ((784, 10), "784-256-256-10")
    if layers < 2 or min(sizes) < 1 or (sizes[0], sizes[-1]) != ends:
        raise ValueError(f"sizes must go from {ends[0]} inputs to {ends[1]} outputs through at "
                         f"least one hidden layer, e.g. {example} (got "
                         f"{train_output.format_sizes(sizes)})")
    if not splits or list(splits) != sorted(set(splits)) or splits[0] < 1 or splits[-1] >= layers:
        raise ValueError(f"splits must be increasing layer counts between 1 and {layers - 1} "
                         f"(got {','.join(map(str, splits))})")


# --- Starting, watching and stopping a chain. ---------------------------------------------------

def checkpoint_path(run, name):
    """Where a process of the run checkpoints ("stage2", "boundary1"): restarted, it resumes."""
    return Path(run) / "checkpoints" / f"{name}.npz"


# Every process checkpoints every 5 s, or less often where its checkpoint is large, so that
# writing them stays under ~2 MB/s a process (a 20,000 x 32 stage: ~5 MB every 5 s; width
# 1024: ~200 MB every ~100 s): a restart loses seconds of work, and timings are not the disk's.
CHECKPOINT_MIN_S, CHECKPOINT_BYTES_PER_S = 5.0, 2e6


def checkpoint_every(config, held_width, sizes):
    """Seconds between checkpoints of a process holding config.count rows of held_width
    float64 values and layers of `sizes` with Adam's two moments (config.checkpoint_interval
    if given)."""
    if config.checkpoint_interval is not None:
        return config.checkpoint_interval
    params = sum((a + 1) * b for a, b in zip(sizes, sizes[1:]))
    size = 8 * (config.count * held_width + 3 * params)
    return round(max(CHECKPOINT_MIN_S, size / CHECKPOINT_BYTES_PER_S), 1)


def checkpoint_argv(config, name, held_width, sizes):
    return ["--checkpoint", checkpoint_path(config.run_dir, name), "--checkpoint-interval",
            checkpoint_every(config, held_width, sizes)]


def oracle_argv(config, b, width):
    run = config.run_dir
    return launch.script_argv(
        "oracle.py", "--port", 0, "--width", width, "--max-examples", config.count,
        "--seed", config.seed + b, "--metrics", run / "metrics" / f"boundary{b}.jsonl",
        "--report-every", 0, *(["--conditioned"] if config.conditioned else ["--no-conditioned"]),
        *checkpoint_argv(config, f"boundary{b}", 2 * width + 1, (width + 1, 12, width)))


def server_stage_argv(config, k, sizes, below_oracle, above_oracle=None, next_url=None):
    """train_output.py (the last stage) or train_middle.py (above_oracle and next_url given).
    below_oracle None: --colocated, the model of the boundary below is learned in the stage."""
    run = config.run_dir
    below = ["--colocated"] if below_oracle is None else ["--oracle-url", below_oracle]
    argv = ["--port", 0, "--sizes", train_output.format_sizes(sizes), *below,
            "--max-examples", config.count, "--seed", config.seed + 10 * k,
            "--progress-dir", run / "progress" / f"stage{k}", "--snapshot-interval",
            config.snapshot_interval, "--wire", config.wire, "--report-every", 0,
            "--metrics", run / "metrics" / f"stage{k}.jsonl", "--batch-size", config.batch_size,
            "--learning-rate", config.learning_rate, "--train-on", config.train_on,
            *checkpoint_argv(config, f"stage{k}", sizes[0] + 1, sizes)]
    if config.data != "toy":                       # a classifier's stage
        argv += ["--activation", "relu", "--classes", config.sizes[-1]]
        if next_url is None:
            argv += ["--loss", "cross-entropy"]
    if next_url is None:
        return launch.script_argv("train_output.py", *argv, "--no-live")   # chain.py's page
    return launch.script_argv("train_middle.py", *argv, "--above-oracle-url", above_oracle,
                              "--next-url", next_url, "--update", config.update,
                              "--refresh-every", config.refresh_every)


def input_stage_argv(config, sizes, oracle_url, next_url, last_url=None):
    """train_input.py holding the layers `sizes` (2 -> ... -> h); oracle_url None: --colocated,
    the model of the boundary above it comes from the next stage."""
    run = config.run_dir
    data = ["--data-dir", run / "data" if config.data_dir is None else config.data_dir]
    if config.data != "toy":                       # the training images, count of them
        data = ["--data", config.data, "--examples", config.count,
                *(["--image-dir", config.image_dir] if config.image_dir else [])]
    layers = (["--width", sizes[-1]] if len(sizes) == 2 else
              ["--sizes", train_output.format_sizes(sizes)])
    model = ["--colocated"] if oracle_url is None else ["--oracle-url", oracle_url]
    return launch.script_argv(
        "train_input.py", *data, *layers, *model,
        "--output-url", next_url, "--progress-dir", run / "progress" / "stage1",
        "--snapshot-interval", config.snapshot_interval, "--seed", config.seed, "--wire",
        config.wire, "--update", config.update, "--duration", config.duration, "--refresh-every",
        config.refresh_every,
        *([] if config.examples is None else ["--until-trained", config.examples]),
        *(["--until-url", last_url] if config.train_on == "arrivals" and last_url else []),
        *([] if config.max_ahead is None else ["--max-ahead", config.max_ahead]),
        "--metrics", run / "metrics" / "stage1.jsonl", "--report-every", 1,
        "--batch-size", config.batch_size, "--learning-rate", config.learning_rate,
        *checkpoint_argv(config, "stage1", 0, sizes))


def ray_chain(config, env, on_start=None):
    """run_chain on Ray (runner/raychain.py): every process an actor on a machine and port
    chosen first, restarted by Ray from its checkpoint on that machine; stage 1 streams for
    config.duration seconds; the processes' snapshots, metrics and logs are collected into
    config.run_dir as they come and at the end. Returns what run_chain returns."""
    run, layout = config.run_dir, stage_sizes(config.sizes, config.splits)
    K, token = len(layout), env.get("SYNTHGRAD_TOKEN") or None
    (run / "metrics").mkdir(parents=True, exist_ok=True)
    chain_eval.write_run_data(run, config.data, config.image_dir)
    oracles = [] if config.colocated else [f"boundary {b} oracle" for b in range(1, K)]
    names = oracles + [f"stage {k}" for k in range(K, 0, -1)]
    place = None if config.place is None else (      # an oracle goes with the stage above it
        {f"stage {k}": r for k, r in enumerate(config.place, start=1)} |
        {f"boundary {b} oracle": config.place[b] for b in range(1, K) if oracles})
    restarts = config.restart.max_restarts if config.restart.restart else 0
    with raychain.RayChain(run, config.ray, names, place, restarts, token, on_start) as chain:
        urls = chain.place_all()
        local = dataclasses.replace(config, run_dir=chain.root)    # paths on each machine
        for b, name in enumerate(oracles, start=1):
            chain.start(name, oracle_argv(local, b, layout[b - 1][-1]), url=urls[name])
        stages = {k: urls[f"stage {k}"] for k in range(2, K + 1)}
        models = [urls[n] for n in oracles] or [stages[b + 1] for b in range(1, K)]
        for k in range(K, 1, -1):
            below, above = (None, stages.get(k + 1)) if config.colocated else \
                (models[k - 2], models[k - 1] if k < K else None)
            chain.start(f"stage {k}", server_stage_argv(local, k, layout[k - 1], below, above,
                                                        stages.get(k + 1)), url=stages[k])
        clients, boundary_clients = chain_watch.clients_of(stages, models, token)
        print(f"chain: {K} stages {' | '.join(train_output.format_sizes(s) for s in layout)}, "
              f"{K - 1} boundaries, {len(names)} Ray actors; stage 1 streams for "
              f"{config.duration:.0f} s (logs and snapshots collected into {run})", flush=True)
        files = None if config.data != "toy" or config.data_dir is not None else \
            {f"data/{n}": (run / "data" / n).read_bytes() for n in ("x.npy", "y.npy")}
        end_at = time.monotonic() + config.duration
        chain.start("stage 1", input_stage_argv(local, layout[0], None if config.colocated else
                                                models[0], stages[2], stages[K]),
                    files=files, deadline=time.time() + config.duration)
        where = {int(n.split()[1]): chain.machine(n, short=True)
                 for n in names if n.startswith("stage")}
        _, cut_short = chain_watch.watch(config, chain.look, raychain.First(chain),
                                         lambda: chain.cpu_seconds("stage 1"), clients,
                                         boundary_clients, layout, end_at, where)
        return chain_watch.last_statuses(clients, boundary_clients) | {
            "cpu_s": {raychain.key_of(n): chain.cpu_seconds(n) for n in names},
            "restarts": dict(chain.restarts), "cut_short": cut_short}


def run_chain(config, env=None, on_start=None):
    """Start the boundary oracles, then the stages from the top down, stream for
    config.duration seconds while printing status lines and saving each boundary model's weights
    at every snapshot tick; stop everything. Returns the last GET /status of each server (None
    for one that is down), under "cpu_s" the CPU seconds each process used (stage 1's up to its
    last status line), under "restarts" how often each was restarted, and under "cut_short" why
    the run ended early (None: it ran its time). on_start(name, pid), if given, is called as
    each process starts or restarts ("boundary 1 oracle", "stage 4", ..., "stage 1"): lab/bench.py
    pins processes to cores with it. With config.colocated there are no oracles: K processes,
    each boundary's model learned in the stage above it and fetched from there (GET /weights).

    Every process checkpoints into run/checkpoints/ and is supervised (launch.Supervisor): one
    that dies is named in one line and started again on its port from its checkpoint, as
    config.restart says; a death it may not mend ends the run, cut short."""
    env = launch.child_env() if env is None else env
    if config.ray is not None:
        return ray_chain(config, env, on_start)
    # One BLAS thread a process unless told otherwise (a core per stage): OpenBLAS's idle
    # threads spin at normal priority and starved the stages' nice-10 training threads (2
    # cores, 4 stages on images: stage 2 trained ~1,000 examples/s with them, ~14,000 without).
    env = {"OPENBLAS_NUM_THREADS": "1", **env}
    run, layout = config.run_dir, stage_sizes(config.sizes, config.splits)
    (run / "metrics").mkdir(parents=True, exist_ok=True)
    chain_eval.write_run_data(run, config.data, config.image_dir)
    supervisor = launch.Supervisor(config.restart, who="chain", on_start=on_start)
    oracles, stages = [], {}
    try:
        for b, width in enumerate((s[-1] for s in layout[:-1] if not config.colocated),
                                  start=1):
            child = supervisor.start(f"boundary {b} oracle", oracle_argv(config, b, width),
                                     run / f"boundary{b}.log", env,
                                     checkpoint=checkpoint_path(run, f"boundary{b}"))
            oracles.append(child.wait_url(chain_watch.STATUS_WAIT))
        K = len(layout)
        next_url = None
        for k in range(K, 1, -1):                      # top down: each needs the URL above
            if config.colocated:                       # the model above is in the next stage
                below, above = None, next_url
            else:
                below, above = oracles[k - 2], (oracles[k - 1] if k < K else None)
            argv = server_stage_argv(config, k, layout[k - 1], below, above, next_url)
            child = supervisor.start(f"stage {k}", argv, run / f"stage{k}.log", env,
                                     checkpoint=checkpoint_path(run, f"stage{k}"))
            next_url = stages[k] = child.wait_url(chain_watch.STATUS_WAIT)
        models = [stages[b + 1] for b in range(1, K)] if config.colocated else oracles
        clients, boundary_clients = chain_watch.clients_of(stages, models,
                                                           env.get("SYNTHGRAD_TOKEN") or None)
        for client in [*clients.values(), *boundary_clients]:
            client.wait_until_ready()
        where = ("each learned beside the stage above it" if config.colocated else
                 "each learned by an oracle")
        counted = 2 if config.train_on == "held" else K             # --examples's stage
        until = ("" if config.examples is None else
                 f" at most, until stage {counted} has trained on {config.examples:,} examples")
        print(f"chain: {K} stages {' | '.join(train_output.format_sizes(s) for s in layout)}, "
              f"{K - 1} boundaries ({where}): {len(supervisor.children) + 1} processes; stage 1 "
              f"streams for {config.duration:.0f} s{until} (logs in {run})", flush=True)
        end_at = time.monotonic() + config.duration

        def first_argv(duration):
            return input_stage_argv(dataclasses.replace(config, duration=duration), layout[0],
                                    None if config.colocated else oracles[0], stages[2], stages[K])

        def first_again(child):                        # the time left, from its checkpoint
            return launch.resume_argv(first_argv(round(max(1.0, end_at - time.monotonic()), 1)),
                                      None, child.checkpoint)

        first = supervisor.start("stage 1", first_argv(config.duration), run / "stage1.log", env,
                                 checkpoint=checkpoint_path(run, "stage1"), finishes=True,
                                 next_argv=first_again)
        cpu, cut_short = chain_watch.watch(config, supervisor.check, first,
                                           lambda: chain_watch.cpu_seconds(first.popen.pid),
                                           clients, boundary_clients, layout, end_at)
        cpu |= {child.name.replace(" oracle", "").replace(" ", ""):
                chain_watch.cpu_seconds(child.popen.pid)
                for child in supervisor.children if child is not first}
        return chain_watch.last_statuses(clients, boundary_clients) | \
            {"cpu_s": cpu, "restarts": supervisor.restarts(), "cut_short": cut_short}
    finally:
        supervisor.stop_all()
        # the checkpoints served restarts during the run; a finished run is never resumed
        # (and at wide widths they are hundreds of MB a process)
        shutil.rmtree(run / "checkpoints", ignore_errors=True)


# --- The script. -------------------------------------------------------------------------------

def parse_args(argv):
    d = ChainConfig
    p = argparse.ArgumentParser(description="Run a network as a chain of stages, one process "
                                "each, a synthetic-gradient model at every boundary; measure it.")
    classify.data_arguments(p, what="learn")
    p.add_argument("--sizes", type=train_output.parse_sizes, default=None,
                   help="the network's widths, 2 in, 1 out (default 2-24-12-1; with --data "
                        "784 in, 10 out, default 784-256-256-256-10, the paper's)")
    p.add_argument("--splits", type=parse_splits, default=None,
                   help="cut the network after these many layers, e.g. 1,2,3 (default 1: the "
                        "three-process system; with --data 1,2,3, every layer its own stage); "
                        "a first split above 1 gives the first stage several layers, e.g. 2 "
                        "on 2-W-W-W-1 for two stages of equal work")
    p.add_argument("--duration", type=float, default=d.duration,
                   help="seconds the first stage streams (default %(default)g)")
    p.add_argument("--examples", type=int, default=None, metavar="N",
                   help="end the run once stage 2 (with --train-on arrivals the last stage) has "
                        "trained on N examples: a budget of work, the same on a busy machine, "
                        "--duration then only a limit (default: none, the run ends at it)")
    p.add_argument("--max-ahead", type=int, default=None, metavar="N",
                   help="flow control: stage 1 hands off at most N examples beyond what stage 2 "
                        "has trained on (train_input.py --max-ahead; default: off, 200 with "
                        "--data: at 1,000 the default 4-stage chain was unstable)")
    p.add_argument("--train-on", choices=("held", "arrivals"), default=None,
                   help="what stages 2..K train on: held, the latest activation of every "
                        "example, pass after pass (the default, the original's), or arrivals, "
                        "each once as it comes (the default with --data: see train_output.py)")
    p.add_argument("--count", type=int, default=None,
                   help="training examples (default 20,000; with --data all 60,000 images)")
    p.add_argument("--update", choices=("synthetic", "frozen", "random"), default=d.update,
                   help="what moves every stage below the last (default synthetic; frozen and "
                        "random are the controls)")
    p.add_argument("--colocated", action="store_true",
                   help="learn each boundary's synthetic-gradient model beside the stage above "
                        "it (from the true gradients that stage computes), not in an oracle.py "
                        "of its own: K stages are K processes, not 2K - 1 (default: off, "
                        "oracles, as the three scripts run by default)")
    p.add_argument("--no-conditioned", dest="conditioned", action="store_false",
                   help="boundary models see h only (DNI), not h and the target (cDNI)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help=f"every stage's Adam learning rate (default: the scripts' "
                        f"{d.learning_rate} for 2 or 3 stages, {DEEP_LEARNING_RATE} from "
                        f"{DEEP_FROM} stages on, where {d.learning_rate} did not learn in our "
                        f"measurements)")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds everything (default 0)")
    p.add_argument("--no-restart", dest="restart", action="store_false",
                   help="a process that dies ends the run (cut short, still evaluated) instead "
                        "of being started again on its port from its checkpoint (default: "
                        "restart: on several machines a process or a link will fail, and each "
                        "checkpoints every few seconds)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run every stage (and oracle) as a Ray actor, placed, restarted (up to "
                        "--max-restarts times in the run) and its files collected by Ray "
                        f"(needs {raychain.RAY_PIN}, which make demo does not install). Without "
                        "ADDRESS a fresh local Ray instance; with one (HEAD:6379) the cluster "
                        "`ray start --head` began there (docs/several-machines.md)")
    p.add_argument("--place", type=parse_place, default=None, metavar="R1,R2,...",
                   help="with --ray: put stage k on the machine that declares the custom "
                        "resource Rk (ray start --resources='{\"Rk\": 1}'), one name per "
                        "stage, e.g. host_a,host_b,host_b; an oracle goes with the stage above "
                        "it (default: Ray's scheduler gives each process a CPU of its own)")
    p.add_argument("--max-restarts", type=int, default=launch.RestartPolicy.max_restarts,
                   help="restarts of one process within %(window)g s before chain.py gives up "
                        "and ends the run (default %(default)s: a process that keeps dying "
                        "has a cause a restart will not mend; with --ray, in the whole run)" % {
                            "window": launch.RestartPolicy.window, "default": "%(default)s"})
    children.live_arguments(p, default_port=0, who="it shows each stage and boundary")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="folder for everything (default: a new runs/chain-<date-time>)")
    p.add_argument("--evaluate", type=Path, default=None, metavar="RUN",
                   help="run nothing: measure and draw a chain run already in RUN (e.g. one "
                        "run by hand on several machines, its stages' snapshots gathered into "
                        "RUN/progress/stage<k>, boundary models into RUN/progress/boundary<b>, "
                        "stage 1's metrics into RUN/metrics/stage1.jsonl), with --sizes and "
                        "--splits as it ran")
    args = p.parse_args(argv)
    defaults = {k: getattr(d, k) for k in IMAGES} if args.data == "toy" else IMAGES
    defaults = {k: v for k, v in defaults.items() if k != "learning_rate"}
    for name, value in defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, value)
    try:
        check_layout(args.sizes, args.splits, args.data)
    except ValueError as e:
        p.error(str(e))
    if args.data != "toy" and not args.colocated and args.evaluate is None:
        p.error("--data needs --colocated: the boundary models of a classifier learn beside the "
                "stages (oracle.py is the toy's Keras model, conditioned on one number)")
    if args.data != "toy" and args.count > 60_000:
        p.error(f"--count must be at most the 60,000 training images (got {args.count})")
    if not args.duration > 0:
        p.error(f"--duration must be positive (got {args.duration:g})")
    if args.colocated and not args.conditioned:
        p.error("--colocated learns the oracle's default model, conditioned on the target "
                "(cDNI): --no-conditioned needs the oracles")
    if args.learning_rate is None:
        args.learning_rate = (default_learning_rate(len(args.splits) + 1) if args.data == "toy"
                              else IMAGES["learning_rate"])
    if not args.learning_rate > 0:
        p.error(f"--learning-rate must be positive (got {args.learning_rate:g})")
    if args.max_ahead is not None and args.max_ahead < 1:
        p.error(f"--max-ahead must be at least 1 (got {args.max_ahead})")
    if args.examples is not None and args.examples < 1:
        p.error(f"--examples must be at least 1 (got {args.examples})")
    if args.count < 1000:
        p.error(f"--count must be at least 1000 (got {args.count})")
    if args.place is not None and (args.ray is None or len(args.place) != len(args.splits) + 1):
        p.error(f"--place needs --ray and one machine per stage ({len(args.splits) + 1}; got "
                f"{len(args.place)})")
    if args.max_restarts < 0:
        p.error(f"--max-restarts must be 0 or more (got {args.max_restarts})")
    return args


def default_learning_rate(stages):
    return DEEP_LEARNING_RATE if stages >= DEEP_FROM else ChainConfig.learning_rate


def parse_place(text):
    names = tuple(text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected resource names like host_a,host_b, got "
                                         f"{text!r}")
    return names


def parse_splits(text):
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer counts like 1,2,3, got {text!r}") \
            from None


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def report(run, layout, cut_short=None, data=None, image_dir=None):
    """chain.json and chain.png for a run, finished or cut short (cut_short: why, recorded in
    chain.json as "cut_short"); prints the summary line. ValueError if nothing can be
    evaluated (images.DataError, a ValueError, if a classifier's test images are missing)."""
    result = chain_eval.evaluate(run, layout, data=data, image_dir=image_dir)
    result["cut_short"] = cut_short
    (run / "chain.json").write_text(json.dumps(result, indent=1))
    chain_eval.draw(result, run / "chain.png")
    last = result["ticks"][-1] if result["ticks"] else {"cosine": []}
    if "final_mse" in result:
        learned = (f"held-out MSE {result['initial_mse']:.4f} untrained -> "
                   f"{result['final_mse']:.4f} at the end ({result['final_from']}; predicting "
                   f"the mean: {result['mean_predictor_mse']:.3f})")
    else:
        learned = (f"test accuracy {100 * result['initial_accuracy']:.1f}% untrained -> "
                   f"{100 * result['final_accuracy']:.1f}% at the end ({result['final_from']}; "
                   f"the commonest label: {100 * result['chance_accuracy']:.1f}%), test loss "
                   f"{result['initial_loss']:.3f} -> {result['final_loss']:.3f}")
    print(f"chain: {learned}; cosine(synthetic, true) at the last tick, per boundary: "
          f"{', '.join(launch.fmt(c, '.2f') for c in last['cosine'])}", flush=True)
    print(f"chain: chain.json and chain.png in {run}"
          f"{f' (cut short: {cut_short})' if cut_short else ''}", flush=True)


def run_and_report(config, env, on_start=None):
    """run_chain, then report, whatever ended the run: its time, a death it could not mend
    (cut short: exit code 1), Ctrl-C or SIGTERM (130; every process is stopped first). The
    evaluation uses what the stages saved on disk. Returns the exit code."""
    layout = stage_sizes(config.sizes, config.splits)
    try:
        cut_short = run_chain(config, env, on_start)["cut_short"]
        code = 0 if cut_short is None else 1
    except KeyboardInterrupt:
        print(f"chain: interrupted; every process it started is stopped ({config.run_dir})",
              flush=True)
        cut_short, code = "interrupted (Ctrl-C or SIGTERM)", 130
    try:
        report(config.run_dir, layout, cut_short, config.data, config.image_dir)
    except ValueError as e:                         # stopped before every stage saved
        print(f"chain: no chain.json: {e}", flush=True)
    return code


def main(argv=None):
    args = parse_args(argv)
    layout = stage_sizes(args.sizes, args.splits)
    if args.evaluate is not None:
        try:
            report(args.evaluate, layout, data=None if args.data == "toy" else args.data,
                   image_dir=args.image_dir)
        except ValueError as e:                     # a snapshot missing or of the wrong shape
            raise SystemExit(f"chain.py: cannot evaluate {args.evaluate}: {e}") from None
        return 0
    if args.ray is not None:
        raychain.import_ray()                       # one line saying how to get it, if missing
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    run = launch.new_run_dir(args.run_dir, prefix="chain-")
    config = ChainConfig(run_dir=run, sizes=args.sizes, splits=args.splits, count=args.count,
                         duration=args.duration, seed=args.seed, update=args.update,
                         conditioned=args.conditioned, learning_rate=args.learning_rate,
                         colocated=args.colocated, examples=args.examples,
                         data=args.data, image_dir=args.image_dir, batch_size=args.batch_size,
                         max_ahead=args.max_ahead, train_on=args.train_on,
                         refresh_every=args.refresh_every, ray=args.ray, place=args.place,
                         restart=launch.RestartPolicy(restart=args.restart,
                                                      max_restarts=args.max_restarts))
    print("chain.py: settings:", generate.settings_line(vars(args)), flush=True)
    env = launch.child_env()
    stop_page = launch.start_live_page(run, args, "chain")
    try:
        if args.data == "toy":
            launch.generate_data(run / "data", args.count, args.seed, env, plot=False)
        return run_and_report(config, env)
    except KeyboardInterrupt:
        print(f"chain: interrupted before the chain started ({run})", flush=True)
        return 130
    finally:
        stop_page()


if __name__ == "__main__":
    sys.exit(main())
