"""What the live page shows (live.py): read from a run folder, drawn into pictures and a JSON view.

Importing it runs nothing; live.py serves what it builds. Three parts:

- reading a run folder: its kind (a demo.py/launch.py run, a chain.py run, a progress folder
  run by hand), its phases (the synthetic-gradient run and the demo's controls), a chain's
  layout from its snapshots;
- what to draw: each panel named with the content it shows and a function that draws it
  (livedraw.py: the fit beside the target, held-out MSE, the oracle's cosine and loss, a
  chain's lines; a classifier chain's test accuracy, test images and confusion matrix);
- the view: live_view(state) builds the page's JSON answer, asking `state` (live.LiveState) for
  what it caches (held-out MSE per tick, pictures, the servers' last /status).
"""

import logging
import time
from pathlib import Path

import numpy as np

import plot
import sgd
import synthgrad
from generate import fmt
from parts import children, classify, snapshots
from runner import chain_eval, livedraw
from runner.livedraw import draw_chain_lines, draw_fit, draw_mse, draw_oracle, draw_waiting

log = logging.getLogger("live")

QUIET_S = 15.0                     # nothing written for this long: the run has stopped
ENDED_QUIET_S = 5.0                # final weights and this quiet: ended (demo.py may go on)
LISTENING = children.LISTENING
PHASES = (("synthetic gradients (three processes)", "."),        # (label, folder in the run)
          ("frozen layer 1 (control)", "controls/frozen"),
          ("random directions (control)", "controls/random"))


# --- Reading a run folder: what it is, its phases, its curves. ---------------------------------

def folder_kind(folder):
    """"chain" (chain.py's run folder), "progress" (snapshots straight inside: a run by hand),
    "run" (demo.py's or launch.py's run folder, or a folder that is empty so far), or None if
    there is no folder."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    if (folder / "progress" / "stage1").is_dir() or folder.name.startswith("chain-"):
        return "chain"
    if any(folder.glob("layer*_*.npz")):
        return "progress"
    return "run"


def newest_line(path):
    """The last "listening on http://..." URL in a process's log, or None."""
    try:
        found = LISTENING.findall(Path(path).read_text(errors="replace"))
    except OSError:
        return None
    return found[-1] if found else None


def newest_mtime(paths):
    """The latest modification time among paths that exist (folders: their own), or None."""
    times = []
    for path in paths:
        try:
            times.append(Path(path).stat().st_mtime)
        except OSError:
            pass
    return max(times, default=None)


def files_in(folder, pattern="*"):
    folder = Path(folder)
    return sorted(folder.glob(pattern)) if folder.is_dir() else []


class Phase:
    """One decoupled run inside a run folder: the synthetic-gradient run or a control; or, for a
    folder run by hand, that progress folder with no metrics or logs."""

    def __init__(self, label, folder, progress, by_hand=False):
        self.label, self.folder, self.progress, self.by_hand = label, folder, progress, by_hand

    def metrics(self, name):
        return [] if self.by_hand else snapshots.read_metrics(self.folder / "metrics" /
                                                                f"{name}.jsonl")

    def ended(self):
        """When both trainers wrote their final weights (time.time()), or None."""
        return newest_mtime([self.progress / "layer1_final.npz",
                             self.progress / "layers23_final.npz"]) \
            if all((self.progress / f"{p}_final.npz").is_file() for p in ("layer1", "layers23")) \
            else None

    def last_write(self):
        return newest_mtime([self.progress, *files_in(self.folder / "metrics", "*.jsonl")])

    def url(self, log_name, given, default):
        """A server's address: given (an option), else the one its log in the run says, else
        (by hand) the scripts' default."""
        if given:
            return given
        return default if self.by_hand else newest_line(self.folder / log_name)


def run_phases(folder, kind):
    """The Phases of a run folder ("run": the main run and each control there) or a progress
    folder ("progress")."""
    folder = Path(folder)
    if kind == "progress":
        return [Phase("synthetic gradients (by hand)", folder, folder, by_hand=True)]
    return [Phase(label, folder / sub, folder / sub / "progress") for label, sub in PHASES
            if sub == "." or (folder / sub).is_dir()]


