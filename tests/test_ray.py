"""chain.py --ray: a chain's stages as Ray actors on a simulated cluster of three machines
(ray.cluster_utils.Cluster: three Ray nodes on this machine, each declaring a custom resource,
host1..host3, one stage pinned to each with --place).

Nothing here times anything: each run is bounded by work (--examples), its --duration only a
guard against a hang, and each fault is injected at a point of the run's work (examples stage
2 has trained on), once the process has a checkpoint (or the stages a snapshot tick) on disk.
"""

import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import ray
import requests
from ray.cluster_utils import Cluster

import chain
import synthgrad
from parts import children, snapshots
from runner import chain_eval, launch, processes, raychain, rayjoin
from helpers import assert_stages_are_dnis, trained_checkpoint, wait_for
from test_chain import GUARD_S, killer, last_count

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
# A guard against a hang, not a measure. Beside a busy process per core (make test-loaded)
# the stages, at their --nice 10, trained ~670 examples a second: the 900 s guard of
# test_chain ended a 600,000-example run at 575,020, and a rerun took ~1,100 s; idle, ~20 s.
# On a slower day stage 2 trained ~350 a second: stage 1 streamed 1,744 s of a 1,800 s guard.
RAY_GUARD_S = 3 * GUARD_S


@pytest.fixture
def cluster():
    """Three Ray nodes on this machine, node k with one CPU and the resource host<k>; shut
    down (every process of it) at the end, however the test ends."""
    c = Cluster(initialize_head=True, head_node_args=dict(num_cpus=1, resources={"host1": 1},
                                                          include_dashboard=False))
    try:
        nodes = [c.head_node] + [c.add_node(num_cpus=1, resources={f"host{k}": 1})
                                 for k in (2, 3)]
        c.wait_for_nodes()
        yield c, nodes
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


def three_stages(tmp_path, address, examples):
    """A co-located 3-stage chain 2-16-16-1 (it learns within seconds), stage k on host<k>,
    into a run folder of a name of its own (the machines' folders are named by it)."""
    run = tmp_path / f"chain-{uuid.uuid4().hex[:12]}"
    config = chain.ChainConfig(run_dir=run, sizes=(2, 16, 16, 1), splits=(1, 2), count=5_000,
                               duration=RAY_GUARD_S, examples=examples, snapshot_interval=1,
                               checkpoint_interval=2, colocated=True, ray=address,
                               place=("host1", "host2", "host3"))
    env = launch.child_env()
    launch.generate_data(run / "data", config.count, 0, env, plot=False)
    return run, config, env


def on_machine(run, name):
    """The file `name` the run's processes wrote on their machine (this one: /tmp)."""
    return list(Path("/tmp/synthgrad-ray").glob(f"{run.name}-*/{name}"))


