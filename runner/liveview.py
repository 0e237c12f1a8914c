"""What the live page (live.py) shows: live_view(state), the JSON it polls, read from a run
folder; each picture named with the content it shows and a function that draws it (livedraw.py).
"""

import time
from pathlib import Path

import numpy as np

import plot
import sgd
import synthgrad
import train_output
from generate import fmt
from parts import children, classify, snapshots, stepped
from runner import chain_eval, livedraw

QUIET_S = 15.0                     # nothing written for this long: the run has stopped
ENDED_QUIET_S = 5.0                # final weights and this quiet: ended (demo.py may go on)
PHASES = (("synthetic gradients (three processes)", "."),        # (label, folder in the run)
          *((label, f"controls/{name}") for name, label in plot.CONTROLS))
SINCE_INPUT = "seconds since the input trainer began streaming"


# --- Reading a run folder: what it is, its phases, its curves. ---------------------------------

def logged_url(path):
    """The last "listening on http://..." URL in a process's log, or None."""
    try:
        found = children.LISTENING.findall(Path(path).read_text(errors="replace"))
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


class Phase:
    """One decoupled run in a run folder (the synthetic-gradient run or a control), or a
    progress folder run by hand (no metrics or logs)."""

    def __init__(self, label, folder, progress, by_hand=False):
        self.label, self.folder, self.progress, self.by_hand = label, folder, progress, by_hand

    def metrics(self, name):
        return [] if self.by_hand else plot.metrics_of(self.folder, [name])[name]

    def ended(self):
        """When both trainers wrote their final weights (time.time()), or None."""
        finals = [self.progress / f"{part}_final.npz" for part in ("layer1", "layers23")]
        return newest_mtime(finals) if all(f.is_file() for f in finals) else None

    def writes(self):
        return [self.progress, *(self.folder / "metrics").glob("*.jsonl")]

    def url(self, log_name, given, default):
        """A server's address: given, else its log's in the run, else (by hand) the default."""
        if given:
            return given
        return default if self.by_hand else logged_url(self.folder / log_name)


def run_phases(folder, kind):
    """The Phases of a run folder (the main run, each control there) or a progress folder."""
    folder = Path(folder)
    if kind == "progress":
        return [Phase("synthetic gradients (by hand)", folder, folder, by_hand=True)]
    return [Phase(label, folder / sub, folder / sub / "progress") for label, sub in PHASES
            if sub == "." or (folder / sub).is_dir()]


# --- What the page shows: one JSON answer, built from the run folder and the servers. ---------

def clock(t):
    return time.strftime("%H:%M:%S", time.localtime(t))


def waiting(name, title, panel_title, text, key=()):
    """A picture that says why there is nothing to draw yet, its content "waiting" (and key)."""
    return name, title, ["waiting", *key], lambda: livedraw.draw_waiting(panel_title, text)


def when(label, origin):
    return "final" if label == "final" else f"t = {fmt(label - origin, '.0f')} s"


# Each kind of process: the client that asks its /status (None: it serves none), and the
# counter whose rate is its examples/s.
ROLES = {"input": (None, "examples"),
         "output": (synthgrad.OutputTrainerClient, "examples_trained"),
         "oracle": (synthgrad.OracleClient, "gradients_received")}


