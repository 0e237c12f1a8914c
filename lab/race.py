"""The race: a chain of K stages in K processes against backprop of the same network in one
process on the same K cores, to the same held-out MSE levels. Run by hand, never in the tests:

    python -m lab.bench --race                        # K = this machine's cores (2 here), ~25 min
    python -m lab.bench --race --stages 2,4,8 --widths 256,1024 --batch-sizes 100 --seeds 1 \\
        --seconds 15                              # the 16-core machine's run (tools/race-16-cores.sh)
    python -m lab.bench --distribution-cost           # the two-stage system against dni.py, 5 seeds
    python -m lab.bench --help

The network is 2-W-...-W-1 with K + 1 hidden layers of width W, cut after layers 2, 3, ..., K:
every stage holds one W x W layer (the first also the 2 -> W input layer, the last the W -> 1
output layer), so the stages' work is equal and a chain could, at best, run K times as fast as
one process. Both sides: the same 20,000 examples, Adam at the same learning rate on every
layer, the same minibatch, the same 5,000 held-out points.

- one process: sgd.make_network's layers trained by plain backprop (dni.minibatches' order),
  OpenBLAS allowed K threads (OPENBLAS_NUM_THREADS = K), held-out MSE measured every
  --interval seconds of training (measuring is not counted: the comparison favours it);
- the chain: chain.run_chain with --colocated (K processes, each boundary's model learned in the
  stage above it), one OpenBLAS thread per process, snapshots every --interval seconds,
  measured afterwards from the snapshots (chain_eval.evaluate), time counted from the moment stage 1
  began streaming.

For each width, minibatch and seed: examples per second of each stage and of the one process,
CPU seconds per second of each process, held-out MSE at fixed times, and the first time each
side's held-out MSE was at or below each level. race.md (the tables), race.json and race.png
(time to each level against width, one line per method) go into the run folder.
"""

import argparse
import ctypes
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
import dni
import generate
import sgd
from parts import children, optimizers, snapshots
from runner import chain_eval, launch

LEVELS = (0.05, 0.02, 0.01)
COUNT, HELDOUT = 20_000, 5_000
LEARNING_RATE = 0.001          # chain.py's from 4 stages on: the deep chains learn at it


def race_layout(width, stages):
    """(sizes, splits) of the race's network for K = stages: 2-W x (K + 1)-1, cut after layers
    2, ..., K, so every stage holds one W x W layer."""
    return (2, *([width] * (stages + 1)), 1), tuple(range(2, stages + 1))


def first_time_below(points, level):
    """The first seconds at which (seconds, mse) points reach mse <= level, or None."""
    return next((s for s, m in points if m <= level), None)


def mse_at(points, seconds):
    """The held-out MSE of the last (seconds, mse) point at or before `seconds`, or None."""
    before = [m for s, m in points if s <= seconds]
    return before[-1] if before else None