def test_a_chain_on_three_machines_mends_a_killed_stage_and_learns(tmp_path, cluster, capsys):
    """Stage 2's process SIGKILLed once stage 2 has trained on 15,000 examples and has a
    checkpoint: Ray restarts it on its machine, on its port, from its checkpoint, its counters
    going on; the chain learns on, ends when its work is done (600,000 examples: a fast
    machine's stage 2 has trained on 300,000 within ~3 s) and writes chain.json on the driver
    from the files collected through Ray."""
    c, _ = cluster
    run, config, env = three_stages(tmp_path, c.address, 600_000)
    started = {}
    thread, killed = killer(started, [(15_000, "stage 2")], run / "metrics" / "stage2.jsonl",
                            ready=lambda name: any(map(trained_checkpoint, on_machine(
                                run, "checkpoints/stage2.npz"))))
    code = chain.run_and_report(config, env, on_start=started.__setitem__)
    thread.join(1)
    out = capsys.readouterr().out
    print(out)
    assert code == 0 and set(killed) == {"stage 2"}
    # each stage on the machine --place named (one Ray node per host here, all at this
    # machine's address), and the status lines name it
    placed = {line.split(" on ")[0][len("chain: "):]: line for line in out.splitlines()
              if line.startswith("chain: stage ") and ", process " in line}
    assert set(placed) == {"stage 1", "stage 2", "stage 3"}
    for k in (1, 2, 3):
        assert placed[f"stage {k}"].startswith(f"chain: stage {k} on host{k} (") and \
            ":" not in placed["stage 1"][len("chain: "):]           # stage 1 serves nothing
        assert f"stage {k} @host{k}: " in out
    # the death: one line, naming the stage, its machine, the restart and its port
    port = placed["stage 2"].rsplit(":", 1)[1]
    lines = [line for line in out.splitlines() if "chain: stage 2 on" in line and "died" in line]
    assert len(lines) == 1, out
    assert "Ray restarted it there" in lines[0] and "(restart 1 of at most 3)" in lines[0]
    assert f"from its checkpoint, on port {port}" in lines[0]
    # restarted from its checkpoint: its counters go on from there, not from 0
    log = (run / "stage2.log").read_text()
    urls = re.findall(r"listening on (http://\S+)", log)
    assert len(urls) == 2 and urls[0] == urls[1] and urls[0].endswith(f":{port}"), log
    resumed = last_count(r"resumed from \S+: [\d,]+ examples held, ([\d,]+) passes so far", log)
    assert resumed is not None and resumed > 0, log
    assert last_count(r"final status: [\d,]+ examples held, ([\d,]+) training passes",
                      log) > resumed
    trained = [m["examples_trained"] for m in
               snapshots.read_metrics(run / "metrics" / "stage2.jsonl")]
    first = next(i for i, t in enumerate(trained) if t > 0)
    assert trained[-1] > 15_000 and min(trained[first:]) > 0    # never from 0 again
    # it learned, ended on its work, and everything came back to the driver
    result = json.loads((run / "chain.json").read_text())
    assert result["cut_short"] is None and result["final_from"] == "final"
    died, restarted = result["events"]                              # the run's story
    assert [(e["event"], e["process"], e["machine"]) for e in (died, restarted)] == [
        ("died", "stage 2", "host2"), ("restarted", "stage 2", "host2")]
    assert died["trained"] >= 15_000 and restarted["checkpoint"] == "stage2.npz"
    assert result["final_mse"] < 0.5 * result["initial_mse"]
    assert result["final_mse"] < result["mean_predictor_mse"], result["final_mse"]
    assert (run / "chain.png").exists()
    for k in (1, 2, 3):
        assert (run / "progress" / f"stage{k}").is_dir() and (run / f"stage{k}.log").exists()
    assert "(--until-trained): stopping" in (run / "stage1.log").read_text()
    assert not on_machine(run, "*"), "the machines' files were not removed"
    assert "Traceback" not in "".join(p.read_text() for p in run.glob("*.log"))


def run_losing_machine_3(c, nodes, config, env, capsys):
    """Run the chain, removing machine 3 (stage 3's) from the cluster for good once stage 2
    has trained on 10,000 examples, every stage has a snapshot tick and stage 3 a checkpoint
    and a metrics line on the driver written after some training (what a move starts from and
    reports): a killer thread of test_chain's, its kill a whole machine. Stage 3 may lag stage
    2 by thousands of examples on a busy machine, so its own count is waited for, not assumed.
    Returns (exit code, what chain.py said)."""
    run, removed, started = config.run_dir, {}, {}
    layout = chain.stage_sizes(config.sizes, config.splits)

    def remove(name, pid):
        removed[name] = True
        c.remove_node(nodes[2])

    def ready(name):
        return (bool(chain_eval.chain_ticks(run, layout))
                and trained_checkpoint(run / "checkpoints" / "stage3.npz")
                and (processes.trained_by(None, run / "metrics" / "stage3.jsonl") or 0) > 0)

    thread, _ = killer(started, [(10_000, "stage 3")], run / "metrics" / "stage2.jsonl",
                       ready=ready, kill=remove)
    code = chain.run_and_report(config, env, on_start=started.__setitem__)
    thread.join(1)
    out = capsys.readouterr().out
    print(out)
    assert removed, "the machine was never removed"
    return code, out


