"""Decoupled neural interfaces in one process: sgd.py, except a layer's gradient is a guess.

Run it (after `python generate.py`):

    python dni.py                                  # synthetic gradients, 60 s of training
    python dni.py --conditioned --hidden 0         # the paper's linear cDNI model
    python dni.py --update backprop                # the controls: true gradients,
    python dni.py --update frozen                  #   layer 1 never moves ("no bprop"),
    python dni.py --update random                  #   random directions of the true size
    python dni.py --examples 200000 --seconds inf --metrics runs/dni.jsonl
    python dni.py --data fashion-mnist --layers 3 --method cdni --steps 1500   # every layer
    python dni.py --help

This is Jaderberg et al. 2016 (arXiv 1608.05343), synchronously. The toy: h = a1 (n, 24) is
layer 1's output and g = dL/dh (n, 24) the gradient backprop hands down to it. A model M
guesses g_hat = M(h), or M(h, y) when --conditioned (the paper's cDNI): Dense(hidden, sigmoid)
-> Dense(24), oracle.py's model. Layer 1 updates from g_hat as soon as it has h, without
waiting for layers 2-3: that decouples it. M learns by regression onto the true g, one
optimizer step per minibatch on Keras's "mse". oracle.py, train_output.py and train_input.py
run the same algorithm in three processes.

What M has to learn: for one example, g = (y_hat - y) dy_hat/dh. The direction dy_hat/dh
depends only on h and the slowly changing layers 2-3; the error y_hat - y needs y. M(h) alone
must learn the network's own residual as a function of h (at best the gradient averaged over
the targets that go with h); M(h, y) is handed the error's y part, so even a linear M can
follow it.

--data fashion-mnist (or mnist) decouples every layer of an image classifier instead, a model
at every boundary learning what the layer above hands down. parts/decoupled.py is the one
algorithm for both: its docstring gives the step, the methods and the controls.
"""

import argparse
import dataclasses
import math
import sys
from pathlib import Path

from datasets import images
from parts import decoupled, optimizers

TOY, IMAGES = decoupled.DEFAULTS["toy"], decoupled.DEFAULTS["images"]


def both(name, toy_why, images_why=""):
    """'default X for the toy (why); Y for images (why)' for an option whose default
    depends on --data."""
    return (f"default {TOY[name]:g} for the toy{toy_why}; {IMAGES[name]:g} for images"
            f"{images_why}")


