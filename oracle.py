"""The oracle: learns to predict dL/dh from h, and serves those synthetic gradients.

Run it first (it waits for nobody):

    python oracle.py                    # serves on 127.0.0.1:5001
    python oracle.py --port 5001 --seed 0 --epochs-per-pass 2
    python oracle.py --help

It keeps the latest (h, y, dL/dh) per example that the output trainer sends (POST
/provide_gradient) and, in a background thread, trains a small Keras model on them, pass after
pass: [h, y] (25,) -> Dense(12, sigmoid) -> Dense(24) -> g_hat, loss mean((g_hat - g)^2). The
input trainer's requests (POST /estimate_gradients, GET /weights) are answered from its newest
weights by the same model in numpy (boundary.model_forward), far cheaper than Keras's predict.
"""

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from flask import Response, request

import generate
import synthgrad
from parts import boundary, checkpoint, http, options, server

log = logging.getLogger("oracle")

DEFAULTS = dict(
    **boundary.DEFAULTS,     # how the model learns, as a co-located stage's (docs/settings.md)
    **options.SERVER_DEFAULTS,
    publish_every=20,        # batches between publishing weights to the request path
    min_examples=32,         # do not train on fewer than one batch
    seed=0,
)
OPTIMIZERS = ("adadelta", "adam", "sgd")

# The original project's oracle (oracle.py --original): an h-only Adadelta model, random start.
ORIGINAL = dict(hidden=12, optimizer="adadelta", zero_init=False, conditioned=False,
                learning_rate=1.0, epochs_per_pass=2, batch_size=32)


def build_model(n_in, width, hidden, learning_rate, seed, optimizer="adadelta", zero_init=False):
    """The Keras oracle model: (n_in,) -> Dense(hidden, sigmoid) -> Dense(width, linear); n_in
    is width + 1 when conditioned on y, hidden 0 is linear, zero_init zeroes the last layer."""
    with tensorflow_quietly():
        import keras
        keras.utils.set_random_seed(seed)
        optimizers = {"adadelta": keras.optimizers.Adadelta, "adam": keras.optimizers.Adam,
                      "sgd": keras.optimizers.SGD}
        last = dict(kernel_initializer="zeros", bias_initializer="zeros") if zero_init else {}
        hidden_layers = [keras.layers.Dense(hidden, activation="sigmoid")] if hidden else []
        model = keras.Sequential([keras.Input(shape=(n_in,)), *hidden_layers,
                                  keras.layers.Dense(width, activation="linear", **last)])
        model.compile(optimizer=optimizers[optimizer](learning_rate=learning_rate), loss="mse")
    return model


# What TensorFlow writes to stderr on every start on a machine without a GPU: harmless, and
# alarming to a newcomer ("E0000 ... failed call to cuInit: ... CUDA error").
NO_GPU = "Could not find cuda drivers"
STARTUP_NOISE = ("All log messages before absl::InitializeLog()", NO_GPU,
                 "oneDNN custom operations are on", "cpu_feature_guard.cc",
                 "To enable the following instructions:")


@contextlib.contextmanager
def tensorflow_quietly():
    """Run the block with file descriptor 2 (TensorFlow's C++ logs) captured, then pass on every
    line but STARTUP_NOISE (and cuInit's failure without CUDA drivers): real errors still show."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            noise = STARTUP_NOISE + (("failed call to cuInit",)
                                     if any(NO_GPU in line for line in lines) else ())
            sys.stderr.writelines(line for line in lines if not any(n in line for n in noise))
            sys.stderr.flush()


class KerasOptimizer:
    """The Keras model's optimizer as checkpoint.save and load take one: a name, a state."""

    def __init__(self, model, name):
        self.model, self.name = model, name

    def variables(self):
        optimizer = self.model.optimizer
        if not optimizer.built:
            optimizer.build(self.model.trainable_variables)
        return optimizer.variables

    def state(self):
        return {str(k): np.asarray(v) for k, v in enumerate(self.variables())}

    def load_state(self, arrays):
        for k, v in enumerate(self.variables()):      # not its learning rate: --learning-rate's
            if not v.path.endswith("learning_rate"):
                v.assign(arrays[str(k)])


