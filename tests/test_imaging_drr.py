"""DRR accuracy: analytic chords of uniform solids, and the fast renderer vs. the reference."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.anatomy import Volume
from cyberknife_sim.errors import InputError
from cyberknife_sim.geometry import apply_transform, invert, matrix_from_pose, translation
from cyberknife_sim.imaging import DrrRenderer, ViewGeometry, imaging_pair, reference_drr
from cyberknife_sim.imaging._drr import _accumulate_planes, _accumulate_sparse, _plane_offsets
from cyberknife_sim.scene import ImagingSettings

MU_W = 0.02
POSES = [(0, 0, 0, 0, 0, 0), (4.0, -3.0, 6.0, 3.0, -5.0, 8.0), (-10.0, 5.0, -2.0, -12.0, 7.0, 25.0)]


def _pixel_rays(view: ViewGeometry) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = view.shape
    cc, rr = np.meshgrid(np.arange(cols, dtype=float), np.arange(rows, dtype=float))
    ends = view.pixel_to_room(cc, rr)
    d = ends - view.source_room
    return d / np.linalg.norm(d, axis=-1, keepdims=True), ends


def _box_chords(view: ViewGeometry, lo_ct, hi_ct, room_from_ct,
                margin_mm: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Analytic chord length (mm) of every pixel ray through a box given in CT mm.

    Also returns a mask of the rays that enter and leave well inside a face (more than
    ``margin_mm`` from the box's edges) and not at grazing incidence, where the trilinear
    interpolant of the voxelized box has exactly the box's chord.
    """
    ct_from_room = invert(room_from_ct)
    d_room, _ = _pixel_rays(view)
    s = apply_transform(ct_from_room, view.source_room)
    d = d_room @ ct_from_room[:3, :3].T
    lo_ct, hi_ct = np.asarray(lo_ct), np.asarray(hi_ct)
    with np.errstate(divide="ignore"):
        t1 = (lo_ct - s) / d
        t2 = (hi_ct - s) / d
    t_in = np.minimum(t1, t2).max(axis=-1)
    t_out = np.maximum(t1, t2).min(axis=-1)
    deep = np.ones(t_in.shape, dtype=bool)
    for t, face in ((t_in, np.minimum(t1, t2).argmax(axis=-1)),
                    (t_out, np.maximum(t1, t2).argmin(axis=-1))):
        p = s + t[..., None] * d
        near = (np.abs(p - lo_ct) < margin_mm) | (np.abs(p - hi_ct) < margin_mm)
        deep &= near.sum(axis=-1) == 1
        # not grazing: at most 60 degrees from the face normal
        deep &= np.abs(np.take_along_axis(d, face[..., None], axis=-1)[..., 0]) > 0.5
    return np.maximum(t_out - t_in, 0.0), deep


def _cube_volume() -> tuple[Volume, np.ndarray, np.ndarray]:
    """Water box (HU 0) in air, 1 mm voxels; its trilinear edges sit half a voxel out."""
    hu = np.full((70, 80, 90), -1000, dtype=np.int16)
    hu[15:55, 20:50, 25:65] = 0  # [k, j, i]
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = (-45.0, -40.0, -35.0)
    vol = Volume(hu, affine, name="cube")
    lo = vol.ijk_to_ct([25 - 0.5, 20 - 0.5, 15 - 0.5])
    hi = vol.ijk_to_ct([65 - 0.5, 50 - 0.5, 55 - 0.5])
    return vol, lo, hi


def _sphere_volume(radius_mm: float = 15.0, voxel_mm: float = 0.25) -> Volume:
    """Water sphere with a one-voxel linear edge ramp centred on the radius."""
    n = int(np.ceil(2 * radius_mm / voxel_mm)) + 8
    x = (np.arange(n) - (n - 1) / 2) * voxel_mm
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    frac = np.clip(0.5 - (r - radius_mm) / voxel_mm, 0.0, 1.0)
    hu = (frac * 1000.0 - 1000.0).astype(np.float32)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = -(n - 1) / 2 * voxel_mm  # sphere center at CT origin
    return Volume(hu, affine, name="sphere")


