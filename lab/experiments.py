"""Test the paper's claims on this problem: what do synthetic gradients teach layer 1? Run by
hand; report.md, report.json and report.png go into a new run folder (docs/experiments.md):

    python -m lab.experiments --quick      # ~4 minutes: 1 seed, 15 s a run, 2 variants
    python -m lab.experiments              # the full set: 3-5 seeds, 30 s a run (~45 min)
    python -m lab.experiments --depth      # 1-3 decoupling points as chains (~40 min)
    python -m lab.experiments --images --quick     # every layer decoupled (lab/image_table.py)

Every configuration of layer 1 (backprop, frozen, random directions, or a synthetic-gradient
model) runs with SETTINGS in one process (parts/decoupled.py) and in three (the local mode).
"""

import argparse
import dataclasses
import statistics
import sys
import textwrap

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    import report                        # noqa: F401  lab/report.py says how to run it, and exits

import numpy as np

import chain
import generate
from generate import fmt
from lab import bench, image_table, race, report
from lab.report import cell, spread
from parts import classify, decoupled, options, snapshots
from runner import launch, processes

ONE, THREE = "one process", "three processes"
# The settings every row shares: Adam for every layer and model (docs/experiments.md).
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
    """decoupled.run for `seconds` of training: {"points": [(s, examples, mse)], ...}."""
    result = decoupled.run(decoupled.Config(
        data_dir=data_dir, seconds=seconds, eval_every=5_000, method=variant.update,
        hidden=variant.hidden, conditioned=variant.conditioned, seed=seed,
        model_optimizer=SETTINGS["optimizer"], metrics=out_dir / "dni.jsonl", **SETTINGS))
    points = [(m["seconds"], m["examples"], m["heldout_mse"]) for m in result["curve"]]
    return {"points": points, "final_mse": result["heldout_mse"], "cosine": result["cosine"],
            "examples_per_s": result["examples_per_s"]}


def decoupled_config(variant, seed, seconds, run_dir, count):
    """The demo's three processes with SETTINGS and the model beside layer 1 (the local mode,
    the paper's layout: no request per minibatch, so the comparison is of asynchrony, not HTTP)."""
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
    """The three processes on run_dir/data; points at each paired snapshot tick."""
    final, inp, curve = bench.three_processes(
        decoupled_config(variant, seed, seconds, run_dir, count), env)
    return {"points": three_process_points(curve, inp, inp[0]["time"]),
            "final_mse": snapshots.composed_mse(run_dir / "progress", *generate.heldout()),
            "cosine": final["oracle"]["synthetic_gradient_quality"]["cosine_similarity"],
            "examples_per_s": inp[-1]["examples"] / max(inp[-1]["seconds"], 1e-9)}


def three_process_points(curve, input_lines, origin):
    """[(seconds, examples, mse)] of curve [(seconds, mse)], the examples the input trainer had
    streamed by each tick interpolated between its metrics lines (time.time(), examples)."""
    times = [line["time"] - origin for line in input_lines]
    examples = [line["examples"] for line in input_lines]
    return [(s, float(np.interp(s, times, examples)), mse) for s, mse in curve]


# --- Reading the points. -------------------------------------------------------------------------

def mse_at_time(points, seconds):
    """The MSE of the last point at or before `seconds` (None if there is none)."""
    return race.mse_at([(s, mse) for s, _, mse in points], seconds + 1e-9)


def mse_at_examples(points, examples):
    """The MSE of the first point with at least `examples` examples (None if never reached)."""
    return next((mse for _, n, mse in points if n >= examples), None)


def times_for(seconds):
    return (round(seconds / 3, 1), round(2 * seconds / 3, 1), float(seconds))


