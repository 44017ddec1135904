"""The PNG plots of a run (matplotlib's object API: no pyplot, no backend chosen).

- ``error_vs_time.png``: targeting error over beam-on time — for a long run its per-second
  minimum–maximum envelope and RMS, with a 30 s window of the raw per-step trace below — beam
  holds as bands labelled with their interlocks, X-ray pairs as ticks;
- ``error_histogram.png``: the error over beam-on time;
- ``target_tracking.png``: the true and the commanded target, x, y and z, as displacements
  from the current beam's planned aim point, so that a change of aim point (marked) is not
  drawn as a jump of the target; whole run and 30 s from the first beam;
- ``error_components.png``: RMS and 95th percentile of each error component, and each
  component's RMS per beam (one colour per component throughout);
- ``beams_3d.png``: the beams, nodes and target path in the room, with the couch and a
  schematic outline of the supine, head-first patient; anterior up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from ..metrics import COMPONENTS
from ._series import HoldBand, aim_changes, aim_index, binned_envelope, hold_bands
from ._style import COMPONENT_COLORS, HOLD_COLORS, XRAY_COLORS, hold_color

__all__ = ["PLOTS", "write_plots"]

PLOTS = ("error_vs_time.png", "error_histogram.png", "target_tracking.png",
         "error_components.png", "beams_3d.png")
"""File names of the plots :func:`write_plots` writes."""

RAW_UP_TO_S = 120.0
"""Runs up to this long are drawn per step; longer ones as a per-second envelope."""
WINDOW_S = 30.0
"""Length of the zoomed windows (s)."""

# Default couch and patient (scene.room.couch) for a record without its scene (mm).
_COUCH = {"top_y_mm": 130.0, "size_mm": (520.0, 60.0, 2000.0), "center_z_mm": -300.0,
          "patient_size_mm": (420.0, 240.0, 1750.0), "patient_center_z_mm": -300.0}


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def beam_on_error(rec) -> np.ndarray:
    """Targeting error magnitude per step (mm), NaN while the beam is off."""
    err = np.linalg.norm(rec.error_vec, axis=1)
    return np.where(rec.beam_on_s > 0, err, np.nan)


def worst_window(t: np.ndarray, e_on: np.ndarray, width_s: float = WINDOW_S
                 ) -> tuple[float, float]:
    """A window of ``width_s`` centred on the largest beam-on error (clipped to the run)."""
    if t.size == 0:
        return 0.0, width_s
    i = int(np.nanargmax(e_on)) if np.isfinite(e_on).any() else 0
    a = max(float(t[0]), float(t[i]) - width_s / 2)
    b = min(float(t[-1]), a + width_s)
    return max(float(t[0]), b - width_s), b


def _draw_holds(ax, bands: list[HoldBand], *, labels: bool) -> set[str]:
    """Hold bands as shaded spans; with ``labels`` their reasons written at the top."""
    x0, x1 = ax.get_xlim()
    min_gap, min_width = 0.015 * (x1 - x0), 0.002 * (x1 - x0)  # visible at any length
    last = -np.inf
    for band in bands:
        if band.end_s < x0 or band.start_s > x1:
            continue
        ax.axvspan(band.start_s, max(band.end_s, band.start_s + min_width),
                   color=hold_color(band.reasons), alpha=0.3, lw=0)
        if labels and band.start_s - last >= min_gap:
            txt = ax.text(max(band.start_s, x0), 0.97, " " + band.label, rotation=90,
                          va="top", ha="left", fontsize=6.5, color=hold_color(band.reasons),
                          transform=blended_transform_factory(ax.transData, ax.transAxes),
                          clip_on=True)
            txt.set_in_layout(False)
            last = band.start_s
    return {b.reasons[0] for b in bands if b.reasons}


def _draw_xrays(ax, events: list[dict]) -> None:
    """X-ray pairs as ticks along the top edge (rejected ones as red crosses)."""
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for ok, marker in ((True, "|"), (False, "x")):
        ts = [ev["time_s"] for ev in events
              if ev["kind"] == "image" and bool(ev.get("accepted")) is ok]
        if ts:
            (line,) = ax.plot(ts, np.full(len(ts), 1.0), ls="none", marker=marker, ms=7,
                              color=XRAY_COLORS[ok], transform=trans, clip_on=False,
                              label="X-ray pair" if ok else "rejected X-ray pair")
            line.set_in_layout(False)


def _hold_legend(reasons: set[str]) -> list[Patch]:
    return [Patch(color=HOLD_COLORS.get(r, "#7f7f7f"), alpha=0.35, label=f"hold: {r}")
            for r in sorted(reasons)]


def envelope_bin_s(duration_s: float, n_bins: int = 600) -> float:
    """A round bin width (1, 2, 5, 10, ... s) giving at most about ``n_bins`` bins."""
    for width in (1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0):
        if duration_s / width <= n_bins:
            return width
    return 600.0


def _error_panel(ax, t, e_on, *, envelope: bool) -> None:
    if envelope and t.size:
        width = envelope_bin_s(float(t[-1] - t[0]))
        c, lo, rms, hi = binned_envelope(t, e_on, width)
        ax.fill_between(c, lo, hi, color="0.55", lw=0, step="mid",
                        label=f"min–max per {width:g} s (beam on)")
        ax.plot(c, rms, color="k", lw=0.6, drawstyle="steps-mid", label="RMS per bin")
    else:
        ax.plot(t, e_on, lw=0.6, color="k", label="targeting error (beam on)")
    ax.axhline(0.5, color="gray", ls=":", lw=0.8)
    ax.set_ylabel("error (mm)")
    ax.set_ylim(bottom=0)


def plot_error_vs_time(path: Path, rec, summary: dict) -> Path:
    """Targeting error vs time (see the module docstring)."""
    t = rec.time_s
    e_on = beam_on_error(rec)
    bands = hold_bands(rec)
    long_run = t.size > 1 and t[-1] - t[0] > RAW_UP_TO_S
    fig = Figure(figsize=(11, 6.2 if long_run else 4.0))
    axes = fig.subplots(2, 1, height_ratios=(3, 2)) if long_run else [fig.subplots()]
    ax = axes[0]
    _error_panel(ax, t, e_on, envelope=long_run)
    if t.size:
        ax.set_xlim(t[0], t[-1])
    reasons = _draw_holds(ax, bands, labels=True)
    _draw_xrays(ax, rec.events)
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + _hold_legend(reasons), loc="upper right", fontsize=7,
              ncol=2, framealpha=0.85)
    ax.set_title(f"{summary['scene']} — tracking {summary['tracking_mode']}: targeting error "
                 f"({len(bands)} beam holds)", fontsize=10)
    if long_run:
        a, b = worst_window(t, e_on)
        ax.axvspan(a, b, fill=False, ec="tab:purple", lw=0.8, ls="--")
        zoom = axes[1]
        sel = (t >= a) & (t <= b)
        zoom.plot(t[sel], e_on[sel], lw=0.7, color="k", marker=".", ms=1.5)
        zoom.axhline(0.5, color="gray", ls=":", lw=0.8)
        zoom.set_xlim(a, b)
        zoom.set_ylim(bottom=0)
        _draw_holds(zoom, bands, labels=True)
        _draw_xrays(zoom, rec.events)
        zoom.set_ylabel("error (mm)")
        zoom.set_title(f"every step, {b - a:.0f} s around the largest error (dashed box above)",
                       fontsize=9)
    axes[-1].set_xlabel("time (s)")
    return _save(fig, path)


def plot_histogram(path: Path, rec, summary: dict) -> Path:
    """Histogram of the error over beam-on time."""
    on = rec.beam_on_s > 0
    err = np.linalg.norm(rec.error_vec, axis=1)
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    if on.any():
        ax.hist(err[on], bins=60, weights=rec.beam_on_s[on], color="0.4")
        te = summary["targeting_error_mm"]
        for key, ls in (("rms", "-"), ("p95", "--")):
            if te.get(key) is not None:
                ax.axvline(te[key], color="tab:red", ls=ls, label=f"{key} {te[key]:.3f} mm")
        ax.legend(fontsize=8)
    ax.set_xlabel("targeting error (mm)")
    ax.set_ylabel("beam-on time (s)")
    ax.set_title("error histogram (beam-on time)")
    return _save(fig, path)


def displacement_from_aim(rec, aims_room: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """True and commanded target minus the current beam's planned aim point (mm, room), per
    step, and the steps where the aim point changes.

    Returns
    -------
    true_mm, commanded_mm : ndarray, shape (n, 3)
    changes : ndarray of int
        First step aimed at a new point (see :func:`aim_changes`).
    """
    aims = np.asarray(aims_room, dtype=float).reshape(-1, 3)
    if len(aims) == 0:
        return rec.target_true.copy(), rec.target_commanded.copy(), np.zeros(0, np.int64)
    aim = aims[aim_index(rec, len(aims))]
    return rec.target_true - aim, rec.target_commanded - aim, aim_changes(rec, aims)


def _broken(t: np.ndarray, y: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``t``, ``y`` with a NaN before each index in ``cuts`` (no line drawn across)."""
    return np.insert(t, cuts, np.nan), np.insert(y, cuts, np.nan, axis=0)


