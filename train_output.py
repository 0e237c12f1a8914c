"""The output trainer: owns layers 2-3, trains on the activations it receives, sends true gradients.

Run it second, after the oracle (or in any order: it keeps what it cannot send yet):

    python train_output.py                        # serves on 127.0.0.1:5000
    python train_output.py --oracle-url http://127.0.0.1:5001 --progress-dir progress
    python train_output.py --help

It keeps the latest (h, y) per example that the input trainer posts (POST /training_example)
and, in a background thread, trains layers 2-3 on everything it holds, pass after pass, as
sgd.py trains (h (n, 24) -> sigmoid (n, 12) -> y_hat (n, 1), L = 1/2 (y_hat - y)^2). Backprop
also gives dL/dh, the *true* gradient layer 1 would need: it goes to the oracle, fire and
forget, or with --colocated teaches the boundary's model here.
"""

import argparse
import logging
import sys
import time

import numpy as np

import generate
import sgd
import synthgrad
from parts import (boundary, checkpoint, children, classify, http, optimizers, options, sender,
                   server, stepped)

log = logging.getLogger("train_output")

DEFAULTS = dict(
    oracle_url=synthgrad.DEFAULT_ORACLE_URL,
    sizes=(synthgrad.HIDDEN_SIZE, 12, 1),   # its layers' widths: h (24) -> 12 -> y (1)
    learning_rate=0.005,       # every stage's (train_input.py takes it; docs/settings.md)
    optimizer="adam",          # every stage's: adam or sgd (the original's)
    batch_size=10,             # minibatches, vectorised
    **options.SERVER_DEFAULTS,
    progress_dir=None,         # None: progress/<run>, a new folder named by the start time
    snapshot_interval=10,      # seconds, a tick every stage shares
    seed=0,
    send_gradients=True,
    wire="json",               # the documented format; "binary" is the fast opt-in form
    colocated=False,           # learn the boundary's model here (boundary.py), not in oracle.py
    activation="sigmoid",      # the hidden layers' (relu: a classifier's, with He's init)
    loss="squared",            # 1/2 (y_hat - y)^2, or cross-entropy: softmax of the logits
    classes=0,                 # a classifier's label count (its boundary model's one-hot)
    train_on="held",           # every example held, pass after pass; or "arrivals": each once
    delay=None,                # a chain counting steps (parts/stepped.py): the bound D
)


# The original project's layers 2-3 (train_output.py --original): per-example SGD at 0.001.
ORIGINAL = dict(learning_rate=0.001, optimizer="sgd", batch_size=1)


