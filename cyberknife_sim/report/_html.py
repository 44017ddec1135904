"""``report.html``: one self-contained page (works offline, fetches nothing).

The page holds the run's numbers, interactive time-series plots (plotly.js inlined once in
the head; each figure a JSON spec in the body, drawn by a small script of the page), the
PNG plots (base64), the hold and event tables, the per-beam table and the resolved scene
YAML. Fractions are given as percentages with enough digits to show any miss, next to the
beam-on time and the number of steps outside.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from ..metrics import COMPONENTS
from ._dose import dose_section
from ._plots import PLOTS
from ._script import PAGE_JS
from ._series import MAX_POINTS, hold_bands

__all__ = ["format_event", "percent", "write_report"]

_CSS = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;
text-align:right;vertical-align:top}td:first-child,th:first-child{text-align:left}
td.text{text-align:left}img{max-width:100%}.bad{color:#b00;font-weight:bold}
details{margin:1em 0}summary{cursor:pointer;font-weight:bold}.note{color:#555;font-size:90%}
pre.yaml{background:#f6f6f6;padding:.7em;overflow:auto;max-height:40em;font-size:85%}
.scroll{max-height:32em;overflow:auto}.plot{width:100%;min-height:380px}
.miss{color:#b00}"""


def percent(fraction: float | None) -> str:
    """``fraction`` as a percentage with two decimals, or more when two would round a
    fraction below 1 up to "100.00 %" (or above 0 down to "0.00 %"), so a miss shows."""
    if fraction is None:
        return "—"
    f = float(fraction)
    digits = 2
    while digits < 8 and 0 < f < 1 and (round(100 * f, digits) in (100.0, 0.0)):
        digits += 1
    return f"{100 * f:.{digits}f} %"


def _fmt(v, nd: int = 3) -> str:
    if v is None:
        return "—"
    if isinstance(v, float | np.floating):
        return f"{float(v):.{nd}f}"
    return html.escape(str(v))


def _num(v, nd: int = 3) -> str:
    """A number with ``nd`` decimals; "—" for None or anything not a number."""
    try:
        return f"{float(v):.{nd}f}"
    except (TypeError, ValueError):
        return "—"


def _vec(v, nd: int = 3) -> str:
    return "(" + ", ".join(_num(x, nd) for x in v) + ")"


_EVENT_TEXT = {
    "hold": lambda ev: "beam held: " + ", ".join(ev.get("reasons") or []),
    "resume": lambda ev: f"beam on again after {_num(ev.get('held_s', 0.0), 2)} s held",
    "node": lambda ev: f"to beam {ev.get('beam')} at node {ev.get('node')}",
    "patient_moved": lambda ev: f"markers shifted {_num(ev.get('marker_shift_mm', 0.0))} mm",
    "stopped": lambda ev: f"stopped: {ev.get('reason')}",
    "plan_complete": lambda ev: "every beam delivered",
}
_SHOWN = {"hold": {"reasons"}, "resume": {"held_s"}, "node": {"beam", "node"},
          "patient_moved": {"marker_shift_mm"}, "stopped": {"reason"}, "plan_complete": set(),
          "image": {"accepted", "reason", "pose", "target_error", "interlock"}}


def _image_text(ev: dict) -> str:
    head = "accepted" if ev.get("accepted") else f"rejected ({ev.get('reason') or '?'})"
    parts = [head]
    p = ev.get("pose")
    if p is not None and len(p) == 6 and all(_num(v) != "—" and np.isfinite(v) for v in p):
        parts.append(f"pose {_vec(p[:3])} mm, {_vec(p[3:])}°")
    err = ev.get("target_error")
    if err is not None and len(err) == 3 and all(isinstance(v, int | float) for v in err):
        parts.append(f"target error {_num(np.linalg.norm(err))} mm")
    if ev.get("interlock"):
        parts.append(f"interlock {ev['interlock']}")
    return "; ".join(parts)


