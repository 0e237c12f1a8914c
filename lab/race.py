"""The race: a chain of K stages in K processes against backprop of the same network in one
process on the same K cores, to the same held-out MSE levels (docs/chain.md, "The race"):

    python -m lab.bench --race                  # K = this machine's cores, ~25 min
    python -m lab.bench --distribution-cost     # the two-stage system against dni.py, 5 seeds

Every stage of 2-W-...-W-1 holds one W x W layer; both sides get the same data, optimizer,
minibatch and held-out points. race.md, race.json and race.png go into a new run folder.
"""

import argparse
import itertools
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    import report                        # noqa: F401  lab/report.py says how to run it, and exits

import numpy as np

import chain
import generate
from generate import fmt
import sgd
from lab import report
from lab.report import cell, ints, mean, run_child, spread
from parts import decoupled, optimizers, options, snapshots
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
    """The held-out MSE of the last (seconds, mse) point at or before `seconds` (1% later
    allowed: a side's measurement comes a step after its interval is up), or None."""
    return next((m for s, m in reversed(points) if s <= 1.01 * seconds), None)


def trained_per_s(metrics_path):
    """Examples a server stage trained per second over the second half of its metrics lines, the
    idle ones after its last trained example left out (running out of work is not slowness)."""
    rows = snapshots.read_metrics(metrics_path)
    while len(rows) >= 2 and rows[-1]["examples_trained"] == rows[-2]["examples_trained"]:
        rows.pop()
    rows = rows[len(rows) // 2:]
    if len(rows) < 2 or rows[-1]["time"] <= rows[0]["time"]:
        return None
    return ((rows[-1]["examples_trained"] - rows[0]["examples_trained"]) /
            (rows[-1]["time"] - rows[0]["time"]))


def blas_env(threads):
    """The children's environment with OpenBLAS (and OpenMP) held to `threads` threads."""
    return {**launch.child_env(), "OPENBLAS_NUM_THREADS": str(threads),
            "OMP_NUM_THREADS": str(threads)}


# --- One process: sgd.train of the whole network, measured every interval. ----------------------

def train_adam(x, y, loss, sizes, batch_size, learning_rate, seed, seconds, interval, measure,
               **network):
    """sgd.train with Adam of a network of `sizes` (**network to sgd.make_network), measured
    every `interval` s until `seconds` of training or a measure that is not finite: {"points":
    [(s, measure)], "examples" at each, "examples_per_s", "cpu_per_s" (all threads), "blas"}."""
    rng = np.random.default_rng(seed)
    layers = sgd.make_network(rng, sizes, **network)
    step = optimizers.make("adam", layers, learning_rate).step
    batches = sgd.minibatches(len(x), batch_size, rng)
    points, trained, examples, cpu = [(0.0, measure(layers))], 0.0, 0, 0.0
    counts = [0]
    while trained < seconds:
        t0, c0 = time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < interval:      # a look at the clock every step
            examples += sgd.train(layers, x, y, [next(batches)], step, loss)
        trained += time.perf_counter() - t0
        cpu += time.process_time() - c0
        points.append((round(trained, 3), measure(layers)))
        counts.append(examples)
        if not math.isfinite(points[-1][1]):
            break
    return {"points": points, "examples": counts, "examples_per_s": examples / trained,
            "cpu_per_s": cpu / trained, "blas": report.blas_info()}


def train_one_process(data_dir, sizes, batch_size, seconds, interval, seed,
                      learning_rate=LEARNING_RATE, heldout=HELDOUT):
    """The toy's one-process side, measured by held-out MSE."""
    x_test, y_test = generate.heldout(heldout)
    return train_adam(*generate.load_dataset(data_dir), sgd.SquaredError, sizes, batch_size,
                      learning_rate, seed, seconds, interval,
                      lambda layers: sgd.mse(layers, x_test, y_test))


def toy_data(folder, count=COUNT, seed=0):
    """folder with the toy's data (generate.py), made once and shared by the runs that use it."""
    if not (folder / "x.npy").exists():
        launch.generate_data(folder, count, seed, launch.child_env(), plot=False)
    return folder


def one_process(module, out, threads, **job):
    """What the child `python -m module --one-process out --job JSON` wrote: its
    train_one_process(**job), with OpenBLAS allowed `threads` threads."""
    return run_child(module, out, blas_env(threads), "--one-process", out, "--job",
                     json.dumps(job))


def child_arguments(p):
    """The one-process child's options (one_process gives them), hidden from --help."""
    p.add_argument("--one-process", type=Path, metavar="OUT", help=argparse.SUPPRESS)
    p.add_argument("--job", type=json.loads, default={}, help=argparse.SUPPRESS)


# --- The chain. ----------------------------------------------------------------------------------

def run_chain(config, env, **evaluate):
    """chain.run_chain(config, env): (its final status, chain_eval.evaluate of its snapshots)."""
    final = chain.run_chain(config, env)
    return final, chain_eval.evaluate(config.run_dir, chain.stage_sizes(config.sizes,
                                                                        config.splits), **evaluate)


def chain_side(config, points, **evaluate):
    """run_chain, one OpenBLAS thread a process: {"points": points(result), "examples" stage 1
    had handed on by each, examples/s per stage, CPU s per s per process, the last cosines}.
    Keeps chain.json and deletes the snapshots (GBs at wide widths)."""
    run, seconds, stages = config.run_dir, config.duration, len(config.splits) + 1
    final, result = run_chain(config, blas_env(1), cosine_points=500, **evaluate)
    (run / "chain.json").write_text(json.dumps(result, indent=1))
    shutil.rmtree(run / "progress", ignore_errors=True)
    rows = snapshots.read_metrics(run / "metrics" / "stage1.jsonl")
    streamed, start = rows[-1], rows[0]["time"]
    per_stage = {"stage1": streamed["examples"] / max(streamed["seconds"], 1e-9)}
    for k in range(2, stages + 1):
        per_stage[f"stage{k}"] = trained_per_s(run / "metrics" / f"stage{k}.jsonl")
    at = points(result)
    handed = [max((r["examples"] for r in rows if r["time"] - start <= s), default=0)
              for s, _ in at]                           # stage 1's examples by each point
    return {"points": at, "examples": handed, "examples_per_s": per_stage,
            "cpu_per_s": {name: (None if s is None else s / seconds)
                          for name, s in final["cpu_s"].items()},
            "cosine_last_tick": result["ticks"][-1]["cosine"] if result["ticks"] else []}


# --- The whole race. -----------------------------------------------------------------------------

def summarise(runs, seconds, levels=LEVELS, reached=first_time_below, value_at=mse_at,
              name="mse_at"):
    """Per side, over the seeds: times to each level ({level: [t or None per seed]}), the
    measure at a quarter, half and all of the run (under `name`), examples/s and CPU per
    process (seed means), and the chain's slowest stage (the mean over seeds)."""
    times = [seconds / 4, seconds / 2, seconds]
    out = {"times": times}
    for side in ("one", "chain"):
        points = [r[side]["points"] for r in runs]
        out[side] = {"to_level": {f"{lv:g}": [reached(p, lv) for p in points] for lv in levels},
                     name: {f"{t:g}": [value_at(p, t) for p in points] for t in times}}
    for key in ("examples_per_s", "cpu_per_s"):
        out["one"][key] = mean([r["one"][key] for r in runs])
        out["chain"][key] = {k: mean([r["chain"][key].get(k) for r in runs])
                             for k in runs[0]["chain"][key]}
    out["chain"]["slowest_stage_per_s"] = mean(
        [min(v for v in r["chain"]["examples_per_s"].values() if v is not None) for r in runs])
    return out


def cell_times(ts):
    """'4.2 (3.1-5.0)' over the seeds that reached it, with 'k/n seeds' when not all did."""
    got = [t for t in ts if t is not None]
    if not got:
        return f"not in {len(ts)}/{len(ts)}"
    text = cell(spread(got), ".1f")
    return text if len(got) == len(ts) else f"{text}, {len(got)}/{len(ts)} seeds"


def run_all(args, name, machine, grid, sides, summary, markdown, draw):
    """Each side ({"one": f, "chain": g}, f(out_dir, setting, seed)) of each setting of grid
    ({key: [values]}) for args.seeds seeds, one at a time so each has the machine, into a new
    run folder: name.json as results come, then name.md and name.png; 0."""
    out_dir, results = report.start(args.run_dir, f"{name}-", name, machine), []
    for values in itertools.product(*grid.values()):
        setting, runs = dict(zip(grid, values, strict=True)), []
        for seed in range(args.seeds):
            print(f"{name}: {', '.join(f'{k} {v}' for k, v in setting.items())}, seed {seed}",
                  flush=True)
            runs.append({side: f(out_dir, setting, seed) for side, f in sides.items()})
            print(f"{name}:   one process {runs[-1]['one']['points'][-1][1]:.4g}, chain "
                  f"{runs[-1]['chain']['points'][-1][1]:.4g} at the end", flush=True)
        results.append({**setting, "seconds": args.seconds, "runs": runs,
                        "summary": summary(runs)})
        report.write(out_dir, name, data={"machine": machine, "results": results})
    return report.finish(out_dir, name, markdown(results, machine), name,
                         draw=lambda path: draw(results, path))


def markdown(results, machine_line):
    def setting(r):
        return f"{r['stages']}, {r['width']}, {r['batch_size']}"

    def times(s, level):
        return " / ".join(cell_times(s[side]["to_level"][f"{level:g}"])
                          for side in ("one", "chain"))

    def at(s):
        return "; ".join(f"{t} s: " + " / ".join(fmt(mean(s[side]["mse_at"][t]), ".4f")
                                                  for side in ("one", "chain"))
                         for t in s["one"]["mse_at"])

    def speed(s):
        rates, one = s["chain"]["examples_per_s"], s["one"]["examples_per_s"]
        slowest = min(v for v in rates.values() if v is not None)
        return [f"{one:,.0f}", ", ".join(fmt(v, ",.0f") for v in rates.values()),
                f"{slowest / one:.2f}x", f"{s['one']['cpu_per_s']:.2f}",
                ", ".join(fmt(v, ".2f") for v in s["chain"]["cpu_per_s"].values())]

    return "\n\n".join([
        report.table(["K, width, minibatch", *(f"to {lv}: one / chain" for lv in LEVELS),
                      "held-out MSE at fixed times: one / chain"],
                     [[setting(r), *(times(r["summary"], lv) for lv in LEVELS),
                       at(r["summary"])] for r in results], f"The race: {machine_line}.",
                     "Time to held-out MSE levels, seconds: mean (min-max) over the seeds that "
                     "reached it; one process (backprop, OpenBLAS on K threads) / chain (K "
                     "processes, co-located models)."),
        report.table(["K, width, minibatch", "one process: ex/s", "chain: ex/s per stage",
                      "slowest stage / one process", "one process: CPU/s",
                      "chain: CPU/s per process"],
                     [[setting(r), *speed(r["summary"])] for r in results],
                     "Speed: examples per second (seed means) and CPU seconds per second of "
                     "each process.")])


def draw(results, path):
    """race.png: per minibatch (rows) and level (columns), seconds to reach it against width,
    one line per method and K; a seed that never reached it is drawn at the top as an x."""
    batch_sizes = sorted({r["batch_size"] for r in results})
    widths = sorted({r["width"] for r in results})
    top = max(r["seconds"] for r in results)
    with generate.saved_figure(path, len(batch_sizes), len(LEVELS), squeeze=False,
                               figsize=(4.2 * len(LEVELS), 3.6 * len(batch_sizes)),
                               layout="constrained") as (fig, axes):
        for (row, batch_size), (col, level) in itertools.product(enumerate(batch_sizes),
                                                                 enumerate(LEVELS)):
            ax = axes[row][col]
            for K in sorted({r["stages"] for r in results}):
                rs = sorted((r for r in results if r["batch_size"] == batch_size
                             and r["stages"] == K), key=lambda r: r["width"])
                for side, label, style, lift in (
                        ("one", f"one process, {K} BLAS threads", "o-", 1.03),
                        ("chain", f"chain of {K} processes", "s--", 1.08)):
                    ts = [r["summary"][side]["to_level"][f"{level:g}"] for r in rs]
                    means = [mean(t) if None not in t else np.nan for t in ts]
                    line, = ax.plot([r["width"] for r in rs], means, style, label=label)
                    for r, t in zip(rs, ts, strict=True):
                        got = [v for v in t if v is not None]
                        ax.plot([r["width"]] * len(got), got, ".", color=line.get_color(),
                                alpha=0.5)
                        if len(got) < len(t):
                            ax.plot([r["width"]], [top * lift], "x", color=line.get_color())
            ax.set_xscale("log", base=2)
            ax.set_xticks(widths, [str(w) for w in widths])
            ax.minorticks_off()
            ax.set(ylim=(0, top * 1.12), xlabel="width W of the 2-W-...-W-1 network",
                   ylabel="seconds (x: a seed never got there)")
            ax.set_title(f"to held-out MSE {level}, minibatch {batch_size}", fontsize="medium")
            ax.grid(True, alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4),
                   fontsize="small")
        fig.suptitle("Which reaches a held-out MSE level sooner on the same cores: one process "
                     "or a chain of co-located stages")