class OutputTrainer(server.StageServer):
    """Layers 2-3, the examples received so far, and the thread that trains on them."""

    role, title = "output_trainer", "output trainer"
    idle_wait = 0.05
    last_linear = True                  # its last layer predicts y (or a classifier's logits)
    FLATTEN = {"gradients_to_oracle": "gradients_"}

    def __init__(self, **config):
        c = {**DEFAULTS, **config}
        sizes = tuple(c["sizes"])
        self.width = width = sizes[0]                               # of the h it receives
        self.rng = np.random.default_rng(c["seed"])
        # 24 -> 12 -> 1 by default: sigmoid (or relu) layers, the last linear (y, or logits)
        self.layers = classify.make_layers(sizes, c["activation"], self.rng, self.last_linear)
        self.x = np.zeros((c["max_examples"], width))               # latest h per index
        self.y = np.zeros(c["max_examples"])                        # its target
        self.held = np.zeros(c["max_examples"], dtype=bool)
        self.received_at = np.zeros(c["max_examples"])             # time.time() of the latest h
        self.fresh = np.zeros(c["max_examples"], dtype=bool)       # not trained on since received
        self.arrival = np.zeros(c["max_examples"], dtype=np.int64)  # its place in the stream
        if c["train_on"] == "arrivals":                             # what is not trained yet
            self.HELD = (*self.HELD, "fresh", "arrival")            # is kept by a checkpoint
        # the true gradients dL/dh go to the oracle, or (--colocated) to the model learned here
        self.boundary = self.sender = self.oracle = None
        self.loss = sgd.SoftmaxCrossEntropy if c["loss"] == "cross-entropy" else sgd.SquaredError
        # a classifier's stage: every y it receives must be a label
        self.classes = c["classes"] or (sizes[-1] if self.loss is sgd.SoftmaxCrossEntropy else 0)
        if c["colocated"]:
            self.boundary = boundary.SyntheticGradientModel.for_boundary(
                width, (c["seed"], 1), self.classes)
            self.quality = boundary.Quality(boundary.DEFAULTS["quality_window"],
                                            synthgrad.MAX_CHUNK)
        elif c["send_gradients"]:
            self.oracle = synthgrad.OracleClient(c["oracle_url"],
                                                 binary=c["wire"] == "binary", token=c["token"])
            self.sender = sender.Sender(self.oracle.provide_gradients, "gradients to oracle",
                                        linger=sender.SENDER_LINGER)
        self.optimizer = optimizers.make(c["optimizer"], self.layers, c["learning_rate"])
        super().__init__(c)                                         # resumes if asked

    def after_chunk(self, idx, y):
        """Nothing here; a chain's middle stage sends its activations up (train_middle.py)."""

    def published_weights(self, after=None):
        """--colocated: (weights, conditioned, version) of the model learned here, at once."""
        return self.boundary.published, self.boundary.conditioned, self.boundary.version

    def receive(self, i, x, y, steps=None):
        """Keep the latest x = h (n, 24) and y (n,) of examples i (n,); steps is unused here.
        A classifier's y that is not labels: synthgrad.ProtocolError (a 400), nothing kept."""
        if self.classes:
            try:
                classify.labels_of(y, self.classes)
            except ValueError as e:
                raise synthgrad.ProtocolError(f"y: {e} (this stage classifies)") from None
        with self.lock:
            self.x[i] = x
            self.y[i] = y
            self.held[i] = True
            self.fresh[i] = True
            self.arrival[i] = self.counts["examples_received"] + np.arange(len(i))
            self.received_at[i] = time.time()
            self.counts["examples_received"] += len(i)

    def examples_to_train(self):
        """This pass's indices, under the lock: every example held in a random order (sgd's
        epoch), or with --train-on arrivals the whole minibatches not yet trained on."""
        if self.config["train_on"] == "held":
            return self.rng.permutation(np.flatnonzero(self.held))
        new = np.flatnonzero(self.fresh)
        new = new[np.argsort(self.arrival[new])]
        return new[:len(new) // self.config["batch_size"] * self.config["batch_size"]]

    def train_pass(self, chunk=synthgrad.MAX_CHUNK):
        """sgd's epoch, `chunk` examples at a time: after each, its true gradients go down and
        the clocks are visited. False if there is nothing to train on."""
        with self.lock:
            order = self.examples_to_train()
        if len(order) == 0:
            return False
        if self.counts["passes"] == 0 and self.counts["examples_trained"] == 0:
            self.snapshotter.save_initial(self.layers)        # time zero: the first pass
        bs = self.config["batch_size"]
        chunk = max(1, chunk // bs) * bs                   # whole batches in every chunk
        squared_error = age_sum = 0.0
        for start in range(0, len(order), chunk):
            if self.stop.is_set():
                return True
            idx = order[start:start + chunk]
            with self.lock:
                x, y = self.x[idx], self.y[idx]            # (m, 24), (m,): copies
                self.fresh[idx] = False                    # taken: the rest stay new till then
                age_sum += float(np.sum(time.time() - self.received_at[idx]))
            trained = checkpoint.guard(self, self.title, self.layers, self.train_chunk, x, y)
            if trained is None:                            # nothing NaN goes down
                return True
            chunk_error, dL_dh = trained
            squared_error += chunk_error
            if self.sender is not None:                    # y too, for a conditioned oracle
                self.sender.put(idx, x, dL_dh, y)
            if self.boundary is not None:                  # --colocated: the model learns here
                self.teach_boundary(x, y, dL_dh)
            self.after_chunk(idx, y)
            self.counts["examples_trained"] += len(idx)
            self.snapshotter.maybe_save(self.layers)
            self.checkpointer.maybe()
        self.last_train_mse = squared_error / len(order)
        self.staleness = age_sum / len(order)
        self.counts["passes"] += 1
        return True

    def train_chunk(self, x, y):
        """Backprop and one --optimizer step per minibatch of x = h (m, 24), y (m,). Returns the
        summed loss before each step ((y_hat - y)^2, or -log softmax(z)_y) and dL/dh (m, 24)."""
        bs = self.config["batch_size"]
        dL_dh = np.empty_like(x)
        if self.loss is sgd.SoftmaxCrossEntropy:
            y = classify.labels_of(y, self.layers[-1].w.shape[1])
        squared_error = 0.0
        twice = 2.0 if self.loss is sgd.SquaredError else 1.0    # (y_hat - y)^2, not sgd's half
        for k in range(0, len(x), bs):
            rows = slice(k, k + bs)
            y_hat, dL_dh[rows] = sgd.backprop(self.layers, x[rows], y[rows], self.loss)
            self.optimizer.step()
            squared_error += twice * float(np.sum(self.loss.loss(y_hat, y[rows])))
        return squared_error, dL_dh

    def teach_boundary(self, h, y, g):
        """--colocated: measure the model below against the true g, as the oracle does, then
        one pass of it over (h, y, g)."""
        model = self.boundary
        if model.diverged:
            return
        if self.classes and model.conditioned:                   # the label as a one-hot row
            y = classify.images.one_hot(classify.labels_of(y, self.classes), self.classes)
        g_hat = model.predict(h, y)                               # before it learns from g
        with self.lock:                                           # /status reads the quality
            self.quality.add(g_hat, g)
        model.learn_pass(h, y, g)
        if model.diverged:              # said by it; the stage below would follow a stale model
            self.diverged = True        # unseen: the stage stops, and /status says so
            self.stop.set()

    # --- checkpoints: its layers, the optimizer's state, everything held, the counters -----
    HELD = ("x", "y", "held")
    COUNTERS = ("examples_received", "examples_trained", "passes")

    def counters(self):
        counts = super().counters()
        if self.boundary is not None:
            counts["boundary_model_steps"] = self.boundary.version
        return counts

    def load_models(self, weights, counts):
        checkpoint.set_layers(self.layers, weights[""])
        if self.boundary is not None:
            self.boundary.load(weights["boundary_"], counts["boundary_model_steps"])

    def close(self):
        """Flush the gradient sender."""
        if self.sender is not None:
            self.sender.close()

    def status_fields(self):
        """StageServer's, its sender's counts (null if none); with --colocated, the model's
        steps."""
        return {**super().status_fields(),
                "gradients_to_oracle": dict(self.sender.counts) if self.sender else None,
                **({"boundary_model_steps": self.boundary.version} if self.boundary else {})}


def create_app(config=None, trainer_class=None):
    """The output trainer's Flask app; its OutputTrainer (or trainer_class) is
    app.config["TRAINER"]. It does not start training."""
    config = config or {}
    if config.get("delay") is not None:              # a chain counting steps
        trainer_class = stepped.SteppedStage
    trainer = (trainer_class or OutputTrainer)(**config)
    app = server.make_app("train_output", trainer, "TRAINER")

    @app.post(synthgrad.TRAINING_EXAMPLE)
    def training_example():
        body = http.read_body()
        i, x, y, steps = synthgrad.decode_training_examples(
            body, trainer.config["max_examples"], trainer.width, steps=True)
        trainer.receive(i, x, y, steps)
        return {"ok": True, "received": len(i)}

    if trainer.boundary is not None:                 # --colocated: the oracle's GET /weights
        @app.get(synthgrad.WEIGHTS)
        def weights():
            return http.weights_answer(*trainer.published_weights(http.int_argument("after")))

    return app


def parse_sizes(text):
    """"24-12-1" -> (24, 12, 1): layer widths, at least two, each at least 1 (argparse type)."""
    try:
        sizes = tuple(int(part) for part in text.replace(",", "-").split("-"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 24-12-1, got {text!r}") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two widths of 1 or more, got "
                                         f"{text!r}")
    return sizes


def format_sizes(sizes):
    return "-".join(map(str, sizes))


def layer_arguments(p, d, layers):
    """The options of every stage's layers, with defaults d: one optimizer for all of them."""
    p.add_argument("--learning-rate", type=float, default=d["learning_rate"],
                   help=f"eta for {layers} (default %(default)s; the original's is 0.001)")
    p.add_argument("--optimizer", choices=tuple(optimizers.OPTIMIZERS), default=d["optimizer"],
                   help=f"what steps {layers} (default %(default)s; the original's is sgd)")
    p.add_argument("--seed", type=generate.seed, default=d["seed"],
                   help=f"seeds the initial weights of {layers} and the order (default 0)")
    p.add_argument("--snapshot-interval", type=int, default=d["snapshot_interval"],
                   help="seconds between weight snapshots, a tick every stage shares (default 10)")


def stepped_arguments(p, first=False):
    """--delay and where the stage sits in the network dni.py draws (parts/stepped.py)."""
    p.add_argument("--delay", type=int, default=None, metavar="D",
                   help="count steps, in order: wait before step t until the model above has "
                        "learned from step t - 1 - D (default: off, clocks decide)")
    p.add_argument("--network", type=parse_sizes, default=None,
                   help="with --delay: the whole network's widths, drawn as dni.py draws them")
    p.add_argument("--splits", type=parse_splits, default=None,
                   help="with --delay: where the network is cut, e.g. 1,2,3")
    if not first:
        p.add_argument("--stage", type=int, default=None,
                       help="with --delay: which stage this is (2 is the one above the first)")


def check_stepped(p, args, stage=1):
    """With --delay: the layers of stage `stage` of --network cut at --splits are --sizes."""
    if args.delay is None:
        return
    if stage == 1:                                   # train_input.py's
        args.sizes = args.sizes or (args.network[0] if args.network else 0, args.width)
        if args.synthetic_gradients != "local" or args.update_probability != 1 or \
                not args.colocated:
            p.error("--delay counts every step: it needs --colocated (the stage above learns "
                    "the model and counts its steps), --synthetic-gradients local and "
                    "--update-probability 1")
    if args.delay < 0 or args.network is None or args.splits is None or stage is None:
        p.error("--delay D needs D >= 0, --network, --splits and (above the first) --stage")
    cuts = [0, *args.splits, len(args.network) - 1]
    if not 1 <= stage < len(cuts) or list(args.splits) != sorted(set(args.splits)) \
            or not 0 < args.splits[0] <= args.splits[-1] < len(args.network) - 1:
        p.error(f"--splits {args.splits} and --stage {stage} do not fit --network "
                f"{format_sizes(args.network)}")
    sizes = tuple(args.network[cuts[stage - 1]:cuts[stage] + 1])
    if tuple(args.sizes) != sizes:
        p.error(f"--sizes {format_sizes(args.sizes)} are not stage {stage}'s layers of "
                f"--network {format_sizes(args.network)} (those are {format_sizes(sizes)})")


def parse_splits(text):
    """"1,2,3" -> (1, 2, 3): the network cut after these many layers (argparse type)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer counts like 1,2,3, got {text!r}") \
            from None


def argument_parser(description, d=DEFAULTS, live=True):
    """The options of a stage that receives activations (train_middle.py's: its defaults d)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--oracle-url", default=d["oracle_url"],
                   help="the oracle of the boundary below (default %(default)s)")
    p.add_argument("--sizes", type=parse_sizes, default=d["sizes"],
                   help=f"its layers' widths, input to output (default {format_sizes(d['sizes'])})")
    layer_arguments(p, d, "its layers")
    p.add_argument("--batch-size", type=int, default=d["batch_size"],
                   help="examples per update (default %(default)s; the original's is 1)")
    p.add_argument("--wire", choices=("json", "binary"), default=d["wire"],
                   help="how gradients travel (default json; binary is far cheaper)")
    p.add_argument("--progress-dir", type=generate.out_path, default=d["progress_dir"],
                   help="where weight snapshots go (default: a new progress/<date-time>)")
    p.add_argument("--colocated", action="store_true",
                   help="learn the model of the boundary below here and serve it at GET "
                        "/weights: no oracle.py (default: off)")
    p.add_argument("--activation", choices=("sigmoid", "relu"), default=d["activation"],
                   help="the hidden layers' activation (default %(default)s; relu for images)")
    p.add_argument("--classes", type=int, default=d["classes"],
                   help="a classifier's number of labels (default 0: the toy; with --loss "
                        "cross-entropy, the last size)")
    p.add_argument("--train-on", choices=("held", "arrivals"), default=d["train_on"],
                   help="held (default): pass after pass over every example held; arrivals: "
                        "each activation once (docs/chain.md)")
    stepped_arguments(p)
    if live:                                      # the last stage: its loss, the run's page
        p.add_argument("--loss", choices=("squared", "cross-entropy"), default=d["loss"],
                       help="squared (default): 1/2 (y_hat - y)^2; cross-entropy: the outputs "
                            "are logits of the labels y")
        children.live_arguments(p)
    options.add_server_arguments(p, synthgrad.DEFAULT_OUTPUT_TRAINER_PORT,
                                 "examples held, passes, training MSE",
                                 "its layers, every example held and the counters",
                                 "memory is about N x 26 float64")
    return p


def check_args(p, args, last_is_output=True):
    """Refuse impossible values, one flag at a time; returns args."""
    options.check_server_arguments(p, args)
    options.check_at_least(p, args, 1, "batch_size", "snapshot_interval")
    if args.classes < 0 or args.classes == 1:
        p.error(f"--classes must be 0 (not a classifier) or at least 2 (got {args.classes})")
    if last_is_output and args.loss == "cross-entropy":
        if args.sizes[-1] < 2 or args.classes not in (0, args.sizes[-1]):
            p.error(f"with --loss cross-entropy --sizes must end in the number of classes, at "
                    f"least 2 (got {format_sizes(args.sizes)}, --classes {args.classes})")
        args.classes = args.sizes[-1]
    elif last_is_output and args.sizes[-1] != 1:
        p.error(f"--sizes must end in 1, the prediction (got {format_sizes(args.sizes)}; "
                f"a classifier's last stage takes --loss cross-entropy)")
    check_stepped(p, args, args.stage)
    return args


def parse_args(argv):
    p = argument_parser("Train layers 2-3 on the activations the input trainer sends; send "
                        "true gradients to the oracle.")
    return check_args(p, options.parse_with_original(p, argv, ORIGINAL,
                                                     "per-example SGD at learning rate 0.001"))


def live_page(args, url, trainer):
    """Start the live page beside the server (--live), its address into /status; if it cannot
    start, say so and train on without it."""
    try:
        page, stop = children.start_live_page(
            trainer.snapshotter.folder, port=args.live_port, token=args.token,
            options=["--output-url", url, *(["--oracle-url", args.oracle_url]
                                            if trainer.oracle is not None else [])])
    except SystemExit as e:
        log.warning("%s (is --live-port %s taken? --live-port 0 picks a free one); training "
                    "goes on without it", e, args.live_port)
        return None
    trainer.live_page = page
    log.info("watch it learn, live: %s", page)
    return stop


def main(argv=None, stop=None):
    """stop: a threading.Event that stops it as SIGTERM does (run in a thread: a Ray actor)."""
    args = parse_args(argv)
    return server.run_server(args, create_app, "train_output.py",
                              beside=live_page if args.live else None, stop=stop)


if __name__ == "__main__":
    sys.exit(main())
