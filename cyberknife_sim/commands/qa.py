"""``cksim qa e2e --out DIR [--seed N] [--motion] [--repeats N] [--live-images KIND]``.

The simulated end-to-end (E2E) test on the virtual ball-cube phantom (see
:mod:`cyberknife_sim.qa`): for each repeat (seeds N, N+1, ...) it prints the two film errors
(mm), the total targeting error and pass/fail against TG-135's limit (0.95 mm static,
1.5 mm with ``--motion``). A film's error is its delivered 50 % isodose centroid minus the
planned dose's (the plan's own offset from the ball is reported in the JSON; see
:mod:`cyberknife_sim.qa._e2e`). Writes ``DIR/ball_cube_ct.nii.gz``, per repeat the film dose
arrays (``film_<name>[_<seed>].npy``, Gy, ``[v, u]`` rows = z increasing, 0.5 mm pixels) and
images (``film_<name>[_<seed>].png``: the dose, its 50 % isodose line and the ball centre),
and ``DIR/qa_e2e.json``. Exit 0 when every repeat passes, 1 when one fails.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._args import check_out_dir, check_seed

MAX_REPEATS = 100


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``qa`` sub-command (one test for now: ``e2e``)."""
    p = sub.add_parser("qa", help="simulated QA tests (the ball-cube end-to-end test)",
                       description="Simulated QA tests.")
    tests = p.add_subparsers(dest="test", metavar="TEST", parser_class=type(p))
    e = tests.add_parser(
        "e2e", help="the ball-cube end-to-end targeting test (TG-135)",
        description="Run the whole chain (CT, plan to the ball, imaging and registration, "
        "robot, dose) on a virtual ball-cube phantom beside the spine; print each film's "
        "50 %% isodose centroid error and the total targeting error (mm), and pass/fail "
        "(0.95 mm static, 1.5 mm with --motion; AAPM TG-135).")
    e.add_argument("--out", required=True, help="output folder (created)")
    e.add_argument("--seed", type=int, default=0, help="run seed; it also draws the "
                   "phantom's set-up offset (default 0)")
    e.add_argument("--motion", action="store_true", help="the motion test: breathing, "
                   "spine_breathing tracking (tolerance 1.5 mm)")
    e.add_argument("--repeats", type=int, default=1, help="runs with seeds N, N+1, ... "
                   f"(1..{MAX_REPEATS}, default 1)")
    e.add_argument("--live-images", choices=("realistic", "ideal"), default=None,
                   help="live-image path (default: the scene default, realistic)")
    e.add_argument("--beams", type=int, default=60, help="beams of the plan (default 60)")
    e.add_argument("--mu", type=float, default=3000.0, help="total MU (default 3000)")
    e.set_defaults(func=run_e2e_command)
    p.set_defaults(func=_no_test)


def _no_test(args: argparse.Namespace) -> int:
    raise InputError("give a test: cksim qa e2e --out DIR")


def _check(args: argparse.Namespace) -> Path:
    check_seed(args.seed)
    if not 1 <= args.repeats <= MAX_REPEATS:
        raise InputError(f"--repeats must be 1..{MAX_REPEATS} (got {args.repeats})")
    if args.seed + args.repeats - 1 > 2**63 - 1:
        raise InputError(f"--seed {args.seed} + --repeats {args.repeats} runs past the "
                         "largest seed")
    if not 1 <= args.beams <= 1000:
        raise InputError(f"--beams must be 1..1000 (got {args.beams})")
    if not (np.isfinite(args.mu) and 0 < args.mu <= 1e6):
        raise InputError(f"--mu must be > 0 and <= 1e6 (got {args.mu:g})")
    return check_out_dir(args.out, "--out")


