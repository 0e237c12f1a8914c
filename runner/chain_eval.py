"""Measuring a chain run from its snapshots: chain.json (evaluate) and chain.png (draw).

A chain's run folder holds each stage's weight snapshots (progress/stage<k>/: stage 1's layer1_*,
the others' layers23_*), each boundary model's at every tick (progress/boundary<b>/model_<tick>)
and metrics/stage<k>.jsonl; chain.py, the lab and the live page read it with these functions.
"""

import itertools
import json
from pathlib import Path

import numpy as np

import generate
import plot
import sgd
import train_output
from parts import boundary, classify, snapshots
from runner import livedraw


def stage_file(run, k, label):
    part = "layer1" if k == 1 else "layers23"
    return Path(run) / "progress" / f"stage{k}" / f"{part}_{label}.npz"


def classifies(layout):
    """True for a classifier's layout (more than one output: logits), False for the toy's."""
    return layout[-1][-1] > 1


def load_chain(run, layout, label):
    """The composed network (a list of sgd.Layer) from every stage's snapshot `label`; a
    classifier's (more than one output: logits) has ReLU hidden layers, as its stages do."""
    layers = []
    for k, sizes in enumerate(layout, start=1):
        layers += snapshots.load_layers(stage_file(run, k, label), list(itertools.pairwise(sizes)))
    if classifies(layout):
        for layer in layers[:-1]:
            layer.activation = sgd.ReLU
        layers[-1].activation = sgd.Linear
    return layers


def chain_ticks(run, layout):
    """Ticks at which every stage saved its layers (a stage's folder holds one part's)."""
    found = [snapshots.list_snapshots(Path(run) / "progress" / f"stage{k}")
             for k in range(1, len(layout) + 1)]
    return snapshots.common_ticks(*({**f["layer1"], **f["layers23"]} for f in found))


def chain_layout(run):
    """[(widths of stage k's layers)] from each stage's first readable snapshot, or None."""
    layout = []
    while (folder := Path(run) / "progress" / f"stage{len(layout) + 1}").is_dir():
        found = snapshots.list_snapshots(folder)
        for path in sorted([*found["layer1"].values(), *found["layers23"].values()]):
            try:
                ws = numbered(snapshots.read_npz(path, "weights"))
            except ValueError:
                continue
            layout.append((ws[0].shape[0], *(w.shape[1] for w in ws)))
            break
        else:
            return None
    return layout if len(layout) >= 2 else None


def load_boundary_model(run, b, tick):
    """(weights, conditioned) of boundary b's model saved at tick, or None."""
    path = Path(run) / "progress" / f"boundary{b}" / f"model_{tick}.npz"
    if not path.exists():
        return None
    arrays = snapshots.read_npz(path, "boundary model")
    return numbered(arrays), bool(arrays["conditioned"])


def numbered(arrays, name="w"):
    """[w0, w1, ...] of a snapshot's arrays: its layers' weights (or, with "b", biases)."""
    return [arrays[f"{name}{k}"] for k in range(sum(1 for n in arrays if n.startswith(name)))]


def true_and_synthetic(layers, layout, x, y, models):
    """Per boundary b: (true dL/dh_b, synthetic dL/dh_b) on inputs x (n, d), targets y (n,):
    true by backprop of each example's loss through the whole composed network, synthetic from
    boundary b's model (models[b-1], or None) on h_b (and y, if conditioned)."""
    h = [x]
    for layer in layers:
        h.append(layer.feed_forward(h[-1]))                    # each remembers its input
    loss = sgd.SoftmaxCrossEntropy if classifies(layout) else sgd.SquaredError
    grads = [loss.gradient(h[-1], y)]
    for layer in reversed(layers):
        grads.insert(0, layer.backprop(grads[0]))              # grads[j]: dL/dh_j, into layer j
    ends = np.cumsum([len(s) - 1 for s in layout])[:-1]       # layers below each cut
    return [(grads[end], None if model is None else boundary.model_forward(
        model[0], classify.model_inputs(h[end], y, model[0][0].shape[0])))
        for end, model in zip(ends, models, strict=True)]


def mean_cosine(a, b):
    """Mean over rows of the cosine between rows of a and b (rows with a zero vector: 0)."""
    dot = np.sum(a * b, axis=1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.where(norms > 0, dot / np.where(norms > 0, norms, 1), 0.0)))


def final_label(run, layout):
    """"final" if every stage saved its final layers; else (a stage died and was not started
    again) the last tick at which every stage saved them. ValueError if there is none."""
    if all(stage_file(run, k, "final").exists() for k in range(1, len(layout) + 1)):
        return "final"
    ticks = chain_ticks(run, layout)
    if not ticks:
        raise ValueError("no snapshot that every stage saved: nothing to evaluate")
    return ticks[-1]


DATA_FILE = "data.json"            # in a classifier's run folder: {"data", "image_dir"}


def write_run_data(run, data, image_dir):
    """Record in a chain's run folder the image set it learns and where its files are, for its
    evaluation and the live page (the toy's: nothing)."""
    if data != "toy":
        Path(run).mkdir(parents=True, exist_ok=True)
        (Path(run) / DATA_FILE).write_text(json.dumps(
            {"data": data, "image_dir": None if image_dir is None else str(image_dir)}))


def run_data(run):
    """(data, image_dir) a chain's run folder learns: ("toy", None) unless it says otherwise;
    ValueError if what it says cannot be read."""
    path = Path(run) / DATA_FILE
    if not path.is_file():
        return "toy", None
    try:
        said = json.loads(path.read_text())
        data, image_dir = said["data"], said.get("image_dir")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not what chain.py writes ({e})") from None
    if data not in classify.DATA_NAMES:
        raise ValueError(f"{path}: unknown data {data!r}")
    return data, None if image_dir is None else Path(image_dir)


