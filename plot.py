"""Pictures of what the trainers learned: fitted surfaces, held-out MSE and oracle quality.

    python plot.py                                             # the newest run, whichever
    python plot.py --run-dir runs/20240101-120000              # demo.py's: into RUN/plots
    python plot.py --progress-dir progress/20240101-120000     # by hand: beside the weights

A progress folder (the trainers' snapshots) gives fit_<seconds>.png, heldout_mse.jsonl and
mse.png; a run folder (demo.py's) the same into RUN/plots, and comparison.png, curves.png and
evolution.gif (docs/demo.md). A picture whose inputs are missing is skipped, saying why. This
file only draws: parts/snapshots.py reads and measures.
"""

import argparse
import functools
import io
import json
import sys
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image  # pillow: a dependency of matplotlib, used for the GIF

import generate
import sgd
from generate import COLORBAR_LABEL, HERE, LEVELS, draw_surface, saved_figure
from parts import options, snapshots
from parts.snapshots import SWAP_LABEL, NothingToRead, column, last_finite

CURVE_FIGSIZE = (7.2, 5.6)
COMPARISON_PANEL_WIDTH, COMPARISON_HEIGHT = 3.6, 4.6   # inches; 3 panels: 12 x 4.6
RUN_CURVES_FIGSIZE = (8.0, 10.0)
GIF_DPI = 80                           # 432 x 352 pixels a frame: ~30 kB, small for 60 frames
GIF_FRAMES_PER_SECOND = 4
GIF_COLOURS = 64                       # one palette for every frame, so colours never flicker
MEAN_LINE = dict(linestyle=":", color="black", label="always predicting the mean of y")
TICK_LINE = dict(marker="o", markersize=3, label="the composed network at each snapshot tick")
MOMENT_NAMES = {"initial": "untrained (initial)", "final": "when the trainers stopped (final)",
                SWAP_LABEL: "initial layer 1 under final layers 2-3"}


# --- Drawing blocks: a surface in memory, a GIF, and panels that each take an ax. ------------

def surface_image(f, title):
    """save_surface's picture in memory: RGB (height, width, 3) uint8, SURFACE_FIGSIZE x GIF_DPI."""
    out = io.BytesIO()
    generate.save_surface(f, out, title, dpi=GIF_DPI)
    return np.asarray(Image.open(out).convert("RGB"))


def save_gif(images, path):
    """RGB images [(height, width, 3) uint8, ...] as a looping GIF in the first frame's palette,
    undithered: flat bands stay flat (small files) and colours never flicker."""
    assert images, "a GIF needs at least one frame"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    palette = Image.fromarray(images[0]).quantize(GIF_COLOURS, dither=Image.Dither.NONE)
    frames = [Image.fromarray(im).quantize(palette=palette, dither=Image.Dither.NONE)
              for im in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], loop=0,
                   duration=round(1000 / GIF_FRAMES_PER_SECOND))


def predictor(layers):
    """f(p): the network's outputs (n,) for points p (n, 2), as the surface functions want."""
    return functools.partial(sgd.predict, layers)


def draw_placeholder(ax, title, text, width=36):
    """An empty panel that says what should have been there and why not (ticks: the caller's)."""
    ax.set_title(title)
    message = ax.text(0.5, 0.5, textwrap.fill(text, width, break_long_words=True),
                      ha="center", va="center", transform=ax.transAxes, color="dimgray",
                      fontsize="small")
    message.set_in_layout(False)


def finish_axes(ax, title, ylabel, log=False, below=None, ncols=2, xlabel=None, **title_kw):
    """Every curve panel's frame: title, labels, log y, a grid, and the legend below the axes
    (`below`: its offset, where it hides no curve; None: no legend)."""
    ax.set_title(title, **title_kw)
    ax.set_ylabel(ylabel)
    if xlabel:
        ax.set_xlabel(xlabel)
    if log:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if below is not None:
        ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, below),
                  ncols=ncols)


