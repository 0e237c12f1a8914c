"""A chain of K stages, each its own process, a synthetic-gradient model at every boundary.

Run it (docs/chain.md says more):

    python chain.py                                           # 2-24-12-1 in 2 stages: the demo's
    python chain.py --sizes 2-32-32-32-32-1 --splits 1,2,3   # 4 stages, 3 boundaries, 60 s
    python chain.py --sizes 2-32-32-32-32-1 --splits 1,2,3 --update frozen   # a control
    python chain.py --colocated                                # no oracles: K stages, K processes
    python chain.py --colocated --ray HEAD:6379 --place host_a,host_b     # on a Ray cluster
    python chain.py --data fashion-mnist --colocated          # 784-256-256-256-10, 4 processes

--splits cuts the network after those layers: 1,2,3 on 2-32-32-32-32-1 gives the stages
2-32 | 32-32 | 32-32 | 32-32-1. Stage 1 is train_input.py, stages 2..K-1 train_middle.py,
stage K train_output.py; each boundary's model is an oracle.py, or with --colocated learned in
the stage above (K = 2 is the three-process system). Stage 1 streams for --duration seconds
(or until --examples); however the run ends, it is measured into chain.json and chain.png.
"""

import argparse
import dataclasses
import json
import secrets
import sys
import time
from pathlib import Path

import numpy as np

import generate
import synthgrad
import train_output
from parts import classify, options, snapshots
from runner import chain_eval, launch, processes, raychain, rayjoin
from runner.processes import Proc, Url

# The learning rate from DEEP_FROM stages on (docs/chain.md).
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
    restart: processes.RestartPolicy = processes.RestartPolicy()   # what a death leads to
    checkpoint_interval: float | None = None   # seconds (None: by size, checkpoint_every)
    examples: int | None = None            # the budget of work, --examples (None: duration)
    max_ahead: int | None = None           # stage 1's lead over stage 2, examples (None: off)
    data: str = "toy"                      # or an image set (classify.DATA_NAMES): classify
    image_dir: Path | None = None          # its IDX files (None: where datasets/ looks)
    train_on: str = "held"                 # what the stages above 1 train on (train_output.py)
    refresh_every: float = 0.2             # s between fetches of the model above a stage
    ray: str | None = None                 # run on Ray: "local" or a cluster's address
    place: tuple | None = None             # with ray: stage k on the machine declaring place[k-1]
    delay: int | None = None               # count steps, bound D at every boundary (None: free)


# chain.py --data fashion-mnist: the paper's network, every layer decoupled (docs/chain.md).
IMAGES = dict(sizes=(784, 256, 256, 256, 10), splits=(1, 2, 3), count=60_000, batch_size=100,
              learning_rate=1e-4, max_ahead=200, train_on="arrivals", refresh_every=0.05)
# Counting steps: the bound by default, and the layers at one process's rate (docs/chain.md).
IMAGE_DELAY, COUNTED_LEARNING_RATE = 1, 3e-4


def stage_sizes(sizes, splits):
    """[(widths of stage k's layers)]: the network cut after each layer count in splits."""
    cuts = [0, *splits, len(sizes) - 1]
    return [tuple(sizes[a:b + 1]) for a, b in zip(cuts, cuts[1:], strict=False)]


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


# --- The chain's processes. --------------------------------------------------------------------

# Checkpoints every 5 s, or less often if large: timings are not the disk's (docs/chain.md).
CHECKPOINT_MIN_S, CHECKPOINT_BYTES_PER_S = 5.0, 2e6


def checkpoint_every(config, held_width, sizes):
    """config.checkpoint_interval, else seconds between checkpoints of a process holding
    config.count rows of held_width float64 values and layers of `sizes` with Adam's moments."""
    if config.checkpoint_interval is not None:
        return config.checkpoint_interval
    params = sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False))
    size = 8 * (config.count * held_width + 3 * params)
    return round(max(CHECKPOINT_MIN_S, size / CHECKPOINT_BYTES_PER_S), 1)


