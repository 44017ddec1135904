"""Anatomy: the CT volume type, file readers/writers and the procedural spine phantom."""

from ._levels import LEVELS, level_dims
from ._params import PhantomParams, list_presets, load_preset, preset_dir
from ._tissues import TISSUE_HU, TISSUE_LABELS
from .io import FILE_SUFFIXES, read_ct, write_volume
from .patient import Patient, load_patient, planned_room_from_ct
from .phantom import Phantom, PhantomTruth, load_truth, make_phantom
from .volume import Volume

__all__ = [
    "FILE_SUFFIXES",
    "LEVELS",
    "TISSUE_HU",
    "TISSUE_LABELS",
    "Patient",
    "Phantom",
    "PhantomParams",
    "PhantomTruth",
    "Volume",
    "level_dims",
    "list_presets",
    "load_patient",
    "load_preset",
    "load_truth",
    "make_phantom",
    "planned_room_from_ct",
    "preset_dir",
    "read_ct",
    "write_volume",
]