def test_a_stage_whose_machine_leaves_goes_on_on_another_from_its_checkpoint(tmp_path,
                                                                             cluster, capsys):
    """Machine 3 (stage 3's) removed from the cluster for good once stage 2 has trained on
    10,000 examples: no machine left declares host3, so stage 3 starts again on the spare
    machine (the one with a free CPU) from the checkpoint the driver collected, stage 2 is
    started again to reach its new address, and the chain goes on to the end of its work and
    learns; one line says it, chain.json lists the loss and the move."""
    c, nodes = cluster
    nodes.append(c.add_node(num_cpus=1, resources={"spare": 1}))
    c.wait_for_nodes()
    run, config, env = three_stages(tmp_path, c.address, 600_000)
    code, out = run_losing_machine_3(c, nodes, config, env, capsys)
    assert code == 0
    lines = [line for line in out.splitlines() if "left the cluster" in line]
    assert len(lines) == 1 and lines[0].startswith(
        "chain: stage 3 lost: machine host3 (") and "; stage 3 goes on on spare (" in lines[0]
    assert "(no machine left declares host3), from its checkpoint collected " in lines[0]
    assert lines[0].endswith("; stage 2 restarted to reach it"), lines[0]
    assert "stage 3 @spare: " in out                # the status lines follow it
    result = json.loads((run / "chain.json").read_text())
    assert result["cut_short"] is None and result["final_from"] == "final"
    events = [(e["event"], e["process"], e["machine"]) for e in result["events"]]
    assert events == [("machine lost", "stage 3", "host3"), ("moved", "stage 3", "spare"),
                      ("re-addressed", "stage 2", "host2")], events
    moved = result["events"][1]
    assert moved["checkpoint"] == "stage3.npz" and moved["trained"] > 0    # what it had done
    # stage 3 went on from its checkpoint: resumed, its counters never back to 0
    log = (run / "stage3.log").read_text()
    resumed = last_count(r"resumed from \S+: [\d,]+ examples held, ([\d,]+) passes so far", log)
    assert resumed is not None and resumed > 0, log
    trained = [m["examples_trained"] for m in
               snapshots.read_metrics(run / "metrics" / "stage3.jsonl")]
    first = next(i for i, t in enumerate(trained) if t > 0)
    assert min(trained[first:]) > 0 and trained[-1] > moved["trained"]
    assert "(--until-trained): stopping" in (run / "stage1.log").read_text()
    assert result["final_mse"] < 0.5 * result["initial_mse"]
    assert result["final_mse"] < result["mean_predictor_mse"], result["final_mse"]
    assert not (run / "checkpoints").exists()       # collected to move it, removed at the end
    for folder in on_machine(run, ""):               # what stage 3 left on the machine gone
        shutil.rmtree(folder)


def test_with_no_restart_a_lost_machine_ends_the_run_cut_short_and_evaluated(tmp_path,
                                                                            cluster, capsys):
    """--no-restart: machine 3 removed as above ends the run at once, cut short, in one
    line, evaluated from the ticks collected."""
    c, nodes = cluster
    run, config, env = three_stages(tmp_path, c.address, 2_000_000)
    config = dataclasses.replace(config, restart=processes.RestartPolicy(restart=False))
    code, out = run_losing_machine_3(c, nodes, config, env, capsys)
    assert code == 1
    lines = [line for line in out.splitlines() if "left the cluster; ending the run" in line]
    assert len(lines) == 1 and lines[0].startswith("chain: stage 3 lost: its machine"), out
    assert lines[0].endswith("(--no-restart)")
    result = json.loads((run / "chain.json").read_text())
    assert result["cut_short"].startswith("stage 3's machine host3 (")
    assert [(e["event"], e["process"], e["machine"]) for e in result["events"]] == [
        ("machine lost", "stage 3", "host3")]                       # the run's story
    assert result["final_from"].startswith("tick ") and result["ticks"]
    assert "cut short: stage 3's machine" in out
    trained = snapshots.read_metrics(run / "metrics" / "stage2.jsonl")[-1]["examples_trained"]
    assert trained < 2_000_000                       # it ended long before its work was done
    for folder in on_machine(run, ""):               # what stage 3 left on the machine gone
        shutil.rmtree(folder)


