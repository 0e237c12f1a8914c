"""The wire protocol between the processes, and its clients. `python synthgrad.py` prints this.

The toy network 2 -> 24 -> 12 -> 1 is cut after layer 1: h, layer 1's activation, (24,) per
example (a chain's: `width`), crosses the wire. A *gradient* on the wire is dL/dh, shaped as h, for
one example's loss L: true from backprop through the layers above, synthetic from the oracle's
model. Each trainer steps on dL/dw averaged over the minibatch: Adam by default, or w -= eta dL/dw
(--optimizer sgd, the original's). An *array* is {"shape": [...], "values": [...]}, finite float64,
row-major, written below as its shape; i names an example (its row in x.npy), y is its target.

    POST /training_example    (the output trainer, 127.0.0.1:5000)
        {"i": [n ints], "x": (n, 24), "y": (n,)}  ->  {"ok": true, "received": n}
        (a chain counting steps: "step": [n ints], each row's minibatch, from 1)
    POST /estimate_gradients  (the oracle, 127.0.0.1:5001)
        {"activations": (n, 24), "y": (n,)}  ->  {"gradients": (n, 24)}
    POST /provide_gradient    (the oracle)
        {"i": [n ints], "h": (n, 24), "gradient": (n, 24), "y": (n,)}  ->  as /training_example
    GET /weights              (the oracle, or a stage with --colocated)
        ->  {"weights": [array, ...], "conditioned": bool, "version": int}
        ?after=V (counting steps): once "version", its last step, is past V (or 2 s later)
    GET /status               (every server)
        ->  {"role", "uptime_s", "examples_held", "staleness_s", ...} (TrainingServer.status)

A conditioned oracle (cDNI, oracle.py's default) refuses a request without y (400). The POSTs also
take the original's list forms, one object per example ({"i": int, "x": (24,), "y": ()}); servers
refuse more than MAX_EXAMPLES_PER_REQUEST. GET /weights serves the *local* mode (the paper's): the
input trainer applies parts/boundary.py's model itself, [w1 (n_in, hidden), b1, w2 (hidden, 24),
b2] or [w (n_in, 24), b], n_in 25 when "conditioned" (h and y side by side).

The binary form (application/x-synthgrad-arrays, encode_binary; docs/speed.md) holds raw arrays,
checked alike. With --token a server answers 401 without "Authorization: Bearer <token>". A refused
request changes nothing: {"error": "what was wrong"}, 400 body, 401 token, 404, 405, 413 too large.
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

DEFAULT_HOST = "127.0.0.1"
DEFAULT_OUTPUT_TRAINER_PORT = 5000
DEFAULT_ORACLE_PORT = 5001
DEFAULT_OUTPUT_TRAINER_URL = f"http://{DEFAULT_HOST}:{DEFAULT_OUTPUT_TRAINER_PORT}"
DEFAULT_ORACLE_URL = f"http://{DEFAULT_HOST}:{DEFAULT_ORACLE_PORT}"

TRAINING_EXAMPLE = "/training_example"
ESTIMATE_GRADIENTS = "/estimate_gradients"
PROVIDE_GRADIENT = "/provide_gradient"
STATUS = "/status"
WEIGHTS = "/weights"

HIDDEN_SIZE = 24                  # width of h, the activation that crosses the wire
MAX_CHUNK = 500                   # examples our senders put in one request (the original's)
MAX_EXAMPLES_PER_REQUEST = 5_000  # servers refuse more than this in one request
MAX_BODY_BYTES = 16 * 1024 * 1024  # twice the largest body: 5,000 x 49 numbers x ~25 bytes
NEEDS_Y = "this oracle is conditioned on the target (cDNI) and needs"

log = logging.getLogger("synthgrad")


class ProtocolError(ValueError):
    """A request body that does not follow the protocol; the message says what was wrong."""


class PeerError(RuntimeError):
    """A peer could not be reached (status None) or answered with an error status."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status                  # refused: a 4xx, resending it cannot help
        self.refused = status is not None and 400 <= status < 500 and status != 408


