"""A synthetic run record for the report tests: known holds, X-ray pairs, aim points and
targeting error, as long as a whole treatment, built in milliseconds (no simulation)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from cyberknife_sim.metrics import COMPONENTS
from cyberknife_sim.simulation import HOLD_REASONS, LoopRecord

DT_S = 1.0 / 26.0
_BIT = {name: 1 << k for k, name in enumerate(HOLD_REASONS)}


def synthetic_beams(n_beams: int) -> list:
    """Beams alternating between the target centre and a point 4 mm away (room mm)."""
    out = []
    for k in range(n_beams):
        aim = np.zeros(3) if k % 2 == 0 else np.array([0.0, 3.0, -2.6]) * (1 + 0.1 * (k % 5))
        phi = 2 * np.pi * k / n_beams
        src = 800.0 * np.array([np.cos(phi) * 0.6, -0.7, np.sin(phi) * 0.6])
        src *= 800.0 / np.linalg.norm(src)
        out.append(SimpleNamespace(aim_room=aim, source_room=src,
                                   direction_room=(aim - src) / np.linalg.norm(aim - src)))
    return out


def _schedule(n: int, n_beams: int, travel: int, on: int, holds: list[tuple[int, int, str]]):
    """Per step: beam on?, beam index, aim index, hold mask (holds: (start, stop, reason))."""
    beam_on = np.zeros(n, bool)
    beam_index = np.full(n, -1, np.int64)
    aim = np.full(n, n_beams - 1, np.int64)
    hold_mask = np.zeros(n, np.int64)
    for a, b, reason in holds:
        hold_mask[a:b] |= _BIT[reason]
    i, k, completed = 0, 0, 0
    while i < n and k < n_beams:
        aim[i:i + travel] = k
        i += travel
        done = 0
        while i < n and done < on:
            aim[i] = k
            if hold_mask[i] == 0:
                beam_on[i] = True
                beam_index[i] = k
                done += 1
            i += 1
        completed += done == on
        k += 1
    aim[i:] = min(completed, n_beams - 1)
    return beam_on, beam_index, aim, hold_mask, completed


def long_record(duration_s: float = 1800.0, *, n_beams: int = 60, seed: int = 0):
    """(record, beams, summary dict) of a synthetic ``duration_s`` run.

    Holds: set-up (0-10 s), then ``registration_failed`` at 300 s (6 s), ``markers_lost``
    with ``model_residual`` at 900 s (3 s) and ``outside_model_range`` at 1500 s (1 s); an
    X-ray pair every 30 s, the one at 300 s rejected; error ~0.1 mm with spikes.
    """
    rng = np.random.default_rng(seed)
    n = int(round(duration_s / DT_S))
    t = np.arange(n) * DT_S
    holds = [(0, int(10 / DT_S), "setup"),
             (int(300 / DT_S), int(306 / DT_S), "registration_failed"),
             (int(900 / DT_S), int(903 / DT_S), "markers_lost"),
             (int(901 / DT_S), int(902 / DT_S), "model_residual"),
             (int(1500 / DT_S), int(1501 / DT_S), "outside_model_range")]
    beams = synthetic_beams(n_beams)
    on, bi, aim_k, mask, completed = _schedule(n, n_beams, int(4 / DT_S),
                                               int(n / n_beams) - int(4 / DT_S), holds)
    rec = LoopRecord.empty(n, n_beams)
    rec.time_s = t
    aims = np.array([b.aim_room for b in beams])
    motion = np.stack([0.001 * t, 2 * np.sin(2 * np.pi * t / 4), 5 * np.sin(2 * np.pi * t / 4)],
                      axis=1)
    rec.target_true = aims[aim_k] + motion
    rec.target_commanded = rec.target_true + rng.normal(0, 0.05, (n, 3))
    err = rng.normal(0, 0.06, (n, 3))
    spikes = rng.choice(n, 40, replace=False)
    err[spikes] *= 8
    rec.error_vec = err
    parts = rng.dirichlet(np.ones(len(COMPONENTS)), n)
    rec.components = {c: err * parts[:, [j]] for j, c in enumerate(COMPONENTS)}
    rec.beam_on_s = np.where(on, DT_S, 0.0)
    rec.beam_index = bi
    rec.hold_mask = mask
    rec.beam_source = np.array([beams[k].source_room for k in aim_k])
    rec.beam_direction = np.array([beams[k].direction_room for k in aim_k])
    rec.n_steps = n
    rec.beams_completed = completed
    rec.events = _events(t, holds, on)
    rec.aim_k = aim_k  # what the report must infer (not a LoopRecord field)
    return rec, beams, summary_for(rec, n_beams)


def _events(t, holds, on) -> list[dict]:
    ev = []
    for a, b, reason in holds:
        if reason == "model_residual":
            continue  # joins the markers_lost hold already on
        ev.append({"time_s": float(t[a]), "kind": "hold", "reasons": [reason]})
        ev.append({"time_s": float(t[b]), "kind": "resume", "held_s": float(t[b] - t[a])})
    for s in np.arange(0.0, t[-1], 30.0):
        ok = abs(s - 300.0) > 1
        ev.append({"time_s": float(s), "kind": "image", "accepted": ok,
                   "reason": "" if ok else "blank image (tube misfire)",
                   "pose": [0.1, -0.2, 0.3, 0.0, 0.01, 0.02] if ok else [None] * 6})
    return sorted(ev, key=lambda e: e["time_s"])


def summary_for(rec, n_beams: int) -> dict:
    """A RunSummary-like dict for ``rec`` (the keys the report reads)."""
    on = rec.beam_on_s > 0
    e = np.linalg.norm(rec.error_vec, axis=1)[on]
    w = rec.beam_on_s[on]
    comp = {c: {"rms": float(np.sqrt(np.mean(np.sum(v[on] ** 2, axis=1)))), "p95": 0.2,
                "max": 0.5} for c, v in rec.components.items()}
    return {
        "scene": "synthetic", "tracking_mode": "spine_breathing", "imaging": "truth", "seed": 0,
        "target_localization": "synthetic", "stopped_early": None,
        "targeting_error_mm": {"rms": float(np.sqrt(np.mean(e ** 2))), "mean": float(e.mean()),
                               "p95": float(np.percentile(e, 95)), "max": float(e.max())},
        "within_0_5mm_fraction": float(w[e <= 0.5].sum() / w.sum()),
        "within_1mm_fraction": float(w[e <= 1.0].sum() / w.sum()),
        "mu_weighted": {"rms_mm": 0.1}, "beam_on_s": float(w.sum()), "beam_hold_s": 10.0,
        "beams_completed": rec.beams_completed, "beams_total": n_beams,
        "plan_beam_on_s": float(w.sum()), "plan_delivery_s": None,
        "images": {"total": 60, "rejected": 1}, "simulated_s": float(rec.time_s[-1]),
        "realtime_factor": 100.0, "mean_step_ms": 0.1, "error_components_mm": comp,
        "decomposition_method": "synthetic", "beam_hold_s_by_reason": {"setup": 10.0},
        "events": rec.events,
    }


def tiny_pngs(folder) -> list:
    """Five 1×1 PNG files standing in for the plots (for tests of the page alone)."""
    import base64

    from cyberknife_sim.report import PLOTS

    data = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8/5+hH"
                            "gAHggJ/PchI7wAAAABJRU5ErkJggg==")
    out = []
    for name in PLOTS:
        p = folder / name
        p.write_bytes(data)
        out.append(p)
    return out
