"""Tests for a chain that classifies images (parts/classify.py and what uses it): the label
travelling as y, the last stage's softmax cross-entropy checked by hand and against finite
differences, a boundary model conditioned on the one-hot label, chain.py's image options and
its evaluation of a classifier's run folder on written images; and a real 4-stage chain of
processes on Fashion-MNIST that must beat its top-only control."""

import copy
import json
import time

import numpy as np
import pytest

import chain
import sgd
import synthgrad
import train_input
import train_output
from helpers import banded_images, chain_argvs, post, status, write_images
from parts import boundary, classify, optimizers, snapshots
from runner import chain_eval, launch, livedraw

T = synthgrad.TRAINING_EXAMPLE


# --- the pieces ------------------------------------------------------------------------------

def test_a_boundary_model_takes_y_as_its_first_layer_says():
    h, y = np.arange(6.0).reshape(2, 3), np.array([2.0, 0.0])
    assert classify.model_inputs(h, y, 3) is h                               # DNI: h alone
    np.testing.assert_array_equal(classify.model_inputs(h, y, 4), [[0, 1, 2, 2], [3, 4, 5, 0]])
    np.testing.assert_array_equal(classify.model_inputs(h, y, 6),            # one-hot of 3
                                  [[0, 1, 2, 0, 0, 1], [3, 4, 5, 1, 0, 0]])


@pytest.mark.parametrize("y", [[0.5], [-1.0], [10.0], [np.nan]])
def test_labels_must_be_whole_numbers_of_a_class(y):
    with pytest.raises(ValueError, match="whole numbers in 0..9"):
        classify.labels_of(np.array(y), 10)
    np.testing.assert_array_equal(classify.labels_of(np.array([0.0, 9.0]), 10), [0, 9])


def test_a_classifiers_layers_are_relu_with_he_init_and_linear_logits():
    layers = classify.make_layers((784, 256, 10), "relu", np.random.default_rng(0), True)
    assert [layer.activation for layer in layers] == [sgd.ReLU, sgd.Linear]
    assert layers[0].w.std() == pytest.approx(np.sqrt(2 / 784), rel=0.05)    # He's
    toy = classify.make_layers((2, 24), "sigmoid", np.random.default_rng(0), False)
    assert toy[0].activation is sgd.Sigmoid


def classifier_app(make_output_app, **config):
    return make_output_app(sizes=(12, 8, 3), loss="cross-entropy", activation="relu",
                           classes=3, **config)


def hold_labels(app, i, seed=0):
    rng = np.random.default_rng(seed)
    h, y = rng.uniform(0, 1, (len(i), 12)), rng.integers(0, 3, len(i)).astype(float)
    r = post(app, T, synthgrad.encode_training_examples(i, h, y))
    assert r.status_code == 200, r.get_json()
    return h, y


