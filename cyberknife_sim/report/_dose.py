"""The dose part of a run's report: DVHs, dose slices with isodose lines, the cord's margin
to its limit (PNGs, matplotlib's object API) and the "Dose" section of ``report.html``.

- ``dvh.png``: cumulative DVH of every structure on the dose grid, planned dashed and
  delivered solid in the structure's colour; the target and other structures in % of their
  volume, the cord in cc; vertical lines at the prescription and the cord limit, the cord's
  V10 Gy limit as a mark;
- ``dose_slices.png``: axial and sagittal slices through the target centre (centroid of its
  mask) and an axial slice through the cord's hottest point, planned and delivered side by
  side; CT in grey under a dose colour wash, isodose lines at 50 %, 80 %, 100 % of the
  prescription, the cord limit and 10 Gy, target and cord outlines; axes in CT mm (DICOM
  LPS: +x patient left, +y posterior, +z superior), axial slices anterior up and patient
  left on the right (radiological view), sagittal slices anterior left and superior up;
- ``cord_margin.png``: cord D0.035 cc and Dmax, planned vs delivered, against the point
  limit (margin in Gy), and cord V10 Gy against its volume limit.

The numbers in the table and the margins are the run's ``dose`` metrics (``summary.json``);
the curves and slices come from the dose arrays.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..errors import InputError

__all__ = ["DOSE_PLOTS", "cord_margins", "dose_section", "dvh_curve", "slice_points",
           "structure_colors", "write_dose_plots"]

DOSE_PLOTS = ("dvh.png", "dose_slices.png", "cord_margin.png")
"""File names of the plots :func:`write_dose_plots` writes."""

_TARGET_COLOR, _CORD_COLOR = "#d62728", "#17becf"
_OTHER_COLORS = ("#9467bd", "#8c564b", "#bcbd22", "#e377c2", "#7f7f7f", "#2ca02c")
_KINDS = (("planned", "--"), ("delivered", "-"))
_CT_WINDOW_HU = (-450.0, 1050.0)  # bone window (level 300, width 1500): display choice
_WASH_FROM = 0.1  # dose wash drawn above this fraction of the prescription (display choice)


def structure_colors(dose) -> dict[str, str]:
    """One colour per structure (target red, cord cyan, others in turn), for every figure."""
    out, others = {}, iter(_OTHER_COLORS * (1 + len(dose.masks) // len(_OTHER_COLORS)))
    for name in dose.masks:
        out[name] = (_TARGET_COLOR if name == dose.target_name else
                     _CORD_COLOR if name == dose.cord_name else next(others))
    return out


def dvh_curve(dose_gy: np.ndarray, mask: np.ndarray, voxel_cc: float, *,
              levels_gy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative DVH: the volume of ``mask`` receiving at least each dose level
    (:func:`cyberknife_sim.dose._dvh.cumulative_dvh` on the report's dose levels).

    Parameters
    ----------
    dose_gy : ndarray
        Dose on the grid (Gy).
    mask : ndarray of bool, same shape
        The structure.
    voxel_cc : float
        Volume of one dose voxel (cm³).
    levels_gy : ndarray, optional
        Dose levels (Gy); default 400 levels from 0 to 5 % above the structure's maximum.

    Returns
    -------
    levels_gy, volume_cc : ndarray
        ``volume_cc[n]`` = voxel_cc × (number of voxels of ``mask`` with dose ≥ levels_gy[n]).
    """
    from ..dose._dvh import cumulative_dvh  # the dose package only when a report has dose

    mask = np.asarray(mask, dtype=bool)
    if levels_gy is None:
        d = np.asarray(dose_gy)
        top = float(d[mask].max()) if d.shape == mask.shape and mask.any() else 0.0
        levels_gy = np.linspace(0.0, max(1.05 * top, 1e-9), 400)
    return cumulative_dvh(dose_gy, mask, voxel_cc, bins_gy=np.asarray(levels_gy, np.float64))


def _doses(dose) -> list[tuple[str, str, np.ndarray]]:
    """(kind, line style, dose array) for planned and, when there is one, delivered."""
    arrays = {"planned": dose.planned_gy, "delivered": dose.delivered_gy}
    return [(k, ls, arrays[k]) for k, ls in _KINDS if arrays[k] is not None]


