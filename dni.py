"""Decoupled neural interfaces in one process: sgd.py, except a layer's gradient is a guess.

Run it (after `python generate.py`):

    python dni.py                                  # synthetic gradients, 60 s of training
    python dni.py --conditioned --hidden 0         # the paper's linear cDNI model
    python dni.py --update backprop                # the controls: true gradients,
    python dni.py --update frozen                  #   layer 1 never moves ("no bprop"),
    python dni.py --update random                  #   random directions of the true size
    python dni.py --examples 200000 --seconds inf --metrics runs/dni.jsonl
    python dni.py --data fashion-mnist --layers 3 --method cdni --steps 1500   # every layer
    python dni.py --task copy --truncation 3 --method dni      # an LSTM, through time
    python dni.py --help

The toy's layer 1 learns from a model's guess at its gradient, M(h) or M(h, y) (--conditioned,
the paper's cDNI), not from layers 2-3: it need not wait for them. --data fashion-mnist (or
mnist) decouples every layer of a classifier. The algorithm is parts/decoupled.py's. --task
copy (or repeat-copy) cuts an LSTM in time instead: parts/recurrent.py, docs/through-time.md.
Ctrl-C stops the toy or images after the step it is in: measured, its files written.
"""

import argparse
import dataclasses
import math
import signal
import sys
import threading
from pathlib import Path

import generate
from datasets import copy_tasks, images
from parts import decoupled, optimizers, recurrent

TOY, IMAGES = decoupled.DEFAULTS["toy"], decoupled.DEFAULTS["images"]
# --task copy or repeat-copy: --method's names for parts/recurrent.py's methods, and the
# options those runs take (every other must keep its default).
THROUGH_TIME = {"backprop": "bptt", "dni": "dni", "cdni": "cdni"}
TIME_OPTIONS = ("task", "truncation", "method", "steps", "seed", "learning_rate", "batch_size")


def both(name):
    """'default X for the toy, Y for images' for an option whose default depends on --data."""
    return f"default {TOY[name]:g} for the toy, {IMAGES[name]:g} for images"


def make_parser():
    p = argparse.ArgumentParser(description="Synthetic gradients in one process: a layer "
                                            "learning from a model's guess at its gradient.")
    p.add_argument("--data", choices=("toy",) + images.NAMES, default="toy",
                   help="what to learn (default toy, generate.py's target)")
    p.add_argument("--task", choices=("layers",) + copy_tasks.TASKS, default="layers",
                   help="layers (default: a network cut between layers) or an LSTM cut in time, "
                        "with --truncation, --method (backprop: truncated BPTT, dni or cdni), "
                        "--steps, --seed, --learning-rate, --batch-size only")
    p.add_argument("--optimizer", choices=tuple(optimizers.OPTIMIZERS), default="adam",
                   help="every layer's optimizer (default adam)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help=f"every layer's learning rate ({both('learning_rate')})")
    p.add_argument("--model-optimizer", choices=tuple(optimizers.OPTIMIZERS),
                   default="adam", help="the models' optimizer (default adam, the oracle's)")
    p.add_argument("--model-learning-rate", type=float, default=None,
                   help=f"the models' learning rate ({both('model_learning_rate')})")
    p.add_argument("--hidden", type=int, default=None,
                   help=f"a model's hidden units, 0 for linear ({both('hidden')})")
    p.add_argument("--zero-init", action=argparse.BooleanOptionalAction, default=True,
                   help="a model's last layer starts at zero: no noise at first (default on)")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"examples per step of every layer and model ({both('batch_size')})")
    p.add_argument("--seed", type=generate.seed, default=0,
                   help="the network, the models, the order and random directions (default 0)")
    p.add_argument("--metrics", type=generate.out_path, default=None,
                   help="append a JSON line per measurement to this file (default: none)")
    p.add_argument("--weights-out", type=generate.out_path, default=None,
                   help="save the final layers here (.npz; default: not saved)")
    toy = p.add_argument_group("the toy (--data toy)")
    toy.add_argument("--data-dir", type=Path, default=decoupled.TOP / "data",
                     help="x.npy and y.npy (default data/, where generate.py writes)")
    toy.add_argument("--update", choices=decoupled.METHODS, default="synthetic",
                     help="what layer 1 learns from (default synthetic; the others are "
                          "controls: parts/decoupled.py)")
    toy.add_argument("--conditioned", action="store_true",
                     help="the model also sees y, the paper's cDNI (default off: h alone)")
    toy.add_argument("--seconds", type=float, default=None,
                     help=f"seconds of training, inf for none (default {TOY['seconds']:g})")
    toy.add_argument("--examples", type=int, default=None,
                     help="stop after this many examples too (default: no limit)")
    toy.add_argument("--eval-every", type=int, default=None,
                     help=f"examples between measurements (default {TOY['eval_every']:,})")
    toy.add_argument("--heldout", type=int, default=generate.HELDOUT_COUNT,
                     help="fresh points for the held-out MSE (default 20,000: ~1%% noise)")
    pics = p.add_argument_group("images (--data fashion-mnist or mnist)")
    pics.add_argument("--image-dir", type=Path, default=None,
                      help="the IDX files' folder (default: where datasets/images.py looks)")
    pics.add_argument("--layers", type=int, default=3,
                      help="weight layers, one boundary after each hidden one (default 3)")
    pics.add_argument("--width", type=int, default=256,
                      help="units per hidden layer (default 256, the paper's)")
    pics.add_argument("--method", choices=tuple(decoupled.IMAGE_METHODS), default="cdni",
                      help="what each layer learns from (default cdni; dni sees h alone; the "
                           "others are controls: docs/images.md)")
    pics.add_argument("--steps", type=int, default=None,
                      help=f"minibatches of training (default {IMAGES['steps']}: 2.5 epochs)")
    pics.add_argument("--train-examples", type=int, default=None, metavar="N",
                      help="train on the first N training images only (default: all)")
    pics.add_argument("--measure-every", type=int, default=None,
                      help=f"steps between measurements (default {IMAGES['eval_every']})")
    in_time = p.add_argument_group("through time (--task copy or repeat-copy)")
    in_time.add_argument("--truncation", type=int, default=None,
                         help=f"T, the steps backpropagated through (default "
                              f"{recurrent.Config.truncation}: the paper's shortest but one)")
    return p


