"""Tests for train_output.py through Flask's test client: both forms of /training_example, the
true gradients a training pass sends (against central finite differences through the layers as
they were before each update, and against a replay of the same SGD by hand), that training
learns, refused bodies, GET /status, weight snapshots and the command line. With --optimizer
adam the pass is replayed with optimizers.Adam by hand, and a checkpoint keeps Adam's state.

The gradient sender is a FakeSender (tests/conftest.py) that records what would be sent.

Run: .venv/bin/pytest -q tests/test_train_output.py
"""

import copy
import json
import re
import time

import numpy as np
import pytest

import sgd
import synthgrad
import train_output
from helpers import arr, post, status
from parts import optimizers, sender, snapshots

W = synthgrad.HIDDEN_SIZE       # 24
T, S = synthgrad.TRAINING_EXAMPLE, synthgrad.STATUS
EPS = 1e-6     # central differences: truncation error ~EPS^2, round-off ~1e-16 / EPS
RTOL = 1e-5
ATOL = 1e-8    # for gradient entries that happen to be ~0


def example_items(i, x, y):
    """The original per-example /training_example body."""
    return [{"i": int(k), "x": arr(x[j]), "y": arr(y[j])} for j, k in enumerate(i)]


def hold(app, i, seed=0):
    """Post random h in [0, 1) and targets y for indices i (batched form); returns (h, y)."""
    rng = np.random.default_rng(seed)
    h, y = rng.uniform(0, 1, (len(i), W)), rng.uniform(-1, 1, len(i))
    r = post(app, T, synthgrad.encode_training_examples(i, h, y))
    assert r.status_code == 200 and r.get_json() == {"ok": True, "received": len(i)}
    return h, y


def layer_bytes(layers):
    return [(layer.w.tobytes(), layer.b.tobytes()) for layer in layers]


def assert_same_layers(got, want, rtol=0.0):
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a.w, b.w, rtol=rtol, atol=0)
        np.testing.assert_allclose(a.b, b.b, rtol=rtol, atol=0)


# --- /training_example ------------------------------------------------------------------------

def test_training_examples_in_both_forms_are_stored(output_app):
    trainer = output_app.config["TRAINER"]
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1, (5, W)), rng.standard_normal(5)
    r = post(output_app, T, example_items([7, 0], x[:2], y[:2]))
    assert r.status_code == 200 and r.get_json() == {"ok": True, "received": 2}
    r = post(output_app, T, synthgrad.encode_training_examples([3, 42, 99], x[2:], y[2:]))
    assert r.status_code == 200 and r.get_json() == {"ok": True, "received": 3}
    i = [7, 0, 3, 42, 99]
    np.testing.assert_array_equal(trainer.x[i], x)
    np.testing.assert_array_equal(trainer.y[i], y)
    assert np.flatnonzero(trainer.held).tolist() == sorted(i)
    others = np.setdiff1d(np.arange(len(trainer.held)), i)
    assert not trainer.x[others].any() and not trainer.y[others].any()
    s = status(output_app)
    assert s["examples_held"] == 5 and s["examples_received"] == 5
    assert s["examples_trained"] == 0 and s["training_passes"] == 0


def test_training_example_keeps_the_latest_per_index(output_app):
    trainer = output_app.config["TRAINER"]
    rng = np.random.default_rng(2)
    x1, x2 = rng.uniform(0, 1, (2, 1, W))
    assert post(output_app, T, example_items([3], x1, [0.25])).status_code == 200
    r = post(output_app, T, synthgrad.encode_training_examples([3], x2, [-0.5]))
    assert r.status_code == 200
    np.testing.assert_array_equal(trainer.x[3], x2[0])
    assert trainer.y[3] == -0.5
    s = status(output_app)
    assert s["examples_held"] == 1 and s["examples_received"] == 2


# --- What a training pass computes and sends -------------------------------------------------

def loss(layers, h, y):
    """L = 1/2 (y_hat - y)^2 for one example h (24,) through layers 2-3."""
    y_hat = sgd.predict(layers, h[None, :])              # (1,): a batch of one
    return 0.5 * float(y_hat[0] - y) ** 2


def numerical_dL_dh(layers, h, y, eps=EPS):
    """dL/dh (24,) by central differences."""
    h = h.copy()
    grad = np.zeros_like(h)
    for k in range(len(h)):
        old = h[k]
        h[k] = old + eps
        plus = loss(layers, h, y)
        h[k] = old - eps
        minus = loss(layers, h, y)
        h[k] = old
        grad[k] = (plus - minus) / (2 * eps)
    return grad


