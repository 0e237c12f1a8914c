"""Watch a run learn, live: a page on this machine that redraws itself every second or two.

Run it while a run trains (or after: it then says the run has ended), and open the URL it prints:

    python live.py                                   # follows the newest folder in runs/ and progress/
    python live.py --run-dir runs/20240101-120000    # a demo.py run, or a chain.py run (runs/chain-*)
    python live.py --run-dir progress/20240101-120000 --oracle-url http://127.0.0.1:5001
    python live.py --help

demo.py, chain.py and train_output.py start it themselves and print its address (--no-live
turns that off), in the background with serving.start_live_page (a child process at a lower
priority, so it never slows the training down; it stops when they do, or when they die):

    url, stop = serving.start_live_page(run_dir)     # url: http://127.0.0.1:PORT/
    ...
    stop()

What the page shows (docs/live.md has a picture): the network composed from the newest pair of
weight snapshots beside the target, on one colour scale; held-out MSE over time (log scale),
with the controls and plain backprop when demo.py runs them; cosine(synthetic, true) and the
oracle's loss over time; and for each process what it holds and does, from its live GET /status
where it answers and else from its newest metrics line. For a chain (chain.py): the composed
chain's fit and MSE, each boundary's cosine and staleness, each stage's and boundary's figures.

How it stays cheap: the page polls GET /api/live (JSON) and swaps its pictures' addresses only
when a picture changed; a picture is drawn once for each new snapshot tick or metrics line and
cached, never redrawn per poll; held-out MSE is measured once per snapshot tick. It reads the
run folder and never writes into it. The addresses of the servers come from the "listening on"
line each process writes into its log in the run folder (launch.py and chain.py keep those
logs); for a progress folder run by hand, from --oracle-url and --output-url.
"""

import argparse
import collections
import hashlib
import hmac
import io
import json
import logging
import math
import os
import re
import signal
import sys
import threading
import time
import urllib.parse
from pathlib import Path

import numpy as np
from flask import Flask, Response, abort, request

import chain
import generate
import launch
import plot
import serving
import sgd
import snapshots
import synthgrad
from generate import COLORBAR_LABEL, LEVELS, fmt
from snapshots import NothingToRead

HERE = Path(__file__).resolve().parent
log = logging.getLogger("live")

DEFAULT_PORT = 5050                # beside the servers' 5000 and 5001
REFRESH_S = 1.5                    # how often the page asks for news
REDRAW_S = 6.0                     # a picture is redrawn at most this often (bench.py --live-cost)
STATUS_TIMEOUT_S = 0.5             # a server that takes longer is reported as not answering
STATUS_MAX_AGE_S = 1.0             # one GET /status per server per second, however many pages
QUIET_S = 15.0                     # nothing written for this long: the run has stopped
ENDED_QUIET_S = 5.0                # final weights and this quiet: ended (demo.py may go on)
COSINE_POINTS = 2_000              # held-out points a chain's boundary cosines are measured on
LISTENING = serving.LISTENING
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


# --- The page's state: caches of what was measured and drawn, owned by the app. ----------------

