"""The report's interactive time-series plots (Plotly), as JSON specs for ``Plotly.newPlot``.

Each figure is a ``{"data": [...], "layout": {...}}`` spec in Plotly's JSON (numeric arrays
as base64 ``float32``, ``{"dtype": "f4", "bdata": ...}``, which plotly.js decodes). Long
series are decimated by :func:`~._series.minmax_decimate`: up to ``max_points`` samples a
trace keeps every step; a longer one keeps each bin's minimum and maximum sample, so every
peak stays in the picture. The error figure also carries its raw per-step series
(``"raw"``, every step, NaN while the beam is off): the page swaps it in when a zoom shows
at most ``max_points`` steps.

Plotly is imported when a figure is built, not with this module.
"""

from __future__ import annotations

import base64
import json

import numpy as np

from ..metrics import COMPONENTS
from ._plots import beam_on_error, displacement_from_aim, envelope_bin_s
from ._series import MAX_POINTS, HoldBand, binned_envelope, hold_bands, minmax_decimate
from ._style import COMPONENT_COLORS, HOLD_COLORS, XRAY_COLORS, hold_color

__all__ = ["FIGURES", "figure_specs", "f32_b64", "spec_json"]

FIGURES = ("error", "tracking", "components")
"""The interactive figures, in page order (``figure_specs`` keys)."""

TRACKING_MAX_POINTS = 10_000
"""Points per trace of the target-tracking figure (six traces; its envelope is smooth)."""

_FONT = {"family": "sans-serif", "size": 12}


def f32_b64(values) -> str:
    """``values`` as little-endian float32 bytes, base64 (what ``"bdata"`` holds)."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def _arr(values) -> np.ndarray:
    """float32: Plotly writes it as base64 ``{"dtype": "f4", "bdata": ...}``."""
    return np.asarray(values, dtype=np.float32)


def _layout(title: str, **extra) -> dict:
    base = {"title": {"text": title, "font": {"size": 14}}, "font": _FONT,
            "template": "plotly_white", "hovermode": "closest",
            "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
            "legend": {"orientation": "h", "y": -0.18, "x": 0}}
    base.update(extra)
    return base


def _line(x, y, name: str, color: str, *, width: float = 1.0, **extra) -> dict:
    return {"type": "scatter", "mode": "lines", "name": name,
            "x": _arr(x), "y": _arr(y), "line": {"color": color, "width": width},
            "connectgaps": False, **extra}


def _hold_shapes(bands: list[HoldBand], span_s: float) -> tuple[list[dict], list[dict]]:
    """A shaded rectangle per hold (spanning the plot's height) and the hover marks."""
    min_w = 0.002 * span_s
    shapes = [{"type": "rect", "name": "hold", "xref": "x", "yref": "paper",
               "x0": b.start_s, "x1": max(b.end_s, b.start_s + min_w), "y0": 0, "y1": 1,
               "fillcolor": hold_color(b.reasons), "opacity": 0.3, "line": {"width": 0},
               "layer": "below"} for b in bands]
    traces = []
    for reason in sorted({b.reasons[0] for b in bands if b.reasons}):
        mine = [b for b in bands if b.reasons and b.reasons[0] == reason]
        traces.append({
            "type": "scatter", "mode": "markers", "name": f"hold: {reason}",
            "x": [b.start_s for b in mine], "y": [0.92] * len(mine), "yaxis": "y2",
            "marker": {"symbol": "triangle-down", "size": 9,
                       "color": HOLD_COLORS.get(reason, "#7f7f7f")},
            "text": [f"hold {b.start_s:.2f}–{b.end_s:.2f} s ({b.end_s - b.start_s:.2f} s, "
                     f"ended by {b.ended}): {b.label}" for b in mine],
            "hoverinfo": "text"})
    return shapes, traces


def _xray_traces(events: list[dict]) -> list[dict]:
    out = []
    for ok, symbol in ((True, "line-ns-open"), (False, "x")):
        evs = [ev for ev in events if ev["kind"] == "image" and bool(ev.get("accepted")) is ok]
        if not evs:
            continue
        out.append({
            "type": "scatter", "mode": "markers",
            "name": "X-ray pair" if ok else "rejected X-ray pair",
            "x": [ev["time_s"] for ev in evs], "y": [0.99] * len(evs), "yaxis": "y2",
            "marker": {"symbol": symbol, "size": 10, "color": XRAY_COLORS[ok],
                       "line": {"width": 1.5, "color": XRAY_COLORS[ok]}},
            "text": [f"X-ray pair at {ev['time_s']:.2f} s: "
                     + ("accepted" if ok else f"rejected ({ev.get('reason') or 'no reason'})")
                     for ev in evs],
            "hoverinfo": "text"})
    return out


def error_figure(rec, summary: dict, *, max_points: int = MAX_POINTS) -> dict:
    """Targeting error over beam-on time, hold bands with reasons, X-ray pairs."""
    t = rec.time_s
    e_on = beam_on_error(rec)
    x, y = minmax_decimate(t, e_on, max_points)
    span = float(t[-1] - t[0]) if t.size > 1 else 1.0
    bands = hold_bands(rec)
    shapes, hold_traces = _hold_shapes(bands, span)
    shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": 0.5,
                   "y1": 0.5, "line": {"color": "gray", "dash": "dot", "width": 1}})
    decimated = x.size < t.size
    name = "targeting error, beam on" + (" (min/max per bin)" if decimated else "")
    data = [_line(x, y, name, "black", width=0.8)] + hold_traces + _xray_traces(rec.events)
    layout = _layout(
        f"{summary['scene']}: targeting error ({len(bands)} beam holds)",
        shapes=shapes, height=430,
        xaxis={"title": {"text": "time (s)"}, "range": [float(t[0]), float(t[-1])]
               if t.size else None},
        yaxis={"title": {"text": "error (mm)"}, "rangemode": "tozero"},
        yaxis2={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True})
    spec = {"data": data, "layout": layout}
    if decimated:  # every step (NaN while the beam is off), for zooms
        spec["raw"] = {"trace": 0, "max_points": int(max_points), "n": int(t.size),
                       "x": f32_b64(t), "y": f32_b64(e_on),
                       "name": "targeting error, beam on (every step)", "decimated_name": name}
    return spec


