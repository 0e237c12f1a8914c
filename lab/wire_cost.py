"""What a chunk of activations costs on the wire, JSON against binary, at a chain's widths.

Run by hand (a benchmark: it prints numbers; speed varies with the machine and the day):

    python -m lab.wire_cost                       # widths 24, 256, 1024; 500-row chunks
    python -m lab.wire_cost --widths 256 --repeats 5

A stage hands the next one (i, h, y) for up to 500 examples at a time, POST /training_example.
For each width and form this times what both ends do with such a body in one process (the
sender's encoding, the receiver's decoding and checking; the median of --repeats) and gives its
size; HTTP and the network cost about the same per byte in both forms. The toy's backprop time
per example is printed for scale.
"""

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    print(f"run it as: python -m lab.{Path(__file__).stem} {shlex.join(sys.argv[1:])}".rstrip(),
          file=sys.stderr)
    sys.exit(2)

import numpy as np

import sgd
import synthgrad
from lab.bench import timed
from lab.race import ints


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
        enc, dec = timed(encode, repeats), timed(lambda b=body: decode(b), repeats)
        out[form] = {"bytes": len(body), "encode_s": enc, "decode_s": dec,
                     "us_per_example": 1e6 * (enc + dec) / rows}
    return out


def sgd_us_per_example(n=20_000):
    """The toy's backprop (sgd.train, minibatches of 10) on this machine, µs per example."""
    rng = np.random.default_rng(0)
    layers = sgd.make_network(rng)
    x, y = rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, n)

    def step():
        for layer in layers:
            layer.descend(0.01)
    t0 = time.perf_counter()
    sgd.train(layers, x, y, (slice(k, k + 10) for k in range(0, n, 10)), step)
    return 1e6 * (time.perf_counter() - t0) / n


def main(argv=None):
    p = argparse.ArgumentParser(description="Time one 500-example chunk of activations on the "
                                            "wire, JSON against binary, at a chain's widths.")
    p.add_argument("--widths", type=ints, default=[24, 256, 1024],
                   help="widths of h to measure (default 24,256,1024)")
    p.add_argument("--repeats", type=int, default=3,
                   help="take the median of this many timings (default %(default)s)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}, numpy {np.__version__}; sgd.py's toy backprop "
          f"{sgd_us_per_example():.1f} µs per example (for scale)")
    print(f"one chunk of {synthgrad.MAX_CHUNK} examples (i, h, y), encoded and decoded in one "
          f"process, the median of {args.repeats}:")
    print("| width | JSON bytes | binary bytes | JSON µs/example | binary µs/example "
          "| JSON / binary |")
    print("|---|---|---|---|---|---|")
    for width in args.widths:
        m = measure(width, repeats=args.repeats)
        j, b = m["json"], m["binary"]
        print(f"| {width} | {j['bytes']:,} | {b['bytes']:,} | {j['us_per_example']:.2f} | "
              f"{b['us_per_example']:.3f} | {j['us_per_example'] / b['us_per_example']:.0f}x |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