def chain_procs(config):
    """The chain's processes in start order: the oracles (none if colocated), the stages from
    the top down (each needs the address above it), stage 1 last (its end ends the run)."""
    run, layout = config.run_dir, stage_sizes(config.sizes, config.splits)
    K = len(layout)

    def proc(name, script, key, seed, held_width, sizes, *argv):
        checkpoint = processes.checkpoint_path(run, key)
        return Proc(name, script, (
            *argv, "--seed", config.seed + (seed if config.delay is None else 0),
            "--metrics", run / "metrics" / f"{key}.jsonl", "--checkpoint", checkpoint,
            "--checkpoint-interval", checkpoint_every(config, held_width, sizes)),
            key, run / f"{key}.log", checkpoint)

    def model(b):                        # where boundary b's model is learned
        return Url(f"stage {b + 1}" if config.colocated else f"boundary {b} oracle")

    def every_stage(k, oracle):          # what each stage is told, whichever its script
        return ("--progress-dir", run / "progress" / f"stage{k}",
                "--snapshot-interval", config.snapshot_interval, "--wire", config.wire,
                "--batch-size", config.batch_size, "--learning-rate", config.learning_rate,
                *(("--colocated",) if config.colocated else ("--oracle-url", oracle)),
                *(() if config.delay is None else (              # counting steps
                    "--delay", config.delay, "--network", train_output.format_sizes(
                        config.sizes), "--splits", ",".join(map(str, config.splits)))))
    procs = [proc(f"boundary {b} oracle", "oracle.py", f"boundary{b}", b, 2 * w + 1,
                  (w + 1, 12, w), "--port", 0, "--width", w, "--max-examples", config.count,
                  "--report-every", 0, "--conditioned" if config.conditioned else
                  "--no-conditioned")
             for b, w in enumerate((s[-1] for s in layout[:-1] if not config.colocated), 1)]
    for k in range(K, 1, -1):
        sizes = layout[k - 1]
        argv = ("--port", 0, "--sizes", train_output.format_sizes(sizes),
                "--max-examples", config.count, "--report-every", 0,
                "--train-on", config.train_on, *every_stage(k, model(k - 1)),
                *(() if config.delay is None else ("--stage", k)))
        if config.data != "toy":                   # a classifier's stage
            argv += ("--activation", "relu", "--classes", config.sizes[-1],
                     *(("--loss", "cross-entropy") if k == K else ()))
        script, role = ("train_output.py", ("--no-live",)) if k == K else (   # chain.py's page
            "train_middle.py", ("--above-oracle-url", model(k), "--next-url",
                                Url(f"stage {k + 1}"), "--update", config.update,
                                "--refresh-every", config.refresh_every))
        procs.append(proc(f"stage {k}", script, f"stage{k}", 10 * k, sizes[0] + 1, sizes,
                          *argv, *role))
    first = layout[0]                              # 2 -> ... -> h, or an image's pixels
    data = ("--data-dir", run / "data" if config.data_dir is None else config.data_dir)
    if config.data != "toy":                       # the training images, count of them
        data = ("--data", config.data, "--examples", config.count,
                *(("--image-dir", config.image_dir) if config.image_dir else ()))
    return [*procs, proc(
        "stage 1", "train_input.py", "stage1", 0, 0, first, *data,
        *(("--width", first[-1]) if len(first) == 2 else
          ("--sizes", train_output.format_sizes(first))),
        "--output-url", Url("stage 2"), "--update", config.update, "--duration", config.duration,
        "--refresh-every", config.refresh_every, "--report-every", 1,
        *(() if config.examples is None else ("--until-trained", config.examples)),
        *(("--until-url", Url(f"stage {K}")) if config.train_on == "arrivals" else ()),
        *(() if config.max_ahead is None or config.delay is not None else
          ("--max-ahead", config.max_ahead)),
        *every_stage(1, model(1)))]


# --- Running them: here or on Ray, one machinery. ------------------------------------------------

