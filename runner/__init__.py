"""Starting, watching and reading runs: what the launching scripts (demo.py, chain.py, live.py)
and the lab share.

    processes.py    a run as a list of processes: the one watch loop, the one status line,
                    restarts; the local spawner (supervised subprocesses)
    raychain.py     the Ray spawner: each process a Ray actor (chain.py --ray), restarted,
                    moved off a machine that leaves
    raystage.py     the actor on each machine: a script's main in a thread, its files
    rayjoin.py      joining a cluster as the driver, failing fast in one line
    launch.py       the demo's three processes as such a list; plain backprop in this process;
                    what a launching script does first (session) and its exit code (outcome)
    chain_eval.py   a chain's run folder measured: held-out MSE at each tick, the boundaries'
                    cosines, chain.json and chain.png
    liveview.py     what the live page shows of a run folder: reading it, the JSON
    livedraw.py     the live page's pictures

Above the processes' scripts (it imports train_output.py, plot.py and parts/); below demo.py,
chain.py, live.py and lab/ (docs/files.md).
"""
