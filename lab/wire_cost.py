"""What a chunk of activations costs on the wire, JSON against binary, at a chain's widths; run
by hand (it prints numbers, which vary with the machine and the day):

    python -m lab.wire_cost                       # widths 24, 256, 1024; 500-row chunks

For each width and form: one POST /training_example body's size, and the time both ends spend on
it in one process (the median of --repeats). bench_codec is lab/bench.py's protocol figures.
"""

import argparse
import json
import sys
import time

if not __package__:                      # `python lab/X.py`: the imports below need `-m`
    import report                        # noqa: F401  lab/report.py says how to run it, and exits

import numpy as np

import sgd
import synthgrad
from lab import report
from lab.report import ints, median_s
from parts import options


def bench_codec(n=synthgrad.MAX_CHUNK, repeat=50):
    """Microseconds per example to encode + decode a chunk of n (h, gradient, y) rows."""
    rng = np.random.default_rng(0)
    i, h, g, y = np.arange(n), rng.random((n, 24)), rng.standard_normal((n, 24)), rng.random(n)

    def batched():
        body = json.dumps(synthgrad.encode_gradients(i, h, g, y))
        synthgrad.decode_gradients(synthgrad.parse_json(body), n)

    def original():
        body = json.dumps([{"i": int(k), "h": synthgrad.encode_array(h[k]),
                            "gradient": synthgrad.encode_array(g[k])} for k in range(n)])
        synthgrad.decode_gradients(synthgrad.parse_json(body), n)

    def binary():
        body = synthgrad.encode_binary({"i": i, "h": h, "gradient": g, "y": y})
        synthgrad.decode_gradients(synthgrad.parse_binary(body), n)

    # One synthetic-gradient request of 10 activations, the question and its answer.
    h10 = h[:10]

    def estimate_json():
        body = json.dumps(synthgrad.encode_estimate_request(h10))
        synthgrad.decode_estimate_request(synthgrad.parse_json(body))
        answer = json.dumps({"gradients": synthgrad.encode_array(g[:10])})
        synthgrad.decode_estimate_response(synthgrad.parse_json(answer), 10)

    def estimate_binary():
        synthgrad.decode_estimate_request(synthgrad.parse_binary(
            synthgrad.encode_binary({"activations": h10})))
        synthgrad.decode_estimate_response(synthgrad.parse_binary(
            synthgrad.encode_binary({"gradients": g[:10]})), 10)

    return {"batched_us_per_example": 1e6 * median_s(batched, repeat) / n,
            "original_us_per_example": 1e6 * median_s(original, repeat) / n,
            "binary_us_per_example": 1e6 * median_s(binary, repeat) / n,
            "estimate_json_us_per_request": 1e6 * median_s(estimate_json, 20 * repeat),
            "estimate_binary_us_per_request": 1e6 * median_s(estimate_binary, 20 * repeat)}


def measure(width, rows=synthgrad.MAX_CHUNK, repeats=3, seed=0):
    """{"json": {...}, "binary": {...}} for one chunk of `rows` examples of width `width`: each
    form's bytes, encode and decode seconds (the median of repeats), and their sum per example."""
    rng = np.random.default_rng(seed)
    i, h, y = np.arange(rows), rng.uniform(0, 1, (rows, width)), rng.integers(0, 10, rows) * 1.0
    forms = {"json": (lambda: json.dumps(synthgrad.encode_training_examples(i, h, y)).encode(),
                      json.loads),
             "binary": (lambda: synthgrad.encode_binary({"i": i, "x": h, "y": y}),
                        synthgrad.parse_binary)}
    out = {}
    for form, (encode, parse) in forms.items():
        def decode(body, parse=parse):
            return synthgrad.decode_training_examples(parse(body), rows, width)
        body = encode()
        got = decode(body)
        assert np.array_equal(got[1], h) and np.array_equal(got[2], y)      # the same numbers
        enc, dec = median_s(encode, repeats), median_s(lambda b=body: decode(b), repeats)
        out[form] = {"bytes": len(body), "encode_s": enc, "decode_s": dec,
                     "us_per_example": 1e6 * (enc + dec) / rows}
    return out


def sgd_us_per_example(n=20_000):
    """The toy's backprop (sgd.train, minibatches of 10) on this machine, µs per example."""
    rng = np.random.default_rng(0)
    layers = sgd.make_network(rng)
    x, y = rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, n)
    t0 = time.perf_counter()
    sgd.train(layers, x, y, (slice(k, k + 10) for k in range(0, n, 10)),
              lambda: sgd.descend(layers, 0.01))
    return 1e6 * (time.perf_counter() - t0) / n


def main(argv=None):
    p = argparse.ArgumentParser(description="Time one 500-example chunk of activations on the "
                                            "wire, JSON against binary, at a chain's widths.")
    p.add_argument("--widths", type=ints, default=[24, 256, 1024],
                   help="widths of h to measure (default 24,256,1024)")
    p.add_argument("--repeats", type=int, default=3,
                   help="take the median of this many timings (default %(default)s)")
    args = p.parse_args(argv)
    options.check_at_least(p, args, 1, "repeats")
    print(f"machine: {report.machine()}; sgd.py's toy backprop {sgd_us_per_example():.1f} µs "
          f"per example (for scale)")
    print(f"one chunk of {synthgrad.MAX_CHUNK} examples (i, h, y), encoded and decoded in one "
          f"process, the median of {args.repeats}:")
    print(report.table(["width", "JSON bytes", "binary bytes", "JSON µs/example",
                        "binary µs/example", "JSON / binary"], []))
    for width in args.widths:
        m = measure(width, repeats=args.repeats)
        j, b = m["json"], m["binary"]
        print(report.row([width, f"{j['bytes']:,}", f"{b['bytes']:,}",
                          f"{j['us_per_example']:.2f}", f"{b['us_per_example']:.3f}",
                          f"{j['us_per_example'] / b['us_per_example']:.0f}x"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
