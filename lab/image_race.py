"""The race on real work: a chain of K stages classifying Fashion-MNIST (or MNIST) against
backprop of the same network in one process on the same K cores, to the same test-accuracy
levels. Run by hand, never in the tests:

    python -m lab.image_race                           # K = 2, widths 256,1024, 3 seeds (~20 min)

784-W x K-10, every layer but the last its own stage, both sides with chain.py's settings for
images (the chain counting steps, --delay), run as lab/race.py runs the toy's race (docs/chain.md,
"The race on images"). image-race.md, .json and .png go into the run folder.
"""

import argparse
import json
import sys

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    import report                        # noqa: F401  lab/report.py says how to run it, and exits

import numpy as np

import chain
import generate
import sgd
from datasets import images
from lab import race, report
from lab.report import cell, percent, spread
from parts import classify, options

LEVELS = (0.75, 0.80, 0.84)
RACE_MAX_AHEAD = 1_000          # with --delay free, the chain's --max-ahead (docs/speed.md)
BATCH_SIZE = chain.IMAGES["batch_size"]


def layout(width, stages):
    """(sizes, splits): 784-W x K-10, cut after layers 1 .. K-1."""
    return (784, *([width] * stages), 10), tuple(range(1, stages))


def first_time_at(points, level):
    """The first seconds at which (seconds, accuracy) points reach accuracy >= level, or None."""
    return next((s for s, a in points if a >= level), None)


def examples_to(side, level):
    """The examples a side had trained when its test accuracy first reached level, or None."""
    return next((n for (_, a), n in zip(side["points"], side["examples"], strict=True)
                 if a >= level), None)


def accuracy_at(points, seconds):
    """The accuracy of the last (seconds, accuracy) point at or before `seconds` (1% later
    allowed: a side's last measurement comes a step after its time is up), or None."""
    return next((a for s, a in reversed(points) if s <= 1.01 * seconds), None)


def train_one_process(data, image_dir, sizes, seconds, interval, seed, count, test,
                      learning_rate):
    """The one-process side, measured by test accuracy."""
    x, labels = classify.load_training(data, None, image_dir)
    x, labels = x[:count], labels[:count].astype(np.int64)
    x_test, y_test = classify.load_test(data, image_dir, test)
    return race.train_adam(x, labels, sgd.SoftmaxCrossEntropy, sizes, BATCH_SIZE, learning_rate,
                           seed, seconds, interval, lambda layers: sgd.classification_scores(
                               layers, x_test, y_test)[0], activation=sgd.ReLU, init="he")


def markdown(results, machine):
    rows, top = [], f"{LEVELS[-1]:g}"
    for r in results:
        s = r["summary"]
        for side, name, speed in (("one", "one process", s["one"]["examples_per_s"]),
                                  ("chain", "chain", s["chain"]["slowest_stage_per_s"])):
            taken = [s[k]["examples_to"][top] for k in ("one", side)]
            ratio = report.mean(taken[1]) / report.mean(taken[0]) if all(
                report.mean(t) for t in taken) and side == "chain" else None
            rows.append([f"{r['stages']}, {r['width']}", name, f"{speed:,.0f}",
                         *(race.cell_times(s[side]["to_level"][f"{lv:g}"]) for lv in LEVELS),
                         cell(spread(taken[1]), ",.0f", 1e-3) + (
                             "" if ratio is None else f" ({ratio:.2f}x)"),
                         *(percent(spread(s[side]["accuracy_at"][f"{t:g}"]))
                           for t in s["times"])])
    return report.table(["K, width", "side", "examples/s (chain: slowest stage)",
                         *(f"s to {100 * lv:g}%" for lv in LEVELS),
                         f"thousand examples to {100 * LEVELS[-1]:g}% (chain: x one process's)",
                         *(f"accuracy at {t:g} s, %" for t in results[0]["summary"]["times"])],
                        rows, f"Machine: {machine}.")


def draw(results, path):
    """Test accuracy against seconds, one panel per (K, width), one line per side and seed."""
    with generate.saved_figure(path, 1, len(results), squeeze=False,
                               figsize=(4.2 * len(results), 3.6)) as (fig, axes):
        for ax, r in zip(axes[0], results, strict=True):
            for side, colour, name in (("one", "tab:blue", "one process, backprop"),
                                       ("chain", "tab:orange", "chain, cDNI")):
                for k, run in enumerate(r["runs"]):
                    s, a = zip(*run[side]["points"], strict=True)
                    ax.plot(s, a, color=colour, alpha=0.8, label=name if k == 0 else None)
            for level in LEVELS:
                ax.axhline(level, color="grey", lw=0.5, ls=":")
            ax.set(title=f"K = {r['stages']}, width {r['width']}",
                   xlabel="seconds of training", ylim=(0, 1))
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("test accuracy")
        axes[0][0].legend(loc="lower right", fontsize=8)
        fig.tight_layout()


