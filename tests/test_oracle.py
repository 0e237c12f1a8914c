"""Tests for oracle.py through Flask's test client: the numpy forward pass against the Keras
model, both request forms of both endpoints, the live quality measure against a hand-computed
cosine, training passes, refused bodies (state untouched, refusal counted, server still healthy),
GET /status and the command line.

Run: .venv/bin/pytest -q tests/test_oracle.py
"""

import json

import numpy as np
import pytest

import oracle
import synthgrad
from helpers import arr, post, status, wait_for
from parts import boundary, http

W = synthgrad.HIDDEN_SIZE       # 24
E, P, S = synthgrad.ESTIMATE_GRADIENTS, synthgrad.PROVIDE_GRADIENT, synthgrad.STATUS
RTOL, ATOL = 1e-5, 1e-6         # Keras computes in float32, model_forward in float64


def decoded(response, shape):
    assert response.status_code == 200, response.get_json()
    return synthgrad.decode_array(response.get_json()["gradients"], shape)


def gradient_items(i, h, g):
    """The original per-example /provide_gradient body."""
    return [{"i": int(k), "h": arr(h[j]), "gradient": arr(g[j])} for j, k in enumerate(i)]


def hold(app, n, seed=0, start=0):
    """Post n random (h, g) for indices start..start+n-1 (batched form); returns (i, h, g)."""
    rng = np.random.default_rng(seed)
    i = np.arange(start, start + n)
    h, g = rng.uniform(0, 1, (n, W)), 0.1 * rng.standard_normal((n, W))
    r = post(app, P, synthgrad.encode_gradients(i, h, g))
    assert r.status_code == 200 and r.get_json() == {"ok": True, "received": n}
    return i, h, g


def keras_weights_copy(o):
    return [w.copy() for w in o.model.get_weights()]


# --- The numpy forward pass is the Keras model ------------------------------------------------

