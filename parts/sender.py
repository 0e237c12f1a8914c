"""The trainers' outgoing queue (Sender): fire-and-forget delivery of per-example rows."""

import collections
import itertools
import logging
import math
import threading
import time

import numpy as np

from synthgrad import MAX_CHUNK, PeerError

log = logging.getLogger("synthgrad")
SENDER_LINGER = 0.01    # the trainers' senders wait this long for a chunk to fill (docs/speed.md)


def count_failure(sender, e, rows, what):
    """Count a request of `rows` rows that raised PeerError e. True: the peer refused them (a 4xx
    but 401; resending cannot help; kept as sender.refusal); False: failed, retry. Either is
    logged every sender.log_every s, not at every request."""
    if e.refused and e.status != 401:
        sender.counts["refused"] += rows
        sender.refused_in_a_row += rows
        sender.refusal = str(e)
        if time.monotonic() - sender.last_log >= sender.log_every:
            log.error("%s: peer refused %s, dropped them (%s; %s rows refused so far)",
                      sender.name, what, e, f"{sender.counts['refused']:,}")
            sender.last_log = time.monotonic()
        return True
    sender.counts["failed_requests"] += 1
    if time.monotonic() - sender.last_log >= sender.log_every:
        log.warning("%s: could not send %s, will retry (%s)", sender.name, what, e)
        sender.last_log = time.monotonic()
    return False


