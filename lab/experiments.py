"""Test the paper's claims on this problem: what do synthetic gradients teach layer 1?

Run it by hand (never from the tests); it writes report.md, report.json and report.png into its
run folder and prints the table:

    python -m lab.experiments --quick      # ~4 minutes: 1 seed, 15 s a run, the controls and 2 variants
    python -m lab.experiments              # the full set: 3-5 seeds, 30 s a run (~45 minutes)
    python -m lab.experiments --images --quick     # every layer decoupled on Fashion-MNIST, ~3 min
    OPENBLAS_NUM_THREADS=1 python -m lab.experiments --images      # the table of docs/images.md
    python -m lab.experiments --help

Every configuration runs in two worlds with the same settings (the same optimizer and learning
rates for every layer, the same minibatch, data and seconds):
- one process: dni.py, the algorithm as the paper describes it, synchronous: each minibatch's
  true gradients teach the synthetic-gradient model at once;
- three processes: oracle.py, train_output.py and train_input.py started by launch.py, as in
  `make demo` but in the local mode (the input trainer computes synthetic gradients with a copy
  of the oracle's model, refreshed five times a second): asynchronous, each at its own pace,
  the oracle learning from what it holds.

Configurations, layer 1 trained by:
- backprop: the true gradients (one process only: in three processes layer 1 never sees them);
- frozen: nothing, the paper's "no bprop" control: layers 2-3 alone;
- random: random directions of the gradient's size, per example (one process: the size of the
  true gradient; three processes: of the synthetic gradient received, all the input trainer
  has). A synthetic gradient must beat this before we can say it teaches layer 1 anything;
- synthetic gradients from a model with 0 (linear), 12 or 64 hidden units, conditioned on the
  target y (cDNI) or not: the capacity sweep.

For each: held-out MSE after fixed times and after fixed numbers of examples (mean, min and max
over seeds), the cosine similarity of synthetic to true gradients, and examples per second; then
whether the orderings hold: the best synthetic variant's seeds all below the random control's,
random's all below frozen's, and three processes within 1.25x of one process at the same time.

--images is the paper's Table 1 on Fashion-MNIST, in one process (deep_dni.py): networks of 3 to
6 layers (counted as the paper counts them: weight layers, so 2 to 5 hidden ReLU layers of 256),
a synthetic-gradient model at every boundary, every method (backprop, cdni, dni, top-only,
random) with the same Adam, minibatches and number of steps, several seeds. It writes report.md
(test accuracy, mean (min-max) over seeds, one row per method and one column per depth; the
cosines at each boundary), report.json (every run's curve) and images.png (accuracy over steps,
drawn from report.json).
"""

import argparse
import dataclasses
import json
import signal
import statistics
import sys
import textwrap
from pathlib import Path

import numpy as np

import chain
import dni
import generate
from datasets import images
from lab import image_table
from lab.spread import cell, spread
from parts import snapshots
from generate import fmt
from runner import chain_eval, launch

ONE, THREE = "one process", "three processes"
# The settings every row shares: Adam for every layer and for the synthetic-gradient model, as in
# the measurements that motivated this comparison (README, "What we found").
SETTINGS = dict(optimizer="adam", learning_rate=0.005, model_learning_rate=0.001, batch_size=10)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One configuration: how layer 1 is updated and, for synthetic gradients, the model."""

    name: str
    update: str                     # "backprop", "frozen", "random" or "synthetic"
    hidden: int = 12
    conditioned: bool = False
    worlds: tuple = (ONE, THREE)


def synthetic(hidden, conditioned):
    kind = "cDNI" if conditioned else "DNI"
    return Variant(f"synthetic, {kind}, {hidden} hidden", "synthetic", hidden, conditioned)


CONTROLS = [Variant("backprop (true gradients)", "backprop", worlds=(ONE,)),
            Variant("frozen (no bprop)", "frozen"),
            Variant("random directions", "random")]
SWEEP = [synthetic(h, c) for c in (False, True) for h in (0, 12, 64)]
PRESETS = {
    "quick": dict(seeds=1, sweep_seeds=1, seconds=15, sweep=[synthetic(12, False),
                                                           synthetic(0, True)]),
    "full": dict(seeds=5, sweep_seeds=3, seconds=30, sweep=SWEEP),
}
EXAMPLES = (25_000, 50_000, 100_000)   # fixed numbers of examples to compare at


# --- Running one configuration in each world. ----------------------------------------------------

def run_one_process(variant, seed, seconds, data_dir, out_dir):
    """dni.py's algorithm for `seconds` of training: {"points": [(s, examples, mse)], ...}."""
    config = dni.DniConfig(
        data_dir=data_dir, seconds=seconds, eval_every=5_000, update=variant.update,
        hidden=variant.hidden, conditioned=variant.conditioned, seed=seed,
        optimizer=SETTINGS["optimizer"], learning_rate=SETTINGS["learning_rate"],
        model_optimizer=SETTINGS["optimizer"],
        model_learning_rate=SETTINGS["model_learning_rate"], batch_size=SETTINGS["batch_size"],
        metrics=out_dir / "dni.jsonl")
    result = dni.run(config)
    points = [(m["seconds"], m["examples"], m["heldout_mse"]) for m in result["curve"]]
    return {"points": points, "final_mse": result["heldout_mse"], "cosine": result["cosine"],
            "examples_per_s": result["examples_per_s"]}


