"""Tests for launch.py and processes.py: the pieces of a launch, the command lines it gives
each process, and plain backprop in-process checked step for step against sgd.train_step by hand (and, with
optimizer "adam", against sgd.backprop and optimizers.Adam by hand).

Run: .venv/bin/pytest -q tests/test_launch.py
"""

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import generate
import sgd
import synthgrad
from helpers import decoupled_argvs, escapes_interrupt, wait_for
from parts import children, optimizers, snapshots
from runner import launch, processes
from runner.processes import Proc

BACKPROP_SHAPES = [(2, 24), (24, 12), (12, 1)]


# --- Run folders, data, child processes. -------------------------------------------------------

def test_new_run_dir_uses_the_given_folder_or_makes_a_dated_one(tmp_path, monkeypatch):
    given = tmp_path / "a" / "b"
    assert launch.new_run_dir(given) == given.resolve() and given.is_dir()
    monkeypatch.setattr(launch, "TOP", tmp_path)
    made = launch.new_run_dir(None, "bench-")
    assert made.is_dir() and made.parent == (tmp_path / "runs").resolve()
    assert made.name.startswith("bench-") and made.name[len("bench-"):].replace("-", "").isdigit()


def test_runs_started_in_the_same_second_get_folders_of_their_own(tmp_path, monkeypatch):
    """Seeds run in parallel by a shell loop (`make demo ARGS=--seed $s &`) start together."""
    monkeypatch.setattr(launch, "TOP", tmp_path)
    monkeypatch.setattr(launch.time, "strftime", lambda f: f.replace("%Y%m%d-%H%M%S", "1-2"))
    (tmp_path / "runs" / "demo-1-2-3").mkdir(parents=True)       # a run's, or a file: not taken
    made = [launch.new_run_dir(None, "demo-") for _ in range(4)]
    assert [m.name for m in made] == ["demo-1-2", "demo-1-2-2", "demo-1-2-4", "demo-1-2-5"]
    assert all(m.is_dir() for m in made) and not any((tmp_path / "runs" / "demo-1-2-3").iterdir())


LAUNCHER = """
import os, sys, time
from parts import children
ck, progress, log = sys.argv[1:]
server = children.Process("output trainer", children.script_argv(
    "train_output.py", "--port", "0", "--no-live", "--progress-dir", progress,
    "--checkpoint", ck, "--checkpoint-interval", "1000"), log, dict(os.environ))
server.wait_url(120)
print(server.popen.pid, flush=True)
time.sleep(600)
"""


