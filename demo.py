"""The whole demo in one command: data, the three processes, the baseline, the pictures.

Run it (the README's `make demo` does this inside the virtual environment):

    python demo.py                       # about 3 minutes; prints the run folder at the end
    python demo.py --duration 60 --count 50000
    python demo.py --help

Phases, one after the other so each has the machine to itself:
1. generate the data into a new run folder;
2. start oracle.py, train_output.py and train_input.py as separate processes on free loopback
   ports (the same scripts you would start by hand in three terminals), wait until each is
   ready, print one status line every few seconds while they train for --duration seconds,
   then stop them with SIGTERM (each saves its final weights);
3. train the same network with plain backprop (sgd.py) for the same number of seconds;
4. draw the pictures with plot.py.
Everything the run produces (data, logs, metrics, weight snapshots, pictures) is in the run
folder, printed at the end. Ctrl-C at any point stops every process it started.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import synthgrad

HERE = Path(__file__).resolve().parent
LISTENING = re.compile(r"listening on (http://\S+)")

# Defaults chosen so the demo fits visibly well on a 2-core machine in ~3 minutes; the scripts'
# own defaults are the original project's (see README, "Defaults").
DEMO = dict(
    input_learning_rate=0.01,
    output_learning_rate=0.1,
    output_batch_size=10,
    oracle_args="--optimizer adam --learning-rate 0.01 --batch-size 256 --zero-init",
    wire="binary",
)


class Process:
    """A child process whose output is copied to a log file; knows the URL it announced."""

    def __init__(self, name, argv, log_path, env):
        self.name, self.log_path = name, log_path
        self.url = None
        self._announced = threading.Event()
        self.popen = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, env=env, cwd=HERE)
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self):
        with open(self.log_path, "w") as log:
            for line in self.popen.stdout:
                log.write(line)
                log.flush()
                m = LISTENING.search(line)
                if m and self.url is None:
                    self.url = m.group(1)
                    self._announced.set()

    def wait_url(self, timeout):
        """The URL the process printed when it started listening; SystemExit if it did not."""
        deadline = time.monotonic() + timeout
        while not self._announced.wait(0.1):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not start; see {self.log_path}")
        return self.url

    def stop(self, timeout=20.0):
        """SIGTERM, then wait; SIGKILL only if it does not stop within timeout."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"demo: {self.name} did not stop within {timeout} s; killing it", flush=True)
                self.popen.kill()
                self.popen.wait()
        self._thread.join(5)
        return self.popen.returncode