def draw_lines(ax, series, title, ylabel, log=False, baseline=None, below=-0.18, ncols=2,
               xlabel=None, fontsize="medium"):
    """[(label, seconds, values, plot options)] on ax, var(y) dotted if given; the legend below
    (below: its offset) or, with below None, beside the axes, where it hides no data."""
    for label, seconds, values, style in series:
        ax.plot(seconds, values, markersize=3, label=label, **style)
    if baseline is not None:
        ax.axhline(baseline, **MEAN_LINE)
    has_legend = bool(series) or baseline is not None
    finish_axes(ax, title, ylabel, log=log, xlabel=xlabel, fontsize=fontsize, ncols=ncols,
                below=below if has_legend else None)
    if below is None:
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def draw_mse_curve(ax, rows, baseline, xlabel):
    """Held-out MSE (log y) against seconds of draw_progress's rows: ticks on a line, "initial"
    and "final" single markers, the swap and var(y) horizontal lines."""
    ticks = [r for r in rows if isinstance(r["label"], int)]
    if ticks:
        ax.plot([r["seconds"] for r in ticks], [r["mse"] for r in ticks], "-", **TICK_LINE)
    for r in rows:
        if r["label"] in ("initial", "final"):
            ax.plot([r["seconds"]], [r["mse"]], "s" if r["label"] == "initial" else "*",
                    markersize=9, label=MOMENT_NAMES[r["label"]])
        elif r["label"] == SWAP_LABEL:
            ax.axhline(r["mse"], linestyle="--", color="tab:red", label=MOMENT_NAMES[SWAP_LABEL])
    ax.axhline(baseline, **MEAN_LINE)
    finish_axes(ax, "Synthetic gradients: error on points the network never trained on",
                "held-out mean squared error (log scale)", log=True, below=-0.15,
                xlabel=xlabel)


def metrics_of(folder, names):
    """{name: folder/metrics/<name>.jsonl's lines} (snapshots.read_metrics)."""
    return {name: snapshots.read_metrics(Path(folder) / "metrics" / f"{name}.jsonl")
            for name in names}


def print_table(rows):
    """The rows as a table: each moment by name, its seconds and its held-out MSE."""
    print(f"{'moment':>40} {'seconds':>8} {'held-out MSE':>13}")
    for r in rows:
        name = "snapshot" if isinstance(r["label"], int) else MOMENT_NAMES[r["label"]]
        print(f"{name:>40} {generate.fmt(r['seconds'], '.1f'):>8} {r['mse']:>13.6f}")


# --- A progress folder's numbers and pictures, and a run folder's. ----------------------------

def save_comparison(path, panels,
                    title="What each method learned (same colour = same height in every panel)"):
    """draw_comparison into path, each panel COMPARISON_PANEL_WIDTH wide."""
    figsize = (COMPARISON_PANEL_WIDTH * len(panels) + 1.2, COMPARISON_HEIGHT)
    with saved_figure(path, 1, len(panels), figsize=figsize,
                      layout="constrained") as (fig, axes):
        draw_comparison(fig, axes, panels, title)


def draw_comparison(fig, axes, panels, title):
    """Panels side by side with one shared colorbar: [(title, f or None, why it is missing)],
    f mapping points (n, 2) to values (n,); a panel without f says why instead."""
    filled = None
    for ax, (panel_title, f, missing) in zip(axes, panels, strict=True):
        if f is None:
            draw_placeholder(ax, panel_title, missing)
            ax.set(xlim=(-1, 1), ylim=(-1, 1), xticks=[], yticks=[], aspect="equal")
        else:
            filled = draw_surface(ax, f, panel_title)
    for ax in axes[1:]:
        ax.set_ylabel("")
    fig.colorbar(filled, ax=axes, ticks=LEVELS[::5], label=COLORBAR_LABEL, shrink=0.85)
    fig.suptitle(title)


CONTROL_STYLES = (dict(linestyle="--", marker="s", color="tab:gray"),
                  dict(linestyle="--", marker="^", color="tab:brown"))


