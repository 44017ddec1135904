"""The HU ↔ material model and the planning CT as a simulated acquisition of particles.

Ground truth is analytic: hand-made particle sets (a sphere, a slab) whose mass, CT number
and edge spread through a known slice sensitivity profile are known in closed form.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyberknife_sim.anatomy import TISSUE_HU
from cyberknife_sim.truth._acquire import (
    acquire_ct,
    acquire_ct_on_grid,
    bin_particles,
    breath_phase_levels,
    noise_sigma_hu,
    planning_positions,
    regular_grid,
)
from cyberknife_sim.truth._materials import (
    DENSITY_G_CM3,
    MATERIAL_HU,
    hu_to_masses,
    hu_to_particles,
    masses_to_hu,
)
from cyberknife_sim.truth._particles import MATERIALS, ParticleSet


def _lattice_particles(inside, lo_mm, hi_mm, step_mm: float, hu: float,
                       name: str) -> ParticleSet:
    """Particles of CT number ``hu`` on a lattice (cell ``step_mm``) where ``inside(xyz)``."""
    axes = [np.arange(a + step_mm / 2, b, step_mm) for a, b in zip(lo_mm, hi_mm, strict=True)]
    xyz = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    xyz = xyz[inside(xyz)]
    m = hu_to_masses(np.full(len(xyz), hu), step_mm**3 / 1000.0)      # (4, n)
    mats = [q for q in range(len(MATERIALS)) if np.any(m[q] > 0)]
    pos = np.concatenate([xyz] * len(mats)).astype(np.float32)
    return ParticleSet(pos, np.concatenate([m[q] for q in mats]).astype(np.float32),
                       np.repeat(np.array(mats, np.uint8), len(xyz)),
                       np.zeros(len(pos), np.int16), step_mm, name)


def _sphere(radius_mm: float = 15.0, hu: float = 400.0, step_mm: float = 0.5) -> ParticleSet:
    r = radius_mm
    return _lattice_particles(lambda p: np.sum(p**2, axis=1) <= r * r, [-r] * 3, [r] * 3,
                              step_mm, hu, "sphere")


# ---- HU <-> materials -------------------------------------------------------------------

def test_hu_round_trip_every_hu_from_minus_1000_to_3000():
    hu = np.arange(-1000.0, 3000.0 + 0.25, 0.25)
    m = hu_to_masses(hu, 1e-3, air_threshold_hu=-1000.0)
    assert np.all(m >= 0)
    assert np.max(np.abs(masses_to_hu(m, 1e-3) - hu)) < 1e-6
    # default air threshold: -950 and above round-trip, air comes back as -1000 (no mass)
    m = hu_to_masses(hu, 1e-3)
    back = masses_to_hu(m, 1e-3)
    assert np.max(np.abs(back[hu >= -950] - hu[hu >= -950])) < 1e-6
    assert np.all(back[hu < -950] == -1000.0)


def test_reference_materials_and_phantom_tissues():
    # each pure material at its reference density gives its reference HU
    for q in range(len(MATERIALS)):
        m = np.zeros(len(MATERIALS))
        m[q] = DENSITY_G_CM3[q]
        assert masses_to_hu(m, 1.0) == pytest.approx(MATERIAL_HU[q], abs=1e-9)
    assert DENSITY_G_CM3[MATERIALS.index("cortical_bone")] == 1.92      # ICRU-44
    # the phantom's tissues map to the expected materials and densities
    one = lambda name: hu_to_masses(np.array(TISSUE_HU[name]), 1.0)  # noqa: E731
    fat, soft = one("fat"), one("soft_tissue")
    assert fat[MATERIALS.index("adipose")] == pytest.approx(0.95) and fat.sum() == fat[1]
    assert soft[MATERIALS.index("soft_tissue")] == pytest.approx(1.06) and soft.sum() == soft[0]
    lung = one("lung")
    assert lung.sum() == lung[MATERIALS.index("lung")] and 0.15 < lung.sum() < 0.22
    canc = one("cancellous_bone")       # 225 HU: marrow + 11.9 % bone by volume
    frac = canc[MATERIALS.index("cortical_bone")] / 1.92
    assert frac == pytest.approx((225 - 40) / (1600 - 40), rel=1e-9)
    assert canc.sum() == pytest.approx(1.06 * (1 - frac) + 1.92 * frac)


def test_hu_to_particles_positions_and_mixtures():
    hu = np.array([[[-1000, -800, 0, 500]]], np.int16)            # [k, j, i]
    a = np.diag([2.0, 2.0, 3.0, 1.0])
    a[:3, 3] = [10, 20, 30]
    ps = hu_to_particles(hu, a)
    # air: none; lung: 1; fat/soft mix: 2; skeletal: 2 (marrow + bone at the same place)
    assert len(ps) == 5
    assert ps.material.tolist() == [2, 0, 1, 0, 3]
    np.testing.assert_allclose(ps.position_ct_mm[:, 0], [12, 14, 14, 16, 16])
    assert ps.size_mm == pytest.approx(12.0 ** (1 / 3))
    assert ps.total_mass_g == pytest.approx(hu_to_masses(hu, 0.012).sum(), rel=1e-6)


def test_hu_round_trip_through_particles_and_acquisition():
    rng = np.random.default_rng(3)
    hu = rng.integers(-1000, 3001, size=(6, 7, 8)).astype(np.int16)
    a = np.diag([1.5, 1.5, 1.5, 1.0])          # isotropic: particles of one voxel's size
    a[:3, 3] = [-5.0, 3.0, 40.0]
    ps = hu_to_particles(hu, a, air_threshold_hu=-1000)
    v = acquire_ct_on_grid([(ps, ps.position_ct_mm)], a, hu.shape, ssp="box", noise_hu=0)
    # particles of one voxel's size at the voxel centres, box SSP: each voxel gets its own
    assert np.max(np.abs(v.hu.astype(int) - hu)) <= 1


# ---- acquisition ------------------------------------------------------------------------

@pytest.mark.parametrize("slice_mm", [1.0, 3.0])
def test_sphere_mass_conserved_and_hu_inside(slice_mm):
    ps = _sphere()
    origin = [-24.5, -24.5, -24.0]
    shape = (int(48 // slice_mm) + 1, 50, 50)
    a = regular_grid(origin, pixel_mm=1.0, slice_mm=slice_mm)
    for q in np.unique(ps.material):
        g = bin_particles([(ps, ps.position_ct_mm)], a, shape, quantity="mass", material=q)
        exact = float(ps.mass_g[ps.material == q].sum(dtype=np.float64))
        assert g.sum() == pytest.approx(exact, rel=1e-3)
    # a shifted, non-aligned sphere: still conserved
    pos = ps.position_ct_mm + np.float32([0.37, -0.21, 0.61])
    g = bin_particles([(ps, pos)], a, shape, quantity="mass")
    assert g.sum() == pytest.approx(ps.total_mass_g, rel=1e-3)

    v0 = acquire_ct([(ps, ps.position_ct_mm)], origin_ct_mm=origin, shape=shape,
                    slice_mm=slice_mm, noise_hu=0)
    xyz = v0.ijk_to_ct(np.stack(np.meshgrid(*[np.arange(n) for n in shape[::-1]],
                                            indexing="ij"), -1).reshape(-1, 3))
    r = np.linalg.norm(xyz, axis=1).reshape(shape[::-1]).transpose(2, 1, 0)
    inner = r < 15.0 - 1.0 - slice_mm
    outer = r > 15.0 + 1.0 + slice_mm
    assert np.all(np.abs(v0.hu[inner].astype(float) - 400.0) <= 1.0)
    assert np.all(v0.hu[outer] == -1000)

    v = acquire_ct([(ps, ps.position_ct_mm)], origin_ct_mm=origin, shape=shape,
                   slice_mm=slice_mm, noise_hu=10.0, rng=np.random.default_rng(1))
    d = v.hu[inner].astype(float)
    assert abs(d.mean() - 400.0) < 1.5
    assert d.std() == pytest.approx(10.0, rel=0.15)


@settings(max_examples=25, deadline=None)
@given(size_mm=st.floats(0.25, 3.0), slice_mm=st.floats(0.625, 3.0),
       pixel_mm=st.floats(0.5, 1.5), ssp=st.sampled_from(["box", "triangle"]),
       seed=st.integers(0, 2**31 - 1))
def test_binning_conserves_mass_for_any_footprint(size_mm, slice_mm, pixel_mm, ssp, seed):
    rng = np.random.default_rng(seed)
    n = 200
    pos = rng.uniform(-8.0, 8.0, (n, 3)).astype(np.float32)
    ps = ParticleSet(pos, rng.uniform(1e-4, 1e-2, n).astype(np.float32),
                     rng.integers(0, 4, n).astype(np.uint8), np.zeros(n, np.int16), size_mm)
    shape = (int(30 / slice_mm), int(30 / pixel_mm), int(30 / pixel_mm))
    a = regular_grid([-15.0, -15.0, -15.0], pixel_mm=pixel_mm, slice_mm=slice_mm)
    g = bin_particles([(ps, pos, 0.5)], a, shape, ssp=ssp, quantity="mass")
    assert g.min() >= 0.0
    assert g.sum() == pytest.approx(0.5 * ps.total_mass_g, rel=1e-6)
    if ssp == "triangle":
        # a triangle SSP holds a linear-interpolation kernel: the binned centre of mass
        # along z is exactly the particles' (in-plane the pixel box rounds, as a CT does)
        kz = np.arange(shape[0]) * slice_mm - 15.0
        com_z = np.sum(g.sum(axis=(1, 2)) * kz) / g.sum()
        exact = float(ps.mass_g.astype(float) @ pos[:, 2]) / ps.mass_g.sum(dtype=float)
        assert com_z == pytest.approx(exact, abs=1e-4)


def _edge_width_mm(slice_mm: float, ssp: str, n_sub: int = 10) -> float:
    """10-90 % width of the SI edge of a slab, oversampled by shifting the slices."""
    slab = _lattice_particles(lambda p: np.ones(len(p), bool), [-6, -6, -20], [6, 6, 10],
                              0.5, 40.0, "slab")
    z, val = [], []
    for q in range(n_sub):
        z0 = 2.0 + q * slice_mm / n_sub
        shape = (int(20 // slice_mm) + 1, 3, 3)
        v = acquire_ct([(slab, slab.position_ct_mm)], origin_ct_mm=[-1, -1, z0], shape=shape,
                       slice_mm=slice_mm, ssp=ssp, noise_hu=0)
        z.append(z0 + slice_mm * np.arange(shape[0]))
        val.append(v.hu[:, 1, 1].astype(float))
    z, val = np.concatenate(z), np.concatenate(val)
    order = np.argsort(z)
    z, frac = z[order], (val[order] + 1000.0) / 1040.0      # 1 inside, 0 outside (edge at 10)
    # falling edge: interpolate the 90 % and 10 % crossings
    z90 = np.interp(-0.9, -frac, z)
    z10 = np.interp(-0.1, -frac, z)
    return float(z10 - z90)


@pytest.mark.parametrize("ssp, factor", [("box", 0.8), ("triangle", 2 * (1 - np.sqrt(0.2)))])
def test_si_edge_width_follows_the_slice_profile(ssp, factor):
    # edge spread = step ⊗ SSP: 10-90 % width 0.8 T (box), 2(1 - sqrt(0.2)) T = 1.106 T
    # (triangle of FWHM T)
    w1 = _edge_width_mm(1.0, ssp)
    w3 = _edge_width_mm(3.0, ssp)
    assert w1 == pytest.approx(factor * 1.0, abs=0.06)
    assert w3 == pytest.approx(factor * 3.0, abs=0.15)
    assert w3 / w1 == pytest.approx(3.0, rel=0.08)


def test_same_seed_same_ct_bit_for_bit():
    ps = _sphere(radius_mm=8.0, hu=100.0)
    kw = dict(origin_ct_mm=[-12, -12, -12], shape=(17, 25, 25), slice_mm=1.5, noise_hu=10.0)
    a = acquire_ct([(ps, ps.position_ct_mm)], rng=np.random.default_rng(7), **kw)
    b = acquire_ct([(ps, ps.position_ct_mm)], rng=np.random.default_rng(7), **kw)
    c = acquire_ct([(ps, ps.position_ct_mm)], rng=np.random.default_rng(8), **kw)
    assert a.hu.dtype == np.int16
    assert np.array_equal(a.hu, b.hu)
    assert not np.array_equal(a.hu, c.hu)
    with pytest.raises(ValueError, match="rng"):
        acquire_ct([(ps, ps.position_ct_mm)], **kw)


@pytest.mark.parametrize("texture", ["white", "fbp"])
def test_noise_level_and_texture(texture):
    # a block of soft tissue filling the grid (no clipping at -1024 HU)
    block = _lattice_particles(lambda p: np.ones(len(p), bool), [0, 0, 0], [128, 128, 8],
                               1.0, 40.0, "block")
    v = acquire_ct([(block, block.position_ct_mm)], origin_ct_mm=[0.5, 0.5, 0.5],
                   shape=(8, 128, 128), slice_mm=1.0, ssp="box", noise_hu=20.0,
                   noise_texture=texture, rng=np.random.default_rng(0))
    n = v.hu.astype(float) - 40.0
    assert n.std() == pytest.approx(20.0, rel=0.03)
    lag1 = np.mean(n[:, :, 1:] * n[:, :, :-1]) / n.var()
    lag_z = np.mean(n[1:] * n[:-1]) / n.var()
    assert abs(lag_z) < 0.03                      # slices independent
    if texture == "white":
        assert abs(lag1) < 0.03
    else:                                          # ramp·Hann NPS: strong positive neighbour
        assert lag1 > 0.3                          # correlation, negative further out
        lag3 = np.mean(n[:, :, 3:] * n[:, :, :-3]) / n.var()
        assert lag3 < 0.0


def test_noise_at_fixed_dose_scales_as_one_over_sqrt_slice():
    # fixed dose: a slice n times thicker collects n times the photons of a thin one, so it
    # is the mean of n independent thin slices (box SSP, white noise): sigma / sqrt(n)
    block = _lattice_particles(lambda p: np.ones(len(p), bool), [0, 0, 0], [64, 64, 16],
                               1.0, 40.0, "block")
    kw = dict(ssp="box", noise_hu=20.0, noise_texture="white", noise_reference_slice_mm=1.5)
    thin = acquire_ct([(block, block.position_ct_mm)], origin_ct_mm=[0.5, 0.5, 0.25],
                      shape=(32, 64, 64), slice_mm=0.5, rng=np.random.default_rng(1), **kw)
    thick = acquire_ct([(block, block.position_ct_mm)], origin_ct_mm=[0.5, 0.5, 1.0],
                       shape=(8, 64, 64), slice_mm=2.0, rng=np.random.default_rng(2), **kw)
    n_thin = thin.hu.astype(float) - 40.0
    assert n_thin.std() == pytest.approx(20.0 * np.sqrt(1.5 / 0.5), rel=0.03)
    mean4 = n_thin.reshape(8, 4, 64, 64).mean(axis=1)     # 4 thin slices = one 2 mm slice
    assert (thick.hu.astype(float) - 40.0).std() == pytest.approx(mean4.std(), rel=0.04)
    assert noise_sigma_hu(10.0, slice_mm=3.0, reference_slice_mm=None) == 10.0
    with pytest.raises(ValueError, match="noise_reference_slice_mm"):
        noise_sigma_hu(10.0, slice_mm=3.0, reference_slice_mm=0.0)


def _triangle_cdf(y, half):
    """Cumulative integral of a unit-area triangle of half-base ``half`` (= its FWHM)."""
    y = np.clip(np.asarray(y, float), -half, half)
    return np.where(y < 0, (y + half) ** 2 / (2 * half**2), 1 - (half - y) ** 2 / (2 * half**2))


def test_slice_grid_phase_moves_a_sampled_edge_and_averages_out():
    # a slab whose upper face (an endplate) is at z = 10 mm, 3 mm slices, triangle SSP:
    # the 50 % crossing of the sampled (linearly interpolated) profile depends on where the
    # slices fall (the closed form: step ⊗ triangle sampled at the slice centres) and its
    # mean over the grid phase is the true edge
    slab = _lattice_particles(lambda p: np.ones(len(p), bool), [-6, -6, -20], [6, 6, 10],
                              0.5, 40.0, "slab")
    t, edges, exact = 3.0, [], []
    for phase in np.arange(8) / 8:
        v = acquire_ct([(slab, slab.position_ct_mm)], origin_ct_mm=[-1, -1, -4.0],
                       shape=(10, 3, 3), slice_mm=t, noise_hu=0, slice_phase=phase)
        z = v.ct_from_ijk[2, 3] + t * np.arange(10)
        assert v.ct_from_ijk[2, 3] == pytest.approx(-4.0 + phase * t)
        frac = (v.hu[:, 1, 1].astype(float) + 1000.0) / 1040.0
        edges.append(np.interp(-0.5, -frac, z))
        exact.append(np.interp(-0.5, -(1.0 - _triangle_cdf(z - 10.0, t)), z))
    edges = np.array(edges)
    assert edges == pytest.approx(exact, abs=0.01)
    assert edges.max() - edges.min() > 0.1            # a fixed grid is biased ...
    assert edges.mean() == pytest.approx(10.0, abs=0.01)   # ... the phase average is not
    with pytest.raises(ValueError, match="slice_phase"):
        acquire_ct([(slab, slab.position_ct_mm)], origin_ct_mm=[0, 0, 0], shape=(2, 2, 2),
                   noise_hu=0, slice_phase=1.0)


class _Toy:
    """A sphere that moves 10 mm inferior at level 1, plus the target offset."""

    def __init__(self) -> None:
        self.ps = _sphere(radius_mm=6.0, hu=40.0)

    def positions_ct(self, breath_level, target_offset_ct_mm):
        d = np.array([0.0, 0.0, -10.0]) * breath_level + np.asarray(target_offset_ct_mm)
        return [(self.ps, (self.ps.position_ct_mm + d).astype(np.float32))]


@pytest.mark.parametrize("phase", ["exhale", "inhale", "average"])
def test_planning_positions_phases(phase):
    toy = _Toy()
    items = planning_positions(toy, phase, n_average=8, inhale_level=1.0,
                               target_offset_at_inhale_ct_mm=[0, 2.0, 0])
    assert sum(w for _, _, w in items) == pytest.approx(1.0)
    levels = {"exhale": [0.0], "inhale": [1.0], "average": breath_phase_levels(8)}[phase]
    assert len(items) == len(levels)
    mean_dz = -10.0 * np.mean(levels)
    v = acquire_ct(items, origin_ct_mm=[-10, -10, -25], shape=(24, 21, 21), slice_mm=1.5,
                   noise_hu=0)
    g = bin_particles(items, v.ct_from_ijk, v.shape, quantity="mass")
    assert g.sum() == pytest.approx(toy.ps.total_mass_g, rel=1e-3)
    kz = np.arange(v.shape[0]) * 1.5 - 25.0
    cz = np.sum(g.sum(axis=(1, 2)) * kz) / g.sum()
    assert cz == pytest.approx(mean_dz, abs=0.05)
    assert 0.0 < breath_phase_levels(8).mean() < 0.5       # dwells near exhale
    with pytest.raises(ValueError, match="phase"):
        planning_positions(toy, "midventilation")