def scores_on(x, y, classifier):
    """scores(layers), a dict of what is measured on (x, y): the toy's {"heldout_mse"}, or a
    classifier's {"test_accuracy", "test_loss"} (mean cross-entropy)."""
    if not classifier:
        return lambda layers: {"heldout_mse": sgd.mse(layers, x, y)}

    def scores(layers):
        accuracy, loss = sgd.classification_scores(layers, x, y)
        return {"test_accuracy": accuracy, "test_loss": loss}
    return scores


def tick_row(layers, layout, x, y, models, scores, cosine_points):
    """{**scores(layers), "cosine": [per boundary, None without its model]}: each boundary
    model's cosine with full backprop on the first cosine_points of (x, y)."""
    pairs = true_and_synthetic(layers, layout, x[:cosine_points], y[:cosine_points], models)
    return {**scores(layers), "cosine": [None if s is None else mean_cosine(s, t)
                                         for t, s in pairs]}


def staleness(metrics, boundaries, start):
    """{"boundary<b>": [(seconds since start, staleness_s)]}, as stage b + 1 reported it in its
    metrics lines (metrics: plot.metrics_of's)."""
    return {f"boundary{b}": [(round(r["time"] - start, 3), r["staleness_s"])
                             for r in metrics[f"stage{b + 1}"]
                             if r.get("staleness_s") is not None and "time" in r]
            for b in range(1, boundaries + 1)}


def evaluate(run, layout, heldout=20_000, cosine_points=2_000, data=None, image_dir=None):
    """chain.json's content: per tick (seconds since stage 1 began streaming) the composed
    network's scores and each boundary's cosine with backprop; the initial and final scores;
    each boundary's staleness (and delay). data None: what the run folder says (run_data)."""
    run = Path(run)
    if data is None:
        data, image_dir = run_data(run)
    toy = data == "toy"                 # fresh points, or a classifier's first test images
    x, y = generate.heldout(heldout) if toy else classify.load_test(data, image_dir, heldout)
    scores = scores_on(x, y, not toy)
    metrics = plot.metrics_of(run, [f"stage{k}" for k in range(1, len(layout) + 1)])
    start = snapshots.streaming_start(run, "stage1") or 0.0
    rows = [{"seconds": round(tick - start, 3), **tick_row(
        load_chain(run, layout, tick), layout, x, y,
        [load_boundary_model(run, b, tick) for b in range(1, len(layout))], scores,
        cosine_points)} for tick in chain_ticks(run, layout)]
    final = final_label(run, layout)
    result = {"layout": [list(s) for s in layout], "ticks": rows,
              "final_from": final if final == "final" else f"tick {final}",
              "staleness": staleness(metrics, len(layout) - 1, start)}
    delays = {f"boundary{b}": [   # a chain counting steps: stage b's, for the model above it
        (round(r["time"] - start, 3), r["delay_mean"], r["delay_max"]) for r in
        metrics[f"stage{b}"] if r.get("delay_mean") is not None] for b in range(1, len(layout))}
    if any(delays.values()):
        result["delay_steps"] = delays
    for when, label in (("initial", "initial"), ("final", final)):
        for name, value in scores(load_chain(run, layout, label)).items():
            result[f"{when}_{name.split('_')[-1]}"] = value    # initial_mse, final_accuracy...
    if toy:
        result["mean_predictor_mse"] = float(y.var())
    else:                                      # always answering the commonest label
        result.update(data=data, test_images=len(y),
                      chance_accuracy=float(np.bincount(y).max() / len(y)))
    return result


def draw(result, path):
    """chain.png: held-out MSE (a classifier's test accuracy), per-boundary cosine and
    staleness against seconds, legends beside the axes."""
    ticks, layout = result["ticks"], result["layout"]
    seconds = [r["seconds"] for r in ticks]
    stages = f"{len(layout)} stages ({' | '.join(map(train_output.format_sizes, layout))})"
    cosines, staleness = livedraw.boundary_series(len(layout) - 1, seconds,
                                                  [r["cosine"] for r in ticks], result["staleness"])
    with generate.saved_figure(path, 3, 1, sharex=True, figsize=(10.5, 9.0),
                               layout="constrained") as (fig, (mse, cos, stale)):
        if "final_accuracy" in result:                  # a classifier: its test accuracy
            livedraw.accuracy_lines(mse, seconds, [r["test_accuracy"] for r in ticks],
                                    result["chance_accuracy"],
                                    f"{stages}: {result['data']}, {result['test_images']:,} "
                                    "test images never trained on", beside=True, xlabel=None)
        else:
            livedraw.mse_lines(mse, seconds, [r["heldout_mse"] for r in ticks],
                               f"{stages}: error on points never trained on",
                               result["mean_predictor_mse"], below=None)
        cos.axhline(0.0, color="gray", linewidth=0.8)
        plot.draw_lines(cos, cosines, "Synthetic against true gradients (full backprop "
                        "through the composed network), per boundary",
                        "cosine(synthetic, true dL/dh)", below=None)
        if "delay_steps" in result:                     # a chain counting steps
            delays = [(f"boundary {b} (stage {b}'s model above)", [p[0] for p in points],
                       [p[1] for p in points], dict(color=f"C{b - 1}"))
                      for b, points in enumerate(result["delay_steps"].values(), start=1)]
            plot.draw_lines(stale, delays, "Delay: how many steps behind its stage each "
                            "boundary model was", "mean delay so far\n(steps)", below=None,
                            xlabel=livedraw.SINCE_STAGE1)
        else:
            livedraw.staleness_lines(stale, staleness, below=None)