def test_numpy_forward_matches_keras_before_and_after_training(oracle_app):
    o = oracle_app.config["ORACLE"]
    rng = np.random.default_rng(1)
    h = np.concatenate([rng.uniform(0, 1, (16, W)), 3 * rng.standard_normal((4, W))])  # (20, 24)

    def check():
        ours = boundary.model_forward(o.weights, h)                      # (20, 24)
        assert ours.shape == (20, W) and ours.dtype == np.float64
        np.testing.assert_allclose(ours, o.model.predict_on_batch(h), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(ours, np.asarray(o.model(h)), rtol=RTOL, atol=ATOL)

    check()
    before = [w.copy() for w in o.weights]
    hold(oracle_app, 40)
    assert o.train_pass()
    assert any(not np.array_equal(a, b) for a, b in zip(before, o.weights, strict=True))
    check()


# --- /estimate_gradients --------------------------------------------------------------------

def test_estimate_gradients_in_both_forms(oracle_app):
    o = oracle_app.config["ORACLE"]
    h = np.random.default_rng(2).uniform(0, 1, (5, W))
    expected = boundary.model_forward(o.weights, h)                      # (5, 24)
    listed = decoded(post(oracle_app, E, {"activations": [arr(row) for row in h]}), (5, W))
    batched = decoded(post(oracle_app, E, synthgrad.encode_estimate_request(h)), (5, W))
    np.testing.assert_array_equal(listed, expected)     # float64 survives JSON exactly
    np.testing.assert_array_equal(batched, expected)
    one = decoded(post(oracle_app, E, {"activations": [arr(h[3])]}), (1, W))
    np.testing.assert_allclose(one[0], expected[3], rtol=1e-14)   # BLAS may sum (1, 24) apart
    assert status(oracle_app)["estimates_served"] == 11


def test_estimate_gradients_binary_question_gets_the_same_answer_in_binary(make_oracle_app):
    for conditioned in (False, True):
        app = make_oracle_app(conditioned=conditioned)
        o = app.config["ORACLE"]
        rng = np.random.default_rng(3)
        h, y = rng.uniform(0, 1, (7, W)), rng.uniform(0, 1, 7)
        r = app.test_client().post(E, data=synthgrad.encode_binary({"activations": h, "y": y}),
                                   content_type=synthgrad.BINARY_TYPE)
        assert r.status_code == 200 and r.mimetype == synthgrad.BINARY_TYPE
        got = synthgrad.parse_binary(r.data)
        assert list(got) == ["gradients"]
        np.testing.assert_array_equal(got["gradients"], boundary.model_forward(o.weights,
                                                                            o.inputs(h, y)))
        as_json = decoded(post(app, E, synthgrad.encode_estimate_request(h, y)), (7, W))
        np.testing.assert_array_equal(got["gradients"], as_json)


def test_estimate_gradients_bad_binary_question_is_a_json_400(make_oracle_app):
    app = make_oracle_app(conditioned=True)
    h = np.zeros((2, W))
    for body, match in ((b"SGA1", "binary body"),
                        (synthgrad.encode_binary({"activations": np.zeros((2, 5))}), "shape"),
                        (synthgrad.encode_binary({"activations": h}), "missing y"),
                        (synthgrad.encode_binary({"activations": h, "y": [np.nan, 0.0]}),
                         "finite")):
        r = app.test_client().post(E, data=body, content_type=synthgrad.BINARY_TYPE)
        assert r.status_code == 400 and match in r.get_json()["error"], r.get_json()
    assert status(app)["estimates_served"] == 0


def test_binary_client_against_a_served_oracle(make_oracle_app):
    # The real path: waitress, http.client, the Content-Type negotiation, both directions.
    import threading
    from waitress.server import create_server
    app, stop = make_oracle_app(), threading.Event()
    server = create_server(app, host="127.0.0.1", port=0, threads=2)
    # stopped as a server script is, by its loop (a close() from here while the loop is in
    # select() gave CI "Exception in thread ... Bad file descriptor")
    thread = threading.Thread(target=http.serve, args=(server, "oracle"), kwargs={"stop": stop},
                              daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.effective_port}"
    binary, plain = synthgrad.OracleClient(url, binary=True), synthgrad.OracleClient(url)
    try:
        h = np.random.default_rng(4).uniform(0, 1, (10, W))
        want = boundary.model_forward(app.config["ORACLE"].weights, h)
        np.testing.assert_array_equal(binary.estimate_gradients(h), want)
        np.testing.assert_array_equal(plain.estimate_gradients(h), want)
        with pytest.raises(synthgrad.PeerError, match="answered 400"):
            binary.estimate_gradients(np.zeros((10, 3)))
        np.testing.assert_array_equal(binary.estimate_gradients(h), want)  # still serving
        fetched = [client.weights() for client in (binary, plain)]   # GET /weights, both forms
        assert fetched[0][1:] == fetched[1][1:] and all(
            a.tobytes() == b.tobytes() for a, b in zip(fetched[0][0], fetched[1][0], strict=True))
    finally:
        binary.close()
        plain.close()
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


def test_a_server_on_an_ipv6_host_logs_a_url_a_client_can_use(make_oracle_app, caplog):
    """`oracle.py --host ::1` logged "listening on http://::1:PORT", which no client can use
    (and handed the live page that address): an IPv6 host goes in brackets."""
    import threading
    try:
        server, hand_over = http.listen("::1", 0, "oracle.py", 1 << 20)
    except SystemExit as e:
        pytest.skip(f"no IPv6 loopback here: {e}")
    hand_over(make_oracle_app())
    caplog.set_level("INFO", logger="synthgrad")
    stop = threading.Event()
    thread = threading.Thread(target=http.serve, args=(server, "oracle"), kwargs={"stop": stop},
                              daemon=True)
    thread.start()
    try:
        url = f"http://[::1]:{server.effective_port}"
        assert http.url_of(server) == url
        wait_for(lambda: any("listening on" in r.getMessage() for r in caplog.records))
        assert f"oracle listening on {url}" in [r.getMessage() for r in caplog.records]
        assert synthgrad.OracleClient(url).status()["role"] == "oracle"
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()


# --- /provide_gradient -----------------------------------------------------------------------

def test_provide_gradient_in_both_forms_is_stored(oracle_app):
    o = oracle_app.config["ORACLE"]
    rng = np.random.default_rng(3)
    h, g = rng.uniform(0, 1, (5, W)), rng.standard_normal((5, W))
    r = post(oracle_app, P, gradient_items([7, 0], h[:2], g[:2]))
    assert r.status_code == 200 and r.get_json() == {"ok": True, "received": 2}
    r = post(oracle_app, P, synthgrad.encode_gradients([3, 42, 99], h[2:], g[2:]))
    assert r.status_code == 200 and r.get_json() == {"ok": True, "received": 3}
    i = [7, 0, 3, 42, 99]
    np.testing.assert_array_equal(o.h[i], h)
    np.testing.assert_array_equal(o.g[i], g)
    assert np.flatnonzero(o.held).tolist() == sorted(i)
    others = np.setdiff1d(np.arange(len(o.held)), i)
    assert not o.h[others].any() and not o.g[others].any()
    s = status(oracle_app)
    assert s["examples_held"] == 5 and s["gradients_received"] == 5


def test_provide_gradient_keeps_the_latest_per_index(oracle_app):
    o = oracle_app.config["ORACLE"]
    rng = np.random.default_rng(4)
    h1, g1, h2, g2 = (rng.standard_normal((1, W)) for _ in range(4))
    assert post(oracle_app, P, gradient_items([3], h1, g1)).status_code == 200
    assert post(oracle_app, P, synthgrad.encode_gradients([3], h2, g2)).status_code == 200
    np.testing.assert_array_equal(o.h[3], h2[0])
    np.testing.assert_array_equal(o.g[3], g2[0])
    s = status(oracle_app)
    assert s["examples_held"] == 1 and s["gradients_received"] == 2


# --- The quality measure --------------------------------------------------------------------

def test_cosine_and_relative_error_hand_computed():
    g_hat = np.array([[1., 0.], [0., 1.], [1., 1.], [1., 1.], [0., 0.]])
    g = np.array([[1., 0.], [1., 0.], [2., 2.], [0., 0.], [3., 0.]])
    cos, rel = boundary.cosine_and_relative_error(g_hat, g)
    # Row 3 (g = 0) has neither; row 4 (g_hat = 0) has no cosine, and relative error |g|/|g| = 1.
    np.testing.assert_allclose(cos, [1.0, 0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(rel, [0.0, np.sqrt(2), 0.5, 1.0], atol=1e-15)


def test_cosine_and_relative_error_all_zero_rows_give_empty_arrays():
    cos, rel = boundary.cosine_and_relative_error(np.zeros((2, W)), np.zeros((2, W)))
    assert cos.shape == (0,) and rel.shape == (0,)


def reference_cosines(g_hat, g):
    """Per-row cosine, one row at a time, straight from the definition."""
    return [float(a @ b / np.sqrt((a @ a) * (b @ b))) for a, b in zip(g_hat, g, strict=True)]


def test_status_quality_is_the_mean_cosine_of_the_predictions_at_the_time(oracle_app):
    o = oracle_app.config["ORACLE"]
    s = status(oracle_app)["synthetic_gradient_quality"]
    assert s["window"] == 0 and s["cosine_similarity"] is None and s["relative_error"] is None

    rng = np.random.default_rng(5)
    h1, g1 = rng.uniform(0, 1, (40, W)), rng.standard_normal((40, W))
    pred1 = boundary.model_forward(o.weights, h1)          # what the oracle predicts right now
    post(oracle_app, P, synthgrad.encode_gradients(np.arange(40), h1, g1))
    cos = reference_cosines(pred1, g1)
    rel = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(pred1, g1, strict=True)]
    s = status(oracle_app)["synthetic_gradient_quality"]
    assert s["window"] == 40
    assert s["cosine_similarity"] == pytest.approx(np.mean(cos), rel=1e-12)
    assert s["relative_error"] == pytest.approx(np.mean(rel), rel=1e-12)

    old_weights = o.weights
    assert o.train_pass()                               # new weights: new predictions
    h2, g2 = rng.uniform(0, 1, (10, W)), rng.standard_normal((10, W))
    pred2 = boundary.model_forward(o.weights, h2)
    assert not np.allclose(pred2, boundary.model_forward(old_weights, h2))
    post(oracle_app, P, gradient_items(np.arange(40, 50), h2, g2))
    s = status(oracle_app)["synthetic_gradient_quality"]
    assert s["window"] == 50
    assert s["cosine_similarity"] == pytest.approx(
        np.mean(cos + reference_cosines(pred2, g2)), rel=1e-12)


def test_quality_window_keeps_the_newest(make_oracle_app):
    app = make_oracle_app(quality_window=10)
    o = app.config["ORACLE"]
    rng = np.random.default_rng(6)
    h, g = rng.uniform(0, 1, (25, W)), rng.standard_normal((25, W))
    post(app, P, synthgrad.encode_gradients(np.arange(15), h[:15], g[:15]))
    post(app, P, synthgrad.encode_gradients(np.arange(15, 25), h[15:], g[15:]))
    s = status(app)["synthetic_gradient_quality"]
    assert s["window"] == 10
    assert s["cosine_similarity"] == pytest.approx(
        np.mean(reference_cosines(boundary.model_forward(o.weights, h[15:]), g[15:])), rel=1e-12)


# --- Training passes --------------------------------------------------------------------------

def test_train_pass_with_too_few_examples_changes_nothing(oracle_app):
    o = oracle_app.config["ORACLE"]
    hold(oracle_app, o.config["min_examples"] - 1)
    published, model = [w.copy() for w in o.weights], keras_weights_copy(o)
    before = status(oracle_app)
    assert o.train_pass() is False
    for a, b in zip(published + model, o.weights + o.model.get_weights(), strict=True):
        assert a.tobytes() == b.tobytes()
    after = status(oracle_app)
    for key in ("training_passes", "training_steps", "last_train_mse", "examples_held"):
        assert after[key] == before[key]
    assert after["training_passes"] == 0 and after["last_train_mse"] is None


def test_train_pass_trains_and_publishes(oracle_app):
    o = oracle_app.config["ORACLE"]
    n = o.config["min_examples"]
    hold(oracle_app, n)
    published = [w.copy() for w in o.weights]
    assert o.train_pass() is True
    s = status(oracle_app)
    assert s["training_passes"] == 1
    assert s["training_steps"] == o.config["epochs_per_pass"] * -(-n // o.config["batch_size"])
    assert isinstance(s["last_train_mse"], float) and np.isfinite(s["last_train_mse"])
    assert all(not np.array_equal(a, b) for a, b in zip(published, o.weights, strict=True))
    # the newest are published
    for mine, keras_w in zip(o.weights, o.model.get_weights(), strict=True):
        assert mine.dtype == np.float64
        np.testing.assert_array_equal(mine, keras_w.astype(np.float64))
    assert o.train_pass() is True
    assert status(oracle_app)["training_passes"] == 2


def test_repeated_passes_learn_a_fixed_linear_map(make_oracle_app):
    app = make_oracle_app(epochs_per_pass=5)
    o = app.config["ORACLE"]
    rng = np.random.default_rng(7)
    h = rng.uniform(0, 1, (100, W))                                     # (100, 24)
    a = rng.standard_normal((W, W)) / np.sqrt(W)
    g = 0.1 * (h - 0.5) @ a                                             # learnable, small
    post(app, P, synthgrad.encode_gradients(np.arange(100), h, g))

    def model_mse():
        return float(np.mean((boundary.model_forward(o.weights, h) - g) ** 2))

    mse_before, train_mse = model_mse(), []
    for _ in range(3):
        assert o.train_pass()
        train_mse.append(status(app)["last_train_mse"])
    mse_after = model_mse()
    assert mse_after < 0.25 * mse_before, (mse_before, mse_after)
    assert train_mse[-1] < train_mse[0]
    # Keras' last-epoch loss is measured while the weights move, so it is only close to ours.
    assert train_mse[-1] == pytest.approx(mse_after, rel=0.5)


# --- Refused requests -------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")
TOO_MANY = synthgrad.MAX_EXAMPLES_PER_REQUEST + 1
ROW = arr(np.full(W, 0.5))
ROW23 = arr(np.full(W - 1, 0.5))


def values(*special, n=W):
    """A width-n values list whose first entries are `special`."""
    return list(special) + [0.5] * (n - len(special))


def item(i=0, h=ROW, gradient=ROW, drop=()):
    d = {"i": i, "h": h, "gradient": gradient}
    return {k: v for k, v in d.items() if k not in drop}


def batch(i=(0, 1), h=None, gradient=None, drop=()):
    n = len(i)
    d = {"i": list(i), "h": h or arr(np.full((n, W), 0.5)),
         "gradient": gradient or arr(np.full((n, W), 0.5))}
    return {k: v for k, v in d.items() if k not in drop}


DEEP = "[" * 100_000 + "]" * 100_000

BAD_BODIES = {
    # /estimate_gradients
    "estimate: not JSON": (E, "{activations: [1, 2]}"),
    "estimate: empty body": (E, ""),
    "estimate: not UTF-8": (E, b'{"activations": "\xff\xfe"}'),
    "estimate: null": (E, "null"),
    "estimate: a number": (E, "3"),
    "estimate: a list": (E, [ROW]),
    "estimate: missing activations": (E, {"h": arr(np.zeros((1, W)))}),
    "estimate: activations a string": (E, {"activations": "h"}),
    "estimate: list row of width 23": (E, {"activations": [ROW, ROW23]}),
    "estimate: list row a bare list": (E, {"activations": [[0.5] * W]}),
    "estimate: array of width 23": (E, {"activations": arr(np.zeros((2, W - 1)))}),
    "estimate: one flat row": (E, {"activations": ROW}),
    "estimate: shape and values disagree": (E, {"activations": {"shape": [2, W],
                                                                "values": [0.5] * (2 * W - 1)}}),
    "estimate: NaN": (E, {"activations": {"shape": [1, W], "values": values(NAN)}}),
    "estimate: Infinity": (E, {"activations": [{"shape": [W], "values": values(0.1, INF)}]}),
    "estimate: 1e999": (E, json.dumps({"activations": {"shape": [1, W], "values": values(7.25)}})
                        .replace("7.25", "1e999")),
    "estimate: a string value": (E, {"activations": {"shape": [1, W], "values": values("1")}}),
    "estimate: a null value": (E, {"activations": {"shape": [1, W], "values": values(None)}}),
    "estimate: nested values": (E, {"activations": {"shape": [2, W],
                                                    "values": [values(), values()]}}),
    "estimate: no activations (list)": (E, {"activations": []}),
    "estimate: no activations (array)": (E, {"activations": arr(np.zeros((0, W)))}),
    "estimate: too many": (E, {"activations": [{}] * TOO_MANY}),
    "estimate: nested too deep": (E, DEEP),
    # /provide_gradient
    "provide: not JSON": (P, "[{'i': 0}]"),
    "provide: empty body": (P, b""),
    "provide: null": (P, "null"),
    "provide: a number": (P, "1.5"),
    "provide: a string": (P, '"gradients"'),
    "provide: list of numbers": (P, [1, 2]),
    "provide: missing i": (P, [item(drop=("i",))]),
    "provide: missing h": (P, [item(0), item(1, drop=("h",))]),
    "provide: missing gradient": (P, [item(drop=("gradient",))]),
    "provide: batched, missing gradient": (P, batch(drop=("gradient",))),
    "provide: batched, i not a list": (P, {**batch((0,)), "i": 0}),
    "provide: h of width 23": (P, [item(h=ROW23)]),
    "provide: batched, gradient of width 23": (P, batch(gradient=arr(np.zeros((2, W - 1))))),
    "provide: batched, rows != indices": (P, batch((0, 1, 2), h=arr(np.zeros((2, W))))),
    "provide: batched, gradient flat": (P, batch((0,), gradient=ROW)),
    "provide: shape and values disagree": (P, [item(h={"shape": [W], "values": [0.5] * 23})]),
    "provide: NaN gradient": (P, [item(gradient={"shape": [W], "values": values(NAN)})]),
    "provide: Infinity h": (P, batch((0,), h={"shape": [1, W], "values": values(INF)})),
    "provide: -Infinity gradient": (P, [item(gradient={"shape": [W], "values": values(-INF)})]),
    "provide: string values": (P, [item(h={"shape": [W], "values": ["0.5"] * W})]),
    "provide: bool values": (P, [item(h={"shape": [W], "values": [True] * W})]),
    "provide: integer too large for float64": (P, [item(gradient={"shape": [W],
                                                                   "values": values(10 ** 400)})]),
    "provide: index out of range": (P, [item(0), item(100)]),
    "provide: negative index": (P, batch((-1, 0))),
    "provide: duplicate index": (P, [item(3), item(3)]),
    "provide: batched, duplicate index": (P, batch((5, 6, 5))),
    "provide: bool index": (P, [item(True)]),
    "provide: float index": (P, batch((0, 2.0))),
    "provide: string index": (P, [item("3")]),
    "provide: no examples (list)": (P, []),
    "provide: no examples (batched)": (P, batch(())),
    "provide: too many (list)": (P, [{}] * TOO_MANY),
    "provide: too many (batched)": (P, {"i": list(range(TOO_MANY)), "h": ROW, "gradient": ROW}),
    "provide: nested too deep": (P, DEEP),
}


def oracle_state(app):
    """Everything a refused request must leave alone, as bytes and numbers."""
    o = app.config["ORACLE"]
    s = status(app)
    return {"h": o.h.tobytes(), "g": o.g.tobytes(), "held": o.held.tobytes(),
            "weights": [w.tobytes() for w in o.weights],
            "cosines": list(o.quality.cosines),
            "relative_errors": list(o.quality.relative_errors),
            "examples_held": s["examples_held"], "gradients_received": s["gradients_received"],
            "estimates_served": s["estimates_served"],
            "quality": s["synthetic_gradient_quality"]}


@pytest.fixture
def held_oracle_app(oracle_app):
    """An oracle holding gradients for indices 0..9, so a partial write would show."""
    hold(oracle_app, 10)
    post(oracle_app, E, synthgrad.encode_estimate_request(np.zeros((1, W))))
    return oracle_app


def assert_still_healthy(app):
    rng = np.random.default_rng(8)
    h = rng.uniform(0, 1, (2, W))
    decoded(post(app, E, synthgrad.encode_estimate_request(h)), (2, W))
    before = status(app)["gradients_received"]
    r = post(app, P, synthgrad.encode_gradients([50, 51], h, rng.standard_normal((2, W))))
    assert r.status_code == 200 and r.get_json() == {"ok": True, "received": 2}
    assert status(app)["gradients_received"] == before + 2


def test_there_are_enough_bad_bodies():
    assert sum(path == E for path, _ in BAD_BODIES.values()) >= 15
    assert sum(path == P for path, _ in BAD_BODIES.values()) >= 15


@pytest.mark.parametrize("path, body", BAD_BODIES.values(), ids=BAD_BODIES)
def test_bad_body_is_refused_and_changes_nothing(held_oracle_app, path, body):
    app = held_oracle_app
    before, refused = oracle_state(app), status(app)["requests_refused"]
    r = post(app, path, body)
    assert r.status_code == 400
    assert r.is_json
    error = r.get_json()["error"]
    assert isinstance(error, str) and error.strip()
    assert oracle_state(app) == before
    assert status(app)["requests_refused"] == refused + 1
    assert_still_healthy(app)


@pytest.mark.parametrize("method, path, code", [
    ("GET", "/no_such_path", 404),
    ("POST", "/no_such_path", 404),
    ("POST", "/estimate_gradients/extra", 404),
    ("GET", E, 405),
    ("GET", P, 405),
    ("PUT", P, 405),
    ("POST", S, 405),
])
def test_unknown_path_and_wrong_method_answer_json(held_oracle_app, method, path, code):
    app = held_oracle_app
    before, refused = oracle_state(app), status(app)["requests_refused"]
    r = app.test_client().open(path, method=method, data=json.dumps({"activations": [ROW]}))
    assert r.status_code == code
    assert r.is_json and isinstance(r.get_json()["error"], str) and r.get_json()["error"]
    assert oracle_state(app) == before
    assert status(app)["requests_refused"] == refused + 1
    assert_still_healthy(app)


def test_the_body_size_limit_is_the_protocols(oracle_app):
    assert oracle_app.config["MAX_CONTENT_LENGTH"] == synthgrad.MAX_BODY_BYTES


def test_body_over_the_size_limit_is_413(held_oracle_app, monkeypatch):
    app = held_oracle_app
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 2_000)
    rng = np.random.default_rng(9)
    body = synthgrad.encode_gradients(np.arange(20, 30), rng.uniform(0, 1, (10, W)),
                                      rng.standard_normal((10, W)))
    assert len(json.dumps(body)) > 2_000
    before, refused = oracle_state(app), status(app)["requests_refused"]
    r = post(app, P, body)
    assert r.status_code == 413
    assert r.is_json and r.get_json()["error"]
    assert oracle_state(app) == before
    assert status(app)["requests_refused"] == refused + 1
    monkeypatch.undo()
    assert_still_healthy(app)


# --- Regressions: bodies and answers that once went wrong --------------------------------------

@pytest.mark.parametrize("path, body", [
    # numpy's reshape raises ValueError (not caught by decode_array) for more than 64 dimensions
    (E, {"activations": {"shape": [1] * 65, "values": [0.5]}}),
    # ... and for an empty array whose other dimension is absurdly large
    (E, {"activations": {"shape": [0, 2 ** 62], "values": []}}),
    (P, {"i": [0], "h": {"shape": [0, 10 ** 30], "values": []}, "gradient": ROW}),
    # json.loads raises a plain ValueError (not JSONDecodeError) for an integer > 4,300 digits
    (E, '{"activations": {"shape": [1, 24], "values": [' + "1" * 5_000 + "]}}"),
    (P, '[{"i": ' + "9" * 5_000 + "}]"),
], ids=["65 dimensions", "huge empty shape (estimate)", "huge empty shape (provide)",
        "5,000-digit value", "5,000-digit index"])
def test_extreme_bodies_get_400_not_500(oracle_app, path, body):
    r = post(oracle_app, path, body)
    assert r.status_code == 400, r.get_json()


def test_405_answer_keeps_the_allow_header(oracle_app):
    # HTTP requires a 405 to say which methods are allowed. install_json_errors builds a new
    # response from the exception's name and description and drops its headers (the same holds
    # for the output trainer). Fixed: in _http_error, take e.get_response(), replace its body with
    # the JSON and set its content type, so Allow (and any other header) is kept.
    r = oracle_app.test_client().get(E)
    assert r.status_code == 405
    assert "POST" in r.headers.get("Allow", "")


# --- GET /status ------------------------------------------------------------------------------

def check_status_types(s):
    assert s["role"] == "oracle"
    assert type(s["uptime_s"]) is float and s["uptime_s"] >= 0
    for key in ("examples_held", "gradients_received", "estimates_served", "training_passes",
                "training_steps", "requests_served", "requests_refused"):
        assert type(s[key]) is int and s[key] >= 0, key
    assert s["last_train_mse"] is None or type(s["last_train_mse"]) is float
    q = s["synthetic_gradient_quality"]
    assert isinstance(q, dict) and type(q["window"]) is int
    for key in ("cosine_similarity", "relative_error"):
        assert q[key] is None or type(q[key]) is float, key


def test_status_fields_and_types(oracle_app):
    o = oracle_app.config["ORACLE"]
    s = status(oracle_app)
    check_status_types(s)
    assert s["examples_held"] == 0 and s["training_passes"] == 0
    assert s["last_train_mse"] is None
    assert s["synthetic_gradient_quality"]["cosine_similarity"] is None
    hold(oracle_app, 40)
    assert o.train_pass()
    s = status(oracle_app)
    check_status_types(s)
    assert s["examples_held"] == 40 and s["training_passes"] == 1
    assert type(s["last_train_mse"]) is float
    assert type(s["synthetic_gradient_quality"]["cosine_similarity"]) is float
    assert -1 <= s["synthetic_gradient_quality"]["cosine_similarity"] <= 1
    assert s["requests_served"] >= 2 and s["requests_refused"] == 0


def test_status_counts_served_and_refused_requests(oracle_app):
    client = oracle_app.test_client()
    client.get(S)
    post(oracle_app, E, synthgrad.encode_estimate_request(np.zeros((1, W))))
    post(oracle_app, E, "not json")
    client.get("/nowhere")
    s = status(oracle_app)
    assert s["requests_served"] == 2 and s["requests_refused"] == 2   # this GET is counted after


def test_two_apps_do_not_share_state(make_oracle_app):
    a, b = make_oracle_app(), make_oracle_app()
    hold(a, 3)
    assert status(a)["examples_held"] == 3
    assert status(b)["examples_held"] == 0 and not b.config["ORACLE"].held.any()


# --- The command line ------------------------------------------------------------------------

def test_parse_args_defaults():
    args = oracle.parse_args([])
    assert args.port == synthgrad.DEFAULT_ORACLE_PORT and args.host == synthgrad.DEFAULT_HOST
    for key, value in oracle.DEFAULTS.items():
        if hasattr(args, key):
            assert getattr(args, key) == value, key
    assert args.original is False


def test_original_gives_the_original_settings_and_a_flag_given_still_wins():
    args = oracle.parse_args(["--original"])
    for key, value in oracle.ORIGINAL.items():
        assert getattr(args, key) == value, key
    assert (args.conditioned, args.zero_init, args.optimizer) == (False, False, "adadelta")
    args = oracle.parse_args(["--original", "--conditioned", "--batch-size", "64"])
    assert (args.conditioned, args.batch_size, args.zero_init) == (True, 64, False)
    assert oracle.parse_args(["--no-conditioned"]).conditioned is False


def test_the_default_model_is_conditioned_and_starts_at_zero(make_oracle_app):
    app = make_oracle_app(**oracle.DEFAULTS | {"max_examples": 100})
    assert app.config["ORACLE"].conditioned
    weights = app.config["ORACLE"].weights
    assert weights[0].shape[0] == synthgrad.HIDDEN_SIZE + 1        # h and y side by side
    assert not weights[-1].any() and not weights[-2].any()        # the last layer is zero


@pytest.mark.parametrize("argv", [
    ["--hidden", "-1"], ["--hidden", "two"], ["--learning-rate", "0"], ["--learning-rate", "-1"],
    ["--learning-rate", "nan"], ["--epochs-per-pass", "0"], ["--batch-size", "0"],
    ["--max-examples", "0"], ["--publish-every", "0"], ["--quality-window", "-5"],
    ["--port", "http"], ["--no-such-option"],
])
def test_parse_args_refuses_bad_values(argv, capsys):
    with pytest.raises(SystemExit) as e:
        oracle.parse_args(argv)
    assert e.value.code == 2
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--learning-rate", "inf"], ["--port", "70000"],
                                  ["--port", "-1"], ["--nice", "20"], ["--nice", "-1"]])