@pytest.fixture(scope="module")
def views():
    return imaging_pair(ImagingSettings(), binning=4)  # 256 x 256 at 1.6 mm


@pytest.mark.parametrize(("substeps", "tolerance"), [(1, 0.01), (2, 0.005)])
@pytest.mark.parametrize("pose", POSES)
def test_uniform_cube_equals_mu_times_chord(views, pose, substeps, tolerance):
    """μ × chord where the chord is > 10 mm; Joseph (1 substep) errs most at sharp edges."""
    vol, lo, hi = _cube_volume()
    room_from_ct = matrix_from_pose(pose)
    renderer = DrrRenderer(vol, views, mu_water_per_mm=MU_W, slab_substeps=substeps)
    for view, drr in zip(views, renderer.render(room_from_ct), strict=True):
        chord, deep = _box_chords(view, lo, hi, room_from_ct)
        mask = (chord > 10.0) & deep
        assert mask.sum() > 300
        rel = np.abs(drr[mask] - MU_W * chord[mask]) / (MU_W * chord[mask])
        assert rel.max() < tolerance, f"{view.name}: max relative error {rel.max():.4f}"
        assert np.median(rel) < 0.002
        # and nothing where the rays miss the cube (by more than the 1-voxel edge ramp)
        far = _box_chords(view, lo - 2, hi + 2, room_from_ct)[0] == 0
        assert np.abs(drr[far]).max() < 1e-6


@pytest.mark.parametrize("pose", POSES[:2])
def test_uniform_sphere_equals_mu_times_chord(views, pose):
    vol = _sphere_volume()
    room_from_ct = matrix_from_pose(pose)
    center_room = apply_transform(room_from_ct, [0.0, 0.0, 0.0])
    drrs = DrrRenderer(vol, views, mu_water_per_mm=MU_W).render(room_from_ct)
    for view, drr in zip(views, drrs, strict=True):
        d, _ = _pixel_rays(view)
        w = center_room - view.source_room
        b2 = np.sum(w * w) - (d @ w) ** 2
        chord = 2 * np.sqrt(np.maximum(15.0**2 - b2, 0.0))
        mask = chord > 15.0  # grazing rim chords suffer the voxelization's partial volume
        assert mask.sum() > 100
        rel = np.abs(drr[mask] - MU_W * chord[mask]) / (MU_W * chord[mask])
        assert rel.max() < 0.005, f"{view.name}: max relative error {rel.max():.4f}"


def test_reference_renderer_on_cube(views):
    """The reference itself reproduces the analytic chords (it is the yardstick)."""
    vol, lo, hi = _cube_volume()
    view = views[0].with_binning(2)  # 128 x 128
    room_from_ct = matrix_from_pose(POSES[1])
    ref = reference_drr(vol, view, room_from_ct, mu_water_per_mm=MU_W, step_mm=0.25)
    chord, deep = _box_chords(view, lo, hi, room_from_ct)
    mask = (chord > 10.0) & deep
    rel = np.abs(ref[mask] - MU_W * chord[mask]) / (MU_W * chord[mask])
    assert rel.max() < 0.005


