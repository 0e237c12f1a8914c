"""The parts the scripts share: what oracle.py, train_output.py, train_input.py,
train_middle.py and dni.py are built from.

    optimizers.py   SGD and Adam over sgd.Layer's weights, their checkpointed state
    snapshots.py    weights and metrics on disk: snapshots on a shared tick, checkpoints, run folders
    sender.py       delivery to a peer in the background: coalescing, retries, bounded memory
    serving.py      the servers' common frame: waitress, JSON errors, the token, the training
                    thread's life, child processes
    boundary.py     the synthetic-gradient model M (numpy), and its co-located form

A layer above generate.py, sgd.py and synthgrad.py, which they import; below every script that
runs a process. Nothing here imports a script above it, runner/ or lab/ (docs/files.md).
"""