def test_parse_args_refuses_impossible_values(argv):
    # An infinite learning rate turns the weights into NaN at the first step; a port outside
    # 0..65535 only fails later, in make_server, with an OverflowError. Fixed: refuse
    # `not math.isfinite(args.learning_rate)` too, and `not 0 <= args.port <= 65535`.
    with pytest.raises(SystemExit):
        oracle.parse_args(argv)


def test_help_works_and_main_starts_nothing(capsys):
    with pytest.raises(SystemExit) as e:
        oracle.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for option in ("--port", "--hidden", "--learning-rate", "--epochs-per-pass", "--seed"):
        assert option in out


# --- The paper's variants: linear, zero-initialised, conditioned on the target (cDNI). ---------

def test_zero_initialised_oracle_first_prediction_is_exactly_zero(make_oracle_app):
    for hidden in (12, 0):
        app = make_oracle_app(zero_init=True, hidden=hidden)
        h = np.random.default_rng(1).uniform(0, 1, (7, W))
        g = decoded(post(app, E, synthgrad.encode_estimate_request(h)), (7, W))
        assert not g.any()                                   # exactly 0.0, every entry


def test_linear_oracle_prediction_is_the_closed_form(make_oracle_app):
    app = make_oracle_app(hidden=0)
    o = app.config["ORACLE"]
    assert len(o.model.layers) == 1                          # one Dense layer, no hidden layer
    A, b = (w.astype(np.float64) for w in o.model.get_weights())   # (24, 24), (24,)
    h = np.random.default_rng(2).uniform(0, 1, (5, W))
    expected = h @ A + b                                     # g_hat = A h + b, row by row
    got = decoded(post(app, E, synthgrad.encode_estimate_request(h)), (5, W))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got, o.model.predict_on_batch(h), rtol=RTOL, atol=ATOL)