def chain_layout(run):
    """[(widths of stage k's layers)] read from each stage's first snapshot, or None until every
    stage has one readable snapshot."""
    layout, k = [], 1
    while (Path(run) / "progress" / f"stage{k}").is_dir():
        found = snapshots.list_snapshots(Path(run) / "progress" / f"stage{k}")
        paths = [*found["layer1"].values(), *found["layers23"].values()]
        sizes = None
        for path in sorted(paths, key=lambda p: p.name):
            try:
                arrays = snapshots.read_npz(path, "weights")
            except ValueError:
                continue
            ws = [arrays[f"w{j}"] for j in range(sum(1 for n in arrays if n.startswith("w")))]
            sizes = (ws[0].shape[0], *(w.shape[1] for w in ws))
            break
        if sizes is None:
            return None
        layout.append(sizes)
        k += 1
    return layout if len(layout) >= 2 else None


# --- What the page shows: one JSON answer, built from the run folder and the servers. ---------

def clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t))


def process_row(state, name, url, kind, lines, counter, notes, stopped):
    """One process's figures: from its live GET /status at url if it answers, else from its
    newest metrics line. counter: the field whose rate is its examples/s."""
    status, why = (None, None) if url is None or stopped else state.server_status(url, kind)
    row = {"name": name, "url": url}
    if status is not None:
        source, now = status, time.time()
        row["source"] = "live GET /status"
    elif lines:
        source, now = lines[-1], lines[-1].get("time")
        age = time.time() - now if isinstance(now, (int, float)) else None
        row["source"] = f"its newest metrics line, {fmt(age, '.0f')} s old"
        if stopped:
            row["source"] += " (stopped)"
        elif kind is None:
            row["source"] += " (it serves no /status)"
        elif url is None:
            row["source"] += " (no address known to ask it)"
        else:
            notes.append(f"{name} at {url} does not answer ({why}); showing its newest metrics "
                         "line instead")
    else:
        row["source"] = ("stopped" if stopped else "nothing yet: no metrics line" +
                         ("" if url is None else f" and no answer at {url} ({why})"))
        return row
    t = source.get("time") if status is None else now
    if counter == "examples":                              # the input trainer: no /status
        row["examples"] = source.get("examples")
    if status is None:                                    # the rate between the last two lines
        row["examples_per_s"] = line_rate(lines, counter)
    else:                                                 # since the previous /status
        row["examples_per_s"] = state.rate((url, counter), t, status.get(counter))
    row["examples_held"] = source.get("examples_held")
    row["passes"] = source.get("training_passes")
    row["staleness_s"] = source.get("staleness_s")
    if source.get("diverged"):
        notes.append(f"{name} reports that it diverged: training stopped")
    return row


def line_rate(lines, counter):
    """counter's change per second between the last two metrics lines, or None."""
    if len(lines) < 2:
        return None
    a, b = lines[-2], lines[-1]
    try:
        return max(0.0, (b[counter] - a[counter]) / (b["time"] - a["time"]))
    except (KeyError, TypeError, ZeroDivisionError):
        return None


