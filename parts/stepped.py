"""A chain that counts its steps (chain.py --delay D): dni.py's algorithm, one stage a process.

Stage 1's minibatch t is every stage's step t: each stage trains each arrival once, in order.
Activations travel with their step (POST /training_example's "step"), a boundary model's
weights with the last step it learned from (GET /weights' "version", ?after=V). Before step t a
stage waits until the model above has learned from step t - 1 - D; the delay it then uses is
(t - 1) - that version (0 in one process). Each stage holds decoupled.Stage, drawn as dni.py
draws it, so at D = 0 the chain computes what dni.py does, bit for bit.
"""

import collections
import logging
import math
import threading
import time

import numpy as np

import synthgrad
from parts import boundary, checkpoint, decoupled, sender, server

log = logging.getLogger("synthgrad")
WEIGHTS_WAIT_S = 2.0          # GET /weights?after=V answers at the latest this much later
UPDATES = {"synthetic": "synthetic", "frozen": "frozen", "random": "random-synthetic-norm"}


def make_stage(config, k):
    """decoupled.Stage k (from 0) of the network config["network"] cut at config["splits"],
    as dni.py draws it from config["seed"] (a classifier's: ReLU, float32, cDNI)."""
    settings = decoupled.Config(
        data="images" if config["classes"] else "toy",
        method=UPDATES[config.get("update", "synthetic")],
        learning_rate=config["learning_rate"], optimizer=config["optimizer"],
        seed=config["seed"], batch_size=config["batch_size"])
    return decoupled.Stage(settings, config["network"], k, config["splits"])


class Delays:
    """The delays, in steps, of the synthetic gradients a stage used, against its bound."""

    def __init__(self, bound):
        self.bound, self.steps, self.total, self.max, self.last = bound, 0, 0, 0, None

    def add(self, delay):
        self.steps, self.total, self.last = self.steps + 1, self.total + delay, delay
        self.max = max(self.max, delay)

    def fields(self):
        """{"bound": D, "mean", "max", "last": delays in steps (None before a step), "counted":
        the steps whose delay they are}."""
        mean = self.total / self.steps if self.steps else None
        return {"bound": self.bound, "mean": mean, "max": self.max if self.steps else None,
                "last": self.last, "counted": self.steps}


def delay_text(fields):
    """Delays.fields as "mean 0.4, max 1 (bound 1)"."""
    if not fields or fields.get("mean") is None:
        return "-"
    return f"mean {fields['mean']:.2f}, max {fields['max']} (bound {fields['bound']})"


class OrderedSender(sender.Sender):
    """Whole steps to the stage above, in order, none replaced or dropped: put() never waits;
    Sender's thread posts consecutive steps, max_rows rows a request, with back-off while the
    peer is down (refused rows are counted, not resent). close() sends the rest within
    flush_timeout s."""

    COUNTS = ("sent", "refused", "failed_requests", "unsent")

    def __init__(self, send, name, max_rows=synthgrad.MAX_CHUNK, max_backoff=2.0):
        self._queue = collections.deque()            # (step, i, h, y), oldest first
        self._taken = []                             # the steps of the request in flight
        super().__init__(send, name, chunk=max_rows, max_backoff=max_backoff)

    def put(self, step, i, h, y):
        with self._lock:
            self._queue.append((step, np.asarray(i), np.array(h, copy=True), np.asarray(y)))
        self._wake.set()

    def pending(self):
        with self._lock:
            return sum(len(item[1]) for item in self._queue)

    def _take(self):
        """The oldest steps, whole, up to `chunk` rows (at least one step), as (i, [h, y,
        steps]); None if none."""
        with self._lock:
            items, rows, seen = [], 0, set()
            for item in self._queue:            # an index at most once in a request
                if items and (rows + len(item[1]) > self.chunk or
                              not seen.isdisjoint(item[1].tolist())):
                    break
                items.append(item)
                rows += len(item[1])
                seen.update(item[1].tolist())
            if not items:
                return None
            for _ in items:
                self._queue.popleft()
            self._taken = items
        i, h, y = (np.concatenate([item[k] for item in items]) for k in (1, 2, 3))
        return i, [h, y, np.concatenate([np.full(len(item[1]), item[0]) for item in items])]

    def _give_back(self, i, columns):
        """The steps taken go back to the front of the queue, in order."""
        with self._lock:
            self._queue.extendleft(reversed(self._taken))

    def describe(self, i, columns):
        return f"steps {columns[2][0]}-{columns[2][-1]}"

    def close(self, flush_timeout=5.0):
        """Let the thread send every step within flush_timeout s, then Sender's close."""
        deadline = time.monotonic() + flush_timeout
        while ((self.pending() or self._in_flight) and self._thread.is_alive() and
               time.monotonic() < deadline):
            self._stop.wait(0.05)
        return super().close(max(0.0, deadline - time.monotonic()))


