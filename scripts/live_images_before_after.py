"""Whole-treatment targeting error of the default scene with the ideal live images (DRRs of
the planning CT itself plus noise: the inverse crime, for ablation) and the realistic ones
(the 4D truth patient through its own projector and X-ray physics: the default).

Usage::

    .venv/bin/python scripts/live_images_before_after.py [--seed N] [--duration-s S]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cyberknife_sim.scene import scene_from_dict  # noqa: E402
from cyberknife_sim.simulation import simulate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--duration-s", type=float, default=None)
    args = ap.parse_args()
    print("| live images | RMS | p95 | max (mm) | registration vs truth: translation RMS (mm) / "
          "rotation RMS (°) |\n|---|---|---|---|---|")
    for live in ("ideal", "realistic"):
        data = yaml.safe_load((REPO / "scenes" / "default.yaml").read_text(encoding="utf-8"))
        data["room"]["imaging"]["live_images"] = live
        scene = scene_from_dict(data, origin=f"default ({live})", scene_dir=REPO / "scenes")
        s = simulate(scene, seed=args.seed, duration_s=args.duration_s).summary
        te, reg = s.targeting_error_mm, s.registration_error_vs_truth
        print(f"| {live} | {te['rms']:.3f} | {te['p95']:.3f} | {te['max']:.3f} | "
              f"{reg['translation_rms_mm']:.3f} / {reg['rotation_rms_deg']:.2f} |")


if __name__ == "__main__":
    main()