def main_race(args):
    """lab/bench.py --race: every (K, width, minibatch, seed), the one process then the chain."""
    def one(out_dir, s, seed):
        out = out_dir / f"one-w{s['width']}-b{s['batch_size']}-k{s['stages']}-s{seed}.json"
        return one_process(
            "lab.race", out, s["stages"], data_dir=str(toy_data(out_dir / "data")), seed=seed,
            sizes=race_layout(s["width"], s["stages"])[0], batch_size=s["batch_size"],
            seconds=args.seconds, interval=args.interval, learning_rate=args.learning_rate)

    def chained(out_dir, s, seed):
        """A --colocated chain of the race's network."""
        sizes, splits = race_layout(s["width"], s["stages"])
        return chain_side(chain.ChainConfig(
            run_dir=out_dir / f"chain-w{s['width']}-b{s['batch_size']}-k{s['stages']}-s{seed}",
            sizes=sizes, splits=splits, count=COUNT, duration=args.seconds, seed=seed,
            snapshot_interval=args.interval, data_dir=toy_data(out_dir / "data"),
            batch_size=s["batch_size"], learning_rate=args.learning_rate, colocated=True),
            lambda result: [(r["seconds"], r["heldout_mse"]) for r in result["ticks"]] +
            [(args.seconds, result["final_mse"])], heldout=HELDOUT)

    machine = (f"{report.machine()}; {COUNT:,} examples, {HELDOUT:,} held-out points, Adam at "
               f"{args.learning_rate} on every layer, {args.seconds:g} s per run, {args.seeds} "
               "seeds")
    return run_all(args, "race", machine, {"stages": args.stages, "width": args.widths,
                                           "batch_size": args.batch_sizes},
                   {"one": one, "chain": chained}, lambda runs: summarise(runs, args.seconds),
                   markdown, draw)


