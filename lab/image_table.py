"""The images table: every layer decoupled on Fashion-MNIST (or MNIST), one row per method and
one column per depth, as the paper's feed-forward table (docs/images.md). Run it as
`python -m lab.experiments --images [--quick]`; report.md, report.json and images.png.
"""

import json
import sys
import textwrap
import time
from pathlib import Path

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    import report                        # noqa: F401  lab/report.py says how to run it, and exits

import numpy as np

import generate
from datasets import images
from lab import report
from lab.report import percent, spread
from parts import decoupled

# The images' --method names (decoupled.IMAGE_METHODS), as the table labels them.
IMAGE_METHODS = {"backprop": "backprop (true gradients)", "cdni": "cDNI (h and the label)",
                 "dni": "DNI (h alone)", "top-only": "top-only (the paper's No Bprop)",
                 "random": "random directions (true lengths)"}
IMAGE_PRESETS = {
    "quick": dict(depths=(3, 6), seeds=1, steps=500),
    "full": dict(depths=(3, 4, 5, 6), seeds=3, steps=1500),
}


def run_images(data, depths, seeds, steps, on_result=None, say=print, name="fashion-mnist"):
    """decoupled.run on data (the set called name) at the images' defaults for every seed,
    depth and method, measured every steps // 10 steps: [{"method", "layers", "seed",
    "accuracy", "loss", "cosines", "seconds", "curve"}], on_result(results) called after each
    run (to save as it goes)."""
    results = []
    for seed in seeds:
        for layers in depths:
            for method in IMAGE_METHODS:
                method_, conditioned = decoupled.IMAGE_METHODS[method]
                config = decoupled.Config(
                    data=name, method=method_, conditioned=conditioned,
                    layers=layers, steps=steps, seed=seed, eval_every=max(1, steps // 10))
                r = decoupled.run(config, data)
                results.append({"method": method, "layers": layers, "seed": seed,
                                **{k: r[k] for k in ("accuracy", "loss", "cosines", "seconds",
                                                     "curve")}})
                say(f"lab/experiments.py: images: {layers} layers, {method}, seed {seed}: test "
                    f"accuracy {r['accuracy']:.4f} ({r['seconds']:.0f} s of training)")
                if on_result is not None:
                    on_result(results)
    return results


def images_summary(results):
    """{(method, layers): {"accuracy": spread over seeds, "seeds": n, "cosines": [mean per
    boundary, None where never measured]}} for every (method, layers) present."""
    summary = {}
    for key, rs in report.groups(results, "method", "layers").items():
        per_boundary = zip(*[r["cosines"] for r in rs], strict=True)
        summary[key] = {"accuracy": spread([r["accuracy"] for r in rs]), "seeds": len(rs),
                        "cosines": [report.mean(column) for column in per_boundary]}
    return summary


def images_tables(results):
    """The report's two Markdown tables: test accuracy (one row per method, one column per
    depth), and the mean cosine at each boundary (bottom first) for the synthetic methods."""
    summary = images_summary(results)
    depths = sorted({r["layers"] for r in results})
    methods = [m for m in IMAGE_METHODS if any(r["method"] == m for r in results)]

    def grid(rows, value):
        return report.table(["method", *(f"{d} layers" for d in depths)], [
            [IMAGE_METHODS[m], *(value(summary[m, d]) if (m, d) in summary else "-"
                                 for d in depths)] for m in rows])
    return (grid(methods, lambda s: percent(s["accuracy"])),
            grid([m for m in methods if m in ("cdni", "dni")], lambda s: ", ".join(
                "-" if c is None else f"{c:.2f}" for c in s["cosines"]) or "-"))


def write_images_report(results, out_dir):
    """report.md, report.json and images.png (drawn from report.json) from results =
    {"title", "setting", "runs", optionally "seconds"}; the text."""
    accuracy, cosines = images_tables(results["runs"])
    took = (f" The run took {results['seconds'] / 60:.0f} minutes."
            if results.get("seconds") is not None else "")
    text = (f"# {results['title']}\n\n{results['setting']}{took}\n\n"
            f"Test accuracy (%) on the 10,000 test images after the last step, mean (min-max) "
            f"over seeds:\n\n{accuracy}\n\nMean cosine between each boundary's synthetic "
            f"gradient and the true one (full backprop of the current network) on 1,000 fixed "
            f"training examples at the last step, boundary 1 (lowest) first, mean over seeds:"
            f"\n\n{cosines}\n\n![accuracy over steps](images.png)")
    report.write(out_dir, "report", text, data=results)
    draw_images(out_dir / "report.json", out_dir / "images.png")
    return text + "\n"


def draw_images(report_json, path):
    """Test accuracy over steps from a report.json: a panel per depth, a line per method (the
    mean over seeds, shaded from the lowest seed to the highest)."""
    report = json.loads(Path(report_json).read_text())
    runs = report["runs"]
    depths = sorted({r["layers"] for r in runs})
    with generate.saved_figure(path, 1, len(depths), figsize=(3.2 * len(depths) + 1.5, 3.8),
                               sharey=True, squeeze=False, layout="constrained") as (fig, axes):
        for ax, depth in zip(axes[0], depths, strict=True):
            for k, (method, label) in enumerate(IMAGE_METHODS.items()):
                curves = [r["curve"] for r in runs if r["layers"] == depth
                          and r["method"] == method]
                if not curves:
                    continue
                n = min(len(c) for c in curves)                 # a cut-short run: the common part
                steps = [row["step"] for row in curves[0][:n]]
                acc = np.array([[row["accuracy"] for row in c[:n]] for c in curves])   # (seeds, n)
                ax.plot(steps, acc.mean(axis=0), color=f"C{k}", label=label)
                ax.fill_between(steps, acc.min(axis=0), acc.max(axis=0), color=f"C{k}",
                                alpha=0.2, linewidth=0)
            ax.set_title(f"{depth} layers ({depth - 1} boundaries)", fontsize="medium")
            ax.set_xlabel("steps (minibatches of 100)")
            ax.grid(True, alpha=0.3)
        axes[0][0].set_ylabel("test accuracy")
        axes[0][0].set_ylim(0.2, 0.9)                         # chance is 0.1
        axes[0][-1].legend(fontsize="small", loc="lower right")
        fig.suptitle(textwrap.fill(report["title"], 110), fontsize="medium")


def main_images(args):
    p = IMAGE_PRESETS["quick" if args.quick else "full"]
    try:
        data = images.load(args.data, args.image_dir)
    except images.DataError as e:
        print(f"lab/experiments.py: {e}", file=sys.stderr)
        return 2
    steps, defaults = p["steps"], decoupled.Config(data=args.data)
    title = (f"lab/experiments.py --images{' --quick' if args.quick else ''}: {args.data}, "
             f"{steps} steps, {p['seeds']} seed{'s' if p['seeds'] > 1 else ''}")
    setting = (f"784-256-...-256-10 (L weight layers: L - 1 hidden ReLU layers of 256, He init, "
               f"L - 1 boundaries); softmax cross-entropy; Adam at {defaults.learning_rate:g} for "
               f"every layer and method, at {defaults.model_learning_rate:g} for the linear "
               f"synthetic-gradient models (last layer zero; docs/images.md says why); minibatches"
               f" of {defaults.batch_size}; {steps} steps per run; test accuracy on all 10,000 "
               f"test images; float32; seeds 0-{p['seeds'] - 1}. Machine: {report.machine()}.")
    out_dir = report.start(args.run_dir, "images-", "lab/experiments.py", title)
    t0 = time.perf_counter()

    def save(results, **seconds):
        return write_images_report(dict(title=title, setting=setting, runs=results, **seconds),
                                   out_dir)

    results = run_images(data, p["depths"], range(p["seeds"]), steps, on_result=save,
                         name=args.data)
    print(save(results, seconds=time.perf_counter() - t0))
    print(f"lab/experiments.py: report in {out_dir / 'report.md'}", flush=True)
    return 0
