"""Paired internal/external traces drive the truth (scene `motion.trace.kind: paired`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from cyberknife_sim.errors import InputError
from cyberknife_sim.motion import MotionTruth, marker_signal_mm
from cyberknife_sim.scene import scene_from_dict

TRACES = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "traces").resolve()
PAIRS = [("sine", 1.0), ("mean_motion_091", 0.1)]

needs_data = pytest.mark.skipif(not (TRACES / "pair_sine_internal.txt").is_file(),
                                reason="shared paired traces not present")


def paired_scene(name: str, external_unit_s: float, **trace):
    with open("scenes/default.yaml", encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    data["motion"]["trace"] = {"kind": "paired", "file": str(TRACES / f"pair_{name}_internal.txt"),
                               "external_file": str(TRACES / f"pair_{name}_external.txt"),
                               "external_time_unit_s": external_unit_s, **trace}
    data["motion"]["breathing_moves_spine"] = False
    return scene_from_dict(data)


def recorded(name: str, external_unit_s: float):
    internal = np.loadtxt(TRACES / f"pair_{name}_internal.txt")
    external = np.loadtxt(TRACES / f"pair_{name}_external.txt")
    return internal[:, 0], internal[:, 1:4], external[:, 0] * external_unit_s, external[:, 1]


@needs_data
@pytest.mark.parametrize("name, unit", PAIRS)
def test_truth_follows_both_recordings(name, unit):
    scene = paired_scene(name, unit)
    truth = MotionTruth(scene.motion, duration_s=120.0, rng=np.random.default_rng(0))
    t_int, xyz, t_ext, ext = recorded(name, unit)
    keep = t_int <= 120.0
    off = truth.target_offset_room(t_int[keep])
    # at the samples the spline passes through the recording (offset from its mean)
    np.testing.assert_allclose(off, xyz[keep] - xyz.mean(axis=0), atol=1e-9)
    keep_e = t_ext <= 120.0
    sig = truth.external_signal(t_ext[keep_e])
    drift = scene.motion.breathing.baseline_drift_mm_per_min * t_ext[keep_e] / 60.0
    np.testing.assert_allclose(sig - drift - (sig - drift)[0], ext[keep_e] - ext[0], atol=1e-9)
    # between samples the truth is smooth: halfway points within the recording's range
    mid = 0.5 * (t_int[:-1] + t_int[1:])[: int(keep.sum()) - 1]
    assert np.all(np.isfinite(truth.target_offset_room(mid)))


def test_mismatched_durations_are_refused_naming_both(tmp_path):
    t = np.arange(0.0, 300.0, 0.2)
    np.savetxt(tmp_path / "int.txt", np.column_stack([t, np.sin(t), 0 * t, np.cos(t)]))
    # an external file stamped in tenths of a second, read as seconds: 10x too long
    np.savetxt(tmp_path / "ext.txt", np.column_stack([t * 10.0, np.sin(t)]))
    data = {"motion": {"trace": {"kind": "paired", "file": str(tmp_path / "int.txt"),
                                 "external_file": str(tmp_path / "ext.txt")}}}
    with open("scenes/default.yaml", encoding="utf-8") as fh:
        base = yaml.safe_load(fh)
    base["motion"].update(data["motion"])
    scene = scene_from_dict(base)
    with pytest.raises(InputError, match=r"int\.txt.*ext\.txt"):
        MotionTruth(scene.motion, duration_s=60.0, rng=np.random.default_rng(0))
    base["motion"]["trace"]["external_time_unit_s"] = 0.1
    scene = scene_from_dict(base)
    truth = MotionTruth(scene.motion, duration_s=60.0, rng=np.random.default_rng(0))
    np.testing.assert_allclose(truth.target_offset_room([10.0])[0, 0],
                               np.sin(10.0) - np.sin(t).mean(), atol=1e-3)


def test_paired_needs_both_files():
    with open("scenes/default.yaml", encoding="utf-8") as fh:
        base = yaml.safe_load(fh)
    base["motion"]["trace"] = {"kind": "paired", "file": "scenes/default.yaml"}
    with pytest.raises(Exception, match="external_file"):
        scene_from_dict(base)


@needs_data
@pytest.mark.parametrize("name, unit", PAIRS)
def test_closed_loop_on_a_recorded_pair(name, unit):
    """120 s closed loop (truth imaging): markers see the external recording, the target
    follows the internal one. The sine pair moves the tumour 154 mm peak to peak (beyond the
    model-residual and robot-following holds), so only the realistic pair is scored."""
    from cyberknife_sim import simulate

    scene = paired_scene(name, unit)
    res = simulate(scene, duration_s=120.0, imaging="truth")
    rec = res.record
    t_int, xyz, t_ext, ext = recorded(name, unit)
    truth = MotionTruth.from_scene(res.scene, np.random.default_rng(0))
    pos = truth.marker_positions_room(rec.time_s)
    sig = marker_signal_mm(pos, pos[0])
    assert np.corrcoef(sig, np.interp(rec.time_s, t_ext, ext))[0, 1] > 0.99
    x_rec = np.column_stack([np.interp(rec.time_s, t_int, c) for c in xyz.T])
    off = truth.target_offset_room(rec.time_s)
    np.testing.assert_allclose(off, x_rec - xyz.mean(axis=0), atol=0.05 * np.ptp(xyz) + 0.5)
    if name == "sine":
        return
    on = rec.beam_on_s > 0
    assert on.sum() > 100
    err = np.linalg.norm(rec.error_vec[on], axis=1)
    rms = float(np.sqrt(np.mean(err**2)))
    assert np.isfinite(rms) and rms < 1.5


def test_internal_changes_leave_the_chest_alone():
    with open("scenes/default.yaml", encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    base = scene_from_dict(data)
    data["motion"]["breathing"].update(amplitude_ratio_drift_per_min=0.2,
                                       internal_baseline_shift_mm=[0.0, 0.0, 3.0],
                                       internal_baseline_shift_time_s=30.0)
    changed = scene_from_dict(data)
    t = np.linspace(0.0, 60.0, 601)
    a = MotionTruth(base.motion, duration_s=60.0, rng=np.random.default_rng(1))
    b = MotionTruth(changed.motion, duration_s=60.0, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(a.external_signal(t), b.external_signal(t))
    scale = 1.0 + 0.2 * t / 60.0
    expect = a.target_offset_room(t) * scale[:, None] + (t >= 30.0)[:, None] * [0.0, 0.0, 3.0]
    np.testing.assert_allclose(b.target_offset_room(t), expect, atol=1e-12)


def test_linear_model_error_grows_with_the_phase_shift():
    """Synchrony's failure shape: a linear model (no velocity term) cannot follow a phase
    shift between the target and the chest; the error grows with the shift."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("phase_shift_table",
                                                  "scripts/phase_shift_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rms = [mod.error_mm(s, "linear", duration_s=40.0, imaging="truth")[0]
           for s in mod.SHIFTS_DEG]
    assert np.all(np.isfinite(rms))
    assert np.all(np.diff(rms) > 0), rms