def _tracking_whole_run(ax, t, true_j, cmd_j, changes, cuts, *, envelope: bool) -> None:
    """Left column: the whole run (per-bin envelopes for a long run), aim changes as ticks."""
    if envelope:
        width = envelope_bin_s(float(t[-1] - t[0]))
        c, lo, _, hi = binned_envelope(t, true_j, width)
        ax.fill_between(c, lo, hi, color="tab:blue", alpha=0.35, lw=0, step="mid")
        c, lo, _, hi = binned_envelope(t, cmd_j, width)
        for v in (lo, hi):
            ax.plot(c, v, color="tab:orange", lw=0.6, drawstyle="steps-mid")
    else:
        tb, y = _broken(t, np.stack([true_j, cmd_j], axis=1), cuts)
        ax.plot(tb, y[:, 0], lw=0.7, color="tab:blue")
        ax.plot(tb, y[:, 1], lw=0.7, color="tab:orange")
    t_ch = t[changes]
    (ticks,) = ax.plot(t_ch, np.zeros(t_ch.size), ls="none", marker="|", ms=8, color="0.3",
                       transform=blended_transform_factory(ax.transData, ax.transAxes),
                       clip_on=False)
    ticks.set_in_layout(False)
    if t.size:
        ax.set_xlim(t[0], t[-1])