def encode_array(a):
    """{"shape": [...], "values": [...]} for a numpy array (or anything np.asarray takes)."""
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "values": a.ravel().tolist()}


def decode_array(obj, shape=None, what="array"):
    """The float64 array obj describes, checked against shape (None: any); else ProtocolError."""
    def bad(message):
        return ProtocolError(f"{what}: {message}")
    if isinstance(obj, np.ndarray):                     # from the binary form: already numbers
        return _check_array(obj.astype(np.float64, copy=False), shape, what)
    if not isinstance(obj, dict) or "shape" not in obj or "values" not in obj:
        raise bad('expected an array object {"shape": [...], "values": [...]}')
    dims, values = obj["shape"], obj["values"]
    if not isinstance(dims, list) or not all(type(d) is int and d >= 0 for d in dims):
        raise bad(f"shape must be a list of non-negative integers, got {dims!r:.80}")
    if not isinstance(values, list):
        raise bad("values must be a list of numbers")
    if len(values) != math.prod(dims):
        raise bad(f"shape {dims} needs {math.prod(dims)} values, got {len(values)}")
    if not set(map(type, values)) <= {float, int}:      # no strings, bools, None, lists
        raise bad("values must be a flat list of numbers")
    try:
        arr = np.array(values, dtype=np.float64).reshape(dims)
    except OverflowError:
        raise bad("a value is too large for float64") from None
    except ValueError as e:                             # e.g. more dimensions than numpy allows
        raise bad(f"no array of shape {dims!r:.80}: {e}") from None
    return _check_array(arr, shape, what)


def _check_array(arr, shape, what):
    """arr if its values are finite and its shape is `shape`, else ProtocolError."""
    if not np.isfinite(arr).all():
        raise ProtocolError(f"{what}: values must be finite (no NaN or infinity)")
    if shape is not None and (len(shape) != arr.ndim or any(
            want not in (None, got) for want, got in zip(shape, arr.shape, strict=True))):
        want = ", ".join("n" if d is None else str(d) for d in shape)
        raise ProtocolError(f"{what}: expected shape ({want}), got {arr.shape}")
    return arr


def _ints(obj, name):
    if isinstance(obj, np.ndarray) and obj.dtype == np.int64 and obj.ndim == 1:
        obj = obj.tolist()                              # the binary form's int64 array
    if not isinstance(obj, list) or not all(type(v) is int for v in obj):
        raise ProtocolError(f"{name}: expected a list of integers")
    return obj


def _decode_indices(obj, n, max_index):
    if len(obj := _ints(obj, "i")) != n:
        raise ProtocolError(f"i: {len(obj)} indices for {n} examples")
    bad = [v for v in obj if not 0 <= v < max_index]
    if bad:
        raise ProtocolError(f"i: index {bad[0]} is outside [0, {max_index}), the indices this "
                            "server was configured for (--max-examples)")
    i = np.array(obj, dtype=np.int64)
    if len(np.unique(i)) != n:
        raise ProtocolError("i: an index appears twice in one request")
    return i


def _check_count(n):
    if n == 0:
        raise ProtocolError("the request holds no examples")
    if n > MAX_EXAMPLES_PER_REQUEST:
        raise ProtocolError(f"{n} examples in one request; at most {MAX_EXAMPLES_PER_REQUEST}")


def _missing(obj, fields, where="", hint=""):
    if not isinstance(obj, dict):
        raise ProtocolError(f"{where}expected an object with keys {', '.join(fields)}")
    missing = [f for f in fields if f not in obj]
    if missing:
        raise ProtocolError(f"{where}missing {', '.join(missing)}{hint}")