# --- The distribution cost: the two-stage system against dni.py in one process. ------------------

def main_distribution_cost(args):
    """lab.bench --distribution-cost: the ratio of the final held-out MSEs of chain.py
    --colocated (two processes) and dni.py --conditioned (one), same settings, data, seconds."""
    seeds, env = args.seeds, launch.child_env()
    out_dir = report.start(args.run_dir, "distribution-cost-", "distribution cost",
                           f"{os.cpu_count()} cores, {args.seconds:g} s a run, {seeds} seeds")
    data, rows = toy_data(out_dir / "data"), []
    for seed in range(seeds):
        run = out_dir / f"chain-s{seed}"
        config = chain.ChainConfig(run_dir=run, count=COUNT, duration=args.seconds, seed=seed,
                                   data_dir=data, colocated=True)
        two = run_chain(config, env)[1]["final_mse"]
        one = decoupled.run(decoupled.Config(
            data_dir=data, seconds=args.seconds, seed=seed, conditioned=True,
            batch_size=config.batch_size, learning_rate=config.learning_rate))["heldout_mse"]
        rows.append({"seed": seed, "two_processes": two, "dni_one_process": one})
        print(f"distribution cost: seed {seed}: two processes {two:.4f}, dni.py {one:.4f}",
              flush=True)
    two, one = [r["two_processes"] for r in rows], [r["dni_one_process"] for r in rows]
    ratio = float(np.mean(two) / np.mean(one))
    text = (f"Two stages (chain.py --colocated, 2 processes) against dni.py --conditioned in one "
            f"process, {args.seconds:g} s each, {seeds} seeds, {os.cpu_count()} cores: held-out "
            f"MSE {cell(spread(two))} against {cell(spread(one))}: {ratio:.2f}x (goal <= 1.25x; "
            f"per seed {', '.join(f'{a / b:.2f}x' for a, b in zip(two, one, strict=True))})")
    return report.finish(out_dir, "distribution-cost", text, "distribution cost", data={
        "rows": rows, "ratio_of_means": ratio, "seconds": args.seconds})