class ModelFollower:
    """The replica `model` of the boundary model above, kept current by a thread asking GET
    /weights?after=V; take(v) loads the newest once it has learned from step v. If that stage
    restarted (its version went back, or it was unreachable and came back a younger process:
    the steps it had since its checkpoint are lost and will not come again) its model is used
    rather than waited on; if the stage above diverged, take() gives up."""

    def __init__(self, client, model, width, stop):
        self.client, self.model, self.width, self.stop = client, model, width, stop
        self.version = 0                     # the replica's: the last step it learned from
        self._latest = None                  # (weights, version) fetched, not yet loaded
        self._restarted = self.diverged = False
        self.refusal = None                  # why the stage above refuses this one, for good
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._follow, daemon=True, name="follow-model")

    def start(self):
        self._thread.start()

    def _follow(self):
        seen, delay, last_log, born, lost = 0, 0.05, -math.inf, None, True
        while not self.stop.is_set():
            try:
                weights, _, version = self.client.weights(self.width, after=seen)
                status = self.client.status() if version == seen or lost else {}
            except synthgrad.PeerError as e:
                if e.refused or isinstance(e.__cause__, synthgrad.ProtocolError):
                    log.error("the stage above refuses this one, or its model is not one for "
                              "it (%s): this stage cannot go on", e)
                    with self._changed:                # a token, another width: not for now
                        self.refusal = str(e)
                        self._changed.notify_all()
                    return
                if time.monotonic() - last_log >= 10.0:
                    log.warning("no weights from the model above yet (%s); asking again", e)
                    last_log = time.monotonic()
                self.stop.wait(delay)
                delay, lost = min(2.0, 2 * delay), True
                continue
            delay, stuck, younger = 0.05, version == seen and status.get("diverged"), False
            if lost:                            # when the process now answering started
                was, born, lost = born, status.get("started"), False
                younger = None not in (was, born) and born != was
            if stuck:
                log.error("the stage above diverged: this stage cannot go on")
                with self._changed:
                    self.diverged = True
                    self._changed.notify_all()
                return
            with self._changed:
                if version < seen or younger:
                    log.warning("the stage above restarted, its model at step %d (%d seen "
                                "before): using it as it is", version, seen)
                    self._restarted = True
                    self._changed.notify_all()
                if version != seen:
                    self._latest, seen = (weights, version), version
                    self._changed.notify_all()
                    continue
            self.stop.wait(delay)               # nothing newer: a peer that does not wait

    def take(self, needed, owner=None):
        """Load the newest weights into the model once they have learned from step `needed`;
        returns the version loaded (None if stopped, or the stage above diverged, first: then
        owner, the stage, diverges too)."""
        with self._changed:
            while True:
                if self.diverged and owner is not None:
                    checkpoint.diverge(owner, "the stage above")
                if self.stop.is_set() or self.diverged or self.refusal:
                    return None
                have = self.version if self._latest is None else self._latest[1]
                if have >= needed or self._restarted:
                    break
                self._changed.wait(0.5)
            latest, self._latest, self._restarted = self._latest, None, False
        if latest is not None:
            weights, self.version = latest
            current = self.model.weights()
            self.model.load([w.astype(c.dtype) for w, c in zip(weights, current, strict=True)],
                            self.version)
        return self.version


