"""What a chunk of activations costs on the wire, JSON against binary, at a chain's widths.

Run by hand (a benchmark: it prints numbers; speed varies with the machine and the day):

    python -m lab.wire_cost                       # widths 24, 256, 1024; 500-row chunks
    python -m lab.wire_cost --widths 256 --repeats 5

A stage hands the next one (i, h, y) for up to 500 examples at a time (synthgrad.MAX_CHUNK),
POST /training_example. For each width and each of the protocol's two forms this times, in
one process, what both ends do with such a body: the sender's encoding (synthgrad's encoders,
then json.dumps for JSON) and the receiver's decoding and checking
(synthgrad.decode_training_examples, after json.loads for JSON), the median of --repeats,
and gives the body's size. HTTP itself and the network are left out: they cost about the same
per byte in both forms, and the body's size says how many bytes. For scale, sgd.py's time per
example of the toy's backprop on this machine is printed too. (lab.bench's codec figures are
the same measurement at the toy's width 24, for the gradients' bodies.)
"""

import argparse
import json
import platform
import sys
import time

import numpy as np

import sgd
import synthgrad
from lab.bench import timed


def measure(width, rows=synthgrad.MAX_CHUNK, repeats=3, seed=0):
    """{"json": {...}, "binary": {...}} for one chunk of `rows` examples of width `width`: each
    form's bytes, encode and decode seconds (the median of repeats), and their sum per example."""
    rng = np.random.default_rng(seed)
    i, h, y = np.arange(rows), rng.uniform(0, 1, (rows, width)), rng.integers(0, 10, rows) * 1.0
    out = {}
    for form in ("json", "binary"):
        if form == "json":
            def encode():
                return json.dumps(synthgrad.encode_training_examples(i, h, y)).encode()

            def decode(body):
                return synthgrad.decode_training_examples(json.loads(body), rows, width)
        else:
            def encode():
                return synthgrad.encode_binary({"i": i, "x": h, "y": y})

            def decode(body):
                return synthgrad.decode_training_examples(synthgrad.parse_binary(body), rows,
                                                          width)
        body = encode()
        got = decode(body)
        assert np.array_equal(got[1], h) and np.array_equal(got[2], y)      # the same numbers
        enc, dec = timed(encode, repeats), timed(lambda: decode(body), repeats)
        out[form] = {"bytes": len(body), "encode_s": enc, "decode_s": dec,
                     "us_per_example": 1e6 * (enc + dec) / rows}
    return out


def sgd_us_per_example(n=20_000):
    """The toy's backprop (sgd.train_step, minibatches of 10) on this machine, µs per example."""
    rng = np.random.default_rng(0)
    layers = sgd.make_network(rng)
    x, y = rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, n)
    t0 = time.perf_counter()
    for k in range(0, n, 10):
        sgd.train_step(layers, x[k:k + 10], y[k:k + 10], 0.01)
    return 1e6 * (time.perf_counter() - t0) / n


def main(argv=None):
    p = argparse.ArgumentParser(description="Time one 500-example chunk of activations on the "
                                            "wire, JSON against binary, at a chain's widths.")
    p.add_argument("--widths", default="24,256,1024",
                   help="widths of h to measure, comma-separated (default %(default)s)")
    p.add_argument("--repeats", type=int, default=3,
                   help="take the median of this many timings (default %(default)s)")
    args = p.parse_args(argv)
    try:
        widths = [int(w) for w in args.widths.split(",")]
    except ValueError:
        p.error(f"--widths must be whole numbers like 24,256 (got {args.widths!r})")
    if min(widths) < 1 or args.repeats < 1:
        p.error("--widths and --repeats must be at least 1")
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, numpy {np.__version__}; sgd.py's toy backprop "
          f"{sgd_us_per_example():.1f} µs per example (for scale)")
    print(f"one chunk of {synthgrad.MAX_CHUNK} examples (i, h, y), encoded and decoded in one "
          f"process, the median of {args.repeats}:")
    print("| width | JSON bytes | binary bytes | JSON µs/example | binary µs/example "
          "| JSON / binary |")
    print("|---|---|---|---|---|---|")
    for width in widths:
        m = measure(width, repeats=args.repeats)
        j, b = m["json"], m["binary"]
        print(f"| {width} | {j['bytes']:,} | {b['bytes']:,} | {j['us_per_example']:.2f} | "
              f"{b['us_per_example']:.3f} | {j['us_per_example'] / b['us_per_example']:.0f}x |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