def summarize(results, seconds):
    """One row per (configuration, world), in first-seen order: spreads over seeds."""
    rows = []
    for (config, world), rs in report.groups(results, "config", "world").items():
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
    text = report.table(
        ["configuration", "world", "seeds", *measures, "cosine(synthetic, true)", "examples/s"],
        [[r["config"], r["world"], r["seeds"], *(cell(r[m]) for m in measures),
          cell(r["cosine"], ".2f"), fmt(r["examples_per_s"] and r["examples_per_s"][0], ",.0f")]
         for r in rows], f"# {title}", "Held-out MSE, mean (min-max) over seeds; lower is "
        f"better. Var(y), the MSE of predicting the mean: {generate.heldout()[1].var():.3f}.")
    text += "\n\nChecks:\n\n" + "\n".join(
        f"- {'yes' if ok else 'no' if ok is not None else '?'}: {statement}"
        for statement, ok in checks(rows, seconds))
    return report.write(out_dir, "report", text, {"runs": results, "summary": rows},
                        lambda path: draw_report(rows, results, path, title))


def draw_report(rows, results, path, title):
    """Final held-out MSE per configuration and world: a bar for the mean, a dot per seed."""
    from matplotlib.patches import Patch

    colours = {ONE: "tab:blue", THREE: "tab:orange"}
    with generate.saved_figure(path, figsize=(9, 0.45 * len(rows) + 1.5),
                               layout="constrained") as (fig, ax):
        for k, r in enumerate(rows):
            mses = [x["final_mse"] for x in results
                    if x["config"] == r["config"] and x["world"] == r["world"]]
            ax.barh(k, r["final"][0], color=colours[r["world"]], alpha=0.4)
            ax.plot(mses, [k] * len(mses), "o", color=colours[r["world"]], markersize=4)
            if r["config"].startswith("frozen"):
                ax.axvline(r["final"][0], linestyle="--", color=colours[r["world"]],
                           linewidth=1)
        ax.set_yticks(range(len(rows)), [f"{r['config']} ({r['world']})" for r in rows],
                      fontsize="small")
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel("held-out MSE at the end, log scale (bars: mean; dots: seeds; dashed: "
                      "frozen layer 1)")
        ax.set_title(textwrap.fill(title, 75), fontsize="medium")
        ax.legend(handles=[Patch(color=colour, alpha=0.4, label=world)
                           for world, colour in colours.items()], fontsize="small")


# --- The depth experiment: 1, 2 and 3 decoupling points on one deeper network (chain.py). --------

DEEP = (2, 32, 32, 32, 32, 1)
DEPTH_SPLITS = {1: (1,), 2: (1, 2), 3: (1, 2, 3)}            # decoupling points -> cuts
DEPTH_VARIANTS = (("synthetic, cDNI", "synthetic", True), ("synthetic, DNI", "synthetic", False),
                  ("frozen (no bprop)", "frozen", True), ("random directions", "random", True))
DEPTH_BACKPROP = "backprop (true gradients, one process)"
DEPTH_LEARNING_RATE = 0.001     # every layer's Adam rate here (docs/chain.md says why)


def run_depth(out_dir, seeds, seconds, count, env, learning_rate=DEPTH_LEARNING_RATE,
              on_result=lambda results: None):
    """[results] per seed: every DEPTH_VARIANT at each number of decoupling points as a chain,
    and backprop of the same network in one process, every layer at learning_rate; on_result
    (results so far) after each run."""
    results = []
    for seed in seeds:
        data = race.toy_data(out_dir / f"data-seed{seed}", count, seed)
        say(f"depth: {DEPTH_BACKPROP}, seed {seed}")
        one = bench.run_backprop(launch.BackpropConfig(
            data_dir=data, seconds=seconds, sizes=DEEP, optimizer=SETTINGS["optimizer"],
            learning_rate=learning_rate, batch_size=SETTINGS["batch_size"],
            decay=1.0, seed=seed, eval_every=20_000))
        results.append({"config": DEPTH_BACKPROP, "points": 0, "seed": seed,
                        "final_mse": one["final_mse"], "cosine": []})
        on_result(results)
        for points, splits in DEPTH_SPLITS.items():
            for name, update, conditioned in DEPTH_VARIANTS:
                run = out_dir / f"depth-{slug(name)}-{points}-seed{seed}"
                say(f"depth: {name}, {points} decoupling point(s), seed {seed}")
                config = chain.ChainConfig(run_dir=run, sizes=DEEP, splits=splits, count=count,
                                           duration=seconds, seed=seed, update=update,
                                           conditioned=conditioned, data_dir=data,
                                           learning_rate=learning_rate)
                r = race.run_chain(config, env)[1]
                last = r["ticks"][-1]["cosine"] if r["ticks"] else []
                results.append({"config": name, "points": points, "seed": seed,
                                "final_mse": r["final_mse"],
                                "cosine": [c for c in last if c is not None]})
                say(f"-> held-out MSE {r['final_mse']:.4f}")
                on_result(results)
    return results