def test_conditioned_linear_oracle_uses_y_as_one_more_input(make_oracle_app):
    app = make_oracle_app(hidden=0, conditioned=True)
    o = app.config["ORACLE"]
    A, b = (w.astype(np.float64) for w in o.model.get_weights())   # (25, 24), (24,)
    assert A.shape == (W + 1, W)
    rng = np.random.default_rng(3)
    h, y = rng.uniform(0, 1, (4, W)), rng.standard_normal(4)
    got = decoded(post(app, E, synthgrad.encode_estimate_request(h, y)), (4, W))
    np.testing.assert_allclose(got, h @ A[:W] + np.outer(y, A[W]) + b, rtol=1e-12)


def test_conditioned_oracle_refuses_requests_without_y_and_keeps_its_state(make_oracle_app):
    app = make_oracle_app(conditioned=True)
    o = app.config["ORACLE"]
    h = np.random.default_rng(4).uniform(0, 1, (3, W))
    before = (o.h.tobytes(), o.g.tobytes(), o.y.tobytes(), o.held.tobytes())
    bad = [(E, synthgrad.encode_estimate_request(h)),                        # no y at all
           (E, {"activations": [arr(r) for r in h]}),                          # original form
           (E, synthgrad.encode_estimate_request(h, np.zeros(2))),            # y of wrong length
           (E, {**synthgrad.encode_estimate_request(h), "y": arr(np.full(3, np.nan))}),
           (P, synthgrad.encode_gradients([0, 1, 2], h, h)),                 # gradients without y
           (P, gradient_items([0, 1, 2], h, h))]
    for path, body in bad:
        r = post(app, path, body)
        assert r.status_code == 400, (path, r.get_json())
        assert "y" in r.get_json()["error"]
    assert "conditioned" in post(app, E, bad[0][1]).get_json()["error"]
    assert (o.h.tobytes(), o.g.tobytes(), o.y.tobytes(), o.held.tobytes()) == before
    # With y, both endpoints work, and y is stored beside h.
    y = np.array([0.5, -0.25, 1.0])
    assert post(app, E, synthgrad.encode_estimate_request(h, y)).status_code == 200
    r = post(app, P, synthgrad.encode_gradients([0, 1, 2], h, 0.1 * h, y))
    assert r.status_code == 200
    np.testing.assert_array_equal(o.y[:3], y)


