"""Benchmark: plain backprop against the decoupled system on one machine, run by hand; its
Markdown tables, and the JSON behind them, go into a new run folder (docs/speed.md):

    python -m lab.bench --quick        # about 2.5 minutes
    python -m lab.bench                # the full one: five 120 s training runs plus start-up
    python -m lab.bench --help         # the other modes: --chain, --chain-parts, --race, ...

The default measures, one at a time: the protocol's codec, sgd.py as written, backprop with
the decoupled system's settings, and the three processes with synthetic gradients remote and local.
"""

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    import report                        # noqa: F401  lab/report.py says how to run it, and exits

import chain
import generate
from generate import fmt
from lab import live_cost, race, report, wire_cost
from lab.race import first_time_below, mse_at
from parts import options, snapshots
from runner import launch

LEVELS = (0.06, 0.03, 0.01)
# The decoupled runs: synthetic gradients remote or local, bulk transfers in JSON or binary.
DECOUPLED = ("remote_json", "remote_binary", "local_binary")
PRESETS = {"quick": dict(count=20_000, seconds=25), "full": dict(count=20_000, seconds=120)}


def say(line):
    print(f"lab/bench.py: {line}", flush=True)


def time_to_levels(curve, levels=LEVELS):
    """{level: first seconds at which held-out MSE <= level, or None} for curve [(s, mse)]."""
    return {str(level): first_time_below(curve, level) for level in levels}


def run_backprop(config, levels=LEVELS):
    """launch.train_backprop for config.seconds of training; its figures."""
    t0 = time.perf_counter()
    _, rows = launch.train_backprop(config)
    curve = [(row["seconds"], row["heldout_mse"]) for row in rows]
    return {"examples_per_s": rows[-1]["examples"] / rows[-1]["seconds"],
            "final_mse": curve[-1][1], "seconds": curve[-1][0], "curve": curve,
            "time_to": time_to_levels(curve, levels), "wall_s": time.perf_counter() - t0}


def three_processes(config, env):
    """launch.run_decoupled of config: (its final status, the input trainer's metrics lines,
    the composed network's held-out MSE curve timed from when the input trainer began)."""
    final = launch.run_decoupled(config, env)
    inp = snapshots.read_metrics(config.run_dir / "metrics" / "train_input.jsonl")
    return final, inp, snapshots.composed_curve(config.run_dir / "progress",
                                                *generate.heldout(), origin=inp[0]["time"])


def run_decoupled(config, env):
    """The three processes on config.data_dir; their figures."""
    final, inp, curve = three_processes(config, env)
    last, output, oracle = inp[-1], final["output_trainer"], final["oracle"]
    return {
        "input_examples_per_s": last["examples"] / last["seconds"],
        "output_examples_per_s": output["examples_trained"] / output["uptime_s"],
        "oracle_examples_per_s": (oracle["training_steps"] * oracle["batch_size"]
                                  / oracle["uptime_s"]),
        "oracle_latency_ms": {"p50": last.get("oracle_p50_ms"), "p95": last.get("oracle_p95_ms")},
        "peak_rss_mb": {"input": last.get("peak_rss_mb"), "output": output.get("peak_rss_mb"),
                        "oracle": oracle.get("peak_rss_mb")},
        "cosine_similarity": oracle["synthetic_gradient_quality"]["cosine_similarity"],
        "final_mse": curve[-1][1] if curve else None, "curve": curve,
        "time_to": time_to_levels(curve),
    }


def ratio(r, backprop, level=0.03):
    """Seconds to `level` of run r over backprop's, or None if either never got there."""
    a, b = r["time_to"][str(level)], backprop["time_to"][str(level)]
    return a / b if a is not None and b else None