def _tracking_window(ax, t, true_j, cmd_j, changes, cuts, lim) -> None:
    """Right column: every step of a window, aim changes as dotted lines."""
    tb, y = _broken(t, np.stack([true_j, cmd_j], axis=1), cuts)
    ax.plot(tb, y[:, 0], lw=0.8, color="tab:blue")
    ax.plot(tb, y[:, 1], lw=0.8, color="tab:orange")
    for tc in t[changes]:
        if lim[0] <= tc <= lim[1]:
            ax.axvline(tc, color="0.3", ls=":", lw=0.9)
    ax.set_xlim(*lim)


def plot_target_tracking(path: Path, rec, beams) -> Path:
    """True vs commanded target, x, y, z, relative to the aim point (see module docstring)."""
    from matplotlib.lines import Line2D

    t = rec.time_s
    aims = np.array([b.aim_room for b in beams], dtype=float).reshape(-1, 3)
    true_d, cmd_d, changes = displacement_from_aim(rec, aims)
    on = rec.beam_on_s > 0
    t0 = float(t[int(np.argmax(on))]) if on.any() else float(t[0]) if t.size else 0.0
    lim = (t0, t0 + WINDOW_S)
    long_run = t.size > 1 and t[-1] - t[0] > RAW_UP_TO_S
    fig = Figure(figsize=(12, 7.5))
    axes = fig.subplots(3, 2, sharex="col", width_ratios=(2.2, 1))
    for j, name in enumerate("xyz"):
        _tracking_whole_run(axes[j, 0], t, true_d[:, j], cmd_d[:, j], changes, changes,
                            envelope=long_run)
        _tracking_window(axes[j, 1], t, true_d[:, j], cmd_d[:, j], changes, changes, lim)
        _autoscale_y(axes[j, 1], t, true_d[:, j], cmd_d[:, j], lim)
        axes[j, 0].set_ylabel(f"{name} − aim (mm)")
    axes[2, 0].set_xlabel("time (s)")
    axes[2, 1].set_xlabel("time (s)")
    env = " (min–max per bin)" if long_run else ""
    fig.legend(handles=[
        Line2D([], [], color="tab:blue", lw=2 if long_run else 1, label=f"true target{env}"),
        Line2D([], [], color="tab:orange", lw=1,
               label=f"commanded: the estimate one latency ahead{env}"),
        Line2D([], [], color="0.3", ls=":", marker="|", label="aim point change (beam aimed "
               "at another point; the line is not drawn across)")],
        loc="upper center", ncol=3, fontsize=8, frameon=False)
    axes[0, 0].set_title("target displacement from the current beam's planned aim point "
                         "(room x left, y posterior, z superior): whole run", fontsize=9)
    axes[0, 1].set_title(f"every step, {WINDOW_S:.0f} s from the first beam", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=90)
    return path