def process_row(state, name, url, role, lines, notes, stopped):
    """One process's figures: from its live GET /status at url if it answers, else from its
    newest metrics line."""
    kind, counter = ROLES[role]
    status, why = (None, None) if url is None or stopped else state.server_status(url, kind)
    row = {"name": name, "url": url}
    if status is not None:
        source, history = status, state.samples(url)    # its rate: between the last two answers
        row["source"] = "live GET /status"
    elif lines:
        source, history, t = lines[-1], lines, lines[-1].get("time")   # between the last two lines
        age = time.time() - t if isinstance(t, (int, float)) else None
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
    if counter == "examples":                              # the input trainer: no /status
        row["examples"] = source.get("examples")
    delays = source.get("delay_steps") or {      # a chain counting steps: the model above's
        k.removeprefix("delay_"): v for k, v in source.items() if k.startswith("delay_")}
    row.update(examples_per_s=line_rate(history, counter),
               examples_held=source.get("examples_held"), passes=source.get("training_passes"),
               staleness_s=source.get("staleness_s"),
               delay_steps=stepped.delay_text(delays) if delays else None)
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
    active = max(running, key=lambda p: newest_mtime(p.writes()) or 0.0, default=phases[0])
    curves = {p.label: phase_curve(state, p, notes) for p in phases}
    title = "The network now, beside the target"

    # the fit: the active phase's newest readable network
    newest_first = ["final"] * (active.ended() is not None) + \
        snapshots.paired_ticks(active.progress)[::-1]
    fit = newest_readable(newest_first, lambda label: (state.tick_mse(active.progress, label),
                                                 snapshots.load_composed(active.progress, label)),
                          notes, active.label)
    if fit is None:
        pictures = [waiting("fit", title, "The network's fit", "no complete pair of weight "
                            f"snapshots in {active.progress} yet: the trainers write one every "
                            "few seconds")]
    else:
        label, (mse, layers) = fit
        heading = f"{active.label}\n{when(label, curves[active.label][1])}, held-out MSE {mse:.4f}"
        pictures = [("fit", title, [active.label, label],
                     lambda: livedraw.draw_fit(layers, heading, "The network's fit"))]

    # held-out MSE: the main run, the controls, backprop
    main, rest = phases[0], phases[1:]
    main_rows, origin = curves[main.label]
    backprop = main.metrics("backprop")
    controls = [(p.label, curves[p.label][0]) for p in rest]
    title = "Held-out MSE over time (log scale)"
    if main_rows or backprop or any(rows for _, rows in controls):
        content = [main_rows, [r.get("heldout_mse") for r in backprop], controls]
        pictures.append(("mse", title, content, lambda: livedraw.panel(
            plot.draw_heldout_curves, backprop, main_rows, state.baseline, controls,
            "Held-out MSE over time: error on points no method trained on (lower is better)",
            "seconds since each run's input trainer began streaming (backprop: seconds of "
            "training)", "medium")))
    else:
        pictures.append(waiting("mse", title, "Held-out MSE over time",
                                "no snapshot tick measured yet"))

    # the oracle's quality: the active phase's metrics, or /status samples when run by hand
    oracle_url = active.url("oracle.log", cfg["oracle_url"] if active is main else None,
                            synthgrad.DEFAULT_ORACLE_URL)
    rows = active.metrics("oracle")
    if not rows and active.by_hand and oracle_url:
        state.server_status(oracle_url, synthgrad.OracleClient)
        rows = state.samples(oracle_url)
    o_origin = curves[active.label][1] or snapshots.last_finite(rows[:1], "time") or 0.0
    title = "cosine(synthetic, true) and the oracle's loss"
    if rows and any(np.isfinite(snapshots.column(rows, key)).any()
                    for key in ("cosine_similarity", "last_train_mse")):
        pictures.append(("oracle", title, [active.label, len(rows), rows[-1].get("time")],
                         lambda: livedraw.panel(
                             plot.draw_oracle_quality, rows, o_origin, SINCE_INPUT,
                             f"cosine(synthetic, true dL/dh) and the oracle's loss: "
                             f"{active.label}")))
    else:
        pictures.append(waiting("oracle", title, title, "the oracle has measured nothing yet: "
                                "no true gradient has reached it" if rows else
                                "no oracle metrics yet (metrics/oracle.jsonl)", [len(rows)]))

    # the processes of the active phase
    stopped = active.ended() is not None
    output_url = active.url("train_output.log", cfg["output_url"] if active is main else None,
                            synthgrad.DEFAULT_OUTPUT_TRAINER_URL)
    processes = [process_row(state, f"{what} ({script}.py)", url, role, active.metrics(script),
                             notes, stopped)
                  for what, script, url, role in (
                      ("input trainer", "train_input", None, "input"),
                      ("output trainer", "train_output", output_url, "output"),
                      ("oracle", "oracle", oracle_url, "oracle"))]
    ended = all(p.ended() is not None for p in phases)
    last = newest_mtime([path for p in phases for path in p.writes()])
    doing = active.label
    backprop_file = main.folder / "metrics" / "backprop.jsonl"
    if not main.by_hand and last is not None and newest_mtime([backprop_file]) == last:
        doing = "the plain-backprop baseline (in demo.py's process)"
    return pictures, processes, doing, ended, last, active.label


