"""Distribution of the simulated ball-cube E2E total targeting error over seeds (each seed also
draws the phantom's set-up offset), for the realistic live images (the 4D truth patient
through its own physics: independent truth) and the ideal ones (DRRs of the planning CT:
the older self-graded path, "before").

Compared with the published Xsight-Spine film E2E of about 0.5-0.6 mm (docs/dose_qa.md).

Usage::

    python scripts/qa_e2e_study.py --out /tmp/e2e_study --seeds 0-9 \
        [--live-images realistic ideal] [--beams 60] [--mu 3000] [--motion]

Writes one JSON line per run to ``OUT/runs.jsonl`` as it goes (a rerun skips the runs already
there) and prints the summary per live-image path: mean +- SD, median, 95th percentile and
max of the total targeting error, and the pass rate.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def summarize(rows: list[dict]) -> dict:
    """Statistics of the total targeting error (mm) and the pass rate of ``rows``."""
    tot = np.array([r["total_targeting_error_mm"] for r in rows])
    axis = np.array([np.linalg.norm(r["axis_point_error_ct_mm"]) for r in rows])
    return {"n": int(tot.size), "mean_mm": float(tot.mean()),
            "sd_mm": float(tot.std(ddof=1)) if tot.size > 1 else float("nan"),
            "median_mm": float(np.median(tot)), "p95_mm": float(np.percentile(tot, 95)),
            "max_mm": float(tot.max()), "pass_rate": float(np.mean([r["passed"] for r in rows])),
            "axis_point_mean_mm": float(axis.mean()),
            "run_rms_mean_mm": float(np.mean([r["run_targeting_error_mm"]["rms"]
                                              for r in rows]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", default="0-4", help="e.g. 0-9 or 0,3,5-7")
    ap.add_argument("--live-images", nargs="+", default=["realistic", "ideal"],
                    choices=["realistic", "ideal"])
    ap.add_argument("--beams", type=int, default=60)
    ap.add_argument("--mu", type=float, default=3000.0)
    ap.add_argument("--motion", action="store_true")
    args = ap.parse_args()

    from cyberknife_sim.errors import CksimError
    from cyberknife_sim.qa import make_ball_cube_phantom, run_e2e

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runs.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["live_images"], r["seed"], r["motion"], r["beams"]) for r in rows}
    ball = make_ball_cube_phantom()
    for seed in _seeds(args.seeds):
        for live in args.live_images:
            if (live, seed, args.motion, args.beams) in done:
                continue
            t0 = time.perf_counter()
            try:
                res = run_e2e(out / "ct", seed=seed, motion=args.motion, n_beams=args.beams,
                              total_mu=args.mu, live_images=live, ball=ball)
            except CksimError as exc:  # a run the interlocks stopped: counted, not measured
                row = {"live_images": live, "seed": seed, "motion": args.motion,
                       "beams": args.beams, "mu": args.mu, "stopped": str(exc)}
                rows.append(row)
                with log.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{live:9s} seed {seed:3d}: {exc}", flush=True)
                continue
            row = {**res.to_dict(), "motion": args.motion, "beams": args.beams,
                   "mu": args.mu, "wall_s": round(time.perf_counter() - t0, 1)}
            rows.append(row)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{live:9s} seed {seed:3d}: total {res.total_mm:.3f} mm "
                  f"(axis point {np.linalg.norm(res.axis_point_error_ct_mm):.3f} mm, set-up "
                  f"{np.round(res.setup_mm, 2).tolist()} mm) {row['wall_s']} s", flush=True)
    for live in args.live_images:
        sel = [r for r in rows if r["live_images"] == live and r["motion"] == args.motion
               and r["beams"] == args.beams]
        stopped = [r for r in sel if "stopped" in r]
        sel = [r for r in sel if "stopped" not in r]
        if stopped:
            print(f"{live}: {len(stopped)} run(s) stopped by an interlock")
        if sel:
            s = summarize(sel)
            print(f"{live}: n={s['n']} total {s['mean_mm']:.2f} +- {s['sd_mm']:.2f} mm, median "
                  f"{s['median_mm']:.2f}, p95 {s['p95_mm']:.2f}, max {s['max_mm']:.2f}; pass "
                  f"{100 * s['pass_rate']:.0f} %; axis point {s['axis_point_mean_mm']:.2f} mm; "
                  f"run RMS {s['run_rms_mean_mm']:.2f} mm")


if __name__ == "__main__":
    main()
