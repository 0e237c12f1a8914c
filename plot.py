"""Pictures of what the trainers learned: fitted surfaces, held-out MSE and oracle quality.

    python plot.py                                             # the newest run, whichever
    python plot.py --run-dir runs/20240101-120000              # demo.py's: into RUN/plots
    python plot.py --progress-dir progress/20240101-120000     # by hand: beside the weights

Progress folder. For every tick T at which both trainers saved their layers (layer1_T.npz and
layers23_T.npz, see snapshots.py) it puts the 2-24-12-1 network back together and writes

    fit_<seconds>.png      the network's surface at T beside the target's, seconds since
                           training started (zero padded)
    heldout_mse.jsonl      one JSON object per moment: {"label", "layer1", "layers23",
                           "seconds", "mse"}; also "initial", "final" and the swap below
    mse.png                held-out MSE against seconds, log y axis

The swap is layer 1 as it was before training under layers 2-3 as they were at the end: if its
MSE is as low as the final network's, layers 2-3 did the work and layer 1's training (driven by
synthetic gradients) did not matter.

Run folder. demo.py leaves (any part may be missing; the pictures that need it are skipped)

    RUN/progress/          the snapshots above
    RUN/backprop/final.npz the plain-backprop baseline's whole network (snapshots.save_layers)
    RUN/metrics/*.jsonl    one JSON object per line from each process: backprop.jsonl,
                           train_input.jsonl, oracle.jsonl, train_output.jsonl
    RUN/controls/<name>/   the controls (frozen, random), each a run folder of its own

and this script writes into RUN/plots everything the progress folder gives, with seconds counted
from the input trainer's first metrics line (when it started streaming examples) instead of the
initial network, and

    comparison.png         target | backprop's final fit | synthetic gradients' final fit |
                           each control's final fit (RUN/controls/frozen and random, if there)
    curves.png             held-out MSE of every method against seconds; below it, how close
                           the oracle's synthetic gradients are to the true ones, and its loss
    evolution.gif          the decoupled network's surface at each tick, 4 frames a second

Every surface is drawn on the target's colour scale (generate.py), so the same colour is the
same height in every picture. This file only draws: reading snapshots and metrics and measuring
held-out MSE is snapshots.py's work, and nothing here trains.
"""

import argparse
import functools
import json
import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: draw into files, never open a window
import matplotlib.pyplot as plt  # noqa: E402  (must come after choosing the backend)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402  (pillow: a dependency of matplotlib, used for the GIF)

import generate  # noqa: E402
import sgd  # noqa: E402
from generate import HERE  # noqa: E402
from generate import (COLORBAR_LABEL, LEVELS, SURFACE_FIGSIZE, SURFACE_MARGINS,  # noqa: E402
                      draw_surface, draw_surface_with_colorbar, saved_figure)
from parts import snapshots  # noqa: E402
from parts.snapshots import SWAP_LABEL, NothingToRead, column, last_finite  # noqa: E402

CURVE_FIGSIZE = (7.2, 5.6)
COMPARISON_PANEL_WIDTH, COMPARISON_HEIGHT = 3.6, 4.6   # inches; 3 panels: 12 x 4.6
RUN_CURVES_FIGSIZE = (8.0, 10.0)
GIF_DPI = 80                           # 432 x 352 pixels a frame: ~30 kB, small for 60 frames
GIF_FRAMES_PER_SECOND = 4
GIF_COLOURS = 64                       # one palette for every frame, so colours never flicker


# --- Drawing blocks: a surface in memory, a GIF, and panels that each take an ax. ------------

def surface_image(f, title, dpi=GIF_DPI):
    """The picture save_surface draws, rendered in memory at dpi: RGB (height, width, 3) uint8.

    Height and width are SURFACE_FIGSIZE times dpi, the same for every f and title.
    """
    fig, ax = plt.subplots(figsize=SURFACE_FIGSIZE, gridspec_kw=SURFACE_MARGINS, dpi=dpi)
    try:
        draw_surface_with_colorbar(fig, ax, f, title)
        fig.canvas.draw()
        return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    finally:
        plt.close(fig)