def decoupled_config(variant, seed, seconds, run_dir, count):
    """The three processes with SETTINGS: the demo's launcher, one optimizer everywhere, and
    the synthetic-gradient model beside layer 1 (the local mode, the paper's layout: no request
    per minibatch, so the comparison with one process is about asynchrony, not HTTP)."""
    oracle = {"optimizer": SETTINGS["optimizer"], "learning_rate": SETTINGS["model_learning_rate"],
              "batch_size": 256, "zero_init": True, "hidden": variant.hidden,
              "conditioned": variant.conditioned}
    return launch.DecoupledConfig(
        run_dir=run_dir, count=count, duration=seconds, seed=seed, snapshot_interval=2,
        status_every=10, optimizer=SETTINGS["optimizer"],
        input_learning_rate=SETTINGS["learning_rate"],
        output_learning_rate=SETTINGS["learning_rate"],
        output_batch_size=SETTINGS["batch_size"], oracle=oracle,
        update=variant.update, input={"report_every": 1, "synthetic_gradients": "local"})


def run_three_processes(variant, seed, seconds, run_dir, count, env):
    """launch.run_decoupled on run_dir/data; points at each paired snapshot tick."""
    final = launch.run_decoupled(decoupled_config(variant, seed, seconds, run_dir, count), env)
    x, y = generate.heldout()
    inp = snapshots.read_metrics(run_dir / "metrics" / "train_input.jsonl")
    origin = inp[0]["time"]
    curve = snapshots.composed_curve(run_dir / "progress", x, y, origin=origin)
    return {"points": three_process_points(curve, inp, origin),
            "final_mse": snapshots.composed_mse(run_dir / "progress", x, y),
            "cosine": final["oracle"]["synthetic_gradient_quality"]["cosine_similarity"],
            "examples_per_s": inp[-1]["examples"] / max(inp[-1]["seconds"], 1e-9)}


def three_process_points(curve, input_lines, origin):
    """[(seconds, examples, mse)]: the composed network's MSE at each tick [(seconds, mse)],
    with the examples the input trainer had streamed by then (interpolated between its metrics
    lines, which hold time.time() and examples)."""
    times = [line["time"] - origin for line in input_lines]
    examples = [line["examples"] for line in input_lines]
    return [(s, float(np.interp(s, times, examples)), mse) for s, mse in curve]


# --- Reading the points. -------------------------------------------------------------------------

def mse_at_time(points, seconds):
    """The MSE of the last point at or before `seconds` (None if there is none)."""
    before = [mse for s, _, mse in points if s <= seconds + 1e-9]
    return before[-1] if before else None


def mse_at_examples(points, examples):
    """The MSE of the first point with at least `examples` examples (None if never reached)."""
    return next((mse for _, n, mse in points if n >= examples), None)


def times_for(seconds):
    return (round(seconds / 3, 1), round(2 * seconds / 3, 1), float(seconds))


