"""Starting, watching and reading runs: what the launching scripts (demo.py, chain.py, live.py)
and the lab share.

    launch.py       start the processes of a run, supervise them (restarts), stop them; status
                    lines; plain backprop in this process for the comparisons
    chain_eval.py   a chain's run folder measured: held-out MSE at each tick, the boundaries'
                    cosines, chain.json and chain.png
    liveview.py     what the live page shows of a run folder: reading it, the pictures, the JSON

Above the processes' scripts (it imports train_output.py, plot.py and parts/); below demo.py,
chain.py, live.py and lab/ (docs/files.md).
"""