def test_unconditioned_oracle_ignores_y_so_old_and_new_clients_both_work(oracle_app):
    h = np.random.default_rng(5).uniform(0, 1, (3, W))
    without = decoded(post(oracle_app, E, synthgrad.encode_estimate_request(h)), (3, W))
    with_y = decoded(post(oracle_app, E, synthgrad.encode_estimate_request(h, np.ones(3))),
                     (3, W))
    np.testing.assert_array_equal(without, with_y)


def test_conditioned_oracle_learns_a_target_dependent_gradient(make_oracle_app):
    # g = y * v for a fixed direction v: an h-only model cannot know the sign, a cDNI one can.
    rng = np.random.default_rng(6)
    n = 2000
    h, y = rng.uniform(0, 1, (n, W)), rng.choice([-1.0, 1.0], n)
    v = rng.standard_normal(W) / np.sqrt(W)
    g = np.outer(y, v)
    results = {}
    for conditioned in (False, True):
        app = make_oracle_app(hidden=0, conditioned=conditioned, optimizer="adam",
                              learning_rate=0.01, max_examples=n)
        o = app.config["ORACLE"]
        o.receive(np.arange(n), h, g, y)
        for _ in range(3):
            o.train_pass()
        cos, _ = boundary.cosine_and_relative_error(o.estimate(h, y), g)
        results[conditioned] = cos.mean()
    assert results[True] > 0.9 and abs(results[False]) < 0.3, results


