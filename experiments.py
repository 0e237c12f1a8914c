"""Test the paper's claims on this problem: which synthetic-gradient models teach layer 1?

Run it by hand (each configuration is a real three-process run, one after another):

    python experiments.py --quick      # ~3.5 minutes: 1 seed, 20 s per run
    python experiments.py              # the full set: 3 seeds, 45 s per run (~20 minutes)
    python experiments.py --help

Configurations (all with demo.py's settings otherwise):
- no backprop: layer 1 frozen at its initial weights (--update-probability 0), the control that
  every other row must beat for layer 1 to have learned anything from synthetic gradients;
- original: the original oracle, 12 hidden sigmoid units, random initial weights;
- zero-init: the same with its last layer initialised to zero, as in the paper;
- linear, zero-init: no hidden layer, g_hat = A h + b;
- linear cDNI, zero-init: the linear model also sees the target, g_hat = A [h, y] + b;
- the best of those four at update probability 0.5 and 0.2 (the paper's sporadic updates);
plus plain backprop (sgd.py's training, in-process, with the same minibatch and learning rate)
for the same time.

Writes report.md (a table: final held-out MSE as mean and spread over seeds, cosine similarity
of synthetic to true gradients, examples/s, staleness) and report.png into its run folder.
"""

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import generate
import launch
import snapshots
from launch import fmt

PRESETS = {"quick": dict(seeds=1, seconds=20), "full": dict(seeds=3, seconds=45)}
ORACLE = {k: v for k, v in launch.DEMO_ORACLE.items() if k != "zero_init"}  # demo's, no zero-init
# (name, what differs from the demo's settings): the oracle's options, the input trainer's.
CONFIGS = [
    ("no backprop (layer 1 frozen)", dict(oracle=ORACLE, input={"update_probability": 0})),
    ("original (12 hidden, random init)", dict(oracle=ORACLE)),
    ("zero-init", dict(oracle={**ORACLE, "zero_init": True})),
    ("linear, zero-init", dict(oracle={**ORACLE, "hidden": 0, "zero_init": True})),
    ("linear cDNI, zero-init",
     dict(oracle={**ORACLE, "hidden": 0, "zero_init": True, "conditioned": True})),
]
MODELS = [name for name, _ in CONFIGS[1:]]      # the candidates for "best"
SPORADIC = (0.5, 0.2)


def run_config(name, config, env):
    """One real three-process run on fresh data in config.run_dir; its final figures."""
    launch.generate_data(config.run_dir / "data", config.count, config.seed, env, plot=False)
    final = launch.run_decoupled(config, env)
    x, y = generate.heldout()
    inp = snapshots.read_metrics(config.run_dir / "metrics" / "train_input.jsonl")[-1]
    return {"config": name, "seed": config.seed,
            "mse": snapshots.composed_mse(config.run_dir / "progress", x, y),
            "cosine": final["oracle"]["synthetic_gradient_quality"]["cosine_similarity"],
            "examples_per_s": inp["examples"] / max(inp["seconds"], 1e-9),
            "output_staleness_s": final["output_trainer"]["staleness_s"],
            "oracle_staleness_s": final["oracle"]["staleness_s"]}


def run_backprop(config, count, env):
    """Plain backprop in this process (launch.train_backprop) on `count` fresh examples in
    config.data_dir; its final figures."""
    launch.generate_data(config.data_dir, count, config.seed, env, plot=False)
    _, rows = launch.train_backprop(config)
    return {"config": "plain backprop (one process)", "seed": config.seed,
            "mse": rows[-1]["heldout_mse"], "cosine": None,
            "examples_per_s": rows[-1]["examples"] / rows[-1]["seconds"],
            "output_staleness_s": None, "oracle_staleness_s": None}


def slug(name):
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def summarize(results):
    """One row per configuration, in first-seen order: mean and spread over seeds."""
    rows = {}
    for r in results:
        rows.setdefault(r["config"], []).append(r)

    def mean(rs, key):
        values = [r[key] for r in rs if r[key] is not None]
        return statistics.fmean(values) if values else None

    out = []
    for name, rs in rows.items():
        mses = [r["mse"] for r in rs]
        out.append({"config": name, "seeds": len(rs), "mse_mean": statistics.fmean(mses),
                    "mse_min": min(mses), "mse_max": max(mses),
                    "mse_sd": statistics.stdev(mses) if len(mses) > 1 else None,
                    "cosine": mean(rs, "cosine"), "examples_per_s": mean(rs, "examples_per_s"),
                    "output_staleness_s": mean(rs, "output_staleness_s"),
                    "oracle_staleness_s": mean(rs, "oracle_staleness_s")})
    return out