def decoupled_view(state, folder, kind, notes):
    """Pictures and processes of a run folder or a progress folder."""
    phases = run_phases(folder, kind)
    cfg = state.config
    running = [p for p in phases if p.ended() is None]     # the newest of these trains now
    active = max(running, key=lambda p: p.last_write() or 0.0) if running else phases[0]
    curves = {p.label: state.curve(p, notes) for p in phases}
    pictures = []

    # the fit: the active phase's newest readable network
    fit = newest_network(state, active, notes)
    if fit is None:
        pictures.append(("fit", "The network now, beside the target", ["waiting"], lambda: (
            draw_waiting("The network's fit", f"no complete pair of weight snapshots in "
                         f"{active.progress} yet: the trainers write one every few seconds"))))
    else:
        label, seconds, mse, layers = fit
        when = "final" if label == "final" else f"t = {fmt(seconds, '.0f')} s"
        pictures.append(("fit", "The network now, beside the target", [active.label, label],
                         lambda: draw_fit(plot.predictor(layers),
                                          f"{active.label}\n{when}, held-out MSE {mse:.4f}",
                                          "The network's fit at its newest snapshot, beside the "
                                          "target\n(same colour = same height)")))

    # held-out MSE: the main run, the controls, backprop
    main, rest = phases[0], phases[1:]
    main_rows, origin = curves[main.label]
    backprop = main.metrics("backprop")
    controls = [(p.label, curves[p.label][0]) for p in rest]
    if main_rows or backprop or any(rows for _, rows in controls):
        content = [main_rows, [r.get("heldout_mse") for r in backprop], controls]
        pictures.append(("mse", "Held-out MSE over time (log scale)", content,
                         lambda: draw_mse(backprop, main_rows, controls, state.baseline,
                                          "seconds since each run's input trainer began "
                                          "streaming (backprop: seconds of training)")))
    else:
        pictures.append(("mse", "Held-out MSE over time (log scale)", ["waiting"],
                         lambda: draw_waiting("Held-out MSE over time",
                                              "no snapshot tick measured yet")))

    # the oracle's quality: the active phase's metrics, or /status samples when run by hand
    oracle_url = active.url("oracle.log", cfg["oracle_url"] if active is main else None,
                            synthgrad.DEFAULT_ORACLE_URL)
    rows = active.metrics("oracle")
    if not rows and active.by_hand and oracle_url:
        state.server_status(oracle_url, synthgrad.OracleClient)
        with state.lock:
            rows = list(state.history.get(oracle_url, []))
    o_origin = curves[active.label][1] or snapshots.last_finite(rows[:1], "time") or 0.0
    measured = rows and any(np.isfinite(snapshots.column(rows, key)).any()
                            for key in ("cosine_similarity", "last_train_mse"))
    if measured:
        pictures.append(("oracle", "cosine(synthetic, true) and the oracle's loss",
                         [active.label, len(rows), rows[-1].get("time")],
                         lambda: draw_oracle(rows, o_origin, active.label)))
    else:
        pictures.append(("oracle", "cosine(synthetic, true) and the oracle's loss",
                         ["waiting", len(rows)],
                         lambda: draw_waiting("cosine(synthetic, true) and the oracle's loss",
                                              "the oracle has measured nothing yet: no true "
                                              "gradient has reached it" if rows else
                                              "no oracle metrics yet (metrics/oracle.jsonl)")))

    # the processes of the active phase
    stopped = active.ended() is not None
    output_url = active.url("train_output.log", cfg["output_url"] if active is main else None,
                            synthgrad.DEFAULT_OUTPUT_TRAINER_URL)
    processes = [
        process_row(state, "input trainer (train_input.py)", None, None,
                    active.metrics("train_input"), "examples", notes, stopped),
        process_row(state, "output trainer (train_output.py)", output_url,
                    synthgrad.OutputTrainerClient, active.metrics("train_output"),
                    "examples_trained", notes, stopped),
        process_row(state, "oracle (oracle.py)", oracle_url, synthgrad.OracleClient,
                    active.metrics("oracle"), "gradients_received", notes, stopped)]
    ended = all(p.ended() is not None for p in phases)
    last = newest_mtime([*(p.progress for p in phases),
                         *(f for p in phases for f in files_in(p.folder / "metrics", "*.jsonl"))])
    doing = active.label
    backprop_file = main.folder / "metrics" / "backprop.jsonl"
    if not main.by_hand and last is not None and newest_mtime([backprop_file]) == last:
        doing = "the plain-backprop baseline (in demo.py's process)"
    return pictures, processes, doing, ended, last, active.label