def markdown(results, preset, machine):
    """The results as a Markdown table (one column per method)."""
    seconds = PRESETS[preset]["seconds"]
    checkpoints = [t for t in (5, 10, 20, 40, 60, 90) if t < seconds]
    cols = [("sgd.py as written", results["sgd_py"]),
            ("backprop, same settings", results["backprop"]),
            *[(f"decoupled, {name.replace('_', ', ')}", results[name]) for name in DECOUPLED]]

    def get(key, spec):
        return lambda r: fmt(r.get(key), spec)
    rows = [("input examples/s (backprop: all layers)",
             lambda r: fmt(r.get("input_examples_per_s", r.get("examples_per_s")), ",.0f")),
            ("output trainer examples/s", get("output_examples_per_s", ",.0f")),
            ("oracle training examples/s", get("oracle_examples_per_s", ",.0f")),
            ("oracle request p50 / p95 (ms)",
             lambda r: (f"{fmt(r['oracle_latency_ms']['p50'], '.2f')} / "
                        f"{fmt(r['oracle_latency_ms']['p95'], '.2f')}")
             if "oracle_latency_ms" in r else "-"),
            *[(f"seconds to held-out MSE {level}",
               lambda r, level=level: fmt(r["time_to"][str(level)], ".1f")) for level in LEVELS],
            ("time to 0.03 over backprop's", lambda r: fmt(ratio(r, results["backprop"]), ".1f")),
            *[(f"held-out MSE after {t} s", lambda r, t=t: fmt(mse_at(r["curve"], t), ".4f"))
              for t in checkpoints],
            ("held-out MSE at the end", get("final_mse", ".4f")),
            ("cosine(synthetic, true) at the end", get("cosine_similarity", ".2f")),
            ("peak memory MB (input / output / oracle)",
             lambda r: " / ".join(fmt(v, ".0f") for v in r["peak_rss_mb"].values())
             if "peak_rss_mb" in r else "-")]
    codec = results["codec"]
    return report.table(["", *(name for name, _ in cols)],
                        [[label, *(cell(r) for _, r in cols)] for label, cell in rows],
                        f"lab/bench.py --{preset}: {machine}") + (
        f"\n\nProtocol, encode + decode of a 500-example /provide_gradient chunk: JSON "
        f"{codec['batched_us_per_example']:.1f} µs per example batched, "
        f"{codec['original_us_per_example']:.1f} µs in the original per-example form; binary "
        f"form {codec['binary_us_per_example']:.2f} µs. One synthetic-gradient request of 10 "
        f"activations, question and answer: JSON {codec['estimate_json_us_per_request']:.0f} µs, "
        f"binary {codec['estimate_binary_us_per_request']:.0f} µs.")


# --- The chain: K stages as processes against one process, and a width sweep (--chain). -------

CHAIN_SPLITS = (1, 2, 3)                      # 4 stages, 3 boundaries
CHAIN_SWEEP = ((32, 10), (128, 50), (512, 100))   # (width, minibatch)
CHAIN_LEVELS = (0.1, 0.05, 0.03)
PINNED = ((32, 10), (128, 100), (256, 100), (512, 100))   # (width, minibatch), pinned chains


def bench_chain(out_dir, width, batch_size, seconds, count, env):
    """2-W-W-W-W-1 with minibatches of batch_size: backprop in this process, then as a chain of
    4 stages (7 processes). Examples per second per stage, CPU per process, times to levels."""
    sizes = (2, width, width, width, width, 1)
    data = out_dir / "data"
    rate = chain.default_learning_rate(len(CHAIN_SPLITS) + 1)     # chain.py's, both sides
    one = run_backprop(launch.BackpropConfig(
        data, seconds, sizes=sizes, optimizer="adam", learning_rate=rate,
        batch_size=batch_size, decay=1.0, eval_every=max(2_000, 20 * batch_size)), CHAIN_LEVELS)
    one["times"] = one.pop("time_to")
    run = out_dir / f"chain-w{width}"
    config = chain.ChainConfig(run_dir=run, sizes=sizes, splits=CHAIN_SPLITS, count=count,
                               duration=seconds, data_dir=data, batch_size=batch_size,
                               learning_rate=rate)
    final, result = race.run_chain(config, env, cosine_points=500)
    streamed = snapshots.read_metrics(run / "metrics" / "stage1.jsonl")[-1]
    per_stage = {"stage1": streamed["examples"] / streamed["seconds"]}
    for k in range(2, len(CHAIN_SPLITS) + 2):
        per_stage[f"stage{k}"] = (final[f"stage{k}"]["examples_trained"]
                                  / final[f"stage{k}"]["uptime_s"])
    points = [(r["seconds"], r["heldout_mse"]) for r in result["ticks"]]
    return {"width": width, "batch_size": batch_size, "one_process": one,
            "chain": {"examples_per_s": per_stage, "slowest_stage": min(per_stage.values()),
                      # CPU seconds over each process's life, start-up too, per s of streaming
                      "cpu_cores": {name: (None if s is None else s / seconds)
                                    for name, s in final["cpu_s"].items()},
                      "final_mse": result["final_mse"],
                      "times": time_to_levels(points, CHAIN_LEVELS)}}