class FirstStage:
    """Stage 1 (train_input.py --delay): decoupled.Stage 0, its generator after the draws
    decoupled.run makes before its order, whole steps sent up in order, the model above
    followed. config: train_input.InputConfig; sizes: its layers' widths; n: its examples."""

    def __init__(self, config, n, sizes, oracle, send, stop):
        config = dict(vars(config), classes=config.network[-1] if config.activation == "relu"
                      else 0)
        self.stage = make_stage(config, 0)
        if [la.w.shape for la in self.stage.group] != list(zip(sizes[:-1], sizes[1:],
                                                                strict=True)):
            raise ValueError(f"--network {config['network']} cut at {config['splits']} does not "
                             f"start with layers {sizes}")
        if config["classes"]:
            self.stage.rng.permutation(n)               # decoupled.run draws its probe first
        self.sender = OrderedSender(send, "steps to stage 2")
        self.delays = Delays(config["delay"])
        self.follower = None if self.stage.above is None else ModelFollower(
            oracle, self.stage.above, sizes[-1], stop)

    def start(self):
        if self.follower is not None:
            self.follower.start()

    def step(self, owner, t, x, y, idx):
        """Step t on x, y (examples idx) once the model above has learned from step t - 1 - D;
        h goes up with t. False: stopped while waiting, or diverged (owner's guard)."""
        if self.follower is not None:
            version = self.follower.take(t - 1 - self.delays.bound, owner)
            if version is None and self.follower.refusal:
                raise SystemExit(f"train_input.py: {self.follower.refusal}")
            if version is None:
                return False
            self.delays.add(max(0, t - 1 - version))   # (0: a model past this step, resumed)
        done = checkpoint.guard(owner, "stage 1", self.stage.group,
                                lambda: self.stage.step(x, y)[:1])
        if done is not None:
            self.sender.put(t, idx, done[0], y)
        return done is not None