def gone(pid):
    """No such process, or a zombie (ended, its new parent not reaping it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_server_whose_launcher_is_killed_with_sigkill_stops_as_on_sigterm(tmp_path):
    """demo.py killed with SIGKILL (kill -9, the OOM killer) left its oracle and output trainer
    training on for ever, orphaned; each now stops as on SIGTERM, its last checkpoint written."""
    ck = tmp_path / "ck.npz"
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(ck), str(tmp_path / "p"),
                                 str(tmp_path / "out.log")], cwd=children.TOP,
                                stdout=subprocess.PIPE, text=True, env=launch.child_env())
    server = None
    try:
        server = int(launcher.stdout.readline())
        assert not gone(server) and not ck.exists()
        launcher.kill()
        launcher.wait()
        wait_for(lambda: gone(server), 60)           # a guard against a hang, not a timing
        assert ck.exists()                            # its SIGTERM path: the last checkpoint
    finally:
        launcher.kill()
        if server is not None and not gone(server):
            os.kill(server, signal.SIGKILL)


def test_generate_data_writes_the_seeded_data_set(tmp_path):
    env = launch.child_env()
    assert env["TF_CPP_MIN_LOG_LEVEL"] == "2" and env["PYTHONUNBUFFERED"] == "1"
    launch.generate_data(tmp_path / "d", 50, 3, env, plot=False)
    x, y = generate.load_dataset(tmp_path / "d")
    want_x, want_y = generate.generate(50, 3)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, want_y)
    assert not list((tmp_path / "d").glob("*.png"))


def test_process_logs_its_output_knows_its_url_and_stops_on_sigterm(tmp_path):
    code = "import time; print('serving: listening on http://127.0.0.1:9 now'); time.sleep(60)"
    proc = children.Process("fake", [sys.executable, "-c", code], tmp_path / "fake.log",
                          launch.child_env())
    try:
        assert proc.wait_url(30) == "http://127.0.0.1:9"
    finally:
        assert proc.stop(timeout=10) == -15                 # SIGTERM, not SIGKILL
    assert "listening on http://127.0.0.1:9" in (tmp_path / "fake.log").read_text()


def test_process_that_exits_without_announcing_a_url_names_its_log(tmp_path):
    proc = children.Process("quiet", [sys.executable, "-c", "print('no luck')"],
                          tmp_path / "quiet.log", launch.child_env())
    with pytest.raises(SystemExit, match="quiet did not start; see .*quiet.log"):
        proc.wait_url(30)
    assert proc.stop() == 0


# --- Numbers and status lines. -----------------------------------------------------------------

def test_fmt_formats_numbers_and_says_dash_for_none():
    assert generate.fmt(0.0123456) == "0.0123"
    assert generate.fmt(250_000.0, ",.0f") == "250,000"
    assert generate.fmt(None, ".2f") == "-"


def test_status_line_shows_each_process_and_dashes_for_what_is_not_measured_yet():
    oracle = {"training_passes": 12, "last_train_mse": 0.0697,
              "synthetic_gradient_quality": {"cosine_similarity": 0.183}}
    output = {"examples_held": 20_000, "training_passes": 356, "last_train_mse": 0.0361}
    line = processes.status_line(45.2, ("input", {"examples": 341380, "examples_per_s": 9126.4}),
                                 [("output", "train_output.py", output),
                                  ("oracle", "oracle.py", oracle)])
    assert line == ("[  45 s] input:  341380 examples (9126/s) | output:  20000 held, 356 "
                    "passes, train MSE 0.0361 | oracle:  12 passes, loss 0.0697, "
                    "cosine(synthetic, true) 0.18")
    assert processes.status_line(0, ("input", {}), [("output", "train_output.py", {}), (
        "oracle", "oracle.py", {})]).endswith("loss -, cosine(synthetic, true) -")
    chain = processes.status_line(3, ("stage 1 @host1", {}), [
        ("stage 2", "train_middle.py", {"staleness_s": 0.25}), ("boundary 1", "oracle.py", None)])
    assert chain == ("[   3 s] stage 1 @host1:       0 examples (-/s) | stage 2:      0 held,   "
                     "0 passes, staleness 0.2 s | boundary 1: down")


class FakeClient:
    def __init__(self, status=None):
        self._status = status

    def status(self):
        if self._status is None:
            raise synthgrad.PeerError("http://127.0.0.1:9 is not answering")
        return self._status


def sleeper(seconds, code=0):
    """A command line that prints its arguments, sleeps, then exits with `code`."""
    return [sys.executable, "-c", f"import sys, time; print('started with', sys.argv[1:]); "
            f"sys.stdout.flush(); time.sleep({seconds}); sys.exit({code})"]


def text(path):
    return path.read_text() if path.exists() else ""


def proc(name, log, checkpoint=None):
    return Proc(name, "sleeper.py", (), name.replace(" ", ""), log, checkpoint)


def status_of(supervisor, metrics, oracle, output):
    """The demo's status line from a metrics file and two (fake) servers, as run() makes it."""
    def status(elapsed):
        latest = (snapshots.read_metrics(metrics) or [{}])[-1]
        return processes.status_line(elapsed, ("input", latest), [
            ("output", "train_output.py", processes.last_status(output)),
            ("oracle", "oracle.py", processes.last_status(oracle))])
    return status


@pytest.fixture
def supervisor():
    made = processes.Supervisor(processes.RestartPolicy(backoff=0.1), "test", launch.child_env())
    yield made
    made.stop_all()