def chain_markdown(results, machine):
    rows = []
    for r in results:
        one, ch = r["one_process"], r["chain"]
        rows.append([f"{r['width']}, {r['batch_size']}", f"{one['examples_per_s']:,.0f}",
                     ", ".join(f"{v:,.0f}" for v in ch["examples_per_s"].values()),
                     f"{ch['slowest_stage'] / one['examples_per_s']:.2f}x",
                     f"{sum(c for c in ch['cpu_cores'].values() if c is not None):.2f}",
                     f"{one['final_mse']:.4f} / {ch['final_mse']:.4f}",
                     f"{fmt(one['times']['0.1'], '.0f')} / {fmt(ch['times']['0.1'], '.0f')}"])
    return report.table(
        ["width, minibatch", "one process: examples/s", "chain: examples/s per stage (1, 2, 3, "
         "4)", "chain: slowest stage / one process", "chain: CPU s per streaming s, all "
         "processes", "held-out MSE at the end: one / chain", "seconds to MSE 0.1: one / chain"],
        rows, f"Chain of 4 stages (2-W-W-W-W-1 cut after layers 1, 2, 3; 7 processes) against "
              f"backprop of the same network in one process; {machine}.")


def main_chain(args, out_dir, machine):
    seconds = 20 if args.quick else 45
    machine += (f", {race.COUNT:,} examples, {seconds} s per run, Adam at "
                f"{chain.default_learning_rate(len(CHAIN_SPLITS) + 1)} for every layer")
    race.toy_data(out_dir / "data")
    results = []
    for width, batch_size in CHAIN_SWEEP:
        say(f"chain: width {width}, minibatch {batch_size}")
        results.append(bench_chain(out_dir, width, batch_size, seconds, race.COUNT,
                                   launch.child_env()))
    return results, chain_markdown(results, machine)


def run_chain_speed(env, out, *options):
    """lab/chain_speed.py's rows, run with env into the JSON file out."""
    return report.run_child("lab.chain_speed", out, env, "--out", out, *options)["rows"]


def chain_parts_markdown(rows, two_threads, machine):
    """The table of lab/chain_speed.py's rows; two_threads: {(width, minibatch): one process's µs
    per example with OpenBLAS free to use every core}."""
    return report.table(
        ["width, minibatch", "one process", "one process, BLAS on every core (wall clock)",
         "stage 1", "stages 2, 3", "stage 4", "message of 500 rows, per row", "slowest stage",
         "speed-up with a core per process"],
        [[f"{r['width']}, {r['batch_size']}", f"{r['one_process_us']:.1f}",
          fmt(two_threads.get((r["width"], r["batch_size"])), ".1f"),
          *(f"{r['stage_us'][k]:.1f}" for k in ("stage1", "stage2", "stage4")),
          f"{r['message_us']:.1f}", f"{r['slowest_stage_us']:.1f}", f"{r['speed_up']:.2f}x"]
         for r in rows],
        f"CPU µs per example of each part of a 4-stage chain of 2-W-W-W-W-1 (cut after layers "
        f"1, 2, 3), each on one core (one BLAS thread), messages included; {machine}.")


def crossover(rows):
    """{minibatch: the smallest width whose modelled speed-up is above 1 and stays above 1 at
    every larger width measured, or None}."""
    found = {}
    for batch_size in sorted({r["batch_size"] for r in rows}):
        ups = sorted((r["width"], r["speed_up"]) for r in rows if r["batch_size"] == batch_size)
        above = [w for k, (w, _) in enumerate(ups) if all(u > 1 for _, u in ups[k:])]
        found[batch_size] = above[0] if above else None
    return found


