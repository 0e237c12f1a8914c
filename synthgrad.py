"""The wire protocol between the three processes, and its clients.

Import it; importing runs nothing. `python synthgrad.py` prints this description.

What travels
------------
The network 2 -> 24 -> 12 -> 1 is split after layer 1. Its activation h = sigmoid(x . w1 + b1),
shape (24,) per example, is what the input trainer sends up. A *gradient* on the wire is always
dL/dh: the derivative of one example's loss L = 1/2 (y_hat - y)^2 with respect to that example's
activation h, the same shape as h. A true gradient comes from the output trainer's backprop
through layers 2-3; a synthetic gradient is the oracle's prediction of it from h alone. Every
trainer updates its weights with w -= learning_rate * dL/dw, where dL/dw is averaged over the
minibatch.

An *array* is the JSON object {"shape": [d0, d1, ...], "values": [v, ...]}: values are the
array's numbers flattened in row-major (C) order, len(values) == d0 * d1 * ...; a scalar has
shape []. All numbers are float64 and must be finite. An index i is a non-negative integer
naming an example of the input trainer's data set (its row in x.npy).

Endpoints
---------
| server (default address)        | method, path         | request JSON                                  | response JSON                         |
|---------------------------------|----------------------|-----------------------------------------------|---------------------------------------|
| output trainer 127.0.0.1:5000   | POST /training_example | list of {"i": int, "x": array (24,), "y": array ()}, or batched: {"i": [n ints], "x": array (n, 24), "y": array (n,)} | {"ok": true, "received": n} |
| oracle 127.0.0.1:5001           | POST /estimate_gradients | {"activations": list of array (24,)}, or {"activations": array (n, 24)}; optional "y": array (n,) | {"gradients": array (n, 24)} |
| oracle                          | POST /provide_gradient | list of {"i": int, "h": array (24,), "gradient": array (24,)}, or batched: {"i": [n ints], "h": array (n, 24), "gradient": array (n, 24)}; optional "y" (array () per example, or (n,) batched) | {"ok": true, "received": n} |
| oracle                          | GET /weights         | none                                          | {"weights": [array, ...], "conditioned": bool, "version": int} (below) |
| both                            | GET /status          | none                                          | what the server holds and has done (below) |

GET /weights gives the oracle's newest weights, for the *local* mode in which the input trainer
computes synthetic gradients itself (as in the paper, where the synthetic-gradient model sits
beside the layer it serves) and only true gradients travel: "weights" is [w1 (n_in, hidden),
b1 (hidden,), w2 (hidden, 24), b2 (24,)], or [w (n_in, 24), b (24,)] for a linear model, where
n_in is 24, or 25 when "conditioned" (the input is then h and y side by side);
model_forward(weights, inputs) below is the model. "version" counts the oracle's training steps.

GET /status answers, on both servers: "role" ("oracle" or "output_trainer"), "uptime_s" (float),
"examples_held" (int, distinct example indices held), "training_passes" (int),
"last_train_mse" (float or null: the oracle's loss mean((g_hat - g)^2) over its last pass, or
the output trainer's mean (y_hat - y)^2 over its last pass), "requests_served" and
"requests_refused" (int), "staleness_s" (float or null: the mean age, in seconds, of the
rows its last training pass used, i.e. how old the activations or gradients it learns from are)
and "peak_rss_mb". The oracle adds "gradients_received", "estimates_served",
"training_steps" and "synthetic_gradient_quality": {"window": examples in the moving window,
"cosine_similarity": mean over examples of cos(g_hat, g), "relative_error": mean of
|g_hat - g| / |g|, "aggregate_cosine": cos of all the window's gradients as one vector,
"explained": 1 - sum |g_hat - g|^2 / sum |g|^2, "cosine_similarity_since_start"}, where g_hat is
what the oracle would have answered for h just before the true g arrived (floats, or null
before any gradient arrived). The output trainer adds "examples_received",
"examples_trained", "snapshots_saved" and "gradients_to_oracle": its sender's counts {"sent",
"superseded", "dropped", "refused", "failed_requests", "unsent"}.

In /training_example, x is layer 1's activation h for example i and y its target. The targets
y in the oracle's requests are for a target-conditioned oracle (cDNI, `oracle.py
--conditioned`), whose synthetic gradient is a function of (h, y); it refuses requests without
them with a 400. An unconditioned oracle (the default, the original's) ignores them, so old
clients that never send y work as before. The list forms are the original project's, kept so
that its clients still work; our clients send the batched forms (one array per chunk, which is
much cheaper to encode). A request carries at most
MAX_EXAMPLES_PER_REQUEST examples (MAX_CHUNK is what our senders put in one).

The binary form: /training_example, /provide_gradient and /estimate_gradients also accept their
batched body as Content-Type application/x-synthgrad-arrays (see encode_binary), the same fields
as raw little-endian int64 / float64 arrays. /estimate_gradients answers a binary request in the
binary form too ({"gradients": (n, 24)}); every other answer, and every error, is JSON. It is
~150x cheaper to write and read than JSON numbers (0.2 against 31 microseconds per example) and
is opt-in (`--wire binary` on the trainers); JSON stays the default and the reference. Every
check applies to both forms alike.

A shared secret: a server started with --token (or the SYNTHGRAD_TOKEN environment variable)
answers 401 to every request that does not carry "Authorization: Bearer <token>"; our clients
send it when given the same token.

Errors: a refused request gets a 4xx status and {"error": "what was wrong"}; the server's state is
unchanged by it. 400 bad body, 401 no or wrong token, 404 unknown path, 405 wrong method,
413 body too large.
"""

