"""The lab: measurements run by hand, never from the tests (they print numbers and draw
pictures; the tests check their tables and pictures on hand-made results).

    python -m lab.bench --help          speed: the wire, the servers, the race, the live page
    python -m lab.race --help           (run through lab.bench --race)
    python -m lab.experiments --help    the paper's claims on the toy (and, --images, on
                                        Fashion-MNIST: lab/image_table.py): controls, seeds
    python -m lab.chain_speed --help    a chain's stage: its training and each message, timed

The top floor: it may import everything, and nothing imports it (docs/files.md).
"""