# --- The command line (lab/bench.py --race's options; --one-process is the race's child). ----

def add_arguments(p, stages, widths, seeds, seconds, interval, mode="", run_dir=""):
    """A race's options (lab.bench --race's with mode "--race: ", lab.image_race's); --seeds
    and --seconds stay None for check_arguments, their defaults only said in --help."""
    p.add_argument("--stages", type=ints, default=stages,
                   help=f"{mode}K, the chain's stages and the one process's BLAS threads, a "
                        f"race per value (default {','.join(map(str, stages))})")
    p.add_argument("--widths", type=ints, default=widths,
                   help=f"{mode}the widths W (default {','.join(map(str, widths))})")
    p.add_argument("--seeds", type=int, help=f"seeds per setting (default {seeds})")
    p.add_argument("--seconds", type=float,
                   help=f"seconds of training per run and side (default {seconds})")
    p.add_argument("--interval", type=int, default=interval,
                   help=f"{mode}seconds between held-out measurements on both sides (default "
                        f"{interval}; the chain's snapshot interval)")
    p.add_argument("--run-dir", type=generate.out_path, default=None,
                   help=f"folder for everything (default a new runs/{run_dir}<date-time>)")


def check_arguments(p, args, seeds, seconds):
    """Fills in the mode's seeds and seconds where not given, and checks the race's options."""
    args.seeds = seeds if args.seeds is None else args.seeds
    args.seconds = seconds if args.seconds is None else args.seconds
    options.check_at_least(p, args, 1, "seeds", "interval")
    options.check_positive(p, args, "seconds")


def main(argv=None):
    """The race's child process, which lab/bench.py --race starts (one_process)."""
    p = argparse.ArgumentParser(description="One process's side of lab/bench.py --race: backprop "
                                            "of the race's network, written as JSON to OUT.")
    child_arguments(p)
    args = p.parse_args(argv)
    if args.one_process is None:
        p.error("run the race with python -m lab.bench --race")
    args.one_process.write_text(json.dumps(train_one_process(**args.job)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
