"""Scene model: typed, frozen, validated settings loaded from a YAML file.

Every key is documented in ``scenes/README.md`` (generated from these models by
``scripts/gen_scene_docs.py``).
"""

from ._base import Section, Vec3
from ._dose import DoseSettings, GammaCriterion
from ._dump import scene_to_yaml
from ._livexray import LiveXraySettings
from ._load import Scene, load_scene, scene_from_dict
from ._motion import (
    BreathingSettings,
    CoughSettings,
    MotionSettings,
    ShiftEvent,
    SpineMotionSettings,
    TraceSettings,
)
from ._patient import PatientSettings, PlanningCtSettings
from ._plan import PlanSettings
from ._room import (
    CouchSettings,
    ImagingSettings,
    RobotSettings,
    RoomSettings,
    ViewSettings,
    XraySettings,
)
from ._simulation import SimulationSettings
from ._tracking import (
    CorrelationSettings,
    ImagingScheduleSettings,
    InterlockSettings,
    MarkerSettings,
    PredictorSettings,
    TrackingSettings,
)
from ._truth import TruthSettings

__all__ = [
    "BreathingSettings",
    "CorrelationSettings",
    "CouchSettings",
    "CoughSettings",
    "DoseSettings",
    "GammaCriterion",
    "ImagingScheduleSettings",
    "ImagingSettings",
    "InterlockSettings",
    "LiveXraySettings",
    "MarkerSettings",
    "MotionSettings",
    "PatientSettings",
    "PlanningCtSettings",
    "PlanSettings",
    "PredictorSettings",
    "RobotSettings",
    "RoomSettings",
    "Scene",
    "Section",
    "ShiftEvent",
    "SimulationSettings",
    "SpineMotionSettings",
    "TraceSettings",
    "TrackingSettings",
    "TruthSettings",
    "Vec3",
    "ViewSettings",
    "XraySettings",
    "load_scene",
    "scene_from_dict",
    "scene_to_yaml",
]
