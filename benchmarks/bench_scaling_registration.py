"""How 2D/3D registration time grows with detector size and CT voxel size.

Run: ``.venv/bin/python -m pytest benchmarks/bench_scaling_registration.py --benchmark-only``
(``scripts/bench_scaling.py`` runs it and writes the table into ``benchmarks/README.md``).

Input: the default phantom (seed 0), at its own grid (1 × 1 × 1.5 mm) or resampled to
isotropic 2 or 3 mm voxels; the default pair at 256², 512² or 1024²; a noisy uint16 live pair
(``XrayModel``, default X-ray settings) of the phantom at pose (1.5, −1, 2 mm, 1, −0.5,
0.8°); ``Registration2D3D`` with its defaults, started from the planned pose (template
search included). Construction is excluded. Check: accepted, within 0.5 mm and 0.5° of the
true pose (1 mm / 1° on 3 mm voxels; 1° at 256²).
"""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.anatomy import planned_room_from_ct
from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.imaging import DrrRenderer, XrayModel, imaging_pair
from cyberknife_sim.registration import Registration2D3D
from cyberknife_sim.scene import ImagingSettings, XraySettings

MU_W = 0.0206
POSE = np.array([1.5, -1.0, 2.0, 1.0, -0.5, 0.8])
BINNING = {256: 4, 512: 2, 1024: 1}


@pytest.mark.parametrize(("detector", "voxel_mm"),
                         [(256, None), (512, None), (1024, None), (512, 2.0), (512, 3.0)])
def test_registration_scaling(benchmark, default_phantom, detector, voxel_mm):
    target = default_phantom.truth.target_center_ct_mm
    vol = default_phantom.volume.crop_around(target, np.full(3, 120.0))
    if voxel_mm is not None:
        vol = vol.resample(spacing_mm=np.full(3, voxel_mm))
    planned = planned_room_from_ct(target)
    views = imaging_pair(ImagingSettings(), binning=BINNING[detector])
    xray = XrayModel(XraySettings(), pixel_spacing_mm=views[0].pixel_spacing_mm)
    rng = np.random.default_rng(0)
    lis = DrrRenderer(vol, views, mu_water_per_mm=MU_W).render(matrix_from_pose(POSE) @ planned)
    live = [xray.simulate(li, rng) for li in lis]
    reg = Registration2D3D(vol, views, target_ct_mm=target, mu_water_per_mm=MU_W,
                           planned_room_from_ct=planned,
                           open_field_counts=xray.open_field_counts)
    res = benchmark.pedantic(reg.register, args=(live,), rounds=3, iterations=1)
    err = res.pose - POSE
    tol_mm = 1.0 if voxel_mm == 3.0 else 0.5
    tol_deg = 1.0 if voxel_mm == 3.0 or detector == 256 else 0.5
    benchmark.extra_info.update(detector=detector, voxel_mm=voxel_mm or 1.0,
                                ct_voxels=int(np.prod(vol.shape)), accepted=res.accepted,
                                max_translation_error_mm=float(np.abs(err[:3]).max()),
                                max_rotation_error_deg=float(np.abs(err[3:]).max()))
    assert res.accepted, res.reason
    assert np.abs(err[:3]).max() < tol_mm and np.abs(err[3:]).max() < tol_deg, err