def _value(v) -> str:
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, float | np.floating):
        return _num(v, 4)
    if isinstance(v, list | tuple) and v and all(isinstance(x, int | float | None) for x in v):
        return _vec(v, 4)
    return str(v)


def format_event(ev: dict) -> str:
    """One line of text for an event's details (its time and kind aside); plain text."""
    kind = ev.get("kind")
    text = _image_text(ev) if kind == "image" else _EVENT_TEXT.get(kind, lambda e: "")(ev)
    rest = [f"{k}: {_value(v)}" for k, v in ev.items()
            if k not in ("time_s", "kind") and k not in _SHOWN.get(kind, set())]
    return "; ".join(p for p in [text, *rest] if p)


def events_table(events: list[dict]) -> str:
    """The events as an HTML table, one row per event (class ``ev-<kind>``), with a select
    that filters by kind."""
    kinds = sorted({ev["kind"] for ev in events})
    options = "".join(f'<option value="{html.escape(k)}">{html.escape(k)} '
                      f'({sum(ev["kind"] == k for ev in events)})</option>' for k in kinds)
    rows = "".join(
        f'<tr class="ev-{html.escape(ev["kind"])}"><td>{_num(ev["time_s"], 2)}</td>'
        f'<td class="text">{html.escape(ev["kind"])}</td>'
        f'<td class="text">{html.escape(format_event(ev))}</td></tr>' for ev in events)
    return (f'<p>Show <select id="event-kind"><option value="">every kind</option>{options}'
            f'</select></p><div class="scroll"><table id="events"><thead><tr><th>time (s)</th>'
            f'<th>event</th><th>details</th></tr></thead><tbody>{rows}</tbody></table></div>')


def _misses(rec, limit_mm: float) -> str:
    """" (x.xx s beam-on outside, N steps)" from the record (empty without one)."""
    if rec is None:
        return ""
    on = rec.beam_on_s > 0
    out = on & (np.linalg.norm(rec.error_vec, axis=1) > limit_mm)
    cls = ' class="miss"' if out.any() else ""
    return (f' <span{cls}>({float(rec.beam_on_s[out].sum()):.2f} s of beam-on time outside, '
            f'{int(out.sum())} of {int(on.sum())} beam-on steps)</span>')


def _summary_rows(summary: dict, rec) -> str:
    te = summary["targeting_error_mm"]
    rows = [("RMS (mm)", _fmt(te["rms"])), ("mean (mm)", _fmt(te["mean"])),
            ("95th percentile (mm)", _fmt(te["p95"])), ("max (mm)", _fmt(te["max"])),
            ("beam-on time within 0.5 mm",
             percent(summary.get("within_0_5mm_fraction")) + _misses(rec, 0.5)),
            ("beam-on time within 1 mm",
             percent(summary.get("within_1mm_fraction")) + _misses(rec, 1.0)),
            ("MU-weighted per-beam RMS (mm)", _fmt(summary["mu_weighted"]["rms_mm"])),
            ("beam-on time (s)", _fmt(summary["beam_on_s"], 1)),
            ("beam-hold time (s)", _fmt(summary["beam_hold_s"], 2)),
            ("beams completed", f"{summary['beams_completed']} / {summary['beams_total']}"),
            ("planned beam-on time (s)", _fmt(summary.get("plan_beam_on_s"), 1)),
            ("plan delivered at (s)", _fmt(summary.get("plan_delivery_s"), 1)
             if summary.get("plan_delivery_s") is not None else "not completed"),
            ("X-ray pairs (rejected)", f"{summary['images']['total']} "
             f"({summary['images']['rejected']})"),
            ("simulated time (s)", _fmt(summary["simulated_s"], 1)),
            ("real-time factor", _fmt(summary["realtime_factor"], 1)),
            ("mean loop step (ms)", _fmt(summary["mean_step_ms"]))]
    return "".join(f'<tr><td>{k}</td><td>{v}</td></tr>' for k, v in rows)


