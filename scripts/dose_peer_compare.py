"""Our cone dose engine vs pyRadPlan's SVD pencil beam in water: the comparison table and plots.

Usage::

    python scripts/dose_peer_compare.py --out OUT [--cones 10 20 40 60] [--shape circle]
        [--spacing-mm 0.5] [--source-fwhm-mm 2.0]

Prints one row per cone and profile depth (PDD difference beyond the build-up, d_max,
TPR20/10, FWHM and 80–20 % penumbra of both engines) and writes ``OUT/dose_peer_<cone>.png``
(depth dose and profiles) and ``OUT/dose_peer.json`` (the table). Needs pyRadPlan
(``pip install "cyberknife_sim[peer]"``). See docs/dose_peer.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cyberknife_sim.dose import peer


def _plot(c: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, style, label in (("ours", "-", "cyberknife_sim (cone)"),
                              ("peer", "--", f"pyRadPlan SVDPB {c['peer']['machine']}")):
        res = c[key]
        ax1.plot(res["depth_mm"], res["pdd"], style, label=label)
        for k, d in enumerate(res["profile_depth_mm"]):
            ax2.plot(res["x_mm"], res["profiles"][k], style, label=f"{label}, {d:.0f} mm")
    ax1.set(xlabel="depth (mm)", ylabel="dose / dose(15 mm)",
            title=f"{c['cone_mm']:.0f} mm {c['shape']}, SSD {c['ours']['ssd_mm']:.0f} mm")
    ax2.set(xlabel="lateral position x (mm)", ylabel="dose / axis dose", title="profiles")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=7)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="folder for the PNGs and JSON")
    ap.add_argument("--cones", type=float, nargs="+", default=[10.0, 20.0, 40.0, 60.0])
    ap.add_argument("--shape", choices=["circle", "square"], default="circle")
    ap.add_argument("--spacing-mm", type=float, default=0.5)
    ap.add_argument("--source-fwhm-mm", type=float, default=None,
                    help="pyRadPlan source penumbra FWHM at the isocentre (default: the "
                         "Generic machine's 5 mm)")
    args = ap.parse_args(argv)
    if not peer.find_pyradplan():
        print(peer.NOT_INSTALLED, file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    table = []
    print(f"pyRadPlan {peer.pyradplan_version()}, source FWHM "
          f"{args.source_fwhm_mm or 'machine (5 mm)'}, {args.shape}, voxel {args.spacing_mm} mm")
    print("cone  PDDmax%  PDDrms%  dmax o/p   TPR20/10 o/p   depth  FWHM o/p (mm)   "
          "pen80-20 o/p (mm)")
    for cone in args.cones:
        c = peer.compare_water(cone, shape=args.shape, spacing_mm=args.spacing_mm,
                               source_fwhm_mm=args.source_fwhm_mm)
        _plot(c, args.out / f"dose_peer_{cone:g}.png")
        for r in c["profiles"]:
            f, p = r["fwhm_mm"], r["penumbra_mm"]
            print(f"{cone:4g}  {c['pdd_diff_max_pct']:+7.2f}  {c['pdd_diff_rms_pct']:7.2f}  "
                  f"{c['dmax_mm']['ours']:5.2f}/{c['dmax_mm']['peer']:5.2f}  "
                  f"{c['tpr20_10']['ours']:.3f}/{c['tpr20_10']['peer']:.3f}  "
                  f"{r['depth_mm']:5.0f}  {f['ours']:6.2f}/{f['peer']:6.2f}   "
                  f"{p['ours']:5.2f}/{p['peer']:5.2f}")
        table.append({k: c[k] for k in ("cone_mm", "shape", "peer_field_mm", "pdd_diff_max_pct",
                                        "pdd_diff_rms_pct", "dmax_mm", "tpr20_10", "profiles")})
    (args.out / "dose_peer.json").write_text(json.dumps(
        {"pyradplan": peer.pyradplan_version(), "source_fwhm_mm": args.source_fwhm_mm,
         "spacing_mm": args.spacing_mm, "rows": table}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
