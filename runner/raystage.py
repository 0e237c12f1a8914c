"""What runs on each machine of a chain on Ray (runner/raychain.py places it): a Stage actor
runs one process's script, its main in a thread of the actor's process, stopped by an event
where a signal would stop the script, and hands the driver what the script writes.
"""

import importlib
import os
import resource
import shutil
import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from runner import processes

BIND_TRIES = 20                        # a restarted server retries its port every 0.5 s
LAST_WORDS_S = 1.0                     # a failed script's process lives on this long, its
                                       # state readable (its log may be on a machine gone)


def own_files(key):
    """What a process writes that the driver collects (relative to its node root): its
    checkpoint too, to start it on another machine if its own leaves."""
    return [f"{key}.log", f"metrics/{key}.jsonl", f"progress/{key}", f"checkpoints/{key}.npz"]


class Stage:
    """One process inside a Ray actor: argv (the script's name, then its options) run by its
    main in a thread, writing under root, once the files `needs` names are there. __init__
    never raises: Ray re-runs it to restart the actor, and one that raises ends it."""

    def __init__(self, key, argv, root, needs=(), token=None, deadline=None):
        self.key, self.root, self.state = key, Path(root), "starting"
        self.stop_event, self.written, self.resumed = threading.Event(), threading.Event(), False
        self.restarted, self.node_ip = False, "?"
        try:
            import ray
            self.restarted = ray.get_runtime_context().was_current_actor_reconstructed
            self.node_ip = ray.util.get_node_ip_address()
        except Exception:                           # outside Ray: "?", never restarted
            pass
        self.starts = self._count_start()            # 1 + how often Ray restarted it
        self.thread = threading.Thread(target=self._run, args=(argv, needs, token, deadline),
                                       daemon=True, name=key)
        self.thread.start()

    def _count_start(self):
        """This start's number, counted on disk (a restart faster than the driver's look too)."""
        path = self.root / f".{self.key}.starts"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            starts = (int(path.read_text()) if path.exists() else 0) + 1
            path.write_text(str(starts))
            return starts
        except (OSError, ValueError):
            return 1 + self.restarted

    def _run(self, argv, needs, token, deadline):
        try:
            while needs and not (self.written.is_set() or self.restarted and all(
                    (self.root / rel).exists() for rel in needs)):    # not an old copy's
                if self.stop_event.wait(0.05):
                    return
            (self.root / "metrics").mkdir(parents=True, exist_ok=True)
            sys.stdout = sys.stderr = open(self.root / f"{self.key}.log", "a", buffering=1)
            if token:                                # the scripts' --token default
                os.environ["SYNTHGRAD_TOKEN"] = token
            script, options = argv[0], list(argv[1:])
            checkpoint = options[options.index("--checkpoint") + 1]
            options = processes.restart_options(options, None, checkpoint,
                                             deadline if self.restarted else None)
            self.resumed = "--resume" in options
            print(f"raychain: {self.key} {'restarted by Ray' if self.restarted else 'started'}"
                  f" in process {os.getpid()} on {self.node_ip}"
                  f"{' from its checkpoint' if self.resumed else ''}", flush=True)
            main = importlib.import_module(script.removesuffix(".py")).main
            sys.argv = [script, *options]            # its messages name it, not Ray's worker
            self.state = "running"
            for attempt in range(BIND_TRIES):
                try:
                    code = main(options, stop=self.stop_event)
                    break
                except SystemExit as e:              # its port not free yet: try again
                    if "cannot listen" not in str(e) or attempt == BIND_TRIES - 1 or \
                            self.stop_event.wait(0.5):
                        raise
            self.state = "finished" if not code else f"failed: exit code {code}"
        except SystemExit as e:                      # argparse's 2, or a line saying why
            self.state = f"failed: {'exit code ' if isinstance(e.code, int) else ''}{e}"
        except BaseException as e:
            traceback.print_exc()
            self.state = f"failed: {type(e).__name__}: {e}"
        if self.state.startswith("failed") and not self.stop_event.is_set():
            print(f"raychain: {self.key} {self.state}; ending its process", flush=True)
            self.state += f"; its log ends: {processes.log_tail(self.root / f'{self.key}.log')}"
            time.sleep(LAST_WORDS_S)                 # the driver's look reads it first
            os._exit(1)                              # Ray restarts it (max_restarts)

    def write_files(self, files):
        """Write {relative path: bytes} under the root (atomically: the script waits for them)."""
        for rel, data in files.items():
            write_atomically(self.root / rel, data)
        self.written.set()

    def info(self):
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return dict(pid=os.getpid(), state=self.state, resumed=self.resumed,
                    starts=self.starts, cpu_s=usage.ru_utime + usage.ru_stime)

    def collect(self, have):
        """{relative path: (signature, bytes)} of this process's files whose signature (size,
        time written) differs from `have`'s, what the driver holds."""
        out = {}
        for rel in own_files(self.key):
            path = self.root / rel
            paths = sorted(path.rglob("*")) if path.is_dir() else [path]
            for p in paths:
                name = str(p.relative_to(self.root))
                if p.name.startswith(".") or not p.is_file():
                    continue                         # a snapshot being written
                try:
                    stat = p.stat()
                    if (stat.st_size, stat.st_mtime_ns) != have.get(name):
                        out[name] = ((stat.st_size, stat.st_mtime_ns), p.read_bytes())
                except OSError:
                    continue
        return out

    def stop(self, timeout=30.0):
        """Stop the script as SIGTERM would (it saves what it holds); its state after."""
        self.stop_event.set()
        self.thread.join(timeout)
        return self.state

    def remove_files(self):
        """Delete what this process wrote on its machine (collected already)."""
        data = ["data"] if self.key == "stage1" else []      # the toy's, from write_files
        for rel in [*own_files(self.key), f".{self.key}.starts", *data]:
            path = self.root / rel
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(True)
        for folder in ("progress", "metrics", "checkpoints", "data", ".", ".."):
            try:                                     # the last process out removes the root,
                (self.root / folder).resolve().rmdir()       # and /tmp/synthgrad-ray if empty
            except OSError:
                pass


def write_atomically(path, data):
    """bytes to path through a temporary name: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def free_port():
    """(this machine's address, a port free on it now, its Ray node ID): run on the machine
    a process is placed on, before the process starts."""
    import ray
    ip = ray.util.get_node_ip_address()
    with socket.socket() as s:
        s.bind((ip, 0))
        return ip, s.getsockname()[1], ray.get_runtime_context().get_node_id()