def test_watch_prints_status_lines_until_the_input_trainer_exits(tmp_path, capsys, supervisor):
    (tmp_path / "in.jsonl").write_text('{"examples": 70, "examples_per_s": 7.0}\n')
    inp = supervisor.spawn(proc("input trainer", tmp_path / "in.log"), sleeper(0.5),
                           deadline=time.time() + 10)
    status = status_of(supervisor, tmp_path / "in.jsonl", FakeClient({}),
                       FakeClient({"examples_held": 5}))
    assert processes.watch(supervisor, "input trainer", time.monotonic() + 10, status,
                           every=0.1)[1] is None
    assert inp.popen.returncode == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) >= 2
    assert all(line.startswith("[") and "input:      70 examples (7/s)" in line
               and "output:      5 held" in line for line in lines)


def test_watch_says_when_a_server_does_not_answer(tmp_path, capsys, supervisor):
    supervisor.spawn(proc("input trainer", tmp_path / "in.log"), sleeper(0.3),
                     deadline=time.time() + 10)
    status = status_of(supervisor, tmp_path / "none.jsonl", FakeClient(None), FakeClient({}))
    assert processes.watch(supervisor, "input trainer", time.monotonic() + 10, status,
                           every=0.1)[1] is None
    assert "| oracle: down" in capsys.readouterr().out


def test_watch_stops_an_input_trainer_that_overruns_its_duration(tmp_path, capsys, supervisor,
                                                                 monkeypatch):
    monkeypatch.setattr(processes, "GRACE_S", 0.5)
    inp = supervisor.spawn(proc("input trainer", tmp_path / "in.log"), sleeper(60),
                           deadline=time.time() + 0.5)
    t0 = time.monotonic()
    status = status_of(supervisor, tmp_path / "none.jsonl", FakeClient({}), FakeClient({}))
    assert processes.watch(supervisor, "input trainer", t0 + 0.5, status, every=10)[1] is None
    assert time.monotonic() - t0 < 5 and inp.popen.returncode == -signal.SIGTERM
    assert "still running 0 s after its --duration; stopping it" in capsys.readouterr().out


# --- Supervising: a death named in one line, the process restarted or the run ended. -------------

def test_exit_description_and_restart_options():
    assert processes.exit_description(-9) == "killed by SIGKILL"
    assert processes.exit_description(3) == "exit code 3"
    argv = ["python", "x.py", "--port", "0", "--checkpoint", "c.npz"]
    assert processes.restart_options(argv, 4321, None) == ["python", "x.py", "--port", "4321",
                                                        "--checkpoint", "c.npz"]
    left = processes.restart_options(["--duration", "60"], deadline=time.time() + 20.04)
    assert left == ["--duration", "20.0"]                   # the time left, said once


def test_a_killed_process_is_named_in_one_line_and_restarted_on_its_port_from_its_checkpoint(
        tmp_path, capsys, supervisor):
    checkpoint = tmp_path / "s.npz"
    child = supervisor.spawn(proc("stage 2", tmp_path / "s.log", checkpoint),
                             [*sleeper(60), "--port", "0"])
    child.port = 4321                                # as wait_url would have learned it
    first = child.popen
    wait_for(lambda: "started with" in text(tmp_path / "s.log"))
    checkpoint.write_bytes(b"a checkpoint")
    first.kill()
    first.wait()
    assert supervisor.look() is None
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("test: stage 2 died (killed by SIGKILL) after 0 s; its log s.log "
                             "ends: started with ['--port', '0']. Restarting it in 0.1 s")
    wait_for(lambda: supervisor.look() is None and child.popen is not first)
    assert "test: stage 2 restarted from its checkpoint, on port 4321" in capsys.readouterr().out
    wait_for(lambda: "'--port', '4321', '--resume'" in text(tmp_path / "s.log"))
    assert "['--port', '0']" in (tmp_path / "s.log").read_text()      # the log goes on
    assert supervisor.restarts() == {"stage 2": 1}


