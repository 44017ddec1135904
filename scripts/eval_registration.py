"""Accuracy, capture range, failure detection and timing of the 2D/3D spine registration.

Usage (defaults reproduce the figures in the registration note)::

    .venv/bin/python scripts/eval_registration.py --out /tmp/reg_eval.json
    .venv/bin/python scripts/eval_registration.py --out /tmp/reg_real.json \
        --ct ../shared/data/ct/example_ct.nii.gz --target X,Y,Z --skip-failures

Live images are simulated from the TRUE pose: a full-volume DRR (``DrrRenderer``) through
the X-ray model (noise, blur, scatter; ``XrayModel.simulate``), never the registration's own
DRRs. mTRE: mean displacement error over the 8 corners of a 40 mm cube centred on the target.
Prints a table and writes all numbers to ``--out`` (never commit that output).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from cyberknife_sim.anatomy import load_patient, planned_room_from_ct, read_ct
from cyberknife_sim.geometry import matrix_from_pose
from cyberknife_sim.imaging import DrrRenderer, XrayModel, imaging_pair
from cyberknife_sim.registration import Registration2D3D
from cyberknife_sim.scene import load_scene

CUBE = np.array([[x, y, z] for x in (-20, 20) for y in (-20, 20) for z in (-20, 20)], float)


def mtre_mm(est_pose, true_pose) -> float:
    """Mean corner displacement error (mm) of the 40 mm cube about the target (room origin)."""
    a, b = matrix_from_pose(est_pose), matrix_from_pose(true_pose)
    pa = CUBE @ a[:3, :3].T + a[:3, 3]
    pb = CUBE @ b[:3, :3].T + b[:3, 3]
    return float(np.linalg.norm(pa - pb, axis=1).mean())


def random_pose(rng, t_mm, r_deg, *, mode="uniform"):
    """Uniform per axis within ±t/±r, or a random direction with norm t and angle r."""
    if mode == "uniform":
        return np.concatenate([rng.uniform(-t_mm, t_mm, 3), rng.uniform(-r_deg, r_deg, 3)])
    d = rng.normal(size=3)
    a = rng.normal(size=3)
    from scipy.spatial.transform import Rotation
    rot = Rotation.from_rotvec(a / np.linalg.norm(a) * np.deg2rad(r_deg))
    return np.concatenate([d / np.linalg.norm(d) * t_mm, rot.as_euler("xyz", degrees=True)])


class Bench:
    """Scene, CT, renderers and the registration under test."""

    def __init__(self, scene_path, ct=None, target=None):
        scene = load_scene(scene_path)
        if ct:
            self.volume = read_ct(ct)
            self.target = np.asarray(target, float)
        else:
            pat = load_patient(scene)
            self.volume, self.target = pat.volume, pat.target_ct_mm
        self.planned = planned_room_from_ct(self.target)
        self.views = imaging_pair(scene.room.imaging)
        self.mu = scene.room.imaging.mu_water_per_mm
        self.full = DrrRenderer(self.volume, self.views, mu_water_per_mm=self.mu)
        self.xray = XrayModel(scene.room.imaging.xray,
                              pixel_spacing_mm=self.views[0].pixel_spacing_mm)
        t0 = time.perf_counter()
        self.reg = Registration2D3D(self.volume, self.views, target_ct_mm=self.target,
                                    mu_water_per_mm=self.mu, planned_room_from_ct=self.planned,
                                    open_field_counts=self.xray.open_field_counts)
        self.build_s = time.perf_counter() - t0

    def live(self, pose, rng, *, ct_shift_mm=None):
        m = matrix_from_pose(pose) @ self.planned
        if ct_shift_mm is not None:  # image a different region of the CT
            m = m @ np.linalg.inv(planned_room_from_ct(self.target + ct_shift_mm)) @ self.planned
        return [self.xray.simulate(li, rng) for li in self.full.render(m)]


def accuracy(b, rng, n):
    rows = []
    for _ in range(n):
        pose = random_pose(rng, 10.0, 3.0)
        r = b.reg.register(b.live(pose, rng))
        rows.append({"true": pose.tolist(), "est": r.pose.tolist(), "mtre": mtre_mm(r.pose, pose),
                     "accepted": r.accepted, "reason": r.reason, "ms": r.elapsed_ms,
                     "stage_ms": r.stage_ms, "ncc": r.quality["ncc"]})
    return rows


def summarize_accuracy(rows):
    err = np.array([np.subtract(r["est"], r["true"]) for r in rows])
    m = np.array([r["mtre"] for r in rows])
    acc = np.array([r["accepted"] for r in rows])
    stages = {k: float(np.median([r["stage_ms"].get(k, 0.0) for r in rows]))
              for k in rows[0]["stage_ms"]}
    return {"n": len(rows), "mtre_median_mm": float(np.median(m)),
            "mtre_p95_mm": float(np.percentile(m, 95)), "mtre_max_mm": float(m.max()),
            "abs_err_p95": np.percentile(np.abs(err), 95, axis=0).round(3).tolist(),
            "abs_err_median": np.median(np.abs(err), axis=0).round(3).tolist(),
            "accepted_fraction": float(acc.mean()),
            "rejections": {k: int(sum(r["reason"] == k for r in rows))
                           for k in sorted({r["reason"] for r in rows if not r["accepted"]})},
            "accepted_with_mtre_over_1mm": int(np.sum(acc & (m > 1.0))),
            "ms_median": float(np.median([r["ms"] for r in rows])),
            "stage_ms_median": stages,
            "ncc_min_of_accepted": float(min([min(r["ncc"]) for r in rows if r["accepted"]],
                                             default=np.nan))}


def capture(b, rng, n):
    out = []
    for t_mm, r_deg in ((2, 0.5), (5, 1.25), (10, 2.5), (15, 3.75), (20, 5.0)):
        ok = acc = 0
        for _ in range(n):
            pose = random_pose(rng, t_mm, r_deg, mode="sphere")
            r = b.reg.register(b.live(pose, rng))
            good = mtre_mm(r.pose, pose) < 1.0
            ok += good
            acc += good and r.accepted
        out.append({"offset_mm": t_mm, "offset_deg": r_deg, "n": n, "success": ok / n,
                    "success_and_accepted": acc / n})
    return out


def failures(b, rng, n):
    """Cases that must be reported as failed; returns per-category acceptance counts."""
    shape = b.views[0].shape
    i0 = b.xray.open_field_counts
    cases = {"blank": [], "noise": [], "other_region": [], "swapped": [], "beyond_capture": []}
    for _ in range(n):
        cases["blank"].append(([np.full(shape, int(min(i0, 65535)) // 2, np.uint16)] * 2, None))
        cases["noise"].append(([rng.poisson(0.3 * min(i0, 60000), shape).astype(np.uint16)
                                for _ in range(2)], None))
        shift = np.array([rng.uniform(-30, 30), rng.uniform(-30, 30),
                          rng.choice([-1, 1]) * rng.uniform(70, 110)])
        pose = random_pose(rng, 5.0, 1.5)
        cases["other_region"].append((b.live(pose, rng, ct_shift_mm=shift), None))
        pose = random_pose(rng, 10.0, 3.0)
        cases["swapped"].append((b.live(pose, rng)[::-1], pose))
        pose = random_pose(rng, rng.uniform(35, 60), rng.uniform(8, 15), mode="sphere")
        cases["beyond_capture"].append((b.live(pose, rng), pose))
    out = {}
    for name, items in cases.items():
        accepted = wrong = 0
        for imgs, pose in items:
            r = b.reg.register(imgs)
            accepted += r.accepted
            if r.accepted and (pose is None or mtre_mm(r.pose, pose) > 1.0):
                wrong += 1
        out[name] = {"n": len(items), "accepted": accepted, "accepted_wrong": wrong}
    total = sum(v["n"] for v in out.values())
    out["false_acceptance_rate"] = sum(v["accepted_wrong"] for v in out.values()
                                       if isinstance(v, dict)) / total
    out["acceptance_rate"] = sum(v["accepted"] for v in out.values() if isinstance(v, dict)) / total
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="JSON output path")
    ap.add_argument("--scene", default=str(Path(__file__).resolve().parents[1] / "scenes"
                                           / "default.yaml"))
    ap.add_argument("--ct", help="CT file instead of the scene's phantom")
    ap.add_argument("--target", help="x,y,z CT mm (with --ct)")
    ap.add_argument("--n-poses", type=int, default=200)
    ap.add_argument("--n-capture", type=int, default=20, help="poses per capture level")
    ap.add_argument("--n-failure", type=int, default=20, help="cases per failure category")
    ap.add_argument("--skip-failures", action="store_true")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    target = [float(x) for x in args.target.split(",")] if args.target else None
    b = Bench(args.scene, args.ct, target)
    res = {"ct": args.ct or "phantom:default", "target_ct_mm": b.target.tolist(),
           "image_shape": list(b.views[0].shape), "build_s": b.build_s, "seed": args.seed}
    rows = accuracy(b, rng, args.n_poses)
    res["accuracy"] = summarize_accuracy(rows)
    res["accuracy_rows"] = rows
    print(json.dumps(res["accuracy"], indent=1), flush=True)
    res["capture"] = capture(b, rng, args.n_capture)
    for c in res["capture"]:
        print(f"capture {c['offset_mm']:>4} mm {c['offset_deg']:>5} deg: success {c['success']:.2f}"
              f" (accepted {c['success_and_accepted']:.2f})", flush=True)
    if not args.skip_failures:
        res["failures"] = failures(b, rng, args.n_failure)
        print(json.dumps(res["failures"], indent=1))
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