@pytest.mark.parametrize("batch_size", [1, 2, 5, 10])
def test_sent_gradients_are_dL_dh_before_each_update(make_output_app, batch_size):
    eta = 0.5                  # large, so that layers after an update give clearly other numbers
    app = make_output_app(batch_size=batch_size, learning_rate=eta)
    trainer = app.config["TRAINER"]
    hold(app, [3, 17, 42, 0, 99])
    layers = copy.deepcopy(trainer.layers)                               # before the pass
    order = copy.deepcopy(trainer.rng).permutation(np.flatnonzero(trainer.held))
    x, y = trainer.x.copy(), trainer.y.copy()
    initial = copy.deepcopy(layers)

    assert trainer.train_pass() is True
    i_sent, h_sent, g_sent, y_sent = trainer.sender.rows()     # (5,), (5, 24), (5, 24), (5,)
    np.testing.assert_array_equal(i_sent, order)                       # the pass's order
    assert h_sent.tobytes() == x[order].tobytes()                       # each i with its own h
    assert g_sent.shape == (5, W)
    assert y_sent.tobytes() == y[order].tobytes()                       # and its own target

    # Replay the pass by hand: check each example's gradient against finite differences
    # through the layers as they are *before* its batch's update, then make that update.
    squared_error = 0.0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        for j, index in enumerate(rows):
            np.testing.assert_allclose(g_sent[start + j], numerical_dL_dh(layers, x[index],
                                                                          y[index]),
                                       rtol=RTOL, atol=ATOL)
        squared_error += float(np.sum((sgd.predict(layers, x[rows]) - y[rows]) ** 2))
        sgd.train_step(layers, x[rows], y[rows], eta)    # one example is a batch of one
    assert_same_layers(trainer.layers, layers, rtol=1e-12)
    assert trainer.last_train_mse == pytest.approx(squared_error / 5, rel=1e-12)
    moved = max(np.abs(a.w - b.w).max() for a, b in zip(layers, initial, strict=True))
    assert moved > 1e-2                                             # it moved
    s = status(app)
    assert s["examples_trained"] == 5 and s["training_passes"] == 1


def test_adam_steps_layers_2_3_as_optimizers_adam_does_by_hand(make_output_app):
    app = make_output_app(batch_size=2, learning_rate=0.05, optimizer="adam")
    trainer = app.config["TRAINER"]
    hold(app, [3, 17, 42, 0, 99])
    layers, rng = copy.deepcopy(trainer.layers), copy.deepcopy(trainer.rng)
    adam, want_g = optimizers.Adam(layers, 0.05), []
    for _ in range(2):                             # two passes: the moments carry over
        order = rng.permutation(np.flatnonzero(trainer.held))
        for k in range(0, len(order), 2):
            rows = order[k:k + 2]
            want_g.append(sgd.backprop(layers, trainer.x[rows], trainer.y[rows])[1])
            adam.step()
        assert trainer.train_pass()
    _, _, g_sent, _ = trainer.sender.rows()
    assert g_sent.tobytes() == np.concatenate(want_g).tobytes()
    assert_same_layers(trainer.layers, layers)                 # bit for bit
    assert trainer.optimizer.t == adam.t == 6


def test_the_replay_is_sensitive_to_the_order_of_update_and_gradient(make_output_app):
    # The check above would catch gradients taken after the update: with eta 0.5 they differ.
    app = make_output_app(learning_rate=0.5)
    trainer = app.config["TRAINER"]
    hold(app, [3])
    layers = copy.deepcopy(trainer.layers)
    trainer.train_pass()
    _, _, g_sent, _ = trainer.sender.rows()
    before = numerical_dL_dh(layers, trainer.x[3], trainer.y[3])
    after = numerical_dL_dh(trainer.layers, trainer.x[3], trainer.y[3])
    np.testing.assert_allclose(g_sent[0], before, rtol=RTOL, atol=ATOL)
    assert np.abs(after - before).max() > 100 * (RTOL * np.abs(before).max() + ATOL)


def test_gradients_go_out_one_chunk_at_a_time_with_the_same_numbers(make_output_app):
    chunked, whole = make_output_app(), make_output_app()       # same seed, same data
    for app in (chunked, whole):
        hold(app, [5, 6, 7, 8, 9])
    chunked.config["TRAINER"].train_pass(chunk=2)
    whole.config["TRAINER"].train_pass()
    puts = chunked.config["TRAINER"].sender.puts
    assert [len(i) for i, *_ in puts] == [2, 2, 1]
    for a, b in zip(chunked.config["TRAINER"].sender.rows(),
                    whole.config["TRAINER"].sender.rows(), strict=True):
        assert a.tobytes() == b.tobytes()
    assert_same_layers(chunked.config["TRAINER"].layers, whole.config["TRAINER"].layers)


def test_train_pass_with_nothing_held_does_nothing(output_app):
    trainer = output_app.config["TRAINER"]
    before = layer_bytes(trainer.layers)
    assert trainer.train_pass() is False
    assert layer_bytes(trainer.layers) == before
    assert trainer.sender.puts == [] and trainer.last_train_mse is None
    assert status(output_app)["training_passes"] == 0


