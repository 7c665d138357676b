"""Throughput and ETA, defined once: the progress file, `hugflow status`, the PR comment and the metrics all state
them this way.

* A rate is an amount finished in this run divided by the seconds this run has spent on it (rows resumed from the
  ledger are not counted: they cost nothing now). None until something was finished.
* The ETA is the rows left divided by the row rate; None without a rate.
* The metrics carry the same two amounts as counters (rows finished, audio seconds converted), so that a
  dashboard's ``rate(...)`` over them is the same quantity over a window.
"""

from __future__ import annotations


def per_second(amount: float, seconds: float) -> float | None:
    """``amount`` per second over ``seconds``; None when nothing was done yet."""
    return amount / seconds if amount > 0 and seconds > 0 else None


def eta_seconds(remaining: int, rows_per_second: float | None) -> float | None:
    """Seconds until the ``remaining`` rows are done at ``rows_per_second``; None without a rate."""
    if remaining <= 0:
        return 0.0
    return remaining / rows_per_second if rows_per_second else None
