"""Plots of a run (PNG, matplotlib) and its self-contained ``report.html`` (Plotly).

:func:`write_plots` writes the PNGs (matplotlib's object API, no pyplot: importing this
package or writing a report selects no backend and keeps no figure open);
:func:`write_report` writes the page: the run's numbers, interactive time-series plots with
plotly.js inlined (no network needed), the PNGs, holds, events and the resolved scene; with
a run's dose (``dose=``), a "Dose" section (:func:`write_dose_plots`, DVHs, dose slices,
the cord's margin to its limit).
Plotly is imported only when a report is written.
"""

from ._dose import DOSE_PLOTS, cord_margins, dvh_curve, write_dose_plots
from ._html import format_event, percent, write_report
from ._plots import PLOTS, write_plots
from ._series import (
    MAX_POINTS,
    HoldBand,
    aim_changes,
    aim_index,
    binned_envelope,
    hold_bands,
    minmax_decimate,
)

__all__ = [
    "DOSE_PLOTS",
    "MAX_POINTS",
    "PLOTS",
    "HoldBand",
    "aim_changes",
    "aim_index",
    "binned_envelope",
    "cord_margins",
    "dvh_curve",
    "format_event",
    "hold_bands",
    "minmax_decimate",
    "percent",
    "write_dose_plots",
    "write_plots",
    "write_report",
]
