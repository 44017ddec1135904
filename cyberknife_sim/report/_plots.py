"""Plots of a run (matplotlib) and a self-contained ``report.html`` (PNGs as base64).

Plots: targeting error vs time with imaging and beam-hold events; error histogram over beam-on
time; true vs estimated (commanded) target; error components; a 3-D picture of the beams and
the target path.

The plots use matplotlib's object API (``matplotlib.figure.Figure`` saved straight to PNG),
not pyplot: importing this module or writing a report neither selects a backend nor keeps
figures open, so it works headless and leaves an interactive session's backend alone.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .metrics import COMPONENTS

__all__ = ["PLOTS", "write_plots", "write_report"]

PLOTS = ("error_vs_time.png", "error_histogram.png", "target_tracking.png",
         "error_components.png", "beams_3d.png")
"""File names of the plots :func:`write_plots` writes."""

_COLORS = {"registration": "tab:blue", "correlation": "tab:orange", "prediction": "tab:green",
           "robot": "tab:red"}


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Start/stop indices of runs of True in a boolean array."""
    if mask.size == 0:
        return []
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1), strict=True))


def write_plots(out_dir: Path, rec, beams, summary: dict) -> list[Path]:
    """Write the PNG plots of a run into ``out_dir``; returns their paths.

    Parameters
    ----------
    out_dir : Path
        Run directory.
    rec : LoopRecord
        Per-step arrays and events of the run.
    beams : list of Beam
        The plan (for the 3-D picture).
    summary : dict
        The run summary (titles, limits).
    """
    out_dir = Path(out_dir)
    t = rec.time_s
    on = rec.beam_on_s > 0
    err = np.linalg.norm(rec.error_vec, axis=1)
    paths = []

    # 1. error vs time, with imaging and hold events
    fig = Figure(figsize=(11, 3.8))
    ax = fig.subplots()
    e_on = np.where(on, err, np.nan)
    ax.plot(t, e_on, lw=0.6, color="k", label="targeting error (beam on)")
    held = rec.hold_mask != 0
    for k, (a, b) in enumerate(_runs(held & ~on)):
        ax.axvspan(t[a], t[min(b, t.size - 1)], color="tab:red", alpha=0.15, lw=0,
                   label="beam held / setup" if k == 0 else None)
    first = {True: True, False: True}
    for ev in rec.events:
        if ev["kind"] == "image":
            ok = bool(ev.get("accepted"))
            ax.axvline(ev["time_s"], color="tab:blue" if ok else "tab:red", lw=0.6,
                       ls="-" if ok else "--",
                       label=("X-ray pair" if ok else "rejected X-ray pair") if first[ok]
                       else None)
            first[ok] = False
    ax.axhline(0.5, color="gray", ls=":", lw=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("error (mm)")
    ax.set_title(f"{summary['scene']} — tracking {summary['tracking_mode']}: targeting error")
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, out_dir / PLOTS[0])
    paths.append(out_dir / PLOTS[0])

    # 2. histogram
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    if on.any():
        ax.hist(err[on], bins=60, weights=rec.beam_on_s[on], color="0.4")
        te = summary["targeting_error_mm"]
        for key, ls in (("rms", "-"), ("p95", "--")):
            ax.axvline(te[key], color="tab:red", ls=ls, label=f"{key} {te[key]:.3f} mm")
        ax.legend(fontsize=8)
    ax.set_xlabel("targeting error (mm)")
    ax.set_ylabel("beam-on time (s)")
    ax.set_title("error histogram (beam-on time)")
    _save(fig, out_dir / PLOTS[1])
    paths.append(out_dir / PLOTS[1])

    # 3. true vs estimated target: full run and a 30 s window of beam-on
    fig = Figure(figsize=(11, 5.5))
    axes = fig.subplots(2, 1)
    axis = int(np.argmax(np.nanstd(rec.target_true, axis=0))) if t.size else 2
    name = "xyz"[axis]
    i0 = int(np.argmax(on)) if on.any() else 0
    win = (t >= t[i0]) & (t <= t[i0] + 30.0) if t.size else on
    for ax, sel in ((axes[0], slice(None)), (axes[1], win)):
        ax.plot(t[sel], rec.target_true[sel, axis], lw=0.8, label=f"true target {name}")
        ax.plot(t[sel], rec.target_commanded[sel, axis], lw=0.8,
                label=f"estimated (commanded) {name}")
        ax.set_ylabel(f"room {name} (mm)")
    axes[0].legend(fontsize=8, loc="upper right")
    axes[1].set_xlabel("time (s)")
    axes[0].set_title("true vs estimated target (whole run; below: 30 s from the first beam)")
    _save(fig, out_dir / PLOTS[2])
    paths.append(out_dir / PLOTS[2])

    # 4. components
    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    comp = summary["error_components_mm"]
    names = list(COMPONENTS)
    rms = [comp[c]["rms"] or 0.0 for c in names]
    p95 = [comp[c]["p95"] or 0.0 for c in names]
    x = np.arange(len(names))
    ax.bar(x - 0.2, rms, 0.4, label="RMS", color=[_COLORS[c] for c in names])
    ax.bar(x + 0.2, p95, 0.4, label="95th pct", color=[_COLORS[c] for c in names], alpha=0.5)
    ax.set_xticks(x, names)
    ax.set_ylabel("mm (perpendicular to beam)")
    ax.set_title("error components over beam-on time")
    ax.legend(fontsize=8)
    _save(fig, out_dir / PLOTS[3])
    paths.append(out_dir / PLOTS[3])

    # 5. 3-D beams and target path
    fig = Figure(figsize=(6, 5.5))
    ax = fig.add_subplot(projection="3d")
    for b in beams:
        p = np.stack([b.source_room, b.source_room + b.direction_room
                      * np.linalg.norm(b.source_room) * 1.1])
        ax.plot(p[:, 0], p[:, 2], p[:, 1], color="tab:orange", lw=0.4, alpha=0.6)
    ax.scatter([b.source_room[0] for b in beams], [b.source_room[2] for b in beams],
               [b.source_room[1] for b in beams], s=4, color="tab:red", label="nodes")
    tt = rec.target_true[:: max(1, t.size // 2000)]
    ax.plot(tt[:, 0], tt[:, 2], tt[:, 1], color="k", lw=1.0, label="target path")
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("z (mm)")
    ax.set_zlabel("y (mm)")
    ax.invert_zaxis()  # +y is toward the floor
    ax.set_title("beams (room frame) and target path")
    ax.legend(fontsize=8)
    _save(fig, out_dir / PLOTS[4])
    paths.append(out_dir / PLOTS[4])
    return paths


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'


def _fmt(v, nd=3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{nd}f}"
    return html.escape(str(v))


def write_report(out_dir: Path, summary: dict, beam_rows: list[dict],
                 plots: list[Path]) -> Path:
    """Write ``report.html`` (self-contained: plots embedded) and return its path."""
    out_dir = Path(out_dir)
    te = summary["targeting_error_mm"]
    comp = summary["error_components_mm"]
    rows = [("RMS (mm)", te["rms"]), ("mean (mm)", te["mean"]), ("95th percentile (mm)",
            te["p95"]), ("max (mm)", te["max"]),
            ("beam-on time within 0.5 mm", summary["within_0_5mm_fraction"]),
            ("beam-on time within 1 mm", summary["within_1mm_fraction"]),
            ("MU-weighted per-beam RMS (mm)", summary["mu_weighted"]["rms_mm"]),
            ("beam-on time (s)", summary["beam_on_s"]),
            ("beam-hold time (s)", summary["beam_hold_s"]),
            ("beams completed", f"{summary['beams_completed']} / {summary['beams_total']}"),
            ("planned beam-on time (s)", summary.get("plan_beam_on_s")),
            ("plan delivered at (s)", summary.get("plan_delivery_s")
             if summary.get("plan_delivery_s") is not None else "not completed"),
            ("X-ray pairs (rejected)", f"{summary['images']['total']} "
             f"({summary['images']['rejected']})"),
            ("simulated time (s)", summary["simulated_s"]),
            ("real-time factor", summary["realtime_factor"]),
            ("mean loop step (ms)", summary["mean_step_ms"])]
    status = (f'<p class="bad">Stopped early: {html.escape(summary["stopped_early"])}</p>'
              if summary.get("stopped_early") else "")
    holds = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v, 2)}</td></tr>"
                    for k, v in sorted(summary["beam_hold_s_by_reason"].items()))
    events = "".join(
        f"<tr><td>{ev['time_s']:.2f}</td><td>{html.escape(ev['kind'])}</td>"
        f"<td>{html.escape(json.dumps({k: v for k, v in ev.items() if k not in ('time_s', 'kind')}))}</td></tr>"  # noqa: E501
        for ev in summary["events"] if ev["kind"] not in ("node",))
    beams = "".join(
        f"<tr><td>{r['beam']}</td><td>{_fmt(r['mu'], 1)}</td><td>{_fmt(r['beam_on_s'], 2)}</td>"
        f"<td>{_fmt(r['rms_mm'])}</td><td>{_fmt(r['p95_mm'])}</td><td>{_fmt(r['max_mm'])}</td>"
        "</tr>" for r in beam_rows)
    comp_rows = "".join(f"<tr><td>{c}</td><td>{_fmt(comp[c]['rms'])}</td>"
                        f"<td>{_fmt(comp[c]['p95'])}</td><td>{_fmt(comp[c]['max'])}</td></tr>"
                        for c in COMPONENTS)
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>cksim run — {html.escape(summary['scene'])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:2px 8px;
text-align:right}}td:first-child{{text-align:left}}img{{max-width:100%}}
.bad{{color:#b00;font-weight:bold}}details{{margin:1em 0}}</style></head><body>
<h1>Simulated treatment: {html.escape(summary['scene'])}</h1>
<p>Tracking mode <b>{html.escape(summary['tracking_mode'])}</b>, imaging
<b>{html.escape(summary['imaging'])}</b>, seed {summary['seed']}. Target localization at
each X-ray pair: <b>{html.escape(summary.get('target_localization') or 'n/a')}</b>.</p>{status}
<h2>Targeting error over beam-on time</h2>
<p>Distance from the true target to the actual beam axis.</p>
<table>{''.join(f'<tr><td>{k}</td><td>{_fmt(v)}</td></tr>' for k, v in rows)}</table>
{_img(plots[0])}
{_img(plots[1])}
<h2>Where the error comes from</h2>
<p>{html.escape(summary['decomposition_method'])}</p>
<table><tr><th>stage</th><th>RMS (mm)</th><th>95th pct (mm)</th><th>max (mm)</th></tr>
{comp_rows}</table>
{_img(plots[3])}
<h2>True vs estimated target</h2>
{_img(plots[2])}
<h2>Beams</h2>
{_img(plots[4])}
<h2>Beam holds (s, by interlock; reasons can overlap)</h2>
<table>{holds or '<tr><td>none</td></tr>'}</table>
<details><summary>Events ({len(summary['events'])})</summary>
<table><tr><th>time (s)</th><th>event</th><th>detail</th></tr>{events}</table></details>
<details><summary>Per-beam table ({len(beam_rows)} beams)</summary>
<table><tr><th>beam</th><th>MU</th><th>beam-on (s)</th><th>RMS (mm)</th><th>p95 (mm)</th>
<th>max (mm)</th></tr>{beams}</table></details>
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