def test_a_chain_with_its_oracles_on_a_fresh_local_ray_instance(tmp_path, capsys):
    """--ray with no address: a fresh local Ray instance, started and stopped by chain.py; no
    --place: Ray's scheduler places the three processes (stage 1, stage 2 and boundary 1's
    oracle, a Keras model in its actor), a CPU each. They learn, bounded by work, and every
    process's log and metrics come back to the run folder, where the live page reads them as
    it reads a local chain's."""
    run = tmp_path / f"chain-{uuid.uuid4().hex[:12]}"
    config = chain.ChainConfig(run_dir=run, count=5_000, duration=GUARD_S, examples=40_000,
                               snapshot_interval=1, ray="local")
    env = launch.child_env()
    launch.generate_data(run / "data", config.count, 0, env, plot=False)
    assert chain.run_and_report(config, env) == 0
    out = capsys.readouterr().out
    print(out)
    assert "a fresh local instance" in out and "3 Ray actors" in out
    assert "chain: boundary 1 oracle on " in out
    result = json.loads((run / "chain.json").read_text())
    assert result["cut_short"] is None and result["final_mse"] < result["initial_mse"]
    for name in ("stage1", "stage2", "boundary1"):
        assert (run / f"{name}.log").exists() and (run / "metrics" / f"{name}.jsonl").exists()
    assert not ray.is_initialized() and not on_machine(run, "*")
    assert "Traceback" not in "".join(p.read_text() for p in run.glob("*.log"))
    url, stop = children.start_live_page(run)
    try:
        view = requests.get(url + "api/live", timeout=30).json()
    finally:
        stop()
    assert view["processes_of"] == "the chain's stages and boundaries"   # (just written: the
    # page may still call it training, by the age of its last write)
    assert [p["name"] for p in view["processes"]] == ["stage 1 (train_input.py)", "stage 2",
                                                      "boundary 1 oracle"]
    # each read from its collected metrics (a rate needs two lines: a fast machine's stage 2
    # wrote one in this 2 s run)
    assert all(p["source"].startswith("its newest metrics line") for p in view["processes"])
    assert "chain_mse" in [picture["name"] for picture in view["pictures"]]


def test_a_chain_counting_steps_on_three_machines_is_dni_py(tmp_path, cluster):
    """chain.py --ray runs the same scripts: three stages counting steps at --delay 0 (784-32-
    32-10, one on each machine) end with dni.py's weights, bit for bit."""
    try:
        chain.classify.images.find("fashion-mnist", download=False)
    except chain.classify.images.DataError as e:
        pytest.skip(f"Fashion-MNIST cannot be read here (make data): {e}")
    c, _ = cluster
    run = tmp_path / f"chain-{uuid.uuid4().hex[:12]}"
    config = chain.ChainConfig(run_dir=run, sizes=(784, 32, 32, 10), splits=(1, 2),
                               count=2_000, duration=GUARD_S, examples=3_000, seed=2,
                               colocated=True, data="fashion-mnist", delay=0, batch_size=100,
                               train_on="arrivals", learning_rate=chain.COUNTED_LEARNING_RATE,
                               ray=c.address, place=("host1", "host2", "host3"))
    final = chain.run_chain(config, launch.child_env())
    assert final["cut_short"] is None and final["stage3"]["steps_trained"] == 30
    assert_stages_are_dnis(run, tmp_path, layers=3, width=32, seed=2, steps=30)


def test_a_chain_on_a_cluster_without_a_token_gets_one_of_its_own(tmp_path, cluster, capsys):
    """chain.py --ray without SYNTHGRAD_TOKEN makes a fresh token for the run: its stages,
    listening on their machines' addresses, answer 401 to a request without it, and the run
    goes on as with one (20 s: a request is made while stage 2 serves)."""
    c, _ = cluster
    run, config, env = three_stages(tmp_path, c.address, None)
    env.pop("SYNTHGRAD_TOKEN", None)
    answers, log = [], run / "stage2.log"           # collected from its machine every ~2 s

    def knock():
        wait_for(lambda: log.exists() and "listening on http://" in log.read_text(), 120)
        url = re.findall(r"listening on (http://\S+)", log.read_text())[0]
        answers.append(requests.get(url + synthgrad.STATUS, timeout=10).status_code)
    thread = threading.Thread(target=knock, daemon=True)
    thread.start()
    final = chain.run_chain(dataclasses.replace(config, duration=20.0), env)
    thread.join(5)
    assert answers == [401]
    assert "no SYNTHGRAD_TOKEN set: a fresh one for this run" in capsys.readouterr().out
    assert final["cut_short"] is None and final["stage2"]["examples_trained"] > 0  # (asked
    # with the run's token)