def _sine_pair(tmp_path, *, amp_mm, phase_deg, ext_mm=5.0, period_s=4.0):
    """A pair where each internal axis is ``amp cos(wt + phase)`` and the external
    ``ext cos(wt)`` (files at 5 Hz, 300 s)."""
    from cyberknife_sim.motion._paired import read_paired

    t = np.arange(0.0, 300.0, 0.2)
    w = 2 * np.pi / period_s
    ph = np.radians(phase_deg)
    xyz = np.column_stack([a * np.cos(w * t + p) for a, p in zip(amp_mm, ph, strict=True)])
    np.savetxt(tmp_path / "int.txt", np.column_stack([t, xyz]))
    np.savetxt(tmp_path / "ext.txt", np.column_stack([t, ext_mm * np.cos(w * t)]))
    return read_paired(tmp_path / "int.txt", tmp_path / "ext.txt"), w


def test_velocity_fit_recovers_the_phase_shift_coefficients(tmp_path):
    """p = A cos(wt + phi) against e = E cos(wt) is exactly (A/E) cos(phi) e +
    (A/(E w)) sin(phi) de/dt: the fit gives these to spline accuracy."""
    amp, phase = np.array([10.0, 3.0, 20.0]), np.array([0.0, 160.0, 50.0])
    pair, w = _sine_pair(tmp_path, amp_mm=amp, phase_deg=phase)
    fit = pair.velocity_fit()
    ph = np.radians(phase)
    np.testing.assert_allclose(fit.b_mm_per_mm, amp / 5.0 * np.cos(ph), atol=2e-3)
    np.testing.assert_allclose(fit.c_s, amp / (5.0 * w) * np.sin(ph), atol=2e-3)
    assert np.all(fit.residual_rms_mm < 0.01)