def _decode_examples(body, fields, shapes, max_index, hint=""):
    """(i (n,), *arrays (n, *shape)) from either form; shapes: one example's, per field."""
    if isinstance(body, list):                           # the original per-example form
        _check_count(len(body))
        i, columns = [], [[] for _ in fields]
        for k, item in enumerate(body):
            _missing(item, ("i",) + fields, f"example {k}: ", hint)
            i.append(item["i"])
            for col, field, shape in zip(columns, fields, shapes, strict=True):
                col.append(decode_array(item[field], shape, what=f"example {k} {field}"))
        return (_decode_indices(i, len(body), max_index), *(np.stack(c) for c in columns))
    if isinstance(body, dict):                           # the batched form
        _missing(body, ("i",) + fields, hint=hint)
        n = len(_ints(body["i"], "i"))
        _check_count(n)
        arrays = [decode_array(body[f], (n,) + s, what=f)
                  for f, s in zip(fields, shapes, strict=True)]
        return (_decode_indices(body["i"], n, max_index), *arrays)
    raise ProtocolError(f"expected a list of examples or a batched object: i, {', '.join(fields)}")


def encode_batched(arrays):
    """The JSON form of {name: array or None (left out)}: "i" and "step" lists of integers."""
    return {name: [int(k) for k in a] if name in ("i", "step") else encode_array(a)
            for name, a in arrays.items() if a is not None}


def encode_training_examples(i, x, y):
    """Batched /training_example body: i (n,), x = h (n, 24), y (n,)."""
    return encode_batched({"i": i, "x": x, "y": y})


def decode_training_examples(body, max_index, width=HIDDEN_SIZE, steps=False):
    """(i (n,), x (n, width), y (n,)[, with steps its "step" (n,) or None]) from either form."""
    i, x, y = _decode_examples(body, ("x", "y"), ((width,), ()), max_index)
    step = body.get("step") if steps and isinstance(body, dict) else None
    if step is not None and (len(step := _ints(step, "step")) != len(i) or min(step) < 1):
        raise ProtocolError(f"step: expected {len(i)} integers of at least 1, one per example")
    return (i, x, y, None if step is None else np.array(step)) if steps else (i, x, y)


def encode_gradients(i, h, gradient, y=None):
    """Batched /provide_gradient body: i (n,), h (n, 24), dL/dh (n, 24), y (n,) if given."""
    return encode_batched({"i": i, "h": h, "gradient": gradient, "y": y})


def decode_gradients(body, max_index, width=HIDDEN_SIZE, need_y=False):
    """(i (n,), h (n, width), gradient (n, width)[, y (n,) with need_y]) from either form."""
    fields, shapes = ("h", "gradient", "y")[:2 + need_y], ((width,), (width,), ())[:2 + need_y]
    return _decode_examples(body, fields, shapes, max_index,
                            f": {NEEDS_Y} y with every example" if need_y else "")


def encode_estimate_request(h, y=None):
    """/estimate_gradients body for activations h (n, 24), with targets y (n,) if given."""
    return encode_batched({"activations": h, "y": y})


def decode_estimate_request(body, width=HIDDEN_SIZE, need_y=False):
    """Activations h (n, width) from either form; with need_y, (h, y (n,))."""
    _missing(body, ["activations"])
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
    _missing(body, ["y"], hint=f": {NEEDS_Y} the targets y (n,) of the activations")
    return h, decode_array(body["y"], (len(h),), what="y")


def decode_estimate_response(body, n, width=HIDDEN_SIZE):
    """The (n, width) synthetic gradients from an /estimate_gradients response."""
    _missing(body, ["gradients"])
    return decode_array(body["gradients"], (n, width), what="gradients")


def encode_weights(weights, conditioned, version, binary=False):
    """GET /weights's answer for [w1, b1, w2, b2] (or [w, b]): JSON, or binary (weights0, ...)."""
    if binary:
        return encode_binary({**{f"weights{k}": w for k, w in enumerate(weights)},
                              "conditioned": np.int64([conditioned]),
                              "version": np.int64([version])})
    return {"weights": [encode_array(w) for w in weights], "conditioned": bool(conditioned),
            "version": int(version)}