class Oracle(server.TrainingServer):
    """The oracle's state: held gradients, the Keras model, published weights, quality measures."""

    role = title = "oracle"

    def __init__(self, width=synthgrad.HIDDEN_SIZE, **config):
        c = {**DEFAULTS, **config}
        self.width = width
        self.h = np.zeros((c["max_examples"], width))          # (max_examples, 24)
        self.g = np.zeros((c["max_examples"], width))          # dL/dh, same shape
        self.y = np.zeros(c["max_examples"])                   # targets, for a conditioned oracle
        self.conditioned = bool(c["conditioned"])
        self.held = np.zeros(c["max_examples"], dtype=bool)
        self.received_at = np.zeros(c["max_examples"])         # time.time() of the latest g
        self.model = build_model(width + self.conditioned, width, c["hidden"],
                                 c["learning_rate"], c["seed"], c["optimizer"], c["zero_init"])
        self.keras_optimizer = KerasOptimizer(self.model, c["optimizer"])
        self.weights = [w.astype(np.float64) for w in self.model.get_weights()]
        self.quality = boundary.Quality(c["quality_window"], synthgrad.MAX_CHUNK)
        super().__init__(c)                                    # resumes a checkpoint if asked

    # --- the request path -----------------------------------------------------------------
    def inputs(self, h, y):
        """The model's input: h (n, width), or [h, y] (n, width + 1) when conditioned."""
        return np.column_stack([h, y]) if self.conditioned else h

    def estimate(self, h, y=None):
        """Synthetic gradients (n, width) for h (n, width) (and y (n,)), by the newest weights."""
        return boundary.model_forward(self.weights, self.inputs(h, y))   # one consistent set

    def receive(self, i, h, g, y=None):
        """Measure the current predictions against true gradients g at h, then keep them."""
        g_hat = self.estimate(h, y)
        with self.lock:
            self.quality.add(g_hat, g)
            self.h[i] = h
            self.g[i] = g
            if y is not None:
                self.y[i] = y
            self.held[i] = True
            self.received_at[i] = time.time()
            self.counts["gradients_received"] += len(i)

    def status_fields(self):
        """The oracle's own /status fields."""
        return {
            "gradients_received": self.counts["gradients_received"],
            "estimates_served": self.counts["estimates"],
            "training_steps": self.counts["steps"],
            "batch_size": self.config["batch_size"],
        }

    # --- the training thread --------------------------------------------------------------
    def publish(self):
        """Make the model's current weights the ones that answer requests, if they are finite;
        otherwise keep the last finite ones, mark the oracle diverged and stop training."""
        weights = [w.astype(np.float64) for w in self.model.get_weights()]
        if checkpoint.finite(*weights):
            self.weights = weights
            return True
        checkpoint.diverge(self, "the oracle model", "; answering with its last finite weights")
        return False

    def train_pass(self):
        """Train the model on everything held, `epochs_per_pass` epochs; False if too little."""
        import keras
        c = self.config
        with self.lock:
            idx = np.flatnonzero(self.held)
            if len(idx) < c["min_examples"]:
                return False
            # copies: requests may overwrite rows meanwhile
            inputs, g = self.inputs(self.h[idx], self.y[idx]), self.g[idx]
            self.staleness = float(np.mean(time.time() - self.received_at[idx]))
        oracle = self

        class Publish(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                oracle.counts["steps"] += 1
                if batch % c["publish_every"] == 0:
                    oracle.publish()
                if oracle.stop.is_set() or not np.isfinite((logs or {}).get("loss", 0.0)):
                    self.model.stop_training = True

        history = self.model.fit(inputs, g, epochs=c["epochs_per_pass"], batch_size=c["batch_size"],
                                 shuffle=True, verbose=0, callbacks=[Publish()])
        if not self.publish():
            return True
        losses = history.history.get("loss", [])
        if losses and np.isfinite(losses[-1]):
            self.last_train_mse = float(losses[-1])
        self.counts["passes"] += 1
        return True

    # --- checkpoints: the model, its optimizer's state, every gradient held, the counters ----
    HELD = ("h", "g", "y", "held")
    COUNTERS = ("gradients_received", "estimates", "steps", "passes")
    SO_FAR = ("passes", "steps")

    def models(self):
        return {"": (self.model.get_weights(), self.keras_optimizer)}

    def load_models(self, weights, counts):
        self.model.set_weights(weights[""])
        self.publish()


def create_app(config=None):
    """The oracle's Flask app; its Oracle is app.config["ORACLE"]. Does not start training."""
    oracle = Oracle(**(config or {}))
    app = server.make_app("oracle", oracle, "ORACLE")

    @app.post(synthgrad.ESTIMATE_GRADIENTS)
    def estimate_gradients():
        h = synthgrad.decode_estimate_request(http.read_body(), oracle.width, oracle.conditioned)
        h, y = h if oracle.conditioned else (h, None)
        oracle.counts["estimates"] += len(h)
        g = oracle.estimate(h, y)
        if request.mimetype == synthgrad.BINARY_TYPE:      # a binary question, a binary answer
            return Response(synthgrad.encode_binary({"gradients": g}),
                            content_type=synthgrad.BINARY_TYPE)
        return {"gradients": synthgrad.encode_array(g)}

    @app.post(synthgrad.PROVIDE_GRADIENT)
    def provide_gradient():
        i, h, g, *y = synthgrad.decode_gradients(http.read_body(),
                                                 oracle.config["max_examples"], oracle.width,
                                                 need_y=oracle.conditioned)
        oracle.receive(i, h, g, *y)
        return {"ok": True, "received": len(i)}

    @app.get(synthgrad.WEIGHTS)
    def weights():
        return http.weights_answer(oracle.weights, oracle.conditioned, oracle.counts["steps"])

    return app


def parse_args(argv):
    d = DEFAULTS
    p = argparse.ArgumentParser(description="Serve synthetic gradients dL/dh and learn them "
                                            "from the true gradients the output trainer sends.")
    p.add_argument("--width", type=int, default=synthgrad.HIDDEN_SIZE,
                   help="width of the h it serves gradients for (default %(default)s)")
    p.add_argument("--zero-init", action=argparse.BooleanOptionalAction, default=d["zero_init"],
                   help="start the last layer at zero, as the paper does (default: on)")
    p.add_argument("--conditioned", action=argparse.BooleanOptionalAction,
                   default=d["conditioned"],
                   help="predict dL/dh from (h, y), the paper's cDNI (default: on; the "
                        "original's is off)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d["optimizer"],
                   help="the model's optimizer (default %(default)s; the original's is adadelta)")
    p.add_argument("--learning-rate", type=float, default=d["learning_rate"],
                   help="the optimizer's learning rate (default %(default)s, Keras's Adam's)")
    for name, what in (("hidden", "hidden units of the model; 0: linear"),
                       ("epochs-per-pass", "epochs over the examples held per pass"),
                       ("batch-size", "Keras minibatch size, large: a step costs about the same"),
                       ("publish-every", "batches between updates of the answering weights"),
                       ("quality-window", "examples in the quality measure's window"),
                       ("seed", "seeds the model's initial weights and Keras' shuffling")):
        p.add_argument(f"--{name}", type=generate.seed if name == "seed" else int,
                       default=d[name.replace("-", "_")],
                       help=f"{what} (default %(default)s)")
    options.add_server_arguments(p, synthgrad.DEFAULT_ORACLE_PORT,
                                 "status, synthetic-gradient quality",
                                 "the model, its optimizer's state and every gradient held",
                                 "memory is about 2 x N x 24 float64")
    args = options.parse_with_original(
        p, argv, ORIGINAL, "an h-only model, random last layer, Adadelta at 1.0, batches of 32")
    options.check_server_arguments(p, args)
    options.check_at_least(p, args, 0, "hidden")
    options.check_at_least(p, args, 1, "width", "epochs_per_pass", "batch_size",
                           "publish_every", "quality_window")
    return args


def main(argv=None, stop=None):
    """stop: a threading.Event that stops it as SIGTERM does (run in a thread: a Ray actor)."""
    return server.run_server(parse_args(argv), create_app, "oracle.py", stop=stop)


if __name__ == "__main__":
    sys.exit(main())
