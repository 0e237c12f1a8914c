"""The wire protocol between the three processes, and its clients. Importing it runs nothing;
`python synthgrad.py` prints this description.

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
| output trainer, with --colocated | GET /weights        | none                                          | the same: the model of the boundary below it, learned there |
| both                            | GET /status          | none                                          | what the server holds and has done (below) |

GET /weights gives the oracle's newest weights, for the *local* mode in which the input trainer
computes synthetic gradients itself (as in the paper, where the synthetic-gradient model sits
beside the layer it serves) and only true gradients travel: "weights" is [w1 (n_in, hidden),
b1 (hidden,), w2 (hidden, 24), b2 (24,)], or [w (n_in, 24), b (24,)] for a linear model, where
n_in is 24, or 25 when "conditioned" (the input is then h and y side by side);
parts/boundary.py's model_forward(weights, inputs) is the model. "version" counts the oracle's training steps.
An output trainer (or a chain's middle stage) started with --colocated learns that model
itself, beside its layers, from the true gradients it computes (boundary.py), and answers GET
/weights the same way, so the stage below fetches it from there and no oracle is needed.

GET /status answers what the server holds and has done: "role", "uptime_s", "examples_held",
"training_passes", "last_train_mse", "staleness_s", "diverged", "peak_rss_mb", the request
counts, and each server's own figures (the oracle's synthetic-gradient quality, the output
trainer's sender counts). parts/server.py's TrainingServer.status and the servers' status_fields say what
each field means.

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
binary form too, as GET /weights a request that sends "Accept: application/x-synthgrad-arrays";
every other answer, and every error, is JSON. It is ~150x cheaper than JSON numbers (0.2 against
31 microseconds an example; 256-wide weights ~0.1 ms against ~47) and is opt-in (`--wire binary`
on the trainers); JSON stays the default and the reference. Every check applies to both.

A shared secret: a server started with --token (or the SYNTHGRAD_TOKEN environment variable)
answers 401 to every request that does not carry "Authorization: Bearer <token>"; our clients
send it when given the same token.

Errors: a refused request gets a 4xx status and {"error": "what was wrong"}; the server's state is
unchanged by it. 400 bad body, 401 no or wrong token, 404 unknown path, 405 wrong method,
413 body too large. Clients: OracleClient and OutputTrainerClient, at the end, on requests.
"""

import http.client
import json
import logging
import math
import threading
import time
import urllib.parse

import numpy as np
import requests

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
    means the request itself was refused (resending it cannot help); anything else may pass."""

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
    """The float64 array described by obj, checked against shape (None: any size there):
    ProtocolError naming `what` if obj is not an array object, its values are not finite
    numbers, their count does not match its shape, or its shape is not the expected one."""
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
    with arrays stacked to (n, *shape)."""
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


def encode_batched(arrays):
    """The JSON form of a batched body {name: array}: the index list "i" as integers, every
    other field an array object. (encode_binary is the binary form of the same fields.)"""
    return {name: [int(k) for k in a] if name == "i" else encode_array(a)
            for name, a in arrays.items()}


def encode_training_examples(i, x, y):
    """Batched /training_example body: i (n,), x = h (n, 24), y (n,)."""
    return encode_batched({"i": i, "x": x, "y": y})


def decode_training_examples(body, max_index, width=HIDDEN_SIZE):
    """(i (n,), x (n, width), y (n,)) from a /training_example body of either form."""
    return _decode_examples(body, ("x", "y"), ((width,), ()), width, max_index)


def encode_gradients(i, h, gradient, y=None):
    """Batched /provide_gradient body: i (n,), h (n, 24), gradient = dL/dh (n, 24), and the
    targets y (n,) if given (a target-conditioned oracle needs them)."""
    return encode_batched({"i": i, "h": h, "gradient": gradient, **_optional_y(y)})


def decode_gradients(body, max_index, width=HIDDEN_SIZE, need_y=False):
    """(i (n,), h (n, width), gradient (n, width)) from a /provide_gradient body of either form;
    with need_y, also y (n,), which must then be present."""
    fields, shapes = ("h", "gradient", "y")[:2 + need_y], ((width,), (width,), ())[:2 + need_y]
    try:
        return _decode_examples(body, fields, shapes, width, max_index)
    except ProtocolError as e:
        if need_y and "missing y" in str(e):
            raise ProtocolError(f"{e}: this oracle is conditioned on the target (cDNI) and "
                                "needs y with every example") from None
        raise


