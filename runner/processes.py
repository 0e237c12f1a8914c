"""A run as a list of processes (Proc): one watch loop, one status line, restarts.

run() starts the list in order, watches the last (it ends the run at its --duration) and stops
everything. Where each process runs is its Spawner's business: Supervisor here (each a local
subprocess, restarted after a death), raychain.RayChain (each a Ray actor).
"""

import dataclasses
import functools
import math
import os
import shutil
import signal
import time
from pathlib import Path

import synthgrad
from generate import fmt
from parts import children, snapshots, stepped, threaded

GRACE_S = 15.0                     # seconds past its --duration before the last is stopped
READY_WAIT = 600.0                 # seconds a server may take to answer: a guard (docs/tests.md)
LOOK_TIMEOUT = 3.0                 # seconds a status look waits: a stalled peer holds no one
USAGE_ERROR = 2                    # argparse's exit code: the same command line fails again


@dataclasses.dataclass(frozen=True)
class RestartPolicy:
    """What a death leads to, as with systemd's Restart=on-failure: start it again from its
    checkpoint after `backoff` s (doubled for each restart still in the window), at most
    `max_restarts` times in `window` s of its life (the back-off waits not counted: they would
    age the deaths out); one more, any with restart False, or an exit with USAGE_ERROR ends
    the run."""

    restart: bool = True
    max_restarts: int = 3
    window: float = 120.0
    backoff: float = 1.0


class Url(str):
    """In a Proc's options: the address of the process of this name, known once it runs."""


@dataclasses.dataclass(frozen=True)
class Proc:
    """One process of a run. options: its command line after the script's name, Url(name)
    standing for another's address; key: its files' and results' name ("stage2")."""

    name: str                          # in every line said about it: "stage 2", "oracle"
    script: str                        # "oracle.py"
    options: tuple
    key: str
    log: Path                          # its output
    checkpoint: Path | None = None     # a restart resumes from it


def checkpoint_path(run, key):
    """Where a process of the run checkpoints ("stage2", "oracle"): restarted, it resumes."""
    return Path(run) / "checkpoints" / f"{key}.npz"


def command_line(proc, urls):
    """proc's command line (children.script_argv), each Url the address in urls {name: URL}."""
    return children.script_argv(proc.script, *(urls[o] if isinstance(o, Url) else o
                                               for o in proc.options))


def as_options(options):
    """{name: value} as options: {"batch_size": 256, "zero_init": False} -> ["--batch-size",
    "256", "--no-zero-init"]. True is a bare flag, False its --no- form; None leaves it out."""
    out = []
    for name, value in options.items():
        flag = name.replace("_", "-")
        if value is True or value is False:
            out.append(f"--{'' if value else 'no-'}{flag}")
        elif value is not None:
            out += [f"--{flag}", str(value)]
    return out


def restart_options(argv, port=None, checkpoint=None, deadline=None):
    """argv to start a process again: on `port` (where its peers look), --resume if its
    checkpoint exists, with a deadline (time.time()) only the seconds left of its --duration."""
    argv = list(argv)
    if port is not None and "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    if deadline is not None and "--duration" in argv:
        argv[argv.index("--duration") + 1] = str(round(max(1.0, deadline - time.time()), 1))
    if checkpoint is not None and Path(checkpoint).exists() and "--resume" not in argv:
        argv.append("--resume")
    return argv


def stop_on_signals():
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt (even when a shell started us in the
    background with SIGINT ignored), so that a run stops every process it started."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)


# --- Words for a death. -----------------------------------------------------------------------

def exit_description(code):
    """A Popen returncode in words: "exit code 1", "killed by SIGKILL"."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def log_tail(path, lines=2, width=120):
    """The last `lines` non-empty lines of a log, each cut to `width`, joined by " / "."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        return f"(no log: {e.strerror})"
    return text_tail(text, lines, width)


def text_tail(text, lines=2, width=120):
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " / ".join(line if len(line) <= width else line[:width - 3] + "..."
                      for line in tail) or "(empty)"


