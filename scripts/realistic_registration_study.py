"""Registration on the REALISTIC live path (issue 13): the 4D truth patient imaged by its own
projector and polyenergetic detector, registered to a separately acquired planning CT.

Usage::

    .venv/bin/python scripts/realistic_registration_study.py \
        --slices 0.625,1.0,1.5,2.0,2.5,3.0 --n-poses 50 --n-phases 4 --noise dose \
        --max-level 0 --out /tmp/realistic_exhale.json
    .venv/bin/python scripts/realistic_registration_study.py --real-ct --n-poses 200 \
        --out /tmp/realistic_real_ct.json

Phantom cases (``docs/registration_realistic.md``). N set-up poses uniform within ±10 mm /
±3° per axis, each at a breath level uniform in 0..``--max-level`` with the target's vertebra
moved by the scene's breathing offset at that level (``target_amplitude_mm`` along
``direction``), as the treatment loop images it (``--max-level 0``: every pair at exhale, no
offset: the slice thickness alone). The live pairs depend only on the truth, the pose and
their seeds, so each pose's pair is imaged ONCE and registered to every planning CT: the
comparison between slice thicknesses is paired (same poses, same live images, same detector
noise). Per slice thickness ``--n-phases`` planning CTs are acquired, slice grid ``k`` at
phase ``k / n`` of a slice (where a real scanner's slices fall on the anatomy is arbitrary,
and a fixed grid aliases with the vertebral endplates), each with its own CT-noise seed
(phase 0 with the product's seed: the scene's own planning CT); ``--noise dose`` gives the
noise of a fixed dose (sigma ∝ 1/sqrt(slice), the scene's ``noise_hu`` at 1.5 mm),
``--noise fixed`` the scene's ``noise_hu`` at every thickness (``none``: no noise, an
ablation). Each pair is registered from
the planned pose (a cold start). Truth: the set-up pose plus the offset.

Statistics as ``scripts/registration_study.py`` (mTRE over a 40 mm cube about the target,
rotation |error| p95 per axis, rejection and false-acceptance rates: accepted with
mTRE > 1 mm), pooled over phases and poses, with 95 % bootstrap intervals that resample
both the poses and the slice-grid phases (two-way, the same draws for every thickness, so
the differences between thicknesses are paired). Prints Markdown tables; writes all rows and
statistics to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_registration import mtre_mm, random_pose  # noqa: E402
from registration_study import summarize, table  # noqa: E402

from cyberknife_sim.anatomy import make_phantom  # noqa: E402
from cyberknife_sim.registration import Registration2D3D  # noqa: E402
from cyberknife_sim.scene import load_scene, scene_from_dict  # noqa: E402
from cyberknife_sim.simulation._live_chain import RealisticXrayChain  # noqa: E402
from cyberknife_sim.truth._acquire import acquire_ct, planning_positions  # noqa: E402
from cyberknife_sim.truth._scene import _inhale_offset_ct_mm  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REAL_CT = REPO.parent / "shared" / "data" / "ct" / "example_ct.nii.gz"
REAL_TARGET_CT_MM = (3.0, -130.0, 328.0)
NOISE_REFERENCE_SLICE_MM = 1.5
"""The scene's ``noise_hu`` is taken to hold at its default slice thickness (``--noise dose``)."""


def default_scene(slice_mm: float):
    data = load_scene(REPO / "scenes" / "default.yaml").model_dump(mode="json")
    data["patient"]["planning_ct"]["slice_thickness_mm"] = slice_mm
    return scene_from_dict(data, origin=f"default scene, {slice_mm:g} mm slices")


def real_ct_scene():
    data = load_scene(REPO / "scenes" / "default.yaml").model_dump(mode="json")
    data["patient"] = {"ct": str(REAL_CT), "phantom": None,
                       "target_ct_mm": list(REAL_TARGET_CT_MM)}
    return scene_from_dict(data, origin="real CT scene")


def _offset_room(scene, level: float) -> np.ndarray:
    b = scene.motion.breathing
    return level * b.target_amplitude_mm * np.asarray(b.direction, float) / np.linalg.norm(
        b.direction)


def _row(res, pose, offset, level, ms) -> dict:
    true = pose.copy()
    true[:3] += offset
    est = np.asarray(res.pose, float)
    m = mtre_mm(est, true) if np.all(np.isfinite(est)) else float("inf")
    return {"pose": pose.tolist(), "level": float(level), "true": true.tolist(),
            "est": est.tolist(), "mtre": m, "accepted": bool(res.accepted),
            "reason": res.reason, "ms": ms}


def run_case(scene, poses, levels, *, seed: int) -> list[dict]:
    """Image and register every pose against the scene's own planning CT (real-CT case)."""
    chain = RealisticXrayChain(scene)
    rows = []
    for i, (pose, level) in enumerate(zip(poses, levels, strict=True)):
        offset = _offset_room(scene, level)
        live = chain.live_pair(pose, offset, float(level), rng=np.random.default_rng([seed, i]))
        t0 = time.perf_counter()
        res = chain.registration.register(live)
        rows.append(_row(res, pose, offset, level, 1e3 * (time.perf_counter() - t0)))
    return rows


