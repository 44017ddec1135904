"""Delivered dose from a run's record: frames, the shift accumulation against the exact
per-step sum, and the planned dose back for an axis that follows the anatomy exactly."""

from __future__ import annotations

import numpy as np
import pytest

from cyberknife_sim.anatomy.volume import Volume
from cyberknife_sim.dose import DoseEngine, DoseGrid, delivered_dose_gy, planned_beam_ct
from cyberknife_sim.errors import InputError
from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.plan import Beam, Node
from cyberknife_sim.simulation import LoopRecord

TARGET_CT = np.array([5.0, -3.0, 10.0])
RATE_MU_PER_MIN = 600.0


@pytest.fixture(scope="module")
def engine() -> DoseEngine:
    """A water box (HU 0) with a bone slab, 2 mm voxels, about the target."""
    hu = np.zeros((80, 80, 80), dtype=np.int16)
    hu[:, 50:56, :] = 800  # bone slab (posterior, +y) to make it heterogeneous
    a = np.diag([2.0, 2.0, 2.0, 1.0])
    a[:3, 3] = TARGET_CT - 79.0
    return DoseEngine(Volume(hu, a, name="water box"))


def _beams() -> list[Beam]:
    out = []
    for k, src in enumerate(([0.0, -800.0, 0.0], [565.7, -565.7, 0.0], [0.0, -565.7, 565.7])):
        out.append(Beam(Node(k, np.array(src)), np.zeros(3), 100.0, 20.0, RATE_MU_PER_MIN))
    return out


def _points() -> np.ndarray:
    return DoseGrid.around(TARGET_CT - 16.0, TARGET_CT + 16.0, 2.0).points_ct()


def _record(beams: list[Beam], poses: np.ndarray, offsets: np.ndarray, *, follow: bool,
            steps_per_beam: int) -> LoopRecord:
    """Each beam on for ``steps_per_beam`` steps of equal MU. ``follow``: the actual axis is
    the planned one moved with the target's frame (perfect tracking); else it stays put."""
    n = steps_per_beam * len(beams)
    rec = LoopRecord.empty(n, len(beams))
    on_s = beams[0].mu / (RATE_MU_PER_MIN / 60.0) / steps_per_beam
    for i in range(n):
        k = i // steps_per_beam
        m = matrix_from_pose(poses[i])
        src, d = beams[k].source_room, beams[k].direction_room
        if follow:
            src = m[:3, :3] @ src + m[:3, 3] + offsets[i]
            d = m[:3, :3] @ d
        rec.beam_source[i], rec.beam_direction[i] = src, d
        rec.beam_on_s[i], rec.beam_index[i] = on_s, k
        rec.room_from_anatomy[i], rec.target_offset[i] = m, offsets[i]
    rec.n_steps = n
    return rec


def _planned(engine, beams, pts):
    return sum(b.mu * engine.dose_per_mu(*planned_beam_ct(b, TARGET_CT), b.collimator_mm, pts)
               for b in beams)


def test_perfect_tracking_gives_the_planned_dose_back(engine):
    """An axis that follows the moving target exactly (translation, rotation, breathing
    offset) maps onto the planned axis in the target's frame: delivered == planned."""
    beams, pts = _beams(), _points()
    rng = np.random.default_rng(3)
    n = 3 * 20
    poses = np.hstack([rng.normal(0, 3.0, (n, 3)), rng.normal(0, 1.5, (n, 3))])
    offsets = rng.normal(0, 4.0, (n, 3))
    rec = _record(beams, poses, offsets, follow=True, steps_per_beam=20)
    planned = _planned(engine, beams, pts)
    # the shift accumulation reads its off-axis table at zero offset (float32): 1e-4
    for method, tol in (("shift", 1e-4), ("exact", 1e-6)):
        got = delivered_dose_gy(engine, beams, rec, target_ct=TARGET_CT, points_ct=pts,
                                method=method)
        assert np.max(np.abs(got - planned)) <= tol * planned.max(), method


def test_static_beam_on_a_shifted_target_moves_the_dose_with_it(engine):
    """Anatomy translated by δ under a beam that stays where it was planned: in the CT frame
    the beam sits at -δ, so in water the delivered dose at p equals the planned dose at p+δ
    (lateral δ, one vertical beam; the slab lies below the points)."""
    beam = _beams()[:1]
    delta = np.array([1.5, 0.0, -1.0])  # lateral to the vertical beam (room y)
    pts = _points()
    pts = pts[pts[:, 1] < TARGET_CT[1] + 10.0]
    rec = _record(beam, np.tile(np.r_[delta, 0, 0, 0], (10, 1)), np.zeros((10, 3)),
                  follow=False, steps_per_beam=10)
    got = delivered_dose_gy(engine, beam, rec, target_ct=TARGET_CT, points_ct=pts,
                            method="exact")
    expect = beam[0].mu * engine.dose_per_mu(*planned_beam_ct(beam[0], TARGET_CT), 20.0,
                                             pts + delta)
    assert np.max(np.abs(got - expect)) <= 0.005 * expect.max()


def test_shift_accumulation_matches_the_exact_per_step_sum(engine):
    """A spread of rigid errors (±2 mm, ±1°) around three beams: the shift accumulation
    agrees with one full dose calculation per step within 1 % of the maximum dose."""
    beams, pts = _beams(), _points()
    rng = np.random.default_rng(11)
    n = 3 * 15
    poses = np.hstack([rng.normal(0, 1.0, (n, 3)), rng.normal(0, 0.5, (n, 3))])
    rec = _record(beams, poses, rng.normal(0, 0.7, (n, 3)), follow=False, steps_per_beam=15)
    shift = delivered_dose_gy(engine, beams, rec, target_ct=TARGET_CT, points_ct=pts)
    exact = delivered_dose_gy(engine, beams, rec, target_ct=TARGET_CT, points_ct=pts,
                              method="exact")
    assert np.max(np.abs(shift - exact)) <= 0.01 * exact.max()
    planned = _planned(engine, beams, pts)
    assert np.max(np.abs(exact - planned)) > 0.05 * planned.max()  # the errors do matter


def test_partial_record_counts_only_delivered_steps(engine):
    """Half of beam 0's steps, nothing of the others: half of beam 0's planned dose."""
    beams, pts = _beams(), _points()
    rec = _record(beams, np.zeros((60, 6)), np.zeros((60, 3)), follow=True, steps_per_beam=20)
    rec.beam_on_s[10:] = 0.0
    got = delivered_dose_gy(engine, beams, rec, target_ct=TARGET_CT, points_ct=pts)
    half = 0.5 * beams[0].mu * engine.dose_per_mu(*planned_beam_ct(beams[0], TARGET_CT),
                                                  20.0, pts)
    assert np.allclose(got, half, rtol=0, atol=1e-4 * half.max())  # shift table: float32


def test_bad_inputs(engine):
    beams = _beams()
    rec = _record(beams, np.zeros((3, 6)), np.zeros((3, 3)), follow=True, steps_per_beam=1)
    with pytest.raises(InputError, match="method"):
        delivered_dose_gy(engine, beams, rec, target_ct=TARGET_CT, points_ct=_points(),
                          method="fast")
    with pytest.raises(InputError, match="beam 2 of a 2-beam"):
        delivered_dose_gy(engine, beams[:2], rec, target_ct=TARGET_CT, points_ct=_points())
    rec.room_from_anatomy[1] = np.nan
    with pytest.raises(InputError, match="truth pose"):
        delivered_dose_gy(engine, beams, rec, target_ct=TARGET_CT, points_ct=_points())