def write_film_png(path: Path, dose_gy: np.ndarray, u_mm: np.ndarray, v_mm: np.ndarray, *,
                   contour_mm: np.ndarray, centroid_mm: np.ndarray,
                   plan_centroid_mm: np.ndarray, title: str) -> None:
    """A film image: the delivered dose (Gy), its 50 % isodose polygon, the ball centre (+),
    the delivered (x) and planned (o) isodose centroids; mm relative to the ball centre."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4.4), dpi=110)
    half = 0.5 * (u_mm[1] - u_mm[0])
    im = ax.imshow(dose_gy, origin="lower", cmap="viridis",
                   extent=(u_mm[0] - half, u_mm[-1] + half, v_mm[0] - half, v_mm[-1] + half))
    fig.colorbar(im, ax=ax, label="dose (Gy)")
    ax.plot(contour_mm[:, 0], contour_mm[:, 1], "w-", lw=1.2, label="50 % isodose")
    ax.plot([0], [0], "r+", ms=14, mew=2, label="ball centre")
    ax.plot([centroid_mm[0]], [centroid_mm[1]], "wx", ms=8, mew=1.5,
            label="delivered centroid")
    ax.plot([plan_centroid_mm[0]], [plan_centroid_mm[1]], "o", mfc="none", mec="orange", ms=8,
            label="planned centroid")
    names = ("x", "z") if title.startswith("coronal") else ("y", "z")
    ax.set_xlabel(f"{names[0]} - ball (mm, CT)")
    ax.set_ylabel(f"{names[1]} - ball (mm, CT)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run_e2e_command(args: argparse.Namespace) -> int:
    """Run the E2E test(s), print and write the results; 0 if all pass, 1 otherwise."""
    out = _check(args)
    from ..qa import make_ball_cube_phantom, run_e2e

    ball = make_ball_cube_phantom()
    rows = []
    for n in range(args.repeats):
        seed = args.seed + n
        print(f"cksim qa e2e: seed {seed}: simulating the treatment of the ball cube "
              f"({'motion' if args.motion else 'static'} test) ...", file=sys.stderr,
              flush=True)
        res = run_e2e(out, seed=seed, motion=args.motion, n_beams=args.beams,
                      total_mu=args.mu, live_images=args.live_images, ball=ball)
        tag = "" if args.repeats == 1 else f"_{seed}"
        for f, p, img, film in zip(res.films, res.plan_films, res.film_doses_gy, ball.films,
                                   strict=True):
            np.save(out / f"film_{f.name}{tag}.npy", img.astype(np.float32))
            write_film_png(out / f"film_{f.name}{tag}.png", img, film.u_mm, film.v_mm,
                           contour_mm=f.contour_mm, centroid_mm=f.error_mm + p.error_mm,
                           plan_centroid_mm=p.error_mm,
                           title=f"{f.name} film, seed {seed}: error "
                           f"({f.error_mm[0]:+.2f}, {f.error_mm[1]:+.2f}) mm")
        cor, sag = res.films
        verdict = "PASS" if res.passed else "FAIL"
        print(f"seed {seed}: coronal film (x, z) = ({cor.error_mm[0]:+.2f}, "
              f"{cor.error_mm[1]:+.2f}) mm, sagittal film (y, z) = ({sag.error_mm[0]:+.2f}, "
              f"{sag.error_mm[1]:+.2f}) mm; total targeting error {res.total_mm:.2f} mm "
              f"(limit {res.tolerance_mm:.2f} mm): {verdict}", flush=True)
        rows.append(res.to_dict())
    totals = np.array([r["total_targeting_error_mm"] for r in rows])
    doc = {"test": "motion" if args.motion else "static", "runs": rows,
           "total_targeting_error_mm": {"mean": round(float(totals.mean()), 4),
                                        "sd": round(float(totals.std(ddof=1)), 4)
                                        if totals.size > 1 else None,
                                        "max": round(float(totals.max()), 4)},
           "passed": bool(all(r["passed"] for r in rows))}
    (out / "qa_e2e.json").write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    if args.repeats > 1:
        print(f"{args.repeats} runs: total targeting error mean {totals.mean():.2f} mm, "
              f"max {totals.max():.2f} mm; {'PASS' if doc['passed'] else 'FAIL'}")
    return 0 if doc["passed"] else 1