def draw_heldout_curves(ax, backprop_rows, decoupled_rows, baseline, controls=(),
                        title="Error on points no method trained on (lower is better)",
                        xlabel=None, fontsize="large"):
    """Held-out MSE (log y) against seconds of plain backprop (backprop.jsonl's rows), of the
    decoupled network (draw_progress's rows) and of each control [(label, rows)]."""
    series = [("backprop, true gradients (one process)", column(backprop_rows, "seconds"),
               column(backprop_rows, "heldout_mse"), dict(marker="o", color="tab:blue"))
              ] if backprop_rows else []
    styled = [("synthetic gradients (three processes)", decoupled_rows,
               dict(marker="o", color="tab:orange"))]
    styled += [(label, rows, style)
               for (label, rows), style in zip(controls, CONTROL_STYLES, strict=False)]
    for label, rows, style in styled:
        timed = sorted((r for r in rows if r["seconds"] is not None and r["label"] != SWAP_LABEL),
                       key=lambda r: r["seconds"])               # the swap has no time
        if timed or label != styled[0][0]:
            series.append((label, [r["seconds"] for r in timed], [r["mse"] for r in timed], style))
    draw_lines(ax, series, title, "held-out MSE (log scale)", log=True, baseline=baseline,
               below=-0.12, xlabel=xlabel, fontsize=fontsize)


def draw_oracle_quality(ax, oracle_rows, origin, xlabel=None,
                        title="How good the oracle's synthetic gradients are (its loss can rise: "
                              "its targets, \nthe true gradients, change as layers 2-3 learn)"):
    """Cosine similarity of synthetic to true dL/dh (left axis) and the oracle's training MSE
    (right axis, log) against oracle.jsonl's time - origin, in seconds."""
    seconds = column(oracle_rows, "time") - origin
    cosines = [column(oracle_rows, key) for key in ("cosine_similarity", "aggregate_cosine")]
    ax.axhline(0.0, color="gray", linewidth=0.8)
    ax.plot(seconds, cosines[0], "-", color="tab:green",
            label="cosine similarity, mean over examples (the one quoted)")
    ax.plot(seconds, cosines[1], "--", color="tab:olive",
            label="cosine similarity of all gradients as one vector")
    ax.set_ylim(*cosine_limits(np.concatenate(cosines)))
    finish_axes(ax, title, "cosine similarity of synthetic\nto true dL/dh (1 = same direction)",
                xlabel=xlabel, fontsize="medium")
    loss = column(oracle_rows, "last_train_mse")
    handles, labels = ax.get_legend_handles_labels()
    if (loss > 0).any():                             # NaN > 0 is False
        twin = ax.twinx()
        twin.plot(seconds, loss, ":", color="tab:purple",
                  label="oracle's training loss (right axis)")
        twin.set_yscale("log")
        twin.set_ylabel("oracle's training MSE (log scale)", color="tab:purple")
        more_handles, more_labels = twin.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    ax.legend(handles, labels, fontsize="small", loc="upper center",
              bbox_to_anchor=(0.5, -0.18), ncols=1)


def cosine_limits(values):
    """A cosine axis that fits the data: from min(0, lowest) to a little over the highest,
    rounded out to tenths, within [-1, 1]; (-0.1, 1) if nothing is finite."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return -0.1, 1.0
    low = max(-1.0, np.floor(min(0.0, finite.min()) * 10) / 10 - 0.05)
    high = min(1.05, np.ceil(finite.max() * 10) / 10 + 0.05)
    return low, high


def save_evolution(path, rows, networks):
    """evolution.gif: the network's surface at each tick, in time order; returns its frames."""
    ticks = sorted((r for r in rows if isinstance(r["label"], int)), key=lambda r: r["label"])
    images = [surface_image(predictor(networks[r["label"]]),
                            f"synthetic gradients: t = {r['seconds']:.0f} s, "
                            f"held-out MSE {r['mse']:.4f}")
              for r in ticks]
    save_gif(images, path)
    return len(images)


