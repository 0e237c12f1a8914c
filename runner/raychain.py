"""The Ray spawner for runner/processes.py (chain.py --ray): each process a Ray actor running
its script's main in a thread, stopped by an event where a signal would stop the script.

Ray places the processes (a CPU each in a placement group, or where --place says), each on a
port found free on its machine and kept after a restart, so its peers find it again, and
restarts one that dies from its checkpoint; a machine that leaves, or a process Ray will not
restart again, ends the run. What each writes under node_root on its machine is collected
into the driver's run folder as it comes. Ray is imported only here.
"""

import contextlib
import importlib
import logging
import os
import resource
import shutil
import socket
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

from parts import children
from runner import processes

RAY_PIN = "ray==2.60.0"                # the version tests/ runs (requirements-test.txt)
MISSING = (f"chain.py --ray needs Ray, which make demo does not install: pip install "
           f"'{RAY_PIN}' (make test's environment has it: .venv/bin/python chain.py --ray)")
COLLECT_EVERY = 2.0                    # seconds between collections of every process's files
LOOK_EVERY = 0.5                       # seconds between looks at every actor and machine
CONNECT_TRIES = 5                      # seconds ray.init tries a cluster that refuses us
REACH_S = 3.0                          # seconds a cluster's address may take to accept at all
CONNECT_TRIES = 5                      # seconds ray.init tries a cluster that refuses us
REACH_S = 3.0                          # seconds a cluster's address may take to accept at all
BIND_TRIES = 20                        # a restarted server retries its port every 0.5 s
LAST_WORDS_S = 1.0                     # a failed script's process lives on this long, its
                                       # state readable (its log may be on a machine gone)
MOVE_WAIT = 30.0                       # seconds a lost machine's process waits for a free CPU
# The repository travels to every machine (Ray's working_dir) without these.
EXCLUDES = ["runs", "progress", "docs", "tests"]          # Ray leaves out .git, .venv too
said_joining = []                      # what Ray wrote while connect() joined (one driver each)


def import_ray():
    """The ray module; SystemExit saying how to get it if it is not installed."""
    try:
        import ray
    except ImportError:
        raise SystemExit(MISSING) from None
    return ray


def node_root(run_dir):
    """Where the processes of run_dir write on their machines: a fresh folder per run."""
    return Path("/tmp/synthgrad-ray") / f"{Path(run_dir).name}-{uuid.uuid4().hex[:8]}"


def own_files(key):
    """What a process writes that the driver collects (relative to its node root): its
    checkpoint too, to start it on another machine if its own leaves."""
    return [f"{key}.log", f"metrics/{key}.jsonl", f"progress/{key}", f"checkpoints/{key}.npz"]


