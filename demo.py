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
3. train the same network with plain backprop in this process for the same number of seconds,
   with the decoupled trainers' optimizer, minibatch and learning rate (the fair comparison;
   --baseline-args gives sgd.py's tutorial settings instead);
4. draw the pictures with plot.py.
Everything the run produces (data, logs, metrics, weight snapshots, pictures) is in the run
folder, printed at the end. Ctrl-C at any point stops every process it started.
"""

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

import launch

D = launch.DecoupledConfig      # a dataclass's class attributes are its defaults: the demo's
B = launch.BackpropConfig       # sgd.py's settings, the baseline's defaults
DEFAULT_ORACLE_ARGS = " ".join(launch.option_argv(launch.DEMO_ORACLE))


def parse_args(argv):
    p = argparse.ArgumentParser(description="Run the whole synthetic-gradient demo: data, "
                                            "three processes, a backprop baseline, pictures.")
    p.add_argument("--duration", type=float, default=D.duration,
                   help="seconds the three processes train, and then plain backprop (default "
                        "%(default)g: with start-up and plotting the demo takes about 3 minutes)")
    p.add_argument("--count", type=int, default=D.count,
                   help="training examples to generate (default 20,000: in 75 s the input "
                        "trainer passes over them ~10 times, so layers 2-3 train on fresh "
                        "activations; with the original's 200,000 it would not finish one pass)")
    p.add_argument("--run-dir", type=Path, default=None,
                   help="folder for everything the run writes (default: a new "
                        "runs/<date-time> next to this file)")
    p.add_argument("--snapshot-interval", type=int, default=D.snapshot_interval,
                   help="seconds between weight snapshots (default %(default)s: ~25 frames in "
                        "75 s)")
    p.add_argument("--status-every", type=float, default=D.status_every,
                   help="seconds between status lines while training (default %(default)g)")
    p.add_argument("--input-learning-rate", type=float, default=D.input_learning_rate,
                   help="layer 1's eta (default %(default)s, averaged over minibatches of 10; "
                        "the original's 0.001 leaves layer 1 where it started in a few minutes, "
                        "and 0.1 moves it faster than layers 2-3 and the oracle can follow)")
    p.add_argument("--output-learning-rate", type=float, default=D.output_learning_rate,
                   help="layers 2-3's eta (default %(default)s with minibatches of 10; the "
                        "original's 0.001 per example needs many minutes)")
    p.add_argument("--output-batch-size", type=int, default=D.output_batch_size,
                   help="layers 2-3's minibatch (default %(default)s: vectorised, several times "
                        "faster than per-example updates in Python)")
    p.add_argument("--oracle-args", default=DEFAULT_ORACLE_ARGS,
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
                   help="options for the plain-backprop baseline (sgd.py's training, run in "
                        "this process): --learning-rate, --batch-size, --decay, --seed "
                        "(default: none, i.e. the decoupled trainers' own settings, layers "
                        "2-3's minibatch and learning rate with no decay, so the comparison is "
                        "fair; \"--batch-size 1 --learning-rate 0.002 --decay 0.997\" gives "
                        "sgd.py's tutorial settings, about twenty times worse after two minutes)")
    p.add_argument("--input-args", default="",
                   help="extra options for train_input.py, e.g. \"--synthetic-gradients local\" "
                        "(default: none)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the plain-backprop baseline (it takes another --duration seconds)")
    p.add_argument("--wire", choices=("json", "binary"), default=D.wire,
                   help="form of the bulk transfers (default %(default)s: raw arrays, ~100x "
                        "cheaper than JSON numbers, so layers 2-3 and the oracle get more "
                        "training done; json is the documented reference form)")
    p.add_argument("--seed", type=int, default=D.seed,
                   help="seeds the data and every process (default %(default)s)")
    args = p.parse_args(argv)
    if not args.duration > 0 or args.count < 1000:
        p.error("--duration must be positive and --count at least 1000")
    if args.seed == 2016:
        p.error("--seed 2016 is reserved for the held-out points")
    return args


def parse_baseline_args(text, same):
    """--baseline-args as BackpropConfig settings (the training options sgd.py has), over
    `same`: launch.backprop_like's settings of the decoupled run, the defaults."""
    p = argparse.ArgumentParser(prog="demo.py --baseline-args",
                                description="Options for the plain-backprop baseline.")
    p.add_argument("--learning-rate", type=float, default=same["learning_rate"],
                   help="eta at the start (default %(default)s, layers 2-3's; sgd.py's is "
                        f"{B.learning_rate})")
    p.add_argument("--batch-size", type=int, default=same["batch_size"],
                   help="examples per update (default %(default)s, layers 2-3's; sgd.py's is "
                        f"{B.batch_size}, per-example SGD); dL/dw is averaged over the minibatch")
    p.add_argument("--decay", type=float, default=same["decay"],
                   help="eta is multiplied by this after each epoch (default %(default)s, as "
                        f"the decoupled trainers; sgd.py's is {B.decay})")
    p.add_argument("--seed", type=int, default=same["seed"],
                   help="seeds the initial weights and the example order (default: demo.py's "
                        "--seed)")
    args = p.parse_args(text.split())
    if args.batch_size < 1 or not args.learning_rate > 0 or not 0 < args.decay <= 1:
        p.error("--batch-size must be at least 1, --learning-rate positive and --decay in "
                "(0, 1]")
    return {**same, **vars(args)}


