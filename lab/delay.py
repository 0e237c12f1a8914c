"""The delay frontier: a chain counting steps (chain.py --delay D) at each D, and free, against
cDNI and top-only in one process at the same number of examples. Run by hand, never in the tests:

    python -m lab.delay                                  # the paper's size, 3 seeds (~1 hour)
    python -m lab.delay --delays 0,2 --seeds 1 --examples 30000      # a look (~2 minutes)

784-256x3-10 as 4 stages, every side at the same settings (docs/chain.md, "The frontier", has
them and the results); --scaled D,... adds those delays again with the layers' rate / (1 + D),
PipeMare's correction. delay.md, .json and .png go into the run folder.
"""

import argparse
import sys
import time

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    import report                        # noqa: F401  lab/report.py says how to run it, and exits

import chain
import generate
from datasets import images
from lab import race, report
from lab.report import percent, spread
from parts import classify, decoupled, options, snapshots
from runner import chain_eval

WIDTH, LAYERS = 256, 4


def one_process(args, method, seed):
    """decoupled.run's cDNI (or top-only) on the same network, data and examples."""
    kind, conditioned = decoupled.IMAGE_METHODS[method]
    steps = -(-args.examples // chain.IMAGES["batch_size"])
    r = decoupled.run(decoupled.Config(
        data=args.data, image_dir=args.image_dir, method=kind, conditioned=conditioned,
        layers=LAYERS, width=WIDTH, examples=args.examples, steps=None, eval_every=steps,
        seed=seed, learning_rate=args.learning_rate, train_examples=args.count,
        eval_examples=args.test))
    return {k: r[k] for k in ("accuracy", "examples_per_s", "seconds", "diverged")}


def chained(args, out_dir, delay, seed, learning_rate):
    """A chain of 4 co-located stages (a BLAS thread each), chain.py's settings for images,
    ended by its examples: its test accuracy, speed and delays."""
    run = out_dir / f"chain-d{delay}-lr{learning_rate:g}-s{seed}"
    config = chain.ChainConfig(**(chain.IMAGES | dict(
        run_dir=run, sizes=(784, *[WIDTH] * (LAYERS - 1), 10), count=args.count,
        duration=args.guard, examples=args.examples, seed=seed, colocated=True, data=args.data,
        image_dir=args.image_dir, delay=None if delay == "free" else delay,
        snapshot_interval=30, status_every=30.0, learning_rate=learning_rate)))
    t0 = time.monotonic()
    final = chain.run_chain(config, race.blas_env(1))
    seconds = time.monotonic() - t0
    layout = chain.stage_sizes(config.sizes, config.splits)
    scores = chain_eval.scores_on(*classify.load_test(args.data, args.image_dir, args.test), True)
    accuracy = scores(chain_eval.load_chain(run, layout, chain_eval.final_label(run, layout)))
    streamed = snapshots.read_metrics(run / "metrics" / "stage1.jsonl")[-1]
    above = [(final[f"stage{k}"] or {}).get("delay_steps") or {} for k in range(2, LAYERS)]
    return {"accuracy": accuracy["test_accuracy"], "seconds": seconds,
            "examples_per_s": streamed["examples"] / max(streamed["seconds"], 1e-9),
            "delay_mean": [streamed.get("delay_mean")] + [d.get("mean") for d in above],
            "delay_max": [streamed.get("delay_max")] + [d.get("max") for d in above],
            "cut_short": final["cut_short"],
            "diverged": any((final[f"stage{k}"] or {}).get("diverged")
                            for k in range(2, LAYERS + 1))}


def settings(args):
    """(label, side, delay, learning rate) of every row, one-process first."""
    lr = args.learning_rate
    return ([("one process, cDNI", "cdni", None, lr),
             ("one process, top-only", "top-only", None, lr)] +
            [(f"chain, D = {d}", "chain", d, lr) for d in args.delays] +
            [(f"chain, D = {d}, rate / {1 + d}", "chain", d, lr / (1 + d))
             for d in args.scaled])


def markdown(runs, machine):
    rows = []
    for (label, *_), seeds in report.groups(runs, "label", "side", "delay", "rate").items():
        delays = [r.get("delay_mean") for r in seeds]
        worst = [max((m for m in r.get("delay_max") or [] if m is not None), default=None)
                 for r in seeds]
        rows.append([label, f"{seeds[0]['rate']:g}",
                     percent(spread([r["accuracy"] for r in seeds])),
                     ", ".join(f"{100 * r['accuracy']:.1f}" for r in seeds),
                     f"{report.mean([r['examples_per_s'] for r in seeds]):,.0f}",
                     f"{report.mean([r['seconds'] for r in seeds]):,.0f}",
                     ", ".join(generate.fmt(report.mean(d or []), ".2f") for d in delays),
                     "-" if worst[0] is None else str(max(worst))])
    return report.table(["method", "rate", "test accuracy, %", "per seed", "examples/s",
                         "seconds", "mean delay (steps, per seed)", "max delay"], rows,
                        f"Machine: {machine}.")


def draw(runs, path):
    """Test accuracy and examples a second against the delay, one point per seed (the rows
    with the rate scaled down as crosses)."""
    chains = [r for r in runs if r["side"] == "chain"]
    order = sorted({r["delay"] for r in chains}, key=lambda d: (d == "free", d))
    labelled = set()
    with generate.saved_figure(path, 1, 2, figsize=(10, 3.8)) as (fig, (acc, speed)):
        for r in chains:
            x, scaled = order.index(r["delay"]), r["rate"] != runs[0]["rate"]
            style = dict(color="tab:green" if scaled else "tab:orange", alpha=0.8,
                         marker="x" if scaled else "o", linestyle="none")
            label = "chain, rate / (1 + D)" if scaled else "chain"
            acc.plot(x, 100 * r["accuracy"], label=None if label in labelled else label, **style)
            labelled.add(label)
            speed.plot(x, r["examples_per_s"], **style)
        for side, colour in (("cdni", "tab:blue"), ("top-only", "tab:grey")):
            values = [100 * r["accuracy"] for r in runs if r["side"] == side]
            if values:
                acc.axhspan(min(values) - 0.05, max(values) + 0.05, color=colour, alpha=0.3,
                            label=f"one process, {side}")
        for ax, label in ((acc, "test accuracy, %"), (speed, "examples a second")):
            ax.set(xticks=range(len(order)), xticklabels=[str(d) for d in order],
                   xlabel="delay bound D (steps)", ylabel=label)
            ax.grid(alpha=0.3)
        acc.legend(loc="lower left", fontsize=8)
        fig.tight_layout()


def main(argv=None):
    args = parse_args(argv)
    images.find(args.data, args.image_dir, download=False)     # one line now, not mid-run
    machine = (f"{report.machine()}; {args.data}, {args.count:,} training images, "
               f"{args.test:,} test images, {args.examples:,} examples a run")
    out_dir = report.start(args.run_dir, "delay-", "delay", machine)
    runs = []
    for seed in range(args.seeds):
        for label, side, delay, rate in settings(args):
            r = (one_process(args, side, seed) if side != "chain" else
                 chained(args, out_dir, delay, seed, rate))
            runs.append({"label": label, "side": side, "delay": delay, "rate": rate,
                         "seed": seed, **r})
            print(f"delay: {label}, seed {seed}: test accuracy {100 * r['accuracy']:.1f}%, "
                  f"{r['examples_per_s']:,.0f} examples/s, {r['seconds']:.0f} s", flush=True)
            report.write(out_dir, "delay", data=runs)
    return report.finish(out_dir, "delay", markdown(runs, machine), "delay", data=runs,
                         draw=lambda path: draw(runs, path))


def delays(text):
    """"0,1,2,free" -> [0, 1, 2, "free"]."""
    return [] if text == "" else [chain.parse_delay(part) for part in text.split(",")]


def parse_args(argv):
    p = argparse.ArgumentParser(description="The delay frontier: a chain counting steps at each "
                                            "delay bound against one process.")
    classify.data_arguments(p, what="classify", images_only=True)
    p.add_argument("--delays", type=delays, default=[0, 1, 2, 4, 8, "free"],
                   help="the chain's --delay values (default 0,1,2,4,8,free)")
    p.add_argument("--scaled", type=delays, default=[],
                   help="these delays again with the layers' rate / (1 + D) (default: none)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--examples", type=int, default=300_000,
                   help="examples every run trains on (default 300,000: 5 epochs)")
    p.add_argument("--learning-rate", type=float, default=chain.COUNTED_LEARNING_RATE,
                   help="every layer's Adam rate, both sides (default %(default)g, dni.py's)")
    p.add_argument("--count", type=int, default=60_000, help="training images (default all)")
    p.add_argument("--test", type=int, default=10_000, help="test images (default all)")
    p.add_argument("--guard", type=float, default=3600.0,
                   help="seconds a chain may take at most: only a guard (default %(default)g)")
    p.add_argument("--run-dir", type=generate.out_path, default=None,
                   help="folder for everything (default: a new runs/delay-<date-time>)")
    args = p.parse_args(argv)
    options.check_at_least(p, args, 1, "seeds")
    options.check_at_least(p, args, 100, "examples")
    options.check_at_least(p, args, 1000, "count")
    options.check_at_least(p, args, 100, "test")
    options.check_positive(p, args, "learning_rate", "guard")
    if not args.delays:
        p.error("--delays needs at least one delay, e.g. 0,1,2")
    if "free" in args.scaled:
        p.error("--scaled takes numbers of steps (a free chain has no D to scale by)")
    return args


if __name__ == "__main__":
    sys.exit(main())