def newest_network(state, phase, notes):
    """(label, seconds, held-out MSE, layers) of the newest readable snapshot pair of a phase
    (final, else the newest tick); unreadable newer ones are said in notes. None if none."""
    if not phase.progress.is_dir():
        return None
    origin = snapshots.streaming_start(phase.folder) if not phase.by_hand else None
    found = snapshots.list_snapshots(phase.progress)
    both = [t for t in found["layer1"] if t in found["layers23"] and t != "initial"]
    both.sort(key=lambda t: (t == "final", t if isinstance(t, int) else 0), reverse=True)
    for label in both:
        try:
            layers = snapshots.load_composed(phase.progress, label)
            mse = state.tick_mse(phase.progress, label)
        except ValueError as e:
            notes.append(f"{phase.label}: the newest snapshot pair ({label}) could not be "
                         f"read (half-written or damaged?); showing an older one: {e}")
            continue
        if isinstance(label, int):
            start = origin if origin is not None else min(
                t for t in both if isinstance(t, int))
            seconds = label - start
        else:
            seconds = None
        return label, seconds, mse, layers
    return None


def chain_view(state, run, notes):
    """Pictures and processes of a chain run folder."""
    run = Path(run)
    layout = chain_layout(run)
    stage1 = snapshots.read_metrics(run / "metrics" / "stage1.jsonl")
    origin = snapshots.last_finite(stage1[:1], "time")
    pictures, rows, fit = [], [], None          # rows: [(seconds, {"mse", "cosine"})]
    unreadable = None                           # why a classifier's test images cannot be read
    if layout is not None and chain_eval.classifies(layout):
        try:
            state.test_images(run)
        except ValueError as e:
            unreadable = f"the chain classifies, but its test images cannot be read: {e}"
            notes.append(unreadable)
    if layout is None or unreadable:
        pictures.append(("chain_fit", "The composed chain now", [unreadable or "waiting"],
                         lambda: draw_waiting("The composed chain", unreadable or "waiting for "
                                              "every stage's first weight snapshot")))
    else:
        ticks = chain_eval.chain_ticks(run, layout)
        origin = ticks[0] if origin is None and ticks else origin
        measured = {}
        for tick in ticks:
            try:
                measured[tick] = state.chain_tick(run, layout, tick)
                rows.append((tick - origin, measured[tick]))
            except ValueError as e:
                notes.append(f"the chain's snapshots of tick {tick} could not be read "
                             f"(half-written or damaged?), left out: {e}")
        for label in ["final", *reversed(ticks)]:
            try:
                layers = chain_eval.load_chain(run, layout, label)
            except ValueError:
                if label != "final":
                    notes.append(f"the chain's newest snapshots ({label}) could not be read; "
                                 "showing older ones")
                continue
            fit = (label, layers)
            break
        sizes = " | ".join("-".join(map(str, s)) for s in layout)
        if chain_eval.classifies(layout):               # chain.py --data
            pictures += classifier_pictures(state, run, layout, rows, fit, origin, sizes)
        elif fit is not None:
            label, layers = fit
            when = "final" if label == "final" else f"t = {label - origin:.0f} s"
            mse = measured[label]["mse"] if label in measured else \
                sgd.mse(layers, state.x_test, state.y_test)
            pictures.append(("chain_fit", "The composed chain now, beside the target",
                             [label],
                             lambda: draw_fit(plot.predictor(layers),
                                              f"{len(layout)} stages: {sizes}\n{when}, held-out "
                                              f"MSE {mse:.4f}",
                                              "The composed chain at its newest snapshot, beside "
                                              "the target\n(same colour = same height)")))
        seconds = [s for s, _ in rows]
        if not chain_eval.classifies(layout):
            pictures.append(("chain_mse", "Held-out MSE of the composed chain (log scale)",
                             [seconds, [r["mse"] for _, r in rows]],
                             lambda: draw_chain_lines(
                                 [("the composed network at each snapshot tick", seconds,
                                   [r["mse"] for _, r in rows], dict(marker="o"))],
                                 f"{len(layout)} stages ({sizes}): error on points never "
                                 "trained on", "held-out MSE (log scale)", log_scale=True,
                                 baseline=state.baseline)))
    boundaries = len(layout) - 1 if layout else len(files_in(run / "progress", "boundary*"))
    # chain.py --colocated: no oracle processes; each boundary's model is learned in the stage
    # above it, whose metrics carry the oracle's quality figures
    colocated = boundaries > 0 and not any(
        (run / f"boundary{b}.log").exists() or (run / "metrics" / f"boundary{b}.jsonl").exists()
        for b in range(1, boundaries + 1))
    metrics = {name: snapshots.read_metrics(run / "metrics" / f"{name}.jsonl")
               for name in [f"boundary{b}" for b in range(1, boundaries + 1)] +
               [f"stage{k}" for k in range(2, boundaries + 2)]}
    if colocated:
        notes.append("each boundary's model is learned in the stage above it (--colocated): "
                     "no oracle processes")
        metrics.update({f"boundary{b}": metrics[f"stage{b + 1}"]
                        for b in range(1, boundaries + 1)})
    start = origin or 0.0
    cos_series, stale_series = [], []
    for b in range(1, boundaries + 1):
        cos_series.append((f"boundary {b}: the model against full backprop", [s for s, _ in rows],
                           [np.nan if r["cosine"][b - 1] is None else r["cosine"][b - 1]
                            for _, r in rows], dict(marker="o", color=f"C{b - 1}")))
        lines = metrics[f"boundary{b}"]
        measured_by = f"stage {b + 1}" if colocated else "its oracle"
        cos_series.append((f"boundary {b}: as {measured_by} measures it (on what it receives)",
                           list(snapshots.column(lines, "time") - start),
                           list(snapshots.column(lines, "cosine_similarity")),
                           dict(marker="x", linestyle="--", color=f"C{b - 1}")))
        lines = metrics[f"stage{b + 1}"]
        stale_series.append((f"boundary {b} (stage {b + 1}'s inputs)",
                             list(snapshots.column(lines, "time") - start),
                             list(snapshots.column(lines, "staleness_s")),
                             dict(color=f"C{b - 1}")))
    sizes_known = [len(m) for m in metrics.values()]
    pictures.append(("chain_cosine", "cosine(synthetic, true) per boundary",
                     [[r["cosine"] for _, r in rows], sizes_known],
                     lambda: draw_chain_lines(cos_series, "cosine(synthetic, true dL/dh) per "
                                              "boundary (0 until a boundary model has learned)",
                                              "cosine (1 = same direction)", ncols=1)))
    pictures.append(("chain_staleness", "Staleness per boundary", [sizes_known],
                     lambda: draw_chain_lines(stale_series, "Staleness: how old the inputs "
                                              "each stage trains on are",
                                              "mean age of the activations\ntrained on (s)")))
    # processes: stage 1 from its metrics, the others live where they answer
    stopped = all(chain_eval.stage_file(run, k, "final").is_file()
                  for k in range(1, boundaries + 2)) if layout else False
    processes = [process_row(state, "stage 1 (train_input.py)", None, None, stage1,
                             "examples", notes, stopped)]
    for k in range(2, boundaries + 2):
        processes.append(process_row(state, f"stage {k}", newest_line(run / f"stage{k}.log"),
                                     synthgrad.OutputTrainerClient, metrics[f"stage{k}"],
                                     "examples_trained", notes, stopped))
    for b in range(1, 0 if colocated else boundaries + 1):
        processes.append(process_row(state, f"boundary {b} oracle",
                                     newest_line(run / f"boundary{b}.log"),
                                     synthgrad.OracleClient, metrics[f"boundary{b}"],
                                     "gradients_received", notes, stopped))
    last = newest_mtime([*(run / "progress").glob("*"), *files_in(run / "metrics", "*.jsonl")])
    return pictures, processes, "chain", stopped, last, "the chain's stages and boundaries"