def print_summary(results, metrics):
    """Every method's final held-out MSE, one row each, and the oracle's final cosines;
    results: [(method, (held-out MSE, seconds or None, examples or None) or None)]."""
    print(f"{'method':>28} {'held-out MSE':>13} {'seconds':>8} {'examples':>11}")
    for name, result in results:
        mse, seconds, examples = result or (None, None, None)
        print(f"{name:>28} {generate.fmt(mse, '.6f'):>13} {generate.fmt(seconds, '.0f'):>8} "
              f"{generate.fmt(examples, ',.0f'):>11}")
    cosine, aggregate = (generate.fmt(last_finite(metrics["oracle"], k), ".2f")
                         for k in ("cosine_similarity", "aggregate_cosine"))
    print(f"cosine(synthetic, true) at the end: {cosine} (the mean over the oracle's last "
          f"examples of the cosine between each synthetic dL/dh and the true one; "
          f"{aggregate} with all of them as one vector)", flush=True)


TARGET_PANEL = ("the target\ny = f(x₁, x₂)",
                lambda p: generate.target_function(p[:, 0], p[:, 1]), None)


def draw_progress(folder, out_dir, x_test, y_test, origin=None,
                  since="seconds since training started"):
    """fit_*.png, heldout_mse.jsonl and mse.png of a progress folder into out_dir, in seconds
    since origin (default: the earliest moment), named by `since`. Returns (rows, networks
    {label: layers}, origin); NothingToRead if no pair of snapshots is readable."""
    out_dir = Path(out_dir)
    # Phase 1: held-out MSE of each composed network, and when that network existed.
    rows, networks, skipped = snapshots.measure_progress(folder, x_test, y_test)

    # Phase 2: times become seconds since the origin, and each tick's surface is drawn. The
    # untrained network is at 0 by definition (its two halves are saved a moment apart).
    ticks = [r for r in rows if isinstance(r["label"], int)]
    if origin is None:
        origin = min((r["seconds"] for r in rows if r["seconds"] is not None), default=0.0)
    for r in rows:
        if r["label"] == "initial":
            r["seconds"] = 0.0
        elif r["seconds"] is not None:
            r["seconds"] = round(r["seconds"] - origin, 3)   # ms: time.time()'s noise
    for r in ticks:
        fit = (f"synthetic gradients\nt = {r['seconds']:.0f} s, held-out MSE {r['mse']:.4f}",
               predictor(networks[r["label"]]), None)
        save_comparison(out_dir / f"fit_{int(round(r['seconds'])):06d}.png",   # in time order
                        [TARGET_PANEL, fit],
                        title="The network's fit beside the target (same colour = same height)")

    # Phase 3: the numbers as JSON lines and a table, and the curve.
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "heldout_mse.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    print_table(rows)
    with saved_figure(out_dir / "mse.png", figsize=CURVE_FIGSIZE,
                      layout="constrained") as (fig, ax):
        draw_mse_curve(ax, rows, float(y_test.var()), since)
    print(f"wrote {len(ticks)} fit_*.png, mse.png and heldout_mse.jsonl to {out_dir}"
          f"{f'; {skipped} unreadable moment(s) skipped' if skipped else ''}", flush=True)
    return rows, networks, origin


def say_skipped(what, why):
    """Say which picture (or part of one) was not drawn, and why."""
    print(f"skipped {what}: {why}", flush=True)


CONTROLS = (("frozen", "frozen layer 1 (control)"),
            ("random", "random directions (control)"))