def _holds_tables(summary: dict, rec) -> str:
    by_reason = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v, 2)}</td></tr>"
                        for k, v in sorted(summary["beam_hold_s_by_reason"].items()))
    out = (f"<table><tr><th>interlock</th><th>held (s)</th></tr>"
           f"{by_reason or '<tr><td>none</td><td></td></tr>'}</table>")
    if rec is not None:
        bands = hold_bands(rec)
        rows = "".join(
            f"<tr><td>{k + 1}</td><td>{_num(b.start_s, 2)}</td><td>{_num(b.end_s, 2)}</td>"
            f"<td>{_num(b.end_s - b.start_s, 2)}</td><td class=\"text\">"
            f"{html.escape(b.label)}</td><td class=\"text\">{html.escape(b.ended)}</td></tr>"
            for k, b in enumerate(bands))
        out += (f'<details><summary>Each hold ({len(bands)})</summary><div class="scroll">'
                f'<table id="holds"><tr><th>#</th><th>from (s)</th><th>to (s)</th>'
                f'<th>held (s)</th><th>interlocks</th><th>ended by</th></tr>{rows}</table>'
                f'</div></details>')
    return out


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).name)}">'


def _scene_yaml(out_dir: Path, scene) -> str | None:
    if scene is not None:
        from ..scene import scene_to_yaml

        return scene_to_yaml(scene)
    path = out_dir / "scene.yaml"
    return path.read_text(encoding="utf-8") if path.is_file() else None


def _interactive(rec, beams, summary: dict) -> tuple[str, dict[str, str]]:
    """(plotly.js, {figure name: its div and JSON spec}) — empty without a record or
    without plotly."""
    if rec is None:
        return "", {}
    try:
        from plotly.offline import get_plotlyjs
    except ImportError:  # pragma: no cover - plotly is a dependency
        return "", {}
    from ._interactive import figure_specs, spec_json

    blocks = {}
    for name, spec in figure_specs(rec, beams or [], summary).items():
        blocks[name] = (f'<div id="fig-{name}" class="plot plotly-figure"></div>\n'
                        f'<script type="application/json" class="cks-fig" data-div="fig-{name}">'
                        f'{spec_json(spec)}</script>')
    return get_plotlyjs(), blocks


def _figure(blocks: dict[str, str], name: str, png: Path, caption: str) -> str:
    """The interactive figure with its PNG in a closed <details>, or the PNG alone."""
    if name not in blocks:
        return _img(png)
    return (f'{blocks[name]}<p class="note">{caption}</p><details><summary>Static picture '
            f'(PNG)</summary>{_img(png)}</details>')


