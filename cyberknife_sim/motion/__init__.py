"""Motion truth: breathing (Lujan, irregular), coughs, spine motion, recorded traces, markers."""

from ._breathing import BreathingPattern, CoughEvents, lognormal_factors, lujan
from ._markers import MarkerCamera, MarkerFrames, marker_signal_mm
from ._trace import (
    AXIS_NAMES,
    BREATHING_PERIOD_RANGE_S,
    Trace,
    check_paired,
    dominant_period_s,
    implausible_breathing,
    read_trace,
    resample,
)
from ._truth import MotionTruth, spine_pose

__all__ = [
    "AXIS_NAMES",
    "BreathingPattern",
    "CoughEvents",
    "MarkerCamera",
    "MarkerFrames",
    "MotionTruth",
    "Trace",
    "check_paired",
    "lognormal_factors",
    "lujan",
    "marker_signal_mm",
    "read_trace",
    "BREATHING_PERIOD_RANGE_S",
    "dominant_period_s",
    "implausible_breathing",
    "resample",
    "spine_pose",
]
