"""DRR speed: the fast renderer vs. the reference ray marcher on the same input, same run.

Run: ``.venv/bin/python -m pytest benchmarks/bench_drr.py --benchmark-only``.

Cases (one view, view A, pose (2, -1, 3, 2, -1, 3) about the planned alignment):

* ``phantom_roi`` — default phantom cropped to ±60 mm around the target (the registration's
  use: ``DrrRenderer(..., roi_center_ct=target, roi_half_size_mm=60)``);
* ``phantom_full`` — the whole default phantom (340 × 260 × 140 voxels);
* ``real_ct`` — the real CT of ../shared/data/ct (122 × 101 × 112 at 3 mm), centered.

Every fast case runs with both sums over slabs: ``numba`` (the renderer's kernel) and
``sparse`` (the previous two sparse products, kept as the tests' reference), same run.
``test_jit_first_call`` times the first render in a fresh process, with an empty numba
cache (compilation) and with the cache from that run (``cache=True``: loading only).

The reference (``reference_drr``, 0.5 mm steps) runs first and is kept; every fast
benchmark asserts a relative RMS error < 1 % against it at the same detector size (or, at
512² where no 512² reference is run, against the 256² reference through 2×2 binning of the
512² image, < 1.5 %) and stores ``speedup_vs_reference`` in ``extra_info`` when the
reference ran at that size in the same session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from cyberknife_sim.anatomy import planned_room_from_ct
from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.imaging import DrrRenderer, imaging_pair, reference_drr
from cyberknife_sim.scene import ImagingSettings

MU_W = 0.0206
POSE = (2.0, -1.0, 3.0, 2.0, -1.0, 3.0)
BINNING = {256: 4, 512: 2}
REFERENCE_SIZES = {"phantom_roi": (256, 512), "phantom_full": (256,), "real_ct": (256,)}
_REFERENCE: dict[tuple[str, int], tuple[np.ndarray, float]] = {}


def _case(name: str, request):
    """(volume, room_from_ct, renderer kwargs) of a benchmark case."""
    if name == "real_ct":
        vol = request.getfixturevalue("real_ct")
        center = vol.ijk_to_ct((np.array(vol.shape[::-1]) - 1) / 2)
        return vol, matrix_from_pose(POSE) @ planned_room_from_ct(center), {}
    ph = request.getfixturevalue("default_phantom")
    target = ph.truth.target_center_ct_mm
    room_from_ct = matrix_from_pose(POSE) @ planned_room_from_ct(target)
    if name == "phantom_roi":
        return ph.volume, room_from_ct, {"roi_center_ct": target, "roi_half_size_mm": 60.0}
    return ph.volume, room_from_ct, {}


def _reference_input(vol, kwargs):
    if "roi_center_ct" in kwargs:
        return vol.crop_around(kwargs["roi_center_ct"], np.full(3, kwargs["roi_half_size_mm"]))
    return vol


def _reference(name: str, size: int, request) -> np.ndarray:
    if (name, 256) not in _REFERENCE and (name, size) not in _REFERENCE:
        vol, room_from_ct, kwargs = _case(name, request)
        view = imaging_pair(ImagingSettings(), binning=4)[0]
        t0 = time.perf_counter()
        img = reference_drr(_reference_input(vol, kwargs), view, room_from_ct,
                            mu_water_per_mm=MU_W, step_mm=0.5)
        _REFERENCE[(name, 256)] = (img, time.perf_counter() - t0)
    return _REFERENCE[(name, size)][0] if (name, size) in _REFERENCE else _REFERENCE[
        (name, 256)][0]


def _rel_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2) / np.mean(b**2)))


@pytest.mark.parametrize(("name", "size"), [(n, s) for n, sizes in REFERENCE_SIZES.items()
                                            for s in sizes])
def test_reference_drr(benchmark, request, name, size):
    """The slow, obviously correct renderer (one round)."""
    vol, room_from_ct, kwargs = _case(name, request)
    view = imaging_pair(ImagingSettings(), binning=BINNING[size])[0]
    sub = _reference_input(vol, kwargs)
    t0 = time.perf_counter()
    img = benchmark.pedantic(reference_drr, args=(sub, view, room_from_ct),
                             kwargs={"mu_water_per_mm": MU_W, "step_mm": 0.5},
                             rounds=1, iterations=1)
    _REFERENCE[(name, size)] = (img, time.perf_counter() - t0)
    assert img.shape == view.shape and img.max() > 2.0  # rays cross a body


FAST_CASES = [(n, s, 2.0) for n in REFERENCE_SIZES for s in (256, 512)] + [
    (n, s, 1.0) for n in ("phantom_roi", "phantom_full") for s in (256, 512)]


@pytest.mark.parametrize("accumulator", ["numba", "sparse"])
@pytest.mark.parametrize(("name", "size", "oversampling"), FAST_CASES)
def test_fast_drr(benchmark, request, name, size, oversampling, accumulator):
    """The shear-warp renderer, one view, construction (caches) excluded.

    ``oversampling`` 2 is the renderer's default; the whole phantom is also run at 1 (one
    intermediate sample per voxel), which keeps it within 0.5 % of the reference. The
    sharply cropped ROI at 1 is timed too, but (as the renderer documents) it needs 2 to
    stay under 1 % (1.2 % at 1): its bound is 1.5 %.
    """
    tolerance = 0.015 if (name, oversampling) == ("phantom_roi", 1.0) else 0.01
    vol, room_from_ct, kwargs = _case(name, request)
    views = imaging_pair(ImagingSettings(), binning=BINNING[size])
    renderer = DrrRenderer(vol, views, mu_water_per_mm=MU_W, oversampling=oversampling,
                           accumulator=accumulator, **kwargs)
    renderer.render_view(room_from_ct, 0)  # warm the slab cache (and the JIT)
    img = benchmark(renderer.render_view, room_from_ct, 0)
    ref = _reference(name, size, request)
    if ref.shape == img.shape:
        err = _rel_rms(img, ref)
        assert err < tolerance, f"relative RMS error {err:.4f}"
        benchmark.extra_info["speedup_vs_reference"] = (
            _REFERENCE[(name, size)][1] / benchmark.stats.stats.mean)
    else:  # 512 image vs 256 reference: 2x2 binning of the image
        binned = img.reshape(ref.shape[0], 2, ref.shape[1], 2).mean(axis=(1, 3))
        err = _rel_rms(binned, ref)
        assert err < tolerance + 0.005, f"relative RMS error (2x2 binned) {err:.4f}"
    benchmark.extra_info["relative_rms_error"] = err
    benchmark.extra_info["oversampling"] = oversampling
    benchmark.extra_info["accumulator"] = accumulator


_FIRST_CALL = """
import time
import numpy as np
t0 = time.perf_counter()
from cyberknife_sim.anatomy import make_phantom, planned_room_from_ct
from cyberknife_sim.imaging import DrrRenderer, imaging_pair
from cyberknife_sim.scene import ImagingSettings
ph = make_phantom("default", seed=0)
target = ph.truth.target_center_ct_mm
r = DrrRenderer(ph.volume, imaging_pair(ImagingSettings(), binning=8), mu_water_per_mm=0.02,
                roi_center_ct=target, roi_half_size_mm=60.0)