def test_the_last_stage_sends_the_cross_entropys_true_gradients_and_steps_by_hand(
        make_output_app):
    """Softmax cross-entropy on the logits, labels as y: every gradient sent is dL/dh of that
    example's -log softmax(z)_c (finite differences through the layers before its minibatch's
    step), and the layers are Adam's by hand, bit for bit."""
    app = classifier_app(make_output_app, batch_size=2, learning_rate=0.05, optimizer="adam")
    trainer = app.config["TRAINER"]
    hold_labels(app, [3, 17, 42, 0, 99])
    layers = copy.deepcopy(trainer.layers)
    assert [layer.activation for layer in layers] == [sgd.ReLU, sgd.Linear]
    order = copy.deepcopy(trainer.rng).permutation(np.flatnonzero(trainer.held))
    adam, total = optimizers.Adam(layers, 0.05), 0.0
    assert trainer.train_pass()
    _, h_sent, g_sent, y_sent = trainer.sender.rows()
    for k in range(0, 5, 2):
        rows = order[k:k + 2]
        x, c = trainer.x[rows], trainer.y[rows].astype(int)
        for j in range(len(rows)):                           # each row: its own loss's gradient
            numerical = np.zeros(12)
            for d in range(12):
                step = np.zeros(12)
                step[d] = 1e-6
                up, down = (sgd.SoftmaxCrossEntropy.loss(
                    sgd.feed_forward(layers, (x[j] + s)[None], remember=False), c[j:j + 1])[0]
                    for s in (step, -step))
                numerical[d] = (up - down) / 2e-6
            np.testing.assert_allclose(g_sent[k + j], numerical, rtol=1e-5, atol=1e-8)
        z, _ = sgd.backprop(layers, x, c, sgd.SoftmaxCrossEntropy)
        total += float(sgd.SoftmaxCrossEntropy.loss(z, c).sum())
        adam.step()
    for got, want in zip(trainer.layers, layers, strict=True):
        assert got.w.tobytes() == want.w.tobytes() and got.b.tobytes() == want.b.tobytes()
    assert trainer.last_train_mse == pytest.approx(total / 5, rel=1e-12)   # the mean loss
    np.testing.assert_array_equal(y_sent, trainer.y[order])                  # labels go along


@pytest.mark.parametrize("y", [0.5, -1.0, 3.0])
def test_a_classifier_refuses_targets_that_are_not_its_labels(make_output_app, y):
    app = classifier_app(make_output_app)
    r = post(app, T, synthgrad.encode_training_examples([1, 2], np.ones((2, 12)), [0.0, y]))
    assert r.status_code == 400 and "this stage classifies" in r.get_json()["error"]
    assert status(app)["examples_held"] == 0                              # nothing kept


def test_a_colocated_classifiers_model_sees_the_one_hot_label():
    """cDNI for a classifier, as parts/decoupled.py's: linear, zero-initialised, learning at 3e-3,
    its input [h, onehot(c)]; what it publishes is what the stage below computes."""
    model = boundary.SyntheticGradientModel.for_boundary(6, 0, classes=4)
    assert [w.shape for w in model.published] == [(10, 6), (6,)]             # 6 + 4 one-hot
    assert not np.any(model.published[0])                                   # zero-init
    rng = np.random.default_rng(1)
    h, y, g = rng.normal(size=(40, 6)), rng.integers(0, 4, 40).astype(float), rng.normal(size=(40, 6))
    onehot = np.eye(4)[y.astype(int)]
    model.learn_pass(h, onehot, g)
    assert model.version == 2 * 1 and np.any(model.published[0][6:])        # 2 epochs of 1 batch
    below = boundary.model_forward(model.published, classify.model_inputs(h, y, 10))
    np.testing.assert_allclose(below, np.column_stack([h, onehot]) @ model.published[0]
                               + model.published[1])
    assert model.optimizer.learning_rate == boundary.CLASSIFIER["learning_rate"]


# --- the scripts' options --------------------------------------------------------------------

def test_chain_py_takes_an_image_set_with_the_papers_network_and_needs_colocated():
    args = chain.parse_args(["--data", "fashion-mnist", "--colocated"])
    assert (args.sizes, args.splits, args.count) == ((784, 256, 256, 256, 10), (1, 2, 3), 60_000)
    assert (args.batch_size, args.learning_rate, args.delay) == (100, 3e-4, 1)   # counted
    free = chain.parse_args(["--data", "fashion-mnist", "--colocated", "--delay", "free"])
    assert (free.learning_rate, free.max_ahead, free.delay) == (1e-4, 200, None)
    paced = chain.parse_args(["--data", "mnist", "--colocated", "--delay", "free",
                              "--max-ahead", "50"])
    assert paced.max_ahead == 50
    toy = chain.parse_args([])                                  # the toy's defaults unchanged
    assert (toy.sizes, toy.splits, toy.count, toy.batch_size, toy.learning_rate,
            toy.max_ahead) == ((2, 24, 12, 1), (1,), 20_000, 10, 0.005, None)
    for argv in (["--data", "fashion-mnist"],                   # oracle.py is the toy's model
                 ["--data", "mnist", "--colocated", "--max-ahead", "50"],   # counts steps
                 ["--data", "mnist", "--colocated", "--sizes", "784-32-1"],
                 ["--data", "mnist", "--colocated", "--count", "60001"]):
        with pytest.raises(SystemExit):
            chain.parse_args(argv)