def save_gif(images, path, frames_per_second=GIF_FRAMES_PER_SECOND):
    """Write RGB images [(height, width, 3) uint8, ...] (at least one) as a looping GIF.

    Every frame uses the first frame's palette of GIF_COLOURS colours, without dithering, so
    flat contour bands stay flat (small files) and a colour never changes between frames.
    """
    assert images, "a GIF needs at least one frame"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    palette = Image.fromarray(images[0]).quantize(GIF_COLOURS, dither=Image.Dither.NONE)
    frames = [Image.fromarray(im).quantize(palette=palette, dither=Image.Dither.NONE)
              for im in images]
    frames[0].save(path, save_all=True, append_images=frames[1:], loop=0,
                   duration=round(1000 / frames_per_second))


def predictor(layers):
    """f(p): the network's outputs (n,) for points p (n, 2), as the surface functions want."""
    return functools.partial(sgd.predict, layers)


def draw_placeholder(ax, title, text, width=36):
    """An empty panel that says, in its middle, what should have been drawn there and why not.

    The text is wrapped to `width` characters and left out of the layout, so a long message
    never squeezes the panels beside it. Ticks are the caller's: a shared axis keeps them.
    """
    ax.set_title(title)
    message = ax.text(0.5, 0.5, textwrap.fill(text, width, break_long_words=True),
                      ha="center", va="center", transform=ax.transAxes, color="dimgray",
                      fontsize="small")
    message.set_in_layout(False)


def draw_mse_curve(ax, rows, baseline=None, xlabel="seconds since training started"):
    """Held-out MSE against seconds on ax (log y) from the rows draw_progress computes.

    Ticks are joined by a line; "initial" and "final" are single markers; the swap and the
    baseline (the MSE of always predicting the mean, i.e. var(y)) are horizontal lines.
    """
    ticks = [r for r in rows if isinstance(r["label"], int)]
    if ticks:
        ax.plot([r["seconds"] for r in ticks], [r["mse"] for r in ticks], "o-", markersize=3,
                label="network at each snapshot tick")
    markers = {"initial": ("s", "before training (initial)"),
               "final": ("*", "when the trainers stopped (final)")}
    for r in rows:
        if r["label"] in markers:
            marker, text = markers[r["label"]]
            ax.plot([r["seconds"]], [r["mse"]], marker, markersize=9, label=text)
        elif r["label"] == SWAP_LABEL:
            ax.axhline(r["mse"], linestyle="--", color="tab:red",
                       label="final layers 2-3 on the untrained layer 1")
    if baseline is not None:
        ax.axhline(baseline, linestyle=":", color="black",
                   label="always predicting the mean of y")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("held-out mean squared error (log scale)")
    ax.set_title("Synthetic gradients: error on points the network never trained on")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=2)


# --- A progress folder's numbers, as a file and a table. ---------------------------------------

def fit_path(out_dir, seconds):
    """fit_<seconds>.png, zero padded to 6 digits so the files sort in time order."""
    return Path(out_dir) / f"fit_{int(round(seconds)):06d}.png"


def write_jsonl(rows, path):
    """One JSON object per row, one per line."""
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


MOMENT_NAMES = {"initial": "untrained (initial)", "final": "when the trainers stopped (final)",
                SWAP_LABEL: "initial layer 1 under final layers 2-3"}


def print_table(rows):
    """The rows as a table: each moment by name (ticks: "snapshot"), seconds since training
    started, held-out MSE."""
    print(f"{'moment':>40} {'seconds':>8} {'held-out MSE':>13}")
    for r in rows:
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.1f}"
        name = "snapshot" if isinstance(r["label"], int) else MOMENT_NAMES[r["label"]]
        print(f"{name:>40} {seconds:>8} {r['mse']:>13.6f}")


# --- Pictures of a run folder. -----------------------------------------------------------------