def trained_per_s(metrics_path):
    """Examples a server stage trained per second over the second half of its metrics lines."""
    rows = snapshots.read_metrics(metrics_path)
    rows = rows[len(rows) // 2:]
    if len(rows) < 2 or rows[-1]["time"] <= rows[0]["time"]:
        return None
    return ((rows[-1]["examples_trained"] - rows[0]["examples_trained"]) /
            (rows[-1]["time"] - rows[0]["time"]))


def blas_info():
    """What numpy's BLAS says of itself: its configuration line and the kernel it chose for
    this processor (OpenBLAS's core name), read from the loaded library; {} if not OpenBLAS."""
    found = sorted({line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                    if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    info = {}
    for path in found[:1]:
        lib = ctypes.CDLL(path)
        for key, names in (("core", ("scipy_openblas_get_corename64_", "openblas_get_corename")),
                           ("config", ("scipy_openblas_get_config64_", "openblas_get_config"))):
            for name in names:
                f = getattr(lib, name, None)
                if f is not None:
                    f.restype = ctypes.c_char_p
                    info[key] = f().decode()
                    break
    return info


# --- One process: plain backprop of the whole network. -------------------------------------------

def train_one_process(data_dir, sizes, batch_size, seconds, interval, seed,
                      learning_rate=LEARNING_RATE, heldout=HELDOUT):
    """Backprop of sizes in this process for `seconds` seconds of training, held-out MSE every
    `interval` seconds of it. Returns {"points": [(seconds, mse)], "examples_per_s",
    "cpu_per_s": CPU seconds (all threads) per second of training, "blas"}."""
    x, y = generate.load_dataset(data_dir)                    # (N, 2), (N,)
    x_test, y_test = generate.heldout(heldout)
    rng = np.random.default_rng(seed)
    layers = sgd.make_network(rng, sizes)
    optimizer = optimizers.make("adam", layers, learning_rate)
    batches = dni.minibatches(len(x), batch_size, rng)
    points, trained, examples, cpu = [(0.0, sgd.mse(layers, x_test, y_test))], 0.0, 0, 0.0
    while trained < seconds:
        # train for `interval` seconds (the only time that counts), then measure
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < interval:
            idx = next(batches)
            sgd.backprop(layers, x[idx], y[idx])
            optimizer.step()
            examples += len(idx)
        trained += time.perf_counter() - t0
        cpu += time.process_time() - c0
        points.append((round(trained, 3), sgd.mse(layers, x_test, y_test)))
        if not math.isfinite(points[-1][1]):
            break
    return {"points": points, "examples_per_s": examples / trained, "cpu_per_s": cpu / trained,
            "blas": blas_info()}


def one_process(out_dir, data_dir, width, stages, batch_size, seconds, interval, seed,
                learning_rate):
    """train_one_process in a child process whose OpenBLAS may use `stages` threads."""
    out = out_dir / f"one-w{width}-b{batch_size}-k{stages}-s{seed}.json"
    env = {**launch.child_env(), "OPENBLAS_NUM_THREADS": str(stages),
           "OMP_NUM_THREADS": str(stages)}
    subprocess.run(children.script_argv(
        "lab.race", "--one-process", out, "--data-dir", data_dir, "--width", width, "--stages",
        stages, "--batch-size", batch_size, "--seconds", seconds, "--interval", interval,
        "--seed", seed, "--learning-rate", learning_rate), env=env, check=True, cwd=children.TOP)
    return json.loads(out.read_text())


# --- The chain. ----------------------------------------------------------------------------------

def chain_side(out_dir, data_dir, width, stages, batch_size, seconds, interval, seed,
               learning_rate):
    """A --colocated chain of the race's network, one OpenBLAS thread per process, measured from
    its snapshots; the snapshots are deleted afterwards (chain.json stays)."""
    sizes, splits = race_layout(width, stages)
    run = out_dir / f"chain-w{width}-b{batch_size}-k{stages}-s{seed}"
    config = chain.ChainConfig(run_dir=run, sizes=sizes, splits=splits, count=COUNT,
                               duration=seconds, seed=seed, snapshot_interval=interval,
                               data_dir=data_dir, batch_size=batch_size,
                               learning_rate=learning_rate, colocated=True)
    env = {**launch.child_env(), "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    final = chain.run_chain(config, env)
    result = chain_eval.evaluate(run, chain.stage_sizes(sizes, splits), heldout=HELDOUT,
                            cosine_points=500)
    (run / "chain.json").write_text(json.dumps(result, indent=1))
    shutil.rmtree(run / "progress", ignore_errors=True)       # GBs of snapshots at wide widths
    streamed = snapshots.read_metrics(run / "metrics" / "stage1.jsonl")[-1]
    per_stage = {"stage1": streamed["examples"] / max(streamed["seconds"], 1e-9)}
    for k in range(2, stages + 1):
        per_stage[f"stage{k}"] = trained_per_s(run / "metrics" / f"stage{k}.jsonl")
    last = result["ticks"][-1]["cosine"] if result["ticks"] else []
    return {"points": [(r["seconds"], r["heldout_mse"]) for r in result["ticks"]] +
            [(seconds, result["final_mse"])],
            "examples_per_s": per_stage,
            "cpu_per_s": {name: (None if s is None else s / seconds)
                          for name, s in final["cpu_s"].items()},
            "cosine_last_tick": last}


# --- The whole race. -----------------------------------------------------------------------------

def summarise(runs, seconds):
    """Per side, over the seeds: times to each level ({level: [t or None per seed]}), MSE at
    fixed times, examples/s and CPU per process (seed means)."""
    times = [seconds / 4, seconds / 2, seconds]
    out = {"times": times}
    for side in ("one", "chain"):
        rs = [r[side] for r in runs]
        out[side] = {
            "to_level": {str(level): [first_time_below(r["points"], level) for r in rs]
                         for level in LEVELS},
            "mse_at": {f"{t:g}": [mse_at(r["points"], t) for r in rs] for t in times},
        }
    out["one"]["examples_per_s"] = float(np.mean([r["one"]["examples_per_s"] for r in runs]))
    out["one"]["cpu_per_s"] = float(np.mean([r["one"]["cpu_per_s"] for r in runs]))
    stages = runs[0]["chain"]["examples_per_s"].keys()
    out["chain"]["examples_per_s"] = {k: _mean([r["chain"]["examples_per_s"][k] for r in runs])
                                      for k in stages}
    out["chain"]["cpu_per_s"] = {k: _mean([r["chain"]["cpu_per_s"].get(k) for r in runs])
                                 for k in runs[0]["chain"]["cpu_per_s"]}
    return out


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def cell_times(ts):
    """'4.2 (3.1-5.0)' over the seeds that reached it, with 'k/n' when not all did; '-' none."""
    got = [t for t in ts if t is not None]
    if not got:
        return f"not in {len(ts)}/{len(ts)}"
    text = (f"{np.mean(got):.1f} ({min(got):.1f}-{max(got):.1f})" if len(got) > 1
            else f"{got[0]:.1f}")
    return text if len(got) == len(ts) else f"{text}, {len(got)}/{len(ts)} seeds"


def cell_mse(ms):
    got = [m for m in ms if m is not None]
    return f"{np.mean(got):.4f}" if got else "-"


def markdown(results, machine):
    lines = [f"The race: {machine}.", "",
             "Time to held-out MSE levels, seconds: mean (min-max) over the seeds that reached "
             "it; one process (backprop, OpenBLAS on K threads) / chain (K processes, "
             "co-located models).", "",
             "| K, width, minibatch | " +
             " | ".join(f"to {lv}: one / chain" for lv in LEVELS) +
             " | held-out MSE at fixed times: one / chain |",
             "|---|" + "---|" * (len(LEVELS) + 1)]
    for r in results:
        s = r["summary"]
        at = "; ".join(f"{t} s: {cell_mse(s['one']['mse_at'][t])} / "
                       f"{cell_mse(s['chain']['mse_at'][t])}" for t in s["one"]["mse_at"])
        lines.append(f"| {r['stages']}, {r['width']}, {r['batch_size']} | " + " | ".join(
            f"{cell_times(s['one']['to_level'][str(lv)])} / "
            f"{cell_times(s['chain']['to_level'][str(lv)])}" for lv in LEVELS) + f" | {at} |")
    lines += ["", "Speed: examples per second (seed means) and CPU seconds per second of each "
              "process.", "",
              "| K, width, minibatch | one process: ex/s | chain: ex/s per stage | "
              "slowest stage / one process | one process: CPU/s | chain: CPU/s per process |",
              "|---|---|---|---|---|---|"]
    for r in results:
        s = r["summary"]
        rates = s["chain"]["examples_per_s"]
        slowest = min(v for v in rates.values() if v is not None)
        lines.append(
            f"| {r['stages']}, {r['width']}, {r['batch_size']} | "
            f"{s['one']['examples_per_s']:,.0f} | "
            f"{', '.join(generate.fmt(v, ',.0f') for v in rates.values())} | "
            f"{slowest / s['one']['examples_per_s']:.2f}x | {s['one']['cpu_per_s']:.2f} | "
            f"{', '.join(generate.fmt(v, '.2f') for v in s['chain']['cpu_per_s'].values())} |")
    return "\n".join(lines)


def draw(results, path):
    """race.png: per minibatch (rows) and level (columns), seconds to reach it against width,
    one line per method and K; a seed that never reached it is drawn at the top as an x."""
    batch_sizes = sorted({r["batch_size"] for r in results})
    with generate.saved_figure(path, len(batch_sizes), len(LEVELS), squeeze=False,
                               figsize=(4.2 * len(LEVELS), 3.6 * len(batch_sizes)),
                               layout="constrained") as (fig, axes):
        top = max(r["seconds"] for r in results)
        for row, batch_size in enumerate(batch_sizes):
            for col, level in enumerate(LEVELS):
                ax = axes[row][col]
                for K in sorted({r["stages"] for r in results}):
                    rs = sorted((r for r in results if r["batch_size"] == batch_size
                                 and r["stages"] == K), key=lambda r: r["width"])
                    for side, label, style, lift in (
                            ("one", f"one process, {K} BLAS threads", "o-", 1.03),
                            ("chain", f"chain of {K} processes", "s--", 1.08)):
                        widths = [r["width"] for r in rs]
                        ts = [r["summary"][side]["to_level"][str(level)] for r in rs]
                        means = [_mean(t) if all(v is not None for v in t) else np.nan
                                 for t in ts]
                        line, = ax.plot(widths, means, style, label=label)
                        for w, t in zip(widths, ts):
                            got = [v for v in t if v is not None]
                            ax.plot([w] * len(got), got, ".", color=line.get_color(), alpha=0.5)
                            if len(got) < len(t):
                                ax.plot([w], [top * lift], "x", color=line.get_color())
                ax.set_xscale("log", base=2)
                widths = sorted({r["width"] for r in results})
                ax.set_xticks(widths, [str(w) for w in widths])
                ax.minorticks_off()
                ax.set_ylim(0, top * 1.12)
                ax.set_title(f"to held-out MSE {level}, minibatch {batch_size}",
                             fontsize="medium")
                ax.set_xlabel("width W of the 2-W-...-W-1 network")
                ax.set_ylabel("seconds (x: a seed never got there)")
                ax.grid(True, alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4),
                   fontsize="small")
        fig.suptitle("Which reaches a held-out MSE level sooner on the same cores: one process "
                     "or a chain of co-located stages")


def machine_line(args):
    return (f"{os.cpu_count()} cores ({_cpu_model()}), Python {sys.version.split()[0]}, numpy "
            f"{np.__version__}, OpenBLAS kernel {blas_info().get('core', '?')}; {COUNT:,} "
            f"examples, {HELDOUT:,} held-out points, Adam at {args.learning_rate} on every "
            f"layer, {args.seconds:g} s per run, {args.seeds} seeds")


def _cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown processor"


def main_race(args):
    """lab/bench.py --race: every (K, width, minibatch, seed), the one process then the chain."""
    out_dir = launch.new_run_dir(args.run_dir, "race-")
    machine = machine_line(args)
    print(f"race: {machine}; writing into {out_dir}", flush=True)
    data = out_dir / "data"
    launch.generate_data(data, COUNT, 0, launch.child_env(), plot=False)
    results = []
    for K in args.stages:
        for width in args.widths:
            for batch_size in args.batch_sizes:
                runs = []
                for seed in range(args.seeds):
                    print(f"race: K {K}, width {width}, minibatch {batch_size}, seed {seed}",
                          flush=True)
                    common = (out_dir, data, width, K, batch_size, args.seconds, args.interval,
                              seed, args.learning_rate)
                    runs.append({"one": one_process(*common), "chain": chain_side(*common)})
                results.append({"stages": K, "width": width, "batch_size": batch_size,
                                "seconds": args.seconds, "runs": runs,
                                "summary": summarise(runs, args.seconds)})
                (out_dir / "race.json").write_text(json.dumps(
                    {"machine": machine, "results": results}, indent=1))
    table = markdown(results, machine)
    (out_dir / "race.md").write_text(table + "\n")
    draw(results, out_dir / "race.png")
    print(table)
    print(f"race: race.md, race.json and race.png in {out_dir}", flush=True)
    return 0


# --- The distribution cost: the two-stage system against dni.py in one process. ------------------

def main_distribution_cost(args):
    """lab/bench.py --distribution-cost: chain.py --colocated (2-24-12-1, two processes, the
    scripts' settings) and dni.py --conditioned (one process, the same network, optimizer,
    learning rates, minibatch, model and data) for the same seconds, args.seeds seeds; the
    ratio of their final held-out MSEs."""
    out_dir = launch.new_run_dir(args.run_dir, "distribution-cost-")
    seeds = args.seeds
    print(f"distribution cost: {os.cpu_count()} cores, {args.seconds:g} s a run, {seeds} seeds;"
          f" writing into {out_dir}", flush=True)
    data = out_dir / "data"
    env = launch.child_env()
    launch.generate_data(data, COUNT, 0, env, plot=False)
    rows = []
    for seed in range(seeds):
        run = out_dir / f"chain-s{seed}"
        config = chain.ChainConfig(run_dir=run, count=COUNT, duration=args.seconds, seed=seed,
                                   data_dir=data, colocated=True)
        chain.run_chain(config, env)
        two = chain_eval.evaluate(run, chain.stage_sizes(config.sizes, config.splits))["final_mse"]
        one = dni.run(dni.DniConfig(data_dir=data, seconds=args.seconds, seed=seed,
                                    conditioned=True, batch_size=config.batch_size,
                                    learning_rate=config.learning_rate))["heldout_mse"]
        rows.append({"seed": seed, "two_processes": two, "dni_one_process": one})
        print(f"distribution cost: seed {seed}: two processes {two:.4f}, dni.py {one:.4f}",
              flush=True)
    two = [r["two_processes"] for r in rows]
    one = [r["dni_one_process"] for r in rows]
    ratio = float(np.mean(two) / np.mean(one))
    text = (f"Two stages (chain.py --colocated, 2 processes) against dni.py --conditioned in one "
            f"process, {args.seconds:g} s each, {seeds} seeds, {os.cpu_count()} cores: held-out "
            f"MSE {np.mean(two):.4f} ({min(two):.4f}-{max(two):.4f}) against "
            f"{np.mean(one):.4f} ({min(one):.4f}-{max(one):.4f}): {ratio:.2f}x (goal <= 1.25x; "
            f"per seed {', '.join(f'{a / b:.2f}x' for a, b in zip(two, one))})")
    (out_dir / "distribution-cost.json").write_text(json.dumps(
        {"rows": rows, "ratio_of_means": ratio, "seconds": args.seconds}, indent=1))
    (out_dir / "distribution-cost.md").write_text(text + "\n")
    print(text, flush=True)
    return 0


# --- The command line (lab/bench.py --race's options; --one-process is the race's own child). -------

def ints(text):
    """An argparse type: "2,4,8" -> [2, 4, 8], every value at least 1."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 2,4,8, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"every value must be at least 1, got {text!r}")
    return values


def add_arguments(p):
    """The race's options, on lab/bench.py's parser."""
    p.add_argument("--stages", type=ints, default=[os.cpu_count() or 1],
                   help="--race: K, the stages of the chain and the cores (BLAS threads) of the "
                        f"one process, one race per value (default: this machine's cores, "
                        f"{os.cpu_count() or 1})")
    p.add_argument("--widths", type=ints, default=[32, 256, 1024],
                   help="--race: the widths W (default 32,256,1024: from a step of microseconds "
                        "to one of several milliseconds)")
    p.add_argument("--batch-sizes", type=ints, default=[10, 100],
                   help="--race: minibatches (default 10,100)")
    p.add_argument("--seeds", type=int, default=None,
                   help="seeds per setting (default 3 for --race, 5 for --distribution-cost)")
    p.add_argument("--seconds", type=float, default=None,
                   help="seconds of training per run (default 30 for --race, 40 for "
                        "--distribution-cost, 100 for --live-cost)")
    p.add_argument("--interval", type=int, default=1,
                   help="--race: seconds between held-out measurements on both sides (default "
                        "1; the chain's snapshot interval)")
    p.add_argument("--learning-rate", type=float, default=LEARNING_RATE,
                   help=f"--race: Adam's learning rate on every layer of both sides (default "
                        f"{LEARNING_RATE}, chain.py's for deep chains)")


def check_arguments(p, args, distribution=False):
    if args.seeds is None:
        args.seeds = 5 if distribution else 3
    if args.seconds is None:
        args.seconds = 40.0 if distribution else 30.0
    if args.seeds < 1:
        p.error(f"--seeds must be at least 1 (got {args.seeds})")
    if not args.seconds > 0:
        p.error(f"--seconds must be positive (got {args.seconds:g})")
    if not args.learning_rate > 0:
        p.error(f"--learning-rate must be positive (got {args.learning_rate:g})")
    if args.interval < 1:
        p.error(f"--interval must be at least 1 (got {args.interval})")


def main(argv=None):
    """The race's child process: `python -m lab.race --one-process OUT ...` (lab/bench.py starts it)."""
    p = argparse.ArgumentParser(description="One process's side of lab/bench.py --race: backprop "
                                            "of the race's network, written as JSON to OUT.")
    p.add_argument("--one-process", type=Path, required=True, metavar="OUT")
    p.add_argument("--data-dir", type=Path, required=True, help="x.npy and y.npy")
    p.add_argument("--width", type=int, required=True, help="W")
    p.add_argument("--stages", type=int, required=True, help="K: the network has K + 1 W's")
    p.add_argument("--batch-size", type=int, required=True, help="the minibatch")
    p.add_argument("--seconds", type=float, required=True, help="of training")
    p.add_argument("--interval", type=float, required=True, help="seconds between measurements")
    p.add_argument("--seed", type=int, required=True, help="the network and the order")
    p.add_argument("--learning-rate", type=float, required=True, help="Adam's")
    args = p.parse_args(argv)
    sizes, _ = race_layout(args.width, args.stages)
    result = train_one_process(args.data_dir, sizes, args.batch_size, args.seconds,
                               args.interval, args.seed, args.learning_rate)
    args.one_process.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