# --- GET /weights: what the input trainer's local mode computes with. --------------------------

@pytest.mark.parametrize("config", [{}, {"hidden": 0, "conditioned": True}])
def test_weights_endpoint_gives_the_model_that_answers_requests(make_oracle_app, config):
    app = make_oracle_app(**config)
    o = app.config["ORACLE"]
    hold_rows = 64
    rng = np.random.default_rng(7)
    h, g, y = rng.uniform(0, 1, (hold_rows, W)), 0.1 * rng.standard_normal((hold_rows, W)), \
        rng.standard_normal(hold_rows)
    o.receive(np.arange(hold_rows), h, g, y)
    o.train_pass()
    r = app.test_client().get(synthgrad.WEIGHTS)
    assert r.status_code == 200
    weights, conditioned, version = synthgrad.decode_weights(r.get_json())
    assert conditioned == o.conditioned and version == o.counts["steps"] > 0
    inputs = np.column_stack([h, y]) if conditioned else h
    answer = decoded(post(app, E, synthgrad.encode_estimate_request(h, y)), (hold_rows, W))
    np.testing.assert_array_equal(boundary.model_forward(weights, inputs), answer)


def test_weights_in_the_binary_form_when_asked_are_the_json_ones_bit_for_bit(make_oracle_app):
    """GET /weights with "Accept: application/x-synthgrad-arrays" (a --wire binary client):
    the same weights, conditioned flag and version as the JSON answer, ~400x cheaper at width
    256; without that header (the original's clients, requests' */*) the answer stays JSON."""
    app = make_oracle_app(hidden=0, conditioned=True)
    o = app.config["ORACLE"]
    rng = np.random.default_rng(3)
    o.receive(np.arange(64), rng.uniform(0, 1, (64, W)), rng.standard_normal((64, W)),
              rng.standard_normal(64))
    o.train_pass()
    client = app.test_client()
    plain = client.get(synthgrad.WEIGHTS, headers={"Accept": "*/*"})
    assert plain.mimetype == "application/json"
    r = client.get(synthgrad.WEIGHTS, headers={"Accept": synthgrad.BINARY_TYPE})
    assert r.status_code == 200 and r.mimetype == synthgrad.BINARY_TYPE
    got = synthgrad.decode_weights(synthgrad.parse_binary(r.get_data()))
    want = synthgrad.decode_weights(plain.get_json())
    assert got[1:] == want[1:] == (True, o.counts["steps"])
    assert [w.tobytes() for w in got[0]] == [w.tobytes() for w in want[0]]
    with pytest.raises(synthgrad.ProtocolError):            # a binary answer missing a layer
        synthgrad.decode_weights({"weights0": want[0][0], "weights1": want[0][1][:5]})