def summarize(results, seconds):
    """One row per (configuration, world), in first-seen order: spreads over seeds."""
    groups = {}
    for r in results:
        groups.setdefault((r["config"], r["world"]), []).append(r)
    rows = []
    for (config, world), rs in groups.items():
        row = {"config": config, "world": world, "seeds": len(rs),
               "final": spread([r["final_mse"] for r in rs]),
               "cosine": spread([r["cosine"] for r in rs]),
               "examples_per_s": spread([r["examples_per_s"] for r in rs])}
        for t in times_for(seconds):
            row[f"at {t:g} s"] = spread([mse_at_time(r["points"], t) for r in rs])
        for n in EXAMPLES:
            row[f"at {n:,} examples"] = spread([mse_at_examples(r["points"], n) for r in rs])
        rows.append(row)
    return rows


def best_variant(rows, variants):
    """The variant whose final held-out MSE, averaged over its worlds' means, is lowest."""
    def score(v):
        means = [r["final"][0] for r in rows if r["config"] == v.name and r["final"]]
        return statistics.fmean(means) if means else float("inf")
    return min(variants, key=score) if variants else None


def checks(rows, seconds):
    """The orderings the comparison is for, each as (statement, True/False/None if unknown)."""
    out = []
    by = {(r["config"], r["world"]): r for r in rows}
    for world in (ONE, THREE):
        synth = [r for r in rows if r["world"] == world and r["config"].startswith("synthetic")
                 and r["final"]]
        random_ = by.get(("random directions", world))
        frozen = by.get(("frozen (no bprop)", world))
        if synth and random_ and random_["final"]:
            best = min(synth, key=lambda r: r["final"][0])
            out.append((f"{world}: every seed of the best synthetic variant ({best['config']}) "
                        f"ends below every seed of random directions",
                        best["final"][2] < random_["final"][1]))
        if random_ and frozen and random_["final"] and frozen["final"]:
            out.append((f"{world}: every seed of random directions ends below every seed of "
                        f"frozen", random_["final"][2] < frozen["final"][1]))
    t = times_for(seconds)[-1]
    for r in rows:
        one = by.get((r["config"], ONE))
        if r["world"] == THREE and one and r[f"at {t:g} s"] and one[f"at {t:g} s"]:
            ratio = r[f"at {t:g} s"][0] / one[f"at {t:g} s"][0]
            out.append((f"{r['config']}: three processes at {t:g} s within 1.25x of one process "
                        f"(ratio of means {ratio:.2f})", ratio <= 1.25))
    return out


# --- The report. -------------------------------------------------------------------------------

def write_report(results, out_dir, title, seconds):
    """report.md (the table and the checks), report.json (every run) and report.png."""
    rows = summarize(results, seconds)
    measures = [f"at {t:g} s" for t in times_for(seconds)] + \
               [f"at {n:,} examples" for n in EXAMPLES]
    lines = [f"# {title}", "",
             "Held-out MSE, mean (min-max) over seeds; lower is better. "
             f"Var(y), the MSE of predicting the mean: {generate.heldout()[1].var():.3f}.", "",
             "| configuration | world | seeds | " + " | ".join(measures) +
             " | cosine(synthetic, true) | examples/s |",
             "|---|---|---|" + "---|" * (len(measures) + 2)]
    for r in rows:
        lines.append(f"| {r['config']} | {r['world']} | {r['seeds']} | " +
                     " | ".join(cell(r[m]) for m in measures) +
                     f" | {cell(r['cosine'], '.2f')} | "
                     f"{fmt(r['examples_per_s'] and r['examples_per_s'][0], ',.0f')} |")
    lines += ["", "Checks:", ""]
    lines += [f"- {'yes' if ok else 'no' if ok is not None else '?'}: {text}"
              for text, ok in checks(rows, seconds)]
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    (out_dir / "report.json").write_text(json.dumps({"runs": results, "summary": rows},
                                                    indent=2))
    draw_report(rows, results, out_dir / "report.png", title)
    return "\n".join(lines)


