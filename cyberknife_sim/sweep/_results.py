"""``results.parquet``: one row per run of a sweep (see ``docs/sweep_design.md``).

Columns: ``run_id``, ``status``, ``reason``, ``seed``, ``param.<key path>``, every numeric leaf
of the run's ``summary.json`` flattened with dots (``targeting_error_mm.rms``), ``wall_s`` and
``worker``. The file is rewritten whole and atomically (``<file>.tmp`` + ``os.replace``) after
each finished run, so an interrupted sweep keeps every row it finished and a reader never sees
a half-written file.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError

__all__ = [
    "FIXED_COLUMNS",
    "RESULTS_FILE",
    "STATUSES",
    "TIMING_COLUMNS",
    "flatten_summary",
    "read_results",
    "results_table",
    "write_results",
]

RESULTS_FILE = "results.parquet"
"""Name of the results file in a sweep's output folder."""

STATUSES = ("ok", "stopped", "failed")
"""``ok``: ran to its end; ``stopped``: ended early (interlock, ``reason`` says why);
``failed``: raised (``reason`` is the exception's one line)."""

FIXED_COLUMNS: dict[str, pa.DataType] = {
    "run_id": pa.string(), "status": pa.string(), "reason": pa.string(), "seed": pa.int64(),
}
_TAIL_COLUMNS: dict[str, pa.DataType] = {"wall_s": pa.float64(), "worker": pa.string()}

TIMING_COLUMNS = frozenset({
    "wall_s", "worker", "realtime_factor", "realtime_factor_with_setup", "loop_wall_s",
    "setup_wall_s", "imaging_wall_s", "mean_step_ms",
})
"""Columns that measure wall-clock time or name the worker: they differ between two runs of
the same scene and seed; every other column is reproducible bit for bit."""

_SKIP_KEYS = frozenset({"events", "outputs", "seed"})
"""Summary keys left out: the event log, the file list, and ``seed`` (its own column)."""
_STRING_KEYS = frozenset({
    "scene", "scene_file", "tracking_mode", "imaging", "target_localization", "stopped_early",
    "decomposition_method",
})
"""Summary keys holding text (or None): not metrics (``stopped_early`` goes to ``reason``)."""


def flatten_summary(d: Mapping[str, Any], *, prefix: str = "") -> dict[str, float | None]:
    """Every numeric leaf of a run summary, keyed by its dotted path.

    Parameters
    ----------
    d : mapping
        ``RunSummary.to_dict()`` (or ``summary.json`` parsed).
    prefix : str
        Prepended to every key (used by the recursion).

    Returns
    -------
    dict
        ``{"targeting_error_mm.rms": 0.12, "plan_complete": 1.0, ...}``: numbers as float
        (bools as 0.0 / 1.0, so a mean over runs is a fraction), a numeric leaf that is None
        (NaN in the run, e.g. no beam-on time) as None. Left out: ``events``, ``outputs``,
        ``seed``, the text fields (``scene``, ``tracking_mode``, ``stopped_early``, ...) and
        lists.
    """
    out: dict[str, float | None] = {}
    for key, value in d.items():
        if not prefix and (key in _SKIP_KEYS or key in _STRING_KEYS):
            continue
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten_summary(value, prefix=f"{name}."))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, int | float):
            out[name] = float(value) if math.isfinite(value) else None
        elif value is None:
            out[name] = None
        # strings and lists are not metrics
    return out


def _param_type(values: list[Any]) -> pa.DataType:
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.float64()
    return pa.string()


def _param_value(value: Any, typ: pa.DataType) -> Any:
    if value is None:
        return None
    if typ == pa.float64():
        return float(value)
    return value if isinstance(value, str) else str(value)


def results_table(rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Rows (dicts) as a table: the union of their columns, a missing value as null.

    Column order: ``run_id``, ``status``, ``reason``, ``seed``, the ``param.*`` columns
    (float64 when every value is a number, else string), the metrics (float64, sorted by
    name), ``wall_s``, ``worker``.
    """
    rows = list(rows)
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    params = sorted(n for n in names if n.startswith("param."))
    metrics = sorted(n for n in names
                     if n not in FIXED_COLUMNS and n not in _TAIL_COLUMNS and n not in params)
    schema: dict[str, pa.DataType] = dict(FIXED_COLUMNS)
    for p in params:
        schema[p] = _param_type([r.get(p) for r in rows])
    schema.update(dict.fromkeys(metrics, pa.float64()))
    schema.update(_TAIL_COLUMNS)
    arrays = []
    for name, typ in schema.items():
        if name.startswith("param."):
            col = [_param_value(r.get(name), typ) for r in rows]
        elif typ == pa.float64():
            col = [None if r.get(name) is None else float(r[name]) for r in rows]
        else:
            col = [r.get(name) for r in rows]
        arrays.append(pa.array(col, type=typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(list(schema.items())))


def write_results(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write ``rows`` to the Parquet file ``path`` atomically (``path.tmp`` + ``os.replace``).

    Parameters
    ----------
    path : str or Path
        The results file (normally ``<out_dir>/results.parquet``).
    rows : iterable of dict
        One dict per run (see :func:`results_table`).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(results_table(rows), tmp)
    os.replace(tmp, path)
    return path


def read_results(out_dir: str | Path) -> pa.Table:
    """The results of a sweep folder (or of a results file given directly).

    Parameters
    ----------
    out_dir : str or Path
        The sweep's output folder (holding ``results.parquet``) or the file itself.

    Returns
    -------
    pyarrow.Table
        One row per finished run (``table.to_pylist()`` gives dicts).

    Raises
    ------
    InputError
        No results file there, or it is not a readable Parquet file.
    """
    path = Path(out_dir)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        raise InputError(f"{path}: no sweep results here (expected {RESULTS_FILE})")
    try:
        return pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