import collections
import http.client
import itertools
import json
import logging
import math
import os
import signal
import sys
import threading
import time
import urllib.parse

import numpy as np

DEFAULT_OUTPUT_TRAINER_URL = "http://127.0.0.1:5000"
DEFAULT_ORACLE_URL = "http://127.0.0.1:5001"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_OUTPUT_TRAINER_PORT = 5000
DEFAULT_ORACLE_PORT = 5001

TRAINING_EXAMPLE = "/training_example"
ESTIMATE_GRADIENTS = "/estimate_gradients"
PROVIDE_GRADIENT = "/provide_gradient"
STATUS = "/status"
WEIGHTS = "/weights"

HIDDEN_SIZE = 24                  # width of h, the activation that crosses the wire
MAX_CHUNK = 500                   # examples our senders put in one request (the original's)
MAX_EXAMPLES_PER_REQUEST = 5_000  # servers refuse more than this in one request
# Largest legitimate body: 5,000 examples x 49 numbers x ~25 bytes; twice that as headroom.
MAX_BODY_BYTES = 16 * 1024 * 1024

log = logging.getLogger("synthgrad")


class ProtocolError(ValueError):
    """A request body that does not follow the protocol; the message says what was wrong."""


class PeerError(RuntimeError):
    """A peer could not be reached or answered with an error; carries the URL and the reason.

    status is the HTTP status of an error answer, None if there was no answer. A 4xx answer
    means the request itself was refused (resending it cannot help); anything else may pass.
    """

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status

    @property
    def refused(self):
        return self.status is not None and 400 <= self.status < 500 and self.status != 408


# --- Arrays -----------------------------------------------------------------------------------

def encode_array(a):
    """{"shape": [...], "values": [...]} for a numpy array (or anything np.asarray takes)."""
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "values": a.ravel().tolist()}


def decode_array(obj, shape=None, what="array"):
    """The float64 array described by obj, checked.

    shape: the expected shape, with None for a dimension that may be anything. Raises
    ProtocolError naming `what` if obj is not an array object, its values are not finite numbers,
    their count does not match its shape, or its shape is not the expected one.
    """
    if isinstance(obj, np.ndarray):                     # from the binary form: already numbers
        return _check_array(obj.astype(np.float64, copy=False), shape, what)
    if not isinstance(obj, dict) or "shape" not in obj or "values" not in obj:
        raise ProtocolError(f"{what}: expected an array object {{\"shape\": [...], \"values\": [...]}}")
    dims, values = obj["shape"], obj["values"]
    if not isinstance(dims, list) or not all(type(d) is int and d >= 0 for d in dims):
        raise ProtocolError(f"{what}: shape must be a list of non-negative integers, got {dims!r:.80}")
    if not isinstance(values, list):
        raise ProtocolError(f"{what}: values must be a list of numbers")
    if len(values) != math.prod(dims):
        raise ProtocolError(f"{what}: shape {dims} needs {math.prod(dims)} values, got {len(values)}")
    if not set(map(type, values)) <= {float, int}:      # no strings, bools, None, lists
        raise ProtocolError(f"{what}: values must be a flat list of numbers")
    if shape is not None and len(dims) != len(shape):
        raise ProtocolError(f"{what}: expected shape {_shape_text(shape)}, got {dims!r:.80}")
    try:
        arr = np.array(values, dtype=np.float64).reshape(dims)
    except OverflowError:
        raise ProtocolError(f"{what}: a value is too large for float64") from None
    except ValueError as e:                             # e.g. more dimensions than numpy allows
        raise ProtocolError(f"{what}: no array of shape {dims!r:.80}: {e}") from None
    return _check_array(arr, shape, what)


def _check_array(arr, shape, what):
    """arr if its values are finite and its shape is `shape` (None: any size), else ProtocolError."""
    if not np.isfinite(arr).all():
        raise ProtocolError(f"{what}: values must be finite (no NaN or infinity)")
    if shape is not None and (len(shape) != arr.ndim or
                              any(want is not None and want != got
                                  for want, got in zip(shape, arr.shape))):
        raise ProtocolError(f"{what}: expected shape {_shape_text(shape)}, got {tuple(arr.shape)}")
    return arr


def _shape_text(shape):
    return "(" + ", ".join("n" if d is None else str(d) for d in shape) + ")"


def _decode_indices(obj, n, max_index, what="i"):
    if isinstance(obj, np.ndarray) and obj.dtype == np.int64 and obj.ndim == 1:
        obj = obj.tolist()                              # the binary form's int64 array
    if not isinstance(obj, list) or not all(type(v) is int for v in obj):
        raise ProtocolError(f"{what}: expected a list of integers")
    if len(obj) != n:
        raise ProtocolError(f"{what}: {len(obj)} indices for {n} examples")
    bad = [v for v in obj if not 0 <= v < max_index]
    if bad:
        raise ProtocolError(f"{what}: index {bad[0]} is outside [0, {max_index}), the "
                            f"indices this server was configured for (--max-examples)")
    i = np.array(obj, dtype=np.int64) if obj else np.zeros(0, dtype=np.int64)
    if len(np.unique(i)) != n:
        raise ProtocolError(f"{what}: an index appears twice in one request")
    return i