def test_a_classifiers_stages_are_relu_the_last_owns_the_cross_entropy(tmp_path):
    config = chain.ChainConfig(run_dir=tmp_path, sizes=(784, 32, 32, 10), splits=(1, 2),
                               colocated=True, data="fashion-mnist", image_dir=tmp_path / "i",
                               count=2_000)
    argvs = chain_argvs(config)
    first = argvs["stage 1"]
    assert first[first.index("--data") + 1] == "fashion-mnist" and "--data-dir" not in first
    assert first[first.index("--examples") + 1] == "2000"
    assert first[first.index("--image-dir") + 1] == str(tmp_path / "i")
    middle, last = argvs["stage 2"], argvs["stage 3"]
    for argv in (middle, last):
        assert argv[argv.index("--activation") + 1] == "relu"
        assert argv[argv.index("--classes") + 1] == "10"
    assert last[last.index("--loss") + 1] == "cross-entropy" and "--loss" not in middle
    assert "--activation" not in chain_argvs(chain.ChainConfig(run_dir=tmp_path))[
        "stage 2"]                                                          # the toy's


def test_the_scripts_check_a_classifiers_sizes():
    with pytest.raises(SystemExit):
        train_input.parse_args(["--data", "fashion-mnist", "--sizes", "2-24"])
    with pytest.raises(SystemExit):
        train_output.parse_args(["--loss", "cross-entropy", "--sizes", "24-1"])
    args = train_output.parse_args(["--loss", "cross-entropy", "--sizes", "256-10"])
    assert args.classes == 10
    images = train_input.config_from_args(train_input.parse_args(["--data", "mnist"]))
    toy = train_input.config_from_args(train_input.parse_args([]))
    assert (images.wire, images.activation) == ("binary", "relu")       # fast for width 256
    assert (toy.wire, toy.activation) == ("json", "sigmoid")            # the documented form


def test_train_input_without_the_images_says_so_in_one_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^train_input.py: data dir .*: not a folder"):
        train_input.main(["--data", "fashion-mnist", "--image-dir", str(tmp_path / "none")])


# --- measuring a classifier's run ------------------------------------------------------------