def save_comparison(path, panels,
                    title="What each method learned (same colour = same height in every panel)"):
    """Target | backprop | synthetic gradients (| controls), side by side, one shared colorbar.

    panels: [(title, f or None, why it is missing)], f mapping points (n, 2) to values (n,);
    a panel whose f is None says why instead of drawing.
    """
    figsize = (COMPARISON_PANEL_WIDTH * len(panels) + 1.2, COMPARISON_HEIGHT)
    with saved_figure(path, 1, len(panels), figsize=figsize,
                      layout="constrained") as (fig, axes):
        filled = None
        for ax, (panel_title, f, missing) in zip(axes, panels):
            if f is None:
                draw_placeholder(ax, panel_title, missing)
                ax.set(xlim=(-1, 1), ylim=(-1, 1), xticks=[], yticks=[], aspect="equal")
            else:
                filled = draw_surface(ax, f, panel_title)
        for ax in axes[1:]:
            ax.set_ylabel("")
        fig.colorbar(filled, ax=axes, ticks=LEVELS[::5], label=COLORBAR_LABEL, shrink=0.85)
        fig.suptitle(title)


def timed_rows(rows):
    """draw_progress's rows that happened at a time (the swap left out), in time order."""
    return sorted((r for r in rows if r["seconds"] is not None and r["label"] != SWAP_LABEL),
                  key=lambda r: r["seconds"])