def _check_count(n):
    if n == 0:
        raise ProtocolError("the request holds no examples")
    if n > MAX_EXAMPLES_PER_REQUEST:
        raise ProtocolError(f"{n} examples in one request; at most {MAX_EXAMPLES_PER_REQUEST}")


def _decode_examples(body, fields, shapes, width, max_index):
    """Decode a list-of-examples or batched body with index "i" and the given array fields.

    shapes: per field, the shape of one example's value ((width,) or ()). Returns (i, *arrays)
    with arrays stacked to (n, *shape).
    """
    if isinstance(body, list):                           # the original per-example form
        _check_count(len(body))
        i, columns = [], [[] for _ in fields]
        for k, item in enumerate(body):
            if not isinstance(item, dict):
                raise ProtocolError(f"example {k}: expected an object with keys i, {', '.join(fields)}")
            missing = [f for f in ("i",) + fields if f not in item]
            if missing:
                raise ProtocolError(f"example {k}: missing {', '.join(missing)}")
            i.append(item["i"])
            for col, field, shape in zip(columns, fields, shapes):
                col.append(decode_array(item[field], shape, what=f"example {k} {field}"))
        i = _decode_indices(i, len(body), max_index, what="i")
        return (i, *(np.stack(col) for col in columns))
    if isinstance(body, dict):                           # the batched form
        missing = [f for f in ("i",) + fields if f not in body]
        if missing:
            raise ProtocolError(f"missing {', '.join(missing)}")
        if not isinstance(body["i"], (list, np.ndarray)):
            raise ProtocolError("i: expected a list of integers")
        n = len(body["i"])
        _check_count(n)
        arrays = [decode_array(body[f], (n,) + shape, what=f) for f, shape in zip(fields, shapes)]
        return (_decode_indices(body["i"], n, max_index), *arrays)
    raise ProtocolError(f"expected a list of examples or a batched object with keys "
                        f"i, {', '.join(fields)}")


def encode_training_examples(i, x, y):
    """Batched /training_example body: i (n,), x = h (n, 24), y (n,)."""
    return {"i": [int(k) for k in i], "x": encode_array(x), "y": encode_array(y)}


def decode_training_examples(body, max_index, width=HIDDEN_SIZE):
    """(i (n,), x (n, width), y (n,)) from a /training_example body of either form."""
    return _decode_examples(body, ("x", "y"), ((width,), ()), width, max_index)


def encode_gradients(i, h, gradient, y=None):
    """Batched /provide_gradient body: i (n,), h (n, 24), gradient = dL/dh (n, 24), and the
    targets y (n,) if given (a target-conditioned oracle needs them)."""
    body = {"i": [int(k) for k in i], "h": encode_array(h), "gradient": encode_array(gradient)}
    if y is not None:
        body["y"] = encode_array(y)
    return body


def decode_gradients(body, max_index, width=HIDDEN_SIZE, need_y=False):
    """(i (n,), h (n, width), gradient (n, width)) from a /provide_gradient body of either form;
    with need_y, also y (n,), which must then be present."""
    fields, shapes = ("h", "gradient"), ((width,), (width,))
    if need_y:
        fields, shapes = fields + ("y",), shapes + ((),)
    try:
        return _decode_examples(body, fields, shapes, width, max_index)
    except ProtocolError as e:
        if need_y and "missing y" in str(e):
            raise ProtocolError(f"{e}: this oracle is conditioned on the target (cDNI) and "
                                "needs y with every example") from None
        raise


def encode_estimate_request(h, y=None):
    """/estimate_gradients body for activations h (n, 24), with targets y (n,) if given."""
    body = {"activations": encode_array(h)}
    if y is not None:
        body["y"] = encode_array(y)
    return body


def decode_estimate_request(body, width=HIDDEN_SIZE, need_y=False):
    """Activations h (n, width) from an /estimate_gradients body of either form; with need_y,
    (h, y) where y (n,) must be present."""
    if not isinstance(body, dict) or "activations" not in body:
        raise ProtocolError('expected {"activations": ...}')
    acts = body["activations"]
    if isinstance(acts, list):                           # the original: a list of (24,) arrays
        _check_count(len(acts))
        h = np.stack([decode_array(a, (width,), what=f"activations[{k}]")
                      for k, a in enumerate(acts)])
    else:
        h = decode_array(acts, (None, width), what="activations")
        _check_count(len(h))
    if not need_y:
        return h
    if "y" not in body:
        raise ProtocolError("missing y: this oracle is conditioned on the target (cDNI) and "
                            "needs the targets y (n,) of the activations")
    return h, decode_array(body["y"], (len(h),), what="y")


def decode_estimate_response(body, n, width=HIDDEN_SIZE):
    """The (n, width) synthetic gradients from an /estimate_gradients response."""
    if not isinstance(body, dict) or "gradients" not in body:
        raise ProtocolError('expected {"gradients": ...}')
    return decode_array(body["gradients"], (n, width), what="gradients")


