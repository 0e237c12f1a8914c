"""Synthetic gradients through time: an LSTM trained with truncated backprop through time,
the gradient beyond each cut zero (BPTT) or a model's guess at it (DNI, cDNI), climbing a
curriculum of Copy or Repeat Copy (datasets/copy_tasks.py). The paper's section 3.1.

    python dni.py --task copy --truncation 3 --method dni      # one run, the curriculum printed
    python -m lab.through_time                                 # the table: docs/through-time.md

The network reads x_t (n, X) and keeps a state s_t = (h_t, c_t), each (n, H). One step:

    z = [x_t, h_{t-1}] . W + b                   # (n, 4H): the four gates' inputs side by side
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o)       # input, forget, output gates
    g = tanh(z_g)                                # the candidate
    c_t = f * c_{t-1} + i * g                    # the cell remembers, forgets, writes
    h_t = o * tanh(c_t)
    p_t = sigmoid(h_t . V + b_y)                 # (n, outputs): each bit's probability

and a sequence's loss is the bit-wise cross-entropy summed over its steps and bits where the
task's mask is 1, so dL/d(h_t . V + b_y) = mask (p_t - y_t). Backward, from the last step of a
segment to its first, with dL/dh_t and dL/dc_t arriving from step t + 1 (or from beyond the
segment's end: zero, or the synthetic gradient):

    dh = dL/dh_t (from step t + 1 and from p_t);   dc = dL/dc_t + dh * o * (1 - tanh^2(c_t))
    dz_o = dh * tanh(c_t) * o (1 - o);   dz_i = dc * g * i (1 - i)
    dz_f = dc * c_{t-1} * f (1 - f);     dz_g = dc * i * (1 - g^2)
    dL/dW += [x_t, h_{t-1}]^T . dz;      [dL/dx_t, dL/dh_{t-1}] = dz . W^T
    dL/dc_{t-1} = dc * f

Truncation: a sequence is cut into segments of T steps (the first 1 to T long, drawn, so cuts
fall at every offset), each run forward from the last one's state, backward through its own
steps only, then an update. At the cut BPTT takes dL/ds = 0; DNI takes M(s) (parts/boundary.py),
M learning from the bootstrapped target the next segment backpropagates into its first state;
cDNI's M also sees the targets and mask of the T steps after the cut (docs/through-time.md).
"""

import collections
import dataclasses
import time

import numpy as np

import sgd
from datasets import copy_tasks
from parts import boundary, optimizers

METHODS = ("bptt", "dni", "cdni")


@dataclasses.dataclass
class Config:
    """One run: why each default is what it is is in docs/through-time.md."""
    task: str = "copy"
    method: str = "dni"
    truncation: int = 3                 # T, steps backpropagated through
    hidden: int = 64                    # LSTM units (more are too slow on 2 cores)
    batch_size: int = 16                # sequences per minibatch
    learning_rate: float = 3e-3         # the LSTM's Adam
    model_learning_rate: float = 1e-3   # M's Adam
    model_hidden: int = 0               # M's hidden units: 0, linear
    steps: int = 5000                   # minibatches of sequences: the budget
    threshold: float = 0.15             # bits wrong per sequence to pass a length
    window: int = 10                    # minibatches the error is averaged over
    seed: int = 0

    def check(self):
        """Raise ValueError saying what is wrong with an option."""
        for name, ok, must in (("task", self.task in copy_tasks.TASKS,
                                f"one of {', '.join(copy_tasks.TASKS)}"),
                               ("method", self.method in METHODS, f"one of {METHODS}"),
                               ("truncation", self.truncation >= 1, "at least 1"),
                               ("steps", self.steps >= 1, "at least 1"),
                               ("batch_size", self.batch_size >= 1, "at least 1"),
                               ("learning_rate", self.learning_rate > 0, "positive")):
            if not ok:
                raise ValueError(f"{name} must be {must}")


