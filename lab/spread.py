"""Numbers over seeds as the lab's tables show them: a spread (mean, min, max), and its cell
'mean (min-max)'. lab/experiments.py and lab/image_table.py both write their tables with it."""

import statistics


def spread(values):
    """(mean, min, max) of the values that are not None, or None if there are none."""
    values = [v for v in values if v is not None]
    return (statistics.fmean(values), min(values), max(values)) if values else None


def cell(s, spec=".4f", scale=1):
    """'mean (min-max)' of a spread, each times `scale` (100: percent), or '-'."""
    if s is None:
        return "-"
    mean, lo, hi = (scale * v for v in s)
    return f"{mean:{spec}} ({lo:{spec}}-{hi:{spec}})" if hi > lo else f"{mean:{spec}}"