def test_a_process_that_cannot_start_is_restarted_then_said_in_one_line(tmp_path):
    """A stage whose script refuses its options (argparse: exit code 2) ends its actor's
    process; Ray restarts it (--max-restarts 1), it fails again, and chain.py stops with one
    line naming it and quoting its script's error from the log on its machine."""
    stage = processes.Proc("stage 2", "train_output.py", ("--port", 0, "--sizes", "3-x",
                                                          "--checkpoint", tmp_path / "none.npz"),
                           "stage2", tmp_path / "stage2.log")
    with raychain.RayChain(tmp_path, "local", [stage], max_restarts=1) as rc:
        with pytest.raises(SystemExit) as e:
            rc.start(stage, processes.command_line(stage, rc.urls))
    message = str(e.value)
    assert "\n" not in message and message.startswith(
        "chain.py: stage 2 died as it started (ActorDiedError): exit code 2; its log ends: ")
    assert "train_output.py: error: argument --sizes: expected widths like" in message
    assert not ray.is_initialized()
    shutil.rmtree(rc.root)                           # what the dead stage left on the machine


def test_without_ray_chain_py_says_how_to_get_it_in_one_line(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)     # import ray fails, as if not installed
    with pytest.raises(SystemExit) as e:
        chain.main(["--ray", "--colocated", "--no-live"])
    assert str(e.value) == rayjoin.MISSING and "\n" not in rayjoin.MISSING
    assert "pip install 'ray==" in rayjoin.MISSING


@pytest.mark.parametrize("argv, message", [
    (["--place", "a,b"], "--place needs --ray"),
    (["--ray", "--place", "a,b,c"], "one machine per stage (2; got 3)"),
    (["--ray", "--place", "a,,"], "expected resource names"),
])
def test_place_is_checked(argv, message, capsys):
    with pytest.raises(SystemExit):
        chain.parse_args(argv)
    assert message in capsys.readouterr().err


# --- the documented start, and starts that cannot work ------------------------------------------

