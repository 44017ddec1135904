"""The closed loop: simulate a whole treatment and measure targeting error."""

from ._drift_correlation import DriftCorrelation
from ._imaging import IMAGING_METHODS, LOCALIZATION, Imager, ImageResult, TruthImager, make_imager
from ._loop import HOLD_REASONS, Beam, LoopOptions, LoopRecord, StoppedEarly, run_loop
from ._outputs import DECOMPOSITION_METHOD, TIMESERIES_COLUMNS, summarize
from ._session import RunResult, simulate, write_run

__all__ = [
    "DECOMPOSITION_METHOD",
    "HOLD_REASONS",
    "IMAGING_METHODS",
    "TIMESERIES_COLUMNS",
    "LOCALIZATION",
    "Beam",
    "DriftCorrelation",
    "ImageResult",
    "Imager",
    "LoopOptions",
    "LoopRecord",
    "RunResult",
    "StoppedEarly",
    "TruthImager",
    "make_imager",
    "run_loop",
    "simulate",
    "summarize",
    "write_run",
]
