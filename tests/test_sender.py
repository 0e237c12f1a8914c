"""Tests for sender.py: the background Sender with a fake send function (no network).

Run: .venv/bin/pytest -q tests/test_sender.py
"""

import threading
import time

import numpy as np
import pytest

import synthgrad
from helpers import wait_for
from parts import sender
from synthgrad import PeerError

W = synthgrad.HIDDEN_SIZE   # 24


class FakeSend:
    """A send(i, *columns) that records copies of what it was given.

    fail_first: the first this-many calls raise PeerError. fail_if: a function of no arguments;
    while it returns True, calls raise PeerError. gate: if given, every call first waits for
    this Event (so a test can hold the sender thread inside send).
    """

    def __init__(self, fail_first=0, fail_if=None, gate=None):
        self.fail_first = fail_first
        self.fail_if = fail_if
        self.gate = gate
        self.calls = []              # (i, *columns) of every successful call
        self.attempts = 0
        self.entered = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, i, *columns):
        with self._lock:
            self.attempts += 1
            attempt = self.attempts
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(5.0), "test never opened the gate"
        if attempt <= self.fail_first or (self.fail_if is not None and self.fail_if()):
            raise PeerError(f"fake peer down (attempt {attempt})")
        with self._lock:
            self.calls.append((np.array(i), *(np.array(c) for c in columns)))

    def delivered(self):
        """{index: tuple of rows} over all successful calls (later calls win)."""
        with self._lock:
            out = {}
            for i, *columns in self.calls:
                for j, index in enumerate(i.tolist()):
                    out[index] = tuple(c[j] for c in columns)
            return out

    def rows_sent(self):
        with self._lock:
            return sum(len(call[0]) for call in self.calls)


