"""Tests for serving.py's pieces that need no app (the apps are tested through the servers).

Run: .venv/bin/pytest -q tests/test_serving.py
"""

import os
import sys
import threading

import pytest

import serving


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_lower_thread_priority_lowers_only_the_calling_thread():
    main_tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, main_tid)
    seen = {}

    def worker():
        tid = threading.get_native_id()
        start = os.getpriority(os.PRIO_PROCESS, tid)
        seen["done"] = serving.lower_thread_priority(3)
        seen["delta"] = os.getpriority(os.PRIO_PROCESS, tid) - start
        seen["off"] = serving.lower_thread_priority(0)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == {"done": True, "delta": min(3, 19 - before), "off": False}
    assert os.getpriority(os.PRIO_PROCESS, main_tid) == before