def test_fast_matches_reference_on_real_ct(shared_data):
    sitk = pytest.importorskip("SimpleITK")
    img = sitk.ReadImage(str(shared_data / "ct" / "example_ct.nii.gz"))
    affine = np.eye(4)
    affine[:3, :3] = np.asarray(img.GetDirection()).reshape(3, 3) * np.asarray(img.GetSpacing())
    affine[:3, 3] = img.GetOrigin()
    vol = Volume(sitk.GetArrayFromImage(img).astype(np.int16), affine, name="example_ct")
    center = vol.ijk_to_ct((np.array(vol.shape[::-1]) - 1) / 2)
    views = imaging_pair(ImagingSettings(), binning=8)  # 128 x 128 at 3.2 mm
    renderer = DrrRenderer(vol, views, mu_water_per_mm=0.0206)
    for i, pose in enumerate(POSES):
        room_from_ct = matrix_from_pose(pose) @ translation(-center)
        view_index = i % 2
        fast = renderer.render_view(room_from_ct, view_index)
        ref = reference_drr(vol, views[view_index], room_from_ct, mu_water_per_mm=0.0206,
                            step_mm=0.75)
        rel_rms = np.sqrt(np.mean((fast - ref) ** 2) / np.mean(ref**2))
        assert ref.max() > 3.0  # a real body was hit
        assert rel_rms < 0.01, f"pose {pose}: relative RMS error {rel_rms:.4f}"


def test_roi_crop_and_single_view(views):
    vol, lo, hi = _cube_volume()
    room_from_ct = matrix_from_pose(POSES[2])
    full = DrrRenderer(vol, views, mu_water_per_mm=MU_W).render(room_from_ct)
    roi = DrrRenderer(vol, views, mu_water_per_mm=MU_W, roi_center_ct=(lo + hi) / 2,
                      roi_half_size_mm=(hi - lo) / 2 + 3.0)
    assert roi.volume.shape[0] < vol.shape[0]
    # same integrals; only the intermediate grid (hence edge interpolation) differs
    diff = np.abs(roi.render(room_from_ct)[1] - full[1])
    assert diff.max() < 0.005 * full[1].max() and diff.mean() < 1e-4 * full[1].max()
    np.testing.assert_array_equal(roi.render_view(room_from_ct, 1), roi.render(room_from_ct)[1])
    # a smaller ROI removes the part of the cube outside it
    half = DrrRenderer(vol, views, mu_water_per_mm=MU_W, roi_center_ct=lo + 5.0,
                       roi_half_size_mm=10.0)
    assert half.render_view(room_from_ct, 0).sum() < 0.2 * full[0].sum()


def test_bad_inputs(views):
    vol, _, _ = _cube_volume()
    renderer = DrrRenderer(vol, views, mu_water_per_mm=MU_W)
    with pytest.raises(InputError, match="inside the CT"):
        renderer.render(translation(views[0].source_room))
    with pytest.raises(ValueError, match="room_from_ct"):
        renderer.render(np.eye(3))
    with pytest.raises(ValueError, match="both"):
        DrrRenderer(vol, views, mu_water_per_mm=MU_W, roi_center_ct=(0, 0, 0))
    with pytest.raises(InputError, match="outside the CT"):
        DrrRenderer(vol, views, mu_water_per_mm=MU_W, roi_center_ct=(500, 0, 0),
                    roi_half_size_mm=10)
    with pytest.raises(ValueError, match="accumulator must be one of 'numba', 'sparse'"):
        DrrRenderer(vol, views, mu_water_per_mm=MU_W, accumulator="dense")


@pytest.fixture(scope="module")
def phantom():
    from cyberknife_sim.anatomy import make_phantom

    return make_phantom("default", seed=0)


@pytest.mark.parametrize("pose", POSES)
def test_fast_matches_reference_on_phantom(phantom, pose):
    """Relative RMS error < 1 % against fine trilinear ray marching (both views)."""
    from cyberknife_sim.anatomy import planned_room_from_ct

    target = phantom.truth.target_center_ct_mm
    roi = phantom.volume.crop_around(target, (60.0, 60.0, 60.0))
    views = imaging_pair(ImagingSettings(), binning=8)  # 128 x 128 at 3.2 mm
    room_from_ct = matrix_from_pose(pose) @ planned_room_from_ct(target)
    fast = DrrRenderer(roi, views, mu_water_per_mm=0.0206).render(room_from_ct)
    for view, drr in zip(views, fast, strict=True):
        ref = reference_drr(roi, view, room_from_ct, mu_water_per_mm=0.0206, step_mm=0.5)
        assert ref.max() > 2.0
        rel_rms = np.sqrt(np.mean((drr - ref) ** 2) / np.mean(ref**2))
        assert rel_rms < 0.01, f"{view.name} pose {pose}: relative RMS error {rel_rms:.4f}"


