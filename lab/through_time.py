"""The paper's Table 1 on 2 cores: the longest Copy (or Repeat Copy) length an LSTM learns
within a budget, at each truncation T, with truncated BPTT, DNI and cDNI, over seeds.

    python -m lab.through_time --picture docs/through-time.png    # the table (~1 hour)
    python -m lab.through_time --truncations 3 --seeds 1 --steps 2000       # a look
    python -m lab.through_time --task repeat-copy

Every run is parts/recurrent.run at its defaults but for the method, T, seed, --steps and
--learning-rate. Each result is appended to the run folder's runs.jsonl as it finishes, and
a folder given again skips what it holds; through-time.md, .json and .png go there, the
picture to --picture too. docs/through-time.md has the results.
"""

import argparse
import dataclasses
import json
import sys
from pathlib import Path

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    import report                        # noqa: F401  lab/report.py says how to run it, and exits

import generate
from datasets import copy_tasks
from lab import report
from parts import options, recurrent, snapshots

STEPS, LEARNING_RATE = 20_000, 1e-2            # docs/through-time.md: why these
LABELS = {"bptt": "BPTT (zero at the cut)", "dni": "DNI (M sees the state)",
          "cdni": "cDNI (M sees the state and the next T targets)"}


def parse_args(argv):
    p = argparse.ArgumentParser(description="Longest copy length learned against T: "
                                            "truncated BPTT, DNI, cDNI.")
    p.add_argument("--task", choices=copy_tasks.TASKS, default="copy",
                   help="which task (default copy, the paper's first)")
    p.add_argument("--truncations", type=report.ints, default=[2, 3, 4, 5, 8],
                   help="the T to run (default 2,3,4,5,8, the paper's)")
    p.add_argument("--seeds", type=int, default=3,
                   help="seeds 0..N-1 of each cell (default 3: the spread of a cell)")
    p.add_argument("--steps", type=int, default=STEPS,
                   help=f"minibatches per run (default {STEPS:,}; dni.py's "
                        f"{recurrent.Config.steps:,} leave BPTT at T = 8 budget-bound)")
    p.add_argument("--learning-rate", type=float, default=LEARNING_RATE,
                   help=f"the LSTM's Adam, every method's (default {LEARNING_RATE:g}; dni.py's "
                        f"{recurrent.Config.learning_rate:g} climbs more slowly)")
    p.add_argument("--run-dir", type=generate.out_path, default=None,
                   help="the run folder; given again, its finished runs are kept (default: "
                        "a new runs/through-time-<date>)")
    p.add_argument("--picture", default="none",
                   help="also draw the picture here, e.g. docs/through-time.png to replace "
                        "the docs' (default none: the run folder's through-time.png only)")
    args = p.parse_args(argv)
    options.check_at_least(p, args, 1, "seeds", "steps")
    options.check_positive(p, args, "learning_rate")
    return args


def lengths_cell(runs):
    """'mean [seed 0, seed 1, ...]' of the longest lengths learned, or '-'."""
    if not runs:
        return "-"
    values = [r["length"] for r in sorted(runs, key=lambda r: r["seed"])]
    return f"{sum(values) / len(values):.1f} {values}"


def write_table(runs, title, setting):
    """The Markdown: a row per method, a column per T, each cell over the seeds."""
    ts = sorted({r["truncation"] for r in runs})
    by = report.groups(runs, "method", "truncation")
    rows = [[LABELS[m]] + [lengths_cell(by.get((m, t), [])) for t in ts]
            for m in recurrent.METHODS]
    return report.table(["method"] + [f"T = {t}" for t in ts], rows, f"## {title}", setting)


def draw(runs, title, path):
    """Longest length against T, a line per method through the seeds' means, each seed a dot."""
    styles = {"bptt": "o-", "dni": "s-", "cdni": "^-"}
    by = report.groups(runs, "method", "truncation")
    with generate.saved_figure(path, figsize=(6.4, 4.2)) as (fig, ax):
        for k, method in enumerate(recurrent.METHODS):
            ts = sorted(t for m, t in by if m == method)
            means = [report.mean([r["length"] for r in by[method, t]]) for t in ts]
            line, = ax.plot(ts, means, styles[method], label=LABELS[method])
            for t in ts:                 # the seeds, nudged apart so that equal ones show
                values = [r["length"] for r in by[method, t]]
                ax.plot([t + 0.08 * (k - 1)] * len(values), values, ".",
                        color=line.get_color(), alpha=0.5)
        ts = sorted({t for _, t in by})
        if ts and runs[0]["task"] == "copy":     # an answer comes L + 1 steps after its input
            ax.plot(ts, [t - 2 for t in ts], "k:", label="the longest a T-step window holds "
                                                         "(T - 2)")
        ax.set_xlabel("T, steps backpropagated through (truncation)")
        ax.set_ylabel("longest pattern length learned")
        ax.set_title(title, fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()


def main(argv=None):
    args = parse_args(argv)
    base = recurrent.Config(task=args.task, steps=args.steps, learning_rate=args.learning_rate)
    title = (f"{args.task}: longest length learned in {args.steps:,} minibatches at "
             f"{args.learning_rate:g}, "
             f"{args.seeds} seed{'s' if args.seeds > 1 else ''}")
    setting = (f"LSTM of {base.hidden} units, sigmoid outputs, bit-wise cross-entropy; Adam at "
               f"{base.learning_rate:g} (M: Adam at {base.model_learning_rate:g}, linear, last "
               f"layer zero); {base.batch_size} sequences a minibatch; a length is learned when "
               f"the mean bits wrong per sequence over {base.window} minibatches falls below "
               f"{base.threshold:g}. Cells: the mean [each seed]. Machine: {report.machine()}.")
    out_dir = report.start(args.run_dir, "through-time-", "lab/through_time.py", title)
    done_path = out_dir / "runs.jsonl"
    runs = snapshots.read_metrics(done_path)      # a line a run, as metrics are
    for r in runs:                                # runs.jsonl from before --learning-rate
        r.setdefault("learning_rate", recurrent.Config.learning_rate)
    fields = ("task", "method", "truncation", "seed", "steps", "learning_rate")
    done = {tuple(r[k] for k in fields) for r in runs}
    for seed in range(args.seeds):
        for t in args.truncations:
            for method in recurrent.METHODS:
                config = dataclasses.replace(base, method=method, truncation=t, seed=seed)
                key = tuple(getattr(config, k) for k in fields)
                if key in done:
                    continue
                result = recurrent.run(config)
                run = dict(zip(fields, key, strict=True), length=result["length"],
                           seconds=result["seconds"], climbs=result["climbs"])
                print(f"{method} T = {t} seed {seed}: length {run['length']} "
                      f"({run['seconds']:.0f} s)", flush=True)
                with done_path.open("a") as f:
                    f.write(json.dumps(run) + "\n")
                runs.append(run)
    runs = [r for r in runs if (r["task"], r["steps"], r["learning_rate"])   # what was asked
            == (args.task, args.steps, args.learning_rate) and r["seed"] < args.seeds
            and r["truncation"] in args.truncations]
    if args.picture != "none":
        draw(runs, title, Path(args.picture))
    return report.finish(out_dir, "through-time", write_table(runs, title, setting),
                         "lab/through_time.py", data=runs,
                         draw=lambda path: draw(runs, title, path))


if __name__ == "__main__":
    sys.exit(main())