def decode_weights(body, width=HIDDEN_SIZE):
    """(weights, conditioned, version) from a GET /weights answer of either form, checked."""
    if isinstance(body, dict) and "weights0" in body:            # the binary form
        body = {"weights": [body[f"weights{k}"] for k in range(4) if f"weights{k}" in body],
                **{k: body[k][0] for k in ("conditioned", "version") if len(body.get(k, ())) == 1}}
    if not isinstance(body, dict) or not isinstance(body.get("weights"), list):
        raise ProtocolError('expected {"weights": [array, ...], ...}')
    weights = [decode_array(w, what=f"weights[{k}]") for k, w in enumerate(body["weights"])]
    shapes = [w.shape for w in weights]
    ok = (len(weights) in (2, 4) and [len(s) for s in shapes] == [2, 1] * (len(weights) // 2)
          and all(shapes[k][1] == shapes[k + 1][0] for k in range(0, len(weights), 2))
          and all(shapes[k + 2][0] == shapes[k + 1][0] for k in range(0, len(weights) - 2, 2))
          and shapes[-1] == (width,))
    if not ok:
        raise ProtocolError(f"weights: shapes {shapes} are not a model of h of width {width}")
    return weights, bool(body.get("conditioned")), int(body.get("version", 0))


BINARY_TYPE = "application/x-synthgrad-arrays"
_MAGIC = b"SGA1"
_DTYPES = {"float64": np.dtype("<f8"), "int64": np.dtype("<i8")}


def encode_binary(arrays):
    """The binary form of a batched body {name: array}: b"SGA1", a 4-byte big-endian header
    length, a JSON header {name: {"dtype": "float64" or "int64", "shape": [...]}, ...}, then
    each array's values, little-endian, in the header's order ("i" an int64 array)."""
    header, chunks = {}, []
    for name, a in ((name, np.asarray(a)) for name, a in arrays.items() if a is not None):
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
        dtype, count = _DTYPES[spec["dtype"]], math.prod(spec["shape"])
        if offset + count * dtype.itemsize > len(data):
            raise ProtocolError(f"binary body: {name}: the body ends before its values do")
        arrays[name] = np.frombuffer(data, dtype, count, offset).reshape(spec["shape"])
        offset += count * dtype.itemsize
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


# --- Clients, on requests made fast (docs/speed.md): a request prepared once, one pool. -------

class _PeerAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter for one peer reached directly: its pool looked up once, the path sent."""

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
    """One peer at base_url: a requests Session per thread, its connection kept alive (a request
    that finds it closed is sent once more), a timeout on every call, every failure a PeerError."""

    name, default_url = "peer", None

    def __init__(self, base_url=None, timeout=10.0, binary=False, token=None):
        base_url = base_url or self.default_url
        parts = urllib.parse.urlsplit(base_url)
        try:
            ok = parts.scheme == "http" and parts.hostname and parts.port != 0
        except ValueError:                    # a port that is not a number, or too large
            ok = False
        if not ok:
            raise ValueError(f"{self.name} URL must look like http://HOST:PORT, got {base_url!r}")
        self.base_url, self.timeout, self.token = base_url.rstrip("/"), timeout, token
        self.binary = binary                  # bulk POSTs in the binary form, not JSON
        self._local, self._lock = threading.local(), threading.Lock()
        self._sessions = []                   # every thread's, for close()

    def _session(self):                       # this thread's, made on its first call
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            self._local.adapter = _PeerAdapter(pool_connections=1, pool_maxsize=1, max_retries=0)
            session.mount("http://", self._local.adapter)
            if self.token:
                session.headers["Authorization"] = f"Bearer {self.token}"
            self._local.session, self._local.templates = session, {}
            with self._lock:
                self._sessions.append(session)
        return session

    def _send(self, method, path, body, content_type, accept):   # (status, body, its type)
        session = self._session()
        path, mark, query = path.partition("?")        # one template a path, any query
        key = (method, path, content_type if body is not None else None, accept)
        template = self._local.templates.get(key)
        if template is None:                  # the URL and the session's headers, once
            headers = {"Content-Type": key[2]} if key[2] else {}
            headers.update({"Accept": accept} if accept else {})
            template = session.prepare_request(
                requests.Request(method, self.base_url + path, headers=headers))
            self._local.templates[key] = template
        request = template.copy()
        request.url += mark + query
        if body is not None:
            request.body = body
            request.headers["Content-Length"] = str(len(body))
        r = self._local.adapter.send(request, timeout=self.timeout)
        return r.status_code, r.content, r.headers.get("Content-Type", "")

    def _request(self, method, path, arrays=None, accept=None, decode=None):
        """Send {name: array} (if any) in the client's form; the answer, through decode if given."""
        url = self.base_url + path
        body, kind = None, "application/json"
        if arrays is not None and self.binary:
            body, kind = encode_binary(arrays), BINARY_TYPE
        elif arrays is not None:
            body = json.dumps(encode_batched(arrays)).encode()
        for resend in (True, False):
            try:
                status, data, answer_kind = self._send(method, path, body, kind, accept)
                break
            except requests.RequestException as e:
                stale = isinstance(e, requests.ConnectionError) and any(
                    isinstance(c, _STALE) for c in _causes(e))
                if resend and stale:
                    continue                  # the kept-alive connection was closed: once more
                root = list(_causes(e))[-1]   # e.g. ConnectionRefusedError, TimeoutError
                raise PeerError(f"{self.name} at {url}: {type(root).__name__}: {root}") from e
        if status != 200:                     # raise_for_status, stricter: we follow no redirects
            try:
                reason = str(parse_json(data)["error"])
            except (ProtocolError, TypeError, KeyError):
                reason = data.decode("utf-8", "replace")
            raise PeerError(f"{self.name} at {url} answered {status}: {reason[:300]}", status)
        try:
            answer = parse_binary(data) if answer_kind == BINARY_TYPE else parse_json(data)
            return answer if decode is None else decode(answer)
        except (ValueError, TypeError, OverflowError) as e:    # e.g. int() of a version of inf
            raise PeerError(f"{self.name} at {url} sent a bad answer, non-JSON or malformed: "
                            f"{e}") from e

    def status(self):
        """The peer's GET /status as a dict (any other JSON: PeerError, "... is not a mapping")."""
        return self._request("GET", STATUS, decode=lambda answer: {**answer})

    def wait_until_ready(self, stop=None, max_backoff=2.0, log_every=10.0, alive=lambda: True):
        """True once GET /status answers (retried with back-off), False if `stop` is set or
        alive() turns False first (a launcher's: its child died, or it waited long enough)."""
        delay, last_log, stop = 0.05, -math.inf, stop or threading.Event()
        while not stop.is_set() and alive():
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

    def send_examples(self, i, x, y, step=None):
        """POST /training_example: h = x (n, 24), y (n,) of examples i (n,) [and step (n,)]."""
        return self._request("POST", TRAINING_EXAMPLE, {"i": i, "x": x, "y": y, "step": step})


class OracleClient(Client):
    name, default_url = "oracle", DEFAULT_ORACLE_URL

    def estimate_gradients(self, h, y=None):
        """POST /estimate_gradients: synthetic dL/dh (n, 24) at h (n, 24) [and targets y (n,)]."""
        return self._request("POST", ESTIMATE_GRADIENTS, {"activations": h, "y": y},
                             decode=lambda a: decode_estimate_response(a, len(h), h.shape[1]))

    def weights(self, width=HIDDEN_SIZE, after=None):
        """GET /weights: (weights, conditioned, version) of the newest model [after version]."""
        query = "" if after is None else f"?after={int(after)}"
        return self._request("GET", WEIGHTS + query, decode=lambda a: decode_weights(a, width),
                             accept=BINARY_TYPE if self.binary else None)

    def provide_gradients(self, i, h, gradient, y=None):
        """POST /provide_gradient: true dL/dh (n, 24) at h (n, 24) [and y (n,)] of examples i."""
        return self._request("POST", PROVIDE_GRADIENT,
                             {"i": i, "h": h, "gradient": gradient, "y": y})


def main(argv=None):
    print(__doc__)                   # the protocol, whatever the arguments: servers import it
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