def planning_ct(scene, chain, painted, *, slice_mm: float, phase: float, rep: int,
                noise: str):
    """The phantom's planning CT as ``truth._scene.acquire_planning_ct`` makes it, at slice
    thickness ``slice_mm`` with its slice grid shifted by ``phase`` of a slice and noise
    seed ``rep`` (rep 0: the product's seed; phase 0, rep 0, ``noise="fixed"``: the scene's
    own CT bit for bit)."""
    pc = scene.patient.planning_ct
    corners = painted.corners_ct()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    ni = int(round((hi[0] - lo[0]) / pc.pixel_mm)) + 1
    nj = int(round((hi[1] - lo[1]) / pc.pixel_mm)) + 1
    nk = int(np.floor((hi[2] - lo[2]) / slice_mm + 1e-6)) + 1 - (phase > 0)
    center = 0.5 * (lo + hi)
    origin = np.array([center[0] - (ni - 1) * pc.pixel_mm / 2,
                       center[1] - (nj - 1) * pc.pixel_mm / 2, lo[2]])
    items = planning_positions(chain.truth, pc.phase,
                               target_offset_at_inhale_ct_mm=_inhale_offset_ct_mm(scene))
    key = [int(scene.simulation.seed), 0x0C7] + ([rep] if rep else [])
    return acquire_ct(items, origin_ct_mm=origin, shape=(nk, nj, ni), pixel_mm=pc.pixel_mm,
                      slice_mm=slice_mm, noise_hu=0.0 if noise == "none" else pc.noise_hu,
                      noise_reference_slice_mm=NOISE_REFERENCE_SLICE_MM if noise == "dose"
                      else None, slice_phase=phase, rng=np.random.default_rng(key),
                      name=f"planning CT {slice_mm:g} mm, phase {phase:g}, rep {rep}")