def free_ports(n):
    """n ports free on this machine now (held together while drawn, so all differ)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def documented_commands():
    """docs/several-machines.md's first block: {"head", "worker", "chain"}: each machine's
    commands (its export line and its command), as written there."""
    text = (children.TOP / "docs" / "several-machines.md").read_text()
    block = text.split("## A chain on a Ray cluster: one command", 1)[1].split("\n\n    ")[1]
    lines = ("    " + block.split("\n\n")[0]).replace("\\\n", "").splitlines()
    commands = [line.strip() for line in lines if not line.strip().startswith("#")]
    exports = [c for c in commands if c.startswith("export ")]
    assert len(exports) == 2 and len(commands) == 5, commands
    start = {c.split("ray start ")[1].split()[0]: c for c in commands if "ray start" in c}
    return {"head": [exports[0], start["--head"]], "worker": [exports[1], start["--address"]],
            "chain": [c for c in commands if "chain.py" in c]}


def one_line(proc):
    """What a refused start printed, stdout and stderr together: it must be one line."""
    said = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert len(said) == 1, said
    return said[0]


def test_the_documented_start_works_and_a_wrong_token_is_refused_fast(tmp_path):
    """docs/several-machines.md's commands, run as written from a fresh home folder: the head
    (a token made), a worker with that token, and the chain across them, which learns. The
    same chain with another token ends within 20 s in one line, exit code 1, no run folder."""
    commands, (head_port, *ports) = documented_commands(), free_ports(9)
    home, bin_dir = tmp_path / "home", Path(sys.executable).parent
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "SYNTHGRAD"))}
    env |= {"HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0"}

    def here(command):                         # machine A is this one; free ports
        return (command.replace(".venv/bin/", f"{bin_dir}/").replace("A:6379",
                f"127.0.0.1:{head_port}").replace("--port 6379", f"--port {head_port}"))

    def machine(name, lines, ports):           # ray start --block: a process group to stop
        own = (f" --block --dashboard-agent-listen-port {ports[1]} --metrics-export-port "
               f"{ports[2]} --min-worker-port {ports[3]} --max-worker-port {ports[3] + 200}" +
               (f" --include-dashboard=false --ray-client-server-port {ports[0]}"
                if name == "head" else ""))
        log = tmp_path / f"{name}.log"
        script = "set -e\n" + here(lines[0]) + "\n" + here(lines[1]) + own
        return subprocess.Popen(["bash", "-c", script], cwd=children.TOP, env=env,
                                stdout=log.open("w"), stderr=subprocess.STDOUT,
                                start_new_session=True), log

    started = []
    try:
        head, head_log = machine("head", commands["head"], ports[:3] + [20_000])
        started.append(head)
        wait_for(lambda: "Ray runtime started" in head_log.read_text() or
                 head.poll() is not None, 120)
        assert head.poll() is None, head_log.read_text()[-3000:]
        token = (home / ".ray" / "auth_token").read_text().strip()
        commands["worker"][0] = commands["worker"][0].replace("<A's token>", token)
        worker, worker_log = machine("worker", commands["worker"], ports[3:6] + [20_300])
        started.append(worker)
        wait_for(lambda: "Ray runtime started" in worker_log.read_text() or
                 worker.poll() is not None, 120)
        assert worker.poll() is None, worker_log.read_text()[-3000:]
        chain_command = here(commands["chain"][0]).split()
        assert chain_command[:2] == [f"{bin_dir}/python", "chain.py"], chain_command
        run = tmp_path / "run"
        argv = [*chain_command, "--duration", str(GUARD_S), "--examples", "300000",
                "--no-live", "--run-dir", str(run)]
        wrong = env | {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64}
        t0 = time.monotonic()
        refused = subprocess.run(argv, cwd=children.TOP, env=wrong, capture_output=True,
                                 text=True, timeout=120)
        took = time.monotonic() - t0
        assert refused.returncode == 1 and took < 20, (took, refused.stdout, refused.stderr)
        assert "refused this machine's Ray token" in one_line(refused) and not run.exists()
        done = subprocess.run(argv, cwd=children.TOP, env=env | {"RAY_AUTH_MODE": "token",
                              "RAY_AUTH_TOKEN": token}, capture_output=True, text=True,
                              timeout=GUARD_S + 120)
        print(done.stdout, done.stderr)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "2 machines, 4 CPUs" in done.stdout and "chain: stage 3 on host_b" in done.stdout
        result = json.loads((run / "chain.json").read_text())
        assert result["cut_short"] is None and result["events"] == []
        assert result["final_mse"] < result["mean_predictor_mse"]
    finally:
        for proc in started:                   # what this test started, and only that
            for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
                try:
                    os.killpg(proc.pid, sig)
                    proc.wait(wait)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue


def test_no_cluster_at_the_address_ends_at_once_in_one_line(tmp_path):
    (port,) = free_ports(1)
    run = tmp_path / "run"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "chain.py", "--ray", f"127.0.0.1:{port}",
                           "--colocated", "--no-live", "--run-dir", str(run)],
                          cwd=children.TOP, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and time.monotonic() - t0 < 20 and not run.exists()
    assert one_line(proc).startswith(f"chain.py: no Ray cluster at 127.0.0.1:{port}: ")


def test_a_place_no_machine_declares_ends_at_once_in_one_line(tmp_path, cluster):
    c, _ = cluster
    run = tmp_path / "run"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "chain.py", "--ray", c.address, "--colocated",
                           "--splits", "1,2", "--sizes", "2-16-16-1", "--place",
                           "host1,host2,host9", "--no-live", "--run-dir", str(run)],
                          cwd=children.TOP, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and time.monotonic() - t0 < 20 and not run.exists()
    assert one_line(proc).startswith("chain.py: --place: no machine of the cluster declares "
                                     "host9 (")


def test_sigterm_ends_a_ray_run_within_seconds_its_results_written(tmp_path):
    """SIGTERM to chain.py --ray once the stages run (Ray's init puts in a handler of its own
    that would exit at once; chain.py's is put back): exit code 130, every process stopped,
    chain.json written from what was collected, cut short by the interruption."""
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "chain.py", "--ray", "--colocated", "--sizes",
                             "2-16-16-1", "--splits", "1,2", "--count", "5000", "--duration",
                             str(GUARD_S), "--no-live", "--run-dir", str(run)],
                            cwd=children.TOP, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        said = []
        for line in proc.stdout:                  # the first status line after a snapshot
            said.append(line)
            if line.startswith("[") and " 0 examples" not in line:
                break
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        said.append(proc.stdout.read())
        proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
    took, out = time.monotonic() - t0, "".join(said)
    assert proc.returncode == 130 and took < 60, (took, out)
    assert "chain: interrupted; every process it started is stopped" in out
    result = json.loads((run / "chain.json").read_text())
    assert result["cut_short"] == "interrupted (Ctrl-C or SIGTERM)"
    assert "Traceback" not in out
