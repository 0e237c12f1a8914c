"""Tests for live.py: the page and its JSON through Flask's test client on hand-made run folders
(empty, a half-written snapshot, a process that is down, a run that ended, a chain), each
answered in words with a 200, no traceback and nothing written into the run; the pictures
drawn once per content; the token; the command line; the page started in the background; and a
real browser watching a real run learn, with no request leaving the machine."""

import json
import os
import socket
import threading
import time
import urllib.parse

import numpy as np
import pytest
import requests

import generate
import live
import sgd
import synthgrad
from parts import children, snapshots
from runner import chain_eval, launch

PNG = b"\x89PNG\r\n\x1a\n"
T0 = 1_700_000_000                     # the hand-made runs' first tick


def listing(folder):
    """{path: (size, mtime_ns)} of everything under folder, folders too: any write shows."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in [folder, *folder.rglob("*")]}


def get_all(app):
    """GET the page, its JSON and every picture it names; every answer must be a 200 without a
    traceback. Returns the JSON."""
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200 and b"<script>" in page.data
    r = client.get("/api/live")
    assert r.status_code == 200, r.data
    assert b"Traceback" not in r.data
    view = r.get_json()
    for picture in view["pictures"]:
        p = client.get(picture["url"])
        assert p.status_code == 200 and p.data.startswith(PNG), picture
        assert picture["title"]
    return view


def make_app(run_dir, **config):
    return live.create_app({"run_dir": run_dir, "heldout": 2_000, **config})


def write_lines(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


@pytest.fixture
def run_folder(tmp_path, closed_url):
    """A run folder as launch.run_decoupled leaves it mid-run: snapshots at three ticks, metrics
    lines of the three processes, logs naming servers that (now) listen nowhere."""
    run = tmp_path / "run"
    rng = np.random.default_rng(5)
    for label in ("initial", T0, T0 + 3, T0 + 6):
        net = sgd.make_network(rng)
        taken = T0 - 1 if label == "initial" else label
        snapshots.save_layers(run / "progress" / f"layer1_{label}.npz", net[:1], taken)
        snapshots.save_layers(run / "progress" / f"layers23_{label}.npz", net[1:], taken)
    now = time.time()
    write_lines(run / "metrics" / "train_input.jsonl",
                [{"time": now - 9 + k, "stage": "input_trainer", "examples": 1000 * k,
                  "examples_per_s": 1000.0} for k in range(3)])
    write_lines(run / "metrics" / "train_output.jsonl",
                [{"time": now - 8 + 2 * k, "stage": "output_trainer", "examples_held": 2000,
                  "training_passes": 5 * k, "staleness_s": 0.25, "examples_trained": 100 * k}
                 for k in range(3)])
    write_lines(run / "metrics" / "oracle.jsonl",
                [{"time": now - 8 + 2 * k, "stage": "oracle", "examples_held": 2000,
                  "training_passes": k, "staleness_s": 0.1, "gradients_received": 300 * k,
                  "last_train_mse": 0.01 / (k + 1), "cosine_similarity": 0.1 * k,
                  "aggregate_cosine": 0.12 * k} for k in range(3)])
    for name, title in (("oracle", "oracle"), ("train_output", "output trainer")):
        (run / f"{name}.log").write_text(f"07:00:00 {name}: {title} listening on "
                                         f"{closed_url}\n")
    return run


# --- odd input: each said in words, with a 200, and nothing written into the run ----------------

def test_an_empty_run_folder_is_said_to_be_waiting(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    before = listing(run)
    view = get_all(make_app(run))
    assert view["state"] == "waiting" and "empty" in view["summary"]
    assert listing(run) == before


def test_no_run_at_all_and_a_missing_folder_are_said(tmp_path):
    view = get_all(live.create_app({"parents": (tmp_path / "runs",), "heldout": 100}))
    assert view["state"] == "no run" and "No run found yet" in view["summary"]
    view = get_all(make_app(tmp_path / "not-yet"))
    assert view["state"] == "no run" and "no folder" in view["summary"]
    assert not (tmp_path / "not-yet").exists()


def test_the_newest_run_is_followed(tmp_path, run_folder):
    runs = tmp_path / "runs"
    runs.mkdir()
    app = live.create_app({"parents": (runs,), "heldout": 100})
    assert get_all(app)["state"] == "no run"
    newer = runs / "20990101-000000"
    run_folder.rename(newer)
    view = get_all(app)
    assert view["run"] == str(newer) and view["found"].startswith("the newest folder")
    assert [p["name"] for p in view["pictures"]] == ["fit", "mse", "oracle"]


def test_a_run_mid_way_with_its_processes_down(run_folder, closed_url):
    before = listing(run_folder)
    view = get_all(make_app(run_folder))
    assert view["state"] == "training"
    rows = {p["name"].split(" (")[0]: p for p in view["processes"]}
    assert set(rows) == {"input trainer", "output trainer", "oracle"}
    for name in ("output trainer", "oracle"):
        assert rows[name]["url"] == closed_url
        assert rows[name]["source"].startswith("its newest metrics line")
        assert any(n.startswith(name) and f"at {closed_url} does not answer" in n
                   for n in view["notes"])
    assert rows["output trainer"]["examples_per_s"] == pytest.approx(50.0)   # 100 per 2 s
    assert rows["output trainer"]["staleness_s"] == 0.25
    assert rows["oracle"]["passes"] == 2 and rows["oracle"]["examples_per_s"] == pytest.approx(150)
    assert rows["input trainer"]["examples"] == 2000
    assert listing(run_folder) == before


def test_a_half_written_snapshot_is_left_out_and_said(run_folder):
    newest = run_folder / "progress" / f"layer1_{T0 + 6}.npz"
    newest.write_bytes(newest.read_bytes()[:100])          # as if cut off while written
    before = listing(run_folder)
    app = make_app(run_folder)
    view = get_all(app)
    assert any("could not be read" in n and str(T0 + 6) in n for n in view["notes"])
    state = app.config["LIVE"]
    measured = {label for _, label in state.mse}
    assert T0 + 3 in measured and T0 + 6 not in measured    # the fit is the older tick's
    fit = next(p for p in view["pictures"] if p["name"] == "fit")
    assert fit["title"].startswith("The network now")
    assert listing(run_folder) == before


def test_an_ended_run_says_so_and_asks_no_server(run_folder):
    rng = np.random.default_rng(9)
    net = sgd.make_network(rng)
    snapshots.save_layers(run_folder / "progress" / "layer1_final.npz", net[:1])
    snapshots.save_layers(run_folder / "progress" / "layers23_final.npz", net[1:])
    past = time.time() - 600
    for path in [run_folder, *run_folder.rglob("*")]:
        os.utime(path, (past, past))
    before = listing(run_folder)
    app = make_app(run_folder)
    view = get_all(app)
    assert view["state"] == "ended" and "has ended" in view["summary"]
    assert all("(stopped)" in p["source"] for p in view["processes"])
    assert app.config["LIVE"].statuses == {}                # no GET /status to a stopped run
    x, y = generate.heldout(2_000)
    assert app.config["LIVE"].mse[(str(run_folder / "progress"), "final")] == \
        pytest.approx(sgd.mse(net, x, y))
    assert listing(run_folder) == before


def test_a_run_gone_quiet_is_said_to_have_stopped(run_folder):
    past = time.time() - 120
    for path in [run_folder, *run_folder.rglob("*")]:
        os.utime(path, (past, past))
    view = get_all(make_app(run_folder))
    assert view["state"] == "stopped" and "has changed for" in view["summary"]


def test_pictures_are_drawn_once_per_content(run_folder):
    app = make_app(run_folder, redraw=0)
    client = app.test_client()
    first = get_all(app)
    for _ in range(3):                                     # polls with nothing new: no drawing
        assert client.get("/api/live").get_json()["pictures"] == first["pictures"]
        for picture in first["pictures"]:
            assert client.get(picture["url"]).status_code == 200
    assert app.config["LIVE"].counts["drawn"] == 3
    rng = np.random.default_rng(2)                         # a new tick: a new fit and curve
    net = sgd.make_network(rng)
    snapshots.save_layers(run_folder / "progress" / f"layer1_{T0 + 9}.npz", net[:1])
    snapshots.save_layers(run_folder / "progress" / f"layers23_{T0 + 9}.npz", net[1:])
    second = get_all(app)
    changed = {a["name"] for a, b in zip(first["pictures"], second["pictures"], strict=True)
               if a["url"] != b["url"]}
    assert changed == {"fit", "mse"}
    assert app.config["LIVE"].counts["drawn"] == 5
    assert client.get("/picture/nope.png").status_code == 404
    assert client.get("/picture/..%2Fx.png").status_code == 404


def test_new_content_waits_for_the_redraw_interval(run_folder):
    app = make_app(run_folder, redraw=60)                  # a picture a minute at most
    first = get_all(app)
    net = sgd.make_network(np.random.default_rng(4))       # a new tick at once
    snapshots.save_layers(run_folder / "progress" / f"layer1_{T0 + 9}.npz", net[:1])
    snapshots.save_layers(run_folder / "progress" / f"layers23_{T0 + 9}.npz", net[1:])
    second = get_all(app)
    assert [p["url"] for p in second["pictures"]] == [p["url"] for p in first["pictures"]]
    assert app.config["LIVE"].counts["drawn"] == 3         # nothing redrawn yet
    app.config["LIVE"].config["redraw"] = 0                # the interval has passed
    third = get_all(app)
    assert {a["name"] for a, b in zip(first["pictures"], third["pictures"], strict=True)
            if a["url"] != b["url"]} == {"fit", "mse"}


def test_a_progress_folder_by_hand_asks_the_default_addresses(tmp_path):
    rng = np.random.default_rng(3)
    net = sgd.make_network(rng)
    for label in ("initial", T0):
        snapshots.save_layers(tmp_path / f"layer1_{label}.npz", net[:1])
        snapshots.save_layers(tmp_path / f"layers23_{label}.npz", net[1:])
    assert snapshots.folder_kind(tmp_path) == "progress"
    view = get_all(make_app(tmp_path, oracle_url="http://127.0.0.1:9"))
    urls = {p["name"]: p["url"] for p in view["processes"]}
    assert urls["oracle (oracle.py)"] == "http://127.0.0.1:9"
    assert urls["output trainer (train_output.py)"] == synthgrad.DEFAULT_OUTPUT_TRAINER_URL


# --- a chain ---------------------------------------------------------------------------------------

def test_a_chain_shows_each_boundary_cosine_against_chain_py(tmp_path):
    """A 3-stage chain folder (2-8 | 8-6 | 6-1) with boundary models at two ticks: the page's
    cosines are chain.py's own evaluation of the same snapshots."""
    run = tmp_path / "chain-20990101"
    layout = [(2, 8), (8, 6), (6, 1)]
    rng = np.random.default_rng(4)
    for tick in ("initial", T0, T0 + 2):
        for k, sizes in enumerate(layout, start=1):
            layers = sgd.make_network(rng, sizes)
            snapshots.save_layers(chain_eval.stage_file(run, k, tick), layers)
        if tick != "initial":
            for b, width in ((1, 8), (2, 6)):
                weights = [rng.normal(size=s) for s in ((width + 1, 5), (5,), (5, width),
                                                        (width,))]
                snapshots.write_npz(run / "progress" / f"boundary{b}" / f"model_{tick}.npz",
                                    {**{f"w{k}": w for k, w in enumerate(weights)},
                                     "conditioned": np.array(True), "time": np.array(tick)})
    write_lines(run / "metrics" / "stage1.jsonl", [{"time": T0 - 1.0, "examples": 0}])
    write_lines(run / "metrics" / "boundary1.jsonl", [{"time": T0 + 1.0,
                                                       "cosine_similarity": 0.5}])
    before = listing(run)
    app = make_app(run)
    view = get_all(app)
    assert [p["name"] for p in view["pictures"]] == ["chain_fit", "chain_mse", "chain_cosine",
                                                     "chain_staleness"]
    assert [p["name"] for p in view["processes"]] == [
        "stage 1 (train_input.py)", "stage 2", "stage 3", "boundary 1 oracle",
        "boundary 2 oracle"]
    x, y = generate.heldout(2_000)
    for tick in (T0, T0 + 2):
        layers = chain_eval.load_chain(run, layout, tick)
        models = [chain_eval.load_boundary_model(run, b, tick) for b in (1, 2)]
        pairs = chain_eval.true_and_synthetic(chain_eval.load_chain(run, layout, tick), layout, x, y,
                                         models)
        got = app.config["LIVE"].chain_ticks[(str(run), tick)]
        assert got["cosine"] == pytest.approx([chain_eval.mean_cosine(s, t) for t, s in pairs])
        assert got["heldout_mse"] == pytest.approx(sgd.mse(layers, x, y))
    assert listing(run) == before
    # the same chain with --colocated: no oracle wrote a log or metrics; the stages did
    (run / "metrics" / "boundary1.jsonl").unlink()
    write_lines(run / "metrics" / "stage2.jsonl", [{"time": T0 + 1.0, "cosine_similarity": 0.4,
                                                    "examples_trained": 10}])
    view = get_all(make_app(run))
    assert [p["name"] for p in view["processes"]] == ["stage 1 (train_input.py)", "stage 2",
                                                      "stage 3"]
    assert any("--colocated" in note for note in view["notes"])