def plot_dvh(path: Path, dose) -> Path:
    """``dvh.png`` (see the module docstring)."""
    colors = structure_colors(dose)
    kinds = _doses(dose)
    top = max(float(np.max(a)) for _, _, a in kinds) * 1.05
    levels = np.linspace(0.0, max(top, 1e-9), 500)
    fig = Figure(figsize=(11, 4.2))
    ax_pct, ax_cc = fig.subplots(1, 2)
    for name, mask in dose.masks.items():
        n_vox = int(np.count_nonzero(mask))
        if n_vox == 0:
            continue
        for kind, ls, arr in kinds:
            _, v_cc = dvh_curve(arr, mask, dose.grid.voxel_cc, levels_gy=levels)
            if name == dose.cord_name:
                ax_cc.plot(levels, v_cc, ls=ls, color=colors[name], label=f"{name} ({kind})")
            else:
                ax_pct.plot(levels, 100.0 * v_cc / (n_vox * dose.grid.voxel_cc), ls=ls,
                            color=colors[name], label=f"{name} ({kind})")
    for ax in (ax_pct, ax_cc):
        ax.axvline(dose.prescription_gy, color="k", lw=0.8, ls=":")
        ax.axvline(dose.cord_max_gy, color=_CORD_COLOR, lw=0.8, ls=":")
        ax.set_xlim(0, levels[-1])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("dose (Gy)")
    ax_cc.plot([10.0], [dose.cord_v10_limit_cc], marker="x", color="k", ls="none",
               label=f"V10 Gy limit {dose.cord_v10_limit_cc:g} cc")
    ax_pct.set_ylabel("volume (% of the structure)")
    ax_cc.set_ylabel("cord volume (cc)")
    ax_pct.set_title(f"DVH (dotted: prescription {dose.prescription_gy:g} Gy, cord limit "
                     f"{dose.cord_max_gy:g} Gy); planned dashed, delivered solid", fontsize=9)
    ax_cc.set_title(f"cord ({dose.cord_name})", fontsize=9)
    if ax_cc.get_lines():
        ax_cc.set_ylim(top=max(ax_cc.get_ylim()[1], 1.2 * dose.cord_v10_limit_cc))
    for ax in (ax_pct, ax_cc):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _save(fig, path)


def slice_points(dose) -> dict[str, tuple[int, int, int]]:
    """Grid indices ``(k, j, i)`` the slices go through: ``target`` the voxel nearest the
    target mask's centroid, ``cord`` the cord's hottest voxel (the highest dose in the cord
    mask over planned and delivered)."""
    target = np.asarray(dose.masks[dose.target_name], dtype=bool)
    cord = np.asarray(dose.masks[dose.cord_name], dtype=bool)
    if not target.any():
        raise InputError(f"dose report: target mask {dose.target_name!r} is empty")
    centre = np.rint(np.argwhere(target).mean(axis=0)).astype(int)
    out = {"target": tuple(int(v) for v in centre)}
    if cord.any():
        hottest = max((np.where(cord, a, -np.inf) for _, _, a in _doses(dose)),
                      key=lambda a: float(a.max()))
        out["cord"] = tuple(int(v) for v in np.unravel_index(np.argmax(hottest), cord.shape))
    return out


def _isodose_levels(dose) -> list[tuple[float, str, str]]:
    rx = dose.prescription_gy
    lv = [(0.5 * rx, "50 % Rx", "#1f77b4"), (0.8 * rx, "80 % Rx", "#2ca02c"),
          (rx, "100 % Rx", "#ffd700"), (dose.cord_max_gy, "cord limit", "#ff7f0e"),
          (10.0, "10 Gy", "#e377c2")]
    return sorted(lv, key=lambda t: t[0])


def _cut(a: np.ndarray, view: str, kji: tuple[int, int, int]) -> np.ndarray:
    k, _, i = kji
    return a[k] if view == "axial" else a[:, :, i]  # [j, i] or [k, j]