def test_decode_weights_refuses_what_is_not_a_model():
    good = [np.zeros((24, 12)), np.zeros(12), np.zeros((12, 24)), np.zeros(24)]
    synthgrad.decode_weights({"weights": [arr(w) for w in good]})
    bad = [good[:3], [good[0], np.zeros(11), good[2], good[3]],
           [good[0], good[1], np.zeros((11, 24)), good[3]], [np.zeros((24, 23)), np.zeros(23)]]
    for weights in bad:
        with pytest.raises(synthgrad.ProtocolError):
            synthgrad.decode_weights({"weights": [arr(w) for w in weights]})
    for body in (None, [], {"weights": "no"}, {"weights": [1, 2]}):
        with pytest.raises(synthgrad.ProtocolError):
            synthgrad.decode_weights(body)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")   # overflow is the point
def test_diverging_oracle_keeps_answering_with_its_last_finite_weights(make_oracle_app):
    app = make_oracle_app(optimizer="sgd", learning_rate=1e30)
    o = app.config["ORACLE"]
    hold(app, 64)
    before = [w.copy() for w in o.weights]
    o.train_pass()
    assert o.diverged and o.stop.is_set()
    assert all(np.isfinite(w).all() for w in o.weights)
    h = np.random.default_rng(8).uniform(0, 1, (3, W))
    answer = decoded(post(app, E, synthgrad.encode_estimate_request(h)), (3, W))
    assert np.isfinite(answer).all()
    assert status(app)["diverged"] is True
    assert len(before) == len(o.weights)