def draw_heldout_curves(ax, backprop_rows, decoupled_rows, baseline, controls=()):
    """Held-out MSE (log y) against seconds of plain backprop (backprop.jsonl's rows), of the
    decoupled network (draw_progress's rows) and of each control [(label, rows)]; var(y)
    dotted. The legend goes below the axes, where it hides no curve."""
    if backprop_rows:
        ax.plot(column(backprop_rows, "seconds"), column(backprop_rows, "heldout_mse"), "o-",
                markersize=3, color="tab:blue", label="backprop, true gradients (one process)")
    timed = timed_rows(decoupled_rows)
    if timed:
        ax.plot([r["seconds"] for r in timed], [r["mse"] for r in timed], "o-", markersize=3,
                color="tab:orange", label="synthetic gradients (three processes)")
    for (label, rows), style in zip(controls, CONTROL_STYLES):
        timed = timed_rows(rows)
        ax.plot([r["seconds"] for r in timed], [r["mse"] for r in timed], **style, label=label)
    ax.axhline(baseline, linestyle=":", color="black",
               label="always predicting the mean of y")
    ax.set_yscale("log")
    ax.set_ylabel("held-out MSE (log scale)")
    ax.set_title("Error on points no method trained on (lower is better)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.12), ncols=2)


CONTROL_STYLES = (dict(linestyle="--", marker="s", markersize=3, color="tab:gray"),
                  dict(linestyle="--", marker="^", markersize=3, color="tab:brown"))


def draw_oracle_quality(ax, oracle_rows, origin):
    """Cosine similarity of synthetic to true dL/dh (left axis, from 0 or below to a little over
    the highest value) and the oracle's training MSE (right axis, log) against oracle.jsonl's
    time - origin, in seconds. The legend goes below the axes."""
    seconds = column(oracle_rows, "time") - origin
    cosines = [column(oracle_rows, key) for key in ("cosine_similarity", "aggregate_cosine")]
    ax.axhline(0.0, color="gray", linewidth=0.8)
    ax.plot(seconds, cosines[0], "-", color="tab:green",
            label="cosine similarity, mean over examples (the one quoted)")
    ax.plot(seconds, cosines[1], "--", color="tab:olive",
            label="cosine similarity of all gradients as one vector")
    ax.set_ylim(*cosine_limits(np.concatenate(cosines)))
    ax.set_ylabel("cosine similarity of synthetic\nto true dL/dh (1 = same direction)")
    ax.set_title("How good the oracle's synthetic gradients are (its loss can rise: its targets, "
                 "\nthe true gradients, change as layers 2-3 learn)", fontsize="medium")
    ax.grid(True, alpha=0.3)
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


def save_curves(path, backprop_rows, decoupled_rows, oracle_rows, origin, baseline,
                since="the input trainer began streaming", controls=()):
    """curves.png: held-out MSE of every method above, the oracle's quality below, shared x.

    origin: the time.time() the decoupled rows' seconds count from, named by `since`; controls
    [(label, rows)] with rows' seconds counted from their own run's start.
    """
    with saved_figure(path, 2, 1, sharex=True, figsize=RUN_CURVES_FIGSIZE,
                      layout="constrained") as (fig, (top, bottom)):
        draw_heldout_curves(top, backprop_rows, decoupled_rows, baseline, controls)
        if oracle_rows:
            draw_oracle_quality(bottom, oracle_rows, origin)
        else:
            draw_placeholder(bottom, "How good the oracle's synthetic gradients are",
                             "no oracle metrics (metrics/oracle.jsonl is missing or empty)",
                             width=80)
            bottom.set_yticks([])
        bottom.set_xlabel(f"seconds since training started (synthetic gradients: since {since})")


def save_evolution(path, rows, networks):
    """evolution.gif: the decoupled network's surface at each tick row, in time order.

    Returns the number of frames (one per tick row).
    """
    ticks = sorted((r for r in rows if isinstance(r["label"], int)), key=lambda r: r["label"])
    images = [surface_image(predictor(networks[r["label"]]),
                            f"synthetic gradients: t = {r['seconds']:.0f} s, "
                            f"held-out MSE {r['mse']:.4f}")
              for r in ticks]
    save_gif(images, path)
    return len(images)


def print_summary(results, metrics):
    """Every method's final held-out MSE, one row each, and the oracle's final cosines.

    results: [(method, (held-out MSE, seconds or None, examples or None) or None if missing)].
    """
    print(f"{'method':>28} {'held-out MSE':>13} {'seconds':>8} {'examples':>11}")
    for name, result in results:
        if result is None:
            print(f"{name:>28} {'-':>13} {'-':>8} {'-':>11}")
            continue
        mse, seconds, examples = result
        seconds = "-" if seconds is None else f"{seconds:.0f}"
        examples = "-" if examples is None else f"{examples:,.0f}"
        print(f"{name:>28} {mse:>13.6f} {seconds:>8} {examples:>11}")
    cosine, aggregate = (last_finite(metrics["oracle"], k)
                         for k in ("cosine_similarity", "aggregate_cosine"))
    print("cosine(synthetic, true) at the end: "
          f"{'-' if cosine is None else f'{cosine:.2f}'} (the mean over the oracle's last "
          f"examples of the cosine between each synthetic dL/dh and the true one; "
          f"{'-' if aggregate is None else f'{aggregate:.2f}'} with all of them as one vector)",
          flush=True)


# --- Drawing a progress folder and a run folder. ------------------------------------------

def draw_progress(folder, out_dir, x_test, y_test, origin=None,
                  since="seconds since training started", method="synthetic gradients"):
    """fit_*.png, heldout_mse.jsonl and mse.png for a progress folder, into out_dir.

    Seconds are time.time() - origin; by default origin is the earliest moment (the initial
    network, saved when training started; the untrained network is always at 0). `since`
    names the origin on the x axis, `method` what trained the network, in each fit's title. Returns rows (as in heldout_mse.jsonl), networks {label: layers} and the origin used.
    Raises snapshots.NothingToRead if the folder holds no readable pair of snapshots.
    """
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
        save_comparison(fit_path(out_dir, r["seconds"]),
                        [TARGET_PANEL, (f"{method}\nt = {r['seconds']:.0f} s, held-out MSE "
                                        f"{r['mse']:.4f}", predictor(networks[r["label"]]), None)],
                        title="The network's fit beside the target (same colour = same height)")

    # Phase 3: the numbers as JSON lines and a table, and the curve.
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(rows, out_dir / "heldout_mse.jsonl")
    print_table(rows)
    curve = dict(figsize=CURVE_FIGSIZE, layout="constrained")
    with saved_figure(out_dir / "mse.png", **curve) as (fig, ax):
        draw_mse_curve(ax, rows, baseline=float(y_test.var()), xlabel=since)
    print(f"wrote {len(ticks)} fit_*.png, mse.png and heldout_mse.jsonl to {out_dir}"
          f"{f'; {skipped} unreadable moment(s) skipped' if skipped else ''}", flush=True)
    return rows, networks, origin


TARGET_PANEL = ("the target\ny = f(x₁, x₂)", lambda p: generate.target_function(p[:, 0], p[:, 1]), None)


def final_title(method, mse, seconds):
    """A comparison panel's two-line title: the method, then its held-out MSE after S s."""
    after = "" if seconds is None else f" after {seconds:.0f} s"
    return f"{method}\nheld-out MSE {mse:.4f}{after}"


def backprop_result(run_dir, metrics, x_test, y_test):
    """The plain-backprop baseline at its end: (held-out MSE, seconds, examples) or None, and
    its comparison panel (title, f or None, why it is missing).

    Seconds and examples are backprop.jsonl's last (None without it); the MSE is measured here
    on x_test (n, 2), y_test (n,), the same points as the decoupled network's.
    """
    try:
        layers = snapshots.load_backprop(run_dir)
    except NothingToRead as e:
        return None, ("backprop (true gradients)", None, str(e))
    rows = metrics["backprop"]
    result = (sgd.mse(layers, x_test, y_test), last_finite(rows, "seconds"),
              last_finite(rows, "examples"))
    return result, (final_title("backprop (true gradients)", *result[:2]),
                    predictor(layers), None)


def decoupled_result(run_dir, rows, networks, metrics):
    """The decoupled network at its end (snapshots.decoupled_final): as backprop_result, from the
    rows and networks draw_progress returned; examples are what the input trainer streamed."""
    end = snapshots.decoupled_final(rows, networks)
    if end is None:
        return None, ("synthetic gradients", None,
                      f"no readable snapshots in {Path(run_dir) / 'progress'}")
    row, layers = end
    result = (row["mse"], row["seconds"], last_finite(metrics["train_input"], "examples"))
    return result, (final_title("synthetic gradients", *result[:2]),
                    predictor(layers), None)


def say_skipped(what, why):
    """Say which picture (or part of one) was not drawn, and why."""
    print(f"skipped {what}: {why}", flush=True)


def draw_run_progress(run_dir, out_dir, x_test, y_test, start, since):
    """draw_progress on RUN/progress, seconds counted from start (a time.time(); None: the first
    tick), which `since` names. Returns its rows, networks and origin; ([], {}, start) if there
    is nothing to draw."""
    try:
        return draw_progress(Path(run_dir) / "progress", out_dir, x_test, y_test,
                             origin=start, since=f"seconds since {since}")
    except NothingToRead as e:
        say_skipped("fit_*.png, mse.png, heldout_mse.jsonl and evolution.gif", e)
        return [], {}, start


CONTROLS = (("frozen", "frozen layer 1 (control)"),
            ("random", "random directions (control)"))


def control_result(run_dir, name, label, x_test, y_test):
    """A control run, RUN/controls/<name> (a run folder of its own: the three processes with
    train_input.py --update <name>, as demo.py runs them): (rows with seconds since its input
    trainer began streaming, its end as decoupled_result's, its comparison panel), or None if
    the run is not there."""
    folder = Path(run_dir) / "controls" / name
    if not folder.is_dir():
        return None
    try:
        rows, result, layers = snapshots.measure_run(folder, x_test, y_test)
    except NothingToRead as e:
        say_skipped(f"the {label}", e)
        return None
    return rows, result, (final_title(label, *result[:2]), predictor(layers), None)


def draw_run_comparison(run_dir, out_dir, rows, networks, metrics, x_test, y_test, controls):
    """comparison.png if any method's final network is there: the target, backprop, synthetic
    gradients and each control found (controls: {label: control_result}).

    Returns the results for print_summary [(method, result)] and whether it drew.
    """
    (backprop, backprop_panel), (decoupled, decoupled_panel) = (
        backprop_result(run_dir, metrics, x_test, y_test),
        decoupled_result(run_dir, rows, networks, metrics))
    for result, panel in ((backprop, backprop_panel), (decoupled, decoupled_panel)):
        if result is None:
            say_skipped(f"{panel[0]} in comparison.png and the summary", panel[2])
    results = [("backprop (true gradients)", backprop), ("synthetic gradients", decoupled)]
    results += [(label, c[1]) for label, c in controls.items()]
    if backprop is None and decoupled is None and not controls:
        say_skipped("comparison.png", "no method's final network is there")
        return results, False
    panels = [TARGET_PANEL, backprop_panel, decoupled_panel]
    panels += [c[2] for c in controls.values()]
    save_comparison(Path(out_dir) / "comparison.png", panels)
    return results, True


def draw_run_curves(run_dir, out_dir, rows, metrics, origin, since, baseline, controls):
    """curves.png if there is anything to put on it; returns whether it drew.

    origin: the time.time() that rows' seconds count from, named by `since` (None: the
    oracle's first line); controls {label: control_result}.
    """
    if not (metrics["backprop"] or rows or metrics["oracle"]):
        say_skipped("curves.png", f"no metrics in {Path(run_dir) / 'metrics'} and no snapshots")
        return False
    for name, what in (("backprop", "backprop's curve"),
                       ("oracle", "the oracle's quality")):
        if not metrics[name]:
            say_skipped(f"{what} in curves.png", f"no metrics/{name}.jsonl (or it is empty)")
    if origin is None:                           # no streaming start and no snapshots
        origin = last_finite(metrics["oracle"][:1], "time") or 0.0
        since = "the oracle's first metrics line"
    save_curves(Path(out_dir) / "curves.png", metrics["backprop"], rows, metrics["oracle"],
                origin, baseline, since, [(label, c[0]) for label, c in controls.items()])
    return True


def draw_run(run_dir, out_dir, x_test, y_test):
    """Everything for a run folder into out_dir: draw_progress's pictures, comparison.png,
    curves.png and evolution.gif, each skipped with a message if its inputs are missing; then
    the summary. x_test (n, 2), y_test (n,): the held-out points. Returns what was written.

    (metrics/train_output.jsonl is not drawn: the held-out MSE already shows layers 2-3's work.)
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    metrics = {name: snapshots.read_metrics(run_dir / "metrics" / f"{name}.jsonl")
               for name in ("backprop", "train_input", "oracle")}
    written = []
    start = snapshots.streaming_start(run_dir)
    if start is None:
        say_skipped("the input trainer's start as time origin", "no metrics/train_input.jsonl; "
                    "seconds count from the first snapshot instead")
    since = "the first snapshot" if start is None else "the input trainer began streaming"
    rows, networks, origin = draw_run_progress(run_dir, out_dir, x_test, y_test, start, since)
    if rows:
        written += ["fit_*.png", "mse.png", "heldout_mse.jsonl"]
    controls = {label: c for name, label in CONTROLS
                if (c := control_result(run_dir, name, label, x_test, y_test)) is not None}
    results, drew = draw_run_comparison(run_dir, out_dir, rows, networks, metrics, x_test,
                                        y_test, controls)
    written += ["comparison.png"] if drew else []
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
    p = argparse.ArgumentParser(
        description="Draw what a decoupled run learned: the fitted surface at each weight "
                    "snapshot and its held-out MSE over time, and for a whole run folder the "
                    "comparison with backprop, the controls and the oracle's quality.")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--run-dir", type=Path,
                        help="a run folder written by demo.py (progress/, backprop/, metrics/, "
                             "controls/): draws everything")
    source.add_argument("--progress-dir", type=Path,
                        help="a folder the trainers wrote layer1_*.npz and layers23_*.npz into "
                             "(by hand: progress/<run>): draws only the fits and the held-out "
                             "MSE. Without either option: the newest folder in runs/ and "
                             "progress/, whichever it is")
    p.add_argument("--out-dir", type=Path, default=None,
                   help="where to write the pictures, created if missing (default: RUN/plots "
                        "with --run-dir; the progress folder itself with --progress-dir, so "
                        "pictures sit beside the weights they show)")
    p.add_argument("--heldout", type=int, default=20_000,
                   help="fresh points to measure held-out MSE on (default 20,000, as sgd.py, "
                        "so the numbers compare; the estimate's noise is then ~1%%)")
    args = p.parse_args(argv)
    if args.heldout < 1:
        p.error("--heldout must be at least 1")
    if args.run_dir is None and args.progress_dir is None:
        latest = snapshots.latest_run(HERE / "runs", snapshots.PROGRESS)
        if latest is None:
            p.error("nothing to draw yet: no folder in runs/ or progress/ (run `make demo`, or "
                    "the three scripts by hand, first), or pass --run-dir or --progress-dir")
        if (latest / "progress").is_dir():
            args.run_dir = latest
        else:
            args.progress_dir = latest
        print(f"plot.py: drawing the newest run, {latest}", flush=True)
    if args.out_dir is None:
        args.out_dir = args.progress_dir if args.run_dir is None else args.run_dir / "plots"
    return args


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