class Stage:
    """One process inside a Ray actor: argv (the script's name, then its options) run by the
    script's main in a thread, writing under root, once write_files has brought the files
    `needs` names (restarted by Ray: once they are there). __init__ never raises: Ray re-runs it to restart the actor
    (from its checkpoint, with the time left of its deadline); one that raises ends it."""

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
        time written) is not the one in `have` ({relative path: signature}, what the driver
        holds): new snapshots, longer logs, a newer checkpoint."""
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
        for rel in [*own_files(self.key), f"checkpoints/{self.key}.npz", f".{self.key}.starts",
                    *data]:
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


def connect(address, place=None, cpus=1):
    """Join the Ray cluster at `address` as a chain's driver ("local": start a fresh instance
    here, with `cpus`, as many as processes, at least), and check that a machine declares
    each resource in `place`. Fails fast, in one line (SystemExit): nothing listening there
    (a TCP look first), a token refused or missing (CONNECT_TRIES s, not Ray's 20), a
    resource no machine declares. What Ray wrote meanwhile is kept out of the terminal
    (in said_joining, then the run folder's ray.log)."""
    ray = import_ray()
    env_vars = {"RAY_USAGE_STATS_ENABLED": "0", "OPENBLAS_NUM_THREADS": "1",
                "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    local = address == "local"
    if not local and "://" not in address and address != "auto":
        look_for(address)
    said_joining.clear()
    try:
        with stderr_kept(said_joining), environ(RAY_gcs_server_port_wait_time_s=None if local
                                                else str(CONNECT_TRIES)):
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                     runtime_env=dict(working_dir=str(children.TOP), excludes=EXCLUDES,
                                      env_vars=env_vars),
                     **(dict(include_dashboard=False, num_cpus=max(cpus, os.cpu_count() or 1))
                        if local else {}))
    except Exception as e:                         # ConnectionError, AuthenticationError
        raise SystemExit(f"chain.py: cannot join the Ray cluster at {address}: "
                         f"{why_not_joined(e, ''.join(said_joining))}") from None
    declared = ray.cluster_resources()
    missing = sorted({r for r in place or () if r not in declared})
    if missing:
        ray.shutdown()
        custom = sorted(r for r in declared if r not in ("CPU", "GPU", "memory",
                        "object_store_memory") and not r.startswith("node:"))
        raise SystemExit(f"chain.py: --place: no machine of the cluster declares "
                         f"{', '.join(missing)} (on the machine meant: ray start "
                         f"--resources='{{\"{missing[0]}\": 1}}'); the cluster's "
                         f"machines declare: {', '.join(custom) or 'none'}")


def look_for(address):
    """SystemExit in one line unless something accepts a connection at HOST:PORT within
    REACH_S s (ray.init would try an empty address for minutes)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=REACH_S).close()
    except ValueError:
        raise SystemExit(f"chain.py: --ray {address}: expected HOST:PORT, the head's address "
                         f"(e.g. 10.0.0.1:6379), or no address for a fresh local Ray") from None
    except OSError as e:
        raise SystemExit(f"chain.py: no Ray cluster at {address}: "
                         f"{e.strerror or type(e).__name__} (is `ray start --head --port "
                         f"{port}` running on {host}? docs/several-machines.md)") from None


def why_not_joined(error, said):
    """ray.init's failure in words: a token refused or missing, else its first line."""
    if "InvalidAuthToken" in said:
        return ("it refused this machine's Ray token: export RAY_AUTH_MODE=token and "
                "RAY_AUTH_TOKEN=<the head's token> here (docs/several-machines.md)")
    if "no authentication token was found" in str(error):
        return ("it asks for a Ray token and this machine has none: export "
                "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN=<the head's token> here "
                "(docs/several-machines.md)")
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    return (f"{first} (is `ray start --head` running there, and RAY_AUTH_MODE=token with its "
            f"token set here? docs/several-machines.md)")


@contextlib.contextmanager
def environ(**values):
    """os.environ with `values` (None: as it is) for the block, as it was after."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update({name: v for name, v in values.items() if v is not None})
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def stderr_kept(lines):
    """What is written to file descriptor 2 in the block (Ray's C++ writes there, past
    sys.stderr) appended to `lines` instead of reaching the terminal."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as kept:
        os.dup2(kept.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            kept.seek(0)
            lines.append(kept.read().decode(errors="replace"))


class RayChain(processes.Spawner):
    """Entered, it connects to Ray (a fresh local instance for "local", else the cluster at
    `address`) and places `procs` (place: {name: custom resource}, or None: a placement
    group); at the end it stops them, collects their files into run_dir and disconnects.
    files: {name: {relative path: bytes}} a process needs before it starts (the toy's data)."""

    def __init__(self, run_dir, address, procs, root=None, place=None, max_restarts=3,
                 token=None, on_start=None, files=None):
        super().__init__("chain", token, on_start)
        self.ray = import_ray()
        self.run, self.address = Path(run_dir), address
        self.names, self.keys = [p.name for p in procs], {p.name: p.key for p in procs}
        self.place, self.max_restarts = place, max_restarts
        self.root, self.files = Path(root or node_root(run_dir)), files or {}
        self.options, self.where = {}, {}
        self.actors, self.info, self.have, self.restarted = self.children, {}, {}, {}
        self.pending = {}                          # ref -> (name, "info" or "collect")
        self.next_look = self.next_collect = 0.0
        self.group = None
        self.procs, self.deadlines, self.labels = {}, {}, {}      # to start one elsewhere

    # --- connecting and placing ---

    def __enter__(self):
        ray = self.ray
        if not ray.is_initialized():               # chain.py's main joined it already
            connect(self.address, self.place and set(self.place.values()), len(self.names))
        nodes = [n for n in ray.nodes() if n["Alive"]]
        self.say(f"Ray {ray.__version__}: "
                 f"{'a fresh local instance' if self.address == 'local' else self.address}, "
                 f"{len(nodes)} machine{'s' * (len(nodes) != 1)}, "
                 f"{ray.cluster_resources().get('CPU', 0):g} CPUs")
        if said_joining:
            write_atomically(self.run / "ray.log", "".join(said_joining).encode())
        try:
            self.urls = self.place_all()
        except BaseException:                      # nothing started: let go of Ray
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc):
        self.stop_all()
        if self.group is not None:
            self.ray.util.remove_placement_group(self.group)
        self.ray.shutdown()

    def place_all(self):
        """Choose every process's machine and port: {name: its URL, "http://IP:PORT"}."""
        ray = self.ray
        if self.place:
            probes = {name: dict(num_cpus=0, resources={self.place[name]: 0.001})
                      for name in self.names}
        else:
            from ray.util.placement_group import placement_group
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
            self.group = placement_group([{"CPU": 1}] * len(self.names), strategy="SPREAD")
            if not ray.wait([self.group.ready()], timeout=60)[0]:
                raise SystemExit(f"chain.py: the Ray cluster cannot give each of the chain's "
                                 f"{len(self.names)} processes a CPU (it has "
                                 f"{ray.cluster_resources().get('CPU', 0):g}): add machines")
            probes = {name: dict(num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(
                self.group, placement_group_bundle_index=i)) for i, name in enumerate(self.names)}
        self.options = {name: dict(probe, num_cpus=1) for name, probe in probes.items()}
        probe = ray.remote(free_port)
        while len(self.where) < len(self.names):   # a port drawn twice is drawn again
            names = [n for n in self.names if n not in self.where]
            refs = [probe.options(**probes[name]).remote() for name in names]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=processes.READY_WAIT)
            if len(ready) < len(refs):
                raise SystemExit(f"chain.py: Ray could not place every process in "
                                 f"{processes.READY_WAIT:.0f} s: does every machine --place "
                                 f"names have a free CPU for each of its stages?")
            for name, (ip, port, node) in zip(names, ray.get(refs), strict=True):
                if (ip, port) not in {(i, p) for i, p, _ in self.where.values()}:
                    self.where[name] = (ip, port, node)
        return {name: f"http://{ip}:{port}" for name, (ip, port, _) in self.where.items()}

    def machine(self, name):
        """The machine a process is on, short: its --place name (or, moved, a name its new
        machine declares), else its address."""
        return self.labels.get(name) or (self.place[name] if self.place else self.where[name][0])

    def described(self, name):
        """The machine in words: "host_b (10.0.0.2)" with --place, else its address."""
        ip, label = self.where[name][0], self.machine(name)
        return ip if label == ip else f"{label} ({ip})"

    # --- starting ---

    def start(self, proc, argv, deadline=None):
        """Start proc on the port and address chosen for it; once it runs (and answers, if it
        serves), its URL or None. SystemExit if it does not within READY_WAIT s."""
        name = proc.name
        self.procs[name], self.deadlines[name] = proc, deadline
        self.have[name], self.restarted[name] = {}, 0
        url, pid = self.launch(name, argv, self.files.get(name) or {}, deadline)
        self.say(f"{name} on {self.described(name)}, process {pid}{f': {url}' if url else ''}")
        return url

    def launch(self, name, argv, files, deadline=None):
        """name's actor on its machine and port running argv (a command line), `files` {path:
        bytes} written there first; once it runs (and answers, if it serves): (its URL or
        None, its process ID). SystemExit if it does not within READY_WAIT s."""
        url = self.urls[name] if "--port" in argv else None
        ip, port, _ = self.where[name]
        options = processes.restart_options(argv[2:], port) + (["--host", ip] if url else [])
        self.actors[name] = self.ray.remote(Stage).options(
            **self.options[name], max_restarts=self.max_restarts - self.restarted[name],
            max_task_retries=0, max_concurrency=3).remote(
                self.keys[name], [Path(argv[1]).name, *options], str(self.root), sorted(files),
                self.token, deadline)
        if files:
            self.call(name, "write_files", files, timeout=processes.READY_WAIT)
        peer = None if url is None else processes.client(url, self.token)
        give_up = time.monotonic() + processes.READY_WAIT
        while time.monotonic() < give_up:
            try:
                info = self.info[name] = self.ray.get(self.actors[name].info.remote(), timeout=5)
            except (self.ray.exceptions.GetTimeoutError,
                    self.ray.exceptions.ActorUnavailableError):      # Ray is restarting it
                info = {}
            except self.ray.exceptions.RayActorError as e:
                raise SystemExit(f"chain.py: {name} died as it started ({type(e).__name__}): "
                                 f"{self.why(name)}") from None
            if info.get("state") in ("running", "finished") and (
                    peer is None or processes.last_status(peer) is not None):
                self.on_start(name, info["pid"])
                return url, info["pid"]
            time.sleep(0.1)
        self.collect_all(wait=True)
        raise SystemExit(f"chain.py: {name} did not start within "
                         f"{processes.READY_WAIT:.0f} s; {self.why(name)}")

    # --- a machine lost: its stages go on elsewhere ---

    def move(self, gone):
        """Start the processes `gone` (their machine left) on machines that remain, each from
        the checkpoint collected here, and start again, where they are, those that talk to
        them, with their new addresses. Says it in one line; why the run must end instead, or
        None."""
        where = self.described(gone[0])
        for name in gone:
            self.event("machine lost", name, trained=self.trained(name))
        if not self.max_restarts or any(self.restarted[n] >= self.max_restarts for n in gone):
            self.say(f"{' and '.join(gone)} lost: {'its' if len(gone) == 1 else 'their'} "
                     f"machine {where} left the cluster; ending the run"
                     f"{' (--no-restart)' if not self.max_restarts else ''}")
            return f"{gone[0]}'s machine {where} left the cluster"
        said = []
        try:
            for name in gone:                          # servers first, as they were started
                said.append(self.move_one(name))
            talk = [n for n in self.actors if n not in gone and any(
                isinstance(o, processes.Url) and o in gone for o in self.procs[n].options)]
            for name in talk:
                self.replace(name, self.files.get(name) or {})
                self.event("re-addressed", name, to=[self.urls[n] for n in gone])
        except SystemExit as e:                        # no machine for it, or it did not start
            self.say(f"{' and '.join(gone)} lost with machine {where}: {e}; ending the run")
            return f"{gone[0]}'s machine {where} left the cluster ({e})"
        self.say(f"{' and '.join(gone)} lost: machine {where} left the cluster; "
                 f"{'; '.join(said)}{''.join(f'; {n} restarted to reach it' for n in talk)}")
        return None

    def move_one(self, name):
        """Place name on a machine with a free CPU (one declaring its --place resource if one
        remains) and start it there from its collected checkpoint; what happened, in words."""
        key, want = self.keys[name], self.place and self.place[name]
        alive = {n["NodeID"]: n for n in self.ray.nodes() if n["Alive"]}
        keeps = bool(want) and any(want in n["Resources"] for n in alive.values())
        probe = (self.options[name] if self.group is not None else        # its bundle, moved
                 dict(num_cpus=1, resources={want: 0.001}) if keeps else dict(num_cpus=1))
        ref = self.ray.remote(free_port).options(**probe).remote()
        if not self.ray.wait([ref], timeout=MOVE_WAIT)[0]:
            self.ray.cancel(ref, force=True)
            raise SystemExit(f"no machine left has a free CPU for {name} (it waited "
                             f"{MOVE_WAIT:.0f} s)")
        ip, port, node = self.ray.get(ref)
        if self.group is None:
            self.options[name] = dict(num_cpus=1, scheduling_strategy=self.ray.util.
                                      scheduling_strategies.NodeAffinitySchedulingStrategy(
                                          node, soft=False))
        declared = [r for r in alive[node]["Resources"] if r not in ("CPU", "GPU", "memory",
                    "object_store_memory") and not r.startswith("node:")]
        self.where[name], self.urls[name] = (ip, port, node), f"http://{ip}:{port}"
        self.labels[name] = want if keeps else (declared or [ip])[0]
        trained = self.trained(name)
        checkpoint = self.run / "checkpoints" / f"{key}.npz"
        age = time.time() - checkpoint.stat().st_mtime if checkpoint.exists() else None
        self.restarted[name] += 1
        self.replace(name, {rel: (self.run / rel).read_bytes() for rel in own_files(key)
                            if (self.run / rel).is_file()} | (self.files.get(name) or {}),
                     stop=False)
        self.event("moved", name, checkpoint=age is not None and f"{key}.npz", trained=trained)
        return (f"{name} goes on on {self.described(name)}"
                f"{'' if keeps or not want else f' (no machine left declares {want})'}, "
                f"from its checkpoint collected {age:.1f} s before" if age is not None else
                f"{name} starts again on {self.described(name)} from scratch (no checkpoint "
                f"collected yet)") + (f", on port {port}" if "--port" in self.procs[name].options
                                      else "")

    def replace(self, name, files, stop=True):
        """A new actor for name, on the machine and port in self.where, its command line with
        today's addresses (resuming from its checkpoint there, and with the time left of its
        --duration); the old one stopped first (it saves what it holds) if `stop`."""
        old = self.actors.pop(name, None)
        self.pending = {r: v for r, v in self.pending.items() if v[0] != name}
        if old is not None:
            if stop:
                self.call_actor(old, "stop", 30.0, timeout=40.0)
            self.ray.kill(old, no_restart=True)
        argv = processes.restart_options(processes.command_line(self.procs[name], self.urls),
                                         None, None, self.deadlines[name])
        self.launch(name, argv, files, self.deadlines[name])

    # --- watching: processes.watch's look() ---

    def look(self):
        """Ask for each actor's info (a new process: Ray restarted it) and check the machines
        every LOOK_EVERY s, collect new files every COLLECT_EVERY s; never waits on Ray. Why
        the run must end (a process Ray will not restart again, a machine gone), or None."""
        ray, now = self.ray, time.monotonic()
        if now >= self.next_collect:
            self.next_collect = now + COLLECT_EVERY
            self.collect_all(wait=False)
        if now >= self.next_look:
            self.next_look = now + LOOK_EVERY
            asked = {name for name, what in self.pending.values() if what == "info"}
            for name, actor in self.actors.items():
                if name not in asked:
                    self.pending[actor.info.remote()] = (name, "info")
            alive = {n["NodeID"]: n["Alive"] for n in ray.nodes()}
            gone = [name for name, (_, _, node) in self.where.items()
                    if name in self.actors and not alive.get(node, False)]
            for name in gone:                          # no restart can bring them back there
                self.ray.kill(self.actors.pop(name), no_restart=True)
            if gone:
                return self.move(gone)
        ready, _ = ray.wait(list(self.pending), num_returns=len(self.pending), timeout=0)
        for ref in ready:
            name, what = self.pending.pop(ref)
            if name not in self.actors:                # its machine is gone: said already
                continue
            try:
                answer = ray.get(ref)
            except ray.exceptions.ActorUnavailableError:
                continue                           # dead, and Ray is restarting it
            except ray.exceptions.RayActorError:   # dead, and Ray will not restart it
                return self.dead(name)
            if what == "collect":
                self.write(name, answer)
            else:
                self.seen(name, answer)
        return None

    def seen(self, name, info):
        before = self.info.get(name)
        self.info[name] = info
        if before is None or before["pid"] == info["pid"]:
            return
        self.restarted[name] = info["starts"] - 1
        self.on_start(name, info["pid"])
        self.event("died", name, how=f"its process {before['pid']} is gone",
                   trained=self.trained(name))
        self.event("restarted", name, pid=info["pid"], checkpoint=info["resumed"] and
                   self.keys[name] + ".npz")
        self.say(f"{name} on {self.described(name)} died (its process {before['pid']} is gone; "
                 f"its log ends: {self.last_words(name)}); Ray restarted it there as process "
                 f"{info['pid']} (restart {self.restarted[name]} of at most {self.max_restarts}"
                 f"), {processes.restarted_how(info['resumed'])}, on port {self.where[name][1]}")

    def last_words(self, name):
        """The last lines its log had before Ray restarted it (collected now if it can be)."""
        self.write(name, self.call(name, "collect", self.have[name], timeout=10) or {})
        try:
            text = (self.run / f"{self.keys[name]}.log").read_text(errors="replace")
        except OSError:
            return "(not collected)"
        restarted = f"raychain: {self.keys[name]} restarted by Ray"
        return processes.text_tail(text.rsplit(restarted, 1)[0])

    def trained(self, name):
        """Its examples trained (streamed) by its newest collected metrics line, or None."""
        return processes.trained_by(None, self.run / "metrics" / f"{self.keys[name]}.jsonl")

    def dead(self, name):
        self.actors.pop(name)
        self.event("died", name, how="for good", trained=self.trained(name))
        self.say(f"{name} on {self.described(name)} died and Ray will not restart it (restarted "
                 f"{self.restarted[name]} of at most {self.max_restarts} times, --max-restarts"
                 f"): {self.why(name)}. Ending the run")
        return f"{name} died ({self.restarted[name] + 1} times)"

    def why(self, name):
        """What the last look saw of a process's failure (its script's error and log's last
        lines), else the last lines of its log as collected."""
        state = self.info.get(name, {}).get("state", "")
        return (state.removeprefix("failed: ") if state.startswith("failed") else
                f"its log ends: {processes.log_tail(self.run / f'{self.keys[name]}.log')}")

    def finished(self, name):
        return self.info.get(name, {}).get("state") == "finished"

    def cpu_seconds(self, name):
        return self.info.get(name, {}).get("cpu_s")

    def restarts(self):                          # {name: restarts so far}
        return dict(self.restarted)

    # --- collecting, stopping ---

    def write(self, name, files):                # what its collect() answered
        for rel, (signature, data) in files.items():
            write_atomically(self.run / rel, data)
            self.have[name][rel] = signature

    def collect_all(self, wait=False, timeout=30.0):
        """Ask every live actor for its new files (one request each in flight); with wait,
        wait for the answers (at most `timeout` s) and write them."""
        asked = {name for name, what in self.pending.values() if what == "collect"}
        for name, actor in self.actors.items():
            if name not in asked:
                self.pending[actor.collect.remote(dict(self.have[name]))] = (name, "collect")
        if not wait:
            return
        refs = [ref for ref, (_, what) in self.pending.items() if what == "collect"]
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
        for ref in ready:
            name, _ = self.pending.pop(ref)
            try:
                self.write(name, self.ray.get(ref))
            except self.ray.exceptions.RayError:
                pass

    def call(self, name, method, *args, timeout=30.0):
        """name's actor.method(*args), its answer, or None if it is dead or does not answer."""
        return self.call_actor(self.actors.get(name), method, *args, timeout=timeout)

    def call_actor(self, actor, method, *args, timeout=30.0):
        try:
            return self.ray.get(getattr(actor, method).remote(*args), timeout=timeout)
        except (AttributeError, self.ray.exceptions.RayError):
            return None

    def stop(self, name, timeout=30.0):
        """Stop one process as SIGTERM would (it saves what it holds)."""
        self.call(name, "stop", timeout, timeout=timeout + 10)

    def stop_all(self):
        """Stop every process, collect what they wrote, remove it from their machines, end the
        actors."""
        super().stop_all()
        for _ in range(2):                         # what was in flight, then the rest
            self.collect_all(wait=True)
        for name, actor in self.actors.items():
            self.call(name, "remove_files", timeout=10)
            self.ray.kill(actor, no_restart=True)
        self.actors.clear()
        shutil.rmtree(self.run / "checkpoints", ignore_errors=True)   # collected to move one