class Sender:
    """Fire-and-forget delivery of per-example rows to a peer, from a background thread.

    put(i, *arrays) never waits; a newer row for an unsent index replaces the older
    (`superseded`: the receiver keeps only the latest anyway). The thread posts up to `chunk`
    rows with send(i, *arrays), lingering up to `linger` s for a chunk to fill, and retries with
    back-off while the peer is down. Beyond `max_pending` indices new rows are `dropped`.
    """

    COUNTS = ("sent", "superseded", "dropped", "refused", "failed_requests", "unsent")

    def __init__(self, send, name, chunk=MAX_CHUNK, max_pending=250_000, max_backoff=2.0,
                 linger=0.0):
        self._send = send
        self.name = name
        self.chunk = chunk
        self.linger = linger
        self.max_pending = max_pending
        self.max_backoff = max_backoff
        self.log_every = 10.0                   # seconds between "will retry" lines
        self._pending = {}                      # index -> (block id, row), oldest first
        self._blocks = {}                       # block id -> its arrays (copies of a put's)
        self._live = {}                         # block id -> how many of its rows are pending
        self._next_block = 0
        self._rows_held = 0                     # rows in the blocks kept, pending or not
        self._in_flight = 0                     # rows taken by a request not yet answered
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.counts = collections.Counter(dict.fromkeys(self.COUNTS, 0))
        self.last_log = -math.inf
        self.refusal = None                     # the last refusal's reason
        self.refused_in_a_row = 0               # rows refused since the peer last took any
        self._thread = threading.Thread(target=self._run, name=f"sender-{name}", daemon=True)
        self._thread.start()

    def put(self, i, *arrays):
        """Queue rows arrays[k][j] for example i[j]; returns immediately."""
        block = [np.array(a, copy=True) for a in arrays]    # the caller may reuse its arrays
        with self._lock:
            self._add(np.asarray(i).tolist(), block, replace=True)
        self._wake.set()

    def pending(self):
        with self._lock:
            return len(self._pending)

    # The buffer: each put's rows stay in one block (one copy); _pending maps an index to (block
    # id, row) of its newest unsent row, oldest first; a block is freed when none is pending.

    def _add(self, indices, block, replace):
        """Make block's rows the pending ones for `indices` (under the lock); replace: the new
        row supersedes a pending one (put), else the pending one wins (give back)."""
        pending, bid = self._pending, self._next_block
        self._next_block += 1
        live = superseded = dropped = 0
        for j, index in enumerate(indices):
            old = pending.get(index)
            if old is not None:
                superseded += 1
                if not replace:
                    continue
                if old[0] == bid:                   # the same index twice in one put
                    live -= 1
                else:
                    self._release(old[0], 1)
            elif len(pending) >= self.max_pending:
                dropped += 1
                continue
            pending[index] = (bid, j)
            live += 1
        if live:
            self._blocks[bid] = block
            self._live[bid] = live
            self._rows_held += len(indices)
        self.counts["superseded"] += superseded
        self.counts["dropped"] += dropped
        if self._rows_held > 4 * (len(pending) + self.chunk):
            self._compact()

    def _release(self, bid, n):
        self._live[bid] -= n
        if self._live[bid] == 0:
            del self._live[bid]
            self._rows_held -= len(self._blocks.pop(bid)[0])

    def _gather(self, entries):
        """(i, columns) for entries [(index, (block id, row))], oldest block first, released."""
        i = np.fromiter((index for index, _ in entries), np.int64, len(entries))
        bids = np.fromiter((where[0] for _, where in entries), np.int64, len(entries))
        rows = np.fromiter((where[1] for _, where in entries), np.int64, len(entries))
        order = np.argsort(bids, kind="stable")
        i, bids, rows = i[order], bids[order], rows[order]
        bounds = [0, *(np.flatnonzero(np.diff(bids)) + 1).tolist(), len(bids)]
        parts = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            bid = int(bids[a])
            parts.append([column[rows[a:b]] for column in self._blocks[bid]])
            self._release(bid, b - a)
        return i, [np.concatenate(column) for column in zip(*parts, strict=True)]

    def _compact(self):
        """Copy the pending rows into one block: memory stays a few times what is pending."""
        entries = list(self._pending.items())
        self._pending.clear()
        i, columns = self._gather(entries)
        self._add(i.tolist(), columns, replace=True)

    def _take(self):
        """Up to `chunk` pending rows, oldest first, as (i, columns); None if nothing is pending."""
        with self._lock:
            entries = list(itertools.islice(self._pending.items(), self.chunk))
            if not entries:
                return None
            for index, _ in entries:
                del self._pending[index]
            return self._gather(entries)

    def _give_back(self, i, columns):
        """Return unsent rows to the buffer, unless a newer row for the index arrived meanwhile."""
        with self._lock:
            self._add(i.tolist(), columns, replace=False)

    def _run(self):
        delay = 0.05
        while not self._stop.is_set():
            if self.linger > 0 and 0 < self.pending() < self.chunk:
                self._stop.wait(self.linger)        # let more rows join this chunk
            taken = self._take()
            if taken is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            i, columns = taken
            try:
                self._send_counted(i, columns)
                delay = 0.05
            except PeerError as e:
                if count_failure(self, e, len(i), self.describe(i, columns)):
                    continue                        # the rows themselves are bad
                self._give_back(i, columns)
                self._stop.wait(delay)
                delay = min(self.max_backoff, delay * 2)

    def describe(self, i, columns):
        """What a request holds, for the log."""
        return f"{len(i)} rows"

    def _send_counted(self, i, columns):
        """One request; its rows are in flight (unsent, if it never ends), then sent."""
        self._in_flight = len(i)
        try:
            self._send(i, *columns)
        finally:
            self._in_flight = 0
        self.counts["sent"] += len(i)
        self.refused_in_a_row = 0

    def close(self, flush_timeout=5.0):
        """Stop the thread, then send what is pending within flush_timeout seconds (nothing if a
        silent peer holds the thread in a request); the rest is counted as `unsent`."""
        deadline = time.monotonic() + flush_timeout
        self._stop.set()
        self._wake.set()
        self._thread.join(flush_timeout)
        if self._thread.is_alive():                 # stuck in a request to a silent peer
            if flush_timeout > 0:
                log.warning("%s: the peer has not answered for %.1f s; not waiting for it",
                            self.name, flush_timeout)
        else:
            flusher = threading.Thread(target=self._flush, args=(deadline,), daemon=True,
                                       name=f"flush-{self.name}")
            flusher.start()
            flusher.join(max(0.0, deadline - time.monotonic()))
        self.counts["unsent"] = self.pending() + self._in_flight
        if self.counts["unsent"]:
            log.warning("%s: %d rows could not be sent before shutdown", self.name,
                        self.counts["unsent"])
        return dict(self.counts)

    def _flush(self, deadline):
        """close()'s last sends, on a thread of their own so that close() can stop waiting."""
        while time.monotonic() < deadline:
            taken = self._take()
            if taken is None:
                break
            i, columns = taken
            try:
                self._send_counted(i, columns)
            except PeerError as e:
                self._give_back(i, columns)
                log.warning("%s: flush at shutdown failed (%s)", self.name, e)
                break