def classifier_pictures(state, run, layout, rows, fit, origin, sizes):
    """A classifier chain's pictures: test accuracy per tick, and at its newest snapshot
    (fit: (label, layers) or None) test images with the labels it gives them and its
    confusion matrix, all on the first test images (LiveState.test_images)."""
    x, labels, data = state.test_images(run)
    names = classify.images.CLASSES[data]
    seconds = [s for s, _ in rows]
    accuracy = [r["accuracy"] for _, r in rows]
    chance = float(np.bincount(labels).max() / len(labels))
    pictures = [("chain_accuracy", "Test accuracy of the composed chain",
                 [seconds, accuracy],
                 lambda: livedraw.draw_accuracy(seconds, accuracy, chance,
                                                f"{len(layout)} stages ({sizes}): {data}, the "
                                                f"first {len(labels):,} test images"))]
    if fit is None:
        return pictures
    label, layers = fit
    when = "final" if label == "final" else f"t = {label - origin:.0f} s"
    pictures.append(("chain_examples", "Test images and the labels the chain gives them",
                     [label], lambda: livedraw.draw_examples(
                         layers, x, labels, names, f"The composed chain ({when}) on the first "
                         "test images: green right, red wrong (with the true label)")))
    pictures.append(("chain_confusion", "Confusion matrix", [label],
                     lambda: livedraw.draw_confusion(
                         livedraw.confusion(layers, x, labels, len(names)), names,
                         f"The composed chain ({when}) on the first {len(labels):,} test "
                         "images")))
    return pictures