def decoupled_config(args, run_dir):
    """Phase 2's settings, from the command line; the oracle's settings are --oracle-args alone
    (oracle={}), so that "" gives oracle.py's own defaults."""
    return launch.DecoupledConfig(
        run_dir=run_dir, count=args.count, duration=args.duration, seed=args.seed,
        snapshot_interval=args.snapshot_interval, status_every=args.status_every,
        wire=args.wire, input_learning_rate=args.input_learning_rate,
        output_learning_rate=args.output_learning_rate,
        output_batch_size=args.output_batch_size,
        oracle={}, oracle_args=tuple(args.oracle_args.split()),
        input_args=tuple(args.input_args.split()))


def backprop_config(args, run_dir, baseline):
    """Phase 3's settings: --duration seconds on the same data, a held-out measurement every
    20,000 examples (once a pass over the demo's data), the decoupled trainers' settings or
    --baseline-args."""
    return launch.BackpropConfig(
        data_dir=run_dir / "data", seconds=args.duration, eval_every=20_000,
        metrics=run_dir / "metrics" / "backprop.jsonl",
        weights_out=run_dir / "backprop" / "final.npz", **baseline)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = parse_args(argv)
    baseline = parse_baseline_args(args.baseline_args,
                                   launch.backprop_like(decoupled_config(args, None)))
    # Ctrl-C and SIGTERM both stop the run cleanly, even when a shell started us in the
    # background with SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    run_dir = launch.new_run_dir(args.run_dir)
    print("demo.py:", {**vars(args), "run_dir": str(run_dir)}, flush=True)
    env = launch.child_env()
    try:
        # 1. the data
        launch.generate_data(run_dir / "data", args.count, args.seed, env)
        # 2. the three processes
        final = launch.run_decoupled(decoupled_config(args, run_dir), env)
        (run_dir / "final_status.json").write_text(json.dumps(final, indent=2))
        # 3. plain backprop for as long
        if not args.no_baseline:
            print(f"demo: plain backprop, the same settings in one process, for "
                  f"{args.duration:.0f} s",
                  flush=True)
            with open(run_dir / "backprop.log", "w") as log:
                launch.train_backprop(backprop_config(args, run_dir, baseline), out=log)
    except KeyboardInterrupt:
        print(f"demo: interrupted; every process it started is stopped. Partial results in "
              f"{run_dir}", flush=True)
        return 130
    # 4. the pictures
    subprocess.run(launch.script_argv("plot.py", "--run-dir", run_dir), check=True,
                   cwd=launch.HERE, env=env)
    quality = final["oracle"]["synthetic_gradient_quality"]
    print(f"demo: synthetic vs true gradients at the end: mean cosine similarity "
          f"{launch.fmt(quality['cosine_similarity'], '.3f')}")
    print(f"demo: everything is in {run_dir}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