def test_train_on_arrivals_trains_each_activation_once_in_the_order_it_came(make_output_app):
    """--train-on arrivals: a pass takes the examples received since they were last trained on,
    oldest first, in whole minibatches; nothing before a minibatch has arrived; a newer
    activation of an example already trained on is new again."""
    app = make_output_app(batch_size=2, train_on="arrivals")
    trainer = app.config["TRAINER"]
    hold(app, [7])
    assert trainer.train_pass() is False                       # half a minibatch: wait
    hold(app, [3, 9, 4])
    assert trainer.train_pass()
    (idx, *_), = trainer.sender.puts
    assert list(idx) == [7, 3, 9, 4] and status(app)["examples_trained"] == 4
    assert trainer.train_pass() is False                       # nothing new: nothing trained
    hold(app, [9, 5])                                          # 9 again, with a new activation
    assert trainer.train_pass()
    assert list(trainer.sender.puts[-1][0]) == [9, 5]
    assert status(app)["examples_trained"] == 6 and status(app)["examples_held"] == 5


def test_training_passes_lower_the_mse(make_output_app):
    app = make_output_app(learning_rate=0.05)
    trainer = app.config["TRAINER"]
    rng = np.random.default_rng(3)
    h = rng.uniform(0, 1, (100, W))                                     # (100, 24)
    a = rng.standard_normal(W) / np.sqrt(W)
    y = 0.5 * np.sin(6 * (h - 0.5) @ a)                                 # (100,)
    post(app, T, synthgrad.encode_training_examples(np.arange(100), h, y))

    def mse():
        return float(np.mean((sgd.predict(trainer.layers, h) - y) ** 2))

    mse_before, train_mse = mse(), []
    for _ in range(20):
        assert trainer.train_pass()
        train_mse.append(status(app)["last_train_mse"])
    assert train_mse[-1] < 0.3 * train_mse[0], train_mse
    assert train_mse[-1] < train_mse[4]
    assert mse() < 0.3 * mse_before
    assert status(app)["training_passes"] == 20
    assert status(app)["examples_trained"] == 2_000


def test_batches_larger_than_a_chunk_are_not_cut_at_chunk_boundaries(make_output_app):
    # train_pass walks the pass in chunks of 500 and starts a new batch at every chunk, so with
    # --batch-size 600 the updates average over 500, 500 and 200 examples instead of 600 and
    # 600 (and with --batch-size 3 every chunk ends in a batch of 2). Fixed: round the chunk to a
    # whole number of batches, chunk = max(1, chunk // bs) * bs, at the top of train_pass.
    app = make_output_app(max_examples=1_200, batch_size=600)
    trainer = app.config["TRAINER"]
    hold(app, np.arange(1_200))
    batch_sizes = []
    descend = trainer.layers[0].descend

    def counting_descend(eta):
        batch_sizes.append(len(trainer.layers[0].a_in))
        descend(eta)

    trainer.layers[0].descend = counting_descend
    trainer.train_pass()
    assert batch_sizes == [600, 600]


# --- Refused requests -------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
TOO_MANY = synthgrad.MAX_EXAMPLES_PER_REQUEST + 1
ROW = arr(np.full(W, 0.5))
Y = arr(0.25)


def values(*special, n=W):
    """A width-n values list whose first entries are `special`."""
    return list(special) + [0.5] * (n - len(special))


def item(i=0, x=ROW, y=Y, drop=()):
    d = {"i": i, "x": x, "y": y}
    return {k: v for k, v in d.items() if k not in drop}


def batch(i=(0, 1), x=None, y=None, drop=()):
    n = len(i)
    d = {"i": list(i), "x": x or arr(np.full((n, W), 0.5)), "y": y or arr(np.full(n, 0.25))}
    return {k: v for k, v in d.items() if k not in drop}


BAD_BODIES = {
    "not JSON": "{'i': 0}",
    "empty body": "",
    "not UTF-8": b'[{"i": "\xff"}]',
    "null": "null",
    "a number": "7",
    "a string": '"example"',
    "list of numbers": [1, 2, 3],
    "missing i": [item(drop=("i",))],
    "missing x": [item(0), item(1, drop=("x",))],
    "missing y": [item(drop=("y",))],
    "batched, missing y": batch(drop=("y",)),
    "batched, missing x": batch(drop=("x",)),
    "batched, i not a list": {**batch((0,)), "i": 0},
    "x of width 23": [item(x=arr(np.zeros(W - 1)))],
    "x a bare list": [item(x=[0.5] * W)],
    "y with shape [24]": [item(y=ROW)],
    "y with shape [1]": [item(y=arr([0.25]))],
    "batched, x of width 23": batch(x=arr(np.zeros((2, W - 1)))),
    "batched, y of shape (2, 1)": batch(y=arr(np.zeros((2, 1)))),
    "batched, rows != indices": batch((0, 1, 2), x=arr(np.zeros((2, W)))),
    "batched, x flat": batch((0,), x=ROW),
    "shape and values disagree": [item(x={"shape": [W], "values": [0.5] * (W + 1)})],
    "NaN in x": [item(x={"shape": [W], "values": values(NAN)})],
    "Infinity in y": [item(y={"shape": [], "values": [INF]})],
    "batched, -Infinity in x": batch((0,), x={"shape": [1, W], "values": values(-INF)}),
    "1e999 in y": json.dumps([item(y={"shape": [], "values": [7.25]})]).replace("7.25", "1e999"),
    "string values": [item(x={"shape": [W], "values": ["0.5"] * W})],
    "bool values": [item(y={"shape": [], "values": [True]})],
    "null value": [item(x={"shape": [W], "values": values(None)})],
    "integer too large for float64": [item(y={"shape": [], "values": [10 ** 400]})],
    "index out of range": [item(0), item(100)],
    "negative index": batch((-1, 0)),
    "duplicate index": [item(3), item(3)],
    "batched, duplicate index": batch((5, 6, 5)),
    "bool index": [item(True)],
    "float index": batch((0, 2.0)),
    "string index": [item("3")],
    "no examples (list)": [],
    "no examples (batched)": batch(()),
    "too many (list)": [{}] * TOO_MANY,
    "too many (batched)": {"i": list(range(TOO_MANY)), "x": ROW, "y": Y},
    "nested too deep": "[" * 100_000 + "]" * 100_000,
}