def _slice_panel(ax, dose, arr, view: str, kji, *, norm, colors) -> object:
    x, y, z = dose.grid.axes_ct()
    h, v = (x, y) if view == "axial" else (y, z)
    s = dose.grid.spacing_mm / 2
    ext = (h[0] - s, h[-1] + s, v[-1] + s, v[0] - s) if view == "axial" else \
        (h[0] - s, h[-1] + s, v[0] - s, v[-1] + s)
    origin = "upper" if view == "axial" else "lower"
    ax.imshow(_cut(dose.ct_hu, view, kji), cmap="gray", vmin=_CT_WINDOW_HU[0],
              vmax=_CT_WINDOW_HU[1], extent=ext, origin=origin, interpolation="nearest")
    d = _cut(arr, view, kji)
    im = ax.imshow(np.ma.masked_less(d, _WASH_FROM * dose.prescription_gy), cmap="jet",
                   norm=norm, alpha=0.3, extent=ext, origin=origin, interpolation="nearest")
    if np.ptp(d) > 0:
        for level, _, c in _isodose_levels(dose):
            if d.min() < level <= d.max():
                ax.contour(h, v, d, levels=[level], colors=[c], linewidths=1.3)
    for name in (dose.target_name, dose.cord_name):
        m = _cut(dose.masks[name], view, kji).astype(float)
        if 0 < m.sum() < m.size:
            ax.contour(h, v, m, levels=[0.5], colors=[colors[name]], linewidths=1.6,
                       linestyles="--")
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    ax.set_aspect("equal")
    ax.tick_params(labelsize=7)
    return im


_VIEW_TEXT = {"axial": ("x (mm, → patient left)", "y (mm, ↓ posterior)"),
              "sagittal": ("y (mm, → posterior)", "z (mm, ↑ superior)")}


def plot_dose_slices(path: Path, dose) -> Path:
    """``dose_slices.png`` (see the module docstring)."""
    from matplotlib.colors import Normalize

    kinds = _doses(dose)
    pts = slice_points(dose)
    x, y, z = dose.grid.axes_ct()
    rows = [("axial", pts["target"], "target centre"),
            ("sagittal", pts["target"], "target centre")]
    if "cord" in pts:
        rows.append(("axial", pts["cord"], "cord's hottest point"))
    colors = structure_colors(dose)
    norm = Normalize(0.0, max(float(np.max(a)) for _, _, a in kinds))
    fig = Figure(figsize=(4.6 * len(kinds) + 1.2, 4.0 * len(rows) + 0.8), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(kinds), squeeze=False))
    im = None
    for r, (view, kji, why) in enumerate(rows):
        at = f"z = {z[kji[0]]:.1f} mm" if view == "axial" else f"x = {x[kji[2]]:.1f} mm"
        for c, (kind, _, arr) in enumerate(kinds):
            ax = axes[r, c]
            im = _slice_panel(ax, dose, arr, view, kji, norm=norm, colors=colors)
            ax.set_title(f"{kind}: {view} through the {why}\n({at})", fontsize=8)
            ax.set_xlabel(_VIEW_TEXT[view][0], fontsize=7)
            ax.set_ylabel(_VIEW_TEXT[view][1], fontsize=7)
    handles = [Line2D([], [], color=c, lw=1.3, label=f"{lab} ({lv:.1f} Gy)")
               for lv, lab, c in _isodose_levels(dose)]
    handles += [Line2D([], [], color=colors[n], lw=1.6, ls="--", label=n)
                for n in (dose.target_name, dose.cord_name)]
    fig.legend(handles=handles, loc="outside upper center", ncol=4, fontsize=7, frameon=False)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="dose (Gy)")
    fig.supxlabel("CT frame, DICOM LPS (+x patient left, +y posterior, +z superior)",
                  fontsize=9)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    return path


def cord_margins(dose) -> dict[str, dict[str, float | None]]:
    """The cord's numbers per kind (``planned``, ``delivered``) from ``dose.metrics``:
    ``d0035cc_gy``, ``dmax_gy``, ``v10gy_cc``, and the margins to the limits,
    ``margin_gy`` = cord_max_gy − D0.035 cc, ``dmax_margin_gy`` = cord_max_gy − Dmax and
    ``v10_margin_cc`` = cord_v10_limit_cc − V10 Gy (positive: below the limit; None where a
    metric is missing)."""
    out = {}
    for kind in ("planned", "delivered"):
        m = (dose.metrics.get(kind) or {}).get("cord")
        if not m:
            continue
        row = {key: _float(m.get(key)) for key in ("d0035cc_gy", "dmax_gy", "v10gy_cc")}
        row["margin_gy"] = _minus(dose.cord_max_gy, row["d0035cc_gy"])
        row["dmax_margin_gy"] = _minus(dose.cord_max_gy, row["dmax_gy"])
        row["v10_margin_cc"] = _minus(dose.cord_v10_limit_cc, row["v10gy_cc"])
        out[kind] = row
    return out