def group(p, title):
    """The parser's argument group whose title starts with `title`."""
    return next(g for g in p._action_groups if g.title.startswith(title))


def parse_args(argv):
    p = make_parser()
    args = p.parse_args(argv)
    if args.task != "layers":
        return through_time_args(p, args)
    toy = args.data == "toy"
    others = group(p, "through time")._group_actions + group(
        p, "images" if toy else "the toy")._group_actions        # the other data's
    for action in others:
        if getattr(args, action.dest) != action.default:
            where = ("--task copy or repeat-copy" if action.dest == "truncation" else
                     "--data fashion-mnist or mnist" if toy else "the toy (--data toy)")
            p.error(f"{action.option_strings[0]} is for {where} only")
    try:
        config_from_args(args).check()
    except ValueError as e:
        p.error(str(e) if toy else str(e).replace("eval_every (--eval-every)",
                                                  "measure_every (--measure-every)"))
    return args


def through_time_args(p, args):
    """args for --task copy or repeat-copy: TIME_OPTIONS only, --method one of
    THROUGH_TIME's, the values recurrent.Config checks."""
    for action in p._actions:
        if getattr(args, action.dest, action.default) != action.default and (
                action.dest not in TIME_OPTIONS):
            p.error(f"{action.option_strings[0]} is not for --task {args.task}")
    if args.method not in THROUGH_TIME:
        p.error(f"--method for --task {args.task} is one of {', '.join(THROUGH_TIME)}")
    try:
        recurrent_config(args).check()
    except ValueError as e:
        p.error(str(e))
    return args


def recurrent_config(args):
    """The recurrent.Config of --task copy or repeat-copy's options, the others its defaults."""
    given = {k: v for k, v in vars(args).items() if k in TIME_OPTIONS and v is not None}
    given["method"] = THROUGH_TIME[args.method]
    return recurrent.Config(**given)


def config_from_args(args):
    """The decoupled.Config of parse_args's options: --update or --method, --measure-every
    as eval_every, --seconds inf as no limit; an option not given takes its data's default."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    if args.data == "toy":
        given["method"] = given.pop("update")
    else:
        given["method"], given["conditioned"] = decoupled.IMAGE_METHODS[args.method]
        given["eval_every"] = given.pop("measure_every", decoupled.AUTO)
    config = decoupled.Config(**{f.name: given[f.name] for f in dataclasses.fields(
        decoupled.Config) if f.name in given})
    if config.seconds == math.inf:
        config.seconds = None
    return config


def main(argv=None):
    """Train as the options say, progress on stdout. 1 if the run diverged; 2, saying why in
    one line, if the images cannot be read; 130 if stopped by Ctrl-C (measured, its weights and
    metrics written)."""
    args = parse_args(argv)
    if args.task != "layers":
        config = recurrent_config(args)
        print(f"dni.py: {dataclasses.asdict(config)}", flush=True)
        result = recurrent.run(config, out=sys.stdout)
        print(f"dni.py: done ({config.method}, T = {config.truncation}): longest length "
              f"learned {result['length']} in {config.steps:,} minibatches, "
              f"{result['seconds']:.1f} s", flush=True)
        return 0
    stop, handler = threading.Event(), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())    # Ctrl-C: after this step
    try:
        result = decoupled.run(config_from_args(args), out=sys.stdout, stop=stop)
    except images.DataError as e:
        print(f"dni.py: {e}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGINT, handler)
    if stop.is_set():
        print("dni.py: stopped by Ctrl-C (measured above; --weights-out and --metrics written)",
              flush=True)
        return 130
    return 1 if result["diverged"] else 0


if __name__ == "__main__":
    sys.exit(main())
