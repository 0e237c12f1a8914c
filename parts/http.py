"""HTTP for every server: waitress (listen, serve), refusals as JSON, the shared token, reading
a request's body and answering GET /weights. The wire format itself is synthgrad.py's.
"""

import hmac
import json
import logging
import signal
import threading

from flask import Response, abort, request
from waitress.channel import HTTPChannel
from waitress.server import create_server
from waitress.task import ErrorTask
from werkzeug.exceptions import HTTPException

from parts import threaded
from synthgrad import BINARY_TYPE, ProtocolError, encode_weights, parse_binary, parse_json

log = logging.getLogger("synthgrad")


def listen(host, port, script, max_body_bytes):
    """Take host:port with a waitress server whose app is handed over later; returns the server
    and hand_over(app). SystemExit with one line naming --port if the port cannot be taken."""
    apps = []

    def wsgi(environ, start_response):
        return apps[0](environ, start_response)

    try:
        server = create_server(wsgi, host=host, port=port, threads=4,
                               max_request_body_size=max_body_bytes,
                               ident=script.removesuffix(".py"))
    except OSError as e:
        raise SystemExit(f"{script}: cannot listen on {host}:{port}: {e.strerror or e}. Is "
                         f"another server using it? Pick another with --port (0: any free "
                         f"port)") from None
    server.channel_class = JsonErrorChannel
    return server, apps.append


def url_of(server):
    """http://HOST:PORT where a listen() server is (an IPv6 host in brackets, as a URL has it)."""
    host = server.effective_host
    return f"http://{f'[{host}]' if ':' in host else host}:{server.effective_port}"


class JsonErrorTask(ErrorTask):
    """waitress's own refusals (413, 400) as {"error": ...} JSON, as every other refusal."""

    def execute(self):
        e = self.request.error
        body = json.dumps({"error": f"{e.reason}: {e.body}"}).encode()
        self.status = f"{e.code} {e.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class JsonErrorChannel(HTTPChannel):
    error_task_class = JsonErrorTask


def serve(server, name, on_stop=None, stop=None):
    """Run a server listen() made until Ctrl-C, SIGTERM or SIGHUP (or the Event `stop`), then
    call on_stop. Logs "<name> listening on http://HOST:PORT" (url_of) first: how a launcher
    learns it."""
    def _terminate(signum, frame):
        raise KeyboardInterrupt

    release = threaded.end_when_set(server, stop) if stop is not None else lambda: None
    signals = threaded.stop_signals()             # SIGINT too when it comes ignored (started in
    before = [signal.signal(s, _terminate) for s in signals   # the background)
              ] if threading.current_thread() is threading.main_thread() else []
    try:
        log.info("%s listening on %s", name, url_of(server))
        server.run()                      # returns on Ctrl-C or SIGTERM (waitress catches it)
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping")
        server.close()
        release()
        if on_stop is not None:
            with threaded.signals_ignored():      # a second Ctrl-C would lose the final save
                on_stop()
        for s, handler in zip(signals, before, strict=False):   # none set off the main thread
            signal.signal(s, handler)


def install_json_errors(app, counts, max_body_bytes):
    """Make a Flask app answer every error as {"error": ...} JSON, cap the body size and count
    requests_served and requests_refused (4xx, 5xx) in counts."""
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
    """The current request's body, JSON or binary by its Content-Type; ProtocolError if bad."""
    data = request.get_data(cache=False)
    return parse_binary(data) if request.mimetype == BINARY_TYPE else parse_json(data)


def int_argument(name):
    """The request's ?name=N as an int (None if absent); a 400 if it is not one."""
    value = request.args.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        abort(400, f"?{name}= must be an integer, got {value[:40]!r}")


def weights_answer(weights, conditioned, version):
    """GET /weights's answer: binary if the request's Accept header names it, else JSON."""
    if any(kind == BINARY_TYPE and q > 0 for kind, q in request.accept_mimetypes):
        return Response(encode_weights(weights, conditioned, version, binary=True),
                        content_type=BINARY_TYPE)
    return encode_weights(weights, conditioned, version)


def require_token(app, token):
    """Answer 401 to a request without "Authorization: Bearer <token>" (compared in constant
    time); no token: nothing to check."""
    if not token:
        return
    expected = f"Bearer {token}".encode()

    @app.before_request
    def _check_token():
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            abort(401, "this server requires the shared token: send "
                       "\"Authorization: Bearer <token>\"")