def test_noise_gain_matches_a_monte_carlo_of_the_backward_difference(tmp_path):
    """The model's error from white signal noise, ``b n_k + c (n_k - n_(k-N)) / T``, simulated
    directly, has the standard deviation :meth:`VelocityFit.noise_gain` states."""
    pair, _ = _sine_pair(tmp_path, amp_mm=[10.0, 3.0, 20.0], phase_deg=[0.0, 160.0, 50.0])
    fit = pair.velocity_fit()
    n_frames, dt = 4, 1.0 / 26.0
    noise = np.random.default_rng(3).normal(0.0, 0.05, 200_000)
    v = (noise[n_frames:] - noise[:-n_frames]) / (n_frames * dt)
    err = fit.b_mm_per_mm[:, None] * noise[n_frames:] + fit.c_s[:, None] * v
    np.testing.assert_allclose(err.std(axis=1), 0.05 * fit.noise_gain(n_frames * dt), rtol=0.01)
    # a longer span lowers the velocity's share; without a phase shift only b is left
    assert fit.noise_gain(1.0)[2] < fit.noise_gain(n_frames * dt)[2] / 3
    assert fit.noise_gain(n_frames * dt)[0] == pytest.approx(abs(fit.b_mm_per_mm[0]), rel=1e-2)


def test_a_pair_moving_beyond_any_tumour_is_flagged(tmp_path):
    from cyberknife_sim.motion import implausible_breathing

    small, _ = _sine_pair(tmp_path, amp_mm=[5.0, 2.0, 10.0], phase_deg=[0.0, 0.0, 10.0])
    assert implausible_breathing(small.internal, time_unit_s=1.0) is None
    big, _ = _sine_pair(tmp_path, amp_mm=[77.0, 21.0, 70.0], phase_deg=[0.0, 160.0, 50.0])
    msg = implausible_breathing(big.internal, time_unit_s=1.0)
    assert msg is not None and "154 mm peak to peak in x" in msg
    assert implausible_breathing(big.external, time_unit_s=1.0) is None


@needs_data
def test_sine_pair_is_a_phase_shifted_sinusoid_that_amplifies_marker_noise():
    """The shared sine pair (the finding of docs/tracking_prediction.md): every internal axis
    is one sinusoid at the external's frequency (fit residual < 0.01 mm), z leading by ~47 deg
    with 14:1 amplitude, so the 4-frame velocity puts > 7 mm of target error on 0.1 mm of
    marker noise (3 markers, mean gain 0.8)."""
    from cyberknife_sim.motion._paired import read_paired

    pair = read_paired(TRACES / "pair_sine_internal.txt", TRACES / "pair_sine_external.txt")
    fit = pair.velocity_fit()
    assert np.all(fit.residual_rms_mm < 0.01)
    assert fit.c_s[2] > 10.0
    noise = 0.1 / np.sqrt(3) / 0.8
    assert pair.expected_model_noise_mm(signal_noise_mm=noise, velocity_span_s=4 / 26) > 7.0
    assert pair.expected_model_noise_mm(signal_noise_mm=0.0, velocity_span_s=4 / 26) < 0.01