def model_forward(weights, inputs):
    """The synthetic-gradient model: g_hat (n, 24) for inputs (n, n_in), from [w1, b1, w2, b2]
    (a hidden sigmoid layer, then linear) or [w, b] (linear). The oracle answers requests with
    it, and the input trainer's local mode uses it on weights from GET /weights."""
    if len(weights) == 2:
        w, b = weights
        return inputs @ w + b                        # (n, 24)
    w1, b1, w2, b2 = weights
    a1 = 1.0 / (1.0 + np.exp(-(inputs @ w1 + b1)))   # (n, hidden)
    return a1 @ w2 + b2                              # (n, 24)


def decode_weights(body):
    """(weights, conditioned, version) from a GET /weights answer, checked."""
    if not isinstance(body, dict) or not isinstance(body.get("weights"), list):
        raise ProtocolError('expected {"weights": [array, ...], ...}')
    weights = [decode_array(w, what=f"weights[{k}]") for k, w in enumerate(body["weights"])]
    shapes = [w.shape for w in weights]
    ok = (len(weights) in (2, 4) and all(len(s) == 2 for s in shapes[0::2])
          and all(len(s) == 1 for s in shapes[1::2])
          and all(shapes[k][1] == shapes[k + 1][0] for k in range(0, len(weights), 2))
          and all(shapes[k + 2][0] == shapes[k + 1][0] for k in range(0, len(weights) - 2, 2))
          and shapes[-1] == (HIDDEN_SIZE,))
    if not ok:
        raise ProtocolError(f"weights: shapes {shapes} are not a synthetic-gradient model")
    return weights, bool(body.get("conditioned")), int(body.get("version", 0))


BINARY_TYPE = "application/x-synthgrad-arrays"
_MAGIC = b"SGA1"
_DTYPES = {"float64": np.dtype("<f8"), "int64": np.dtype("<i8")}


def encode_binary(arrays):
    """The binary form of a batched body: {name: array} -> bytes (Content-Type BINARY_TYPE).

    Layout: b"SGA1", a 4-byte big-endian header length, a JSON header {name: {"dtype":
    "float64" or "int64", "shape": [...]}, ...}, then each array's values, little-endian, in
    the header's order. It carries exactly what the batched JSON form carries (the index list
    "i" as an int64 array), without printing and parsing ~25 characters per number.
    """
    header, chunks = {}, []
    for name, a in arrays.items():
        a = np.asarray(a)
        dtype = "int64" if a.dtype.kind in "iu" else "float64"
        a = np.ascontiguousarray(a, dtype=_DTYPES[dtype])
        header[name] = {"dtype": dtype, "shape": list(a.shape)}
        chunks.append(a.tobytes())
    head = json.dumps(header).encode()
    return b"".join([_MAGIC, len(head).to_bytes(4, "big"), head, *chunks])


def parse_binary(data):
    """{name: array} from a body in the binary form, or ProtocolError saying what is wrong."""
    if len(data) < 8 or data[:4] != _MAGIC:
        raise ProtocolError(f"binary body must start with {_MAGIC!r} and a header length")
    n = int.from_bytes(data[4:8], "big")
    header = parse_json(data[8:8 + n]) if 8 + n <= len(data) else None
    if not isinstance(header, dict):
        raise ProtocolError("binary body: the header must be a JSON object")
    arrays, offset = {}, 8 + n
    for name, spec in header.items():
        if (not isinstance(spec, dict) or spec.get("dtype") not in _DTYPES
                or not isinstance(spec.get("shape"), list)
                or not all(type(d) is int and 0 <= d <= MAX_BODY_BYTES for d in spec["shape"])
                or len(spec["shape"]) > 2):
            raise ProtocolError(f"binary body: {name}: expected {{\"dtype\": \"float64\" or "
                                f"\"int64\", \"shape\": [up to 2 sizes]}}")
        dtype = _DTYPES[spec["dtype"]]
        size = math.prod(spec["shape"]) * dtype.itemsize
        if offset + size > len(data):
            raise ProtocolError(f"binary body: {name}: the body ends before its values do")
        arrays[name] = np.frombuffer(data, dtype, math.prod(spec["shape"]), offset).reshape(
            spec["shape"])
        offset += size
    if offset != len(data):
        raise ProtocolError(f"binary body: {len(data) - offset} bytes after the last array")
    return arrays


def parse_json(data):
    """Parse a request body (bytes) as JSON, or raise ProtocolError saying why not."""
    if not data:
        raise ProtocolError("empty body; expected JSON")
    try:
        return json.loads(data)
    except ValueError as e:          # JSONDecodeError, UnicodeDecodeError, huge integers
        raise ProtocolError(f"body is not JSON: {e}") from None
    except RecursionError:
        raise ProtocolError("body is nested too deeply") from None


# --- Clients ----------------------------------------------------------------------------------

