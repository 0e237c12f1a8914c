"""Tests for a chain that counts its steps (parts/stepped.py, chain.py --delay D).

The chain at --delay 0 is checked against dni.py bit for bit (real processes); the stages, the
ordered sender and the follower of the model above each against what they promise: steps in
order, none lost or doubled without being counted, the bound on the delay kept.
"""

import json
import re
import threading
import time

import numpy as np
import pytest

import chain
import live
import synthgrad
import train_output
from helpers import assert_stages_are_dnis, post, wait_for
from test_chain import killer
from parts import decoupled, options, snapshots, stepped
from runner import launch
from synthgrad import PeerError

GUARD_S = 600            # only a guard against a hang: the runs below are bounded by work


def have_fashion_mnist():
    try:
        chain.classify.images.find("fashion-mnist", download=False)
    except chain.classify.images.DataError as e:
        pytest.skip(f"Fashion-MNIST cannot be read here (make data): {e}")


# --- one step, in one process and in stages ----------------------------------------------

def test_stages_in_turn_compute_what_the_network_computes_bit_for_bit():
    """decoupled.Stage k holds group k of the Network run() draws: calling the stages in turn,
    each given the model above as the stage above has it, is Network.step (cDNI, float32)."""
    rng = np.random.default_rng(0)
    x = rng.random((300, 20), dtype=np.float32)
    y = rng.integers(0, 4, 300)
    sizes, config = (20, 16, 16, 16, 4), decoupled.Config(data="fashion-mnist", seed=7)
    net = decoupled.Network(np.random.default_rng(7), sizes, config)
    stages = [decoupled.Stage(config, sizes, k) for k in range(4)]
    for start in range(0, 300, 50):
        rows = slice(start, start + 50)
        net.step(x[rows], y[rows])
        h = x[rows]
        for k, stage in enumerate(stages):
            if stage.above is not None:                   # what GET /weights would bring
                stage.above.load([w.copy() for w in stages[k + 1].below.weights()], 0)
            h = stage.step(h, y[rows].astype(float))[0]
    for k, stage in enumerate(stages):
        for mine, theirs in zip(stage.group, net.groups[k], strict=True):
            assert mine.w.dtype == np.float32
            assert np.array_equal(mine.w, theirs.w) and np.array_equal(mine.b, theirs.b)


# --- the chain at --delay 0 is dni.py --------------------------------------------------------

def test_at_delay_0_every_stage_ends_with_dni_pys_weights_bit_for_bit(tmp_path):
    """Four stages (784-32-32-32-10, a process each) at --delay 0 for 30 steps on the first 2,000
    images, and dni.py with the same seed: every stage's final layers equal dni.py's, bit for
    bit (helpers.assert_stages_are_dnis says how)."""
    have_fashion_mnist()
    run = tmp_path / "chain"
    config = chain.ChainConfig(run_dir=run, sizes=(784, 32, 32, 32, 10), splits=(1, 2, 3),
                               count=2_000, duration=GUARD_S, examples=3_000, seed=5,
                               colocated=True, data="fashion-mnist", delay=0,
                               **{k: v for k, v in chain.IMAGES.items()
                                  if k in ("batch_size", "train_on")},
                               learning_rate=chain.COUNTED_LEARNING_RATE)
    final = chain.run_chain(config, launch.child_env())
    assert final["cut_short"] is None and final["stage4"]["steps_trained"] == 30
    for k in (2, 3):
        assert final[f"stage{k}"]["delay_steps"]["max"] == 0      # D = 0: never stale
    assert_stages_are_dnis(run, tmp_path, layers=4, width=32, seed=5, steps=30)


