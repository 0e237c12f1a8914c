"""Tests for parts/server.py and parts/options.py: the pieces that need no app (the apps are tested through the servers).

Run: .venv/bin/pytest -q tests/test_serving.py
"""

import argparse
import os
import sys
import threading
import time

import pytest

import live
import train_output
from helpers import escapes_interrupt
from parts import options, server


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_lower_thread_priority_lowers_only_the_calling_thread():
    main_tid = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, main_tid)
    seen = {}

    def worker():
        tid = threading.get_native_id()
        start = os.getpriority(os.PRIO_PROCESS, tid)
        seen["done"] = options.lower_thread_priority(3)
        seen["delta"] = os.getpriority(os.PRIO_PROCESS, tid) - start
        seen["off"] = options.lower_thread_priority(0)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == {"done": True, "delta": min(3, 19 - before), "off": False}
    assert os.getpriority(os.PRIO_PROCESS, main_tid) == before


# --- TrainingServer: the lifecycle both servers share, on a toy server ---------------------------

class Toy(server.TrainingServer):
    """Counts its passes; 'holds' nothing until told to; checkpoints its pass count."""

    role, title = "toy", "toy server"
    idle_wait = 0.01
    FLATTEN = {"inner": "inner_"}

    def __init__(self, **config):
        self.ready = threading.Event()
        self.events = []
        super().__init__({"checkpoint": None, "checkpoint_interval": 30.0, "resume": False,
                          "nice": 0, "max_body_bytes": 4096, "token": None, **config})

    def train_pass(self):
        if not self.ready.is_set():
            return False
        self.counts["passes"] += 1
        return True

    def examples_held(self):
        return 7

    def status_fields(self):
        return {"inner": {"a": 1, "b": None}, "own": True}

    def save_checkpoint(self, path):
        self.events.append(("saved", self.counts["passes"]))
        with open(path, "w") as f:
            f.write(str(self.counts["passes"]))

    def resume(self, path):
        with open(path) as f:
            self.counts["passes"] = int(f.read())

    def on_stopped(self):
        self.events.append("stopped")

    def close(self):
        self.events.append("closed")


def test_training_thread_runs_passes_and_stops_with_a_last_checkpoint(tmp_path):
    toy = Toy(checkpoint=str(tmp_path / "toy.ckpt"))
    toy.start_training()
    toy.ready.set()
    deadline = time.monotonic() + 30                 # a guard against a hang only
    while toy.counts["passes"] < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    toy.stop_training()
    passes = toy.counts["passes"]
    assert passes >= 3
    assert toy.events[-3:] == ["stopped", ("saved", passes), "closed"]   # in this order
    resumed = Toy(checkpoint=str(tmp_path / "toy.ckpt"), resume=True)
    assert resumed.counts["passes"] == passes


def test_a_pass_that_raises_ends_training_said_with_no_last_checkpoint_of_a_torn_state(
        tmp_path, caplog):
    """The training thread died of any exception (a bug, a library's failure): the server went
    on answering /status and never trained again, and no launcher restarted it."""
    toy = Toy(checkpoint=str(tmp_path / "toy.ckpt"))
    toy.train_pass = lambda: 1 / 0
    toy.start_training()
    assert toy.failed.wait(30)                       # a guard against a hang only
    toy.stop_training()
    assert toy.events == ["closed"] and not (tmp_path / "toy.ckpt").exists()
    said = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in said] == [
        "toy: training failed; the server ends (its last checkpoint stands)"]
    assert said[0].exc_info[0] is ZeroDivisionError      # with its traceback


def test_a_pass_that_outlives_the_stop_is_said_and_no_save_is_made_beside_it(tmp_path, caplog):
    """It skipped the final save without a word: a missing layers23_final.npz, unexplained."""
    toy = Toy(checkpoint=str(tmp_path / "toy.ckpt"))
    release, inside = threading.Event(), threading.Event()
    toy.train_pass = lambda: inside.set() or release.wait(30)
    toy.start_training()
    assert inside.wait(30)                           # a guard against a hang only
    toy.stop_training(timeout=0.1)
    release.set()
    assert toy.events == ["closed"] and not (tmp_path / "toy.ckpt").exists()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "toy: its pass did not end within 0.1 s; no final weights or last checkpoint (the one "
        "before stands)"]


def test_resume_without_a_checkpoint_path_is_refused():
    with pytest.raises(ValueError, match="--resume needs --checkpoint"):
        Toy(resume=True)


def test_stop_before_start_only_closes():
    toy = Toy()
    toy.stop_training()
    assert toy.events == ["closed"] and toy.stop.is_set()


def test_status_and_metrics_share_the_basic_fields_and_flatten_the_servers_own():
    toy = Toy()
    status = toy.status()
    assert status["role"] == "toy" and status["examples_held"] == 7
    assert status["training_passes"] == 0 and status["diverged"] is False
    assert status["inner"] == {"a": 1, "b": None} and status["own"] is True
    line = toy.metrics()
    assert line["inner_a"] == 1 and line["inner_b"] is None and "inner" not in line
    assert not {"role", "uptime_s", "requests_served", "requests_refused"} & set(line)
    assert line["examples_held"] == 7 and line["own"] is True


