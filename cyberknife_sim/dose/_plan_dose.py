"""A run's dose step: the plan's dose (and its optimised MU) before the loop, the delivered
dose, the DVH metrics and the gamma comparison after it.

``plan_dose`` builds the dose grid around the target and the cord near it, computes every
beam's dose once (:class:`BeamDose`, planned axis, CT frame), optimises the MU of a generated
plan (:func:`optimize_mu`) and returns the plan's dose. ``run_dose`` accumulates the dose the
run delivered (:func:`delivered_dose_gy`, reusing those beam doses) and fills the summary's
``dose`` object (DESIGN.md): ``planned`` and ``delivered``, each with ``target`` and ``cord``
(and any other ``patient.organs_at_risk`` found among the structures), and ``gamma``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage, sparse

from .._npz_cache import NpzCache, source_hash
from ..errors import InputError
from ._delivered import delivered_dose_gy, delivered_mu, planned_beam_ct
from ._dvh import oar_metrics, target_metrics
from ._engine import BeamDose, DoseEngine
from ._grid import DoseGrid
from ._optimize import MuResult, optimize_mu
from ._result import DoseResult
from ._structures import StructureSet, load_structures, structure_mask_on_grid

if TYPE_CHECKING:  # pragma: no cover
    from ..anatomy.patient import Patient
    from ..plan import Beam
    from ..scene import Scene
    from ..simulation import LoopRecord

__all__ = ["PlanDose", "dose_grid_for", "influence_matrix", "plan_dose", "run_dose",
           "write_dose_files"]


@dataclass(eq=False)
class PlanDose:
    """The plan's dose, computed once per run before the loop.

    Attributes
    ----------
    grid : DoseGrid
    engine : DoseEngine
        On the planning CT.
    structures : StructureSet
    masks : dict of str to ndarray of bool, shape grid.shape
        The structures on the dose grid (target, cord and the reported OARs found).
    beam_doses : list of BeamDose
        Each planned beam's dose per MU at the grid points.
    mu : ndarray, shape (n_beams,)
        The MU of the beams (optimised for a generated plan).
    optimization : MuResult or None
        What the MU optimisation achieved (None: the plan's MU were kept).
    planned_gy : ndarray, shape grid.shape
        The plan's dose (Gy).
    ct_hu : ndarray, shape grid.shape, float32
        The planning CT at the dose points.
    target_ct : ndarray, shape (3,)
        Planned target (CT mm).
    """

    grid: DoseGrid
    engine: DoseEngine
    structures: StructureSet
    masks: dict[str, NDArray[np.bool_]]
    beam_doses: list[BeamDose]
    mu: NDArray[np.float64]
    optimization: MuResult | None
    planned_gy: NDArray[np.float64]
    ct_hu: NDArray[np.float32]
    target_ct: NDArray[np.float64]


def dose_grid_for(scene: Scene, structures: StructureSet, target_ct: NDArray[np.float64]
                  ) -> DoseGrid:
    """The dose grid: the target and the cord within ``dose.cord_extent_mm`` (CT z) of the
    target, grown by ``dose.margin_mm``, at ``dose.grid_spacing_mm``."""
    ds = scene.dose
    pts = [structures.target.points_ct()]
    cord = structures.cord.points_ct()
    near = cord[np.abs(cord[:, 2] - target_ct[2]) <= ds.cord_extent_mm]
    if near.size:
        pts.append(near)
    allp = np.vstack(pts + [target_ct[None, :]])
    return DoseGrid.around(allp.min(axis=0) - ds.margin_mm, allp.max(axis=0) + ds.margin_mm,
                           ds.grid_spacing_mm)


def _ct_on_grid(patient: Patient, grid: DoseGrid) -> NDArray[np.float32]:
    ijk = patient.volume.ct_to_ijk(grid.points_ct())
    hu = ndimage.map_coordinates(np.asarray(patient.volume.hu, dtype=np.float32),
                                 ijk[:, ::-1].T, order=1, mode="nearest")
    return hu.astype(np.float32).reshape(grid.shape)


def _masks(scene: Scene, structures: StructureSet, grid: DoseGrid) -> dict[str, NDArray]:
    names = [structures.target_name, structures.cord_name]
    names += [n for n in scene.patient.organs_at_risk if n in structures and n not in names]
    names += [n for n in ("body",) if n in structures and n not in names]
    masks = {structures[n].name: structure_mask_on_grid(structures[n], grid) for n in names}
    target = masks[structures.target.name]
    if not target.any():
        raise InputError(f"dose: the target structure {structures.target.name!r} has no dose "
                         f"point on the {grid.spacing_mm:g} mm grid")
    return masks


def influence_matrix(beam_doses: list[BeamDose]) -> sparse.csc_matrix:
    """The beams' doses per MU as a sparse (n_points, n_beams) matrix (Gy/MU)."""
    n = beam_doses[0].n_points
    rows = np.concatenate([bd.index for bd in beam_doses])
    cols = np.concatenate([np.full(len(bd.index), k) for k, bd in enumerate(beam_doses)])
    vals = np.concatenate([bd.values_gy_per_mu for bd in beam_doses])
    return sparse.csc_matrix((vals, (rows, cols)), shape=(n, len(beam_doses)))


_CACHE: dict[str, tuple[PlanDose, list]] = {}


def _key(scene: Scene, patient: Patient, beams: list[Beam], optimize: bool) -> str:
    h = hashlib.sha256()
    h.update(scene.patient.model_dump_json().encode())
    h.update(scene.dose.model_dump_json().encode())
    h.update(f"{scene.simulation.seed} {scene.room.imaging.live_images} {optimize}".encode())
    h.update(np.ascontiguousarray(patient.target_ct_mm).tobytes())
    h.update(str(patient.volume.name).encode() + np.asarray(patient.volume.ct_from_ijk).tobytes())
    h.update(hashlib.sha256(np.ascontiguousarray(patient.volume.hu).tobytes()).digest())
    for b in beams:
        h.update(np.hstack([b.source_room, b.aim_room, [b.mu, b.collimator_mm]]).tobytes())
    return h.hexdigest()


def _beam_doses_and_mu(scene, beams, engine, grid, masks, structures, target_ct, optimize):
    """Every beam's dose per MU and the MU (optimised or the plan's): the kept beam indices
    (beams with MU), their doses, their MU and the optimisation result (or None)."""
    pts = grid.points_ct()
    beam_doses = [engine.beam(*planned_beam_ct(b, target_ct), b.collimator_mm, pts)
                  for b in beams]
    result = None
    mu = np.array([b.mu for b in beams], dtype=np.float64)
    if optimize:
        ds = scene.dose
        result = optimize_mu(
            influence_matrix(beam_doses),
            target_idx=np.flatnonzero(masks[structures.target.name]),
            cord_idx=np.flatnonzero(masks[structures.cord.name]), voxel_cc=grid.voxel_cc,
            prescription_gy=ds.prescription_gy, coverage=ds.coverage,
            cord_max_gy=ds.cord_max_gy, cord_limit_gy=ds.cord_limit_gy,
            cord_limit_cc=ds.cord_limit_cc)
        mu = result.mu
    keep = [k for k in range(len(beams)) if mu[k] > 0.0]
    if not keep:
        raise InputError("dose: the MU optimisation gave no beam any MU")
    return keep, [beam_doses[k] for k in keep], mu[keep], result


# the beam doses and MU of a plan, on disk: a new process (a CLI run, a sweep worker) pays
# the engine and the LP once per distinct plan
_BEAMS_CACHE = NpzCache("plan_dose", switch_env="CKSIM_DOSE_CACHE")
_BD_ARRAYS = ("source_ct", "aim_ct", "e_u", "e_v", "direction", "index", "values_gy_per_mu",
              "eff_depth_mm", "distance_mm", "lateral_mm", "_base_gy_per_mu")
_MU_SCALARS = ("status", "coverage", "cord_max_gy", "cord_v10_cc", "scale", "limiting",
               "iterations", "message")


def _disk_key(key: str, sad_mm: float) -> str:
    import scipy

    from .. import __version__
    return NpzCache.key({"plan_dose": key, "sad_mm": sad_mm, "version": __version__,
                         "scipy": scipy.__version__, "src": source_hash(["dose/*.py"])})


def _to_arrays(value) -> dict:
    keep, beam_doses, mu, result = value
    out = {"keep": np.asarray(keep, dtype=np.int64), "mu": mu,
           "cone_mm": np.array([bd.cone_mm for bd in beam_doses]),
           "n_points": np.array([bd.n_points for bd in beam_doses], dtype=np.int64)}
    for k, bd in enumerate(beam_doses):
        for name in _BD_ARRAYS:
            out[f"b{k}.{name}"] = getattr(bd, name)
    if result is not None:
        out["opt.mu"], out["opt.dose_gy"] = result.mu, result.dose_gy
        out["opt.scalars"] = np.array(json.dumps({n: getattr(result, n) for n in _MU_SCALARS},
                                                  default=lambda v: v.item()))
    return out


def _from_arrays(a: dict, engine: DoseEngine, grid: DoseGrid):
    keep = a["keep"].tolist()
    beam_doses = []
    for k, cone in enumerate(a["cone_mm"].tolist()):
        fields = {name.lstrip("_"): a[f"b{k}.{name}"] for name in _BD_ARRAYS}
        if int(a["n_points"][k]) != grid.size:
            raise ValueError("cached beam dose on another grid")
        beam_doses.append(BeamDose(
            fields["source_ct"], fields["aim_ct"], float(cone), fields["e_u"], fields["e_v"],
            fields["direction"], int(a["n_points"][k]), fields["index"],
            fields["values_gy_per_mu"], fields["eff_depth_mm"], fields["distance_mm"],
            fields["lateral_mm"], fields["base_gy_per_mu"], engine._ocr_table(float(cone)),
            engine.sad_mm))
    result = None
    if "opt.scalars" in a:
        result = MuResult(mu=a["opt.mu"], dose_gy=a["opt.dose_gy"],
                          **json.loads(str(a["opt.scalars"])))
    return keep, beam_doses, a["mu"], result


def plan_dose(scene: Scene, patient: Patient, beams: list[Beam], *,
              optimize: bool) -> tuple[PlanDose, list[Beam]]:
    """The plan's dose on the scene's dose grid, and the beams with their final MU.

    Parameters
    ----------
    scene : Scene
    patient : Patient
        Planning CT and target (``load_patient(scene)``).
    beams : list of Beam
        The plan (room frame).
    optimize : bool
        Optimise the MU for ``dose.prescription_gy`` under the cord limits (generated plans);
        False keeps the plan's MU.

    Returns
    -------
    PlanDose, list of Beam
        The beams carry the optimised MU (beams the optimiser gave no MU are dropped).
    """
    if not beams:
        raise InputError("dose: the plan has no beams")
    key = _key(scene, patient, beams, optimize)
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    target_ct = np.asarray(patient.target_ct_mm, dtype=np.float64)
    structures = load_structures(scene, patient.volume, target_ct_mm=target_ct)
    grid = dose_grid_for(scene, structures, target_ct)
    engine = DoseEngine(patient.volume, sad_mm=float(scene.plan.sad_mm))
    masks = _masks(scene, structures, grid)
    keep, beam_doses, mu, result = _BEAMS_CACHE.get_or_build(
        _disk_key(key, float(scene.plan.sad_mm)),
        lambda: _beam_doses_and_mu(scene, beams, engine, grid, masks, structures, target_ct,
                                   optimize),
        _to_arrays, lambda a: _from_arrays(a, engine, grid))
    beams = [replace(beams[k], mu=float(mu[j])) for j, k in enumerate(keep)]
    planned = np.zeros(grid.size)
    for bd, m in zip(beam_doses, mu, strict=True):
        planned[bd.index] += m * bd.values_gy_per_mu
    pd = PlanDose(grid=grid, engine=engine, structures=structures, masks=masks,
                  beam_doses=beam_doses, mu=mu, optimization=result,
                  planned_gy=planned.reshape(grid.shape), ct_hu=_ct_on_grid(patient, grid),
                  target_ct=target_ct)
    _CACHE.clear()  # one plan's dose in memory at a time
    _CACHE[key] = (pd, beams)
    return pd, beams


def dose_metrics(dose_gy: NDArray[np.float64], pd: PlanDose, scene: Scene) -> dict:
    """The ``target``, ``cord`` and other OAR metrics of one dose (summary's form)."""
    ds = scene.dose
    v = pd.grid.voxel_cc
    tname, cname = pd.structures.target.name, pd.structures.cord.name
    out = {"target": target_metrics(dose_gy, pd.masks[tname], v, ds.prescription_gy,
                                    body_mask=pd.masks.get("body"))}
    for name, mask in pd.masks.items():
        if name in (tname, "body"):
            continue
        key = "cord" if name == cname else name
        out[key] = oar_metrics(dose_gy, mask, v, limit_gy=ds.cord_limit_gy)
    return out


def run_dose(pd: PlanDose, scene: Scene, beams: list[Beam], record: LoopRecord) -> DoseResult:
    """The delivered dose of a run and the summary's ``dose`` object (module docstring)."""
    from ._gamma import gamma_pass_rate

    ds = scene.dose
    delivered = delivered_dose_gy(pd.engine, beams, record, target_ct=pd.target_ct,
                                  beam_doses=pd.beam_doses,
                                  points_ct=pd.grid.points_ct() if ds.delivered == "exact"
                                  else None, method=ds.delivered).reshape(pd.grid.shape)
    metrics: dict = {"prescription_gy": ds.prescription_gy, "fractions": ds.fractions,
                     "grid_spacing_mm": pd.grid.spacing_mm,
                     "planned": dose_metrics(pd.planned_gy, pd, scene),
                     "delivered": dose_metrics(delivered, pd, scene), "gamma": {}}
    if pd.optimization is not None:
        o = pd.optimization
        metrics["optimization"] = {"status": o.status, "message": o.message,
                                   "total_mu": float(np.sum(pd.mu))}
    # the gamma's reference: the planned beam axes at the MU the run delivered, so that the
    # comparison measures where the dose went (tracking), not how much of the plan ran
    mu_delivered = delivered_mu(beams, record)
    metrics["delivered_mu_fraction"] = float(mu_delivered.sum() / np.sum(pd.mu))
    metrics["gamma_reference"] = "planned beam axes at the delivered MU"
    reference = np.zeros(pd.grid.size)
    for bd, m in zip(pd.beam_doses, mu_delivered, strict=True):
        reference[bd.index] += m * bd.values_gy_per_mu
    reference = reference.reshape(pd.grid.shape)
    for g in ds.gamma if reference.max() > 0 else ():
        name = f"{g.dose_percent:g}%/{g.dta_mm:g}mm"
        res = gamma_pass_rate(reference, delivered, pd.grid, dose_percent=g.dose_percent,
                              dta_mm=g.dta_mm, pass_rate_only=True)
        metrics["gamma"][name] = {k: v for k, v in res.items() if np.isscalar(v)}
    return DoseResult(grid=pd.grid, planned_gy=pd.planned_gy.astype(np.float32),
                      delivered_gy=delivered.astype(np.float32), masks=pd.masks,
                      target_name=pd.structures.target.name, cord_name=pd.structures.cord.name,
                      ct_hu=pd.ct_hu, prescription_gy=ds.prescription_gy,
                      cord_max_gy=ds.cord_max_gy, cord_v10_limit_cc=ds.cord_limit_cc,
                      metrics=metrics)


def write_dose_files(out_dir, dose: DoseResult) -> dict:
    """Write ``dose_planned.nii.gz`` and ``dose_delivered.nii.gz`` (Gy, dose grid, CT frame)
    and the RT Dose DICOM files beside them (DESIGN.md); return name → path."""
    from pathlib import Path

    from ._io import write_dose_nifti, write_rtdose

    out = Path(out_dir)
    files = {}
    for name, arr in (("planned", dose.planned_gy), ("delivered", dose.delivered_gy)):
        if arr is None:
            continue
        files[f"dose_{name}"] = out / f"dose_{name}.nii.gz"
        write_dose_nifti(files[f"dose_{name}"], arr, dose.grid)
        files[f"rtdose_{name}"] = out / f"dose_{name}.dcm"
        write_rtdose(files[f"rtdose_{name}"], arr, dose.grid,
                     description=f"cyberknife_sim {name} dose")
    return files