class LSTM:
    """W (X + H, 4H) and b (4H,) the gates' (i, f, o, g in that order), V (H, outputs) and b_y
    the output's; held as sgd.Layer-like layers (w, b, nabla_w, nabla_b) so that
    parts/optimizers.py moves them. The forget gate's bias starts at 1: remember at first."""

    def __init__(self, n_in, hidden, n_out, rng):
        self.hidden = hidden
        self.gates = boundary.dense(n_in + hidden, 4 * hidden, sgd.Linear, rng)
        self.gates.b[hidden:2 * hidden] = 1.0
        self.out = boundary.dense(hidden, n_out, sgd.Linear, rng)
        self.layers = [self.gates, self.out]

    def zero_state(self, n):
        return np.zeros((n, self.hidden)), np.zeros((n, self.hidden))

    def step(self, x, h, c):
        """One step from x (n, X), h, c (n, H): (h_t, c_t, what backward needs)."""
        H = self.hidden
        xh = np.hstack([x, h])                                   # (n, X + H)
        z = xh @ self.gates.w + self.gates.b                     # (n, 4H)
        i, f, o = (sgd.Sigmoid.f(z[:, k * H:(k + 1) * H]) for k in range(3))
        g = np.tanh(z[:, 3 * H:])
        c_t = f * c + i * g
        tanh_c = np.tanh(c_t)
        return o * tanh_c, c_t, (xh, c, i, f, o, g, tanh_c)

    def forward(self, xs, h, c):
        """Run xs (T, n, X) from state (h, c): p (T, n, outputs), the last state and the
        caches backward needs."""
        caches, hs = [], []
        for x in xs:
            h, c, cache = self.step(x, h, c)
            caches.append(cache)
            hs.append(h)
        hs = np.stack(hs)                                        # (T, n, H)
        p = sgd.Sigmoid.f(hs @ self.out.w + self.out.b)          # (T, n, outputs)
        return p, (h, c), (caches, hs)

    def step_back(self, dh, dc, cache):
        """Back through one step: dL/dh_t, dL/dc_t (n, H) in; the gates' dL/dW, dL/db, and
        dL/dx_t, dL/dh_{t-1}, dL/dc_{t-1} out."""
        xh, c_prev, i, f, o, g, tanh_c = cache
        dc = dc + dh * o * (1 - tanh_c ** 2)
        dz = np.hstack([dc * g * i * (1 - i), dc * c_prev * f * (1 - f),
                        dh * tanh_c * o * (1 - o), dc * i * (1 - g ** 2)])     # (n, 4H)
        dxh = dz @ self.gates.w.T                                # (n, X + H)
        n_in = xh.shape[1] - self.hidden
        return xh.T @ dz, dz.sum(axis=0), dxh[:, :n_in], dxh[:, n_in:], dc * f

    def backward(self, p, y, mask, stash, dh, dc):
        """Set every nabla (of the batch's mean loss) for the forward that gave p and stash,
        targets y (T, n, outputs), mask (T, n) and dL/dh, dL/dc (n, H) arriving at the
        segment's end; return dL/dh, dL/dc (n, H) at its first state (rows per sequence)."""
        caches, hs = stash
        n = p.shape[1]
        delta = (p - y) * mask[:, :, None]                       # dL/dlogits (T, n, outputs)
        self.out.nabla_w = np.einsum("tnh,tno->ho", hs, delta) / n
        self.out.nabla_b = delta.sum(axis=(0, 1)) / n
        dhs = delta @ self.out.w.T                               # (T, n, H) from the outputs
        nabla_w, nabla_b = np.zeros_like(self.gates.w), np.zeros_like(self.gates.b)
        for t in reversed(range(len(caches))):
            dw, db, _, dh, dc = self.step_back(dh + dhs[t], dc, caches[t])
            nabla_w += dw
            nabla_b += db
        self.gates.nabla_w, self.gates.nabla_b = nabla_w / n, nabla_b / n
        return dh, dc


def cross_entropy(p, y, mask):
    """The loss: the bit-wise cross-entropy (nats) summed over steps and bits where mask is
    1, per sequence (n,)."""
    p = np.clip(p, 1e-12, 1 - 1e-12)
    ce = -(y * np.log(p) + (1 - y) * np.log(1 - p))              # (T, n, outputs)
    return (ce * mask[:, :, None]).sum(axis=(0, 2))