def test_chain_json_of_a_classifier_gives_test_accuracy_and_loss_at_every_tick(tmp_path):
    """A hand-made 2-stage run folder on written images: accuracy and loss are sgd's of the
    composed network (ReLU, logits) at each tick, and the cosine is against the true
    cross-entropy gradient."""
    data = banded_images(n_train=50, n_test=60)
    image_dir = write_images(tmp_path / "images", data)
    run, layout = tmp_path / "run", [(784, 16), (16, 10)]
    rng = np.random.default_rng(0)
    nets = {label: sgd.make_network(rng, (784, 16, 10), sgd.ReLU, "he")
            for label in ("initial", 1000, 1002, "final")}
    for label, net in nets.items():
        snapshots.save_layers(chain_eval.stage_file(run, 1, label), net[:1])
        snapshots.save_layers(chain_eval.stage_file(run, 2, label), net[1:])
    snapshots.MetricsLog(run / "metrics" / "stage1.jsonl", "input_trainer").write(examples=0)
    model = [rng.normal(size=(26, 16)), np.zeros(16)]                     # h and one-hot
    snapshots.write_npz(run / "progress" / "boundary1" / "model_1002.npz",
                        {"w0": model[0], "w1": model[1], "conditioned": np.array(True),
                         "time": np.array(1002)})
    result = chain_eval.evaluate(run, layout, data="fashion-mnist", image_dir=image_dir)
    (x, labels) = classify.load_test("fashion-mnist", image_dir)
    assert len(result["ticks"]) == 2 and result["test_images"] == 60
    for row, label in zip(result["ticks"], (1000, 1002), strict=True):
        want = sgd.classification_scores(nets[label], x, labels)
        assert (row["test_accuracy"], row["test_loss"]) == pytest.approx(want)
    assert (result["final_accuracy"], result["final_loss"]) == pytest.approx(
        sgd.classification_scores(nets["final"], x, labels))
    assert result["chance_accuracy"] == np.bincount(labels).max() / 60
    first, top = nets[1002]                          # by hand: h = relu(x w1 + b1), z = h w2 + b2
    h = np.maximum(x[:2_000] @ first.w + first.b, 0)
    g = sgd.SoftmaxCrossEntropy.gradient(h @ top.w + top.b, labels) @ top.w.T     # dL/dh
    g_hat = np.column_stack([h, np.eye(10)[labels]]) @ model[0]
    assert result["ticks"][1]["cosine"][0] == pytest.approx(chain_eval.mean_cosine(g_hat, g))
    assert result["ticks"][0]["cosine"] == [None]                          # no model saved
    chain_eval.draw(result, tmp_path / "chain.png")
    assert (tmp_path / "chain.png").stat().st_size > 10_000
    json.dumps(result)                                                    # chain.json's


# --- a real chain of processes ---------------------------------------------------------------

GUARD_S = 900                     # only a guard against a hang: the runs end on their work


def test_a_4_stage_chain_of_processes_classifies_fashion_mnist_and_its_control(tmp_path):
    """Four co-located stages, 784-64-64-64-10, each its own process, on the first 5,000
    training images, until stage 2 has trained on 60,000 examples (12 passes): bounded by work,
    nothing timed, with chain.py's settings for images (Adam at 1e-4, minibatches of 100, stage 1
    paced to stage 2, every stage training on each activation once as it arrives). The same
    chain with --update frozen (only the last stage learns: the paper's No Bprop) is the
    control. On 2,000 test images both beat the commonest label and cDNI beats the control by
    15 points at least (here, with stage 1 at most 200 ahead: cDNI 74.8% and 73.9% in two runs,
    the control 23.0%; 50-59% in four runs at 1,000 ahead)."""
    try:
        classify.images.find("fashion-mnist", download=False)
    except classify.images.DataError as e:
        pytest.skip(f"Fashion-MNIST cannot be read here (make data): {e}")
    env = launch.child_env()
    accuracy = {}
    for update in ("synthetic", "frozen"):
        run = tmp_path / update
        config = chain.ChainConfig(run_dir=run, sizes=(784, 64, 64, 64, 10), splits=(1, 2, 3),
                                   count=5_000, duration=GUARD_S, examples=60_000,
                                   colocated=True, data="fashion-mnist", update=update,
                                   **{k: v for k, v in chain.IMAGES.items()
                                      if k in ("batch_size", "learning_rate", "max_ahead",
                                               "train_on")})
        final = chain.run_chain(config, env)
        assert final["cut_short"] is None and final["stage2"]["examples_trained"] >= 60_000
        layout = chain.stage_sizes(config.sizes, config.splits)
        result = chain_eval.evaluate(run, layout, heldout=2_000, cosine_points=500,
                                     data="fashion-mnist")
        accuracy[update] = result["final_accuracy"]
        print(f"{update}: test accuracy {result['initial_accuracy']:.3f} -> "
              f"{result['final_accuracy']:.3f}; cosines at the last tick "
              f"{result['ticks'][-1]['cosine'] if result['ticks'] else '-'}")
        assert result["final_accuracy"] > result["chance_accuracy"]
        assert "Traceback" not in "".join(p.read_text() for p in run.glob("*.log"))
    print(f"cDNI {accuracy['synthetic']:.3f} against top-only {accuracy['frozen']:.3f}")
    assert accuracy["synthetic"] > accuracy["frozen"] + 0.15


