"""Population studies: a sweep spec expanded into runs, run on Dask, results as Parquet.

``load_sweep_spec`` reads and validates a spec (``docs/sweep_spec.md``); ``run_sweep`` runs
it on a ``distributed`` cluster into ``results.parquet``; ``write_sweep_report`` draws the
report. The last two (and ``SweepOutcome``) are imported on first use, so that reading a
spec does not import Dask.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._expand import RunSpec
from ._spec import Distribution, SweepSpec, load_sweep_spec

__all__ = ["Distribution", "RunSpec", "SweepOutcome", "SweepSpec", "load_sweep_spec",
           "read_results", "run_sweep", "write_sweep_report"]

_LAZY = {"run_sweep": "._runner", "SweepOutcome": "._runner", "write_sweep_report": "._report",
         "read_results": "._results"}


def __getattr__(name: str) -> Any:
    """Import ``run_sweep``, ``SweepOutcome``, ``read_results`` and ``write_sweep_report``
    when first used."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
