"""Starting, watching and reading runs: what demo.py, chain.py, live.py and the lab share.

Each file's part is in docs/files.md ("runner/"). A floor above the processes' scripts (it
imports train_output.py, plot.py and parts/) and below the launching scripts and lab/.
"""
