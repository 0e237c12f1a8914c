"""The lab: measurements run by hand, never from the tests (they print numbers and draw
pictures; the tests check their tables and pictures on hand-made results).

    python -m lab.bench --help          speed: the wire, the servers, the race, the live page
    python -m lab.image_race --help     the race on images (lab.race: the toy's, via lab.bench)
    python -m lab.experiments --help    the paper's claims, on the toy and (--images) on images
    python -m lab.chain_speed --help    a chain's stage: its training and each message, timed
    python -m lab.wire_cost --help      a chunk of activations on the wire, JSON and binary

lab/report.py holds what they share. `python lab/X.py` says in one line to use -m instead.
The top floor: nothing imports it (docs/files.md).
"""