def trainer_state(app):
    """Everything a refused request must leave alone, as bytes and numbers."""
    trainer = app.config["TRAINER"]
    s = status(app)
    return {"x": trainer.x.tobytes(), "y": trainer.y.tobytes(), "held": trainer.held.tobytes(),
            "layers": layer_bytes(trainer.layers), "puts": len(trainer.sender.puts),
            "examples_held": s["examples_held"], "examples_received": s["examples_received"]}


@pytest.fixture
def held_output_app(output_app):
    """An output trainer holding examples 0..9, so a partial write would show."""
    hold(output_app, np.arange(10))
    return output_app


def assert_still_healthy(app):
    before = status(app)["examples_received"]
    r = post(app, T, synthgrad.encode_training_examples([50, 51], np.full((2, W), 0.5), [1, 2]))
    assert r.status_code == 200 and r.get_json() == {"ok": True, "received": 2}
    assert status(app)["examples_received"] == before + 2


def test_there_are_enough_bad_bodies():
    assert len(BAD_BODIES) >= 15


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES)
def test_bad_body_is_refused_and_changes_nothing(held_output_app, body):
    app = held_output_app
    before, refused = trainer_state(app), status(app)["requests_refused"]
    r = post(app, T, body)
    assert r.status_code == 400
    assert r.is_json
    error = r.get_json()["error"]
    assert isinstance(error, str) and error.strip()
    assert trainer_state(app) == before
    assert status(app)["requests_refused"] == refused + 1
    assert_still_healthy(app)


@pytest.mark.parametrize("method, path, code", [
    ("GET", "/no_such_path", 404),
    ("POST", "/provide_gradient", 404),          # the oracle's endpoint, not this server's
    ("GET", T, 405),
    ("DELETE", T, 405),
    ("POST", S, 405),
])
def test_unknown_path_and_wrong_method_answer_json(held_output_app, method, path, code):
    app = held_output_app
    before, refused = trainer_state(app), status(app)["requests_refused"]
    r = app.test_client().open(path, method=method, data=json.dumps([item(20)]))
    assert r.status_code == code
    assert r.is_json and isinstance(r.get_json()["error"], str) and r.get_json()["error"]
    assert trainer_state(app) == before
    assert status(app)["requests_refused"] == refused + 1
    assert_still_healthy(app)


def test_body_over_the_size_limit_is_413(held_output_app, monkeypatch):
    app = held_output_app
    assert app.config["MAX_CONTENT_LENGTH"] == synthgrad.MAX_BODY_BYTES
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 2_000)
    body = synthgrad.encode_training_examples(np.arange(20, 30), np.full((10, W), 0.123456789),
                                              np.zeros(10))
    assert len(json.dumps(body)) > 2_000
    before, refused = trainer_state(app), status(app)["requests_refused"]
    r = post(app, T, body)
    assert r.status_code == 413
    assert r.is_json and r.get_json()["error"]
    assert trainer_state(app) == before
    assert status(app)["requests_refused"] == refused + 1
    monkeypatch.undo()
    assert_still_healthy(app)


@pytest.mark.parametrize("body", [
    [item(x={"shape": [1] * 65, "values": [0.5]})],
    '[{"i": 0, "x": {"shape": [24], "values": [' + "1" * 5_000 + "]}}]",
], ids=["65 dimensions", "5,000-digit value"])
def test_extreme_bodies_get_400_not_500(output_app, body):
    # The same decode_array / parse_json gaps as in test_oracle.py (the protocol is shared).
    r = post(output_app, T, body)
    assert r.status_code == 400, r.get_json()


# --- GET /status ------------------------------------------------------------------------------

def check_status_types(s):
    assert s["role"] == "output_trainer"
    assert type(s["uptime_s"]) is float and s["uptime_s"] >= 0
    for key in ("examples_held", "examples_received", "examples_trained", "training_passes",
                "requests_served", "requests_refused", "snapshots_saved"):
        assert type(s[key]) is int and s[key] >= 0, key
    assert s["last_train_mse"] is None or type(s["last_train_mse"]) is float
    g = s["gradients_to_oracle"]
    assert g is None or (isinstance(g, dict) and all(type(v) is int for v in g.values()))


