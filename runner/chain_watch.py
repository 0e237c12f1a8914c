"""Watching a chain while it runs, wherever its processes are (chain.py's own processes, or
Ray actors: runner/raychain.py): status lines, each boundary model's weights at every snapshot
tick, the supervisor's look, and stage 1's end on its clock."""

import os
import time
from pathlib import Path

import numpy as np

import synthgrad
from parts import snapshots
from runner import launch

STATUS_WAIT = 120.0                        # seconds a server may take to start listening
GRACE_S = launch.GRACE_S                   # s past --duration before chain.py stops stage 1
LOOK_TIMEOUT = 3.0                         # seconds chain.py waits for a server's answer


def cpu_seconds(pid):
    """User + system CPU seconds a running process has used (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clients_of(stages, models, token=None):
    """chain.py's own look at the servers ({k: stage k's URL}, [boundary b's model's URL]): a
    short timeout, so a stalled peer cannot hold the supervisor's loop for long."""
    return ({k: synthgrad.OutputTrainerClient(url, timeout=LOOK_TIMEOUT, token=token)
             for k, url in stages.items()},
            [synthgrad.OracleClient(url, timeout=LOOK_TIMEOUT, token=token) for url in models])


last_status = launch.last_status           # a server's GET /status, or None if it is down


def last_statuses(clients, boundary_clients):
    """{"stage<k>": GET /status or None, "boundary<b>": ...}: the servers' last word."""
    return ({f"stage{k}": last_status(c) for k, c in clients.items()} |
            {f"boundary{b}": last_status(c) for b, c in enumerate(boundary_clients, start=1)})


def watch(config, look, first, cpu, clients, boundary_clients, layout, end_at, where=None):
    """Until stage 1 (first: finished() and stop(timeout)) ends: a status line every
    status_every seconds, each boundary model's weights saved at every snapshot tick (0.3 s
    after it, when the stages' snapshots are written), so the synthetic gradients can be
    measured against the true ones later, and look(), the supervisor's look at every process
    (why the run must end, or None). Stage 1 ends on its own clock at end_at
    (time.monotonic); if it is still running GRACE_S seconds later chain.py stops it.
    where ({k: machine}) names each stage's machine in the status lines. Returns
    ({"stage1": cpu() at the last look}, why the run was cut short or None)."""
    start, last_status_at, seconds = time.monotonic(), -np.inf, None
    interval = config.snapshot_interval
    next_tick = (int(time.time() // interval) + 1) * interval
    metrics = config.run_dir / "metrics" / "stage1.jsonl"
    while not first.finished():
        cut_short = look()
        if cut_short is not None:                       # stage 1 saves what it has and stops
            first.stop(30)
            return {"stage1": seconds}, cut_short
        if time.monotonic() > end_at + GRACE_S:
            print(f"chain: stage 1 is still running {GRACE_S:.0f} s after its --duration; "
                  f"stopping it", flush=True)
            first.stop(30)
            break
        now = time.time()
        if now >= next_tick + 0.3:
            save_boundary_weights(config.run_dir, boundary_clients, layout, next_tick)
            next_tick = (int(now // interval) + 1) * interval
        if time.monotonic() - last_status_at >= config.status_every:
            last_status_at = time.monotonic()
            print(chain_status_line(last_status_at - start, metrics, clients, boundary_clients,
                                    where), flush=True)
        seconds = cpu() or seconds
        time.sleep(0.05)
    return {"stage1": seconds}, None


def save_boundary_weights(run, boundary_clients, layout, tick):
    for b, client in enumerate(boundary_clients, start=1):
        try:
            weights, conditioned, _ = client.weights(layout[b - 1][-1])
        except synthgrad.PeerError:
            continue
        snapshots.write_npz(run / "progress" / f"boundary{b}" / f"model_{tick}.npz",
                            {**{f"w{k}": w for k, w in enumerate(weights)},
                             "conditioned": np.array(conditioned), "time": np.array(tick)})


def chain_status_line(elapsed, metrics_path, clients, boundary_clients, where=None):
    where = where or {}

    def at(k):
        return f" @{where[k]}" if k in where else ""
    latest = (snapshots.read_metrics(metrics_path) or [{}])[-1]
    parts = [f"[{elapsed:4.0f} s] stage 1{at(1)}: {latest.get('examples', 0):>8} examples "
             f"({launch.fmt(latest.get('examples_per_s'), '.0f')}/s)"]
    for k, client in sorted(clients.items()):
        try:
            s = client.status()
            parts.append(f"stage {k}{at(k)}: {s.get('training_passes', 0):>3} passes, "
                         f"staleness {launch.fmt(s.get('staleness_s'), '.1f')} s")
        except synthgrad.PeerError:
            parts.append(f"stage {k}{at(k)}: down")
    for b, client in enumerate(boundary_clients, start=1):
        try:
            q = client.status().get("synthetic_gradient_quality", {})
            parts.append(f"cos{b} {launch.fmt(q.get('cosine_similarity'), '.2f')}")
        except synthgrad.PeerError:
            parts.append(f"cos{b} down")
    return " | ".join(parts)
