"""Shared inputs of the benchmarks: the default phantom and the real CT of ../shared/data."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_CT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ct" / "example_ct.nii.gz"


@pytest.fixture(scope="session")
def default_phantom():
    """The default phantom preset (seed 0): ``.volume``, ``.truth.target_center_ct_mm``."""
    from cyberknife_sim.anatomy import make_phantom

    return make_phantom("default", seed=0)


@pytest.fixture(scope="session")
def real_ct():
    """The real CT of ../shared/data/ct as a Volume (skips when the file is missing)."""
    from cyberknife_sim.anatomy import read_ct

    if not SHARED_CT.exists():
        pytest.skip(f"{SHARED_CT} not found")
    return read_ct(SHARED_CT)