# --- the token, the command line, the page in the background ------------------------------------

def test_the_token_is_required_in_the_header_or_the_address(run_folder):
    app = make_app(run_folder, token="s3cret")
    client = app.test_client()
    assert client.get("/api/live").status_code == 401
    assert client.get("/api/live?token=wrong").status_code == 401
    assert "token" in client.get("/").get_json()["error"]
    assert client.get("/api/live?token=s3cret").status_code == 200
    assert client.get("/api/live", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize("argv", [["--port", "70000"], ["--refresh", "0"], ["--heldout", "0"],
                                  ["--nice", "20"], ["--oracle-url", "localhost:5001"]])
def test_bad_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as e:
        live.main(argv)
    assert e.value.code == 2 and argv[0] in capsys.readouterr().err


def test_a_taken_port_is_refused_in_one_line_naming_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(SystemExit) as e:
            live.main(["--port", str(s.getsockname()[1]), "--nice", "0"])
    message = str(e.value)
    assert "--port" in message and "\n" not in message


def test_start_live_page_serves_the_run_and_stops(run_folder):
    before = listing(run_folder)
    url, stop = children.start_live_page(run_folder, token="tok")
    try:
        parts = urllib.parse.urlsplit(url)
        assert parts.hostname == "127.0.0.1" and parts.query == "token=tok"
        assert requests.get(url, timeout=10).status_code == 200
        base = f"{parts.scheme}://{parts.netloc}"
        assert requests.get(f"{base}/api/live", timeout=10).status_code == 401
        view = requests.get(f"{base}/api/live?token=tok", timeout=30).json()
        assert view["run"] == str(run_folder) and view["state"] == "training"
    finally:
        # it stops by itself on SIGTERM: give it time to. The page runs nicer than normal, so
        # beside busy processes at normal priority it gets a tenth of a core or less, and its
        # second of exiting can take ten (make test-loaded saw it SIGKILLed after 10 s)
        assert stop(60) == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)
    assert listing(run_folder) == before


