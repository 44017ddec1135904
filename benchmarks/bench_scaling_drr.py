"""How DRR time grows with detector size and CT voxel size (the scaling table's DRR rows).

Run: ``.venv/bin/python -m pytest benchmarks/bench_scaling_drr.py --benchmark-only``
(``scripts/bench_scaling.py`` runs it and writes the table into ``benchmarks/README.md``).

Input: the default phantom (seed 0) cropped to ±60 mm around the target (what the
registration renders), resampled to isotropic voxels of 0.5, 1, 2 or 3 mm; view A of the
default pair at 256², 512² or 1024²; CT pose (2, −1, 3 mm, 2, −1, 3°). One view per call,
constructor and slab cache excluded. Check: the image, block-averaged to 64², agrees with
the 1 mm CT's image at 256² (also block-averaged) within 3 % relative RMS (2 % per mm of
voxel on coarser grids, whose edges blur), so a coarse grid
or a large detector cannot return a wrong picture fast.
"""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.anatomy import planned_room_from_ct
from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.imaging import DrrRenderer, imaging_pair
from cyberknife_sim.scene import ImagingSettings

MU_W = 0.0206
POSE = (2.0, -1.0, 3.0, 2.0, -1.0, 3.0)
BINNING = {256: 4, 512: 2, 1024: 1}
_VOLUMES: dict[float, object] = {}
_BASE: dict[str, np.ndarray] = {}


def _block64(img: np.ndarray) -> np.ndarray:
    f = img.shape[0] // 64
    return img.reshape(64, f, 64, f).mean(axis=(1, 3))


@pytest.fixture(scope="module")
def roi(default_phantom):
    target = default_phantom.truth.target_center_ct_mm
    vol = default_phantom.volume.crop_around(target, np.full(3, 60.0))
    return vol, matrix_from_pose(POSE) @ planned_room_from_ct(target)


def _volume(vol, voxel_mm: float):
    if voxel_mm not in _VOLUMES:
        _VOLUMES[voxel_mm] = vol.resample(spacing_mm=np.full(3, voxel_mm))
    return _VOLUMES[voxel_mm]


def _baseline(roi) -> np.ndarray:
    if "img" not in _BASE:
        vol, room_from_ct = roi
        r = DrrRenderer(_volume(vol, 1.0), imaging_pair(ImagingSettings(), binning=4)[0],
                        mu_water_per_mm=MU_W)
        _BASE["img"] = _block64(r.render_view(room_from_ct, 0))
    return _BASE["img"]


@pytest.mark.parametrize(("detector", "voxel_mm"),
                         [(d, 1.0) for d in (256, 512, 1024)]
                         + [(512, v) for v in (0.5, 2.0, 3.0)])
def test_drr_scaling(benchmark, roi, detector, voxel_mm):
    vol, room_from_ct = roi
    v = _volume(vol, voxel_mm)
    renderer = DrrRenderer(v, imaging_pair(ImagingSettings(), binning=BINNING[detector])[0],
                           mu_water_per_mm=MU_W)
    renderer.render_view(room_from_ct, 0)
    img = benchmark.pedantic(renderer.render_view, args=(room_from_ct, 0), rounds=4,
                             iterations=1, warmup_rounds=0)
    base = _baseline(roi)
    small = _block64(img)
    err = float(np.sqrt(np.mean((small - base) ** 2) / np.mean(base**2)))
    benchmark.extra_info.update(detector=detector, voxel_mm=voxel_mm,
                                ct_voxels=int(np.prod(v.shape)), ct_shape=list(v.shape),
                                relative_rms_vs_1mm_256=err)
    tol = 0.03 if voxel_mm <= 1.0 else 0.02 * voxel_mm  # coarse grids blur edges
    assert err < tol, f"relative RMS vs the 1 mm / 256² image (64² blocks) {err:.4f}"
