"""Watch a run learn, live: a page on this machine that updates itself while a run trains.

Run it while a run trains (or after: it then says the run has ended), and open the URL it prints:

    python live.py                                   # the newest folder in runs/ and progress/
    python live.py --run-dir runs/20240101-120000    # a demo.py run, or runs/chain-* (chain.py)
    python live.py --run-dir progress/20240101-120000 --oracle-url http://127.0.0.1:5001
    python live.py --help

The page (live.html) polls GET /api/live and fetches a picture only when its content changed.
It reads the run folder, never writes into it; runner/liveview.py decides what it shows, and
docs/live.md says what each panel shows and what watching costs.
"""

import argparse
import collections
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import threading
import time
import urllib.parse
from pathlib import Path

from flask import Response, abort, request

import generate
import synthgrad
from parts import children, classify, http, options, server, snapshots
from runner import chain_eval, liveview

HERE = Path(__file__).resolve().parent
log = logging.getLogger("live")

REFRESH_S = 1.5                    # how often the page asks for news
REDRAW_S = 6.0                     # a picture is redrawn at most this often (docs/live.md)
STATUS_TIMEOUT_S = 0.5             # a server that takes longer is reported as not answering
STATUS_MAX_AGE_S = 1.0             # one GET /status per server per second, however many pages
COSINE_POINTS = 2_000              # held-out points a chain's boundary cosines are measured on
TEST_IMAGES = 2_000                # a classifier chain's test images the page measures on


# --- The page's state: caches of what was measured and drawn, owned by the app. ----------------