def _autoscale_y(ax, t, a, b, lim) -> None:
    sel = (t >= lim[0]) & (t <= lim[1])
    v = np.concatenate([a[sel], b[sel]])
    v = v[np.isfinite(v)]
    if v.size:
        lo, hi = float(v.min()), float(v.max())
        pad = max(0.05 * (hi - lo), 0.05)
        ax.set_ylim(lo - pad, hi + pad)


def per_beam_component_rms(rec, n_beams: int) -> dict[str, np.ndarray]:
    """Each component's RMS magnitude over each beam's beam-on time (mm; NaN: not
    delivered), shape (n_beams,) per component."""
    bi = rec.beam_index
    w = rec.beam_on_s
    sel = (bi >= 0) & (w > 0)
    tot = np.bincount(bi[sel], weights=w[sel], minlength=n_beams)[:n_beams]
    out = {}
    for c in COMPONENTS:
        m2 = np.sum(rec.components[c][sel] ** 2, axis=1)
        s = np.bincount(bi[sel], weights=w[sel] * m2, minlength=n_beams)[:n_beams]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[c] = np.where(tot > 0, np.sqrt(s / tot), np.nan)
    return out


def plot_components(path: Path, rec, beams, summary: dict) -> Path:
    """RMS / 95th percentile bars per component and each component's RMS per beam."""
    fig = Figure(figsize=(11, 3.9))
    ax, ax2 = fig.subplots(1, 2, width_ratios=(1, 1.6))
    comp = summary["error_components_mm"]
    names = list(COMPONENTS)
    x = np.arange(len(names))
    colors = [COMPONENT_COLORS[c] for c in names]
    ax.bar(x - 0.2, [comp[c]["rms"] or 0.0 for c in names], 0.4, color=colors)
    ax.bar(x + 0.2, [comp[c]["p95"] or 0.0 for c in names], 0.4, color=colors, alpha=0.45,
           hatch="///", edgecolor="white")
    ax.set_xticks(x, names, fontsize=8)
    for tick, c in zip(ax.get_xticklabels(), colors, strict=True):
        tick.set_color(c)
    ax.legend(handles=[Patch(color="0.35", label="RMS"),
                       Patch(facecolor="0.35", alpha=0.45, hatch="///", edgecolor="white",
                             label="95th percentile")], fontsize=8)
    ax.set_ylabel("mm (perpendicular to beam)")
    ax.set_title("error components over beam-on time", fontsize=10)
    per_beam = per_beam_component_rms(rec, len(beams))
    for c in names:
        ax2.plot(np.arange(len(beams)), per_beam[c], marker=".", ms=3, lw=0.8,
                 color=COMPONENT_COLORS[c], label=c)
    ax2.set_xlabel("beam (delivery order)")
    ax2.set_ylabel("RMS over the beam (mm)")
    ax2.set_title("each component's RMS per beam", fontsize=10)
    ax2.legend(fontsize=8, ncol=2)
    delivered = np.flatnonzero(np.isfinite(per_beam[names[0]]))
    if delivered.size:
        ax2.set_xlim(-0.5, delivered.max() + 0.5)
    return _save(fig, path)


def _couch(scene) -> dict:
    if scene is None:
        return _COUCH
    c = scene.room.couch
    return {"top_y_mm": c.top_y_mm, "size_mm": tuple(c.size_mm), "center_z_mm": c.center_z_mm,
            "patient_size_mm": tuple(c.patient_size_mm),
            "patient_center_z_mm": c.patient_center_z_mm}


