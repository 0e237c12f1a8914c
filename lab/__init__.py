"""The lab: measurements run by hand, never from the tests (which check their tables and pictures
on hand-made results). Each runs from the top level as a module, e.g. `python -m lab.bench
--help`; docs/files.md lists them. The top floor: nothing imports it.
"""
