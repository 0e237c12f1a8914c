"""The live page's pictures, each a matplotlib figure as PNG bytes (liveview.py decides what
to show), on plot.py's panels; a classifier chain's panels, which chain.png shares.
"""

import io

import numpy as np

import generate
import plot
import sgd

FIGSIZE = (7.5, 5.0)       # inches, every picture alike: the page's panels line up in rows
SINCE_STAGE1 = "seconds since stage 1 began streaming"


def png(nrows=1, ncols=1, draw=None, figsize=FIGSIZE):
    """A figure drawn on by draw(fig, ax), as PNG bytes."""
    out = io.BytesIO()
    with generate.saved_figure(out, nrows, ncols, figsize=figsize,
                               layout="constrained") as (fig, ax):
        draw(fig, ax)
    return out.getvalue()


def draw_fit(layers, title, what):
    """The target | the network's surface (title over it) on the target's colour scale, one
    colorbar; `what` (the network's fit, the composed chain) names it above."""
    return png(1, 2, lambda fig, axes: plot.draw_comparison(
        fig, axes, [plot.TARGET_PANEL, (title, plot.predictor(layers), None)],
        f"{what} at its newest snapshot, beside the target\n(same colour = same height)"))


def draw_waiting(title, text):
    """A picture that says, in words, why there is nothing to draw yet."""
    def draw(fig, ax):
        plot.draw_placeholder(ax, title, text, width=60)
        ax.set(xticks=[], yticks=[])
    return png(draw=draw, figsize=(7.5, 2.2))


def panel(draw_on, *args, **kwargs):
    """One panel, draw_on(ax, *args, **kwargs) (e.g. plot.draw_lines), as a picture."""
    return png(draw=lambda fig, ax: draw_on(ax, *args, **kwargs))


def accuracy_lines(ax, seconds, accuracies, chance, title, beside=False, xlabel=SINCE_STAGE1):
    """Test accuracy (%) of the composed network at each tick, and the commonest label's."""
    ax.plot(seconds, [100 * a for a in accuracies], "-", **plot.TICK_LINE)
    ax.axhline(100 * chance, linestyle=":", color="black",
               label="always answering the commonest label")
    ax.set_ylim(0, 100)
    plot.finish_axes(ax, title, "test accuracy (%)", xlabel=xlabel, fontsize="medium")
    ax.legend(fontsize="small", **(dict(loc="upper left", bbox_to_anchor=(1.01, 1.0)) if beside
                                   else dict(loc="lower right")))


def mse_lines(ax, seconds, mses, title, baseline, **kwargs):
    """Held-out MSE (log scale) of the composed network at each tick, var(y) dotted."""
    plot.draw_lines(ax, [(plot.TICK_LINE["label"], seconds, mses, dict(marker="o"))], title,
                    "held-out MSE (log scale)", log=True, baseline=baseline, **kwargs)


def staleness_lines(ax, series, **kwargs):
    """Each boundary's staleness (boundary_series' second list) against seconds."""
    plot.draw_lines(ax, series, "Staleness: how old the inputs each stage trains on are",
                    "mean age of the activations\ntrained on (s)", xlabel=SINCE_STAGE1, **kwargs)


def boundary_series(boundaries, seconds, cosines, staleness, against=""):
    """plot.draw_lines' series of each boundary b: its cosine with full backprop at each tick
    (cosines[k][b - 1], None a gap) and its staleness (chain_eval.staleness), in colour C<b-1>."""
    cos, stale = [], []
    for b in range(1, boundaries + 1):
        style, points = dict(color=f"C{b - 1}"), staleness.get(f"boundary{b}", [])
        cos.append((f"boundary {b}{against}", seconds,
                    np.array([c[b - 1] for c in cosines], dtype=float), dict(marker="o", **style)))
        stale.append((f"boundary {b} (stage {b + 1}'s inputs)", [p[0] for p in points],
                       [p[1] for p in points], style))
    return cos, stale


# --- A chain that classifies images (chain.py --data fashion-mnist). ----------------------------

def draw_examples(layers, x, labels, names, title, rows=3, cols=6):
    """The first rows x cols test images, each under the label the network gives it (green
    when right; red, with the true label, when wrong)."""
    predicted = sgd.feed_forward(layers, x[:rows * cols], remember=False).argmax(axis=1)

    def draw(fig, axes):
        for k, ax in enumerate(axes.flat):
            ax.imshow(x[k].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            right = predicted[k] == labels[k]
            ax.set_title(names[predicted[k]] if right else
                         f"{names[predicted[k]]}\n(is {names[labels[k]]})",
                         fontsize="x-small", color="green" if right else "red")
            ax.set(xticks=[], yticks=[])
        fig.suptitle(title, fontsize="medium")
    return png(rows, cols, draw)


def confusion(layers, x, labels, classes):
    """counts (classes, classes): row the true label, column the one the network gives."""
    predicted = sgd.feed_forward(layers, x, remember=False).argmax(axis=1)
    return np.bincount(labels * classes + predicted, minlength=classes * classes).reshape(
        classes, classes)


def draw_confusion(counts, names, title):
    """The confusion matrix: each row (a true label) as fractions of its images, the counts
    written in the cells."""
    def draw(fig, ax):
        share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), n in np.ndenumerate(counts):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize="x-small",
                        color="white" if share[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize="x-small")
        ax.set_yticks(range(len(names)), names, fontsize="x-small")
        ax.set_xlabel("the label the network gives")
        ax.set_ylabel("the true label")
        ax.set_title(title, fontsize="medium")
        fig.colorbar(image, ax=ax, label="share of the true label's images")
    return png(draw=draw)