def test_view_along_the_slice_axis():
    """A (non-default) view looking along room z: the renderer slabs along k instead."""
    vol, lo, hi = _cube_volume()
    view = ViewGeometry("Z", [0.0, 0.0, 2200.0], [0.0, 0.0, -1400.0], [0.0, 1.0, 0.0],
                        [-1.0, 0.0, 0.0], 1.6, (256, 256))
    room_from_ct = matrix_from_pose((3.0, -2.0, 1.0, 4.0, -6.0, 10.0))
    drr = DrrRenderer(vol, view, mu_water_per_mm=MU_W).render(room_from_ct)[0]
    chord, deep = _box_chords(view, lo, hi, room_from_ct)
    mask = (chord > 10.0) & deep
    assert mask.sum() > 300
    rel = np.abs(drr[mask] - MU_W * chord[mask]) / (MU_W * chord[mask])
    assert rel.max() < 0.01


@pytest.mark.parametrize("seed", range(4))
def test_accumulation_kernel_matches_sparse_products(seed):
    """The numba kernel is the same sum as the sparse reference (random slabs and geometry,
    footprints partly off the grid, planes that miss it entirely)."""
    rng = np.random.default_rng(seed)
    n_planes, n_v, n_u = rng.integers(5, 40, size=3)
    slabs = rng.random((n_planes, n_v, n_u), dtype=np.float32)
    padded = np.zeros((n_planes, n_u + 2, n_v + 2), np.float32)
    padded[:, 1:-1, 1:-1] = slabs.transpose(0, 2, 1)
    ratios = np.sort(rng.uniform(0.7, 1.3, n_planes))
    src_uv = (rng.uniform(-50, 50), rng.uniform(-50, 50))
    lo = rng.uniform(-8.0, 5.0, 2)
    step = float(rng.choice([0.25, 0.5, 1.0, 1.7]))
    width, height = (int(rng.integers(3, 90)) for _ in range(2))
    ref = _accumulate_sparse(slabs, ratios, src_uv, lo, step, width, height)
    got = _accumulate_planes(padded, *_plane_offsets(ratios, src_uv[0], lo[0], step),
                             *_plane_offsets(ratios, src_uv[1], lo[1], step), width, height,
                             int(rng.integers(1, 40)))
    assert got.shape == (width, height) and got.dtype == np.float32
    assert ref.max() > 0.5  # the grid sees the slabs
    np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * n_planes)


@pytest.mark.parametrize("substeps", [1, 3])
def test_numba_renderer_matches_sparse_renderer(phantom, substeps):
    """Whole renderer, both accumulators, whole phantom: equal to float32 rounding."""
    from cyberknife_sim.anatomy import planned_room_from_ct

    target = phantom.truth.target_center_ct_mm
    views = imaging_pair(ImagingSettings(), binning=8)
    room_from_ct = matrix_from_pose(POSES[2]) @ planned_room_from_ct(target)
    kwargs = {"mu_water_per_mm": 0.0206, "slab_substeps": substeps}
    renderer = DrrRenderer(phantom.volume, views, **kwargs)
    assert renderer.accumulator == "numba"  # the default
    fast = renderer.render(room_from_ct)
    reference = DrrRenderer(phantom.volume, views, accumulator="sparse", **kwargs)
    ref = reference.render(room_from_ct)
    for a, b in zip(fast, ref, strict=True):
        assert b.max() > 2.0
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * b.max())
