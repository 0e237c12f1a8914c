"""What watching costs: the input trainer's speed with the live page open and closed in turns,
WINDOW seconds each, in one run of the demo's three processes; and the CPU the page's server
and headless Chromium take. Run through lab/bench.py (it needs a browser):

    python -m lab.bench --live-cost --seconds 100
"""

import threading
import time
from pathlib import Path

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    import report                        # noqa: F401  lab/report.py says how to run it, and exits

import numpy as np

from lab import report
from parts import children, snapshots
from runner import launch, processes

WINDOW = 10.0                 # seconds the page is open, then closed, then open...


def process_cpu(pids):
    """CPU seconds (user + system) the processes pids have used so far (Linux /proc)."""
    return sum(processes.cpu_seconds(pid) or 0.0 for pid in pids)


def browser_pids(driver):
    """Chromium's processes under a selenium driver: chromedriver's descendants (Linux /proc)."""
    children_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):     # a process that just ended
            continue
        children_of.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = set(), [driver.service.process.pid]
    while todo:
        for child in children_of.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def watch_in_turns(run, config, env, driver, url, page_pid):
    """Trains (launch.run_decoupled) while the browser shows the live page, then about:blank,
    WINDOW seconds each; [(start, end, open?, page's CPU s, browser's CPU s)] per window."""
    trainer = threading.Thread(target=launch.run_decoupled, args=(config, env), daemon=True)
    trainer.start()
    metrics = run / "metrics" / "train_input.jsonl"
    while not (metrics.exists() and snapshots.read_metrics(metrics)):
        time.sleep(0.2)                           # the input trainer has begun streaming
    windows, is_open = [], False
    while trainer.is_alive():
        driver.get(url if is_open else "about:blank")
        t0, browser = time.time(), browser_pids(driver)
        cpu0 = process_cpu([page_pid]), process_cpu(browser)
        trainer.join(WINDOW)
        windows.append((t0, time.time(), is_open, process_cpu([page_pid]) - cpu0[0],
                        process_cpu(browser) - cpu0[1]))
        is_open = not is_open
    return windows


def main_live_cost(args, out_dir, machine):
    """lab/bench.py --live-cost: (rows, the Markdown table) of one run of args.seconds; the
    input trainer's examples/s from its metrics line every second."""
    import live                       # a top-floor script: imported only when it is needed
    machine += f", {args.seconds:g} s"
    env, run = launch.child_env(), out_dir / "run"
    launch.generate_data(run / "data", launch.DecoupledConfig.count, 0, env, plot=False)
    config = launch.DecoupledConfig(run_dir=run, duration=args.seconds, status_every=10)
    url, stop_page = children.start_live_page(run)
    try:
        driver = live.headless_chromium(out_dir / "profile")
    except live.NoBrowser as e:
        stop_page()
        raise SystemExit(f"lab/bench.py: --live-cost needs a browser: {e}") from None
    try:
        windows = watch_in_turns(run, config, env, driver, url, stop_page.process.popen.pid)
    finally:
        driver.quit()
        stop_page()
    lines = snapshots.read_metrics(run / "metrics" / "train_input.jsonl")
    rows = []
    for start, end, is_open, page_cpu, browser_cpu in windows[:-1]:   # the last ends the run
        rates = [r["examples_per_s"] for r in lines if start + 2 <= r["time"] <= end]
        if rates:
            rows.append({"open": is_open, "examples_per_s": float(np.mean(rates)),
                         "page_cpu_s_per_s": page_cpu / (end - start),
                         "browser_cpu_s_per_s": browser_cpu / (end - start)})
    opened = [r["examples_per_s"] for r in rows if r["open"]]
    closed = [r["examples_per_s"] for r in rows if not r["open"]]
    return rows, report.table(
        ["window", "page", "input trainer: examples/s",
         "CPU s per s: the page's server, the browser"],
        [[k + 1, "open" if r["open"] else "closed", f"{r['examples_per_s']:,.0f}",
          f"{r['page_cpu_s_per_s']:.2f}, {r['browser_cpu_s_per_s']:.2f}"]
         for k, r in enumerate(rows)],
        f"The input trainer's examples/s with the live page open in headless Chromium and "
        f"closed, {WINDOW:g} s each in turns, one run ({machine}):") + "\n\n" + (
        f"Open / closed: {np.mean(opened) / np.mean(closed):.3f} of the examples/s (open "
        f"{min(opened):,.0f}-{max(opened):,.0f}, closed {min(closed):,.0f}-{max(closed):,.0f})"
        if opened and closed else
        "Too short: no open and closed window both measured; give more --seconds.")