def depth_table(results):
    """The depth report's Markdown table: per configuration, the final held-out MSE at 1, 2 and
    3 decoupling points (mean (min-max), seeds), and the mean cosine at the last tick."""
    seeds = report.groups(results, "config", "points")

    def value(name, points):
        rows = seeds.get((name, points), [])
        cos = [c for r in rows for c in r["cosine"]]
        note = f", cos {np.mean(cos):.2f}" if cos and name.startswith("synthetic") else ""
        return f"{cell(spread([r['final_mse'] for r in rows]))} [{len(rows)}]{note}" \
            if rows else "-"
    return report.table(
        ["layer(s) below the last trained by", *(f"{p} decoupling point{'s' if p > 1 else ''}"
                                                 for p in DEPTH_SPLITS)],
        [[DEPTH_BACKPROP, value(DEPTH_BACKPROP, 0)] +
         ["(no decoupling)"] * (len(DEPTH_SPLITS) - 1)] +
        [[name, *(value(name, p) for p in DEPTH_SPLITS)] for name, _, _ in DEPTH_VARIANTS])


def write_depth_report(results, out_dir, title):
    """report.md (the table), results.json and depth.png (one dot per seed) into out_dir."""
    report.write(out_dir, "results", data=results)
    table = depth_table(results)
    report.write(out_dir, "report", f"# {title}\n\nHeld-out MSE at the end, mean (min-max) "
                 f"[seeds]; cos: mean cosine(synthetic, true) over the boundaries at the last "
                 f"tick.\n\n{table}")
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

DEPTH_SEEDS, DEPTH_SECONDS = 3, 45


def parse_args(argv):
    p = argparse.ArgumentParser(description="Compare synthetic gradients with their controls, "
                                            "in one process and in three, and write a report.")
    quick, full = PRESETS["quick"], PRESETS["full"]
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help=f"{quick['seeds']} seed, {quick['seconds']} s a run, two variants "
                             "(default off)")
    preset.add_argument("--full", action="store_true",
                        help=f"{full['seeds']} seeds ({full['sweep_seeds']} for the sweep), "
                             f"{full['seconds']} s a run (the default)")
    preset.add_argument("--depth", action="store_true",
                        help=f"1-3 decoupling points as chains against backprop, {DEPTH_SEEDS} "
                             f"seeds, {DEPTH_SECONDS} s a run (default off)")
    p.add_argument("--images", action="store_true",
                   help="every layer decoupled on images, 3-6 layers (default off)")
    classify.data_arguments(p, what="classify with --images", images_only=True)
    p.add_argument("--learning-rate", type=float, default=None,
                   help=f"with --depth: every layer's Adam rate (default {DEPTH_LEARNING_RATE})")
    p.add_argument("--count", type=int, default=launch.DecoupledConfig.count,
                   help="training examples per data set (default 20,000, as demo.py)")
    p.add_argument("--run-dir", type=generate.out_path, default=None,
                   help="folder for everything (default a new runs/experiments-<date-time>)")
    args = p.parse_args(argv)
    given = {name for name in ("learning_rate", "count", "data", "image_dir")
             if getattr(args, name) != p.get_default(name)}
    if args.images and args.depth:
        p.error("--images and --depth are separate experiments: give one")
    for name in [n for n in ("learning_rate", "count") if n in given] if args.images else ():
        p.error(f"--{name.replace('_', '-')} is not for --images (its settings are fixed)")
    if not args.images and given & {"data", "image_dir"}:
        p.error("--data and --image-dir are for --images only")
    if "learning_rate" in given and not args.depth:
        p.error("--learning-rate is for --depth only (the others use the scripts' settings)")
    if args.learning_rate is None:
        args.learning_rate = DEPTH_LEARNING_RATE
    options.check_positive(p, args, "learning_rate")
    options.check_at_least(p, args, 1000, "count")
    return args


