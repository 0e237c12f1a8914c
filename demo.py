"""The whole demo in one command: data, the three processes, the controls, the baseline, the
pictures (docs/demo.md says what each phase shows).

    python demo.py                       # about 3.5 minutes; prints the run folder at the end
    python demo.py --duration 60 --count 50000
    python demo.py --help

The phases run one after another, each with the machine to itself. However the demo ends, what
was saved is drawn (RUN/cut_short.json says why it ended early).
"""

import argparse
import json
import subprocess
import sys

import generate
import sgd
from parts import children, options
from runner import launch, processes

D = launch.DecoupledConfig      # a dataclass's class attributes are its defaults: the demo's
B = launch.BackpropConfig       # sgd.py's settings, the baseline's defaults
DURATION = 40.0                 # seconds each of the four methods trains: ~3.5 minutes in all
CONTROLS = ("frozen", "random")


def parse_args(argv):
    p = argparse.ArgumentParser(description="Run the whole synthetic-gradient demo: data, "
                                            "three processes, a backprop baseline, pictures.")
    p.add_argument("--duration", type=float, default=DURATION,
                   help="seconds each method trains: synthetic gradients, each control and "
                        "backprop (default %(default)g: about 3.5 minutes in all)")
    p.add_argument("--count", type=int, default=D.count,
                   help="training examples to generate (default 20,000; docs/settings.md)")
    p.add_argument("--snapshot-interval", type=int, default=D.snapshot_interval,
                   help="seconds between weight snapshots (default %(default)s)")
    p.add_argument("--status-every", type=float, default=D.status_every,
                   help="seconds between status lines while training (default %(default)g)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=D.optimizer,
                   help="how every layer steps, in both trainers and the backprop baseline "
                        "(default %(default)s; sgd is the original's)")
    p.add_argument("--input-learning-rate", type=float, default=D.input_learning_rate,
                   help="layer 1's eta (default %(default)s, train_input.py's default)")
    p.add_argument("--output-learning-rate", type=float, default=D.output_learning_rate,
                   help="layers 2-3's eta, and the backprop baseline's (default %(default)s, "
                        "train_output.py's default)")
    p.add_argument("--output-batch-size", type=int, default=D.output_batch_size,
                   help="layers 2-3's minibatch, and the baseline's (default %(default)s, "
                        "train_output.py's default)")
    p.add_argument("--oracle-args", default="",
                   help="extra options for oracle.py (default: none, its own defaults; "
                        "\"--original\" gives the original's h-only Adadelta oracle)")
    p.add_argument("--baseline-args", default="",
                   help="the backprop baseline's --optimizer, --learning-rate, --batch-size, "
                        "--decay, --seed (default: layers 2-3's, no decay: a fair comparison)")
    p.add_argument("--input-args", default="",
                   help="extra options for train_input.py, e.g. \"--synthetic-gradients remote\" "
                        "(default: none)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the backprop baseline (it takes another --duration seconds)")
    p.add_argument("--no-controls", action="store_true",
                   help="skip the frozen and random controls (another --duration s each); "
                        "without them nothing says whether layer 1 learned")
    p.add_argument("--wire", choices=("json", "binary"), default=D.wire,
                   help="form of the bulk transfers (default %(default)s: raw arrays, cheaper "
                        "than JSON numbers; json is the documented reference form)")
    launch.run_arguments(p, "the demo (the pictures still drawn)", shown="every phase, the "
                         "controls and backprop too")
    args = p.parse_args(argv)
    options.check_positive(p, args, "duration", "status_every", "input_learning_rate",
                           "output_learning_rate")
    options.check_at_least(p, args, 1000, "count")
    options.check_at_least(p, args, 1, "output_batch_size", "snapshot_interval")
    generate.refuse_heldout_seed(p, args.seed)
    return args


