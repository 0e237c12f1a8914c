"""The Ray spawner for runner/processes.py (chain.py --ray): each process a Ray actor
(raystage.Stage) on a machine and port chosen first, restarted there by Ray from its
checkpoint, moved with its collected checkpoint when its machine leaves; its files collected
into the run folder. docs/several-machines.md tells the whole story. Ray is imported only in
runner/ray*.py.
"""

import shutil
import time
import uuid
from pathlib import Path

from runner import processes, rayjoin
from runner.raystage import Stage, free_port, own_files, write_atomically

COLLECT_EVERY = 2.0                    # seconds between collections of every process's files
LOOK_EVERY = 0.5                       # seconds between looks at every actor and machine
PLACE_WAIT = 120.0                     # seconds Ray may take to place every process
MOVE_WAIT = 30.0                       # seconds a lost machine's process waits for a free CPU


def node_root(run_dir):
    """Where the processes of run_dir write on their machines: a fresh folder per run."""
    return Path("/tmp/synthgrad-ray") / f"{Path(run_dir).name}-{uuid.uuid4().hex[:8]}"


class RayChain(processes.Spawner):
    """Entered, it connects to Ray (a fresh local instance for "local", else the cluster at
    `address`) and places `procs` (place: {name: custom resource}, or None: a placement
    group); at the end it stops them, collects their files into run_dir and disconnects.
    files: {name: {relative path: bytes}} a process needs before it starts (the toy's data)."""

    def __init__(self, run_dir, address, procs, root=None, place=None, max_restarts=3,
                 token=None, on_start=None, files=None):
        super().__init__("chain", token, on_start)
        self.ray = rayjoin.import_ray()
        self.run, self.address = Path(run_dir), address
        self.procs = {p.name: p for p in procs}       # in start order
        self.place, self.max_restarts = place, max_restarts
        self.root, self.files = Path(root or node_root(run_dir)), files or {}
        self.options, self.where = {}, {}
        self.actors, self.info, self.have, self.restarted = self.children, {}, {}, {}
        self.pending = {}                          # ref -> (name, "info" or "collect")
        self.next_look = self.next_collect = 0.0
        self.group = None
        self.deadlines, self.labels = {}, {}      # to start one elsewhere

    # --- connecting and placing ---

    def __enter__(self):
        ray = self.ray
        if not ray.is_initialized():               # chain.py's main joined it already
            rayjoin.connect(self.address, self.place and set(self.place.values()), len(self.procs))
        nodes = [n for n in ray.nodes() if n["Alive"]]
        self.say(f"Ray {ray.__version__}: "
                 f"{'a fresh local instance' if self.address == 'local' else self.address}, "
                 f"{len(nodes)} machine{'s' * (len(nodes) != 1)}, "
                 f"{ray.cluster_resources().get('CPU', 0):g} CPUs")
        if rayjoin.said_joining:
            write_atomically(self.run / "ray.log", "".join(rayjoin.said_joining).encode())
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
                      for name in self.procs}
        else:
            from ray.util.placement_group import placement_group
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
            self.group = placement_group([{"CPU": 1}] * len(self.procs), strategy="SPREAD")
            if not ray.wait([self.group.ready()], timeout=60)[0]:
                raise SystemExit(f"chain.py: the Ray cluster cannot give each of the chain's "
                                 f"{len(self.procs)} processes a CPU (it has "
                                 f"{ray.cluster_resources().get('CPU', 0):g}): add machines")
            probes = {name: dict(num_cpus=0, scheduling_strategy=PlacementGroupSchedulingStrategy(
                self.group, placement_group_bundle_index=i)) for i, name in enumerate(self.procs)}
        self.options = {name: dict(probe, num_cpus=1) for name, probe in probes.items()}
        probe = ray.remote(free_port)
        while len(self.where) < len(self.procs):   # a port drawn twice is drawn again
            names = [n for n in self.procs if n not in self.where]
            refs = [probe.options(**probes[name]).remote() for name in names]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=PLACE_WAIT)
            if len(ready) < len(refs):
                raise SystemExit(f"chain.py: Ray could not place every process in "
                                 f"{PLACE_WAIT:.0f} s: does every machine --place "
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
        """Start proc on the address chosen for it (launch); its URL, or None if it serves none."""
        name = proc.name
        self.deadlines[name] = deadline
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
                self.procs[name].key, [Path(argv[1]).name, *options], str(self.root),
                sorted(files), self.token, deadline)
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
        """Start the processes `gone` (their machine left) elsewhere from their collected
        checkpoints, and restart those that talk to them with the new addresses; one line says
        it. Why the run must end instead, or None."""
        where, lost = self.described(gone[0]), " and ".join(gone)
        for name in gone:
            self.event("machine lost", name, trained=self.trained(name))
        if not self.max_restarts or any(self.restarted[n] >= self.max_restarts for n in gone):
            self.say(f"{lost} lost: {'its' if len(gone) == 1 else 'their'} "
                     f"machine {where} left the cluster; ending the run"
                     f"{' (--no-restart)' if not self.max_restarts else ''}")
            return f"{gone[0]}'s machine {where} left the cluster"
        try:
            said = [self.move_one(name) for name in gone]      # servers first, as started
            talk = [n for n in self.actors if n not in gone and any(
                isinstance(o, processes.Url) and o in gone for o in self.procs[n].options)]
            for name in talk:
                self.replace(name, self.files.get(name) or {})
                self.event("re-addressed", name, to=[self.urls[n] for n in gone])
        except SystemExit as e:                        # no machine for it, or it did not start
            self.say(f"{lost} lost with machine {where}: {e}; ending the run")
            return f"{gone[0]}'s machine {where} left the cluster ({e})"
        self.say(f"{lost} lost: machine {where} left the cluster; "
                 f"{'; '.join(said)}{''.join(f'; {n} restarted to reach it' for n in talk)}")
        return None

    def move_one(self, name):
        """Place name on a machine with a free CPU (one declaring its --place resource if one
        remains) and start it there from its collected checkpoint; what happened, in words."""
        key, want = self.procs[name].key, self.place and self.place[name]
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
        declared = rayjoin.custom(alive[node]["Resources"])
        self.where[name], self.urls[name] = (ip, port, node), f"http://{ip}:{port}"
        self.labels[name] = want if keeps else (declared or [ip])[0]
        trained = self.trained(name)
        checkpoint = processes.checkpoint_path(self.run, key)
        age = time.time() - checkpoint.stat().st_mtime if checkpoint.exists() else None
        self.restarted[name] += 1
        self.replace(name, {rel: (self.run / rel).read_bytes() for rel in own_files(key)
                            if (self.run / rel).is_file()} | (self.files.get(name) or {}),
                     stop=False)
        self.event("moved", name, checkpoint=age is not None and f"{key}.npz", trained=trained)
        said = f"{name} goes on on {self.described(name)}"
        if want and not keeps:
            said += f" (no machine left declares {want})"
        said += (", from scratch (no checkpoint collected yet)" if age is None else
                 f", from its checkpoint collected {age:.1f} s before")
        return said + (f", on port {port}" if "--port" in self.procs[name].options else "")

    def replace(self, name, files, stop=True):
        """A new actor for name where self.where says, with today's addresses, resuming, and the
        time left of its --duration; the old one stopped first (it saves what it holds) if stop."""
        self.pending = {r: v for r, v in self.pending.items() if v[0] != name}
        if name in self.actors:
            if stop:
                self.stop(name)
            self.ray.kill(self.actors.pop(name), no_restart=True)
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
            self.ask("info")
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
                   self.procs[name].key + ".npz")
        self.say(f"{name} on {self.described(name)} died (its process {before['pid']} is gone; "
                 f"its log ends: {self.last_words(name)}); Ray restarted it there as process "
                 f"{info['pid']} (restart {self.restarted[name]} of at most {self.max_restarts}"
                 f"), {processes.restarted_how(info['resumed'])}, on port {self.where[name][1]}")

    def last_words(self, name):
        """The last lines its log had before Ray restarted it (collected now if it can be)."""
        self.write(name, self.call(name, "collect", self.have[name], timeout=10) or {})
        try:
            text = (self.run / self.procs[name].log.name).read_text(errors="replace")
        except OSError:
            return "(not collected)"
        restarted = f"raychain: {self.procs[name].key} restarted by Ray"
        return processes.text_tail(text.rsplit(restarted, 1)[0])

    def trained(self, name):
        """Its examples trained (streamed) by its newest collected metrics line, or None."""
        return processes.trained_by(None, self.run / "metrics" / f"{self.procs[name].key}.jsonl")

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
                f"its log ends: {processes.log_tail(self.run / self.procs[name].log.name)}")

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
        self.ask("collect", lambda name: [dict(self.have[name])])
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

    def ask(self, method, args=lambda name: []):
        """actor.method(*args(name)) of each live actor without one in flight, not waited for."""
        asked = {name for name, what in self.pending.values() if what == method}
        for name, actor in self.actors.items():
            if name not in asked:
                self.pending[getattr(actor, method).remote(*args(name))] = (name, method)

    def call(self, name, method, *args, timeout=30.0):
        """name's actor.method(*args), its answer, or None if it is dead or does not answer."""
        actor = self.actors.get(name)
        if actor is None:
            return None
        try:
            return self.ray.get(getattr(actor, method).remote(*args), timeout=timeout)
        except self.ray.exceptions.RayError:
            return None

    def stop(self, name, timeout=30.0):
        """Stop one process as SIGTERM would (it saves what it holds)."""
        self.call(name, "stop", timeout, timeout=timeout + 10)

    def stop_all(self):
        """Stop every process, collect what it wrote, remove it from its machine, end the actor."""
        super().stop_all()
        for _ in range(2):                         # what was in flight, then the rest
            self.collect_all(wait=True)
        for name, actor in self.actors.items():
            self.call(name, "remove_files", timeout=10)
            self.ray.kill(actor, no_restart=True)
        self.actors.clear()
        shutil.rmtree(self.run / "checkpoints", ignore_errors=True)   # collected to move one