def measure_ticks(ticks, origin, measure, notes, what):
    """{tick: (seconds since origin, measure(tick))} of the ticks whose snapshots can be read,
    and the origin (None: the first tick); each that cannot (ValueError) is said in notes."""
    origin = ticks[0] if origin is None and ticks else origin
    measured = {}
    for tick in ticks:
        try:
            measured[tick] = (tick - origin, measure(tick))
        except ValueError as e:
            notes.append(f"{what}: the snapshots of tick {tick} could not be read "
                         f"(half-written or damaged?), left out: {e}")
    return measured, origin


def phase_curve(state, phase, notes):
    """[{"label": tick, "seconds", "mse"}] of a phase's ticks, seconds since its input trainer
    began streaming (else since its first tick), and that origin."""
    ticks = snapshots.paired_ticks(phase.progress)
    origin = None if phase.by_hand else snapshots.streaming_start(phase.folder)
    measured, origin = measure_ticks(ticks, origin, lambda tick: state.tick_mse(
        phase.progress, tick), notes, phase.label)
    return [{"label": t, "seconds": s, "mse": mse} for t, (s, mse) in measured.items()], origin


def newest_readable(labels, load, notes, what):
    """(label, load(label)) of the first label (newest first) whose snapshots load, or None;
    each that does not (ValueError) is said in notes."""
    for label in labels:
        try:
            return label, load(label)
        except ValueError as e:
            notes.append(f"{what}: the newest snapshots ({label}) could not be read "
                         f"(half-written or damaged?); showing older ones: {e}")
    return None


def chain_view(state, run, notes):
    """Pictures and processes of a chain run folder."""
    run = Path(run)
    layout = chain_eval.chain_layout(run)
    stage1 = snapshots.read_metrics(run / "metrics" / "stage1.jsonl")
    origin = snapshots.last_finite(stage1[:1], "time")
    pictures, rows = [], []                     # rows: [(seconds, chain_eval.tick_row)]
    stopped = layout is not None and all(chain_eval.stage_file(run, k, "final").is_file()
                                         for k in range(1, len(layout) + 1))
    unreadable = None                           # why a classifier's test images cannot be read
    if layout is not None and chain_eval.classifies(layout):
        try:
            state.test_images(run)
        except ValueError as e:
            unreadable = f"the chain classifies, but its test images cannot be read: {e}"
            notes.append(unreadable)
    if layout is None or unreadable:
        pictures.append(waiting("chain_fit", "The composed chain now", "The composed chain",
                                unreadable or "waiting for every stage's first weight snapshot",
                                [unreadable]))
    else:
        ticks = chain_eval.chain_ticks(run, layout)
        measured, origin = measure_ticks(ticks, origin, lambda tick: state.chain_tick(
            run, layout, tick), notes, "the chain")
        rows = list(measured.values())
        fit = newest_readable(["final"] * stopped + ticks[::-1], lambda label: (
            chain_eval.load_chain(run, layout, label)), notes, "the chain")
        stages = f"{len(layout)} stages ({' | '.join(map(train_output.format_sizes, layout))})"
        if chain_eval.classifies(layout):               # chain.py --data
            pictures += classifier_pictures(state, run, rows, fit, origin, stages)
        else:
            pictures += toy_chain_pictures(state, measured, fit, origin, stages)
    boundaries = len(layout) - 1 if layout else len(list((run / "progress").glob("boundary*")))
    # --colocated: each boundary's model is learned, and measured, in the stage above it
    colocated = boundaries > 0 and not any(
        (run / f"boundary{b}.log").exists() or (run / "metrics" / f"boundary{b}.jsonl").exists()
        for b in range(1, boundaries + 1))
    metrics = plot.metrics_of(run, [f"boundary{b}" for b in range(1, boundaries + 1)] +
                         [f"stage{k}" for k in range(2, boundaries + 2)])
    if colocated:
        notes.append("each boundary's model is learned in the stage above it (--colocated): "
                     "no oracle processes")
        metrics.update({f"boundary{b}": metrics[f"stage{b + 1}"]
                        for b in range(1, boundaries + 1)})
    pictures += boundary_pictures(metrics, rows, boundaries, colocated, origin or 0.0)
    # processes: stage 1 from its metrics, the others live where they answer
    processes = [process_row(state, "stage 1 (train_input.py)", None, "input", stage1, notes,
                             stopped)]
    processes += [process_row(state, f"stage {k}", logged_url(run / f"stage{k}.log"), "output",
                              metrics[f"stage{k}"], notes, stopped)
                  for k in range(2, boundaries + 2)]
    processes += [process_row(state, f"boundary {b} oracle", logged_url(run / f"boundary{b}.log"),
                              "oracle", metrics[f"boundary{b}"], notes, stopped)
                  for b in range(1, 0 if colocated else boundaries + 1)]
    last = newest_mtime([*(run / "progress").glob("*"), *(run / "metrics").glob("*.jsonl")])
    return pictures, processes, "chain", stopped, last, "the chain's stages and boundaries"


