"""The closed loop: simulate a whole treatment and measure targeting error.

Construct-then-call: :func:`simulate` builds the parts of a scene (motion truth, marker
camera, plan and robot, imaging chain) and runs a :class:`TreatmentLoop`, whose methods are
the events of the real system; :func:`write_run` writes the run folder.
"""

from ..plan import Beam
from ._imaging import IMAGING_METHODS, LOCALIZATION, Imager, ImageResult, TruthImager, make_imager
from ._interlocks import HOLD_REASONS
from ._loop import LoopState, StoppedEarly, TreatmentLoop, run_loop
from ._outputs import DECOMPOSITION_METHOD, TIMESERIES_COLUMNS, RunSummary, summarize
from ._record import LoopRecord
from ._seams import CorrelationSeam, ImagerSeam, PredictorSeam, RobotSeam
from ._session import RunResult, build_loop, resolve_scene, simulate, write_run

__all__ = [
    "DECOMPOSITION_METHOD",
    "HOLD_REASONS",
    "IMAGING_METHODS",
    "LOCALIZATION",
    "TIMESERIES_COLUMNS",
    "Beam",
    "CorrelationSeam",
    "ImageResult",
    "Imager",
    "ImagerSeam",
    "LoopRecord",
    "LoopState",
    "PredictorSeam",
    "RobotSeam",
    "RunResult",
    "RunSummary",
    "StoppedEarly",
    "TreatmentLoop",
    "TruthImager",
    "build_loop",
    "make_imager",
    "resolve_scene",
    "run_loop",
    "simulate",
    "summarize",
    "write_run",
]