class LiveState:
    """What the page knows: where the run is, the held-out MSE of every tick measured so far,
    the pictures drawn (one per content), the servers' last /status. One per app."""

    def __init__(self, config):
        self.config = config
        self.counts = collections.Counter()
        self.lock = threading.Lock()          # caches and counts
        self.draw_lock = threading.Lock()     # matplotlib draws one figure at a time
        self.x_test, self.y_test = generate.heldout(config["heldout"])      # (n, 2), (n,)
        self.baseline = float(self.y_test.var())
        self.mse = {}                         # (progress folder, label) -> held-out MSE
        self.chain_ticks = {}                 # (run, tick) -> chain_eval.tick_row
        self.images = {}                      # run -> a classifier's test images
        self.pictures = {}                    # name -> (key, PNG bytes)
        self.offered = {}                     # name -> (key, when first offered, its draw())
        self.statuses = {}                    # url -> (monotonic time, status or None, error)
        self.history = {}                     # url -> [its /status samples, flattened]
        self.clients = {}
        self.started = time.time()

    # --- the run -------------------------------------------------------------------------------
    def find_run(self):
        """(folder or None, how it was found in words)."""
        given = self.config["run_dir"]
        if given is not None:
            return Path(given), "given with --run-dir"
        parents = self.config["parents"]
        latest = snapshots.latest_run(*parents)
        return latest, f"the newest folder in {' or '.join(str(p) for p in parents)}"

    # --- measuring, cached ---------------------------------------------------------------------
    def cached(self, table, key, compute, keep=lambda value: True):
        """table[key], computed once (outside the lock: measuring takes a while) and kept if
        keep(value)."""
        with self.lock:
            if key in table:
                return table[key]
        value = compute()
        if keep(value):
            with self.lock:
                table[key] = value
        return value

    def tick_mse(self, progress, label):
        """Held-out MSE of the network composed at label in a progress folder (cached); ValueError
        if a half cannot be read."""
        return self.cached(self.mse, (str(progress), label), lambda: snapshots.composed_mse(
            progress, self.x_test, self.y_test, label))

    def test_images(self, run):
        """(x, labels, data) of the first TEST_IMAGES test images of the set a classifier chain's
        run names, read once per run; ValueError if they cannot be read."""
        def read():
            data, image_dir = chain_eval.run_data(run)
            if data == "toy":
                raise ValueError(f"{run} classifies but does not say what "
                                 f"({chain_eval.DATA_FILE})")
            return (*classify.load_test(data, image_dir, TEST_IMAGES), data)
        return self.cached(self.images, str(run), read)

    def chain_tick(self, run, layout, tick):
        """chain_eval.tick_row of a chain at a tick (held-out points or test images), cached once
        every boundary's model is there; ValueError if a snapshot is unreadable."""
        def measure():
            models = []
            for b in range(1, len(layout)):
                try:
                    models.append(chain_eval.load_boundary_model(run, b, tick))
                except (ValueError, KeyError):
                    models.append(None)
            classifier = chain_eval.classifies(layout)
            x, y = self.test_images(run)[:2] if classifier else (self.x_test, self.y_test)
            return chain_eval.tick_row(chain_eval.load_chain(run, layout, tick), layout, x, y,
                                       models, chain_eval.scores_on(x, y, classifier),
                                       COSINE_POINTS)
        return self.cached(self.chain_ticks, (str(run), tick), measure,
                           keep=lambda row: None not in row["cosine"])

    # --- the servers ---------------------------------------------------------------------------
    def server_status(self, url, kind):
        """(GET /status or None, why not) from the server at url, at most once a second."""
        now = time.monotonic()
        with self.lock:
            cached = self.statuses.get(url)
            if cached is not None and now - cached[0] < STATUS_MAX_AGE_S:
                return cached[1], cached[2]
            client = self.clients.get(url)
            if client is None:
                try:
                    client = kind(url, timeout=STATUS_TIMEOUT_S, token=self.config["token"])
                except ValueError as e:
                    return None, str(e)
                self.clients[url] = client
        try:
            status, error = client.status(), None
        except synthgrad.PeerError as e:
            status, error = None, str(e)
        with self.lock:
            self.statuses[url] = (now, status, error)
            if status is not None:            # as a metrics line: the oracle's quality flat
                quality = status.get("synthetic_gradient_quality") or {}
                self.history.setdefault(url, []).append({"time": time.time(), **status, **quality})
                del self.history[url][:-2000]
        return status, error

    def samples(self, url):
        """The /status samples of the server at url so far, oldest first."""
        with self.lock:
            return list(self.history.get(url, []))

    def close(self):
        for client in self.clients.values():
            client.close()

    def status(self):
        """The live page's own GET /status."""
        return {"role": "live", "uptime_s": round(time.time() - self.started, 3),
                "pictures_drawn": self.counts["drawn"],
                "requests_served": self.counts["requests_served"],
                "requests_refused": self.counts["requests_refused"]}

    # --- pictures ------------------------------------------------------------------------------
    def offer(self, name, content, draw):
        """Make draw() the picture `name` for this content (JSON-able); returns its address, which
        changes with the content, at most every config["redraw"] seconds (drawing costs CPU)."""
        key = hashlib.sha1(json.dumps(content, default=str).encode()).hexdigest()[:16]
        now = time.monotonic()
        with self.lock:
            old = self.offered.get(name)
            if old is None or old[0] == key or now - old[1] >= self.config["redraw"]:
                self.offered[name] = (key, now if old is None or old[0] != key else old[1], draw)
            key = self.offered[name][0]
        return f"/picture/{name}.png?v={key}"

    def picture(self, name, key):
        """PNG bytes of picture `name`: the cached one if it is this key, else the newest drawn
        now (and cached); None if there is no such picture."""
        with self.lock:
            cached, offered = self.pictures.get(name), self.offered.get(name)
        if offered is None:                   # nothing offered: nothing drawn either
            return None
        if cached is not None and cached[0] in (key, offered[0]):
            return cached[1]
        with self.draw_lock:
            with self.lock:
                cached = self.pictures.get(name)
            if cached is not None and cached[0] == offered[0]:      # drawn meanwhile
                return cached[1]
            data = offered[2]()
            with self.lock:
                self.pictures[name] = (offered[0], data)
                self.counts["drawn"] += 1
        return data


