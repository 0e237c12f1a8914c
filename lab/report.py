"""What the lab's measurements share: numbers over seeds as the tables show them (a spread and
its cell 'mean (min-max)'), Markdown tables, the machine in words, the run folder and its files,
a child process that writes its result as JSON, and the options' "2,4,8" type."""

import argparse
import ctypes
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

if not __package__:       # imported as `report` by `python lab/X.py`, which needs `-m` instead
    # the command that runs each file that is not run as its own module
    COMMANDS = {"report": "bench", "image_table": "experiments --images",
                "live_cost": "bench --live-cost"}
    stem = Path(sys.argv[0]).stem
    print(f"run it as: python -m lab.{COMMANDS.get(stem, stem)} {shlex.join(sys.argv[1:])}"
          .rstrip(), file=sys.stderr)
    sys.exit(2)

import numpy as np

from parts import children
from runner import launch


def spread(values):
    """(mean, min, max) of the values that are not None, or None if there are none."""
    values = [v for v in values if v is not None]
    return (statistics.fmean(values), min(values), max(values)) if values else None


def mean(values):
    """The mean of the values that are not None, or None if there are none."""
    s = spread(values)
    return s and s[0]


def groups(runs, *keys):
    """{(run[key] for each key): [its runs]} in first-seen order: the seeds of each setting."""
    found = {}
    for r in runs:
        found.setdefault(tuple(r[k] for k in keys), []).append(r)
    return found


def cell(s, spec=".4f", scale=1):
    """'mean (min-max)' of a spread, each times `scale` (100: percent), or '-'."""
    if s is None:
        return "-"
    mean_, lo, hi = (scale * v for v in s)
    return f"{mean_:{spec}} ({lo:{spec}}-{hi:{spec}})" if hi > lo else f"{mean_:{spec}}"


def percent(s):
    """A spread of accuracies as a cell in percent: '82.3 (81.0-84.0)'."""
    return cell(s, ".1f", 100)


def table(head, rows, *above):
    """A Markdown table (the head, the rule, a line per row) below the paragraphs `above`."""
    lines = [row(head), "|" + "---|" * len(head)] + [row(r) for r in rows]
    return "\n\n".join([*above, "\n".join(lines)])


def row(cells):
    return "| " + " | ".join(str(c) for c in cells) + " |"


def blas_info():
    """What numpy's BLAS says of itself: its configuration line and the kernel it chose for
    this processor (OpenBLAS's core name), read from the loaded library; {} if not OpenBLAS."""
    found = sorted({line.split()[-1] for line in Path("/proc/self/maps").read_text().splitlines()
                    if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    info = {}
    for path in found[:1]:
        lib = ctypes.CDLL(path)
        for key, names in (("core", ("scipy_openblas_get_corename64_", "openblas_get_corename")),
                           ("config", ("scipy_openblas_get_config64_", "openblas_get_config"))):
            f = next((getattr(lib, name) for name in names if hasattr(lib, name)), None)
            if f is not None:
                f.restype = ctypes.c_char_p
                info[key] = f().decode()
    return info


def machine():
    """This machine in a phrase: cores, processor, Python, numpy, OpenBLAS's kernel and
    threads (the hardware beside every number)."""
    model = "unknown processor"
    try:
        model = next((line.split(":", 1)[1].strip() for line in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), model)
    except OSError:
        pass
    return (f"{len(os.sched_getaffinity(0))} cores ({model}), Python {sys.version.split()[0]}, "
            f"numpy {np.__version__}, OpenBLAS kernel {blas_info().get('core', '?')}, "
            f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}")


def start(run_dir, prefix, who, line):
    """run_dir, or a new runs/<prefix><date-time>, created; `who: line; writing into it` said."""
    out_dir = launch.new_run_dir(run_dir, prefix)
    print(f"{who}: {line}; writing into {out_dir}", flush=True)
    return out_dir


def write(out_dir, name, text=None, data=None, draw=None):
    """name.md (text), name.json (data), name.png (draw(path)), those given, in out_dir; text."""
    if data is not None:
        (out_dir / f"{name}.json").write_text(json.dumps(data, indent=1))
    if text is not None:
        (out_dir / f"{name}.md").write_text(text + "\n")
    if draw is not None:
        draw(out_dir / f"{name}.png")
    return text


def finish(out_dir, name, text, who, **files):
    """write(out_dir, name, text, **files), the text printed and where it went said; 0."""
    print(write(out_dir, name, text, **files))
    print(f"{who}: {name}.md, and what goes with it, in {out_dir}", flush=True)
    return 0


def run_child(module, out, env, *argv):
    """`python -m module *argv` with env, a child that writes JSON to out; what it wrote."""
    subprocess.run(children.script_argv(module, *argv), env=env, check=True, cwd=children.TOP)
    return json.loads(Path(out).read_text())


def median_s(f, least, seconds=0.0, clock=time.perf_counter):
    """Median seconds (by clock) of f() over at least `least` calls and about `seconds`."""
    times, t_end = [], clock() + seconds
    while len(times) < least or clock() < t_end:
        t0 = clock()
        f()
        times.append(clock() - t0)
    return float(np.median(times))


def ints(text):
    """An argparse type: "2,4,8" -> [2, 4, 8], every value at least 1."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 2,4,8, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"every value must be at least 1, got {text!r}")
    return values
