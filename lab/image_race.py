"""The race on real work: a chain of K stages classifying Fashion-MNIST (or MNIST) against
backprop of the same network in one process on the same K cores, to the same test-accuracy
levels. Run by hand, never in the tests:

    python -m lab.image_race                           # K = 2, widths 256,1024, 3 seeds (~20 min)
    python -m lab.image_race --stages 2,4,8 --seeds 1 --seconds 40   # tools/image-race-16-cores.sh
    python -m lab.image_race --help

The network is 784-W-...-W-10 with K hidden layers of width W, every layer but the last its own
stage (the last stage holds W -> W -> 10): the paper's feed-forward networks, every layer
decoupled. Both sides take chain.py's settings for images: ReLU with He's init, softmax
cross-entropy, Adam at chain.IMAGES's learning rate on every layer, minibatches of 100, the same
training images, the same test images (--test of the 10,000):

- one process: sgd.make_network's layers trained by plain backprop in a shuffled order, OpenBLAS
  allowed K threads, test accuracy measured every --interval seconds of training (measuring is
  not counted: the comparison favours it);
- the chain: chain.run_chain --data --colocated with chain.py's defaults for images (stage 1
  paced to stage 2, at most --max-ahead ahead: 1,000 here, not chain.py's 200, see
  RACE_MAX_AHEAD; every stage training on each activation once as it arrives, cDNI boundary
  models), one OpenBLAS thread per process, snapshots every --interval seconds, measured
  afterwards (chain_eval.evaluate), time counted from the moment stage 1 began streaming.

For each K, width and seed: the first time each side reached each accuracy level, the accuracy at
fixed times, examples per second. image-race.md (the table), image-race.json and image-race.png
(accuracy against seconds, one panel per K and width) go into the run folder.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import chain
import sgd
from datasets import images
from lab import race
from parts import children, classify, optimizers, snapshots
from runner import chain_eval, launch

LEVELS = (0.75, 0.80, 0.84)
# The chain's --max-ahead in the race: chain.py's 200 steadies its 4 stages sharing 2 cores; a
# race gives each stage a core, and there 1,000 let stage 1 stream twice as fast (docs/chain.md).
RACE_MAX_AHEAD = 1_000
BATCH_SIZE, LEARNING_RATE = chain.IMAGES["batch_size"], chain.IMAGES["learning_rate"]


def layout(width, stages):
    """(sizes, splits): 784-W x K-10, cut after layers 1 .. K-1."""
    return (784, *([width] * stages), 10), tuple(range(1, stages))


def first_time_at(points, level):
    """The first seconds at which (seconds, accuracy) points reach accuracy >= level, or None."""
    return next((s for s, a in points if a >= level), None)


def accuracy_at(points, seconds):
    """The accuracy of the last (seconds, accuracy) point at or before `seconds` (1% later
    allowed: a side's last measurement comes a step after its time is up), or None."""
    before = [a for s, a in points if s <= 1.01 * seconds]
    return before[-1] if before else None


# --- One process: plain backprop of the whole network. -------------------------------------------

def train_one_process(data, image_dir, sizes, seconds, interval, seed, count, test):
    """Backprop of sizes for `seconds` seconds of training, test accuracy every `interval`
    seconds of it. Returns {"points": [(seconds, accuracy)], "examples_per_s", "cpu_per_s"}."""
    x, labels = classify.load_training(data, None, image_dir)
    x, labels = x[:count], labels[:count].astype(np.int64)
    x_test, y_test = classify.load_test(data, image_dir, test)
    rng = np.random.default_rng(seed)
    layers = sgd.make_network(rng, sizes, sgd.ReLU, "he")
    optimizer = optimizers.make("adam", layers, LEARNING_RATE)

    def accuracy():
        return sgd.classification_scores(layers, x_test, y_test)[0]

    points, trained, examples, cpu, order = [(0.0, accuracy())], 0.0, 0, 0.0, []
    while trained < seconds:
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < interval:
            if len(order) < BATCH_SIZE:
                order = list(rng.permutation(len(x)))
            idx, order = order[:BATCH_SIZE], order[BATCH_SIZE:]
            sgd.backprop(layers, x[idx], labels[idx], sgd.SoftmaxCrossEntropy)
            optimizer.step()
            examples += len(idx)
        trained += time.perf_counter() - t0
        cpu += time.process_time() - c0
        points.append((round(trained, 3), accuracy()))
    return {"points": points, "examples_per_s": examples / trained, "cpu_per_s": cpu / trained}


def one_process(out_dir, args, width, stages, seed):
    """train_one_process in a child process whose OpenBLAS may use `stages` threads."""
    out = out_dir / f"one-w{width}-k{stages}-s{seed}.json"
    env = {**launch.child_env(), "OPENBLAS_NUM_THREADS": str(stages),
           "OMP_NUM_THREADS": str(stages)}
    subprocess.run(children.script_argv(
        "lab.image_race", "--one-process", out, "--data", args.data,
        *(["--image-dir", args.image_dir] if args.image_dir else []), "--widths", width,
        "--stages", stages, "--seconds", args.seconds, "--interval", args.interval,
        "--seed", seed, "--count", args.count, "--test", args.test),
        env=env, check=True, cwd=children.TOP)
    return json.loads(out.read_text())


# --- The chain. ----------------------------------------------------------------------------------

def chain_side(out_dir, args, width, stages, seed):
    """A --colocated chain of the race's network with chain.py's image settings, one OpenBLAS
    thread a process, measured from its snapshots (deleted afterwards; chain.json stays)."""
    sizes, splits = layout(width, stages)
    run = out_dir / f"chain-w{width}-k{stages}-s{seed}"
    config = chain.ChainConfig(
        run_dir=run, sizes=sizes, splits=splits, count=args.count, duration=args.seconds,
        seed=seed, snapshot_interval=args.interval, colocated=True, data=args.data,
        image_dir=args.image_dir, max_ahead=args.max_ahead,
        **{k: v for k, v in chain.IMAGES.items()
           if k not in ("sizes", "splits", "count", "max_ahead")})
    env = {**launch.child_env(), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    chain.run_chain(config, env)
    result = chain_eval.evaluate(run, chain.stage_sizes(sizes, splits), heldout=args.test,
                                 cosine_points=500, data=args.data, image_dir=args.image_dir)
    (run / "chain.json").write_text(json.dumps(result, indent=1))
    shutil.rmtree(run / "progress", ignore_errors=True)       # GBs of snapshots at wide widths
    streamed = snapshots.read_metrics(run / "metrics" / "stage1.jsonl")[-1]
    per_stage = {"stage1": streamed["examples"] / max(streamed["seconds"], 1e-9)}
    for k in range(2, stages + 1):
        per_stage[f"stage{k}"] = race.trained_per_s(run / "metrics" / f"stage{k}.jsonl")
    return {"points": [(0.0, result["initial_accuracy"])] +
            [(r["seconds"], r["test_accuracy"]) for r in result["ticks"]] +
            [(args.seconds, result["final_accuracy"])],
            "examples_per_s": per_stage,
            "cosine_last_tick": result["ticks"][-1]["cosine"] if result["ticks"] else []}


# --- The whole race. -----------------------------------------------------------------------------

def summarise(runs, seconds):
    """Per side, over the seeds: time to each level and accuracy at a quarter, half and all of
    the run ({key: [value or None per seed]}), and examples per second (seed means)."""
    times = [seconds / 4, seconds / 2, seconds]
    out = {"times": times}
    for side in ("one", "chain"):
        rs = [r[side] for r in runs]
        out[side] = {"to_level": {f"{level:g}": [first_time_at(r["points"], level) for r in rs]
                                  for level in LEVELS},
                     "accuracy_at": {f"{t:g}": [accuracy_at(r["points"], t) for r in rs]
                                     for t in times}}
    out["one"]["examples_per_s"] = float(np.mean([r["one"]["examples_per_s"] for r in runs]))
    out["chain"]["slowest_stage_per_s"] = float(np.mean(
        [min(v for v in r["chain"]["examples_per_s"].values() if v is not None) for r in runs]))
    return out


def cell_times(ts):
    """Seconds to a level over the seeds: "mean (min-max)", with "n/m" reached if not all."""
    got = [t for t in ts if t is not None]
    if not got:
        return "not reached"
    text = f"{np.mean(got):.1f}" + (f" ({min(got):.1f}-{max(got):.1f})" if len(got) > 1 else "")
    return text if len(got) == len(ts) else f"{text}, {len(got)}/{len(ts)} reached"


def cell_accuracy(values):
    got = [v for v in values if v is not None]
    if not got:
        return "-"
    return f"{100 * np.mean(got):.1f}%" + (
        f" ({100 * min(got):.1f}-{100 * max(got):.1f})" if len(got) > 1 else "")


def markdown(results, machine):
    lines = [f"Machine: {machine}.", "",
             "| K, width | side | examples/s (chain: slowest stage) | "
             + " | ".join(f"s to {100 * lv:g}%" for lv in LEVELS) + " | "
             + " | ".join(f"accuracy at {t:g} s" for t in results[0]["summary"]["times"]) + " |",
             "|---|---|---|" + "---|" * (len(LEVELS) + 3)]
    for r in results:
        s = r["summary"]
        for side, name, speed in (("one", "one process", s["one"]["examples_per_s"]),
                                  ("chain", "chain", s["chain"]["slowest_stage_per_s"])):
            lines.append(
                f"| {r['stages']}, {r['width']} | {name} | {speed:,.0f} | "
                + " | ".join(cell_times(s[side]["to_level"][f"{lv:g}"]) for lv in LEVELS) + " | "
                + " | ".join(cell_accuracy(s[side]["accuracy_at"][f"{t:g}"]) for t in s["times"])
                + " |")
    return "\n".join(lines)


def draw(results, path):
    """Test accuracy against seconds, one panel per (K, width), one line per side and seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.6), squeeze=False)
    for ax, r in zip(axes[0], results):
        for side, colour, name in (("one", "tab:blue", "one process, backprop"),
                                   ("chain", "tab:orange", "chain, cDNI")):
            for k, run in enumerate(r["runs"]):
                s, a = zip(*run[side]["points"])
                ax.plot(s, a, color=colour, alpha=0.8, label=name if k == 0 else None)
        for level in LEVELS:
            ax.axhline(level, color="grey", lw=0.5, ls=":")
        ax.set(title=f"K = {r['stages']}, width {r['width']}", xlabel="seconds of training",
               ylim=(0, 1))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine_line(args):
    return (f"{len(os.sched_getaffinity(0))} cores ({race._cpu_model()}), Python "
            f"{sys.version.split()[0]}, numpy {np.__version__}, OpenBLAS kernel "
            f"{race.blas_info().get('core', '?')}; {args.data}, {args.count:,} training images, "
            f"{args.test:,} test images, Adam at {LEARNING_RATE:g} on every layer, minibatch "
            f"{BATCH_SIZE}, the chain's stage 1 at most {args.max_ahead:,} ahead, "
            f"{args.seconds:g} s a run, {args.seeds} seeds")


def main_race(args):
    images.find(args.data, args.image_dir, download=False)     # one line now, not mid-race
    out_dir = launch.new_run_dir(args.run_dir, "image-race-")
    machine = machine_line(args)
    print(f"image race: {machine}; writing into {out_dir}", flush=True)
    results = []
    for K in args.stages:
        for width in args.widths:
            runs = []
            for seed in range(args.seeds):
                print(f"image race: K {K}, width {width}, seed {seed}", flush=True)
                runs.append({"one": one_process(out_dir, args, width, K, seed),
                             "chain": chain_side(out_dir, args, width, K, seed)})
                print(f"image race:   one process {runs[-1]['one']['points'][-1][1]:.3f}, "
                      f"chain {runs[-1]['chain']['points'][-1][1]:.3f} at the end", flush=True)
            results.append({"stages": K, "width": width, "seconds": args.seconds, "runs": runs,
                            "summary": summarise(runs, args.seconds)})
            (out_dir / "image-race.json").write_text(json.dumps(
                {"machine": machine, "results": results}, indent=1))
    table = markdown(results, machine)
    (out_dir / "image-race.md").write_text(table + "\n")
    draw(results, out_dir / "image-race.png")
    print(table)
    print(f"image race: image-race.md, .json and .png in {out_dir}", flush=True)
    return 0


def parse_args(argv):
    p = argparse.ArgumentParser(description="The race on images: a chain of K co-located stages "
                                            "against backprop in one process on K cores.")
    classify.data_arguments(p, what="classify (the toy's race is python -m lab.bench --race)",
                            images_only=True)
    p.add_argument("--stages", type=race.ints, default=[2],
                   help="K, the stages of the chain and the BLAS threads of the one process, one "
                        "race per value (default 2, this machine's cores)")
    p.add_argument("--widths", type=race.ints, default=[256, 1024],
                   help="the hidden widths W (default 256,1024)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per setting (default 3)")
    p.add_argument("--seconds", type=float, default=60.0,
                   help="seconds of training per run and side (default 60)")
    p.add_argument("--interval", type=int, default=2,
                   help="seconds between test measurements on both sides (default 2)")
    p.add_argument("--count", type=int, default=60_000,
                   help="training images (default all 60,000)")
    p.add_argument("--test", type=int, default=10_000,
                   help="test images measured (default all 10,000)")
    p.add_argument("--max-ahead", type=int, default=RACE_MAX_AHEAD, metavar="N",
                   help="the chain's flow control (chain.py --max-ahead; default "
                        f"{RACE_MAX_AHEAD:,}, not chain.py's {chain.IMAGES['max_ahead']}: with "
                        "K = 2 it reached 75%% in 4.5 s, not 10, and ended level)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="folder for everything (default a new runs/image-race-<date-time>)")
    p.add_argument("--one-process", type=Path, default=None, metavar="OUT",
                   help=argparse.SUPPRESS)                  # the race's own child
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.stages) < 2:
        p.error("--stages must be at least 2: a chain of one stage is the one process")
    for name, low in (("seeds", 1), ("interval", 1), ("count", 1000), ("test", 100),
                      ("max_ahead", 1)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be at least {low} (got "
                    f"{getattr(args, name)})")
    if not (args.seconds > 0 and math.isfinite(args.seconds)):
        p.error(f"--seconds must be positive (got {args.seconds:g})")
    if args.count > 60_000 or args.test > 10_000:
        p.error("--count is at most 60,000 and --test at most 10,000")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.one_process is not None:
        sizes, _ = layout(args.widths[0], args.stages[0])
        result = train_one_process(args.data, args.image_dir, sizes, args.seconds,
                                   args.interval, args.seed, args.count, args.test)
        args.one_process.write_text(json.dumps(result))
        return 0
    try:
        return main_race(args)
    except images.DataError as e:
        raise SystemExit(f"image race: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