def test_the_top_only_control_counts_steps_too_and_is_dni_pys(tmp_path):
    """--update frozen (top-only): the stages below the top never move, the boundary models'
    versions still pace the chain, and the top learns what dni.py --method top-only's does, bit
    for bit (whatever the delays: nothing below it moves)."""
    have_fashion_mnist()
    run = tmp_path / "chain"
    config = chain.ChainConfig(run_dir=run, sizes=(784, 32, 32, 10), splits=(1, 2),
                               count=2_000, duration=GUARD_S, examples=3_000, seed=4,
                               colocated=True, data="fashion-mnist", delay=1, update="frozen",
                               batch_size=100, train_on="arrivals", learning_rate=3e-4)
    final = chain.run_chain(config, launch.child_env())
    assert final["cut_short"] is None and final["stage3"]["steps_trained"] == 30
    assert final["stage2"]["delay_steps"]["max"] <= 1
    assert_stages_are_dnis(run, tmp_path, layers=3, width=32, seed=4, steps=30,
                           method="top-only")


def test_a_delay_is_bounded_and_reported_everywhere(tmp_path, capsys):
    """At --delay 2 no stage uses a model older than 2 steps, and each boundary's delay is in
    /status, the metrics, chain.json and the status lines."""
    have_fashion_mnist()
    run = tmp_path / "chain"
    config = chain.ChainConfig(run_dir=run, sizes=(784, 16, 16, 10), splits=(1, 2),
                               count=2_000, duration=GUARD_S, examples=6_000, status_every=0.5,
                               colocated=True, data="fashion-mnist", delay=2, batch_size=100,
                               train_on="arrivals", learning_rate=3e-4)
    assert chain.run_and_report(config, launch.child_env()) == 0
    out = capsys.readouterr().out
    result = json.loads((run / "chain.json").read_text())
    for b in (1, 2):
        curve = result["delay_steps"][f"boundary{b}"]
        assert curve and all(0 <= mean <= worst <= 2 for _, mean, worst in curve)
    assert re.search(r"stage 2: step \d+, delay (-|mean [\d.]+, max [0-2] \(bound 2\))", out)
    assert "delay in steps of the synthetic gradients, mean and max per boundary" in out
    last = json.loads((run / "metrics" / "stage1.jsonl").read_text().splitlines()[-1])
    assert last["steps"] == 60 and last["delay_bound"] == 2 and last["delay_max"] <= 2
    page = live.create_app({"run_dir": run, "heldout": 500}).test_client()
    shown = {p["name"]: p["delay_steps"] for p in page.get("/api/live").get_json()["processes"]}
    for name in ("stage 1 (train_input.py)", "stage 2"):      # the live page's table
        assert re.fullmatch(r"mean [\d.]+, max [0-2] \(bound 2\)", shown[name]), shown
    assert shown["stage 3"] is None                           # the last stage uses no model


def test_a_killed_middle_stage_is_mended_and_the_chain_counts_what_it_lost(tmp_path, capsys):
    """Stage 2 of three at --delay 1, SIGKILLed once it has a checkpoint: restarted from it, it
    takes up the steps that come (the ones it had trained since, lost, are counted), the stage
    below goes on with the model that exists (not waiting for versions that will never come),
    and the run ends on its work, evaluated."""
    have_fashion_mnist()
    run = tmp_path / "chain"
    config = chain.ChainConfig(run_dir=run, sizes=(784, 16, 16, 10), splits=(1, 2),
                               count=2_000, duration=GUARD_S, examples=100_000,
                               checkpoint_interval=1, colocated=True, data="fashion-mnist",
                               delay=1, batch_size=100, train_on="arrivals", learning_rate=3e-4)
    started = {}
    checkpoint = run / "checkpoints" / "stage2.npz"
    thread, killed = killer(started, [(5_000, "stage 2")], run / "metrics" / "stage2.jsonl",
                            ready=lambda name: checkpoint.exists())
    assert chain.run_and_report(config, launch.child_env(),
                                on_start=lambda name, pid: started.__setitem__(name, pid)) == 0
    thread.join(1)
    out = capsys.readouterr().out
    assert "stage 2" in killed and "stage 2 died" in out
    last = json.loads((run / "metrics" / "stage3.jsonl").read_text().splitlines()[-1])
    assert last["steps_trained"] == 1_000                  # the last stage got to the end
    stage2 = [json.loads(line) for line in (run / "metrics" / "stage2.jsonl").open()]
    assert any(line.get("steps_lost", 0) > 0 or line.get("steps_late", 0) > 0
               for line in stage2[1:]) or last["steps_late"] > 0
    result = json.loads((run / "chain.json").read_text())
    assert result["cut_short"] is None and result["final_accuracy"] > 0.3
    died, restarted = result["events"]                    # the run's story
    assert (died["event"], died["process"], restarted["event"]) == ("died", "stage 2",
                                                                    "restarted")
    assert died["how"] == "killed by SIGKILL" and died["trained"] >= 5_000
    assert restarted["checkpoint"].endswith("stage2.npz") and restarted["time"] > died["time"]
    assert "Traceback" not in "".join(p.read_text() for p in run.glob("*.log"))