class Client:
    """One peer at base_url: a kept-alive HTTP/1.1 connection and a timeout on every call.

    Built on the standard library's http.client rather than requests: over loopback a request
    costs ~0.5 ms with it and ~1 ms with a requests.Session, and the input trainer makes one
    per minibatch. Each thread gets its own connection (http.client connections are not
    thread-safe); a dropped connection is reopened once. Every failure is a PeerError that
    names the peer, the URL and the reason.
    """

    name = "peer"

    def __init__(self, base_url, timeout=10.0, binary=False, token=None):
        parts = urllib.parse.urlsplit(base_url)
        self.auth = {"Authorization": f"Bearer {token}"} if token else {}
        self.binary = binary                  # bulk POSTs in the binary form, not JSON
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"{self.name} URL must look like http://HOST:PORT, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self._local.conn = conn
        return conn

    def _send(self, method, path, body, content_type="application/json"):
        conn = self._connection()
        headers = {**self.auth, **({"Content-Type": content_type} if body is not None else {})}
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.read(), r.getheader("Content-Type", "")
        except (OSError, http.client.HTTPException):
            conn.close()                      # the next call opens a new connection
            raise

    def _request(self, method, path, payload=None, arrays=None):
        """Send payload as JSON, or arrays ({name: array}) in the binary form; return the
        JSON answer."""
        url = self.base_url + path
        if arrays is not None:
            body, kind = encode_binary(arrays), BINARY_TYPE
        else:
            body, kind = (None if payload is None else json.dumps(payload).encode(),
                          "application/json")
        try:
            try:
                status, data, answer_kind = self._send(method, path, body, kind)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # a kept-alive socket went stale
                status, data, answer_kind = self._send(method, path, body, kind)
        except (OSError, http.client.HTTPException) as e:
            raise PeerError(f"{self.name} at {url}: {type(e).__name__}: {e}") from e
        if status == 200 and answer_kind == BINARY_TYPE:
            try:
                return parse_binary(data)
            except ProtocolError as e:
                raise PeerError(f"{self.name} at {url} sent a bad binary answer: {e}") from e
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if status != 200:
            reason = (str(answer["error"]) if isinstance(answer, dict) and "error" in answer
                      else data.decode("utf-8", "replace"))
            raise PeerError(f"{self.name} at {url} answered {status}: {reason[:300]}", status)
        if answer is None:
            raise PeerError(f"{self.name} at {url} answered with non-JSON: {data[:200]!r}")
        return answer

    def status(self):
        """The peer's GET /status as a dict."""
        return self._request("GET", STATUS)

    def wait_until_ready(self, stop=None, max_backoff=2.0, log_every=10.0):
        """Block until GET /status answers, retrying with back-off; logs while waiting.

        Returns True when the peer answered, False if `stop` (a threading.Event) was set first.
        """
        delay, last_log = 0.05, -math.inf
        while stop is None or not stop.is_set():
            try:
                self.status()
                return True
            except PeerError as e:
                if time.monotonic() - last_log >= log_every:
                    log.info("waiting for %s at %s ... (%s)", self.name, self.base_url, e)
                    last_log = time.monotonic()
            if stop is not None:
                if stop.wait(delay):
                    break
            else:
                time.sleep(delay)
            delay = min(max_backoff, delay * 2)
        return False

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


class OutputTrainerClient(Client):
    name = "output trainer"

    def __init__(self, base_url=DEFAULT_OUTPUT_TRAINER_URL, timeout=10.0, binary=False,
                 token=None):
        super().__init__(base_url, timeout, binary, token)

    def send_examples(self, i, x, y):
        """POST /training_example: activations x = h (n, 24) and targets y (n,) for examples i."""
        if self.binary:
            return self._request("POST", TRAINING_EXAMPLE, arrays={"i": i, "x": x, "y": y})
        return self._request("POST", TRAINING_EXAMPLE, encode_training_examples(i, x, y))


class OracleClient(Client):
    name = "oracle"

    def __init__(self, base_url=DEFAULT_ORACLE_URL, timeout=10.0, binary=False, token=None):
        super().__init__(base_url, timeout, binary, token)

    def estimate_gradients(self, h, y=None):
        """POST /estimate_gradients: synthetic dL/dh (n, 24) for activations h (n, 24).

        y (n,), the targets, are sent if given; only a target-conditioned oracle uses them.
        With binary=True the request and the answer are in the binary form.
        """
        if self.binary:
            arrays = {"activations": h} if y is None else {"activations": h, "y": y}
            body = self._request("POST", ESTIMATE_GRADIENTS, arrays=arrays)
        else:
            body = self._request("POST", ESTIMATE_GRADIENTS, encode_estimate_request(h, y))
        try:
            return decode_estimate_response(body, len(h), h.shape[1])
        except ProtocolError as e:
            raise PeerError(f"oracle at {self.base_url} sent a bad answer: {e}") from e

    def weights(self):
        """GET /weights: (weights, conditioned, version) of the oracle's newest model."""
        body = self._request("GET", WEIGHTS)
        try:
            return decode_weights(body)
        except ProtocolError as e:
            raise PeerError(f"oracle at {self.base_url} sent bad weights: {e}") from e

    def provide_gradients(self, i, h, gradient, y=None):
        """POST /provide_gradient: true dL/dh (n, 24) at activations h (n, 24) for examples i,
        with their targets y (n,) if given."""
        if self.binary:
            arrays = {"i": i, "h": h, "gradient": gradient, **({} if y is None else {"y": y})}
            return self._request("POST", PROVIDE_GRADIENT, arrays=arrays)
        return self._request("POST", PROVIDE_GRADIENT, encode_gradients(i, h, gradient, y))


# The trainers' senders wait up to 10 ms for a chunk to fill: the input trainer puts 10 rows a
# minibatch, and one POST per minibatch would double its requests (at ~9,000 examples/s, ~900
# POSTs/s; a waitress request costs ~0.3 ms of server CPU, measured on /estimate_gradients).
SENDER_LINGER = 0.01


