"""What train_input.py reads in the next stage's GET /status: the run it snapshots into when
started by hand, how far it may run ahead, and when its work is done.

By hand (no --progress-dir) join_run snapshots into the output trainer's run, refuses to be a
second input trainer streaming to it, and follows it to a new run if it restarts from scratch.
train_input.py streams as fast as its core allows while the next stage trains at its own pace;
NextStage polls that stage's "examples_trained" for train_input.py's --until-trained N (stop
once it has trained on N examples: the same work on a busy machine) and --max-ahead M (wait
while more than M handed-off examples are untrained).
"""

import logging
import operator
import threading
import time

import synthgrad
from parts import snapshots

log = logging.getLogger("train_input")


def join_run(output, stop, snapshotter, url, wait=1.0, follow_every=2.0):
    """Snapshot into the run the output trainer (its client `output`, at url) names in its
    /status, waiting for it to answer; alone() first. Then follow_run every follow_every s
    until stop. False if stopped first."""
    run = page = None
    while run is None and output.wait_until_ready(stop):
        try:
            status = output.status()
        except synthgrad.PeerError:
            continue
        run, page = status.get("run"), status.get("live_page")
        if not folder_name(run):
            raise SystemExit(f"train_input.py: the output trainer names no run folder in its "
                             f"/status (run: {run!r}); pass --progress-dir")
    if run is None or not alone(output, stop, status, url, wait):
        return False
    snapshotter.folder = snapshots.PROGRESS / run
    log.info("snapshots go to %s (the output trainer's run)", snapshotter.folder)
    if page:
        log.info("watch it learn, live: %s (the output trainer's page)", page)
    snapshots.every(follow_every, lambda: follow_run(output, snapshotter), stop, "follow-run")
    return True


def alone(output, stop, status, url, wait=1.0):
    """One input trainer to an output trainer: if its examples_received grows for `wait` s
    before this one sends any, another streams to it, and the two would mix their activations
    and write the same layer1 files into its run: stop in one line (False: stopped)."""
    before = status.get("examples_received")
    if stop.wait(wait):
        return False
    try:
        after = output.status().get("examples_received")
    except synthgrad.PeerError:
        return True                             # gone for now: the sender will wait for it
    if isinstance(before, int) and isinstance(after, int) and after > before:
        raise SystemExit(
            f"train_input.py: another input trainer is streaming to the output trainer at {url} "
            f"({after - before:,} examples in {wait:g} s before this one sent any); stop it "
            f"first, or give this one an output trainer of its own (--output-url)")
    return True


def follow_run(output, snapshotter):
    """An output trainer restarted from scratch by hand names a new run: layer 1's snapshots
    (and its final weights) go there from now on, beside the layers they compose with."""
    try:
        run = output.status().get("run")
    except synthgrad.PeerError:                 # down for now: ask again next time
        return
    if folder_name(run) and run != snapshotter.folder.name:
        snapshotter.folder = snapshots.PROGRESS / run
        log.info("the output trainer restarted as run %s: snapshots go to %s", run,
                 snapshotter.folder)


def folder_name(run):
    """Whether a run named by a peer is one folder's name (nothing above progress/ or in it)."""
    return isinstance(run, str) and run not in ("", ".", "..") and "/" not in run and \
        "\\" not in run and "\0" not in run


class NextStage:
    """The next stage's examples_trained, polled every `every` seconds from when it is made until
    stop is set, with a synthgrad.OutputTrainerClient of its own (the sender's is busy)."""

    def __init__(self, client, stop, until_trained=None, max_ahead=None, every=0.05,
                 name="the next stage", what="examples_trained"):
        self.client, self.stop, self.name, self.what = client, stop, name, what
        self.until_trained, self.max_ahead, self.every = until_trained, max_ahead, every
        self.trained = None                    # its examples_trained at the last answer
        self.started = None                    # its process's start (a restart: a new value)
        self.base = 0                          # examples handed off before it last restarted
        self.restarted = False                 # seen, and not yet counted into base
        self.waited = 0.0                      # seconds wait_for_room spent
        self.changed = threading.Condition()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="next-stage")
        self._thread.start()

    def _poll(self):
        while not self.stop.wait(self.every):
            try:
                status = self.client.status()
                trained = operator.index(status[self.what])        # not a count: TypeError
            except (synthgrad.PeerError, KeyError, TypeError):     # down for now: ask again
                continue
            with self.changed:                 # restarted: what it trained since its last
                if self.trained is not None and (    # checkpoint, or held, is never trained
                        trained < self.trained or status.get("started") != self.started):
                    log.info("%s restarted (%s %s -> %s): the lead counts from here",
                             self.name, self.what, f"{self.trained:,}", f"{trained:,}")
                    self.restarted = True
                self.trained, self.started = trained, status.get("started")
                self.changed.notify_all()
            if self.until_trained is not None and trained >= self.until_trained:
                log.info("%s has trained %s: %s (--until-trained): stopping",
                         self.name, self.what, f"{trained:,}")
                self.stop.set()
        with self.changed:
            self.changed.notify_all()
        self.client.close()

    def wait_for_room(self, handed_off):
        """With max_ahead: wait while handed_off - the next stage's examples_trained is over
        max_ahead (or it has not answered yet), until stop is set; counted from its last restart.
        Returns at once otherwise."""
        if self.max_ahead is None:
            return
        t0 = time.monotonic()
        with self.changed:
            while not self.stop.is_set() and (self.trained is None or
                                              handed_off - self.base - self.trained >
                                              self.max_ahead):
                if self.restarted:             # its lead now: none
                    self.base, self.restarted = handed_off - self.trained, False
                    continue
                self.changed.wait(self.every)
        self.waited += time.monotonic() - t0


def watch(config, stop, until_trained, what="examples_trained"):
    """Start a NextStage on config.output_url with config.max_ahead and the budget until_trained
    (None: none), or one of its own for the budget on config.until_url; returns the first."""
    def started(url, until, ahead):
        return NextStage(synthgrad.OutputTrainerClient(url, token=config.token, timeout=2.0),
                         stop, until, ahead, name=url, what=what)
    elsewhere = until_trained is not None and config.until_url is not None
    if elsewhere:
        started(config.until_url, until_trained, None)
    return started(config.output_url, None if elsewhere else until_trained, config.max_ahead)