def _draw_patient(ax, couch: dict) -> None:
    """Couch top (a rectangle) and a schematic supine patient on it: an elliptic torso, a
    head at the superior (+z) end; drawn as (x, z, -y) so anterior is up."""
    top = couch["top_y_mm"]
    w, _, length = couch["size_mm"]
    z0 = couch["center_z_mm"]
    cx = np.array([-w, w, w, -w, -w]) / 2
    cz = z0 + np.array([-length, -length, length, length, -length]) / 2
    ax.plot(cx, cz, np.full(5, -top), color="0.35", lw=1.0, label="couch top")
    pw, pt, pl = couch["patient_size_mm"]
    pz0 = couch["patient_center_z_mm"]
    mid_y = top - pt / 2  # the body's mid-plane (room y)
    head_len = min(250.0, 0.15 * pl)
    z_feet, z_neck = pz0 - pl / 2, pz0 + pl / 2 - head_len
    a = np.linspace(0, 2 * np.pi, 49)
    for k, z in enumerate(np.linspace(z_feet, z_neck, 5)):
        ax.plot(pw / 2 * np.cos(a), np.full(a.size, z), -(mid_y + pt / 2 * np.sin(a)),
                color="tab:brown", lw=0.6, alpha=0.7,
                label="patient (schematic, head-first supine)" if k == 0 else None)
    for s in (-1, 1):  # the torso's sides and front line
        ax.plot([s * pw / 2] * 2, [z_feet, z_neck], [-mid_y] * 2, color="tab:brown", lw=0.6,
                alpha=0.7)
    ax.plot([0, 0], [z_feet, z_neck], [-(mid_y - pt / 2)] * 2, color="tab:brown", lw=0.6,
            alpha=0.7)
    r = head_len / 2
    zc = z_neck + r
    ax.plot(0.7 * r * np.cos(a), zc + r * np.sin(a), np.full(a.size, -mid_y),
            color="tab:brown", lw=0.8)
    ax.plot(0.7 * r * np.cos(a), np.full(a.size, zc), -(mid_y + 0.9 * r * np.sin(a)),
            color="tab:brown", lw=0.8)
    ax.text(0, zc + r * 1.3, -mid_y, "head", fontsize=8, color="tab:brown", ha="center")


def plot_beams_3d(path: Path, rec, beams, scene=None) -> Path:
    """Beams, nodes and the target path in the room with the patient (anterior up)."""
    fig = Figure(figsize=(7.5, 6.5))
    ax = fig.add_subplot(projection="3d")
    _draw_patient(ax, _couch(scene))
    for k, b in enumerate(beams):
        src = b.source_room
        p = np.stack([src, b.aim_room + 0.15 * (b.aim_room - src)])
        ax.plot(p[:, 0], p[:, 2], -p[:, 1], color="tab:orange", lw=0.4, alpha=0.55,
                label="beams" if k == 0 else None)
    if beams:
        s = np.array([b.source_room for b in beams])
        ax.scatter(s[:, 0], s[:, 2], -s[:, 1], s=5, color="tab:red", label="nodes (linac source)")
    tt = rec.target_true[:: max(1, rec.time_s.size // 2000)]
    ax.plot(tt[:, 0], tt[:, 2], -tt[:, 1], color="k", lw=1.0, label="target path")
    ax.set_xlabel("x: patient left (mm)", fontsize=8)
    ax.set_ylabel("z: superior (mm)", fontsize=8)
    ax.set_zlabel("−y: anterior (mm)", fontsize=8)
    ax.set_box_aspect((1, 1.4, 0.9))
    ax.view_init(elev=22, azim=-58)
    ax.set_title("beams and target path (room frame), patient supine head-first", fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def write_plots(out_dir: Path, rec, beams, summary: dict, *, scene=None,
                dose=None) -> list[Path]:
    """Write the PNG plots of a run into ``out_dir`` (the names in :data:`PLOTS`).

    Parameters
    ----------
    out_dir : Path
        Run directory.
    rec : LoopRecord
        Per-step arrays and events of the run.
    beams : list of Beam
        The plan in delivery order (aim points, the 3-D picture).
    summary : dict
        The run summary (``RunSummary.to_dict()``: titles, statistics).
    scene : Scene, optional
        The couch and patient size for the 3-D picture (defaults otherwise).
    dose : DoseResult, optional
        The run's dose: its plots (:data:`~._dose.DOSE_PLOTS`) follow the others.

    Returns
    -------
    list of Path
        The PNGs, in the order of :data:`PLOTS` (then the dose plots, with ``dose``).
    """
    out = Path(out_dir)
    pngs = [plot_error_vs_time(out / PLOTS[0], rec, summary),
            plot_histogram(out / PLOTS[1], rec, summary),
            plot_target_tracking(out / PLOTS[2], rec, beams),
            plot_components(out / PLOTS[3], rec, beams, summary),
            plot_beams_3d(out / PLOTS[4], rec, beams, scene)]
    if dose is not None:
        from ._dose import write_dose_plots

        pngs += write_dose_plots(out, dose)
    return pngs