def method_ends(run_dir, rows, networks, metrics, x_test, y_test):
    """[(method, result, layers, why they are missing, rows)], result (held-out MSE, seconds or
    None, examples or None) or None: plain backprop (MSE measured here, seconds and examples its
    metrics'), synthetic gradients and each control there (RUN/controls/<name>, rows its own)."""
    try:
        layers = snapshots.load_backprop(run_dir)
        ends = [("backprop (true gradients)", (sgd.mse(layers, x_test, y_test), *(
            last_finite(metrics["backprop"], k) for k in ("seconds", "examples"))), layers, None,
                 None)]
    except NothingToRead as e:
        ends = [("backprop (true gradients)", None, None, str(e), None)]
    row, layers = snapshots.decoupled_final(rows, networks) or (None, None)
    result = None if row is None else (row["mse"], row["seconds"],
                                       last_finite(metrics["train_input"], "examples"))
    ends.append(("synthetic gradients", result, layers,
                 f"no readable snapshots in {Path(run_dir) / 'progress'}", None))
    for name, label in CONTROLS:
        folder = Path(run_dir) / "controls" / name
        try:
            if folder.is_dir():
                control_rows, result, layers = snapshots.measure_run(folder, x_test, y_test)
                ends.append((label, result, layers, None, control_rows))
        except NothingToRead as e:
            say_skipped(f"the {label}", e)
    return ends


def draw_run_comparison(out_dir, ends):
    """comparison.png if any method's final network is there: the target and each of
    method_ends; returns print_summary's results [(method, result)] and whether it drew."""
    results, panels = [], [TARGET_PANEL]
    for method, result, layers, why, _ in ends:
        if result is None:
            say_skipped(f"{method} in comparison.png and the summary", why)
            panels.append((method, None, why))
        else:
            after = "" if result[1] is None else f" after {result[1]:.0f} s"
            panels.append((f"{method}\nheld-out MSE {result[0]:.4f}{after}", predictor(layers),
                           None))
        results.append((method, result))
    if all(result is None for _, result in results):
        say_skipped("comparison.png", "no method's final network is there")
        return results, False
    save_comparison(Path(out_dir) / "comparison.png", panels)
    return results, True


def draw_run_curves(run_dir, out_dir, rows, metrics, origin, since, baseline, controls):
    """curves.png, if there is anything to put on it: held-out MSE of every method above, the
    oracle's quality below; returns whether it drew. origin: the time.time() rows' seconds
    count from, named by `since` (None: the oracle's first line)."""
    if not (metrics["backprop"] or rows or metrics["oracle"]):
        say_skipped("curves.png", f"no metrics in {Path(run_dir) / 'metrics'} and no snapshots")
        return False
    for name, what in (("backprop", "backprop's curve"), ("oracle", "the oracle's quality")):
        if not metrics[name]:
            say_skipped(f"{what} in curves.png", f"no metrics/{name}.jsonl (or it is empty)")
    if origin is None:                           # no streaming start and no snapshots
        origin = last_finite(metrics["oracle"][:1], "time") or 0.0
        since = "the oracle's first metrics line"
    with saved_figure(Path(out_dir) / "curves.png", 2, 1, sharex=True,
                      figsize=RUN_CURVES_FIGSIZE, layout="constrained") as (fig, (top, bottom)):
        draw_heldout_curves(top, metrics["backprop"], rows, baseline, controls)
        if metrics["oracle"]:
            draw_oracle_quality(bottom, metrics["oracle"], origin)
        else:
            draw_placeholder(bottom, "How good the oracle's synthetic gradients are",
                             "no oracle metrics (metrics/oracle.jsonl is missing or empty)",
                             width=80)
            bottom.set_yticks([])
        bottom.set_xlabel(f"seconds since training started (synthetic gradients: since {since})")
    return True


