"""The live page's pictures, each a matplotlib figure as PNG bytes (liveview.py decides what
to show), and a chain's panels, which chain.png (chain_eval.draw) shares; the toy's from plot.py.
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


def draw_fit(f, title, suptitle):
    """The target | f side by side on the target's colour scale, one colorbar."""
    return png(1, 2, lambda fig, axes: plot.draw_comparison(
        fig, axes, [plot.TARGET_PANEL, (title, f, None)], suptitle))


def draw_waiting(title, text):
    """A picture that says, in words, why there is nothing to draw yet."""
    def draw(fig, ax):
        plot.draw_placeholder(ax, title, text, width=60)
        ax.set(xticks=[], yticks=[])
    return png(draw=draw, figsize=(7.5, 2.2))


def draw_mse(backprop_rows, phase_rows, controls, baseline, xlabel):
    def draw(fig, ax):
        plot.draw_heldout_curves(ax, backprop_rows, phase_rows, baseline, controls)
        ax.set_title("Held-out MSE over time: error on points no method trained on "
                     "(lower is better)", fontsize="medium")
        ax.set_xlabel(xlabel)
    return png(draw=draw)


def draw_oracle(rows, origin, label):
    def draw(fig, ax):
        plot.draw_oracle_quality(ax, rows, origin)
        ax.set_title(f"cosine(synthetic, true dL/dh) and the oracle's loss: {label}",
                     fontsize="medium")
        ax.set_xlabel("seconds since the input trainer began streaming")
    return png(draw=draw)


# --- A chain's panels, each on an ax, and as pictures. ------------------------------------------

def chain_lines(ax, series, title, ylabel, log_scale=False, baseline=None, below=-0.18,
                ncols=2, xlabel=SINCE_STAGE1):
    """[(label, seconds, values, plot options)] against seconds since stage 1 began streaming,
    var(y) dotted if given; the legend below (below: its offset) or, with below None, beside."""
    for label, seconds, values, style in series:
        ax.plot(seconds, values, markersize=3, label=label, **style)
    if baseline is not None:
        ax.axhline(baseline, **plot.MEAN_LINE)
    has_legend = bool(series) or baseline is not None
    plot.finish_axes(ax, title, ylabel, log=log_scale, xlabel=xlabel, fontsize="medium",
                     below=below if has_legend else None, ncols=ncols)
    if below is None:                                 # beside the axes: no data hidden
        ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))


def accuracy_lines(ax, seconds, accuracies, chance, title, beside=False, xlabel=SINCE_STAGE1):
    """Test accuracy (%) of the composed network at each tick, and the commonest label's."""
    ax.plot(seconds, [100 * a for a in accuracies], "-", **plot.TICK_LINE)
    ax.axhline(100 * chance, linestyle=":", color="black",
               label="always answering the commonest label")
    ax.set_ylim(0, 100)
    plot.finish_axes(ax, title, "test accuracy (%)", xlabel=xlabel, fontsize="medium")
    ax.legend(fontsize="small", **(dict(loc="upper left", bbox_to_anchor=(1.01, 1.0)) if beside
                                   else dict(loc="lower right")))


def draw_chain_lines(series, title, ylabel, log_scale=False, baseline=None, ncols=2):
    """One panel of a chain as a picture (chain_lines)."""
    return png(draw=lambda fig, ax: chain_lines(ax, series, title, ylabel, log_scale,
                                                baseline, ncols=ncols))


def draw_accuracy(seconds, accuracies, chance, title):
    return png(draw=lambda fig, ax: accuracy_lines(ax, seconds, accuracies, chance, title))


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
