"""Side by side, same run: our DRR, our reference ray marcher, and plastimatch's DRR.

Run: ``.venv/bin/python -m pytest benchmarks/bench_peer_plastimatch.py --benchmark-only``
(``CKSIM_BENCH_QUICK=1``: 256² only). plastimatch is optional (``pip install plastimatch``
or the ``peer`` extra); without it its benchmarks are skipped with the reason
"plastimatch not installed" and ``cksim bench`` prints that line.

Same input for all three: the default phantom (seed 0) cropped to ±60 mm around the target
(121 × 121 × 81 voxels of 1 × 1 × 1.5 mm: the box the registration renders), view A of
the default pair at 256² (binning 4) or 512² (binning 2), CT pose (2, −1, 3 mm, 2, −1, 3°)
about the planned alignment, μ_water 0.0206/mm. plastimatch reads the μ volume (MHA,
written once, not timed) and renders in the CT frame with the view's source and detector
moved there (:mod:`cyberknife_sim.imaging.peer`).

Checks: our DRR vs the reference < 1 % relative RMS (512²: 2 × 2-binned vs the 256²
reference, < 1.5 %); plastimatch vs ours < 3 % (exact voxel chords vs trilinear sampling).
``extra_info``: ``ratio_*`` = other time / our time (> 1: ours is faster), plastimatch's
own compute time beside its process wall time (start-up and volume reading included).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from cyberknife_sim.anatomy import planned_room_from_ct
from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.imaging import DrrRenderer, imaging_pair, peer, reference_drr
from cyberknife_sim.scene import ImagingSettings

QUICK = os.environ.get("CKSIM_BENCH_QUICK", "") not in ("", "0")
SIZES = (256,) if QUICK else (256, 512)
BINNING = {256: 4, 512: 2, 1024: 1}
MU_W = 0.0206
POSE = (2.0, -1.0, 3.0, 2.0, -1.0, 3.0)
ROI_HALF_MM = 60.0
_OURS: dict[int, tuple[np.ndarray, float]] = {}  # size → (image, mean s)
_REF: dict[int, tuple[np.ndarray, float]] = {}


def _rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


@pytest.fixture(scope="module")
def case(default_phantom, tmp_path_factory):
    target = default_phantom.truth.target_center_ct_mm
    vol = default_phantom.volume.crop_around(target, np.full(3, ROI_HALF_MM))
    room_from_ct = matrix_from_pose(POSE) @ planned_room_from_ct(target)
    mha = None
    if peer.find_plastimatch() is not None:
        mha = peer.write_mu_mha(vol, tmp_path_factory.mktemp("peer") / "mu.mha",
                                mu_water_per_mm=MU_W)
    return vol, room_from_ct, mha


def _view(size: int):
    return imaging_pair(ImagingSettings(), binning=BINNING[size])[0]


def test_reference(benchmark, case):
    """The reference ray marcher (0.5 mm steps) at 256², one round (runs first)."""
    vol, room_from_ct, _ = case
    img = benchmark.pedantic(reference_drr, args=(vol, _view(256), room_from_ct),
                             kwargs={"mu_water_per_mm": MU_W, "step_mm": 0.5},
                             rounds=1, iterations=1)
    _REF[256] = (img, benchmark.stats.stats.mean)
    benchmark.extra_info.update(detector="256x256", ct_shape=list(vol.shape))
    assert img.max() > 2.0  # rays cross the body


@pytest.mark.parametrize("size", SIZES)
def test_ours(benchmark, case, size):
    """Our shear-warp DrrRenderer, one view (constructor and slab cache excluded)."""
    vol, room_from_ct, _ = case
    renderer = DrrRenderer(vol, _view(size), mu_water_per_mm=MU_W)
    renderer.render_view(room_from_ct, 0)
    img = benchmark.pedantic(renderer.render_view, args=(room_from_ct, 0),
                             rounds=3 if QUICK else 8, iterations=1, warmup_rounds=1)
    t_ours = benchmark.stats.stats.mean
    _OURS[size] = (img, t_ours)
    benchmark.extra_info["detector"] = f"{size}x{size}"
    if 256 not in _REF:
        pytest.fail("the reference benchmark did not run (select it too: -k 'reference or ours')")
    ref, t_ref = _REF[256]
    if size == 256:
        err = _rel_rms(img, ref)
        benchmark.extra_info["reference_ratio_to_ours"] = t_ref / t_ours
        assert err < 0.01, f"relative RMS vs reference {err:.4f}"
    else:
        f = size // 256
        err = _rel_rms(img.reshape(256, f, 256, f).mean(axis=(1, 3)), ref)
        assert err < 0.015, f"relative RMS vs reference (2x2 binned) {err:.4f}"
    benchmark.extra_info["relative_rms_vs_reference"] = err


@pytest.mark.parametrize("size", SIZES)
def test_plastimatch(benchmark, case, size):
    """``plastimatch drr`` (exact ray tracer) on the same CT, geometry and detector."""
    if peer.find_plastimatch() is None:
        pytest.skip(peer.NOT_INSTALLED)
    _, room_from_ct, mha = case
    view = _view(size)
    runs: list[peer.PeerDrr] = []

    def render():
        runs.append(peer.plastimatch_drr(view, room_from_ct, mha))
        return runs[-1].image

    img = benchmark.pedantic(render, rounds=2 if QUICK else 4, iterations=1)
    compute = [r.compute_s for r in runs if r.compute_s is not None]
    info = {"detector": f"{size}x{size}", "plastimatch_version": peer.plastimatch_version(),
            "plastimatch_compute_s": float(np.median(compute)) if compute else None}
    if size in _OURS:
        ours, t_ours = _OURS[size]
        err = _rel_rms(img, ours)
        info.update(relative_rms_vs_ours=err, ratio_to_ours=benchmark.stats.stats.mean / t_ours)
        if compute:
            info["compute_ratio_to_ours"] = float(np.median(compute)) / t_ours
        assert err < 0.03, f"plastimatch vs ours: relative RMS {err:.4f}"
    else:
        pytest.fail("our renderer's benchmark at this size did not run (select it too)")
    benchmark.extra_info.update(info)