def test_it_gives_up_after_max_restarts_in_the_window(tmp_path, capsys):
    supervisor = processes.Supervisor(processes.RestartPolicy(max_restarts=2, backoff=0.01),
                                      "test", launch.child_env())
    try:
        supervisor.spawn(proc("oracle", tmp_path / "o.log"), sleeper(0, code=3))
        reason = None
        deadline = time.monotonic() + 20
        while reason is None and time.monotonic() < deadline:
            reason = supervisor.look()
            time.sleep(0.02)
    finally:
        supervisor.stop_all()
    assert reason == "oracle died 3 times in 120 s (exit code 3)"
    out = capsys.readouterr().out
    assert out.count("oracle died (exit code 3)") == 3 and "giving up, ending the run" in out
    assert supervisor.restarts() == {"oracle": 2}


def test_a_process_that_dies_at_every_start_is_given_up_on_however_long_the_back_off(tmp_path,
                                                                                     capsys):
    """With --max-restarts 7 the doubling back-off (1, 2, ... 64 s) aged the deaths out of the
    120 s window: a process that crashed 2 s after every start was restarted until --duration
    ended, and the run said it had gone well. The window counts its life, not the waits."""
    import types
    policy = processes.RestartPolicy(max_restarts=7)
    made = processes.Supervisor(policy, "test", launch.child_env())
    (tmp_path / "o.log").write_text("Traceback: cannot resume\n")
    child = types.SimpleNamespace(name="oracle", proc=proc("oracle", tmp_path / "o.log"),
                                  restarts=[], waited=0.0, stopping=False, restart_at=None,
                                  process=types.SimpleNamespace(started=0.0))
    now, reason, deaths = 0.0, None, 0
    while reason is None and deaths < 100:
        now += 2.0                                         # up 2 s, then dies
        reason, deaths = made.died(child, 1, now), deaths + 1
        if reason is None:
            now = child.process.started = child.restart_at
    assert reason == "oracle died 8 times in 120 s (exit code 1)" and deaths == 8
    lines = capsys.readouterr().out.splitlines()
    assert "Restarting it in 64 s (restart 7 of at most 7 in 120 s)" in lines[-2]


SLOW_TO_STOP = [sys.executable, "-c", "import signal, sys, time\n"
                "def save(*a): time.sleep(1); sys.exit(0)\n"
                "signal.signal(signal.SIGTERM, save); print('ready', flush=True); time.sleep(60)"]


def test_a_second_ctrl_c_while_the_launcher_stops_its_processes_leaves_none_running(tmp_path):
    """The second used to raise out of stop_all: the processes not yet stopped trained on, and
    the launcher said every process was stopped."""
    made = processes.Supervisor(processes.RestartPolicy(), "test", launch.child_env())
    children_ = [made.spawn(proc(name, tmp_path / f"{name}.log"), SLOW_TO_STOP)
                 for name in ("oracle", "output trainer", "input trainer")]
    for name in ("oracle", "output trainer", "input trainer"):
        wait_for(lambda n=name: "ready" in text(tmp_path / f"{n}.log"))
    def press_again():
        time.sleep(0.3)                                    # the first is being stopped
        os.kill(os.getpid(), signal.SIGINT)

    def stop_all():
        processes.stop_on_signals()                        # as a launcher has them
        made.stop_all()
    try:
        escaped = escapes_interrupt(stop_all, press_again)
    finally:
        for c in children_:
            if c.popen.poll() is None:                     # only on the old code: no leftovers
                c.popen.kill()
    assert not escaped and [c.popen.returncode for c in children_] == [0, 0, 0]


def test_no_restart_ends_the_run_at_the_first_death_and_a_finished_run_is_no_death(tmp_path,
                                                                                   capsys):
    supervisor = processes.Supervisor(processes.RestartPolicy(restart=False), "test",
                                      launch.child_env())
    try:
        done = supervisor.spawn(proc("input trainer", tmp_path / "i.log"), sleeper(0),
                                deadline=time.time() + 60)
        server = supervisor.spawn(proc("stage 3", tmp_path / "s.log"), sleeper(60))
        done.popen.wait()
        assert supervisor.look() is None and done.finished()
        server.popen.terminate()
        server.popen.wait()
        assert supervisor.look() == "stage 3 died (killed by SIGTERM)"
    finally:
        supervisor.stop_all()
    assert "Not restarting it (--no-restart): ending the run" in capsys.readouterr().out