# --- a stage: steps in order, the model below served by version ---------------------------

@pytest.fixture
def stage_app(tmp_path, monkeypatch):
    """The last stage (16-4, cross-entropy) of 20-16-4 cut at 1, counting steps at delay 1."""
    monkeypatch.setattr(stepped, "WEIGHTS_WAIT_S", 0.2)
    args = train_output.parse_args([
        "--sizes", "16-4", "--loss", "cross-entropy", "--activation", "relu", "--delay", "1",
        "--network", "20-16-4", "--splits", "1", "--stage", "2", "--colocated",
        "--progress-dir", str(tmp_path), "--max-examples", "100", "--batch-size", "5",
        "--learning-rate", "0.001"])
    app = train_output.create_app({k: v for k, v in vars(args).items()
                                   if k not in options.SERVER_ONLY})
    yield app
    app.config["TRAINER"].stop_training()


def rows(step, n=5, seed=0):
    rng = np.random.default_rng(seed + step)
    return {"i": list(range(n * step, n * step + n)), "x": synthgrad.encode_array(
        rng.random((n, 16))), "y": synthgrad.encode_array(rng.integers(0, 4, n)),
        "step": [step] * n}


def test_a_stage_trains_steps_in_order_and_counts_what_never_came(stage_app):
    trainer = stage_app.config["TRAINER"]
    for step in (2, 1, 4):
        assert post(stage_app, synthgrad.TRAINING_EXAMPLE, rows(step)).status_code == 200
    trained = []
    while trainer.train_pass():
        trained.append(trainer.steps)
    assert trained == [1, 2, 4]
    assert trainer.counts["steps_lost"] == 1 and trainer.counts["examples_trained"] == 15
    post(stage_app, synthgrad.TRAINING_EXAMPLE, rows(3))      # too late: 4 is trained
    assert trainer.train_pass() and trainer.counts["steps_late"] == 1 and trainer.steps == 4
    status = stage_app.test_client().get(synthgrad.STATUS).get_json()
    assert (status["steps_trained"], status["steps_lost"], status["steps_late"]) == (4, 1, 1)
    assert status["delay_steps"] is None                      # the top stage uses no model


def test_a_counting_stage_started_by_hand_starts_its_live_page(stage_app, monkeypatch):
    """train_output.py --delay D keeps --live on by default: the page is told of no oracle."""
    started = {}

    def start(folder, port, token, options):
        started.update(folder=folder, options=options)
        return "http://127.0.0.1:1/", lambda: None
    monkeypatch.setattr(train_output.children, "start_live_page", start)
    args = train_output.parse_args([
        "--sizes", "16-4", "--loss", "cross-entropy", "--activation", "relu", "--delay", "1",
        "--network", "20-16-4", "--splits", "1", "--stage", "2", "--colocated"])
    trainer = stage_app.config["TRAINER"]
    assert train_output.live_page(args, "http://127.0.0.1:2", trainer) is not None
    assert started["options"] == ["--output-url", "http://127.0.0.1:2"]
    assert trainer.status_fields()["live_page"] == "http://127.0.0.1:1/"


