"""Tests for synthgrad.py: arrays on the wire, the request bodies in both forms (the original
per-example lists and our batched objects), their rejections, parse_json, the binary form, and
the clients: against a peer that is down, drops connections, never answers or answers wrongly,
with a timeout on every request and a Session per thread that ignores the environment.

Run: .venv/bin/pytest -q tests/test_synthgrad.py
"""

import json
import socket
import struct
import threading
import time

import numpy as np
import pytest
import requests

import synthgrad
from synthgrad import ProtocolError, PeerError

W = synthgrad.HIDDEN_SIZE   # 24


def wire(obj):
    """What the other side sees: obj through json.dumps and json.loads."""
    return json.loads(json.dumps(obj))


def bitwise_equal(a, b):
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# --- Arrays -----------------------------------------------------------------------------------

SPECIAL = [0.1, 1e-300, -2.5e10, 5e-324, -0.0, 1 / 3, 1.7976931348623157e308, 123456789.0]


@pytest.mark.parametrize("shape", [(), (3,), (4, W), (0, W)])
def test_array_round_trip_is_bitwise_exact(shape):
    rng = np.random.default_rng(0)
    a = rng.standard_normal(shape) * 10.0 ** rng.integers(-300, 300, shape)
    flat = a.reshape(-1)
    flat[:len(SPECIAL)] = SPECIAL[:flat.size]
    obj = synthgrad.encode_array(a)
    assert obj["shape"] == list(shape)
    assert len(obj["values"]) == a.size
    back = synthgrad.decode_array(wire(obj), shape)
    assert bitwise_equal(back, a)


def test_encode_array_accepts_lists_and_scalars():
    assert synthgrad.encode_array(2.5) == {"shape": [], "values": [2.5]}
    assert synthgrad.encode_array([[1, 2], [3, 4]]) == {"shape": [2, 2],
                                                         "values": [1.0, 2.0, 3.0, 4.0]}


