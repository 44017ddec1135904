"""The sweep report: ``DIR/report.html`` and ``DIR/plots/<metric>__<param>.png``.

Built from ``DIR/results.parquet`` alone (``cksim sweep-report DIR`` rebuilds it), with the
spec's name and description from ``DIR/spec.yaml`` when it is there. For each metric and
each varied parameter, a plot of the metric against the parameter: the median over the
``ok`` runs at each parameter value and their 5–95 % band (``numpy.percentile``, linear
interpolation), with every run as a dot. A numeric parameter is an x axis; a string one
(a tracking mode, a trace file name) is a set of categories. With several varied
parameters, one line is drawn per value of a second one (the one with the fewest values,
when it has at most :data:`MAX_LINES`) and the runs of every other parameter's values are
pooled; the plot says which. Runs that stopped early or failed are counted, listed and
shown in the table, never plotted.
"""

from __future__ import annotations

import base64
import fnmatch
import html
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.figure import Figure

from ..errors import InputError
from ._results import RESULTS_FILE, read_results

__all__ = ["DEFAULT_METRICS", "MAX_LINES", "aggregate", "choose_metrics", "plot_name",
           "read_results_table", "varied_params", "write_sweep_report"]

DEFAULT_METRICS = ("targeting_error_mm.rms", "targeting_error_mm.p95", "targeting_error_mm.max",
                   "error_components_mm.*.rms", "within_1mm_fraction",
                   "registration_error_vs_truth.translation_rms_mm",
                   "dose.delivered.target.coverage", "dose.delivered.cord.d0035cc_gy",
                   "dose.gamma.*.pass_rate", "realtime_factor")
"""Metric columns plotted by default, in this order (``fnmatch`` patterns); the ones
absent from the results are skipped. With none present, every numeric metric column."""

MAX_LINES = 6
"""At most this many lines (values of a second parameter) on one plot."""

FIXED_COLUMNS = ("run_id", "status", "reason", "seed", "wall_s", "worker")
"""The columns of ``results.parquet`` that are neither a parameter nor a metric."""

_PARAM = "param."
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def read_results_table(out_dir: Path) -> pa.Table:
    """``out_dir/results.parquet`` as a table (read by :func:`read_results`);
    :class:`InputError` if missing, unreadable, empty or without a ``param.*`` column."""
    path = Path(out_dir) / RESULTS_FILE
    table = read_results(out_dir)
    missing = [c for c in ("run_id", "status") if c not in table.column_names]
    if missing:
        raise InputError(f"{path}: no column {', '.join(missing)}")
    if table.num_rows == 0:
        raise InputError(f"{path}: no runs in the results")
    if not varied_params(table):
        raise InputError(f"{path}: no varied parameter (no param.* column) to plot against")
    return table


def varied_params(table: pa.Table) -> list[str]:
    """The varied parameters' key paths (``param.<key path>`` columns), in column order."""
    return [c[len(_PARAM):] for c in table.column_names if c.startswith(_PARAM)]


def _is_numeric(table: pa.Table, col: str) -> bool:
    t = table.schema.field(col).type
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def choose_metrics(table: pa.Table, metrics=None) -> list[str]:
    """The metric columns to plot: ``metrics`` (each must be a numeric column), else those
    of :data:`DEFAULT_METRICS` present with a finite value in an ``ok`` run, else every
    numeric metric column with one."""
    candidates = [c for c in table.column_names
                  if c not in FIXED_COLUMNS and not c.startswith(_PARAM) and _is_numeric(table, c)]
    if metrics is not None:
        bad = [m for m in metrics if m not in candidates]
        if bad:
            raise InputError(f"results.parquet: no numeric metric column {', '.join(bad)} "
                             f"(have: {', '.join(candidates) or 'none'})")
        return list(metrics)
    ok = _ok_mask(table)
    present = [c for c in candidates if np.isfinite(_floats(table, c)[ok]).any()]
    chosen = [c for pattern in DEFAULT_METRICS for c in present if fnmatch.fnmatchcase(c, pattern)]
    return list(dict.fromkeys(chosen)) or present