def test_a_stage_refuses_rows_without_their_step(stage_app):
    body = rows(1)
    del body["step"]
    r = post(stage_app, synthgrad.TRAINING_EXAMPLE, body)
    assert r.status_code == 400 and "step" in r.get_json()["error"]
    body["step"] = [1, 1, 0, 1, 1]
    assert post(stage_app, synthgrad.TRAINING_EXAMPLE, body).status_code == 400
    assert stage_app.config["TRAINER"].counts["examples_received"] == 0


def test_a_stage_refuses_a_step_no_int64_holds_and_keeps_a_checkpoint_it_can_read(
        stage_app, tmp_path):
    """A JSON step past 2**63 - 1 once made the stage jump to it and write a checkpoint whose
    counters were a pickled object array, which its own --resume could not read."""
    trainer = stage_app.config["TRAINER"]
    body = rows(1)
    body["step"] = [10 ** 30] * 5
    r = post(stage_app, synthgrad.TRAINING_EXAMPLE, body)
    assert r.status_code == 400 and "below 2**63" in r.get_json()["error"]
    assert trainer.counts["examples_received"] == 0 and not trainer.train_pass()
    assert post(stage_app, synthgrad.TRAINING_EXAMPLE, rows(1)).status_code == 200
    assert trainer.train_pass() and trainer.steps == 1
    trainer.save_checkpoint(tmp_path / "stage.npz")
    counters = snapshots.read_npz(tmp_path / "stage.npz", "the checkpoint")["counters"]
    assert counters.dtype.kind == "i" and trainer.steps in counters


def test_the_model_below_is_served_once_it_has_learned_past_the_version_asked(stage_app):
    trainer, client = stage_app.config["TRAINER"], stage_app.test_client()
    first = client.get(synthgrad.WEIGHTS).get_json()
    assert first["version"] == 0 and not np.any(synthgrad.decode_array(first["weights"][0]))
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(
        client.get(synthgrad.WEIGHTS + "?after=0").get_json()))
    waiting.start()
    post(stage_app, synthgrad.TRAINING_EXAMPLE, rows(1))
    trainer.train_pass()
    waiting.join(5)
    assert answers and answers[0]["version"] == 1
    assert np.any(synthgrad.decode_array(answers[0]["weights"][0]))     # it learned
    late = client.get(synthgrad.WEIGHTS + "?after=1").get_json()       # nothing newer: waits
    assert late["version"] == 1                                         # WEIGHTS_WAIT_S, then 1
    assert client.get(synthgrad.WEIGHTS + "?after=x").status_code == 400


# --- what travels between stages -----------------------------------------------------------

def test_the_ordered_sender_posts_whole_steps_in_order_and_retries_until_they_go():
    sent, fail = [], [2]

    def send(i, h, y, steps):
        if fail[0]:
            fail[0] -= 1
            raise PeerError("down for now")
        sent.append((i.copy(), steps.copy()))

    sender = stepped.OrderedSender(send, "test", max_rows=10, max_backoff=0.01)
    for step in range(1, 6):
        i = np.arange(4) + (0 if step == 3 else 4 * step)    # step 3 repeats step 0's rows
        sender.put(step, i, np.full((4, 2), step), np.zeros(4))
    i = np.arange(4)
    sender.put(6, i, np.ones((4, 2)), np.zeros(4))            # repeats step 3's: another request
    counts = sender.close(flush_timeout=10)
    assert counts["sent"] == 24 and counts["unsent"] == 0 and counts["failed_requests"] == 2
    assert all(len(i) <= 10 and len(set(i.tolist())) == len(i) for i, _ in sent)
    steps = np.concatenate([s for _, s in sent])
    assert steps.tolist() == sorted(steps.tolist()) and set(steps.tolist()) == set(range(1, 7))


def test_a_refused_step_is_counted_and_the_rest_go_on():
    sent = []

    def send(i, h, y, steps):
        if steps[0] == 1:
            raise PeerError("bad", status=400)
        sent.append(int(steps[0]))

    sender = stepped.OrderedSender(send, "test", max_rows=1)      # a step a request
    for step in (1, 2):
        sender.put(step, np.array([step]), np.zeros((1, 2)), np.zeros(1))
    counts = sender.close(flush_timeout=10)
    assert sent == [2] and counts["refused"] == 1 and counts["sent"] == 1