class Sender:
    """Fire-and-forget delivery of per-example rows to a peer, from a background thread.

    The producer calls put(i, *arrays) (rows for examples i) and never waits. Rows wait in a
    pending buffer holding the latest rows per example index: a newer row for an index that has
    not been sent yet replaces the older one (counted as `superseded`; the receiver keeps only
    the latest per index anyway). The sender thread posts up to `chunk` rows at a time with
    send(i, *arrays). While the peer is down it keeps the rows and retries with back-off
    (logging once per `log_every` seconds, counting `failed_requests`). The buffer holds at most
    `max_pending` indices: rows for a new index beyond that are refused and counted as
    `dropped`. Rows the peer refuses as malformed (a 4xx answer other than 401) are dropped
    and counted as `refused`, with an error logged: resending cannot help. close() sends what is left, for at most `flush_timeout` seconds, and counts and
    logs what could not be sent as `unsent`. With `linger` > 0 the thread, before taking a chunk
    that is not full, waits up to `linger` seconds for more rows, so a producer that puts a few
    rows at a time makes a few large requests rather than many small ones.
    """

    def __init__(self, send, name, chunk=MAX_CHUNK, max_pending=250_000, max_backoff=2.0,
                 log_every=10.0, linger=0.0):
        self._send = send
        self.name = name
        self.chunk = chunk
        self.linger = linger
        self.max_pending = max_pending
        self.max_backoff = max_backoff
        self.log_every = log_every
        self._pending = {}                      # index -> (block id, row), oldest first
        self._blocks = {}                       # block id -> its arrays (copies of a put's)
        self._live = {}                         # block id -> how many of its rows are pending
        self._next_block = 0
        self._rows_held = 0                     # rows in the blocks kept, pending or not
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.counts = collections.Counter(sent=0, superseded=0, dropped=0, refused=0,
                                          failed_requests=0, unsent=0)
        self._last_log = -math.inf
        self._thread = threading.Thread(target=self._run, name=f"sender-{name}", daemon=True)
        self._thread.start()

    def put(self, i, *arrays):
        """Queue rows arrays[k][j] for example i[j]; returns immediately."""
        block = [np.array(a, copy=True) for a in arrays]    # the caller may reuse its arrays
        with self._lock:
            self._add(np.asarray(i).tolist(), block, replace=True)
        self._wake.set()

    def pending(self):
        with self._lock:
            return len(self._pending)

    # The buffer: each put's rows stay together in one block (a copy of its arrays, made once);
    # _pending maps an example index to (block id, row) of its newest unsent row, in the order
    # the indices first arrived. A block is freed when none of its rows is pending any more.
    # Handling rows a block at a time is what keeps the per-row cost of the buffer small: the
    # output trainer sends over 100,000 rows a second through it.

    def _add(self, indices, block, replace):
        """Make block's rows the pending ones for `indices` (caller holds the lock). replace:
        a newer row supersedes a pending one (put); otherwise a pending row wins (give back)."""
        pending, bid = self._pending, self._next_block
        self._next_block += 1
        live = superseded = dropped = 0
        for j, index in enumerate(indices):
            old = pending.get(index)
            if old is not None:
                superseded += 1
                if not replace:
                    continue
                if old[0] == bid:                   # the same index twice in one put
                    live -= 1
                else:
                    self._release(old[0], 1)
            elif len(pending) >= self.max_pending:
                dropped += 1
                continue
            pending[index] = (bid, j)
            live += 1
        if live:
            self._blocks[bid] = block
            self._live[bid] = live
            self._rows_held += len(indices)
        self.counts["superseded"] += superseded
        self.counts["dropped"] += dropped
        if self._rows_held > 4 * (len(pending) + self.chunk):
            self._compact()

    def _release(self, bid, n):
        self._live[bid] -= n
        if self._live[bid] == 0:
            del self._live[bid]
            self._rows_held -= len(self._blocks.pop(bid)[0])

    def _gather(self, entries):
        """(i, columns) for entries [(index, (block id, row))], oldest block first; releases
        their rows from their blocks."""
        i = np.fromiter((index for index, _ in entries), np.int64, len(entries))
        bids = np.fromiter((where[0] for _, where in entries), np.int64, len(entries))
        rows = np.fromiter((where[1] for _, where in entries), np.int64, len(entries))
        order = np.argsort(bids, kind="stable")
        i, bids, rows = i[order], bids[order], rows[order]
        bounds = [0, *(np.flatnonzero(np.diff(bids)) + 1).tolist(), len(bids)]
        parts = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            bid = int(bids[a])
            parts.append([column[rows[a:b]] for column in self._blocks[bid]])
            self._release(bid, b - a)
        return i, [np.concatenate(column) for column in zip(*parts)]

    def _compact(self):
        """Copy the pending rows into one block, freeing blocks that are mostly superseded
        (bounds the buffer's memory at a few times what is pending)."""
        entries = list(self._pending.items())
        self._pending.clear()
        i, columns = self._gather(entries)
        self._add(i.tolist(), columns, replace=True)

    def _take(self):
        """Up to `chunk` pending rows, oldest first, as (i, columns); None if nothing is pending."""
        with self._lock:
            entries = list(itertools.islice(self._pending.items(), self.chunk))
            if not entries:
                return None
            for index, _ in entries:
                del self._pending[index]
            return self._gather(entries)

    def _give_back(self, i, columns):
        """Return unsent rows to the buffer, unless a newer row for the index arrived meanwhile."""
        with self._lock:
            self._add(i.tolist(), columns, replace=False)

    def _run(self):
        delay = 0.05
        while not self._stop.is_set():
            if self.linger > 0 and 0 < self.pending() < self.chunk:
                self._stop.wait(self.linger)        # let more rows join this chunk
            taken = self._take()
            if taken is None:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            i, columns = taken
            try:
                self._send(i, *columns)
                self.counts["sent"] += len(i)
                delay = 0.05
            except PeerError as e:
                if e.refused and e.status != 401:   # the rows themselves are bad: never resend
                    self.counts["refused"] += len(i)
                    log.error("%s: peer refused %d rows, dropped them (%s)", self.name,
                              len(i), e)
                    continue
                self._give_back(i, columns)
                self.counts["failed_requests"] += 1
                if time.monotonic() - self._last_log >= self.log_every:
                    log.warning("%s: could not send %d rows, will retry (%s)",
                                self.name, len(i), e)
                    self._last_log = time.monotonic()
                self._stop.wait(delay)
                delay = min(self.max_backoff, delay * 2)

    def close(self, flush_timeout=5.0):
        """Stop the thread, then send what is pending for at most flush_timeout seconds."""
        self._stop.set()
        self._wake.set()
        self._thread.join()
        deadline = time.monotonic() + flush_timeout
        while time.monotonic() < deadline:
            taken = self._take()
            if taken is None:
                break
            i, columns = taken
            try:
                self._send(i, *columns)
                self.counts["sent"] += len(i)
            except PeerError as e:
                self._give_back(i, columns)
                log.warning("%s: flush at shutdown failed (%s)", self.name, e)
                break
        self.counts["unsent"] = self.pending()
        if self.counts["unsent"]:
            log.warning("%s: %d rows could not be sent before shutdown", self.name,
                        self.counts["unsent"])
        return dict(self.counts)