class LiveState:
    """What the page knows: where the run is, the held-out MSE of every tick measured so far,
    the pictures drawn (one per content), the servers' last /status. One per app."""

    role = title = "live page"

    def __init__(self, config):
        self.config = config
        self.counts = collections.Counter()
        self.lock = threading.Lock()          # caches and counts
        self.draw_lock = threading.Lock()     # matplotlib draws one figure at a time
        self.x_test, self.y_test = generate.heldout(config["heldout"])      # (n, 2), (n,)
        self.baseline = float(self.y_test.var())
        self.mse = {}                         # (progress folder, label) -> held-out MSE
        self.chain_ticks = {}                 # (run, tick) -> {"mse", "cosine": [...]}
        self.pictures = {}                    # name -> (key, PNG bytes)
        self.pending = {}                     # name -> (key, draw()) for the newest content
        self.offered = {}                     # name -> (key, monotonic time it was offered)
        self.statuses = {}                    # url -> (monotonic time, status or None, error)
        self.rates = {}                       # url -> (time, counter) of the previous sample
        self.history = {}                     # url -> [flattened /status samples] (by hand)
        self.clients = {}
        self.started = time.time()

    # --- the run -------------------------------------------------------------------------------
    def find_run(self):
        """(folder or None, how it was found in words)."""
        given = self.config["run_dir"]
        if given is not None:
            return Path(given), "given with --run-dir"
        parents = self.config["parents"]
        latest = snapshots.latest_run(*parents)
        return latest, f"the newest folder in {' or '.join(str(p) for p in parents)}"

    # --- measuring, cached ---------------------------------------------------------------------
    def tick_mse(self, progress, label):
        """Held-out MSE of the network composed at label in a progress folder (cached); ValueError
        if a half cannot be read."""
        key = (str(progress), label)
        with self.lock:
            if key in self.mse:
                return self.mse[key]
        value = snapshots.composed_mse(progress, self.x_test, self.y_test, label)
        with self.lock:
            self.mse[key] = value
        return value

    def curve(self, phase, notes):
        """[{"label": tick, "seconds", "mse"}] of a phase, seconds since its input trainer began
        streaming (else since its first tick); unreadable ticks are left out and said in notes."""
        ticks = snapshots.paired_ticks(phase.progress) if phase.progress.is_dir() else []
        origin = snapshots.streaming_start(phase.folder) if not phase.by_hand else None
        origin = ticks[0] if origin is None and ticks else origin
        rows = []
        for t in ticks:
            try:
                rows.append({"label": t, "seconds": t - origin, "mse": self.tick_mse(
                    phase.progress, t)})
            except ValueError as e:
                notes.append(f"{phase.label}: the snapshot pair of tick {t} could not be read "
                             f"(half-written or damaged?), left out: {e}")
        return rows, origin

    def chain_tick(self, run, layout, tick):
        """{"mse", "cosine": [per boundary, or None]} of a chain's composed network at a tick
        (cached once every boundary's model is there); ValueError if a snapshot is unreadable."""
        key = (str(run), tick)
        with self.lock:
            if key in self.chain_ticks:
                return self.chain_ticks[key]
        layers = chain.load_chain(run, layout, tick)
        models = []
        for b in range(1, len(layout)):
            try:
                models.append(chain.load_boundary_model(run, b, tick))
            except (ValueError, KeyError):
                models.append(None)
        n = min(COSINE_POINTS, len(self.x_test))
        pairs = chain.true_and_synthetic(layers, layout, self.x_test[:n], self.y_test[:n],
                                         models)
        result = {"mse": sgd.mse(layers, self.x_test, self.y_test),
                  "cosine": [None if s is None else chain.mean_cosine(s, t) for t, s in pairs]}
        if None not in result["cosine"]:
            with self.lock:
                self.chain_ticks[key] = result
        return result

    # --- the servers ---------------------------------------------------------------------------
    def server_status(self, url, kind):
        """(GET /status or None, why not) from the server at url, at most once a second."""
        now = time.monotonic()
        with self.lock:
            cached = self.statuses.get(url)
            if cached is not None and now - cached[0] < STATUS_MAX_AGE_S:
                return cached[1], cached[2]
            client = self.clients.get(url)
            if client is None:
                try:
                    client = kind(url, timeout=STATUS_TIMEOUT_S, token=self.config["token"])
                except ValueError as e:
                    return None, str(e)
                self.clients[url] = client
        try:
            status, error = client.status(), None
        except synthgrad.PeerError as e:
            status, error = None, str(e)
        with self.lock:
            self.statuses[url] = (now, status, error)
            if status is not None and kind is synthgrad.OracleClient:
                flat = {"time": time.time(), "last_train_mse": status.get("last_train_mse"),
                        **(status.get("synthetic_gradient_quality") or {})}
                self.history.setdefault(url, []).append(flat)
                del self.history[url][:-2000]
        return status, error

    def rate(self, key, t, counter):
        """Per second since the previous sample of this counter (None on the first)."""
        if counter is None or t is None:
            return None
        with self.lock:
            before = self.rates.get(key)
            if before is None or t > before[0]:
                self.rates[key] = (t, counter)
        if before is None or t <= before[0]:
            return None
        return max(0.0, (counter - before[1]) / (t - before[0]))

    def close(self):
        for client in self.clients.values():
            client.close()

    def status(self):
        """The live page's own GET /status."""
        return {"role": "live", "uptime_s": round(time.time() - self.started, 3),
                "pictures_drawn": self.counts["drawn"],
                "requests_served": self.counts["requests_served"],
                "requests_refused": self.counts["requests_refused"]}

    # --- pictures ------------------------------------------------------------------------------
    def offer(self, name, content, draw):
        """Make draw() the picture `name` for this content (any JSON-able value); returns its
        address, which changes only when the content does, so the browser fetches it once.
        New content replaces the picture offered at most every config["redraw"] seconds (a
        picture costs ~0.3 s of a core to draw): until then the old address is given."""
        key = hashlib.sha1(json.dumps(content, default=str).encode()).hexdigest()[:16]
        now = time.monotonic()
        with self.lock:
            old = self.offered.get(name)
            if old is None or old[0] == key or now - old[1] >= self.config["redraw"]:
                self.pending[name] = (key, draw)
                self.offered[name] = (key, now if old is None or old[0] != key else old[1])
            key = self.offered[name][0]
        return f"/picture/{name}.png?v={key}"

    def picture(self, name, key):
        """PNG bytes of picture `name`: the cached one if it is this key, else the newest drawn
        now (and cached); None if there is no such picture."""
        with self.lock:
            cached, pending = self.pictures.get(name), self.pending.get(name)
        if cached is not None and (cached[0] == key or pending is None or
                                   pending[0] == cached[0]):
            return cached[1]
        if pending is None:
            return None
        with self.draw_lock:
            with self.lock:
                cached = self.pictures.get(name)
            if cached is not None and cached[0] == pending[0]:      # drawn meanwhile
                return cached[1]
            data = pending[1]()
            with self.lock:
                self.pictures[name] = (pending[0], data)
                self.counts["drawn"] += 1
        return data


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
    if layout is None:
        pictures.append(("chain_fit", "The composed chain now, beside the target", ["waiting"],
                         lambda: draw_waiting("The composed chain's fit", "waiting for every "
                                              "stage's first weight snapshot")))
    else:
        ticks = chain.chain_ticks(run, layout)
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
                layers = chain.load_chain(run, layout, label)
            except ValueError:
                if label != "final":
                    notes.append(f"the chain's newest snapshots ({label}) could not be read; "
                                 "showing older ones")
                continue
            fit = (label, layers)
            break
        sizes = " | ".join("-".join(map(str, s)) for s in layout)
        if fit is not None:
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
        pictures.append(("chain_mse", "Held-out MSE of the composed chain (log scale)",
                         [seconds, [r["mse"] for _, r in rows]],
                         lambda: draw_chain_lines(
                             [("the composed network at each snapshot tick", seconds,
                               [r["mse"] for _, r in rows], dict(marker="o"))],
                             f"{len(layout)} stages ({sizes}): error on points never trained on",
                             "held-out MSE (log scale)", log_scale=True,
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
    stopped = all(chain.stage_file(run, k, "final").is_file()
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


# --- The app: the page, its JSON, its pictures. ------------------------------------------------

PICTURE_NAME = re.compile(r"^[a-z_]{1,40}$")


def create_app(config=None):
    """The live page's Flask app; its LiveState is app.config["LIVE"].

    config: run_dir (None: follow the newest folder in `parents`), parents (default runs/ and
    progress/ beside this file), token, oracle_url, output_url (a run by hand's servers),
    heldout, refresh (seconds between the page's polls)."""
    config = {"run_dir": None, "parents": (HERE / "runs", snapshots.PROGRESS), "token": None,
              "oracle_url": None, "output_url": None, "heldout": 20_000, "refresh": REFRESH_S,
              "redraw": REDRAW_S,
              "max_body_bytes": 1024, **(config or {})}
    state = LiveState(config)
    # serving.make_app's parts, with a token check that also takes ?token= (require_token)
    app = Flask("live")
    app.config["LIVE"] = app.extensions[serving.STATE] = state
    serving.install_json_errors(app, state.counts, config["max_body_bytes"])
    require_token(app, config["token"])
    app.get(synthgrad.STATUS)(state.status)

    html = PAGE.read_text().replace("{{refresh_ms}}", str(round(config["refresh"] * 1000)))

    @app.get("/")
    def page():
        return Response(html, mimetype="text/html")

    @app.get("/api/live")
    def api_live():
        try:
            view = live_view(state)
        except OSError as e:             # the folder moved or vanished while being read
            log.warning("cannot read the run: %s", e)
            view = {"state": "stopped", "summary": f"The run folder could not be read ({e}); "
                    "trying again.", "notes": [], "pictures": [], "processes": [],
                    "run": None, "found": "", "time": clock(time.time()),
                    "refresh_ms": round(config["refresh"] * 1000)}
        response = app.json.response(view)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/picture/<name>.png")
    def picture(name):
        if not PICTURE_NAME.match(name):
            abort(404, "no such picture")
        data = state.picture(name, request.args.get("v", ""))
        if data is None:
            abort(404, f"no picture {name!r} yet: ask /api/live first")
        response = Response(data, mimetype="image/png")
        response.headers["Cache-Control"] = "max-age=3600"     # its address names its content
        return response

    return app


def require_token(app, token):
    """Like serving.require_token, but a browser may also give the token as ?token=...: a page
    opened from an address cannot send an Authorization header (the page then adds the token
    to each of its own requests)."""
    if not token:
        return
    expected = token.encode()

    @app.before_request
    def _check_token():
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        query = request.args.get("token", "").encode()
        if not (hmac.compare_digest(given, expected) or hmac.compare_digest(query, expected)):
            abort(401, "this page requires the shared token: open it as /?token=<token>")


PAGE = HERE / "live.html"          # the page itself: its style and script inline, nothing fetched


# --- Starting it from a launcher. ---------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"   # Debian's


class NoBrowser(Exception):
    """Headless Chromium cannot be had here; the message says why and what installs it."""


def headless_chromium(profile_dir, window=(1400, 1700), log_requests=False):
    """A selenium driver of headless Chromium with a fresh profile in profile_dir, started as
    this machine allows (no sandbox as root, nothing asked of Google's servers); with
    log_requests, Chromium's performance log holds every request the page makes. NoBrowser
    if selenium, Chromium or its driver is missing or will not start."""
    import shutil
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise NoBrowser(f"selenium is not installed ({e}); pip install -r requirements.txt") \
            from None
    binary = shutil.which("chromium") or CHROMIUM
    driver_path = shutil.which("chromedriver") or CHROMEDRIVER
    for path in (binary, driver_path):
        if not os.path.exists(path):
            raise NoBrowser(f"no {path}: apt-get install chromium chromium-driver (as root), "
                            "or make browser")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile_dir}"):
        options.add_argument(arg)
    if log_requests:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as e:
        raise NoBrowser(f"Chromium would not start: {str(e).splitlines()[0]}") from None


def stop_with_parent(every=1.0):
    """SIGTERM to this process once its parent has gone (a launcher killed with SIGKILL)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, daemon=True, name="stop-with-parent").start()


# --- The script. -------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="Serve a page on this machine that shows a run "
                                            "learning, redrawn every second or two.")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="the run to show: a demo.py or launch.py run folder, a chain.py run "
                        "folder (runs/chain-*) or a progress folder run by hand (default: the "
                        "newest folder in runs/ or progress/, looked for again at every poll, "
                        "so a page started first finds the run when it starts)")
    p.add_argument("--host", default=synthgrad.DEFAULT_HOST,
                   help="address to bind (default 127.0.0.1: only this machine can open it)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"port to listen on (default {DEFAULT_PORT}, beside the servers' 5000 "
                        "and 5001; 0 picks a free one)")
    serving.token_argument(p)
    p.add_argument("--oracle-url", default=None,
                   help="the oracle's address, for a progress folder run by hand (default: "
                        f"{synthgrad.DEFAULT_ORACLE_URL} for such a folder; in a run folder, "
                        "the address its log, RUN/oracle.log, says it listens on)")
    p.add_argument("--output-url", default=None,
                   help="the output trainer's address, likewise (default: "
                        f"{synthgrad.DEFAULT_OUTPUT_TRAINER_URL} for a progress folder; in a "
                        "run folder, from RUN/train_output.log)")
    p.add_argument("--refresh", type=float, default=REFRESH_S,
                   help=f"seconds between the page's polls (default {REFRESH_S:g}: new snapshots "
                        "come every few seconds, metrics lines every 1-2)")
    p.add_argument("--redraw", type=float, default=REDRAW_S,
                   help=f"redraw a picture whose content changed at most every this many "
                        f"seconds (default {REDRAW_S:g}: a picture costs ~0.3 s of a core, and "
                        "at 1.5 s the page took a third of a core from training; the numbers "
                        "in the table change at every poll)")
    p.add_argument("--heldout", type=int, default=20_000,
                   help="fresh points held-out MSE is measured on (default 20,000, as plot.py's, "
                        "so the numbers compare; measured once per snapshot tick)")
    p.add_argument("--nice", type=int, default=serving.DEFAULT_TRAINING_NICE,
                   help=f"run this many steps nicer than normal (default "
                        f"{serving.DEFAULT_TRAINING_NICE}, as the servers' training threads: "
                        "the page takes CPU only where training leaves it; 0: normal)")
    p.add_argument("--stop-with-parent", action="store_true",
                   help="stop when the process that started this one ends (what "
                        "serving.start_live_page asks for, so a killed launcher leaves no page)")
    args = p.parse_args(argv)
    if not 0 <= args.port <= 65535:
        p.error("--port must be between 0 and 65535")
    if not (math.isfinite(args.refresh) and 0.2 <= args.refresh <= 60):
        p.error("--refresh must be between 0.2 and 60 seconds")
    if not (math.isfinite(args.redraw) and 0 <= args.redraw <= 600):
        p.error("--redraw must be between 0 and 600 seconds")
    if args.heldout < 1:
        p.error("--heldout must be at least 1")
    if not 0 <= args.nice <= 19:
        p.error("--nice must be between 0 and 19")
    if args.run_dir is not None and args.run_dir.exists() and not args.run_dir.is_dir():
        p.error(f"--run-dir {args.run_dir} is a file; give the run's folder")
    for name in ("oracle_url", "output_url"):
        url = getattr(args, name)
        if url is not None and not re.match(r"^http://[^/\s]+:\d+/?$", url):
            p.error(f"--{name.replace('_', '-')} must look like http://HOST:PORT, got {url!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    serving.setup_logging("live")
    log.info("settings: %s", serving.printable(args))
    server, hand_over = serving.listen(args.host, args.port, "live.py", 1024)
    if args.nice > 0:
        os.nice(args.nice)
    kind = None if args.run_dir is None else folder_kind(args.run_dir)
    app = create_app({
        "run_dir": None if args.run_dir is None else args.run_dir.resolve(),
        "token": args.token, "heldout": args.heldout, "refresh": args.refresh,
        "redraw": args.redraw,
        "oracle_url": args.oracle_url or (synthgrad.DEFAULT_ORACLE_URL
                                          if kind == "progress" else None),
        "output_url": args.output_url or (synthgrad.DEFAULT_OUTPUT_TRAINER_URL
                                          if kind == "progress" else None)})
    hand_over(app)
    if args.stop_with_parent:
        stop_with_parent()
    if args.token:
        log.info("open it with ?token=<the token> at the end of the address")
    serving.serve(server, "live page", on_stop=app.config["LIVE"].close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