def encode_estimate_request(h, y=None):
    """/estimate_gradients body for activations h (n, 24), with targets y (n,) if given."""
    return encode_batched({"activations": h, **_optional_y(y)})


def _optional_y(y):
    return {} if y is None else {"y": y}


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


def encode_weights(weights, conditioned, version, binary=False):
    """The GET /weights answer for a model's weights [w1, b1, w2, b2] (or [w, b]): JSON, or
    with binary the bytes of the binary form (weights0.., conditioned (1,), version (1,))."""
    if binary:
        return encode_binary({**{f"weights{k}": w for k, w in enumerate(weights)},
                              "conditioned": np.int64([conditioned]),
                              "version": np.int64([version])})
    return {"weights": [encode_array(w) for w in weights], "conditioned": bool(conditioned),
            "version": int(version)}


def decode_weights(body, width=HIDDEN_SIZE):
    """(weights, conditioned, version) from a GET /weights answer, either form, checked."""
    if isinstance(body, dict) and "weights0" in body:            # the binary form
        body = {"weights": [body[f"weights{k}"] for k in range(4) if f"weights{k}" in body],
                **{k: body[k][0] for k in ("conditioned", "version") if len(body.get(k, ())) == 1}}
    if not isinstance(body, dict) or not isinstance(body.get("weights"), list):
        raise ProtocolError('expected {"weights": [array, ...], ...}')
    weights = [decode_array(w, what=f"weights[{k}]") for k, w in enumerate(body["weights"])]
    shapes = [w.shape for w in weights]
    ok = (len(weights) in (2, 4) and all(len(s) == 2 for s in shapes[0::2])
          and all(len(s) == 1 for s in shapes[1::2])
          and all(shapes[k][1] == shapes[k + 1][0] for k in range(0, len(weights), 2))
          and all(shapes[k + 2][0] == shapes[k + 1][0] for k in range(0, len(weights) - 2, 2))
          and shapes[-1] == (width,))
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
    the header's order: what the batched JSON form carries ("i" as an int64 array), without
    printing and parsing ~25 characters per number."""
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

# requests, made fast (each cut found by profiling; the numbers are in README, "Speed"): no
# environment look-ups (trust_env = False), a request prepared once per (method, path,
# Content-Type) and copied, and adapter.send with the pool found once (_PeerAdapter).


class _PeerAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter for one peer reached directly: its pool looked up once, the request line
    the URL's path (both are requests' hooks for subclasses)."""

    _pool = None

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        if self._pool is None:
            self._pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
        return self._pool

    def request_url(self, request, proxies):
        return request.path_url

    def close(self):
        super().close()
        self._pool = None


def _causes(e):
    """e and the exceptions behind it: requests wraps urllib3's, which wraps the socket's."""
    while e is not None:
        yield e
        e = e.__cause__ or e.__context__


_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)  # resend once