def _float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _minus(limit: float, v: float | None) -> float | None:
    return None if v is None else float(limit) - v


def plot_cord_margin(path: Path, dose) -> Path:
    """``cord_margin.png`` (see the module docstring)."""
    margins = cord_margins(dose)
    kinds = [k for k, _ in _KINDS if k in margins]
    fig = Figure(figsize=(9, 3.6))
    ax, ax2 = fig.subplots(1, 2, width_ratios=(1.6, 1))
    width = 0.8 / max(len(kinds), 1)
    for n, kind in enumerate(kinds):
        m = margins[kind]
        xs = np.arange(2) + (n - (len(kinds) - 1) / 2) * width
        vals = [m["d0035cc_gy"] or 0.0, m["dmax_gy"] or 0.0]
        ax.bar(xs, vals, width, color=_CORD_COLOR, alpha=0.5 if kind == "planned" else 0.95,
               hatch="//" if kind == "planned" else None, edgecolor="k", label=kind)
        for xv, v, mg in zip(xs, vals, (m["margin_gy"], m["dmax_margin_gy"]), strict=True):
            if mg is not None:
                ax.text(xv, v, f"{v:.2f} Gy\n{abs(mg):.2f} {'below' if mg >= 0 else 'ABOVE'}",
                        ha="center", va="bottom", fontsize=7)
        v10 = m["v10gy_cc"] or 0.0
        ax2.bar([n], [v10], 0.6, color=_CORD_COLOR, alpha=0.5 if kind == "planned" else 0.95,
                hatch="//" if kind == "planned" else None, edgecolor="k")
        ax2.text(n, v10, f"{v10:.3f} cc", ha="center", va="bottom", fontsize=7)
    ax.axhline(dose.cord_max_gy, color="k", ls="--", lw=1,
               label=f"limit {dose.cord_max_gy:g} Gy")
    ax.set_xticks([0, 1], ["D0.035 cc", "Dmax"])
    ax.set_ylabel("cord dose (Gy)")
    ax.set_ylim(0, 1.25 * max(dose.cord_max_gy, *(b.get_height() for b in ax.patches)))
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(f"cord ({dose.cord_name}) against its point limit", fontsize=9)
    ax2.axhline(dose.cord_v10_limit_cc, color="k", ls="--", lw=1,
                label=f"limit {dose.cord_v10_limit_cc:g} cc")
    ax2.set_xticks(range(len(kinds)), kinds)
    ax2.set_ylim(0, 1.3 * max(dose.cord_v10_limit_cc, *(b.get_height() for b in ax2.patches)))
    ax2.set_ylabel("cord V10 Gy (cc)")
    ax2.legend(fontsize=7)
    ax2.set_title("cord V10 Gy", fontsize=9)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def write_dose_plots(out_dir: Path, dose) -> list[Path]:
    """Write the dose PNGs of a run into ``out_dir`` (the names in :data:`DOSE_PLOTS`).

    Parameters
    ----------
    out_dir : Path
        Run directory.
    dose : DoseResult
        Planned (and delivered) dose, masks and metrics of the run.

    Returns
    -------
    list of Path
        The PNGs, in the order of :data:`DOSE_PLOTS`.
    """
    out = Path(out_dir)
    for name in (dose.target_name, dose.cord_name):
        if name not in dose.masks:
            raise InputError(f"dose report: no mask named {name!r} (have {sorted(dose.masks)})")
    return [plot_dvh(out / DOSE_PLOTS[0], dose), plot_dose_slices(out / DOSE_PLOTS[1], dose),
            plot_cord_margin(out / DOSE_PLOTS[2], dose)]