def live_view(state):
    """The JSON the page polls: the run, its state in words, the pictures' addresses and
    titles, every process's figures, and notes on whatever could not be read."""
    folder, how = state.find_run()
    notes = []
    view = {"run": None if folder is None else str(folder), "found": how, "pictures": [],
            "processes": [], "notes": notes, "refresh_ms": round(state.config["refresh"] * 1000),
            "time": clock(time.time())}
    kind = None if folder is None else folder_kind(folder)
    if folder is None:
        view["state"] = "no run"
        view["summary"] = (f"No run found yet in {how.removeprefix('the newest folder in ')}: "
                           "this page waits for one (start `make demo`, chain.py or the three "
                           "scripts; or pass --run-dir).")
        return view
    if kind is None:
        view["state"] = "no run"
        view["summary"] = f"There is no folder at {folder} (yet): this page waits for it."
        return view
    if kind == "run" and not any(folder.iterdir()):
        view["state"] = "waiting"
        view["summary"] = (f"{folder} is empty so far: waiting for the run to write its data, "
                           "metrics and first weight snapshots.")
        return view
    make = chain_view if kind == "chain" else decoupled_view
    args = (state, folder, notes) if kind == "chain" else (state, folder, kind, notes)
    pictures, processes, active, ended, last, processes_of = make(*args)
    for name, title, content, draw in pictures:
        view["pictures"].append({"name": name, "title": title,
                                 "url": state.offer(name, [str(folder), content], draw)})
    view["processes"] = processes
    view["processes_of"] = processes_of
    quiet = None if last is None else time.time() - last
    what = {"chain": "chain run", "progress": "run by hand", "run": "run"}[kind]
    if ended and (quiet is None or quiet > ENDED_QUIET_S):
        view["state"] = "ended"
        view["summary"] = (f"This {what} has ended: every trainer wrote its final weights "
                           f"(last write at {clock(last)}). The page shows where it stopped.")
    elif quiet is not None and quiet > QUIET_S:
        view["state"] = "stopped"
        view["summary"] = (f"Nothing in this {what} has changed for {quiet:.0f} s (last write "
                           f"at {clock(last)}): it has stopped, or is stalled.")
    elif last is None:
        view["state"] = "waiting"
        view["summary"] = f"This {what} has written no snapshot or metrics yet: waiting."
    else:
        view["state"] = "training"
        view["summary"] = f"Training: {active}, last write {quiet:.0f} s ago."
    return view