def pin_to(cpus):
    """on_start for chain.run_chain: every thread of the process on these CPUs (Linux)."""
    def pin(name, pid):
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                os.sched_setaffinity(int(task.name), cpus(name))
            except (OSError, ValueError):            # the thread already ended
                pass
    return pin


def bench_pinned(out_dir, width, batch_size, seconds):
    """A real 4-stage chain of 2-W-W-W-W-1 with stage 2 alone on CPU 1 and the other six
    processes on CPU 0: how fast a middle stage trains with a core of its own."""
    run = out_dir / f"pinned-w{width}-b{batch_size}"
    config = chain.ChainConfig(run_dir=run, sizes=(2, width, width, width, width, 1),
                               splits=CHAIN_SPLITS, count=20_000, duration=seconds,
                               data_dir=out_dir / "data", batch_size=batch_size)
    chain.run_chain(config, race.blas_env(1),
                    on_start=pin_to(lambda name: {1} if name == "stage 2" else {0}))
    return race.trained_per_s(run / "metrics" / "stage2.jsonl")


def pinned_markdown(pinned, rows):
    by = {(r["width"], r["batch_size"]): r for r in rows}
    lines = []
    for (width, batch_size), rate in pinned.items():
        r = by[(width, batch_size)]
        one = 1e6 / r["one_process_us"]
        lines.append([f"{width}, {batch_size}", f"{rate:,.0f}",
                      f"{1e6 / r['stage_us']['stage2']:,.0f}", f"{one:,.0f}", f"{rate / one:.2f}x"])
    return report.table(
        ["width, minibatch", "stage 2 with a core of its own, measured: examples/s", "stage 2 "
         "from the parts: examples/s", "one process on one core: examples/s", "measured stage 2 "
         "/ one process"], lines, "A real 4-stage chain, stage 2 alone on one core, the six "
        "other processes on the other (one BLAS thread each):")


def main_chain_parts(args, out_dir, machine):
    """Each part of a 4-stage chain timed on one core (lab/chain_speed.py), one process again
    with OpenBLAS on every core, then real chains with stage 2 on a core of its own."""
    rows = run_chain_speed(race.blas_env(1), out_dir / "one-blas-thread.json")
    say("chain parts: one process again, OpenBLAS on every core")

    def measured(key):
        return ",".join(str(v) for v in sorted({r[key] for r in rows}))
    free = run_chain_speed(launch.child_env(), out_dir / "blas-on-every-core.json",
                           "--one-process", "--widths", measured("width"),
                           "--batch-sizes", measured("batch_size"))
    two_threads = {(r["width"], r["batch_size"]): r["one_process_us"] for r in free}
    table = chain_parts_markdown(rows, two_threads, machine) + "\n\n" + "; ".join(
        f"minibatch {b}: " + ("no crossover at the widths measured" if w is None else
                              f"faster than one process from width {w} on")
        for b, w in crossover(rows).items()) + " (with 7 cores: 4 stages and 3 oracles)"
    pinned = {}
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        race.toy_data(out_dir / "data")
        for width, batch_size in PINNED:
            say(f"chain parts: a pinned chain, width {width}, minibatch {batch_size}")
            pinned[(width, batch_size)] = bench_pinned(out_dir, width, batch_size, 30)
        table += "\n\n" + pinned_markdown(pinned, rows)
    else:
        table += "\n\n(no pinned chain: it needs 2 cores and Linux's sched_setaffinity)"
    return ({"machine": machine, "one_blas_thread": rows, "blas_on_every_core": free,
             "pinned_stage2_examples_per_s": {f"{w},{b}": v for (w, b), v in pinned.items()}},
            table)


# --- The default: backprop against the decoupled system. ----------------------------------------