def test_a_process_whose_options_are_refused_is_not_restarted(tmp_path, capsys, supervisor):
    """Exit code 2, argparse's: the same command line would be refused again."""
    supervisor.spawn(proc("input trainer", tmp_path / "i.log"), sleeper(0, code=2))
    reasons = []
    wait_for(lambda: reasons.append(supervisor.look()) or reasons[-1] is not None)
    assert reasons[-1] == "input trainer died (exit code 2)"
    assert "Not restarting it (its options were refused" in capsys.readouterr().out
    assert supervisor.restarts() == {"input trainer": 0}


# --- The command lines of a decoupled run. -----------------------------------------------------

def test_as_options_spells_options_as_on_the_command_line():
    assert processes.as_options({"batch_size": 256, "zero_init": True, "hidden": 0,
                               "conditioned": False, "seed": None}) == \
        ["--batch-size", "256", "--zero-init", "--hidden", "0", "--no-conditioned"]
    assert processes.as_options({}) == []


def test_as_options_spells_what_the_scripts_parse():
    """False must reach the script as off: with the defaults on, leaving it out would turn the
    unconditioned oracle of an experiment into a conditioned one."""
    import oracle
    args = oracle.parse_args(processes.as_options({"conditioned": False, "zero_init": False}))
    assert (args.conditioned, args.zero_init) == (False, False)
    args = oracle.parse_args(processes.as_options({"conditioned": True}))
    assert args.conditioned is True


def test_the_default_config_starts_the_processes_with_the_demos_settings(tmp_path):
    config = launch.DecoupledConfig(run_dir=tmp_path)
    py, here = sys.executable, str(children.TOP)

    def checkpoint(name):                           # what a restart resumes from
        return ["--checkpoint", str(tmp_path / "checkpoints" / f"{name}.npz"),
                "--checkpoint-interval", "5.0"]

    assert decoupled_argvs(config)[0] == [
        py, f"{here}/oracle.py", "--port", "0", "--max-examples", "20000", "--seed", "0",
        *checkpoint("oracle"),
        "--metrics", str(tmp_path / "metrics" / "oracle.jsonl")]      # oracle.py's defaults
    common = ["--snapshot-interval", "3", "--seed", "0", "--wire", "binary",
              "--optimizer", "adam"]
    assert decoupled_argvs(config, "http://o")[1] == [
        py, f"{here}/train_output.py", "--port", "0", "--max-examples", "20000",
        "--oracle-url", "http://o", "--progress-dir", str(tmp_path / "progress"),
        "--metrics", str(tmp_path / "metrics" / "train_output.jsonl"),
        "--learning-rate", "0.005", "--batch-size", "10", "--no-live",
        *checkpoint("train_output"), *common]
    assert decoupled_argvs(config, "http://o", "http://t")[2] == [
        py, f"{here}/train_input.py", "--data-dir", str(tmp_path / "data"),
        "--oracle-url", "http://o", "--output-url", "http://t",
        "--progress-dir", str(tmp_path / "progress"),
        "--metrics", str(tmp_path / "metrics" / "train_input.jsonl"),
        "--learning-rate", "0.005", "--update", "synthetic", "--duration", "75.0",
        *checkpoint("train_input"), *common,
        "--report-every", "1"]       # a metrics line a second: the status lines stay fresh


def test_the_demos_settings_are_the_scripts_own_defaults():
    """One set of measured settings: by hand in three terminals or through the launcher."""
    import oracle
    import train_input
    import train_output
    config = launch.DecoupledConfig(run_dir=Path("."))
    assert config.oracle == {}
    assert (config.optimizer, config.input_learning_rate) == (
        train_input.DEFAULTS["optimizer"], train_input.DEFAULTS["learning_rate"])
    assert (config.optimizer, config.output_learning_rate, config.output_batch_size) == (
        train_output.DEFAULTS["optimizer"], train_output.DEFAULTS["learning_rate"],
        train_output.DEFAULTS["batch_size"])
    assert oracle.DEFAULTS["conditioned"] and oracle.DEFAULTS["zero_init"]