def tracking_figure(rec, beams, *, max_points: int = TRACKING_MAX_POINTS) -> dict:
    """True and commanded target minus the aim point, x/y/z, aim point changes marked."""
    t = rec.time_s
    aims = np.array([b.aim_room for b in beams], dtype=float).reshape(-1, 3)
    true_d, cmd_d, changes = displacement_from_aim(rec, aims)
    data = []
    for j, axis in enumerate("xyz"):
        ref = "" if j == 0 else str(j + 1)
        for arr, name, color in ((true_d, "true target", "#1f77b4"),
                                 (cmd_d, "commanded (estimate one latency ahead)", "#ff7f0e")):
            x, y = minmax_decimate(t, arr[:, j], max_points)
            data.append(_line(x, y, name, color, xaxis=f"x{ref}", yaxis=f"y{ref}",
                              legendgroup=name, showlegend=j == 0,
                              hovertemplate=f"{axis}: %{{y:.3f}} mm at %{{x:.2f}} s"))
    shapes = [{"type": "line", "name": "aim point change", "xref": "x", "yref": "paper",
               "x0": float(t[i]), "x1": float(t[i]), "y0": 0, "y1": 1,
               "line": {"color": "rgba(60,60,60,0.45)", "dash": "dot", "width": 1}}
              for i in changes]
    axes = {}
    for j, axis in enumerate("xyz"):
        ref = "" if j == 0 else str(j + 1)
        lo, hi = 1 - (j + 1) / 3 + 0.03, 1 - j / 3 - 0.03
        axes[f"yaxis{ref}"] = {"domain": [lo, hi], "title": {"text": f"{axis} − aim (mm)"}}
        axes[f"xaxis{ref}"] = {"anchor": f"y{ref}", "matches": None if j == 0 else "x",
                               "showticklabels": j == 2,
                               "title": {"text": "time (s)"} if j == 2 else None}
    title = ("target displacement from the current beam's planned aim point (dotted: "
             f"aim point changes, {changes.size})")
    layout = _layout(title, shapes=shapes, height=620, **axes)
    layout["legend"]["y"] = -0.1
    return {"data": data, "layout": layout}


def components_figure(rec) -> dict:
    """Each error component's RMS per bin of beam-on time (one colour per component)."""
    t = rec.time_s
    on = rec.beam_on_s > 0
    width = envelope_bin_s(float(t[-1] - t[0])) if t.size > 1 else 1.0
    data = []
    for c in COMPONENTS:
        mag = np.where(on, np.linalg.norm(rec.components[c], axis=1), np.nan)
        cen, _, rms, _ = binned_envelope(t, mag, width)
        data.append(_line(cen, rms, c, COMPONENT_COLORS[c], width=1.2))
    cen, _, rms, _ = binned_envelope(t, beam_on_error(rec), width)
    data.append(_line(cen, rms, "total targeting error", "black", width=1.0))
    data[-1]["line"]["dash"] = "dot"
    return {"data": data, "layout": _layout(
        f"error components: RMS per {width:g} s of beam-on time (mm, perpendicular to the "
        "beam; they add as vectors)", height=380,
        xaxis={"title": {"text": "time (s)"}},
        yaxis={"title": {"text": "RMS (mm)"}, "rangemode": "tozero"})}


def figure_specs(rec, beams, summary: dict, *, max_points: int = MAX_POINTS) -> dict:
    """The interactive figures of a run, by name (:data:`FIGURES`)."""
    return {"error": error_figure(rec, summary, max_points=max_points),
            "tracking": tracking_figure(rec, beams,
                                        max_points=min(max_points, TRACKING_MAX_POINTS)),
            "components": components_figure(rec)}


def spec_json(spec: dict) -> str:
    """A figure spec as JSON safe inside ``<script type="application/json">`` (``</`` and
    ``<!--`` escaped), validated by Plotly's figure model (the ``raw`` part aside)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    fig = go.Figure({"data": spec["data"], "layout": spec["layout"]})
    out = json.loads(pio.to_json(fig, validate=True, engine="json"))
    if "raw" in spec:
        out["raw"] = spec["raw"]
    text = json.dumps(out, separators=(",", ":"), allow_nan=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")