def parse_args(argv):
    p = argparse.ArgumentParser(description="Run the whole synthetic-gradient demo: data, "
                                            "three processes, a backprop baseline, pictures.")
    p.add_argument("--duration", type=float, default=75.0,
                   help="seconds the three processes train, and then plain backprop (default "
                        "75: with start-up and plotting the demo takes about 3 minutes)")
    p.add_argument("--count", type=int, default=20_000,
                   help="training examples to generate (default 20,000: in 75 s the input "
                        "trainer passes over them ~10 times, so layers 2-3 train on fresh "
                        "activations; with the original's 200,000 it would not finish one pass)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="folder for everything the run writes (default: a new "
                        "runs/<date-time> next to this file)")
    p.add_argument("--snapshot-interval", type=int, default=3,
                   help="seconds between weight snapshots (default 3: ~25 frames in 75 s)")
    p.add_argument("--status-every", type=float, default=5.0,
                   help="seconds between status lines while training (default 5)")
    p.add_argument("--input-learning-rate", type=float, default=DEMO["input_learning_rate"],
                   help="layer 1's eta (default %(default)s, averaged over minibatches of 10; "
                        "the original's 0.001 leaves layer 1 where it started in a few minutes, "
                        "and 0.1 moves it faster than layers 2-3 and the oracle can follow)")
    p.add_argument("--output-learning-rate", type=float, default=DEMO["output_learning_rate"],
                   help="layers 2-3's eta (default %(default)s with minibatches of 10; the "
                        "original's 0.001 per example needs many minutes)")
    p.add_argument("--output-batch-size", type=int, default=DEMO["output_batch_size"],
                   help="layers 2-3's minibatch (default %(default)s: vectorised, several times "
                        "faster than per-example updates in Python)")
    p.add_argument("--oracle-args", default=DEMO["oracle_args"],
                   help="extra options for oracle.py (default \"%(default)s\": the original "
                        "Adadelta oracle learns too slowly to follow the true gradients in a "
                        "few minutes; a Keras step costs ~0.5 ms whatever the batch, so "
                        "batches of 256 learn from 3x more gradients per second than 32 and "
                        "from fresher ones (in the running demo a pass over 20,000 comes "
                        "every ~0.8 s, against ~2.4 s); and the "
                        "paper's zero-initialised last layer gives better-aligned gradients "
                        "than a random one. Cosine with the true gradients after 40 s in our "
                        "runs: 0.20-0.29 with these settings, 0.08-0.16 with lr 0.003 and "
                        "batches of 32, 0.01-0.07 with a random last layer too. Pass \"\" "
                        "for the original)")
    p.add_argument("--baseline-args", default="",
                   help="extra options for the plain-backprop baseline, sgd.py (default: none, "
                        "i.e. its per-example SGD at learning rate 0.002)")
    p.add_argument("--input-args", default="",
                   help="extra options for train_input.py, e.g. \"--synthetic-gradients local\" "
                        "(default: none)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the plain-backprop baseline (it takes another --duration seconds)")
    p.add_argument("--wire", choices=("json", "binary"), default=DEMO["wire"],
                   help="form of the bulk transfers (default %(default)s: raw arrays, ~100x "
                        "cheaper than JSON numbers, so layers 2-3 and the oracle get more "
                        "training done; json is the documented reference form)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the data and every process (default 0)")
    args = p.parse_args(argv)
    if not args.duration > 0 or args.count < 1000:
        p.error("--duration must be positive and --count at least 1000")
    if args.seed == 2016:
        p.error("--seed 2016 is reserved for the held-out points")
    return args


def child_env():
    """The environment for the processes a launcher starts: TensorFlow quiet, output unbuffered."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}


def new_run_dir(given=None, prefix=""):
    """`given`, or a new runs/<prefix><date-time> next to this file; created, made absolute."""
    run_dir = (given or HERE / "runs" / time.strftime(f"{prefix}%Y%m%d-%H%M%S")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def generate_data(out_dir, count, seed, env, plot=True):
    """generate.py: `count` examples with `seed` into out_dir (its target.png too if plot)."""
    subprocess.run([sys.executable, "generate.py", "--count", str(count), "--seed", str(seed),
                    "--out-dir", str(out_dir), *([] if plot else ["--no-plot"])],
                   check=True, cwd=HERE, env=env, stdout=subprocess.DEVNULL)


def fmt(value, spec=".3g"):
    return "-" if value is None else format(value, spec)


def last_line(path):
    """The last JSON object in a metrics file, or {} if there is none yet."""
    try:
        lines = Path(path).read_text().splitlines()
        return json.loads(lines[-1]) if lines else {}
    except (OSError, ValueError):
        return {}


def status_line(elapsed, oracle, output, inp):
    """One line: what each process holds and has done (servers' GET /status, the input
    trainer's latest metrics line)."""
    q = oracle.get("synthetic_gradient_quality", {})
    return (f"[{elapsed:4.0f} s] input: {inp.get('examples', 0):>7} examples "
            f"({fmt(inp.get('examples_per_s'), '.0f')}/s) | output: "
            f"{output.get('examples_held', 0):>6} held, {output.get('training_passes', 0):>3} "
            f"passes, train MSE {fmt(output.get('last_train_mse'))} | oracle: "
            f"{oracle.get('training_passes', 0):>3} passes, loss {fmt(oracle.get('last_train_mse'))}"
            f", cosine(synthetic, true) {fmt(q.get('cosine_similarity'), '.2f')}")


def watch(inp, oracle_client, output_client, metrics_path, duration, every):
    """Print a status line every `every` seconds until the input trainer exits."""
    start = time.monotonic()
    while True:
        try:
            return inp.wait(every)
        except subprocess.TimeoutExpired:
            pass
        try:
            print(status_line(time.monotonic() - start, oracle_client.status(),
                              output_client.status(), last_line(metrics_path)), flush=True)
        except synthgrad.PeerError as e:
            print(f"demo: status unavailable: {e}", flush=True)
        if time.monotonic() - start > duration + 120:
            print("demo: the input trainer overran its time by 2 minutes; stopping it", flush=True)
            inp.send_signal(signal.SIGTERM)


def run_decoupled(args, run_dir, env):
    """Phase 2: the three processes. Returns the servers' final status."""
    py = sys.executable
    data_dir, progress_dir, metrics_dir = run_dir / "data", run_dir / "progress", run_dir / "metrics"
    common = ["--snapshot-interval", str(args.snapshot_interval), "--seed", str(args.seed),
              "--wire", args.wire]
    procs = []
    try:
        oracle = Process("oracle", [py, "oracle.py", "--port", "0", "--max-examples",
                                    str(args.count), "--seed", str(args.seed),
                                    "--metrics", str(metrics_dir / "oracle.jsonl"),
                                    *args.oracle_args.split()],
                         run_dir / "oracle.log", env)
        procs.append(oracle)
        output = Process("output trainer",
                         [py, "train_output.py", "--port", "0", "--max-examples", str(args.count),
                          "--oracle-url", oracle.wait_url(120),
                          "--progress-dir", str(progress_dir),
                          "--metrics", str(metrics_dir / "train_output.jsonl"),
                          "--learning-rate", str(args.output_learning_rate),
                          "--batch-size", str(args.output_batch_size), *common],
                         run_dir / "train_output.log", env)
        procs.append(output)
        token = env.get("SYNTHGRAD_TOKEN") or None      # the children take it from there too
        oracle_client = synthgrad.OracleClient(oracle.url, token=token)
        output_client = synthgrad.OutputTrainerClient(output.wait_url(120), token=token)
        for client in (oracle_client, output_client):
            client.wait_until_ready()
        print(f"demo: oracle at {oracle.url}, output trainer at {output.url}; the input "
              f"trainer trains for {args.duration:.0f} s (logs in {run_dir})", flush=True)
        with open(run_dir / "train_input.log", "w") as log:
            inp = subprocess.Popen(
                [py, "train_input.py", "--data-dir", str(data_dir), "--oracle-url", oracle.url,
                 "--output-url", output.url, "--progress-dir", str(progress_dir),
                 "--metrics", str(metrics_dir / "train_input.jsonl"),
                 "--learning-rate", str(args.input_learning_rate),
                 "--duration", str(args.duration), *common, *args.input_args.split()],
                cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                code = watch(inp, oracle_client, output_client, metrics_dir / "train_input.jsonl",
                             args.duration, args.status_every)
            finally:
                if inp.poll() is None:
                    inp.send_signal(signal.SIGTERM)
                    inp.wait(30)
        if code != 0:
            raise SystemExit(f"train_input.py failed (exit code {code}); see "
                             f"{run_dir / 'train_input.log'}")
        try:
            return {"oracle": oracle_client.status(), "output_trainer": output_client.status()}
        except synthgrad.PeerError as e:
            raise SystemExit(f"demo: a server stopped before the end of the run ({e}); see "
                             f"the logs in {run_dir}") from None
    finally:
        for proc in reversed(procs):
            proc.stop()


def run_baseline(args, run_dir, env):
    """Phase 3: plain backprop on the same data for the same number of seconds."""
    print(f"demo: plain backprop (sgd.py) for {args.duration:.0f} s", flush=True)
    with open(run_dir / "backprop.log", "w") as log:
        subprocess.run([sys.executable, "sgd.py", "--data-dir", str(run_dir / "data"),
                        "--epochs", "1000000", "--duration", str(args.duration),
                        "--eval-every", "20000",
                        "--no-plots", "--seed", str(args.seed),
                        "--metrics", str(run_dir / "metrics" / "backprop.jsonl"),
                        "--weights-out", str(run_dir / "backprop" / "final.npz"),
                        *args.baseline_args.split()],
                       check=True, cwd=HERE, env=env, stdout=log, stderr=subprocess.STDOUT)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    # Ctrl-C and SIGTERM both stop the run cleanly, even when a shell started us in the
    # background with SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    run_dir = new_run_dir(args.run_dir)
    print("demo.py:", {**vars(args), "run_dir": str(run_dir)}, flush=True)
    env = child_env()
    try:
        generate_data(run_dir / "data", args.count, args.seed, env)
        final = run_decoupled(args, run_dir, env)
        (run_dir / "final_status.json").write_text(json.dumps(final, indent=2))
        if not args.no_baseline:
            run_baseline(args, run_dir, env)
    except KeyboardInterrupt:
        print(f"demo: interrupted; every process it started is stopped. Partial results in "
              f"{run_dir}", flush=True)
        return 130
    subprocess.run([sys.executable, "plot.py", "--run-dir", str(run_dir)], check=True,
                   cwd=HERE, env=env)
    quality = final["oracle"]["synthetic_gradient_quality"]
    print(f"demo: synthetic vs true gradients at the end: mean cosine similarity "
          f"{fmt(quality['cosine_similarity'], '.3f')}")
    print(f"demo: everything is in {run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
