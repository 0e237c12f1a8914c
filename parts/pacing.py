"""How far a chain's first stage may run ahead of the next one, and when its work is done.

train_input.py streams as fast as its core allows while the next stage trains at its own pace;
NextStage polls that stage's GET /status ("examples_trained") for train_input.py's
--until-trained N (stop once it has trained on N examples: the same work on a busy machine) and
--max-ahead M (wait while more than M handed-off examples are untrained).
"""

import logging
import operator
import threading
import time

import synthgrad

log = logging.getLogger("train_input")


class NextStage:
    """The next stage's examples_trained, polled every `every` seconds from when it is made until
    stop is set, with a synthgrad.OutputTrainerClient of its own (the sender's is busy)."""

    def __init__(self, client, stop, until_trained=None, max_ahead=None, every=0.05,
                 name="the next stage", what="examples_trained"):
        self.client, self.stop, self.name, self.what = client, stop, name, what
        self.until_trained, self.max_ahead, self.every = until_trained, max_ahead, every
        self.trained = None                    # its examples_trained at the last answer
        self.waited = 0.0                      # seconds wait_for_room spent
        self.changed = threading.Condition()
        self._thread = threading.Thread(target=self._poll, daemon=True, name="next-stage")
        self._thread.start()

    def _poll(self):
        while not self.stop.wait(self.every):
            try:
                trained = operator.index(self.client.status()[self.what])   # not a count: TypeError
            except (synthgrad.PeerError, KeyError, TypeError):     # down for now: ask again
                continue
            with self.changed:
                self.trained = trained
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
        max_ahead (or it has not answered yet), until stop is set. Returns at once otherwise."""
        if self.max_ahead is None:
            return
        t0 = time.monotonic()
        with self.changed:
            while not self.stop.is_set() and (
                    self.trained is None or handed_off - self.trained > self.max_ahead):
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
