"""Phantom generation and CT reading costs.

Run: ``.venv/bin/python -m pytest benchmarks/bench_anatomy.py --benchmark-only``.
Each benchmark also checks that its output is right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cyberknife_sim.anatomy import TISSUE_LABELS, load_preset, read_ct
from cyberknife_sim.anatomy.phantom import _generate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct"


@pytest.mark.parametrize("preset", ["default", "coarse"])
def test_generate_phantom(benchmark, preset):
    """Uncached generation of a preset (seed 0)."""
    params = load_preset(preset)
    ph = benchmark.pedantic(_generate, args=(params, 0, preset), rounds=3, iterations=1)
    les = ph.labels == TISSUE_LABELS["lesion"]
    k, j, i = np.nonzero(les)
    centroid = ph.volume.ijk_to_ct(np.stack([i, j, k], 1).astype(float)).mean(axis=0)
    assert np.linalg.norm(centroid - ph.truth.target_center_ct_mm) < 1.0
    assert len(ph.truth.vertebra_labels) == len(params.levels)


@pytest.mark.parametrize("name", ["example_ct.nii.gz", "example_ct_dicom"])
def test_read_ct(benchmark, name):
    """Reading the real CT files of ../shared/data/ct."""
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"{path} not found")
    v = benchmark(read_ct, path)
    assert v.hu.min() < -900 and v.hu.max() > 1000