def segments(steps, truncation, rng):
    """Slices of range(steps): the first 1..T steps long (drawn), then T each."""
    start = int(rng.integers(1, truncation + 1))
    cuts = [0, *range(start, steps, truncation), steps]
    return [slice(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def context(y, mask, end, truncation):
    """cDNI's extra input at a cut before step `end`: the targets and mask of the T steps
    from `end`, zero past the sequence's end, flattened (n, T * (outputs + 1))."""
    n = y.shape[1]
    ahead = np.concatenate([y, mask[:, :, None]], axis=2)[end:end + truncation]
    ahead = np.concatenate([ahead, np.zeros((truncation - len(ahead), n, ahead.shape[2]))])
    return ahead.transpose(1, 0, 2).reshape(n, -1)


class Learner:
    """The LSTM, its optimizer and (DNI, cDNI) M, trained one sequence minibatch at a time."""

    def __init__(self, config):
        self.config = config
        weights_rng, model_rng = (np.random.default_rng(s) for s in
                                  np.random.SeedSequence(config.seed).spawn(2))
        n_in, n_out = copy_tasks.sizes(config.task)
        self.lstm = LSTM(n_in, config.hidden, n_out, weights_rng)
        self.optimizer = optimizers.make("adam", self.lstm.layers, config.learning_rate)
        self.model = None
        if config.method != "bptt":
            conditioned = config.method == "cdni"
            self.model = boundary.SyntheticGradientModel(
                model_rng, hidden=config.model_hidden, conditioned=conditioned,
                learning_rate=config.model_learning_rate, width=2 * config.hidden,
                context=config.truncation * (n_out + 1))

    def guess(self, h, c, ctx):
        """M's dL/dh, dL/dc (n, H) at state (h, c); zero for BPTT."""
        if self.model is None:
            return np.zeros_like(h), np.zeros_like(c)
        g_hat = self.model.predict(np.hstack([h, c]), ctx)           # (n, 2H)
        return g_hat[:, :self.config.hidden], g_hat[:, self.config.hidden:]

    def train(self, x, y, mask, rng):
        """One minibatch x (steps, n, X), y, mask: segment by segment, forward, backward, an
        update (and M's step). Returns the probabilities p (steps, n, outputs)."""
        T = self.config.truncation
        h, c = self.lstm.zero_state(x.shape[1])
        ps = []
        cuts = segments(len(x), T, rng)
        for k, seg in enumerate(cuts):
            start_state, start_ctx = (h, c), context(y, mask, seg.start, T)
            p, (h, c), stash = self.lstm.forward(x[seg], h, c)
            ps.append(p)
            last = k == len(cuts) - 1        # past a sequence's end its true gradient is 0
            dh, dc = self.guess(h, c, context(y, mask, seg.stop, T)) if not last else (
                np.zeros_like(h), np.zeros_like(c))
            d0 = self.lstm.backward(p, y[seg], mask[seg], stash, dh, dc)
            if self.model is not None and k > 0:     # M at the last cut learns this target
                self.model.learn(np.hstack(start_state), start_ctx, np.hstack(d0))
            self.optimizer.step()
        return np.concatenate(ps)


def run(config, out=None):
    """config.steps minibatches on the curriculum: the length, from 1, grows by one when the
    mean bits wrong per sequence over config.window minibatches falls below config.threshold.
    Returns {"length": longest learned (0: none), "climbs": [[step, length, bits]], "seconds"}."""
    config.check()
    data_rng, cut_rng = (np.random.default_rng(s) for s in
                         np.random.SeedSequence([config.seed, 1]).spawn(2))
    learner = Learner(config)
    length, learned, climbs = 1, 0, []
    errors = collections.deque(maxlen=config.window)
    t0 = time.perf_counter()
    for step in range(1, config.steps + 1):
        x, y, mask = copy_tasks.batch(config.task, data_rng, config.batch_size, length)
        p = learner.train(x, y, mask, cut_rng)
        errors.append(float(np.mean(copy_tasks.bits_wrong(p, y, mask))))
        if len(errors) == config.window and np.mean(errors) < config.threshold:
            learned, bits = length, float(np.mean(errors))
            climbs.append([step, learned, bits])
            if out:
                print(f"step {step}: length {learned} learned ({bits:.3f} bits wrong per "
                      f"sequence); now {learned + 1}", file=out, flush=True)
            length += 1
            errors.clear()
    return {"length": learned, "climbs": climbs, "seconds": time.perf_counter() - t0}