def toy_chain_pictures(state, measured, fit, origin, stages):
    """A toy chain's fit (fit: (label, layers) or None) and held-out MSE per tick (measured:
    {tick: (seconds, chain_eval.tick_row)})."""
    pictures = []
    if fit is not None:
        label, layers = fit
        mse = measured[label][1]["heldout_mse"] if label in measured else \
            sgd.mse(layers, state.x_test, state.y_test)
        heading = f"{stages}\n{when(label, origin)}, held-out MSE {mse:.4f}"
        pictures.append(("chain_fit", "The composed chain now, beside the target", [label],
                         lambda: livedraw.draw_fit(layers, heading, "The composed chain")))
    seconds = [s for s, _ in measured.values()]
    curve = [r["heldout_mse"] for _, r in measured.values()]
    pictures.append(("chain_mse", "Held-out MSE of the composed chain (log scale)",
                     [seconds, curve], lambda: livedraw.panel(
                         livedraw.mse_lines, seconds, curve,
                         f"{stages}: error on points never trained on",
                         state.baseline, xlabel=livedraw.SINCE_STAGE1)))
    return pictures


def boundary_pictures(metrics, rows, boundaries, colocated, start):
    """Each boundary's cosine (with full backprop per tick; as its learner measures it) and
    staleness, against seconds since `start`."""
    cos_series, stale_series = livedraw.boundary_series(
        boundaries, [s for s, _ in rows], [r["cosine"] for _, r in rows],
        chain_eval.staleness(metrics, boundaries, start), ": the model against full backprop")
    for b in range(boundaries, 0, -1):              # each after the boundary's own line
        lines = metrics[f"boundary{b}"]
        measured_by = f"stage {b + 1}" if colocated else "its oracle"
        cos_series.insert(b, (f"boundary {b}: as {measured_by} measures it (on what it receives)",
                              list(snapshots.column(lines, "time") - start),
                              list(snapshots.column(lines, "cosine_similarity")),
                              dict(marker="x", linestyle="--", color=f"C{b - 1}")))
    sizes_known = [len(m) for m in metrics.values()]
    return [("chain_cosine", "cosine(synthetic, true) per boundary",
             [[r["cosine"] for _, r in rows], sizes_known],
             lambda: livedraw.panel(plot.draw_lines, cos_series, "cosine(synthetic, true dL/dh) "
                                    "per boundary (0 until a boundary model has learned)",
                                    "cosine (1 = same direction)", ncols=1,
                                    xlabel=livedraw.SINCE_STAGE1)),
            ("chain_staleness", "Staleness per boundary", [sizes_known],
             lambda: livedraw.panel(livedraw.staleness_lines, stale_series))]


