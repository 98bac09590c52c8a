"""A run's report: ``markdown`` (render + write_report), its sections (``claim``, ``structured``, ``analysis``:
break-even, ``alternatives``, ``quality`` cells,
``budget``: what a smoke budget left out), every figure (``plots``) and the cells they share (``cells``).

``render`` is pure (records in, markdown out); ``write_report`` reads a run directory and writes its plots
and report.md.
"""

from .cells import latency_verdict
from .claim import weight_group
from .markdown import PlotLinks, frame, mem_band, render, summary_table, time_spent, write_report

__all__ = ["PlotLinks", "frame", "latency_verdict", "mem_band", "render", "summary_table", "time_spent", "weight_group",
           "write_report"]