# --- Serving ----------------------------------------------------------------------------------

def require_token(app, token):
    """Answer 401 to any request without "Authorization: Bearer <token>" (no-op if no token).

    The comparison takes the same time however much of the header matches (hmac.compare_digest).
    """
    if not token:
        return
    import hmac
    from flask import abort, request
    expected = f"Bearer {token}".encode()

    @app.before_request
    def _check_token():
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            abort(401, "this server requires the shared token: send "
                       "\"Authorization: Bearer <token>\"")


def token_argument(p):
    """--token, defaulting to $SYNTHGRAD_TOKEN: every script takes the same shared secret."""
    p.add_argument("--token", default=os.environ.get("SYNTHGRAD_TOKEN") or None,
                   help="shared secret every request must carry (Authorization: Bearer ...); "
                        "default: the SYNTHGRAD_TOKEN environment variable, else none (fine on "
                        "127.0.0.1; set one before binding to another address)")


def printable(args):
    """The parsed options as a dict for the start-up line, with the token masked."""
    shown = vars(args).copy()
    if shown.get("token"):
        shown["token"] = "***"
    return shown


def install_json_errors(app, counts, max_body_bytes=MAX_BODY_BYTES):
    """Make a Flask app answer every error as {"error": ...} JSON and cap the body size.

    counts (a collections.Counter owned by the server) gets requests_served and
    requests_refused (any 4xx or 5xx answer) incremented.
    """
    from werkzeug.exceptions import HTTPException

    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    @app.after_request
    def _count(response):
        counts["requests_refused" if response.status_code >= 400 else "requests_served"] += 1
        return response

    @app.errorhandler(HTTPException)
    def _http_error(e):
        response = e.get_response()                     # keeps headers such as Allow on 405
        response.set_data(json.dumps({"error": f"{e.name}: {e.description}"}))
        response.content_type = "application/json"
        return response

    @app.errorhandler(ProtocolError)
    def _protocol_error(e):
        return {"error": str(e)}, 400


def read_body():
    """The current Flask request's body: JSON, or the binary form if its Content-Type says so.

    ProtocolError (a 400) says why a body cannot be read.
    """
    from flask import request
    data = request.get_data(cache=False)
    if request.mimetype == BINARY_TYPE:
        return parse_binary(data)
    return parse_json(data)


def run_server(args, create_app, state_key, script, stage, name):
    """A server script's main after parse_args: make the app, start its training thread and
    metrics lines, serve until Ctrl-C or SIGTERM, then stop training (checkpointing) and print
    the final status.

    state_key: where create_app put the server's state object (app.config[state_key]), which
    has start_training, stop_training, status, metrics and a stop event. script names the
    process in logs, stage in its metrics lines; name is what the "listening on" line says.
    """
    import snapshots                              # imports sgd; only the servers need it
    setup_logging(script.removesuffix(".py"))
    print(f"{script}:", printable(args), flush=True)
    config = {k: v for k, v in vars(args).items() if k not in SERVER_ONLY}
    try:
        app = create_app(config)
    except ValueError as e:                       # a checkpoint that cannot be resumed from
        raise SystemExit(f"{script}: {e}") from None
    state = app.config[state_key]
    state.start_training()
    snapshots.MetricsLog(args.metrics, stage).every(args.metrics_interval, state.metrics,
                                                    state.stop)

    def on_stop():
        state.stop_training()
        print(f"{script}: final status", state.status(), flush=True)

    serve(app, args.host, args.port, name, on_stop=on_stop)
    return 0