def draw_report(rows, results, path, title):
    """Final held-out MSE per configuration and world: a bar for the mean, a dot per seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.5), layout="constrained")
    colours = {ONE: "tab:blue", THREE: "tab:orange"}
    for k, r in enumerate(rows):
        mses = [x["final_mse"] for x in results
                if x["config"] == r["config"] and x["world"] == r["world"]]
        ax.barh(k, r["final"][0], color=colours[r["world"]], alpha=0.4)
        ax.plot(mses, [k] * len(mses), "o", color=colours[r["world"]], markersize=4)
    frozen = [r for r in rows if r["config"].startswith("frozen")]
    for r in frozen:
        ax.axvline(r["final"][0], linestyle="--", color=colours[r["world"]], linewidth=1)
    ax.set_yticks(range(len(rows)), [f"{r['config']} ({r['world']})" for r in rows],
                  fontsize="small")
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("held-out MSE at the end, log scale (bars: mean; dots: seeds; dashed: "
                  "frozen layer 1)")
    ax.set_title(textwrap.fill(title, 75), fontsize="medium")
    ax.legend(handles=[Patch(color=colour, alpha=0.4, label=world)
                       for world, colour in colours.items()], fontsize="small")
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- The depth experiment: 1, 2 and 3 decoupling points on one deeper network (chain.py). --------

DEEP = (2, 32, 32, 32, 32, 1)
DEPTH_SPLITS = {1: (1,), 2: (1, 2), 3: (1, 2, 3)}            # decoupling points -> cuts
DEPTH_VARIANTS = (("synthetic, cDNI", "synthetic", True), ("synthetic, DNI", "synthetic", False),
                  ("frozen (no bprop)", "frozen", True), ("random directions", "random", True))
DEPTH_BACKPROP = "backprop (true gradients, one process)"
# Every layer's Adam rate in the depth experiment. Measured (docs/chain.md): at the scripts'
# 0.005 no decoupled variant learned through three boundaries in 45 s; at 0.001 they do.
DEPTH_LEARNING_RATE = 0.001


def run_depth(out_dir, seeds, seconds, count, env, learning_rate=DEPTH_LEARNING_RATE):
    """Every DEPTH_VARIANT at every number of decoupling points as a chain of real processes,
    and backprop of the same network in one process (every layer of every method at
    learning_rate), per seed: [result dicts]."""
    results = []
    for seed in seeds:
        data = out_dir / f"data-seed{seed}"
        if not (data / "x.npy").exists():
            launch.generate_data(data, count, seed, env, plot=False)
        print(f"lab/experiments.py: depth: {DEPTH_BACKPROP}, seed {seed}", flush=True)
        _, rows = launch.train_backprop(launch.BackpropConfig(
            data_dir=data, seconds=seconds, sizes=DEEP, optimizer=SETTINGS["optimizer"],
            learning_rate=learning_rate, batch_size=SETTINGS["batch_size"],
            decay=1.0, seed=seed, eval_every=20_000))
        results.append({"config": DEPTH_BACKPROP, "points": 0, "seed": seed,
                        "final_mse": rows[-1]["heldout_mse"], "cosine": []})
        for points, splits in DEPTH_SPLITS.items():
            for name, update, conditioned in DEPTH_VARIANTS:
                run = out_dir / f"depth-{slug(name)}-{points}-seed{seed}"
                print(f"lab/experiments.py: depth: {name}, {points} decoupling point(s), seed "
                      f"{seed}", flush=True)
                config = chain.ChainConfig(run_dir=run, sizes=DEEP, splits=splits, count=count,
                                           duration=seconds, seed=seed, update=update,
                                           conditioned=conditioned, data_dir=data,
                                           learning_rate=learning_rate)
                chain.run_chain(config, env)
                r = chain_eval.evaluate(run, chain.stage_sizes(DEEP, splits))
                last = r["ticks"][-1]["cosine"] if r["ticks"] else []
                results.append({"config": name, "points": points, "seed": seed,
                                "final_mse": r["final_mse"],
                                "cosine": [c for c in last if c is not None]})
                print(f"lab/experiments.py: -> held-out MSE {r['final_mse']:.4f}", flush=True)
    return results


def depth_table(results):
    """The depth report's Markdown table: per configuration, the final held-out MSE at 1, 2 and
    3 decoupling points (mean (min-max), seeds), and the mean cosine at the last tick."""
    head = "| layer(s) below the last trained by | " + " | ".join(
        f"{p} decoupling point{'s' if p > 1 else ''}" for p in DEPTH_SPLITS) + " |"
    lines = [head, "|---|" + "---|" * len(DEPTH_SPLITS)]
    names = [DEPTH_BACKPROP] + [v[0] for v in DEPTH_VARIANTS]
    for name in names:
        cells = []
        for points in ([0] * len(DEPTH_SPLITS) if name == DEPTH_BACKPROP else DEPTH_SPLITS):
            rows = [r for r in results if r["config"] == name and r["points"] == points]
            if not rows:
                cells.append("-")
                continue
            mse = spread([r["final_mse"] for r in rows])
            cos = [c for r in rows for c in r["cosine"]]
            cells.append(f"{cell(mse)} [{len(rows)}]" + (
                f", cos {np.mean(cos):.2f}" if cos and name.startswith("synthetic") else ""))
        if name == DEPTH_BACKPROP:
            cells = [cells[0]] + ["(no decoupling)"] * (len(cells) - 1)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_depth_report(results, out_dir, title):
    """report.md (the table), results.json and depth.png (one dot per seed) into out_dir."""
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    table = depth_table(results)
    (out_dir / "report.md").write_text(f"# {title}\n\nHeld-out MSE at the end, mean "
                                       f"(min-max) [seeds]; cos: mean cosine(synthetic, true) "
                                       f"over the boundaries at the last tick.\n\n{table}\n")
    with generate.saved_figure(out_dir / "depth.png", figsize=(8.0, 5.0),
                               layout="constrained") as (fig, ax):
        for k, (name, _, _) in enumerate(DEPTH_VARIANTS):
            for points in DEPTH_SPLITS:
                values = [r["final_mse"] for r in results
                          if r["config"] == name and r["points"] == points]
                ax.plot([points + 0.08 * (k - 1.5)] * len(values), values, "o",
                        color=f"C{k}", label=name if points == 1 else None)
        bp = [r["final_mse"] for r in results if r["config"] == DEPTH_BACKPROP]
        if bp:
            ax.axhspan(min(bp), max(bp), color="black", alpha=0.15,
                       label="backprop, one process (seed range)")
        ax.axhline(0.160, linestyle=":", color="black", label="always predicting the mean")
        ax.set_yscale("log")
        ax.set_xticks(list(DEPTH_SPLITS))
        ax.set_xlabel("decoupling points (processes - 1) in " + "-".join(map(str, DEEP)))
        ax.set_ylabel("held-out MSE at the end (log scale)")
        fig.suptitle(title, fontsize="medium")        # over the legend too: never cut off
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return table


def slug(name):
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


# --- The script. ---------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="Compare synthetic gradients with their controls, "
                                            "in one process and in three, and write a report.")
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help=f"{PRESETS['quick']['seeds']} seed, {PRESETS['quick']['seconds']} s "
                             "a run, the three controls and two variants (~4 minutes)")
    preset.add_argument("--full", action="store_true",
                        help=f"{PRESETS['full']['seeds']} seeds for the controls and the best "
                             f"variants, {PRESETS['full']['sweep_seeds']} for the sweep, "
                             f"{PRESETS['full']['seconds']} s a run (the default, ~45 minutes)")
    preset.add_argument("--depth", action="store_true",
                        help=f"the depth experiment: {'-'.join(map(str, DEEP))} as a chain "
                             "with 1, 2 and 3 decoupling points, cDNI, DNI, frozen and random "
                             f"against backprop, {DEPTH_SEEDS} seeds, {DEPTH_SECONDS} s a run "
                             "(~40 minutes)")
    p.add_argument("--images", action="store_true",
                   help="every layer decoupled on images (deep_dni.py): "
                        f"{', '.join(image_table.IMAGE_METHODS)} at 3-6 layers, "
                        f"{image_table.IMAGE_PRESETS['full']['seeds']} seeds, "
                        f"{image_table.IMAGE_PRESETS['full']['steps']} steps a run (36 minutes on this "
                        "project's 2 cores with OPENBLAS_NUM_THREADS=1); with --quick 1 seed, "
                        f"{image_table.IMAGE_PRESETS['quick']['steps']} steps, 3 and 6 layers (~3 minutes) "
                        "(default off: the toy's experiments)")
    p.add_argument("--data", choices=images.NAMES, default="fashion-mnist",
                   help="with --images: the images (default fashion-mnist, the one installed "
                        "here)")
    p.add_argument("--image-dir", type=Path, default=None,
                   help="with --images: the folder of the four gzipped IDX files (default: "
                        "where datasets/images.py looks)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help="with --depth: every layer's Adam learning rate, every method "
                        f"(default {DEPTH_LEARNING_RATE}; the three-process experiments use the "
                        f"scripts' {SETTINGS['learning_rate']})")
    p.add_argument("--count", type=int, default=launch.DecoupledConfig.count,
                   help="training examples per data set (default 20,000, as demo.py)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="where the runs and the report go (default: a new "
                        "runs/experiments-<date-time> next to this file)")
    args = p.parse_args(argv)
    if args.images:
        if args.depth:
            p.error("--images and --depth are separate experiments: give one")
        for name in ("learning_rate", "count"):
            if getattr(args, name) != p.get_default(name):
                p.error(f"--{name.replace('_', '-')} is not for --images (it uses deep_dni's "
                        "settings)")
    elif args.data != p.get_default("data") or args.image_dir is not None:
        p.error("--data and --image-dir are for --images only")
    if args.learning_rate is None:
        args.learning_rate = DEPTH_LEARNING_RATE
    elif not args.depth:
        p.error("--learning-rate is for --depth only (the other experiments use the scripts' "
                "settings)")
    elif not args.learning_rate > 0:
        p.error(f"--learning-rate must be positive (got {args.learning_rate:g})")
    if args.count < 1000:
        p.error("--count must be at least 1000")
    return args


DEPTH_SEEDS, DEPTH_SECONDS = 3, 45


def main_depth(args):
    out_dir = launch.new_run_dir(args.run_dir, "depth-")
    print(f"lab/experiments.py: depth: {DEPTH_SECONDS} s a run, {DEPTH_SEEDS} seeds, learning rate "
          f"{args.learning_rate}, into {out_dir}", flush=True)
    results = run_depth(out_dir, range(DEPTH_SEEDS), DEPTH_SECONDS, args.count,
                        launch.child_env(), args.learning_rate)
    print(write_depth_report(results, out_dir, f"lab/experiments.py --depth: {'-'.join(map(str, DEEP))}"
                             f", {DEPTH_SECONDS} s per run, Adam at {args.learning_rate}, "
                             f"{args.count:,} examples"))
    print(f"lab/experiments.py: report in {out_dir / 'report.md'}", flush=True)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    # Ctrl-C and SIGTERM unwind through the launchers, which stop every process they started
    # (even when a shell started this in the background with SIGINT ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.depth:
        return main_depth(args)
    if args.images:
        return image_table.main_images(args)
    preset = "quick" if args.quick else "full"
    p = PRESETS[preset]
    seconds = p["seconds"]
    out_dir = launch.new_run_dir(args.run_dir, "experiments-")
    env = launch.child_env()
    print(f"lab/experiments.py: {preset}: {seconds} s a run, settings {SETTINGS}, into {out_dir}",
          flush=True)
    results = []

    def run(variant, seeds):
        for seed in seeds:
            data = out_dir / f"data-seed{seed}"
            if not (data / "x.npy").exists():
                launch.generate_data(data, args.count, seed, env, plot=False)
            for world in variant.worlds:
                folder = out_dir / f"{slug(variant.name)}-{slug(world)}-seed{seed}"
                folder.mkdir(parents=True, exist_ok=True)
                print(f"lab/experiments.py: {variant.name}, {world}, seed {seed}", flush=True)
                if world == ONE:
                    r = run_one_process(variant, seed, seconds, data, folder)
                else:
                    (folder / "data").symlink_to(data, target_is_directory=True)
                    r = run_three_processes(variant, seed, seconds, folder, args.count, env)
                results.append({"config": variant.name, "world": world, "seed": seed, **r})
                print(f"lab/experiments.py: -> held-out MSE {r['final_mse']:.4f}", flush=True)

    for variant in CONTROLS:
        run(variant, range(p["seeds"]))
    for variant in p["sweep"]:
        run(variant, range(p["sweep_seeds"]))
    # The best conditioned and unconditioned variants get as many seeds as the controls.
    if p["sweep_seeds"] < p["seeds"]:
        for conditioned in (False, True):
            best = best_variant(summarize(results, seconds),
                                [v for v in p["sweep"] if v.conditioned == conditioned])
            if best is not None:
                run(best, range(p["sweep_seeds"], p["seeds"]))
    table = write_report(results, out_dir, f"lab/experiments.py --{preset}: {seconds} s per run, "
                                           f"{args.count:,} examples, {SETTINGS}", seconds)
    print(table)
    print(f"lab/experiments.py: report in {out_dir / 'report.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