@pytest.fixture
def senders():
    """Make Senders that are closed at the end of the test even if it fails."""
    made = []

    def make(send, **kwargs):
        kwargs.setdefault("max_backoff", 0.01)
        s = sender.Sender(send, "test", **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close(flush_timeout=0.5)


def test_sender_with_linger_gathers_small_puts_into_one_request(senders):
    send = FakeSend()
    sender = senders(send, chunk=100, linger=0.5)
    for k in range(5):                              # five minibatches of 10, back to back
        sender.put(np.arange(10 * k, 10 * k + 10), np.full((10, W), float(k)))
    wait_for(lambda: send.rows_sent() == 50)
    assert [len(call[0]) for call in send.calls] == [50]
    assert sender.close()["sent"] == 50


def test_sender_with_linger_sends_a_full_chunk_at_once(senders):
    send = FakeSend()
    sender = senders(send, chunk=10, linger=30.0)   # a linger it must not wait for
    t0 = time.monotonic()
    sender.put(np.arange(25), np.zeros((25, W)))
    wait_for(lambda: send.rows_sent() >= 20)
    assert time.monotonic() - t0 < 5.0
    assert [len(call[0]) for call in send.calls][:2] == [10, 10]


def test_sender_delivers_everything_in_chunks(senders):
    rng = np.random.default_rng(8)
    send = FakeSend()
    sender = senders(send, chunk=5)
    i, h, g = np.arange(100, 123), rng.standard_normal((23, W)), rng.standard_normal((23, W))
    sender.put(i, h, g)
    wait_for(lambda: send.rows_sent() == 23)
    assert all(1 <= len(call[0]) <= 5 for call in send.calls)
    assert all(call[1].shape == (len(call[0]), W) for call in send.calls)
    got = send.delivered()
    assert sorted(got) == i.tolist()
    for j, index in enumerate(i):
        np.testing.assert_array_equal(got[index][0], h[j])
        np.testing.assert_array_equal(got[index][1], g[j])
    counts = sender.close()
    assert counts["sent"] == 23
    assert counts["superseded"] == counts["dropped"] == counts["failed_requests"] == 0
    assert counts["unsent"] == 0


def test_sender_newer_row_supersedes_an_unsent_one(senders):
    gate = threading.Event()
    send = FakeSend(gate=gate)
    sender = senders(send)
    sender.put([0], np.array([[0.0]]))
    assert send.entered.wait(5.0)          # the thread now holds row 0 inside send
    sender.put([1, 2], np.array([[1.0], [2.0]]))
    sender.put([1], np.array([[11.0]]))    # replaces the unsent row for index 1
    assert sender.counts["superseded"] == 1
    assert sender.pending() == 2
    gate.set()
    wait_for(lambda: send.rows_sent() == 3)
    got = send.delivered()
    assert {k: v[0].tolist() for k, v in got.items()} == {0: [0.0], 1: [11.0], 2: [2.0]}
    counts = sender.close()
    assert counts["sent"] == 3 and counts["superseded"] == 1


def test_sender_copies_the_rows_and_keeps_the_last_of_an_index_put_twice(senders):
    gate = threading.Event()
    send = FakeSend(gate=gate)
    sender = senders(send)
    sender.put([99], np.array([[0.0]]))
    assert send.entered.wait(5.0)          # hold the thread so the next puts stay pending
    x, y = np.array([[1.0], [2.0], [3.0]]), np.array([10.0, 20.0, 30.0])
    sender.put([5, 6, 5], x, y)            # index 5 twice in one put: the later row wins
    x[:], y[:] = -1.0, -1.0                # the caller reuses its arrays
    assert sender.pending() == 2 and sender.counts["superseded"] == 1
    gate.set()
    wait_for(lambda: send.rows_sent() == 3)
    got = send.delivered()
    assert {k: (v[0].tolist(), float(v[1])) for k, v in got.items() if k != 99} == {
        5: ([3.0], 30.0), 6: ([2.0], 20.0)}
    assert sender.close()["sent"] == 3


def test_sender_buffer_memory_stays_bounded_when_rows_are_superseded(senders):
    # Each put's rows are kept as one block; a block whose rows were nearly all superseded
    # must not stay alive because of one pending row. Rows 0..99 are put over and over, each
    # put covering a sliding window, while the peer is down.
    send = FakeSend(fail_if=lambda: True)
    sender = senders(send, chunk=10, max_backoff=10.0)
    for k in range(300):
        idx = (np.arange(10) + 7 * k) % 100
        sender.put(idx, np.full((10, 2), float(k)))
    with sender._lock:
        held = sender._rows_held
        pending = dict(sender._pending)
        newest = {index: sender._blocks[bid][0][row, 0] for index, (bid, row) in pending.items()}
    assert len(pending) <= 100
    assert held <= 4 * (100 + 10) + 10
    for index, value in newest.items():     # every pending row is the newest put for its index
        assert value == max(k for k in range(300) if index in (np.arange(10) + 7 * k) % 100)


def test_sender_keeps_rows_while_the_peer_is_down_and_retries(senders):
    send = FakeSend(fail_first=3)
    sender = senders(send, chunk=10)
    rows = np.arange(10 * W, dtype=float).reshape(10, W)
    sender.put(np.arange(10), rows)
    wait_for(lambda: send.rows_sent() == 10)
    assert send.attempts == 4
    got = send.delivered()
    for k in range(10):
        np.testing.assert_array_equal(got[k][0], rows[k])
    counts = sender.close()
    assert counts["failed_requests"] == 3
    assert counts["sent"] == 10 and counts["unsent"] == 0 and counts["dropped"] == 0


def test_sender_row_put_during_a_failed_send_wins(senders):
    gate = threading.Event()
    send = FakeSend(fail_first=1, gate=gate)
    sender = senders(send)
    sender.put([5], np.array([[1.0]]))
    assert send.entered.wait(5.0)          # the first (failing) send holds the old row
    sender.put([5], np.array([[2.0]]))     # a newer row arrives meanwhile
    gate.set()
    wait_for(lambda: send.rows_sent() == 1)
    assert send.delivered()[5][0].tolist() == [2.0]
    counts = sender.close()
    assert counts["superseded"] == 1 and counts["failed_requests"] == 1 and counts["sent"] == 1


def test_sender_drops_new_indices_beyond_max_pending(senders):
    gate = threading.Event()
    send = FakeSend(gate=gate)
    sender = senders(send, max_pending=3)
    sender.put([100], np.array([[100.0]]))
    assert send.entered.wait(5.0)          # the buffer is empty again; the thread is busy
    sender.put(np.arange(5), np.arange(5.0).reshape(5, 1))   # 0, 1, 2 fit; 3, 4 do not
    assert sender.counts["dropped"] == 2 and sender.pending() == 3
    sender.put([1], np.array([[10.0]]))    # an index already pending is still replaced
    assert sender.counts["dropped"] == 2 and sender.counts["superseded"] == 1
    gate.set()
    wait_for(lambda: send.rows_sent() == 4)
    got = send.delivered()
    assert {k: v[0].tolist() for k, v in got.items()} == {100: [100.0], 0: [0.0], 1: [10.0],
                                                          2: [2.0]}


def test_sender_close_flushes_what_is_pending(senders):
    # The peer refuses the background thread but answers close()'s flush, so it is close() that
    # must deliver the rows, in chunks.
    def from_sender_thread():
        return threading.current_thread().name.startswith("sender-")

    send = FakeSend(fail_if=from_sender_thread)
    sender = senders(send, chunk=4)
    sender.put(np.arange(10), np.ones((10, 2)))
    wait_for(lambda: sender.counts["failed_requests"] >= 1)
    assert send.rows_sent() == 0
    counts = sender.close(flush_timeout=5.0)
    assert counts["sent"] == 10 and counts["unsent"] == 0
    assert sorted(send.delivered()) == list(range(10))
    assert all(len(call[0]) <= 4 for call in send.calls)


def test_sender_close_reports_unsent_rows_when_the_peer_stays_down(senders):
    send = FakeSend(fail_if=lambda: True)
    sender = senders(send)
    sender.put(np.arange(7), np.ones((7, 3)))
    wait_for(lambda: sender.counts["failed_requests"] >= 2)
    t0 = time.monotonic()
    counts = sender.close(flush_timeout=1.0)
    assert time.monotonic() - t0 < 2.0
    assert counts["unsent"] == 7 and counts["sent"] == 0
    assert sender.pending() == 7
    assert send.rows_sent() == 0


def test_sender_close_does_not_wait_for_a_peer_that_never_answers(senders):
    # A peer that accepts the connection and never answers holds the sender's thread inside a
    # request (until the client's 10 s timeout): close() must give up after flush_timeout and
    # count what was in flight and pending as unsent, not hang with the peer.
    release = threading.Event()

    def silent(i, *columns):
        release.wait(30)
        raise PeerError("silent peer: timed out")

    sender = senders(silent, chunk=4)
    try:
        sender.put(np.arange(10), np.ones((10, 2)))
        wait_for(lambda: sender._in_flight == 4)
        t0 = time.monotonic()
        counts = sender.close(flush_timeout=0.5)
        took = time.monotonic() - t0
    finally:
        release.set()
    assert took < 1.5, took
    assert counts["unsent"] == 10 and counts["sent"] == 0


def test_refusals_are_counted_kept_and_said_once_in_log_every_not_per_request(senders, caplog):
    def refuse(i, *columns):
        raise PeerError(f"peer at http://x/training_example answered 400: rows {len(i)}", 400)

    caplog.set_level("ERROR", logger="synthgrad")
    sender = senders(refuse, chunk=10)
    for k in range(5):                               # five requests, every one refused
        sender.put(np.arange(10 * k, 10 * k + 10), np.zeros((10, W)))
        wait_for(lambda k=k: sender.counts["refused"] == 10 * (k + 1))
    assert sender.refusal == "peer at http://x/training_example answered 400: rows 10"
    said = [r.getMessage() for r in caplog.records if "peer refused" in r.getMessage()]
    assert len(said) == 1 and "10 rows refused so far" in said[0], said
    assert sender.close()["refused"] == 50 and sender.refused_in_a_row == 50


def test_refused_in_a_row_counts_from_the_last_rows_the_peer_took(senders):
    refusing = threading.Event()

    def send(i, *columns):
        if refusing.is_set():
            raise PeerError("peer at http://x/training_example answered 400: width", 400)

    sender = senders(send, chunk=10)
    sender.put(np.arange(10), np.zeros((10, W)))
    wait_for(lambda: sender.counts["sent"] == 10)
    refusing.set()
    for k in range(1, 4):
        sender.put(np.arange(10 * k, 10 * k + 10), np.zeros((10, W)))
        wait_for(lambda k=k: sender.counts["refused"] == 10 * k)
    assert sender.refused_in_a_row == 30
    refusing.clear()                                 # it takes rows again: the count starts over
    sender.put(np.arange(40, 50), np.zeros((10, W)))
    wait_for(lambda: sender.counts["sent"] == 20)
    assert sender.refused_in_a_row == 0 and sender.counts["refused"] == 30