class Peer:
    """A stage above, as ModelFollower sees it: GET /weights?after=V from a list of versions."""

    def __init__(self, versions, diverged=False):
        self.versions, self.asked, self.diverged = list(versions), [], diverged

    def status(self):
        return {"diverged": self.diverged}

    def weights(self, width, after=None):
        time.sleep(0.01)                                # as if it waited for a newer one
        self.asked.append(after)
        version = self.versions.pop(0) if len(self.versions) > 1 else self.versions[0]
        return [np.full((3, 2), float(version)), np.zeros(2)], True, version


def follower_of(versions, diverged=False):
    model = decoupled.boundary.SyntheticGradientModel(np.random.default_rng(0), hidden=0,
                                                      width=2, context=1)
    stop = threading.Event()
    follower = stepped.ModelFollower(Peer(versions, diverged), model, 2, stop)
    follower.start()
    return follower, model, stop


def test_the_follower_waits_for_the_version_the_bound_needs_and_loads_it():
    follower, model, stop = follower_of([1, 2, 3, 5, 5])
    try:
        assert follower.take(4) == 5                          # 1..3 are not enough
        assert model.weights()[0][0, 0] == 5.0 and model.version == 5
        assert follower.take(0) == 5                          # nothing newer: what it has
    finally:
        stop.set()
    assert follower.take(9) is None                           # stopped while waiting


def test_the_follower_does_not_wait_for_steps_a_restarted_stage_lost():
    follower, model, stop = follower_of([6, 2])
    try:
        wait_for(lambda: len(follower.client.asked) >= 3)    # it has seen 6, then 2
        assert follower.take(7) == 2                          # it went back: used as it is
    finally:
        stop.set()


class RestartingPeer(Peer):
    """A stage above at version 5 that is unreachable on its third GET /weights and then
    answers at version `back_at` as a process `restarted` (younger by 30 s) or the same one (a
    lost link)."""

    def __init__(self, restarted, back_at=5):
        super().__init__([5])
        self.started, self.restarted, self.back_at = time.time() - 30.0, restarted, back_at

    def status(self):
        return {"diverged": False, "started": self.started}

    def weights(self, width, after=None):
        if len(self.asked) == 2:
            self.asked.append("refused")
            self.started = time.time() if self.restarted else self.started
            self.versions = [self.back_at]
            raise PeerError("Connection refused")
        return super().weights(width, after)


@pytest.mark.parametrize("restarted, back_at", [(True, 5), (False, 5), (True, 6)])
def test_the_follower_does_not_wait_for_a_stage_that_restarted_at_the_version_it_saw(restarted,
                                                                                     back_at):
    """Killed after its checkpoint at step 5, which the stage below had already seen (or at step
    6, which it had not yet seen): the steps it had trained since are lost and will not come
    again, so step back_at + 1 is never learned from."""
    model = decoupled.boundary.SyntheticGradientModel(np.random.default_rng(0), hidden=0,
                                                      width=2, context=1)
    stop = threading.Event()
    follower = stepped.ModelFollower(RestartingPeer(restarted, back_at), model, 2, stop)
    # a restart's model is used as it is; the same process's is waited for (a guard, and the
    # time after which the test says it did not wait)
    guard = threading.Timer(30.0 if restarted else 0.5, stop.set)
    follower.start()
    try:
        wait_for(lambda: len(follower.client.asked) >= 5)    # 5, 5, refused, back_at twice
        guard.start()
        assert follower.take(back_at + 1) == (back_at if restarted else None)
    finally:
        guard.cancel()
        stop.set()


def test_the_follower_gives_up_on_a_stage_that_diverged():
    follower, model, stop = follower_of([3], diverged=True)
    try:
        assert follower.take(10) is None and follower.diverged
    finally:
        stop.set()


class EagerPeer(Peer):
    """oracle.py, say: it answers GET /weights at once, whatever version is asked after."""

    def weights(self, width, after=None):
        self.asked.append(after)
        return [np.zeros((3, 2)), np.zeros(2)], True, 0