def test_status_fields_and_types(output_app):
    trainer = output_app.config["TRAINER"]
    s = status(output_app)
    check_status_types(s)
    assert s["examples_held"] == 0 and s["last_train_mse"] is None
    hold(output_app, [1, 2, 3])
    assert trainer.train_pass()
    s = status(output_app)
    check_status_types(s)
    assert s["examples_held"] == 3 and s["examples_trained"] == 3 and s["training_passes"] == 1
    assert type(s["last_train_mse"]) is float
    assert s["requests_served"] >= 2 and s["requests_refused"] == 0


def test_status_with_the_real_sender_while_the_oracle_is_down(make_output_app):
    app = make_output_app(keep_real_sender=True)
    trainer = app.config["TRAINER"]
    assert isinstance(trainer.sender, sender.Sender)
    hold(app, [1, 2, 3])
    assert trainer.train_pass()                            # training does not wait for the oracle
    deadline = time.monotonic() + 30                 # a guard against a hang only
    while status(app)["gradients_to_oracle"]["failed_requests"] < 1:
        assert time.monotonic() < deadline, "the sender never tried the (closed) oracle port"
        time.sleep(0.005)
    s = status(app)
    check_status_types(s)
    assert s["gradients_to_oracle"]["sent"] == 0
    assert set(s["gradients_to_oracle"]) >= {"sent", "superseded", "dropped", "failed_requests",
                                             "unsent"}


def test_status_without_a_sender(make_output_app):
    app = make_output_app(keep_real_sender=True, send_gradients=False)
    assert app.config["TRAINER"].sender is None
    s = status(app)
    check_status_types(s)
    assert s["gradients_to_oracle"] is None
    hold(app, [4])
    assert app.config["TRAINER"].train_pass()


def test_two_apps_do_not_share_state(make_output_app):
    a, b = make_output_app(), make_output_app()
    hold(a, [1, 2, 3])
    assert status(a)["examples_held"] == 3
    assert status(b)["examples_held"] == 0 and not b.config["TRAINER"].held.any()


# --- Weight snapshots -------------------------------------------------------------------------

def test_start_and_stop_training_write_initial_and_final_snapshots(output_app, tmp_path):
    trainer = output_app.config["TRAINER"]
    hold(output_app, np.arange(20))
    initial = copy.deepcopy(trainer.layers)
    trainer.start_training()
    deadline = time.monotonic() + 30                 # a guard against a hang only
    while status(output_app)["training_passes"] < 2:
        assert time.monotonic() < deadline, "the training thread made no passes"
        time.sleep(0.005)
    trainer.stop_training()
    assert trainer.sender.closed
    loaded = snapshots.load_layers(tmp_path / "layers23_initial.npz", snapshots.LAYERS23_SHAPES)
    assert_same_layers(loaded, initial)
    final = snapshots.load_layers(tmp_path / "layers23_final.npz", snapshots.LAYERS23_SHAPES)
    assert_same_layers(final, trainer.layers)
    assert not np.array_equal(final[0].w, initial[0].w)           # it did train in between
    assert [layer.activation for layer in final] == [sgd.Sigmoid, sgd.Linear]


def test_a_server_stopped_before_it_trained_writes_nothing(output_app, tmp_path):
    trainer = output_app.config["TRAINER"]
    trainer.start_training()
    time.sleep(0.2)                                                # nothing held: no pass
    trainer.stop_training()
    assert list(tmp_path.iterdir()) == []


def test_by_default_each_run_gets_a_folder_of_its_own(make_output_app, monkeypatch, tmp_path):
    monkeypatch.setattr(snapshots, "PROGRESS", tmp_path / "progress")
    app = make_output_app(progress_dir=None)
    run = status(app)["run"]
    assert re.fullmatch(r"\d{8}-\d{6}", run)
    assert not (tmp_path / "progress").exists()                   # nothing before training
    hold(app, np.arange(5))
    assert app.config["TRAINER"].train_pass()
    assert (tmp_path / "progress" / run / "layers23_initial.npz").exists()


def test_a_snapshot_is_saved_when_a_tick_has_passed(output_app, tmp_path):
    trainer = output_app.config["TRAINER"]
    hold(output_app, np.arange(5))
    trainer.snapshotter.next_tick = 0                              # a tick is due
    assert trainer.train_pass()
    found = snapshots.list_snapshots(tmp_path)["layers23"]
    ticks = [label for label in found if isinstance(label, int)]
    assert len(ticks) == 1 and ticks[0] % trainer.config["snapshot_interval"] == 0
    saved = snapshots.load_layers(found[ticks[0]], snapshots.LAYERS23_SHAPES)
    assert_same_layers(saved, trainer.layers)                      # saved at the end of the pass
    assert status(output_app)["snapshots_saved"] == 1
    assert trainer.train_pass()                                    # the next tick is 10 s away
    assert status(output_app)["snapshots_saved"] == 1


# --- The command line ------------------------------------------------------------------------