def make_parser():
    p = argparse.ArgumentParser(
        description="Synthetic gradients in one process: sgd.py's network, with layer 1 "
                    "(or every layer, on images) learning from a model's guess at its "
                    "gradient, or from a control.")
    p.add_argument("--data", choices=("toy",) + images.NAMES, default="toy",
                   help="what to learn (default toy: generate.py's target, layer 1 "
                        "decoupled; the images decouple every layer of a classifier)")
    p.add_argument("--optimizer", choices=tuple(optimizers.OPTIMIZERS), default="adam",
                   help="every layer's optimizer (default adam, which every comparison "
                        "here uses)")
    p.add_argument("--learning-rate", type=float, default=None,
                   help=both("learning_rate", ", the best of 0.001-0.02 for backprop"))
    p.add_argument("--model-optimizer", choices=tuple(optimizers.OPTIMIZERS),
                   default="adam", help="optimizer of the synthetic-gradient models "
                                        "(default adam, as the oracle's)")
    p.add_argument("--model-learning-rate", type=float, default=None,
                   help=both("model_learning_rate", ", Keras's Adam default",
                             ": a model chasing a changing network's gradients must keep up"))
    p.add_argument("--hidden", type=int, default=None,
                   help="hidden units of a synthetic-gradient model, 0 for a linear model ("
                        + both("hidden", ", the oracle's sigmoid units",
                               ", the paper's linear model for these networks") + ")")
    p.add_argument("--zero-init", action=argparse.BooleanOptionalAction, default=True,
                   help="start each model's last layer at zero, so the first synthetic "
                        "gradients are zero rather than noise (default on, the paper's)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="examples per step of every layer and model ("
                        + both("batch_size", ", the three-process trainers'") + ")")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the network (sgd.py's with this seed), the models, the "
                        "example order and the random directions (default 0)")
    p.add_argument("--metrics", type=Path, default=None,
                   help="append a JSON line per measurement to this file (default: none)")
    p.add_argument("--weights-out", type=Path, default=None,
                   help="save the final layers here (.npz, snapshots.save_layers; default: "
                        "not saved)")
    toy = p.add_argument_group("the toy (--data toy)")
    toy.add_argument("--data-dir", type=Path, default=decoupled.TOP / "data",
                     help="folder holding x.npy and y.npy (default data/ next to this file, "
                          "where generate.py writes)")
    toy.add_argument("--update", choices=decoupled.METHODS, default="synthetic",
                     help="what layer 1 learns from (default synthetic, the algorithm; the "
                          "controls: backprop the true gradient, frozen nothing, random "
                          "random directions of the true gradient's size, "
                          "random-synthetic-norm of the synthetic one's)")
    toy.add_argument("--conditioned", action="store_true",
                     help="the model also sees the target y (the paper's cDNI) (default "
                          "off: h alone, as the original oracle)")
    toy.add_argument("--seconds", type=float, default=None,
                     help=f"seconds of training, measuring not counted (default "
                          f"{TOY['seconds']:g}: long enough for the controls to separate; "
                          "inf for no limit with --examples)")
    toy.add_argument("--examples", type=int, default=None,
                     help="stop after this many examples too (default: no limit); a budget "
                          "in examples compares modes of different speeds fairly")
    toy.add_argument("--eval-every", type=int, default=None,
                     help=f"examples between held-out measurements (default "
                          f"{TOY['eval_every']:,}: each costs ~30 ms, not counted)")
    toy.add_argument("--heldout", type=int, default=20_000,
                     help="fresh points held-out MSE is measured on (default 20,000: the "
                          "estimate's noise is then ~1%%)")
    pics = p.add_argument_group("images (--data fashion-mnist or mnist)")
    pics.add_argument("--image-dir", type=Path, default=None,
                      help="the folder of the four gzipped IDX files (default: where "
                           "datasets/images.py looks)")
    pics.add_argument("--layers", type=int, default=3,
                      help="weight layers, as the paper counts them: layers - 1 hidden ReLU "
                           "layers and boundaries (default 3: 784-256-256-10, the paper's "
                           "smallest)")
    pics.add_argument("--width", type=int, default=256,
                      help="units per hidden layer (default 256, the paper's)")
    pics.add_argument("--method", choices=tuple(decoupled.IMAGE_METHODS), default="cdni",
                      help="what each layer learns from (default cdni, the paper's: h and "
                           "the label; dni h alone; the controls: backprop, top-only (only "
                           "the last layer learns), random (the true gradients' lengths))")
    pics.add_argument("--steps", type=int, default=None,
                      help=f"minibatches of training (default {IMAGES['steps']}: 2.5 epochs)")
    pics.add_argument("--measure-every", type=int, default=None,
                      help=f"steps between measurements of test accuracy and cosines "
                           f"(default {IMAGES['eval_every']}: ten a run, not counted)")
    return p


def parse_args(argv):
    p = make_parser()
    args = p.parse_args(argv)
    toy = args.data == "toy"
    other = p._action_groups[-1 if toy else -2]._group_actions    # the other data's
    for action in other:
        if getattr(args, action.dest) != action.default:
            p.error(f"{action.option_strings[0]} is for "
                    f"{'--data fashion-mnist or mnist' if toy else 'the toy (--data toy)'} "
                    "only")
    try:
        config_from_args(args).check()
    except ValueError as e:
        why = str(e)
        p.error(why if toy else why.replace("eval_every (--eval-every)",
                                            "measure_every (--measure-every)"))
    return args


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
    one line, if the images cannot be read."""
    args = parse_args(argv)
    try:
        result = decoupled.run(config_from_args(args), out=sys.stdout)
    except images.DataError as e:
        print(f"dni.py: {e}", file=sys.stderr)
        return 2
    return 1 if result["diverged"] else 0


if __name__ == "__main__":
    sys.exit(main())