def test_a_control_run_reads_the_shared_data(tmp_path):
    config = launch.DecoupledConfig(run_dir=tmp_path / "controls" / "frozen", update="frozen",
                                    data_dir=tmp_path / "data")
    argv = decoupled_argvs(config, "http://o", "http://t")[2]
    assert argv[argv.index("--data-dir") + 1] == str(tmp_path / "data")
    assert argv[argv.index("--progress-dir") + 1] == str(tmp_path / "controls" / "frozen" /
                                                          "progress")


def test_one_optimizer_for_both_trainers_and_the_update_for_the_input_trainer(tmp_path):
    config = launch.DecoupledConfig(run_dir=tmp_path, optimizer="adam", update="random",
                                    input_learning_rate=0.003, output_learning_rate=0.004)
    output = decoupled_argvs(config, "http://o")[1]
    inp = decoupled_argvs(config, "http://o", "http://t")[2]
    for argv, eta in ((output, "0.004"), (inp, "0.003")):
        assert argv[argv.index("--optimizer") + 1] == "adam"
        assert argv[argv.index("--learning-rate") + 1] == eta
    assert inp[inp.index("--update") + 1] == "random" and "--update" not in output
    assert "--update" not in decoupled_argvs(config)[0]


def test_oracle_and_input_settings_come_before_the_raw_arguments(tmp_path):
    config = launch.DecoupledConfig(run_dir=tmp_path, oracle={"hidden": 0},
                                    oracle_args=("--quality-window", "50"),
                                    input={"synthetic_gradients": "local"},
                                    input_args=("--refresh-every", "0.5"))
    assert decoupled_argvs(config)[0][-4:] == ["--hidden", "0", "--quality-window", "50"]
    assert decoupled_argvs(config, "o", "t")[2][-4:] == ["--synthetic-gradients", "local",
                                                        "--refresh-every", "0.5"]


def test_backprop_like_takes_layers_2_3s_minibatch_learning_rate_and_optimizer():
    config = launch.DecoupledConfig(run_dir=None, seed=4)
    assert launch.backprop_like(config) == dict(batch_size=10, learning_rate=0.005,
                                                optimizer="adam", decay=1.0, seed=4)
    plain = launch.DecoupledConfig(run_dir=None, optimizer="sgd", output_learning_rate=0.1)
    assert launch.backprop_like(plain)["optimizer"] == "sgd"
    assert launch.backprop_like(plain)["learning_rate"] == 0.1


# --- Plain backprop in-process. ----------------------------------------------------------------

@pytest.fixture
def data_dir(tmp_path):
    """1,200 examples of seed 5 as generate.py writes them."""
    folder = tmp_path / "data"
    folder.mkdir()
    x, y = generate.generate(1_200, 5)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", y)
    return folder


def test_train_backprop_stops_at_its_time_limit_and_measures_every_segment(tmp_path, data_dir):
    config = launch.BackpropConfig(data_dir, seconds=0.3, eval_every=500, heldout=500,
                                   metrics=tmp_path / "m" / "backprop.jsonl")
    layers, measured = launch.train_backprop(config)
    rows = snapshots.read_metrics(config.metrics)
    assert [{k: r[k] for k in ("seconds", "epoch", "examples", "heldout_mse")} for r in rows] \
        == measured
    assert all(r["stage"] == "backprop" and isinstance(r["time"], float) for r in rows)
    assert measured[0] == {"seconds": 0.0, "epoch": 0, "examples": 0,
                           "heldout_mse": pytest.approx(sgd.mse(
                               sgd.make_network(np.random.default_rng(0)),
                               *generate.heldout(500)))}
    # segments of 500, 500 and 200 examples in each epoch of 1,200, as far as it got in its
    # 0.3 s (a busy machine gets less far: the whole pattern is checked without a clock in the
    # next test)
    steps = [b["examples"] - a["examples"] for a, b in itertools.pairwise(measured)]
    assert steps and steps == ([500, 500, 200] * len(steps))[:len(steps)]
    # it stopped at the first measurement at or past 0.3 s of training
    assert measured[-1]["seconds"] >= 0.3 >= measured[-2]["seconds"]
    assert measured[-1]["heldout_mse"] == pytest.approx(sgd.mse(layers, *generate.heldout(500)))