def parse_baseline_args(text, same):
    """--baseline-args as BackpropConfig settings over `same` (the decoupled run's, defaults)."""
    p = argparse.ArgumentParser(prog="demo.py --baseline-args",
                                description="Options for the plain-backprop baseline.")
    for flag in ("learning-rate", "batch-size", "decay"):     # described as sgd.py does
        dest = flag.replace("-", "_")
        p.add_argument(f"--{flag}", type=type(getattr(B, dest)), default=same[dest],
                       help=f"{sgd.BY_DATA[flag][0]} (default %(default)s, the decoupled "
                            f"trainers'; sgd.py's is {getattr(B, dest)})")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=same["optimizer"],
                   help="how every layer steps (default %(default)s, the decoupled trainers'; "
                        f"sgd.py's is {B.optimizer})")
    p.add_argument("--seed", type=generate.seed, default=same["seed"],
                   help="seeds the initial weights and the example order (default: demo.py's "
                        "--seed)")
    args = p.parse_args(text.split())
    options.check_at_least(p, args, 1, "batch_size")
    options.check_positive(p, args, "learning_rate")
    if not 0 < args.decay <= 1:
        p.error(f"--decay must be in (0, 1] (got {args.decay:g})")
    return {**same, **vars(args)}


def decoupled_config(args, run_dir, update="synthetic", data_dir=None):
    """Phase 2's (and, with `update`, phase 3's) settings, from the command line; the oracle's
    settings are --oracle-args alone, so that "" gives oracle.py's own defaults."""
    return launch.config_from(
        launch.DecoupledConfig, args, run_dir=run_dir, update=update, data_dir=data_dir,
        oracle_args=tuple(args.oracle_args.split()), input_args=tuple(args.input_args.split()),
        restart=processes.RestartPolicy(restart=args.restart))


def backprop_config(args, run_dir, baseline):
    """Phase 4's settings: --duration seconds on the same data, held-out MSE every 20,000
    examples, the settings `baseline` (parse_baseline_args's)."""
    return launch.BackpropConfig(
        data_dir=run_dir / "data", seconds=args.duration, eval_every=20_000,
        metrics=run_dir / "metrics" / "backprop.jsonl",
        weights_out=run_dir / "backprop" / "final.npz", **baseline)


def main(argv=None):
    args = parse_args(argv)
    baseline = parse_baseline_args(args.baseline_args,
                                   launch.backprop_like(decoupled_config(args, None)))
    with launch.session(args, "demo") as (run_dir, env):
        cut_short, code = launch.outcome("demo", run_dir,
                                         lambda: run_phases(args, run_dir, baseline, env))
    if cut_short is not None:          # the pictures of what was done, and why it stopped
        print(f"demo: cut short: {cut_short}; drawing what was saved", flush=True)
        (run_dir / "cut_short.json").write_text(json.dumps({"cut_short": cut_short}))
    # 5. the pictures
    try:
        drawn = subprocess.run(children.script_argv("plot.py", "--run-dir", run_dir),
                               cwd=children.TOP, env=env).returncode == 0
    except KeyboardInterrupt:                   # every process is stopped; what they saved stays
        print(f"demo: interrupted while drawing; `python plot.py --run-dir {run_dir}` draws "
              "it", flush=True)
        return 130
    if not drawn:
        print(f"demo: plot.py could not draw {run_dir} (see above)", flush=True)
        return code or 1
    print(f"demo: everything is in {run_dir} (the pictures in {run_dir / 'plots'})", flush=True)
    return code


def run_phases(args, run_dir, baseline, env):
    """Phases 1-4 into run_dir; why they were cut short (a process died and was not mended),
    or None."""
    # 1. the data
    launch.generate_data(run_dir / "data", args.count, args.seed, env)
    # 2. the three processes
    final = launch.run_decoupled(decoupled_config(args, run_dir), env)
    (run_dir / "final_status.json").write_text(json.dumps(final, indent=2))
    if final["cut_short"] is not None:
        return final["cut_short"]
    # 3. the controls: the same three processes, layer 1 frozen or moved at random
    for update in () if args.no_controls else CONTROLS:
        moved = "moved in random directions" if update == "random" else update
        print(f"demo: control: layer 1 {moved}, the same three processes for "
              f"{args.duration:.0f} s", flush=True)
        folder = run_dir / "controls" / update
        folder.mkdir(parents=True, exist_ok=True)
        control = launch.run_decoupled(decoupled_config(args, folder, update, run_dir / "data"),
                                       env)
        if control["cut_short"] is not None:
            return f"control {update}: {control['cut_short']}"
    # 4. backprop for as long
    if not args.no_baseline:
        print(f"demo: backprop (true gradients), the same settings in one process, for "
              f"{args.duration:.0f} s of training", flush=True)
        with open(run_dir / "backprop.log", "w") as log:
            launch.train_backprop(backprop_config(args, run_dir, baseline), out=log,
                                  status_every=args.status_every)
    return None


if __name__ == "__main__":
    sys.exit(main())
