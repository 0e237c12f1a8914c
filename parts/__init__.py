"""The parts the scripts share: what oracle.py, train_output.py, train_input.py,
train_middle.py and dni.py are built from.

    boundary.py     the synthetic-gradient model M (numpy, one), its quality measure, the
                    stage below's copy of it (LocalSyntheticGradients)
    checkpoint.py   one checkpoint format for every process; the divergence guard
    children.py     child processes that serve (Process), the live page's start and options
    classify.py     a stage's layers, data and labels, toy or images
    decoupled.py    the algorithm in one process: the toy's boundary or every boundary
    http.py         waitress, refusals as JSON, the shared token, request bodies
    optimizers.py   SGD and Adam over sgd.Layer's weights, their state
    options.py      the options every process shares, logging, the training thread's priority
    pacing.py       flow control: how far a stage may run ahead of the next
    recurrent.py    an LSTM cut in time: truncated BPTT, DNI and cDNI at the cut, the curriculum
    sender.py       delivery to a peer in the background: coalescing, retries, bounded memory
    server.py       a server's training thread, /status basics, its app and its main
    snapshots.py    weights and metrics on disk: snapshots on a shared tick, run folders
    threaded.py     a server or trainer run in a thread, stopped by an event (a Ray actor)

A layer above generate.py, sgd.py and synthgrad.py, which they import; below every script that
runs a process. Nothing here imports a script above it, runner/ or lab/ (docs/files.md).
"""