def run_phantom(slices, poses, levels, *, seed: int, n_phases: int, noise: str,
                oversampling: float) -> dict:
    """Rows ``{slice: [[row per pose] per phase]}`` (paired: one live pair per pose)."""
    scene = default_scene(1.5)
    chain = RealisticXrayChain(scene)
    painted = make_phantom(scene.patient.phantom or "default", seed=int(scene.simulation.seed))
    t0 = time.perf_counter()
    lives = [chain.live_pair(p, _offset_room(scene, lv), float(lv),
                             rng=np.random.default_rng([seed, i]))
             for i, (p, lv) in enumerate(zip(poses, levels, strict=True))]
    print(f"{len(lives)} live pairs in {time.perf_counter() - t0:.0f} s", flush=True)
    check = planning_ct(scene, chain, painted.volume, slice_mm=1.5, phase=0.0, rep=0,
                        noise="fixed")
    if not np.array_equal(check.hu, chain.patient.volume.hu):
        raise RuntimeError("the study's planning CT differs from the scene's own")
    out = {}
    for s in slices:
        out[s] = []
        for r in range(n_phases):
            t0 = time.perf_counter()
            vol = planning_ct(scene, chain, painted.volume, slice_mm=s, phase=r / n_phases,
                              rep=r, noise=noise)
            reg = Registration2D3D(vol, chain.views, target_ct_mm=chain.patient.target_ct_mm,
                                   mu_water_per_mm=float(scene.room.imaging.mu_water_per_mm),
                                   planned_room_from_ct=chain.patient.planned_room_from_ct,
                                   oversampling=oversampling)
            rows = []
            for pose, lv, live in zip(poses, levels, lives, strict=True):
                t1 = time.perf_counter()
                res = reg.register([im.copy() for im in live])
                rows.append(_row(res, pose, _offset_room(scene, lv), lv,
                                 1e3 * (time.perf_counter() - t1)))
            out[s].append(rows)
            m = np.array([q["mtre"] for q in rows])
            print(f"slice {s:g} mm phase {r}/{n_phases}: mTRE median {np.median(m):.3f} "
                  f"p95 {np.percentile(m, 95):.3f} mm ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    return out


def bootstrap(m: np.ndarray, *, n_boot: int, seed: int) -> dict:
    """95 % two-way bootstrap intervals of the pooled median and p95 of ``m`` (slices,
    phases, poses) and of their paired differences to the first slice and to the previous
    one. Each draw resamples phases and poses with replacement, the same for every slice."""
    n_s, n_r, n_p = m.shape
    rng = np.random.default_rng(seed)
    med = np.empty((n_boot, n_s))
    p95 = np.empty((n_boot, n_s))
    for b in range(n_boot):
        sub = m[:, rng.integers(0, n_r, n_r)][:, :, rng.integers(0, n_p, n_p)]
        sub = sub.reshape(n_s, -1)
        med[b] = np.median(sub, axis=1)
        p95[b] = np.percentile(sub, 95, axis=1)

    def ci(x):
        return np.percentile(x, [2.5, 97.5], axis=0).T.tolist()

    return {"median_ci": ci(med), "p95_ci": ci(p95),
            "median_diff_first_ci": ci(med - med[:, :1]),
            "p95_diff_first_ci": ci(p95 - p95[:, :1]),
            "median_diff_prev_ci": ci(np.diff(med, axis=1)),
            "p95_diff_prev_ci": ci(np.diff(p95, axis=1))}


def ci_table(slices, results, boot) -> str:
    lines = ["| slice mm | mTRE median [95 % CI] | mTRE p95 [95 % CI] | Δmedian vs "
             f"{slices[0]:g} mm | Δp95 vs {slices[0]:g} mm | median per grid phase | "
             "mean SI error per phase (mm) |", "|" + "---|" * 7]
    for n, s in enumerate(slices):
        r = results[f"realistic default phantom@{s:g}"]
        mc, pc = boot["median_ci"][n], boot["p95_ci"][n]
        dm, dp = boot["median_diff_first_ci"][n], boot["p95_diff_first_ci"][n]
        lines.append(
            f"| {s:g} | {r['mtre_median_mm']:.3f} [{mc[0]:.3f}, {mc[1]:.3f}] | "
            f"{r['mtre_p95_mm']:.3f} [{pc[0]:.3f}, {pc[1]:.3f}] | "
            f"[{dm[0]:+.3f}, {dm[1]:+.3f}] | [{dp[0]:+.3f}, {dp[1]:+.3f}] | "
            f"{' '.join(f'{x:.3f}' for x in r['median_per_phase_mm'])} | "
            f"{' '.join(f'{x:+.3f}' for x in r['mean_si_error_per_phase_mm'])} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--slices", default="0.625,1.0,1.5,2.0,2.5,3.0")
    ap.add_argument("--real-ct", action="store_true", help="the real CT case instead")
    ap.add_argument("--n-poses", type=int, default=50)
    ap.add_argument("--n-phases", type=int, default=4,
                    help="slice-grid phases (planning CTs) per slice thickness")
    ap.add_argument("--noise", choices=("dose", "fixed", "none"), default="dose",
                    help="CT noise: fixed dose (sigma ∝ 1/sqrt(slice)), the same sigma at "
                    "every slice, or none (ablation)")
    ap.add_argument("--oversampling", type=float, default=2.0,
                    help="the registration DRRs' in-plane oversampling (its default 2)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-level", type=float, default=1.0,
                    help="breath levels uniform in 0..this (0: every pair at exhale with no "
                    "target offset: the slice thickness alone)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    poses = [random_pose(rng, 10.0, 3.0) for _ in range(args.n_poses)]
    levels = rng.uniform(0.0, 1.0, args.n_poses) * args.max_level
    if args.real_ct:
        key = "realistic real CT (synthetic breathing)@3.0"
        rows = run_case(real_ct_scene(), poses, levels, seed=args.seed)
        results = {key: summarize(rows)}
        print(table(results))
        Path(args.out).write_text(json.dumps({"summary": results, "rows": {key: rows}},
                                             indent=1))
        return results
    slices = [float(x) for x in args.slices.split(",")]
    t0 = time.perf_counter()
    grid = run_phantom(slices, poses, levels, seed=args.seed, n_phases=args.n_phases,
                       noise=args.noise, oversampling=args.oversampling)
    results, rows_all = {}, {}
    for s in slices:
        key = f"realistic default phantom@{s:g}"
        flat = [r for rows in grid[s] for r in rows]
        results[key] = summarize(flat)
        err = [np.array([np.subtract(r["est"], r["true"]) for r in rows]) for rows in grid[s]]
        results[key]["bias"] = np.concatenate(err).mean(axis=0).tolist()
        results[key]["mean_si_error_per_phase_mm"] = [float(e[:, 2].mean()) for e in err]
        results[key]["median_per_phase_mm"] = [float(np.median([r["mtre"] for r in rows]))
                                               for rows in grid[s]]
        rows_all[key] = grid[s]
    m = np.array([[[r["mtre"] for r in rows] for rows in grid[s]] for s in slices])
    boot = bootstrap(m, n_boot=args.n_boot, seed=args.seed)
    meta = {"n_poses": args.n_poses, "n_phases": args.n_phases, "noise": args.noise,
            "max_level": args.max_level, "oversampling": args.oversampling,
            "seed": args.seed, "wall_s": time.perf_counter() - t0}
    print(table(results))
    print(ci_table(slices, results, boot))
    print(json.dumps(meta))
    Path(args.out).write_text(json.dumps({"meta": meta, "summary": results, "bootstrap": boot,
                                          "slices": slices, "rows": rows_all}, indent=1))
    return results


if __name__ == "__main__":
    main()