# --- the live page of a classifier chain -----------------------------------------------------

T0 = 1_700_000_000


def classifier_run(tmp_path):
    """A hand-made 2-stage classifier chain folder (784-16 | 16-10) on written images, with
    snapshots at two ticks and a boundary model at the second; returns (run, image_dir)."""
    image_dir = write_images(tmp_path / "images", banded_images(n_train=20, n_test=40))
    run = tmp_path / "chain-20990101"
    chain_eval.write_run_data(run, "fashion-mnist", image_dir)
    rng = np.random.default_rng(3)
    for tick in ("initial", T0, T0 + 2):
        net = sgd.make_network(rng, (784, 16, 10), sgd.ReLU, "he")
        snapshots.save_layers(chain_eval.stage_file(run, 1, tick), net[:1])
        snapshots.save_layers(chain_eval.stage_file(run, 2, tick), net[1:])
    snapshots.write_npz(run / "progress" / "boundary1" / f"model_{T0 + 2}.npz",
                        {"w0": rng.normal(size=(26, 16)), "w1": np.zeros(16),
                         "conditioned": np.array(True), "time": np.array(T0 + 2)})
    snapshots.MetricsLog(run / "metrics" / "stage1.jsonl", "input_trainer").write(examples=0)
    return run, image_dir


def test_the_live_page_shows_a_classifiers_accuracy_images_and_confusion_matrix(tmp_path):
    import live
    from test_live import get_all, listing
    run, image_dir = classifier_run(tmp_path)
    before = listing(run)
    app = live.create_app({"run_dir": run, "heldout": 2_000})
    view = get_all(app)                                       # every picture a PNG, no traceback
    assert [p["name"] for p in view["pictures"]] == [
        "chain_accuracy", "chain_examples", "chain_confusion", "chain_cosine", "chain_staleness"]
    x, labels = classify.load_test("fashion-mnist", image_dir)
    layout = [(784, 16), (16, 10)]
    for tick in (T0, T0 + 2):                                  # chain.py's own numbers
        got = app.config["LIVE"].chain_ticks.get((str(run), tick)) or \
            app.config["LIVE"].chain_tick(run, layout, tick)
        want = sgd.classification_scores(chain_eval.load_chain(run, layout, tick), x, labels)
        assert (got["test_accuracy"], got["test_loss"]) == pytest.approx(want)
    counts = livedraw.confusion(chain_eval.load_chain(run, layout, T0 + 2), x, labels, 10)
    assert counts.sum() == 40 and np.trace(counts) == round(want[0] * 40)   # right: diagonal
    np.testing.assert_array_equal(counts.sum(axis=1), np.bincount(labels, minlength=10))
    assert listing(run) == before                               # the page writes nothing


def test_the_live_page_says_so_when_a_classifiers_test_images_are_gone(tmp_path):
    import live
    from test_live import get_all
    run, image_dir = classifier_run(tmp_path)
    for path in image_dir.iterdir():
        path.unlink()
    view = get_all(live.create_app({"run_dir": run, "heldout": 2_000}))   # 200s, no traceback
    assert any("test images cannot be read" in note for note in view["notes"]), view["notes"]
    assert view["pictures"][0]["name"] == "chain_fit"                        # in words


def test_a_browser_shows_a_classifier_chains_pictures(browser, tmp_path):
    from parts import children
    from test_live import page_images
    run, _ = classifier_run(tmp_path)
    url, stop = children.start_live_page(run)
    try:
        browser.get(url)
        wanted = {"chain_accuracy", "chain_examples", "chain_confusion"}
        for _ in range(240):                                   # a guard, not a measure
            if wanted <= set(page_images(browser)):
                break
            time.sleep(0.25)
        assert wanted <= set(page_images(browser)), page_images(browser)
        titles = browser.execute_script(
            "return Array.from(document.querySelectorAll('#panels h2'), e => e.textContent)")
        assert "Test accuracy of the composed chain" in titles
        assert "Confusion matrix" in titles
    finally:
        stop(60)