def main_default(args, out_dir, machine):
    preset = "quick" if args.quick else "full"
    count, seconds = PRESETS[preset]["count"], PRESETS[preset]["seconds"]
    machine += f", {count:,} examples, {seconds} s per training run"
    env, data_dir = launch.child_env(), out_dir / "data"
    launch.generate_data(data_dir, count, 0, env, plot=False)
    # The demo's settings, with snapshots every second for a finer curve, on the same data.
    decoupled = launch.DecoupledConfig(run_dir=out_dir, count=count, duration=seconds,
                                       snapshot_interval=1, status_every=10, data_dir=data_dir)
    sgd_py = launch.BackpropConfig(data_dir, seconds, metrics=out_dir / "sgd_py.jsonl")
    same = dataclasses.replace(sgd_py, metrics=out_dir / "backprop.jsonl",
                               **launch.backprop_like(decoupled))
    results = {"preset": preset, "machine": machine}
    say("protocol codec")
    results["codec"] = wire_cost.bench_codec()
    say("sgd.py as written")
    results["sgd_py"] = run_backprop(sgd_py)
    say(f"in-process backprop, minibatch {same.batch_size}, learning rate {same.learning_rate}")
    results["backprop"] = run_backprop(same)
    for name in DECOUPLED:
        mode, wire = name.split("_")
        say(f"decoupled, {mode} synthetic gradients, {wire} on the wire")
        results[name] = run_decoupled(dataclasses.replace(
            decoupled, run_dir=out_dir / name, wire=wire,
            input={"synthetic_gradients": mode}), env)
    return results, markdown(results, preset, machine)


# (what it measures, its main, the run folder's and its files' name), for each mode.
MODES = {
    "chain": ("a 4-stage chain of 2-W-W-W-W-1 against one process, widths 32-512 (20 s a run "
              "with --quick, else 45 s)", main_chain, "bench-chain"),
    "chain_parts": ("each part of a 4-stage chain timed on one core, and real chains with "
                    "stage 2 pinned to a core (~8 minutes)", main_chain_parts, "bench-chain-parts"),
    "race": ("a chain of K co-located stages against one process on K cores (~25 minutes)",
             race.main_race, None),
    "distribution_cost": ("chain.py --colocated's two stages against dni.py in one process",
                          race.main_distribution_cost, None),
    "live_cost": (f"the input trainer's examples/s with the live page open and closed, "
                  f"{live_cost.WINDOW:g} s each in turns (~2 minutes)", live_cost.main_live_cost,
                  "live-cost"),
}


def parse_args(argv):
    p = argparse.ArgumentParser(description="Measure plain backprop against the decoupled "
                                            "system (remote and local synthetic gradients).")
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help=f"{PRESETS['quick']['seconds']} s per training run (~2.5 minutes)")
    preset.add_argument("--full", action="store_true",
                        help=f"{PRESETS['full']['seconds']} s per training run (the default)")
    modes = p.add_mutually_exclusive_group()
    for name, (what, _, _) in MODES.items():
        modes.add_argument(f"--{name.replace('_', '-')}", action="store_true",
                           help=f"instead: {what}")
    race.add_arguments(p, [os.cpu_count() or 1], [32, 256, 1024],
                       "3 for --race, 5 for --distribution-cost",
                       "30 for --race, 40 for --distribution-cost, 100 for --live-cost", 1,
                       "--race: ", "bench-")
    p.add_argument("--batch-sizes", type=race.ints, default=[10, 100],
                   help="--race: minibatches (default 10,100)")
    p.add_argument("--learning-rate", type=float, default=race.LEARNING_RATE,
                   help=f"--race: Adam's learning rate on every layer of both sides (default "
                        f"{race.LEARNING_RATE}, chain.py's for deep chains)")
    args = p.parse_args(argv)
    seeds, seconds = ((5, 100.0) if args.live_cost else (5, 40.0) if args.distribution_cost
                      else (3, 30.0))
    race.check_arguments(p, args, seeds, seconds)
    options.check_positive(p, args, "learning_rate")
    return args


def main(argv=None):
    args = parse_args(argv)
    mode = next((m for m in MODES if getattr(args, m)), None)
    run_main, name = MODES[mode][1:] if mode else (main_default, "bench")
    if name is None:                           # the race's modes keep their own run folders
        return run_main(args)
    machine, label = report.machine(), mode or ("quick" if args.quick else "full")
    out_dir = report.start(args.run_dir, f"{name}-", "lab/bench.py", f"{label}: {machine}")
    results, table = run_main(args, out_dir, machine)
    return report.finish(out_dir, name, table, "lab/bench.py", data=results)


if __name__ == "__main__":
    sys.exit(main())