def test_decode_array_takes_integers_as_numbers_and_none_as_any_dimension():
    a = synthgrad.decode_array({"shape": [2, 3], "values": [1, 2, 3, 4, 5, 6]}, (None, 3))
    assert a.dtype == np.float64
    np.testing.assert_array_equal(a, [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("obj, shape, match", [
    ([1.0, 2.0], None, "expected an array object"),
    ("values", None, "expected an array object"),
    ({"values": [1.0]}, None, "expected an array object"),
    ({"shape": [1]}, None, "expected an array object"),
    ({"shape": 1, "values": [1.0]}, None, "shape must be a list"),
    ({"shape": "1", "values": [1.0]}, None, "shape must be a list"),
    ({"shape": [-1], "values": []}, None, "non-negative integers"),
    ({"shape": [2, -3], "values": []}, None, "non-negative integers"),
    ({"shape": [True], "values": [1.0]}, None, "non-negative integers"),
    ({"shape": [2.0], "values": [1.0, 2.0]}, None, "non-negative integers"),
    ({"shape": [3], "values": {"a": 1}}, None, "values must be a list"),
    ({"shape": [3], "values": [1.0, 2.0]}, None, r"needs 3 values, got 2"),
    ({"shape": [], "values": []}, None, r"needs 1 values, got 0"),
    ({"shape": [2], "values": ["1", "2"]}, None, "flat list of numbers"),
    ({"shape": [2], "values": [1.0, "2"]}, None, "flat list of numbers"),
    ({"shape": [2], "values": [[1.0, 2.0], [3.0, 4.0]]}, None, "flat list of numbers"),
    ({"shape": [1], "values": [[1.0]]}, None, "flat list of numbers"),
    ({"shape": [2], "values": [1.0, None]}, None, "flat list of numbers"),
    ({"shape": [2], "values": [True, False]}, None, "flat list of numbers"),
    ({"shape": [2], "values": [1.0, {"v": 2}]}, None, "flat list of numbers"),
    ({"shape": [2], "values": [1.0, float("nan")]}, None, "finite"),
    ({"shape": [2], "values": [float("inf"), 1.0]}, None, "finite"),
    ({"shape": [2], "values": [1.0, -float("inf")]}, None, "finite"),
    ({"shape": [3], "values": [1.0, 2.0, 3.0]}, (W,), r"expected shape \(24\), got \(3,\)"),
    ({"shape": [3], "values": [1.0, 2.0, 3.0]}, (None, W), r"expected shape \(n, 24\)"),
    ({"shape": [1, 3], "values": [1.0, 2.0, 3.0]}, (None, W), r"expected shape \(n, 24\)"),
    ({"shape": [], "values": [1.0]}, (1,), r"expected shape \(1\)"),
])
def test_decode_array_refuses(obj, shape, match):
    with pytest.raises(ProtocolError, match=match):
        synthgrad.decode_array(obj, shape)


def test_decode_array_refuses_nan_and_infinity_from_json_text():
    # Python's json reads the non-standard NaN and Infinity literals; they must still be refused.
    for text in ('{"shape": [2], "values": [1.0, NaN]}',
                 '{"shape": [1], "values": [Infinity]}',
                 '{"shape": [1], "values": [1e999]}'):
        with pytest.raises(ProtocolError, match="finite"):
            synthgrad.decode_array(json.loads(text))


def test_decode_array_names_what_it_was_decoding():
    with pytest.raises(ProtocolError, match="^gradients: "):
        synthgrad.decode_array({"shape": [1]}, what="gradients")


def test_decode_array_refuses_ragged_nested_lists():
    # Regression: numpy raises a plain ValueError ("inhomogeneous shape") before decode_array's own
    # check, so a server answers 500 instead of 400 with a message.
    with pytest.raises(ProtocolError, match="flat list of numbers"):
        synthgrad.decode_array({"shape": [2], "values": [[1.0, 2.0], [3.0]]})


def test_decode_array_refuses_booleans_mixed_with_numbers():
    # Regression: [true, false] is refused, but [true, 1.0] is silently read as [1.0, 1.0].
    with pytest.raises(ProtocolError, match="numbers"):
        synthgrad.decode_array({"shape": [2], "values": [True, 1.0]})


# --- Request bodies: the original per-example forms ------------------------------------------

def test_training_examples_in_the_original_list_form():
    rng = np.random.default_rng(1)
    h = rng.uniform(0, 1, (3, W))
    y = np.array([0.25, -0.5, 0.1])
    body = [{"i": int(k), "x": {"shape": [W], "values": h[j].tolist()},
             "y": {"shape": [], "values": [float(y[j])]}}
            for j, k in enumerate([7, 0, 42])]
    i, x, yy = synthgrad.decode_training_examples(wire(body), max_index=100)
    np.testing.assert_array_equal(i, [7, 0, 42])
    assert bitwise_equal(x, h)
    assert bitwise_equal(yy, y)


def test_gradients_in_the_original_list_form():
    rng = np.random.default_rng(2)
    h, g = rng.uniform(0, 1, (2, W)), rng.standard_normal((2, W))
    body = [{"i": k, "h": {"shape": [W], "values": h[j].tolist()},
             "gradient": {"shape": [W], "values": g[j].tolist()}}
            for j, k in enumerate([5, 3])]
    i, hh, gg = synthgrad.decode_gradients(wire(body), max_index=6)
    np.testing.assert_array_equal(i, [5, 3])
    assert bitwise_equal(hh, h) and bitwise_equal(gg, g)


def test_estimate_request_in_the_original_list_form():
    h = np.random.default_rng(3).uniform(0, 1, (4, W))
    body = {"activations": [{"shape": [W], "values": row.tolist()} for row in h]}
    assert bitwise_equal(synthgrad.decode_estimate_request(wire(body)), h)


# --- Request bodies: the batched forms our clients send --------------------------------------

def test_batched_training_examples_round_trip():
    rng = np.random.default_rng(4)
    i, h, y = np.array([9, 2, 4, 0]), rng.uniform(0, 1, (4, W)), rng.standard_normal(4)
    body = synthgrad.encode_training_examples(i, h, y)
    assert body["i"] == [9, 2, 4, 0] and body["x"]["shape"] == [4, W] and body["y"]["shape"] == [4]
    ii, x, yy = synthgrad.decode_training_examples(wire(body), max_index=10)
    np.testing.assert_array_equal(ii, i)
    assert bitwise_equal(x, h) and bitwise_equal(yy, y)


def test_batched_gradients_round_trip():
    rng = np.random.default_rng(5)
    i, h, g = np.arange(3), rng.uniform(0, 1, (3, W)), rng.standard_normal((3, W))
    ii, hh, gg = synthgrad.decode_gradients(wire(synthgrad.encode_gradients(i, h, g)), 3)
    np.testing.assert_array_equal(ii, i)
    assert bitwise_equal(hh, h) and bitwise_equal(gg, g)


def test_batched_estimate_request_and_response_round_trip():
    rng = np.random.default_rng(6)
    h, g = rng.uniform(0, 1, (5, W)), rng.standard_normal((5, W))
    assert bitwise_equal(
        synthgrad.decode_estimate_request(wire(synthgrad.encode_estimate_request(h))), h)
    response = wire({"gradients": synthgrad.encode_array(g)})
    assert bitwise_equal(synthgrad.decode_estimate_response(response, 5), g)
    with pytest.raises(ProtocolError, match=r"expected shape \(4, 24\)"):
        synthgrad.decode_estimate_response(response, 4)
    with pytest.raises(ProtocolError, match="gradients"):
        synthgrad.decode_estimate_response({"grads": []}, 5)


def test_both_forms_decode_to_the_same_arrays():
    rng = np.random.default_rng(7)
    i, h, y = np.array([3, 1]), rng.uniform(0, 1, (2, W)), rng.standard_normal(2)
    batched = synthgrad.encode_training_examples(i, h, y)
    listed = [{"i": int(k), "x": synthgrad.encode_array(h[j]), "y": synthgrad.encode_array(y[j])}
              for j, k in enumerate(i)]
    for a, b in zip(synthgrad.decode_training_examples(wire(batched), 4),
                    synthgrad.decode_training_examples(wire(listed), 4), strict=True):
        assert bitwise_equal(a, b)


def test_max_examples_per_request_is_accepted():
    n = synthgrad.MAX_EXAMPLES_PER_REQUEST
    body = synthgrad.encode_training_examples(np.arange(n), np.zeros((n, W)), np.zeros(n))
    i, x, y = synthgrad.decode_training_examples(body, max_index=n)
    assert len(i) == n and x.shape == (n, W) and y.shape == (n,)


# --- Request bodies: rejections --------------------------------------------------------------

def example(i=0, x_width=W, y_shape=()):
    """One original-form /training_example item."""
    return {"i": i, "x": synthgrad.encode_array(np.zeros(x_width)),
            "y": synthgrad.encode_array(np.zeros(y_shape))}


def batched(i=(0, 1), x_shape=None, y_shape=None):
    n = len(i)
    return {"i": list(i), "x": synthgrad.encode_array(np.zeros(x_shape or (n, W))),
            "y": synthgrad.encode_array(np.zeros(y_shape or (n,)))}


TOO_MANY = synthgrad.MAX_EXAMPLES_PER_REQUEST + 1

BAD_TRAINING_BODIES = {
    "index out of range": ([example(10)], r"index 10 is outside \[0, 10\)"),
    "negative index": ([example(-1)], r"index -1 is outside"),
    "duplicate index": ([example(3), example(3)], "appears twice"),
    "float index": ([example(1.5)], "list of integers"),
    "string index": ([example("3")], "list of integers"),
    "bool index": ([example(True)], "list of integers"),
    "null index": ([example(None)], "list of integers"),
    "empty list": ([], "no examples"),
    "too many": ([example(0)] * TOO_MANY, f"at most {synthgrad.MAX_EXAMPLES_PER_REQUEST}"),
    "missing y": ([{"i": 0, "x": synthgrad.encode_array(np.zeros(W))}], "example 0: missing y"),
    "missing i and x": ([{"y": synthgrad.encode_array(0.0)}], "example 0: missing i, x"),
    "item not an object": ([example(0), [0, 1]], "example 1: expected an object"),
    "x too narrow": ([example(0, x_width=23)], r"example 0 x: expected shape \(24\), got \(23,\)"),
    "y not a scalar": ([example(0, y_shape=(1,))], r"example 0 y: expected shape \(\)"),
    "x a bare list": ([{"i": 0, "x": [0.0] * W, "y": synthgrad.encode_array(0.0)}],
                      "example 0 x: expected an array object"),
    "x with NaN": ([{"i": 0, "x": {"shape": [W], "values": [float("nan")] * W},
                     "y": synthgrad.encode_array(0.0)}], "finite"),
    "a string": ("examples", "expected a list of examples or a batched object"),
    "a number": (3, "expected a list of examples"),
    "null": (None, "expected a list of examples"),
    "batched, missing y": ({"i": [0], "x": synthgrad.encode_array(np.zeros((1, W)))},
                           "missing y"),
    "batched, empty": (batched(()), "no examples"),
    "batched, i a dict": ({"i": {"0": 0}, "x": synthgrad.encode_array(np.zeros((1, W))),
                          "y": synthgrad.encode_array(np.zeros(1))}, "i: expected a list"),
    "batched, i an int": ({"i": 0, "x": synthgrad.encode_array(np.zeros((1, W))),
                           "y": synthgrad.encode_array(np.zeros(1))}, "i: expected a list"),
    "batched, float index": (batched((0, 1.5)), "list of integers"),
    "batched, bool index": (batched((0, True)), "list of integers"),
    "batched, duplicate": (batched((2, 2)), "appears twice"),
    "batched, out of range": (batched((0, 10)), r"index 10 is outside \[0, 10\)"),
    "batched, x too narrow": (batched(x_shape=(2, 23)), r"x: expected shape \(2, 24\)"),
    "batched, x rows != i": (batched(x_shape=(3, W)), r"x: expected shape \(2, 24\), got \(3, 24\)"),
    "batched, y rows != i": (batched(y_shape=(3,)), r"y: expected shape \(2\)"),
    "batched, x flat": (batched(x_shape=(2 * W,)), r"x: expected shape \(2, 24\)"),
    "batched, x a list of arrays": ({"i": [0], "x": [synthgrad.encode_array(np.zeros(W))],
                                     "y": synthgrad.encode_array(np.zeros(1))},
                                    "x: expected an array object"),
    "batched, too many": (batched(range(TOO_MANY)), "at most"),
}


@pytest.mark.parametrize("body, match", BAD_TRAINING_BODIES.values(), ids=BAD_TRAINING_BODIES)
def test_decode_training_examples_refuses(body, match):
    with pytest.raises(ProtocolError, match=match):
        synthgrad.decode_training_examples(wire(body), max_index=10)


def gradient_item(i=0, h_width=W, g_width=W):
    return {"i": i, "h": synthgrad.encode_array(np.zeros(h_width)),
            "gradient": synthgrad.encode_array(np.zeros(g_width))}


BAD_GRADIENT_BODIES = {
    "gradient too wide": ([gradient_item(g_width=25)], r"example 0 gradient: expected shape \(24\)"),
    "h too narrow": ([gradient_item(h_width=2)], r"example 0 h: expected shape \(24\)"),
    "missing gradient": ([{"i": 0, "h": synthgrad.encode_array(np.zeros(W))}], "missing gradient"),
    "out of range": ([gradient_item(5)], "outside"),
    "duplicate": ([gradient_item(1), gradient_item(1)], "appears twice"),
    "empty": ([], "no examples"),
    "batched, gradient rows != i": (
        {"i": [0, 1], "h": synthgrad.encode_array(np.zeros((2, W))),
         "gradient": synthgrad.encode_array(np.zeros((1, W)))}, r"gradient: expected shape \(2, 24\)"),
    "batched, h missing": ({"i": [0], "gradient": synthgrad.encode_array(np.zeros((1, W)))},
                           "missing h"),
}


@pytest.mark.parametrize("body, match", BAD_GRADIENT_BODIES.values(), ids=BAD_GRADIENT_BODIES)
def test_decode_gradients_refuses(body, match):
    with pytest.raises(ProtocolError, match=match):
        synthgrad.decode_gradients(wire(body), max_index=5)


BAD_ESTIMATE_BODIES = {
    "a list": ([synthgrad.encode_array(np.zeros(W))], "activations"),
    "missing activations": ({"h": synthgrad.encode_array(np.zeros((1, W)))}, "activations"),
    "empty list": ({"activations": []}, "no examples"),
    "too many": ({"activations": [synthgrad.encode_array(np.zeros(W))] * TOO_MANY}, "at most"),
    "list item too narrow": ({"activations": [synthgrad.encode_array(np.zeros(W)),
                                              synthgrad.encode_array(np.zeros(3))]},
                             r"activations\[1\]: expected shape \(24\)"),
    "list item a bare list": ({"activations": [[0.0] * W]}, r"activations\[0\]: expected an array"),
    "batched, empty": ({"activations": synthgrad.encode_array(np.zeros((0, W)))}, "no examples"),
    "batched, too narrow": ({"activations": synthgrad.encode_array(np.zeros((2, 3)))},
                            r"expected shape \(n, 24\)"),
    "batched, one row flat": ({"activations": synthgrad.encode_array(np.zeros(W))},
                              r"expected shape \(n, 24\)"),
    "batched, too many": ({"activations": synthgrad.encode_array(np.zeros((TOO_MANY, W)))},
                          "at most"),
    "activations a number": ({"activations": 3}, "activations: expected an array object"),
}


@pytest.mark.parametrize("body, match", BAD_ESTIMATE_BODIES.values(), ids=BAD_ESTIMATE_BODIES)
def test_decode_estimate_request_refuses(body, match):
    with pytest.raises(ProtocolError, match=match):
        synthgrad.decode_estimate_request(wire(body))


def test_index_too_large_for_int64_is_refused():
    # Regression: np.array(..., dtype=np.int64) raises OverflowError for 2**64, before the range check,
    # so a server answers 500 instead of 400.
    for body in ([example(2 ** 64)], batched((0, 2 ** 64))):
        with pytest.raises(ProtocolError, match="outside"):
            synthgrad.decode_training_examples(wire(body), max_index=10)


# --- parse_json ------------------------------------------------------------------------------

def test_parse_json_reads_a_body():
    assert synthgrad.parse_json(b'{"activations": [1, 2.5]}') == {"activations": [1, 2.5]}


@pytest.mark.parametrize("data, match", [
    (b"", "empty body"),
    (b"{not json", "not JSON"),
    (b'{"a": 1', "not JSON"),
    (b'{"a": "\xff\xfe"}', "not JSON"),         # invalid UTF-8
    (b"\x80abc", "not JSON"),
])
def test_parse_json_refuses(data, match):
    with pytest.raises(ProtocolError, match=match):
        synthgrad.parse_json(data)


def test_parse_json_refuses_deeply_nested_json():
    # Regression: 100 kB of "[" (well under MAX_BODY_BYTES) makes json.loads raise RecursionError,
    # which parse_json does not catch: a 500 instead of a 400.
    with pytest.raises(ProtocolError):
        synthgrad.parse_json(b"[" * 100_000)


# --- Clients ---------------------------------------------------------------------------------

@pytest.fixture
def closed_port():
    """A port on 127.0.0.1 that nothing listens on (bound, noted and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_client_raises_peer_error_with_the_url_when_the_peer_is_down(closed_port):
    base = f"http://127.0.0.1:{closed_port}"
    clients = [synthgrad.Client(base, timeout=2.0), synthgrad.OracleClient(base, timeout=2.0),
               synthgrad.OutputTrainerClient(base, timeout=2.0)]
    calls = [lambda: clients[0].status(),
             lambda: clients[1].estimate_gradients(np.zeros((1, W))),
             lambda: clients[1].provide_gradients([0], np.zeros((1, W)), np.zeros((1, W))),
             lambda: clients[2].send_examples([0], np.zeros((1, W)), np.zeros(1))]
    paths = [synthgrad.STATUS, synthgrad.ESTIMATE_GRADIENTS, synthgrad.PROVIDE_GRADIENT,
             synthgrad.TRAINING_EXAMPLE]
    try:
        for call, path in zip(calls, paths, strict=True):
            t0 = time.monotonic()
            with pytest.raises(PeerError) as e:
                call()
            assert time.monotonic() - t0 < 2.0
            assert base + path in str(e.value)
    finally:
        for c in clients:
            c.close()


def test_wait_until_ready_returns_false_when_stopped(closed_port):
    client = synthgrad.Client(f"http://127.0.0.1:{closed_port}", timeout=1.0)
    stop = threading.Event()
    stop.set()
    t0 = time.monotonic()
    assert client.wait_until_ready(stop=stop) is False
    stop.clear()
    threading.Timer(0.2, stop.set).start()          # stopped while it is waiting
    assert client.wait_until_ready(stop=stop, max_backoff=0.05) is False
    assert time.monotonic() - t0 < 2.0
    client.close()


class FakeResponse:
    def __init__(self, status_code, body):
        self.status_code = status_code
        self._body = body
        self.text = body if isinstance(body, str) else json.dumps(body)

    def json(self):
        if isinstance(self._body, str):
            return json.loads(self._body)       # raises ValueError for non-JSON text
        return self._body


def client_answering(monkeypatch, response, cls=synthgrad.Client):
    """A client whose every HTTP exchange answers `response` (status and body bytes)."""
    client = cls("http://peer.invalid:1")
    answer = (response.status_code, response.text.encode(), "application/json")
    monkeypatch.setattr(client, "_send", lambda *args, **kwargs: answer)
    return client


def test_client_turns_an_error_answer_into_peer_error(monkeypatch):
    client = client_answering(monkeypatch, FakeResponse(400, {"error": "i: bad index"}))
    with pytest.raises(PeerError, match=r"peer.invalid:1/status answered 400: i: bad index"):
        client.status()


def test_client_refuses_a_non_json_answer(monkeypatch):
    client = client_answering(monkeypatch, FakeResponse(200, "<html>hi</html>"))
    with pytest.raises(PeerError, match="non-JSON"):
        client.status()


def test_oracle_client_refuses_a_wrong_shaped_answer(monkeypatch):
    answer = FakeResponse(200, {"gradients": synthgrad.encode_array(np.zeros((2, W)))})
    client = client_answering(monkeypatch, answer, synthgrad.OracleClient)
    with pytest.raises(PeerError, match="bad answer"):
        client.estimate_gradients(np.zeros((3, W)))
    good = FakeResponse(200, {"gradients": synthgrad.encode_array(np.full((3, W), 0.5))})
    client = client_answering(monkeypatch, good, synthgrad.OracleClient)
    np.testing.assert_array_equal(client.estimate_gradients(np.zeros((3, W))),
                                  np.full((3, W), 0.5))


def test_binary_oracle_client_sends_and_reads_the_binary_form(monkeypatch):
    sent = {}

    def fake_send(method, path, body, content_type, accept=None):
        sent.update(path=path, arrays=synthgrad.parse_binary(body), kind=content_type)
        g = np.full((3, W), 0.25)
        return 200, synthgrad.encode_binary({"gradients": g}), synthgrad.BINARY_TYPE

    client = synthgrad.OracleClient("http://peer.invalid:1", binary=True)
    monkeypatch.setattr(client, "_send", fake_send)
    h, y = np.arange(3 * W, dtype=float).reshape(3, W), np.array([0.1, 0.2, 0.3])
    np.testing.assert_array_equal(client.estimate_gradients(h, y), np.full((3, W), 0.25))
    assert sent["path"] == synthgrad.ESTIMATE_GRADIENTS and sent["kind"] == synthgrad.BINARY_TYPE
    np.testing.assert_array_equal(sent["arrays"]["activations"], h)
    np.testing.assert_array_equal(sent["arrays"]["y"], y)
    # A binary answer that does not parse, or has the wrong shape, is the peer's fault.
    for bad in (b"SGA1junk", synthgrad.encode_binary({"gradients": np.zeros((2, W))})):
        monkeypatch.setattr(client, "_send", lambda *a, bad=bad: (200, bad, synthgrad.BINARY_TYPE))
        with pytest.raises(PeerError, match="bad"):
            client.estimate_gradients(h)
    # GET /weights asks for the binary form (a JSON client does not) and reads it
    weights = [np.ones((W + 1, W)), np.zeros(W)]
    asked = []
    monkeypatch.setattr(client, "_send", lambda method, path, body, kind, accept=None: (
        asked.append(accept) or (200, synthgrad.encode_binary(
            {"weights0": weights[0], "weights1": weights[1], "conditioned": np.array([1]),
             "version": np.array([7])}), synthgrad.BINARY_TYPE)))
    got, conditioned, version = client.weights(W)
    assert asked == [synthgrad.BINARY_TYPE] and conditioned is True and version == 7
    assert [w.tobytes() for w in got] == [w.tobytes() for w in weights]


def test_client_error_answer_that_is_json_but_not_an_object(monkeypatch):
    # Regression: a 4xx/5xx whose body is JSON but not an object (e.g. a list, or "error" not a string)
    # makes _request raise AttributeError/TypeError instead of PeerError, which would also kill a
    # Sender's thread (it only catches PeerError).
    for body in ([1, 2], {"error": 5}):
        client = client_answering(monkeypatch, FakeResponse(500, body))
        with pytest.raises(PeerError, match="answered 500"):
            client.status()


def test_an_answer_its_decoder_cannot_read_is_the_peers_fault(monkeypatch):
    """A 200 answer to GET /status of [1, 2] (another program on the port) reached callers as a
    list: train_input.py ended in AttributeError on status.get("run"); a /weights "version" int()
    cannot read was a ValueError that ended a stage's ModelFollower thread (and the input
    trainer's oracle refresh thread, for a version of Infinity)."""
    for body in ([1, 2], 5, None, "\"text\""):              # JSON, not an object
        client = client_answering(monkeypatch, FakeResponse(200, body))
        with pytest.raises(PeerError, match="bad answer.*is not a mapping"):
            client.status()
    model = [synthgrad.encode_array(np.zeros((W + 1, W))), synthgrad.encode_array(np.zeros(W))]
    for version in ("five", None, [1], float("inf")):       # inf (1e400): an OverflowError
        answer = FakeResponse(200, {"weights": model, "version": version})
        client = client_answering(monkeypatch, answer, synthgrad.OracleClient)
        with pytest.raises(PeerError, match="bad answer"):
            client.weights(W)


@pytest.fixture
def http_peer():
    """The URL of an HTTP/1.0 server (it closes the connection after every answer) whose GET
    answers {"role": "test", "path": path}, plus "authorization" if the request carried one."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            answer = {"role": "test", "path": self.path}
            if self.headers.get("Authorization"):
                answer["authorization"] = self.headers["Authorization"]
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_client_reconnects_when_the_peer_closes_its_connection(http_peer):
    # An HTTP/1.0 server closes the connection after every answer; each call must still work.
    client = synthgrad.Client(http_peer, timeout=5.0)
    for _ in range(3):
        assert client.status() == {"role": "test", "path": "/status"}
    client.close()


@pytest.fixture
def raw_peer():
    """raw_peer(*behaviours) -> (URL, connections): a TCP server that reads one request per
    connection and then, connection by connection, follows the next behaviour: "close"
    (closes without answering, as a kept-alive connection the peer dropped looks), "reset"
    (the same with a TCP reset), "hang" (answers nothing for 5 s) or "ok" (answers
    {"ok": true}).
    connections counts the connections accepted."""
    listeners = []

    def make(*behaviours):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listeners.append(listener)
        connections = []

        def serve():
            for behaviour in behaviours:
                try:
                    conn, _ = listener.accept()
                except OSError:                      # the listener was closed: test over
                    return
                connections.append(conn)
                conn.recv(65536)                     # the request (GET, small: one read)
                if behaviour == "ok":
                    body = b'{"ok": true}'
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                                 % (len(body), body))
                elif behaviour == "reset":           # SO_LINGER 0: close sends RST
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                if behaviour == "hang":                 # until a client without a timeout
                    threading.Timer(5.0, conn.close).start()    # would fail, not hang
                else:
                    conn.close()

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}", connections

    yield make
    for listener in listeners:
        listener.close()


@pytest.mark.parametrize("drop", ["close", "reset"])
def test_client_resends_once_when_a_connection_is_dropped_under_it(raw_peer, drop):
    url, connections = raw_peer(drop, "ok")
    client = synthgrad.Client(url, timeout=5.0)
    assert client.status() == {"ok": True}
    assert len(connections) == 2
    client.close()


@pytest.mark.parametrize("drop", ["close", "reset"])
def test_client_resends_only_once(raw_peer, drop):
    url, connections = raw_peer(drop, drop, "ok")
    client = synthgrad.Client(url, timeout=5.0)
    with pytest.raises(PeerError) as e:
        client.status()
    assert e.value.status is None and url + synthgrad.STATUS in str(e.value)
    assert ("RemoteDisconnected" if drop == "close" else "ConnectionResetError") in str(e.value)
    assert len(connections) == 2
    client.close()


def test_client_gives_up_after_its_timeout_and_does_not_resend(raw_peer):
    url, connections = raw_peer("hang", "ok")
    client = synthgrad.Client(url, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(PeerError, match="timed out") as e:
        client.status()
    assert 0.25 < time.monotonic() - t0 < 2.0
    assert e.value.status is None and url + synthgrad.STATUS in str(e.value)
    assert len(connections) == 1
    client.close()


def test_every_request_carries_the_client_timeout(monkeypatch):
    timeouts = []

    def send(adapter, request, **kwargs):
        timeouts.append(kwargs.get("timeout"))
        raise requests.ConnectionError("not sent")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    h = np.zeros((2, W))
    for binary in (False, True):
        oracle = synthgrad.OracleClient("http://peer.invalid:1", timeout=3.5, binary=binary)
        output = synthgrad.OutputTrainerClient("http://peer.invalid:1", timeout=3.5,
                                               binary=binary)
        calls = [oracle.status, oracle.weights,
                 lambda oracle=oracle: oracle.estimate_gradients(h),
                 lambda oracle=oracle: oracle.provide_gradients([0, 1], h, h, np.zeros(2)),
                 lambda output=output: output.send_examples([0, 1], h, np.zeros(2))]
        for call in calls:
            with pytest.raises(PeerError, match="not sent"):
                call()
    assert timeouts == [3.5] * 10


def test_each_thread_has_its_own_session_which_ignores_the_environment(
        http_peer, closed_port, monkeypatch):
    # trust_env = False: no proxy or netrc look-ups; a proxy in the environment is not used.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{closed_port}")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = synthgrad.Client(http_peer, timeout=5.0, token="s3cret")
    answers, sessions = [], []

    def call():
        answers.append(client.status())
        sessions.append(client._session())

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    call()
    assert answers == [{"role": "test", "path": "/status",
                        "authorization": "Bearer s3cret"}] * 3
    assert len({id(s) for s in sessions}) == 3
    assert all(s.trust_env is False for s in sessions)
    client.close()


def test_client_refuses_a_url_it_cannot_use():
    for url in ("127.0.0.1:5000", "https://127.0.0.1:5000", "http://"):
        with pytest.raises(ValueError, match="http://HOST:PORT"):
            synthgrad.Client(url)


# --- The binary form ----------------------------------------------------------------------------

def test_binary_round_trip_is_exact_and_decodes_like_the_json_form():
    rng = np.random.default_rng(11)
    i, h, g, y = np.array([4, 0, 7]), rng.standard_normal((3, W)), rng.standard_normal((3, W)), \
        np.array([0.1, -2.5e10, 1e-300])
    arrays = synthgrad.parse_binary(synthgrad.encode_binary({"i": i, "h": h, "gradient": g, "y": y}))
    assert arrays["i"].dtype == np.int64 and arrays["h"].dtype == np.float64
    from_binary = synthgrad.decode_gradients(arrays, 10, need_y=True)
    from_json = synthgrad.decode_gradients(
        json.loads(json.dumps(synthgrad.encode_gradients(i, h, g, y))), 10, need_y=True)
    for a, b, want in zip(from_binary, from_json, (i, h, g, y), strict=True):
        assert a.tobytes() == b.tobytes() == np.asarray(want, a.dtype).tobytes()


def _binary(header, payload=b""):
    head = json.dumps(header).encode()
    return b"SGA1" + len(head).to_bytes(4, "big") + head + payload


@pytest.mark.parametrize("data, match", [
    (b"", "must start"),
    (b"JSON{}", "must start"),
    (b"SGA1" + (100).to_bytes(4, "big") + b"{}", "header must be"),
    (_binary([1, 2]), "header must be"),
    (_binary({"x": {"dtype": "float32", "shape": [1]}}, b"\0" * 4), "dtype"),
    (_binary({"x": {"dtype": "float64", "shape": [-1]}}), "dtype"),
    (_binary({"x": {"dtype": "float64", "shape": [1, 1, 1]}}, b"\0" * 8), "dtype"),
    (_binary({"x": {"dtype": "float64", "shape": [2]}}, b"\0" * 8), "ends before"),
    (_binary({"x": {"dtype": "float64", "shape": [1]}}, b"\0" * 9), "after the last"),
])
def test_parse_binary_refuses_malformed_bodies(data, match):
    with pytest.raises(ProtocolError, match=match):
        synthgrad.parse_binary(data)


def test_binary_arrays_get_the_same_checks_as_json_ones():
    ok = {"i": np.array([0, 1]), "x": np.zeros((2, W)), "y": np.zeros(2)}
    bad = [({**ok, "x": np.full((2, W), np.nan)}, "finite"),
           ({**ok, "x": np.zeros((2, W - 1))}, "shape"),
           ({**ok, "i": np.array([0, 0])}, "twice"),
           ({**ok, "i": np.array([0, 99])}, "outside"),
           ({**ok, "i": np.array([0.0, 1.0])}, "integers")]
    synthgrad.decode_training_examples(synthgrad.parse_binary(synthgrad.encode_binary(ok)), 10)
    for body, match in bad:
        parsed = synthgrad.parse_binary(synthgrad.encode_binary(body)) if body["i"].dtype.kind \
            == "i" else {**body}
        with pytest.raises(ProtocolError, match=match):
            synthgrad.decode_training_examples(parsed, 10)