def test_the_follower_does_not_busy_loop_on_a_peer_that_answers_at_once(capsys):
    """It asked again at once, 870,000 requests a second to oracle.py (train_input.py --delay
    without --colocated, since refused too)."""
    model = decoupled.boundary.SyntheticGradientModel(np.random.default_rng(0), hidden=0,
                                                      width=2, context=1)
    stop = threading.Event()
    peer = EagerPeer([0])
    stepped.ModelFollower(peer, model, 2, stop).start()
    time.sleep(1.0)
    stop.set()
    assert 1 <= len(peer.asked) <= 40                      # 20 a second at the most
    import train_input
    with pytest.raises(SystemExit):
        train_input.parse_args(["--delay", "1", "--network", "2-24-12-1", "--splits", "1"])
    assert "--delay counts every step: it needs --colocated" in capsys.readouterr().err
    assert train_input.parse_args(["--delay", "1", "--network", "2-24-12-1", "--splits", "1",
                                   "--colocated"]).sizes == (2, 24)


class RefusingPeer(Peer):
    def weights(self, width, after=None):
        self.asked.append(after)
        raise PeerError("stage 2 at http://x/weights answered 401: missing or wrong token", 401)


def test_a_stage_above_that_refuses_ends_stage_1_in_one_line_instead_of_waiting_for_ever():
    import types
    model = decoupled.boundary.SyntheticGradientModel(np.random.default_rng(0), hidden=0,
                                                      width=2, context=1)
    stop = threading.Event()
    follower = stepped.ModelFollower(RefusingPeer([0]), model, 2, stop)
    follower.start()
    try:
        assert follower.take(5) is None and "answered 401" in follower.refusal
        first = types.SimpleNamespace(follower=follower, delays=stepped.Delays(1))
        with pytest.raises(SystemExit, match=r"^train_input.py: stage 2 at .* answered 401"):
            stepped.FirstStage.step(first, None, 7, None, None, None)
        assert follower.client.asked == [0]                # asked once: not for now
    finally:
        stop.set()


def test_delays_are_counted_against_their_bound():
    delays = stepped.Delays(2)
    assert stepped.delay_text(delays.fields()) == "-"
    for d in (0, 2, 1):
        delays.add(d)
    assert delays.fields() == {"bound": 2, "mean": 1.0, "max": 2, "last": 1, "counted": 3}
    assert stepped.delay_text(delays.fields()) == "mean 1.00, max 2 (bound 2)"


# --- the command lines -------------------------------------------------------------------

def test_images_count_steps_by_default_and_the_toy_does_not():
    args = chain.parse_args(["--data", "fashion-mnist", "--colocated"])
    assert args.delay == chain.IMAGE_DELAY and args.learning_rate == chain.COUNTED_LEARNING_RATE
    assert chain.parse_args(["--data", "fashion-mnist", "--colocated", "--delay", "free"]) \
        .learning_rate == chain.IMAGES["learning_rate"]
    assert chain.parse_args([]).delay is None
    for wrong in (["--delay", "2"], ["--data", "fashion-mnist", "--colocated", "--delay", "-1"],
                  ["--data", "fashion-mnist", "--colocated", "--delay", "soon"]):
        with pytest.raises(SystemExit):
            chain.parse_args(wrong)


def test_every_stage_gets_the_delay_its_place_and_the_one_seed(tmp_path):
    config = chain.ChainConfig(run_dir=tmp_path, sizes=(784, 16, 16, 10), splits=(1, 2),
                               colocated=True, data="fashion-mnist", delay=3, seed=4)
    for proc in chain.chain_procs(config):
        argv = [str(a) for a in proc.options]
        assert argv[argv.index("--delay") + 1] == "3" and argv[argv.index("--seed") + 1] == "4"
        assert argv[argv.index("--network") + 1] == "784-16-16-10"
        assert "--max-ahead" not in argv
        if proc.name != "stage 1":
            assert argv[argv.index("--stage") + 1] == proc.name.split()[1]