def test_token_protects_every_endpoint_of_the_oracle(make_oracle_app):
    app = make_oracle_app(token="t0ken")
    client = app.test_client()
    h = np.zeros((1, W))
    for path, method in ((E, "post"), (P, "post"), (S, "get"), (synthgrad.WEIGHTS, "get")):
        r = getattr(client, method)(path, json=synthgrad.encode_estimate_request(h))
        assert r.status_code == 401, path
    ok = client.post(E, json=synthgrad.encode_estimate_request(h),
                     headers={"Authorization": "Bearer t0ken"})
    assert ok.status_code == 200


def test_a_resumed_oracle_takes_the_learning_rate_it_is_given(make_oracle_app, tmp_path):
    """Keras 3 keeps the learning rate among the optimizer's variables: a resume assigned the
    checkpoint's, and --resume --learning-rate (what the divergence message advises) was lost."""
    path = tmp_path / "oracle.npz"
    app = make_oracle_app(optimizer="adam", learning_rate=0.01)
    hold(app, 64)
    app.config["ORACLE"].train_pass()
    app.config["ORACLE"].save_checkpoint(path)
    r = make_oracle_app(optimizer="adam", learning_rate=1e-4, checkpoint=str(path),
                        resume=True).config["ORACLE"]
    assert float(r.model.optimizer.learning_rate) == pytest.approx(1e-4)


def test_oracle_checkpoint_restores_model_optimizer_and_gradients(make_oracle_app, tmp_path):
    path = tmp_path / "oracle.npz"
    app = make_oracle_app(optimizer="adam", learning_rate=0.01)
    o = app.config["ORACLE"]
    hold(app, 64)
    o.train_pass()
    o.save_checkpoint(path)
    r = make_oracle_app(optimizer="adam", learning_rate=0.01, checkpoint=str(path),
                        resume=True).config["ORACLE"]
    for a, b in zip(r.model.get_weights(), o.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(r.model.optimizer.variables, o.model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))   # Adam's moments too
    assert r.h.tobytes() == o.h.tobytes() and r.held.tobytes() == o.held.tobytes()
    assert o.counts["passes"] == 1 and o.counts["steps"] > 0           # counting on from there
    assert {k: r.counts[k] for k in r.COUNTERS} == {k: o.counts[k] for k in o.COUNTERS}
    h = np.random.default_rng(9).uniform(0, 1, (4, W))
    np.testing.assert_array_equal(r.estimate(h), o.estimate(h))
    with pytest.raises(ValueError, match="shape"):
        make_oracle_app(hidden=6, optimizer="adam", checkpoint=str(path), resume=True)
