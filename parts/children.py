"""Child processes that serve: one whose output goes to a log and which announces its URL
(the launchers'), and the live page started beside a run.
"""

import argparse
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from parts import options
from synthgrad import DEFAULT_HOST

log = logging.getLogger("synthgrad")
TOP = Path(__file__).resolve().parents[1]        # the repository's top level
LISTENING = re.compile(r"listening on (http://\S+)")    # what http.serve() logs first
PARENT = "SYNTHGRAD_PARENT"      # the PID of the launcher that started a process (Process)


def script_argv(script, *options):
    """The command line that runs a script ("oracle.py") or a module ("lab.race", cwd=TOP) of
    this project with this Python."""
    where = [str(TOP / script)] if script.endswith(".py") else ["-m", script]
    return [sys.executable, *where, *map(str, options)]


class Process:
    """A child process whose output is copied to a log file; knows the URL it announced.
    append: add to the log (a restarted process's log goes on from its predecessor's)."""

    def __init__(self, name, argv, log_path, env, append=False):
        self.name, self.log_path = name, log_path
        self.url = None
        self.started = time.monotonic()
        self._mode = "a" if append else "w"
        self._announced = threading.Event()
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env={**env, PARENT: str(os.getpid())}, cwd=TOP)
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self):
        with open(self.log_path, self._mode) as log:
            for line in self.popen.stdout:
                log.write(line)
                log.flush()
                m = LISTENING.search(line)
                if m and self.url is None:
                    self.url = m.group(1)
                    self._announced.set()

    def wait_url(self, timeout):
        """The URL the process printed when it started listening; SystemExit if it did not."""
        deadline = time.monotonic() + timeout
        while not self._announced.wait(0.1):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start; see {self.log_path}")
        return self.url

    def stop(self, timeout=20.0):
        """SIGTERM, then wait; SIGKILL only if it does not stop within timeout."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %s s; killing it", self.name, timeout)
                self.popen.kill()
                self.popen.wait()
        self._thread.join(5)
        return self.popen.returncode


def stop_with_parent(fallback=None, every=1.0):
    """SIGTERM to this process once the launcher that started it ($SYNTHGRAD_PARENT, else the
    PID `fallback`; neither: nothing) is gone, killed with SIGKILL say: no child of a run goes on
    training unseen. The variable is not handed on to this process's own children."""
    given = os.environ.pop(PARENT, "")
    parent = int(given) if given.isdecimal() else fallback
    if parent is None:
        return

    def watch():
        while os.getppid() == parent:
            time.sleep(every)
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, daemon=True, name="stop-with-parent").start()


LIVE_PORT = 5050              # the live page's port by hand, beside the servers' 5000 and 5001


def live_arguments(p, default_port=LIVE_PORT, who="the launchers start one page for a whole "
                   "run and turn it off in the processes they start"):
    """--live/--no-live and --live-port: start the live page (live.py) for this run."""
    p.add_argument("--live", action=argparse.BooleanOptionalAction, default=True,
                   help="start the live page for this run (live.py on --live-port) and print "
                        f"its address (default on; {who})")
    p.add_argument("--live-port", type=options.port, default=default_port,
                   help="the live page's port (default %(default)s; 0: any free port)")


def start_live_page(run_dir, host=DEFAULT_HOST, port=0, token=None, log_path=None, options=(),
                    timeout=60.0):
    """Start live.py for run_dir as a child stopped with its parent; returns (url with ?token=,
    stop). options: more of live.py's; log_path: its output (default nowhere). SystemExit if it
    does not start within timeout seconds (e.g. its port is taken)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SYNTHGRAD_TOKEN", None)
    if token:
        env["SYNTHGRAD_TOKEN"] = token            # not on the command line, where ps shows it
    argv = script_argv("live.py", "--run-dir", run_dir, "--host", host, "--port", port,
                       "--stop-with-parent", *options)
    proc = Process("live page", argv, log_path or os.devnull, env)
    try:
        url = proc.wait_url(timeout).rstrip("/") + "/"
    except SystemExit:
        proc.stop(5)
        raise SystemExit(f"the live page did not start; run `{' '.join(argv)}` to see "
                         "why") from None
    if token:
        url += "?token=" + urllib.parse.quote(token)

    def stop(timeout=10.0):
        """SIGTERM, SIGKILL after timeout seconds; its exit code (-9 if it had to be killed)."""
        return proc.stop(timeout)
    stop.process = proc                           # its Process (lab/bench.py reads its CPU time)
    return url, stop