def draw_run(run_dir, out_dir, x_test, y_test):
    """Every picture of a run folder (not train_output.jsonl: held-out MSE shows its work) into
    out_dir, then the summary; x_test (n, 2), y_test (n,). Returns what was written."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    metrics = metrics_of(run_dir, ("backprop", "train_input", "oracle"))
    written = []
    start = snapshots.streaming_start(run_dir)
    if start is None:
        say_skipped("the input trainer's start as time origin", "no metrics/train_input.jsonl; "
                    "seconds count from the first snapshot instead")
    since = "the first snapshot" if start is None else "the input trainer began streaming"
    try:
        rows, networks, origin = draw_progress(run_dir / "progress", out_dir, x_test, y_test,
                                               origin=start, since=f"seconds since {since}")
        written += ["fit_*.png", "mse.png", "heldout_mse.jsonl"]
    except NothingToRead as e:
        say_skipped("fit_*.png, mse.png, heldout_mse.jsonl and evolution.gif", e)
        rows, networks, origin = [], {}, start
    ends = method_ends(run_dir, rows, networks, metrics, x_test, y_test)
    results, drew = draw_run_comparison(out_dir, ends)
    written += ["comparison.png"] if drew else []
    controls = [(method, c_rows) for method, *_, c_rows in ends if c_rows is not None]
    if draw_run_curves(run_dir, out_dir, rows, metrics, origin, since, float(y_test.var()),
                       controls):
        written.append("curves.png")
    if any(isinstance(r["label"], int) for r in rows):
        frames = save_evolution(out_dir / "evolution.gif", rows, networks)
        written.append(f"evolution.gif ({frames} frame{'s' if frames > 1 else ''})")
    elif rows:
        say_skipped("evolution.gif", "no paired snapshot ticks (the run stopped before its first)")
    print_summary(results, metrics)
    return written


# --- The script. -------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="Draw what a decoupled run learned: its fits and "
                                "held-out MSE over time; for a run folder, beside the others'.")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--run-dir", type=Path,
                        help="a run folder written by demo.py (progress/, backprop/, metrics/, "
                             "controls/): draws everything")
    source.add_argument("--progress-dir", type=Path,
                        help="a folder of layer1_*.npz and layers23_*.npz: the fits and held-out "
                             "MSE only (default: the newest folder in runs/ and progress/)")
    p.add_argument("--out-dir", type=generate.out_path, default=None,
                   help="where to write the pictures (default: RUN/plots, or the progress "
                        "folder itself, beside the weights they show)")
    p.add_argument("--heldout", type=int, default=generate.HELDOUT_COUNT,
                   help="fresh points to measure held-out MSE on (default 20,000, as sgd.py's, "
                        "so the numbers compare)")
    args = p.parse_args(argv)
    options.check_at_least(p, args, 1, "heldout")
    if args.run_dir is None and args.progress_dir is None:
        newest = snapshots.latest_run(HERE / "runs", snapshots.PROGRESS)
        latest = snapshots.latest_run(HERE / "runs", snapshots.PROGRESS, keep=drawable)
        if latest is None:
            p.error("nothing to draw yet: no run of the three processes in runs/ or progress/ "
                    "(run `make demo`, or the three scripts by hand, first), or pass --run-dir "
                    "or --progress-dir")
        if (latest / "progress").is_dir():
            args.run_dir = latest
        else:
            args.progress_dir = latest
        print(f"plot.py: drawing the newest run, {latest}" + ("" if newest == latest else
              f" ({newest.name}, newer, is a chain's or a lab's: what made it drew it)"),
              flush=True)
    if args.out_dir is None:
        args.out_dir = args.progress_dir if args.run_dir is None else args.run_dir / "plots"
    return args


def drawable(folder):
    """A run of the three processes: demo.py's (RUN/progress) or a progress folder by hand."""
    kind = snapshots.folder_kind(folder)
    return kind == "progress" or kind == "run" and (folder / "progress").is_dir()


def main(argv=None):
    args = parse_args(argv)
    print("plot.py: settings:", generate.settings_line(vars(args)), flush=True)
    x_test, y_test = generate.heldout(args.heldout)      # (n, 2), (n,)
    if args.progress_dir is not None:
        try:
            draw_progress(args.progress_dir, args.out_dir, x_test, y_test)
        except NothingToRead as e:
            raise SystemExit(str(e)) from None
        return 0
    if not args.run_dir.is_dir():
        raise SystemExit(f"no run folder at {args.run_dir}: pass the folder demo.py printed "
                         "at its end")
    written = draw_run(args.run_dir, args.out_dir, x_test, y_test)
    if not written:
        raise SystemExit(f"nothing to draw in {args.run_dir}: no snapshots, no plain-backprop "
                         "network and no metrics (see the messages above)")
    print(f"wrote to {args.out_dir}: {', '.join(written)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