def classifier_pictures(state, run, rows, fit, origin, stages):
    """A classifier chain's test accuracy per tick and, at fit, test images with the labels it
    gives them and its confusion matrix (on LiveState.test_images)."""
    x, labels, data = state.test_images(run)
    names = classify.images.CLASSES[data]
    seconds = [s for s, _ in rows]
    accuracy = [r["test_accuracy"] for _, r in rows]
    chance = float(np.bincount(labels).max() / len(labels))
    pictures = [("chain_accuracy", "Test accuracy of the composed chain", [seconds, accuracy],
                 lambda: livedraw.panel(livedraw.accuracy_lines, seconds, accuracy, chance,
                                        f"{stages}: {data}, the first {len(labels):,} test "
                                        "images"))]
    if fit is None:
        return pictures
    label, layers = fit
    pictures.append(("chain_examples", "Test images and the labels the chain gives them",
                     [label], lambda: livedraw.draw_examples(
                         layers, x, labels, names, f"The composed chain ({when(label, origin)}) "
                         "on the first test images: green right, red wrong (with the true label)")))
    pictures.append(("chain_confusion", "Confusion matrix", [label],
                     lambda: livedraw.draw_confusion(
                         livedraw.confusion(layers, x, labels, len(names)), names,
                         f"The composed chain ({when(label, origin)}) on the first "
                         f"{len(labels):,} test images")))
    return pictures


def empty_view(state, folder=None, how="", summary="", kind="no run"):
    """The page's JSON before anything of the run is read: no pictures, no processes."""
    return {"run": None if folder is None else str(folder), "found": how, "pictures": [],
            "processes": [], "notes": [], "refresh_ms": round(state.config["refresh"] * 1000),
            "time": clock(time.time()), "state": kind, "summary": summary}


def live_view(state):
    """The JSON the page polls: the run, its state in words, the pictures' addresses and
    titles, every process's figures, and notes on whatever could not be read."""
    folder, how = state.find_run()
    kind = None if folder is None else snapshots.folder_kind(folder)
    if folder is None:
        return empty_view(state, folder, how, f"No run found yet in "
                          f"{how.removeprefix('the newest folder in ')}: this page waits for "
                          "one (start `make demo`, chain.py or the three scripts; or pass "
                          "--run-dir).")
    if kind is None:
        return empty_view(state, folder, how,
                          f"There is no folder at {folder} (yet): this page waits for it.")
    if kind == "run" and not any(folder.iterdir()):
        return empty_view(state, folder, how, f"{folder} is empty so far: waiting for the run "
                          "to write its data, metrics and first weight snapshots.", "waiting")
    view = empty_view(state, folder, how)
    notes = view["notes"]
    pictures, processes, active, ended, last, processes_of = (
        chain_view(state, folder, notes) if kind == "chain" else
        decoupled_view(state, folder, kind, notes))
    view["pictures"] = [{"name": name, "title": title,
                         "url": state.offer(name, [str(folder), content], draw)}
                        for name, title, content, draw in pictures]
    view.update(processes=processes, processes_of=processes_of)
    quiet = None if last is None else time.time() - last
    what = {"chain": "chain run", "progress": "run by hand", "run": "run"}[kind]
    if ended and (quiet is None or quiet > ENDED_QUIET_S):
        view["state"], view["summary"] = "ended", (
            f"This {what} has ended: every trainer wrote its final weights (last write at "
            f"{clock(last)}). The page shows where it stopped.")
    elif quiet is not None and quiet > QUIET_S:
        view["state"], view["summary"] = "stopped", (
            f"Nothing in this {what} has changed for {quiet:.0f} s (last write at "
            f"{clock(last)}): it has stopped, or is stalled.")
    elif last is None:
        view["state"], view["summary"] = "waiting", (
            f"This {what} has written no snapshot or metrics yet: waiting.")
    else:
        view["state"], view["summary"] = "training", (
            f"Training: {active}, last write {quiet:.0f} s ago.")
    return view