# --- The app: the page, its JSON, its pictures. ------------------------------------------------

PICTURE_NAME = re.compile(r"^[a-z_]{1,40}$")


def create_app(config=None):
    """The live page's Flask app; its LiveState is app.config["LIVE"]. config: run_dir (None:
    follow the newest folder in `parents`, default runs/ and progress/), token, oracle_url and
    output_url (a run by hand's servers), heldout, refresh and redraw (seconds)."""
    config = {"run_dir": None, "parents": (HERE / "runs", snapshots.PROGRESS), "token": None,
              "oracle_url": None, "output_url": None, "heldout": generate.HELDOUT_COUNT,
              "refresh": REFRESH_S, "redraw": REDRAW_S, "max_body_bytes": 1024, **(config or {})}
    state = LiveState(config)
    app = server.make_app("live", state, "LIVE")     # JSON errors, the token, GET /status
    app.wsgi_app = token_from_address(app.wsgi_app)

    html = PAGE.read_text().replace("{{refresh_ms}}", str(round(config["refresh"] * 1000)))

    @app.get("/")
    def page():
        return Response(html, mimetype="text/html")

    @app.get("/api/live")
    def api_live():
        try:
            view = liveview.live_view(state)
        except OSError as e:             # the folder moved or vanished while being read
            log.warning("cannot read the run: %s", e)
            view = liveview.empty_view(state, summary=f"The run folder could not be read "
                                       f"({e}); trying again.", kind="stopped")
        response = app.json.response(view)
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.get("/picture/<name>.png")
    def picture(name):
        if not PICTURE_NAME.match(name):
            abort(404, "no such picture")
        data = state.picture(name, request.args.get("v", ""))
        if data is None:
            abort(404, f"no picture {name!r} yet: ask /api/live first")
        response = Response(data, mimetype="image/png")
        response.headers["Cache-Control"] = "max-age=3600"     # its address names its content
        return response

    return app


def token_from_address(wsgi_app):
    """wsgi_app, taking ?token=<token> as the Authorization header when none is sent: a browser
    opening an address cannot send one (the page then adds ?token= to its own requests)."""
    def with_token(environ, start_response):
        token = urllib.parse.parse_qs(environ.get("QUERY_STRING", "")).get("token")
        if token:
            environ.setdefault("HTTP_AUTHORIZATION", f"Bearer {token[0]}")
        return wsgi_app(environ, start_response)
    return with_token


PAGE = HERE / "live.html"          # the page itself: its style and script inline, nothing fetched


# --- Opening it headless (tests/conftest.py, lab/live_cost.py), stopping with its launcher. ---

class NoBrowser(Exception):
    """Headless Chromium cannot be had here; the message says why and what installs it."""


