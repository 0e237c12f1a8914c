"""Graves et al.'s Copy and Repeat Copy tasks (Neural Turing Machines, 2014), as batches.

    from datasets import copy_tasks
    x, y, mask = copy_tasks.batch("copy", rng, n=16, length=5)
    # x (steps, 16, 10): 8 random bits a step for 5 steps, then a delimiter, then nothing
    # y (steps, 16, 8): the 5 patterns again after the delimiter; mask (steps, 16): 1 there

Time is the first axis, as a recurrent network reads it. The inputs have BITS + 2 channels:
the pattern's bits, the delimiter flag and (Repeat Copy) the repeat count. Copy: the pattern,
the delimiter, the pattern reproduced (2 length + 1 steps). Repeat Copy: the delimiter carries
r / MAX_REPEATS (r from 1 to MAX_REPEATS, drawn per sequence), then the pattern r times and an
end marker on an extra output (length (r + 1) + 2 steps); a batch's shorter sequences end in
masked steps. mask is 1 where the loss and the error count: the steps that must be reproduced.
"""

import numpy as np

TASKS = ("copy", "repeat-copy")
BITS = 8                        # Graves et al.'s pattern width
MAX_REPEATS = 3                 # repeats drawn from 1..3: Graves's 1..10 is too long for 2 cores


def sizes(task):
    """(input channels, output channels) of a task's batches."""
    return BITS + 2, BITS + (task == "repeat-copy")


def batch(task, rng, n, length):
    """x (steps, n, BITS + 2), targets y (steps, n, outputs) in {0, 1} and mask (steps, n) in
    {0, 1} for n sequences whose pattern is `length` steps long, drawn from rng."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if length < 1:
        raise ValueError(f"a pattern is at least 1 step long, got {length}")
    repeats = (rng.integers(1, MAX_REPEATS + 1, n) if task == "repeat-copy"
               else np.ones(n, dtype=int))                               # (n,)
    ends = task == "repeat-copy"                # one more step, the end marker
    steps = length * (repeats.max() + 1) + 1 + ends
    n_in, n_out = sizes(task)
    x, y = np.zeros((steps, n, n_in)), np.zeros((steps, n, n_out))
    mask = np.zeros((steps, n))
    pattern = rng.integers(0, 2, (length, n, BITS)).astype(float)        # (length, n, 8)
    x[:length, :, :BITS] = pattern
    x[length, :, BITS] = 1.0                                             # the delimiter
    if task == "repeat-copy":
        x[length, :, BITS + 1] = repeats / MAX_REPEATS
    for k, r in enumerate(repeats):
        out = slice(length + 1, length + 1 + r * length + ends)     # the steps that answer
        y[length + 1:length + 1 + r * length, k, :BITS] = np.tile(pattern[:, k], (r, 1))
        if ends:
            y[length + 1 + r * length, k, BITS] = 1.0                    # the end marker
        mask[out, k] = 1.0
    return x, y, mask


def bits_wrong(p, y, mask):
    """Bits of error per sequence (n,): the output bits p > 0.5 gets wrong where mask is 1,
    for probabilities p and targets y (steps, n, outputs)."""
    wrong = (p > 0.5) != (y > 0.5)                                       # (steps, n, outputs)
    return (wrong * mask[:, :, None]).sum(axis=(0, 2))
