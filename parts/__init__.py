"""The parts the scripts share: what oracle.py, train_output.py, train_input.py,
train_middle.py and dni.py are built from (a line per file in docs/files.md).

A layer above generate.py, sgd.py and synthgrad.py, which they import; below every script that
runs a process. Nothing here imports a script above it, runner/ or lab/.
"""