def say(line):
    print(f"lab/experiments.py: {line}", flush=True)


def so_far(results):
    return f" ({len(results)} run{'s' if len(results) > 1 else ''} so far)"


def stopped(out_dir, results):
    """Ctrl-C or SIGTERM: say where the report of the runs done is (if one ended); 130."""
    say(f"stopped; the report of the {len(results)} run(s) done is in {out_dir / 'report.md'}"
        if results else f"stopped before a run ended; what they wrote is in {out_dir}")
    return 130


def main_depth(args):
    out_dir = report.start(args.run_dir, "depth-", "lab/experiments.py", f"depth: {DEPTH_SECONDS}"
                           f" s a run, {DEPTH_SEEDS} seeds, learning rate {args.learning_rate}")
    title = (f"lab/experiments.py --depth: {'-'.join(map(str, DEEP))}, {DEPTH_SECONDS} s per "
             f"run, Adam at {args.learning_rate}, {args.count:,} examples")
    results = []

    def save(done):         # the runs done, the report rewritten after each: not lost to Ctrl-C
        results[:] = done
        write_depth_report(done, out_dir, title + so_far(done))

    try:
        run_depth(out_dir, range(DEPTH_SEEDS), DEPTH_SECONDS, args.count, launch.child_env(),
                  args.learning_rate, save)
    except KeyboardInterrupt:
        return stopped(out_dir, results)
    print(write_depth_report(results, out_dir, title))
    say(f"report in {out_dir / 'report.md'}")
    return 0


def main(argv=None):
    args = parse_args(argv)
    processes.stop_on_signals()        # Ctrl-C and SIGTERM unwind through the launchers
    if args.depth or args.images:
        return main_depth(args) if args.depth else image_table.main_images(args)
    preset = "quick" if args.quick else "full"
    p, env = PRESETS[preset], launch.child_env()
    seconds, results = p["seconds"], []
    out_dir = report.start(args.run_dir, "experiments-", "lab/experiments.py",
                           f"{preset}: {seconds} s a run, settings {SETTINGS}")

    title = f"lab/experiments.py --{preset}: {seconds} s per run, {args.count:,} examples, " \
            f"{SETTINGS}"

    def run(variant, seeds):
        for seed, world in ((seed, world) for seed in seeds for world in variant.worlds):
            data = race.toy_data(out_dir / f"data-seed{seed}", args.count, seed)
            folder = out_dir / f"{slug(variant.name)}-{slug(world)}-seed{seed}"
            folder.mkdir(parents=True, exist_ok=True)
            say(f"{variant.name}, {world}, seed {seed}")
            if world == ONE:
                r = run_one_process(variant, seed, seconds, data, folder)
            else:
                (folder / "data").symlink_to(data, target_is_directory=True)
                r = run_three_processes(variant, seed, seconds, folder, args.count, env)
            results.append({"config": variant.name, "world": world, "seed": seed, **r})
            say(f"-> held-out MSE {r['final_mse']:.4f}")
            write_report(results, out_dir, title + so_far(results), seconds)   # not lost to ^C

    try:
        for variant in CONTROLS:
            run(variant, range(p["seeds"]))
        for variant in p["sweep"]:
            run(variant, range(p["sweep_seeds"]))
        # The best conditioned and unconditioned variants get as many seeds as the controls.
        for conditioned in (False, True) if p["sweep_seeds"] < p["seeds"] else ():
            best = best_variant(summarize(results, seconds),
                                [v for v in p["sweep"] if v.conditioned == conditioned])
            if best is not None:
                run(best, range(p["sweep_seeds"], p["seeds"]))
    except KeyboardInterrupt:
        return stopped(out_dir, results)
    print(write_report(results, out_dir, title, seconds))
    say(f"report in {out_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