t1 = time.perf_counter()
r.render_view(planned_room_from_ct(target), 0)
t2 = time.perf_counter()
r._slabs.clear()
r.render_view(planned_room_from_ct(target), 0)
t3 = time.perf_counter()
print(t2 - t1, t3 - t2)
"""


def test_jit_first_call(benchmark, tmp_path):
    """First render in a fresh process (compile, then cached), minus a warm render.

    Imports and the phantom are excluded; a second render with the slab cache cleared (same
    work without the JIT) is subtracted.
    """
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba_cache"))

    def first_call_s() -> float:
        out = subprocess.run([sys.executable, "-c", _FIRST_CALL], env=env, check=True,
                             capture_output=True, text=True).stdout.split()
        return float(out[0]) - float(out[1])

    compile_s = benchmark.pedantic(first_call_s, rounds=1, iterations=1)
    cached_s = first_call_s()
    benchmark.extra_info["first_call_compile_s"] = compile_s
    benchmark.extra_info["first_call_cached_s"] = cached_s
    assert cached_s < compile_s


def test_fast_drr_pair_512(benchmark, default_phantom):
    """Both views of the ROI case at 512² (what one registration cost evaluation needs)."""
    target = default_phantom.truth.target_center_ct_mm
    room_from_ct = matrix_from_pose(POSE) @ planned_room_from_ct(target)
    renderer = DrrRenderer(default_phantom.volume, imaging_pair(ImagingSettings()),
                           mu_water_per_mm=MU_W, roi_center_ct=target, roi_half_size_mm=60.0)
    pair = benchmark(renderer.render, room_from_ct)
    np.testing.assert_array_equal(pair[0], renderer.render_view(room_from_ct, 0))
    assert pair[1].max() > 2.0