def write_report(out_dir: Path, summary: dict, beam_rows: list[dict], plots: list[Path], *,
                 record=None, beams=None, scene=None, dose=None) -> Path:
    """Write ``report.html`` into ``out_dir`` (self-contained) and return its path.

    Parameters
    ----------
    out_dir : Path
        Run directory.
    summary : dict
        ``RunSummary.to_dict()``.
    beam_rows : list of dict
        Per-beam statistics (``beams.csv``).
    plots : list of Path
        The PNGs of :func:`write_plots`, in the order of :data:`PLOTS` (then the dose
        plots, if any).
    record : LoopRecord, optional
        The run's record: interactive plots, hold list and miss counts (PNGs only without).
    beams : list of Beam, optional
        The plan (aim points for the tracking figure).
    scene : Scene, optional
        The resolved scene, shown as YAML (else ``out_dir/scene.yaml`` if there is one).
    dose : DoseResult, optional
        The run's dose: a "Dose" section (metrics, cord margin, the dose plots; written here
        if ``plots`` lacks them). No section without it.
    """
    out_dir = Path(out_dir)
    png = dict(zip(PLOTS, plots[:len(PLOTS)], strict=True))
    plotly_js, blocks = _interactive(record, beams, summary)
    comp = summary["error_components_mm"]
    status = (f'<p class="bad">Stopped early: {html.escape(summary["stopped_early"])}</p>'
              if summary.get("stopped_early") else "")
    beams_html = "".join(
        f"<tr><td>{r['beam']}</td><td>{_fmt(r['mu'], 1)}</td><td>{_fmt(r['beam_on_s'], 2)}</td>"
        f"<td>{_fmt(r['rms_mm'])}</td><td>{_fmt(r['p95_mm'])}</td><td>{_fmt(r['max_mm'])}</td>"
        "</tr>" for r in beam_rows)
    comp_rows = "".join(f"<tr><td>{c}</td><td>{_fmt(comp[c]['rms'])}</td>"
                        f"<td>{_fmt(comp[c]['p95'])}</td><td>{_fmt(comp[c]['max'])}</td></tr>"
                        for c in COMPONENTS)
    yaml_text = _scene_yaml(out_dir, scene)
    scene_block = ("" if yaml_text is None else
                   '<details id="scene"><summary>Scene settings (the resolved scene.yaml: '
                   'cksim run DIR/scene.yaml reproduces this run)</summary>'
                   f'<pre class="yaml">{html.escape(yaml_text)}</pre></details>')
    events = summary.get("events") or (record.events if record is not None else [])
    decimation = (f"Drag to zoom, double-click to zoom out. A trace keeps every step up to "
                  f"{MAX_POINTS:,} points; a longer one is cut into equal bins of consecutive "
                  "steps and keeps each bin's smallest and largest sample, so every peak "
                  "shows; zoomed in to at most that many steps, the error trace shows every "
                  "step.")
    head_js = (f'<script type="text/javascript">{plotly_js}</script>' if plotly_js else "")
    body_js = f"<script>{PAGE_JS}</script>" if blocks else ""
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>cksim run — {html.escape(summary['scene'])}</title>
<style>{_CSS}</style>{head_js}</head><body>
<h1>Simulated treatment: {html.escape(summary['scene'])}</h1>
<p>Tracking mode <b>{html.escape(summary['tracking_mode'])}</b>, imaging
<b>{html.escape(summary['imaging'])}</b>, seed {summary['seed']}. Target localization at
each X-ray pair: <b>{html.escape(summary.get('target_localization') or 'n/a')}</b>.</p>{status}
<h2>Targeting error over beam-on time</h2>
<p>Distance from the true target to the actual beam axis.</p>
<table id="summary">{_summary_rows(summary, record)}</table>
{_figure(blocks, 'error', png[PLOTS[0]], decimation)}
{_img(png[PLOTS[1]])}
<h2>Where the error comes from</h2>
<p>{html.escape(summary['decomposition_method'])}</p>
<table><tr><th>stage</th><th>RMS (mm)</th><th>95th pct (mm)</th><th>max (mm)</th></tr>
{comp_rows}</table>
{_img(png[PLOTS[3]])}
{blocks.get('components', '')}
<h2>True vs estimated target</h2>
{_figure(blocks, 'tracking', png[PLOTS[2]], decimation)}
<h2>Beams</h2>
{_img(png[PLOTS[4]])}
{dose_section(out_dir, dose, plots[len(PLOTS):])}
<h2>Beam holds (s, by interlock; reasons can overlap)</h2>
{_holds_tables(summary, record)}
<details id="events-section"><summary>Events ({len(events)})</summary>
{events_table(events)}</details>
<details><summary>Per-beam table ({len(beam_rows)} beams)</summary>
<table><tr><th>beam</th><th>MU</th><th>beam-on (s)</th><th>RMS (mm)</th><th>p95 (mm)</th>
<th>max (mm)</th></tr>{beams_html}</table></details>
{scene_block}
{body_js}
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