class SteppedStage(server.StageServer):
    """Stage k > 1 of a chain that counts steps (train_middle.py and train_output.py with
    --delay): trains each step it receives once, in order, learns the boundary model below
    from what its layers hand down and serves it (GET /weights), sends its activations up."""

    role, title = "stage", "stage"
    idle_wait = 0.0                  # train_pass waits for arrivals itself
    FLATTEN = {"delay_steps": "delay_", "activations_to_next_stage": "activations_"}

    def __init__(self, **c):
        self.k = c["stage"] - 1
        self.stage = make_stage(c, self.k)
        self.layers, self.optimizer = self.stage.group, self.stage.optimizer
        self.width = self.layers[0].w.shape[0]
        self.boundary = self.stage.below                # learned here, served at GET /weights
        self.quality = boundary.Quality(boundary.DEFAULTS["quality_window"], c["batch_size"])
        self.steps = 0                  # the last step trained, the model below learned from
        self.published = [w.copy() for w in self.boundary.weights()]
        self.pending = {}                               # step -> (i, h_below, y)
        self.arrived, self.published_changed = threading.Condition(), threading.Condition()
        self.delays = Delays(c["delay"])
        self.oracle = None                              # no oracle process: the model is here
        super().__init__(c)
        self.follower = self.up = None
        if not self.stage.top:
            binary, token = c["wire"] == "binary", c["token"]
            above = synthgrad.OracleClient(c["above_oracle_url"], binary=binary, token=token)
            self.follower = ModelFollower(above, self.stage.above,
                                          self.layers[-1].w.shape[1], self.stop)
            self.next = synthgrad.OutputTrainerClient(c["next_url"], binary=binary, token=token)
            self.up = OrderedSender(self.next.send_examples, "activations to the next stage")

    def start_training(self):
        if self.follower is not None:
            self.follower.start()
        super().start_training()

    def receive(self, i, x, y, steps):
        """Hold the rows (i, x = h_below, y) of each step in `steps` until it is trained."""
        if steps is None or steps.dtype != np.int64:    # (JSON's integers go past int64's)
            raise synthgrad.ProtocolError("step: this stage counts steps (--delay) and needs "
                                          "each row's step, below 2**63")
        with self.arrived:
            for step in np.unique(steps):
                rows = steps == step
                self.pending[int(step)] = (i[rows], x[rows], y[rows])
            self.counts["examples_received"] += len(i)
            self.arrived.notify_all()

    def examples_held(self):
        with self.arrived:
            return sum(len(rows[0]) for rows in self.pending.values())

    def train_pass(self):
        """The next step held, in order: wait for the model above (the bound), step, publish
        the model below, hand h up. False if nothing arrived within 0.05 s."""
        with self.arrived:
            if not self.pending:
                self.arrived.wait(0.05)
            if not self.pending:
                return False
            step = min(self.pending)
            i, x, y = self.pending.pop(step)
        if step <= self.steps:                          # sent again after a restart
            self.counts["steps_late"] += 1
            return True
        if step > self.steps + 1:
            self.counts["steps_lost"] += step - self.steps - 1
            log.warning("steps %d-%d never arrived (refused, or a stage restarted); going on "
                        "at step %d", self.steps + 1, step - 1, step)
        if self.follower is not None:
            # the stage above can only have learned from steps this stage handed it: after a
            # gap, not from those lost in it
            version = self.follower.take(min(step - 1 - self.delays.bound, self.steps), self)
            if version is None:                         # stopped while waiting, or diverged
                if self.follower.refusal:               # or refused: the server ends, exit 1
                    self.failed.set()
                return True
            self.delays.add(max(0, step - 1 - version))   # (0: a model past this step)
        if self.steps == 0:
            self.snapshotter.save_initial(self.layers)
        result = checkpoint.guard(self, self.title, self.layers, self.stage.step, x, y)
        if result is None:
            return True
        h, g_hat, t = result
        if t is not None:                               # (a frozen stage hands nothing down)
            with self.lock:
                self.quality.add(g_hat, t)
        with self.published_changed:
            self.published = [w.copy() for w in self.boundary.weights()]
            self.steps = step
            self.published_changed.notify_all()
        if self.up is not None:
            self.up.put(step, i, h, y)
        self.counts["examples_trained"] += len(i)
        self.snapshotter.maybe_save(self.layers)
        self.checkpointer.maybe()
        return True

    def published_weights(self, after=None):
        """(weights, conditioned, version) of the model below; with `after`, once its version
        is past it (or WEIGHTS_WAIT_S later)."""
        with self.published_changed:
            if after is not None:
                self.published_changed.wait_for(lambda: self.steps > after or
                                                self.stop.is_set(), WEIGHTS_WAIT_S)
            return self.published, self.boundary.conditioned, self.steps

    # --- checkpoints: the layers, the model below, both optimizers, the counters ------------
    COUNTERS = ("steps", "examples_received", "examples_trained")
    SO_FAR = ("steps",)

    def counters(self):
        return {**super().counters(), "steps": self.steps}

    def load_models(self, weights, counts):
        checkpoint.set_layers(self.layers, weights[""])
        self.boundary.load(weights["boundary_"], counts["steps"])
        self.steps = counts["steps"]
        self.published = [w.copy() for w in self.boundary.weights()]

    def close(self):
        if self.up is not None:
            self.up.close()

    def status_fields(self):
        """"steps_trained" (the last step), "delay_steps" (the model above's, Delays.fields;
        null at the top), "steps_lost" (never arrived), "steps_late" (arrived again)."""
        return {
            **super().status_fields(),
            "steps_trained": self.steps,
            "delay_steps": None if self.follower is None else self.delays.fields(),
            "steps_lost": self.counts["steps_lost"],
            "steps_late": self.counts["steps_late"],
            "boundary_model_steps": self.steps,
            "activations_to_next_stage": None if self.up is None else dict(self.up.counts),
        }