def _ok_mask(table: pa.Table) -> np.ndarray:
    return np.asarray(table.column("status").to_pylist(), dtype=object) == "ok"


def _floats(table: pa.Table, col: str) -> np.ndarray:
    return np.asarray(table.column(col).to_numpy(zero_copy_only=False), dtype=np.float64)


def _values(table: pa.Table, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(values, valid) of parameter ``key``: float64 for a numeric one, else object (str)."""
    col = key if key.startswith(_PARAM) else _PARAM + key
    if col not in table.column_names:
        raise InputError(f"results.parquet: no parameter column {col}")
    if _is_numeric(table, col):
        v = _floats(table, col)
        return v, np.isfinite(v)
    v = np.array([None if x is None else str(x) for x in table.column(col).to_pylist()],
                 dtype=object)
    return v, v != None  # noqa: E711 (element-wise)


def aggregate(table: pa.Table, metric: str, param: str, *, by: str | None = None
              ) -> dict[str, np.ndarray]:
    """The spread of ``metric`` over the ``ok`` runs at each value of ``param``.

    Parameters
    ----------
    table : pyarrow.Table
        The results (``results.parquet``).
    metric : str
        A metric column, e.g. ``"targeting_error_mm.rms"`` (its unit is in its name).
    param : str
        A varied parameter's key path (``"tracking.mode"`` or ``"param.tracking.mode"``).
    by : str, optional
        A second parameter: one row of statistics per value of it. Runs of every other
        parameter's values are pooled with the seeds.

    Returns
    -------
    dict of numpy.ndarray
        ``x`` (n_x,): the values of ``param`` (sorted; float64, or object for strings);
        ``groups`` (n_g,): the values of ``by`` (``[None]`` without it);
        ``median``, ``p5``, ``p95`` (n_g, n_x): median and 5th / 95th percentiles of the
        metric, in its unit, NaN where there is no run; ``n`` (n_g, n_x): runs counted;
        ``y``, ``ix``, ``ig`` (n_runs,): each counted run's metric and its indices into
        ``x`` and ``groups``. Rows not ``ok``, with a NaN metric or a missing parameter
        value are left out.
    """
    y_all = _floats(table, metric)
    xv, keep = _values(table, param)
    keep = keep & _ok_mask(table) & np.isfinite(y_all)
    if by is not None:
        gv, gvalid = _values(table, by)
        keep &= gvalid
        groups, ig = np.unique(gv[keep], return_inverse=True)
    else:
        groups, ig = np.array([None], dtype=object), np.zeros(int(keep.sum()), dtype=np.int64)
    x, ix = np.unique(xv[keep], return_inverse=True)
    y = y_all[keep]
    shape = (len(groups), len(x))
    n = np.zeros(shape, dtype=np.int64)
    np.add.at(n, (ig, ix), 1)
    stats = np.full((3, *shape), np.nan)
    for g, i in zip(*np.nonzero(n), strict=True):
        stats[:, g, i] = np.percentile(y[(ig == g) & (ix == i)], [50.0, 5.0, 95.0])
    return {"x": x, "groups": groups, "median": stats[0], "p5": stats[1], "p95": stats[2],
            "n": n, "y": y, "ix": ix.astype(np.int64), "ig": ig.astype(np.int64)}


def plot_name(metric: str, param: str) -> str:
    """The PNG's file name: ``<metric>__<param>.png``, characters other than letters,
    digits, ``.``, ``-`` and ``_`` replaced by ``_`` (``dose.gamma.2%/1mm.pass_rate`` →
    ``dose.gamma.2__1mm.pass_rate``)."""
    def safe(s):
        return re.sub(r"[^A-Za-z0-9._-]", "_", s)
    return f"{safe(metric)}__{safe(param)}.png"


def _second_param(table: pa.Table, param: str, params: list[str]) -> str | None:
    """The other parameter with the fewest (≥ 2, ≤ MAX_LINES) values, if any."""
    counts = {}
    for p in params:
        if p != param:
            v, valid = _values(table, p)
            counts[p] = len(set(v[valid].tolist()))
    fits = [p for p, k in counts.items() if 2 <= k <= MAX_LINES]
    return min(fits, key=lambda p: counts[p]) if fits else None


def _label(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _draw(ax, agg: dict, numeric: bool) -> None:
    x = agg["x"]
    pos = x.astype(np.float64) if numeric else np.arange(len(x), dtype=np.float64)
    ng = len(agg["groups"])
    step = (0.6 / ng) if not numeric and ng > 1 else 0.0
    for g, gval in enumerate(agg["groups"]):
        c = _COLORS[g % len(_COLORS)]
        off = (g - (ng - 1) / 2) * step
        has = agg["n"][g] > 0
        label = "median" if gval is None else _label(gval)
        sel = agg["ig"] == g
        ax.plot(pos[agg["ix"][sel]] + off, agg["y"][sel], ".", color=c, alpha=0.35, ms=4)
        if numeric:
            ax.plot(pos[has], agg["median"][g, has], "-o", color=c, ms=4, label=label)
            ax.fill_between(pos[has], agg["p5"][g, has], agg["p95"][g, has], color=c,
                            alpha=0.2, lw=0)
        else:
            med = agg["median"][g, has]
            err = np.vstack([med - agg["p5"][g, has], agg["p95"][g, has] - med])
            ax.errorbar(pos[has] + off, med, yerr=err, fmt="o", color=c, capsize=4,
                        label=label)
    if not numeric:
        rot = 0 if len(x) <= 3 else (25 if len(x) <= 12 else 90)
        ax.set_xticks(np.arange(len(x)), [_label(v) for v in x], rotation=rot,
                      ha="right" if rot == 25 else "center", fontsize=8 if len(x) <= 12 else 6)


def plot_metric(table: pa.Table, metric: str, param: str, path: Path, *,
                params: list[str], failed: int) -> Path:
    """Draw ``metric`` against ``param`` into ``path`` (PNG) and return it."""
    by = _second_param(table, param, params) if len(params) > 1 else None
    agg = aggregate(table, metric, param, by=by)
    numeric = _is_numeric(table, _PARAM + param)
    width_in = 6.4 if numeric else min(max(6.4, 0.18 * len(agg["x"])), 24.0)
    fig = Figure(figsize=(width_in, 4.2))
    ax = fig.add_subplot()
    _draw(ax, agg, numeric)
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    band = "band" if numeric else "bars"
    ax.set_title(f"{metric} vs {param}", fontsize=10)
    if by is not None:
        ax.legend(title=by, fontsize=7, title_fontsize=7)
    pooled = [p for p in params if p not in (param, by)]
    note = (f"median over seeds{', ' if pooled else ''}"
            f"{'pooled over ' + ', '.join(pooled) if pooled else ''}; {band}: 5–95 %; "
            f"dots: {len(agg['y'])} ok runs" + (f"; {failed} not ok, not shown" if failed else ""))
    fig.text(0.01, 0.005, note, fontsize=6.5, color="#555", va="bottom")
    fig.tight_layout(rect=(0, 0.035, 1, 1))
    fig.savefig(path, dpi=90)
    return path


_CSS = """body{font-family:sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;font-size:85%}td,th{border:1px solid #ccc;
padding:2px 6px;text-align:right}td.text{text-align:left}img{max-width:100%}
.bad{color:#b00}.note{color:#555;font-size:90%}.scroll{max-height:40em;overflow:auto}
.plots{display:flex;flex-wrap:wrap;gap:8px}.plots img{width:560px}
pre.yaml{background:#f6f6f6;padding:.7em;overflow:auto;max-height:30em;font-size:85%}"""


def _spec_info(out_dir: Path) -> tuple[str, str, str | None]:
    """(name, description, spec text) from ``out_dir/spec.yaml`` (the folder's name and ""
    without one)."""
    path = out_dir / "spec.yaml"
    if not path.is_file():
        return out_dir.resolve().name, "", None
    import yaml

    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    data = data if isinstance(data, dict) else {}
    return (str(data.get("name") or out_dir.resolve().name), str(data.get("description") or ""),
            text)


def _cell(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "<td>—</td>"
    if isinstance(v, float):
        return f"<td>{v:.4g}</td>"
    if isinstance(v, int):
        return f"<td>{v}</td>"
    return f'<td class="text">{html.escape(str(v))}</td>'


def _runs_table(table: pa.Table, columns: list[str], *, row_id: str) -> str:
    data = {c: table.column(c).to_pylist() for c in columns}
    head = "".join(f"<th>{html.escape(c.removeprefix(_PARAM))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(data[c][i]) for c in columns) + "</tr>"
                   for i in range(table.num_rows))
    return (f'<div class="scroll"><table id="{row_id}"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'


def _wall_text(table: pa.Table) -> str:
    if "wall_s" not in table.column_names:
        return "wall time not recorded"
    w = _floats(table, "wall_s")
    w = w[np.isfinite(w)]
    if w.size == 0:
        return "wall time not recorded"
    return (f"wall time of the runs: {w.sum():.1f} s in all (summed over workers); per run "
            f"median {np.median(w):.2f} s, min {w.min():.2f} s, max {w.max():.2f} s")


def write_sweep_report(out_dir: Path, *, metrics: list[str] | None = None) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/plots/<metric>__<param>.png`` from
    ``out_dir/results.parquet`` and return the page's path.

    Parameters
    ----------
    out_dir : Path
        The sweep's output folder (``cksim sweep --out``).
    metrics : list of str, optional
        Metric columns to plot (default: :func:`choose_metrics`).

    Raises
    ------
    InputError
        No results file, no runs in it, no ``param.*`` column, or an unknown metric.
    """
    out_dir = Path(out_dir)
    table = read_results_table(out_dir)
    chosen = choose_metrics(table, metrics)
    params = varied_params(table)
    status = np.asarray(table.column("status").to_pylist(), dtype=object)
    counts = {s: int((status == s).sum()) for s in ("ok", "stopped", "failed")}
    other = int(table.num_rows - sum(counts.values()))
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(exist_ok=True)
    sections = []
    for metric in chosen:
        pngs = [plot_metric(table, metric, p, plot_dir / plot_name(metric, p), params=params,
                            failed=table.num_rows - counts["ok"]) for p in params]
        sections.append(f"<h3>{html.escape(metric)}</h3><div class=\"plots\">"
                        + "".join(_img(p) for p in pngs) + "</div>")
    name, description, spec_text = _spec_info(out_dir)
    not_ok = table.filter(pa.array(status != "ok"))
    bad_cols = [c for c in ("run_id", "status", "reason", "seed") if c in table.column_names]
    bad_cols += [_PARAM + p for p in params]
    all_cols = bad_cols + chosen + [c for c in ("wall_s", "worker") if c in table.column_names]
    not_ok_html = (f"<h2>Runs not ok ({not_ok.num_rows})</h2>"
                   + _runs_table(not_ok, bad_cols, row_id="not-ok") if not_ok.num_rows else "")
    spec_html = ("" if spec_text is None else "<details><summary>spec.yaml</summary>"
                 f'<pre class="yaml">{html.escape(spec_text)}</pre></details>')
    others = f", <b>{other}</b> other" if other else ""
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>cksim sweep — {html.escape(name)}</title>
<style>{_CSS}</style></head><body>
<h1>Sweep: {html.escape(name)}</h1>
<p>{html.escape(description)}</p>
<p id="counts">{table.num_rows} runs: <b>{counts['ok']}</b> ok, <b>{counts['stopped']}</b>
stopped, <b>{counts['failed']}</b> failed{others}.</p>
<p>{_wall_text(table)}.</p>
<p>Varied: {', '.join(html.escape(p) for p in params)}.</p>{spec_html}
<h2>Metrics against each varied parameter</h2>
<p class="note">Each plot: the median of the ok runs at each value of the parameter (over
seeds, and pooled over the varied parameters the plot names), the 5–95 % band (numpy
percentiles, linear interpolation) and each ok run as a dot. With several varied
parameters, one line per value of the one with the fewest values (at most {MAX_LINES}).
Stopped and failed runs are not plotted; they are listed below.</p>
{''.join(sections)}
{not_ok_html}
<h2>Every run ({table.num_rows})</h2>
{_runs_table(table, all_cols, row_id="runs")}
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