class Client:
    """One peer at base_url, over requests: a Session per thread (the Sender's thread, the main
    loop and the local mode's refresh thread share a client), its connection kept alive, a
    timeout on every call. A request that finds its kept-alive connection closed by the peer is
    sent once more; every failure is a PeerError naming the peer, the URL and the reason."""

    name, default_url = "peer", None

    def __init__(self, base_url=None, timeout=10.0, binary=False, token=None):
        base_url = base_url or self.default_url
        parts = urllib.parse.urlsplit(base_url)
        self.binary = binary                  # bulk POSTs in the binary form, not JSON
        try:
            ok = parts.scheme == "http" and parts.hostname and parts.port != 0
        except ValueError:                    # a port that is not a number, or too large
            ok = False
        if not ok:
            raise ValueError(f"{self.name} URL must look like http://HOST:PORT, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout, self.token = timeout, token
        self._local = threading.local()
        self._sessions = []                   # every thread's, for close()
        self._lock = threading.Lock()

    def _session(self):
        """This thread's Session, made on its first call."""
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            self._local.adapter = _PeerAdapter(pool_connections=1, pool_maxsize=1,
                                               max_retries=0)
            session.mount("http://", self._local.adapter)
            if self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
            self._local.session, self._local.templates = session, {}
            with self._lock:
                self._sessions.append(session)
        return session

    def _send(self, method, path, body, content_type="application/json", accept=None):
        """One HTTP exchange: (status, body bytes, Content-Type of the answer)."""
        session = self._session()
        key = (method, path, content_type if body is not None else None, accept)
        template = self._local.templates.get(key)
        if template is None:                  # the URL and the session's headers, once
            headers = {"Content-Type": key[2]} if key[2] else {}
            headers.update({"Accept": accept} if accept else {})
            template = session.prepare_request(
                requests.Request(method, self.base_url + path, headers=headers))
            self._local.templates[key] = template
        request = template.copy()
        if body is not None:
            request.body = body
            request.headers["Content-Length"] = str(len(body))
        r = self._local.adapter.send(request, timeout=self.timeout)
        return r.status_code, r.content, r.headers.get("Content-Type", "")

    def _request(self, method, path, arrays=None, accept=None):
        """Send a batched body {name: array} (if any) in the client's form, binary or JSON;
        return the JSON answer (or the arrays of a binary answer, which `accept` may ask for)."""
        url = self.base_url + path
        if arrays is None:
            body, kind = None, "application/json"
        elif self.binary:
            body, kind = encode_binary(arrays), BINARY_TYPE
        else:
            body, kind = json.dumps(encode_batched(arrays)).encode(), "application/json"
        try:
            try:
                status, data, answer_kind = self._send(method, path, body, kind, accept)
            except requests.ConnectionError as e:
                if not any(isinstance(c, _STALE) for c in _causes(e)):
                    raise
                status, data, answer_kind = self._send(method, path, body, kind, accept)
        except requests.RequestException as e:
            root = list(_causes(e))[-1]       # e.g. ConnectionRefusedError, TimeoutError
            raise PeerError(f"{self.name} at {url}: {type(root).__name__}: {root}") from e
        if status == 200 and answer_kind == BINARY_TYPE:
            try:
                return parse_binary(data)
            except ProtocolError as e:
                raise PeerError(f"{self.name} at {url} sent a bad binary answer: {e}") from e
        try:
            answer = json.loads(data)
        except ValueError:
            answer = None
        if status != 200:                     # raise_for_status, stricter: we follow no redirects
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
        """Block until GET /status answers, retrying with back-off and logging now and then;
        True once it answered, False if `stop` (a threading.Event) was set first."""
        delay, last_log, stop = 0.05, -math.inf, stop or threading.Event()
        while not stop.is_set():
            try:
                self.status()
                return True
            except PeerError as e:
                if time.monotonic() - last_log >= log_every:
                    log.info("waiting for %s at %s ... (%s)", self.name, self.base_url, e)
                    last_log = time.monotonic()
            stop.wait(delay)
            delay = min(max_backoff, delay * 2)
        return False

    def close(self):
        """Close every thread's connection (a later call opens a new one)."""
        with self._lock:
            for session in self._sessions:
                session.close()


class OutputTrainerClient(Client):
    name, default_url = "output trainer", DEFAULT_OUTPUT_TRAINER_URL

    def send_examples(self, i, x, y):
        """POST /training_example: activations x = h (n, 24) and targets y (n,) for examples i."""
        return self._request("POST", TRAINING_EXAMPLE, {"i": i, "x": x, "y": y})


class OracleClient(Client):
    name, default_url = "oracle", DEFAULT_ORACLE_URL

    def estimate_gradients(self, h, y=None):
        """POST /estimate_gradients: synthetic dL/dh (n, 24) for activations h (n, 24), with
        their targets y (n,) if given (only a target-conditioned oracle uses them)."""
        body = self._request("POST", ESTIMATE_GRADIENTS, {"activations": h, **_optional_y(y)})
        try:
            return decode_estimate_response(body, len(h), h.shape[1])
        except ProtocolError as e:
            raise PeerError(f"oracle at {self.base_url} sent a bad answer: {e}") from e

    def weights(self, width=HIDDEN_SIZE):
        """GET /weights: (weights, conditioned, version) of the oracle's newest model (in the
        binary form if this client's is)."""
        body = self._request("GET", WEIGHTS, accept=BINARY_TYPE if self.binary else None)
        try:
            return decode_weights(body, width)
        except ProtocolError as e:
            raise PeerError(f"oracle at {self.base_url} sent bad weights: {e}") from e

    def provide_gradients(self, i, h, gradient, y=None):
        """POST /provide_gradient: true dL/dh (n, 24) at activations h (n, 24) for examples i,
        with their targets y (n,) if given."""
        return self._request("POST", PROVIDE_GRADIENT,
                             {"i": i, "h": h, "gradient": gradient, **_optional_y(y)})


def main(argv=None):
    import argparse
    argparse.ArgumentParser(description="Print the protocol description (the servers and "
                                        "trainers import this module).").parse_args(argv)
    print(__doc__)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
