"""What a chain of stages could gain with a core per process, from the parts of its work
(lab/bench.py --chain-parts runs it and prints the table; docs/chain.md says what it leaves out):

    python -m lab.chain_speed --widths 32,512 --batch-sizes 10 --out parts.json

The CPU time per example, on one core, of every part of a 4-stage chain of 2-W-W-W-W-1: one
process's backprop, each stage's training, a message (a real POST of 500 rows). A stage costs its
training plus every message it handles; with a core per process the chain runs at its slowest
stage's rate.
"""

import argparse
import itertools
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    import report                        # noqa: F401  lab/report.py says how to run it, and exits

import numpy as np

import sgd
import synthgrad
import train_middle
import train_output
from lab.report import ints, median_s
from parts import boundary, http, optimizers, options

CHUNK = synthgrad.MAX_CHUNK                 # rows per training chunk and per message
SECONDS = 1.0                               # seconds of calls behind each median


def per_example_us(f, rows, clock=time.process_time):
    """Median microseconds per row of f() (which handles `rows` rows), after a warm-up, over
    calls made for about SECONDS (at least 3); by default in the CPU time of every thread."""
    f()
    return 1e6 * median_s(f, 3, SECONDS, clock) / rows


def trainer(cls, sizes, batch_size, folder, **extra):
    return cls(sizes=sizes, batch_size=batch_size, max_examples=CHUNK, progress_dir=folder,
               send_gradients=False, **extra)


def time_one_process(width, batch_size, folder, clock=time.process_time):
    """µs per example (CPU time, or clock's) of backprop of the whole network in one process."""
    rng = np.random.default_rng(0)
    x2, y = rng.random((CHUNK, 2)), rng.random(CHUNK)
    one = trainer(train_output.OutputTrainer, (2, width, width, width, width, 1), batch_size,
                  folder)
    try:
        return per_example_us(lambda: one.train_chunk(x2, y), CHUNK, clock=clock)
    finally:
        one.close()


def time_training(width, batch_size, folder):
    """CPU µs per example of each stage's training, and of one process training it all."""
    result = {"one_process": time_one_process(width, batch_size, folder)}
    rng = np.random.default_rng(0)
    x2, xw = rng.random((CHUNK, 2)), rng.random((CHUNK, width))
    y = rng.random(CHUNK)
    model = boundary.SyntheticGradientModel.for_boundary(width, 0).weights()   # (h, y) -> 12 -> W

    layer = sgd.Layer(2, width, sgd.Sigmoid, rng)              # stage 1: train_input's step
    adam = optimizers.make("adam", [layer], 0.005)
    local = boundary.LocalSyntheticGradients(None, 1.0, None, width)   # its local mode
    local.weights, local.conditioned = model, True

    def stage1():
        for k in range(0, CHUNK, batch_size):
            rows = slice(k, k + batch_size)
            layer.backprop(local(layer.feed_forward(x2[rows]), y[rows]))
            adam.step()
    result["stage1"] = per_example_us(stage1, CHUNK)

    middle = trainer(train_middle.MiddleTrainer, (width, width), batch_size, folder,
                     above_oracle_url="http://127.0.0.1:9", next_url="http://127.0.0.1:9")
    middle.above.weights, middle.above.conditioned = model, True
    result["middle_stage"] = per_example_us(lambda: middle.train_chunk(xw, y), CHUNK)
    last = trainer(train_output.OutputTrainer, (width, width, 1), batch_size, folder)
    result["stage4"] = per_example_us(lambda: last.train_chunk(xw, y), CHUNK)
    for t in (middle, last):
        t.close()
    return result


def time_message(width, folder):
    """CPU µs per example of one POST /training_example of CHUNK rows of `width`: encoding,
    HTTP, waitress, Flask, decoding and storing, both ends in this process's time."""
    server, hand_over = http.listen("127.0.0.1", 0, "lab/chain_speed.py",
                                    synthgrad.MAX_BODY_BYTES)
    app = train_output.create_app(dict(sizes=(width, 1), max_examples=CHUNK, progress_dir=folder,
                                       send_gradients=False, wire="binary"))
    hand_over(app)
    stop = threading.Event()           # http.serve's way to end a server run in a thread
    thread = threading.Thread(target=http.serve, args=(server, "lab/chain_speed.py"),
                              kwargs=dict(stop=stop, on_stop=app.config["TRAINER"].close),
                              daemon=True)
    thread.start()
    client = synthgrad.OutputTrainerClient(
        f"http://127.0.0.1:{server.effective_port}", binary=True)
    rng = np.random.default_rng(1)
    i, h, y = np.arange(CHUNK), rng.random((CHUNK, width)), rng.random(CHUNK)
    try:
        return per_example_us(lambda: client.send_examples(i, h, y), CHUNK)
    finally:
        client.close()
        stop.set()
        thread.join(5)


def measure(width, batch_size):
    with tempfile.TemporaryDirectory() as folder:
        train = time_training(width, batch_size, folder)
        message, gradients = time_message(width, folder), time_message(2 * width, folder)
    middle = train["middle_stage"] + 2 * message + gradients
    stages = {"stage1": train["stage1"] + message, "stage2": middle, "stage3": middle,
              "stage4": train["stage4"] + message + gradients}
    slowest = max(stages.values())
    return {"width": width, "batch_size": batch_size, "training_us": train,
            "message_us": message, "gradient_message_us": gradients, "stage_us": stages,
            "one_process_us": train["one_process"], "slowest_stage_us": slowest,
            "speed_up": train["one_process"] / slowest}


def main(argv=None):
    p = argparse.ArgumentParser(description="CPU time per example of each part of a 4-stage "
                                            "chain of 2-W-W-W-W-1, as JSON")
    p.add_argument("--widths", type=ints, default=[32, 64, 128, 256, 512, 1024],
                   help="the widths W (default 32,64,...,1024)")
    p.add_argument("--batch-sizes", type=ints, default=[10, 100],
                   help="the minibatches (default 10,100)")
    p.add_argument("--out", type=Path, required=True, help="where the JSON goes")
    p.add_argument("--one-process", action="store_true",
                   help="time only backprop of the whole network in one process, in wall-clock "
                        "time (CPU time would add up the BLAS threads)")
    args = p.parse_args(argv)
    options.setup_logging("chain_speed")
    rows = []
    for batch_size, width in itertools.product(args.batch_sizes, args.widths):
        print(f"lab/chain_speed.py: width {width}, minibatch {batch_size}", file=sys.stderr,
              flush=True)
        if not args.one_process:
            rows.append(measure(width, batch_size))
            continue
        with tempfile.TemporaryDirectory() as folder:
            rows.append({"width": width, "batch_size": batch_size, "one_process_us":
                         time_one_process(width, batch_size, folder, clock=time.perf_counter)})
    args.out.write_text(json.dumps({
        "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default"),
        "clock": "wall clock" if args.one_process else "CPU time", "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