def write_report(results, out_dir, title):
    """report.md (the table), report.json (every run) and report.png (MSE per config)."""
    rows = summarize(results)
    lines = [f"# {title}", "",
             "| configuration | seeds | held-out MSE, mean | min - max | cosine(synthetic, true) "
             "| input examples/s | staleness (s): output trainer / oracle |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['config']} | {r['seeds']} | {r['mse_mean']:.4f} | "
                     f"{r['mse_min']:.4f} - {r['mse_max']:.4f} | {fmt(r['cosine'], '.2f')} | "
                     f"{fmt(r['examples_per_s'], ',.0f')} | "
                     f"{fmt(r['output_staleness_s'], '.1f')} / "
                     f"{fmt(r['oracle_staleness_s'], '.1f')} |")
    (out_dir / "report.md").write_text("\n".join(lines) + "\n")
    (out_dir / "report.json").write_text(json.dumps({"runs": results, "summary": rows},
                                                    indent=2))
    draw_report(rows, results, out_dir / "report.png", title)
    return "\n".join(lines)


def draw_report(rows, results, path, title):
    """Held-out MSE per configuration: a bar for the mean, a dot per seed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.5), layout="constrained")
    names = [r["config"] for r in rows]
    ax.barh(range(len(rows)), [r["mse_mean"] for r in rows], color="tab:blue", alpha=0.4,
            label="mean over seeds")
    for k, name in enumerate(names):
        mses = [r["mse"] for r in results if r["config"] == name]
        ax.plot(mses, [k] * len(mses), "o", color="tab:blue", markersize=4,
                label="one seed" if k == 0 else None)
    frozen = next((r["mse_mean"] for r in rows if r["config"].startswith("no backprop")), None)
    if frozen is not None:
        ax.axvline(frozen, linestyle="--", color="tab:red", label="layer 1 frozen (control)")
    ax.set_yticks(range(len(rows)), names)
    ax.invert_yaxis()
    ax.set_xlabel("held-out MSE of the composed network at the end (lower is better)")
    ax.set_title(title, fontsize="medium")
    ax.legend(fontsize="small")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def parse_args(argv):
    p = argparse.ArgumentParser(description="Run the paper's ablations as real three-process "
                                            "runs and write a report.")
    preset = p.add_mutually_exclusive_group()
    preset.add_argument("--quick", action="store_true",
                        help=f"{PRESETS['quick']['seeds']} seed, {PRESETS['quick']['seconds']} s "
                             "a run (~3.5 minutes in all)")
    preset.add_argument("--full", action="store_true",
                        help=f"{PRESETS['full']['seeds']} seeds, {PRESETS['full']['seconds']} s a "
                             "run (the default, ~20 minutes)")
    p.add_argument("--count", type=int, default=launch.DecoupledConfig.count,
                   help="training examples per run (default 20,000, as demo.py)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="where the runs and the report go (default: a new "
                        "runs/experiments-<date-time> next to this file)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    preset = "quick" if args.quick else "full"
    seeds, seconds = PRESETS[preset]["seeds"], PRESETS[preset]["seconds"]
    out_dir = launch.new_run_dir(args.run_dir, "experiments-")
    env = launch.child_env()
    print(f"experiments.py: {preset}: {seeds} seed(s), {seconds} s a run, into {out_dir}",
          flush=True)
    base = launch.DecoupledConfig(run_dir=out_dir, count=args.count, duration=seconds,
                                  status_every=10)         # the demo's settings otherwise
    results = []

    def run(name, changes):
        for seed in range(seeds):
            print(f"experiments.py: {name}, seed {seed}", flush=True)
            config = dataclasses.replace(base, run_dir=out_dir / f"{slug(name)}-seed{seed}",
                                         seed=seed, **changes)
            results.append(run_config(name, config, env))
            print(f"experiments.py: -> held-out MSE {results[-1]['mse']:.4f}", flush=True)

    for name, changes in CONFIGS:
        run(name, changes)
    best = min((r for r in summarize(results) if r["config"] in MODELS),
               key=lambda r: r["mse_mean"])["config"]
    changes = dict(CONFIGS)[best]
    for p in SPORADIC:
        run(f"{best}, update probability {p}", {**changes, "input": {"update_probability": p}})
    for seed in range(seeds):
        matched = launch.backprop_like(dataclasses.replace(base, seed=seed))
        backprop = launch.BackpropConfig(out_dir / f"data-seed{seed}", seconds,
                                         metrics=out_dir / f"backprop-seed{seed}.jsonl",
                                         **matched)
        results.append(run_backprop(backprop, args.count, env))
    table = write_report(results, out_dir, f"experiments.py --{preset}: {seeds} seed(s), "
                                           f"{seconds} s per run, {args.count:,} examples")
    print(table)
    print(f"experiments.py: report in {out_dir / 'report.md'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