def cpu_seconds(pid):
    """User + system CPU seconds a running process has used (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- The local spawner: subprocesses, supervised. ---------------------------------------------

class Child:
    """One process under a Supervisor, restarted on the port it got (its peers look there) and
    with a deadline (it ends the run) with the time left."""

    def __init__(self, proc, argv, env, deadline=None):
        self.proc, self.argv, self.env, self.deadline = proc, list(argv), env, deadline
        self.name = proc.name
        self.port = None
        self.restarts = []                    # each restart in the window, on a clock that
        self.waited = 0.0                     # stops while it waits to restart: monotonic - waited
        self.restarted = 0                    # restarts in all
        self.restart_at = None                # when the dead process is due to start again
        self.stopping = False                 # stopped on purpose: its end is no death
        self.process = children.Process(self.name, self.argv, proc.log, env)

    @property
    def popen(self):
        return self.process.popen

    def finished(self):
        """True once the process that ends the run ended well."""
        return self.deadline is not None and self.popen.poll() == 0

    def restart(self):
        argv = restart_options(self.argv, self.port, self.proc.checkpoint, self.deadline)
        self.process = children.Process(self.name, argv, self.proc.log, self.env,
                                        append=True)
        self.restart_at = None
        self.restarted += 1
        return argv


class Spawner:
    """Where a run's processes run; its end stops them all. Subclasses give start(proc, argv,
    deadline) (a server's URL, else None), look() (why the run must end, or None), finished,
    stop, cpu_seconds and restarts. `who` begins every line it says; on_start(name, pid) is
    told of every start and restart; `children`: what it started, by name, in start order."""

    def __init__(self, who, token=None, on_start=None):
        self.who, self.token, self.urls, self.children = who, token, {}, {}
        self.on_start = on_start or (lambda name, pid: None)
        self.events = []                      # the run's story: deaths, restarts, machines lost

    def event(self, what, name, **details):
        """Note an event of process `name` for the run's story (chain.json's "events")."""
        self.events.append({"time": round(time.time(), 3), "event": what, "process": name,
                            "machine": self.machine(name), **details})

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop_all()

    def say(self, line):
        print(f"{self.who}: {line}", flush=True)

    def machine(self, name):
        return None                           # all on this one

    def stop_all(self):
        """Stop every process, the last started first; a second Ctrl-C cannot leave some running."""
        with threaded.signals_ignored():
            for name in reversed(list(self.children)):
                self.stop(name)


def trained_by(proc, metrics=None):
    """The examples proc had trained (stage 1: streamed) by its last metrics line (metrics:
    its file, by default its --metrics), or None."""
    options = [] if proc is None else [str(o) for o in proc.options]
    if metrics is None and "--metrics" in options:
        metrics = options[options.index("--metrics") + 1]
    last = (snapshots.read_metrics(Path(metrics)) or [{}])[-1] if metrics else {}
    return last.get("examples_trained", last.get("examples"))


def restarted_how(resumed):
    return "from its checkpoint" if resumed else "from scratch (no checkpoint yet)"


class Supervisor(Spawner):
    """The local spawner: each process a subprocess, watched. look() says a death in one
    line (which process, its exit code or signal, its log's last lines) and restarts it, or
    ends the run, as `policy` says."""

    def __init__(self, policy=None, who="launch", env=None, on_start=None, token=None):
        super().__init__(who, token, on_start)
        self.policy, self.env = policy or RestartPolicy(), env

    def spawn(self, proc, argv, deadline=None):
        child = self.children[proc.name] = Child(proc, argv, self.env, deadline)
        self.on_start(proc.name, child.popen.pid)
        return child

    def start(self, proc, argv, deadline=None):
        """Start proc; a server's URL once it answers (None for one that does not serve)."""
        child = self.spawn(proc, argv, deadline)
        if "--port" not in argv:
            return None
        url = child.process.wait_url(READY_WAIT)
        child.port = int(url.rsplit(":", 1)[1])           # a restart takes it again
        give_up = time.monotonic() + READY_WAIT
        ready = client(url, self.token).wait_until_ready(
            max_backoff=0.1, log_every=math.inf,      # a short back-off, the terminal kept quiet
            alive=lambda: child.popen.poll() is None and time.monotonic() < give_up)
        if not ready:
            raise SystemExit(f"{proc.name} did not answer; see {proc.log}")
        return url

    def look(self):
        """Restart what is due; say each new death and decide. Why the run must end, or None."""
        now = time.monotonic()
        for child in self.children.values():
            if child.restart_at is not None:
                if now >= child.restart_at:
                    resumed = "--resume" in child.restart()
                    self.on_start(child.name, child.popen.pid)
                    where = f", on port {child.port}" if child.port else ""
                    self.say(f"{child.name} restarted {restarted_how(resumed)}{where}")
                    self.event("restarted", child.name,
                               checkpoint=str(child.proc.checkpoint) if resumed else None)
                continue
            code = child.popen.poll()
            if code is None or child.stopping or child.finished():
                continue
            reason = self.died(child, code, now)
            if reason is not None:
                return reason
        return None

    def died(self, child, code, now):
        """Say the death of `child` in one line and schedule its restart; the reason to end
        the run instead, if the policy says so."""
        p, what = self.policy, exit_description(code)
        line = (f"{child.name} died ({what}) after {now - child.process.started:.0f} s; its "
                f"log {child.proc.log.name} ends: {log_tail(child.proc.log)}")
        clock = now - child.waited
        child.restarts = [t for t in child.restarts if clock - t < p.window]
        self.event("died", child.name, how=what, trained=trained_by(child.proc))
        if not p.restart or code == USAGE_ERROR:
            child.stopping = True
            why = "its options were refused; they would be again" if p.restart else "--no-restart"
            self.say(f"{line}. Not restarting it ({why}): ending the run")
            return f"{child.name} died ({what})"
        if len(child.restarts) >= p.max_restarts:
            child.stopping = True
            self.say(f"{line}. It was restarted {len(child.restarts)} times in "
                     f"{p.window:.0f} s: giving up, ending the run")
            return (f"{child.name} died {len(child.restarts) + 1} times in "
                    f"{p.window:.0f} s ({what})")
        delay = p.backoff * 2 ** len(child.restarts)
        child.restarts.append(clock)
        child.waited += delay
        child.restart_at = now + delay
        self.say(f"{line}. Restarting it in {delay:g} s (restart {len(child.restarts)} of at "
                 f"most {p.max_restarts} in {p.window:.0f} s)")
        return None

    def finished(self, name):
        return self.children[name].finished()

    def stop(self, name, timeout=20.0):
        """SIGTERM (it saves what it holds), SIGKILL after timeout; its exit code."""
        child = self.children[name]
        child.stopping = True
        return child.process.stop(timeout)

    def cpu_seconds(self, name):
        return cpu_seconds(self.children[name].popen.pid)

    def restarts(self):
        """{name: restarts so far} of every process."""
        return {name: child.restarted for name, child in self.children.items()}


# --- Watching a run. --------------------------------------------------------------------------

def client(url, token=None, timeout=LOOK_TIMEOUT):
    """A look at a server (GET /status, GET /weights), by default a short one."""
    return synthgrad.OracleClient(url, timeout=timeout, token=token)


def last_status(peer):
    """A server's GET /status, or None if it is down."""
    try:
        return peer.status()
    except synthgrad.PeerError:
        return None


def status_line(elapsed, first, servers):
    """One line: first = (label, its latest metrics line): examples streamed and how fast;
    servers = [(label, script, GET /status or None if down)], each by what it does."""
    label, latest = first
    parts = [f"[{elapsed:4.0f} s] {label}: {latest.get('examples', 0):>7} examples "
             f"({fmt(latest.get('examples_per_s'), '.0f')}/s)"]
    if "steps" in latest:                             # a chain counting steps (--delay)
        delay = {k.removeprefix("delay_"): v for k, v in latest.items() if "delay_" in k}
        parts[0] += f", step {latest['steps']:,}, delay {stepped.delay_text(delay)}"
    for label, script, s in servers:
        q = (s or {}).get("synthetic_gradient_quality") or {}
        cosine = f"cosine(synthetic, true) {fmt(q.get('cosine_similarity'), '.2f')}"
        if s is None:
            parts.append(f"{label}: down")
        elif script == "oracle.py":
            parts.append(f"{label}: {s.get('training_passes', 0):>3} passes, "
                         f"loss {fmt(s.get('last_train_mse'))}, {cosine}")
        elif "steps_trained" in s:
            delay = "" if s["delay_steps"] is None else \
                f", delay {stepped.delay_text(s['delay_steps'])}"
            parts.append(f"{label}: step {s['steps_trained']:,}{delay}, {cosine}")
        else:
            part = (f"{label}: {s.get('examples_held', 0):>6} held, "
                    f"{s.get('training_passes', 0):>3} passes")
            if "last_train_mse" in s:
                part += f", train MSE {fmt(s['last_train_mse'])}"
            if "staleness_s" in s:
                part += f", staleness {fmt(s['staleness_s'], '.1f')} s"
            parts.append(part + (f", {cosine}" if q else ""))
    return " | ".join(parts)


def watch(spawner, first, end_at, status, every, tick=None):
    """The one watch loop, until process `first` has finished: spawner.look() several times a
    second, tick() if given, status(elapsed) printed every `every` s; first is stopped GRACE_S
    after end_at (time.monotonic). Returns (first's CPU seconds, why cut short or None)."""
    start, printed, cpu = time.monotonic(), -math.inf, None
    while not spawner.finished(first):
        cut_short = spawner.look()
        if cut_short is not None:                       # first saves what it has and stops
            spawner.stop(first, 30)
            return cpu, cut_short
        if time.monotonic() > end_at + GRACE_S:
            spawner.say(f"{first} is still running {GRACE_S:.0f} s after its --duration; "
                        "stopping it")
            spawner.stop(first, 30)
            break
        if tick is not None:
            tick()
        if time.monotonic() - printed >= every:
            printed = time.monotonic()
            print(status(printed - start), flush=True)
        cpu = spawner.cpu_seconds(first) or cpu
        time.sleep(0.05)
    return cpu, None


def run(procs, spawner, duration, every, metrics, banner=None, tick=None):
    """Start procs in order (each server answering before the next; the last streams for
    `duration` s, its metrics in `metrics`), watch until it ends, stop all, remove their
    checkpoints. banner(urls) is said before the last starts; tick(urls) runs in the watch loop.
    Returns {key: a server's last GET /status or None, "cpu_s", "restarts", "cut_short",
    "events"}."""
    servers, last = procs[:-1], procs[-1]
    urls = spawner.urls                    # the spawner's: a process it moves, it changes
    peer = functools.cache(lambda url: client(url, spawner.token))     # a client per address
    try:
        for proc in servers:
            urls[proc.name] = spawner.start(proc, command_line(proc, urls))
        if banner is not None:
            spawner.say(banner(urls))
        end_at = time.monotonic() + duration
        spawner.start(last, command_line(last, urls), deadline=time.time() + duration)

        def label(proc):
            m = spawner.machine(proc.name)
            return proc.name.removesuffix(" trainer").removesuffix(" oracle") + \
                (f" @{m}" if m else "")

        # the trainers bottom up (started top down), then the oracles
        shown = [p for p in servers if p.script != "oracle.py"][::-1] + \
            [p for p in servers if p.script == "oracle.py"]

        def status(elapsed):
            latest = (snapshots.read_metrics(metrics) or [{}])[-1]
            return status_line(elapsed, (label(last), latest), [
                (label(p), p.script, last_status(peer(urls[p.name]))) for p in shown])
        cpu, cut_short = watch(spawner, last.name, end_at, status, every,
                               tick and (lambda: tick(urls)))
        final = {p.key: last_status(client(urls[p.name], spawner.token, timeout=10.0))
                 for p in servers}                        # their last word, unhurried
        return final | {"cpu_s": {p.key: spawner.cpu_seconds(p.name) for p in servers} |
                        {last.key: cpu}, "restarts": spawner.restarts(),
                        "cut_short": cut_short, "events": spawner.events}
    finally:
        with threaded.signals_ignored():          # a second Ctrl-C would leave processes running
            spawner.stop_all()
            # only restarts need them, and at wide widths they are hundreds of MB a process
            for folder in {Path(p.checkpoint).parent for p in procs if p.checkpoint}:
                shutil.rmtree(folder, ignore_errors=True)
