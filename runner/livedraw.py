"""The live page's pictures (liveview.py decides what to show; this draws it): each panel a
matplotlib figure saved as PNG bytes. The toy's panels come from plot.py and generate.py; a
chain that classifies images gets its test accuracy over time, test images with the labels
the network gives them, and its confusion matrix.

Importing it runs nothing.
"""

import io

import numpy as np

import generate
import plot
import sgd
from generate import COLORBAR_LABEL, LEVELS

# --- Drawing: each picture into PNG bytes, panels from plot.py and generate.py. ---------------

FIGSIZE = (7.5, 5.0)       # inches, every picture alike: the page's panels line up in rows


def png(nrows=1, ncols=1, draw=None, **subplots_kw):
    """fig, ax from plt.subplots, drawn on by draw(fig, ax), saved as PNG bytes and closed."""
    plt = generate.pyplot()
    fig, ax = plt.subplots(nrows, ncols, **subplots_kw)
    try:
        draw(fig, ax)
        out = io.BytesIO()
        fig.savefig(out, format="png", dpi=generate.DPI)
        return out.getvalue()
    finally:
        plt.close(fig)


def draw_fit(f, title, suptitle):
    """The target | f side by side on the target's colour scale, one colorbar."""
    def draw(fig, axes):
        target_title, target = plot.TARGET_PANEL[:2]
        generate.draw_surface(axes[0], target, target_title)
        filled = generate.draw_surface(axes[1], f, title)
        axes[1].set_ylabel("")
        fig.colorbar(filled, ax=axes, ticks=LEVELS[::5], label=COLORBAR_LABEL, shrink=0.85)
        fig.suptitle(suptitle)
    return png(1, 2, draw, figsize=FIGSIZE, layout="constrained")


def draw_waiting(title, text):
    """A picture that says, in words, why there is nothing to draw yet."""
    def draw(fig, ax):
        plot.draw_placeholder(ax, title, text, width=60)
        ax.set(xticks=[], yticks=[])
    return png(1, 1, draw, figsize=(7.5, 2.2), layout="constrained")


def draw_mse(backprop_rows, phase_rows, controls, baseline, xlabel):
    def draw(fig, ax):
        plot.draw_heldout_curves(ax, backprop_rows, phase_rows, baseline, controls)
        ax.set_title("Held-out MSE over time: error on points no method trained on "
                     "(lower is better)", fontsize="medium")
        ax.set_xlabel(xlabel)
    return png(1, 1, draw, figsize=FIGSIZE, layout="constrained")


def draw_oracle(rows, origin, label):
    def draw(fig, ax):
        plot.draw_oracle_quality(ax, rows, origin)
        ax.set_title(f"cosine(synthetic, true dL/dh) and the oracle's loss: {label}",
                     fontsize="medium")
        ax.set_xlabel("seconds since the input trainer began streaming")
    return png(1, 1, draw, figsize=FIGSIZE, layout="constrained")


def draw_chain_lines(series, title, ylabel, log_scale=False, baseline=None, ncols=2):
    """One panel of a chain: [(label, seconds, values, plot options)] against seconds since
    stage 1 began streaming."""
    def draw(fig, ax):
        for label, seconds, values, style in series:
            ax.plot(seconds, values, markersize=3, label=label, **style)
        if baseline is not None:
            ax.axhline(baseline, linestyle=":", color="black",
                       label="always predicting the mean of y")
        if log_scale:
            ax.set_yscale("log")
        ax.set_title(title, fontsize="medium")
        ax.set_ylabel(ylabel)
        ax.set_xlabel("seconds since stage 1 began streaming")
        ax.grid(True, which="both", alpha=0.3)
        if series or baseline is not None:
            ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.18),
                      ncols=ncols)
    return png(1, 1, draw, figsize=FIGSIZE, layout="constrained")


# --- A chain that classifies images (chain.py --data fashion-mnist). ----------------------------

def draw_accuracy(seconds, accuracies, chance, title):
    """Test accuracy (%) of the composed network at each tick, and the commonest label's."""
    def draw(fig, ax):
        ax.plot(seconds, [100 * a for a in accuracies], "o-", markersize=3,
                label="the composed network at each snapshot tick")
        ax.axhline(100 * chance, linestyle=":", color="black",
                   label="always answering the commonest label")
        ax.set_ylim(0, 100)
        ax.set_title(title, fontsize="medium")
        ax.set_ylabel("test accuracy (%)")
        ax.set_xlabel("seconds since stage 1 began streaming")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    return png(1, 1, draw, figsize=FIGSIZE, layout="constrained")


def draw_examples(layers, x, labels, names, title, rows=3, cols=6):
    """The first rows x cols test images, each under the label the network gives it (green
    when right; red, with the true label, when wrong)."""
    predicted = sgd.outputs(layers, x[:rows * cols]).argmax(axis=1)

    def draw(fig, axes):
        for k, ax in enumerate(axes.flat):
            ax.imshow(x[k].reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
            right = predicted[k] == labels[k]
            ax.set_title(names[predicted[k]] if right else
                         f"{names[predicted[k]]}\n(is {names[labels[k]]})",
                         fontsize="x-small", color="green" if right else "red")
            ax.set(xticks=[], yticks=[])
        fig.suptitle(title, fontsize="medium")
    return png(rows, cols, draw, figsize=FIGSIZE, layout="constrained")


def confusion(layers, x, labels, classes):
    """counts (classes, classes): row the true label, column the one the network gives."""
    predicted = sgd.outputs(layers, x).argmax(axis=1)
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
    return png(1, 1, draw, figsize=FIGSIZE, layout="constrained")