# --- flow control: stage 1 paced to stage 2 (parts/pacing.py) ---------------------------------

class FakeNextStage:
    """A client whose GET /status says whatever `trained` holds (a PeerError while None)."""

    def __init__(self):
        self.trained, self.closed = None, False

    def status(self):
        if self.trained is None:
            raise synthgrad.PeerError("down")
        return {"examples_trained": self.trained}

    def close(self):
        self.closed = True


def test_the_first_stage_waits_while_it_is_too_far_ahead_and_stops_on_its_budget():
    import threading
    from parts import pacing
    client, stop = FakeNextStage(), threading.Event()
    paced = pacing.NextStage(client, stop, until_trained=5_000, max_ahead=1_000, every=0.01)
    done = threading.Event()
    waiter = threading.Thread(target=lambda: (paced.wait_for_room(2_500), done.set()))
    waiter.start()
    assert not done.wait(0.3)                          # no answer yet: it waits
    client.trained = 1_000                             # 1,500 ahead: still too far
    assert not done.wait(0.3)
    client.trained = 1_600                             # 900 ahead: room
    assert done.wait(30) and not stop.is_set()
    paced.wait_for_room(2_600)                         # exactly max_ahead: no wait
    client.trained = 5_000                             # the budget: stop is set
    for _ in range(3000):
        if stop.is_set():
            break
        time.sleep(0.01)
    assert stop.is_set()
    paced.wait_for_room(10**9)                         # stopped: never waits
    waiter.join(5)
    paced._thread.join(5)
    assert client.closed and paced.waited > 0.5


def test_a_next_stage_that_restarts_is_paced_from_its_restart_not_waited_for_for_ever():
    """It restarted from its checkpoint (3,000 trained) after training 5,000 arrivals: those
    since the checkpoint are never trained again, and stage 1 waited until --duration."""
    import threading
    from parts import pacing
    client, stop = FakeNextStage(), threading.Event()
    client.trained = 5_000
    paced = pacing.NextStage(client, stop, max_ahead=200, every=0.01)
    try:
        for _ in range(3000):
            if paced.trained == 5_000:
                break
            time.sleep(0.01)
        paced.wait_for_room(5_000)
        client.trained = 3_000                         # restarted from its checkpoint
        for _ in range(3000):                          # seen, before stage 1 hands off again
            if paced.trained == 3_000:
                break
            time.sleep(0.01)
        done = threading.Event()
        waiter = threading.Thread(target=lambda: (paced.wait_for_room(5_000), done.set()))
        waiter.start()
        assert done.wait(30)                           # a guard against a hang only
        late = threading.Thread(target=lambda: (paced.wait_for_room(5_300), done.clear()))
        late.start()                                   # 300 ahead of it since: waits
        late.join(0.3)
        assert late.is_alive()
        client.trained = 3_100                         # 200 ahead: room
        late.join(30)
        assert not late.is_alive() and not done.is_set()
    finally:
        stop.set()


def test_a_count_that_is_not_an_integer_is_no_answer_and_the_pacing_goes_on():
    import threading
    from parts import pacing
    client, stop = FakeNextStage(), threading.Event()
    paced = pacing.NextStage(client, stop, until_trained=5_000, max_ahead=1_000, every=0.01)
    try:
        for bad in ("6000", 6000.0, None, [6000]):     # from a program that is not ours
            client.trained = bad
            time.sleep(0.1)
            assert paced._thread.is_alive() and paced.trained is None and not stop.is_set()
        client.trained = 6_000
        for _ in range(3000):
            if stop.is_set():
                break
            time.sleep(0.01)
        assert paced.trained == 6_000 and stop.is_set()
    finally:
        stop.set()
        paced._thread.join(5)