_TABLE = (("target", "coverage", "target coverage (V100 %)", None),
          ("target", "d95_gy", "target D95 (Gy)", 2), ("target", "d2pct_gy", "target D2 % (Gy)", 2),
          ("target", "conformity_index_paddick", "conformity index (Paddick)", 3),
          ("target", "gradient_index", "gradient index", 2),
          ("cord", "dmax_gy", "cord Dmax (Gy)", 2),
          ("cord", "d0035cc_gy", "cord D0.035 cc (Gy)", 2),
          ("cord", "v10gy_cc", "cord V10 Gy (cc)", 3))


def _cell(v, nd: int | None) -> str:
    from ._html import percent

    f = _float(v)
    if f is None:
        return "—"
    return percent(f) if nd is None else f"{f:.{nd}f}"


def _fraction_text(dose) -> str:
    from ._html import percent

    frac = _float(dose.metrics.get("delivered_mu_fraction"))
    return "" if frac is None else f" ({percent(frac)} of the plan's MU delivered)"


def margin_text(dose, kind: str) -> str:
    """The cord's margin in words, e.g. "planned: cord D0.035 cc 11.20 Gy: 2.80 Gy below its
    14 Gy limit; V10 Gy 0.120 cc (limit 0.35 cc)"; empty without the cord's metrics."""
    m = cord_margins(dose).get(kind)
    if not m or m["margin_gy"] is None:
        return ""
    side = "below" if m["margin_gy"] >= 0 else "ABOVE"
    v10 = "" if m["v10gy_cc"] is None else (
        f"; V10 Gy {m['v10gy_cc']:.3f} cc ({'within' if m['v10_margin_cc'] >= 0 else 'OVER'} "
        f"its {dose.cord_v10_limit_cc:g} cc limit)")
    return (f"{kind}: cord D0.035 cc {m['d0035cc_gy']:.2f} Gy: {abs(m['margin_gy']):.2f} Gy "
            f"{side} its {dose.cord_max_gy:g} Gy limit{v10}")


def dose_section(out_dir: Path, dose, plots: list[Path]) -> str:
    """The report's "Dose" section (HTML): the metrics table planned vs delivered, gamma pass
    rates, the cord margin in words and the dose PNGs (taken from ``plots`` by name, written
    into ``out_dir`` when missing); empty string when ``dose`` is None."""
    if dose is None:
        return ""
    from ._html import _img, percent

    by_name = {Path(p).name: Path(p) for p in plots}
    if any(n not in by_name for n in DOSE_PLOTS):
        by_name.update({p.name: p for p in write_dose_plots(out_dir, dose)})
    kinds = [k for k, _ in _KINDS if dose.metrics.get(k)]
    head = "".join(f"<th>{k}</th>" for k in kinds)
    rows = "".join(
        f"<tr><td>{label}</td>" + "".join(
            f"<td>{_cell((dose.metrics[k].get(group) or {}).get(key), nd)}</td>" for k in kinds)
        + "</tr>" for group, key, label, nd in _TABLE)
    gamma = dose.metrics.get("gamma") or {}
    gamma_rows = "".join(
        f"<tr><td>gamma pass rate {html.escape(str(crit))}</td><td colspan=\"{len(kinds)}\">"
        f"{percent(_float((g or {}).get('pass_rate')))}</td></tr>"
        for crit, g in gamma.items())
    words = [margin_text(dose, k) for k in ("planned", "delivered")]
    bad = ' class="bad"'
    margin = "".join(f'<p{bad if "ABOVE" in w or "OVER" in w else ""}>{html.escape(w)}</p>'
                     for w in words if w)
    planned_only = ("" if dose.delivered_gy is not None else
                    '<p class="note">No delivered dose for this run: planned dose only.</p>')
    return (f'<h2 id="dose">Dose</h2>\n<p>Prescription {dose.prescription_gy:g} Gy to '
            f'{html.escape(dose.target_name)}; cord ({html.escape(dose.cord_name)}) limits: '
            f'point maximum {dose.cord_max_gy:g} Gy, V10 Gy {dose.cord_v10_limit_cc:g} cc. '
            f'Gamma: delivered against the planned beam axes at the delivered MU'
            f'{_fraction_text(dose)}.</p>{planned_only}\n{margin}\n'
            f'<table id="dose-metrics"><tr><th>metric</th>{head}</tr>{rows}{gamma_rows}'
            f'</table>\n' + "\n".join(_img(by_name[n]) for n in DOSE_PLOTS))
