"""A middle stage of a chain: layers between two synthetic-gradient boundaries (chain.py).

Run it (chain.py starts every stage of a chain; by hand, for a 2-32-32-1 network split in 3):

    python oracle.py --port 5011 --width 32                    # the boundary below this stage
    python oracle.py --port 5012 --width 32                    # the boundary above it
    python train_output.py --port 5013 --sizes 32-1 --oracle-url http://127.0.0.1:5012
    python train_middle.py --port 5010 --sizes 32-32 --oracle-url http://127.0.0.1:5011 \\
        --above-oracle-url http://127.0.0.1:5012 --next-url http://127.0.0.1:5013
    python train_input.py --width 32 --oracle-url http://127.0.0.1:5011 \\
        --output-url http://127.0.0.1:5010

It is train_output.py's trainer with the loss replaced by a synthetic gradient dL/dh_out
(from a copy of the model above, --above-oracle-url), plus train_input.py's hand-off of
(i, h_out, y) to --next-url. The three-process system is the two-stage case of a chain.
"""

import sys
import threading

import numpy as np

import sgd
import synthgrad
import train_input
import train_output
from parts import boundary, options, sender, server

DEFAULTS = {**train_output.DEFAULTS, "sizes": (32, 32),
            "above_oracle_url": None, "next_url": None,
            "refresh_every": train_input.DEFAULTS["refresh_every"], "update": "synthetic"}


class MiddleTrainer(train_output.OutputTrainer):
    """Layers sizes[0] -> ... -> sizes[-1], none linear, trained on synthetic gradients from
    the boundary above, teaching the boundary below with the gradients they pass down."""

    role, title = "middle_stage", "middle stage"
    last_linear = False                 # its output is the next stage's input

    def __init__(self, **config):
        c = {**DEFAULTS, **config}
        if c["update"] == "frozen":        # no gradient ever goes down, no model learns here
            c.update(send_gradients=False, colocated=False)
        super().__init__(**c)
        binary, token = c["wire"] == "binary", c["token"]
        self.above = boundary.LocalSyntheticGradients(
            synthgrad.OracleClient(c["above_oracle_url"], binary=binary, token=token),
            c["refresh_every"], self.stop, width=c["sizes"][-1])
        self.next = synthgrad.OutputTrainerClient(c["next_url"], binary=binary, token=token)
        self.up = sender.Sender(self.next.send_examples, "activations to the next stage",
                                max_pending=c["max_examples"], linger=sender.SENDER_LINGER)
        self.h_out = None

    def start_training(self):
        """Fetch the model above in the background (a stage may start before its oracle),
        then train."""
        if self.config["update"] != "frozen":
            threading.Thread(target=self._fetch_above, daemon=True, name="above-model").start()
        super().start_training()

    def _fetch_above(self):
        if not self.above.start():      # refused (a token, another width; said): it would never
            self.failed.set()           # train, so the server ends, exit 1

    def train_pass(self, chunk=synthgrad.MAX_CHUNK):
        if self.config["update"] != "frozen" and self.above.weights is None:
            return False                                # no model above yet: nothing to learn
        trained = super().train_pass(chunk)
        self.last_train_mse = None                      # no loss here: the status says "-"
        return trained

    def train_chunk(self, x, y):
        """Per minibatch of x = h_in (m, n_in): forward, backprop the synthetic dL/dh_out, step.
        Returns (0.0, no loss here; dL/dh_in (m, n_in)); h_out (m, n_out) waits in self.h_out."""
        bs, update = self.config["batch_size"], self.config["update"]
        self.h_out = np.empty((len(x), self.layers[-1].w.shape[1]))
        dL_dh = np.zeros_like(x)
        for k in range(0, len(x), bs):
            rows = slice(k, k + bs)
            self.h_out[rows] = sgd.feed_forward(self.layers, x[rows])
            if update == "frozen":
                continue
            g = self.above(self.h_out[rows], y[rows])                  # synthetic dL/dh_out
            if update == "random":
                g = boundary.random_directions(g, self.rng)
            dL_dh[rows] = sgd.backward(self.layers, g)                 # dL/dh_in
            self.optimizer.step()
        return 0.0, dL_dh

    def after_chunk(self, idx, y):
        """Send (i, h_out, y) to the next stage, fire-and-forget."""
        self.up.put(idx, self.h_out, y)

    def status_fields(self):
        return {**super().status_fields(), "activations_to_next_stage": dict(self.up.counts),
                "model_above_version": self.above.version}

    def close(self):
        super().close()
        self.up.close()


def create_app(config=None):
    """The middle stage's Flask app: train_output.py's endpoints on a MiddleTrainer."""
    return train_output.create_app(config, trainer_class=MiddleTrainer)


def parse_args(argv):
    p = train_output.argument_parser(
        "Train the middle layers of a chain on synthetic gradients from the boundary above; "
        "teach the boundary below.", DEFAULTS, live=False)
    p.add_argument("--above-oracle-url", default=None,
                   help="the oracle of the boundary above, whose model gives dL/dh_out "
                        "(default with --colocated: --next-url, which learns it beside its layers)")
    p.add_argument("--next-url", required=True,
                   help="the next stage (train_middle.py or train_output.py), which receives "
                        "(i, h_out, y)")
    train_input.synthetic_arguments(p, "its layers")
    args = train_output.check_args(p, p.parse_args(argv), last_is_output=False)
    if args.above_oracle_url is None:
        if not args.colocated:
            p.error("--above-oracle-url is required (or --colocated, to take the model of the "
                    "boundary above from --next-url)")
        args.above_oracle_url = args.next_url
    options.check_positive(p, args, "refresh_every")
    return args


def main(argv=None, stop=None):
    """stop: a threading.Event that stops it as SIGTERM does (run in a thread: a Ray actor)."""
    return server.run_server(parse_args(argv), create_app, "train_middle.py", stop=stop)


if __name__ == "__main__":
    sys.exit(main())