# --- a real browser watching a real run -----------------------------------------------------------

def page_images(driver):
    """{picture name: its src if loaded} as the page shows them now."""
    return driver.execute_script("""
        const out = {};
        for (const img of document.querySelectorAll('#panels img'))
            if (img.complete && img.naturalWidth > 0) out[img.id.slice(4)] = img.src;
        return out;""")


def test_a_browser_watches_a_real_run_learn(browser, tmp_path):
    """The three real processes train for 16 s; the page, opened before they start, must show
    new held-out MSE figures and new fits without reloading, the processes' live /status, and
    ask nothing of any machine but this one."""
    run = tmp_path / "run"
    env = launch.child_env()
    launch.generate_data(run / "data", 2_000, 0, env, plot=False)
    config = launch.DecoupledConfig(run_dir=run, count=2_000, duration=16,
                                    snapshot_interval=2, status_every=5)
    url, stop = children.start_live_page(run)
    try:
        browser.get_log("performance")         # drop Chromium's own start-up (its new-tab page)
        browser.get(url)
        browser.execute_script("window.__sameLoad = 'yes';")
        failed = []
        trainer = threading.Thread(target=lambda: failed.append(
            _run(config, env)), daemon=True)
        trainer.start()
        seen = {"fit": set(), "mse": set()}
        live_status = False
        deadline = time.monotonic() + 75
        while trainer.is_alive() and time.monotonic() < deadline:
            for name, src in page_images(browser).items():
                if name in seen:
                    seen[name].add(src)
            sources = browser.execute_script(
                "return Array.from(document.querySelectorAll('td.source'), e => e.textContent)")
            live_status = live_status or any("live GET /status" in s for s in sources)
            if os.environ.get("LIVE_SCREENSHOT") and len(seen["fit"]) == 4:
                browser.save_screenshot(os.environ["LIVE_SCREENSHOT"])
            time.sleep(0.5)
        trainer.join(60)
        assert failed == [None], failed
        # the fits are told apart by their tick; the first picture may be "waiting"
        assert len(seen["fit"]) >= 3 and len(seen["mse"]) >= 3, seen
        assert live_status
        titles = browser.execute_script(
            "return Array.from(document.querySelectorAll('#panels h2'), e => e.textContent)")
        assert "Held-out MSE over time (log scale)" in titles
        assert "The network now, beside the target" in titles
        deadline = time.monotonic() + 20                  # final weights, then 5 s of quiet
        while "has ended" not in browser.find_element("id", "summary").text:
            assert time.monotonic() < deadline, browser.find_element("id", "summary").text
            time.sleep(0.5)
        cells = browser.execute_script(             # the input trainer's count, not "-"
            "return Array.from(document.querySelectorAll('#processes tbody tr'), "
            "r => Array.from(r.cells, c => c.textContent))")
        counts = {row[0].split(" (")[0]: row[2] for row in cells}
        assert counts["input trainer"].replace(",", "").isdigit(), counts
        # never reloaded: the same document all along
        assert browser.execute_script("return window.__sameLoad") == "yes"
        assert browser.execute_script(
            "return performance.getEntriesByType('navigation').length") == 1
        # no request left the machine: every request the page sent, from Chrome's own log
        sent = [json.loads(entry["message"])["message"] for entry in
                browser.get_log("performance")]
        urls = [m["params"]["request"]["url"] for m in sent
                if m["method"] == "Network.requestWillBeSent"]
        assert len(urls) > 20
        parts = [urllib.parse.urlsplit(u) for u in urls]
        assert {p.scheme for p in parts} <= {"http", "data", "blob"}, urls
        assert {p.hostname for p in parts if p.scheme == "http"} <= {"127.0.0.1", "localhost"}
        assert any(p.path == "/api/live" for p in parts)
        resources = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert {urllib.parse.urlsplit(u).hostname for u in resources} <= {"127.0.0.1"}
    finally:
        stop()


def _run(config, env):
    launch.run_decoupled(config, env)
