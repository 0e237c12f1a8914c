"""The lab: measurements run by hand, never from the tests (they print numbers and draw
pictures; the tests check their tables and pictures on hand-made results).

    python -m lab.bench --help          speed: the wire, the servers, the race, the live page
    python -m lab.race --help           the race's child (run through lab.bench --race)
    python -m lab.image_race --help     the race on images
    python -m lab.experiments --help    the paper's claims on the toy (and, --images, on
                                        Fashion-MNIST: lab/image_table.py): controls, seeds
    python -m lab.chain_speed --help    a chain's stage: its training and each message, timed
    python -m lab.wire_cost --help      a chunk of activations on the wire, JSON and binary

lab/live_cost.py (lab.bench --live-cost) and lab/report.py are imported, not run. Each module
run as a file (`python lab/X.py`) says in one line to run it with -m instead. The top floor: it
may import everything, and nothing imports it (docs/files.md).
"""