def test_train_backprop_matches_train_step_by_hand_and_saves_its_weights(tmp_path, data_dir):
    config = launch.BackpropConfig(data_dir, seconds=1e9, epochs=2, eval_every=500,
                                   learning_rate=0.05, batch_size=10, decay=0.5, seed=7,
                                   heldout=100, weights_out=tmp_path / "w" / "final.npz")
    with open(tmp_path / "backprop.log", "w") as log:
        layers, measured = launch.train_backprop(config, out=log)
    assert measured[-1]["examples"] == 2 * 1_200 and measured[-1]["epoch"] == 2
    # measured after segments of 500, 500 and 200 examples in each epoch of 1,200
    assert [(r["examples"], r["epoch"]) for r in measured] == [
        (0, 0), (500, 1), (1000, 1), (1200, 1), (1700, 2), (2200, 2), (2400, 2)]
    # by hand: the same seed, the same permutations, minibatches of 10, eta halved per epoch
    x, y = generate.load_dataset(data_dir)
    rng = np.random.default_rng(7)
    want = sgd.make_network(rng)
    eta = 0.05
    for _ in range(2):
        order = rng.permutation(len(x))
        for k in range(0, len(x), 10):
            sgd.train_step(want, x[order[k:k + 10]], y[order[k:k + 10]], eta)
        eta *= 0.5
    saved = snapshots.load_layers(config.weights_out, BACKPROP_SHAPES)
    for got, again, by_hand in zip(layers, saved, want, strict=True):
        np.testing.assert_array_equal(got.w, by_hand.w)
        np.testing.assert_array_equal(got.b, by_hand.b)
        np.testing.assert_array_equal(again.w, by_hand.w)
        np.testing.assert_array_equal(again.b, by_hand.b)
    log_text = (tmp_path / "backprop.log").read_text()
    assert "epoch 0: held-out MSE" in log_text and "epoch 2: train MSE" in log_text
    assert "eta 0.02500" in log_text                        # the second epoch's, decayed


def test_train_backprop_per_example_uses_rows_of_one(data_dir):
    config = launch.BackpropConfig(data_dir, seconds=1e9, epochs=1, eval_every=1_200,
                                   heldout=100, seed=1)
    layers, _ = launch.train_backprop(config)
    x, y = generate.load_dataset(data_dir)
    rng = np.random.default_rng(1)
    want = sgd.make_network(rng)
    order = rng.permutation(len(x))
    for k in order:
        sgd.train_step(want, x[k:k + 1], y[k:k + 1], config.learning_rate)
    for got, by_hand in zip(layers, want, strict=True):
        np.testing.assert_array_equal(got.w, by_hand.w)
        np.testing.assert_array_equal(got.b, by_hand.b)


def test_train_backprop_with_adam_matches_optimizers_adam_by_hand(data_dir):
    config = launch.BackpropConfig(data_dir, seconds=1e9, epochs=2, eval_every=500,
                                   learning_rate=0.01, batch_size=10, decay=0.5, seed=2,
                                   heldout=100, optimizer="adam")
    layers, _ = launch.train_backprop(config)
    x, y = generate.load_dataset(data_dir)
    rng = np.random.default_rng(2)
    want = sgd.make_network(rng)
    adam = optimizers.Adam(want, 0.01)
    for _ in range(2):                          # Adam's moments carry over; eta halves per epoch
        order = rng.permutation(len(x))
        for k in range(0, len(x), 10):
            sgd.backprop(want, x[order[k:k + 10]], y[order[k:k + 10]])
            adam.step()
        adam.learning_rate *= 0.5
    for got, by_hand in zip(layers, want, strict=True):
        np.testing.assert_array_equal(got.w, by_hand.w)
        np.testing.assert_array_equal(got.b, by_hand.b)
