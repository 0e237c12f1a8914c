"""The lab: measurements run by hand, never from the tests (they print numbers and draw pictures;
the tests check their tables and pictures on hand-made results). Each runs from the top level as
a module, e.g. `python -m lab.bench --help`; docs/files.md lists them. lab/report.py holds what
they share. The top floor: nothing imports it (docs/files.md).
"""