def main_race(args):
    images.find(args.data, args.image_dir, download=False)     # one line now, not mid-race

    def one(out_dir, s, seed):
        return race.one_process(
            "lab.image_race", out_dir / f"one-w{s['width']}-k{s['stages']}-s{seed}.json",
            s["stages"], data=args.data, image_dir=args.image_dir and str(args.image_dir),
            sizes=layout(s["width"], s["stages"])[0], seconds=args.seconds,
            interval=args.interval, seed=seed, count=args.count, test=args.test,
            learning_rate=args.learning_rate)

    def chained(out_dir, s, seed):
        """A --colocated chain of the race's network with chain.py's image settings."""
        sizes, splits = layout(s["width"], s["stages"])
        return race.chain_side(chain.ChainConfig(**(chain.IMAGES | dict(
            run_dir=out_dir / f"chain-w{s['width']}-k{s['stages']}-s{seed}", sizes=sizes,
            splits=splits, count=args.count, duration=args.seconds, seed=seed,
            snapshot_interval=args.interval, colocated=True, data=args.data,
            image_dir=args.image_dir, max_ahead=args.max_ahead, learning_rate=args.learning_rate,
            delay=None if args.delay == "free" else args.delay))),
            lambda result: [(0.0, result["initial_accuracy"])] +
            [(r["seconds"], r["test_accuracy"]) for r in result["ticks"]] +
            [(args.seconds, result["final_accuracy"])],
            heldout=args.test, data=args.data, image_dir=args.image_dir)

    machine = (f"{report.machine()}; {args.data}, {args.count:,} training images, "
               f"{args.test:,} test images, Adam at {args.learning_rate:g} on every layer, "
               f"minibatch {BATCH_SIZE}, the chain at --delay {args.delay}"
               f"{'' if args.delay != 'free' else f', stage 1 at most {args.max_ahead:,} ahead'}"
               f", {args.seconds:g} s a run, {args.seeds} seeds")

    def summary(runs):
        out = race.summarise(runs, args.seconds, LEVELS, first_time_at, accuracy_at,
                             "accuracy_at")
        for side in ("one", "chain"):               # the examples each seed took to each level
            out[side]["examples_to"] = {f"{lv:g}": [examples_to(r[side], lv) for r in runs]
                                        for lv in LEVELS}
        return out
    return race.run_all(
        args, "image-race", machine, {"stages": args.stages, "width": args.widths},
        {"one": one, "chain": chained}, summary, markdown, draw)


def parse_args(argv):
    p = argparse.ArgumentParser(description="The race on images: a chain of K co-located stages "
                                            "against backprop in one process on K cores.")
    classify.data_arguments(p, what="classify (the toy's race is python -m lab.bench --race)",
                            images_only=True)
    race.add_arguments(p, [2], [256, 1024], 3, 60, 2, run_dir="image-race-")
    p.add_argument("--count", type=int, default=60_000,
                   help="training images (default all 60,000)")
    p.add_argument("--test", type=int, default=10_000,
                   help="test images measured (default all 10,000)")
    p.add_argument("--delay", type=chain.parse_delay, default=chain.IMAGE_DELAY, metavar="D",
                   help="the chain's --delay (default %(default)s, chain.py's for images; free: "
                        "paced by --max-ahead)")
    p.add_argument("--learning-rate", type=float, default=chain.COUNTED_LEARNING_RATE,
                   help="every layer's Adam rate, both sides (default %(default)g)")
    p.add_argument("--max-ahead", type=int, default=RACE_MAX_AHEAD, metavar="N",
                   help=f"with --delay free, chain.py's --max-ahead (default {RACE_MAX_AHEAD:,}: "
                        "a core per stage lets stage 1 run ahead)")
    race.child_arguments(p)                                   # the race's own child
    args = p.parse_args(argv)
    if min(args.stages) < 2:
        p.error("--stages must be at least 2: a chain of one stage is the one process")
    race.check_arguments(p, args, 3, 60.0)
    options.check_at_least(p, args, 1000, "count")
    options.check_at_least(p, args, 100, "test")
    options.check_at_least(p, args, 1, "max_ahead")
    options.check_positive(p, args, "learning_rate")
    if args.count > 60_000 or args.test > 10_000:
        p.error("--count is at most 60,000 and --test at most 10,000")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.one_process is not None:
        args.one_process.write_text(json.dumps(train_one_process(**args.job)))
        return 0
    try:
        return main_race(args)
    except images.DataError as e:
        raise SystemExit(f"image race: {e}") from None


if __name__ == "__main__":
    sys.exit(main())