def run_chain(config, env=None, on_start=None):
    """chain_procs run by processes.run, supervised here or (config.ray) as Ray actors; each
    boundary model's weights saved at every snapshot tick. Returns each server's last GET
    /status by key ("stage2", "boundary1"); on_start(name, pid) hears of every (re)start."""
    # One BLAS thread a process unless told otherwise (docs/chain.md).
    env = {"OPENBLAS_NUM_THREADS": "1", **(launch.child_env() if env is None else env)}
    if config.ray is not None and not env.get("SYNTHGRAD_TOKEN"):    # never open on a cluster
        env["SYNTHGRAD_TOKEN"] = secrets.token_hex(16)
        print("chain: no SYNTHGRAD_TOKEN set: a fresh one for this run, which every stage "
              "asks of every request", flush=True)
    run, layout = config.run_dir, stage_sizes(config.sizes, config.splits)
    K, token = len(layout), env.get("SYNTHGRAD_TOKEN") or None
    (run / "metrics").mkdir(parents=True, exist_ok=True)
    chain_eval.write_run_data(run, config.data, config.image_dir)
    if config.ray is None:
        procs = chain_procs(config)
        spawner = processes.Supervisor(config.restart, "chain", env, on_start, token)
    else:                                        # paths on each machine, a process's files
        root = raychain.node_root(run)           # collected into run as they come
        procs = chain_procs(dataclasses.replace(config, run_dir=root))
        spawner = raychain.RayChain(
            run, config.ray, procs, root, ray_place(config, procs),
            config.restart.max_restarts if config.restart.restart else 0, token, on_start,
            files={"stage 1": None if config.data != "toy" or config.data_dir is not None else
                   {f"data/{n}": (run / "data" / n).read_bytes() for n in ("x.npy", "y.npy")}})
    models = [f"stage {b + 1}" if config.colocated else f"boundary {b} oracle"
              for b in range(1, K)]
    next_tick, interval = None, config.snapshot_interval

    def tick(urls):                    # 0.3 s after a tick, when the stages' snapshots are out
        nonlocal next_tick
        now = time.time()
        if next_tick is not None and now >= next_tick + 0.3:
            save_boundary_weights(run, [processes.client(urls[m], token) for m in models],
                                  layout, next_tick)
        if next_tick is None or now >= next_tick + 0.3:
            next_tick = (int(now // interval) + 1) * interval

    def banner(urls):
        where = ("each learned beside the stage above it" if config.colocated else
                 "each learned by an oracle")
        counted = 2 if config.train_on == "held" else K          # --examples's stage
        until = ("" if config.examples is None else
                 f" at most, until stage {counted} has trained on {config.examples:,} examples")
        return (f"{K} stages {' | '.join(train_output.format_sizes(s) for s in layout)}, "
                f"{K - 1} boundaries ({where}): {len(procs)} "
                f"{'processes' if config.ray is None else 'Ray actors'}; stage 1 streams for "
                f"{config.duration:.0f} s{until} (logs in {run})")
    with spawner:
        final = processes.run(procs, spawner, config.duration, config.status_every,
                              run / "metrics" / "stage1.jsonl", banner, tick)
    return final | ({f"boundary{b}": final[f"stage{b + 1}"] for b in range(1, K)}
                    if config.colocated else {})


def ray_place(config, procs):
    """--place as {process name: custom resource}: an oracle goes with the stage above it."""
    def machine(p):                    # "stage k" -> place[k - 1], "boundary b oracle" -> place[b]
        number = int(p.name.split()[1])
        return config.place[number - 1 if p.name.startswith("stage") else number]
    return None if config.place is None else {p.name: machine(p) for p in procs}


def save_boundary_weights(run, peers, layout, tick):
    """Each boundary model's weights (GET /weights) as progress/boundary<b>/model_<tick>.npz,
    to measure its synthetic gradients against the true ones later."""
    for b, peer in enumerate(peers, start=1):
        try:
            weights, conditioned, _ = peer.weights(layout[b - 1][-1])
        except synthgrad.PeerError:
            continue
        snapshots.written(f"boundary models into {run / 'progress'}", snapshots.write_npz,
                          run / "progress" / f"boundary{b}" / f"model_{tick}.npz",
                          {**{f"w{k}": w for k, w in enumerate(weights)},
                           "conditioned": np.array(conditioned), "time": np.array(tick)})


# --- The script. -------------------------------------------------------------------------------

def parse_args(argv):
    d = ChainConfig
    p = argparse.ArgumentParser(description="Run a network as a chain of stages, one process "
                                "each, a synthetic-gradient model at every boundary; measure it.")
    classify.data_arguments(p, what="learn",
                           toy="the toy, generated into the run (default), or ")
    p.add_argument("--sizes", type=train_output.parse_sizes, default=None,
                   help="the network's widths (default 2-24-12-1; with --data "
                        "784-256-256-256-10, the paper's)")
    p.add_argument("--splits", type=train_output.parse_splits, default=None,
                   help="cut the network after these many layers, e.g. 1,2,3 (default 1: the "
                        "three-process system; with --data 1,2,3)")
    p.add_argument("--duration", type=float, default=d.duration,
                   help="seconds the first stage streams (default %(default)g)")
    p.add_argument("--examples", type=int, default=None, metavar="N",
                   help="end the run once stage 2 (with --train-on arrivals the last stage) has "
                        "trained on N examples, --duration then only a limit (default: none)")
    p.add_argument("--max-ahead", type=int, default=None, metavar="N",
                   help="stage 1 hands off at most N examples beyond what stage 2 has trained "
                        "on (default: off; 200 with --data --delay free)")
    p.add_argument("--delay", type=parse_delay, default=None, metavar="D",
                   help="count steps: no stage starts step t before its boundary's model has "
                        f"learned from step t - 1 - D (default free; with --data {IMAGE_DELAY})")
    p.add_argument("--train-on", choices=("held", "arrivals"), default=None,
                   help="what stages 2..K train on: held, every example's latest activation "
                        "(default), or arrivals, each once (default with --data)")
    p.add_argument("--count", type=int, default=None,
                   help="training examples (default 20,000; with --data all 60,000 images)")
    p.add_argument("--update", choices=("synthetic", "frozen", "random"), default=d.update,
                   help="what moves every stage below the last (default synthetic; frozen and "
                        "random are the controls)")
    p.add_argument("--colocated", action="store_true",
                   help="learn each boundary's model beside the stage above it, not in an "
                        "oracle.py of its own: K processes, not 2K - 1 (default: off)")
    p.add_argument("--no-conditioned", dest="conditioned", action="store_false",
                   help="boundary models see h only (DNI), not h and the target (cDNI)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help=f"every stage's Adam learning rate (default: the scripts' "
                        f"{d.learning_rate}; {DEEP_LEARNING_RATE} from {DEEP_FROM} stages on)")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help=f"run every process as a Ray actor (needs {rayjoin.RAY_PIN}), on a local "
                        "Ray or the cluster at ADDRESS, e.g. HEAD:6379 (default: off)")
    p.add_argument("--place", type=parse_place, default=None, metavar="R1,R2,...",
                   help="with --ray: stage k on the machine declaring the custom resource Rk, "
                        "an oracle with the stage above it (default: wherever Ray finds a CPU)")
    p.add_argument("--max-restarts", type=int, default=processes.RestartPolicy.max_restarts,
                   help=f"restarts of one process within {processes.RestartPolicy.window:g} s "
                        "(with --ray: in the run) before the run ends (default %(default)s)")
    launch.run_arguments(p, "the run (cut short, still evaluated)", "chain-",
                         shown="each stage and boundary")
    p.add_argument("--evaluate", type=Path, default=None, metavar="RUN",
                   help="run nothing: measure and draw the chain run in RUN, given --sizes and "
                        "--splits as it ran (default: run one)")
    args = p.parse_args(argv)
    defaults = {k: getattr(d, k) for k in IMAGES} if args.data == "toy" else IMAGES
    if args.delay is None:
        args.delay = "free" if args.data == "toy" else IMAGE_DELAY
    args.delay = None if args.delay == "free" else args.delay
    if args.delay is not None and args.data == "toy":
        p.error("--delay D needs --data: the toy's chain trains on what it holds, pass after "
                "pass (--delay free)")
    if args.delay is not None and args.max_ahead is not None:
        p.error("--max-ahead bounds a free chain's lead in examples; --delay D counts steps and "
                "bounds it itself: give --delay free to use --max-ahead")
    if args.delay is not None and args.learning_rate is None:
        args.learning_rate = COUNTED_LEARNING_RATE
    for name, value in defaults.items():               # what the command line left to us
        if getattr(args, name, None) is None:
            setattr(args, name, default_learning_rate(len(args.splits) + 1)
                    if name == "learning_rate" and args.data == "toy" else value)
    try:
        check_layout(args.sizes, args.splits, args.data)
    except ValueError as e:
        p.error(str(e))
    if args.data != "toy" and not args.colocated and args.evaluate is None:
        p.error("--data needs --colocated: the boundary models of a classifier learn beside the "
                "stages (oracle.py is the toy's Keras model, conditioned on one number)")
    if args.data != "toy" and args.count > 60_000:
        p.error(f"--count must be at most the 60,000 training images (got {args.count})")
    if args.colocated and not args.conditioned:
        p.error("--colocated learns the oracle's default model, conditioned on the target "
                "(cDNI): --no-conditioned needs the oracles")
    options.check_positive(p, args, "duration", "learning_rate")
    options.check_at_least(p, args, 1, "max_ahead", "examples")
    options.check_at_least(p, args, 1000, "count")
    if args.data == "toy":                             # the images have their own test set
        generate.refuse_heldout_seed(p, args.seed)
    if args.place is not None and (args.ray is None or len(args.place) != len(args.splits) + 1):
        p.error(f"--place needs --ray and one machine per stage ({len(args.splits) + 1}; got "
                f"{len(args.place)})")
    options.check_at_least(p, args, 0, "max_restarts")
    return args


def default_learning_rate(stages):
    return DEEP_LEARNING_RATE if stages >= DEEP_FROM else ChainConfig.learning_rate


def parse_place(text):
    names = tuple(text.split(","))
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected resource names like host_a,host_b, got "
                                         f"{text!r}")
    return names