def test_parse_args_defaults():
    args = train_output.parse_args([])
    assert args.port == synthgrad.DEFAULT_OUTPUT_TRAINER_PORT
    assert args.host == synthgrad.DEFAULT_HOST
    for key, value in train_output.DEFAULTS.items():
        if hasattr(args, key):
            assert getattr(args, key) == value, key
    original = train_output.parse_args(["--original", "--learning-rate", "0.01"])
    assert (original.optimizer, original.batch_size, original.learning_rate) == ("sgd", 1, 0.01)


@pytest.mark.parametrize("argv", [
    ["--batch-size", "0"], ["--batch-size", "1.5"], ["--max-examples", "0"],
    ["--learning-rate", "0"], ["--learning-rate", "-0.1"], ["--learning-rate", "nan"],
    ["--snapshot-interval", "0"], ["--snapshot-interval", "0.5"], ["--seed", "zero"],
    ["--optimizer", "rmsprop"], ["--no-such-option"], ["--report-every", "nan"],
    ["--live-port", "-1"],
])
def test_parse_args_refuses_bad_values(argv, capsys):
    with pytest.raises(SystemExit) as e:
        train_output.parse_args(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--learning-rate", "inf"], ["--port", "70000"],
                                  ["--port", "-1"]])
def test_parse_args_refuses_impossible_values(argv):
    # See the same test in test_oracle.py: refuse a non-finite learning rate and a port outside
    # 0..65535 in parse_args, with a message, instead of failing later.
    with pytest.raises(SystemExit):
        train_output.parse_args(argv)


def test_help_works_and_main_starts_nothing(capsys):
    with pytest.raises(SystemExit) as e:
        train_output.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--port", "--oracle-url", "--learning-rate", "--optimizer", "--batch-size",
                   "--progress-dir", "--snapshot-interval", "--seed"):
        assert option in out


def test_binary_form_is_stored_like_the_json_form_and_checked_the_same(make_output_app):
    via_json, via_binary = make_output_app(), make_output_app()
    i = np.array([3, 9, 1])
    h, y = hold(via_json, i, seed=4)
    client = via_binary.test_client()
    body = synthgrad.encode_binary({"i": i, "x": h, "y": y})
    r = client.post(T, data=body, content_type=synthgrad.BINARY_TYPE)
    assert r.status_code == 200 and r.get_json() == {"ok": True, "received": 3}
    a, b = via_json.config["TRAINER"], via_binary.config["TRAINER"]
    assert (a.x.tobytes(), a.y.tobytes(), a.held.tobytes()) == \
        (b.x.tobytes(), b.y.tobytes(), b.held.tobytes())
    before = (b.x.tobytes(), b.y.tobytes(), b.held.tobytes())
    for bad in (synthgrad.encode_binary({"i": i, "x": np.full((3, W), np.inf), "y": y}),
                synthgrad.encode_binary({"i": i, "x": h}), body[:-1], b"SGA1"):
        r = client.post(T, data=bad, content_type=synthgrad.BINARY_TYPE)
        assert r.status_code == 400 and r.get_json()["error"]
    assert (b.x.tobytes(), b.y.tobytes(), b.held.tobytes()) == before


# --- Divergence and the shared token ------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # overflow is the point
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_divergence_stops_training_keeps_finite_weights_and_sends_no_nan(make_output_app,
                                                                         optimizer):
    app = make_output_app(learning_rate=1e300, batch_size=1, optimizer=optimizer)
    trainer = app.config["TRAINER"]
    hold(app, list(range(20)))
    assert trainer.train_pass() is True
    assert trainer.diverged and trainer.stop.is_set()
    assert all(np.isfinite(layer.w).all() and np.isfinite(layer.b).all()
               for layer in trainer.layers)
    assert all(np.isfinite(a).all() for put in trainer.sender.puts for a in put[1:])
    assert status(app)["diverged"] is True
    assert post(app, T, synthgrad.encode_training_examples([0], np.zeros((1, W)),
                                                           np.zeros(1))).status_code == 200


