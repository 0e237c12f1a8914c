"""A script's main run in a thread of a process that is not its own (a Ray actor), where no
signal can reach it: a threading.Event stops it as SIGTERM would (http.serve's and the
scripts' main's `stop`). In a script's own process: the signals that stop it, and a thread's
error that ends it.
"""

import contextlib
import os
import signal
import threading

from waitress import wasyncore


class _Ender(wasyncore.file_dispatcher):
    """The read end of a pipe in waitress's loop: a byte on it ends the loop, as Ctrl-C does
    (wasyncore re-raises KeyboardInterrupt; the server's run() returns on it)."""

    def writable(self):
        return False

    def handle_read(self):
        raise KeyboardInterrupt


def end_when_set(server, event):
    """End `server`'s loop (waitress, listening, not yet run) once `event` is set; returns a
    function that releases the pipe once the loop has ended (the event is left as it is)."""
    read_end, write_end = os.pipe()
    ender = _Ender(read_end, map=server._map)      # file_dispatcher keeps a dup of read_end
    os.close(read_end)
    released = threading.Event()

    def wait():                                     # the pipe's write end is this thread's
        while not released.is_set():
            if event.wait(0.2):
                try:
                    os.write(write_end, b"x")
                except OSError:                     # released meanwhile: the loop had ended
                    pass
                break
        os.close(write_end)

    threading.Thread(target=wait, daemon=True, name="stop-event").start()

    def release():
        released.set()
        ender.close()
    return release


def set_when_set(source, target):
    """Set the threading.Event `target` once `source` is set (a thread that waits)."""
    threading.Thread(target=lambda: (source.wait(), target.set()), daemon=True,
                     name="stop-event").start()


def fail_on_thread_errors(failed, stop=None):
    """An exception that ends any thread of this process (a bug, a library's failure) sets the
    Events `failed` and `stop`, after its traceback: the script ends with exit 1, as if its main
    thread had raised, instead of running on without that thread (stale weights, no metrics)."""
    def hook(args):
        threading.__excepthook__(args)
        failed.set()
        if stop is not None:
            stop.set()
    threading.excepthook = hook


def stop_signals():
    """The signals that stop a script as Ctrl-C does: SIGTERM, SIGINT, and SIGHUP (its terminal
    closed: it saves what it holds) unless that is ignored (nohup: meant to outlive it)."""
    hup = () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
    return (signal.SIGTERM, signal.SIGINT, *hup)


@contextlib.contextmanager
def signals_ignored():
    """stop_signals() ignored inside, on the main thread (elsewhere none reaches us): a second
    Ctrl-C or SIGTERM cannot cut short the saving or stopping that the first one began."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = stop_signals()
    before = [signal.signal(s, signal.SIG_IGN) for s in signals]
    try:
        yield
    finally:
        for s, handler in zip(signals, before, strict=True):
            signal.signal(s, handler)
