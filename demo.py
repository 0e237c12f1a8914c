"""The whole demo in one command: data, the three processes, the pictures, then stop.

Run it (the README's `make demo` does this inside the virtual environment):

    python demo.py                       # about 3 minutes; prints the run folder at the end
    python demo.py --duration 60 --count 50000
    python demo.py --help

It generates the data into a new run folder, starts oracle.py, train_output.py and
train_input.py as separate processes on free loopback ports (the same scripts you would start
by hand in three terminals), lets them train for --duration seconds, stops them with SIGTERM
(each saves its final weights), and runs plot.py on what they saved. Everything the run
produces (data, logs, weight snapshots, pictures) is in the run folder.
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

import numpy as np

import synthgrad

HERE = Path(__file__).resolve().parent
LISTENING = re.compile(r"listening on (http://\S+)")

# Defaults chosen so the demo fits visibly well on a 2-core machine in ~3 minutes; the scripts'
# own defaults are the original project's (see README, "Defaults").
DEMO = dict(
    input_learning_rate=0.1,
    output_learning_rate=0.01,
    output_batch_size=10,
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
                                            "three processes, pictures.")
    p.add_argument("--duration", type=float, default=150.0,
                   help="seconds the three processes train (default 150: with start-up and "
                        "plotting the demo takes about 3 minutes)")
    p.add_argument("--count", type=int, default=200_000,
                   help="training examples to generate (default 200,000, the original's)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="folder for everything the run writes (default: a new "
                        "runs/<date-time> next to this file)")
    p.add_argument("--snapshot-interval", type=int, default=5,
                   help="seconds between weight snapshots (default 5: ~30 frames in 150 s)")
    p.add_argument("--input-learning-rate", type=float, default=DEMO["input_learning_rate"],
                   help="layer 1's eta (default %(default)s; the original's 0.001 leaves layer 1 "
                        "where it started in a few minutes)")
    p.add_argument("--output-learning-rate", type=float, default=DEMO["output_learning_rate"],
                   help="layers 2-3's eta (default %(default)s, with --output-batch-size)")
    p.add_argument("--output-batch-size", type=int, default=DEMO["output_batch_size"],
                   help="layers 2-3's minibatch (default %(default)s: vectorised, much faster "
                        "than per-example updates in Python)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the data and every process (default 0)")
    p.add_argument("--oracle-args", default="",
                   help="extra options for oracle.py, e.g. \"--optimizer adam --learning-rate 0.003\"")
    args = p.parse_args(argv)
    if not args.duration > 0 or args.count < 1000:
        p.error("--duration must be positive and --count at least 1000")
    return args


def main(argv=None):
    args = parse_args(argv)
    run_dir = args.run_dir or HERE / "runs" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    data_dir, progress_dir = run_dir / "data", run_dir / "progress"
    print("demo.py:", {**vars(args), "run_dir": str(run_dir)}, flush=True)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    py = sys.executable

    subprocess.run([py, "generate.py", "--count", str(args.count), "--seed", str(args.seed),
                    "--out-dir", str(data_dir)], check=True, cwd=HERE, env=env)
    snap = ["--snapshot-interval", str(args.snapshot_interval), "--seed", str(args.seed)]
    procs = []
    try:
        oracle = Process("oracle", [py, "oracle.py", "--port", "0", "--max-examples",
                                    str(args.count), "--seed", str(args.seed),
                                    *args.oracle_args.split()],
                         run_dir / "oracle.log", env)
        procs.append(oracle)
        oracle_url = oracle.wait_url(120)
        output = Process("output trainer",
                         [py, "train_output.py", "--port", "0", "--oracle-url", oracle_url,
                          "--max-examples", str(args.count), "--progress-dir", str(progress_dir),
                          "--learning-rate", str(args.output_learning_rate),
                          "--batch-size", str(args.output_batch_size), *snap],
                         run_dir / "train_output.log", env)
        procs.append(output)
        output_url = output.wait_url(120)
        for client in (synthgrad.OracleClient(oracle_url), synthgrad.OutputTrainerClient(output_url)):
            client.wait_until_ready()
        print(f"demo: oracle at {oracle_url}, output trainer at {output_url}; training for "
              f"{args.duration:.0f} s", flush=True)
        inp = subprocess.run([py, "train_input.py", "--data-dir", str(data_dir),
                              "--oracle-url", oracle_url, "--output-url", output_url,
                              "--progress-dir", str(progress_dir),
                              "--learning-rate", str(args.input_learning_rate),
                              "--duration", str(args.duration), *snap], cwd=HERE, env=env)
        oracle_status = synthgrad.OracleClient(oracle_url).status()
        output_status = synthgrad.OutputTrainerClient(output_url).status()
    except KeyboardInterrupt:
        print("demo: interrupted; stopping the processes", flush=True)
        return 130
    finally:
        for proc in reversed(procs):
            proc.stop()
    (run_dir / "final_status.json").write_text(json.dumps(
        {"oracle": oracle_status, "output_trainer": output_status}, indent=2))
    if inp.returncode != 0:
        raise SystemExit(f"train_input.py failed with exit code {inp.returncode}")
    subprocess.run([py, "plot.py", "--progress-dir", str(progress_dir),
                    "--out-dir", str(run_dir / "plots")], check=True, cwd=HERE, env=env)
    quality = oracle_status["synthetic_gradient_quality"]
    print(f"demo: oracle's synthetic gradients vs true ones: mean cosine similarity "
          f"{quality['cosine_similarity']}, relative error {quality['relative_error']}")
    print(f"demo: everything is in {run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