def headless_chromium(profile_dir, window=(1400, 1700), log_requests=False):
    """A selenium driver of headless Chromium, a fresh profile in profile_dir; with log_requests
    its performance log holds every request. NoBrowser if selenium or Chromium is missing."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        raise NoBrowser(f"selenium is not installed ({e}); pip install -r requirements.txt") \
            from None
    binary, driver_path = (shutil.which(name) or f"/usr/bin/{name}"      # Debian's
                           for name in ("chromium", "chromedriver"))
    for path in (binary, driver_path):
        if not os.path.exists(path):
            raise NoBrowser(f"no {path}: apt-get install chromium chromium-driver (as root), "
                            "or make browser")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                f"--window-size={window[0]},{window[1]}", f"--user-data-dir={profile_dir}"):
        options.add_argument(arg)
    if log_requests:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    try:
        return webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as e:
        raise NoBrowser(f"Chromium would not start: {str(e).splitlines()[0]}") from None


# --- The script. -------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="Serve a page on this machine that shows a run "
                                            "learning, updated while it trains.")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="a run or progress folder to show (default: the newest in runs/ or "
                        "progress/, looked for at every poll, so the page finds a later run)")
    p.add_argument("--host", default=synthgrad.DEFAULT_HOST,
                   help="address to bind (default 127.0.0.1: only this machine can open it)")
    p.add_argument("--port", type=options.port, default=children.LIVE_PORT,
                   help=f"port to listen on (default {children.LIVE_PORT}, beside the servers' "
                        "5000 and 5001; 0 picks a free one)")
    options.token_argument(p)
    p.add_argument("--allow-no-token", action="store_true",
                   help="serve beyond this machine (--host) without a token: anyone who can "
                        "reach it sees the run (default: refused)")
    p.add_argument("--oracle-url", default=None,
                   help="the oracle's address (default: what RUN/oracle.log says it listens on; "
                        f"{synthgrad.DEFAULT_ORACLE_URL} for a progress folder run by hand)")
    p.add_argument("--output-url", default=None,
                   help="the output trainer's address (default: from RUN/train_output.log; "
                        f"{synthgrad.DEFAULT_OUTPUT_TRAINER_URL} for a progress folder)")
    p.add_argument("--refresh", type=float, default=REFRESH_S,
                   help=f"seconds between the page's polls (default {REFRESH_S:g}: metrics "
                        "lines come every 1-2 s)")
    p.add_argument("--redraw", type=float, default=REDRAW_S,
                   help=f"redraw a changed picture at most every this many seconds (default "
                        f"{REDRAW_S:g}: a picture costs ~0.3 s of a core, taken from training)")
    p.add_argument("--heldout", type=int, default=generate.HELDOUT_COUNT,
                   help="fresh points held-out MSE is measured on (default 20,000, as plot.py's, "
                        "so the numbers compare)")
    p.add_argument("--nice", type=int, default=options.DEFAULT_TRAINING_NICE,
                   help=f"run this much nicer (default {options.DEFAULT_TRAINING_NICE}, as the "
                        "training threads: the page takes only the CPU they leave)")
    p.add_argument("--stop-with-parent", action="store_true",
                   help="stop when the process that started this one ends (so a killed "
                        "launcher leaves no page)")
    args = p.parse_args(argv)
    for name, low, high, unit in (("refresh", 0.2, 60, " seconds"), ("redraw", 0, 600, " seconds"),
                                  ("nice", 0, 19, "")):
        if not low <= getattr(args, name) <= high:          # NaN is in no range
            p.error(f"--{name} must be between {low} and {high}{unit}")
    options.check_at_least(p, args, 1, "heldout")
    options.check_open(p, args)
    if args.run_dir is not None and args.run_dir.exists() and not args.run_dir.is_dir():
        p.error(f"--run-dir {args.run_dir} is a file; give the run's folder")
    for name in ("oracle_url", "output_url"):
        url = getattr(args, name)
        if url is not None and not re.match(r"^http://[^/\s]+:\d+/?$", url):
            p.error(f"--{name.replace('_', '-')} must look like http://HOST:PORT, got {url!r}")
    return args


def main(argv=None):
    args = parse_args(argv)
    options.setup_logging("live")
    log.info("settings: %s", options.printable(args))
    httpd, hand_over = http.listen(args.host, args.port, "live.py", 1024)
    if args.nice > 0:
        os.nice(args.nice)
    app = create_app({     # a progress folder by hand: the servers' default addresses (Phase.url)
        "run_dir": None if args.run_dir is None else args.run_dir.resolve(),
        "token": args.token, "heldout": args.heldout, "refresh": args.refresh,
        "redraw": args.redraw, "oracle_url": args.oracle_url, "output_url": args.output_url})
    hand_over(app)
    if args.stop_with_parent:
        children.stop_with_parent(os.getppid())
    if args.token:
        log.info("open it with ?token=<the token> at the end of the address")
    http.serve(httpd, "live page", on_stop=app.config["LIVE"].close)
    return 0


if __name__ == "__main__":
    sys.exit(main())