def parse_delay(text):
    if text == "free":
        return text
    try:
        delay = int(text)
    except ValueError:
        delay = -1
    if delay < 0:
        raise argparse.ArgumentTypeError(f"expected a number of steps (0 or more) or free, got "
                                         f"{text!r}")
    return delay


def report(run, layout, cut_short=None, data=None, image_dir=None, events=()):
    """chain.json (with why it was cut short and its deaths and restarts) and chain.png for a
    run, and the summary printed; ValueError if nothing can be evaluated."""
    result = chain_eval.evaluate(run, layout, data=data, image_dir=image_dir)
    result["cut_short"], result["events"] = cut_short, list(events)
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
          f"{', '.join(generate.fmt(c, '.2f') for c in last['cosine'])}", flush=True)
    if "delay_steps" in result:
        print("chain: delay in steps of the synthetic gradients, mean and max per boundary: " +
              ", ".join(f"{points[-1][1]:.2f} and {points[-1][2]}" for points in
                        result["delay_steps"].values() if points), flush=True)
    print(f"chain: chain.json and chain.png in {run}"
          f"{f' (cut short: {cut_short})' if cut_short else ''}", flush=True)


def run_and_report(config, env, on_start=None):
    """run_chain, then report, whatever ended the run (the exit code: launch.outcome's). The
    evaluation uses what the stages saved on disk."""
    final = {}
    cut_short, code = launch.outcome("chain", config.run_dir, lambda: final.update(
        run_chain(config, env, on_start)) or final["cut_short"])
    try:
        report(config.run_dir, stage_sizes(config.sizes, config.splits), cut_short,
               config.data, config.image_dir, final.get("events", ()))
    except ValueError as e:                         # stopped before every stage saved
        print(f"chain: no chain.json: {e}", flush=True)
    return code


def main(argv=None):
    args = parse_args(argv)
    if args.evaluate is not None:
        try:
            report(args.evaluate, stage_sizes(args.sizes, args.splits),
                   data=None if args.data == "toy" else args.data, image_dir=args.image_dir)
        except ValueError as e:                     # a snapshot missing or of the wrong shape
            raise SystemExit(f"chain.py: cannot evaluate {args.evaluate}: {e}") from None
        return 0
    if args.ray not in (None, "local"):             # a bad start ends here, before any folder
        processes.stop_on_signals()
        try:
            rayjoin.connect(args.ray, args.place)
        except KeyboardInterrupt:
            print(f"chain.py: interrupted while joining the Ray cluster at {args.ray}")
            return 130
    elif args.ray is not None:
        rayjoin.import_ray()                       # one line saying how to get it, if missing
    with launch.session(args, "chain", "chain-") as (run, env):
        policy = processes.RestartPolicy(args.restart, args.max_restarts)
        config = launch.config_from(ChainConfig, args, run_dir=run, restart=policy)
        if args.data == "toy":
            launch.generate_data(run / "data", args.count, args.seed, env, plot=False)
        return run_and_report(config, env)


if __name__ == "__main__":
    sys.exit(main())