def test_token_required_when_configured(make_output_app):
    app = make_output_app(token="s3cret")
    client = app.test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"},
                    {"Authorization": "Bearer s3cret "}):
        r = client.get(S, headers=headers)
        assert r.status_code == 401 and "token" in r.get_json()["error"]
    body = synthgrad.encode_training_examples([1], np.zeros((1, W)), np.zeros(1))
    r = client.post(T, json=body)
    assert r.status_code == 401 and not app.config["TRAINER"].held.any()
    r = client.get(S, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200 and r.get_json()["requests_refused"] == 5


# --- Checkpoints ---------------------------------------------------------------------------------

def test_checkpoint_round_trip_restores_layers_examples_and_counters(make_output_app, tmp_path):
    path = tmp_path / "ckpt" / "output.npz"
    app = make_output_app(checkpoint=str(path))
    trainer = app.config["TRAINER"]
    hold(app, [2, 5, 7])
    trainer.train_pass()
    trainer.save_checkpoint(path)
    resumed = make_output_app(checkpoint=str(path), resume=True).config["TRAINER"]
    assert_same_layers(resumed.layers, trainer.layers)
    assert (resumed.x.tobytes(), resumed.y.tobytes(), resumed.held.tobytes()) == \
        (trainer.x.tobytes(), trainer.y.tobytes(), trainer.held.tobytes())
    assert [resumed.counts[k] for k in trainer.COUNTERS] == \
        [trainer.counts[k] for k in trainer.COUNTERS] == [3, 3, 1]
    assert not list(path.parent.glob(".*.tmp"))                    # written atomically


def test_arrivals_not_yet_trained_are_kept_by_a_checkpoint(make_output_app, tmp_path):
    """--train-on arrivals: a pass marked its examples trained when it began, and `fresh` was not
    saved, so those waiting (or a mid-pass checkpoint's rest) were never trained after resume."""
    path = tmp_path / "arrivals.npz"
    app = make_output_app(checkpoint=str(path), train_on="arrivals", batch_size=10)
    trainer = app.config["TRAINER"]
    hold(app, list(range(25)))
    assert trainer.train_pass() and trainer.counts["examples_trained"] == 20    # 5 wait
    trainer.save_checkpoint(path)
    resumed = make_output_app(checkpoint=str(path), resume=True, train_on="arrivals",
                              batch_size=10)
    hold(resumed, list(range(25, 30)), seed=1)
    assert resumed.config["TRAINER"].train_pass()
    assert resumed.config["TRAINER"].counts["examples_trained"] == 30    # the 5 and the new 5


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # overflow is the point
def test_a_diverged_process_writes_no_checkpoint_over_the_last_it_can_resume_from(
        make_output_app, tmp_path):
    """Adam's moments hold NaN after a divergence (the guard puts back only the weights): the
    checkpoint written on Ctrl-C replaced the good one, and --resume then refused it."""
    path = tmp_path / "ckpt.npz"
    app = make_output_app(checkpoint=str(path), optimizer="adam", learning_rate=1e300)
    trainer = app.config["TRAINER"]
    hold(app, [2, 5, 7])
    trainer.checkpointer.now()                                   # the last good one
    good = path.read_bytes()
    trainer.train_pass()
    assert trainer.diverged
    trainer.checkpointer.now()
    assert path.read_bytes() == good
    make_output_app(checkpoint=str(path), resume=True, optimizer="adam")     # resumes


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # overflow is the point
def test_a_colocated_model_that_diverges_stops_the_stage_and_status_says_so(make_output_app):
    """It stopped only the model: /status said "diverged": false, the stage trained on, and the
    stage below followed a model frozen at its last finite weights, unseen."""
    app = make_output_app(colocated=True)
    trainer = app.config["TRAINER"]
    trainer.boundary.optimizer.learning_rate = 1e300
    hold(app, list(range(40)))
    trainer.train_pass()
    assert trainer.boundary.diverged and trainer.diverged and trainer.stop.is_set()
    assert app.test_client().get("/status").get_json()["diverged"] is True


def test_a_checkpoint_keeps_adams_state_and_refuses_another_optimizer(make_output_app, tmp_path):
    path, sgd_path = tmp_path / "adam.npz", tmp_path / "sgd.npz"
    app = make_output_app(optimizer="adam")
    trainer = app.config["TRAINER"]
    hold(app, [2, 5, 7])
    trainer.train_pass()
    trainer.save_checkpoint(path)
    resumed = make_output_app(optimizer="adam", checkpoint=str(path), resume=True)
    resumed = resumed.config["TRAINER"]
    assert resumed.optimizer.t == trainer.optimizer.t == 3
    resumed.rng = copy.deepcopy(trainer.rng)           # the same order for the next pass
    trainer.train_pass()
    resumed.train_pass()                               # as if it had never stopped
    assert_same_layers(resumed.layers, trainer.layers)
    with pytest.raises(ValueError, match="written with --optimizer adam; this run uses sgd"):
        make_output_app(checkpoint=str(path), resume=True)
    make_output_app().config["TRAINER"].save_checkpoint(sgd_path)
    with pytest.raises(ValueError, match="written with --optimizer sgd; this run uses adam"):
        make_output_app(optimizer="adam", checkpoint=str(sgd_path), resume=True)


def test_a_bad_checkpoint_is_refused_and_nothing_is_loaded(make_output_app, tmp_path):
    path = tmp_path / "output.npz"
    app = make_output_app()
    app.config["TRAINER"].save_checkpoint(path)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[:len(data) // 2])
    for bad, match in [(truncated, "cannot read"), (tmp_path / "missing.npz", "cannot read")]:
        with pytest.raises(ValueError, match=match):
            make_output_app(checkpoint=str(bad), resume=True)
    with pytest.raises(ValueError, match="shape"):                 # another --max-examples
        make_output_app(checkpoint=str(path), resume=True, max_examples=50)


def test_body_size_limit_is_configurable(make_output_app):
    app = make_output_app(max_body_bytes=2048)
    small = synthgrad.encode_training_examples([0], np.zeros((1, W)), np.zeros(1))
    big = synthgrad.encode_training_examples(list(range(20)), np.zeros((20, W)), np.zeros(20))
    assert post(app, T, small).status_code == 200
    r = post(app, T, big)
    assert r.status_code == 413 and r.get_json()["error"]
    assert app.config["TRAINER"].held.sum() == 1


# --- --colocated: the model of the boundary below, learned here -------------------------------

def test_colocated_the_model_learns_from_the_true_gradients_the_pass_computes(make_output_app):
    """A pass with --colocated: layers 2-3 step as by hand (sgd.backprop, Adam), and the
    boundary model learns from exactly the dL/dh that backprop gave for each chunk's h and y,
    in place of sending them anywhere."""
    app = make_output_app(colocated=True, optimizer="adam", learning_rate=0.01, batch_size=2)
    trainer = app.config["TRAINER"]
    assert trainer.sender is None and trainer.oracle is None      # nothing goes to an oracle
    h, y = hold(app, [3, 17, 42, 0, 99])
    layers, rng = copy.deepcopy(trainer.layers), copy.deepcopy(trainer.rng)
    model, model_rng = copy.deepcopy(trainer.boundary), copy.deepcopy(trainer.boundary.rng)
    adam = optimizers.Adam(layers, 0.01)
    order = rng.permutation(np.flatnonzero(trainer.held))
    x, t = trainer.x[order], trainer.y[order]
    g = np.empty_like(x)
    for k in range(0, 5, 2):                               # layers 2-3 by hand
        g[k:k + 2] = sgd.backprop(layers, x[k:k + 2], t[k:k + 2])[1]
        adam.step()
    for _ in range(2):                                     # the model's pass by hand
        rows = model_rng.permutation(5)                    # one minibatch of (up to) 256
        model.learn(x[rows], t[rows], g[rows])
    assert trainer.train_pass() is True
    assert_same_layers(trainer.layers, layers)
    for ours, hand in zip(trainer.boundary.published, model.weights(), strict=True):
        assert ours.tobytes() == hand.tobytes()
    assert trainer.boundary.version == 2


def test_colocated_serves_its_model_at_weights_and_its_quality_in_status(make_output_app):
    app = make_output_app(colocated=True)
    trainer = app.config["TRAINER"]
    hold(app, list(range(40)))
    trainer.train_pass()
    trainer.train_pass()                                   # the second pass is measured
    r = app.test_client().get(synthgrad.WEIGHTS)
    assert r.status_code == 200
    weights, conditioned, version = synthgrad.decode_weights(r.get_json(), W)
    assert conditioned is True and version == trainer.boundary.version == 4
    for got, kept in zip(weights, trainer.boundary.published, strict=True):
        assert got.tobytes() == kept.tobytes()
    r = app.test_client().get(synthgrad.WEIGHTS, headers={"Accept": synthgrad.BINARY_TYPE})
    assert r.mimetype == synthgrad.BINARY_TYPE                 # a --wire binary stage's fetch
    binary = synthgrad.decode_weights(synthgrad.parse_binary(r.get_data()), W)
    assert binary[1:] == (True, 4) and all(
        a.tobytes() == b.tobytes() for a, b in zip(binary[0], weights, strict=True))
    s = status(app)
    assert s["boundary_model_steps"] == 4 and s["gradients_to_oracle"] is None
    q = s["synthetic_gradient_quality"]
    assert q["window"] == 40 and -1 <= q["cosine_similarity"] <= 1
    line = trainer.metrics()                               # flat, as the oracle's
    assert line["cosine_similarity"] == q["cosine_similarity"] and "window" not in line
    plain = make_output_app()                              # without it: no /weights at all
    assert plain.test_client().get(synthgrad.WEIGHTS).status_code == 404
    assert "synthetic_gradient_quality" not in status(plain)


def test_colocated_checkpoint_keeps_the_boundary_model(make_output_app, tmp_path):
    path = tmp_path / "colocated.npz"
    app = make_output_app(colocated=True, optimizer="adam")
    trainer = app.config["TRAINER"]
    hold(app, [2, 5, 7])
    trainer.train_pass()
    trainer.save_checkpoint(path)
    resumed = make_output_app(colocated=True, optimizer="adam", checkpoint=str(path),
                              resume=True).config["TRAINER"]
    assert resumed.boundary.version == trainer.boundary.version == 2
    for a, b in zip(resumed.boundary.published, trainer.boundary.published, strict=True):
        assert a.tobytes() == b.tobytes()
    assert resumed.boundary.optimizer.t == 2
    with pytest.raises(ValueError, match="boundary_w0"):    # a checkpoint without the model
        make_output_app(optimizer="adam").config["TRAINER"].save_checkpoint(tmp_path / "p.npz")
        make_output_app(colocated=True, optimizer="adam", checkpoint=str(tmp_path / "p.npz"),
                        resume=True)


def test_colocated_is_an_option():
    args = train_output.parse_args(["--colocated"])
    assert args.colocated is True
    assert train_output.parse_args([]).colocated is False