def test_make_app_serves_status_json_errors_and_the_token():
    toy = Toy(token="s3cret")
    app = server.make_app("toy", toy, "TOY")
    assert app.config["TOY"] is toy and app.extensions[server.STATE] is toy
    client = app.test_client()
    refused = client.get("/status")
    assert refused.status_code == 401 and "token" in refused.get_json()["error"]
    ok = client.get("/status", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.get_json()["role"] == "toy"
    missing = client.get("/nowhere", headers={"Authorization": "Bearer s3cret"})
    assert missing.status_code == 404 and missing.get_json()["error"]
    assert toy.counts["requests_served"] == 1 and toy.counts["requests_refused"] == 2


def test_a_server_run_in_a_thread_stops_on_its_event_as_on_sigterm(tmp_path, capsys):
    """What a Ray actor does (runner/raychain.py): a script's main in a thread, where no signal
    reaches it, stopped by setting `stop`: it stops serving, stops training, writes its last
    metrics line and returns 0; the port is free again."""
    import socket

    import requests

    import train_output
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop, result = threading.Event(), {}
    metrics = tmp_path / "out.jsonl"
    thread = threading.Thread(target=lambda: result.setdefault("code", train_output.main(
        ["--port", str(port), "--no-live", "--report-every", "0", "--metrics", str(metrics)],
        stop=stop)))
    thread.start()
    url = f"http://127.0.0.1:{port}/status"
    deadline = time.monotonic() + 60                 # a guard against a hang, not a timing
    while time.monotonic() < deadline:
        try:
            assert requests.get(url, timeout=5).json()["role"] == "output_trainer"
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    stop.set()
    thread.join(60)
    assert not thread.is_alive() and result == {"code": 0}
    assert "final status:" in capsys.readouterr().out
    assert metrics.read_text().strip()                    # the last metrics line
    with socket.socket() as s:          # released: a restart can bind it (as waitress binds,
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # past TIME_WAIT)
        s.bind(("127.0.0.1", port))


def test_a_server_whose_training_fails_ends_and_returns_1(monkeypatch, capsys):
    """Its launcher (or Ray) restarts a process that ends 1 from its checkpoint; one that
    answers and never trains again it never sees."""
    def fail(self):
        raise RuntimeError("a library's failure")

    monkeypatch.setattr(train_output.OutputTrainer, "train_pass", fail)
    stop, result = threading.Event(), {}
    thread = threading.Thread(target=lambda: result.setdefault("code", train_output.main(
        ["--port", "0", "--no-live", "--report-every", "0"], stop=stop)))
    thread.start()
    thread.join(60)                                  # a guard against a hang, not a timing
    stop.set()
    assert not thread.is_alive() and result == {"code": 1}
    out = capsys.readouterr().out
    assert "output_trainer: training failed; the server ends" in out
    assert "RuntimeError: a library's failure" in out and "final status:" in out


# --- never open by default ----------------------------------------------------------------------

@pytest.mark.parametrize("parse", [train_output.parse_args, live.parse_args],
                         ids=["train_output.py", "live.py"])
def test_a_server_beyond_loopback_without_a_token_refuses_in_one_line(parse, capsys, caplog,
                                                                      monkeypatch):
    monkeypatch.delenv("SYNTHGRAD_TOKEN", raising=False)
    for host in ("0.0.0.0", "10.1.2.3", "somewhere.example"):
        with pytest.raises(SystemExit) as e:
            parse(["--host", host])
        assert e.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert f"--host {host} without a token would answer anyone" in error
        assert "SYNTHGRAD_TOKEN" in error and "--allow-no-token" in error
    for host in ("127.0.0.1", "127.0.0.5", "::1", "localhost"):      # only this machine
        assert parse(["--host", host]).host == host
    assert parse(["--host", "0.0.0.0", "--token", "s3cret"]).token == "s3cret"
    monkeypatch.setenv("SYNTHGRAD_TOKEN", "from-the-environment")
    assert parse(["--host", "10.1.2.3"]).token == "from-the-environment"
    monkeypatch.delenv("SYNTHGRAD_TOKEN")
    assert parse(["--host", "0.0.0.0", "--allow-no-token"]).allow_no_token   # said loudly
    assert "without a token (--allow-no-token)" in caplog.text


def test_the_settings_line_masks_the_token_and_leaves_out_an_oracle_that_is_not_there():
    """A co-located stage has no oracle: its start-up line (which a death line may quote from
    its log) does not name the --oracle-url default as if it were used."""
    args = argparse.Namespace(colocated=True, oracle_url="http://127.0.0.1:5001", token="s3",
                              port=0)
    line = options.printable(args)
    assert line == "colocated True, token ***, port 0"
    assert "oracle-url http://127.0.0.1:5001" in options.printable(
        argparse.Namespace(colocated=False, oracle_url="http://127.0.0.1:5001"))


def test_a_second_signal_while_a_server_saves_on_the_way_out_does_not_cut_the_save_short():
    """Ctrl-C twice, or the terminal's Ctrl-C then the launcher's SIGTERM: the second used to
    raise KeyboardInterrupt inside on_stop, and the final weights and checkpoint were lost."""
    import signal

    import flask

    from parts import http
    server, hand_over = http.listen("127.0.0.1", 0, "test.py", 1 << 20)
    hand_over(flask.Flask("test"))
    saving, saved = threading.Event(), threading.Event()

    def on_stop():
        saving.set()
        time.sleep(1.0)                                  # a wide network's last checkpoint
        saved.set()

    def press_twice():
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)
        if saving.wait(30):
            os.kill(os.getpid(), signal.SIGTERM)

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    escaped = escapes_interrupt(lambda: http.serve(server, "test", on_stop=on_stop), press_twice)
    assert saved.is_set() and not escaped
    assert {s: signal.getsignal(s) for s in before} == before      # pytest's again
