"""Draw docs/phantom.png: axial, coronal and sagittal slices through the default phantom's
target, plus a simple antero-posterior line-integral projection.

Usage: python scripts/make_phantom_figure.py [--preset default] [--seed 0] [--out PATH]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

from cyberknife_sim.anatomy import make_phantom  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" /
                                         "phantom.png"))
    args = ap.parse_args()
    ph = make_phantom(args.preset, seed=args.seed)
    vol, t = ph.volume, ph.truth
    hu = vol.hu
    sx, sy, sz = vol.spacing_mm
    x0, y0, z0 = vol.ct_from_ijk[:3, 3]
    nk, nj, ni = vol.shape
    ext_x = (x0 - sx / 2, x0 + (ni - 0.5) * sx)
    ext_y = (y0 - sy / 2, y0 + (nj - 0.5) * sy)
    ext_z = (z0 - sz / 2, z0 + (nk - 0.5) * sz)
    c = t.target_center_ct_mm
    i, j, k = np.rint(vol.ct_to_ijk(c)).astype(int)
    win = dict(cmap="gray", vmin=-1000, vmax=1300, interpolation="nearest")

    fig, ax = plt.subplots(1, 4, figsize=(17, 4.6), gridspec_kw={"width_ratios":
                                                                [340, 340, 260, 340]})
    # axial: x to the image right = patient left (radiological view is mirrored; say so)
    ax[0].imshow(hu[k], extent=(*ext_x, ext_y[1], ext_y[0]), **win)
    ax[0].set(title=f"axial z = {c[2]:.1f} mm ({t.lesion_level})", xlabel="x (mm, +left)",
              ylabel="y (mm, +posterior)")
    ax[1].imshow(hu[:, j, :], extent=(*ext_x, *ext_z), origin="lower", **win)
    ax[1].set(title=f"coronal y = {c[1]:.1f} mm", xlabel="x (mm, +left)",
              ylabel="z (mm, +superior)")
    ax[2].imshow(hu[:, :, i], extent=(*ext_y, *ext_z), origin="lower", **win)
    ax[2].set(title=f"sagittal x = {c[0]:.1f} mm", xlabel="y (mm, +posterior)",
              ylabel="z (mm, +superior)")
    for a, (u, v) in zip(ax[:3], [(c[0], c[1]), (c[0], c[2]), (c[1], c[2])], strict=True):
        a.add_patch(Circle((u, v), t.target_radius_mm, fill=False, color="tab:red", lw=1.2))
    for lab, bc in zip(t.vertebra_labels, t.body_centers_ct_mm, strict=True):
        ax[2].text(bc[1] - 30, bc[2], lab, color="yellow", fontsize=8, ha="right",
                   va="center")
    mu = vol.mu_per_mm(0.0206)
    proj = mu.sum(axis=1) * sy  # AP line integral (parallel rays)
    ax[3].imshow(proj, extent=(*ext_x, *ext_z), origin="lower", cmap="gray",
                 interpolation="bilinear")
    ax[3].set(title="AP line integral (parallel beam)", xlabel="x (mm)", ylabel="z (mm)")
    fig.suptitle(f"procedural phantom '{args.preset}' seed {args.seed}: "
                 f"{ni}x{nj}x{nk} voxels at {sx:g}x{sy:g}x{sz:g} mm, {t.lesion_type} "
                 f"metastasis r = {t.target_radius_mm:g} mm (red)", fontsize=11)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