def serve(app, host, port, name, on_stop=None, threads=4):
    """Serve a Flask app with waitress until Ctrl-C or SIGTERM, then call on_stop.

    waitress is a production WSGI server: a fixed pool of `threads` worker threads and HTTP/1.1
    keep-alive, so a client's requests reuse one connection (Flask's development server closes
    the connection after every request, which costs ~1 ms a request here). Prints
    "<name> listening on http://HOST:PORT" once the socket is bound (port 0 picks a free one;
    the printed line is how a launcher or a test learns it).
    """
    from waitress.server import create_server

    server = create_server(app, host=host, port=port, threads=threads,
                           max_request_body_size=app.config.get("MAX_CONTENT_LENGTH",
                                                                MAX_BODY_BYTES),
                           ident=name.replace(" ", "-"))
    print(f"{name} listening on http://{host}:{server.effective_port}", flush=True)

    def _terminate(signum, frame):
        raise KeyboardInterrupt

    # Both, explicitly: a process started in the background by a shell inherits SIGINT ignored.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    try:
        server.run()
    except KeyboardInterrupt:
        log.info("%s: stopping", name)
    finally:
        server.close()
        if on_stop is not None:
            on_stop()


def common_status(role, state, examples_held):
    """The /status fields both servers share (see the module docstring), from a server's state:
    its counts, started, last_train_mse, staleness and diverged."""
    return {
        "role": role,
        "uptime_s": round(time.time() - state.started, 3),
        "examples_held": examples_held,
        "training_passes": state.counts["passes"],
        "last_train_mse": state.last_train_mse,
        "staleness_s": state.staleness,
        "diverged": state.diverged,
        "peak_rss_mb": peak_rss_mb(),
        "requests_served": state.counts["requests_served"],
        "requests_refused": state.counts["requests_refused"],
    }


def peak_rss_mb():
    """This process's peak resident memory so far, in MB."""
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KB on Linux


# On 2 cores the three processes' training loops would otherwise keep every core busy, and each
# synthetic-gradient request would wait for the scheduler: measured in the full system with
# bench.py's settings, the oracle's p50 went from 1.0 to 0.7 ms and the input trainer from
# 6,200 to 9,300 examples/s with the training threads at nice 10.
DEFAULT_TRAINING_NICE = 10


def lower_thread_priority(nice):
    """Make the calling thread `nice` steps nicer than it is (at most 19); True if done.

    Linux schedules threads on their own, so this leaves the process's other threads (the ones
    that answer requests) where they are. Elsewhere, or if the system refuses, it does nothing.
    """
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
        return True
    except OSError as e:
        log.warning("could not lower the training thread's priority (%s); training at the "
                    "same priority as requests", e)
        return False


def add_server_arguments(p, default_port, what):
    """The options both servers share: where to listen and where to write metrics lines."""
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to bind (default 127.0.0.1: only this machine can connect)")
    p.add_argument("--port", type=int, default=default_port,
                   help=f"port to listen on (default {default_port}, the original's; 0 picks a "
                        "free one)")
    token_argument(p)
    p.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES,
                   help=f"refuse request bodies larger than this with a 413 (default "
                        f"{MAX_BODY_BYTES:,}: twice the largest legitimate request, "
                        f"{MAX_EXAMPLES_PER_REQUEST:,} examples in JSON)")
    p.add_argument("--nice", type=int, default=DEFAULT_TRAINING_NICE,
                   help=f"run the training thread this many steps nicer (lower CPU priority) "
                        f"than the threads that answer requests, so that a request gets a core at "
                        f"once and training takes the rest (default {DEFAULT_TRAINING_NICE}; 0: "
                        f"the same priority; Linux only, ignored elsewhere)")
    p.add_argument("--metrics", default=None,
                   help=f"append a JSON line of figures ({what}) to this file every "
                        "--metrics-interval seconds (default: none)")
    p.add_argument("--metrics-interval", type=float, default=2.0,
                   help="seconds between metrics lines (default 2: smooth curves, tiny files)")


def check_server_arguments(p, args):
    """Refuse impossible values of the shared options and of --learning-rate."""
    if not 0 <= args.port <= 65535:
        p.error("--port must be between 0 and 65535")
    if not (math.isfinite(args.learning_rate) and args.learning_rate > 0):
        p.error("--learning-rate must be positive and finite")
    if not args.metrics_interval > 0:
        p.error("--metrics-interval must be positive")
    if args.max_body_bytes < 1024:
        p.error("--max-body-bytes must be at least 1024")
    if not 0 <= args.nice <= 19:
        p.error("--nice must be between 0 and 19")


SERVER_ONLY = ("host", "port", "metrics", "metrics_interval")   # not part of a server's state


def setup_logging(name):
    """Log lines as "HH:MM:SS name LEVEL message"; one line per request would drown them."""
    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s {name} %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("waitress").setLevel(logging.WARNING)


def main(argv=None):
    import argparse
    argparse.ArgumentParser(description="Print the protocol description (this module is "
                                        "imported by the servers and trainers).").parse_args(argv)
    print(__doc__)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
